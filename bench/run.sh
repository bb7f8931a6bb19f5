#!/usr/bin/env bash
# `berth run` against its peers, side by side in one run (issue 5):
#  1. `run --rm --network none IMAGE true` with the image present:
#     berth vs `podman run --rm --network none` vs `ctr run --rm`, hyperfine,
#     BENCH_ROUNDS rounds with the order rotated, runs pooled;
#  2. resident memory of one container's monitor: berth-monitor vs conmon;
#  3. 100 containers started detached, listed (`ps -a` latency) and removed
#     in one `rm -f`: berth vs podman.
# Each tool has a private store and state under one temp dir (a private
# containerd, podman with --root/--runroot); the busybox image comes from a
# private docker-registry on loopback. Everything is removed at exit.
# Environment: BENCH_ROUNDS (3), BENCH_RUNS (20 per round), BENCH_WARMUP (3),
# BENCH_MANY (100).
set -euo pipefail
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
bench_dir=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$bench_dir")
# shellcheck source=bench/peers.sh
source "$bench_dir/peers.sh"
results=$bench_dir/results
mkdir -p "$results"
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root" >&2; exit 1; }
for t in docker-registry skopeo podman conmon containerd ctr hyperfine jq curl perl; do
    command -v "$t" >/dev/null || { echo "$0: $t is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
target=${CARGO_TARGET_DIR:-$repo/target}/release
berth_bin=${BERTH_BIN:-$target/berth}
[ -x "$berth_bin" ] || { echo "$0: build first: cargo build --release" >&2; exit 1; }
rounds=${BENCH_ROUNDS:-3} runs=${BENCH_RUNS:-20} warmup=${BENCH_WARMUP:-3} many=${BENCH_MANY:-100}

work=$(mktemp -d /var/tmp/berth-bench-run.XXXXXX)
run_dir=/run/bbr-$$
pids=()
berth="$berth_bin --root $work/berth --run-dir $run_dir"
podman_config "$work"
podman="podman --root $work/podman/root --runroot $work/podman/run --storage-driver overlay"
cleanup() {
    set +e
    # shellcheck disable=SC2046
    $berth rm -f $($berth ps -aq 2>/dev/null) >/dev/null 2>&1
    $podman rm -f -a -t 0 >/dev/null 2>&1
    $podman system reset -f >/dev/null 2>&1
    if [ -n "${ctr:-}" ]; then
        $ctr tasks kill -s KILL bench-run >/dev/null 2>&1
        $ctr containers rm bench-run >/dev/null 2>&1
    fi
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$work" "$run_dir"
}
trap cleanup EXIT

echo "# bench/run.sh $(date -u +%FT%TZ) on $(uname -r), $(nproc) CPUs" >&2
bash "$repo/scripts/mkrootfs.sh" "$work/rootfs" >/dev/null
bash "$repo/scripts/mkimage.sh" "$work/layout" latest "$work/rootfs"
port=$(perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(LocalAddr => "127.0.0.1", Listen => 1)->sockport')
cat >"$work/registry.yml" <<YAML
version: 0.1
storage:
  filesystem: {rootdirectory: $work/registry}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$port}
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
skopeo copy -q --dest-tls-verify=false "oci:$work/layout:latest" "docker://127.0.0.1:$port/bb:latest"
ref=127.0.0.1:$port/bb:latest

containerd_config "$work/ctr"
containerd --config "$work/ctr/config.toml" >"$work/ctr/log" 2>&1 </dev/null &
pids+=($!)
ctr="ctr -a $work/ctr/sock -n bench"
for _ in $(seq 200); do $ctr version >/dev/null 2>&1 && break; sleep 0.05; done

$berth pull -q "$ref" >/dev/null
$podman pull -q --tls-verify=false "$ref" >/dev/null
$ctr images pull --plain-http "$ref" >/dev/null
runc_version=$(runc --version | head -1)
echo "# runtimes: berth -> berth-runtime (and runc as berth-runc); podman and ctr -> $runc_version" >&2

# 1. run --rm, in rotated rounds; every run's time pooled per tool.
runc_bin=$(command -v runc)
declare -A cmd=(
    [berth]="$berth run --rm --network none $ref true"
    [berth-runc]="$berth run --rm --network none --runtime $runc_bin $ref true"
    [podman]="$podman run --rm --network none $ref true"
    [ctr]="$ctr run --rm $ref bench-run true"
)
order=(berth berth-runc podman ctr)
for n in "${order[@]}"; do
    # shellcheck disable=SC2086
    ${cmd[$n]} || { echo "$0: $n: '${cmd[$n]}' failed" >&2; exit 1; }
done
for r in $(seq "$rounds"); do
    args=()
    for n in "${order[@]}"; do args+=(-n "$n" "${cmd[$n]}"); done
    hyperfine -N -w "$warmup" -r "$runs" --export-json "$results/run-round$r.json" "${args[@]}" >&2
    order=("${order[@]:1}" "${order[0]}")
done
median() { jq -s '[.[].results[] | select(.command == "'"$1"'") | .times[]] | sort | .[length/2|floor] * 1000' "$results"/run-round*.json; }
b=$(median berth) br=$(median berth-runc) p=$(median podman) c=$(median ctr)

# 2. The monitor's resident memory, with one sleeping container each.
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
$berth run -d --name rss-probe --network none "$ref" sleep 300 >/dev/null
bid=$($berth inspect -f '{{.Id}}' rss-probe)
brss=$(rss "$(cat "$work/berth/containers/$bid/monitor.pid")")
$podman run -d --name rss-probe --network none "$ref" sleep 300 >/dev/null
prss=$(rss "$($podman inspect -f '{{.State.ConmonPid}}' rss-probe)")
$berth rm -f rss-probe >/dev/null
$podman rm -f -t 0 rss-probe >/dev/null

# 3. Many containers: start detached, list, remove all at once.
now() { date +%s.%N; }
many_for() { # NAME CLI...
    local name=$1 t0 t1 t2 ids
    shift
    t0=$(now)
    for i in $(seq "$many"); do "$@" run -d --network none --name "many-$i" "$ref" sleep 300 >/dev/null; done
    t1=$(now)
    hyperfine -N -w 2 -r 10 --export-json "$results/run-ps-$name.json" -n "$name ps" "$* ps -a" >&2
    ids=$("$@" ps -aq)
    # `rm -f` kills at once, as docker's does; podman's needs -t 0 for that.
    local rmflags=(-f)
    [ "$name" = podman ] && rmflags+=(-t 0)
    t2=$(now)
    # shellcheck disable=SC2086
    "$@" rm "${rmflags[@]}" $ids >/dev/null
    local t3
    t3=$(now)
    awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v ps="$(jq '.results[0].median * 1000' "$results/run-ps-$name.json")" \
        'BEGIN { printf "%f %f %f\n", (b - a) * 1000, ps, (d - c) * 1000 }'
}
# shellcheck disable=SC2086
read -r bstart bps brm <<<"$(many_for berth $berth)"
# shellcheck disable=SC2086
read -r pstart pps prm <<<"$(many_for podman $podman)"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ms() { awk -v a="$1" 'BEGIN { printf "%.1f", a }'; }
{
    echo "| \`run --rm IMAGE true\` (median of $((rounds * runs)) runs each) | berth | podman | ctr | berth/podman | berth/ctr |"
    echo "|---|---|---|---|---|---|"
    echo "| berth on berth-runtime | $(ms "$b") ms | $(ms "$p") ms | $(ms "$c") ms | $(ratio "$b" "$p") | $(ratio "$b" "$c") |"
    echo "| berth on runc (--runtime runc, the peers' runtime) | $(ms "$br") ms | | | $(ratio "$br" "$p") | $(ratio "$br" "$c") |"
    echo
    echo "| monitor RSS, one sleeping container | berth-monitor | conmon | berth/conmon |"
    echo "|---|---|---|---|"
    echo "| VmRSS | $brss KiB | $prss KiB | $(ratio "$brss" "$prss") |"
    echo
    echo "| $many containers | berth | podman | berth/podman |"
    echo "|---|---|---|---|"
    echo "| start all (\`run -d\` each) | $(ms "$bstart") ms | $(ms "$pstart") ms | $(ratio "$bstart" "$pstart") |"
    echo "| \`ps -a\` (median) | $(ms "$bps") ms | $(ms "$pps") ms | $(ratio "$bps" "$pps") |"
    echo "| \`rm -f\` all, one command | $(ms "$brm") ms | $(ms "$prm") ms | $(ratio "$brm" "$prm") |"
} | tee "$results/run-summary.md"
