//! Network definitions: CNI network config lists in the config dir (default
//! `/etc/cni/net.d`), berth's own among them.
//!
//! - The default network `berth` is a bridge (`berth0`) with host-local IPAM,
//!   portmap, firewall and tuning. It is written to `berth.conflist` on first
//!   use, on a subnet that collides with no route of the host and no other
//!   network in the dir: 10.90.0.0/16, else the first free one of docker's
//!   default address pools. Its file is the truth: edit the bridge or the
//!   subnet there and berth follows.
//! - `network create` writes `<name>.conflist` of the same shape with its own
//!   bridge (`berthN`) and subnet (unless given: a `/24` of 10.91.0.0/16,
//!   else docker's pools); `--internal` drops NAT and the default route.
//! - The two never take from each other's own range, so a default network
//!   pushed off 10.90 (by another berth's on the host) does not swallow the
//!   user networks' /16. Configured pools ([`AddressPool`], docker's
//!   `default-address-pools` shape) replace both lists.
//! - Any other list in the dir is a network too, run by its plugins.
//!
//! Files are written to a temporary name and linked into place, so a reader
//! never sees half a file and two writers cannot both create one name.
//! Choosing a subnet and writing the file happen under a lock in berth's
//! state dir, so concurrent creates never share a subnet.

use std::fs::{self, File};
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// The default network's name.
pub const DEFAULT_NETWORK: &str = "berth";
/// The default network's bridge.
pub const DEFAULT_BRIDGE: &str = "berth0";

/// What can go wrong with network definitions.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// No network of that name.
    #[error("network {name:?} not found in {dir}")]
    NotFound {
        /// The name asked for.
        name: String,
        /// The config dir searched.
        dir: String,
    },
    /// A network of that name exists.
    #[error("network {0:?} already exists")]
    Exists(String),
    /// A bad name, subnet or gateway.
    #[error("{0}")]
    Invalid(String),
    /// A config list that cannot be read as one.
    #[error("malformed network config {file}: {reason}")]
    Malformed {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// Every subnet of the address pools is taken.
    #[error(
        "no free subnet for network {name:?} in the address pools {pools}: each overlaps a \
         route of the host or another network; give one with --subnet, or other pools with \
         --default-address-pool"
    )]
    NoFreeSubnet {
        /// The network being made.
        name: String,
        /// The pools tried.
        pools: String,
    },
    /// The subnet overlaps a route of the host or another network.
    #[error("subnet {subnet} overlaps {what}")]
    Overlap {
        /// The subnet asked for.
        subnet: String,
        /// What it overlaps.
        what: String,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The error.
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> NetworkError {
    let context = context.into();
    move |source| NetworkError::Io { context, source }
}

/// An IPv4 subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    /// The network address.
    pub addr: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl Subnet {
    /// Parses `10.89.0.0/24`; the address is masked to the prefix.
    pub fn parse(s: &str) -> Result<Subnet, NetworkError> {
        let bad = || NetworkError::Invalid(format!("invalid subnet {s:?}: use A.B.C.D/N"));
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().ok().filter(|p| *p <= 30).ok_or_else(bad)?;
        Ok(Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, o: &Subnet) -> bool {
        let m = mask(self.prefix.min(o.prefix));
        u32::from(self.addr) & m == u32::from(o.addr) & m
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    /// The first host address, the usual gateway.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A pool of subnets in docker's `default-address-pools` shape: `base` cut
/// into subnets of prefix length `size`, taken in address order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    /// The range.
    pub base: Subnet,
    /// The prefix length of each subnet taken from it.
    pub size: u8,
}

impl AddressPool {
    /// `base` cut into `/size`s; `size` must be within `base` and at most 30.
    pub fn new(base: Subnet, size: u8) -> Result<AddressPool, NetworkError> {
        if size < base.prefix || size > 30 {
            return Err(NetworkError::Invalid(format!(
                "invalid address pool {base} with size {size}: the size must be from {} to 30",
                base.prefix
            )));
        }
        Ok(AddressPool { base, size })
    }

    /// Parses docker's `--default-address-pool` value,
    /// `base=172.30.0.0/16,size=24`.
    pub fn parse(s: &str) -> Result<AddressPool, NetworkError> {
        let bad = |why: &str| {
            NetworkError::Invalid(format!(
                "invalid address pool {s:?}: {why} (use base=A.B.C.D/N,size=M)"
            ))
        };
        let (mut base, mut size) = (None, None);
        for part in s.split(',') {
            match part.trim().split_once('=') {
                Some(("base", v)) => base = Some(Subnet::parse(v.trim())?),
                Some(("size", v)) => {
                    size = Some(v.trim().parse::<u8>().map_err(|_| bad("bad size"))?)
                }
                _ => return Err(bad(&format!("unknown part {part:?}"))),
            }
        }
        AddressPool::new(
            base.ok_or_else(|| bad("no base"))?,
            size.ok_or_else(|| bad("no size"))?,
        )
    }

    /// Its subnets, in order.
    pub fn subnets(&self) -> impl Iterator<Item = Subnet> {
        let base = u32::from(self.base.addr);
        let step = 1u64 << (32 - u32::from(self.size));
        let count = 1u64 << (self.size - self.base.prefix);
        let size = self.size;
        (0..count).map(move |i| Subnet {
            addr: Ipv4Addr::from((u64::from(base) + i * step) as u32),
            prefix: size,
        })
    }
}

impl std::fmt::Display for AddressPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "base={},size={}", self.base, self.size)
    }
}

