//! Host layout detection: which cgroup hierarchies are mounted where, which
//! cgroup this process is in, and where a container's cgroup goes (runc's rules).

use std::path::{Component, Path, PathBuf};

use crate::error::Error;

/// The v1 controllers this crate knows by name.
pub const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "rdma",
    "misc",
];

/// What kind of cgroup setup the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Only cgroup v1 hierarchies.
    Legacy,
    /// cgroup v1 controllers plus a cgroup2 hierarchy (usually at `unified`).
    Hybrid,
    /// A single cgroup2 hierarchy at the root.
    Unified,
}

/// One cgroup mount from mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMountInfo {
    /// where it is mounted
    pub mount_point: PathBuf,
    /// the cgroup path that is the root of this mount (field 4 of mountinfo)
    pub root: String,
    /// true for cgroup2
    pub cgroup2: bool,
    /// v1 controllers and `name=...` options, in mount-option order
    pub controllers: Vec<String>,
}

/// One line of /proc/self/cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcCgroup {
    /// hierarchy id (0 for cgroup2)
    pub id: u32,
    /// controller list (empty for cgroup2)
    pub controllers: Vec<String>,
    /// path within the hierarchy
    pub path: String,
}

/// Unescape the octal escapes (`\040` etc) of mountinfo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(oct) = s.get(i + 1..i + 4) {
                if let Ok(v) = u8::from_str_radix(oct, 8) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse the cgroup and cgroup2 mounts out of a mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMountInfo> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split_whitespace().collect();
        let post: Vec<&str> = post.split_whitespace().collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let fstype = post[0];
        let cgroup2 = match fstype {
            "cgroup" => false,
            "cgroup2" => true,
            _ => continue,
        };
        let controllers = if cgroup2 {
            vec![]
        } else {
            post[2]
                .split(',')
                .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                .map(str::to_string)
                .collect()
        };
        out.push(CgroupMountInfo {
            mount_point: PathBuf::from(unescape(pre[4])),
            root: unescape(pre[3]),
            cgroup2,
            controllers,
        });
    }
    out
}

/// Parse /proc/self/cgroup.
pub fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let id = it.next()?.parse().ok()?;
            let ctrls = it.next()?;
            let path = it.next()?.to_string();
            let controllers = if ctrls.is_empty() {
                vec![]
            } else {
                ctrls.split(',').map(str::to_string).collect()
            };
            Some(ProcCgroup {
                id,
                controllers,
                path,
            })
        })
        .collect()
}

/// runc's path cleaning: an absolute path is normalised; a relative path is
/// normalised as if rooted at `/` and stays relative, so it cannot climb out
/// with `..`.
pub fn clean_path(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir => out.push("/"),
            Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    if p.is_absolute() && out.as_os_str().is_empty() {
        out.push("/");
    }
    out
}

