#!/usr/bin/env bash
# Run berth's cgroup-sensitive root tests on a pure cgroup v2 host: a qemu VM
# (TCG) that boots Debian's linux-image-amd64 kernel with a busybox initramfs.
#
# The guest mounts the host's / read-only over 9p, plus this repo and a
# writable results dir, chroots into it with fresh /proc, /sys, /dev, /tmp and
# /run, mounts cgroup2 at /sys/fs/cgroup with every available controller
# enabled in the root's subtree_control, and runs the test binaries built here:
# the cgroups crate's host tests and tests/{cgroups,runtime}.rs, with
# BERTH_RUNTIME pointing at the built runtime.
#
# Exit status: 0 only if the VM finished and every test binary passed.
# Run as root from anywhere in a clone. Environment:
#   BERTH_VM_TIMEOUT  seconds before the VM is killed (default 1200)
#   BERTH_VM_TESTS    test targets to run (default "host cgroups runtime")
#   BERTH_VM_FILTER   a test-name filter passed to every test binary
#   BERTH_VM_TEST_ARGS  more arguments for every test binary (e.g. --show-output)
#   BERTH_RUNTIME     the runtime under test (default: cargo build --release)
#   BERTH_VM_PROFILE  cargo profile of the test binaries: release (default, as
#                     scripts/test.sh builds them) or debug
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd -P)
export PATH="$HOME/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
timeout_s=${BERTH_VM_TIMEOUT:-1200}
read -r -a wanted <<<"${BERTH_VM_TESTS:-host cgroups runtime}"
filter=${BERTH_VM_FILTER:-}
extra_args=${BERTH_VM_TEST_ARGS:-}
started=$SECONDS

say() { printf 'vm-test: %s\n' "$*"; }
die() { printf 'vm-test: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (apt-get, qemu's 9p export of /)"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# A statically linked busybox, as scripts/mkrootfs.sh finds it.
static_busybox() {
    local c
    for c in "${BUSYBOX:-}" /bin/busybox /usr/local/libexec/berth/busybox; do
        [ -n "$c" ] && [ -x "$c" ] || continue
        case "$(LC_ALL=C ldd "$c" 2>&1 || true)" in
        *"not a dynamic executable"* | *"statically linked"*) echo "$c"; return 0 ;;
        esac
    done
    return 1
}

# --- 1. dependencies -------------------------------------------------------
if ! command -v cargo >/dev/null || ! command -v jq >/dev/null || ! static_busybox >/dev/null; then
    say "installing the build and test dependencies (scripts/install-deps.sh)"
    bash scripts/install-deps.sh
fi
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
installed linux-image-amd64 || need+=(linux-image-amd64)
command -v cpio >/dev/null || need+=(cpio)
command -v xz >/dev/null || need+=(xz-utils)
command -v zstd >/dev/null || need+=(zstd)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need[@]}" </dev/null
fi
bb=$(static_busybox) || die "no static busybox (install busybox-static)"

# Debian's kernel: the image linux-image-amd64 depends on, not the running one.
kpkg=$(dpkg-query -W -f='${Depends}' linux-image-amd64 | grep -o 'linux-image-[0-9][^ ,]*' | head -n1)
[ -n "$kpkg" ] || die "cannot tell which kernel linux-image-amd64 depends on"
vmlinuz=$(dpkg-query -L "$kpkg" | grep '^/boot/vmlinuz-' | head -n1)
[ -n "$vmlinuz" ] && [ -f "$vmlinuz" ] || die "$kpkg has no /boot/vmlinuz-*"
kver=${vmlinuz#/boot/vmlinuz-}
moddir=/lib/modules/$kver
[ -f "$moddir/modules.dep" ] || die "$moddir/modules.dep missing"
say "kernel $kver ($kpkg)"

# --- 2. build the runtime and the test binaries -----------------------------
if [ -n "${BERTH_RUNTIME:-}" ]; then
    runtime=$BERTH_RUNTIME
else
    runtime=$(cargo build --release -p berth-runtime --message-format=json |
        jq -r 'select(.reason == "compiler-artifact" and .target.name == "berth-runtime" and .executable != null) | .executable' |
        tail -n1)
fi
[ -x "$runtime" ] || die "runtime $runtime is not executable"
target=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
case "${BERTH_VM_PROFILE:-release}" in
release) profile=(--release) ;;
debug) profile=() ;;
*) die "BERTH_VM_PROFILE must be release or debug" ;;
esac
tests_json=$(cargo test "${profile[@]}" --workspace --no-run --message-format=json)
declare -A bin=()
while read -r src exe; do
    case "$src" in
    */crates/cgroups/tests/host.rs) bin[host]=$exe ;;
    "$repo"/tests/cgroups.rs) bin[cgroups]=$exe ;;
    "$repo"/tests/runtime.rs) bin[runtime]=$exe ;;
    esac
