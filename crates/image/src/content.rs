//! The content-addressed blob store.
//!
//! Layout under the store's root:
//!
//! - `blobs/<algorithm>/<hex>`: committed blobs, named by their digest. A blob
//!   appears there only by `rename(2)` after its bytes were fsynced and hashed,
//!   so a blob file always holds exactly the content its name promises (unless
//!   the disk rots, which `check` finds).
//! - `ingest/<hex>/data`, `ingest/<hex>/lock`: a blob being written. The
//!   writer holds an exclusive `flock(2)` on `lock` for as long as its
//!   [`Ingest`] lives. A second [`ContentStore::ingest`] of the same digest, in
//!   this or another process, **blocks** until the first one is committed,
//!   aborted or dropped, and then continues from whatever partial data is
//!   left (nothing, after a commit or abort).
//! - `tmp/`: temporary files of [`ContentStore::put_bytes`], renamed into
//!   `blobs/` when complete.
//!
//! The store is safe to share between threads and processes: every mutation
//! is a rename, an unlink or happens under an ingest lock.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustix::fs::{flock, FlockOperation};

use crate::digest::{Algorithm, Digest, Hasher};

/// Errors of the content store.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The blob is not in the store.
    #[error("blob {0} not found in the content store")]
    NotFound(Digest),
    /// Written content does not hash to the digest it was ingested as.
    #[error("content digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest the content was supposed to have.
        expected: Digest,
        /// What it hashed to.
        actual: Digest,
    },
    /// Written content does not have the announced size.
    #[error("blob {digest}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The announced size.
        expected: u64,
        /// What was written.
        actual: u64,
    },
    /// A capped read found a larger blob.
    #[error("blob {digest} is {size} bytes, more than the {max} bytes allowed here")]
    TooLarge {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// Another writer holds the ingest.
    #[error("ingest of {0} is in use by another writer")]
    IngestLocked(Digest),
    /// An I/O error, with what was being done (naming the path).
    #[error("{context}: {source}")]
    Io {
        /// What failed.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ContentError {
    let context = context.into();
    move |source| ContentError::Io { context, source }
}

/// A partial blob in `ingest/`.
#[derive(Debug, Clone)]
pub struct IngestInfo {
    /// The digest it is being written as.
    pub digest: Digest,
    /// Bytes written so far.
    pub size: u64,
    /// Last modification of the partial data (or of the ingest directory).
    pub modified: SystemTime,
    /// Whether a writer holds it now.
    pub locked: bool,
}

/// The content store. Cheap to clone; `Send + Sync`.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

fn fsync_dir(dir: &Path) -> Result<(), ContentError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(format!("fsync directory {}", dir.display())))
}

fn algo_dir(a: Algorithm) -> &'static str {
    a.as_str()
}