/// docker's default address pools: 172.17.0.0/16 to 172.31.0.0/16 as
/// `/16`s, then 192.168.0.0/16 as `/20`s.
pub fn docker_pools() -> Vec<AddressPool> {
    let mut p: Vec<AddressPool> = (17..=31)
        .map(|b| AddressPool {
            base: Subnet {
                addr: Ipv4Addr::new(172, b, 0, 0),
                prefix: 16,
            },
            size: 16,
        })
        .collect();
    p.push(AddressPool {
        base: Subnet {
            addr: Ipv4Addr::new(192, 168, 0, 0),
            prefix: 16,
        },
        size: 20,
    });
    p
}

/// Where the default network's subnet comes from unless pools are
/// configured: 10.90.0.0/16 (clear of podman's 10.88 and 10.89), then
/// docker's pools. Never from the user networks' 10.91.0.0/16.
pub fn default_network_pools() -> Vec<AddressPool> {
    let mut p = vec![AddressPool {
        base: Subnet {
            addr: Ipv4Addr::new(10, 90, 0, 0),
            prefix: 16,
        },
        size: 16,
    }];
    p.extend(docker_pools());
    p
}

/// Where `network create` takes a subnet unless pools are configured: a
/// `/24` of 10.91.0.0/16, then docker's pools.
pub fn user_network_pools() -> Vec<AddressPool> {
    let mut p = vec![AddressPool {
        base: Subnet {
            addr: Ipv4Addr::new(10, 91, 0, 0),
            prefix: 16,
        },
        size: 24,
    }];
    p.extend(docker_pools());
    p
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// One network: its config list and what berth reads from it.
#[derive(Debug, Clone)]
pub struct NetworkDef {
    /// The list's name.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// The whole config list.
    pub conflist: Value,
    /// The first plugin's type (`bridge` for berth's own).
    pub driver: String,
    /// The bridge plugin's bridge, if any.
    pub bridge: Option<String>,
    /// The host-local range's subnet, if any.
    pub subnet: Option<Subnet>,
    /// The host-local range's gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// No NAT and no default route.
    pub internal: bool,
    /// Written by berth (its list carries a `berth` object): `network prune`
    /// only ever removes these.
    pub berth_made: bool,
}

impl NetworkDef {
    /// Reads a `.conflist` (or a single-plugin `.conf`/`.json`, promoted to
    /// a list as libcni does).
    pub fn load(file: &Path) -> Result<NetworkDef, NetworkError> {
        let bytes = fs::read(file).map_err(io_err(format!("read {}", file.display())))?;
        let malformed = |reason: String| NetworkError::Malformed {
            file: file.display().to_string(),
            reason,
        };
        let mut v: Value = serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
        if v.get("plugins").is_none() && v.get("type").is_some() {
            let plugin = v.clone();
            v = json!({"cniVersion": plugin["cniVersion"], "name": plugin["name"],
                       "plugins": [plugin]});
        }
        let name = v["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| malformed("no \"name\"".into()))?
            .to_string();
        let plugins = v["plugins"]
            .as_array()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| malformed("no \"plugins\" list".into()))?;
        let mut driver = String::new();
        for (i, p) in plugins.iter().enumerate() {
            let t = p["type"]
                .as_str()
                .ok_or_else(|| malformed(format!("plugin {i} has no \"type\"")))?;
            if i == 0 {
                driver = t.to_string();
            }
        }
        let first = &plugins[0];
        let range = &first["ipam"]["ranges"][0][0];
        let subnet = range["subnet"]
            .as_str()
            .or(first["ipam"]["subnet"].as_str())
            .and_then(|s| Subnet::parse(s).ok());
        let gateway = range["gateway"]
            .as_str()
            .or(first["ipam"]["gateway"].as_str())
            .and_then(|g| g.parse().ok())
            .or(subnet.map(|s| s.first_host()));
        Ok(NetworkDef {
            bridge: (driver == "bridge")
                .then(|| first["bridge"].as_str().unwrap_or("cni0").to_string()),
            internal: driver == "bridge" && first["ipMasq"] != json!(true),
            berth_made: v["berth"].is_object(),
            name,
            file: file.to_path_buf(),
            driver,
            subnet,
            gateway,
            conflist: v,
        })
    }
}

