//! berth-bridge: a container's bridge networking, in-process.
//!
//! The observable result of an attach is that of the CNI chain
//! `bridge (isGateway, ipMasq, hairpinMode) + host-local + portmap (snat) +
//! firewall + loopback`, without exec'ing six plugins: netlink (see
//! [`netlink`]) makes the bridge, the veth pair (its peer born inside the
//! container's netns) and the addresses and routes; one `nft` transaction
//! (see [`nft`]) adds NAT, published ports and forwarding; IPAM and the
//! attachment records are berth's own (see [`ipam`]).
//!
//! Invariants:
//! - Knows nothing of containers beyond an ID, a netns path and an ifname.
//! - `attach` is all or nothing: every check (ports, address, duplicate) runs
//!   before anything is made; a later failure undoes what was made.
//! - The record of an attachment is written before its veth is made and
//!   removed after everything else, so `detach` (idempotent, and fine with
//!   the netns or veth already gone) can always clean up after a crash.
//! - One network's attach/detach/remove are serialised by a `flock` on its
//!   lock file in the state dir; an address is in use exactly when a record
//!   names it.
//! - Only the nft table given to [`Bridge::with_table`] (default `berth`) is
//!   touched.

pub mod ipam;
pub mod netlink;
pub mod nft;

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{debug, info_span, warn};

use crate::netlink::{libc_eexist, Net4, Netlink};

/// A bridge network's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeNetwork {
    /// The network's name ("berth"); names its records and nft chains.
    pub name: String,
    /// The bridge device ("berth0").
    pub bridge: String,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    /// The bridge's address and the containers' default route.
    pub gateway: Ipv4Addr,
    pub mtu: Option<u32>,
    /// Masquerade traffic from the subnet that leaves through another link.
    pub ip_masq: bool,
    /// Hairpin mode on each container's bridge port.
    pub hairpin: bool,
    /// No NAT, no default route, no forwarding off the bridge.
    pub internal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// A published port: `host_ip:host_port/protocol` → the container's port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Only this host address (IPv4); `None` is every local address.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl std::fmt::Display for PortMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host_ip {
            Some(ip) => write!(f, "{ip}:{}/{}", self.host_port, self.protocol),
            None => write!(f, "{}/{}", self.host_port, self.protocol),
        }
    }
}

/// What to attach.
#[derive(Debug, Clone)]
pub struct AttachRequest<'a> {
    pub container_id: &'a str,
    /// The container's network namespace (a bind-mounted nsfs file).
    pub netns: &'a Path,
    /// The interface name inside the netns ("eth0").
    pub ifname: &'a str,
    pub ports: &'a [PortMapping],
    /// A static address, honoured or refused.
    pub ip: Option<Ipv4Addr>,
    /// The interface's MAC; the kernel picks one if `None`.
    pub mac: Option<[u8; 6]>,
}

/// One container interface on a network, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    pub host_veth: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// The interface's MAC, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub ports: Vec<PortMapping>,
}