impl ContentStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Self, ContentError> {
        for sub in ["blobs/sha256", "blobs/sha512", "ingest", "tmp"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io_err(format!("create {}", p.display())))?;
        }
        Ok(ContentStore {
            root: root.to_path_buf(),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A directory for temporary files on the store's filesystem.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The size of blob `d`, or None if it is not in the store.
    pub fn info(&self, d: &Digest) -> Result<Option<u64>, ContentError> {
        let p = self.blob_path(d);
        match fs::metadata(&p) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(format!("stat {}", p.display()))(e)),
        }
    }

    /// Where blob `d` lives (whether or not it exists).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(algo_dir(d.algorithm()))
            .join(d.hex())
    }

    /// Opens blob `d` for reading.
    pub fn open_blob(&self, d: &Digest) -> Result<File, ContentError> {
        let p = self.blob_path(d);
        File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ContentError::NotFound(d.clone())
            } else {
                io_err(format!("open {}", p.display()))(e)
            }
        })
    }

    /// Reads all of blob `d`, refusing blobs larger than `max` bytes.
    pub fn read_blob(&self, d: &Digest, max: u64) -> Result<Vec<u8>, ContentError> {
        let f = self.open_blob(d)?;
        let p = self.blob_path(d);
        let size = f
            .metadata()
            .map_err(io_err(format!("stat {}", p.display())))?
            .len();
        if size > max {
            return Err(ContentError::TooLarge {
                digest: d.clone(),
                size,
                max,
            });
        }
        let mut buf = Vec::with_capacity(size as usize);
        f.take(max + 1)
            .read_to_end(&mut buf)
            .map_err(io_err(format!("read {}", p.display())))?;
        if buf.len() as u64 > max {
            return Err(ContentError::TooLarge {
                digest: d.clone(),
                size: buf.len() as u64,
                max,
            });
        }
        Ok(buf)
    }

    /// Stores `data` atomically and returns its digest (SHA-256, or the
    /// algorithm of `expected`). With `expected`, content that hashes to
    /// something else is refused and nothing is written.
    pub fn put_bytes(
        &self,
        data: &[u8],
        expected: Option<&Digest>,
    ) -> Result<Digest, ContentError> {
        let algo = expected.map_or(Algorithm::Sha256, |e| e.algorithm());
        let mut h = Hasher::new(algo);
        h.update(data);
        let actual = h.finish();
        if let Some(e) = expected {
            if *e != actual {
                return Err(ContentError::DigestMismatch {
                    expected: e.clone(),
                    actual,
                });
            }
        }
        if self.info(&actual)?.is_some() {
            return Ok(actual);
        }
        let tmp_dir = self.tmp_dir();
        let mut tmp = tempfile::Builder::new()
            .prefix("put-")
            .tempfile_in(&tmp_dir)
            .map_err(io_err(format!(
                "create a temporary file in {}",
                tmp_dir.display()
            )))?;
        tmp.write_all(data)
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(io_err(format!("write {}", tmp.path().display())))?;
        let dest = self.blob_path(&actual);
        tmp.persist(&dest)
            .map_err(|e| io_err(format!("rename into {}", dest.display()))(e.error))?;
        fsync_dir(dest.parent().unwrap_or(&self.root))?;
        Ok(actual)
    }

    fn ingest_dir(&self, d: &Digest) -> PathBuf {
        self.root.join("ingest").join(d.hex())
    }

    /// Opens (or creates) the lock file of ingest `d` and locks it. Retries
    /// when the lock file was removed (by a commit or abort) while waiting, so
    /// that the lock held is always the one on the path.
    fn lock_ingest(&self, d: &Digest, wait: bool) -> Result<File, ContentError> {
        let dir = self.ingest_dir(d);
        let lock_path = dir.join("lock");
        loop {
            fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
            let lock = match OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock_path)
            {
                Ok(f) => f,
                // The directory was removed between create_dir_all and open.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(format!("open {}", lock_path.display()))(e)),
            };
            let op = if wait {
                FlockOperation::LockExclusive
            } else {
                FlockOperation::NonBlockingLockExclusive
            };
            match flock(&lock, op) {
                Ok(()) => {}
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                    return Err(ContentError::IngestLocked(d.clone()))
                }
                Err(e) => return Err(io_err(format!("flock {}", lock_path.display()))(e.into())),
            }
            let held = lock
                .metadata()
                .map_err(io_err(format!("stat {}", lock_path.display())))?;
            match fs::metadata(&lock_path) {
                Ok(m) if m.ino() == held.ino() && m.dev() == held.dev() => return Ok(lock),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(format!("stat {}", lock_path.display()))(e)),
            }
        }
    }

    /// Starts (or resumes) writing blob `d`. Holds an exclusive lock on the
    /// ingest for as long as the returned [`Ingest`] lives; a concurrent
    /// ingest of the same digest waits here until it is released. Partial data
    /// left by an earlier writer is re-hashed and kept: [`Ingest::offset`]
    /// says how much, and writes append to it. Partial data longer than
    /// `expected_size` is discarded.
    pub fn ingest(&self, d: &Digest, expected_size: Option<u64>) -> Result<Ingest, ContentError> {
        let lock = self.lock_ingest(d, true)?;
        let dir = self.ingest_dir(d);
        let data_path = dir.join("data");
        let mut data = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data_path)
            .map_err(io_err(format!("open {}", data_path.display())))?;
        let mut hasher = Hasher::new(d.algorithm());
        let mut offset = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = data
                .read(&mut buf)
                .map_err(io_err(format!("read {}", data_path.display())))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        if expected_size.is_some_and(|s| offset > s) {
            data.set_len(0)
                .map_err(io_err(format!("truncate {}", data_path.display())))?;
            hasher = Hasher::new(d.algorithm());
            offset = 0;
        }
        data.seek(SeekFrom::Start(offset))
            .map_err(io_err(format!("seek {}", data_path.display())))?;
        Ok(Ingest {
            store: self.clone(),
            digest: d.clone(),
            expected_size,
            data,
            _lock: lock,
            hasher,
            offset,
            written: offset,
        })
    }

    /// Deletes blob `d`; false if it was not there.
    pub fn delete(&self, d: &Digest) -> Result<bool, ContentError> {
        let p = self.blob_path(d);
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(format!("remove {}", p.display()))(e)),
        }
    }

    /// Every committed blob and its size, sorted by digest.
    pub fn list(&self) -> Result<Vec<(Digest, u64)>, ContentError> {
        let mut out = Vec::new();
        for algo in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root.join("blobs").join(algo_dir(algo));
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(format!("read {}", dir.display()))(e)),
            };
            for ent in rd {
                let ent = ent.map_err(io_err(format!("read {}", dir.display())))?;
                let name = ent.file_name();
                let Some(name) = name.to_str() else { continue };
                let Ok(d) = format!("{}:{name}", algo.as_str()).parse::<Digest>() else {
                    continue;
                };
                match ent.metadata() {
                    Ok(m) if m.is_file() => out.push((d, m.len())),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(format!("stat {}", ent.path().display()))(e)),
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every ingest in progress or left behind.
    pub fn ingests(&self) -> Result<Vec<IngestInfo>, ContentError> {
        let dir = self.root.join("ingest");
        let mut out = Vec::new();
        let rd = fs::read_dir(&dir).map_err(io_err(format!("read {}", dir.display())))?;
        for ent in rd {
            let ent = ent.map_err(io_err(format!("read {}", dir.display())))?;
            let Some(name) = ent.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let algo = if name.len() == 128 {
                "sha512"
            } else {
                "sha256"
            };
            let Ok(d) = format!("{algo}:{name}").parse::<Digest>() else {
                continue;
            };
            let data = ent.path().join("data");
            let (size, modified) = match fs::metadata(&data).or_else(|_| fs::metadata(ent.path())) {
                Ok(m) => (
                    if m.is_file() { m.len() } else { 0 },
                    m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                ),
                // Committed or aborted meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(format!("stat {}", data.display()))(e)),
            };
            let locked = self.is_locked(&ent.path().join("lock"))?;
            out.push(IngestInfo {
                digest: d,
                size,
                modified,
                locked,
            });
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    fn is_locked(&self, lock_path: &Path) -> Result<bool, ContentError> {
        let f = match File::open(lock_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(format!("open {}", lock_path.display()))(e)),
        };
        match flock(&f, FlockOperation::NonBlockingLockShared) {
            Ok(()) => Ok(false),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(true),
            Err(e) => Err(io_err(format!("flock {}", lock_path.display()))(e.into())),
        }
    }

    /// Removes a left-behind ingest. Fails with [`ContentError::IngestLocked`]
    /// if a writer holds it.
    pub fn remove_ingest(&self, d: &Digest) -> Result<(), ContentError> {
        let dir = self.ingest_dir(d);
        if !dir.exists() {
            return Ok(());
        }
        let _lock = self.lock_ingest(d, false)?;
        remove_ingest_dir(&dir)
    }
}

/// Removes an ingest directory: data first, then the lock file, then the
/// directory, so that a waiter that wins the lock sees the lock file gone.
fn remove_ingest_dir(dir: &Path) -> Result<(), ContentError> {
    for f in ["data", "lock"] {
        let p = dir.join(f);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("remove {}", p.display()))(e)),
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        // NotFound: removed by someone else; DirectoryNotEmpty: a waiter
        // already recreated its lock file — either way, not ours to remove.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(()),
        Err(e) => Err(io_err(format!("remove {}", dir.display()))(e)),
    }
}

