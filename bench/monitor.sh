#!/usr/bin/env bash
# Resident memory of the per-container monitor while its container runs
# (`sleep`), side by side: berth-monitor (on berth-runtime), podman's conmon
# and containerd's containerd-shim-runc-v2, each on the same busybox rootfs.
# Prints VmRSS and VmHWM (peak) of each monitor process, median of
# BENCH_RUNS (default 5) containers, and the ratios.
set -euo pipefail
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
here=$(cd "$(dirname "$0")" && pwd)
source "$here/peers.sh"
repo=$(dirname "$here")
target=${CARGO_TARGET_DIR:-$repo/target}/release
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root" >&2; exit 1; }
for b in berth-monitor berth-runtime; do
    [ -x "$target/$b" ] || { echo "$0: $target/$b is missing: cargo build --release" >&2; exit 1; }
done
for t in podman conmon runc ctr containerd containerd-shim-runc-v2 jq; do
    command -v $t >/dev/null || { echo "$0: $t is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
runs=${BENCH_RUNS:-5}
work=$(mktemp -d /tmp/berth-monitor-bench.XXXXXX)
ctr_pid=
cleanup() {
    podman --root "$work/podman/root" --runroot "$work/podman/run" rm -af -t 0 >/dev/null 2>&1 || true
    [ -n "$ctr_pid" ] && kill "$ctr_pid" 2>/dev/null && wait "$ctr_pid" 2>/dev/null
    grep -F "$work/" /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

bash "$repo/scripts/mkbundle.sh" "$work/bundle" "$target/berth-runtime" sleep 30 >/dev/null
rootfs=$work/bundle/rootfs

# "VmRSS VmHWM" in KiB of PID.
mem() { awk '/^VmRSS/ {r=$2} /^VmHWM/ {h=$2} END {print r, h}' "/proc/$1/status"; }

# berth-monitor: config file, PID line, then its own process.
berth_one() {
    local i=$1 d=$work/berth-$1
    mkdir -p "$d"
    cat >"$d/cfg.json" <<JSON
{"runtime":"$target/berth-runtime","runtimeRoot":"$work/berth-rt","id":"bench-mon-$i","bundle":"$work/bundle",
 "logPath":"$d/ctr.log","logDriver":"k8s-file","logMaxSize":null,"logMaxFile":1,"exitFile":"$d/exit.json"}
JSON
    coproc MON { exec "$target/berth-monitor" "$d/cfg.json"; }
    local mpid=$MON_PID cpid
    read -r cpid <&"${MON[0]}"
    mem "$mpid"
    kill -9 "$cpid"
    wait "$mpid" 2>/dev/null || true
}

# conmon, through podman with the same rootfs.
# This host's root cannot raise hard rlimits (HOST.md): podman's defaults
# would fail in crun's setrlimit.
podman_config "$work"
# crun refuses this hybrid-cgroup host (HOST.md); the monitor is what is measured.
podman_cmd=(podman --runtime /usr/sbin/runc --root "$work/podman/root" --runroot "$work/podman/run" --storage-driver vfs)
conmon_one() {
    local name=bench-conmon-$1 pid
    "${podman_cmd[@]}" run -d --name "$name" --network none --rootfs "$rootfs" /bin/sleep 30 >/dev/null
    pid=$("${podman_cmd[@]}" inspect --format '{{.State.ConmonPid}}' "$name")
    mem "$pid"
    "${podman_cmd[@]}" rm -f -t 0 "$name" >/dev/null
}

# containerd-shim-runc-v2, through a private containerd.
containerd_config "$work/ctr"
containerd --config "$work/ctr/config.toml" >"$work/ctr/log" 2>&1 &
ctr_pid=$!
for _ in $(seq 100); do ctr -a "$work/ctr/sock" version >/dev/null 2>&1 && break; sleep 0.1; done
shim_one() {
    local id=bench-shim-$1 pid
    ctr -a "$work/ctr/sock" -n bench run -d --rootfs "$rootfs" "$id" /bin/sleep 30 >/dev/null
    pid=$(pgrep -f "containerd-shim-runc-v2 -namespace bench -id $id" | head -1)
    mem "$pid"
    ctr -a "$work/ctr/sock" -n bench task kill -s SIGKILL "$id" >/dev/null
    for _ in $(seq 50); do ctr -a "$work/ctr/sock" -n bench task rm "$id" >/dev/null 2>&1 && break; sleep 0.1; done
    ctr -a "$work/ctr/sock" -n bench container rm "$id" >/dev/null
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A rss hwm
for name in berth conmon shim; do
    out=$(for i in $(seq "$runs"); do "${name}_one" "$i"; done)
    rss[$name]=$(awk '{print $1}' <<<"$out" | median)
    hwm[$name]=$(awk '{print $2}' <<<"$out" | median)
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "| monitor | VmRSS | VmHWM (peak) |"
echo "|---|---|---|"
echo "| berth-monitor | ${rss[berth]} KiB | ${hwm[berth]} KiB |"
echo "| conmon $(conmon --version | head -1 | awk '{print $3}') | ${rss[conmon]} KiB | ${hwm[conmon]} KiB |"
echo "| containerd-shim-runc-v2 | ${rss[shim]} KiB | ${hwm[shim]} KiB |"
echo
echo "- berth/conmon VmRSS = $(ratio "${rss[berth]}" "${rss[conmon]}"), peak = $(ratio "${hwm[berth]}" "${hwm[conmon]}")"
echo "- berth/shim VmRSS = $(ratio "${rss[berth]}" "${rss[shim]}"), peak = $(ratio "${hwm[berth]}" "${hwm[shim]}")"
