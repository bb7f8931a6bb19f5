//! berth-bridge on the real kernel: each test has its own bridge, subnet,
//! netns(es), state dir and nft table, all removed by a Drop guard. Traffic
//! goes only to loopback and to addresses on the test's own bridge.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth_bridge::{
    AttachRequest, Attachment, Bridge, BridgeError, BridgeNetwork, PortMapping, Protocol,
};
use berth_tests::{need_root, run_ok, unique};

fn sh(prog: &str, args: &[&str]) -> Output {
    Command::new(prog).args(args).output().expect("spawn")
}

fn in_ns_ok(ns: &str, args: &[&str]) -> String {
    let mut a = vec!["netns", "exec", ns];
    a.extend_from_slice(args);
    run_ok(Command::new("ip").args(&a))
}

fn link_exists(name: &str) -> bool {
    PathBuf::from("/sys/class/net").join(name).exists()
}

/// A test's private network: bridge, subnet, table, state dir, netns(es).
struct TestNet {
    bridge: Bridge,
    net: BridgeNetwork,
    table: String,
    netns: Vec<String>,
    _state: tempfile::TempDir,
}

impl TestNet {
    fn new(tag: &str) -> TestNet {
        let id = unique(tag);
        let n: u32 = id.rsplit('-').next().unwrap().parse().unwrap();
        let pid = std::process::id();
        // a /24 inside 10.0.0.0/8 that the host does not route yet
        let mut subnet = None;
        for i in 0..64u32 {
            let b = 100 + ((pid + i * 7) % 150) as u8;
            let c = ((pid / 150 + n * 13 + i) % 250) as u8;
            let s = Ipv4Addr::new(10, b, c, 0);
            if Bridge::check_subnet(s, 24).is_ok() {
                subnet = Some(s);
                break;
            }
        }
        let subnet = subnet.expect("a free /24 in 10.0.0.0/8");
        let o = subnet.octets();
        let short = format!("{:x}{n}", pid % 0xfffff);
        let state = tempfile::Builder::new()
            .prefix("berth-bridge-test.")
            .tempdir()
            .unwrap();
        let table = format!("bt{short}");
        TestNet {
            bridge: Bridge::with_table(state.path().to_path_buf(), &table),
            net: BridgeNetwork {
                name: format!("n{short}"),
                bridge: format!("bb{short}"),
                subnet,
                prefix: 24,
                gateway: Ipv4Addr::new(o[0], o[1], o[2], 1),
                mtu: None,
                ip_masq: true,
                hairpin: true,
                internal: false,
            },
            table,
            netns: Vec::new(),
            _state: state,
        }
    }

    /// A new netns, deleted by the guard.
    fn netns(&mut self) -> (String, PathBuf) {
        let name = unique("bns");
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        self.netns.push(name.clone());
        let path = PathBuf::from("/run/netns").join(&name);
        (name, path)
    }

    fn attach(
        &self,
        id: &str,
        netns: &std::path::Path,
        ports: &[PortMapping],
        ip: Option<Ipv4Addr>,
    ) -> Result<Attachment, BridgeError> {
        self.bridge.attach(
            &self.net,
            &AttachRequest {
                container_id: id,
                netns,
                ifname: "eth0",
                ports,
                ip,
                mac: None,
            },
        )
    }

