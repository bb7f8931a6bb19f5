#!/usr/bin/env bash
# `berth run` on its default bridge network against podman on podman's
# default network, side by side in one run (issue 6):
#   berth      `berth run --rm IMAGE true` (the fast in-process bridge path)
#   berth-cni  the same through the CNI plugins (--network-backend cni)
#   podman     `podman run --rm IMAGE true` (netavark, podman's default)
# hyperfine, BENCH_ROUNDS rounds with the order rotated, runs pooled.
# berth's default network lives in a private CNI config dir, on a bridge and
# subnet of this run alone; podman has a private --root/--runroot. The image
# comes from a private docker-registry on loopback. Everything is removed at
# exit. Environment: BENCH_ROUNDS (3), BENCH_RUNS (20), BENCH_WARMUP (3).
set -euo pipefail
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
bench_dir=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$bench_dir")
# shellcheck source=bench/peers.sh
source "$bench_dir/peers.sh"
# shellcheck source=scripts/private-net.sh
source "$repo/scripts/private-net.sh"
results=$bench_dir/results
mkdir -p "$results"
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root" >&2; exit 1; }
for t in docker-registry skopeo podman hyperfine jq curl perl nft; do
    command -v "$t" >/dev/null || { echo "$0: $t is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
target=${CARGO_TARGET_DIR:-$repo/target}/release
berth_bin=${BERTH_BIN:-$target/berth}
[ -x "$berth_bin" ] || { echo "$0: build first: cargo build --release" >&2; exit 1; }
rounds=${BENCH_ROUNDS:-3} runs=${BENCH_RUNS:-20} warmup=${BENCH_WARMUP:-3}

work=$(mktemp -d /var/tmp/berth-bench-net.XXXXXX)
run_dir=/run/bbn-$$
bridge=bbn$$
pids=()
berth="$berth_bin --root $work/berth --run-dir $run_dir --network-config-dir $work/net.d"
podman_config "$work"
podman="podman --root $work/podman/root --runroot $work/podman/run --storage-driver overlay"
podman0_before=$(ip -o link show podman0 2>/dev/null || true)
cleanup() {
    set +e
    # shellcheck disable=SC2046
    $berth rm -f $($berth ps -aq 2>/dev/null) >/dev/null 2>&1
    $podman rm -f -a -t 0 >/dev/null 2>&1
    $podman system reset -f >/dev/null 2>&1
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    private_net_remove "$work/berth" "$bridge"
    [ -n "$podman0_before" ] || ip link del podman0 2>/dev/null
    grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$work" "$run_dir"
}
trap cleanup EXIT

echo "# bench/net.sh $(date -u +%FT%TZ) on $(uname -r), $(nproc) CPUs" >&2
bash "$repo/scripts/mkrootfs.sh" "$work/rootfs" >/dev/null
bash "$repo/scripts/mkimage.sh" "$work/layout" latest "$work/rootfs"
port=$(perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(LocalAddr => "127.0.0.1", Listen => 1)->sockport')
cat >"$work/registry.yml" <<YAML
version: 0.1
storage:
  filesystem: {rootdirectory: $work/registry}
http: {addr: 127.0.0.1:$port}
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
skopeo copy -q --dest-tls-verify=false "oci:$work/layout:latest" "docker://127.0.0.1:$port/bb:latest"
ref=127.0.0.1:$port/bb:latest

# berth's default network for this run: its own bridge and /24.
private_net_write "$work/net.d" "$bridge"
{"cniVersion": "1.0.0", "name": "berth", "berth": {"bench": true},
 "plugins": [
  {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.252.$third.0/24", "gateway": "10.252.$third.1"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$work/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
  {"type": "firewall"},
  {"type": "tuning"}]}
JSON

$berth pull -q "$ref" >/dev/null
$podman pull -q --tls-verify=false "$ref" >/dev/null

declare -A cmd=(
    [berth]="$berth run --rm $ref true"
    [berth-cni]="$berth --network-backend cni run --rm $ref true"
    [podman]="$podman run --rm $ref true"
)
order=(berth berth-cni podman)
for n in "${order[@]}"; do
    # shellcheck disable=SC2086
    ${cmd[$n]} || { echo "$0: $n: '${cmd[$n]}' failed" >&2; exit 1; }
done
rm -f "$results"/net-round*.json
for r in $(seq "$rounds"); do
    args=()
    for n in "${order[@]}"; do args+=(-n "$n" "${cmd[$n]}"); done
    hyperfine -N -w "$warmup" -r "$runs" --export-json "$results/net-round$r.json" "${args[@]}" >&2
    order=("${order[@]:1}" "${order[0]}")
done
median() { jq -s '[.[].results[] | select(.command == "'"$1"'") | .times[]] | sort | .[length/2|floor] * 1000' "$results"/net-round*.json; }
b=$(median berth) bc=$(median berth-cni) p=$(median podman)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ms() { awk -v a="$1" 'BEGIN { printf "%.1f", a }'; }
{
    echo "| \`run --rm IMAGE true\` on the default network (median of $((rounds * runs)) runs each) | time | /podman |"
    echo "|---|---|---|"
    echo "| berth, fast bridge path | $(ms "$b") ms | $(ratio "$b" "$p") |"
    echo "| berth, CNI plugins (--network-backend cni) | $(ms "$bc") ms | $(ratio "$bc" "$p") |"
    echo "| podman (netavark) | $(ms "$p") ms | 1.00 |"
} | tee "$results/net-summary.md"
