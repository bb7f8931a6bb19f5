//! The `run`/`create` flags that shape the container's host side: mounts
//! (`-v`, `--tmpfs`), resources (`--memory`, `--memory-swap`, `--cpus`,
//! `--cpu-shares`, `--cpuset-cpus`, `--pids-limit`), `--ulimit`, `--device`,
//! `--network` and `--security-opt`, with docker's syntax and rules.
//!
//! Three steps, each at the moment it can be done:
//! 1. [`HostFlags::parse`] checks everything that can be checked before the
//!    container exists (syntax, units, docker's memory/swap rules, that a
//!    bind source exists, the host device's type and numbers) into a
//!    [`HostConfig`], which serialises so the caller can keep it.
//! 2. [`HostConfig::prepare`], with the container's rootfs mounted, makes the
//!    volumes it needs (anonymous ones for `-v /ctr` and the image's
//!    `Volumes`, named ones on first use) and fills each new one with the
//!    image's content at its destination (docker's copy-up). Image paths are
//!    opened with `openat2(RESOLVE_IN_ROOT)` and walked with `O_NOFOLLOW`, so
//!    no symlink in the image reaches a host file.
//! 3. [`HostConfig::apply`] edits the generated `config.json` value.
//!
//! Not here: SELinux relabelling for `:z`/`:Z` (accepted; SELinux labels go
//! to the runtime, which ignores them on a host without SELinux), the
//! `bridge` and other network modes (they come with the networking work),
//! and a directory as `--device` (docker adds every device under it).

use std::collections::BTreeSet;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::spec::{Seccomp, SecurityFlags};
use crate::volumes::{self, VolumeError, VolumeStore};

/// A host flag that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A flag's value is malformed or out of range.
    #[error("invalid argument {value:?} for \"{flag}\" flag: {reason}")]
    Invalid {
        /// The flag, e.g. `--memory`.
        flag: &'static str,
        /// The value as given.
        value: String,
        /// Why.
        reason: String,
    },
    /// A memory/swap combination docker refuses.
    #[error("{0}")]
    Memory(String),
    /// A `-v` bind source that does not exist.
    #[error("invalid mount config for type \"bind\": bind source path does not exist: {0}")]
    BindSource(String),
    /// Two mounts at one place.
    #[error("duplicate mount point: {0}")]
    DuplicateMount(String),
    /// A bad `--network`, `--ip` or `-p` value, or a combination docker
    /// refuses.
    #[error("{0}")]
    Network(String),
    /// A bad `-p` value.
    #[error(transparent)]
    Port(#[from] crate::ports::PortError),
    /// A volume operation failed.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// Copying the image's content into a new volume failed.
    #[error("copy {path} from the image into volume {volume}: {source}")]
    CopyUp {
        /// The path in the image.
        path: String,
        /// The volume.
        volume: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `apply` before `prepare` for an anonymous volume (a bug in the caller).
    #[error("volume for {0} was not prepared")]
    Unprepared(String),
}

fn invalid(flag: &'static str, value: &str, reason: impl Into<String>) -> HostError {
    HostError::Invalid {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The raw flag values, as the user typed them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostFlags {
    /// `-v`/`--volume`: `HOST:CTR[:OPTS]`, `NAME:CTR[:OPTS]`, `/CTR`.
    pub volumes: Vec<String>,
    /// `--tmpfs /CTR[:OPTIONS]`.
    pub tmpfs: Vec<String>,
    /// `--memory`.
    pub memory: Option<String>,
    /// `--memory-swap`.
    pub memory_swap: Option<String>,
    /// `--cpus`.
    pub cpus: Option<String>,
    /// `--cpu-shares`.
    pub cpu_shares: Option<String>,
    /// `--cpuset-cpus`.
    pub cpuset_cpus: Option<String>,
    /// `--pids-limit`.
    pub pids_limit: Option<String>,
    /// `--ulimit NAME=SOFT[:HARD]`.
    pub ulimits: Vec<String>,
    /// `--device /dev/HOST[:/dev/CTR[:rwm]]`.
    pub devices: Vec<String>,
    /// `--network`.
    pub network: Option<String>,
    /// `--ip`.
    pub ip: Option<String>,
    /// `-p`.
    pub publish: Vec<String>,
    /// `-P`.
    pub publish_all: bool,
    /// `--security-opt`.
    pub security_opts: Vec<String>,
}

/// Where a mount's files come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MountSource {
    /// A host path.
    Bind {
        /// The host path (absolute, clean).
        source: PathBuf,
    },
    /// A volume: named, or anonymous (`name` None until prepared).
    Volume {
        /// The volume's name.
        name: Option<String>,
        /// Made for this container alone (`-v /ctr`, an image `VOLUME`).
        anonymous: bool,
    },
}

/// One `-v` mount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute, clean path in the container.
    pub destination: String,
    /// Its source.
    pub source: MountSource,
    /// `ro`.
    pub read_only: bool,
    /// `shared`, `rslave`, ...; `rprivate` when None.
    pub propagation: Option<String>,
    /// `z` or `Z`.
    pub relabel: Option<String>,
    /// `nocopy`: no copy-up into a new volume.
    pub nocopy: bool,
}

/// One `--tmpfs` mount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tmpfs {
    /// Absolute, clean path in the container.
    pub destination: String,
    /// Mount options, docker's defaults merged with the user's.
    pub options: Vec<String>,
}

/// Resource limits; None is unset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// Memory plus swap in bytes (OCI `memory.swap`); -1 unlimited.
    pub memory_swap: Option<i64>,
    /// CPU quota in µs per period.
    pub cpu_quota: Option<i64>,
    /// CPU period in µs.
    pub cpu_period: Option<u64>,
    /// CPU shares.
    pub cpu_shares: Option<u64>,
    /// Allowed CPUs.
    pub cpuset_cpus: Option<String>,
    /// Most tasks.
    pub pids_limit: Option<i64>,
}

/// One `--ulimit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_NOFILE` etc.
    pub kind: String,
    /// Soft limit (`u64::MAX` unlimited).
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// One `--device`, with the host node's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// The host node.
    pub host_path: String,
    /// Its path in the container.
    pub path: String,
    /// `c` or `b`.
    pub kind: String,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Permission bits of the host node.
    pub file_mode: u32,
    /// Owner of the host node.
    pub uid: u32,
    /// Group of the host node.
    pub gid: u32,
    /// Device cgroup access, some of `rwm`.
    pub access: String,
}

/// The container's network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A new network namespace with only `lo`.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// Another container's network namespace (`container:NAME`).
    Container(String),
    /// A namespace of its own on these CNI networks, by name (`bridge` is
    /// berth's default network).
    Networks(Vec<String>),
}

impl Network {
    /// docker's `NetworkMode` word: `none`, `host`, `container:X`, `bridge`
    /// or the networks' names.
    pub fn mode(&self) -> String {
        match self {
            Network::None => "none".into(),
            Network::Host => "host".into(),
            Network::Container(c) => format!("container:{c}"),
            Network::Networks(n) if n.len() == 1 && n[0] == crate::networks::DEFAULT_NETWORK => {
                "bridge".into()
            }
            Network::Networks(n) => n.join(","),
        }
    }

    /// The networks of a container with a namespace of its own.
    pub fn networks(&self) -> &[String] {
        match self {
            Network::Networks(n) => n,
            _ => &[],
        }
    }
}

