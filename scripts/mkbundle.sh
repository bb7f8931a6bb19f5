#!/usr/bin/env bash
# Build an OCI bundle in DIR: a busybox rootfs (mkrootfs.sh) plus the config.json
# that `RUNTIME spec` writes, with terminal off and, if given, process.args set
# to ARG... . RUNTIME defaults to berth-runtime (from $PATH or target/release);
# pass e.g. /usr/sbin/runc explicitly to use another runtime's default spec.
set -euo pipefail

usage() { echo "usage: $0 DIR [RUNTIME [ARG...]]" >&2; exit 2; }
[ $# -ge 1 ] || usage
dir=$1; shift
here=$(cd "$(dirname "$0")" && pwd)

runtime=${1:-}
[ $# -gt 0 ] && shift
if [ -z "$runtime" ]; then
    built=${CARGO_TARGET_DIR:-$here/../target}/release/berth-runtime
    if [ -x "$built" ]; then
        runtime=$built
    elif command -v berth-runtime >/dev/null; then
        runtime=berth-runtime
    else
        echo "$0: berth-runtime not built (cargo build --release) and not in PATH; pass RUNTIME explicitly" >&2
        exit 1
    fi
fi

mkdir -p "$dir"
"$here/mkrootfs.sh" "$dir/rootfs"
rm -f "$dir/config.json"
(cd "$dir" && "$runtime" spec)
[ -s "$dir/config.json" ] || { echo "$0: '$runtime spec' wrote no config.json" >&2; exit 1; }

args_json=$(jq -cn '$ARGS.positional' --args -- "$@")
tmp=$(mktemp "$dir/.config.XXXXXX")
jq --argjson args "$args_json" '
    .process.terminal = false
    | if ($args | length) > 0 then .process.args = $args else . end
' "$dir/config.json" > "$tmp"
mv "$tmp" "$dir/config.json"
