//! A container's networks: its pinned namespace, its attachments to CNI
//! networks, its published ports, and the `/etc/hosts` that names them.
//!
//! - A container on bridge or user networks gets a namespace pinned at
//!   `<run_dir>/netns/<id>` when it is created ([`crate::netns`]); the
//!   runtime joins it. Each network is attached as `eth0`, `eth1`, ... and
//!   published ports go to the first network.
//! - The default network goes through the fast in-process bridge path
//!   ([`Backend::Fast`]) unless the CNI path is asked for; every other
//!   network runs its plugins. Both sit behind [`Attacher`].
//! - What was attached is written to `network.json` in the container's
//!   directory after each step, before the next: teardown ([`Engine::
//!   teardown_network`]) reads it and undoes each step, idempotently, so it
//!   also finishes what a crash left.
//! - On user networks (not the default one) containers find each other by
//!   name: each one's `/etc/hosts` lists the others, rewritten in place (the
//!   file is bind-mounted) when one joins or leaves.

use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::container::{Container, ContainerError, Engine};
use crate::host::Network;
use crate::networks::{NetworkDef, Networks, DEFAULT_NETWORK};
use crate::ports::PortMapping;

/// Which path gives the default network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    /// The in-process bridge (netlink, nftables, berth's IPAM).
    #[default]
    Fast,
    /// The network's CNI plugins, as for every other network.
    Cni,
}

/// Where the network configuration and plugins are.
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    /// The CNI config dir.
    pub config_dir: PathBuf,
    /// The CNI plugin dirs.
    pub plugin_dirs: Vec<PathBuf>,
    /// The default network's path.
    pub backend: Backend,
    /// Where subnets come from for networks made without one (docker's
    /// `default-address-pools`); empty: berth's own.
    pub address_pools: Vec<crate::networks::AddressPool>,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            config_dir: PathBuf::from("/etc/cni/net.d"),
            plugin_dirs: vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")],
            backend: Backend::Fast,
            address_pools: Vec::new(),
        }
    }
}

/// One network attachment of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The network's name.
    pub network: String,
    /// The interface in the container.
    pub ifname: String,
    /// `fast` or `cni`: which path made it, and so undoes it.
    pub backend: String,
    /// The container's address on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// The prefix length of the address.
    #[serde(default)]
    pub prefix: u8,
    /// The gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// The interface's MAC address.
    #[serde(default)]
    pub mac: String,
    /// Name servers the network's result gave (CNI `dns`), if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Search domains the network's result gave, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
}

/// `network.json`: what a container has been given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetState {
    /// The pinned namespace, once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    /// The attachments made, in order.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// The published ports, host ports assigned.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// What was asked for, while it is not all made: written by `create`
    /// before any network is set up and dropped once all are, so a create
    /// cut short (its `berth` killed) is finished by `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<NetRequest>,
}

/// The networks a container asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetRequest {
    /// The networks, in order (`eth0` first).
    pub networks: Vec<String>,
    /// The published ports (host port 0: any free one).
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// `--ip` on the first network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
}

/// A network failure, with the network at fault.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A network definition problem.
    #[error(transparent)]
    Def(#[from] crate::networks::NetworkError),
    /// A port problem.
    #[error(transparent)]
    Port(#[from] crate::ports::PortError),
    /// Attaching or detaching failed.
    #[error("network {network}: {message}")]
    Attach {
        /// The network.
        network: String,
        /// What went wrong (the plugin's or the bridge path's error).
        message: String,
    },
    /// A file or namespace operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> NetError {
    let context = context.into();
    move |source| NetError::Io { context, source }
}

/// What attaching a container to a network needs.
#[derive(Debug)]
pub struct AttachArgs<'a> {
    /// The network.
    pub net: &'a NetworkDef,
    /// The container's ID.
    pub id: &'a str,
    /// Its name (for CNI_ARGS `K8S_POD_NAME`-like uses and logs).
    pub name: &'a str,
    /// The namespace.
    pub netns: &'a Path,
    /// The interface to make.
    pub ifname: &'a str,
    /// Ports to publish on this network.
    pub ports: &'a [PortMapping],
    /// A requested address.
    pub ip: Option<Ipv4Addr>,
}

