//! Runs one of berth's binaries from a copy of itself that nothing can write.
//!
//! CVE-2019-5736: a process in a container that executes `/proc/self/exe` (a
//! script whose interpreter line is `#!/proc/self/exe`, say) while that link
//! names our binary on the host — the container's init between `clone` and
//! `execve`, or an `exec`'d process before its `execve` — runs the host's
//! binary inside the container. Anything running there can then open
//! `/proc/self/exe` (or `/proc/PID/exe`) read-only, keep the descriptor, and
//! once no process executes the file any more reopen `/proc/self/fd/N` for
//! writing and replace the binary that every later container start runs as
//! root on the host.
//!
//! [`ensure_sealed`] makes sure `/proc/self/exe` is a file no one can write,
//! before the caller does anything else:
//! 1. It already is: a fully sealed memfd, or a file on a read-only mount or
//!    superblock (an administrator may install the binary on one; then this
//!    costs one `open` and one `fstatvfs`).
//! 2. Otherwise the process re-executes itself through a private overlayfs
//!    mount that is never attached anywhere: the binary's directory over a
//!    second, unrelated lower layer, and no upper layer. Such an overlay is
//!    read-only for good — no remount or `mount_setattr` can make it writable —
//!    and nothing is copied. This is the scheme runc ≥ 1.2 uses.
//! 3. Where overlayfs cannot be made (no `fsopen`, no privilege, the binary
//!    deleted), it re-executes from a memfd copy of itself sealed against
//!    writing, growing, shrinking and further sealing (runc 1.1, crun).
//!
//! The re-executed process finds case 1 and returns, so there is no loop:
//! each copy is checked with the same test before it is executed.

use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, SealFlags, StatVfsMountFlags};
use rustix::io::Errno;
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

/// Seals a memfd copy must carry to count as unwritable.
const FULL_SEALS: SealFlags = SealFlags::SEAL
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::WRITE);

/// Second lower layers tried for the overlay, in order. Overlayfs needs two
/// lower layers to run without an upper one, and refuses layers that overlap
/// (one inside the other on the same filesystem), so these are directories
/// on pseudo filesystems where no binary of ours lives. Only the binary is
/// ever opened through the overlay; nothing else of these is reachable.
const SECOND_LOWERS: [&str; 2] = ["/sys", "/dev"];

