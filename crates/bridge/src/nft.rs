//! nftables for a bridge network: NAT, published ports and forwarding.
//!
//! Everything lives in one `ip` table of berth's own (`berth` unless the
//! caller names another); no other table is read or touched. Each network
//! `N` owns four base chains in it (`N-prerouting`, `N-output`,
//! `N-postrouting`, `N-forward`) and two maps of published ports:
//! `N-ports` (`l4proto . port -> addr . port`, any local address) and
//! `N-hostports` (`daddr . l4proto . port -> addr . port`, one host address).
//! A container's ports are elements of those maps, so attaching and
//! detaching add and delete exactly its elements.
//!
//! Every change is one script given to `nft -f -` once: one atomic
//! transaction. (Not nft's JSON input: nft 1.0.6 crashes on a JSON batch
//! that declares a map with concatenated data and a rule using it.) Only
//! names checked by [`valid_ident`] and interface names checked by the
//! caller are written into a script. The scripts are idempotent: an attach re-declares
//! the network's chains (flushing and refilling them in the same
//! transaction), a detach first adds the elements it then deletes, so it
//! succeeds whether or not they are still there.

use std::fmt::Write as _;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use serde_json::Value;
use tracing::debug;

use crate::{BridgeError, BridgeNetwork, PortMapping, Protocol};

/// The `nft` binary, looked up in `$PATH` when not at Debian's place.
pub const NFT: &str = "nft";

fn nft_bin() -> &'static str {
    if std::path::Path::new("/usr/sbin/nft").exists() {
        "/usr/sbin/nft"
    } else {
        NFT
    }
}

fn proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// Names of a network's chains and maps.
#[derive(Debug)]
pub struct Names {
    pub prerouting: String,
    pub output: String,
    pub postrouting: String,
    pub forward: String,
    pub ports: String,
    pub hostports: String,
}

impl Names {
    pub fn of(network: &str) -> Names {
        Names {
            prerouting: format!("{network}-prerouting"),
            output: format!("{network}-output"),
            postrouting: format!("{network}-postrouting"),
            forward: format!("{network}-forward"),
            ports: format!("{network}-ports"),
            hostports: format!("{network}-hostports"),
        }
    }

