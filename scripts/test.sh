#!/usr/bin/env bash
# Runs every check and test, as CI does: formatting, clippy, the release build
# and the whole test suite. Run as root from anywhere in a clone; root-only
# integration tests (tests/) skip themselves for other users.
# BERTH_TEST_RUNTIME=/usr/sbin/runc runs the integration tests against another
# runc-compatible runtime instead of the freshly built berth-runtime.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

step "install dependencies"
bash scripts/install-deps.sh

step "shell syntax"
for f in scripts/*.sh bench/*.sh .ci/run; do
    [ -f "$f" ] && bash -n "$f"
done

step "cargo fmt"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build --release"
cargo build --release
step "berth-init, berth-monitor and berth-runtime, static (scripts/build-static.sh)"
bash scripts/build-static.sh

target="${CARGO_TARGET_DIR:-$PWD/target}"
export BERTH_RUNTIME="${BERTH_TEST_RUNTIME:-$target/release/berth-runtime}"
export BERTH_ROOTFS_SCRIPT="$PWD/scripts/mkrootfs.sh"
export BERTH_INIT="$target/release/berth-init"
step "cargo test --release --workspace (runtime under test: $BERTH_RUNTIME)"
# --release reuses the dependencies the release build just compiled.
results=$(mktemp)
trap 'rm -f "$results"' EXIT
cargo test --release --workspace 2>&1 | tee "$results"

# --- pure cgroup v2: the cgroup-sensitive root tests again, inside a qemu VM ---
step "cgroup v2 VM: crates/cgroups host tests, tests/cgroups.rs, tests/runtime.rs (scripts/vm-test.sh)"
bash scripts/vm-test.sh 2>&1 | tee -a "$results"

step "all checks passed in $((SECONDS - started)) s"
# One closing line for every test run above, host and VM together.
awk '/test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "berth: %d passed, %d failed\n", p, f }' "$results"