/// A blob being written. Holds the ingest lock while alive. Dropping it
/// without [`Ingest::commit`] keeps the partial data for a later resume.
#[derive(Debug)]
pub struct Ingest {
    store: ContentStore,
    digest: Digest,
    expected_size: Option<u64>,
    data: File,
    _lock: File,
    hasher: Hasher,
    offset: u64,
    written: u64,
}

impl Ingest {
    /// Bytes that were already present (a resumed partial), already hashed.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes present now (resumed plus written).
    pub fn size(&self) -> u64 {
        self.written
    }

    /// The digest being ingested.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// A reader over the bytes that were present when the ingest was opened
    /// (the first [`Ingest::offset`] bytes), from the start.
    pub fn partial(&self) -> Result<File, ContentError> {
        let p = self.data_path();
        let f = File::open(&p).map_err(io_err(format!("open {}", p.display())))?;
        Ok(f)
    }

    fn data_path(&self) -> PathBuf {
        self.store.ingest_dir(&self.digest).join("data")
    }

    /// Fsyncs, verifies size and digest, and moves the blob into place. On a
    /// mismatch the partial data is deleted and the error names both digests
    /// (or sizes). If the blob already exists the ingest is simply dropped.
    pub fn commit(mut self) -> Result<(), ContentError> {
        let data_path = self.data_path();
        let dir = self.store.ingest_dir(&self.digest);
        self.data
            .flush()
            .and_then(|_| self.data.sync_all())
            .map_err(io_err(format!("fsync {}", data_path.display())))?;
        if let Some(expected) = self.expected_size {
            if expected != self.written {
                remove_ingest_dir(&dir)?;
                return Err(ContentError::SizeMismatch {
                    digest: self.digest.clone(),
                    expected,
                    actual: self.written,
                });
            }
        }
        let actual = self.hasher.finish();
        if actual != self.digest {
            remove_ingest_dir(&dir)?;
            return Err(ContentError::DigestMismatch {
                expected: self.digest.clone(),
                actual,
            });
        }
        let dest = self.store.blob_path(&self.digest);
        if dest.exists() {
            return remove_ingest_dir(&dir);
        }
        fs::rename(&data_path, &dest).map_err(io_err(format!(
            "rename {} to {}",
            data_path.display(),
            dest.display()
        )))?;
        fsync_dir(dest.parent().unwrap_or(self.store.root()))?;
        remove_ingest_dir(&dir)
    }

