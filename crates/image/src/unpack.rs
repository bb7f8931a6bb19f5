//! Streaming layer unpack: decompress → hash (the diff ID) → extract, in one
//! pass, into a snapshot directory.
//!
//! Layer content is hostile input. Every parent directory of an entry is
//! resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` from the
//! layer directory's fd, and every entry is created with `*at()` calls relative
//! to that parent fd, so nothing can be written outside the layer directory,
//! whatever symlinks earlier entries planted.

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{
    AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags,
};
use rustix::io::Errno;

use crate::digest::{Algorithm, Digest, HashingReader};

/// Size of the read buffers (compressed input, decompressed stream, file copy).
const BUF_SIZE: usize = 256 * 1024;

/// The whiteout prefix of the OCI layer format.
const WH_PREFIX: &str = ".wh.";
/// The opaque-directory marker of the OCI layer format.
const WH_OPAQUE: &str = ".wh..wh..opq";

/// How a layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// The compression of a layer media type, or None for a type that is not
    /// a layer this crate can unpack.
    pub fn from_media_type(mt: &str) -> Option<Compression> {
        match mt {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            _ => None,
        }
    }
}

/// What to do with whiteout entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// overlayfs: `.wh.X` becomes a 0:0 character device `X`;
    /// `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory.
    Overlay,
    /// Copy-based snapshots: `.wh.X` removes `X`; `.wh..wh..opq` empties its
    /// directory of everything not written by this layer.
    Delete,
}

/// Limits and behaviour of [`apply_layer`].
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Create device nodes (else such entries are refused).
    pub allow_devices: bool,
    /// Most bytes a layer may expand to. Both the uncompressed stream and
    /// the sum of the sizes of its files are held to it; a sparse file
    /// counts at its full (apparent) size, holes included, so a few bytes of
    /// sparse map cannot make a file of any size.
    pub max_size: u64,
    /// Most tar entries accepted.
    pub max_entries: u64,
    /// chown entries to the tar's uid/gid.
    pub preserve_ownership: bool,
    /// How whiteouts are written.
    pub whiteouts: WhiteoutMode,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            allow_devices: false,
            max_size: 32 << 30,
            max_entries: 10_000_000,
            preserve_ownership: false,
            whiteouts: WhiteoutMode::Overlay,
        }
    }
}

impl UnpackOptions {
    /// Options fitting this process: devices and ownership when CAP_MKNOD and
    /// CAP_CHOWN are effective in the initial user namespace; overlay
    /// whiteouts.
    pub fn for_current_process() -> Self {
        let caps = effective_caps().unwrap_or(0);
        let init_ns = in_initial_user_ns();
        const CAP_CHOWN: u32 = 0;
        const CAP_MKNOD: u32 = 27;
        UnpackOptions {
            allow_devices: init_ns && caps & (1 << CAP_MKNOD) != 0,
            preserve_ownership: init_ns && caps & (1 << CAP_CHOWN) != 0,
            ..UnpackOptions::default()
        }
    }
}

fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
}

fn in_initial_user_ns() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| {
            let f: Vec<&str> = m.split_whitespace().collect();
            f == ["0", "0", "4294967295"]
        })
        .unwrap_or(false)
}

/// What [`apply_layer`] found.
#[derive(Debug, Clone)]
pub struct UnpackStats {
    /// sha256 of the whole uncompressed stream.
    pub diff_id: Digest,
    /// Uncompressed bytes.
    pub size: u64,
    /// Tar entries.
    pub entries: u64,
}

/// Errors of [`apply_layer`].
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The layer directory could not be opened.
    #[error("open layer directory {dir}: {source}")]
    OpenDir {
        /// The directory.
        dir: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The stream could not be read or decompressed, or is not a valid tar.
    #[error("read layer stream: {0}")]
    Read(io::Error),
    /// An entry's path is absolute or has a `..` component, or resolves
    /// outside the layer directory.
    #[error("tar entry {path:?}: refused: {reason}")]
    Refused {
        /// The entry.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// A device node while devices are not allowed.
    #[error("tar entry {0:?}: device nodes are not allowed")]
    DeviceNotAllowed(String),
    /// The uncompressed stream is larger than the limit.
    #[error("layer is larger than {0} uncompressed bytes")]
    TooLarge(u64),
    /// The layer has more entries than the limit.
    #[error("layer has more than {0} entries")]
    TooManyEntries(u64),
    /// Between two entries the tar reader had to read more than the limit:
    /// extension headers (GNU long names, PAX records), which it holds in
    /// memory, or data of an entry that is skipped.
    #[error("tar entry {after}: the headers of the next entry (long names, PAX records) exceed {max} bytes")]
    HeadersTooLarge {
        /// The entry before them (`start of layer` for the first).
        after: String,
        /// The limit.
        max: u64,
    },
    /// A file whose size (for a sparse file, its full size with the holes)
    /// takes the sum of the layer's file sizes past the limit.
    #[error(
        "tar entry {path:?}: a file of {size} bytes{sparse} takes the layer past its limit of {max} bytes"
    )]
    EntryTooLarge {
        /// The entry.
        path: String,
        /// Its size.
        size: u64,
        /// `" (sparse)"` for a sparse file, else empty.
        sparse: &'static str,
        /// The limit.
        max: u64,
    },
    /// A system call failed on an entry.
    #[error("tar entry {path:?}: {op}: {source}")]
    Entry {
        /// The entry.
        path: String,
        /// What was being done.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
}

impl UnpackError {
    /// Whether the layer was refused for what it holds (a hostile or
    /// oversized entry), as opposed to failing to be read or written: the
    /// same bytes would be refused again.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            UnpackError::Refused { .. }
                | UnpackError::DeviceNotAllowed(_)
                | UnpackError::TooLarge(_)
                | UnpackError::TooManyEntries(_)
                | UnpackError::HeadersTooLarge { .. }
                | UnpackError::EntryTooLarge { .. }
        )
    }
}

/// Most bytes the tar reader may read between two entries. The tar crate
/// reads an entry's extension headers (GNU long names and links, PAX
/// records) whole into memory before it yields the entry; without a bound, a
/// few KiB of gzip could make it allocate gigabytes. Real headers are a few
/// KiB (a PAX record carrying an xattr is at most 64 KiB). The read buffer
/// in front of the tar reader can shift up to its size in or out of a
/// window, which this leaves ample room for.
const MAX_HEADERS_BETWEEN_ENTRIES: u64 = 16 << 20;

/// Counts the decompressed bytes and fails past the limit; while `window`
/// holds a budget (the tar reader is between entries), fails past it too.
struct Limited<R> {
    inner: HashingReader<R>,
    max: u64,
    exceeded: Rc<Cell<bool>>,
    window: Rc<Cell<Option<u64>>>,
    window_exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.inner.count() > self.max {
            self.exceeded.set(true);
            return Err(io::Error::other("uncompressed size limit exceeded"));
        }
        if let Some(left) = self.window.get() {
            match left.checked_sub(n as u64) {
                Some(left) => self.window.set(Some(left)),
                None => {
                    self.window_exceeded.set(true);
                    return Err(io::Error::other("tar headers too large"));
                }
            }
        }
        Ok(n)
    }
}

/// Unpacks one layer into `dir`, returning its diff ID, size and entry count.
pub fn apply_layer(
    dir: &Path,
    layer: impl Read + Send,
    compression: Compression,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let input = BufReader::with_capacity(BUF_SIZE, layer);
    match compression {
        Compression::None => apply_stream(dir, input, opts),
        Compression::Gzip => {
            apply_pipelined(dir, flate2::bufread::MultiGzDecoder::new(input), opts)
        }
        Compression::Zstd => {
            let dec = zstd::stream::read::Decoder::with_buffer(input).map_err(UnpackError::Read)?;
            apply_pipelined(dir, dec, opts)
        }
    }
}

/// Chunks of decompressed data in flight between the two threads.
const PIPE_CHUNKS: usize = 8;

