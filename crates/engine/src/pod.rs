//! Pods: sandboxes that hold the namespaces a group of containers shares,
//! as the CRI (kubelet's runtime API) asks of a node runtime. This is the
//! engine side; the CRI server only translates its messages into these
//! calls.
//!
//! A sandbox is:
//! - a record, `<root>/pods/<id>/pod.json` (schema-versioned), written
//!   before anything else is made and removed last, naming each thing
//!   before it is made (the namespace pin, the CNI attachment, the cgroup
//!   parents it made), so [`Pods::remove`] cleans what a crash or a failed
//!   run left;
//! - the pod's `hostname`, `hosts` and `resolv.conf` in that directory,
//!   bind-mounted into each of its containers;
//! - for a pod network, a network namespace pinned at `<run>/netns/<id>`
//!   ([`crate::netns`]) and attached by CNI as kubelet's runtimes do: the
//!   first config list of the CNI config dir by file name, run by
//!   `berth-cni` with `CNI_ARGS`
//!   `IgnoreUnknown=1;K8S_POD_NAMESPACE=…;K8S_POD_NAME=…;
//!   K8S_POD_INFRA_CONTAINER_ID=…;K8S_POD_UID=…`, the port mappings as the
//!   `portMappings` capability, and `loopback` for `lo`;
//! - the sandbox container: `berth-pause` ([`PAUSE_PATH`]) as PID 1, an
//!   ordinary engine container (record, monitor, runtime) whose root is a
//!   private directory of its own, bind-mounted read-only, holding nothing
//!   but its own copy of the binary (never the host's file, the
//!   CVE-2019-5736 class, as [`crate::init`] does for `berth-init`).
//!
//! A pod's containers ([`Pods::create_container`]) are engine containers
//! made from an image in the store that join the sandbox's network, IPC and
//! UTS namespaces, and its PID namespace when asked
//! ([`crate::host::HostConfig::join`]), with their cgroups under the pod's
//! cgroup parent. They carry the label [`POD_LABEL`].
//!
//! Invariants:
//! - Nothing half-made: a run that fails removes all it made; stop and
//!   remove are idempotent, and remove of an unknown pod succeeds (as the
//!   CRI asks).
//! - Commands that change a pod hold its `lock`; names are claimed under the
//!   pods directory's lock.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use berth_cni::{Cni, NetworkConfigList, RuntimeConf};
use berth_image::platform::Platform;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::bundle::BundleOptions;
use crate::container::{Container, ContainerConfig, ContainerError, CreateOptions, Engine};
use crate::host::{HostConfig, Mount, MountSource, NamespaceJoin, Network};
use crate::process::ProcessFlags;
use crate::records::ContainerRecord;
use crate::spec::SecurityFlags;

/// Where `berth-pause` is in the sandbox's root.
pub const PAUSE_PATH: &str = "/berth-pause";
/// The label naming a container's pod (its ID).
pub const POD_LABEL: &str = "io.berth.pod.id";
/// The label saying a container is its pod's sandbox (`"true"`).
pub const SANDBOX_LABEL: &str = "io.berth.pod.sandbox";
/// The schema of `pod.json`.
const SCHEMA: u32 = 1;

/// Why a pod operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// The config is not acceptable.
    #[error("pod {pod}: invalid config: {message}")]
    Invalid {
        /// The pod's name (or ID).
        pod: String,
        /// What is wrong.
        message: String,
    },
    /// No pod by that ID.
    #[error("no such pod sandbox: {0}")]
    NotFound(String),
    /// The pod's name is taken.
    #[error("pod sandbox name {name:?} is already in use by pod {id}")]
    AlreadyExists {
        /// The name.
        name: String,
        /// The pod that has it.
        id: String,
    },
    /// The pod does not run.
    #[error("pod sandbox {0} is not ready")]
    NotReady(String),
    /// The CNI config dir holds no usable network.
    #[error("no CNI network config in {}{}", dir.display(), if detail.is_empty() { String::new() } else { format!(" ({detail})") })]
    NoCniConfig {
        /// The dir.
        dir: PathBuf,
        /// Why the files there were not used.
        detail: String,
    },
    /// The network could not be set up or torn down.
    #[error("pod {pod}: network {network}: {message}")]
    Network {
        /// The pod's ID.
        pod: String,
        /// The CNI network.
        network: String,
        /// The plugin's error.
        message: String,
    },
    /// `berth-pause` was not found.
    #[error("pod sandboxes need the berth-pause binary, which is not in any of: {0} (build it with scripts/build-static.sh, or set BERTH_PAUSE)")]
    NoPause(String),
    /// A container operation failed.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] berth_image::store::ImageError),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> PodError {
    let context = context.into();
    move |source| PodError::Io { context, source }
}

/// Which namespace of a kind a pod or container gets (the CRI's
/// `NamespaceMode`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceMode {
    /// The pod's (its sandbox's).
    #[default]
    Pod,
    /// One of the container's own.
    Container,
    /// The node's (the host's).
    Node,
    /// Another container's, by ID (PID only).
    Target(String),
}

/// The pod's namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NamespaceOptions {
    /// `Pod` (a network namespace of the pod's, on CNI) or `Node`.
    pub network: NamespaceMode,
    /// `Pod` (shared by the containers), `Container` (each its own) or
    /// `Node`.
    pub pid: NamespaceMode,
    /// `Pod` or `Node`.
    pub ipc: NamespaceMode,
}

/// The pod's DNS settings, its `resolv.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsConfig {
    /// Name servers.
    pub servers: Vec<String>,
    /// Search domains.
    pub searches: Vec<String>,
    /// `options` words.
    pub options: Vec<String>,
}

/// One port mapping of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodPortMapping {
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// The pod's port.
    pub container_port: u16,
    /// The host's port.
    pub host_port: u16,
    /// The host address; all when None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
}

