//! The copy-based fallback snapshotter: every snapshot is a full copy of its
//! parent (hardlinks, xattrs, owners, modes, devices, symlinks and times kept)
//! and mounts are binds. Layers are unpacked with `WhiteoutMode::Delete`.
//!
//! Layout and locking are the overlay snapshotter's (see `overlay`):
//! `ROOT/snapshots/<id>/fs`, `ROOT/metadata.redb` under a flock on `ROOT/lock`.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};

use super::overlay::{bind, Record, Store};
use super::{Info, Kind, Mount, SnapshotError, Snapshotter, Usage};

/// The copy-based snapshotter.
#[derive(Debug)]
pub struct NativeSnapshotter {
    store: Store,
}

impl NativeSnapshotter {
    /// Opens (creating) a snapshotter rooted at `root`.
    pub fn new(root: &Path) -> Result<Self, SnapshotError> {
        Ok(NativeSnapshotter {
            store: Store::new(root)?,
        })
    }

    fn fs_dir(&self, id: u64) -> PathBuf {
        self.store.dir(id).join("fs")
    }

    /// Creates `key` as a copy of committed `parent`.
    fn create_copy(
        &self,
        key: &str,
        parent: Option<&str>,
        kind: Kind,
    ) -> Result<Record, SnapshotError> {
        self.store.create(
            key,
            parent,
            kind,
            |tx| tx.committed_parent(parent).map(|_| ()),
            |tx, dir| {
                let fs_dir = dir.join("fs");
                let src = match tx.committed_parent(parent)? {
                    Some(p) if kind == Kind::Active => Some(tx.dir(p.id).join("fs")),
                    _ => None,
                };
                match src {
                    Some(src) => copy_tree(&src, &fs_dir).map_err(|e| SnapshotError::Io {
                        context: format!("copy {} to {}", src.display(), fs_dir.display()),
                        source: e,
                    }),
                    None => fs::create_dir(&fs_dir).map_err(|e| SnapshotError::Io {
                        context: format!("create {}", fs_dir.display()),
                        source: e,
                    }),
                }
            },
        )
    }

    fn mounts_of(&self, rec: &Record, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        match rec.kind {
            Kind::Active => Ok(bind(&self.fs_dir(rec.id), true)),
            // A view shows the committed parent itself (immutable), read-only.
            Kind::View => match &rec.parent {
                Some(p) => {
                    let prec = self.store.get(p)?;
                    Ok(bind(&self.fs_dir(prec.id), false))
                }
                None => Ok(bind(&self.fs_dir(rec.id), false)),
            },
            Kind::Committed => Err(SnapshotError::WrongKind {
                key: key.to_string(),
                kind: rec.kind,
            }),
        }
    }
}

impl Snapshotter for NativeSnapshotter {
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        let rec = self.create_copy(key, parent, Kind::Active)?;
        self.mounts_of(&rec, key)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        let rec = self.create_copy(key, parent, Kind::View)?;
        self.mounts_of(&rec, key)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        let rec = self.store.get(key)?;
        self.mounts_of(&rec, key)
    }

    fn prepare_layer(&self, key: &str, parent: Option<&str>) -> Result<PathBuf, SnapshotError> {
        let rec = self.create_copy(key, parent, Kind::Active)?;
        Ok(self.fs_dir(rec.id))
    }

    fn parallel_layers(&self) -> bool {
        false
    }

    fn commit(&self, name: &str, key: &str) -> Result<(), SnapshotError> {
        self.store.commit(name, key)
    }

    fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        self.store.remove(key)
    }

    fn stat(&self, key: &str) -> Result<Option<Info>, SnapshotError> {
        self.store.stat(key)
    }

    fn hold(&self) -> Result<crate::meta::DbHold, SnapshotError> {
        self.store.hold()
    }

    fn list(&self) -> Result<Vec<Info>, SnapshotError> {
        self.store.list()
    }

    fn usage(&self, key: &str) -> Result<Usage, SnapshotError> {
        self.store.usage(key)
    }

    fn upper_dir(&self, key: &str) -> Result<PathBuf, SnapshotError> {
        let rec = self.store.get(key)?;
        if rec.kind != Kind::Active {
            return Err(SnapshotError::WrongKind {
                key: key.to_string(),
                kind: rec.kind,
            });
        }
        Ok(self.fs_dir(rec.id))
    }

    fn trash(&self) -> Result<Vec<super::Trash>, SnapshotError> {
        self.store.trash()
    }

    fn remove_trash(&self, name: &str) -> Result<(), SnapshotError> {
        self.store.remove_trash(name)
    }
}

fn ts(sec: i64, nsec: i64) -> Timespec {
    Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    }
}