/// Errors of the bridge network. Each message names the thing at fault.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The network's settings are unusable.
    #[error("network {network}: {reason}")]
    InvalidNetwork { network: String, reason: String },
    /// The request is malformed.
    #[error("{0}")]
    InvalidRequest(String),
    /// A requested address is taken.
    #[error("address {ip} is already in use on network {network}")]
    AddressInUse { ip: Ipv4Addr, network: String },
    /// A requested address is not a host address of the subnet.
    #[error("address {ip} is not usable on network {network} ({subnet}/{prefix})")]
    AddressNotInSubnet {
        ip: Ipv4Addr,
        network: String,
        subnet: Ipv4Addr,
        prefix: u8,
    },
    /// The subnet has no free address.
    #[error("no free address left on network {network} ({subnet}/{prefix})")]
    Exhausted {
        network: String,
        subnet: Ipv4Addr,
        prefix: u8,
    },
    /// A published port is taken.
    #[error("port {port} is already in use: {by}")]
    PortInUse { port: String, by: String },
    /// The container already has this interface on the network.
    #[error("container {container_id} already has interface {ifname} on network {network}")]
    AlreadyAttached {
        container_id: String,
        ifname: String,
        network: String,
    },
    /// `remove_network` with containers still attached.
    #[error("network {network} still has {count} attachment(s)")]
    NetworkInUse { network: String, count: usize },
    /// The subnet collides with the host's routes or addresses.
    #[error("subnet {subnet}/{prefix} overlaps {other_net}/{other_prefix} on the host")]
    SubnetOverlap {
        subnet: Ipv4Addr,
        prefix: u8,
        other_net: Ipv4Addr,
        other_prefix: u8,
    },
    /// The netns to attach to cannot be opened.
    #[error("network namespace {path}: {source}")]
    Netns {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A netlink request failed.
    #[error("netlink: {op}: {source}")]
    Netlink { op: String, source: std::io::Error },
    /// `nft` failed.
    #[error("nftables: {0}")]
    Nft(String),
    /// A file under the state dir or /proc/sys.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A record file does not parse.
    #[error("state file {path}: {source}")]
    State {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A record file of another schema.
    #[error("state file {path}: schema {found} is not supported")]
    Schema { path: PathBuf, found: u32 },
}

fn nle(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> BridgeError {
    let op = op.into();
    move |source| BridgeError::Netlink { op, source }
}

/// The in-process bridge network driver. Holds no open resources: each call
/// opens what it needs.
#[derive(Debug, Clone)]
pub struct Bridge {
    state_dir: PathBuf,
    table: String,
}

/// A random host-side veth name, as the CNI bridge plugin makes them:
/// "veth" and 8 hex digits.
pub fn veth_name() -> String {
    let mut b = [0u8; 4];
    // /dev/urandom never blocks; a failure leaves zeros and the EEXIST
    // retry in attach picks another name.
    if let Ok(mut f) = File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    if b == [0; 4] {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            ^ std::process::id();
        b = t.to_be_bytes();
    }
    format!("veth{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3])
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The first host route/address that `subnet/prefix` overlaps, if any.
pub fn overlap(subnet: Ipv4Addr, prefix: u8, host: &[Net4]) -> Option<Net4> {
    host.iter().copied().find(|&(net, p)| {
        let common = p.min(prefix);
        ipam::contains(net, common, subnet)
    })
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !s.starts_with('.')
}

fn write_sysctl(path: &str, value: &str) -> Result<(), BridgeError> {
    debug!(path, value, "sysctl");
    std::fs::write(path, value).map_err(|source| BridgeError::Io {
        path: path.into(),
        source,
    })
}

impl Bridge {
    /// A driver keeping its records in `state_dir` and its rules in the nft
    /// table `ip berth`.
    pub fn new(state_dir: PathBuf) -> Self {
        Self::with_table(state_dir, "berth")
    }

    /// Like [`Bridge::new`] with another nft table (tests use their own).
    pub fn with_table(state_dir: PathBuf, table: &str) -> Self {
        Bridge {
            state_dir,
            table: table.to_string(),
        }
    }

    /// The nft table this driver uses.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn check(&self, net: &BridgeNetwork) -> Result<(), BridgeError> {
        if !nft::valid_ident(&self.table) {
            return Err(BridgeError::InvalidRequest(format!(
                "nft table name {:?} must be letters, digits, '-', '_' or '.', starting with a letter",
                self.table
            )));
        }
        Self::check_network(net)
    }

    fn check_network(net: &BridgeNetwork) -> Result<(), BridgeError> {
        let bad = |reason: String| BridgeError::InvalidNetwork {
            network: net.name.clone(),
            reason,
        };
        if !valid_name(&net.name, 32) || !nft::valid_ident(&net.name) {
            return Err(bad(
                "the name must be 1-32 letters, digits, '-', '_' or '.', starting with a letter"
                    .into(),
            ));
        }
        if !valid_name(&net.bridge, 15) {
            return Err(bad(format!(
                "bridge name {:?} must be 1-15 letters, digits, '-', '_' or '.'",
                net.bridge
            )));
        }
        if net.prefix == 0 || net.prefix > 30 {
            return Err(bad(format!(
                "prefix /{} leaves no room for containers (1..=30)",
                net.prefix
            )));
        }
        if !ipam::contains(net.subnet, net.prefix, net.gateway)
            || net.gateway == ipam::network(net.subnet, net.prefix)
            || net.gateway == ipam::broadcast(net.subnet, net.prefix)
        {
            return Err(bad(format!(
                "gateway {} is not a host address of {}/{}",
                net.gateway, net.subnet, net.prefix
            )));
        }
        Ok(())
    }

    fn check_ports(
        &self,
        net: &BridgeNetwork,
        ports: &[PortMapping],
        records: &[Attachment],
    ) -> Result<(), BridgeError> {
        if net.internal && !ports.is_empty() {
            return Err(BridgeError::InvalidRequest(format!(
                "network {} is internal: ports cannot be published on it",
                net.name
            )));
        }
        for (i, p) in ports.iter().enumerate() {
            if p.host_port == 0 || p.container_port == 0 {
                return Err(BridgeError::InvalidRequest(format!(
                    "port mapping {p}: port 0 cannot be published"
                )));
            }
            if let Some(IpAddr::V6(ip)) = p.host_ip {
                return Err(BridgeError::InvalidRequest(format!(
                    "port mapping {p}: host address {ip} is IPv6; network {} is IPv4 only",
                    net.name
                )));
            }
            let clash = |q: &PortMapping| {
                q.protocol == p.protocol
                    && q.host_port == p.host_port
                    && (q.host_ip.is_none() || p.host_ip.is_none() || q.host_ip == p.host_ip)
            };
            if ports[..i].iter().any(clash) {
                return Err(BridgeError::PortInUse {
                    port: p.to_string(),
                    by: "it is published twice in this request".into(),
                });
            }
            // every network's records in this state dir
            let mut others = records.to_vec();
            if let Ok(rd) = std::fs::read_dir(&self.state_dir) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if let Some(n) = name.strip_suffix(".json") {
                        if n != net.name {
                            others.extend(ipam::read(&self.state_dir, n).unwrap_or_default());
                        }
                    }
                }
            }
            if let Some(a) = others.iter().find(|a| a.ports.iter().any(clash)) {
                return Err(BridgeError::PortInUse {
                    port: p.to_string(),
                    by: format!(
                        "published by container {} on network {}",
                        a.container_id, a.network
                    ),
                });
            }
            let ip = p.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let bound = match p.protocol {
                Protocol::Tcp => TcpListener::bind((ip, p.host_port)).map(drop),
                Protocol::Udp => UdpSocket::bind((ip, p.host_port)).map(drop),
            };
            if let Err(e) = bound {
                return Err(BridgeError::PortInUse {
                    port: p.to_string(),
                    by: format!("cannot bind it on the host: {e}"),
                });
            }
        }
        Ok(())
    }

    /// Make the bridge if it is missing: gateway address, MTU, up;
    /// `ip_forward` on and `route_localnet` on the bridge.
    fn ensure_bridge(&self, nl: &mut Netlink, net: &BridgeNetwork) -> Result<u32, BridgeError> {
        let link = match nl
            .link(&net.bridge)
            .map_err(nl_op("get link", &net.bridge))?
        {
            Some(l) => l,
            None => {
                match nl.add_bridge(&net.bridge, net.mtu) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc_eexist()) => {}
                    Err(e) => return Err(nl_op("create bridge", &net.bridge)(e)),
                }
                nl.link(&net.bridge)
                    .map_err(nl_op("get link", &net.bridge))?
                    .ok_or_else(|| BridgeError::Netlink {
                        op: format!("bridge {} vanished after it was made", net.bridge),
                        source: std::io::Error::from_raw_os_error(netlink::libc_enodev()),
                    })?
            }
        };
        if link.kind.as_deref() != Some("bridge") {
            return Err(BridgeError::InvalidNetwork {
                network: net.name.clone(),
                reason: format!(
                    "link {} exists and is not a bridge ({})",
                    net.bridge,
                    link.kind.as_deref().unwrap_or("unknown kind")
                ),
            });
        }
        match nl.add_addr(link.index, net.gateway, net.prefix) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc_eexist()) => {}
            Err(e) => return Err(nl_op("add gateway address to", &net.bridge)(e)),
        }
        if !link.up {
            nl.set_up(link.index, None)
                .map_err(nl_op("set up", &net.bridge))?;
        }
        write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        write_sysctl(
            &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", net.bridge),
            "1",
        )?;
        Ok(link.index)
    }

    /// Attach a container's netns to `net`: all or nothing.
    pub fn attach(
        &self,
        net: &BridgeNetwork,
        req: &AttachRequest,
    ) -> Result<Attachment, BridgeError> {
        let _span = info_span!("bridge attach", network = %net.name, container = req.container_id)
            .entered();
        self.check(net)?;
        if req.container_id.is_empty() {
            return Err(BridgeError::InvalidRequest("container ID is empty".into()));
        }
        if !valid_name(req.ifname, 15) {
            return Err(BridgeError::InvalidRequest(format!(
                "interface name {:?} must be 1-15 letters, digits, '-', '_' or '.'",
                req.ifname
            )));
        }
        let ns = File::open(req.netns).map_err(|source| BridgeError::Netns {
            path: req.netns.to_path_buf(),
            source,
        })?;
        let mut locked = ipam::lock(&self.state_dir, &net.name)?;
        if locked
            .attachments
            .iter()
            .any(|a| a.container_id == req.container_id && a.ifname == req.ifname)
        {
            return Err(BridgeError::AlreadyAttached {
                container_id: req.container_id.into(),
                ifname: req.ifname.into(),
                network: net.name.clone(),
            });
        }
        self.check_ports(net, req.ports, &locked.attachments)?;
        let used = locked.used();
        let ip =
            match req.ip {
                Some(ip) => {
                    if !ipam::usable(net.subnet, net.prefix, net.gateway, ip) {
                        return Err(BridgeError::AddressNotInSubnet {
                            ip,
                            network: net.name.clone(),
                            subnet: net.subnet,
                            prefix: net.prefix,
                        });
                    }
                    if used.contains(&ip) {
                        return Err(BridgeError::AddressInUse {
                            ip,
                            network: net.name.clone(),
                        });
                    }
                    ip
                }
                None => ipam::next_free(net.subnet, net.prefix, net.gateway, &used).ok_or_else(
                    || BridgeError::Exhausted {
                        network: net.name.clone(),
                        subnet: net.subnet,
                        prefix: net.prefix,
                    },
                )?,
            };
        let mut nl = Netlink::open().map_err(nle("open socket"))?;
        // a free host-side name (another process may race us: EEXIST retries)
        let mut host_veth = veth_name();
        for _ in 0..8 {
            if nl.link(&host_veth).map_err(nle("get link"))?.is_none() {
                break;
            }
            host_veth = veth_name();
        }
        let mut att = Attachment {
            network: net.name.clone(),
            container_id: req.container_id.into(),
            ifname: req.ifname.into(),
            host_veth: host_veth.clone(),
            ip,
            prefix: net.prefix,
            gateway: net.gateway,
            mac: String::new(),
            ports: req.ports.to_vec(),
        };
        // the record first: a crash from here on leaves something detach cleans
        locked.attachments.push(att.clone());
        locked.save()?;
        let mut made_veth = false;
        let result = self.attach_steps(&mut nl, net, req, &ns, &mut att, &mut made_veth);
        match result {
            Ok(()) => {
                if let Some(a) = locked
                    .attachments
                    .iter_mut()
                    .find(|a| a.container_id == att.container_id && a.ifname == att.ifname)
                {
                    a.mac = att.mac.clone();
                }
                locked.save()?;
                Ok(att)
            }
            Err(e) => {
                // only a veth we made: the random name may be another's
                if made_veth {
                    if let Err(u) = nl.del_link(&att.host_veth) {
                        warn!(veth = %att.host_veth, error = %u, "undo attach: deleting veth");
                    }
                }
                locked
                    .attachments
                    .retain(|a| !(a.container_id == att.container_id && a.ifname == att.ifname));
                if let Err(u) = locked.save() {
                    warn!(error = %u, "undo attach: dropping the record");
                }
                Err(e)
            }
        }
    }

    fn attach_steps(
        &self,
        nl: &mut Netlink,
        net: &BridgeNetwork,
        req: &AttachRequest,
        ns: &File,
        att: &mut Attachment,
        made_veth: &mut bool,
    ) -> Result<(), BridgeError> {
        let br_index = self.ensure_bridge(nl, net)?;
        nl.add_veth(&att.host_veth, req.ifname, ns, net.mtu, req.mac)
            .map_err(|source| BridgeError::Netlink {
                op: format!(
                    "create veth {} with peer {} in {}",
                    att.host_veth,
                    req.ifname,
                    req.netns.display()
                ),
                source,
            })?;
        *made_veth = true;
        let host = nl
            .link(&att.host_veth)
            .map_err(nl_op("get link", &att.host_veth))?
            .ok_or_else(|| BridgeError::Netlink {
                op: format!("veth {} vanished after it was made", att.host_veth),
                source: std::io::Error::from_raw_os_error(netlink::libc_enodev()),
            })?;
        nl.set_up(host.index, Some(br_index))
            .map_err(nl_op("enslave and set up", &att.host_veth))?;
        if net.hairpin {
            write_sysctl(
                &format!("/sys/class/net/{}/brport/hairpin_mode", att.host_veth),
                "1",
            )?;
        }
        // inside the container's netns
        let mut inner = Netlink::open_in(req.netns).map_err(|source| BridgeError::Netns {
            path: req.netns.to_path_buf(),
            source,
        })?;
        if let Some(lo) = inner.link("lo").map_err(nle("get link lo in the netns"))? {
            if !lo.up {
                inner
                    .set_up(lo.index, None)
                    .map_err(nle("set up lo in the netns"))?;
            }
        }
        let link = inner
            .link(req.ifname)
            .map_err(nl_op("get link in the netns", req.ifname))?
            .ok_or_else(|| BridgeError::Netlink {
                op: format!("{} is missing in the netns after it was made", req.ifname),
                source: std::io::Error::from_raw_os_error(netlink::libc_enodev()),
            })?;
        inner
            .add_addr(link.index, att.ip, net.prefix)
            .map_err(nl_op("add address in the netns to", req.ifname))?;
        inner
            .set_up(link.index, None)
            .map_err(nl_op("set up in the netns", req.ifname))?;
        if !net.internal {
            inner
                .add_default_route(net.gateway)
                .map_err(nle("add the default route in the netns"))?;
        }
        att.mac = link.mac.map(mac_string).unwrap_or_default();
        nft::apply(&nft::attach_script(&self.table, net, att.ip, &att.ports))?;
        Ok(())
    }

    /// Detach a container's interface: veth, port elements, address and
    /// record. Idempotent; works when the netns or the veth is gone.
    pub fn detach(
        &self,
        net: &BridgeNetwork,
        container_id: &str,
        ifname: &str,
    ) -> Result<(), BridgeError> {
        let _span =
            info_span!("bridge detach", network = %net.name, container = container_id).entered();
        self.check(net)?;
        let mut locked = ipam::lock(&self.state_dir, &net.name)?;
        let Some(att) = locked
            .attachments
            .iter()
            .find(|a| a.container_id == container_id && a.ifname == ifname)
            .cloned()
        else {
            debug!("no such attachment: nothing to do");
            return Ok(());
        };
        let mut nl = Netlink::open().map_err(nle("open socket"))?;
        nl.del_link(&att.host_veth)
            .map_err(nl_op("delete veth", &att.host_veth))?;
        if !att.ports.is_empty() {
            nft::apply(&nft::detach_script(&self.table, net, att.ip, &att.ports))?;
        }
        locked
            .attachments
            .retain(|a| !(a.container_id == container_id && a.ifname == ifname));
        locked.save()
    }

    /// The attachments recorded on `network`.
    pub fn attachments(&self, network: &str) -> Result<Vec<Attachment>, BridgeError> {
        if !valid_name(network, 32) {
            return Err(BridgeError::InvalidRequest(format!(
                "network name {network:?} is not valid"
            )));
        }
        ipam::read(&self.state_dir, network)
    }

    /// Delete the network's bridge and nft chains and maps (and the table
    /// once it is empty). Refused while attachments remain.
    pub fn remove_network(&self, net: &BridgeNetwork) -> Result<(), BridgeError> {
        let _span = info_span!("bridge remove", network = %net.name).entered();
        self.check(net)?;
        let locked = ipam::lock(&self.state_dir, &net.name)?;
        if !locked.attachments.is_empty() {
            return Err(BridgeError::NetworkInUse {
                network: net.name.clone(),
                count: locked.attachments.len(),
            });
        }
        nft::apply(&nft::remove_script(&self.table, &net.name))?;
        nft::delete_table_if_empty(&self.table)?;
        let mut nl = Netlink::open().map_err(nle("open socket"))?;
        if let Some(l) = nl
            .link(&net.bridge)
            .map_err(nl_op("get link", &net.bridge))?
        {
            if l.kind.as_deref() == Some("bridge") {
                nl.del_link(&net.bridge)
                    .map_err(nl_op("delete bridge", &net.bridge))?;
            }
        }
        // the lock file stays: removing it while others may wait on it
        // would let two holders lock two different files
        let p = self.state_dir.join(format!("{}.json", net.name));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(BridgeError::Io { path: p, source }),
        }
        Ok(())
    }

    /// Refuse a subnet that overlaps a route or an address on the host.
    pub fn check_subnet(subnet: Ipv4Addr, prefix: u8) -> Result<(), BridgeError> {
        if prefix > 32 {
            return Err(BridgeError::InvalidRequest(format!(
                "prefix /{prefix} is not an IPv4 prefix"
            )));
        }
        let mut nl = Netlink::open().map_err(nle("open socket"))?;
        let mut host = nl.route_dests().map_err(nle("list routes"))?;
        host.extend(nl.addrs().map_err(nle("list addresses"))?);
        match overlap(subnet, prefix, &host) {
            Some((other_net, other_prefix)) => Err(BridgeError::SubnetOverlap {
                subnet,
                prefix,
                other_net,
                other_prefix,
            }),
            None => Ok(()),
        }
    }
}

