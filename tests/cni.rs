//! berth-cni against Debian's reference CNI plugins (/usr/lib/cni) and
//! test-written third-party plugins, as root.
//!
//! Every test makes its own netns, bridge (<= 15 chars) and /24 inside
//! 10.0.0.0/8 that no host route or address uses, keeps host-local's data,
//! the CNI cache and the config in a temp dir, and tears everything down in
//! `Drop` (DEL from the cache, netns, bridge) also when it fails. Traffic goes
//! only to loopback and to addresses on the test's own bridge.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_cni::{Cni, CniError, GcAttachment, NetworkConfigList, RuntimeConf};
use berth_tests::{need_root, run_ok, unique, Background};
use serde_json::{json, Value};

const PLUGINS: &str = "/usr/lib/cni";

fn sh(cmd: &[&str]) -> (bool, String) {
    let o = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .expect("spawn");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// A /24 (as "10.A.B") that no host route or address mentions.
fn free_subnet() -> String {
    let routes =
        sh(&["ip", "-4", "route", "show", "table", "all"]).1 + &sh(&["ip", "-4", "-o", "addr"]).1;
    let base = 150 + std::process::id() % 50;
    for n in 0..255u32 {
        let b = (n * 37 + std::process::id()) % 250 + 2;
        let p = format!("10.{base}.{b}.");
        if !routes.contains(&p) {
            return format!("10.{base}.{b}");
        }
    }
    panic!("no free /24 in 10.{base}.0.0/16");
}

/// One test's world: netns, bridge, subnet, temp dirs, an executor.
struct World {
    ns: String,
    bridge: String,
    subnet: String,
    network: String,
    tmp: tempfile::TempDir,
    cni: Cni,
    /// Attachments to DEL on drop (from the cache).
    attached: Vec<(String, String)>,
}

impl World {
    fn new() -> World {
        let ns = unique("cni-ns");
        run_ok(Command::new("ip").args(["netns", "add", &ns]));
        let n = unique("x");
        let mut parts = n.rsplit('-');
        let count = parts.next().unwrap();
        let bridge = format!("bc{}x{}", std::process::id() % 100000, count);
        assert!(bridge.len() <= 15, "{bridge}");
        let tmp = tempfile::Builder::new()
            .prefix("berth-cni.")
            .tempdir()
            .unwrap();
        fs::create_dir(tmp.path().join("scripts")).unwrap();
        let cni = Cni::new(
            vec![tmp.path().join("scripts"), PathBuf::from(PLUGINS)],
            tmp.path().join("cache"),
        );
        World {
            ns,
            bridge,
            subnet: free_subnet(),
            network: unique("cnit"),
            tmp,
            cni,
            attached: Vec::new(),
        }
    }

    fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.ns))
    }

    fn gw(&self) -> String {
        format!("{}.1", self.subnet)
    }

    fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("ipam")
    }

    fn rt(&mut self, id: &str) -> RuntimeConf {
        self.attached.push((id.to_string(), "eth0".to_string()));
        RuntimeConf {
            container_id: id.to_string(),
            netns: self.netns(),
            ifname: "eth0".to_string(),
            args: vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("FOO".into(), "bar".into()),
            ],
            capability_args: serde_json::Map::new(),
        }
    }

    fn bridge_plugin(&self) -> Value {
        json!({
            "type": "bridge", "bridge": self.bridge, "isGateway": true, "ipMasq": true,
            "ipam": {
                "type": "host-local",
                "dataDir": self.data_dir(),
                "ranges": [[{"subnet": format!("{}.0/24", self.subnet)}]],
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        })
    }

    fn list(&self, version: &str, plugins: Vec<Value>) -> NetworkConfigList {
        let v = json!({"cniVersion": version, "name": self.network, "plugins": plugins});
        NetworkConfigList::parse(&serde_json::to_vec(&v).unwrap()).unwrap()
    }

    /// Writes an executable script plugin.
    fn script(&self, name: &str, body: &str) {
        let p = self.tmp.path().join("scripts").join(name);
        fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn in_ns(&self, cmd: &[&str]) -> (bool, String) {
        let mut args = vec!["ip", "netns", "exec", &self.ns];
        args.extend_from_slice(cmd);
        sh(&args)
    }

    /// IPs host-local has reserved for this network.
    fn reservations(&self) -> Vec<String> {
        match fs::read_dir(self.data_dir().join(&self.network)) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Interfaces enslaved to the test bridge (the host ends of veths).
    fn bridge_ports(&self) -> String {
        sh(&["ip", "-o", "link", "show", "master", &self.bridge]).1
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // DEL whatever is still cached (removes iptables rules and IPs).
        for (id, ifname) in &self.attached {
            let _ = self.cni.del_cached(&self.network, id, ifname);
        }
        let _ = sh(&["ip", "netns", "del", &self.ns]);
        let _ = sh(&["ip", "link", "del", &self.bridge]);
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn reference_chain_add_check_del() {
    if !need_root("reference_chain_add_check_del") {
        return;
    }
    let mut w = World::new();
    let id = unique("ctr");
    let rt = w.rt(&id);
    let net = w.list(
        "1.0.0",
        vec![
            json!({"type": "loopback"}),
            w.bridge_plugin(),
            json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
            json!({"type": "firewall"}),
            json!({"type": "tuning", "mtu": 1400}),
        ],
    );
    let res = w.cni.add(&net, &rt).unwrap();
    assert_eq!(res.ips.len(), 1, "{:?}", res.raw);
    let addr = res.ips[0].address.clone();
    assert!(addr.starts_with(&format!("{}.", w.subnet)), "{addr}");
    assert_eq!(
        res.ips[0].gateway.map(|g| g.to_string()),
        Some(w.gw()),
        "{:?}",
        res.raw
    );

    let (ok, out) = w.in_ns(&["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
    assert!(ok && out.contains(&addr), "{out}");
    let (_, out) = w.in_ns(&["ip", "-o", "link", "show", "eth0"]);
    assert!(out.contains("mtu 1400"), "tuning set the MTU: {out}");
    let (_, out) = w.in_ns(&["ip", "-o", "link", "show", "lo"]);
    assert!(out.contains(",UP"), "lo is up: {out}");
    let (_, out) = w.in_ns(&["ip", "route", "show", "default"]);
    assert!(out.contains(&format!("via {}", w.gw())), "{out}");
    let (ok, out) = w.in_ns(&["busybox", "ping", "-c1", "-W2", &w.gw()]);
    assert!(ok, "ping the bridge gateway: {out}");

    let host_veth = res
        .interfaces
        .iter()
        .find(|i| i.sandbox.is_none() && i.name != w.bridge)
        .map(|i| i.name.clone())
        .expect("a host-side veth in the result");
    assert!(sh(&["ip", "link", "show", &host_veth]).0);
    let ip = addr.split('/').next().unwrap().to_string();
    assert_eq!(w.reservations(), vec![ip.clone()]);
    assert!(w.cni.cached(&w.network, &id, "eth0").unwrap().is_some());

    // firewall admitted the address; bridge's ipMasq masquerades it.
    let ip_rule = format!("{ip}/32");
    let filter = sh(&["iptables-save", "-t", "filter"]).1;
    assert!(filter.contains(&ip_rule), "firewall rules:\n{filter}");
    let nat = sh(&["iptables-save", "-t", "nat"]).1;
    assert!(nat.contains(&id), "ipMasq rule for {id}:\n{nat}");

    w.cni.check(&net, &rt).unwrap();

    w.cni.del(&net, &rt).unwrap();
    let filter = sh(&["iptables-save", "-t", "filter"]).1;
    assert!(!filter.contains(&ip_rule), "firewall rules left:\n{filter}");
    let nat = sh(&["iptables-save", "-t", "nat"]).1;
    assert!(!nat.contains(&id), "ipMasq rule left:\n{nat}");
    assert!(!sh(&["ip", "link", "show", &host_veth]).0, "veth removed");
    assert!(!w.in_ns(&["ip", "link", "show", "eth0"]).0);
    assert!(w.reservations().is_empty(), "{:?}", w.reservations());
    assert!(w.cni.cached(&w.network, &id, "eth0").unwrap().is_none());
    // DEL is idempotent, also with nothing cached.
    w.cni.del(&net, &rt).unwrap();
}

#[test]
fn port_mapping_reaches_the_netns_from_loopback() {
    if !need_root("port_mapping_reaches_the_netns_from_loopback") {
        return;
    }
    let mut w = World::new();
    let id = unique("ctr");
    let mut rt = w.rt(&id);
    let host_port = free_port();
    rt.capability_args.insert(
        "portMappings".into(),
        json!([{"hostPort": host_port, "containerPort": 8080, "protocol": "tcp"}]),
    );
    let net = w.list(
        "1.0.0",
        vec![
            w.bridge_plugin(),
            json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
        ],
    );
    w.cni.add(&net, &rt).unwrap();

    let server = "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
                  s.bind(('0.0.0.0',8080))\ns.listen(8)\nwhile True:\n c,_=s.accept()\n c.sendall(b'hello-from-netns')\n c.close()\n";
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &w.ns, "/usr/bin/python3", "-c", server]);
    let mut listener = Background::spawn(cmd);

    let mut got = String::new();
    for _ in 0..200 {
        assert!(listener.running(), "listener died: {}", listener.output());
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", host_port)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            got.clear();
            if s.read_to_string(&mut got).is_ok() && !got.is_empty() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(got, "hello-from-netns");
    drop(listener);

    w.cni.del(&net, &rt).unwrap();
    let nat = sh(&["iptables-save", "-t", "nat"]).1;
    assert!(
        !nat.contains(&format!("--dport {host_port} ")),
        "portmap rule left behind:\n{nat}"
    );
}

/// A third-party plugin (spec 1.1.0) that records stdin and env per command
/// and passes prevResult through.
const RECORDER: &str = r#"REC=__REC__
in=$(cat)
printf '%s' "$in" > "$REC/$CNI_COMMAND.stdin"
env > "$REC/$CNI_COMMAND.env"
echo "$CNI_COMMAND" >> "$REC/log"
case "$CNI_COMMAND" in
ADD) printf '%s' "$in" | /usr/bin/python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["prevResult"]))' ;;
VERSION) printf '{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}' ;;
esac
exit 0"#;

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn env_of(p: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = fs::read_to_string(p)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("CNI_"))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn third_party_plugin_gets_what_the_spec_says() {
    if !need_root("third_party_plugin_gets_what_the_spec_says") {
        return;
    }
    let mut w = World::new();
    let rec = w.tmp.path().join("rec");
    fs::create_dir(&rec).unwrap();
    w.script(
        "recorder",
        &RECORDER.replace("__REC__", &rec.display().to_string()),
    );
    let id = unique("ctr");
    let mut rt = w.rt(&id);
    rt.capability_args
        .insert("io.example/custom".into(), json!({"a": 1}));
    rt.capability_args
        .insert("bandwidth".into(), json!({"ingressRate": 1000}));
    let recorder = json!({"type": "recorder", "extra": "kept",
        "capabilities": {"io.example/custom": true, "portMappings": true}});
    let net = w.list("1.0.0", vec![w.bridge_plugin(), recorder.clone()]);

    let res = w.cni.add(&net, &rt).unwrap();
    let add_in = read_json(&rec.join("ADD.stdin"));
    assert_eq!(add_in["name"], w.network.as_str());
    assert_eq!(add_in["cniVersion"], "1.0.0");
    assert_eq!(add_in["extra"], "kept");
    assert_eq!(
        add_in["prevResult"]["ips"][0]["address"],
        res.raw["ips"][0]["address"]
    );
    assert_eq!(add_in["prevResult"]["cniVersion"], "1.0.0");
    // Only declared capabilities that were given: not portMappings (not given),
    // not bandwidth (not declared).
    assert_eq!(
        add_in["runtimeConfig"],
        json!({"io.example/custom": {"a": 1}})
    );
    let cni_path = format!("{}:{PLUGINS}", w.tmp.path().join("scripts").display());
    let want = |cmd: &str| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = [
            ("CNI_ARGS", "IgnoreUnknown=1;FOO=bar".to_string()),
            ("CNI_COMMAND", cmd.to_string()),
            ("CNI_CONTAINERID", id.clone()),
            ("CNI_IFNAME", "eth0".to_string()),
            ("CNI_NETNS", w.netns().display().to_string()),
            ("CNI_PATH", cni_path.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        v.sort();
        v
    };
    assert_eq!(env_of(&rec.join("ADD.env")), want("ADD"));

    w.cni.check(&net, &rt).unwrap();
    assert_eq!(read_json(&rec.join("CHECK.stdin"))["prevResult"], res.raw);
    assert_eq!(env_of(&rec.join("CHECK.env")), want("CHECK"));

    // GC at 1.0.0 sends no GC command; it DELs stale cached attachments.
    w.cni.gc(&net, &[]).unwrap();
    assert_eq!(read_json(&rec.join("DEL.stdin"))["prevResult"], res.raw);
    assert_eq!(env_of(&rec.join("DEL.env")), want("DEL"));
    assert!(w.cni.cached(&w.network, &id, "eth0").unwrap().is_none());
    assert!(w.reservations().is_empty());
    // STATUS at 1.0.0 calls nothing.
    w.cni.status(&net).unwrap();
    let log = fs::read_to_string(rec.join("log")).unwrap();
    assert_eq!(log.lines().collect::<Vec<_>>(), vec!["ADD", "CHECK", "DEL"]);

    // At 1.1.0 (the recorder alone: Debian's plugins stop at 1.0.0).
    let v11 = w.list("1.1.0", vec![recorder]);
    let keep = GcAttachment {
        container_id: id.clone(),
        ifname: "eth0".into(),
    };
    w.cni.gc(&v11, std::slice::from_ref(&keep)).unwrap();
    let gc_in = read_json(&rec.join("GC.stdin"));
    assert_eq!(
        gc_in["cni.dev/valid-attachments"],
        json!([{"containerID": id, "ifname": "eth0"}])
    );
    assert_eq!(gc_in["cniVersion"], "1.1.0");
    assert_eq!(gc_in["name"], w.network.as_str());
    w.cni.status(&v11).unwrap();
    assert_eq!(
        read_json(&rec.join("STATUS.stdin"))["name"],
        w.network.as_str()
    );
    let status_env = env_of(&rec.join("STATUS.env"));
    assert!(status_env.contains(&("CNI_COMMAND".into(), "STATUS".into())));
    assert_eq!(
        w.cni
            .version("recorder")
            .unwrap()
            .supported_versions
            .last()
            .unwrap(),
        "1.1.0"
    );
    let log = fs::read_to_string(rec.join("log")).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        vec!["ADD", "CHECK", "DEL", "GC", "STATUS", "VERSION"]
    );

    // Debian's bridge says what it supports.
    let v = w.cni.version("bridge").unwrap();
    assert!(v.supported_versions.iter().any(|s| s == "1.0.0"), "{v:?}");
}

#[test]
fn del_cached_after_a_crash() {
    if !need_root("del_cached_after_a_crash") {
        return;
    }
    let mut w = World::new();
    let id = unique("ctr");
    let mut rt = w.rt(&id);
    let host_port = free_port();
    rt.capability_args.insert(
        "portMappings".into(),
        json!([{"hostPort": host_port, "containerPort": 80, "protocol": "tcp"}]),
    );
    let conf_path = w.tmp.path().join("10-net.conflist");
    let net = w.list(
        "1.0.0",
        vec![
            w.bridge_plugin(),
            json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
        ],
    );
    fs::write(&conf_path, &net.bytes).unwrap();
    {
        let first = Cni::new(w.cni.plugin_dirs.clone(), w.cni.cache_dir.clone());
        let loaded = NetworkConfigList::load(&conf_path).unwrap();
        first.add(&loaded, &rt).unwrap();
    }
    assert_eq!(w.reservations().len(), 1);
    assert!(!w.bridge_ports().trim().is_empty());
    let nat = sh(&["iptables-save", "-t", "nat"]).1;
    assert!(nat.contains(&format!("--dport {host_port} ")), "{nat}");
    fs::remove_file(&conf_path).unwrap();

    let fresh = Cni::new(w.cni.plugin_dirs.clone(), w.cni.cache_dir.clone());
    fresh.del_cached(&w.network, &id, "eth0").unwrap();
    assert!(w.reservations().is_empty());
    assert!(w.bridge_ports().trim().is_empty(), "{}", w.bridge_ports());
    assert!(!w.in_ns(&["ip", "link", "show", "eth0"]).0);
    let nat = sh(&["iptables-save", "-t", "nat"]).1;
    assert!(!nat.contains(&format!("--dport {host_port} ")), "{nat}");
    assert!(fresh.cached_attachments().unwrap().is_empty());
    // Nothing cached any more: a second call is a no-op.
    fresh.del_cached(&w.network, &id, "eth0").unwrap();
}

#[test]
fn failing_plugin_mid_chain_leaves_nothing() {
    if !need_root("failing_plugin_mid_chain_leaves_nothing") {
        return;
    }
    let mut w = World::new();
    w.script(
        "failer",
        r#"cat >/dev/null
[ "$CNI_COMMAND" = ADD ] || exit 0
printf '{"cniVersion":"1.0.0","code":42,"msg":"quota exceeded","details":"tenant full"}'
exit 1"#,
    );
    let id = unique("ctr");
    let rt = w.rt(&id);
    let net = w.list(
        "1.0.0",
        vec![
            w.bridge_plugin(),
            json!({"type": "failer"}),
            json!({"type": "tuning", "mtu": 1400}),
        ],
    );
    let err = w.cni.add(&net, &rt).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "CNI plugin \"failer\" for network \"{}\" failed: quota exceeded: tenant full (code 42)",
            w.network
        )
    );
    assert!(w.reservations().is_empty(), "{:?}", w.reservations());
    assert!(w.bridge_ports().trim().is_empty(), "{}", w.bridge_ports());
    assert!(!w.in_ns(&["ip", "link", "show", "eth0"]).0);
    assert!(w.cni.cached_attachments().unwrap().is_empty());
}

