#!/usr/bin/env bash
# Builds the binaries that berth runs where a dynamic one would not do,
# or would cost more, as static (position-independent) binaries, and installs
# them next to the release binaries (target/release), where berth and the
# tests look for them:
# - berth-init, the PID 1 of `berth run --init`: it runs inside images that
#   may have no libc at all;
# - berth-monitor, one per container: static, it maps neither ld.so nor
#   libgcc_s and touches far fewer libc pages (resident memory ~1.3 MiB
#   instead of ~2.1 MiB; bench/run.sh compares it with conmon);
# - berth-runtime: it re-executes itself from a sealed copy for every
#   create/run/exec (CVE-2019-5736, crates/exeseal), so it starts twice per
#   container; static (libseccomp linked in) it skips ld.so and the shared
#   libraries' relocations each time, which pays for the second start
#   (BENCHMARKS.md). It also needs nothing from an image it ends up running in.
#   It is linked at a fixed address (not position-independent, as Debian's
#   runc is): a static-pie relocates ~12 000 pointers and copies ~50 pages
#   at every start, ~0.2 ms each of the two starts per container. It lives
#   for a few milliseconds and handles no attacker-shaped bytes; the
#   long-lived ones (monitor, init, pause) keep ASLR.
# Run it after `cargo build --release`, which builds dynamic ones.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
target=${CARGO_TARGET_DIR:-$PWD/target}
triple=$(rustc -vV | sed -n 's/^host: //p')
# libseccomp-sys links libseccomp.a (Debian's libseccomp-dev) instead of the .so.
export LIBSECCOMP_LINK_TYPE=static
LIBSECCOMP_LIB_PATH=$(pkg-config --variable=libdir libseccomp)
export LIBSECCOMP_LIB_PATH
RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols" \
    cargo build --release -p berth-init -p berth-pause -p berth-monitor --bins --target "$triple" --target-dir "$target/static"
# Other flags, so its own target dir: the two builds would otherwise undo each other.
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static -C strip=symbols" \
    cargo build --release -p berth-runtime --bin berth-runtime --target "$triple" --target-dir "$target/static-fixed"
mkdir -p "$target/release"
for b in berth-init berth-pause berth-monitor berth-runtime; do
    # Replace, not overwrite: cargo may hard-link its own artifacts here.
    dir=static
    [ "$b" != berth-runtime ] || dir=static-fixed
    install -m 0755 "$target/$dir/$triple/release/$b" "$target/release/.$b.static"
    mv -f "$target/release/.$b.static" "$target/release/$b"
    if LC_ALL=C ldd "$target/release/$b" 2>&1 | grep -q '=>'; then
        echo "build-static.sh: $target/release/$b is not static" >&2
        exit 1
    fi
done
