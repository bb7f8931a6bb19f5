#!/usr/bin/env bash
# Pull + unpack from a loopback registry, side by side in one run:
#   berth pull, podman pull, ctr images pull, and the floor (curl | tar -xz).
# Each run starts from an empty store, made by hyperfine --prepare (untimed),
# which also runs `sync` so that no run pays for the previous run's writeback.
# Stores are never deleted between runs, only moved aside (containerd is
# restarted on a fresh root): on this host's ext4, creating inodes soon after
# deleting many costs every tool seconds of system time in the kernel's
# recently_deleted() scan (perf showed 40% of a pull there), which would time
# the previous run's cleanup rather than the pull. Everything moved aside is
# deleted at exit.
# Also times berth's re-pull of an image whose layers are present.
#
#   bench/pull.sh            all three images (busybox, debian, ten)
#   BENCH_PULL_IMAGES="busybox ten" bench/pull.sh
#   BENCH_RUNS=N             runs per command (default 10; 5 for debian)
#
# Results: bench/results/pull-IMAGE.json (hyperfine) and a ratio table on stdout.
set -euo pipefail
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
here=$(cd "$(dirname "$0")" && pwd)
source "$here/peers.sh"
repo=$(dirname "$here")
results=$here/results
mkdir -p "$results"
berth=${BERTH:-${CARGO_TARGET_DIR:-$repo/target}/release/berth}
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root" >&2; exit 1; }
[ -x "$berth" ] || { echo "$0: $berth is missing: cargo build --release" >&2; exit 1; }
for t in docker-registry skopeo podman containerd ctr hyperfine curl jq; do
    command -v $t >/dev/null || { echo "$0: $t is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
images_dir=$("$here/images.sh")
work=$(mktemp -d /var/tmp/berth-pull-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -f "$work/ctr/pid" ]; then
        p=$(cat "$work/ctr/pid")
        kill "$p" 2>/dev/null || true
        while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
    fi
    grep -F "$work/" /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The registry, on a free loopback port.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
addr=127.0.0.1:$port
cat >"$work/registry.yml" <<YAML
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: $work/registry}
  delete: {enabled: true}
http: {addr: $addr}
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://$addr/v2/" >/dev/null && break; sleep 0.1; done

# A private containerd.
containerd_config "$work/ctr"
mkdir -p "$work/trash"
# --prepare helpers: move a store aside; restart containerd on a fresh root.
cat >"$work/aside.sh" <<SH
#!/bin/sh
for d in "\$@"; do [ -e "\$d" ] && mv "\$d" "$work/trash/\$(date +%s%N)"; done
sync
SH
cat >"$work/ctr-fresh.sh" <<SH
#!/bin/sh
if [ -f "$work/ctr/pid" ]; then
    p=\$(cat "$work/ctr/pid")
    kill "\$p" 2>/dev/null
    while kill -0 "\$p" 2>/dev/null; do sleep 0.05; done
fi
sh "$work/aside.sh" "$work/ctr/root" "$work/ctr/state"
containerd --config "$work/ctr/config.toml" >>"$work/ctr/log" 2>&1 </dev/null &
echo \$! >"$work/ctr/pid"
for _ in \$(seq 200); do ctr -a "$work/ctr/sock" version >/dev/null 2>&1 && break; sleep 0.05; done
SH
chmod +x "$work/aside.sh" "$work/ctr-fresh.sh"
"$work/ctr-fresh.sh"
ctr_cmd="ctr -a $work/ctr/sock -n bench"

# A private podman store with file events (no journald).
podman_config "$work"
podman_cmd="podman --root $work/podman/root --runroot $work/podman/run --storage-driver overlay"

table=()
for img in ${BENCH_PULL_IMAGES:-busybox debian ten}; do
    skopeo copy -q --dest-tls-verify=false "oci:$images_dir/$img:latest" "docker://$addr/$img:latest"
    ref=$addr/$img:latest
    runs=${BENCH_RUNS:-10}
    [ "$img" = debian ] && runs=${BENCH_RUNS:-5}
    hyperfine --runs "$runs" --warmup 1 --style basic --export-json "$results/pull-$img.json" \
        -n berth --prepare "$work/aside.sh $work/berth" "$berth --root $work/berth pull -q $ref" \
        -n podman --prepare "$work/aside.sh $work/podman" "$podman_cmd pull -q --tls-verify=false $ref" \
        -n ctr --prepare "$work/ctr-fresh.sh" "$ctr_cmd images pull --plain-http $ref" \
        -n floor --prepare "$work/aside.sh $work/floor" "$here/pull-floor.sh $addr $img latest $work/floor" \
        -n berth-repull --prepare sync "$berth --root $work/berth-re pull -q $ref" \
        >"$results/pull-$img.txt" 2>&1 || { cat "$results/pull-$img.txt"; exit 1; }
    table+=("$(jq -r --arg img "$img" '
        (.results | map({(.command): .median}) | add) as $m
        | ([$m.podman, $m.ctr] | min) as $peer
        | "| \($img) | \($m.berth*1000|floor) ms | \($m.podman*1000|floor) ms | \($m.ctr*1000|floor) ms | \($m.floor*1000|floor) ms | \(($m.berth/$peer*100|round)/100) | \(($m.berth/$m.floor*100|round)/100) | \($m["berth-repull"]*1000|floor) ms |"' \
        "$results/pull-$img.json")")
done
echo "| image | berth | podman | ctr | curl+tar floor | berth / faster peer | berth / floor | berth re-pull |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${table[@]}"