/// Why this process cannot be sure it runs from an unwritable binary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Cannot open /proc/self/exe to check it.
    #[error("cannot open /proc/self/exe to check it: {0}")]
    OpenExe(#[source] std::io::Error),
    /// Cannot make a sealed copy (after the overlay failed too).
    #[error("cannot make a sealed copy of {exe} (overlayfs: {overlay}): {step}: {source}")]
    Memfd {
        exe: PathBuf,
        overlay: String,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Cannot re-execute from the sealed copy.
    #[error("cannot re-execute {exe} from its sealed copy: {source}")]
    Exec {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An argument or environment entry holds a NUL byte.
    #[error("argument or environment entry with a NUL byte: {0:?}")]
    Nul(OsString),
}

/// How the running binary is kept from being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// A memfd carrying all of [`FULL_SEALS`].
    SealedMemfd,
    /// A file on a read-only mount or superblock (our private overlay is one).
    ReadOnly,
}

/// What keeps the file behind `fd` from being written, if anything does.
/// `fd` may be an `O_PATH` descriptor (then only the mount test applies).
pub fn protection_of(fd: BorrowedFd<'_>) -> Option<Protection> {
    if let Ok(seals) = rustix::fs::fcntl_get_seals(fd) {
        if seals.contains(FULL_SEALS) {
            return Some(Protection::SealedMemfd);
        }
    }
    match rustix::fs::fstatvfs(fd) {
        Ok(v) if v.f_flag.contains(StatVfsMountFlags::RDONLY) => Some(Protection::ReadOnly),
        _ => None,
    }
}

/// Returns how this process's binary is protected; when it is not, re-executes
/// the process (same argv and environment) from a protected copy of its
/// binary, and does not return. Call it first thing, while the process is
/// single-threaded and before it holds anything it would lose across
/// `execve` (descriptors without `O_CLOEXEC` survive, as they must).
pub fn ensure_sealed() -> Result<Protection, Error> {
    let exe = rustix::fs::open(
        "/proc/self/exe",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::OpenExe(e.into()))?;
    if let Some(p) = protection_of(exe.as_fd()) {
        return Ok(p);
    }
    let argv = cstrings(std::env::args_os())?;
    let envp = cstrings(std::env::vars_os().map(|(k, v)| {
        let mut kv = k;
        kv.push("=");
        kv.push(v);
        kv
    }))?;
    let path = std::fs::read_link("/proc/self/exe").unwrap_or_default();
    let overlay = match overlay_view(&path, exe.as_fd()) {
        Ok(fd) => exec(&fd, &argv, &envp).to_string(),
        Err(e) => e,
    };
    let sealed = memfd_copy(exe.as_fd()).map_err(|(step, e)| Error::Memfd {
        exe: path.clone(),
        overlay,
        step,
        source: e.into(),
    })?;
    Err(Error::Exec {
        exe: path,
        source: exec(&sealed, &argv, &envp),
    })
}

/// A binary of ours as seen through a private read-only overlay, for a
/// parent that starts it: executed through [`ReadOnlyView::path`], the child
/// already runs from an unwritable file, so its own [`ensure_sealed`] costs
/// one `open` and one `fstatvfs` instead of a second `execve` (the monitor
/// starting the runtime, the CLI starting the monitor). Keep the view until
/// the child has been started.
#[derive(Debug)]
pub struct ReadOnlyView {
    fd: OwnedFd,
    path: PathBuf,
}

impl ReadOnlyView {
    /// The view of the binary at `binary` (an absolute path). Fails where
    /// the overlay cannot be made; the caller then starts `binary` itself,
    /// which seals itself.
    pub fn new(binary: &Path) -> Result<Self, String> {
        if !binary.is_absolute() {
            return Err(format!("{} is not an absolute path", binary.display()));
        }
        let file = rustix::fs::open(binary, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let fd = overlay_view(binary, file.as_fd())?;
        if protection_of(fd.as_fd()).is_none() {
            return Err(format!("the view of {} is not read-only", binary.display()));
        }
        let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        Ok(Self { fd, path })
    }

    /// A path that executes the view: `/proc/self/fd/N`. It is valid in
    /// this process and in a child forked from it up to its `execve` (the
    /// descriptor is close-on-exec, and `execve` resolves the path first).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor behind [`path`](Self::path).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Executes `fd`, returning only on failure. `fd` is checked first, so a
/// copy that would not pass [`protection_of`] is never run and re-execution
/// cannot loop.
fn exec(fd: &OwnedFd, argv: &[CString], envp: &[CString]) -> std::io::Error {
    if protection_of(fd.as_fd()).is_none() {
        return std::io::Error::other("the copy is not protected");
    }
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: `fd` is an open descriptor we own for the whole call; the path
    // is an empty NUL-terminated string (AT_EMPTY_PATH executes `fd` itself);
    // `a` and `e` are NULL-terminated arrays of pointers into `argv`/`envp`,
    // which outlive the call. On success the call does not return; on failure
    // it changes nothing in this process.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            a.as_ptr(),
            e.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    std::io::Error::last_os_error()
}

fn cstrings(items: impl Iterator<Item = OsString>) -> Result<Vec<CString>, Error> {
    items
        .map(|s| CString::new(s.as_bytes()).map_err(|_| Error::Nul(s)))
        .collect()
}

/// Escapes a path for overlayfs's `lowerdir` list (`:` separates layers,
/// `\` escapes).
fn escape_lowerdir(p: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in p.as_os_str().as_bytes() {
        if b == b':' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// An `O_PATH` handle on the binary as seen through a private read-only
/// overlayfs (never attached to any mount tree), checked to be the same
/// file as `exe` by size and modification time.
fn overlay_view(path: &Path, exe: BorrowedFd<'_>) -> Result<OwnedFd, String> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(format!(
            "no usable path for the binary ({})",
            path.display()
        ));
    };
    if path.as_os_str().as_bytes().ends_with(b" (deleted)") {
        return Err(format!("{} was deleted", path.display()));
    }
    let want = rustix::fs::fstat(exe).map_err(|e| format!("fstat: {e}"))?;
    let mut last = String::new();
    for second in SECOND_LOWERS {
        let mut lower = escape_lowerdir(dir);
        lower.push(b':');
        lower.extend_from_slice(second.as_bytes());
        let lower = std::ffi::OsStr::from_bytes(&lower);
        let attempt = || -> Result<OwnedFd, String> {
            let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
                .map_err(|e| format!("fsopen: {e}"))?;
            rustix::mount::fsconfig_set_string(&fs, "lowerdir", lower)
                .map_err(|e| format!("lowerdir={}: {e}", lower.to_string_lossy()))?;
            // Spares a dmesg line when the layers are on different filesystems.
            let _ = rustix::mount::fsconfig_set_string(&fs, "xino", "off");
            rustix::mount::fsconfig_create(&fs)
                .map_err(|e| format!("lowerdir={}: {e}", lower.to_string_lossy()))?;
            let mnt = rustix::mount::fsmount(
                &fs,
                FsMountFlags::FSMOUNT_CLOEXEC,
                MountAttrFlags::MOUNT_ATTR_RDONLY
                    | MountAttrFlags::MOUNT_ATTR_NODEV
                    | MountAttrFlags::MOUNT_ATTR_NOSUID,
            )
            .map_err(|e| format!("fsmount: {e}"))?;
            rustix::fs::openat(
                &mnt,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| format!("open {} in the overlay: {e}", name.to_string_lossy()))
        };
        match attempt() {
            Ok(fd) => {
                let got = rustix::fs::fstat(&fd).map_err(|e| format!("fstat: {e}"))?;
                if (got.st_size, got.st_mtime, got.st_mtime_nsec)
                    != (want.st_size, want.st_mtime, want.st_mtime_nsec)
                {
                    return Err(format!("{} changed since it was executed", path.display()));
                }
                return Ok(fd);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A read-only descriptor of a fully sealed memfd holding a copy of `exe`.
fn memfd_copy(exe: BorrowedFd<'_>) -> Result<OwnedFd, (&'static str, Errno)> {
    use rustix::fs::MemfdFlags;
    let len = rustix::fs::fstat(exe).map_err(|e| ("fstat", e))?.st_size as usize;
    let m = rustix::fs::memfd_create(
        "berth-sealed-exe",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(|e| ("memfd_create", e))?;
    let mut offset = 0u64;
    while (offset as usize) < len {
        let left = len - offset as usize;
        let n = rustix::fs::sendfile(&m, exe, Some(&mut offset), left).map_err(|e| ("copy", e))?;
        if n == 0 {
            return Err(("copy", Errno::NODATA));
        }
    }
    rustix::fs::fcntl_add_seals(&m, FULL_SEALS).map_err(|e| ("seal", e))?;
    // Executing a file that is open for writing fails (ETXTBSY): keep only a
    // read-only descriptor of it.
    let ro = rustix::fs::open(
        format!("/proc/self/fd/{}", m.as_raw_fd()),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ("reopen read-only", e))?;
    drop(m);
    Ok(ro)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_plain_file_is_not_protected() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"x").unwrap();
        assert_eq!(protection_of(f.as_file().as_fd()), None);
    }

    #[test]
    fn a_sealed_memfd_copy_is_protected_and_unwritable() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[7u8; 100_000]).unwrap();
        let copy = memfd_copy(f.as_fd()).unwrap();
        assert_eq!(protection_of(copy.as_fd()), Some(Protection::SealedMemfd));
        assert_eq!(rustix::fs::fstat(&copy).unwrap().st_size, 100_000);
        // A descriptor reopened for writing opens, but cannot write.
        let w = rustix::fs::open(
            format!("/proc/self/fd/{}", copy.as_raw_fd()),
            OFlags::WRONLY,
            Mode::empty(),
        )
        .unwrap();
        assert_eq!(rustix::io::write(&w, b"pwned"), Err(Errno::PERM));
        assert_eq!(rustix::fs::ftruncate(&w, 0), Err(Errno::PERM));
    }

    #[test]
    fn a_memfd_without_every_seal_is_not_protected() {
        let m = rustix::fs::memfd_create("t", rustix::fs::MemfdFlags::ALLOW_SEALING).unwrap();
        rustix::fs::fcntl_add_seals(&m, SealFlags::WRITE | SealFlags::SEAL).unwrap();
        assert_eq!(protection_of(m.as_fd()), None);
    }

    #[test]
    fn a_view_needs_an_absolute_path() {
        assert!(ReadOnlyView::new(Path::new("berth-runtime")).is_err());
    }

    #[test]
    fn lowerdir_escapes_separators() {
        assert_eq!(escape_lowerdir(Path::new(r"/a:b\c")), br"/a\:b\\c".to_vec());
    }
}
