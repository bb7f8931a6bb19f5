//! Files in and out of a container: `cp` (both ways, or a tar stream) and
//! `export`, with docker's path rules.
//!
//! Both sides of a copy are a *root* plus an absolute path inside it: the
//! container's mounted rootfs, or `/` for the host. Every path is resolved
//! with `openat2(RESOLVE_IN_ROOT)` against the root, so a symlink the
//! container planted (`/tmp/evil -> /etc`, `../../..`) resolves inside the
//! container and can never make a copy read or write a host file.
//!
//! A copy is a tar stream from [`write_tar`] into [`extract`]:
//! - [`write_tar`] walks the source with directory file descriptors and
//!   `O_NOFOLLOW`: symlinks inside the tree are stored as symlinks, never
//!   followed (only the source path itself is followed with `-L`);
//! - [`extract`] refuses absolute names and `..`, resolves each entry's
//!   parent inside the destination root, and replaces rather than writes
//!   through an existing symlink.
//!
//! Owners: without `archive` (`cp -a`), copied files belong to root (0:0)
//! as in docker; with it, they keep the uid and gid from the source.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{
    openat, openat2, statat, AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Timespec,
    Timestamps,
};

/// A copy that failed.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The source does not exist.
    #[error("could not find the file {path} in {side}")]
    NotFound {
        /// The path.
        path: String,
        /// "the container" or "the host".
        side: String,
    },
    /// docker's path rules refuse the copy.
    #[error("{0}")]
    Rule(String),
    /// A tar entry would land outside the destination.
    #[error("tar entry {0:?} is absolute or goes up with '..': refused")]
    Escape(String),
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

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> FilesError {
    let context = context.into();
    move |source| FilesError::Io { context, source }
}

fn rx(context: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> FilesError {
    let context = context.into();
    move |e| FilesError::Io {
        context,
        source: e.into(),
    }
}

/// One side of a copy: an absolute `path` inside `root`.
#[derive(Debug, Clone)]
pub struct Location<'a> {
    /// The root (`/` for the host).
    pub root: &'a Path,
    /// The path, as the user gave it (absolute inside the root, or relative
    /// to the root).
    pub path: &'a str,
    /// "the container" or "the host", for messages.
    pub side: &'a str,
}

/// `cp` options.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions {
    /// `-a`: keep the source's uid and gid.
    pub archive: bool,
    /// `-L`: follow a symlink source path.
    pub follow_link: bool,
}

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// `path` relative to the root, without `.` components and trailing slashes
/// (`..` is left for openat2 to resolve inside the root).
fn rel(path: &str) -> String {
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => parts.push("..".into()),
            _ => {}
        }
    }
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// Parent and last name of `path` (relative form), for `*at` calls.
fn split(path: &str) -> (String, Option<OsString>) {
    let r = rel(path);
    if r == "." {
        return (".".into(), None);
    }
    let p = Path::new(&r);
    let parent = p
        .parent()
        .map(|x| x.to_string_lossy().into_owned())
        .filter(|x| !x.is_empty())
        .unwrap_or_else(|| ".".into());
    (parent, p.file_name().map(OsStr::to_os_string))
}

fn open_root(root: &Path) -> Result<OwnedFd, FilesError> {
    rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(rx(format!("open {}", root.display())))
}

/// A directory inside the root, resolved in it.
fn open_dir_in(root: &OwnedFd, path: &str, what: &str) -> Result<OwnedFd, FilesError> {
    openat2(
        root,
        rel(path).as_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        RESOLVE,
    )
    .map_err(rx(format!("open directory {what}")))
}

