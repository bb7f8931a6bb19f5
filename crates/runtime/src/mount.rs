//! Mount option parsing and mounting safely inside the container's rootfs.
//!
//! Every destination is resolved relative to the rootfs with `openat2(RESOLVE_IN_ROOT)`,
//! so a symlink planted in the image cannot send a mount outside the rootfs. The
//! mount itself targets the opened file through `/proc/self/fd/N`.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;
use rustix::fs::{Mode, OFlags, ResolveFlags};

/// `MS_NOSYMFOLLOW` (Linux 5.10), which nix does not name.
const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);

/// Parsed `options` of an OCI mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for mount(2).
    pub flags: MsFlags,
    /// Flags cleared by an explicit option (e.g. `rw`, `suid`).
    pub cleared: MsFlags,
    /// Propagation changes applied after the mount, in order.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific data, comma-joined.
    pub data: Vec<String>,
    /// `bind` or `rbind` was given.
    pub bind: bool,
    /// `rbind` was given.
    pub recursive: bool,
    /// `MOUNT_ATTR_*` bits the recursive options (`rro`, `rnosuid`...) set on
    /// the mount and every mount below it.
    pub rec_set: u64,
    /// `MOUNT_ATTR_*` bits they clear.
    pub rec_clear: u64,
}

/// `MOUNT_ATTR_*` bits of mount_setattr(2).
mod attr {
    pub const RDONLY: u64 = 0x1;
    pub const NOSUID: u64 = 0x2;
    pub const NODEV: u64 = 0x4;
    pub const NOEXEC: u64 = 0x8;
    /// The atime mode: one of RELATIME, NOATIME, STRICTATIME.
    pub const ATIME: u64 = 0x70;
    pub const RELATIME: u64 = 0x0;
    pub const NOATIME: u64 = 0x10;
    pub const STRICTATIME: u64 = 0x20;
    pub const NODIRATIME: u64 = 0x80;
    pub const NOSYMFOLLOW: u64 = 0x20_0000;
}

/// What a recursive option (`rro`, `rnoatime`...) does: bits to set, bits to clear.
fn recursive_attr(name: &str) -> Option<(u64, u64)> {
    use attr::*;
    Some(match name {
        "rro" => (RDONLY, 0),
        "rrw" => (0, RDONLY),
        "rnosuid" => (NOSUID, 0),
        "rsuid" => (0, NOSUID),
        "rnodev" => (NODEV, 0),
        "rdev" => (0, NODEV),
        "rnoexec" => (NOEXEC, 0),
        "rexec" => (0, NOEXEC),
        "rnodiratime" => (NODIRATIME, 0),
        "rdiratime" => (0, NODIRATIME),
        "rnosymfollow" => (NOSYMFOLLOW, 0),
        "rsymfollow" => (0, NOSYMFOLLOW),
        // The atime mode is one value: setting it means clearing the whole
        // field and setting the mode; the "no" forms return to the default.
        "rrelatime" | "ratime" | "rnostrictatime" => (RELATIME, ATIME),
        "rnoatime" => (NOATIME, ATIME),
        "rstrictatime" | "rnorelatime" => (STRICTATIME, ATIME),
        _ => return None,
    })
}

/// The mount flag for a propagation name such as `rslave`, if it is one.
pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            data: Vec::new(),
            bind: false,
            recursive: false,
            rec_set: 0,
            rec_clear: 0,
        }
    }
}