done < <(jq -r 'select(.reason == "compiler-artifact" and .executable != null and (.target.kind | index("test"))) | "\(.target.src_path) \(.executable)"' <<<"$tests_json")
run_list=()
for t in "${wanted[@]}"; do
    [ -n "${bin[$t]:-}" ] || die "no test binary for target $t"
    run_list+=("$t=${bin[$t]}")
done

# --- 3. the initramfs: busybox, the 9p modules, /init ------------------------
work=$target/vm-test
rm -rf "$work"
mkdir -p "$work/initramfs"/{bin,proc,sys,dev,host,mods} "$work/out"
ird=$work/initramfs
cp "$bb" "$ird/bin/busybox"

# modules.dep lists every module's full dependency closure; load deps first.
declare -A modpath=() loaded=()
while IFS= read -r line; do
    p=${line%%:*}
    n=${p##*/}; n=${n%%.ko*}; n=${n//-/_}
    modpath[$n]=$p
done <"$moddir/modules.dep"
order=()
add_module() {
    local n=${1//-/_} p d deps
    [ -z "${loaded[$n]:-}" ] || return 0
    loaded[$n]=1
    if [ -z "${modpath[$n]:-}" ]; then
        # built into the kernel, or absent (then mount -t 9p fails loudly)
        grep -q "/$n.ko\$" "$moddir/modules.builtin" 2>/dev/null ||
            grep -q "/${1}.ko\$" "$moddir/modules.builtin" 2>/dev/null ||
            say "module $1 is neither built in nor in modules.dep"
        return 0
    fi
    p=${modpath[$n]}
    deps=$(grep -m1 "^$p:" "$moddir/modules.dep" | cut -d: -f2)
    for d in $deps; do
        d=${d##*/}; add_module "${d%%.ko*}"
    done
    order+=("$p")
}
for m in virtio_pci 9pnet_virtio 9p; do
    add_module "$m"
done
i=0
for p in "${order[@]}"; do
    f=${p##*/}; dst=$ird/mods/$(printf '%02d' $i)-${f%%.ko*}.ko
    case "$f" in
    *.ko.xz) xz -dc "$moddir/$p" >"$dst" ;;
    *.ko.zst) zstd -qdc "$moddir/$p" >"$dst" ;;
    *.ko.gz) gzip -dc "$moddir/$p" >"$dst" ;;
    *) cp "$moddir/$p" "$dst" ;;
    esac
    i=$((i + 1))
done
say "initramfs modules: $(cd "$ird/mods" && echo *)"