/// What `loc.path` is (following a final symlink with `follow`); None when
/// it does not exist.
fn kind(root: &OwnedFd, loc: &Location<'_>, follow: bool) -> Result<Option<FileType>, FilesError> {
    let (parent, name) = split(loc.path);
    let dir = match openat2(
        root,
        parent.as_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        RESOLVE,
    ) {
        Ok(d) => d,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(None),
        Err(e) => return Err(rx(format!("resolve {} in {}", loc.path, loc.side))(e)),
    };
    let Some(name) = name else {
        return Ok(Some(FileType::Directory));
    };
    if follow {
        return match openat2(
            root,
            rel(loc.path).as_str(),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        ) {
            Ok(fd) => Ok(Some(FileType::from_raw_mode(
                rustix::fs::fstat(&fd)
                    .map_err(rx(format!("stat {}", loc.path)))?
                    .st_mode,
            ))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(rx(format!("resolve {} in {}", loc.path, loc.side))(e)),
        };
    }
    match statat(&dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(rx(format!("stat {} in {}", loc.path, loc.side))(e)),
    }
}

/// Writes `loc` as a tar stream. The entries are named `name/...` (or the
/// contents alone when `name` is None and `loc` is a directory).
pub fn write_tar(
    loc: &Location<'_>,
    name: Option<&str>,
    follow: bool,
    out: impl Write,
) -> Result<(), FilesError> {
    let root = open_root(loc.root)?;
    let (parent, last) = split(loc.path);
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    if follow && last.is_some() {
        // -L: the source itself may be a symlink, resolved inside the root.
        let fd = openat2(
            &root,
            rel(loc.path).as_str(),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )
        .map_err(|e| not_found_or(e, loc))?;
        add_fd(&mut b, &fd, Path::new(name.unwrap_or(".")))?;
    } else {
        let dir = openat2(
            &root,
            parent.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )
        .map_err(|e| not_found_or(e, loc))?;
        match last {
            Some(last) => add(&mut b, &dir, &last, Path::new(name.unwrap_or(".")), false)?,
            None => add_dir_contents(&mut b, &dir, Path::new(name.unwrap_or(".")), false)?,
        }
    }
    b.finish().map_err(io_err("write the tar stream"))?;
    Ok(())
}

fn not_found_or(e: rustix::io::Errno, loc: &Location<'_>) -> FilesError {
    match e {
        rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR => FilesError::NotFound {
            path: loc.path.to_string(),
            side: loc.side.to_string(),
        },
        e => rx(format!("resolve {} in {}", loc.path, loc.side))(e),
    }
}

fn header_for(st: &rustix::fs::Stat) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid.into());
    h.set_gid(st.st_gid.into());
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// Adds the node `name` of directory `dir` as `tar_name`, never following
/// a symlink (the walk stays on directory fds).
fn add<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &OwnedFd,
    name: &OsStr,
    tar_name: &Path,
    ovl: bool,
) -> Result<(), FilesError> {
    let ctx = || tar_name.display().to_string();
    let st = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(rx(format!("stat {}", ctx())))?;
    let mut h = header_for(&st);
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => {
            let d = openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(rx(format!("open {}", ctx())))?;
            add_dir_contents(b, &d, tar_name, ovl)?;
        }
        FileType::RegularFile => {
            let f = openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(rx(format!("open {}", ctx())))?;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(st.st_size as u64);
            b.append_data(&mut h, tar_name, File::from(f).take(st.st_size as u64))
                .map_err(io_err(format!("add {}", ctx())))?;
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(dir, name, Vec::new())
                .map_err(rx(format!("read link {}", ctx())))?;
            h.set_entry_type(tar::EntryType::Symlink);
            b.append_link(&mut h, tar_name, OsStr::from_bytes(target.as_bytes()))
                .map_err(io_err(format!("add {}", ctx())))?;
        }
        // An overlay whiteout (a 0/0 character device) becomes OCI's
        // `.wh.NAME`.
        FileType::CharacterDevice if ovl && st.st_rdev == 0 => {
            let wh = tar_name.with_file_name(format!(".wh.{}", name.to_string_lossy()));
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            b.append_data(&mut h, wh, io::empty())
                .map_err(io_err(format!("add {}", ctx())))?;
        }
        t @ (FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo) => {
            h.set_entry_type(match t {
                FileType::CharacterDevice => tar::EntryType::Char,
                FileType::BlockDevice => tar::EntryType::Block,
                _ => tar::EntryType::Fifo,
            });
            let rdev = st.st_rdev;
            h.set_device_major(rustix::fs::major(rdev))
                .and_then(|_| h.set_device_minor(rustix::fs::minor(rdev)))
                .map_err(io_err(format!("add {}", ctx())))?;
            b.append_data(&mut h, tar_name, io::empty())
                .map_err(io_err(format!("add {}", ctx())))?;
        }
        // Sockets and unknown types are not copied (as docker).
        _ => {}
    }
    Ok(())
}