/// What a pod sandbox is made from (the CRI's `PodSandboxConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PodSandboxConfig {
    /// The pod's name.
    pub name: String,
    /// The pod's UID.
    pub uid: String,
    /// The pod's Kubernetes namespace.
    pub namespace: String,
    /// Which attempt this is.
    pub attempt: u32,
    /// The hostname; the name when empty.
    pub hostname: String,
    /// Where the kubelet wants the containers' logs.
    pub log_directory: Option<PathBuf>,
    /// The DNS settings; the host's `resolv.conf` when None.
    pub dns: Option<DnsConfig>,
    /// Port mappings (through CNI's `portMappings`).
    pub port_mappings: Vec<PodPortMapping>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// The cgroup under which the pod's containers go (kubelet's cgroupfs
    /// path, such as `/kubepods/besteffort/pod<uid>`); `/berth` when empty.
    pub cgroup_parent: String,
    /// Sysctls, applied in the sandbox's namespaces.
    pub sysctls: BTreeMap<String, String>,
    /// The namespaces.
    pub namespaces: NamespaceOptions,
    /// The runtime handler's name, as the caller chose it.
    pub runtime_handler: String,
    /// The runtime binary of the handler; the engine's default when None.
    pub runtime: Option<PathBuf>,
}

impl PodSandboxConfig {
    /// The unique name of the pod (name, namespace, UID and attempt), as
    /// the kubelet's runtimes key sandboxes.
    pub fn full_name(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.name, self.namespace, self.uid, self.attempt
        )
    }

    fn hostname(&self) -> &str {
        if self.hostname.is_empty() {
            &self.name
        } else {
            &self.hostname
        }
    }
}

/// Whether a pod runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodState {
    /// Its sandbox runs.
    Ready,
    /// Stopped, or not completely made.
    NotReady,
}

/// The pod network's attachment, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PodNetwork {
    /// The CNI network's name.
    pub name: String,
    /// The interface in the pod.
    pub ifname: String,
    /// The config list it was attached with (for DEL).
    pub conflist: Value,
    /// The CNI args it was attached with.
    pub args: Vec<(String, String)>,
    /// The capability args.
    pub capability_args: serde_json::Map<String, Value>,
    /// The pod's addresses (without prefix).
    pub ips: Vec<String>,
    /// Whether the ADD has completed.
    pub attached: bool,
}

/// `pod.json`: a pod and what has been made for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// The schema of this file.
    pub schema: u32,
    /// 64 hex characters.
    pub id: String,
    /// What it was made from.
    pub config: PodSandboxConfig,
    /// RFC 3339.
    pub created_at: String,
    /// The pinned network namespace (named before it is made).
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// The CNI attachment (named before it is made).
    #[serde(default)]
    pub network: Option<PodNetwork>,
    /// The sandbox container's ID once made.
    #[serde(default)]
    pub sandbox: Option<String>,
    /// Cgroup parent directories this pod made (deepest last), removed with
    /// it when empty.
    #[serde(default)]
    pub cgroups_made: Vec<String>,
    /// Stopped on purpose (or never completely made).
    #[serde(default)]
    pub stopped: bool,
}

/// A pod's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodStatus {
    /// The ID.
    pub id: String,
    /// The config.
    pub config: PodSandboxConfig,
    /// Ready or not.
    pub state: PodState,
    /// RFC 3339.
    pub created_at: String,
    /// The pod's first address (empty on the node's network or once
    /// stopped).
    pub ip: String,
    /// Its other addresses.
    pub additional_ips: Vec<String>,
    /// The network namespace's path (the pin), if any.
    pub netns: Option<PathBuf>,
    /// The sandbox container's ID.
    pub sandbox_container: Option<String>,
    /// The sandbox's PID while it runs.
    pub pid: i32,
    /// The runtime binary.
    pub runtime: PathBuf,
}

/// Which pods [`Pods::list`] returns; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFilter {
    /// The ID or a prefix of it.
    pub id: Option<String>,
    /// The state.
    pub state: Option<PodState>,
    /// Labels that must all be there with these values.
    pub labels: BTreeMap<String, String>,
}

/// One bind mount of a pod's container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodMount {
    /// The host path.
    pub host_path: PathBuf,
    /// The path in the container.
    pub container_path: String,
    /// Read-only.
    pub readonly: bool,
}

/// What a pod's container is made from (the CRI's `ContainerConfig`, in
/// part).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodContainerConfig {
    /// The container's name in the pod.
    pub name: String,
    /// Which attempt this is.
    pub attempt: u32,
    /// The image, already in the store.
    pub image: String,
    /// Replaces the image's entrypoint when not empty.
    pub command: Vec<String>,
    /// Replaces the image's command when not empty.
    pub args: Vec<String>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    /// The working directory.
    pub working_dir: Option<String>,
    /// Bind mounts.
    pub mounts: Vec<PodMount>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The PID namespace: the pod's, its own, the node's or another
    /// container's.
    pub pid: NamespaceMode,
    /// A terminal.
    pub tty: bool,
    /// Keep stdin open.
    pub stdin: bool,
}

/// Where pods find their helpers.
#[derive(Debug, Clone)]
pub struct PodOptions {
    /// The CNI config dir (kubelet's runtimes: `/etc/cni/net.d`).
    pub cni_conf_dir: PathBuf,
    /// The CNI plugin dirs.
    pub cni_plugin_dirs: Vec<PathBuf>,
    /// The host's `berth-pause`, copied into each sandbox.
    pub pause: PathBuf,
}

impl PodOptions {
    /// The defaults: `/etc/cni/net.d`, the engine's plugin dirs, and the
    /// `berth-pause` [`find_pause`] finds.
    pub fn new(engine: &Engine) -> Result<PodOptions, PodError> {
        Ok(PodOptions {
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            cni_plugin_dirs: engine.options().network.plugin_dirs.clone(),
            pause: find_pause()?,
        })
    }
}

/// Finds `berth-pause`: `$BERTH_PAUSE`, then beside the current executable,
/// then berth's libexec dirs.
pub fn find_pause() -> Result<PathBuf, PodError> {
    let mut tried: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("BERTH_PAUSE").filter(|p| !p.is_empty()) {
        tried.push(PathBuf::from(p));
    }
    if let Some(d) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        tried.push(d.join("berth-pause"));
    }
    tried.push("/usr/libexec/berth/berth-pause".into());
    tried.push("/usr/local/libexec/berth/berth-pause".into());
    if let Some(p) = tried.iter().find(|p| p.is_file()) {
        return Ok(p.clone());
    }
    Err(PodError::NoPause(
        tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    ))
}

