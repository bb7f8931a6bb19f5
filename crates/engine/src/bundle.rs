//! An OCI bundle from a local image: the container's writable snapshot on
//! top of the image's layers, mounted at `DIR/rootfs`, generated
//! `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` bind-mounted in, and
//! `DIR/config.json` from [`crate::spec`].
//!
//! Layout of `DIR`: `rootfs/` (the overlay mount), `config.json`,
//! `hostname`, `hosts`, `resolv.conf`. The snapshot key is
//! `container-<id>`; it is an active snapshot, so image GC keeps it and its
//! parents.
//!
//! The host flags ([`crate::host`]) are applied once the rootfs is mounted:
//! volumes are made (and filled from the image) before `config.json` is
//! written. With `--network host` the container gets the host's hostname
//! (unless one is given), the host's `/etc/hosts` with its own name added
//! and the host's `resolv.conf` as is, as podman does. A generated file is
//! left out when a `-v` or `--tmpfs` mount is at its place.
//!
//! [`create`] undoes everything it did when a later step fails, including
//! the volumes it made; [`remove`] is idempotent, so it also cleans after a
//! crash at any point (volumes are the caller's: `rm -v`).

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use berth_image::snapshot::mount::{mount_all, unmount_all};
use berth_image::snapshot::SnapshotError;
use berth_image::store::{ImageStore, LocalImage};
use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
use serde_json::json;

use crate::host::{HostConfig, HostError, Network};
use crate::process::{self, ProcessError, ProcessFlags};
use crate::spec::{self, SecurityFlags, SpecError};
use crate::user::{self, UserError};
use crate::volumes::VolumeStore;

/// The largest `/etc/passwd` or `/etc/group` read from an image.
const MAX_ETC_FILE: u64 = 4 << 20;

/// A bundle that could not be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The image has no layers to run from.
    #[error("image {0} has no layers")]
    NoLayers(String),
    /// The snapshotter refused.
    #[error("container {id}: snapshot: {source}")]
    Snapshot {
        /// The container.
        id: String,
        /// Why.
        #[source]
        source: SnapshotError,
    },
    /// The process could not be made from the image and flags.
    #[error("container {id}: {source}")]
    Process {
        /// The container.
        id: String,
        /// Why.
        #[source]
        source: ProcessError,
    },
    /// The user could not be resolved in the image.
    #[error("container {id}: {source}")]
    User {
        /// The container.
        id: String,
        /// Why.
        #[source]
        source: UserError,
    },
    /// The spec could not be made.
    #[error("container {id}: {source}")]
    Spec {
        /// The container.
        id: String,
        /// Why.
        #[source]
        source: SpecError,
    },
    /// A host flag could not be applied.
    #[error("container {id}: {source}")]
    Host {
        /// The container.
        id: String,
        /// Why.
        #[source]
        source: HostError,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> BundleError {
    move |source| BundleError::Io { context, source }
}

/// What a container is made from.
#[derive(Debug, Clone)]
pub struct BundleOptions {
    /// Container ID (also the default hostname's source).
    pub id: String,
    /// Hostname; the first 12 characters of the ID when None, as docker.
    pub hostname: Option<String>,
    /// The process flags.
    pub process: ProcessFlags,
    /// The security flags.
    pub security: SecurityFlags,
    /// `linux.cgroupsPath`; the runtime's default when None.
    pub cgroups_path: Option<String>,
    /// The parsed host flags ([`crate::host::HostFlags::parse`]).
    pub host: HostConfig,
    /// Where volumes live.
    pub volumes: VolumeStore,
    /// `--init`: the host's `berth-init` to run as PID 1.
    pub init: Option<PathBuf>,
}

/// A made bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory.
    pub dir: PathBuf,
    /// The snapshot key of the container's writable layer.
    pub snapshot: String,
    /// The image's stop signal, if any.
    pub stop_signal: Option<String>,
    /// The host flags as applied: every volume named (anonymous ones and the
    /// image's `Volumes` included). Keep this one in the container record.
    pub host: HostConfig,
    /// The volumes this create made.
    pub volumes_created: Vec<String>,
}

