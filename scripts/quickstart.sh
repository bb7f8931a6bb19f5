#!/usr/bin/env bash
# From a fresh clone, as root: install dependencies, build berth in release mode,
# and run one busybox container with berth-runtime.
# BERTH_QUICKSTART_RUNTIME=/usr/sbin/runc runs the same container with another runtime.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

bash scripts/install-deps.sh
cargo build --release
runtime=${BERTH_QUICKSTART_RUNTIME:-${CARGO_TARGET_DIR:-$PWD/target}/release/berth-runtime}

work=$(mktemp -d /tmp/berth-quickstart.XXXXXX)
root=$work/state
id=quickstart-$$
cleanup() {
    "$runtime" --root "$root" delete --force "$id" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

bash scripts/mkbundle.sh "$work/bundle" "$runtime" \
    sh -c 'echo "hello from a berth container"; uname -a; id; hostname'
echo "+ $runtime run $id"
cd "$work/bundle"
"$runtime" --root "$root" run "$id" </dev/null
