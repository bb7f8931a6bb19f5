//! Loading and validating a bundle's `config.json`.
//!
//! Everything that can be checked before `clone` is checked here, so that a bad
//! config fails `create` with a message naming the field, before any state,
//! cgroup or process exists.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// The runtime-spec versions this runtime implements.
pub const OCI_VERSION: &str = "1.2.0";
/// Lowest accepted `ociVersion`.
pub const OCI_VERSION_MIN: &str = "1.0.0";
/// Highest accepted `ociVersion` (any 1.3 patch release).
pub const OCI_VERSION_MAX: &str = "1.3.0";

/// Read and parse `path` (a config.json).
pub fn load(path: &Path) -> Result<Spec> {
    Ok(load_with_bytes(path)?.0)
}

/// Read and parse `path`; also return the bytes read, for a copy of
/// exactly what was parsed.
pub fn load_with_bytes(path: &Path) -> Result<(Spec, Vec<u8>)> {
    let file = File::open(path).map_err(|e| Error::io("open config", path, e))?;
    let bytes = read_all(path, file)?;
    Ok((parse_bytes(path, &bytes)?, bytes))
}

/// Parse a config from bytes, for `exec --process` and tests.
pub fn parse_process(path: &Path) -> Result<oci_spec::runtime::Process> {
    let file = File::open(path).map_err(|e| Error::io("open process file", path, e))?;
    parse_json(path, file)
}

/// Deserialize, naming the field at fault (e.g. `linux.resources.blockIO.weight`).
///
/// The common case, a valid file, takes the plain serde_json path; only a
/// failure is parsed again with serde_path_to_error to find the field (path
/// tracking costs about 40% more instructions on every start).
fn parse_json<T: serde::de::DeserializeOwned>(path: &Path, file: File) -> Result<T> {
    parse_bytes(path, &read_all(path, file)?)
}

fn read_all(path: &Path, mut file: File) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| Error::InvalidConfig {
            path: path.to_owned(),
            msg: format!("read: {e}"),
        })?;
    Ok(bytes)
}

fn parse_bytes<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    if let Ok(v) = serde_json::from_slice(bytes) {
        return Ok(v);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let e = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let field = e.path().to_string();
    let inner = e.into_inner();
    Err(Error::InvalidConfig {
        path: path.to_owned(),
        msg: if field.is_empty() || field == "." {
            inner.to_string()
        } else {
            format!("{field}: {inner}")
        },
    })
}

/// A namespace type as a config's `type` names it ("network", "mount"; the
/// type's Display gives the kernel's "net", "mnt").
pub fn ns_type_name(t: LinuxNamespaceType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| t.to_string())
}

/// Check that `version` is a 1.x runtime-spec version we implement.
pub fn check_version(version: &str) -> std::result::Result<(), String> {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let nums: Option<Vec<u32>> = parts.iter().map(|p| p.parse().ok()).collect();
    match nums.as_deref() {
        Some([1, minor, _patch]) if *minor <= 3 => Ok(()),
        _ => Err(format!(
            "unsupported ociVersion {version:?}: berth-runtime supports {OCI_VERSION_MIN} to {OCI_VERSION_MAX}.x"
        )),
    }
}

