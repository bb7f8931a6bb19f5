//! The two ways of attaching a container to a network, behind
//! [`crate::network::Attacher`]: the CNI plugins (`berth-cni`) for every
//! network, and the fast in-process bridge (`berth-bridge`) for the default
//! one. Both record nothing of their own in the engine; the engine's
//! `network.json` says which one made an attachment, and that one undoes it.
//!
//! - CNI: results and configs are cached under `<root>/cni` (libcni's
//!   layout), so a DEL works from the cache after a crash or when the
//!   network's file is gone. A container's first attachment also runs the
//!   `loopback` plugin for `lo`. `--ip` goes to host-local as the `IP` CNI
//!   arg (with `IgnoreUnknown`), published ports as the `portMappings`
//!   capability.
//! - Fast: the bridge, veth, addresses, routes and nftables rules that the
//!   CNI bridge + host-local + portmap + firewall chain would make, in one
//!   process, with IPAM under `<root>/networks/bridge`; one nftables table
//!   per bridge (`berth_<bridge>`).

use std::path::{Path, PathBuf};

use berth_bridge::{AttachRequest, Bridge, BridgeNetwork, Protocol};
use berth_cni::{Cni, NetworkConfigList, RuntimeConf};

use crate::container::EngineOptions;
use crate::network::{AttachArgs, Attacher, Attachers, Attachment, NetError};
use crate::networks::{NetworkDef, DEFAULT_BRIDGE};
use crate::ports::PortMapping;

fn attach_err(network: &str) -> impl Fn(String) -> NetError + '_ {
    move |message| NetError::Attach {
        network: network.to_string(),
        message,
    }
}

/// The CNI plugins.
#[derive(Debug)]
pub struct CniAttacher {
    cni: Cni,
}

fn loopback_list() -> NetworkConfigList {
    NetworkConfigList::parse(
        br#"{"cniVersion": "1.0.0", "name": "berth-loopback", "plugins": [{"type": "loopback"}]}"#,
    )
    .expect("a valid list")
}

fn port_mappings(ports: &[PortMapping]) -> serde_json::Value {
    serde_json::Value::Array(
        ports
            .iter()
            .map(|p| {
                let mut m = serde_json::json!({
                    "hostPort": p.host_port,
                    "containerPort": p.container_port,
                    "protocol": p.protocol,
                });
                if let Some(ip) = p.host_ip {
                    m["hostIP"] = serde_json::json!(ip.to_string());
                }
                m
            })
            .collect(),
    )
}

impl CniAttacher {
    fn list(def: &NetworkDef) -> Result<NetworkConfigList, NetError> {
        let bytes = serde_json::to_vec(&def.conflist).expect("JSON");
        NetworkConfigList::parse(&bytes).map_err(|e| attach_err(&def.name)(e.to_string()))
    }

    fn rt(id: &str, netns: &Path, ifname: &str) -> RuntimeConf {
        RuntimeConf {
            container_id: id.to_string(),
            netns: netns.to_path_buf(),
            ifname: ifname.to_string(),
            args: vec![("IgnoreUnknown".into(), "1".into())],
            capability_args: Default::default(),
        }
    }
}

impl Attacher for CniAttacher {
    fn attach(&self, a: &AttachArgs<'_>) -> Result<Attachment, NetError> {
        let err = attach_err(&a.net.name);
        if a.ifname == "eth0" {
            self.cni
                .add(&loopback_list(), &Self::rt(a.id, a.netns, "lo"))
                .map_err(|e| err(e.to_string()))?;
        }
        let list = Self::list(a.net)?;
        let mut rt = Self::rt(a.id, a.netns, a.ifname);
        if let Some(ip) = a.ip {
            // Both ways IPAM plugins take a static address: host-local's
            // `IP` arg, and the `ips` capability of the plugins that declare
            // it.
            rt.args.push(("IP".into(), ip.to_string()));
            let prefix = a.net.subnet.map(|s| s.prefix).unwrap_or(32);
            rt.capability_args
                .insert("ips".into(), serde_json::json!([format!("{ip}/{prefix}")]));
        }
        if !a.ports.is_empty() {
            rt.capability_args
                .insert("portMappings".into(), port_mappings(a.ports));
        }
        let res = self.cni.add(&list, &rt).map_err(|e| err(e.to_string()))?;
        let ipc = res.ips.first();
        let (ip, prefix) = ipc
            .and_then(|c| c.address.split_once('/'))
            .map(|(ip, p)| (ip.parse().ok(), p.parse().unwrap_or(0)))
            .unwrap_or((None, 0));
        let mac = res
            .interfaces
            .iter()
            .find(|i| i.name == a.ifname && i.sandbox.is_some())
            .map(|i| i.mac.clone())
            .unwrap_or_default();
        Ok(Attachment {
            network: a.net.name.clone(),
            ifname: a.ifname.to_string(),
            backend: "cni".into(),
            ip,
            prefix,
            gateway: ipc.and_then(|c| match c.gateway {
                Some(std::net::IpAddr::V4(g)) => Some(g),
                _ => None,
            }),
            mac,
            nameservers: res.dns.nameservers.clone(),
            search: res.dns.search.clone(),
        })
    }

