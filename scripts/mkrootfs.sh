#!/usr/bin/env bash
# Build a minimal busybox rootfs in DIR: one symlink per applet in /bin,
# /etc/passwd and /etc/group (root, nobody), /tmp (1777) and empty mount points.
# The binary must be statically linked (Debian's busybox-static); override with $BUSYBOX.
set -euo pipefail

usage() { echo "usage: $0 DIR" >&2; exit 2; }
[ $# -eq 1 ] || usage
dir=$1

find_busybox() {
    local c
    for c in "${BUSYBOX:-}" /bin/busybox /usr/local/libexec/berth/busybox; do
        [ -n "$c" ] && [ -x "$c" ] || continue
        # A dynamic busybox would fail inside the rootfs without its libraries.
        # (ldd exits 1 for static binaries, so look at its words, not its status.)
        case "$(LC_ALL=C ldd "$c" 2>&1 || true)" in
        *"not a dynamic executable"* | *"statically linked"*) ;;
        *) continue ;;
        esac
        echo "$c"; return 0
    done
    echo "$0: no static busybox found (install busybox-static or set BUSYBOX)" >&2
    return 1
}
bb=$(find_busybox)

mkdir -p "$dir"
cd "$dir"
mkdir -p bin etc root proc sys dev tmp
chmod 1777 tmp
chmod 0700 root
cp "$bb" bin/busybox
# One process for all ~270 symlinks keeps this well under a second
# (perl-base is Essential on Debian and Ubuntu).
"$bb" --list | perl -ne 'chomp; next if $_ eq "" || $_ eq "busybox"; symlink("busybox", "bin/$_") or $!{EEXIST} or die "bin/$_: $!\n"'

cat > etc/passwd <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > etc/group <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
: > etc/hosts
: > etc/resolv.conf
echo berth > etc/hostname