/// Validate a loaded spec against the bundle it came from. Returns the rootfs path.
pub fn validate(spec: &Spec, bundle: &Path, config_path: &Path) -> Result<PathBuf> {
    let bad = |msg: String| Error::InvalidConfig {
        path: config_path.to_owned(),
        msg,
    };
    check_version(spec.version()).map_err(bad)?;

    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| bad("root: missing (root.path is required)".into()))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    match std::fs::metadata(&rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(bad(format!(
                "root.path {}: not a directory",
                rootfs.display()
            )))
        }
        Err(e) => return Err(bad(format!("root.path {}: {e}", rootfs.display()))),
    }

    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| bad("process: missing".into()))?;
    validate_process(process).map_err(bad)?;

    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| bad("linux: missing (only Linux containers are supported)".into()))?;

    let mut seen = HashSet::new();
    let mut new_ns = HashSet::new();
    for ns in linux.namespaces().iter().flatten() {
        if !seen.insert(ns.typ()) {
            return Err(bad(format!(
                "linux.namespaces: namespace {:?} listed twice",
                ns_type_name(ns.typ())
            )));
        }
        match ns.path() {
            Some(p) => {
                if !p.is_absolute() {
                    return Err(bad(format!(
                        "linux.namespaces: path {} of the {} namespace is not absolute",
                        p.display(),
                        ns_type_name(ns.typ())
                    )));
                }
                if let Err(e) = std::fs::metadata(p) {
                    return Err(bad(format!(
                        "linux.namespaces: path {} of the {} namespace: {e}",
                        p.display(),
                        ns_type_name(ns.typ())
                    )));
                }
            }
            None => {
                new_ns.insert(ns.typ());
            }
        }
    }
    let has_userns = seen.contains(&LinuxNamespaceType::User);
    let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if new_ns.contains(&LinuxNamespaceType::User) {
        if linux.uid_mappings().as_ref().is_none_or(|m| m.is_empty()) {
            return Err(bad(
                "linux.uidMappings: a new user namespace needs uid mappings".into(),
            ));
        }
        if linux.gid_mappings().as_ref().is_none_or(|m| m.is_empty()) {
            return Err(bad(
                "linux.gidMappings: a new user namespace needs gid mappings".into(),
            ));
        }
    } else if maps && !has_userns {
        return Err(bad(
            "linux.uidMappings/gidMappings are set but there is no user namespace".into(),
        ));
    }
    // Without a mount namespace the container runs chrooted in the runtime's
    // (as with runc and youki); masking a path there would hide it from the
    // host, so, as runc does, masked and read-only paths are refused.
    if !seen.contains(&LinuxNamespaceType::Mount) {
        for (field, paths) in [
            ("linux.maskedPaths", linux.masked_paths()),
            ("linux.readonlyPaths", linux.readonly_paths()),
        ] {
            if paths.as_ref().is_some_and(|p| !p.is_empty()) {
                return Err(bad(format!(
                    "{field}: they need a mount namespace of the container's own, and the \
                     config has none"
                )));
            }
        }
    }
    // A uts namespace joined by path counts too: the name is set in it, as
    // runc and youki do.
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty())
        && !seen.contains(&LinuxNamespaceType::Uts)
    {
        return Err(bad(
            "hostname: cannot set the hostname without a uts namespace (new or joined)".into(),
        ));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty())
        && !seen.contains(&LinuxNamespaceType::Uts)
    {
        return Err(bad(
            "domainname: cannot set the domainname without a uts namespace (new or joined)".into(),
        ));
    }
    if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty())
        && !new_ns.contains(&LinuxNamespaceType::Time)
    {
        return Err(bad(
            "linux.timeOffsets: offsets need a new time namespace".into()
        ));
    }
    for (key, _) in linux.sysctl().iter().flatten() {
        check_sysctl(key, &new_ns, seen.contains(&LinuxNamespaceType::Network)).map_err(bad)?;
    }
    if let Some(prop) = linux.rootfs_propagation() {
        if crate::mount::propagation_flag(prop).is_none() {
            return Err(bad(format!(
                "linux.rootfsPropagation: unknown value {prop:?}"
            )));
        }
    }
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            return Err(bad(format!(
                "mounts: destination {} is not absolute",
                m.destination().display()
            )));
        }
        let at = |e: String| bad(format!("mounts: {}: {e}", m.destination().display()));
        let o = crate::mount::MountOptions::parse(m.options().as_deref().unwrap_or_default())
            .map_err(at)?;
        let typ = m.typ().as_deref().unwrap_or("");
        if o.bind || typ == "bind" {
            o.check_data("bind").map_err(at)?;
        } else if typ == "cgroup" || typ == "cgroup2" {
            o.check_data(typ).map_err(at)?;
        }
    }
    for p in linux.masked_paths().iter().flatten() {
        if !p.starts_with('/') {
            return Err(bad(format!("linux.maskedPaths: {p:?} is not absolute")));
        }
    }
    // A relative read-only path is taken relative to the container's root, as
    // runc and youki do (the spec asks for absolute ones).
    for p in linux.readonly_paths().iter().flatten() {
        if p.is_empty() {
            return Err(bad("linux.readonlyPaths: an entry is empty".into()));
        }
    }
    for d in linux.devices().iter().flatten() {
        if !d.path().starts_with("/dev/") {
            return Err(bad(format!(
                "linux.devices: {} is not under /dev",
                d.path().display()
            )));
        }
    }
    Ok(rootfs)
}