    /// The elements of the network's port map, as nft prints them.
    fn port_elements(&self) -> String {
        let o = sh(
            "nft",
            &[
                "list",
                "map",
                "ip",
                &self.table,
                &format!("{}-ports", self.net.name),
            ],
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        if let Ok(atts) = self.bridge.attachments(&self.net.name) {
            for a in atts {
                let _ = self.bridge.detach(&self.net, &a.container_id, &a.ifname);
            }
        }
        let _ = self.bridge.remove_network(&self.net);
        for ns in &self.netns {
            let _ = sh("ip", &["netns", "del", ns]);
        }
        if link_exists(&self.net.bridge) {
            let _ = sh("ip", &["link", "del", &self.net.bridge]);
        }
        let _ = sh("nft", &["delete", "table", "ip", &self.table]);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tcp(port: u16) -> PortMapping {
    PortMapping {
        host_ip: None,
        host_port: port,
        container_port: 8080,
        protocol: Protocol::Tcp,
    }
}

/// Run `f` on a thread that has entered the netns at `path`: the sockets it
/// makes live there.
fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> T {
    let ns = std::fs::File::open(path).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// A TCP server in the netns at `path` on port 8080 answering `n`
/// connections with `reply`.
fn server(path: &Path, reply: &'static str, n: usize) -> std::thread::JoinHandle<()> {
    let l = in_netns(path, || TcpListener::bind("0.0.0.0:8080").unwrap());
    std::thread::spawn(move || {
        for c in l.incoming().take(n) {
            let _ = c.unwrap().write_all(reply.as_bytes());
        }
    })
}

fn read_from(addr: (Ipv4Addr, u16)) -> Option<String> {
    let mut s =
        TcpStream::connect_timeout(&addr.into(), std::time::Duration::from_secs(10)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn attach_configures_the_netns_and_the_bridge_port() {
    if !need_root("attach_configures_the_netns_and_the_bridge_port") {
        return;
    }
    let mut t = TestNet::new("b-attach");
    let (ns, path) = t.netns();
    let a = t.attach("c1", &path, &[], None).unwrap();
    let o = t.net.subnet.octets();
    assert_eq!(
        a.ip,
        Ipv4Addr::new(o[0], o[1], o[2], 2),
        "lowest after the gateway"
    );
    assert_eq!(a.prefix, 24);
    assert_eq!(a.gateway, t.net.gateway);
    assert!(
        a.host_veth.starts_with("veth") && a.host_veth.len() == 12,
        "{}",
        a.host_veth
    );

    let addrs = in_ns_ok(&ns, &["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("{}/24", a.ip)), "{addrs}");
    let link = in_ns_ok(&ns, &["ip", "-o", "link", "show", "dev", "eth0"]);
    assert!(link.contains(&a.mac), "mac {} in {link}", a.mac);
    assert!(link.contains(",UP"), "{link}");
    let lo = in_ns_ok(&ns, &["ip", "-o", "link", "show", "dev", "lo"]);
    assert!(lo.contains(",UP"), "{lo}");
    let routes = in_ns_ok(&ns, &["ip", "-4", "route"]);
    assert!(
        routes.contains(&format!("default via {} dev eth0", t.net.gateway)),
        "{routes}"
    );

    let port = PathBuf::from("/sys/class/net").join(&a.host_veth);
    let master = std::fs::read_link(port.join("master")).unwrap();
    assert_eq!(
        master.file_name().unwrap().to_str(),
        Some(t.net.bridge.as_str())
    );
    let hairpin = std::fs::read_to_string(port.join("brport/hairpin_mode")).unwrap();
    assert_eq!(hairpin.trim(), "1");
    assert_eq!(
        std::fs::read_to_string(format!(
            "/proc/sys/net/ipv4/conf/{}/route_localnet",
            t.net.bridge
        ))
        .unwrap()
        .trim(),
        "1"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );

    let gw = t.net.gateway.to_string();
    in_ns_ok(&ns, &["busybox", "ping", "-c", "1", "-W", "5", &gw]);
    assert_eq!(t.bridge.attachments(&t.net.name).unwrap(), vec![a]);
    // the subnet is now the host's own route
    let err = Bridge::check_subnet(t.net.subnet, 24).unwrap_err();
    assert!(matches!(err, BridgeError::SubnetOverlap { .. }), "{err:?}");
    assert!(err.to_string().contains(&t.net.subnet.to_string()), "{err}");
    assert!(Bridge::check_subnet(Ipv4Addr::new(127, 3, 0, 0), 16).is_err());
}

#[test]
fn two_netns_on_one_bridge_reach_each_other() {
    if !need_root("two_netns_on_one_bridge_reach_each_other") {
        return;
    }
    let mut t = TestNet::new("b-two");
    t.net.mtu = Some(1400);
    let (ns1, p1) = t.netns();
    let (ns2, p2) = t.netns();
    let a1 = t.attach("c1", &p1, &[], None).unwrap();
    let a2 = t
        .bridge
        .attach(
            &t.net,
            &AttachRequest {
                container_id: "c2",
                netns: &p2,
                ifname: "eth0",
                ports: &[],
                ip: None,
                mac: Some([0x02, 0x42, 0xac, 0x11, 0x00, 0x09]),
            },
        )
        .unwrap();
    assert_eq!(a2.mac, "02:42:ac:11:00:09");
    let link = in_ns_ok(&ns2, &["ip", "-o", "link", "show", "dev", "eth0"]);
    assert!(
        link.contains("mtu 1400") && link.contains("02:42:ac:11:00:09"),
        "{link}"
    );
    let mtu = std::fs::read_to_string(format!("/sys/class/net/{}/mtu", t.net.bridge)).unwrap();
    assert_eq!(mtu.trim(), "1400");
    assert_ne!(a1.ip, a2.ip);
    assert_ne!(a1.host_veth, a2.host_veth);
    in_ns_ok(
        &ns1,
        &["busybox", "ping", "-c", "1", "-W", "5", &a2.ip.to_string()],
    );
    in_ns_ok(
        &ns2,
        &["busybox", "ping", "-c", "1", "-W", "5", &a1.ip.to_string()],
    );
}

#[test]
fn published_port_reachable_on_loopback_and_by_hairpin() {
    if !need_root("published_port_reachable_on_loopback_and_by_hairpin") {
        return;
    }
    let mut t = TestNet::new("b-port");
    let (_ns1, p1) = t.netns();
    let (_ns2, p2) = t.netns();
    let hp = free_port();
    let a1 = t.attach("c1", &p1, &[tcp(hp)], None).unwrap();
    t.attach("c2", &p2, &[], None).unwrap();
    assert_eq!(a1.ports, vec![tcp(hp)]);
    // bound before any client connects: no need to wait for it
    let srv = server(&p1, "hello-from-c1", 3);
    let via_lo = read_from((Ipv4Addr::LOCALHOST, hp)).expect("connect to 127.0.0.1:HOSTPORT");
    assert_eq!(via_lo, "hello-from-c1");
    // from the other container, through the bridge's address and the host port
    let gw = t.net.gateway;
    let out = in_netns(&p2, || read_from((gw, hp)));
    assert_eq!(
        out.as_deref(),
        Some("hello-from-c1"),
        "from c2 via {gw}:{hp}"
    );
    // and from the container itself (hairpin through the host)
    let out = in_netns(&p1, || read_from((gw, hp)));
    assert_eq!(
        out.as_deref(),
        Some("hello-from-c1"),
        "from c1 via {gw}:{hp}"
    );
    srv.join().unwrap();
}

#[test]
fn port_or_address_in_use_is_refused_and_leaves_nothing() {
    if !need_root("port_or_address_in_use_is_refused_and_leaves_nothing") {
        return;
    }
    let mut t = TestNet::new("b-busy");
    let (_ns1, p1) = t.netns();
    let (ns2, p2) = t.netns();
    // a port another process holds on the host
    let held = TcpListener::bind("0.0.0.0:0").unwrap();
    let busy = held.local_addr().unwrap().port();
    let err = t.attach("c1", &p1, &[tcp(busy)], None).unwrap_err();
    assert!(matches!(err, BridgeError::PortInUse { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("{busy}/tcp")), "{err}");
    assert!(t.bridge.attachments(&t.net.name).unwrap().is_empty());
    assert!(
        !link_exists(&t.net.bridge),
        "refused before anything was made"
    );

    let hp = free_port();
    let a1 = t.attach("c1", &p1, &[tcp(hp)], None).unwrap();
    // the same host port again, by another attachment
    let err = t.attach("c2", &p2, &[tcp(hp)], None).unwrap_err();
    assert!(matches!(err, BridgeError::PortInUse { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("{hp}/tcp")) && err.to_string().contains("c1"),
        "{err}"
    );
    // an address in use
    let err = t.attach("c2", &p2, &[], Some(a1.ip)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "address {} is already in use on network {}",
            a1.ip, t.net.name
        )
    );
    // nothing of c2 anywhere: no interface in its netns, no record, no element
    let links = in_ns_ok(&ns2, &["ip", "-o", "link"]);
    assert_eq!(links.lines().count(), 1, "only lo: {links}");
    assert_eq!(t.bridge.attachments(&t.net.name).unwrap(), vec![a1.clone()]);
    let elems = t.port_elements();
    assert_eq!(
        elems.matches(" . 8080").count(),
        1,
        "only c1's element: {elems}"
    );
    // c2 then gets the next address, not a leaked one
    let a2 = t.attach("c2", &p2, &[], None).unwrap();
    let o = a1.ip.octets();
    assert_eq!(a2.ip, Ipv4Addr::new(o[0], o[1], o[2], o[3] + 1));
    drop(held);
}

#[test]
fn detach_is_complete_idempotent_and_survives_a_deleted_netns() {
    if !need_root("detach_is_complete_idempotent_and_survives_a_deleted_netns") {
        return;
    }
    let mut t = TestNet::new("b-detach");
    let (_ns1, p1) = t.netns();
    let (ns2, p2) = t.netns();
    let hp = free_port();
    let a1 = t.attach("c1", &p1, &[tcp(hp)], None).unwrap();
    assert!(link_exists(&a1.host_veth));
    assert!(t
        .port_elements()
        .contains(&format!("tcp . {hp} : {} . 8080", a1.ip)));

    t.bridge.detach(&t.net, "c1", "eth0").unwrap();
    assert!(!link_exists(&a1.host_veth));
    assert!(
        !t.port_elements().contains(&hp.to_string()),
        "{}",
        t.port_elements()
    );
    assert!(t.bridge.attachments(&t.net.name).unwrap().is_empty());
    let links = sh("ip", &["netns", "exec", &t.netns[0], "ip", "-o", "link"]);
    assert_eq!(String::from_utf8_lossy(&links.stdout).lines().count(), 1);
    // twice
    t.bridge.detach(&t.net, "c1", "eth0").unwrap();
    // the address and the port are free again
    let again = t.attach("c1b", &p1, &[tcp(hp)], None).unwrap();
    assert_eq!(again.ip, a1.ip);

    // the host veth is already gone (a crash after the kernel dropped it)
    let a3 = t.attach("c3", &p2, &[], None).unwrap();
    run_ok(Command::new("ip").args(["link", "del", &a3.host_veth]));
    t.bridge.detach(&t.net, "c3", "eth0").unwrap();
    assert_eq!(
        t.bridge.attachments(&t.net.name).unwrap(),
        vec![again.clone()]
    );

    // the netns is deleted before detach (a crashed container)
    let a2 = t.attach("c2", &p2, &[], None).unwrap();
    run_ok(Command::new("ip").args(["netns", "del", &ns2]));
    t.netns.retain(|n| n != &ns2);
    t.bridge.detach(&t.net, "c2", "eth0").unwrap();
    assert!(!link_exists(&a2.host_veth));
    assert_eq!(t.bridge.attachments(&t.net.name).unwrap(), vec![again]);
}

#[test]
fn remove_network_deletes_bridge_and_rules() {
    if !need_root("remove_network_deletes_bridge_and_rules") {
        return;
    }
    let mut t = TestNet::new("b-remove");
    let (_ns, p) = t.netns();
    t.attach("c1", &p, &[tcp(free_port())], None).unwrap();
    assert!(link_exists(&t.net.bridge));
    let err = t.bridge.remove_network(&t.net).unwrap_err();
    assert!(
        matches!(err, BridgeError::NetworkInUse { count: 1, .. }),
        "{err:?}"
    );
    assert!(link_exists(&t.net.bridge));

    t.bridge.detach(&t.net, "c1", "eth0").unwrap();
    let before = run_ok(Command::new("nft").args(["list", "table", "ip", &t.table]));
    assert!(
        before.contains(&format!("chain {}-postrouting", t.net.name)),
        "{before}"
    );
    t.bridge.remove_network(&t.net).unwrap();
    assert!(!link_exists(&t.net.bridge));
    let after = sh("nft", &["list", "table", "ip", &t.table]);
    assert!(
        !after.status.success(),
        "table left: {}",
        String::from_utf8_lossy(&after.stdout)
    );
    // again: nothing to do
    t.bridge.remove_network(&t.net).unwrap();
}

#[test]
fn a_failure_after_the_veth_is_made_undoes_everything() {
    if !need_root("a_failure_after_the_veth_is_made_undoes_everything") {
        return;
    }
    let mut t = TestNet::new("b-undo");
    let (ns, p) = t.netns();
    // the netns already has a default route: attach fails at its last
    // netlink step, after the veth and the address were made
    in_ns_ok(
        &ns,
        &[
            "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ],
    );
    in_ns_ok(&ns, &["ip", "link", "set", "v0", "up"]);
    in_ns_ok(&ns, &["ip", "link", "set", "v1", "up"]);
    in_ns_ok(&ns, &["ip", "addr", "add", "192.168.250.1/24", "dev", "v0"]);
    in_ns_ok(
        &ns,
        &["ip", "route", "add", "default", "via", "192.168.250.2"],
    );
    let hp = free_port();
    let err = t.attach("c1", &p, &[tcp(hp)], None).unwrap_err();
    assert!(err.to_string().contains("default route"), "{err}");
    let links = in_ns_ok(&ns, &["ip", "-o", "link"]);
    assert!(!links.contains("eth0"), "{links}");
    assert!(t.bridge.attachments(&t.net.name).unwrap().is_empty());
    let ports = run_ok(Command::new("ip").args(["-o", "link", "show", "master", &t.net.bridge]));
    assert!(
        ports.trim().is_empty(),
        "a port is left on the bridge: {ports}"
    );
    assert!(!t.port_elements().contains(&hp.to_string()));
}

#[test]
fn internal_network_has_no_way_out() {
    if !need_root("internal_network_has_no_way_out") {
        return;
    }
    let mut t = TestNet::new("b-int");
    t.net.internal = true;
    let (ns1, p1) = t.netns();
    let (_ns2, p2) = t.netns();
    t.attach("c1", &p1, &[], None).unwrap();
    let a2 = t.attach("c2", &p2, &[], None).unwrap();
    let routes = in_ns_ok(&ns1, &["ip", "-4", "route"]);
    assert!(!routes.contains("default"), "{routes}");
    in_ns_ok(
        &ns1,
        &["busybox", "ping", "-c", "1", "-W", "5", &a2.ip.to_string()],
    );
    let err = t.attach("c3", &p1, &[tcp(free_port())], None).unwrap_err();
    assert!(err.to_string().contains("internal"), "{err}");
    let rules = run_ok(Command::new("nft").args(["list", "table", "ip", &t.table]));
    assert!(!rules.contains("oifname != "), "no masquerade out: {rules}");
    assert!(
        rules.contains(&format!("oifname \"{}\" drop", t.net.bridge)),
        "{rules}"
    );
}