/// One way of attaching containers to networks: the CNI plugins or the fast
/// bridge path.
pub trait Attacher {
    /// Attaches, all or nothing.
    fn attach(&self, a: &AttachArgs<'_>) -> Result<Attachment, NetError>;
    /// Detaches; fine if it is already gone, or the namespace is.
    fn detach(
        &self,
        net: Option<&NetworkDef>,
        id: &str,
        netns: &Path,
        a: &Attachment,
    ) -> Result<(), NetError>;
    /// Removes what the path made for the network itself (a bridge, rules)
    /// once no container uses it.
    fn remove_network(&self, net: &NetworkDef) -> Result<(), NetError>;
    /// Detaches every attachment this path holds for a container that
    /// `known` does not know (what a crash left); returns what it removed,
    /// as `network/container/ifname`.
    fn remove_leaked(&self, known: &dyn Fn(&str) -> bool) -> Result<Vec<String>, NetError>;
    /// Whether the network is ready (CNI STATUS); Ok when the path cannot
    /// tell.
    fn status(&self, net: &NetworkDef) -> Result<(), NetError> {
        let _ = net;
        Ok(())
    }
    /// Garbage-collects what the path holds for the network except the
    /// attachments of containers `known` knows: CNI GC.
    fn gc(&self, net: &NetworkDef, known: &dyn Fn(&str) -> bool) -> Result<(), NetError> {
        let _ = (net, known);
        Ok(())
    }
}

/// The attachers: chosen per network.
pub trait Attachers: std::fmt::Debug {
    /// The attacher for `net` (or, for teardown, for the backend word).
    fn for_backend(&self, backend: &str) -> &dyn Attacher;
}

/// The `/etc/hosts` of a container with a namespace of its own.
pub fn hosts_file(
    hostname: &str,
    name: &str,
    own: &[Attachment],
    peers: &[(String, Ipv4Addr)],
) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    match own.iter().find_map(|a| a.ip) {
        Some(ip) if hostname == name => out.push_str(&format!("{ip}\t{hostname}\n")),
        Some(ip) => out.push_str(&format!("{ip}\t{hostname} {name}\n")),
        None => out.push_str(&format!("127.0.1.1\t{hostname}\n")),
    }
    let mut seen = std::collections::BTreeSet::new();
    for (n, ip) in peers {
        if n != name && seen.insert(n.clone()) {
            out.push_str(&format!("{ip}\t{n}\n"));
        }
    }
    out
}

/// Whether any of the attachments is on a user network (one where
/// containers find each other by name).
fn on_user_network(atts: &[Attachment]) -> bool {
    atts.iter().any(|a| a.network != DEFAULT_NETWORK)
}

/// Rewrites `path` in place, not by rename: the file is bind-mounted into
/// the container, and a rename would leave the mount on the old inode.
fn write_in_place(path: &Path, body: &str) -> Result<(), NetError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(io_err(format!("open {}", path.display())))?;
    f.write_all(body.as_bytes())
        .map_err(io_err(format!("write {}", path.display())))
}

impl Engine {
    /// The network definitions.
    pub fn networks(&self) -> Networks {
        Networks::new(&self.options().network.config_dir, &self.options().root)
            .with_pools(self.options().network.address_pools.clone())
    }