/// [`apply_stream`] with the input (download, blob digest, decompression)
/// read on a second thread, so that decompressing one part of a layer
/// overlaps with writing the files of the part before it. Without this a
/// large gzip layer costs inflate time plus extract time on one core.
///
/// The reading thread stays at most `PIPE_CHUNKS` chunks ahead, so the
/// size limits still bound what is read; when extraction fails, dropping the
/// receiver stops it at its next chunk.
fn apply_pipelined<R: Read + Send>(
    dir: &Path,
    mut input: R,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(PIPE_CHUNKS);
        s.spawn(move || loop {
            let mut chunk = vec![0u8; BUF_SIZE];
            let (n, err) = fill(&mut input, &mut chunk);
            chunk.truncate(n);
            // Data first (an empty chunk is the end), then any error.
            if (n > 0 || err.is_none()) && tx.send(Ok(chunk)).is_err() {
                return;
            }
            if let Some(e) = err {
                let _ = tx.send(Err(e));
                return;
            }
            if n < BUF_SIZE {
                if n > 0 {
                    let _ = tx.send(Ok(Vec::new()));
                }
                return;
            }
        });
        apply_stream(
            dir,
            ChannelReader {
                rx,
                chunk: Vec::new(),
                pos: 0,
                done: false,
            },
            opts,
        )
    })
}

/// Reads until `buf` is full, the end, or an error; how much was read, and
/// the error.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

/// The receiving end of [`apply_pipelined`]: an empty chunk is the end.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(c)) => {
                    self.done = c.is_empty();
                    self.chunk = c;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Err(io::Error::other("the layer reader stopped"));
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn apply_stream<R: Read>(
    dir: &Path,
    stream: R,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let root = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::OpenDir {
        dir: dir.to_path_buf(),
        source: e.into(),
    })?;
    let exceeded = Rc::new(Cell::new(false));
    let window = Rc::new(Cell::new(None));
    let window_exceeded = Rc::new(Cell::new(false));
    let limited = Limited {
        inner: HashingReader::new(stream, Algorithm::Sha256),
        max: opts.max_size,
        exceeded: exceeded.clone(),
        window: window.clone(),
        window_exceeded: window_exceeded.clone(),
    };
    let mut archive = tar::Archive::new(BufReader::with_capacity(BUF_SIZE, limited));
    let mut u = Unpacker {
        root,
        opts,
        cache: None,
        buf: vec![0u8; BUF_SIZE],
        dirs: Vec::new(),
        written: HashSet::new(),
        privileged: opts.preserve_ownership,
        expanded: 0,
    };
    let read_err = |e: io::Error| {
        if exceeded.get() {
            UnpackError::TooLarge(opts.max_size)
        } else {
            UnpackError::Read(e)
        }
    };
    let mut entries = 0u64;
    let mut iter = archive.entries().map_err(read_err)?;
    let mut last = String::from("start of layer");
    loop {
        window.set(Some(MAX_HEADERS_BETWEEN_ENTRIES));
        let next = iter.next();
        window.set(None);
        let Some(entry) = next else { break };
        let mut entry = entry.map_err(|e| {
            if window_exceeded.get() {
                UnpackError::HeadersTooLarge {
                    after: last.clone(),
                    max: MAX_HEADERS_BETWEEN_ENTRIES,
                }
            } else {
                read_err(e)
            }
        })?;
        last = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        entries += 1;
        if entries > opts.max_entries {
            return Err(UnpackError::TooManyEntries(opts.max_entries));
        }
        u.entry(&mut entry).map_err(|e| match e {
            UnpackError::Entry { ref source, .. } | UnpackError::Read(ref source)
                if exceeded.get() && source.kind() == io::ErrorKind::Other =>
            {
                UnpackError::TooLarge(opts.max_size)
            }
            e => e,
        })?;
    }
    u.finish_dirs()?;
    // Keep reading past the tar's end so the diff ID covers the whole stream.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(read_err)?;
    let limited = rest.into_inner();
    Ok(UnpackStats {
        diff_id: limited.inner.digest(),
        size: limited.inner.count(),
        entries,
    })
}

/// A directory whose mode and times are set after the whole layer.
struct DirFixup {
    path: PathBuf,
    mode: u32,
    mtime: Option<u64>,
}

struct Unpacker<'a> {
    root: OwnedFd,
    opts: &'a UnpackOptions,
    /// The last resolved parent directory.
    cache: Option<(PathBuf, OwnedFd)>,
    buf: Vec<u8>,
    dirs: Vec<DirFixup>,
    /// Paths written by this layer (Delete mode only, for opaque dirs).
    written: HashSet<PathBuf>,
    privileged: bool,
    /// The sum of the sizes of the layer's files so far (sparse ones at
    /// their full size).
    expanded: u64,
}

fn display(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Normalizes an entry path: drops `.` components, refuses absolute paths and
/// `..`.
fn clean_path(raw: &Path) -> Result<PathBuf, &'static str> {
    // The layer root itself, as umoci and others write it ("/" or "./"),
    // names nothing outside; every other absolute path is refused.
    if raw
        .as_os_str()
        .as_bytes()
        .iter()
        .all(|&b| b == b'/' || b == b'.')
        && !raw.as_os_str().as_bytes().windows(2).any(|w| w == b"..")
    {
        return Ok(PathBuf::new());
    }
    if raw.as_os_str().as_bytes().first() == Some(&b'/') {
        return Err("absolute path");
    }
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("path has a '..' component"),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path"),
        }
    }
    Ok(out)
}

fn errno_to_io(e: Errno) -> io::Error {
    e.into()
}