cat >"$ird/init" <<'INIT'
#!/bin/busybox sh
# pid 1 of the test VM: mount the host over 9p, build a fresh system view in
# it, then make it the root and become the test runner inside it.
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
fail() { echo "vm-init: $*"; echo o >/proc/sysrq-trigger; sleep 60; }
for m in /mods/*.ko; do
    [ -e "$m" ] || continue
    insmod "$m" || fail "insmod $m"
done
o=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$o,ro,cache=loose" hostroot /host || fail "mount hostroot"
h=/host
mount -t proc proc $h/proc
mount -t sysfs sys $h/sys
mount -t cgroup2 -o nsdelegate cgroup2 $h/sys/fs/cgroup || fail "mount cgroup2"
mount -t devtmpfs dev $h/dev
mkdir -p $h/dev/pts $h/dev/shm $h/dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts $h/dev/pts
ln -sf pts/ptmx $h/dev/ptmx 2>/dev/null
mount -t tmpfs -o mode=1777 shm $h/dev/shm
mount -t mqueue mqueue $h/dev/mqueue
ln -sfn /proc/self/fd $h/dev/fd
ln -sf /proc/self/fd/0 $h/dev/stdin
ln -sf /proc/self/fd/1 $h/dev/stdout
ln -sf /proc/self/fd/2 $h/dev/stderr
mount -t tmpfs -o mode=1777 tmp $h/tmp
mount -t tmpfs -o mode=0755 run $h/run
mkdir -p $h/run/lock $h/run/netns $h/run/vm-out
[ -d $h/var/tmp ] && mount -t tmpfs -o mode=1777 vartmp $h/var/tmp
mount -t 9p -o "$o,cache=none" out $h/run/vm-out || fail "mount out"
repo=$(cat $h/run/vm-out/repo-path)
mkdir -p "$h$repo" 2>/dev/null
mount -t 9p -o "$o,ro,cache=loose" repo "$h$repo" || fail "mount repo"
target=$(cat $h/run/vm-out/target-path)
if [ "${target#"$repo"/}" = "$target" ]; then
    mkdir -p "$h$target" 2>/dev/null
    mount -t 9p -o "$o,ro,cache=loose" target "$h$target" || fail "mount target"
fi
[ -d /sys/kernel/security ] && mount -t securityfs securityfs $h/sys/kernel/security 2>/dev/null
[ -d /sys/fs/bpf ] && mount -t bpf bpf $h/sys/fs/bpf 2>/dev/null
# switch_root, not chroot: a chrooted process may not create user namespaces.
exec switch_root $h /bin/bash /run/vm-out/inner.sh
INIT
chmod 0755 "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

# --- 4. the test runner inside the VM ---------------------------------------
out=$work/out
echo "$repo" >"$out/repo-path"
echo "$target" >"$out/target-path"
printf '%s\n' "${run_list[@]}" >"$out/tests"
{
    printf 'export BERTH_RUNTIME=%q BERTH_ROOTFS_SCRIPT=%q BERTH_VM_FILTER=%q BERTH_VM_TEST_ARGS=%q\n' \
        "$runtime" "$repo/scripts/mkrootfs.sh" "$filter" "$extra_args"
    cat <<'INNER'
# pid 1 on the host's tree: enable the controllers, run each test binary, record
# its exit status in /run/vm-out/status, then power off.
set -u
out=/run/vm-out
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp RUST_BACKTRACE=1 LANG=C.UTF-8
off() { sync; echo o >/proc/sysrq-trigger; sleep 60; }
trap off EXIT
hostname berth-vm
ip link set lo up 2>/dev/null
cg=/sys/fs/cgroup
echo "vm: kernel $(uname -r), cgroup2 controllers: $(cat $cg/cgroup.controllers)"
for c in $(cat $cg/cgroup.controllers); do
    echo "+$c" >$cg/cgroup.subtree_control || echo "vm: cannot enable $c"
done
echo "vm: subtree_control: $(cat $cg/cgroup.subtree_control)"
echo "vm: runtime $BERTH_RUNTIME"
: >$out/status
while IFS='=' read -r name exe; do
    echo "vm: ==> $name ($exe)"
    args=(--test-threads=2)
    read -r -a more <<<"$BERTH_VM_TEST_ARGS"
    args+=("${more[@]}")
    [ -n "$BERTH_VM_FILTER" ] && args+=("$BERTH_VM_FILTER")
    (cd / && "$exe" "${args[@]}") </dev/null 2>&1 | tee "$out/$name.log"
    echo "$name ${PIPESTATUS[0]}" >>$out/status
done <$out/tests
# Shared parents such as berth-test/ may stay; a container's own cgroup may not.
left=$(find $cg -mindepth 2 -type d | head -n 5)
[ -z "$left" ] || echo "vm: cgroups left behind: $left"
dmesg >$out/dmesg 2>/dev/null
echo finished >$out/done
INNER
} >"$out/inner.sh"

# --- 5. boot -----------------------------------------------------------------
vfs=(-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
    -virtfs "local,path=$repo,mount_tag=repo,security_model=none,readonly=on,multidevs=remap"
    -virtfs "local,path=$out,mount_tag=out,security_model=none,multidevs=remap")
case "$target/" in
"$repo"/*) ;;
*) vfs+=(-virtfs "local,path=$target,mount_tag=target,security_model=none,readonly=on,multidevs=remap") ;;
esac
say "booting $vmlinuz (timeout ${timeout_s}s); tests: ${wanted[*]}"
set +e
timeout -k 10 "$timeout_s" qemu-system-x86_64 -accel tcg -cpu max -m 1024 -smp 2 \
    -nographic -no-reboot -nic none \
    -kernel "$vmlinuz" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 panic=-1 loglevel=1" \
    "${vfs[@]}" </dev/null 2>&1 | tee "$work/console.log"
qemu_rc=${PIPESTATUS[0]}
set -e

# --- 6. verdict ----------------------------------------------------------------
say "VM exited with status $qemu_rc after $((SECONDS - started)) s (console: $work/console.log)"
failed=0
if [ ! -f "$out/done" ]; then
    [ "$qemu_rc" -eq 124 ] && say "the VM timed out after ${timeout_s}s"
    say "the VM did not finish the test run"
    failed=1
fi
for t in "${wanted[@]}"; do
    rc=$(awk -v t="$t" '$1 == t {print $2}' "$out/status" 2>/dev/null)
    summary=$(grep -h '^test result:' "$out/$t.log" 2>/dev/null | tail -n1)
    say "$t: ${summary:-no result} (exit ${rc:-none})"
    [ "${rc:-1}" = 0 ] || failed=1
done
if [ "$failed" -ne 0 ]; then
    say "FAILED (logs in $out)"
    exit 1
fi
say "all VM tests passed in $((SECONDS - started)) s"