/// Copies the tree at `src` to the new path `dst` without following symlinks,
/// keeping hardlinks, xattrs, owners (when permitted), modes, devices, fifos,
/// symlinks and times.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let mut links = HashMap::new();
    let can_chown = rustix::process::geteuid().is_root();
    copy_entry(src, dst, &mut links, can_chown)
}

fn copy_entry(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
    can_chown: bool,
) -> io::Result<()> {
    let md = fs::symlink_metadata(src)?;
    let ft = FileType::from_raw_mode(md.mode());
    if ft != FileType::Directory && md.nlink() > 1 {
        let id = (md.dev(), md.ino());
        if let Some(first) = links.get(&id) {
            return fs::hard_link(first, dst);
        }
        links.insert(id, dst.to_path_buf());
    }
    match ft {
        FileType::Directory => {
            fs::create_dir(dst)?;
            fs::set_permissions(dst, fs::Permissions::from_mode(0o700))?;
            for e in fs::read_dir(src)? {
                let e = e?;
                copy_entry(&e.path(), &dst.join(e.file_name()), links, can_chown)?;
            }
        }
        FileType::RegularFile => {
            let mut from = fs::File::open(src)?;
            let mut to = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode_0600()
                .open(dst)?;
            // copy_file_range underneath, reflinks where the filesystem can.
            io::copy(&mut from, &mut to)?;
        }
        FileType::Symlink => {
            std::os::unix::fs::symlink(fs::read_link(src)?, dst)?;
        }
        FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
            rustix::fs::mknodat(
                CWD,
                dst,
                ft,
                Mode::from_raw_mode(0o600),
                md.rdev() as rustix::fs::Dev,
            )?;
        }
        FileType::Socket | FileType::Unknown => return Ok(()),
    }
    if can_chown {
        std::os::unix::fs::lchown(dst, Some(md.uid()), Some(md.gid()))?;
    }
    if let Ok(names) = xattr::list(src) {
        for name in names {
            if let Some(v) = xattr::get(src, &name)? {
                match xattr::set(dst, &name, &v) {
                    Ok(()) => {}
                    Err(e) if !can_chown && e.raw_os_error() == Some(libc::EPERM) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    if ft != FileType::Symlink {
        fs::set_permissions(dst, fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    let times = Timestamps {
        last_access: ts(md.atime(), md.atime_nsec()),
        last_modification: ts(md.mtime(), md.mtime_nsec()),
    };
    rustix::fs::utimensat(CWD, dst, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}
impl Mode0600 for fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::overlay::conformance;

    #[test]
    fn native_conformance() {
        let t = tempfile::tempdir().unwrap();
        let s = NativeSnapshotter::new(t.path()).unwrap();
        conformance::run(&s);
    }

    #[test]
    fn layers_copy_their_parent() {
        let t = tempfile::tempdir().unwrap();
        let s = NativeSnapshotter::new(t.path()).unwrap();
        assert!(!s.parallel_layers());
        assert!(matches!(
            s.prepare_layer("l2", Some("c1")),
            Err(SnapshotError::NotFound(_))
        ));
        let d1 = s.prepare_layer("l1", None).unwrap();
        fs::create_dir(d1.join("d")).unwrap();
        fs::write(d1.join("d/f"), b"data").unwrap();
        fs::hard_link(d1.join("d/f"), d1.join("h")).unwrap();
        std::os::unix::fs::symlink("d/f", d1.join("s")).unwrap();
        fs::set_permissions(d1.join("d"), fs::Permissions::from_mode(0o751)).unwrap();
        rustix::fs::utimensat(
            CWD,
            d1.join("d/f"),
            &Timestamps {
                last_access: ts(5, 0),
                last_modification: ts(7, 0),
            },
            AtFlags::empty(),
        )
        .unwrap();
        s.commit("c1", "l1").unwrap();
        let d2 = s.prepare_layer("l2", Some("c1")).unwrap();
        assert_eq!(fs::read(d2.join("d/f")).unwrap(), b"data");
        assert_eq!(
            fs::metadata(d2.join("d/f")).unwrap().ino(),
            fs::metadata(d2.join("h")).unwrap().ino()
        );
        assert_ne!(
            fs::metadata(d2.join("d/f")).unwrap().ino(),
            fs::metadata(d1.join("d/f")).unwrap().ino()
        );
        assert_eq!(fs::read_link(d2.join("s")).unwrap(), Path::new("d/f"));
        assert_eq!(fs::metadata(d2.join("d")).unwrap().mode() & 0o7777, 0o751);
        assert_eq!(fs::metadata(d2.join("d/f")).unwrap().mtime(), 7);
        // Writing the copy leaves the parent alone.
        fs::write(d2.join("d/f"), b"changed").unwrap();
        assert_eq!(fs::read(d1.join("d/f")).unwrap(), b"data");
    }
}