/// The network definitions in one config dir, with berth's lock.
#[derive(Debug, Clone)]
pub struct Networks {
    config_dir: PathBuf,
    lock: PathBuf,
    /// The routes to keep clear of; None: the host's, read when needed.
    routes: Option<Vec<Subnet>>,
    /// Configured address pools, for the default network and the others
    /// alike (docker's `default-address-pools`); None: berth's own.
    pools: Option<Vec<AddressPool>>,
}

/// `network create`'s options.
#[derive(Debug, Clone, Default)]
pub struct CreateNetwork {
    /// The name.
    pub name: String,
    /// The subnet; chosen when None.
    pub subnet: Option<Subnet>,
    /// The gateway; the subnet's first address when None.
    pub gateway: Option<Ipv4Addr>,
    /// No NAT, no default route.
    pub internal: bool,
    /// The bridge; `berthN` when None.
    pub bridge: Option<String>,
}

fn check_name(name: &str) -> Result<(), NetworkError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(NetworkError::Invalid(format!(
            "invalid network name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )))
    }
}

/// The host's IPv4 routes and connected subnets, from `/proc/net/route`.
pub fn host_routes() -> Vec<Subnet> {
    let Ok(text) = fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    parse_routes(&text)
}

fn parse_routes(text: &str) -> Vec<Subnet> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Ok(dst), Ok(m)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16))
        else {
            continue;
        };
        // The file holds little-endian words; the default route (mask 0)
        // overlaps everything and is no reason to refuse a subnet.
        let m = m.swap_bytes();
        if m == 0 {
            continue;
        }
        out.push(Subnet {
            addr: Ipv4Addr::from(dst.swap_bytes()),
            prefix: m.count_ones() as u8,
        });
    }
    out
}

impl Networks {
    /// The networks in `config_dir`; `state_dir` holds berth's lock.
    pub fn new(config_dir: &Path, state_dir: &Path) -> Networks {
        Networks {
            config_dir: config_dir.to_path_buf(),
            lock: state_dir.join("networks.lock"),
            routes: None,
            pools: None,
        }
    }

    /// The same, taking subnets from `pools` (in order) for the default
    /// network and `network create` alike; none: berth's own
    /// ([`default_network_pools`], [`user_network_pools`]).
    pub fn with_pools(mut self, pools: Vec<AddressPool>) -> Networks {
        self.pools = (!pools.is_empty()).then_some(pools);
        self
    }

    /// The first subnet of `pools` that overlaps nothing `taken`.
    fn choose(
        &self,
        name: &str,
        pools: &[AddressPool],
        taken: &[(Subnet, String)],
    ) -> Result<Subnet, NetworkError> {
        pools
            .iter()
            .flat_map(AddressPool::subnets)
            .find(|s| !taken.iter().any(|(t, _)| t.overlaps(s)))
            .ok_or_else(|| NetworkError::NoFreeSubnet {
                name: name.to_string(),
                pools: pools
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
            })
    }

    /// The same, keeping clear of `routes` instead of the host's (for
    /// tests, which must not depend on the host's live routes).
    pub fn with_routes(mut self, routes: Vec<Subnet>) -> Networks {
        self.routes = Some(routes);
        self
    }

