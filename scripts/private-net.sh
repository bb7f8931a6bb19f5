# Sourced by scripts and benches that run berth with a default network of
# their own: a private CNI config dir whose `berth` network uses a bridge and
# a /24 of 10.252.0.0/16 no route of the host covers, and the removal of what
# berth then made on the host for it.

# private_net_write DIR BRIDGE: writes DIR/berth.conflist (host-local data in
# DIR/ipam).
private_net_write() {
    local dir=$1 bridge=$2 routes third
    routes=$(ip -4 route show table all)
    for third in $(seq 0 255); do
        case "$routes" in *"10.252.$third."*) continue ;; esac
        break
    done
    mkdir -p "$dir"
    cat >"$dir/berth.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "berth", "berth": {"private": true},
 "plugins": [
  {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.252.$third.0/24", "gateway": "10.252.$third.1"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$dir/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
  {"type": "firewall"},
  {"type": "tuning"}]}
JSON
}

# private_net_remove ROOT BRIDGE: deletes the bridge, the fast path's table
# for it, and berth's isolation table of store ROOT
# (crates/engine/src/isolation.rs names it by an FNV-1a hash of ROOT).
private_net_remove() {
    local root=$1 bridge=$2
    ip link del "$bridge" 2>/dev/null
    nft delete table ip "berth_$bridge" 2>/dev/null
    nft delete table ip "$(perl -e 'my $h = 0x811c9dc5; for (split //, $ARGV[0]) { $h ^= ord; $h = ($h * 0x01000193) & 0xffffffff } printf "berth_iso_%08x", $h' "$root")" 2>/dev/null
    return 0
}