/// Most lines the kernel takes in a uid_map or gid_map (Linux 4.15 and later).
pub const MAX_ID_MAP_LINES: usize = 340;

/// The kernel's limits that a config must fit, read from the host once per
/// create (see [`KernelLimits::from_host`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelLimits {
    /// The page size: an ID map must be written in one write shorter than it.
    pub page_size: usize,
    /// `fs.mount-max`, the most mounts one mount namespace may hold.
    pub mount_max: Option<u64>,
    /// How many mounts a new mount namespace starts with (ours, copied);
    /// None when it was not counted because the config is far from the limit.
    pub mounts_now: Option<u64>,
}

impl KernelLimits {
    /// The host's limits, for a config that makes `mounts` mounts.
    /// `/proc/self/mountinfo` is counted only when the config alone comes
    /// near `fs.mount-max`.
    pub fn from_host(mounts: u64) -> KernelLimits {
        let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map(|p| p as usize)
            .unwrap_or(4096);
        let mount_max = std::fs::read_to_string("/proc/sys/fs/mount-max")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let mounts_now = match mount_max {
            Some(max) if mounts.saturating_mul(2) >= max => {
                std::fs::read_to_string("/proc/self/mountinfo")
                    .ok()
                    .map(|s| s.lines().count() as u64)
            }
            _ => None,
        };
        KernelLimits {
            page_size,
            mount_max,
            mounts_now,
        }
    }
}

/// How many mounts the container's setup makes at least: the rootfs bind, the
/// config's mounts, one per masked and read-only path.
pub fn mounts_made(spec: &Spec) -> u64 {
    let linux = spec.linux().as_ref();
    let n = |v: Option<usize>| v.unwrap_or(0) as u64;
    1 + n(spec.mounts().as_ref().map(Vec::len))
        + n(linux.and_then(|l| l.masked_paths().as_ref().map(Vec::len)))
        + n(linux.and_then(|l| l.readonly_paths().as_ref().map(Vec::len)))
}

/// Check a config against the kernel's limits, so that it is refused with a
/// clear error before anything is made, not half-way with EINVAL or ENOSPC.
pub fn check_kernel_limits(spec: &Spec, k: &KernelLimits) -> std::result::Result<(), String> {
    if let Some(linux) = spec.linux() {
        for (field, maps) in [
            ("linux.uidMappings", linux.uid_mappings()),
            ("linux.gidMappings", linux.gid_mappings()),
        ] {
            let Some(maps) = maps.as_ref() else { continue };
            if maps.len() > MAX_ID_MAP_LINES {
                return Err(format!(
                    "{field}: {} entries, but the kernel takes at most {MAX_ID_MAP_LINES} \
                     lines in an ID map (Linux 4.15 and later)",
                    maps.len()
                ));
            }
            let bytes: usize = maps
                .iter()
                .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()).len())
                .sum();
            if bytes >= k.page_size {
                return Err(format!(
                    "{field}: {} entries make a map of {bytes} bytes, but the kernel takes \
                     an ID map written at once in less than one page ({} bytes); use fewer, \
                     larger ranges",
                    maps.len(),
                    k.page_size
                ));
            }
        }
    }
    if let (Some(max), Some(now)) = (k.mount_max, k.mounts_now) {
        let made = mounts_made(spec);
        if now + made > max {
            return Err(format!(
                "mounts: the container needs at least {made} mounts besides the {now} a new \
                 mount namespace starts with, more than the kernel's limit of {max} mounts \
                 per namespace (fs.mount-max)"
            ));
        }
    }
    Ok(())
}

