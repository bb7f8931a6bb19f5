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
//! Every change is one JSON document given to `nft -j -f -` once: one
//! atomic transaction. The documents are idempotent: an attach re-declares
//! the network's chains (flushing and refilling them in the same
//! transaction), a detach first adds the elements it then deletes, so it
//! succeeds whether or not they are still there.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use tracing::debug;

use crate::{BridgeError, BridgeNetwork, PortMapping, Protocol};

/// The `nft` binary.
pub const NFT: &str = "nft";

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

    fn chains(&self) -> [(&str, &str, &str, i32); 4] {
        [
            (&self.prerouting, "nat", "prerouting", -100),
            (&self.output, "nat", "output", -100),
            (&self.postrouting, "nat", "postrouting", 100),
            (&self.forward, "filter", "forward", 0),
        ]
    }

    fn maps(&self) -> [(&str, Value); 2] {
        [
            (&self.ports, json!(["inet_proto", "inet_service"])),
            (
                &self.hostports,
                json!(["ipv4_addr", "inet_proto", "inet_service"]),
            ),
        ]
    }
}

fn m(left: Value, op: &str, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn ip_field(field: &str) -> Value {
    json!({"payload": {"protocol": "ip", "field": field}})
}

fn prefix(addr: Ipv4Addr, len: u8) -> Value {
    json!({"prefix": {"addr": addr.to_string(), "len": len}})
}

fn table_cmds(table: &str, names: &Names) -> Vec<Value> {
    let mut cmds = vec![json!({"add": {"table": {"family": "ip", "name": table}}})];
    for (name, ty) in names.maps() {
        cmds.push(json!({"add": {"map": {
            "family": "ip", "table": table, "name": name,
            "type": ty, "map": "ipv4_addr . inet_service"
        }}}));
    }
    cmds
}

/// The rules of each chain of `net`, in chain order of [`Names`].
pub fn rules(net: &BridgeNetwork) -> Vec<(String, Vec<Vec<Value>>)> {
    let n = Names::of(&net.name);
    let br = json!(net.bridge);
    let subnet = prefix(crate::ipam::network(net.subnet, net.prefix), net.prefix);
    let local = m(
        json!({"fib": {"result": "type", "flags": ["daddr"]}}),
        "==",
        json!("local"),
    );
    let l4 = m(meta("l4proto"), "==", json!({"set": ["tcp", "udp"]}));
    let th_dport = json!({"payload": {"protocol": "th", "field": "dport"}});
    let dnat = |key: Vec<Value>, map: &str| {
        json!({"dnat": {"family": "ip", "addr": {"map": {
            "key": {"concat": key}, "data": format!("@{map}")
        }}}})
    };
    let dnat_rules = vec![
        vec![
            local.clone(),
            l4.clone(),
            dnat(
                vec![ip_field("daddr"), meta("l4proto"), th_dport.clone()],
                &n.hostports,
            ),
        ],
        vec![local, l4, dnat(vec![meta("l4proto"), th_dport], &n.ports)],
    ];
    let dnat_status = m(json!({"ct": {"key": "status"}}), "in", json!("dnat"));
    let oif = m(meta("oifname"), "==", br.clone());
    let iif = m(meta("iifname"), "==", br.clone());
    let mut post = vec![
        // published ports reached from a container of this bridge (hairpin)
        // or from the host's loopback: the reply must come back through us
        vec![
            oif.clone(),
            dnat_status.clone(),
            m(ip_field("saddr"), "==", subnet.clone()),
            json!({"masquerade": null}),
        ],
        vec![
            oif.clone(),
            dnat_status.clone(),
            m(
                ip_field("saddr"),
                "==",
                prefix(Ipv4Addr::new(127, 0, 0, 0), 8),
            ),
            json!({"masquerade": null}),
        ],
    ];
    if net.ip_masq && !net.internal {
        post.push(vec![
            m(ip_field("saddr"), "==", subnet),
            m(meta("oifname"), "!=", br.clone()),
            m(
                ip_field("daddr"),
                "!=",
                prefix(Ipv4Addr::new(224, 0, 0, 0), 4),
            ),
            json!({"masquerade": null}),
        ]);
    }
    let accept = json!({"accept": null});
    let drop = json!({"drop": null});
    let forward = if net.internal {
        vec![
            vec![iif.clone(), oif.clone(), accept],
            vec![iif, drop.clone()],
            vec![oif, drop],
        ]
    } else {
        vec![
            vec![iif, accept.clone()],
            vec![
                oif.clone(),
                m(
                    json!({"ct": {"key": "state"}}),
                    "in",
                    json!(["established", "related"]),
                ),
                accept.clone(),
            ],
            vec![oif, dnat_status, accept],
        ]
    };
    vec![
        (n.prerouting, dnat_rules.clone()),
        (n.output, dnat_rules),
        (n.postrouting, post),
        (n.forward, forward),
    ]
}

/// The element of a published port: (map name, key, value).
pub fn element(net: &BridgeNetwork, ip: Ipv4Addr, p: &PortMapping) -> (String, Value) {
    let n = Names::of(&net.name);
    let value = json!({"concat": [ip.to_string(), p.container_port]});
    match p.host_ip {
        Some(h) => (
            n.hostports,
            json!([{"concat": [h.to_string(), proto(p.protocol), p.host_port]}, value]),
        ),
        None => (
            n.ports,
            json!([{"concat": [proto(p.protocol), p.host_port]}, value]),
        ),
    }
}

fn elem_cmd(verb: &str, table: &str, map: &str, elem: &Value) -> Value {
    json!({verb: {"element": {"family": "ip", "table": table, "name": map, "elem": [elem]}}})
}

/// The transaction of an attach: declare the network (table, maps, chains,
/// rules) and add the container's port elements.
pub fn attach_doc(table: &str, net: &BridgeNetwork, ip: Ipv4Addr, ports: &[PortMapping]) -> Value {
    let names = Names::of(&net.name);
    let mut cmds = table_cmds(table, &names);
    for (name, ty, hook, prio) in names.chains() {
        cmds.push(json!({"add": {"chain": {
            "family": "ip", "table": table, "name": name,
            "type": ty, "hook": hook, "prio": prio, "policy": "accept"
        }}}));
        cmds.push(json!({"flush": {"chain": {"family": "ip", "table": table, "name": name}}}));
    }
    for (chain, rules) in rules(net) {
        for expr in rules {
            cmds.push(json!({"add": {"rule": {
                "family": "ip", "table": table, "chain": &chain, "expr": expr
            }}}));
        }
    }
    for p in ports {
        let (map, elem) = element(net, ip, p);
        cmds.push(elem_cmd("add", table, &map, &elem));
    }
    json!({"nftables": cmds})
}

/// The transaction of a detach: the container's port elements go, whether
/// or not they are still there.
pub fn detach_doc(table: &str, net: &BridgeNetwork, ip: Ipv4Addr, ports: &[PortMapping]) -> Value {
    let names = Names::of(&net.name);
    let mut cmds = table_cmds(table, &names);
    for p in ports {
        let (map, elem) = element(net, ip, p);
        cmds.push(elem_cmd("add", table, &map, &elem));
        cmds.push(elem_cmd("delete", table, &map, &elem));
    }
    json!({"nftables": cmds})
}

/// The transaction that removes a network's chains and maps (declaring
/// them first so that it succeeds when they are already gone).
pub fn remove_doc(table: &str, network: &str) -> Value {
    let names = Names::of(network);
    let mut cmds = table_cmds(table, &names);
    for (name, ty, hook, prio) in names.chains() {
        cmds.push(json!({"add": {"chain": {
            "family": "ip", "table": table, "name": name,
            "type": ty, "hook": hook, "prio": prio, "policy": "accept"
        }}}));
    }
    for (name, ..) in names.chains() {
        cmds.push(json!({"flush": {"chain": {"family": "ip", "table": table, "name": name}}}));
        cmds.push(json!({"delete": {"chain": {"family": "ip", "table": table, "name": name}}}));
    }
    for (name, _) in names.maps() {
        cmds.push(json!({"delete": {"map": {"family": "ip", "table": table, "name": name}}}));
    }
    json!({"nftables": cmds})
}

/// Run one JSON document through `nft -j -f -` (one transaction).
pub fn apply(doc: &Value) -> Result<(), BridgeError> {
    let body = doc.to_string();
    debug!(len = body.len(), "nft -j -f -");
    run(&["-j", "-f", "-"], Some(body.as_bytes())).map(drop)
}

/// Run `nft ARGS`, feeding `stdin`; its stdout, or its stderr as the error.
pub fn run(args: &[&str], stdin: Option<&[u8]>) -> Result<String, BridgeError> {
    let mut child = Command::new(NFT)
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
        return Err(BridgeError::Nft(format!(
            "{NFT} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
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
    apply(&json!({"nftables": [{"delete": {"table": {"family": "ip", "name": table}}}]}))
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

    fn cmds(doc: &Value) -> &Vec<Value> {
        doc["nftables"].as_array().unwrap()
    }

    #[test]
    fn attach_declares_chains_rules_and_elements_in_one_document() {
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
        let doc = attach_doc("tbl", &net(false), Ipv4Addr::new(10, 88, 0, 2), &ports);
        let c = cmds(&doc);
        assert_eq!(
            c[0],
            json!({"add": {"table": {"family": "ip", "name": "tbl"}}})
        );
        // every object after the table is in our table
        for cmd in &c[1..] {
            let obj = cmd.as_object().unwrap().values().next().unwrap();
            let inner = obj.as_object().unwrap().values().next().unwrap();
            assert_eq!(inner["table"], "tbl", "{cmd}");
        }
        let s = doc.to_string();
        let flushed: Vec<_> = c
            .iter()
            .filter_map(|x| x.get("flush"))
            .map(|f| f["chain"]["name"].as_str().unwrap())
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
        let elems: Vec<_> = c
            .iter()
            .filter_map(|x| x.get("add").and_then(|a| a.get("element")))
            .collect();
        assert_eq!(elems.len(), 2);
        assert_eq!(elems[0]["name"], "berth-ports");
        assert_eq!(
            elems[0]["elem"][0],
            json!([{"concat": ["tcp", 8080]}, {"concat": ["10.88.0.2", 80]}])
        );
        assert_eq!(elems[1]["name"], "berth-hostports");
        assert_eq!(
            elems[1]["elem"][0],
            json!([{"concat": ["127.0.0.1", "udp", 5353]}, {"concat": ["10.88.0.2", 53]}])
        );
        // masquerade of traffic leaving the subnet, not via the bridge
        assert!(s.contains(r#"{"prefix":{"addr":"10.88.0.0","len":16}}"#));
        assert!(s.contains(r#""op":"!=","right":"berth0""#));
    }

    #[test]
    fn internal_network_has_no_masquerade_out_and_drops_forwarding_out() {
        let r = rules(&net(true));
        let post = &r[2].1;
        assert!(post
            .iter()
            .all(|rule| !json!(rule).to_string().contains(r#""op":"!=""#)));
        let fwd = &r[3].1;
        assert_eq!(fwd.len(), 3);
        assert!(json!(fwd[1]).to_string().contains("drop"));
        assert!(json!(fwd[2]).to_string().contains("drop"));
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
            container_port: 80,
            protocol: Protocol::Tcp,
        }];
        let doc = detach_doc("t", &net(false), Ipv4Addr::new(10, 88, 0, 9), &ports);
        let c = cmds(&doc);
        let n = c.len();
        assert!(c[n - 2]["add"]["element"].is_object());
        assert_eq!(c[n - 1]["delete"]["element"], c[n - 2]["add"]["element"]);
        assert!(c.iter().all(|x| x.get("flush").is_none()));
    }

    #[test]
    fn remove_deletes_exactly_the_networks_chains_and_maps() {
        let doc = remove_doc("t", "net1");
        let deleted: Vec<String> = cmds(&doc)
            .iter()
            .filter_map(|x| x.get("delete"))
            .map(|d| d.as_object().unwrap().values().next().unwrap()["name"].to_string())
            .collect();
        assert_eq!(deleted.len(), 6);
        assert!(deleted.iter().all(|n| n.starts_with("\"net1-")));
    }
}