/// The IDs of every pod under berth's `root` (complete or not): their
/// pins and CNI attachments are named by these, so the sweeps of leaked
/// networks must keep them.
pub fn ids(root: &Path) -> Vec<String> {
    fs::read_dir(root.join("pods"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The first usable network config list in `dir`, by file name, as
/// kubelet's runtimes pick it: files that do not parse are passed over.
pub fn first_network(dir: &Path) -> Result<NetworkConfigList, PodError> {
    let no = |detail: String| PodError::NoCniConfig {
        dir: dir.to_path_buf(),
        detail,
    };
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => return Err(no(e.to_string())),
    };
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conflist" | "conf" | "json")
            ) && p.is_file()
        })
        .collect();
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    let mut skipped = Vec::new();
    for f in &files {
        match NetworkConfigList::load(f) {
            Ok(l) if !l.plugins.is_empty() => return Ok(l),
            Ok(_) => skipped.push(format!("{}: no plugins", f.display())),
            Err(e) => skipped.push(e.to_string()),
        }
    }
    Err(no(skipped.join("; ")))
}

/// A Kubernetes-style name part: `[a-z0-9]([a-z0-9.-]*)`, at most 253.
fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

/// Checks what can be checked before anything is made.
pub fn validate(c: &PodSandboxConfig) -> Result<(), String> {
    for (what, v) in [
        ("name", &c.name),
        ("namespace", &c.namespace),
        ("uid", &c.uid),
    ] {
        if !valid_part(v) {
            return Err(format!(
                "{what} {v:?} must be non-empty letters, digits, '-', '.' or '_', starting with a letter or digit"
            ));
        }
    }
    let h = c.hostname();
    if h.len() > 64 || !valid_part(h) || h.contains('_') {
        return Err(format!("hostname {h:?} is not a valid host name"));
    }
    if !c.cgroup_parent.is_empty()
        && (!c.cgroup_parent.starts_with('/')
            || c.cgroup_parent.split('/').any(|p| p == ".." || p == "."))
    {
        return Err(format!(
            "cgroup_parent {:?} must be an absolute cgroupfs path without '.' or '..'",
            c.cgroup_parent
        ));
    }
    if matches!(
        c.namespaces.network,
        NamespaceMode::Container | NamespaceMode::Target(_)
    ) {
        return Err("the network namespace must be POD or NODE".into());
    }
    if matches!(
        c.namespaces.ipc,
        NamespaceMode::Container | NamespaceMode::Target(_)
    ) {
        return Err("the IPC namespace must be POD or NODE".into());
    }
    if matches!(c.namespaces.pid, NamespaceMode::Target(_)) {
        return Err("the pod's PID namespace cannot be another container's".into());
    }
    for (k, v) in &c.sysctls {
        if k.is_empty()
            || k.contains(['/', '\0'])
            || k.split('.').any(|p| p == ".." || p.is_empty())
            || v.contains('\0')
        {
            return Err(format!("sysctl {k:?}={v:?} is malformed"));
        }
        let net = k.starts_with("net.");
        if net && c.namespaces.network == NamespaceMode::Node {
            return Err(format!("sysctl {k} needs the pod's own network namespace (the pod is on the node's network)"));
        }
        let ipc = k.starts_with("kernel.shm")
            || k.starts_with("kernel.msg")
            || k.starts_with("kernel.sem")
            || k.starts_with("fs.mqueue.");
        if ipc && c.namespaces.ipc == NamespaceMode::Node {
            return Err(format!(
                "sysctl {k} needs the pod's own IPC namespace (the pod uses the node's)"
            ));
        }
        if !net && !ipc {
            return Err(format!("sysctl {k} is not namespaced (only net.*, kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* are)"));
        }
    }
    for p in &c.port_mappings {
        if p.container_port == 0 {
            return Err("a port mapping needs a container port".into());
        }
        if !matches!(p.protocol.as_str(), "tcp" | "udp" | "sctp") {
            return Err(format!(
                "port mapping protocol {:?} (want tcp, udp or sctp)",
                p.protocol
            ));
        }
    }
    if !c.port_mappings.is_empty() && c.namespaces.network == NamespaceMode::Node {
        // kubelet sends host ports of host-network pods too; nothing maps
        // them (the pod listens on the host already).
    }
    if let Some(d) = &c.dns {
        for s in &d.servers {
            if s.parse::<IpAddr>().is_err() {
                return Err(format!("DNS server {s:?} is not an IP address"));
            }
        }
        for w in d.searches.iter().chain(&d.options) {
            if w.is_empty() || w.contains(char::is_whitespace) {
                return Err(format!("DNS search or option {w:?} is malformed"));
            }
        }
    }
    if let Some(r) = &c.runtime {
        if !r.is_absolute() {
            return Err(format!("runtime {} must be an absolute path", r.display()));
        }
    }
    Ok(())
}

/// `resolv.conf` from the pod's DNS config.
fn resolv_conf(d: &DnsConfig) -> String {
    let mut out = String::new();
    if !d.searches.is_empty() {
        out.push_str(&format!("search {}\n", d.searches.join(" ")));
    }
    for s in &d.servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !d.options.is_empty() {
        out.push_str(&format!("options {}\n", d.options.join(" ")));
    }
    out
}

/// The pod's `/etc/hosts` on its own network.
fn hosts(hostname: &str, ip: Option<&str>) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    out
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// The cgroup hierarchies' roots: `/sys/fs/cgroup` on a unified host, else
/// each mounted hierarchy under it.
fn cgroup_roots() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        return vec![base.to_path_buf()];
    }
    fs::read_dir(base)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("cgroup.procs").exists())
                .collect()
        })
        .unwrap_or_default()
}

/// The prefixes of `parent` (`/a`, `/a/b`, ...) that no hierarchy has.
fn missing_cgroups(parent: &str) -> Vec<String> {
    let roots = cgroup_roots();
    let mut out = Vec::new();
    let mut cur = String::new();
    for part in parent.split('/').filter(|p| !p.is_empty()) {
        cur.push('/');
        cur.push_str(part);
        if !roots.iter().any(|r| r.join(&cur[1..]).exists()) {
            out.push(cur.clone());
        }
    }
    out
}

/// The pods of one engine.
#[derive(Debug)]
pub struct Pods<'e> {
    engine: &'e Engine,
    opts: PodOptions,
    cni: Cni,
}

/// An exclusive `flock`, released on drop.
#[derive(Debug)]
struct Lock(#[allow(dead_code)] File);

fn lock_file(path: &Path) -> Result<Lock, PodError> {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err(format!("open {}", path.display())))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io_err(format!("lock {}", path.display()))(e.into()))?;
    Ok(Lock(f))
}