    /// Deletes the partial data.
    pub fn abort(self) -> Result<(), ContentError> {
        remove_ingest_dir(&self.store.ingest_dir(&self.digest))
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.data.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.data.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let t = tempfile::tempdir().unwrap();
        let s = ContentStore::open(t.path()).unwrap();
        (t, s)
    }

    #[test]
    fn put_read_list_delete() {
        let (_t, s) = store();
        let d = s.put_bytes(b"hello", None).unwrap();
        assert_eq!(d, Digest::sha256_of(b"hello"));
        assert_eq!(s.info(&d).unwrap(), Some(5));
        assert_eq!(s.read_blob(&d, 5).unwrap(), b"hello");
        assert!(matches!(
            s.read_blob(&d, 4),
            Err(ContentError::TooLarge { .. })
        ));
        assert_eq!(s.list().unwrap(), vec![(d.clone(), 5)]);
        assert!(s.delete(&d).unwrap());
        assert!(!s.delete(&d).unwrap());
        assert!(matches!(s.open_blob(&d), Err(ContentError::NotFound(_))));
        let e = s
            .put_bytes(b"x", Some(&Digest::sha256_of(b"y")))
            .unwrap_err();
        assert!(matches!(e, ContentError::DigestMismatch { .. }), "{e}");
        assert!(s.list().unwrap().is_empty());
    }

