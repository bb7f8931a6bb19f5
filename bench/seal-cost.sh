#!/usr/bin/env bash
# What the CVE-2019-5736 protection costs per `RUNTIME run`: bench/runtime.sh
# with the shipped berth-runtime (`berth`) beside a build of the same commit
# that skips the seal (`base`, cargo feature `bench-unsealed`, built the way
# scripts/build-static.sh builds the shipped one, into its own target dir),
# and runc and crun. berth/base is the protection's cost.
# Run as root after `cargo build --release && bash scripts/build-static.sh`.
# Environment: as bench/runtime.sh (BENCH_RUNS, BENCH_ROUNDS, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
target=${CARGO_TARGET_DIR:-$PWD/target}
triple=$(rustc -vV | sed -n 's/^host: //p')
LIBSECCOMP_LIB_PATH=$(pkg-config --variable=libdir libseccomp)
LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=$LIBSECCOMP_LIB_PATH \
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static -C strip=symbols" \
    cargo build --release -p berth-runtime --bin berth-runtime --features bench-unsealed \
    --target "$triple" --target-dir "$target/bench-unsealed"
BENCH_RUNTIMES="berth base runc crun" \
BERTH_RUNTIME_BASE="$target/bench-unsealed/$triple/release/berth-runtime" \
    bash bench/runtime.sh