/// The parsed host flags, kept in the container record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostConfig {
    /// `-v` mounts (plus, after `prepare`, the image's volumes).
    pub mounts: Vec<Mount>,
    /// `--tmpfs` mounts.
    pub tmpfs: Vec<Tmpfs>,
    /// Resource limits.
    pub resources: Resources,
    /// `--ulimit`s.
    pub rlimits: Vec<Rlimit>,
    /// `--device`s.
    pub devices: Vec<Device>,
    /// `--network`.
    pub network: Network,
    /// `--ip`: the address on the (one) network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<std::net::Ipv4Addr>,
    /// `-p`, and `-P`'s ports once the image's are known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<crate::ports::PortMapping>,
    /// `-P`: publish the image's exposed ports too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish_all: bool,
    /// The network namespace to join: a pinned one, or another container's.
    /// Set by the engine before the bundle is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_path: Option<PathBuf>,
    /// `--security-opt apparmor=`.
    pub apparmor: Option<String>,
    /// `--security-opt label=...`: the process label.
    pub selinux_label: Option<String>,
    /// Namespaces joined instead of made (a pod's containers join their
    /// sandbox's); set by the engine, not by flags. Applied last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub join: Vec<NamespaceJoin>,
    /// A directory whose `hostname`, `hosts` and `resolv.conf` are mounted
    /// instead of generated ones (a pod's, shared by its containers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_etc: Option<PathBuf>,
    /// The cgroup under which the container's own goes (a pod's
    /// `cgroup_parent`); `/berth` when None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
}

/// One namespace a container joins instead of getting a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceJoin {
    /// The OCI namespace type: `network`, `ipc`, `uts`, `pid`, ...
    pub kind: String,
    /// The namespace file to join; None: the host's (no namespace of its
    /// own).
    pub path: Option<PathBuf>,
}

/// `--network`: `bridge` (the default), `none`, `host`, `container:NAME`, or
/// network names separated by commas.
fn parse_network(v: Option<&str>) -> Result<Network, HostError> {
    let v = v.map(str::trim).unwrap_or_default();
    Ok(match v {
        "" | "bridge" | "default" => {
            Network::Networks(vec![crate::networks::DEFAULT_NETWORK.into()])
        }
        "none" => Network::None,
        "host" => Network::Host,
        _ => {
            if let Some(c) = v.strip_prefix("container:") {
                if c.is_empty() {
                    return Err(HostError::Network(
                        "invalid --network container: name the container, as container:NAME".into(),
                    ));
                }
                return Ok(Network::Container(c.to_string()));
            }
            let mut names: Vec<String> = Vec::new();
            for n in v.split(',').map(str::trim) {
                let n = if n == "bridge" {
                    crate::networks::DEFAULT_NETWORK
                } else {
                    n
                };
                if n.is_empty() || ["none", "host"].contains(&n) || n.starts_with("container:") {
                    return Err(HostError::Network(format!(
                        "invalid --network {v:?}: none, host and container: cannot be combined with other networks"
                    )));
                }
                if !names.iter().any(|x| x == n) {
                    names.push(n.to_string());
                }
            }
            Network::Networks(names)
        }
    })
}

/// A path cleaned lexically, as Go's `filepath.Clean` (absolute input).
fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// docker's `RAMInBytes`: `NUM[.NUM][ ][kmgtp][i][b]`, binary units.
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, rest) = t.split_at(num_end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return Err(
            "invalid size: expected a number with an optional unit b, k, m, g, t or p".into(),
        );
    }
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid size: {num:?} is not a number"))?;
    let rest = rest.strip_prefix(' ').unwrap_or(rest).to_ascii_lowercase();
    let mut r = rest.as_str();
    let mut mult = 1f64;
    if let Some(c) = r.chars().next() {
        let exp = match c {
            'k' => 1,
            'm' => 2,
            'g' => 3,
            't' => 4,
            'p' => 5,
            _ => 0,
        };
        if exp > 0 {
            mult = 1024f64.powi(exp);
            r = &r[1..];
        }
    }
    let r = r.strip_prefix('i').unwrap_or(r);
    let r = r.strip_prefix('b').unwrap_or(r);
    if !r.is_empty() {
        return Err(format!("invalid size: unknown unit in {s:?}"));
    }
    let v = n * mult;
    if v >= i64::MAX as f64 {
        return Err("invalid size: too large".into());
    }
    Ok(v as i64)
}

/// docker's ulimit names.
const ULIMITS: [(&str, &str); 15] = [
    ("core", "RLIMIT_CORE"),
    ("cpu", "RLIMIT_CPU"),
    ("data", "RLIMIT_DATA"),
    ("fsize", "RLIMIT_FSIZE"),
    ("locks", "RLIMIT_LOCKS"),
    ("memlock", "RLIMIT_MEMLOCK"),
    ("msgqueue", "RLIMIT_MSGQUEUE"),
    ("nice", "RLIMIT_NICE"),
    ("nofile", "RLIMIT_NOFILE"),
    ("nproc", "RLIMIT_NPROC"),
    ("rss", "RLIMIT_RSS"),
    ("rtprio", "RLIMIT_RTPRIO"),
    ("rttime", "RLIMIT_RTTIME"),
    ("sigpending", "RLIMIT_SIGPENDING"),
    ("stack", "RLIMIT_STACK"),
];

fn parse_ulimit(s: &str) -> Result<Rlimit, HostError> {
    const F: &str = "--ulimit";
    let (name, vals) = s
        .split_once('=')
        .ok_or_else(|| invalid(F, s, "expected NAME=SOFT[:HARD]"))?;
    let kind = ULIMITS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| k.to_string())
        .ok_or_else(|| invalid(F, s, format!("invalid ulimit type: {name}")))?;
    let num = |v: &str| -> Result<u64, HostError> {
        if v == "-1" || v == "unlimited" {
            return Ok(u64::MAX);
        }
        v.parse::<u64>()
            .map_err(|_| invalid(F, s, format!("invalid ulimit value {v:?}")))
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let v = num(vals)?;
            (v, v)
        }
    };
    if soft > hard {
        return Err(invalid(
            F,
            s,
            format!("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"),
        ));
    }
    Ok(Rlimit { kind, soft, hard })
}

fn valid_access(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 3
        && p.chars().all(|c| "rwm".contains(c))
        && p.chars().collect::<BTreeSet<_>>().len() == p.len()
}

/// `--device SRC[:DST][:PERMS]` into (host path, container path, access).
fn split_device(s: &str) -> Result<(String, String, String), HostError> {
    const F: &str = "--device";
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, perms) = match parts.as_slice() {
        [src] => (*src, *src, "rwm"),
        [src, p] if valid_access(p) => (*src, *src, *p),
        [src, dst] => (*src, *dst, "rwm"),
        [src, dst, p] => (*src, *dst, *p),
        _ => return Err(invalid(F, s, "expected /dev/HOST[:/dev/CONTAINER[:rwm]]")),
    };
    if !valid_access(perms) {
        return Err(invalid(
            F,
            s,
            format!("invalid device mode {perms:?}: use some of r, w and m"),
        ));
    }
    if !src.starts_with('/') || !dst.starts_with('/') {
        return Err(invalid(F, s, "device paths must be absolute"));
    }
    Ok((clean(src), clean(dst), perms.to_string()))
}

fn device(s: &str) -> Result<Device, HostError> {
    let (host_path, path, access) = split_device(s)?;
    let md = fs::metadata(&host_path)
        .map_err(|e| invalid("--device", s, format!("{host_path}: {e}")))?;
    let kind = if md.file_type().is_char_device() {
        "c"
    } else if md.file_type().is_block_device() {
        "b"
    } else {
        return Err(invalid(
            "--device",
            s,
            format!("{host_path} is not a device node"),
        ));
    };
    let rdev = md.rdev();
    Ok(Device {
        host_path,
        path,
        kind: kind.into(),
        major: i64::from(rustix::fs::major(rdev)),
        minor: i64::from(rustix::fs::minor(rdev)),
        file_mode: md.mode() & 0o777,
        uid: md.uid(),
        gid: md.gid(),
        access,
    })
}