impl MountOptions {
    /// Parse OCI mount options. Options that are not mount flags, propagation
    /// or recursive options are filesystem data (`mode=755`, `newinstance`):
    /// the filesystem checks them, and [`MountOptions::check_data`] refuses
    /// them where no filesystem would (bind and cgroup mounts).
    pub fn parse<S: AsRef<str>>(opts: &[S]) -> Result<Self, String> {
        let mut o = MountOptions::default();
        for opt in opts {
            let opt = opt.as_ref();
            let (set, clear) = match opt {
                "defaults" => (MsFlags::empty(), MsFlags::empty()),
                "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
                "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
                "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
                "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
                "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
                "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
                "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
                "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
                "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
                "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
                "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
                "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
                "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
                "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
                "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
                "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
                "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
                "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
                "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
                "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
                "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
                "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
                "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
                "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
                "iversion" => (MsFlags::MS_I_VERSION, MsFlags::empty()),
                "noiversion" => (MsFlags::empty(), MsFlags::MS_I_VERSION),
                "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
                "nolazytime" => (MsFlags::empty(), MsFlags::MS_LAZYTIME),
                "nosymfollow" => (MS_NOSYMFOLLOW, MsFlags::empty()),
                "symfollow" => (MsFlags::empty(), MS_NOSYMFOLLOW),
                "bind" => {
                    o.bind = true;
                    (MsFlags::MS_BIND, MsFlags::empty())
                }
                "rbind" => {
                    o.bind = true;
                    o.recursive = true;
                    (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty())
                }
                "idmap" | "ridmap" => {
                    return Err(format!(
                        "mount option {opt:?}: idmapped mounts are not supported"
                    ))
                }
                "tmpcopyup" | "copy-symlink" | "nocopyup" => {
                    return Err(format!("mount option {opt:?} is not supported"))
                }
                other => {
                    if let Some(p) = propagation_flag(other) {
                        o.propagation.push(p);
                    } else if let Some((set, clear)) = recursive_attr(other) {
                        o.rec_set = (o.rec_set & !clear) | set;
                        o.rec_clear = (o.rec_clear | clear) & !(set & !attr::ATIME);
                    } else if other.is_empty() {
                        return Err("empty mount option".into());
                    } else {
                        o.data.push(other.to_string());
                    }
                    continue;
                }
            };
            o.flags = (o.flags | set) & !clear;
            o.cleared = (o.cleared | clear) & !set;
        }
        Ok(o)
    }

    /// Refuse filesystem data on a mount whose kernel call takes none (a bind
    /// mount, or berth's own cgroup mounts): it would be dropped without a word.
    pub fn check_data(&self, kind: &str) -> Result<(), String> {
        match self.data.first() {
            Some(opt) => Err(format!(
                "unknown mount option {opt:?} (a {kind} mount takes no filesystem options, so it would be ignored)"
            )),
            None => Ok(()),
        }
    }

    /// Whether any recursive option (`rro`...) was given.
    pub fn has_recursive_attrs(&self) -> bool {
        self.rec_set != 0 || self.rec_clear != 0
    }

    /// The data string for mount(2), or None.
    pub fn data_string(&self, extra: Option<&str>) -> Option<String> {
        let mut parts: Vec<&str> = self.data.iter().map(String::as_str).collect();
        if let Some(e) = extra {
            parts.push(e);
        }
        (!parts.is_empty()).then(|| parts.join(","))
    }
}

/// Open `path` (absolute or relative) inside `root`, resolving symlinks as if `root` were `/`.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: OFlags) -> std::io::Result<OwnedFd> {
    let rel = relative(path);
    let rel = if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    };
    rustix::fs::openat2(
        root,
        &rel,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(std::io::Error::from)
}

/// `path` without its leading `/` and with `.` components dropped.
pub fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .collect()
}

/// Make sure `path` exists inside `root` (as a directory, or as an empty file when
/// `dir` is false), creating missing parents, and return an `O_PATH` handle on it.
/// Dangling symlinks on the way are followed inside the root, never out of it.
pub fn ensure_in_root(root: BorrowedFd<'_>, path: &Path, dir: bool) -> std::io::Result<OwnedFd> {
    ensure_depth(root, &relative(path), dir, 0)
}

