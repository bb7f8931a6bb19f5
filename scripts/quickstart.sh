#!/usr/bin/env bash
# From a fresh clone, as root: install dependencies, build berth in release mode,
# serve a busybox image from a private docker-registry on loopback, and
# `berth run` it: berth pulls the image, makes the container and runs it.
# Everything it makes lives in one temp dir and is removed at exit.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

bash scripts/install-deps.sh
cargo build --release
bash scripts/build-static.sh
berth_bin=${CARGO_TARGET_DIR:-$PWD/target}/release/berth

work=$(mktemp -d /tmp/berth-quickstart.XXXXXX)
root=$work/root
run_dir=/run/berth-quickstart-$$
bridge=bq$$
reg_pid=
# shellcheck source=scripts/private-net.sh
source scripts/private-net.sh
# berth's default network, private to this run (its own bridge and subnet),
# so nothing of it stays on the host.
private_net_write "$work/net.d" "$bridge"
berth() { "$berth_bin" --root "$root" --run-dir "$run_dir" --network-config-dir "$work/net.d" "$@"; }
cleanup() {
    # Every step runs, whatever the one before it returned.
    set +e
    berth rm -f $(berth ps -aq 2>/dev/null) >/dev/null 2>&1 || true
    [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null && wait "$reg_pid" 2>/dev/null
    private_net_remove "$root" "$bridge"
    rm -rf "$work" "$run_dir"
}
trap cleanup EXIT

# A busybox image, as an OCI layout.
bash scripts/mkrootfs.sh "$work/rootfs" >/dev/null
bash scripts/mkimage.sh "$work/layout" latest "$work/rootfs"

# A private registry on a free loopback port.
port=$(perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(LocalAddr => "127.0.0.1", Listen => 1)->sockport')
cat >"$work/registry.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
    sleep 0.1
done
skopeo copy -q --dest-tls-verify=false "oci:$work/layout:latest" "docker://127.0.0.1:$port/busybox:latest"

image=127.0.0.1:$port/busybox:latest
echo "+ berth run --rm $image sh -c '...'"
berth run --rm "$image" \
    sh -c 'echo "hello from a berth container"; uname -sr; id; hostname; ip -o -4 addr show eth0'