/// `-v` into a mount; checks syntax only (not the bind source).
fn parse_volume(s: &str) -> Result<Mount, HostError> {
    const F: &str = "--volume";
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [dst] => (None, *dst, ""),
        [src, dst] => (Some(*src), *dst, ""),
        [src, dst, mode] => (Some(*src), *dst, *mode),
        _ => return Err(invalid(F, s, "invalid volume specification")),
    };
    if dst.is_empty() || !dst.starts_with('/') {
        return Err(invalid(
            F,
            s,
            format!("invalid volume specification: the container path {dst:?} is not absolute"),
        ));
    }
    let destination = clean(dst);
    if destination == "/" {
        return Err(invalid(
            F,
            s,
            "invalid specification: destination can't be '/'",
        ));
    }
    let source = match src {
        None => MountSource::Volume {
            name: None,
            anonymous: true,
        },
        Some("") => return Err(invalid(F, s, "invalid volume specification: empty source")),
        Some(p) if p.starts_with('/') => MountSource::Bind {
            source: PathBuf::from(clean(p)),
        },
        Some(n) if volumes::valid_name(n) => MountSource::Volume {
            name: Some(n.to_string()),
            anonymous: false,
        },
        Some(n) => return Err(HostError::Volume(VolumeError::InvalidName(n.to_string()))),
    };
    let mut m = Mount {
        destination,
        source,
        read_only: false,
        propagation: None,
        relabel: None,
        nocopy: false,
    };
    let mut rw_seen = false;
    for o in mode.split(',').filter(|o| !o.is_empty()) {
        let dup = |seen: bool| {
            if seen {
                Err(invalid(F, s, format!("invalid mode: {mode}")))
            } else {
                Ok(())
            }
        };
        match o {
            "ro" | "rw" => {
                dup(rw_seen)?;
                rw_seen = true;
                m.read_only = o == "ro";
            }
            "z" | "Z" => {
                dup(m.relabel.is_some())?;
                m.relabel = Some(o.into());
            }
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                dup(m.propagation.is_some())?;
                m.propagation = Some(o.into());
            }
            "nocopy" if matches!(m.source, MountSource::Volume { .. }) => {
                dup(m.nocopy)?;
                m.nocopy = true;
            }
            // docker's no-op consistency options (for macOS).
            "consistent" | "cached" | "delegated" => {}
            _ => return Err(invalid(F, s, format!("invalid mode: {o}"))),
        }
    }
    Ok(m)
}

/// Flag options of tmpfs and their opposites; docker's defaults first.
const TMPFS_FLAGS: [(&str, &str); 8] = [
    ("rw", "ro"),
    ("noexec", "exec"),
    ("nosuid", "suid"),
    ("nodev", "dev"),
    ("async", "sync"),
    ("atime", "noatime"),
    ("diratime", "nodiratime"),
    ("nomand", "mand"),
];

/// tmpfs's `key=value` options.
const TMPFS_KEYS: [&str; 8] = [
    "size",
    "mode",
    "uid",
    "gid",
    "nr_inodes",
    "nr_blocks",
    "huge",
    "mpol",
];

fn parse_tmpfs(s: &str) -> Result<Tmpfs, HostError> {
    const F: &str = "--tmpfs";
    let (dst, opts) = s.split_once(':').unwrap_or((s, ""));
    if !dst.starts_with('/') {
        return Err(invalid(F, s, "the container path must be absolute"));
    }
    let destination = clean(dst);
    if destination == "/" {
        return Err(invalid(F, s, "destination can't be '/'"));
    }
    let mut options: Vec<String> = ["rw", "noexec", "nosuid", "nodev"]
        .iter()
        .map(|o| o.to_string())
        .collect();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        if let Some((a, b)) = TMPFS_FLAGS.iter().find(|(a, b)| *a == o || *b == o) {
            options.retain(|x| x != a && x != b);
            options.push(o.to_string());
        } else if matches!(
            o,
            "relatime" | "norelatime" | "strictatime" | "nostrictatime"
        ) {
            options.retain(|x| !x.ends_with("atime") || x == "diratime" || x == "nodiratime");
            options.push(o.to_string());
        } else if let Some((k, v)) = o.split_once('=') {
            if !TMPFS_KEYS.contains(&k) || v.is_empty() {
                return Err(invalid(F, s, format!("unknown tmpfs option {o:?}")));
            }
            options.retain(|x| x.split_once('=').map(|(xk, _)| xk) != Some(k));
            options.push(o.to_string());
        } else {
            return Err(invalid(F, s, format!("unknown tmpfs option {o:?}")));
        }
    }
    Ok(Tmpfs {
        destination,
        options,
    })
}

/// A CPU list like `0-1,3` into its CPUs.
fn cpu_list(s: &str) -> Option<BTreeSet<u32>> {
    let mut out = BTreeSet::new();
    for item in s.trim().split(',') {
        let (a, b) = item.split_once('-').unwrap_or((item, item));
        let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
        if a > b || b - a > 8192 {
            return None;
        }
        out.extend(a..=b);
    }
    Some(out)
}

/// Whether this host's memory cgroup limits swap: the v1 `memsw` files,
/// or a cgroup2 memory controller (which always has `memory.swap.max`).
fn swap_accounting() -> bool {
    let v1 = Path::new("/sys/fs/cgroup/memory");
    !v1.is_dir() || v1.join("memory.memsw.limit_in_bytes").exists()
}