/// The snapshot key of container `id`.
pub fn snapshot_key(id: &str) -> String {
    format!("container-{id}")
}

/// Reads `path` (relative) inside `root`, resolved as if `root` were `/`.
/// None when it does not exist.
pub fn read_in_root(root: &Path, path: &str) -> Result<Option<String>, BundleError> {
    let dir = fs::File::open(root).map_err(io(format!("open {}", root.display())))?;
    let fd: OwnedFd = match openat2(
        &dir,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(io(format!("open {path} in {}", root.display()))(e.into())),
    };
    let mut s = String::new();
    fs::File::from(fd)
        .take(MAX_ETC_FILE)
        .read_to_string(&mut s)
        .map_err(io(format!("read {path} in {}", root.display())))?;
    Ok(Some(s))
}

/// `/etc/resolv.conf` for a container: the host's, without loopback name
/// servers (a stub resolver on the host's 127.0.0.53 is not reachable from
/// another network namespace).
fn resolv_conf(host: &str) -> String {
    let mut out = String::from("# Generated by berth from the host's resolv.conf.\n");
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let addr = words.next().unwrap_or_default();
            if addr.starts_with("127.") || addr == "::1" {
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `/etc/hosts` for a container without a network of its own yet.
fn hosts(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
    )
}

/// `/etc/hosts` for a container on the host's network: the host's, plus the
/// container's name when the host's does not have it.
fn host_hosts(host: &str, hostname: &str) -> String {
    let mut out = host.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let named = host.lines().any(|l| {
        let l = l.split('#').next().unwrap_or_default();
        l.split_whitespace().skip(1).any(|n| n == hostname)
    });
    if !named {
        out.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    out
}

/// Makes the bundle for `img` in `dir` (which must not exist yet).
pub fn create(
    store: &ImageStore,
    img: &LocalImage,
    dir: &Path,
    o: &BundleOptions,
) -> Result<Bundle, BundleError> {
    let top = img
        .top_chain_id()
        .ok_or_else(|| BundleError::NoLayers(img.record.name.clone()))?;
    let key = snapshot_key(&o.id);
    let snap_err = |source| BundleError::Snapshot {
        id: o.id.clone(),
        source,
    };
    fs::create_dir(dir).map_err(io(format!("create {}", dir.display())))?;
    let rootfs = dir.join("rootfs");
    let mounted = fs::create_dir(&rootfs)
        .map_err(io(format!("create {}", rootfs.display())))
        .and_then(|_| {
            store
                .snapshotter()
                .prepare(&key, Some(&top.to_string()))
                .map_err(snap_err)
        })
        .and_then(|mounts| mount_all(&mounts, &rootfs).map_err(snap_err));
    let mut host = o.host.clone();
    let mut created = Vec::new();
    let made = mounted.and_then(|_| fill(img, dir, &rootfs, o, &mut host, &mut created));
    match made {
        Ok(stop_signal) => Ok(Bundle {
            dir: dir.to_path_buf(),
            snapshot: key,
            stop_signal,
            host,
            volumes_created: created,
        }),
        Err(e) => {
            let _ = remove(store, dir, &o.id);
            for v in &created {
                let _ = o.volumes.remove(v, &Default::default());
            }
            Err(e)
        }
    }
}

/// Writes the generated files and `config.json` into a bundle whose rootfs
/// is mounted, after preparing `host`'s volumes (their names go to
/// `created` as they are made). Returns the image's stop signal.
fn fill(
    img: &LocalImage,
    dir: &Path,
    rootfs: &Path,
    o: &BundleOptions,
    host: &mut HostConfig,
    created: &mut Vec<String>,
) -> Result<Option<String>, BundleError> {
    let id = o.id.clone();
    let host_err = |source| BundleError::Host {
        id: o.id.clone(),
        source,
    };
    let host_net = host.network == Network::Host;
    let hostname = o.hostname.clone().unwrap_or_else(|| {
        if host_net {
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned()
        } else {
            o.id.chars().take(12).collect()
        }
    });
    let image_volumes: Vec<String> = img
        .config
        .config
        .as_ref()
        .and_then(|c| c.volumes.as_ref())
        .map(|v| v.keys().cloned().collect())
        .unwrap_or_default();
    created.extend(
        host.prepare(rootfs, &o.volumes, &image_volumes)
            .map_err(host_err)?,
    );
    let plan =
        process::plan(img.config.config.as_ref(), &hostname, &o.process).map_err(|source| {
            BundleError::Process {
                id: id.clone(),
                source,
            }
        })?;
    let passwd = read_in_root(rootfs, "etc/passwd")?;
    let group = read_in_root(rootfs, "etc/group")?;
    let u = user::resolve(&plan.user, passwd.as_deref(), group.as_deref()).map_err(|source| {
        BundleError::User {
            id: id.clone(),
            source,
        }
    })?;
    let s = spec::build(&plan, &u, &hostname, "rootfs", o.process.tty, &o.security).map_err(
        |source| BundleError::Spec {
            id: id.clone(),
            source,
        },
    )?;
    let mut v = serde_json::to_value(s).map_err(|e| BundleError::Spec {
        id: id.clone(),
        source: SpecError::Internal(e.to_string()),
    })?;

    if let Some(p) = &o.cgroups_path {
        v["linux"]["cgroupsPath"] = json!(p);
    }
    host.apply(&mut v, &o.volumes).map_err(host_err)?;
    if let Some(init) = &o.init {
        let copy = crate::init::install(dir, init)
            .map_err(io(format!("copying {} into the bundle", init.display())))?;
        crate::init::apply(&mut v, &copy);
    }
    check_exec_size(&v).map_err(|source| BundleError::Process {
        id: id.clone(),
        source,
    })?;

    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let (hosts_body, resolv_body) = if host_net {
        let h = fs::read_to_string("/etc/hosts").unwrap_or_default();
        (host_hosts(&h, &hostname), host_resolv)
    } else {
        (hosts(&hostname), resolv_conf(&host_resolv))
    };
    let files = [
        ("hostname", format!("{hostname}\n"), "/etc/hostname"),
        ("hosts", hosts_body, "/etc/hosts"),
        ("resolv.conf", resolv_body, "/etc/resolv.conf"),
    ];
    for (name, body, dest) in files {
        if host.covers(dest) {
            continue;
        }
        // A pod's containers share the sandbox's files.
        let p = match &host.shared_etc {
            Some(shared) => shared.join(name),
            None => {
                let p = dir.join(name);
                fs::write(&p, body).map_err(io(format!("write {}", p.display())))?;
                p
            }
        };
        let ro = if o.security.read_only { "ro" } else { "rw" };
        if let Some(m) = v["mounts"].as_array_mut() {
            m.push(json!({
                "destination": dest, "type": "bind", "source": p,
                "options": ["rbind", "rprivate", ro],
            }));
        }
    }
    let cfg = dir.join("config.json");
    let bytes = serde_json::to_vec_pretty(&v).map_err(|e| BundleError::Spec {
        id,
        source: SpecError::Internal(e.to_string()),
    })?;
    fs::write(&cfg, bytes).map_err(io(format!("write {}", cfg.display())))?;
    Ok(plan.stop_signal)
}

/// Checks that the kernel would let the process of config `v` be exec'd
/// (see [`process::check_exec_size`]), under the config's stack limit, else
/// the one the container inherits from here.
fn check_exec_size(v: &serde_json::Value) -> Result<(), ProcessError> {
    fn strs(a: &serde_json::Value) -> Vec<&str> {
        a.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default()
    }
    let p = &v["process"];
    let (args, env) = (strs(&p["args"]), strs(&p["env"]));
    let stack = p["rlimits"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["type"] == "RLIMIT_STACK"))
        .map(|r| r["soft"].as_u64().filter(|s| *s != u64::MAX))
        .unwrap_or_else(|| rustix::process::getrlimit(rustix::process::Resource::Stack).current);
    process::check_exec_size(args, env, stack)
}

/// Whether `path` is the root of a mount: `statx`'s `MOUNT_ROOT` where the
/// kernel reports it (5.8+), else a look in `/proc/self/mountinfo`.
fn is_mount_root(path: &Path) -> Result<bool, BundleError> {
    use rustix::fs::{statx, AtFlags, StatxAttributes, StatxFlags, CWD};
    match statx(
        CWD,
        path,
        AtFlags::NO_AUTOMOUNT | AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::empty(),
    ) {
        Ok(x) if x.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) => {
            return Ok(x.stx_attributes.contains(StatxAttributes::MOUNT_ROOT))
        }
        Ok(_) | Err(rustix::io::Errno::NOSYS) => {}
        Err(e) => return Err(io(format!("stat {}", path.display()))(e.into())),
    }
    let mi = fs::read_to_string("/proc/self/mountinfo")
        .map_err(io("read /proc/self/mountinfo".into()))?;
    // Mount points are field 5, with space, tab, newline and backslash
    // written as octal escapes.
    let want = path
        .to_string_lossy()
        .replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
        .replace('\n', "\\012");
    Ok(mi
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str())))
}