fn ensure_depth(
    root: BorrowedFd<'_>,
    rel: &Path,
    dir: bool,
    depth: u32,
) -> std::io::Result<OwnedFd> {
    if let Ok(fd) = open_in_root(root, rel, OFlags::PATH) {
        return Ok(fd);
    }
    if depth > 40 {
        return Err(rustix::io::Errno::LOOP.into());
    }
    let Some(name) = rel.file_name() else {
        return open_in_root(root, rel, OFlags::PATH);
    };
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    ensure_depth(root, parent_rel, true, depth + 1)?;
    let parent = open_in_root(root, parent_rel, OFlags::PATH | OFlags::DIRECTORY)?;
    let made = if dir {
        rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755))
    } else {
        rustix::fs::openat(
            &parent,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map(drop)
    };
    match made {
        Ok(()) => {}
        Err(rustix::io::Errno::EXIST) => {
            // The name exists but could not be opened: a dangling symlink. Create its
            // target, resolved as the kernel would inside the root.
            let target = rustix::fs::readlinkat(&parent, name, Vec::new())?;
            let target: PathBuf = std::ffi::OsString::from_vec(target.into_bytes()).into();
            let next = if target.is_absolute() {
                relative(&target)
            } else {
                parent_rel.join(target)
            };
            ensure_depth(root, &next, dir, depth + 1)?;
        }
        Err(e) => return Err(e.into()),
    }
    open_in_root(root, rel, OFlags::PATH)
}

/// The `/proc/self/fd/N` path through which a mount call reaches an opened file.
pub fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// mount(2) with optional strings.
pub fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> nix::Result<()> {
    nix::mount::mount(source, target, fstype, flags, data)
}

/// Remount the bind mount that `fd` is on with `flags` (plus `MS_BIND | MS_REMOUNT`):
/// how a bind mount takes read-only and other per-mount flags.
pub fn remount_bind(fd: BorrowedFd<'_>, flags: MsFlags) -> nix::Result<()> {
    mount(
        None,
        &fd_path(fd),
        None,
        flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
        None,
    )
}

/// Apply each propagation change to `target`.
pub fn set_propagation(target: &Path, props: &[MsFlags]) -> nix::Result<()> {
    for p in props {
        nix::mount::mount(None::<&str>, target, None::<&str>, *p, None::<&str>)?;
    }
    Ok(())
}

/// The flags currently in effect on the mount holding `fd`, as far as a remount must keep them.
pub fn locked_flags(fd: BorrowedFd<'_>) -> MsFlags {
    let mut out = MsFlags::empty();
    if let Ok(st) = rustix::fs::fstatvfs(fd.as_fd()) {
        use rustix::fs::StatVfsMountFlags as F;
        let f = st.f_flag;
        for (a, b) in [
            (F::NOSUID, MsFlags::MS_NOSUID),
            (F::NODEV, MsFlags::MS_NODEV),
            (F::NOEXEC, MsFlags::MS_NOEXEC),
            (F::NOATIME, MsFlags::MS_NOATIME),
            (F::NODIRATIME, MsFlags::MS_NODIRATIME),
            (F::RELATIME, MsFlags::MS_RELATIME),
            (F::RDONLY, MsFlags::MS_RDONLY),
        ] {
            if f.contains(a) {
                out |= b;
            }
        }
    }
    out
}