/// The CPUs this process may run on, as docker counts them for `--cpus`
/// (not reduced by a CPU quota, unlike `available_parallelism`).
fn host_cpus() -> usize {
    rustix::thread::sched_getaffinity(None)
        .map(|s| s.count() as usize)
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The resource flags; `swap_ok` says whether the host limits swap (when
/// it does not, docker drops the default swap limit; an explicit one is an
/// error here).
fn parse_resources(f: &HostFlags, swap_ok: bool) -> Result<Resources, HostError> {
    let mut r = Resources::default();
    if let Some(m) = &f.memory {
        let v = parse_bytes(m).map_err(|e| invalid("--memory", m, e))?;
        if v > 0 && v < 6 << 20 {
            return Err(HostError::Memory(
                "Minimum memory limit allowed is 6MB".into(),
            ));
        }
        r.memory = (v > 0).then_some(v);
    }
    if let Some(sw) = &f.memory_swap {
        let v = if sw.trim() == "-1" {
            -1
        } else {
            parse_bytes(sw).map_err(|e| invalid("--memory-swap", sw, e))?
        };
        if v > 0 {
            match r.memory {
                None => return Err(HostError::Memory(
                    "You should always set the Memory limit when using Memoryswap limit, see usage"
                        .into(),
                )),
                Some(m) if v < m => {
                    return Err(HostError::Memory(
                        "Minimum memoryswap limit should be larger than memory limit, see usage"
                            .into(),
                    ))
                }
                _ => {}
            }
        }
        if v != 0 && !swap_ok {
            return Err(invalid(
                "--memory-swap",
                sw,
                "this host's kernel does not limit swap (no swap accounting in the memory cgroup)",
            ));
        }
        r.memory_swap = (v != 0).then_some(v);
    }
    if let (Some(m), None, true) = (r.memory, r.memory_swap, swap_ok) {
        r.memory_swap = Some(m.saturating_mul(2));
    }
    if let Some(c) = &f.cpus {
        let v: f64 = c
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| invalid("--cpus", c, "expected a number of CPUs like 1.5"))?;
        let ncpu = host_cpus();
        let quota = (v * 100_000.0).round() as i64;
        if v != 0.0 && (quota < 1000 || v > ncpu as f64) {
            return Err(invalid(
                "--cpus",
                c,
                format!("range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"),
            ));
        }
        if quota > 0 {
            r.cpu_quota = Some(quota);
            r.cpu_period = Some(100_000);
        }
    }
    if let Some(s) = &f.cpu_shares {
        let v: u64 = s
            .trim()
            .parse()
            .map_err(|_| invalid("--cpu-shares", s, "expected a whole number"))?;
        // docker clamps to the kernel's v1 range.
        r.cpu_shares = (v > 0).then_some(v.clamp(2, 262_144));
    }
    if let Some(s) = &f.cpuset_cpus {
        let want =
            cpu_list(s).ok_or_else(|| invalid("--cpuset-cpus", s, "expected a list like 0-2,4"))?;
        if let Ok(online) = fs::read_to_string("/sys/devices/system/cpu/online") {
            if let Some(have) = cpu_list(&online) {
                if !want.is_subset(&have) {
                    return Err(invalid(
                        "--cpuset-cpus",
                        s,
                        format!(
                            "requested CPUs are not available - available: {}",
                            online.trim()
                        ),
                    ));
                }
            }
        }
        r.cpuset_cpus = Some(s.trim().to_string());
    }
    if let Some(p) = &f.pids_limit {
        let v: i64 = p.trim().parse().map_err(|_| {
            invalid(
                "--pids-limit",
                p,
                "expected a whole number (-1 or 0 for unlimited)",
            )
        })?;
        r.pids_limit = (v > 0).then_some(v);
    }
    Ok(r)
}

/// Applies one `--security-opt` to `h` and `security`.
fn security_opt(
    s: &str,
    h: &mut HostConfig,
    security: &mut SecurityFlags,
    label: &mut [Option<String>; 4],
) -> Result<(), HostError> {
    const F: &str = "--security-opt";
    if s == "no-new-privileges" {
        security.no_new_privileges = true;
        return Ok(());
    }
    // docker still takes the old `key:value` form.
    let (k, v) = match (s.split_once('='), s.split_once(':')) {
        (Some(a), _) => a,
        (None, Some(b)) => b,
        (None, None) => return Err(invalid(F, s, "expected KEY=VALUE")),
    };
    match k {
        "no-new-privileges" => {
            security.no_new_privileges = match v {
                "true" | "" => true,
                "false" => false,
                _ => return Err(invalid(F, s, "no-new-privileges takes true or false")),
            }
        }
        "seccomp" => {
            security.seccomp = if v == "unconfined" {
                Seccomp::Unconfined
            } else {
                let text = fs::read_to_string(v)
                    .map_err(|e| invalid(F, s, format!("seccomp profile {v}: {e}")))?;
                Seccomp::Profile(
                    serde_json::from_str(&text)
                        .map_err(|e| invalid(F, s, format!("seccomp profile {v}: {e}")))?,
                )
            }
        }
        "apparmor" if !v.is_empty() => {
            h.apparmor = (v != "unconfined").then(|| v.to_string());
        }
        "label" => {
            if v == "disable" {
                *label = Default::default();
                h.selinux_label = None;
                return Ok(());
            }
            let (part, val) = v.split_once(':').ok_or_else(|| {
                invalid(F, s, "label takes disable, user:, role:, type: or level:")
            })?;
            let i = match part {
                "user" => 0,
                "role" => 1,
                "type" => 2,
                "level" => 3,
                _ => return Err(invalid(F, s, format!("unknown label part {part:?}"))),
            };
            if val.is_empty() {
                return Err(invalid(F, s, "empty label value"));
            }
            label[i] = Some(val.to_string());
        }
        _ => return Err(invalid(F, s, format!("unknown security option {k:?}"))),
    }
    Ok(())
}

impl HostFlags {
    /// Parses and checks everything that can be checked before the container
    /// exists. `security` receives `seccomp=` and `no-new-privileges`.
    pub fn parse(&self, security: &mut SecurityFlags) -> Result<HostConfig, HostError> {
        let mut h = HostConfig {
            resources: parse_resources(self, swap_accounting())?,
            ..HostConfig::default()
        };
        let mut dests = BTreeSet::new();
        for v in &self.volumes {
            let m = parse_volume(v)?;
            if let MountSource::Bind { source } = &m.source {
                if fs::metadata(source).is_err() {
                    return Err(HostError::BindSource(source.display().to_string()));
                }
            }
            if !dests.insert(m.destination.clone()) {
                return Err(HostError::DuplicateMount(m.destination));
            }
            h.mounts.push(m);
        }
        for t in &self.tmpfs {
            let t = parse_tmpfs(t)?;
            if !dests.insert(t.destination.clone()) {
                return Err(HostError::DuplicateMount(t.destination));
            }
            h.tmpfs.push(t);
        }
        for u in &self.ulimits {
            let r = parse_ulimit(u)?;
            h.rlimits.retain(|x| x.kind != r.kind);
            h.rlimits.push(r);
        }
        for d in &self.devices {
            h.devices.push(device(d)?);
        }
        h.network = parse_network(self.network.as_deref())?;
        for p in &self.publish {
            h.ports.extend(crate::ports::parse(p)?);
        }
        crate::ports::check_unique(&h.ports)?;
        h.publish_all = self.publish_all;
        let nets = h.network.networks().len();
        if (!h.ports.is_empty() || h.publish_all) && nets == 0 {
            return Err(HostError::Network(format!(
                "publishing ports needs a bridge or user network, not --network {}",
                h.network.mode()
            )));
        }
        if let Some(ip) = &self.ip {
            let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| {
                HostError::Network(format!("invalid --ip {ip:?}: not an IPv4 address"))
            })?;
            if nets != 1 {
                return Err(HostError::Network(
                    "--ip needs exactly one bridge or user network".into(),
                ));
            }
            h.ip = Some(ip);
        }
        let mut label: [Option<String>; 4] = Default::default();
        for s in &self.security_opts {
            security_opt(s, &mut h, security, &mut label)?;
        }
        if label.iter().any(Option::is_some) {
            let d = ["system_u", "system_r", "container_t", "s0"];
            let parts: Vec<&str> = label
                .iter()
                .zip(d)
                .map(|(l, d)| l.as_deref().unwrap_or(d))
                .collect();
            h.selinux_label = Some(parts.join(":"));
        }
        Ok(h)
    }
}