/// Mounts the rootfs of a made bundle again when it is not mounted (after
/// a reboot, or a create cut short); returns whether it had to.
pub fn ensure_mounted(store: &ImageStore, dir: &Path, id: &str) -> Result<bool, BundleError> {
    let rootfs = dir.join("rootfs");
    if is_mount_root(&rootfs)? {
        return Ok(false);
    }
    let snap_err = |source| BundleError::Snapshot {
        id: id.to_string(),
        source,
    };
    let mounts = store
        .snapshotter()
        .mounts(&snapshot_key(id))
        .map_err(snap_err)?;
    mount_all(&mounts, &rootfs).map_err(snap_err)?;
    Ok(true)
}

/// Unmounts the rootfs, removes the container's snapshot and the bundle
/// directory. What is already gone is skipped.
pub fn remove(store: &ImageStore, dir: &Path, id: &str) -> Result<(), BundleError> {
    let rootfs = dir.join("rootfs");
    if rootfs.exists() {
        unmount_all(&rootfs).map_err(|source| BundleError::Snapshot {
            id: id.to_string(),
            source,
        })?;
    }
    match store.snapshotter().remove(&snapshot_key(id)) {
        Ok(()) | Err(SnapshotError::NotFound(_)) => {}
        Err(source) => {
            return Err(BundleError::Snapshot {
                id: id.to_string(),
                source,
            })
        }
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("remove {}", dir.display()))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_drops_loopback_servers() {
        let host = "nameserver 127.0.0.53\nnameserver 10.0.0.2\noptions edns0\nsearch example\nnameserver ::1\n";
        let out = resolv_conf(host);
        assert!(!out.contains("127.0.0.53") && !out.contains("::1"));
        assert!(out.contains("nameserver 10.0.0.2\noptions edns0\nsearch example\n"));
    }

    #[test]
    fn hosts_name_the_container() {
        let h = hosts("abc");
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("127.0.1.1\tabc\n"));
    }

    #[test]
    fn host_network_hosts_keep_the_hosts_file() {
        let h = "127.0.0.1 localhost\n10.0.0.5 web # mine";
        assert_eq!(
            host_hosts(h, "box"),
            "127.0.0.1 localhost\n10.0.0.5 web # mine\n127.0.1.1\tbox\n"
        );
        assert_eq!(host_hosts(h, "web"), format!("{h}\n"));
        assert_eq!(host_hosts(h, "mine"), format!("{h}\n127.0.1.1\tmine\n"));
    }

    #[test]
    fn a_plain_dir_is_no_mount_root() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("a b")).unwrap();
        assert!(!is_mount_root(&t.path().join("a b")).unwrap());
    }

    #[test]
    fn reads_inside_the_root_only() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(t.path().join("secret"), "host secret").unwrap();
        fs::write(root.join("etc/group"), "g:x:1:\n").unwrap();
        // An absolute symlink resolves inside the root, not on the host.
        std::os::unix::fs::symlink("/../secret", root.join("etc/passwd")).unwrap();
        assert_eq!(read_in_root(&root, "etc/passwd").unwrap(), None);
        assert_eq!(
            read_in_root(&root, "etc/group").unwrap().as_deref(),
            Some("g:x:1:\n")
        );
    }
}