#[test]
fn clear_errors_for_missing_plugin_bad_config_and_timeout() {
    if !need_root("clear_errors_for_missing_plugin_bad_config_and_timeout") {
        return;
    }
    let mut w = World::new();
    let id = unique("ctr");
    let rt = w.rt(&id);

    // A missing plugin after a real one: named, with the dirs; bridge undone.
    let net = w.list(
        "1.0.0",
        vec![w.bridge_plugin(), json!({"type": "berth-no-such-plugin"})],
    );
    let err = w.cni.add(&net, &rt).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CniError::PluginNotFound { .. }), "{msg}");
    assert!(
        msg.contains("berth-no-such-plugin") && msg.contains(PLUGINS),
        "{msg}"
    );
    assert!(w.reservations().is_empty());
    assert!(w.bridge_ports().trim().is_empty());

    // A malformed conflist: the error names the file and the field.
    let bad = w.tmp.path().join("confs");
    fs::create_dir(&bad).unwrap();
    fs::write(
        bad.join("10-bad.conflist"),
        r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"bridge":"b"}]}"#,
    )
    .unwrap();
    let msg = berth_cni::load_dir(&bad).unwrap_err().to_string();
    assert!(
        msg.contains("10-bad.conflist") && msg.contains("\"type\""),
        "{msg}"
    );
    let msg = berth_cni::find_network(&bad, "x").unwrap_err().to_string();
    assert!(msg.contains("10-bad.conflist"), "{msg}");

    // A plugin that hangs: killed, named, and the chain before it undone.
    w.script(
        "hang",
        "cat >/dev/null\n[ \"$CNI_COMMAND\" = ADD ] && sleep 1000\nexit 0",
    );
    let mut cni = w.cni.clone();
    cni.timeout = Duration::from_secs(2);
    let net = w.list("1.0.0", vec![w.bridge_plugin(), json!({"type": "hang"})]);
    let err = cni.add(&net, &rt).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CniError::Timeout { .. }), "{msg}");
    assert!(
        msg.contains("\"hang\"") && msg.contains("timed out"),
        "{msg}"
    );
    assert!(w.reservations().is_empty());
    assert!(w.bridge_ports().trim().is_empty());
    assert!(cni.cached_attachments().unwrap().is_empty());
}