    #[test]
    fn ingest_commit_and_resume() {
        let (_t, s) = store();
        let data = b"0123456789abcdef";
        let d = Digest::sha256_of(data);
        let mut w = s.ingest(&d, Some(16)).unwrap();
        assert_eq!(w.offset(), 0);
        w.write_all(&data[..6]).unwrap();
        drop(w);
        let ing = s.ingests().unwrap();
        assert_eq!(ing.len(), 1);
        assert_eq!(ing[0].size, 6);
        assert!(!ing[0].locked);
        let mut w = s.ingest(&d, Some(16)).unwrap();
        assert_eq!(w.offset(), 6);
        assert!(s.ingests().unwrap()[0].locked);
        let mut p = String::new();
        w.partial().unwrap().read_to_string(&mut p).unwrap();
        assert_eq!(p, "012345");
        w.write_all(&data[6..]).unwrap();
        w.commit().unwrap();
        assert_eq!(s.read_blob(&d, 100).unwrap(), data);
        assert!(s.ingests().unwrap().is_empty());
        // Ingesting something already present commits to a no-op.
        let mut w = s.ingest(&d, None).unwrap();
        w.write_all(data).unwrap();
        w.commit().unwrap();
        assert_eq!(s.list().unwrap().len(), 1);
    }

    #[test]
    fn mismatch_leaves_store_as_it_was() {
        let (_t, s) = store();
        let d = Digest::sha256_of(b"right");
        let mut w = s.ingest(&d, None).unwrap();
        w.write_all(b"wrong").unwrap();
        match w.commit().unwrap_err() {
            ContentError::DigestMismatch { expected, actual } => {
                assert_eq!(expected, d);
                assert_eq!(actual, Digest::sha256_of(b"wrong"));
            }
            e => panic!("{e}"),
        }
        let mut w = s.ingest(&d, Some(3)).unwrap();
        w.write_all(b"right").unwrap();
        let e = w.commit().unwrap_err();
        assert!(
            matches!(
                e,
                ContentError::SizeMismatch {
                    expected: 3,
                    actual: 5,
                    ..
                }
            ),
            "{e}"
        );
        assert!(s.list().unwrap().is_empty());
        assert!(s.ingests().unwrap().is_empty());
    }

    #[test]
    fn abort_and_remove_ingest() {
        let (_t, s) = store();
        let d = Digest::sha256_of(b"abc");
        let mut w = s.ingest(&d, None).unwrap();
        w.write_all(b"ab").unwrap();
        w.abort().unwrap();
        assert!(s.ingests().unwrap().is_empty());
        let mut w = s.ingest(&d, None).unwrap();
        assert_eq!(w.offset(), 0);
        w.write_all(b"a").unwrap();
        assert!(matches!(
            s.remove_ingest(&d),
            Err(ContentError::IngestLocked(_))
        ));
        drop(w);
        s.remove_ingest(&d).unwrap();
        assert!(s.ingests().unwrap().is_empty());
    }

    #[test]
    fn concurrent_ingest_of_one_digest_waits() {
        let (_t, s) = store();
        let data = b"shared layer".to_vec();
        let d = Digest::sha256_of(&data);
        let mut first = s.ingest(&d, None).unwrap();
        first.write_all(&data[..4]).unwrap();
        let (tx, rx) = mpsc::channel();
        let (s2, d2, data2) = (s.clone(), d.clone(), data.clone());
        let h = std::thread::spawn(move || {
            let mut w = s2.ingest(&d2, None).unwrap();
            tx.send(w.offset()).unwrap();
            let off = w.offset() as usize;
            w.write_all(&data2[off..]).unwrap();
            w.commit().unwrap();
        });
        // The second writer is blocked while the first holds the lock.
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        first.write_all(&data[4..]).unwrap();
        first.commit().unwrap();
        let off = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(off, 0);
        h.join().unwrap();
        assert_eq!(s.read_blob(&d, 100).unwrap(), data);
        assert!(s.ingests().unwrap().is_empty());
    }
}