/// Join a cgroup path (absolute or relative) below a directory.
pub fn join_below(base: &Path, p: &Path) -> PathBuf {
    let rel: PathBuf = p
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    if rel.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

/// `own` is the process's path in a hierarchy, `root` the hierarchy path that
/// the mount shows: the directory of `own` below the mount point.
pub fn own_dir(mount: &CgroupMountInfo, own: &str) -> PathBuf {
    let rel = own
        .strip_prefix(mount.root.as_str())
        .filter(|_| mount.root != "/")
        .unwrap_or(own);
    join_below(&mount.mount_point, Path::new(rel))
}

/// Everything detection needs, so that tests can provide a fake host.
#[derive(Debug, Clone)]
pub struct HostInfo {
    /// the cgroupfs root, normally /sys/fs/cgroup
    pub root: PathBuf,
    /// the layout
    pub layout: Layout,
    /// cgroup mounts below `root`
    pub mounts: Vec<CgroupMountInfo>,
    /// this process's cgroups
    pub own: Vec<ProcCgroup>,
}

impl HostInfo {
    /// Build from the texts of mountinfo and /proc/self/cgroup. The layout is
    /// taken from the mounts: a cgroup2 mount at `root` is pure v2; v1 mounts
    /// plus a cgroup2 mount is hybrid; v1 mounts only is legacy.
    pub fn from_texts(root: &Path, mountinfo: &str, proc_cgroup: &str) -> Result<HostInfo, Error> {
        let mounts: Vec<CgroupMountInfo> = parse_mountinfo(mountinfo)
            .into_iter()
            .filter(|m| m.mount_point.starts_with(root))
            .collect();
        let own = parse_proc_cgroup(proc_cgroup);
        let layout = if mounts.iter().any(|m| m.cgroup2 && m.mount_point == root) {
            Layout::Unified
        } else if mounts.iter().any(|m| !m.cgroup2) {
            if mounts.iter().any(|m| m.cgroup2) {
                Layout::Hybrid
            } else {
                Layout::Legacy
            }
        } else {
            return Err(Error::Detect(format!(
                "no cgroup or cgroup2 filesystem is mounted at or below {}",
                root.display()
            )));
        };
        Ok(HostInfo {
            root: root.to_path_buf(),
            layout,
            mounts,
            own,
        })
    }

    /// Read the real host: statfs of /sys/fs/cgroup decides v2 versus v1, then
    /// /proc/self/mountinfo and /proc/self/cgroup give the rest.
    pub fn from_host() -> Result<HostInfo, Error> {
        let root = Path::new("/sys/fs/cgroup");
        let st = nix::sys::statfs::statfs(root)
            .map_err(|e| Error::Detect(format!("statfs {}: {e}", root.display())))?;
        let magic = st.filesystem_type();
        let is_v2 = magic == nix::sys::statfs::CGROUP2_SUPER_MAGIC;
        let is_tmpfs = magic == nix::sys::statfs::TMPFS_MAGIC;
        if !is_v2 && !is_tmpfs {
            return Err(Error::Detect(format!(
                "{} is neither a cgroup2 mount nor a tmpfs holding cgroup v1 hierarchies (statfs magic {:#x})",
                root.display(),
                magic.0
            )));
        }
        let read = |p: &str| {
            std::fs::read_to_string(p).map_err(|e| Error::Detect(format!("reading {p}: {e}")))
        };
        let mut info = HostInfo::from_texts(
            root,
            &read("/proc/self/mountinfo")?,
            &read("/proc/self/cgroup")?,
        )?;
        if is_v2 {
            info.layout = Layout::Unified;
        } else if info.layout == Layout::Unified {
            return Err(Error::Detect(
                "mountinfo shows cgroup2 at /sys/fs/cgroup but statfs says tmpfs".into(),
            ));
        }
        Ok(info)
    }

    /// The process's own path in the v1 hierarchy holding `controller`
    /// (`name=systemd` for named ones), or in cgroup2 for `""`.
    pub fn own_path(&self, controller: &str) -> Option<&str> {
        self.own
            .iter()
            .find(|c| {
                if controller.is_empty() {
                    c.id == 0 && c.controllers.is_empty()
                } else {
                    c.controllers.iter().any(|x| x == controller)
                }
            })
            .map(|c| c.path.as_str())
    }
}

/// The container's inner cgroup path per runc: `cgroupsPath` cleaned, or the
/// container id (relative) when `cgroupsPath` is absent.
pub fn inner_path(path: Option<&Path>, id: &str) -> Result<PathBuf, Error> {
    let p = match path {
        Some(p) if !p.as_os_str().is_empty() => clean_path(p),
        _ => {
            if id.is_empty() {
                return Err(Error::invalid(
                    "linux.cgroupsPath",
                    "\"\"",
                    "no cgroupsPath and an empty container id",
                ));
            }
            clean_path(Path::new(id))
        }
    };
    if p.as_os_str().is_empty() || p == Path::new("/") {
        return Err(Error::invalid(
            "linux.cgroupsPath",
            format!(
                "{:?}",
                path.map(|p| p.display().to_string()).unwrap_or_default()
            ),
            "resolves to the cgroup root; a container needs its own cgroup",
        ));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 31 0:40 / /other rw - ext4 /dev/sda rw
";

    #[test]
    fn parses_mountinfo() {
        let m = parse_mountinfo(MI);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(m[2].controllers, vec!["name=systemd"]);
        assert!(m[3].cgroup2);
        assert_eq!(unescape("/a\\040b"), "/a b");
    }

    #[test]
    fn layout_and_own() {
        let pc = "4:memory:/user/x\n1:cpu,cpuacct:/\n9:name=systemd:/init.scope\n0::/u\n";
        let h = HostInfo::from_texts(Path::new("/sys/fs/cgroup"), MI, pc).unwrap();
        assert_eq!(h.layout, Layout::Hybrid);
        assert_eq!(h.own_path("memory"), Some("/user/x"));
        assert_eq!(h.own_path("cpuacct"), Some("/"));
        assert_eq!(h.own_path("name=systemd"), Some("/init.scope"));
        assert_eq!(h.own_path(""), Some("/u"));
    }

    #[test]
    fn clean_paths() {
        assert_eq!(
            clean_path(Path::new("/a/../../b/./c")),
            PathBuf::from("/b/c")
        );
        assert_eq!(clean_path(Path::new("../../x/y")), PathBuf::from("x/y"));
        assert_eq!(inner_path(None, "ctr").unwrap(), PathBuf::from("ctr"));
        assert_eq!(
            inner_path(Some(Path::new("/a/b")), "ctr").unwrap(),
            PathBuf::from("/a/b")
        );
        assert!(inner_path(Some(Path::new("/..")), "ctr").is_err());
    }

    #[test]
    fn own_dir_strips_mount_root() {
        let m = CgroupMountInfo {
            mount_point: "/sys/fs/cgroup/memory".into(),
            root: "/ns".into(),
            cgroup2: false,
            controllers: vec!["memory".into()],
        };
        assert_eq!(
            own_dir(&m, "/ns/x"),
            PathBuf::from("/sys/fs/cgroup/memory/x")
        );
    }
}