    /// The config dir.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    fn locked(&self) -> Result<File, NetworkError> {
        if let Some(d) = self.lock.parent() {
            fs::create_dir_all(d).map_err(io_err(format!("create {}", d.display())))?;
        }
        let f =
            File::create(&self.lock).map_err(io_err(format!("open {}", self.lock.display())))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err(format!("lock {}", self.lock.display()))(e.into()))?;
        Ok(f)
    }

    /// Every network in the dir, sorted by file name as libcni does. A
    /// malformed file is an error naming it.
    pub fn list(&self) -> Result<Vec<NetworkDef>, NetworkError> {
        let rd = match fs::read_dir(&self.config_dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(format!("read {}", self.config_dir.display()))(e)),
        };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conflist" | "conf" | "json")
                )
            })
            .collect();
        files.sort();
        let mut out: Vec<NetworkDef> = Vec::new();
        for f in files {
            let d = NetworkDef::load(&f)?;
            // The first file of a name wins, as in libcni.
            if !out.iter().any(|o| o.name == d.name) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// The network `name`. The default network is made on first use.
    pub fn get(&self, name: &str) -> Result<NetworkDef, NetworkError> {
        if let Some(d) = self.find(name)? {
            return Ok(d);
        }
        if name == DEFAULT_NETWORK {
            return self.ensure_default();
        }
        Err(NetworkError::NotFound {
            name: name.to_string(),
            dir: self.config_dir.display().to_string(),
        })
    }

    /// The network `name` if its file exists; never makes one (teardown
    /// must not create the default network).
    pub fn find(&self, name: &str) -> Result<Option<NetworkDef>, NetworkError> {
        // A malformed file of another network must not hide this one.
        let rd = match fs::read_dir(&self.config_dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(format!("read {}", self.config_dir.display()))(e)),
        };
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let ext = f.extension().and_then(|e| e.to_str());
            if !matches!(ext, Some("conflist" | "conf" | "json")) {
                continue;
            }
            match NetworkDef::load(&f) {
                Ok(d) if d.name == name => return Ok(Some(d)),
                Ok(_) => {}
                // The file named after the network must be well-formed.
                Err(e) if f.file_stem().and_then(|s| s.to_str()) == Some(name) => return Err(e),
                Err(_) => {}
            }
        }
        Ok(None)
    }

    /// The default network, written with a free subnet if missing.
    pub fn ensure_default(&self) -> Result<NetworkDef, NetworkError> {
        let _l = self.locked()?;
        if let Some(d) = self.find(DEFAULT_NETWORK)? {
            return Ok(d);
        }
        let taken = self.taken()?;
        let pools = self.pools.clone().unwrap_or_else(default_network_pools);
        let subnet = self.choose(DEFAULT_NETWORK, &pools, &taken)?;
        self.write(&CreateNetwork {
            name: DEFAULT_NETWORK.into(),
            subnet: Some(subnet),
            gateway: None,
            internal: false,
            bridge: Some(DEFAULT_BRIDGE.into()),
        })
    }

    /// Subnets in use: the host's routes and every network's range.
    fn taken(&self) -> Result<Vec<(Subnet, String)>, NetworkError> {
        let routes = self.routes.clone().unwrap_or_else(host_routes);
        let mut t: Vec<(Subnet, String)> = routes
            .into_iter()
            .map(|s| (s, format!("a route of the host ({s})")))
            .collect();
        for d in self.list()? {
            if let Some(s) = d.subnet {
                t.push((s, format!("network {:?} ({s})", d.name)));
            }
        }
        Ok(t)
    }

    /// `network create`.
    pub fn create(&self, o: &CreateNetwork) -> Result<NetworkDef, NetworkError> {
        check_name(&o.name)?;
        let _l = self.locked()?;
        if self.find(&o.name)?.is_some() {
            return Err(NetworkError::Exists(o.name.clone()));
        }
        let taken = self.taken()?;
        let subnet = match o.subnet {
            Some(s) => {
                if let Some((_, what)) = taken.iter().find(|(t, _)| t.overlaps(&s)) {
                    return Err(NetworkError::Overlap {
                        subnet: s.to_string(),
                        what: what.clone(),
                    });
                }
                s
            }
            None => {
                let pools = self.pools.clone().unwrap_or_else(user_network_pools);
                self.choose(&o.name, &pools, &taken)?
            }
        };
        if let Some(g) = o.gateway {
            if !subnet.contains(g) || g == subnet.addr {
                return Err(NetworkError::Invalid(format!(
                    "gateway {g} is not a host address of subnet {subnet}"
                )));
            }
        }
        let bridge = match &o.bridge {
            Some(b) => {
                let ok = !b.is_empty()
                    && b.len() <= 15
                    && b.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                if !ok {
                    return Err(NetworkError::Invalid(format!(
                        "invalid bridge name {b:?}: 1 to 15 letters, digits, '_', '.' or '-'"
                    )));
                }
                if let Some(d) = self
                    .list()?
                    .into_iter()
                    .find(|d| d.bridge.as_ref() == Some(b))
                {
                    return Err(NetworkError::Invalid(format!(
                        "bridge {b:?} is already used by network {:?}",
                        d.name
                    )));
                }
                b.clone()
            }
            None => {
                let used: Vec<String> = self.list()?.into_iter().filter_map(|d| d.bridge).collect();
                (1..)
                    .map(|n| format!("berth{n}"))
                    .find(|b| !used.contains(b) && !Path::new("/sys/class/net").join(b).exists())
                    .expect("some berthN is free")
            }
        };
        self.write(&CreateNetwork {
            subnet: Some(subnet),
            bridge: Some(bridge),
            ..o.clone()
        })
    }

    /// Writes the config list of a bridge network; fails if the name's file
    /// exists.
    fn write(&self, o: &CreateNetwork) -> Result<NetworkDef, NetworkError> {
        let subnet = o.subnet.expect("chosen");
        let gateway = o.gateway.unwrap_or(subnet.first_host());
        let routes = if o.internal {
            json!([])
        } else {
            json!([{"dst": "0.0.0.0/0"}])
        };
        let v = json!({
            "cniVersion": "1.0.0",
            "name": o.name,
            "berth": {"created": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)},
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": o.bridge,
                    "isGateway": true,
                    "ipMasq": !o.internal,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": subnet.to_string(), "gateway": gateway.to_string()}]],
                        "routes": routes,
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
                {"type": "firewall"},
                {"type": "tuning"},
            ],
        });
        fs::create_dir_all(&self.config_dir)
            .map_err(io_err(format!("create {}", self.config_dir.display())))?;
        let file = self.config_dir.join(format!("{}.conflist", o.name));
        let tmp = self
            .config_dir
            .join(format!(".{}.conflist.{}", o.name, std::process::id()));
        let body = serde_json::to_vec_pretty(&v).expect("JSON");
        fs::write(&tmp, body).map_err(io_err(format!("write {}", tmp.display())))?;
        let linked = fs::hard_link(&tmp, &file);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => NetworkDef::load(&file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(NetworkError::Exists(o.name.clone()))
            }
            Err(e) => Err(io_err(format!("write {}", file.display()))(e)),
        }
    }

    /// Removes the network's file. The caller checks that no container uses
    /// it and tears down what it made.
    pub fn remove(&self, name: &str) -> Result<NetworkDef, NetworkError> {
        let _l = self.locked()?;
        let d = self.find(name)?.ok_or_else(|| NetworkError::NotFound {
            name: name.to_string(),
            dir: self.config_dir.display().to_string(),
        })?;
        fs::remove_file(&d.file).map_err(io_err(format!("remove {}", d.file.display())))?;
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let a = Subnet::parse("10.89.3.7/24").unwrap();
        assert_eq!(a.to_string(), "10.89.3.0/24");
        assert!(a.contains("10.89.3.200".parse().unwrap()));
        assert!(!a.contains("10.89.4.1".parse().unwrap()));
        assert!(a.overlaps(&Subnet::parse("10.89.0.0/16").unwrap()));
        assert!(!a.overlaps(&Subnet::parse("10.89.4.0/24").unwrap()));
        assert_eq!(a.first_host(), Ipv4Addr::new(10, 89, 3, 1));
        for bad in ["10.0.0.0", "10.0.0.0/33", "x/8", "10.0.0.0/31"] {
            assert!(Subnet::parse(bad).unwrap_err().to_string().contains(bad));
        }
    }

    #[test]
    fn routes_from_proc() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(
            parse_routes(text),
            vec![Subnet {
                addr: Ipv4Addr::new(192, 0, 2, 0),
                prefix: 24
            }]
        );
    }

    fn net(s: &str) -> Subnet {
        Subnet::parse(s).unwrap()
    }

    #[test]
    fn create_list_remove() {
        let t = tempfile::tempdir().unwrap();
        let routes = vec![net("192.0.2.0/24")];
        let n = Networks::new(&t.path().join("net.d"), t.path()).with_routes(routes.clone());
        let d = n.get(DEFAULT_NETWORK).unwrap();
        assert_eq!(d.bridge.as_deref(), Some(DEFAULT_BRIDGE));
        assert!(d.berth_made);
        assert!(!d.internal);
        let s = d.subnet.unwrap();
        assert_eq!(s, net("10.90.0.0/16"));
        assert!(!routes.iter().any(|r| r.overlaps(&s)));
        // Made once: a second get reads the same file.
        assert_eq!(n.get(DEFAULT_NETWORK).unwrap().subnet, Some(s));

        let a = n
            .create(&CreateNetwork {
                name: "front".into(),
                internal: true,
                ..Default::default()
            })
            .unwrap();
        assert!(a.internal);
        assert_eq!(
            a.bridge.as_deref().map(|b| b.starts_with("berth")),
            Some(true)
        );
        let b = n
            .create(&CreateNetwork {
                name: "back".into(),
                ..Default::default()
            })
            .unwrap();
        assert!(!a.subnet.unwrap().overlaps(&b.subnet.unwrap()));
        assert_ne!(a.bridge, b.bridge);
        assert!(matches!(
            n.create(&CreateNetwork {
                name: "back".into(),
                ..Default::default()
            }),
            Err(NetworkError::Exists(_))
        ));
        let e = n
            .create(&CreateNetwork {
                name: "clash".into(),
                subnet: a.subnet,
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("overlaps") && e.contains("front"), "{e}");
        let e = n
            .create(&CreateNetwork {
                name: "bad name".into(),
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad name"), "{e}");
        let names: Vec<String> = n.list().unwrap().into_iter().map(|d| d.name).collect();
        assert_eq!(names, vec!["back", "berth", "front"]);
        n.remove("front").unwrap();
        assert!(matches!(n.get("front"), Err(NetworkError::NotFound { .. })));
    }

    /// The subnets of the default network and of two user networks, made in
    /// a fresh config dir on a host with `routes`.
    fn chosen(routes: &[&str]) -> (Subnet, Subnet, Subnet) {
        let t = tempfile::tempdir().unwrap();
        let n = Networks::new(&t.path().join("net.d"), t.path())
            .with_routes(routes.iter().map(|r| net(r)).collect());
        let d = n.get(DEFAULT_NETWORK).unwrap().subnet.unwrap();
        let mut user = ["a", "b"].into_iter().map(|name| {
            n.create(&CreateNetwork {
                name: name.into(),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("network create {name} with routes {routes:?}: {e}"))
            .subnet
            .unwrap()
        });
        (d, user.next().unwrap(), user.next().unwrap())
    }

    #[test]
    fn the_default_network_keeps_out_of_the_user_pool() {
        // Another config dir's default network is up on the host.
        let (d, a, b) = chosen(&["10.90.0.0/16"]);
        assert!(!d.overlaps(&net("10.90.0.0/16")) && !d.overlaps(&net("10.91.0.0/16")));
        assert_eq!((a, b), (net("10.91.0.0/24"), net("10.91.1.0/24")));
        // The same with this dir's own default network as the route.
        let (d, a, _) = chosen(&[]);
        assert_eq!((d, a), (net("10.90.0.0/16"), net("10.91.0.0/24")));
    }

    #[test]
    fn docker_pools_when_10_is_taken() {
        // A VPN routes all of 10/8: docker's default pools are used,
        // 172.17-31 in /16s, then 192.168 in /20s.
        let (d, a, b) = chosen(&["10.0.0.0/8"]);
        assert_eq!(
            (d, a, b),
            (
                net("172.17.0.0/16"),
                net("172.18.0.0/16"),
                net("172.19.0.0/16")
            )
        );
        let (d, a, b) = chosen(&["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/20"]);
        assert_eq!(
            (d, a, b),
            (
                net("192.168.16.0/20"),
                net("192.168.32.0/20"),
                net("192.168.48.0/20")
            )
        );
    }

    #[test]
    fn a_foreign_list_on_the_user_pool_moves_user_networks_on() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("net.d");
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("00-other.conflist"),
            br#"{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"bridge",
                "ipam":{"type":"host-local","ranges":[[{"subnet":"10.91.0.0/16"}]]}}]}"#,
        )
        .unwrap();
        let n = Networks::new(&dir, t.path()).with_routes(vec![]);
        assert_eq!(
            n.get(DEFAULT_NETWORK).unwrap().subnet,
            Some(net("10.90.0.0/16"))
        );
        let a = n
            .create(&CreateNetwork {
                name: "a".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(a.subnet, Some(net("172.17.0.0/16")));
    }

    #[test]
    fn address_pools() {
        let p = AddressPool::parse("base=198.18.0.0/16,size=24").unwrap();
        assert_eq!(
            p,
            AddressPool::parse(" size=24 , base=198.18.0.0/16").unwrap()
        );
        assert_eq!(p.to_string(), "base=198.18.0.0/16,size=24");
        let subnets: Vec<Subnet> = p.subnets().collect();
        assert_eq!(subnets.len(), 256);
        assert_eq!(subnets[1], net("198.18.1.0/24"));
        assert_eq!(subnets[255], net("198.18.255.0/24"));
        assert_eq!(
            AddressPool::parse("base=10.0.0.0/8,size=8")
                .unwrap()
                .subnets()
                .collect::<Vec<_>>(),
            [net("10.0.0.0/8")]
        );
        for bad in [
            "base=198.18.0.0/16",
            "size=24",
            "base=198.18.0.0/16,size=8",
            "base=198.18.0.0/16,size=31",
            "base=198.18.0.0/16,size=x",
            "base=nowhere,size=24",
            "base=198.18.0.0/16,size=24,color=red",
        ] {
            let e = AddressPool::parse(bad).unwrap_err().to_string();
            assert!(e.contains("pool") || e.contains("subnet"), "{bad}: {e}");
        }
        // docker's defaults, in docker's order.
        let d = docker_pools();
        assert_eq!(d.len(), 16);
        assert_eq!(d[0].to_string(), "base=172.17.0.0/16,size=16");
        assert_eq!(d[15].to_string(), "base=192.168.0.0/16,size=20");
    }

    #[test]
    fn configured_pools_serve_both_until_they_run_out() {
        let t = tempfile::tempdir().unwrap();
        let pools = vec![AddressPool::parse("base=198.18.0.0/23,size=24").unwrap()];
        let n = Networks::new(&t.path().join("net.d"), t.path())
            .with_routes(vec![])
            .with_pools(pools);
        assert_eq!(
            n.get(DEFAULT_NETWORK).unwrap().subnet,
            Some(net("198.18.0.0/24"))
        );
        let a = n
            .create(&CreateNetwork {
                name: "a".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(a.subnet, Some(net("198.18.1.0/24")));
        let e = n
            .create(&CreateNetwork {
                name: "b".into(),
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"b\"")
                && e.contains("base=198.18.0.0/23,size=24")
                && e.contains("--default-address-pool"),
            "{e}"
        );
        // A given subnet needs no pool.
        let c = n
            .create(&CreateNetwork {
                name: "c".into(),
                subnet: Some(net("198.19.0.0/24")),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(c.subnet, Some(net("198.19.0.0/24")));
    }

    #[test]
    fn malformed_and_foreign_lists() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("net.d");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("bad.conflist"), b"{ not json").unwrap();
        fs::write(
            dir.join("10-single.conf"),
            br#"{"cniVersion":"0.4.0","name":"single","type":"macvlan","master":"eth0"}"#,
        )
        .unwrap();
        let n = Networks::new(&dir, t.path());
        let e = n.get("bad").unwrap_err().to_string();
        assert!(e.contains("bad.conflist"), "{e}");
        // Another network is still found past the broken file.
        let s = n.get("single").unwrap();
        assert_eq!(s.driver, "macvlan");
        assert!(!s.berth_made);
        assert_eq!(s.conflist["plugins"][0]["master"], "eth0");
        assert!(n.list().unwrap_err().to_string().contains("bad.conflist"));
    }
}