    fn detach(
        &self,
        net: Option<&NetworkDef>,
        id: &str,
        netns: &Path,
        a: &Attachment,
    ) -> Result<(), NetError> {
        let err = attach_err(&a.network);
        // `lo` first: it goes even when the network's own DEL fails.
        if a.ifname == "eth0" {
            let _ = self.cni.del(&loopback_list(), &Self::rt(id, netns, "lo"));
        }
        // The cached config first: it is what the ADD ran, even if the file
        // changed or went since.
        let cached = self
            .cni
            .cached(&a.network, id, &a.ifname)
            .map_err(|e| err(e.to_string()))?;
        match (cached, net) {
            (Some(_), _) | (None, None) => self
                .cni
                .del_cached(&a.network, id, &a.ifname)
                .map_err(|e| err(e.to_string()))?,
            (None, Some(def)) => {
                // Nothing cached: an ADD a crash cut short. DEL with the
                // network's list undoes whatever part of it ran.
                self.cni
                    .del(&Self::list(def)?, &Self::rt(id, netns, &a.ifname))
                    .map_err(|e| err(e.to_string()))?
            }
        }
        Ok(())
    }

    fn remove_network(&self, net: &NetworkDef) -> Result<(), NetError> {
        // The bridge plugin never deletes its bridge; for a network berth
        // made, berth does (as podman's CNI backend did).
        if let (true, Some(b)) = (net.berth_made, &net.bridge) {
            berth_bridge::netlink::Netlink::open()
                .and_then(|mut nl| nl.del_link(b))
                .map_err(|e| attach_err(&net.name)(format!("delete bridge {b}: {e}")))?;
        }
        let _ = std::fs::remove_dir_all(Path::new("/var/lib/cni/networks").join(&net.name));
        Ok(())
    }

    fn status(&self, net: &NetworkDef) -> Result<(), NetError> {
        self.cni
            .status(&Self::list(net)?)
            .map_err(|e| attach_err(&net.name)(e.to_string()))
    }

    fn gc(&self, net: &NetworkDef, known: &dyn Fn(&str) -> bool) -> Result<(), NetError> {
        let err = attach_err(&net.name);
        let valid: Vec<berth_cni::GcAttachment> = self
            .cni
            .cached_attachments()
            .map_err(|e| err(e.to_string()))?
            .into_iter()
            .filter(|c| c.network == net.name && known(&c.container_id))
            .map(|c| berth_cni::GcAttachment {
                container_id: c.container_id,
                ifname: c.ifname,
            })
            .collect();
        self.cni
            .gc(&Self::list(net)?, &valid)
            .map_err(|e| err(e.to_string()))
    }

    fn remove_leaked(&self, known: &dyn Fn(&str) -> bool) -> Result<Vec<String>, NetError> {
        let mut out = Vec::new();
        for c in self
            .cni
            .cached_attachments()
            .map_err(|e| attach_err("(cache)")(e.to_string()))?
        {
            if c.container_id.is_empty() || known(&c.container_id) {
                continue;
            }
            self.cni
                .del_cached(&c.network, &c.container_id, &c.ifname)
                .map_err(|e| attach_err(&c.network)(e.to_string()))?;
            out.push(format!("{}/{}/{}", c.network, c.container_id, c.ifname));
        }
        Ok(out)
    }
}

/// The fast bridge path.
#[derive(Debug)]
pub struct FastAttacher {
    state: PathBuf,
    networks: crate::networks::Networks,
}

impl FastAttacher {
    fn bridge(&self, bridge: &str) -> Bridge {
        Bridge::with_table(self.state.clone(), &format!("berth_{bridge}"))
    }