fn nl_op<'a>(op: &'a str, what: &'a str) -> impl FnOnce(std::io::Error) -> BridgeError + 'a {
    move |source| BridgeError::Netlink {
        op: format!("{op} {what}"),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_look_like_the_cni_plugins() {
        let a = veth_name();
        assert_eq!(a.len(), 12);
        assert!(a.starts_with("veth"));
        assert!(a[4..].bytes().all(|b| b.is_ascii_hexdigit()));
        let names: std::collections::HashSet<_> = (0..50).map(|_| veth_name()).collect();
        assert!(names.len() > 45, "names repeat: {names:?}");
    }

    #[test]
    fn overlap_with_fake_routes() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let host = [
            (ip("192.0.2.0"), 24),
            (ip("192.0.2.2"), 32),
            (ip("10.1.0.0"), 16),
            (ip("127.0.0.0"), 8),
        ];
        assert_eq!(overlap(ip("10.88.0.0"), 16, &host), None);
        assert_eq!(
            overlap(ip("10.1.5.0"), 24, &host),
            Some((ip("10.1.0.0"), 16))
        );
        // a bigger subnet containing a host route overlaps it too
        assert_eq!(
            overlap(ip("10.0.0.0"), 8, &host),
            Some((ip("10.1.0.0"), 16))
        );
        assert_eq!(
            overlap(ip("192.0.2.128"), 25, &host),
            Some((ip("192.0.2.0"), 24))
        );
        assert_eq!(
            overlap(ip("127.5.0.0"), 16, &host),
            Some((ip("127.0.0.0"), 8))
        );
        assert_eq!(overlap(ip("10.2.0.0"), 16, &host), None);
    }

    #[test]
    fn network_settings_are_checked() {
        let ok = BridgeNetwork {
            name: "berth".into(),
            bridge: "berth0".into(),
            subnet: Ipv4Addr::new(10, 88, 0, 0),
            prefix: 16,
            gateway: Ipv4Addr::new(10, 88, 0, 1),
            mtu: None,
            ip_masq: true,
            hairpin: true,
            internal: false,
        };
        Bridge::check_network(&ok).unwrap();
        let e = Bridge::check_network(&BridgeNetwork {
            gateway: Ipv4Addr::new(10, 89, 0, 1),
            ..ok.clone()
        })
        .unwrap_err();
        assert!(e.to_string().contains("gateway 10.89.0.1"), "{e}");
        let e = Bridge::check_network(&BridgeNetwork {
            bridge: "a-very-long-bridge-name".into(),
            ..ok.clone()
        })
        .unwrap_err();
        assert!(e.to_string().contains("bridge name"), "{e}");
        assert!(Bridge::check_network(&BridgeNetwork {
            prefix: 31,
            ..ok.clone()
        })
        .is_err());
        assert!(Bridge::check_network(&BridgeNetwork {
            name: "../x".into(),
            ..ok
        })
        .is_err());
    }

    #[test]
    fn mac_strings() {
        assert_eq!(mac_string([0x02, 0, 0xab, 1, 2, 0xff]), "02:00:ab:01:02:ff");
    }
}