fn timestamps(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime.min(i64::MAX as u64) as i64,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

impl Unpacker<'_> {
    fn err(path: &Path, op: &'static str, e: impl Into<io::Error>) -> UnpackError {
        UnpackError::Entry {
            path: display(path),
            op,
            source: e.into(),
        }
    }

    fn refuse(path: &Path, reason: &'static str) -> UnpackError {
        UnpackError::Refused {
            path: display(path),
            reason,
        }
    }

    fn sparse_err(path: &Path, e: SparseMapError) -> UnpackError {
        match e {
            SparseMapError::Read(e) => UnpackError::Read(e),
            SparseMapError::Bad(r) => Self::refuse(path, r),
        }
    }

    /// Opens directory `rel` (relative to the root) beneath the root, creating
    /// missing components as 0755 directories when `create` is set.
    fn open_dir(&self, entry: &Path, rel: &Path, create: bool) -> Result<OwnedFd, UnpackError> {
        let how = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let map = |e: Errno| match e {
            Errno::XDEV => Self::refuse(entry, "path leaves the layer directory"),
            Errno::LOOP => Self::refuse(entry, "path resolves through a symlink loop"),
            e => Self::err(entry, "open parent directory", e),
        };
        if rel.as_os_str().is_empty() {
            return rustix::fs::openat(&self.root, ".", flags, Mode::empty())
                .map_err(|e| Self::err(entry, "open layer directory", e));
        }
        match rustix::fs::openat2(&self.root, rel, flags, Mode::empty(), how) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) if create => {}
            Err(e) => return Err(map(e)),
        }
        // Walk component by component, creating what is missing.
        let mut fd = rustix::fs::openat(&self.root, ".", flags, Mode::empty())
            .map_err(|e| Self::err(entry, "open layer directory", e))?;
        for c in rel.components() {
            let name = c.as_os_str();
            match rustix::fs::mkdirat(&fd, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(Self::err(entry, "create parent directory", e)),
            }
            fd = rustix::fs::openat2(&fd, name, flags, Mode::empty(), how).map_err(map)?;
        }
        Ok(fd)
    }

    /// The parent directory fd of `path` (cached for runs of entries in one
    /// directory).
    fn parent(&mut self, path: &Path) -> Result<BorrowedFd<'_>, UnpackError> {
        let parent = path.parent().unwrap_or(Path::new(""));
        let hit = matches!(&self.cache, Some((p, _)) if p == parent);
        if !hit {
            let fd = self.open_dir(path, parent, true)?;
            self.cache = Some((parent.to_path_buf(), fd));
        }
        Ok(self
            .cache
            .as_ref()
            .map(|(_, fd)| fd.as_fd())
            .expect("cached"))
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let mut raw = entry
            .path()
            .map_err(|e| UnpackError::Read(io::Error::other(e)))?
            .into_owned();
        let pax = read_pax(entry).map_err(|e| Self::err(&raw, "read PAX headers", e))?;
        let header = entry.header().clone();
        let kind = header.entry_type();
        use tar::EntryType as T;
        // A PAX sparse file (GNU tar's formats 0.0, 0.1 and 1.0) is a
        // regular entry whose data are the file's non-hole chunks; format
        // 1.0 puts a placeholder name in the header and the real one here.
        let pax_sparse = matches!(kind, T::Regular | T::Continuous) && pax.sparse.present();
        if pax_sparse {
            if let Some(n) = &pax.sparse.name {
                raw = PathBuf::from(OsStr::from_bytes(n));
            }
        }
        let path = clean_path(&raw).map_err(|r| Self::refuse(&raw, r))?;
        let name = match path.file_name() {
            Some(n) => n.to_owned(),
            // The layer root itself ("./"): nothing to create.
            None => return Ok(()),
        };
        let name_b = name.as_bytes();
        if name_b.starts_with(WH_PREFIX.as_bytes()) {
            return self.whiteout(&path, &name);
        }
        let mode = header
            .mode()
            .map_err(|e| Self::err(&path, "read mode", e))?
            & 0o7777;
        let uid = header.uid().map_err(|e| Self::err(&path, "read uid", e))?;
        let gid = header.gid().map_err(|e| Self::err(&path, "read gid", e))?;
        let mtime = header.mtime().ok();
        let xattrs = pax.xattrs;
        if self.opts.whiteouts == WhiteoutMode::Delete {
            self.written.insert(path.clone());
        }
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => {
                // Count what the file will be, not what the stream carries:
                // the tar crate gives a GNU sparse entry its full size, and
                // a PAX sparse one names it in its headers.
                let layout = if pax_sparse {
                    let real = pax
                        .sparse
                        .real_size()
                        .ok_or_else(|| Self::refuse(&path, "sparse file without its real size"))?;
                    Layout::PaxSparse {
                        map: pax
                            .sparse
                            .inline_map()
                            .map_err(|r| Self::refuse(&path, r))?,
                        real,
                    }
                } else if kind == T::GNUSparse {
                    Layout::ZerosAreHoles
                } else {
                    Layout::Plain
                };
                let size = match layout {
                    Layout::PaxSparse { real, .. } => real,
                    _ => entry.size(),
                };
                self.expanded = self.expanded.saturating_add(size);
                if self.expanded > self.opts.max_size {
                    return Err(UnpackError::EntryTooLarge {
                        path: display(&path),
                        size,
                        sparse: if matches!(layout, Layout::Plain) {
                            ""
                        } else {
                            " (sparse)"
                        },
                        max: self.opts.max_size,
                    });
                }
                self.regular(entry, &path, &name, mode, uid, gid, mtime, &xattrs, layout)
            }
            T::Directory => {
                let parent = self.parent(&path)?;
                match rustix::fs::mkdirat(parent, &name, Mode::from_raw_mode(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        let st = rustix::fs::statat(parent, &name, AtFlags::SYMLINK_NOFOLLOW)
                            .map_err(|e| Self::err(&path, "stat", e))?;
                        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                            self.replace(&path, &name)?;
                            let parent = self.parent(&path)?;
                            rustix::fs::mkdirat(parent, &name, Mode::from_raw_mode(0o700))
                                .map_err(|e| Self::err(&path, "mkdir", e))?;
                        }
                    }
                    Err(e) => return Err(Self::err(&path, "mkdir", e)),
                }
                self.owner_and_xattrs(&path, &name, uid, gid, &xattrs, false)?;
                self.dirs.push(DirFixup { path, mode, mtime });
                Ok(())
            }
            T::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| Self::err(&path, "read link name", e))?
                    .ok_or_else(|| Self::refuse(&path, "symlink without a target"))?
                    .into_owned();
                self.create_retry(&path, &name, |p, n| rustix::fs::symlinkat(&target, p, n))?;
                self.owner_and_xattrs(&path, &name, uid, gid, &xattrs, true)?;
                self.times(&path, &name, mtime)
            }
            T::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| Self::err(&path, "read link name", e))?
                    .ok_or_else(|| Self::refuse(&path, "hardlink without a target"))?
                    .into_owned();
                let target = clean_path(&target).map_err(|r| Self::refuse(&path, r))?;
                let tname = target
                    .file_name()
                    .ok_or_else(|| Self::refuse(&path, "hardlink to the layer root"))?
                    .to_owned();
                let tparent = target.parent().unwrap_or(Path::new(""));
                let tfd = self.open_dir(&path, tparent, false)?;
                self.create_retry(&path, &name, |p, n| {
                    rustix::fs::linkat(&tfd, &tname, p, n, AtFlags::empty())
                })
            }
            T::Char | T::Block | T::Fifo => {
                let (ft, dev) = match kind {
                    T::Fifo => (FileType::Fifo, 0),
                    _ => {
                        if !self.opts.allow_devices {
                            return Err(UnpackError::DeviceNotAllowed(display(&path)));
                        }
                        let maj = header
                            .device_major()
                            .map_err(|e| Self::err(&path, "read device major", e))?
                            .unwrap_or(0);
                        let min = header
                            .device_minor()
                            .map_err(|e| Self::err(&path, "read device minor", e))?
                            .unwrap_or(0);
                        let ft = if kind == T::Char {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (ft, rustix::fs::makedev(maj, min))
                    }
                };
                self.create_retry(&path, &name, |p, n| {
                    rustix::fs::mknodat(p, n, ft, Mode::from_raw_mode(0o600), dev)
                })?;
                self.owner_and_xattrs(&path, &name, uid, gid, &xattrs, false)?;
                let parent = self.parent(&path)?;
                rustix::fs::chmodat(parent, &name, Mode::from_raw_mode(mode), AtFlags::empty())
                    .map_err(|e| Self::err(&path, "chmod", e))?;
                self.times(&path, &name, mtime)
            }
            other => {
                tracing::warn!(path = %path.display(), kind = ?other, "skipping tar entry of unsupported type");
                Ok(())
            }
        }
    }

    /// Runs `create(parent, name)`; when the name exists, removes it
    /// (recursively for a directory) and tries once more.
    fn create_retry(
        &mut self,
        path: &Path,
        name: &OsStr,
        create: impl Fn(BorrowedFd<'_>, &OsStr) -> Result<(), Errno>,
    ) -> Result<(), UnpackError> {
        let parent = self.parent(path)?;
        match create(parent, name) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                self.replace(path, name)?;
                let parent = self.parent(path)?;
                create(parent, name).map_err(|e| Self::err(path, "create", e))
            }
            Err(e) => Err(Self::err(path, "create", e)),
        }
    }

    /// Removes whatever is at `path` (in its parent) so it can be replaced.
    fn replace(&mut self, path: &Path, name: &OsStr) -> Result<(), UnpackError> {
        let parent = self.parent(path)?;
        let parent = parent
            .try_clone_to_owned()
            .map_err(|e| Self::err(path, "dup", e))?;
        // A removal may invalidate the cached parent of later entries.
        self.cache = None;
        remove_at(&parent, name).map_err(|e| Self::err(path, "remove existing", e))?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
        name: &OsStr,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: Option<u64>,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        layout: Layout,
    ) -> Result<(), UnpackError> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let cmode = Mode::from_raw_mode(0o600);
        let parent = self.parent(path)?;
        let fd = match rustix::fs::openat(parent, name, flags, cmode) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => {
                self.replace(path, name)?;
                let parent = self.parent(path)?;
                rustix::fs::openat(parent, name, flags, cmode)
                    .map_err(|e| Self::err(path, "create", e))?
            }
            Err(e) => return Err(Self::err(path, "create", e)),
        };
        let mut file = File::from(fd);
        match layout {
            Layout::Plain => loop {
                let n = read_some(entry, &mut self.buf)?;
                if n == 0 {
                    break;
                }
                file.write_all(&self.buf[..n])
                    .map_err(|e| Self::err(path, "write", e))?;
            },
            Layout::ZerosAreHoles => {
                // The tar crate reads the holes as zeros: skip whole zero
                // reads instead of writing them, so holes stay holes.
                let mut pos = 0u64;
                loop {
                    let n = read_some(entry, &mut self.buf)?;
                    if n == 0 {
                        break;
                    }
                    let chunk = &self.buf[..n];
                    if chunk.iter().any(|&b| b != 0) {
                        file.write_all_at(chunk, pos)
                            .map_err(|e| Self::err(path, "write", e))?;
                    }
                    pos += n as u64;
                }
                file.set_len(pos)
                    .map_err(|e| Self::err(path, "set size", e))?;
            }
            Layout::PaxSparse { map, real } => {
                let mut data_len = entry.size();
                let map = match map {
                    Some(m) => m,
                    None => {
                        let (m, used) = read_sparse_map(entry, data_len)
                            .map_err(|e| Self::sparse_err(path, e))?;
                        data_len -= used;
                        m
                    }
                };
                check_sparse_map(&map, real, data_len).map_err(|r| Self::refuse(path, r))?;
                for (off, len) in map {
                    let mut done = 0u64;
                    while done < len {
                        let want = (len - done).min(self.buf.len() as u64) as usize;
                        let n = read_some(entry, &mut self.buf[..want])?;
                        if n == 0 {
                            return Err(Self::refuse(path, "sparse data ends before its map"));
                        }
                        file.write_all_at(&self.buf[..n], off + done)
                            .map_err(|e| Self::err(path, "write", e))?;
                        done += n as u64;
                    }
                }
                file.set_len(real)
                    .map_err(|e| Self::err(path, "set size", e))?;
            }
        }
        if self.opts.preserve_ownership {
            rustix::fs::fchown(
                &file,
                Some(rustix::fs::Uid::from_raw(uid as u32)),
                Some(rustix::fs::Gid::from_raw(gid as u32)),
            )
            .map_err(|e| Self::err(path, "chown", e))?;
        }
        for (k, v) in xattrs {
            match rustix::fs::fsetxattr(&file, OsStr::from_bytes(k), v, XattrFlags::empty()) {
                Ok(()) => {}
                Err(e) if self.ignorable_xattr_error(k, e) => {}
                Err(e) => return Err(Self::err(path, "setxattr", e)),
            }
        }
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))
            .map_err(|e| Self::err(path, "chmod", e))?;
        if let Some(m) = mtime {
            rustix::fs::futimens(&file, &timestamps(m))
                .map_err(|e| Self::err(path, "set times", e))?;
        }
        Ok(())
    }

    fn ignorable_xattr_error(&self, name: &[u8], e: Errno) -> bool {
        !self.privileged && name.starts_with(b"user.") && e == Errno::OPNOTSUPP
    }

    fn owner_and_xattrs(
        &mut self,
        path: &Path,
        name: &OsStr,
        uid: u64,
        gid: u64,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        _symlink: bool,
    ) -> Result<(), UnpackError> {
        let preserve = self.opts.preserve_ownership;
        let privileged = self.privileged;
        let parent = self.parent(path)?;
        if preserve {
            rustix::fs::chownat(
                parent,
                name,
                Some(rustix::fs::Uid::from_raw(uid as u32)),
                Some(rustix::fs::Gid::from_raw(gid as u32)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| Self::err(path, "chown", e))?;
        }
        if !xattrs.is_empty() {
            // The parent is an fd we resolved beneath the root; through its
            // /proc magic link, lsetxattr acts on `name` without following it.
            let mut p = PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd()));
            p.push(name);
            for (k, v) in xattrs {
                match rustix::fs::lsetxattr(&p, OsStr::from_bytes(k), v, XattrFlags::empty()) {
                    Ok(()) => {}
                    Err(e) if !privileged && k.starts_with(b"user.") && e == Errno::OPNOTSUPP => {}
                    Err(e) => return Err(Self::err(path, "setxattr", e)),
                }
            }
        }
        Ok(())
    }

    fn times(&mut self, path: &Path, name: &OsStr, mtime: Option<u64>) -> Result<(), UnpackError> {
        if let Some(m) = mtime {
            let parent = self.parent(path)?;
            rustix::fs::utimensat(parent, name, &timestamps(m), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| Self::err(path, "set times", e))?;
        }
        Ok(())
    }

    fn whiteout(&mut self, path: &Path, name: &OsStr) -> Result<(), UnpackError> {
        let dir = path.parent().unwrap_or(Path::new(""));
        if name.as_bytes() == WH_OPAQUE.as_bytes() {
            let dfd = self.open_dir(path, dir, true)?;
            self.cache = None;
            return match self.opts.whiteouts {
                WhiteoutMode::Overlay => {
                    let p = format!("/proc/self/fd/{}", dfd.as_raw_fd());
                    rustix::fs::setxattr(&p, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                        .map_err(|e| Self::err(path, "set opaque xattr", e))
                }
                WhiteoutMode::Delete => self.empty_dir(path, dir, &dfd),
            };
        }
        let target = OsStr::from_bytes(&name.as_bytes()[WH_PREFIX.len()..]);
        if target.is_empty() || target == "." || target == ".." || target.as_bytes().contains(&b'/')
        {
            return Err(Self::refuse(
                path,
                "whiteout names no file in its directory",
            ));
        }
        let tpath = dir.join(target);
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => self.create_retry(&tpath, target, |p, n| {
                rustix::fs::mknodat(
                    p,
                    n,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
            }),
            WhiteoutMode::Delete => {
                let dfd = match self.open_dir(path, dir, false) {
                    Ok(fd) => fd,
                    Err(UnpackError::Entry { source, .. })
                        if source.raw_os_error() == Some(libc::ENOENT)
                            || source.raw_os_error() == Some(libc::ENOTDIR) =>
                    {
                        return Ok(())
                    }
                    Err(e) => return Err(e),
                };
                self.cache = None;
                match remove_at(&dfd, target) {
                    Ok(()) => Ok(()),
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                    Err(e) => Err(Self::err(path, "remove whited-out file", e)),
                }
            }
        }
    }

    /// Delete-mode opaque directory: removes every child not written by this
    /// layer.
    fn empty_dir(&mut self, path: &Path, dir: &Path, dfd: &OwnedFd) -> Result<(), UnpackError> {
        let rfd = rustix::fs::openat(
            dfd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Self::err(path, "open opaque directory", e))?;
        let names = list_dir(rfd).map_err(|e| Self::err(path, "read opaque directory", e))?;
        for n in names {
            if self.written.contains(&dir.join(&n)) {
                continue;
            }
            remove_at(dfd, &n).map_err(|e| Self::err(path, "empty opaque directory", e))?;
        }
        Ok(())
    }

    /// Sets directory modes and times, deepest first, after the whole layer.
    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        self.cache = None;
        let dirs = std::mem::take(&mut self.dirs);
        for d in dirs.iter().rev() {
            let fd = match self.open_dir(&d.path, &d.path, false) {
                Ok(fd) => fd,
                // Replaced by a later entry or whited out: nothing to fix.
                Err(UnpackError::Entry { source, .. })
                    if matches!(
                        source.raw_os_error(),
                        Some(libc::ENOENT) | Some(libc::ENOTDIR)
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            // fchmodat2(AT_EMPTY_PATH) acts on the O_PATH fd itself.
            rustix::fs::chmodat(&fd, "", Mode::from_raw_mode(d.mode), AtFlags::EMPTY_PATH)
                .or_else(|e| {
                    if e == Errno::INVAL || e == Errno::NOSYS || e == Errno::OPNOTSUPP {
                        let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
                        rustix::fs::chmod(&p, Mode::from_raw_mode(d.mode))
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| Self::err(&d.path, "chmod directory", e))?;
            if let Some(m) = d.mtime {
                rustix::fs::utimensat(&fd, "", &timestamps(m), AtFlags::EMPTY_PATH)
                    .map_err(|e| Self::err(&d.path, "set directory times", e))?;
            }
        }
        Ok(())
    }
}

/// How a regular entry's data make the file.
enum Layout {
    /// The data are the file.
    Plain,
    /// A GNU sparse entry (type `S`): the tar crate reads its holes as
    /// zeros.
    ZerosAreHoles,
    /// A PAX sparse entry: the data are the file's chunks, placed by the map
    /// (`None`: format 1.0, whose map heads the data), in a file of `real`
    /// bytes.
    PaxSparse {
        map: Option<Vec<(u64, u64)>>,
        real: u64,
    },
}

/// What an entry's PAX headers say that the tar crate does not act on.
#[derive(Default)]
struct PaxInfo {
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    sparse: PaxSparse,
}

/// GNU tar's PAX sparse keys (`GNU.sparse.*`), formats 0.0, 0.1 and 1.0.
#[derive(Default)]
struct PaxSparse {
    major: Option<u64>,
    name: Option<Vec<u8>>,
    /// 1.0's real size.
    realsize: Option<u64>,
    /// 0.x's real size.
    size: Option<u64>,
    numblocks: Option<u64>,
    /// 0.1's map: `offset,size,offset,size,...`.
    map: Option<Vec<u8>>,
    /// 0.0's map, as repeated keys.
    offsets: Vec<u64>,
    numbytes: Vec<u64>,
}

impl PaxSparse {
    fn present(&self) -> bool {
        self.major.is_some()
            || self.realsize.is_some()
            || self.size.is_some()
            || self.numblocks.is_some()
            || self.map.is_some()
            || !self.offsets.is_empty()
    }

    fn real_size(&self) -> Option<u64> {
        self.realsize.or(self.size)
    }

    /// The map when the headers hold it (0.0, 0.1); None when it heads the
    /// data (1.0).
    fn inline_map(&self) -> Result<Option<Vec<(u64, u64)>>, &'static str> {
        if self.major == Some(1) {
            return Ok(None);
        }
        let map: Vec<(u64, u64)> = if let Some(m) = &self.map {
            let nums = std::str::from_utf8(m)
                .map_err(|_| "sparse map is not text")?
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::parse::<u64>)
                .collect::<Result<Vec<u64>, _>>()
                .map_err(|_| "sparse map holds something other than numbers")?;
            if nums.len() % 2 != 0 {
                return Err("sparse map has an odd count of numbers");
            }
            nums.chunks(2).map(|c| (c[0], c[1])).collect()
        } else {
            if self.offsets.len() != self.numbytes.len() {
                return Err("sparse map has offsets and sizes of different counts");
            }
            self.offsets
                .iter()
                .copied()
                .zip(self.numbytes.iter().copied())
                .collect()
        };
        if self.numblocks.is_some_and(|n| n != map.len() as u64) {
            return Err("sparse map's block count does not match the map");
        }
        Ok(Some(map))
    }
}

fn read_pax<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<PaxInfo> {
    let mut out = PaxInfo::default();
    let Some(exts) = entry.pax_extensions()? else {
        return Ok(out);
    };
    let num = |key: &[u8], v: &[u8]| -> io::Result<u64> {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a number", String::from_utf8_lossy(key)),
                )
            })
    };
    for ext in exts {
        let ext = ext?;
        let (key, value) = (ext.key_bytes(), ext.value_bytes());
        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
            // overlayfs' own xattrs (redirect, metacopy, ...) could make
            // the mounted view reach other layers; a layer never sets them.
            if name.starts_with(b"trusted.overlay.") {
                tracing::warn!("ignoring overlayfs xattr in a layer");
                continue;
            }
            out.xattrs.push((name.to_vec(), value.to_vec()));
            continue;
        }
        let sp = &mut out.sparse;
        match key {
            b"GNU.sparse.major" => sp.major = Some(num(key, value)?),
            b"GNU.sparse.minor" => {
                num(key, value)?;
            }
            b"GNU.sparse.name" => sp.name = Some(value.to_vec()),
            b"GNU.sparse.realsize" => sp.realsize = Some(num(key, value)?),
            b"GNU.sparse.size" => sp.size = Some(num(key, value)?),
            b"GNU.sparse.numblocks" => sp.numblocks = Some(num(key, value)?),
            b"GNU.sparse.map" => sp.map = Some(value.to_vec()),
            b"GNU.sparse.offset" => sp.offsets.push(num(key, value)?),
            b"GNU.sparse.numbytes" => sp.numbytes.push(num(key, value)?),
            _ => {}
        }
    }
    Ok(out)
}