/// Checks on a process, shared by `create` and `exec`.
pub fn validate_process(p: &oci_spec::runtime::Process) -> std::result::Result<(), String> {
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err("process.args: must not be empty".into());
    }
    if !p.cwd().is_absolute() {
        return Err(format!(
            "process.cwd: {:?} is not an absolute path",
            p.cwd().display()
        ));
    }
    for e in p.env().iter().flatten() {
        if !e.contains('=') {
            return Err(format!("process.env: {e:?} is not KEY=VALUE"));
        }
    }
    if let Some(aff) = p.exec_cpu_affinity() {
        for (field, list) in [
            ("initial", aff.initial()),
            ("final", aff.cpu_affinity_final()),
        ] {
            if let Some(list) = list {
                crate::cpus::parse_list(list)
                    .map_err(|e| format!("process.execCPUAffinity.{field}: {e}"))?;
            }
        }
    }
    for r in p.rlimits().iter().flatten() {
        if r.soft() > r.hard() {
            return Err(format!(
                "process.rlimits: {:?} soft limit {} is above hard limit {}",
                r.typ(),
                r.soft(),
                r.hard()
            ));
        }
    }
    Ok(())
}

fn check_sysctl(
    key: &str,
    new_ns: &HashSet<LinuxNamespaceType>,
    has_netns: bool,
) -> std::result::Result<(), String> {
    let ipc = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if key.contains("..") || key.contains('/') && key.contains('.') {
        return Err(format!("linux.sysctl: malformed key {key:?}"));
    }
    if ipc.contains(&key) || key.starts_with("fs.mqueue.") {
        if new_ns.contains(&LinuxNamespaceType::Ipc) {
            return Ok(());
        }
        return Err(format!("linux.sysctl: {key} needs a new ipc namespace"));
    }
    if key.starts_with("net.") {
        if has_netns {
            return Ok(());
        }
        return Err(format!("linux.sysctl: {key} needs a network namespace"));
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        if new_ns.contains(&LinuxNamespaceType::Uts) {
            return Ok(());
        }
        return Err(format!("linux.sysctl: {key} needs a new uts namespace"));
    }
    Err(format!(
        "linux.sysctl: {key} is not namespaced, so a container may not set it"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(check_version("1.0.0").is_ok());
        assert!(check_version("1.0.2-dev").is_ok());
        assert!(check_version("1.2.0").is_ok());
        assert!(check_version("1.3.1").is_ok());
        let e = check_version("2.0.0").unwrap_err();
        assert!(e.contains("unsupported ociVersion \"2.0.0\""), "{e}");
        assert!(check_version("0.9.0").is_err());
        assert!(check_version("1.4.0").is_err());
        assert!(check_version("").is_err());
    }

    #[test]
    fn sysctls() {
        let mut ns = HashSet::new();
        assert!(check_sysctl("net.ipv4.ip_forward", &ns, false).is_err());
        assert!(check_sysctl("net.ipv4.ip_forward", &ns, true).is_ok());
        assert!(check_sysctl("kernel.shmmax", &ns, true).is_err());
        ns.insert(LinuxNamespaceType::Ipc);
        assert!(check_sysctl("kernel.shmmax", &ns, true).is_ok());
        assert!(check_sysctl("fs.mqueue.msg_max", &ns, true).is_ok());
        let e = check_sysctl("vm.swappiness", &ns, true).unwrap_err();
        assert!(e.contains("vm.swappiness"));
    }

    fn write_bundle(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        dir
    }

    fn minimal(extra_linux: &str, extra_top: &str) -> String {
        format!(
            r#"{{"ociVersion":"1.2.0","root":{{"path":"rootfs"}},
            "process":{{"args":["/bin/true"],"cwd":"/","user":{{"uid":0,"gid":0}}}},
            {extra_top}
            "linux":{{"namespaces":[{{"type":"mount"}},{{"type":"pid"}}]{extra_linux}}}}}"#
        )
    }

    fn check(config: &str) -> Result<PathBuf> {
        let dir = write_bundle(config);
        let cfg = dir.path().join("config.json");
        let spec = load(&cfg)?;
        validate(&spec, dir.path(), &cfg)
    }

    #[test]
    fn minimal_is_valid() {
        let root = check(&minimal("", "")).unwrap();
        assert!(root.ends_with("rootfs"));
    }

    #[test]
    fn malformed_json_names_position() {
        let e = check("{\"ociVersion\": ").unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn unknown_namespace_type() {
        let c = minimal("", "").replace(r#"{"type":"pid"}"#, r#"{"type":"bogus"}"#);
        let e = check(&c).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn type_errors_name_the_field() {
        let c = minimal(r#","resources":{"blockIO":{"weight":-5}}"#, "");
        let e = check(&c).unwrap_err().to_string();
        assert!(e.contains("linux.resources.blockIO.weight"), "{e}");
    }

    #[test]
    fn unknown_capability() {
        let c = minimal("", "").replace(
            r#""cwd":"/","#,
            r#""cwd":"/","capabilities":{"bounding":["CAP_NOPE"]},"#,
        );
        let e = check(&c).unwrap_err().to_string();
        assert!(e.contains("CAP_NOPE"), "{e}");
    }

    #[test]
    fn duplicate_namespace() {
        let c = minimal("", "").replace(r#"{"type":"pid"}"#, r#"{"type":"mount"}"#);
        let e = check(&c).unwrap_err().to_string();
        assert!(e.contains("listed twice"), "{e}");
    }

    #[test]
    fn bad_version_and_missing_rootfs() {
        let c = minimal("", "").replace("1.2.0", "3.0.0");
        let e = check(&c).unwrap_err().to_string();
        assert!(e.contains("unsupported ociVersion"), "{e}");
        let c = minimal("", "").replace(r#""path":"rootfs""#, r#""path":"nope""#);
        let e = check(&c).unwrap_err().to_string();
        assert!(e.contains("root.path") && e.contains("nope"), "{e}");
    }

    #[test]
    fn userns_needs_mappings() {
        let c = minimal("", "").replace(r#"{"type":"pid"}"#, r#"{"type":"user"}"#);
        let e = check(&c).unwrap_err().to_string();
        assert!(e.contains("uid mappings"), "{e}");
    }

    #[test]
    fn hostname_needs_uts() {
        let e = check(&minimal("", r#""hostname":"x","#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("uts"), "{e}");
    }

    #[test]
    fn without_a_mount_namespace() {
        let c = minimal("", "").replace(r#"{"type":"mount"},"#, "");
        check(&c).unwrap();
        let c =
            minimal(r#","maskedPaths":["/proc/kcore"]"#, "").replace(r#"{"type":"mount"},"#, "");
        let e = check(&c).unwrap_err().to_string();
        assert!(
            e.contains("linux.maskedPaths") && e.contains("mount namespace"),
            "{e}"
        );
        let c =
            minimal(r#","readonlyPaths":["/proc/sys"]"#, "").replace(r#"{"type":"mount"},"#, "");
        let e = check(&c).unwrap_err().to_string();
        assert!(e.contains("linux.readonlyPaths"), "{e}");
    }

    #[test]
    fn kernel_limits() {
        let limits = KernelLimits {
            page_size: 4096,
            mount_max: Some(1000),
            mounts_now: Some(30),
        };
        let maps = |n: u32, host: u32| {
            let v: Vec<String> = (0..n)
                .map(|i| format!(r#"{{"containerID":{i},"hostID":{},"size":1}}"#, host + i))
                .collect();
            format!(
                r#","uidMappings":[{}],"gidMappings":[{{"containerID":0,"hostID":1000,"size":1}}]"#,
                v.join(",")
            )
        };
        let spec = |linux: &str, top: &str| -> Spec {
            serde_json::from_str(&minimal(linux, top)).unwrap()
        };
        check_kernel_limits(&spec(&maps(340, 1000), ""), &limits).unwrap();
        let e = check_kernel_limits(&spec(&maps(341, 1000), ""), &limits).unwrap_err();
        assert!(
            e.contains("linux.uidMappings: 341 entries") && e.contains("340"),
            "{e}"
        );
        // 300 lines of ~24 bytes do not fit in a page.
        let e = check_kernel_limits(&spec(&maps(300, 4_000_000_000), ""), &limits).unwrap_err();
        assert!(e.contains("4096"), "{e}");
        let mounts = |n: usize| {
            let m: Vec<String> = (0..n)
                .map(|i| format!(r#"{{"destination":"/m/{i}","type":"tmpfs"}}"#))
                .collect();
            format!(r#""mounts":[{}],"#, m.join(","))
        };
        // 30 + the rootfs + 969 = 1000: at the limit is fine, one more is not.
        check_kernel_limits(&spec("", &mounts(969)), &limits).unwrap();
        let e = check_kernel_limits(&spec("", &mounts(970)), &limits).unwrap_err();
        assert!(e.contains("fs.mount-max") && e.contains("1000"), "{e}");
        // Not counted (far from the limit): nothing to check.
        let far = KernelLimits {
            mounts_now: None,
            ..limits
        };
        check_kernel_limits(&spec("", &mounts(970)), &far).unwrap();
    }

    #[test]
    fn hostname_in_a_joined_uts_namespace() {
        let c = minimal("", r#""hostname":"x","domainname":"y","#).replace(
            r#"{"type":"pid"}"#,
            r#"{"type":"uts","path":"/proc/self/ns/uts"}"#,
        );
        check(&c).unwrap();
    }

    #[test]
    fn empty_args_and_relative_cwd() {
        let c = minimal("", "").replace(r#"["/bin/true"]"#, "[]");
        assert!(check(&c).unwrap_err().to_string().contains("process.args"));
        let c = minimal("", "").replace(r#""cwd":"/""#, r#""cwd":"tmp""#);
        assert!(check(&c).unwrap_err().to_string().contains("process.cwd"));
    }

    #[test]
    fn relative_readonly_path() {
        check(&minimal(r#","readonlyPaths":["proc/sys","/proc/bus"]"#, "")).unwrap();
        let e = check(&minimal(r#","readonlyPaths":[""]"#, ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux.readonlyPaths"), "{e}");
        // Masked paths stay absolute: youki's conformance tests expect a relative one refused.
        let e = check(&minimal(r#","maskedPaths":["../x"]"#, ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux.maskedPaths"), "{e}");
    }

    #[test]
    fn unknown_option_of_a_bind_mount() {
        for (typ, opts) in [
            ("bind", r#"["rbind","rro","rbogus"]"#),
            ("none", r#"["bind","nosuid","rdonly"]"#),
            ("cgroup", r#"["nosuid","rdonly"]"#),
        ] {
            let c = minimal(
                "",
                &format!(
                    r#""mounts":[{{"destination":"/x","type":"{typ}","source":"/tmp","options":{opts}}}],"#
                ),
            );
            let e = check(&c).unwrap_err().to_string();
            let bad = if opts.contains("rbogus") {
                "\"rbogus\""
            } else {
                "\"rdonly\""
            };
            assert!(e.contains("/x") && e.contains(bad), "{e}");
        }
        // Data is the filesystem's business: tmpfs takes it.
        let c = minimal(
            "",
            r#""mounts":[{"destination":"/x","type":"tmpfs","source":"tmpfs","options":["rro","mode=755","size=1k"]}],"#,
        );
        check(&c).unwrap();
    }

    #[test]
    fn bad_mount_option_and_relative_destination() {
        let c = minimal(
            "",
            r#""mounts":[{"destination":"/x","type":"none","source":"/tmp","options":["rbind","idmap"]}],"#,
        );
        let e = check(&c).unwrap_err().to_string();
        assert!(e.contains("/x") && e.contains("idmap"), "{e}");
        let c = minimal(
            "",
            r#""mounts":[{"destination":"x","type":"tmpfs","source":"tmpfs"}],"#,
        );
        assert!(check(&c).unwrap_err().to_string().contains("not absolute"));
    }
}