    /// `network.json` of container `id`.
    pub fn net_state(&self, id: &str) -> NetState {
        fs::read(self.dir(id).join("network.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub(crate) fn save_net_state(&self, id: &str, st: &NetState) -> Result<(), NetError> {
        let p = self.dir(id).join("network.json");
        let tmp = p.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec(st).expect("JSON"))
            .map_err(io_err(format!("write {}", tmp.display())))?;
        fs::rename(&tmp, &p).map_err(io_err(format!("write {}", p.display())))
    }

    /// Checks the networks exist (making the default one on first use)
    /// before anything else is made.
    pub fn resolve_networks(&self, network: &Network) -> Result<Vec<NetworkDef>, NetError> {
        let nets = self.networks();
        Ok(network
            .networks()
            .iter()
            .map(|n| nets.get(n))
            .collect::<Result<_, _>>()?)
    }

    /// The namespace a `container:NAME` container joins: the other
    /// container's pinned one, or its running process's.
    pub fn joined_netns(&self, other: &str) -> Result<PathBuf, ContainerError> {
        let o = self.get(other)?;
        if let Some(p) = self.net_state(o.id()).netns {
            if crate::netns::is_pinned(&p) {
                return Ok(p);
            }
        }
        let st = self.state(&o);
        if st.pid > 0 && st.is_active() {
            return Ok(PathBuf::from(format!("/proc/{}/ns/net", st.pid)));
        }
        Err(ContainerError::State {
            name: o.name().to_string(),
            state: st.status,
            what: "its network namespace can only be joined while it runs".into(),
        })
    }

    /// Pins the container's namespace and attaches its networks, recording
    /// each step. On error the caller tears down with
    /// [`Engine::teardown_network`].
    pub fn setup_network(
        &self,
        c: &Container,
        defs: &[NetworkDef],
        mut ports: Vec<PortMapping>,
        ip: Option<Ipv4Addr>,
        attachers: &dyn Attachers,
    ) -> Result<NetState, NetError> {
        // Ports first: a taken one is refused before anything is made.
        let mut taken = Vec::new();
        // Only a fixed host port can clash with another container's.
        if ports.iter().any(|p| p.host_port != 0) {
            for o in self.list_all().unwrap_or_default() {
                if o.id() != c.id() {
                    for p in self.net_state(o.id()).ports {
                        taken.push((o.name().to_string(), p));
                    }
                }
            }
        }
        crate::ports::check_free(&ports, &taken)?;
        let request = NetRequest {
            networks: defs.iter().map(|d| d.name.clone()).collect(),
            ports: ports.clone(),
            ip,
        };
        crate::ports::assign(&mut ports)?;
        crate::isolation::sync(&self.options().root, &self.networks())?;
        let pin = crate::netns::path(&self.options().run_dir, c.id());
        let mut st = NetState {
            netns: Some(pin.clone()),
            pending: Some(request),
            ..NetState::default()
        };
        // Recorded first: teardown then knows to remove the pin.
        self.save_net_state(c.id(), &st)?;
        crate::netns::create(&pin).map_err(io_err(format!(
            "create network namespace {}",
            pin.display()
        )))?;
        for (i, def) in defs.iter().enumerate() {
            let ifname = format!("eth{i}");
            let own_ports: &[PortMapping] = if i == 0 { &ports } else { &[] };
            // Recorded before it is made: a crash in the middle of a plugin
            // chain leaves something only a DEL of this network removes.
            st.attachments.push(Attachment {
                network: def.name.clone(),
                ifname: ifname.clone(),
                backend: self.backend_for(def).to_string(),
                ip: None,
                prefix: 0,
                gateway: None,
                mac: String::new(),
                nameservers: Vec::new(),
                search: Vec::new(),
            });
            self.save_net_state(c.id(), &st)?;
            let a = self.attach_one(
                c,
                def,
                &pin,
                &ifname,
                own_ports,
                if i == 0 { ip } else { None },
                attachers,
            )?;
            *st.attachments.last_mut().expect("pushed") = a;
            if i == 0 {
                st.ports = ports.clone();
            }
            self.save_net_state(c.id(), &st)?;
        }
        self.refresh_hosts(c, &st, on_user_network(&st.attachments))?;
        st.pending = None;
        self.save_net_state(c.id(), &st)?;
        Ok(st)
    }

    #[allow(clippy::too_many_arguments)]
    fn attach_one(
        &self,
        c: &Container,
        def: &NetworkDef,
        pin: &Path,
        ifname: &str,
        ports: &[PortMapping],
        ip: Option<Ipv4Addr>,
        attachers: &dyn Attachers,
    ) -> Result<Attachment, NetError> {
        let backend = self.backend_for(def);
        attachers.for_backend(backend).attach(&AttachArgs {
            net: def,
            id: c.id(),
            name: c.name(),
            netns: pin,
            ifname,
            ports,
            ip,
        })
    }

    /// Before a start: a container whose networks are not all made (its
    /// create was cut short) gets them, and one whose pinned namespace is
    /// gone (the host rebooted, or someone unmounted it) gets its networks
    /// again with the same published ports; what was made before is
    /// released first. What is asked for stays recorded until all of it is
    /// made, so this can be cut short too.
    pub fn ensure_network(&self, c: &Container) -> Result<(), ContainerError> {
        let st = self.net_state(c.id());
        let request = match st.pending.clone() {
            Some(r) => r,
            None => {
                let Some(pin) = &st.netns else {
                    return Ok(());
                };
                if crate::netns::is_pinned(pin) {
                    return Ok(());
                }
                let host: crate::host::HostConfig =
                    serde_json::from_value(c.config.host.clone()).unwrap_or_default();
                NetRequest {
                    networks: st.attachments.iter().map(|a| a.network.clone()).collect(),
                    ports: st.ports.clone(),
                    ip: host.ip,
                }
            }
        };
        let _ = self.teardown_network_keeping(c, self.attachers(), Some(&request));
        let nets = self.networks();
        let defs = request
            .networks
            .iter()
            .map(|n| nets.get(n))
            .collect::<Result<Vec<_>, _>>()
            .map_err(NetError::from)?;
        if let Err(e) = self.setup_network(
            c,
            &defs,
            request.ports.clone(),
            request.ip,
            self.attachers(),
        ) {
            let _ = self.teardown_network_keeping(c, self.attachers(), Some(&request));
            return Err(e.into());
        }
        Ok(())
    }

    /// `fast` for the default network on the fast path, else `cni`.
    pub fn backend_for(&self, def: &NetworkDef) -> &'static str {
        if def.name == DEFAULT_NETWORK
            && def.driver == "bridge"
            && self.options().network.backend == Backend::Fast
        {
            "fast"
        } else {
            "cni"
        }
    }