/// Adds an opened node (for `-L`, after following the source symlink).
fn add_fd<W: Write>(
    b: &mut tar::Builder<W>,
    fd: &OwnedFd,
    tar_name: &Path,
) -> Result<(), FilesError> {
    let st = rustix::fs::fstat(fd).map_err(rx(format!("stat {}", tar_name.display())))?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let d = openat(
            fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(rx(format!("open {}", tar_name.display())))?;
        return add_dir_contents(b, &d, tar_name, false);
    }
    let f = openat(fd, "", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .or_else(|_| {
            rustix::fs::open(
                format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd)),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
        })
        .map_err(rx(format!("open {}", tar_name.display())))?;
    let mut h = header_for(&st);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(st.st_size as u64);
    b.append_data(&mut h, tar_name, File::from(f).take(st.st_size as u64))
        .map_err(io_err(format!("add {}", tar_name.display())))
}

/// Adds directory `d` itself (unless it is the contents-only top `.`) and
/// everything below it.
fn add_dir_contents<W: Write>(
    b: &mut tar::Builder<W>,
    d: &OwnedFd,
    tar_name: &Path,
    ovl: bool,
) -> Result<(), FilesError> {
    let ctx = tar_name.display().to_string();
    if tar_name != Path::new(".") {
        let st = rustix::fs::fstat(d).map_err(rx(format!("stat {ctx}")))?;
        let mut h = header_for(&st);
        h.set_entry_type(tar::EntryType::Directory);
        b.append_data(&mut h, tar_name, io::empty())
            .map_err(io_err(format!("add {ctx}")))?;
        // An overlay opaque directory hides everything below it in lower
        // layers: OCI's `.wh..wh..opq`.
        let mut v = [0u8; 4];
        if ovl
            && matches!(rustix::fs::fgetxattr(d, "trusted.overlay.opaque", &mut v), Ok(1) if v[0] == b'y')
        {
            let mut h = header_for(&st);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            b.append_data(&mut h, tar_name.join(".wh..wh..opq"), io::empty())
                .map_err(io_err(format!("add {ctx}")))?;
        }
    }
    let dup = rustix::io::dup(d).map_err(rx(format!("read {ctx}")))?;
    let mut names: Vec<OsString> = Vec::new();
    for e in Dir::read_from(dup).map_err(rx(format!("read {ctx}")))? {
        let e = e.map_err(rx(format!("read {ctx}")))?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    names.sort();
    for n in names {
        let child = if tar_name == Path::new(".") {
            PathBuf::from(&n)
        } else {
            tar_name.join(&n)
        };
        add(b, d, &n, &child, ovl)?;
    }
    Ok(())
}

/// A tar entry's name made relative and checked: no absolute names, no
/// `..`.
fn entry_path(p: &Path) -> Result<Option<PathBuf>, FilesError> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) | Component::ParentDir => {
                return Err(FilesError::Escape(p.display().to_string()))
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Makes every directory of `path` (relative to `dir`), resolved inside
/// `root`.
fn mkdir_all(root: &OwnedFd, path: &str) -> Result<OwnedFd, FilesError> {
    let mut cur = String::from(".");
    for c in Path::new(&rel(path)).components() {
        let Component::Normal(s) = c else { continue };
        let parent = open_dir_in(root, &cur, &cur)?;
        match rustix::fs::mkdirat(&parent, s, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => {
                return Err(rx(format!(
                    "create directory {cur}/{}",
                    s.to_string_lossy()
                ))(e))
            }
        }
        cur = format!("{cur}/{}", s.to_string_lossy());
    }
    open_dir_in(root, &cur, path)
}

/// Extracts the tar stream `input` into directory `dest` (inside `root`).
pub fn extract(root: &Path, dest: &str, input: impl Read, archive: bool) -> Result<(), FilesError> {
    let rootfd = open_root(root)?;
    let mut ar = tar::Archive::new(input);
    let mut dirs_times: Vec<(String, i64)> = Vec::new();
    for e in ar.entries().map_err(io_err("read the tar stream"))? {
        let mut e = e.map_err(io_err("read the tar stream"))?;
        let raw = e
            .path()
            .map_err(io_err("read a tar entry name"))?
            .into_owned();
        let Some(p) = entry_path(&raw)? else { continue };
        let full = format!("{}/{}", dest.trim_end_matches('/'), p.display());
        let (parent, name) = split(&full);
        let Some(name) = name else { continue };
        let pdir = mkdir_all(&rootfd, &parent)?;
        let h = e.header();
        let mode = Mode::from_raw_mode(h.mode().unwrap_or(0o644) & 0o7777);
        let (uid, gid) = if archive {
            (h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32)
        } else {
            (0, 0)
        };
        let mtime = h.mtime().unwrap_or(0) as i64;
        let ctx = full.clone();
        let existing = statat(&pdir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| FileType::from_raw_mode(st.st_mode));
        let kind = h.entry_type();
        // Never write through what is there: a non-directory in the way is
        // replaced (a symlink to /etc is removed, not followed).
        if let Some(t) = existing {
            let want_dir = kind == tar::EntryType::Directory;
            if t == FileType::Directory && !want_dir {
                return Err(FilesError::Rule(format!(
                    "cannot overwrite directory {full} with a non-directory"
                )));
            }
            if t != FileType::Directory
                && (want_dir || kind != tar::EntryType::Regular || t != FileType::RegularFile)
            {
                rustix::fs::unlinkat(&pdir, name.as_os_str(), AtFlags::empty())
                    .map_err(rx(format!("replace {ctx}")))?;
            }
        }
        match kind {
            tar::EntryType::Directory => {
                match rustix::fs::mkdirat(&pdir, name.as_os_str(), mode) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(err) => return Err(rx(format!("create {ctx}"))(err)),
                }
                let d = openat(
                    &pdir,
                    name.as_os_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(rx(format!("open {ctx}")))?;
                rustix::fs::fchown(
                    &d,
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(gid)),
                )
                .map_err(rx(format!("chown {ctx}")))?;
                rustix::fs::fchmod(&d, mode).map_err(rx(format!("chmod {ctx}")))?;
                dirs_times.push((full.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let f = openat(
                    &pdir,
                    name.as_os_str(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::TRUNC
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(rx(format!("create {ctx}")))?;
                let mut file = File::from(f);
                io::copy(&mut e, &mut file).map_err(io_err(format!("write {ctx}")))?;
                rustix::fs::fchown(
                    &file,
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(gid)),
                )
                .map_err(rx(format!("chown {ctx}")))?;
                rustix::fs::fchmod(&file, mode).map_err(rx(format!("chmod {ctx}")))?;
                set_times(&file, "", mtime, AtFlags::EMPTY_PATH)?;
            }
            tar::EntryType::Symlink => {
                let target = e
                    .link_name()
                    .map_err(io_err(format!("read the link of {ctx}")))?
                    .unwrap_or_default()
                    .into_owned();
                rustix::fs::symlinkat(target.as_os_str(), &pdir, name.as_os_str())
                    .map_err(rx(format!("create symlink {ctx}")))?;
                rustix::fs::chownat(
                    &pdir,
                    name.as_os_str(),
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(rx(format!("chown {ctx}")))?;
            }
            tar::EntryType::Link => {
                let target = e
                    .link_name()
                    .map_err(io_err(format!("read the link of {ctx}")))?
                    .unwrap_or_default()
                    .into_owned();
                let Some(t) = entry_path(&target)? else {
                    continue;
                };
                let src = openat2(
                    &rootfd,
                    rel(&format!("{}/{}", dest.trim_end_matches('/'), t.display())).as_str(),
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    RESOLVE,
                )
                .map_err(rx(format!("find the link target of {ctx}")))?;
                rustix::fs::linkat(&src, "", &pdir, name.as_os_str(), AtFlags::EMPTY_PATH)
                    .map_err(rx(format!("link {ctx}")))?;
            }
            t @ (tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo) => {
                let ft = match t {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let dev = rustix::fs::makedev(
                    h.device_major().ok().flatten().unwrap_or(0),
                    h.device_minor().ok().flatten().unwrap_or(0),
                );
                rustix::fs::mknodat(&pdir, name.as_os_str(), ft, mode, dev)
                    .map_err(rx(format!("create {ctx}")))?;
            }
            // PAX and GNU extension headers are handled by the tar crate;
            // anything else is skipped.
            _ => {}
        }
    }
    // Directory times last, since adding entries changed them.
    for (d, mtime) in dirs_times.iter().rev() {
        if let Ok(fd) = open_dir_in(&rootfd, d, d) {
            let _ = set_times(&fd, "", *mtime, AtFlags::EMPTY_PATH);
        }
    }
    Ok(())
}

fn set_times(fd: impl AsFd, path: &str, mtime: i64, flags: AtFlags) -> Result<(), FilesError> {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        fd,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        flags,
    )
    .map_err(rx("set times"))
}

/// The last component of `path` (for a tar entry name).
fn base(path: &str) -> Option<String> {
    Path::new(&rel(path))
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| s != "..")
}

/// Copies `src` to `dst` with docker's rules:
/// - a file onto a missing path makes that file (its directory must exist;
///   a path ending in `/` must be an existing directory); onto a file
///   replaces it; into a directory keeps its name;
/// - a directory onto a missing path makes it with the source's contents;
///   into a directory copies it there, or only its contents when the source
///   ends in `/.`; onto a file is an error.
pub fn copy(src: &Location<'_>, dst: &Location<'_>, o: CopyOptions) -> Result<(), FilesError> {
    let sroot = open_root(src.root)?;
    let droot = open_root(dst.root)?;
    let skind = kind(&sroot, src, o.follow_link)?.ok_or_else(|| FilesError::NotFound {
        path: src.path.to_string(),
        side: src.side.to_string(),
    })?;
    let src_dir = skind == FileType::Directory;
    let contents_only = src.path.ends_with("/.") || src.path == ".";
    let dkind = kind(&droot, dst, true)?;
    let dst_slash = dst.path.ends_with('/');
    let (dest_dir, name): (String, Option<String>) = match dkind {
        None => {
            if dst_slash && !src_dir {
                return Err(FilesError::Rule(format!(
                    "the destination directory {} must exist in {}",
                    dst.path, dst.side
                )));
            }
            let (parent, n) = split(dst.path);
            if kind(
                &droot,
                &Location {
                    path: &parent,
                    ..dst.clone()
                },
                true,
            )? != Some(FileType::Directory)
            {
                return Err(FilesError::Rule(format!(
                    "the parent directory of {} does not exist in {}",
                    dst.path, dst.side
                )));
            }
            (parent, n.map(|s| s.to_string_lossy().into_owned()))
        }
        Some(FileType::Directory) => {
            if src_dir && contents_only {
                (dst.path.to_string(), None)
            } else {
                let b = base(src.path).unwrap_or_else(|| ".".into());
                (dst.path.to_string(), Some(b))
            }
        }
        Some(_) => {
            if src_dir {
                return Err(FilesError::Rule(format!(
                    "cannot copy a directory to the file {} in {}",
                    dst.path, dst.side
                )));
            }
            if dst_slash {
                return Err(FilesError::Rule(format!(
                    "{} is not a directory in {}",
                    dst.path, dst.side
                )));
            }
            let (parent, n) = split(dst.path);
            (parent, n.map(|s| s.to_string_lossy().into_owned()))
        }
    };
    let (r, w) = std::io::pipe().map_err(io_err("make a pipe"))?;
    std::thread::scope(|s| {
        let name = name.clone();
        let writer = s.spawn(move || write_tar(src, name.as_deref(), o.follow_link, w));
        let read = extract(dst.root, &dest_dir, r, o.archive);
        let wrote = writer
            .join()
            .unwrap_or_else(|_| Err(FilesError::Rule("the copy thread panicked".into())));
        // The writer's error is the cause when both failed (a closed pipe).
        wrote.and(read)
    })
}

/// An OCI layer (uncompressed tar) from an overlay upper directory: its
/// files as they are, whiteouts as `.wh.NAME`, opaque directories with
/// `.wh..wh..opq`.
pub fn layer_from_overlay_upper(upper: &Path, out: impl Write) -> Result<(), FilesError> {
    let root = open_root(upper)?;
    let dir = open_dir_in(&root, ".", &upper.display().to_string())?;
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    add_dir_contents(&mut b, &dir, Path::new("."), true)?;
    b.finish().map_err(io_err("write the layer"))?;
    Ok(())
}

/// `export`: the container's whole filesystem as an uncompressed tar.
pub fn export(rootfs: &Path, out: impl Write) -> Result<(), FilesError> {
    write_tar(
        &Location {
            root: rootfs,
            path: "/",
            side: "the container",
        },
        None,
        false,
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn loc<'a>(root: &'a Path, path: &'a str) -> Location<'a> {
        Location {
            root,
            path,
            side: "the test root",
        }
    }

    #[test]
    fn paths() {
        assert_eq!(rel("/a/b/"), "a/b");
        assert_eq!(rel("/"), ".");
        assert_eq!(rel("a/./b/."), "a/b");
        assert_eq!(split("/a/b"), ("a".into(), Some("b".into())));
        assert_eq!(split("/a"), (".".into(), Some("a".into())));
        assert_eq!(split("/"), (".".into(), None));
        assert!(entry_path(Path::new("/etc/passwd")).is_err());
        assert!(entry_path(Path::new("a/../../x")).is_err());
        assert_eq!(
            entry_path(Path::new("./a/b")).unwrap(),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(entry_path(Path::new(".")).unwrap(), None);
    }

    /// A tree with a file, a dir, a relative symlink and planted escapes.
    fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let host = t.path().join("host");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(root.join("data/sub")).unwrap();
        fs::create_dir_all(host.join("etc")).unwrap();
        fs::write(root.join("data/a"), "A").unwrap();
        fs::write(root.join("data/sub/b"), "B").unwrap();
        symlink("a", root.join("data/link")).unwrap();
        symlink("/etc", root.join("evil")).unwrap();
        symlink("../../../../../../", root.join("up")).unwrap();
        fs::write(host.join("etc/secret"), "host secret").unwrap();
        (t, root, host)
    }

    #[test]
    fn copies_follow_dockers_rules() {
        let (t, root, host) = tree();
        let out = t.path().join("out");
        fs::create_dir(&out).unwrap();
        let o = CopyOptions::default();
        // A dir onto a missing path: created with the contents.
        copy(&loc(&root, "/data"), &loc(&out, "/d1"), o).unwrap();
        assert_eq!(fs::read_to_string(out.join("d1/sub/b")).unwrap(), "B");
        assert_eq!(fs::read_link(out.join("d1/link")).unwrap(), Path::new("a"));
        // A dir into an existing dir: kept by name; with /. only contents.
        copy(&loc(&root, "/data"), &loc(&out, "/d1"), o).unwrap();
        assert!(out.join("d1/data/a").exists());
        fs::create_dir(out.join("d2")).unwrap();
        copy(&loc(&root, "/data/."), &loc(&out, "/d2"), o).unwrap();
        assert!(out.join("d2/a").exists() && !out.join("d2/data").exists());
        // A file: onto a missing name, into a dir, over a file.
        copy(&loc(&root, "/data/a"), &loc(&out, "/f"), o).unwrap();
        copy(&loc(&root, "/data/a"), &loc(&out, "/d2/"), o).unwrap();
        fs::write(out.join("g"), "old").unwrap();
        copy(&loc(&root, "/data/sub/b"), &loc(&out, "/g"), o).unwrap();
        assert_eq!(fs::read_to_string(out.join("g")).unwrap(), "B");
        // Errors.
        let e = copy(&loc(&root, "/nope"), &loc(&out, "/x"), o).unwrap_err();
        assert!(e.to_string().contains("/nope"), "{e}");
        let e = copy(&loc(&root, "/data/a"), &loc(&out, "/missing/"), o).unwrap_err();
        assert!(e.to_string().contains("must exist"), "{e}");
        let e = copy(&loc(&root, "/data"), &loc(&out, "/g"), o).unwrap_err();
        assert!(e.to_string().contains("cannot copy a directory"), "{e}");
        let e = copy(&loc(&root, "/data/a"), &loc(&out, "/no/such/f"), o).unwrap_err();
        assert!(e.to_string().contains("parent directory"), "{e}");
        // -L follows the source link.
        copy(
            &loc(&root, "/data/link"),
            &loc(&out, "/l"),
            CopyOptions {
                follow_link: true,
                ..o
            },
        )
        .unwrap();
        assert_eq!(fs::read_to_string(out.join("l")).unwrap(), "A");
        copy(&loc(&root, "/data/link"), &loc(&out, "/l2"), o).unwrap();
        assert!(fs::symlink_metadata(out.join("l2"))
            .unwrap()
            .file_type()
            .is_symlink());
        let _ = host;
    }

    #[test]
    fn planted_symlinks_stay_inside_the_root() {
        let (_t, root, host) = tree();
        let src = root.parent().unwrap().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("passwd"), "container passwd").unwrap();
        let hostroot = Path::new("/");
        let s = src.join("passwd");
        let s = s.to_str().unwrap();
        // In through /evil (-> /etc) and /up (-> ../../..): both land in the
        // root's own /etc and /, never in the host's.
        copy(
            &loc(hostroot, s),
            &loc(&root, "/evil/"),
            CopyOptions::default(),
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(root.join("etc/passwd")).unwrap(),
            "container passwd"
        );
        copy(
            &loc(hostroot, s),
            &loc(&root, "/up/"),
            CopyOptions::default(),
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(root.join("passwd")).unwrap(),
            "container passwd"
        );
        // Out through them reads the root's files, not the host's.
        let out = root.parent().unwrap().join("o");
        fs::create_dir(&out).unwrap();
        let secret = host.join("etc/secret");
        let rel_secret = format!("/up{}", secret.display());
        let e = copy(
            &loc(&root, &rel_secret),
            &loc(hostroot, out.join("s").to_str().unwrap()),
            CopyOptions::default(),
        );
        assert!(e.is_err(), "read a host file through a planted link");
        assert!(!out.join("s").exists());
        // A tar stream with hostile names is refused.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        {
            let name = b"../../escape";
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
        }
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let e = extract(&root, "/data", &data[..], false).unwrap_err();
        assert!(matches!(e, FilesError::Escape(_)), "{e}");
        // A file copied over a planted symlink replaces the link.
        symlink(&secret, root.join("data/over")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "over", &b"new"[..]).unwrap();
        extract(&root, "/data", &b.into_inner().unwrap()[..], false).unwrap();
        assert_eq!(fs::read_to_string(&secret).unwrap(), "host secret");
        assert_eq!(fs::read_to_string(root.join("data/over")).unwrap(), "new");
    }

    #[test]
    fn export_lists_the_tree() {
        let (_t, root, _host) = tree();
        let mut out = Vec::new();
        export(&root, &mut out).unwrap();
        let mut ar = tar::Archive::new(&out[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        for n in [
            "data",
            "data/a",
            "data/link",
            "data/sub/b",
            "etc",
            "evil",
            "up",
        ] {
            assert!(
                names.iter().any(|x| x.trim_end_matches('/') == n),
                "{n} in {names:?}"
            );
        }
    }
}
