//! Networks: create, list, inspect, remove, connect, disconnect, prune.
//! Networks are shared by every namespace (they are the host's CNI config
//! lists); what a namespace's command may remove with `--force` is only its
//! own containers.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use super::ApiError;
use crate::container::{Container, ContainerError, Engine};
use crate::network::NetError;
use crate::networks::{CreateNetwork, NetworkDef, Subnet, DEFAULT_NETWORK};

/// A network to make (docker's `network create`).
#[derive(Debug, Clone, Default)]
pub struct NetworkCreateRequest {
    /// The name.
    pub name: String,
    /// The driver: only `bridge` (the default when empty).
    pub driver: String,
    /// `A.B.C.D/N`; a free one when None.
    pub subnet: Option<String>,
    /// The gateway; the subnet's first address when None.
    pub gateway: Option<String>,
    /// No NAT and no route out.
    pub internal: bool,
    /// The bridge's name.
    pub bridge: Option<String>,
}

/// A network's ID: the SHA-256 of its name (podman's CNI backend's).
pub fn network_id(name: &str) -> String {
    berth_image::digest::Digest::sha256_of(name.as_bytes())
        .hex()
        .to_string()
}

fn net_err(e: impl Into<NetError>) -> ApiError {
    ApiError::Container(ContainerError::Network(e.into()))
}

impl Engine {
    /// Makes a bridge network.
    pub fn network_create(&self, r: &NetworkCreateRequest) -> Result<NetworkDef, ApiError> {
        if !(r.driver.is_empty() || r.driver == "bridge") {
            return Err(ApiError::Invalid(format!(
                "unsupported network driver {:?}: berth makes bridge networks",
                r.driver
            )));
        }
        let subnet = r
            .subnet
            .as_deref()
            .map(Subnet::parse)
            .transpose()
            .map_err(net_err)?;
        let gateway: Option<Ipv4Addr> = match &r.gateway {
            Some(g) => {
                if subnet.is_none() {
                    return Err(ApiError::Invalid("--gateway needs --subnet".into()));
                }
                Some(g.parse().map_err(|_| {
                    ApiError::Invalid(format!("invalid --gateway {g:?}: not an IPv4 address"))
                })?)
            }
            None => None,
        };
        self.networks()
            .create(&CreateNetwork {
                name: r.name.clone(),
                subnet,
                gateway,
                internal: r.internal,
                bridge: r.bridge.clone(),
            })
            .map_err(net_err)
    }

    /// Every network, the default one included (made on first use, as
    /// docker's).
    pub fn network_list(&self) -> Result<Vec<NetworkDef>, ApiError> {
        let nets = self.networks();
        nets.ensure_default().map_err(net_err)?;
        nets.list().map_err(net_err)
    }

    /// podman's inspect document of network `name`, with the containers
    /// (of every namespace) attached to it.
    pub fn network_inspect(&self, name: &str) -> Result<Value, ApiError> {
        let d = self.networks().get(name).map_err(net_err)?;
        let mut containers = serde_json::Map::new();
        for c in self.network_users(&d.name).unwrap_or_default() {
            let st = self.net_state(c.id());
            if let Some(at) = st.attachments.iter().find(|x| x.network == d.name) {
                containers.insert(
                    c.id().to_string(),
                    json!({
                        "Name": c.name(),
                        "Namespace": c.record.namespace,
                        "IPv4Address": at.ip.map(|i| format!("{i}/{}", at.prefix)).unwrap_or_default(),
                        "MacAddress": at.mac,
                        "InterfaceName": at.ifname,
                    }),
                );
            }
        }
        Ok(json!({
            "Name": d.name,
            "Id": network_id(&d.name),
            "Driver": d.driver,
            "NetworkInterface": d.bridge,
            "Internal": d.internal,
            "IPAM": {"Driver": "host-local", "Config": d.subnet.map(|s| vec![json!({
                "Subnet": s.to_string(),
                "Gateway": d.gateway.map(|g| g.to_string()).unwrap_or_default(),
            })]).unwrap_or_default()},
            "Backend": if self.backend_for(&d) == "fast" { "berth bridge (in-process)" } else { "CNI plugins" },
            // CNI STATUS (plugins at spec 1.1 report whether they can take
            // containers; older ones are taken as ready).
            "Status": match self.attachers().for_backend(self.backend_for(&d)).status(&d) {
                Ok(()) => "ready".to_string(),
                Err(e) => e.to_string(),
            },
            "ConfigFile": d.file,
            "Containers": containers,
            "Config": d.conflist,
        }))
    }

    /// Removes network `name`; with `force`, this namespace's containers
    /// on it are removed first (another namespace's keep it in use).
    pub fn network_remove(&self, name: &str, force: bool) -> Result<NetworkDef, ApiError> {
        if force && name != DEFAULT_NETWORK {
            let mine = self.namespace().as_str();
            for c in self.network_users(name)? {
                if c.record.namespace == mine {
                    self.remove_container(&c, true, false)?;
                }
            }
        }
        Ok(self.remove_network(name)?)
    }

    /// Connects `c` to network `network` (at `ip` when given).
    pub fn network_connect(
        &self,
        c: &Container,
        network: &str,
        ip: Option<&str>,
    ) -> Result<(), ApiError> {
        let def = self.networks().get(network).map_err(net_err)?;
        let ip: Option<Ipv4Addr> = ip
            .map(|ip| {
                ip.parse().map_err(|_| {
                    ApiError::Invalid(format!("invalid --ip {ip:?}: not an IPv4 address"))
                })
            })
            .transpose()?;
        self.connect(c, &def, ip, self.attachers())?;
        Ok(())
    }

    /// Disconnects `c` from network `network`.
    pub fn network_disconnect(&self, c: &Container, network: &str) -> Result<(), ApiError> {
        self.disconnect(c, network, self.attachers())?;
        Ok(())
    }

    /// Removes the networks berth made that no container (of any
    /// namespace) uses, never the default one; returns their names.
    pub fn network_prune(&self) -> Result<Vec<String>, ApiError> {
        let mut out = Vec::new();
        for d in self.networks().list().map_err(net_err)? {
            if !d.berth_made
                || d.name == DEFAULT_NETWORK
                || !self.network_users(&d.name)?.is_empty()
            {
                continue;
            }
            self.remove_network(&d.name)?;
            out.push(d.name);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_sha256_of_the_name() {
        assert_eq!(network_id("a").len(), 64);
        // sha256("abc"), the FIPS 180-2 example.
        assert_eq!(
            network_id("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