    /// Removes what crashes left behind: pinned namespaces and attachments
    /// (veths, addresses, rules, CNI cache entries) of containers that have
    /// no record. Returns what it removed.
    pub fn remove_leaked_networks(&self) -> Result<Vec<String>, ContainerError> {
        let mut known: std::collections::BTreeSet<String> = self
            .list_all()?
            .iter()
            .map(|c| c.id().to_string())
            .collect();
        // A pod's pin and attachments are named by the pod's ID.
        known.extend(crate::pod::ids(&self.options().root));
        let mut out = Vec::new();
        for id in crate::netns::list(&self.options().run_dir) {
            if !known.contains(&id) {
                let pin = crate::netns::path(&self.options().run_dir, &id);
                crate::netns::remove(&pin).map_err(|e| NetError::Io {
                    context: format!("remove network namespace {}", pin.display()),
                    source: e,
                })?;
                out.push(format!("netns {}", pin.display()));
            }
        }
        let is_known = |id: &str| known.contains(id);
        for backend in ["fast", "cni"] {
            out.extend(
                self.attachers()
                    .for_backend(backend)
                    .remove_leaked(&is_known)?,
            );
        }
        Ok(out)
    }

    /// CNI GC of every CNI network in the config dir, keeping the
    /// attachments of the containers that have a record (`system prune`).
    /// A container being made has its record before its first ADD, so GC
    /// never takes what a concurrent `create` is attaching.
    pub fn gc_networks(&self) -> Result<(), ContainerError> {
        let mut known: std::collections::BTreeSet<String> = self
            .list_all()?
            .iter()
            .map(|c| c.id().to_string())
            .collect();
        // A pod's pin and attachments are named by the pod's ID.
        known.extend(crate::pod::ids(&self.options().root));
        let is_known = |id: &str| known.contains(id);
        for def in self.networks().list().map_err(NetError::from)? {
            if self.backend_for(&def) == "cni" {
                self.attachers().for_backend("cni").gc(&def, &is_known)?;
            }
        }
        Ok(())
    }

