# Sourced by bench scripts: private set-ups of the peer tools.

# Writes DIR/config.toml for a containerd whose root, state, sockets and
# plugins all live under DIR (CRI and tracing off), so a bench never touches
# the host's containerd.
containerd_config() {
    local dir=$1
    mkdir -p "$dir"
    cat >"$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$dir/sock"
[ttrpc]
  address = "$dir/sock.ttrpc"
[debug]
  address = "$dir/debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
TOML
}

# Writes DIR/containers.conf for a podman that runs on runc (its default
# here, crun, refuses this host's hybrid cgroups), logs events to a file in
# DIR and uses cgroupfs, and exports CONTAINERS_CONF to it.
podman_config() {
    local dir=$1
    cat >"$dir/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
events_logger = "file"
events_logfile_path = "$dir/podman-events.log"
cgroup_manager = "cgroupfs"
CONF
    export CONTAINERS_CONF=$dir/containers.conf
}