/// Reads into `buf`, retrying on EINTR; 0 at the end.
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, UnpackError> {
    loop {
        match r.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(UnpackError::Read(e)),
        }
    }
}

enum SparseMapError {
    Read(io::Error),
    Bad(&'static str),
}

/// Reads the map that heads a PAX 1.0 sparse entry's data (`data_len`
/// bytes): decimal numbers one per line, the count of blocks first, then
/// offset and size of each, padded with NULs to a 512-byte boundary.
/// Returns the map and the bytes it took.
fn read_sparse_map(
    r: &mut impl Read,
    data_len: u64,
) -> Result<(Vec<(u64, u64)>, u64), SparseMapError> {
    let mut used = 0u64;
    let mut number = |r: &mut dyn Read| -> Result<u64, SparseMapError> {
        let mut digits = Vec::new();
        loop {
            let mut b = [0u8; 1];
            match r.read(&mut b) {
                Ok(0) => return Err(SparseMapError::Bad("sparse map ends early")),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SparseMapError::Read(e)),
            }
            used += 1;
            if b[0] == b'\n' {
                break;
            }
            if !b[0].is_ascii_digit() || digits.len() >= 20 {
                return Err(SparseMapError::Bad(
                    "sparse map holds something other than numbers",
                ));
            }
            digits.push(b[0]);
        }
        std::str::from_utf8(&digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(SparseMapError::Bad(
                "sparse map holds something other than numbers",
            ))
    };
    let n = number(r)?;
    // Each block takes at least four bytes of map ("0\n0\n").
    if n > data_len / 4 {
        return Err(SparseMapError::Bad(
            "sparse map lists more blocks than its data can hold",
        ));
    }
    let mut map = Vec::new();
    for _ in 0..n {
        let off = number(r)?;
        let len = number(r)?;
        map.push((off, len));
    }
    let pad = (512 - used % 512) % 512;
    let mut skip = vec![0u8; pad as usize];
    r.read_exact(&mut skip).map_err(SparseMapError::Read)?;
    used += pad;
    if used > data_len {
        return Err(SparseMapError::Bad("sparse map is longer than the entry"));
    }
    Ok((map, used))
}

/// Checks a sparse map against the file's real size and the data it has:
/// chunks in order, apart, inside the file, and adding up to the data.
fn check_sparse_map(map: &[(u64, u64)], real: u64, data_len: u64) -> Result<(), &'static str> {
    let mut end = 0u64;
    let mut total = 0u64;
    for &(off, len) in map {
        if off < end {
            return Err("sparse map chunks overlap or are out of order");
        }
        end = off
            .checked_add(len)
            .filter(|&e| e <= real)
            .ok_or("sparse map chunk ends past the file's size")?;
        total += len;
    }
    if total != data_len {
        return Err("sparse map does not add up to the entry's data");
    }
    Ok(())
}