impl<'e> Pods<'e> {
    /// The pods of `engine`.
    pub fn new(engine: &'e Engine, opts: PodOptions) -> Pods<'e> {
        let cni = Cni::new(
            opts.cni_plugin_dirs.clone(),
            engine.options().root.join("cni"),
        );
        Pods { engine, opts, cni }
    }

    /// `<root>/pods`.
    pub fn root(&self) -> PathBuf {
        self.engine.options().root.join("pods")
    }

    /// The directory of pod `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root().join(id)
    }

    fn save(&self, rec: &PodRecord) -> Result<(), PodError> {
        let p = self.dir(&rec.id).join("pod.json");
        let tmp = p.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(rec).expect("a pod record is JSON");
        fs::write(&tmp, bytes).map_err(io_err(format!("write {}", tmp.display())))?;
        fs::rename(&tmp, &p).map_err(io_err(format!("write {}", p.display())))
    }

    fn load(&self, id: &str) -> Option<PodRecord> {
        let b = fs::read(self.dir(id).join("pod.json")).ok()?;
        serde_json::from_slice::<PodRecord>(&b)
            .ok()
            .filter(|r| r.schema == SCHEMA && r.id == id)
    }

    /// Every pod record.
    fn records(&self) -> Vec<PodRecord> {
        let Ok(rd) = fs::read_dir(self.root()) else {
            return Vec::new();
        };
        let mut v: Vec<PodRecord> = rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|id| self.load(&id))
            .collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        v
    }

    /// The pod `what` names: its ID or a unique prefix of it.
    fn find(&self, what: &str) -> Result<PodRecord, PodError> {
        if what.is_empty() {
            return Err(PodError::NotFound(what.into()));
        }
        if let Some(r) = self.load(what) {
            return Ok(r);
        }
        let mut hits: Vec<PodRecord> = self
            .records()
            .into_iter()
            .filter(|r| r.id.starts_with(what))
            .collect();
        match hits.len() {
            1 => Ok(hits.remove(0)),
            _ => Err(PodError::NotFound(what.into())),
        }
    }

    fn lock(&self, id: &str) -> Result<Lock, PodError> {
        let dir = self.dir(id);
        if !dir.exists() {
            return Err(PodError::NotFound(id.into()));
        }
        let l = lock_file(&dir.join("lock"))?;
        if !dir.join("pod.json").exists() {
            return Err(PodError::NotFound(id.into()));
        }
        Ok(l)
    }

    /// The containers of pod `id`, the sandbox last.
    pub fn containers(&self, id: &str) -> Result<Vec<Container>, PodError> {
        let mut v: Vec<Container> = self
            .engine
            .list()?
            .into_iter()
            .filter(|c| c.config.labels.get(POD_LABEL).map(String::as_str) == Some(id))
            .collect();
        v.sort_by_key(|c| c.config.labels.contains_key(SANDBOX_LABEL));
        Ok(v)
    }

    /// Makes and starts a pod sandbox; returns its ID. Nothing is left
    /// when it fails.
    pub fn run(&self, config: PodSandboxConfig) -> Result<String, PodError> {
        validate(&config).map_err(|message| PodError::Invalid {
            pod: config.name.clone(),
            message,
        })?;
        let net = match config.namespaces.network {
            NamespaceMode::Node => None,
            _ => Some(first_network(&self.opts.cni_conf_dir)?),
        };
        if !self.opts.pause.is_file() {
            return Err(PodError::NoPause(self.opts.pause.display().to_string()));
        }
        let id = crate::container::new_id()?;
        let mut rec = PodRecord {
            schema: SCHEMA,
            id: id.clone(),
            config,
            created_at: now(),
            netns: None,
            network: None,
            sandbox: None,
            cgroups_made: Vec::new(),
            stopped: true,
        };
        {
            berth_image::private::private_dir(&self.root(), berth_image::private::DIR_MODE)
                .map_err(io_err(format!("create {}", self.root().display())))?;
            let _names = lock_file(&self.root().join("lock"))?;
            let full = rec.config.full_name();
            if let Some(o) = self
                .records()
                .into_iter()
                .find(|r| r.config.full_name() == full)
            {
                return Err(PodError::AlreadyExists {
                    name: full,
                    id: o.id,
                });
            }
            let dir = self.dir(&id);
            fs::create_dir(&dir).map_err(io_err(format!("create {}", dir.display())))?;
            if let Err(e) = self.save(&rec) {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        }
        let lock = self.lock(&id)?;
        match self.make(&mut rec, net.as_ref()) {
            Ok(()) => Ok(id),
            Err(e) => {
                if let Err(r) = self.remove_locked(&mut rec, lock) {
                    tracing::warn!(pod = %id, "undoing a failed run: {r}");
                }
                Err(e)
            }
        }
    }

    fn make(&self, rec: &mut PodRecord, net: Option<&NetworkConfigList>) -> Result<(), PodError> {
        let id = rec.id.clone();
        let dir = self.dir(&id);
        let c = rec.config.clone();
        if !c.cgroup_parent.is_empty() {
            rec.cgroups_made = missing_cgroups(&c.cgroup_parent);
            self.save(rec)?;
        }
        // The files every container of the pod mounts.
        let host_net = c.namespaces.network == NamespaceMode::Node;
        let hostname = if host_net && c.hostname.is_empty() {
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned()
        } else {
            c.hostname().to_string()
        };
        let resolv = match &c.dns {
            Some(d) => resolv_conf(d),
            None => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        let write = |name: &str, body: &str| {
            let p = dir.join(name);
            fs::write(&p, body).map_err(io_err(format!("write {}", p.display())))
        };
        write("hostname", &format!("{hostname}\n"))?;
        write("resolv.conf", &resolv)?;
        if host_net {
            write(
                "hosts",
                &fs::read_to_string("/etc/hosts").unwrap_or_default(),
            )?;
        } else {
            write("hosts", &hosts(&hostname, None))?;
        }
        if let Some(net) = net {
            let pin = crate::netns::path(&self.engine.options().run_dir, &id);
            rec.netns = Some(pin.clone());
            self.save(rec)?;
            crate::netns::create(&pin).map_err(io_err(format!(
                "pin a network namespace at {}",
                pin.display()
            )))?;
            self.attach(rec, net, &pin)?;
            let ip = rec.network.as_ref().and_then(|n| n.ips.first().cloned());
            write("hosts", &hosts(&hostname, ip.as_deref()))?;
        }
        let sandbox = self.create_sandbox(rec, &hostname)?;
        rec.sandbox = Some(sandbox.id().to_string());
        self.save(rec)?;
        self.engine.start(&sandbox, false, &[])?;
        rec.stopped = false;
        self.save(rec)
    }

    fn net_err(&self, id: &str, network: &str) -> impl Fn(String) -> PodError {
        let (pod, network) = (id.to_string(), network.to_string());
        move |message| PodError::Network {
            pod: pod.clone(),
            network: network.clone(),
            message,
        }
    }

    fn loopback() -> NetworkConfigList {
        NetworkConfigList::parse(
            br#"{"cniVersion": "1.0.0", "name": "berth-pod-loopback", "plugins": [{"type": "loopback"}]}"#,
        )
        .expect("a valid list")
    }

    /// CNI ADD of the loopback and the pod's network, recorded first.
    fn attach(
        &self,
        rec: &mut PodRecord,
        net: &NetworkConfigList,
        pin: &Path,
    ) -> Result<(), PodError> {
        let c = &rec.config;
        let args: Vec<(String, String)> = vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAMESPACE".into(), c.namespace.clone()),
            ("K8S_POD_NAME".into(), c.name.clone()),
            ("K8S_POD_INFRA_CONTAINER_ID".into(), rec.id.clone()),
            ("K8S_POD_UID".into(), c.uid.clone()),
        ];
        let mut caps = serde_json::Map::new();
        if !c.port_mappings.is_empty() {
            caps.insert(
                "portMappings".into(),
                Value::Array(
                    c.port_mappings
                        .iter()
                        .map(|p| {
                            let mut m = json!({"hostPort": p.host_port, "containerPort": p.container_port,
                                               "protocol": p.protocol});
                            if let Some(ip) = p.host_ip {
                                m["hostIP"] = json!(ip.to_string());
                            }
                            m
                        })
                        .collect(),
                ),
            );
        }
        let conflist: Value = serde_json::from_slice(&net.bytes).unwrap_or(Value::Null);
        rec.network = Some(PodNetwork {
            name: net.name.clone(),
            ifname: "eth0".into(),
            conflist,
            args: args.clone(),
            capability_args: caps.clone(),
            ips: Vec::new(),
            attached: false,
        });
        self.save(rec)?;
        let err = self.net_err(&rec.id, &net.name);
        let rt = |ifname: &str| RuntimeConf {
            container_id: rec.id.clone(),
            netns: pin.to_path_buf(),
            ifname: ifname.into(),
            args: args.clone(),
            capability_args: Default::default(),
        };
        self.cni
            .add(&Self::loopback(), &rt("lo"))
            .map_err(|e| err(e.to_string()))?;
        let mut main = rt("eth0");
        main.capability_args = caps;
        let res = self.cni.add(net, &main).map_err(|e| err(e.to_string()))?;
        let n = rec.network.as_mut().expect("set above");
        n.ips = res
            .ips
            .iter()
            .map(|i| i.address.split('/').next().unwrap_or_default().to_string())
            .collect();
        n.attached = true;
        self.save(rec)
    }

    /// CNI DEL of what [`Pods::attach`] recorded, then the pin. Idempotent.
    fn detach(&self, rec: &mut PodRecord) -> Result<(), PodError> {
        let mut errors = Vec::new();
        if let Some(n) = rec.network.clone() {
            let netns = rec.netns.clone().unwrap_or_default();
            let rt = |ifname: &str, caps: serde_json::Map<String, Value>| RuntimeConf {
                container_id: rec.id.clone(),
                netns: netns.clone(),
                ifname: ifname.into(),
                args: n.args.clone(),
                capability_args: caps,
            };
            let list = serde_json::to_vec(&n.conflist)
                .ok()
                .and_then(|b| NetworkConfigList::parse(&b).ok());
            let r = match list {
                Some(l) => self.cni.del(&l, &rt(&n.ifname, n.capability_args.clone())),
                None => self.cni.del_cached(&n.name, &rec.id, &n.ifname),
            };
            if let Err(e) = r {
                errors.push(format!("network {}: {e}", n.name));
            }
            if let Err(e) = self
                .cni
                .del(&Self::loopback(), &rt("lo", Default::default()))
            {
                errors.push(format!("loopback: {e}"));
            }
            if errors.is_empty() {
                rec.network = None;
                self.save(rec)?;
            }
        }
        if let Some(pin) = rec.netns.clone() {
            crate::netns::remove(&pin).map_err(io_err(format!("unpin {}", pin.display())))?;
            if errors.is_empty() {
                rec.netns = None;
                self.save(rec)?;
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(self.net_err(&rec.id, "")(errors.join("; ")))
        }
    }

    /// Makes the sandbox container: record, a bundle whose root holds only
    /// the sandbox's own copy of `berth-pause`, bind-mounted read-only, and
    /// its monitor config. Undone on failure.
    fn create_sandbox(&self, rec: &PodRecord, hostname: &str) -> Result<Container, PodError> {
        let e = self.engine;
        let c = &rec.config;
        let cid = crate::container::new_id()?;
        let parent = if c.cgroup_parent.is_empty() {
            "/berth".to_string()
        } else {
            c.cgroup_parent.trim_end_matches('/').to_string()
        };
        let mut labels = BTreeMap::new();
        labels.insert(POD_LABEL.to_string(), rec.id.clone());
        labels.insert(SANDBOX_LABEL.to_string(), "true".to_string());
        let config = ContainerConfig {
            runtime: c.runtime.clone().unwrap_or_default(),
            stop_signal: "SIGTERM".into(),
            stop_timeout: 10,
            log_driver: "none".into(),
            log_max_file: 1,
            cmd: vec![PAUSE_PATH.into()],
            hostname: hostname.into(),
            labels,
            network: if rec.netns.is_some() {
                "pod".into()
            } else {
                "host".into()
            },
            cgroups_path: format!("{parent}/{cid}"),
            ..ContainerConfig::default()
        };
        let name: String = format!("k8s_POD_{}", c.full_name())
            .chars()
            .map(|ch| {
                if ch.is_ascii_alphanumeric() || "_.-".contains(ch) {
                    ch
                } else {
                    '-'
                }
            })
            .collect();
        let record = ContainerRecord {
            id: cid.clone(),
            name,
            namespace: e.namespace().to_string(),
            image: "berth-pause".into(),
            image_id: String::new(),
            created: now(),
            command: vec![PAUSE_PATH.into()],
            config: serde_json::to_value(&config).expect("JSON"),
        };
        e.records().create(&record).map_err(ContainerError::from)?;
        let ctr = Container { record, config };
        match self.fill_sandbox(rec, &ctr, hostname) {
            Ok(()) => Ok(ctr),
            Err(err) => {
                if let Err(r) = e.remove(&ctr, true) {
                    tracing::warn!(pod = %rec.id, "undoing a failed sandbox: {r}");
                }
                Err(err)
            }
        }
    }

    fn fill_sandbox(
        &self,
        rec: &PodRecord,
        ctr: &Container,
        hostname: &str,
    ) -> Result<(), PodError> {
        use std::os::unix::fs::PermissionsExt;
        let e = self.engine;
        let dir = e.dir(ctr.id());
        fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        fs::write(dir.join("lock"), b"")
            .map_err(io_err(format!("create {}/lock", dir.display())))?;
        let bundle = e.bundle_dir(ctr.id());
        let rootfs = bundle.join("rootfs");
        fs::create_dir_all(&rootfs).map_err(io_err(format!("create {}", rootfs.display())))?;
        // Mount points the runtime would otherwise make in a root it can
        // no longer write.
        for d in ["proc", "dev", "sys", "etc", "tmp"] {
            fs::create_dir(rootfs.join(d))
                .map_err(io_err(format!("create {}/{d}", rootfs.display())))?;
        }
        let copy = rootfs.join(PAUSE_PATH.trim_start_matches('/'));
        fs::copy(&self.opts.pause, &copy).map_err(io_err(format!(
            "copy {} into the sandbox",
            self.opts.pause.display()
        )))?;
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o555))
            .map_err(io_err(format!("chmod {}", copy.display())))?;
        // The root is its own read-only mount: the engine sees it as the
        // container's mounted rootfs, and `remove` unmounts it.
        use nix::mount::{mount, MsFlags};
        let none = None::<&str>;
        mount(Some(&rootfs), &rootfs, none, MsFlags::MS_BIND, none)
            .and_then(|_| mount(none, &rootfs, none, MsFlags::MS_PRIVATE, none))
            .and_then(|_| {
                mount(
                    none,
                    &rootfs,
                    none,
                    MsFlags::MS_BIND
                        | MsFlags::MS_REMOUNT
                        | MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV,
                    none,
                )
            })
            .map_err(|err| io_err(format!("bind {} read-only", rootfs.display()))(err.into()))?;
        let spec = self.sandbox_spec(rec, ctr, hostname)?;
        let cfg = bundle.join("config.json");
        fs::write(&cfg, serde_json::to_vec_pretty(&spec).expect("JSON"))
            .map_err(io_err(format!("write {}", cfg.display())))?;
        e.write_monitor_config(ctr, false, &[])?;
        Ok(())
    }

    /// The sandbox's `config.json`: the hardened default with every
    /// capability dropped, a read-only root, and the pod's namespaces and
    /// sysctls.
    fn sandbox_spec(
        &self,
        rec: &PodRecord,
        ctr: &Container,
        hostname: &str,
    ) -> Result<Value, PodError> {
        let c = &rec.config;
        let cerr = |m: String| {
            PodError::Container(ContainerError::Start {
                name: ctr.name().to_string(),
                message: m,
            })
        };
        let flags = ProcessFlags {
            cmd: vec![PAUSE_PATH.into()],
            ..ProcessFlags::default()
        };
        let plan = crate::process::plan(None, hostname, &flags).map_err(|e| cerr(e.to_string()))?;
        let user = crate::user::resolve("", None, None).map_err(|e| cerr(e.to_string()))?;
        let sec = SecurityFlags {
            cap_drop: vec!["ALL".into()],
            no_new_privileges: true,
            read_only: true,
            ..SecurityFlags::default()
        };
        let s = crate::spec::build(&plan, &user, hostname, "rootfs", false, &sec)
            .map_err(|e| cerr(e.to_string()))?;
        let mut v = serde_json::to_value(s).map_err(|e| cerr(e.to_string()))?;
        v["linux"]["cgroupsPath"] = json!(ctr.config.cgroups_path);
        if !c.sysctls.is_empty() {
            v["linux"]["sysctl"] = json!(c.sysctls);
        }
        let host_net = rec.netns.is_none();
        if let Some(ns) = v["linux"]["namespaces"].as_array_mut() {
            ns.retain(|n| {
                let t = n["type"].as_str().unwrap_or_default();
                match t {
                    "network" | "uts" => !host_net,
                    "ipc" => c.namespaces.ipc != NamespaceMode::Node,
                    "pid" => c.namespaces.pid != NamespaceMode::Node,
                    _ => true,
                }
            });
            if let Some(pin) = &rec.netns {
                for n in ns.iter_mut().filter(|n| n["type"] == "network") {
                    n["path"] = json!(pin);
                }
            }
        }
        if host_net {
            if let Some(o) = v.as_object_mut() {
                o.remove("hostname");
            }
        }
        Ok(v)
    }

    /// The sandbox's PID while it runs.
    fn sandbox_pid(&self, rec: &PodRecord) -> Option<i32> {
        let c = self.engine.get(rec.sandbox.as_deref()?).ok()?;
        let st = self.engine.state(&c);
        (st.is_active() && st.pid > 0).then_some(st.pid)
    }

    /// Stops the pod: its containers (SIGKILL after `timeout` seconds), the
    /// sandbox, and its network. Fine if it is already stopped.
    pub fn stop(&self, id: &str, timeout: u32) -> Result<(), PodError> {
        let rec = self.find(id)?;
        let _lock = self.lock(&rec.id)?;
        let mut rec = self
            .load(&rec.id)
            .ok_or_else(|| PodError::NotFound(id.into()))?;
        self.stop_locked(&mut rec, timeout)
    }

    fn stop_locked(&self, rec: &mut PodRecord, timeout: u32) -> Result<(), PodError> {
        rec.stopped = true;
        self.save(rec)?;
        for c in self.containers(&rec.id)? {
            if self.engine.state(&c).is_active() {
                // The pause (last) ends at once on SIGTERM, with 0.
                let sandbox = c.config.labels.contains_key(SANDBOX_LABEL);
                self.engine
                    .stop(&c, if sandbox { None } else { Some(timeout) })?;
            }
        }
        self.detach(rec)
    }

    /// Removes the pod and everything of it (stopping it first). Fine if
    /// it does not exist.
    pub fn remove(&self, id: &str) -> Result<(), PodError> {
        let rec = match self.find(id) {
            Ok(r) => r,
            Err(PodError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let lock = match self.lock(&rec.id) {
            Ok(l) => l,
            Err(PodError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(mut rec) = self.load(&rec.id) else {
            return Ok(());
        };
        self.remove_locked(&mut rec, lock)
    }

    fn remove_locked(&self, rec: &mut PodRecord, lock: Lock) -> Result<(), PodError> {
        self.stop_locked(rec, 0)?;
        for c in self.containers(&rec.id)? {
            self.engine.remove(&c, true)?;
        }
        for cg in rec.cgroups_made.iter().rev() {
            for root in cgroup_roots() {
                // Only empty ones go; kubelet may have put others there.
                let _ = fs::remove_dir(root.join(cg.trim_start_matches('/')));
            }
        }
        let dir = self.dir(&rec.id);
        // The record goes last.
        for f in ["hostname", "hosts", "resolv.conf", "pod.json.tmp"] {
            let _ = fs::remove_file(dir.join(f));
        }
        fs::remove_file(dir.join("pod.json"))
            .or_else(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(io_err(format!("remove {}/pod.json", dir.display())))?;
        drop(lock);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("remove {}", dir.display()))(e)),
        }
    }

    fn status_of(&self, rec: PodRecord) -> PodStatus {
        let pid = if rec.stopped {
            None
        } else {
            self.sandbox_pid(&rec)
        };
        let ips = rec
            .network
            .as_ref()
            .map(|n| n.ips.clone())
            .unwrap_or_default();
        PodStatus {
            id: rec.id.clone(),
            state: if pid.is_some() {
                PodState::Ready
            } else {
                PodState::NotReady
            },
            created_at: rec.created_at.clone(),
            ip: ips.first().cloned().unwrap_or_default(),
            additional_ips: ips.iter().skip(1).cloned().collect(),
            netns: rec.netns.clone(),
            sandbox_container: rec.sandbox.clone(),
            pid: pid.unwrap_or(0),
            runtime: rec
                .config
                .runtime
                .clone()
                .unwrap_or_else(|| self.engine.options().runtime.clone()),
            config: rec.config,
        }
    }

    /// The pod's status.
    pub fn status(&self, id: &str) -> Result<PodStatus, PodError> {
        Ok(self.status_of(self.find(id)?))
    }

    /// The pods `filter` lets through, oldest first.
    pub fn list(&self, filter: &PodFilter) -> Vec<PodStatus> {
        self.records()
            .into_iter()
            .filter(|r| {
                filter
                    .id
                    .as_ref()
                    .is_none_or(|p| r.id.starts_with(p.as_str()))
            })
            .filter(|r| {
                filter
                    .labels
                    .iter()
                    .all(|(k, v)| r.config.labels.get(k) == Some(v))
            })
            .map(|r| self.status_of(r))
            .filter(|s| filter.state.is_none_or(|st| s.state == st))
            .collect()
    }

    /// Makes a container of pod `pod_id` from an image in the store; it
    /// joins the sandbox's namespaces. Start it with [`Engine::start`].
    pub fn create_container(
        &self,
        pod_id: &str,
        cfg: PodContainerConfig,
    ) -> Result<Container, PodError> {
        let rec = self.find(pod_id)?;
        let _lock = self.lock(&rec.id)?;
        let pod = &rec.config;
        if !valid_part(&cfg.name) {
            return Err(PodError::Invalid {
                pod: rec.id.clone(),
                message: format!("container name {:?} is not valid", cfg.name),
            });
        }
        let pid = match (rec.stopped, self.sandbox_pid(&rec)) {
            (false, Some(p)) => p,
            _ => return Err(PodError::NotReady(rec.id.clone())),
        };
        let ns = |kind: &str| Some(PathBuf::from(format!("/proc/{pid}/ns/{kind}")));
        let mut join = Vec::new();
        let mut add = |kind: &str, path: Option<PathBuf>| {
            join.push(NamespaceJoin {
                kind: kind.into(),
                path,
            })
        };
        match &rec.netns {
            Some(pin) => {
                add("network", Some(pin.clone()));
                add("uts", ns("uts"));
            }
            None => {
                add("network", None);
                add("uts", None);
            }
        }
        add(
            "ipc",
            if pod.namespaces.ipc == NamespaceMode::Node {
                None
            } else {
                ns("ipc")
            },
        );
        match &cfg.pid {
            NamespaceMode::Pod if pod.namespaces.pid == NamespaceMode::Node => add("pid", None),
            NamespaceMode::Pod if pod.namespaces.pid == NamespaceMode::Pod => add("pid", ns("pid")),
            NamespaceMode::Pod | NamespaceMode::Container => {}
            NamespaceMode::Node => add("pid", None),
            NamespaceMode::Target(t) => {
                let tc = self.engine.get(t)?;
                if tc.config.labels.get(POD_LABEL) != Some(&rec.id) {
                    return Err(PodError::Invalid {
                        pod: rec.id.clone(),
                        message: format!("PID target container {t} is not in this pod"),
                    });
                }
                let st = self.engine.state(&tc);
                if !st.is_active() || st.pid <= 0 {
                    return Err(PodError::Invalid {
                        pod: rec.id.clone(),
                        message: format!("PID target container {t} is not running"),
                    });
                }
                add(
                    "pid",
                    Some(PathBuf::from(format!("/proc/{}/ns/pid", st.pid))),
                );
            }
        }
        let mut mounts = Vec::new();
        for m in &cfg.mounts {
            if !m.container_path.starts_with('/') || !m.host_path.is_absolute() {
                return Err(PodError::Invalid {
                    pod: rec.id.clone(),
                    message: format!(
                        "mount {} -> {}: both paths must be absolute",
                        m.host_path.display(),
                        m.container_path
                    ),
                });
            }
            if !m.host_path.exists() {
                return Err(PodError::Invalid {
                    pod: rec.id.clone(),
                    message: format!("mount source {} does not exist", m.host_path.display()),
                });
            }
            mounts.push(Mount {
                destination: m.container_path.clone(),
                source: MountSource::Bind {
                    source: m.host_path.clone(),
                },
                read_only: m.readonly,
                propagation: None,
                relabel: None,
                nocopy: true,
            });
        }
        let host = HostConfig {
            mounts,
            network: Network::None,
            join,
            shared_etc: Some(self.dir(&rec.id)),
            cgroup_parent: (!pod.cgroup_parent.is_empty()).then(|| pod.cgroup_parent.clone()),
            ..HostConfig::default()
        };
        let img = self.engine.store().get(&cfg.image, &Platform::host())?;
        let mut labels = cfg.labels.clone();
        labels.insert(POD_LABEL.into(), rec.id.clone());
        let hostname = fs::read_to_string(self.dir(&rec.id).join("hostname"))
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| pod.hostname().to_string());
        let name: String = format!("k8s_{}_{}", cfg.name, pod.full_name())
            .chars()
            .map(|ch| {
                if ch.is_ascii_alphanumeric() || "_.-".contains(ch) {
                    ch
                } else {
                    '-'
                }
            })
            .collect();
        let o = CreateOptions {
            image_name: cfg.image.clone(),
            name: Some(name),
            bundle: BundleOptions {
                id: String::new(),
                hostname: Some(hostname.clone()),
                process: ProcessFlags {
                    entrypoint: (!cfg.command.is_empty()).then(|| cfg.command.clone()),
                    cmd: cfg.args.clone(),
                    env: cfg.env.clone(),
                    workdir: cfg.working_dir.clone(),
                    user: None,
                    tty: cfg.tty,
                },
                security: SecurityFlags::default(),
                cgroups_path: None,
                host,
                volumes: crate::volumes::VolumeStore::new(&self.engine.options().root),
                init: None,
            },
            config: ContainerConfig {
                runtime: pod.runtime.clone().unwrap_or_default(),
                tty: cfg.tty,
                open_stdin: cfg.stdin,
                stop_timeout: 10,
                log_driver: "json-file".into(),
                log_max_file: 1,
                hostname,
                labels,
                network: if rec.netns.is_some() {
                    "pod".into()
                } else {
                    "host".into()
                },
                ..ContainerConfig::default()
            },
        };
        Ok(self.engine.create(&img, o)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PodSandboxConfig {
        PodSandboxConfig {
            name: "web".into(),
            uid: "0b8c-11".into(),
            namespace: "default".into(),
            ..Default::default()
        }
    }

    #[test]
    fn full_names_and_hostnames() {
        let mut c = cfg();
        c.attempt = 2;
        assert_eq!(c.full_name(), "web_default_0b8c-11_2");
        assert_eq!(c.hostname(), "web");
        c.hostname = "box".into();
        assert_eq!(c.hostname(), "box");
    }

    #[test]
    fn bad_configs_are_refused_with_the_field() {
        let bad = |f: fn(&mut PodSandboxConfig)| {
            let mut c = cfg();
            f(&mut c);
            validate(&c).unwrap_err()
        };
        assert!(validate(&cfg()).is_ok());
        assert!(bad(|c| c.name.clear()).contains("name"));
        assert!(bad(|c| c.uid = "a/b".into()).contains("uid"));
        assert!(bad(|c| c.hostname = "a_b".into()).contains("hostname"));
        assert!(bad(|c| c.cgroup_parent = "kubepods".into()).contains("cgroup_parent"));
        assert!(bad(|c| c.cgroup_parent = "/a/../b".into()).contains("cgroup_parent"));
        assert!(bad(|c| {
            c.namespaces.network = NamespaceMode::Node;
            c.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        })
        .contains("net.ipv4.ip_forward"));
        assert!(bad(|c| {
            c.sysctls.insert("kernel.panic".into(), "1".into());
        })
        .contains("not namespaced"));
        assert!(bad(|c| c.port_mappings.push(PodPortMapping {
            protocol: "icmp".into(),
            container_port: 80,
            host_port: 8080,
            host_ip: None
        }))
        .contains("icmp"));
        assert!(bad(|c| c.dns = Some(DnsConfig {
            servers: vec!["not-an-ip".into()],
            ..Default::default()
        }))
        .contains("not-an-ip"));
        assert!(bad(|c| c.namespaces.ipc = NamespaceMode::Container).contains("IPC"));
        assert!(bad(|c| c.runtime = Some("runc".into())).contains("absolute"));
    }

    #[test]
    fn resolv_conf_from_the_dns_config() {
        let d = DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(&d),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        assert_eq!(resolv_conf(&DnsConfig::default()), "");
    }

    #[test]
    fn hosts_name_the_pod() {
        assert!(hosts("web", Some("10.1.2.3")).ends_with("10.1.2.3\tweb\n"));
        assert!(!hosts("web", None).contains("web"));
    }

    #[test]
    fn the_first_usable_config_list_wins() {
        let t = tempfile::tempdir().unwrap();
        let e = first_network(t.path()).unwrap_err().to_string();
        assert!(e.contains("no CNI network config"), "{e}");
        let list = |name: &str| {
            format!(r#"{{"cniVersion":"1.0.0","name":"{name}","plugins":[{{"type":"bridge"}}]}}"#)
        };
        fs::write(t.path().join("20-b.conflist"), list("b")).unwrap();
        fs::write(t.path().join("10-a.conflist"), list("a")).unwrap();
        fs::write(t.path().join("05-broken.conflist"), "{").unwrap();
        fs::write(t.path().join("00-ignored.txt"), list("x")).unwrap();
        assert_eq!(first_network(t.path()).unwrap().name, "a");
        let missing = t.path().join("nope");
        let e = first_network(&missing).unwrap_err().to_string();
        assert!(e.contains(&missing.display().to_string()), "{e}");
    }

    #[test]
    fn records_round_trip() {
        let r = PodRecord {
            schema: SCHEMA,
            id: "ab".into(),
            config: cfg(),
            created_at: now(),
            netns: Some("/run/berth/netns/ab".into()),
            network: Some(PodNetwork {
                name: "n".into(),
                ifname: "eth0".into(),
                ..Default::default()
            }),
            sandbox: None,
            cgroups_made: vec!["/kubepods".into()],
            stopped: false,
        };
        let v = serde_json::to_vec(&r).unwrap();
        assert_eq!(serde_json::from_slice::<PodRecord>(&v).unwrap(), r);
    }
}
