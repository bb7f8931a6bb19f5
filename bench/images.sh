#!/usr/bin/env bash
# Build the pull benchmark's images as OCI layouts under $BENCH_IMAGES
# (default /var/tmp/berth-bench), cached between runs:
#   busybox  one ~1 MB layer from Debian's busybox-static
#   debian   debootstrap --variant=minbase bookworm (~50 MB gzip, ~127 MB of files)
#   ten      busybox plus nine layers of ~2 MB of files each
# Needs root, umoci, debootstrap (reaches Debian's archive once).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out=${BENCH_IMAGES:-/var/tmp/berth-bench}
mkdir -p "$out"

if [ ! -f "$out/busybox/index.json" ]; then
    rm -rf "$out/busybox" "$out/busybox-rootfs"
    "$repo/scripts/mkrootfs.sh" "$out/busybox-rootfs"
    "$repo/scripts/mkimage.sh" "$out/busybox" latest "$out/busybox-rootfs"
fi

if [ ! -f "$out/debian/index.json" ]; then
    rm -rf "$out/debian"
    if [ ! -x "$out/debian-rootfs/bin/bash" ]; then
        rm -rf "$out/debian-rootfs"
        debootstrap --variant=minbase bookworm "$out/debian-rootfs" >"$out/debootstrap.log"
    fi
    r=$out/debian-rootfs
    rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/dev/* "$r"/run/* "$r"/tmp/*
    "$repo/scripts/mkimage.sh" "$out/debian" latest "$r"
fi

if [ ! -f "$out/ten/index.json" ]; then
    rm -rf "$out/ten" "$out/ten-layers"
    dirs=("$out/busybox-rootfs")
    for i in 1 2 3 4 5 6 7 8 9; do
        d=$out/ten-layers/$i
        mkdir -p "$d/data/$i"
        # Half compressible text, half random, in 64 files of ~32 KiB.
        for f in $(seq 1 64); do
            { seq 1 3000; head -c 16384 /dev/urandom; } >"$d/data/$i/f$f"
        done
        dirs+=("$d")
    done
    "$repo/scripts/mkimage.sh" "$out/ten" latest "${dirs[@]}"
fi
echo "$out"