fn list_dir(fd: OwnedFd) -> io::Result<Vec<std::ffi::OsString>> {
    let mut out = Vec::new();
    let mut dir = Dir::new(fd).map_err(errno_to_io)?;
    for ent in dir.by_ref() {
        let ent = ent.map_err(errno_to_io)?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_owned());
        }
    }
    Ok(out)
}

/// Removes `name` in directory `parent`, recursively if it is a directory,
/// never following symlinks.
pub(crate) fn remove_at(parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Err(Errno::PERM.into());
    }
    let dfd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let listing = rustix::fs::openat(
        &dfd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for child in list_dir(listing)? {
        remove_at(&dfd, &child)?;
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> UnpackOptions {
        UnpackOptions {
            preserve_ownership: false,
            allow_devices: false,
            whiteouts: WhiteoutMode::Delete,
            ..UnpackOptions::default()
        }
    }

    struct Tb(tar::Builder<Vec<u8>>);
    impl Tb {
        fn new() -> Self {
            Tb(tar::Builder::new(Vec::new()))
        }
        fn hdr(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(size);
            h.set_mtime(1_000_000);
            h.set_uid(0);
            h.set_gid(0);
            h
        }
        /// Writes the name straight into the header (bypassing the tar
        /// crate's own path checks) so hostile names can be built.
        fn raw_name(h: &mut tar::Header, name: &str) {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name = [0; 100];
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        }
        fn file(mut self, name: &str, data: &[u8]) -> Self {
            let mut h = Self::hdr(tar::EntryType::Regular, 0o644, data.len() as u64);
            Self::raw_name(&mut h, name);
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }
        fn dir(mut self, name: &str, mode: u32) -> Self {
            let mut h = Self::hdr(tar::EntryType::Directory, mode, 0);
            Self::raw_name(&mut h, name);
            h.set_cksum();
            self.0.append(&h, &[][..]).unwrap();
            self
        }
        fn link(mut self, kind: tar::EntryType, name: &str, target: &str) -> Self {
            let mut h = Self::hdr(kind, 0o777, 0);
            Self::raw_name(&mut h, name);
            let gnu = h.as_gnu_mut().unwrap();
            gnu.linkname = [0; 100];
            gnu.linkname[..target.len()].copy_from_slice(target.as_bytes());
            h.set_cksum();
            self.0.append(&h, &[][..]).unwrap();
            self
        }
        fn dev(mut self, name: &str) -> Self {
            let mut h = Self::hdr(tar::EntryType::Char, 0o666, 0);
            Self::raw_name(&mut h, name);
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
            h.set_cksum();
            self.0.append(&h, &[][..]).unwrap();
            self
        }
        fn fifo(mut self, name: &str) -> Self {
            let mut h = Self::hdr(tar::EntryType::Fifo, 0o640, 0);
            Self::raw_name(&mut h, name);
            h.set_cksum();
            self.0.append(&h, &[][..]).unwrap();
            self
        }
        fn xattr_file(mut self, name: &str, key: &str, value: &str) -> Self {
            self.0
                .append_pax_extensions([(format!("SCHILY.xattr.{key}").as_str(), value.as_bytes())])
                .unwrap();
            self.file(name, b"x")
        }
        /// A GNU sparse entry (type `S`, as `tar --sparse --format=gnu`
        /// writes it): `chunks` at their offsets in a file of `real` bytes.
        /// Every chunk but the last must be a multiple of 512 bytes long.
        fn gnu_sparse(mut self, name: &str, real: u64, chunks: &[(u64, &[u8])]) -> Self {
            assert!(chunks.len() < 4, "one header holds four map entries");
            let stored: usize = chunks.iter().map(|c| c.1.len()).sum();
            let mut h = Self::hdr(tar::EntryType::GNUSparse, 0o644, stored as u64);
            Self::raw_name(&mut h, name);
            let gnu = h.as_gnu_mut().unwrap();
            gnu.set_real_size(real);
            let ends_in_hole = chunks
                .last()
                .is_none_or(|(o, d)| o + d.len() as u64 != real);
            let mut map: Vec<(u64, u64)> =
                chunks.iter().map(|(o, d)| (*o, d.len() as u64)).collect();
            if ends_in_hole {
                map.push((real, 0));
            }
            for (i, (o, l)) in map.into_iter().enumerate() {
                gnu.sparse[i].set_offset(o);
                gnu.sparse[i].set_length(l);
            }
            h.set_cksum();
            let data: Vec<u8> = chunks.iter().flat_map(|c| c.1.iter().copied()).collect();
            self.0.append(&h, &data[..]).unwrap();
            self
        }
        /// A PAX sparse entry of GNU tar's format `version` ("0.0", "0.1"
        /// or "1.0").
        fn pax_sparse(
            mut self,
            version: &str,
            name: &str,
            real: u64,
            chunks: &[(u64, &[u8])],
        ) -> Self {
            let n = chunks.len().to_string();
            let real_s = real.to_string();
            let nums: Vec<String> = chunks
                .iter()
                .flat_map(|(o, d)| [o.to_string(), d.len().to_string()])
                .collect();
            let mut data: Vec<u8> = Vec::new();
            let mut keys: Vec<(String, Vec<u8>)> = Vec::new();
            let mut header_name = name.to_string();
            match version {
                "0.0" => {
                    keys.push(("GNU.sparse.size".into(), real_s.clone().into()));
                    keys.push(("GNU.sparse.numblocks".into(), n.clone().into()));
                    for pair in nums.chunks(2) {
                        keys.push(("GNU.sparse.offset".into(), pair[0].clone().into()));
                        keys.push(("GNU.sparse.numbytes".into(), pair[1].clone().into()));
                    }
                }
                "0.1" => {
                    keys.push(("GNU.sparse.size".into(), real_s.clone().into()));
                    keys.push(("GNU.sparse.numblocks".into(), n.clone().into()));
                    keys.push(("GNU.sparse.map".into(), nums.join(",").into()));
                }
                "1.0" => {
                    keys.push(("GNU.sparse.major".into(), b"1".to_vec()));
                    keys.push(("GNU.sparse.minor".into(), b"0".to_vec()));
                    keys.push(("GNU.sparse.name".into(), name.as_bytes().to_vec()));
                    keys.push(("GNU.sparse.realsize".into(), real_s.clone().into()));
                    header_name = format!("./GNUSparseFile.7/{name}");
                    data.extend(format!("{n}\n").bytes());
                    for x in &nums {
                        data.extend(format!("{x}\n").bytes());
                    }
                    data.resize(data.len().div_ceil(512) * 512, 0);
                }
                v => panic!("no sparse format {v}"),
            }
            for (_, d) in chunks {
                data.extend_from_slice(d);
            }
            self.0
                .append_pax_extensions(keys.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .unwrap();
            let mut h = Self::hdr(tar::EntryType::Regular, 0o644, data.len() as u64);
            Self::raw_name(&mut h, &header_name);
            h.set_cksum();
            self.0.append(&h, &data[..]).unwrap();
            self
        }
        fn build(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    /// A layer dir plus an empty sibling that must stay empty.
    struct Env {
        _t: tempfile::TempDir,
        layer: PathBuf,
        sibling: PathBuf,
    }
    fn env() -> Env {
        let t = tempfile::tempdir().unwrap();
        let layer = t.path().join("layer");
        let sibling = t.path().join("sibling");
        std::fs::create_dir(&layer).unwrap();
        std::fs::create_dir(&sibling).unwrap();
        Env {
            _t: t,
            layer,
            sibling,
        }
    }
    impl Env {
        fn sibling_empty(&self) -> bool {
            std::fs::read_dir(&self.sibling).unwrap().next().is_none()
        }
    }

    fn apply(e: &Env, tar: &[u8], o: &UnpackOptions) -> Result<UnpackStats, UnpackError> {
        apply_layer(&e.layer, tar, Compression::None, o)
    }

    fn refused(e: &Env, tar: Vec<u8>) -> UnpackError {
        let err = apply(e, &tar, &opts()).unwrap_err();
        assert!(e.sibling_empty(), "sibling written: {err}");
        err
    }

    #[test]
    fn media_types() {
        use Compression::*;
        for (mt, c) in [
            ("application/vnd.oci.image.layer.v1.tar", Some(None)),
            ("application/vnd.oci.image.layer.v1.tar+gzip", Some(Gzip)),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Some(Zstd)),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Some(Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some(Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Some(Gzip),
            ),
            ("application/json", Option::None),
        ] {
            assert_eq!(Compression::from_media_type(mt), c, "{mt}");
        }
    }

    #[test]
    fn refuses_absolute_path() {
        let e = env();
        let err = refused(&e, Tb::new().file("/abs", b"x").build());
        assert!(
            matches!(err, UnpackError::Refused { ref path, .. } if path == "/abs"),
            "{err}"
        );
    }

    #[test]
    fn root_entry_is_the_layer_itself() {
        for root in ["/", "./", "."] {
            assert_eq!(
                clean_path(Path::new(root)).unwrap(),
                PathBuf::new(),
                "{root}"
            );
        }
        assert!(clean_path(Path::new("/..")).is_err());
        assert!(clean_path(Path::new("/etc")).is_err());
    }

    #[test]
    fn refuses_dotdot() {
        let e = env();
        let err = refused(&e, Tb::new().file("../sibling/x", b"x").build());
        assert!(matches!(err, UnpackError::Refused { .. }), "{err}");
        let err = refused(&e, Tb::new().file("a/../../sibling/x", b"x").build());
        assert!(err.to_string().contains("a/../../sibling/x"), "{err}");
    }

    #[test]
    fn refuses_symlink_escape() {
        let e = env();
        let target = e.sibling.to_str().unwrap().to_string();
        let tar = Tb::new()
            .link(tar::EntryType::Symlink, "evil", &target)
            .file("evil/x", b"x")
            .build();
        let err = refused(&e, tar);
        assert!(
            matches!(err, UnpackError::Refused { ref path, .. } if path == "evil/x"),
            "{err}"
        );
        // Relative escape too.
        let e = env();
        let tar = Tb::new()
            .link(tar::EntryType::Symlink, "rel", "../sibling")
            .file("rel/x", b"x")
            .build();
        refused(&e, tar);
    }

    #[test]
    fn refuses_hardlink_escape() {
        let e = env();
        std::fs::write(e.layer.parent().unwrap().join("secret"), b"s").unwrap();
        for t in ["/etc/passwd", "../secret"] {
            let err = refused(&e, Tb::new().link(tar::EntryType::Link, "h", t).build());
            assert!(
                matches!(err, UnpackError::Refused { ref path, .. } if path == "h"),
                "{err}"
            );
        }
        let tar = Tb::new()
            .link(tar::EntryType::Symlink, "up", "..")
            .link(tar::EntryType::Link, "h", "up/secret")
            .build();
        let err = refused(&e, tar);
        assert!(matches!(err, UnpackError::Refused { .. }), "{err}");
    }

    #[test]
    fn refuses_whiteout_outside() {
        let e = env();
        std::fs::write(e.sibling.join("keep"), b"k").unwrap();
        let tar = Tb::new()
            .link(tar::EntryType::Symlink, "s", "../sibling")
            .file("s/.wh.keep", b"")
            .build();
        assert!(apply(&e, &tar, &opts()).is_err());
        assert!(e.sibling.join("keep").exists());
        let e = env();
        let err = refused(&e, Tb::new().file(".wh..", b"").build());
        assert!(matches!(err, UnpackError::Refused { .. }), "{err}");
    }

    #[test]
    fn refuses_devices_when_not_allowed() {
        let e = env();
        let err = refused(&e, Tb::new().dev("null").build());
        assert!(
            matches!(err, UnpackError::DeviceNotAllowed(ref p) if p == "null"),
            "{err}"
        );
    }

    /// The decompressing thread's errors reach the extracting side: a gzip
    /// stream cut short, or corrupted, fails the layer; a large one streams
    /// through many chunks whole.
    #[test]
    fn pipelined_gzip_errors_and_large_streams() {
        let e = env();
        let big: Vec<u8> = (0..3 * BUF_SIZE + 17)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let tar = Tb::new().file("big", &big).file("small", b"s").build();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();

        let st = apply_layer(&e.layer, &gz[..], Compression::Gzip, &opts()).unwrap();
        assert_eq!(std::fs::read(e.layer.join("big")).unwrap(), big);
        assert_eq!(st.diff_id, Digest::sha256_of(&tar));

        let e = env();
        let cut = &gz[..gz.len() / 2];
        let err = apply_layer(&e.layer, cut, Compression::Gzip, &opts()).unwrap_err();
        assert!(
            matches!(err, UnpackError::Read(_) | UnpackError::Entry { .. }),
            "{err}"
        );

        let e = env();
        let mut bad = gz.clone();
        let mid = bad.len() / 2;
        bad[mid..mid + 64].fill(0xff);
        assert!(apply_layer(&e.layer, &bad[..], Compression::Gzip, &opts()).is_err());
    }

    /// A tar whose first member is an extension header (`kind`: PAX `x` or
    /// GNU long name `L`) of `size` bytes, followed by a file.
    fn with_extension_header(kind: u8, size: usize) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(size as u64);
        h.set_mode(0o644);
        Tb::raw_name(&mut h, "././@LongLink");
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        // PAX records ("LEN key=value\n") or a long name, padded to blocks.
        let mut data = if kind == b'x' {
            let value = "a".repeat(size - 32);
            let rec = format!("comment={value}\n");
            let len = rec.len() + 1 + (rec.len() + 1).to_string().len();
            let mut full = format!("{len} {rec}");
            if full.len() != len {
                full = format!("{} {rec}", full.len());
            }
            full.into_bytes()
        } else {
            vec![b'a'; size]
        };
        h.set_size(data.len() as u64);
        h.set_cksum();
        out[..512].copy_from_slice(h.as_bytes());
        data.resize(data.len().div_ceil(512) * 512, 0);
        out.extend(data);
        out.extend(Tb::new().file("after", b"x").build());
        out
    }

    #[test]
    fn huge_extension_headers_are_refused_before_they_fill_memory() {
        let e = env();
        // An ordinary size for each: a PAX record with a 100 KiB value, a
        // long name of 200 bytes.
        for (kind, ordinary) in [(b'x', 100 << 10), (b'L', 200)] {
            let big = with_extension_header(kind, 20 << 20);
            match apply(&e, &big, &opts()) {
                Err(UnpackError::HeadersTooLarge { after, max }) => {
                    assert_eq!(after, "start of layer");
                    assert_eq!(max, MAX_HEADERS_BETWEEN_ENTRIES);
                }
                other => panic!("{}: {other:?}", kind as char),
            }
            // Headers of an ordinary size still go through.
            let small = with_extension_header(kind, ordinary);
            apply(&e, &small, &opts()).unwrap_or_else(|e| panic!("{}: {e:.200}", kind as char));
        }
    }

    #[test]
    fn bomb_and_entry_limits() {
        let e = env();
        let big = vec![0u8; 1 << 20];
        let tar = Tb::new().file("big", &big).build();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let o = UnpackOptions {
            max_size: 64 * 1024,
            ..opts()
        };
        let err = apply_layer(&e.layer, &gz[..], Compression::Gzip, &o).unwrap_err();
        assert!(matches!(err, UnpackError::TooLarge(_)), "{err}");

        let e = env();
        let tar = Tb::new()
            .file("a", b"")
            .file("b", b"")
            .file("c", b"")
            .build();
        let o = UnpackOptions {
            max_entries: 2,
            ..opts()
        };
        let err = apply(&e, &tar, &o).unwrap_err();
        assert!(matches!(err, UnpackError::TooManyEntries(2)), "{err}");
    }

    fn sample() -> Vec<u8> {
        Tb::new()
            .dir("./", 0o755)
            .dir("./d", 0o750)
            .file("./d/f", b"hello")
            .link(tar::EntryType::Symlink, "./d/s", "f")
            .link(tar::EntryType::Link, "./d/h", "d/f")
            .fifo("./p")
            .file("implicit/parent/file", b"deep")
            .build()
    }

    #[test]
    fn diff_id_and_compressions() {
        let tar = sample();
        let want = Digest::sha256_of(&tar);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&tar[..], 3).unwrap();
        for (data, c) in [
            (tar.clone(), Compression::None),
            (gz, Compression::Gzip),
            (zs, Compression::Zstd),
        ] {
            let e = env();
            let st = apply_layer(&e.layer, &data[..], c, &opts()).unwrap();
            assert_eq!(st.diff_id, want, "{c:?}");
            assert_eq!(st.size, tar.len() as u64);
            assert_eq!(st.entries, 7);
            let l = &e.layer;
            assert_eq!(std::fs::read(l.join("d/f")).unwrap(), b"hello");
            assert_eq!(
                std::fs::read(l.join("implicit/parent/file")).unwrap(),
                b"deep"
            );
        }
    }

    #[test]
    fn keeps_links_modes_times() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let e = env();
        apply(&e, &sample(), &opts()).unwrap();
        let l = &e.layer;
        assert_eq!(std::fs::read_link(l.join("d/s")).unwrap(), Path::new("f"));
        let f = std::fs::metadata(l.join("d/f")).unwrap();
        let h = std::fs::metadata(l.join("d/h")).unwrap();
        assert_eq!(f.ino(), h.ino());
        assert_eq!(f.mode() & 0o7777, 0o644);
        assert_eq!(f.mtime(), 1_000_000);
        let d = std::fs::metadata(l.join("d")).unwrap();
        assert_eq!(d.mode() & 0o7777, 0o750);
        assert_eq!(d.mtime(), 1_000_000);
        assert!(std::fs::symlink_metadata(l.join("p"))
            .unwrap()
            .file_type()
            .is_fifo());
        let s = std::fs::symlink_metadata(l.join("d/s")).unwrap();
        assert_eq!(s.mtime(), 1_000_000);
    }

    #[test]
    fn later_entry_replaces_earlier() {
        let e = env();
        let tar = Tb::new()
            .file("a", b"one")
            .file("a", b"two")
            .dir("d", 0o755)
            .file("d/keep", b"k")
            .dir("d", 0o700)
            .link(tar::EntryType::Symlink, "x", "a")
            .file("x", b"file now")
            .dir("y", 0o755)
            .file("y/z", b"z")
            .file("y", b"was dir")
            .build();
        apply(&e, &tar, &opts()).unwrap();
        let l = &e.layer;
        assert_eq!(std::fs::read(l.join("a")).unwrap(), b"two");
        assert_eq!(std::fs::read(l.join("d/keep")).unwrap(), b"k");
        assert!(std::fs::symlink_metadata(l.join("x")).unwrap().is_file());
        assert_eq!(std::fs::read(l.join("y")).unwrap(), b"was dir");
    }

    #[test]
    fn delete_mode_whiteouts_and_opaque() {
        let e = env();
        let lower = Tb::new()
            .file("gone", b"g")
            .file("stay", b"s")
            .dir("opq", 0o755)
            .file("opq/old", b"o")
            .dir("opq/olddir", 0o755)
            .file("opq/olddir/x", b"x")
            .build();
        apply(&e, &lower, &opts()).unwrap();
        let upper = Tb::new()
            .file(".wh.gone", b"")
            .file(".wh.never-existed", b"")
            .dir("opq", 0o755)
            .file("opq/new", b"n")
            .file("opq/.wh..wh..opq", b"")
            .build();
        apply(&e, &upper, &opts()).unwrap();
        let l = &e.layer;
        assert!(!l.join("gone").exists());
        assert!(l.join("stay").exists());
        let mut names: Vec<_> = std::fs::read_dir(l.join("opq"))
            .unwrap()
            .map(|d| d.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["new"]);
    }

    #[test]
    fn xattrs_from_pax() {
        let e = env();
        let tar = Tb::new().xattr_file("x", "user.berth", "v1").build();
        match apply(&e, &tar, &opts()) {
            Ok(_) => {
                if let Ok(Some(v)) = xattr::get(e.layer.join("x"), "user.berth") {
                    assert_eq!(v, b"v1");
                }
            }
            Err(err) => panic!("{err}"),
        }
    }

    #[test]
    fn trailing_data_is_hashed() {
        let e = env();
        let mut tar = sample();
        tar.extend_from_slice(&[0u8; 4096]);
        let st = apply(&e, &tar, &opts()).unwrap();
        assert_eq!(st.diff_id, Digest::sha256_of(&tar));
        assert_eq!(st.size, tar.len() as u64);
    }

    /// A sparse entry counts at its full size against the limit, in GNU's
    /// own format and in the three PAX ones, and the error names the entry;
    /// under the limit it is written with its holes as holes, the data at
    /// their offsets, and under its real name.
    #[test]
    fn sparse_files_count_their_full_size_and_keep_their_holes() {
        use std::os::unix::fs::MetadataExt;
        const REAL: u64 = 1 << 30;
        let head = vec![b'h'; 1024];
        let mid = b"middle of the sparse file";
        let chunks: [(u64, &[u8]); 2] = [(0, &head), (REAL / 2, mid)];
        let layers: Vec<(&str, Vec<u8>)> = vec![
            ("gnu", Tb::new().gnu_sparse("big", REAL, &chunks).build()),
            (
                "pax 0.0",
                Tb::new().pax_sparse("0.0", "big", REAL, &chunks).build(),
            ),
            (
                "pax 0.1",
                Tb::new().pax_sparse("0.1", "big", REAL, &chunks).build(),
            ),
            (
                "pax 1.0",
                Tb::new().pax_sparse("1.0", "big", REAL, &chunks).build(),
            ),
        ];
        for (what, tar) in layers {
            // The stream is a few KiB; the file is 1 GiB.
            assert!(tar.len() < 8192, "{what}: {}", tar.len());
            let e = env();
            let small = UnpackOptions {
                max_size: 64 << 20,
                ..opts()
            };
            let err = apply(&e, &tar, &small).unwrap_err();
            match &err {
                UnpackError::EntryTooLarge {
                    path, size, max, ..
                } => {
                    assert_eq!(
                        (path.as_str(), *size, *max),
                        ("big", REAL, 64 << 20),
                        "{what}"
                    );
                }
                other => panic!("{what}: {other}"),
            }
            let msg = err.to_string();
            assert!(
                msg.contains("\"big\"") && msg.contains("sparse"),
                "{what}: {msg}"
            );

            let e = env();
            let st = apply(&e, &tar, &opts()).unwrap();
            assert_eq!(st.diff_id, Digest::sha256_of(&tar), "{what}");
            let names: Vec<_> = std::fs::read_dir(&e.layer)
                .unwrap()
                .map(|d| d.unwrap().file_name())
                .collect();
            assert_eq!(names, ["big"], "{what}");
            let p = e.layer.join("big");
            let md = std::fs::metadata(&p).unwrap();
            assert_eq!(md.len(), REAL, "{what}");
            assert!(
                md.blocks() * 512 < 1 << 20,
                "{what}: {} blocks",
                md.blocks()
            );
            let f = File::open(&p).unwrap();
            let mut got = vec![0u8; 1024];
            f.read_exact_at(&mut got, 0).unwrap();
            assert_eq!(got, head, "{what}");
            let mut got = vec![0u8; mid.len() + 2];
            f.read_exact_at(&mut got, REAL / 2 - 1).unwrap();
            assert_eq!(got[0], 0, "{what}");
            assert_eq!(&got[1..=mid.len()], mid, "{what}");
            assert_eq!(got[mid.len() + 1], 0, "{what}");
        }
    }

    /// Many files, each under the limit, add up past it.
    #[test]
    fn the_limit_holds_for_the_sum_of_the_files() {
        let e = env();
        let tar = Tb::new()
            .gnu_sparse("a", 40 << 20, &[])
            .gnu_sparse("b", 40 << 20, &[])
            .build();
        let o = UnpackOptions {
            max_size: 64 << 20,
            ..opts()
        };
        let err = apply(&e, &tar, &o).unwrap_err();
        assert!(
            matches!(err, UnpackError::EntryTooLarge { ref path, .. } if path == "b"),
            "{err}"
        );
    }

    /// A PAX sparse map that does not fit its data, or reaches past the
    /// file's end, is refused.
    #[test]
    fn bad_sparse_maps_are_refused() {
        let e = env();
        // Chunks past the real size.
        let tar = Tb::new()
            .pax_sparse("0.1", "f", 100, &[(90, b"0123456789012")])
            .build();
        let err = apply(&e, &tar, &opts()).unwrap_err();
        assert!(
            matches!(err, UnpackError::Refused { ref path, .. } if path == "f"),
            "{err}"
        );
        // Overlapping chunks.
        let e = env();
        let tar = Tb::new()
            .pax_sparse("1.0", "g", 100, &[(10, b"abc"), (11, b"def")])
            .build();
        let err = apply(&e, &tar, &opts()).unwrap_err();
        assert!(
            matches!(err, UnpackError::Refused { ref path, .. } if path == "g"),
            "{err}"
        );
        // A map whose count claims more than the data can hold.
        let e = env();
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("GNU.sparse.major", &b"1"[..]),
            ("GNU.sparse.minor", &b"0"[..]),
            ("GNU.sparse.name", &b"h"[..]),
            ("GNU.sparse.realsize", &b"100"[..]),
        ])
        .unwrap();
        let mut data = b"99999999\n".to_vec();
        data.resize(512, 0);
        let mut h = Tb::hdr(tar::EntryType::Regular, 0o644, data.len() as u64);
        Tb::raw_name(&mut h, "GNUSparseFile.1/h");
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
        let err = apply(&e, &b.into_inner().unwrap(), &opts()).unwrap_err();
        assert!(
            matches!(err, UnpackError::Refused { ref path, .. } if path == "h"),
            "{err}"
        );
    }
}