/// Copies directory `src` (an fd in the image) into `dst`, keeping owners,
/// modes and times; never follows a symlink.
fn copy_tree(src: &OwnedFd, dst: &OwnedFd) -> std::io::Result<()> {
    let dir = rustix::fs::Dir::read_from(src)?;
    for entry in dir {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let st = rustix::fs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
        let own = |fd: &OwnedFd| {
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(st.st_uid)),
                Some(rustix::fs::Gid::from_raw(st.st_gid)),
            )
            .and_then(|_| rustix::fs::fchmod(fd, mode))
        };
        let nofollow = OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                rustix::fs::mkdirat(dst, name, Mode::from_raw_mode(0o700))?;
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | nofollow;
                let s = rustix::fs::openat(src, name, flags, Mode::empty())?;
                let d = rustix::fs::openat(dst, name, flags, Mode::empty())?;
                copy_tree(&s, &d)?;
                own(&d)?;
                times(&d, &st)?;
            }
            FileType::RegularFile => {
                let s = rustix::fs::openat(src, name, OFlags::RDONLY | nofollow, Mode::empty())?;
                let d = rustix::fs::openat(
                    dst,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | nofollow,
                    Mode::from_raw_mode(0o600),
                )?;
                let (mut sf, mut df) = (fs::File::from(s), fs::File::from(d));
                std::io::copy(&mut sf, &mut df)?;
                let d: OwnedFd = df.into();
                own(&d)?;
                times(&d, &st)?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(src, name, Vec::new())?;
                rustix::fs::symlinkat(target.as_c_str(), dst, name)?;
                rustix::fs::chownat(
                    dst,
                    name,
                    Some(rustix::fs::Uid::from_raw(st.st_uid)),
                    Some(rustix::fs::Gid::from_raw(st.st_gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            ft => {
                rustix::fs::mknodat(dst, name, ft, mode, st.st_rdev)?;
                rustix::fs::chownat(
                    dst,
                    name,
                    Some(rustix::fs::Uid::from_raw(st.st_uid)),
                    Some(rustix::fs::Gid::from_raw(st.st_gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
                rustix::fs::chmodat(dst, name, mode, AtFlags::empty())?;
            }
        }
    }
    Ok(())
}

fn times(fd: &OwnedFd, st: &rustix::fs::Stat) -> std::io::Result<()> {
    let ts = |s: i64, ns: u64| rustix::fs::Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    rustix::fs::futimens(
        fd,
        &rustix::fs::Timestamps {
            last_access: ts(st.st_atime, st.st_atime_nsec),
            last_modification: ts(st.st_mtime, st.st_mtime_nsec),
        },
    )?;
    Ok(())
}

/// Copies the image's directory at `path` (absolute, clean) under `rootfs`
/// into the empty directory `data`, with the directory's own owner and mode.
/// Nothing is copied when the image has no directory there.
fn copy_up(rootfs: &Path, path: &str, data: &Path) -> std::io::Result<()> {
    let root = fs::File::open(rootfs)?;
    let src = match rustix::fs::openat2(
        &root,
        path.trim_start_matches('/'),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let dst: OwnedFd = rustix::fs::open(
        data,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    copy_tree(&src, &dst)?;
    let st = rustix::fs::fstat(src.as_fd())?;
    rustix::fs::fchown(
        &dst,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
    )?;
    rustix::fs::fchmod(&dst, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    Ok(())
}

impl HostConfig {
    /// Joins the namespaces of [`HostConfig::join`]: a path replaces the
    /// new namespace of that kind, None removes it (the host's). A
    /// container that does not own its UTS namespace sets no hostname.
    fn apply_joins(&self, spec: &mut Value) {
        if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
            for j in &self.join {
                match &j.path {
                    Some(p) => {
                        let entry = json!({"type": j.kind, "path": p});
                        match ns.iter_mut().find(|n| n["type"] == j.kind.as_str()) {
                            Some(n) => *n = entry,
                            None => ns.push(entry),
                        }
                    }
                    None => ns.retain(|n| n["type"] != j.kind.as_str()),
                }
            }
        }
        if self.join.iter().any(|j| j.kind == "uts") {
            if let Some(o) = spec.as_object_mut() {
                o.remove("hostname");
                o.remove("domainname");
            }
        }
    }

    /// Whether a `-v` or `--tmpfs` mount is at `dest` (so a generated
    /// `/etc/hosts` or an image volume there is skipped, as docker does).
    pub fn covers(&self, dest: &str) -> bool {
        let dest = clean(dest);
        self.mounts.iter().any(|m| m.destination == dest)
            || self.tmpfs.iter().any(|t| t.destination == dest)
    }

    /// With the rootfs mounted: adds an anonymous volume for each of the
    /// image's `Volumes` no flag mounts over, makes the volumes (a fresh name
    /// for each anonymous one), and fills each new volume with the image's
    /// content at its destination. Returns the names of the volumes made;
    /// on failure removes them again.
    pub fn prepare(
        &mut self,
        rootfs: &Path,
        store: &VolumeStore,
        image_volumes: &[String],
    ) -> Result<Vec<String>, HostError> {
        for v in image_volumes {
            if !v.starts_with('/') || self.covers(v) || clean(v) == "/" {
                continue;
            }
            self.mounts.push(Mount {
                destination: clean(v),
                source: MountSource::Volume {
                    name: None,
                    anonymous: true,
                },
                read_only: false,
                propagation: None,
                relabel: None,
                nocopy: false,
            });
        }
        let mut made = Vec::new();
        let r = self.prepare_volumes(rootfs, store, &mut made);
        if r.is_err() {
            for n in &made {
                let _ = store.remove(n, &BTreeSet::new());
            }
        }
        r.map(|_| made)
    }

    fn prepare_volumes(
        &mut self,
        rootfs: &Path,
        store: &VolumeStore,
        made: &mut Vec<String>,
    ) -> Result<(), HostError> {
        for m in &mut self.mounts {
            let MountSource::Volume { name, anonymous } = &mut m.source else {
                continue;
            };
            let n = match name {
                Some(n) => n.clone(),
                None => volumes::random_name()?,
            };
            let (vol, new) = store.create(&n, Default::default(), *anonymous, false)?;
            *name = Some(n.clone());
            if !new {
                continue;
            }
            made.push(n.clone());
            if !m.nocopy {
                copy_up(rootfs, &m.destination, &vol.mountpoint).map_err(|source| {
                    HostError::CopyUp {
                        path: m.destination.clone(),
                        volume: n.clone(),
                        source,
                    }
                })?;
            }
        }
        Ok(())
    }

    /// The names of every volume this container mounts (after `prepare`).
    pub fn volume_names(&self) -> Vec<String> {
        self.mounts
            .iter()
            .filter_map(|m| match &m.source {
                MountSource::Volume { name, .. } => name.clone(),
                MountSource::Bind { .. } => None,
            })
            .collect()
    }

    /// The anonymous volumes this container mounts (for `rm -v`).
    pub fn anonymous_volumes(&self) -> Vec<String> {
        self.mounts
            .iter()
            .filter_map(|m| match &m.source {
                MountSource::Volume {
                    name,
                    anonymous: true,
                } => name.clone(),
                _ => None,
            })
            .collect()
    }

    /// Edits the generated `config.json` value: mounts, resources, rlimits,
    /// devices, the network namespace and the LSM labels. Volume paths come
    /// from `store`.
    pub fn apply(&self, spec: &mut Value, store: &VolumeStore) -> Result<(), HostError> {
        // Mounts: ours replace the defaults at the same place; parents
        // before children.
        let mut add: Vec<(String, Value)> = Vec::new();
        for m in &self.mounts {
            let source = match &m.source {
                MountSource::Bind { source } => source.clone(),
                MountSource::Volume { name: Some(n), .. } => store.path(n)?,
                MountSource::Volume { name: None, .. } => {
                    return Err(HostError::Unprepared(m.destination.clone()))
                }
            };
            let prop = m.propagation.as_deref().unwrap_or("rprivate");
            let ro = if m.read_only { "ro" } else { "rw" };
            add.push((
                m.destination.clone(),
                json!({"destination": m.destination, "type": "bind", "source": source,
                       "options": ["rbind", prop, ro]}),
            ));
        }
        for t in &self.tmpfs {
            add.push((
                t.destination.clone(),
                json!({"destination": t.destination, "type": "tmpfs", "source": "tmpfs",
                       "options": t.options}),
            ));
        }
        add.sort_by_key(|(d, _)| d.matches('/').count());
        if let Some(ms) = spec["mounts"].as_array_mut() {
            ms.retain(|m| {
                let d = m["destination"].as_str().unwrap_or_default();
                !add.iter().any(|(a, _)| *a == clean(d))
            });
            ms.extend(add.into_iter().map(|(_, v)| v));
        }

        let r = &self.resources;
        let res = &mut spec["linux"]["resources"];
        let mut set = |group: &str, key: &str, v: Value| {
            if !v.is_null() {
                res[group][key] = v;
            }
        };
        set("memory", "limit", json!(r.memory));
        set("memory", "swap", json!(r.memory_swap));
        set("cpu", "quota", json!(r.cpu_quota));
        set("cpu", "period", json!(r.cpu_period));
        set("cpu", "shares", json!(r.cpu_shares));
        set("cpu", "cpus", json!(r.cpuset_cpus));
        set("pids", "limit", json!(r.pids_limit));

        if !self.rlimits.is_empty() {
            let list = spec["process"]["rlimits"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut list: Vec<Value> = list
                .into_iter()
                .filter(|x| !self.rlimits.iter().any(|r| x["type"] == r.kind.as_str()))
                .collect();
            for r in &self.rlimits {
                list.push(json!({"type": r.kind, "soft": r.soft, "hard": r.hard}));
            }
            spec["process"]["rlimits"] = Value::Array(list);
        }

        for d in &self.devices {
            let node = json!({"path": d.path, "type": d.kind, "major": d.major, "minor": d.minor,
                              "fileMode": d.file_mode, "uid": d.uid, "gid": d.gid});
            match spec["linux"]["devices"].as_array_mut() {
                Some(a) => a.push(node),
                None => spec["linux"]["devices"] = json!([node]),
            }
            let rule = json!({"allow": true, "type": d.kind, "major": d.major, "minor": d.minor,
                              "access": d.access});
            match spec["linux"]["resources"]["devices"].as_array_mut() {
                Some(a) => a.push(rule),
                None => spec["linux"]["resources"]["devices"] = json!([rule]),
            }
        }

        if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
            match (&self.network, &self.netns_path) {
                (Network::Host, _) => ns.retain(|n| n["type"] != "network"),
                (_, Some(p)) => {
                    for n in ns.iter_mut().filter(|n| n["type"] == "network") {
                        n["path"] = json!(p);
                    }
                }
                _ => {}
            }
        }
        self.apply_joins(spec);
        if let Some(p) = &self.apparmor {
            spec["process"]["apparmorProfile"] = json!(p);
        }
        if let Some(l) = &self.selinux_label {
            spec["process"]["selinuxLabel"] = json!(l);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(f: impl FnOnce(&mut HostFlags)) -> HostFlags {
        let mut h = HostFlags::default();
        f(&mut h);
        h
    }

    fn parse(f: impl FnOnce(&mut HostFlags)) -> Result<HostConfig, HostError> {
        flags(f).parse(&mut SecurityFlags::default())
    }

    fn err(f: impl FnOnce(&mut HostFlags)) -> String {
        parse(f).unwrap_err().to_string()
    }

    #[test]
    fn byte_units_as_docker() {
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_bytes("100b"), Ok(100));
        assert_eq!(parse_bytes("2k"), Ok(2048));
        assert_eq!(parse_bytes("2KiB"), Ok(2048));
        assert_eq!(parse_bytes("2 kb"), Ok(2048));
        assert_eq!(parse_bytes("1t"), Ok(1 << 40));
        for bad in ["", "m", "12x", "-1", "1.2.", ".5m", "1mm", "1 m b x"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_and_swap_follow_dockers_rules() {
        fn res(f: impl FnOnce(&mut HostFlags)) -> Result<Resources, HostError> {
            parse_resources(&flags(f), true)
        }
        fn err(f: impl FnOnce(&mut HostFlags)) -> String {
            res(f).unwrap_err().to_string()
        }
        let r = res(|f| f.memory = Some("512m".into())).unwrap();
        assert_eq!(r.memory, Some(512 << 20));
        assert_eq!(
            r.memory_swap,
            Some(1 << 30),
            "swap defaults to twice memory"
        );
        let r = res(|f| {
            f.memory = Some("512m".into());
            f.memory_swap = Some("-1".into());
        })
        .unwrap();
        assert_eq!(r.memory_swap, Some(-1));
        let r = res(|f| {
            f.memory = Some("512m".into());
            f.memory_swap = Some("1g".into());
        })
        .unwrap();
        assert_eq!(r.memory_swap, Some(1 << 30));
        let e = err(|f| f.memory = Some("lots".into()));
        assert!(e.contains("--memory") && e.contains("\"lots\""), "{e}");
        let e = err(|f| f.memory = Some("4m".into()));
        assert_eq!(e, "Minimum memory limit allowed is 6MB");
        let e = err(|f| {
            f.memory = Some("512m".into());
            f.memory_swap = Some("256m".into());
        });
        assert!(e.contains("larger than memory limit"), "{e}");
        let e = err(|f| f.memory_swap = Some("1g".into()));
        assert!(e.contains("always set the Memory limit"), "{e}");
        let e = err(|f| {
            f.memory = Some("512m".into());
            f.memory_swap = Some("x".into());
        });
        assert!(e.contains("--memory-swap"), "{e}");

        // Without swap accounting: no default swap, and an explicit one is refused.
        let no_swap = |f: HostFlags| parse_resources(&f, false);
        let r = no_swap(flags(|f| f.memory = Some("512m".into()))).unwrap();
        assert_eq!((r.memory, r.memory_swap), (Some(512 << 20), None));
        let e = no_swap(flags(|f| {
            f.memory = Some("512m".into());
            f.memory_swap = Some("1g".into());
        }))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--memory-swap") && e.contains("swap accounting"),
            "{e}"
        );
    }

    #[test]
    fn cpu_and_pids_flags() {
        let r = parse(|f| {
            f.cpus = Some("0.5".into());
            f.cpu_shares = Some("512".into());
            f.cpuset_cpus = Some("0".into());
            f.pids_limit = Some("64".into());
        })
        .unwrap()
        .resources;
        assert_eq!((r.cpu_quota, r.cpu_period), (Some(50_000), Some(100_000)));
        assert_eq!(r.cpu_shares, Some(512));
        assert_eq!(r.cpuset_cpus.as_deref(), Some("0"));
        assert_eq!(r.pids_limit, Some(64));
        for unlimited in ["-1", "0"] {
            let r = parse(|f| f.pids_limit = Some(unlimited.into()))
                .unwrap()
                .resources;
            assert_eq!(r.pids_limit, None);
        }
        assert_eq!(
            parse(|f| f.cpu_shares = Some("1".into()))
                .unwrap()
                .resources
                .cpu_shares,
            Some(2)
        );
        let e = err(|f| f.cpus = Some("many".into()));
        assert!(e.contains("--cpus") && e.contains("many"), "{e}");
        let e = err(|f| f.cpus = Some("100000".into()));
        assert!(e.contains("range of CPUs"), "{e}");
        let e = err(|f| f.cpus = Some("0.001".into()));
        assert!(e.contains("range of CPUs"), "{e}");
        let e = err(|f| f.cpuset_cpus = Some("1-0".into()));
        assert!(e.contains("--cpuset-cpus"), "{e}");
        let e = err(|f| f.cpuset_cpus = Some("0-4095".into()));
        assert!(e.contains("not available"), "{e}");
        let e = err(|f| f.pids_limit = Some("ten".into()));
        assert!(e.contains("--pids-limit"), "{e}");
        let e = err(|f| f.cpu_shares = Some("-3".into()));
        assert!(e.contains("--cpu-shares"), "{e}");
        assert_eq!(cpu_list("0-1,3"), Some(BTreeSet::from([0, 1, 3])));
    }

    #[test]
    fn ulimits() {
        let h = parse(|f| {
            f.ulimits = vec![
                "nofile=1024:2048".into(),
                "nproc=100".into(),
                "core=-1".into(),
                "nofile=512:1024".into(),
            ]
        })
        .unwrap();
        let got: Vec<(String, u64, u64)> = h
            .rlimits
            .iter()
            .map(|r| (r.kind.clone(), r.soft, r.hard))
            .collect();
        assert_eq!(
            got,
            vec![
                ("RLIMIT_NPROC".into(), 100, 100),
                ("RLIMIT_CORE".into(), u64::MAX, u64::MAX),
                ("RLIMIT_NOFILE".into(), 512, 1024),
            ]
        );
        let e = err(|f| f.ulimits = vec!["files=10".into()]);
        assert!(
            e.contains("--ulimit") && e.contains("invalid ulimit type: files"),
            "{e}"
        );
        let e = err(|f| f.ulimits = vec!["nofile=20:10".into()]);
        assert!(e.contains("20 > 10"), "{e}");
        for bad in ["nofile", "nofile=x", "nofile=1:2:3", "nofile=-5"] {
            let e = err(|f| f.ulimits = vec![bad.into()]);
            assert!(e.contains("--ulimit"), "{bad}: {e}");
        }
    }

    #[test]
    fn device_strings() {
        let s = |x: &str| split_device(x).unwrap();
        let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(s("/dev/null"), t("/dev/null", "/dev/null", "rwm"));
        assert_eq!(s("/dev/null:r"), t("/dev/null", "/dev/null", "r"));
        assert_eq!(s("/dev/null:/dev/x"), t("/dev/null", "/dev/x", "rwm"));
        assert_eq!(s("/dev/null:/dev/x:rw"), t("/dev/null", "/dev/x", "rw"));
        for bad in [
            "/dev/null:/dev/x:rwx",
            "null",
            "/dev/null:x:r",
            "/a:/b:r:w",
            "/a:/b:rr",
        ] {
            assert!(split_device(bad).is_err(), "{bad}");
        }
        let h = parse(|f| f.devices = vec!["/dev/null:/dev/mynull:rw".into()]).unwrap();
        let d = &h.devices[0];
        assert_eq!((d.kind.as_str(), d.major, d.minor), ("c", 1, 3));
        assert_eq!(d.path, "/dev/mynull");
        let e = err(|f| f.devices = vec!["/etc/hostname".into()]);
        assert!(
            e.contains("not a device node") && e.contains("--device"),
            "{e}"
        );
        let e = err(|f| f.devices = vec!["/dev/nonexistent-berth".into()]);
        assert!(e.contains("/dev/nonexistent-berth"), "{e}");
    }

    #[test]
    fn volume_specs() {
        let m = parse_volume("/tmp:/data:ro,rslave,z").unwrap();
        assert_eq!(
            m,
            Mount {
                destination: "/data".into(),
                source: MountSource::Bind {
                    source: "/tmp".into()
                },
                read_only: true,
                propagation: Some("rslave".into()),
                relabel: Some("z".into()),
                nocopy: false,
            }
        );
        let m = parse_volume("cache:/var/cache/:nocopy").unwrap();
        assert_eq!(m.destination, "/var/cache");
        assert!(m.nocopy && !m.read_only);
        assert_eq!(
            m.source,
            MountSource::Volume {
                name: Some("cache".into()),
                anonymous: false
            }
        );
        let m = parse_volume("/data//x/../y").unwrap();
        assert_eq!(m.destination, "/data/y");
        assert_eq!(
            m.source,
            MountSource::Volume {
                name: None,
                anonymous: true
            }
        );
        assert!(!parse_volume("/a/./b:/c").unwrap().read_only);
        for (bad, want) in [
            ("/a:/b:rw,ro", "invalid mode"),
            ("/a:/b:bogus", "invalid mode: bogus"),
            ("/a:/b:nocopy", "invalid mode: nocopy"),
            ("/a:b", "not absolute"),
            ("/a:/", "can't be '/'"),
            ("/", "can't be '/'"),
            ("a:b:c:d", "invalid volume specification"),
            ("./rel:/x", "invalid characters"),
            ("x:/y", "invalid characters"),
            (":/y", "empty source"),
        ] {
            let e = parse_volume(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
        let e = err(|f| f.volumes = vec!["/nonexistent-berth-src:/x".into()]);
        assert_eq!(
            e,
            "invalid mount config for type \"bind\": bind source path does not exist: /nonexistent-berth-src"
        );
        let e = err(|f| {
            f.volumes = vec!["/tmp:/x".into()];
            f.tmpfs = vec!["/x/".into()];
        });
        assert_eq!(e, "duplicate mount point: /x");
    }

    #[test]
    fn tmpfs_defaults_and_overrides() {
        let t = parse_tmpfs("/run").unwrap();
        assert_eq!(t.destination, "/run");
        assert_eq!(t.options, ["rw", "noexec", "nosuid", "nodev"]);
        let t = parse_tmpfs("/run:exec,size=64m,mode=1777,ro,size=32m").unwrap();
        assert_eq!(
            t.options,
            ["nosuid", "nodev", "exec", "mode=1777", "ro", "size=32m"]
        );
        for bad in ["run", "/", "/x:color=red", "/x:bogus", "/x:size="] {
            let e = parse_tmpfs(bad).unwrap_err().to_string();
            assert!(e.contains("--tmpfs"), "{bad}: {e}");
        }
    }

    #[test]
    fn network_modes() {
        let net = |v: &str| parse(|f| f.network = Some(v.into())).unwrap().network;
        let default = Network::Networks(vec!["berth".into()]);
        assert_eq!(parse(|_| {}).unwrap().network, default);
        assert_eq!(net("bridge"), default);
        assert_eq!(default.mode(), "bridge");
        assert_eq!(net("none"), Network::None);
        assert_eq!(net("host"), Network::Host);
        assert_eq!(net("container:web"), Network::Container("web".into()));
        assert_eq!(net("container:web").mode(), "container:web");
        assert_eq!(
            net("front, back,front"),
            Network::Networks(vec!["front".into(), "back".into()])
        );
        for (v, want) in [
            ("container:", "container:NAME"),
            ("a,,b", "cannot be combined"),
            ("a,host", "cannot be combined"),
        ] {
            let e = err(|f| f.network = Some(v.into()));
            assert!(e.contains(want), "{v}: {e}");
        }
    }

    #[test]
    fn ports_and_ip() {
        let h = parse(|f| {
            f.publish = vec!["8080:80".into(), "127.0.0.1::53/udp".into()];
            f.ip = Some("10.89.0.9".into());
        })
        .unwrap();
        assert_eq!(h.ports.len(), 2);
        assert_eq!(h.ip, Some("10.89.0.9".parse().unwrap()));
        for (setup, want) in [
            (
                Box::new(|f: &mut HostFlags| {
                    f.network = Some("none".into());
                    f.publish = vec!["80".into()];
                }) as Box<dyn FnOnce(&mut HostFlags)>,
                "not --network none",
            ),
            (
                Box::new(|f: &mut HostFlags| f.publish = vec!["80:80".into(), "80:81".into()]),
                "twice",
            ),
            (
                Box::new(|f: &mut HostFlags| f.ip = Some("10.1".into())),
                "--ip \"10.1\"",
            ),
            (
                Box::new(|f: &mut HostFlags| {
                    f.network = Some("a,b".into());
                    f.ip = Some("10.1.0.2".into());
                }),
                "exactly one",
            ),
            (
                Box::new(|f: &mut HostFlags| f.publish = vec!["99999".into()]),
                "99999",
            ),
        ] {
            let e = err(setup);
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn security_opts() {
        let t = tempfile::tempdir().unwrap();
        let prof = t.path().join("p.json");
        fs::write(&prof, r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).unwrap();
        let mut sec = SecurityFlags::default();
        let h = flags(|f| {
            f.security_opts = vec![
                "no-new-privileges".into(),
                format!("seccomp={}", prof.display()),
                "apparmor=myprof".into(),
                "label=type:spc_t".into(),
                "label=level:s0:c1,c2".into(),
            ]
        })
        .parse(&mut sec)
        .unwrap();
        assert!(sec.no_new_privileges);
        assert_eq!(
            sec.seccomp,
            Seccomp::Profile(json!({"defaultAction": "SCMP_ACT_ALLOW"}))
        );
        assert_eq!(h.apparmor.as_deref(), Some("myprof"));
        assert_eq!(
            h.selinux_label.as_deref(),
            Some("system_u:system_r:spc_t:s0:c1,c2")
        );

        let mut sec = SecurityFlags {
            no_new_privileges: true,
            ..SecurityFlags::default()
        };
        let h = flags(|f| {
            f.security_opts = vec![
                "no-new-privileges=false".into(),
                "seccomp:unconfined".into(),
                "apparmor=unconfined".into(),
                "label=user:u".into(),
                "label=disable".into(),
            ]
        })
        .parse(&mut sec)
        .unwrap();
        assert!(!sec.no_new_privileges);
        assert_eq!(sec.seccomp, Seccomp::Unconfined);
        assert_eq!((h.apparmor, h.selinux_label), (None, None));

        for (bad, want) in [
            ("bogus=1", "unknown security option"),
            ("no-new-privileges=maybe", "true or false"),
            ("seccomp=/nonexistent-berth.json", "/nonexistent-berth.json"),
            ("label=color:red", "unknown label part"),
            ("label=weird", "label takes"),
            ("plain", "KEY=VALUE"),
        ] {
            let e = err(|f| f.security_opts = vec![bad.into()]);
            assert!(
                e.contains("--security-opt") && e.contains(want),
                "{bad}: {e}"
            );
        }
    }

    fn base() -> Value {
        json!({
            "process": {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}]},
            "mounts": [
                {"destination": "/proc", "type": "proc"},
                {"destination": "/dev/shm", "type": "tmpfs"},
            ],
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "network"}],
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            },
        })
    }

    #[test]
    fn joined_namespaces_replace_new_ones() {
        let mut spec = json!({
            "hostname": "h",
            "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                                     {"type": "uts"}, {"type": "mount"}]},
            "mounts": [],
        });
        let h = HostConfig {
            join: vec![
                NamespaceJoin {
                    kind: "network".into(),
                    path: Some("/run/x/netns/p".into()),
                },
                NamespaceJoin {
                    kind: "ipc".into(),
                    path: Some("/proc/7/ns/ipc".into()),
                },
                NamespaceJoin {
                    kind: "uts".into(),
                    path: Some("/proc/7/ns/uts".into()),
                },
                NamespaceJoin {
                    kind: "pid".into(),
                    path: None,
                },
            ],
            ..HostConfig::default()
        };
        let t = tempfile::tempdir().unwrap();
        h.apply(&mut spec, &VolumeStore::new(t.path())).unwrap();
        assert_eq!(
            spec["linux"]["namespaces"],
            json!([{"type": "network", "path": "/run/x/netns/p"},
                   {"type": "ipc", "path": "/proc/7/ns/ipc"},
                   {"type": "uts", "path": "/proc/7/ns/uts"}, {"type": "mount"}])
        );
        // The UTS namespace is the pod's: its hostname is set there.
        assert!(spec.get("hostname").is_none());
    }

    #[test]
    fn apply_writes_the_config() {
        let t = tempfile::tempdir().unwrap();
        let store = VolumeStore::new(t.path());
        let mut h = parse(|f| {
            f.volumes = vec![
                "/tmp:/a/b:ro".into(),
                "data:/a".into(),
                "/tmp:/dev/shm".into(),
            ];
            f.tmpfs = vec!["/run:size=1m".into()];
            f.memory = Some("64m".into());
            f.cpus = Some("0.25".into());
            f.cpuset_cpus = Some("0".into());
            f.pids_limit = Some("20".into());
            f.ulimits = vec!["nofile=100:200".into(), "nproc=50".into()];
            f.devices = vec!["/dev/null:/dev/mynull:r".into()];
            f.network = Some("host".into());
            f.security_opts = vec!["apparmor=p".into(), "label=type:t".into()];
        })
        .unwrap();
        let named = h.mounts[1].source.clone();
        h.mounts[1].source = MountSource::Volume {
            name: None,
            anonymous: true,
        };
        let e = h.apply(&mut base(), &store).unwrap_err().to_string();
        assert_eq!(e, "volume for /a was not prepared");
        h.mounts[1].source = named;
        let mut v = base();
        h.apply(&mut v, &store).unwrap();
        let dests: Vec<&str> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        // The default /dev/shm is replaced; parents come before children.
        assert_eq!(dests, ["/proc", "/a", "/run", "/a/b", "/dev/shm"]);
        let m = &v["mounts"][1];
        assert_eq!(m["source"], json!(t.path().join("volumes/data/_data")));
        assert_eq!(m["options"], json!(["rbind", "rprivate", "rw"]));
        assert_eq!(
            v["mounts"][3],
            json!({"destination": "/a/b", "type": "bind", "source": "/tmp",
                   "options": ["rbind", "rprivate", "ro"]})
        );
        assert_eq!(
            v["mounts"][2]["options"],
            json!(["rw", "noexec", "nosuid", "nodev", "size=1m"])
        );
        let r = &v["linux"]["resources"];
        let swap = if swap_accounting() {
            json!({"limit": 64 << 20, "swap": 128 << 20})
        } else {
            json!({"limit": 64 << 20})
        };
        assert_eq!(r["memory"], swap);
        assert_eq!(
            r["cpu"],
            json!({"quota": 25000, "period": 100000, "cpus": "0"})
        );
        assert_eq!(r["pids"], json!({"limit": 20}));
        assert_eq!(
            r["devices"][1],
            json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "r"})
        );
        assert_eq!(v["linux"]["devices"][0]["path"], "/dev/mynull");
        assert_eq!(v["linux"]["devices"][0]["major"], 1);
        assert_eq!(
            v["process"]["rlimits"],
            json!([{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
                   {"type": "RLIMIT_NPROC", "soft": 50, "hard": 50}])
        );
        assert_eq!(v["linux"]["namespaces"], json!([{"type": "pid"}]));
        assert_eq!(v["process"]["apparmorProfile"], "p");
        assert_eq!(v["process"]["selinuxLabel"], "system_u:system_r:t:s0");

        // Nothing set: nothing changes.
        let mut v = base();
        HostConfig::default().apply(&mut v, &store).unwrap();
        assert_eq!(v, base());
        // The record round-trips.
        let back: HostConfig = serde_json::from_value(serde_json::to_value(&h).unwrap()).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn prepare_makes_volumes_and_copies_up() {
        let t = tempfile::tempdir().unwrap();
        let rootfs = t.path().join("rootfs");
        fs::create_dir_all(rootfs.join("srv/sub")).unwrap();
        fs::write(rootfs.join("srv/sub/f"), "image data").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", rootfs.join("srv/link")).unwrap();
        fs::set_permissions(
            rootfs.join("srv"),
            std::os::unix::fs::PermissionsExt::from_mode(0o751),
        )
        .unwrap();
        // A symlinked destination resolves inside the rootfs, not on the host.
        std::os::unix::fs::symlink("/srv", rootfs.join("escape")).unwrap();
        let store = VolumeStore::new(&t.path().join("root"));
        let mut h = parse(|f| {
            f.volumes = vec![
                "data:/srv".into(),
                "/escape".into(),
                "empty:/nothing".into(),
                "skip:/srv/sub:nocopy".into(),
            ]
        })
        .unwrap();
        let made = h
            .prepare(&rootfs, &store, &["/var/lib/x".into(), "/srv".into()])
            .unwrap();
        assert_eq!(made.len(), 5, "{made:?}");
        let data = store.get("data").unwrap().mountpoint;
        assert_eq!(
            fs::read_to_string(data.join("sub/f")).unwrap(),
            "image data"
        );
        assert_eq!(
            fs::read_link(data.join("link")).unwrap(),
            Path::new("/etc/shadow")
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&data).unwrap().permissions().mode() & 0o7777,
            0o751
        );
        let anon = h.anonymous_volumes();
        assert_eq!(anon.len(), 2);
        assert!(store.get(&anon[0]).unwrap().meta.anonymous);
        // /escape -> /srv in the image, so the copy is the image's /srv.
        let esc = store.get(&anon[0]).unwrap().mountpoint;
        assert!(esc.join("sub/f").exists());
        assert!(fs::read_dir(store.get("skip").unwrap().mountpoint)
            .unwrap()
            .next()
            .is_none());
        // A second prepare with the same named volume copies nothing again.
        fs::write(data.join("sub/f"), "changed").unwrap();
        let mut h2 = parse(|f| f.volumes = vec!["data:/srv".into()]).unwrap();
        assert!(h2.prepare(&rootfs, &store, &[]).unwrap().is_empty());
        assert_eq!(fs::read_to_string(data.join("sub/f")).unwrap(), "changed");
        assert_eq!(h2.volume_names(), ["data"]);
    }
}
