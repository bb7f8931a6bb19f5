#!/usr/bin/env bash
# Install what building and testing berth needs on Debian 12 / Ubuntu, as root.
# Idempotent: when everything is present it only checks and exits (no apt-get update).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
export PATH="$HOME/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

if [ "$(id -u)" -ne 0 ]; then
    echo "$0: run as root (apt-get install)" >&2
    exit 1
fi

# Build: compiler, linker, libseccomp for the runtime, protoc for the CRI proto
# (crates/cri/build.rs).
# Tests and benchmarks: the peer runtimes and clients, image tools, measuring tools.
pkgs=(
    build-essential pkg-config libseccomp-dev protobuf-compiler
    ca-certificates curl git jq perl tar gzip time util-linux procps iproute2 strace hyperfine
    runc crun podman conmon containerd umoci skopeo docker-registry openssl apache2-utils debootstrap
    containernetworking-plugins nftables iptables catatonit uidmap
)

# busybox-static conflicts with Debian's dynamic `busybox`, which some systems
# need (initramfs-tools). If that one is present, keep it and unpack the static
# binary beside it instead of installing both packages.
static_bb_dir=/usr/local/libexec/berth
have_dynamic_bb=false
if dpkg-query -W -f='${Status}' busybox 2>/dev/null | grep -q 'install ok installed'; then
    have_dynamic_bb=true
else
    pkgs+=(busybox-static)
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
need_bb=false
if $have_dynamic_bb && [ ! -x "$static_bb_dir/busybox" ]; then
    need_bb=true
fi

if [ ${#missing[@]} -gt 0 ] || $need_bb; then
    apt-get update -q
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
fi
if $need_bb; then
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -q busybox-static </dev/null)
    dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/x"
    install -D -m 0755 "$tmp/x/bin/busybox" "$static_bb_dir/busybox"
    rm -rf "$tmp"
    echo "install-deps: static busybox unpacked to $static_bb_dir/busybox (dynamic busybox kept)"
fi

# Rust: keep an existing toolchain; otherwise install rustup's stable toolchain.
if ! command -v cargo >/dev/null; then
    echo "install-deps: installing Rust with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
        sh -s -- -y --profile minimal --component rustfmt,clippy </dev/null
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if command -v rustup >/dev/null; then
    for c in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
    done
fi

cargo --version
echo "install-deps: ok"
