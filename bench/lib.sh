# Shared setup for the benchmark scripts; source it, do not run it.
#
# Environment:
#   BENCH_RUNTIMES  names to compare, among: berth runc crun base (default:
#                   berth runc crun)
#   BERTH_RUNTIME   berth-runtime binary (default: target/release/berth-runtime)
#   BERTH_RUNTIME_BASE  another build of berth-runtime, the `base` name, for an
#                   A/B against a previous commit (BENCHMARKS.md says how the
#                   builds compared there were made)
#   RUNC, CRUN      peer binaries (default: /usr/sbin/runc, /usr/bin/crun)
#
# Every runtime runs the same bundle (busybox, `true`, runc's default spec)
# inside the same wrapper: a private mount namespace in which the hybrid
# cgroup2 mount's cgroup.controllers is hidden behind an empty file. crun 1.8
# refuses hybrid cgroups otherwise (see HOST.md); wrapping all of them alike
# keeps the comparison fair. On a host without that file the wrapper only adds
# the private mount namespace.

set -euo pipefail
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$bench_dir")
results=$bench_dir/results
mkdir -p "$results"

read -r -a names <<<"${BENCH_RUNTIMES:-berth runc crun}"
declare -A bin=(
    [berth]=${BERTH_RUNTIME:-${CARGO_TARGET_DIR:-$repo/target}/release/berth-runtime}
    [runc]=${RUNC:-/usr/sbin/runc}
    [crun]=${CRUN:-/usr/bin/crun}
    [base]=${BERTH_RUNTIME_BASE:-}
)

if [ "$(id -u)" -ne 0 ]; then
    echo "$0: run as root" >&2
    exit 1
fi
for n in "${names[@]}"; do
    if [ -z "${bin[$n]:-}" ]; then
        echo "$0: unknown runtime name '$n' (use berth, runc, crun; base needs BERTH_RUNTIME_BASE)" >&2
        exit 2
    fi
    if [ ! -x "${bin[$n]}" ]; then
        echo "$0: $n: ${bin[$n]} is not executable (build with 'cargo build --release'," \
            "or leave it out: BENCH_RUNTIMES='runc crun')" >&2
        exit 1
    fi
done

work=$(mktemp -d /tmp/berth-bench.XXXXXX)
# Runtime state lives on tmpfs, as it does in use (/run/runc, /run/crun).
state=$(mktemp -d /run/berth-bench-state.XXXXXX)
bench_cleanup() {
    local n id
    for n in "${names[@]}"; do
        [ -d "$state/$n" ] || continue
        for id in $("${bin[$n]}" --root "$state/$n" list -q 2>/dev/null); do
            "${bin[$n]}" --root "$state/$n" delete --force "$id" >/dev/null 2>&1 || true
        done
    done
    rm -rf "$work" "$state"
}
trap bench_cleanup EXIT

# One bundle for everyone, from runc's default spec, so all run the same config.
bash "$repo/scripts/mkbundle.sh" "$work/bundle" "${RUNC:-/usr/sbin/runc}" true >/dev/null
: >"$work/empty"
cat >"$work/wrap" <<WRAP
#!/bin/sh
# Run "\$@" in a private mount namespace that hides the hybrid cgroup2 controllers.
exec unshare --mount --propagation private sh -c '
f=/sys/fs/cgroup/unified/cgroup.controllers
[ ! -e "\$f" ] || mount --bind "$work/empty" "\$f" || exit 1
exec "\$@"' wrap "\$@"
WRAP
chmod +x "$work/wrap"

# run_cmd NAME ID: the wrapped `RUNTIME run` command line, for sh.
run_cmd() {
    printf '%s %s --root %s run --bundle %s %s' \
        "$work/wrap" "${bin[$1]}" "$state/$1" "$work/bundle" "$2"
}

# Say where and when, for the results' header.
host_line() {
    printf '%s, kernel %s, %s cores, %s' \
        "$(. /etc/os-release && echo "$PRETTY_NAME")" "$(uname -r)" "$(nproc)" "$(date -u +%Y-%m-%dT%H:%MZ)"
}

# version_line NAME: the runtime's first version line.
version_line() {
    local v
    v=$("${bin[$1]}" --version 2>/dev/null || true)
    printf '%s\n' "${v%%$'\n'*}"
}

# ratio A B: A/B with two decimals.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'
}

# ratio_lines KEY: markdown list of berth/peer ratios of the values in the
# associative array named KEY (or the first runtime against the others when
# berth is not measured).
ratio_lines() {
    local -n vals=$1
    local base=${names[0]} n
    for n in "${names[@]}"; do [ "$n" = berth ] && base=berth; done
    for n in "${names[@]}"; do
        [ "$n" = "$base" ] && continue
        printf -- '- %s/%s = %s\n' "$base" "$n" "$(ratio "${vals[$base]}" "${vals[$n]}")"
    done
}
