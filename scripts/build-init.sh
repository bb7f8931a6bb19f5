#!/usr/bin/env bash
# Builds berth-init (the PID 1 of `berth run --init`) as a static binary and
# installs it next to the release binaries (target/release/berth-init), where
# berth looks for it. It runs inside images that may have no libc at all.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
target=${CARGO_TARGET_DIR:-$PWD/target}
triple=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols" \
    cargo build --release -p berth-init --target "$triple" --target-dir "$target/static"
mkdir -p "$target/release"
install -m 0755 "$target/static/$triple/release/berth-init" "$target/release/berth-init"
if LC_ALL=C ldd "$target/release/berth-init" 2>&1 | grep -q '=>'; then
    echo "build-init.sh: $target/release/berth-init is not static" >&2
    exit 1
fi
