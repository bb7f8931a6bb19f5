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