/// A C string for a path, for raw calls.
pub fn cstring(p: &Path) -> CString {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags_and_data() {
        let o = MountOptions::parse(&["nosuid", "noexec", "mode=755", "size=64k", "ro"]).unwrap();
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY
        );
        assert_eq!(o.data_string(None).as_deref(), Some("mode=755,size=64k"));
        assert!(!o.bind);
    }

    #[test]
    fn later_options_win() {
        let o = MountOptions::parse(&["ro", "rw", "nosuid", "suid"]).unwrap();
        assert!(o.flags.is_empty());
        assert!(o.cleared.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID));
    }

    #[test]
    fn bind_and_propagation() {
        let o = MountOptions::parse(&["rbind", "rprivate", "ro"]).unwrap();
        assert!(o.bind && o.recursive);
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert!(o
            .flags
            .contains(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY));
    }

    #[test]
    fn recursive_options() {
        use attr::*;
        let o = MountOptions::parse(&["rbind", "rro", "rnosuid", "rnodev", "rnoexec"]).unwrap();
        assert_eq!(o.rec_set, RDONLY | NOSUID | NODEV | NOEXEC);
        assert_eq!(o.rec_clear, 0);
        assert!(o.data.is_empty() && o.has_recursive_attrs());
        let o = MountOptions::parse(&["rnosymfollow", "rnodiratime", "rrw"]).unwrap();
        assert_eq!(o.rec_set, NOSYMFOLLOW | NODIRATIME);
        assert_eq!(o.rec_clear, RDONLY);
        // A later option undoes an earlier one.
        let o = MountOptions::parse(&["rro", "rrw"]).unwrap();
        assert_eq!((o.rec_set, o.rec_clear), (0, RDONLY));
        // The atime mode: the whole field is cleared, one mode set; the last wins.
        let o = MountOptions::parse(&["rnoatime"]).unwrap();
        assert_eq!((o.rec_set, o.rec_clear), (NOATIME, ATIME));
        let o = MountOptions::parse(&["rnoatime", "rstrictatime"]).unwrap();
        assert_eq!((o.rec_set, o.rec_clear), (STRICTATIME, ATIME));
        let o = MountOptions::parse(&["rnoatime", "ratime", "rro"]).unwrap();
        assert_eq!((o.rec_set, o.rec_clear), (RELATIME | RDONLY, ATIME));
    }

    #[test]
    fn data_options_and_unknown_words() {
        // runc spec's own mounts: all of it is data for devpts and tmpfs.
        let o = MountOptions::parse(&[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ])
        .unwrap();
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(
            o.data_string(None).as_deref(),
            Some("newinstance,ptmxmode=0666,mode=0620,gid=5")
        );
        let o = MountOptions::parse(&["lowerdir=/a:/b", "upperdir=/u", "workdir=/w"]).unwrap();
        assert_eq!(o.data.len(), 3);
        // Where no filesystem reads the data, an unknown word is an error naming it.
        let o = MountOptions::parse(&["rbind", "rbogus"]).unwrap();
        let e = o.check_data("bind").unwrap_err();
        assert!(e.contains("\"rbogus\"") && e.contains("bind"), "{e}");
        assert!(
            MountOptions::parse(&["rbind", "rro", "nosymfollow", "lazytime"])
                .unwrap()
                .check_data("bind")
                .is_ok()
        );
    }

    #[test]
    fn every_advertised_option_is_known() {
        for opt in crate::features::MOUNT_OPTIONS {
            let o = MountOptions::parse(&[opt]).unwrap();
            assert!(o.data.is_empty(), "{opt} is taken as filesystem data");
        }
    }

    #[test]
    fn refuses_idmap() {
        let e = MountOptions::parse(&["idmap"]).unwrap_err();
        assert!(e.contains("idmap"));
    }

    #[test]
    fn relative_paths() {
        assert_eq!(relative(Path::new("/a/./b/")), PathBuf::from("a/b"));
        assert_eq!(relative(Path::new("/")), PathBuf::new());
    }

    #[test]
    fn resolution_stays_in_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("slash")).unwrap();
        let root =
            rustix::fs::open(dir.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        // Creating through a symlink to an absolute path lands inside the root.
        ensure_in_root(root.as_fd(), Path::new("/slash/etc/x"), true).unwrap();
        assert!(dir.path().join("etc/x").is_dir());
        ensure_in_root(root.as_fd(), Path::new("/escape/y"), false).unwrap();
        assert!(!outside.path().join("y").exists());
        ensure_in_root(root.as_fd(), Path::new("/../../z"), true).unwrap();
        assert!(dir.path().join("z").is_dir());
    }
}