    fn net(def: &NetworkDef) -> Result<BridgeNetwork, NetError> {
        let subnet = def.subnet.ok_or_else(|| NetError::Attach {
            network: def.name.clone(),
            message: "its host-local range has no subnet".into(),
        })?;
        Ok(BridgeNetwork {
            name: def.name.clone(),
            bridge: def.bridge.clone().unwrap_or_else(|| DEFAULT_BRIDGE.into()),
            subnet: subnet.addr,
            prefix: subnet.prefix,
            gateway: def.gateway.unwrap_or(subnet.first_host()),
            mtu: None,
            ip_masq: !def.internal,
            hairpin: true,
            internal: def.internal,
        })
    }
}

impl Attacher for FastAttacher {
    fn attach(&self, a: &AttachArgs<'_>) -> Result<Attachment, NetError> {
        let net = Self::net(a.net)?;
        let ports: Vec<berth_bridge::PortMapping> = a
            .ports
            .iter()
            .map(|p| berth_bridge::PortMapping {
                host_ip: p.host_ip.map(std::net::IpAddr::V4),
                host_port: p.host_port,
                container_port: p.container_port,
                protocol: if p.protocol == "udp" {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                },
            })
            .collect();
        let got = self
            .bridge(&net.bridge)
            .attach(
                &net,
                &AttachRequest {
                    container_id: a.id,
                    netns: a.netns,
                    ifname: a.ifname,
                    ports: &ports,
                    ip: a.ip,
                    mac: None,
                },
            )
            .map_err(|e| attach_err(&a.net.name)(e.to_string()))?;
        Ok(Attachment {
            network: a.net.name.clone(),
            ifname: a.ifname.to_string(),
            backend: "fast".into(),
            ip: Some(got.ip),
            prefix: got.prefix,
            gateway: Some(got.gateway),
            mac: got.mac,
            nameservers: Vec::new(),
            search: Vec::new(),
        })
    }

    fn detach(
        &self,
        net: Option<&NetworkDef>,
        id: &str,
        _netns: &Path,
        a: &Attachment,
    ) -> Result<(), NetError> {
        let bridge = net
            .and_then(|d| d.bridge.clone())
            .unwrap_or_else(|| DEFAULT_BRIDGE.into());
        let bn = match net {
            Some(d) => Self::net(d)?,
            None => BridgeNetwork {
                name: a.network.clone(),
                bridge: bridge.clone(),
                subnet: std::net::Ipv4Addr::UNSPECIFIED,
                prefix: a.prefix,
                gateway: a.gateway.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                mtu: None,
                ip_masq: true,
                hairpin: true,
                internal: false,
            },
        };
        self.bridge(&bridge)
            .detach(&bn, id, &a.ifname)
            .map_err(|e| attach_err(&a.network)(e.to_string()))
    }

    fn remove_network(&self, net: &NetworkDef) -> Result<(), NetError> {
        let bn = Self::net(net)?;
        self.bridge(&bn.bridge)
            .remove_network(&bn)
            .map_err(|e| attach_err(&net.name)(e.to_string()))
    }

    fn remove_leaked(&self, known: &dyn Fn(&str) -> bool) -> Result<Vec<String>, NetError> {
        let mut out = Vec::new();
        for def in self.networks.list()? {
            if def.driver != "bridge" || def.subnet.is_none() {
                continue;
            }
            let bn = Self::net(&def)?;
            let b = self.bridge(&bn.bridge);
            let recorded = b
                .attachments(&def.name)
                .map_err(|e| attach_err(&def.name)(e.to_string()))?;
            for a in recorded.iter().filter(|a| !known(&a.container_id)) {
                b.detach(&bn, &a.container_id, &a.ifname)
                    .map_err(|e| attach_err(&def.name)(e.to_string()))?;
                out.push(format!("{}/{}/{}", a.network, a.container_id, a.ifname));
            }
        }
        Ok(out)
    }
}

/// Both attachers, chosen by the word in `network.json`.
#[derive(Debug)]
pub struct Plugged {
    cni: CniAttacher,
    fast: FastAttacher,
}

impl Plugged {
    /// The attachers for an engine with `o`.
    pub fn new(o: &EngineOptions) -> Plugged {
        Plugged {
            cni: CniAttacher {
                cni: Cni::new(o.network.plugin_dirs.clone(), o.root.join("cni")),
            },
            fast: FastAttacher {
                state: o.root.join("networks").join("bridge"),
                networks: crate::networks::Networks::new(&o.network.config_dir, &o.root)
                    .with_pools(o.network.address_pools.clone()),
            },
        }
    }
}

impl Attachers for Plugged {
    fn for_backend(&self, backend: &str) -> &dyn Attacher {
        if backend == "fast" {
            &self.fast
        } else {
            &self.cni
        }
    }
}