    /// (name, declaration) of each base chain, in hook order.
    fn chains(&self) -> [(&str, &'static str); 4] {
        [
            (
                &self.prerouting,
                "type nat hook prerouting priority -100; policy accept;",
            ),
            (
                &self.output,
                "type nat hook output priority -100; policy accept;",
            ),
            (
                &self.postrouting,
                "type nat hook postrouting priority 100; policy accept;",
            ),
            (
                &self.forward,
                "type filter hook forward priority 0; policy accept;",
            ),
        ]
    }

    fn maps(&self) -> [(&str, &'static str); 2] {
        [
            (
                &self.ports,
                "type inet_proto . inet_service : ipv4_addr . inet_service;",
            ),
            (
                &self.hostports,
                "type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;",
            ),
        ]
    }
}

/// Whether `name` can be written bare in an nft script (table, chain and
/// map names): a letter, then letters, digits, `-`, `_` or `.`.
pub fn valid_ident(name: &str) -> bool {
    name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn declare(out: &mut String, table: &str, names: &Names) {
    let _ = writeln!(out, "add table ip {table}");
    for (name, ty) in names.maps() {
        let _ = writeln!(out, "add map ip {table} {name} {{ {ty} }}");
    }
}

/// The rules of each chain of `net`, in the order of [`Names`]' chains.
pub fn rules(net: &BridgeNetwork) -> Vec<(String, Vec<String>)> {
    let n = Names::of(&net.name);
    let br = &net.bridge;
    let subnet = format!(
        "{}/{}",
        crate::ipam::network(net.subnet, net.prefix),
        net.prefix
    );
    let dnat = vec![
        format!(
            "fib daddr type local meta l4proto {{ tcp, udp }} \
             dnat ip to ip daddr . meta l4proto . th dport map @{}",
            n.hostports
        ),
        format!(
            "fib daddr type local meta l4proto {{ tcp, udp }} \
             dnat ip to meta l4proto . th dport map @{}",
            n.ports
        ),
    ];
    // published ports reached from a container of this bridge (hairpin) or
    // from the host's loopback: the reply must come back through the host
    let mut post = vec![
        format!("oifname \"{br}\" ct status dnat ip saddr {subnet} masquerade"),
        format!("oifname \"{br}\" ct status dnat ip saddr 127.0.0.0/8 masquerade"),
    ];
    if net.ip_masq && !net.internal {
        post.push(format!(
            "ip saddr {subnet} oifname != \"{br}\" ip daddr != 224.0.0.0/4 masquerade"
        ));
    }
    let forward = if net.internal {
        vec![
            format!("iifname \"{br}\" oifname \"{br}\" accept"),
            format!("iifname \"{br}\" drop"),
            format!("oifname \"{br}\" drop"),
        ]
    } else {
        vec![
            format!("iifname \"{br}\" accept"),
            format!("oifname \"{br}\" ct state established,related accept"),
            format!("oifname \"{br}\" ct status dnat accept"),
        ]
    };
    vec![
        (n.prerouting, dnat.clone()),
        (n.output, dnat),
        (n.postrouting, post),
        (n.forward, forward),
    ]
}

/// The element of a published port: (map name, key, value).
pub fn element(net: &BridgeNetwork, ip: Ipv4Addr, p: &PortMapping) -> (String, String, String) {
    let n = Names::of(&net.name);
    let value = format!("{ip} . {}", p.container_port);
    match p.host_ip {
        Some(h) => (
            n.hostports,
            format!("{h} . {} . {}", proto(p.protocol), p.host_port),
            value,
        ),
        None => (
            n.ports,
            format!("{} . {}", proto(p.protocol), p.host_port),
            value,
        ),
    }
}

/// The transaction of an attach: declare the network (table, maps, chains,
/// rules) and add the container's port elements.
pub fn attach_script(
    table: &str,
    net: &BridgeNetwork,
    ip: Ipv4Addr,
    ports: &[PortMapping],
) -> String {
    let names = Names::of(&net.name);
    let mut s = String::new();
    declare(&mut s, table, &names);
    for (name, decl) in names.chains() {
        let _ = writeln!(s, "add chain ip {table} {name} {{ {decl} }}");
        let _ = writeln!(s, "flush chain ip {table} {name}");
    }
    for (chain, rules) in rules(net) {
        for r in rules {
            let _ = writeln!(s, "add rule ip {table} {chain} {r}");
        }
    }
    for p in ports {
        let (map, key, value) = element(net, ip, p);
        let _ = writeln!(s, "add element ip {table} {map} {{ {key} : {value} }}");
    }
    s
}

/// The transaction of a detach: the container's port elements go, whether
/// or not they are still there.
pub fn detach_script(
    table: &str,
    net: &BridgeNetwork,
    ip: Ipv4Addr,
    ports: &[PortMapping],
) -> String {
    let mut s = String::new();
    declare(&mut s, table, &Names::of(&net.name));
    for p in ports {
        let (map, key, value) = element(net, ip, p);
        let _ = writeln!(s, "add element ip {table} {map} {{ {key} : {value} }}");
        let _ = writeln!(s, "delete element ip {table} {map} {{ {key} }}");
    }
    s
}

/// The transaction that removes a network's chains and maps (declaring
/// them first so that it succeeds when they are already gone).
pub fn remove_script(table: &str, network: &str) -> String {
    let names = Names::of(network);
    let mut s = String::new();
    declare(&mut s, table, &names);
    for (name, decl) in names.chains() {
        let _ = writeln!(s, "add chain ip {table} {name} {{ {decl} }}");
    }
    for (name, _) in names.chains() {
        let _ = writeln!(s, "flush chain ip {table} {name}");
        let _ = writeln!(s, "delete chain ip {table} {name}");
    }
    for (name, _) in names.maps() {
        let _ = writeln!(s, "delete map ip {table} {name}");
    }
    s
}

/// Run one script through `nft -f -`: one atomic transaction.
pub fn apply(script: &str) -> Result<(), BridgeError> {
    debug!(script, "nft -f -");
    run(&["-f", "-"], Some(script.as_bytes())).map(drop)
}

/// Run `nft ARGS`, feeding `stdin`; its stdout, or its stderr as the error.
pub fn run(args: &[&str], stdin: Option<&[u8]>) -> Result<String, BridgeError> {
    let mut child = Command::new(nft_bin())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BridgeError::Nft(format!("cannot run {NFT}: {e}")))?;
    if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(data)
            .map_err(|e| BridgeError::Nft(format!("writing to {NFT}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| BridgeError::Nft(format!("waiting for {NFT}: {e}")))?;
    if !out.status.success() {
        let mut why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if why.is_empty() {
            why = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        if why.is_empty() {
            why = format!("failed with {}", out.status);
        }
        return Err(BridgeError::Nft(format!("{NFT} {}: {why}", args.join(" "))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Delete `table` if it holds no chain, map or set any more.
pub fn delete_table_if_empty(table: &str) -> Result<(), BridgeError> {
    let listing = match run(&["-j", "list", "table", "ip", table], None) {
        Ok(l) => l,
        Err(_) => return Ok(()), // no such table
    };
    let v: Value = serde_json::from_str(&listing)
        .map_err(|e| BridgeError::Nft(format!("parsing nft's listing: {e}")))?;
    let busy = v["nftables"].as_array().is_some_and(|objs| {
        objs.iter()
            .any(|o| o.get("chain").is_some() || o.get("map").is_some() || o.get("set").is_some())
    });
    if busy {
        return Ok(());
    }
    apply(&format!("delete table ip {table}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn net(internal: bool) -> BridgeNetwork {
        BridgeNetwork {
            name: "berth".into(),
            bridge: "berth0".into(),
            subnet: Ipv4Addr::new(10, 88, 0, 0),
            prefix: 16,
            gateway: Ipv4Addr::new(10, 88, 0, 1),
            mtu: None,
            ip_masq: true,
            hairpin: true,
            internal,
        }
    }

    #[test]
    fn attach_declares_chains_rules_and_elements_in_one_script() {
        let ports = [
            PortMapping {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp,
            },
            PortMapping {
                host_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                host_port: 5353,
                container_port: 53,
                protocol: Protocol::Udp,
            },
        ];
        let s = attach_script("tbl", &net(false), Ipv4Addr::new(10, 88, 0, 2), &ports);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "add table ip tbl");
        // every command is about our table
        assert!(lines.iter().all(|l| l.contains(" ip tbl")), "{s}");
        let flushed: Vec<_> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("flush chain ip tbl "))
            .collect();
        assert_eq!(
            flushed,
            [
                "berth-prerouting",
                "berth-output",
                "berth-postrouting",
                "berth-forward"
            ]
        );
        // each flush comes right after its chain's declaration, before any rule
        let first_rule = lines
            .iter()
            .position(|l| l.starts_with("add rule"))
            .unwrap();
        let last_flush = lines.iter().rposition(|l| l.starts_with("flush")).unwrap();
        assert!(last_flush < first_rule);
        let elems: Vec<_> = lines
            .iter()
            .filter(|l| l.starts_with("add element"))
            .copied()
            .collect();
        assert_eq!(
            elems,
            [
                "add element ip tbl berth-ports { tcp . 8080 : 10.88.0.2 . 80 }",
                "add element ip tbl berth-hostports { 127.0.0.1 . udp . 5353 : 10.88.0.2 . 53 }"
            ]
        );
        assert!(s.contains(
            "add rule ip tbl berth-postrouting ip saddr 10.88.0.0/16 oifname != \"berth0\" \
             ip daddr != 224.0.0.0/4 masquerade"
        ));
        assert!(s.contains("dnat ip to meta l4proto . th dport map @berth-ports"));
    }

    #[test]
    fn internal_network_has_no_masquerade_out_and_drops_forwarding_out() {
        let r = rules(&net(true));
        assert!(r[2].1.iter().all(|rule| !rule.contains("!=")));
        assert_eq!(
            r[3].1,
            [
                "iifname \"berth0\" oifname \"berth0\" accept",
                "iifname \"berth0\" drop",
                "oifname \"berth0\" drop"
            ]
        );
        let r = rules(&BridgeNetwork {
            ip_masq: false,
            ..net(false)
        });
        assert_eq!(r[2].1.len(), 2, "no masquerade rule without ip_masq");
    }

    #[test]
    fn detach_adds_then_deletes_each_element() {
        let ports = [PortMapping {
            host_ip: None,
            host_port: 80,
            container_port: 8080,
            protocol: Protocol::Tcp,
        }];
        let s = detach_script("t", &net(false), Ipv4Addr::new(10, 88, 0, 9), &ports);
        let lines: Vec<&str> = s.lines().collect();
        let n = lines.len();
        assert_eq!(
            lines[n - 2],
            "add element ip t berth-ports { tcp . 80 : 10.88.0.9 . 8080 }"
        );
        assert_eq!(lines[n - 1], "delete element ip t berth-ports { tcp . 80 }");
        assert!(!s.contains("flush") && !s.contains("add chain") && !s.contains("rule"));
    }

    #[test]
    fn remove_deletes_exactly_the_networks_chains_and_maps() {
        let s = remove_script("t", "net1");
        let deleted: Vec<_> = s.lines().filter(|l| l.starts_with("delete")).collect();
        assert_eq!(deleted.len(), 6);
        assert!(deleted.iter().all(|l| l.contains(" ip t net1-")), "{s}");
        assert!(!s.contains("delete table"));
    }

    #[test]
    fn identifiers() {
        assert!(valid_ident("berth"));
        assert!(valid_ident("bt1f-2.x_y"));
        assert!(!valid_ident("1net"));
        assert!(!valid_ident("a b"));
        assert!(!valid_ident("a;b"));
        assert!(!valid_ident(""));
    }
}