    /// The containers attached to network `name`.
    pub fn network_users(&self, name: &str) -> Result<Vec<Container>, ContainerError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|c| {
                self.net_state(c.id())
                    .attachments
                    .iter()
                    .any(|a| a.network == name)
            })
            .collect())
    }

    /// `network rm`: refuses the default network and a network in use;
    /// removes what the paths made for it (bridge, rules), then its file.
    pub fn remove_network(&self, name: &str) -> Result<NetworkDef, ContainerError> {
        if name == DEFAULT_NETWORK {
            return Err(NetError::Attach {
                network: name.into(),
                message: "the default network cannot be removed".into(),
            }
            .into());
        }
        let def = self.networks().get(name).map_err(NetError::from)?;
        let users = self.network_users(name)?;
        if !users.is_empty() {
            let names: Vec<&str> = users.iter().map(|c| c.name()).collect();
            return Err(NetError::Attach {
                network: name.into(),
                message: format!(
                    "it is in use by container(s) {}: remove them or disconnect them first",
                    names.join(", ")
                ),
            }
            .into());
        }
        let removed = self.networks().remove(name).map_err(NetError::from)?;
        self.attachers()
            .for_backend(self.backend_for(&def))
            .remove_network(&def)?;
        crate::isolation::sync(&self.options().root, &self.networks())?;
        Ok(removed)
    }

    /// `network connect`: attaches a container that has a namespace of its
    /// own to one more network.
    pub fn connect(
        &self,
        c: &Container,
        def: &NetworkDef,
        ip: Option<Ipv4Addr>,
        attachers: &dyn Attachers,
    ) -> Result<(), ContainerError> {
        let _lock = self.lock(c)?;
        let mut st = self.net_state(c.id());
        let Some(pin) = st.netns.clone() else {
            return Err(ContainerError::Network(NetError::Attach {
                network: def.name.clone(),
                message: format!(
                    "container {} has no network namespace of its own (--network {})",
                    c.name(),
                    c.config.network
                ),
            }));
        };
        if st.attachments.iter().any(|a| a.network == def.name) {
            return Err(ContainerError::Network(NetError::Attach {
                network: def.name.clone(),
                message: format!("container {} is already connected", c.name()),
            }));
        }
        let ifname = (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !st.attachments.iter().any(|a| &a.ifname == n))
            .expect("a free ethN");
        crate::isolation::sync(&self.options().root, &self.networks())?;
        let a = self
            .attach_one(c, def, &pin, &ifname, &[], ip, attachers)
            .map_err(ContainerError::Network)?;
        st.attachments.push(a);
        self.save_net_state(c.id(), &st)
            .map_err(ContainerError::Network)?;
        self.refresh_hosts(c, &st, true)
            .map_err(ContainerError::Network)?;
        Ok(())
    }

    /// `network disconnect`.
    pub fn disconnect(
        &self,
        c: &Container,
        network: &str,
        attachers: &dyn Attachers,
    ) -> Result<(), ContainerError> {
        let _lock = self.lock(c)?;
        let mut st = self.net_state(c.id());
        let Some(i) = st.attachments.iter().position(|a| a.network == network) else {
            return Err(ContainerError::Network(NetError::Attach {
                network: network.to_string(),
                message: format!("container {} is not connected to it", c.name()),
            }));
        };
        let a = st.attachments[i].clone();
        let def = self.networks().find(network).ok().flatten();
        attachers
            .for_backend(&a.backend)
            .detach(
                def.as_ref(),
                c.id(),
                st.netns.as_deref().unwrap_or(Path::new("")),
                &a,
            )
            .map_err(ContainerError::Network)?;
        st.attachments.remove(i);
        if i == 0 {
            st.ports.clear();
        }
        self.save_net_state(c.id(), &st)
            .map_err(ContainerError::Network)?;
        self.refresh_hosts(c, &st, true)
            .map_err(ContainerError::Network)?;
        Ok(())
    }

    /// Undoes everything `network.json` records: each attachment (last
    /// first), then the pin. Idempotent; errors are collected, and each
    /// step is still tried.
    pub fn teardown_network(
        &self,
        c: &Container,
        attachers: &dyn Attachers,
    ) -> Result<(), NetError> {
        self.teardown_network_keeping(c, attachers, None)
    }

    /// [`Engine::teardown_network`]; with `keep`, `network.json` is left
    /// holding that request (still to be made) instead of removed.
    fn teardown_network_keeping(
        &self,
        c: &Container,
        attachers: &dyn Attachers,
        keep: Option<&NetRequest>,
    ) -> Result<(), NetError> {
        let mut st = self.net_state(c.id());
        if let Some(r) = keep {
            // Cut short here, the request is still there to finish.
            st.pending = Some(r.clone());
        }
        let had_peers = on_user_network(&st.attachments);
        let mut first_err = None;
        let nets = self.networks();
        while let Some(a) = st.attachments.last().cloned() {
            let def = nets.find(&a.network).ok().flatten();
            let pin = st.netns.clone().unwrap_or_default();
            match attachers
                .for_backend(&a.backend)
                .detach(def.as_ref(), c.id(), &pin, &a)
            {
                Ok(()) => {
                    st.attachments.pop();
                    let _ = self.save_net_state(c.id(), &st);
                }
                Err(e) => {
                    tracing::debug!(container = c.id(), network = a.network, "detach: {e}");
                    first_err.get_or_insert(e);
                    st.attachments.pop();
                }
            }
        }
        st.ports.clear();
        if let Some(pin) = st.netns.take() {
            if let Err(e) = crate::netns::remove(&pin) {
                first_err.get_or_insert(NetError::Io {
                    context: format!("remove network namespace {}", pin.display()),
                    source: e,
                });
            }
        }
        match keep {
            Some(r) => {
                let pending = NetState {
                    pending: Some(r.clone()),
                    ..NetState::default()
                };
                if let Err(e) = self.save_net_state(c.id(), &pending) {
                    first_err.get_or_insert(e);
                }
            }
            None => {
                let _ = fs::remove_file(self.dir(c.id()).join("network.json"));
            }
        }
        // The others on its user networks no longer list it.
        if had_peers {
            let _ = self.refresh_peers(c);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Rewrites `c`'s own `/etc` files, and with `peers` those of the
    /// containers that may list it (only a change on a user network touches
    /// them, so a container on the default network alone skips the scan).
    fn refresh_hosts(&self, c: &Container, st: &NetState, peers: bool) -> Result<(), NetError> {
        self.write_hosts(c, st)?;
        self.write_resolv(c, st)?;
        if peers {
            self.refresh_peers(c)?;
        }
        Ok(())
    }

    /// Rewrites the `/etc/hosts` of every other container on a user
    /// network: `c` joined or left some.
    fn refresh_peers(&self, c: &Container) -> Result<(), NetError> {
        let Ok(all) = self.list_all() else {
            return Ok(());
        };
        for o in all.iter().filter(|o| o.id() != c.id()) {
            let ost = self.net_state(o.id());
            if ost.attachments.iter().any(|a| a.network != DEFAULT_NETWORK) {
                let _ = self.write_hosts(o, &ost);
            }
        }
        Ok(())
    }

    /// The peers of `c` on its user networks: (name, address).
    fn peers(&self, c: &Container, st: &NetState) -> Vec<(String, Ipv4Addr)> {
        let mine: Vec<&str> = st
            .attachments
            .iter()
            .map(|a| a.network.as_str())
            .filter(|n| *n != DEFAULT_NETWORK)
            .collect();
        if mine.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for o in self.list_all().unwrap_or_default() {
            if o.id() == c.id() {
                continue;
            }
            for a in self.net_state(o.id()).attachments {
                if let (true, Some(ip)) = (mine.contains(&a.network.as_str()), a.ip) {
                    out.push((o.name().to_string(), ip));
                }
            }
        }
        out.sort();
        out
    }

    /// A network whose result names DNS servers gives the container a
    /// `/etc/resolv.conf` with them (in place: it is bind-mounted).
    fn write_resolv(&self, c: &Container, st: &NetState) -> Result<(), NetError> {
        let servers: Vec<&String> = st.attachments.iter().flat_map(|a| &a.nameservers).collect();
        if servers.is_empty() {
            return Ok(());
        }
        let path = self.bundle_dir(c.id()).join("resolv.conf");
        let mut body = String::from("# Generated by berth from the network's DNS settings.\n");
        let search: Vec<&String> = st.attachments.iter().flat_map(|a| &a.search).collect();
        if !search.is_empty() {
            let words: Vec<&str> = search.iter().map(|s| s.as_str()).collect();
            body.push_str(&format!("search {}\n", words.join(" ")));
        }
        for n in servers {
            body.push_str(&format!("nameserver {n}\n"));
        }
        write_in_place(&path, &body)
    }

    fn write_hosts(&self, c: &Container, st: &NetState) -> Result<(), NetError> {
        let path = self.bundle_dir(c.id()).join("hosts");
        if !path.exists() {
            return Ok(());
        }
        let hostname = if c.config.hostname.is_empty() {
            c.id().chars().take(12).collect()
        } else {
            c.config.hostname.clone()
        };
        let body = hosts_file(&hostname, c.name(), &st.attachments, &self.peers(c, st));
        write_in_place(&path, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(net: &str, ip: &str) -> Attachment {
        Attachment {
            network: net.into(),
            ifname: "eth0".into(),
            backend: "cni".into(),
            ip: Some(ip.parse().unwrap()),
            prefix: 24,
            gateway: None,
            mac: String::new(),
            nameservers: Vec::new(),
            search: Vec::new(),
        }
    }

    #[test]
    fn hosts_name_the_container_and_its_peers() {
        let h = hosts_file(
            "abc",
            "web",
            &[att("front", "10.89.0.2")],
            &[
                ("db".into(), "10.89.0.3".parse().unwrap()),
                ("web".into(), "10.89.0.9".parse().unwrap()),
            ],
        );
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("10.89.0.2\tabc web\n"), "{h}");
        assert!(h.contains("10.89.0.3\tdb\n"), "{h}");
        // Never itself as a peer.
        assert!(!h.contains("10.89.0.9"), "{h}");
        let h = hosts_file("web", "web", &[], &[]);
        assert!(h.contains("127.0.1.1\tweb\n"), "{h}");
    }

    #[test]
    fn state_round_trips() {
        let st = NetState {
            netns: Some("/run/berth/netns/x".into()),
            attachments: vec![att("berth", "10.88.0.2")],
            ports: crate::ports::parse("8080:80").unwrap(),
            pending: Some(NetRequest {
                networks: vec!["berth".into(), "front".into()],
                ports: crate::ports::parse("80").unwrap(),
                ip: Some(Ipv4Addr::new(10, 88, 0, 7)),
            }),
        };
        let back: NetState = serde_json::from_slice(&serde_json::to_vec(&st).unwrap()).unwrap();
        assert_eq!(back, st);
        // An empty file reads as nothing attached.
        let none: NetState = serde_json::from_str("{}").unwrap();
        assert_eq!(none, NetState::default());
        // A file of an older berth (no `pending`) is complete.
        let old: NetState = serde_json::from_str(r#"{"netns":"/x","attachments":[]}"#).unwrap();
        assert!(old.pending.is_none());
    }
}
