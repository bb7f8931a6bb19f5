//! The overlayfs snapshotter, and the metadata store it shares with the
//! copy-based one.
//!
//! Layout: `ROOT/snapshots/<id>/{fs,work}` with small integer ids (so a
//! 128-layer `lowerdir` list stays short), metadata in `ROOT/metadata.redb`.
//!
//! Concurrency: several berth processes (and threads) use one root. redb lets
//! only one handle open the file at a time, so every operation takes an
//! exclusive `flock` on `ROOT/lock` (a new open file description each time, so
//! threads of one process exclude each other too), opens the database, runs one
//! write transaction and closes it again, unless a `DbHold` keeps both open
//! for a run of operations (`shared_db`). Directory changes happen under the
//! same lock: created before the transaction commits (and removed if it fails).
//! A removal commits the record's deletion first, then renames the directory
//! to `snapshots/rm-<id>` and deletes it. A process killed half-way leaves
//! that `rm-<id>`, or a `<id>` directory with no record (killed while
//! creating, or between a removal's commit and its rename): `trash` lists
//! both under the lock and `remove_trash` deletes them, for `check` and GC.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{Info, Kind, Mount, SnapshotError, Snapshotter, Usage};
use crate::shared_db::{DbHold, OpenError, SharedDb};

const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SCHEMA_KEY: &str = "schema_version";
const NEXT_ID_KEY: &str = "next_id";
/// Version of the record layout in `metadata.redb`.
pub const SCHEMA_VERSION: u64 = 1;

/// One snapshot's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub id: u64,
    pub parent: Option<String>,
    pub kind: Kind,
    pub created: DateTime<Utc>,
}

impl Record {
    fn info(&self, key: &str) -> Info {
        Info {
            key: key.to_string(),
            parent: self.parent.clone(),
            kind: self.kind,
            created: self.created,
        }
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let context = context.into();
    move |source| SnapshotError::Io { context, source }
}

fn open_err(e: OpenError) -> SnapshotError {
    match e {
        OpenError::Lock(path, source) => SnapshotError::Io {
            context: format!("lock {}", path.display()),
            source,
        },
        OpenError::Db(e) => db_err(e),
    }
}

fn db_err(e: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Db(e.to_string())
}

/// Checks a snapshot key: 1 to 256 bytes, no NUL.
pub(crate) fn check_key(key: &str) -> Result<(), SnapshotError> {
    if key.is_empty() {
        return Err(SnapshotError::InvalidKey(key.into(), "empty"));
    }
    if key.len() > 256 {
        return Err(SnapshotError::InvalidKey(
            key.into(),
            "longer than 256 bytes",
        ));
    }
    if key.contains('\0') {
        return Err(SnapshotError::InvalidKey(key.into(), "contains NUL"));
    }
    Ok(())
}

/// The metadata store and directory layout shared by both snapshotters.
#[derive(Debug)]
pub(crate) struct Store {
    root: PathBuf,
    db: SharedDb,
}

/// One open transaction's tables: `S` and `M` are redb's write tables in a
/// [`Tx`], or its read-only tables in a [`ReadTx`].
pub(crate) struct Tables<'a, S, M> {
    snaps: S,
    meta: M,
    root: &'a Path,
}

/// A write transaction's tables.
pub(crate) type Tx<'a> =
    Tables<'a, redb::Table<'a, &'static str, &'static [u8]>, redb::Table<'a, &'static str, u64>>;
/// A read transaction's tables.
pub(crate) type ReadTx<'a> = Tables<
    'a,
    redb::ReadOnlyTable<&'static str, &'static [u8]>,
    redb::ReadOnlyTable<&'static str, u64>,
>;

impl<S, M> Tables<'_, S, M>
where
    S: ReadableTable<&'static str, &'static [u8]>,
    M: ReadableTable<&'static str, u64>,
{
    pub fn get(&self, key: &str) -> Result<Option<Record>, SnapshotError> {
        match self.snaps.get(key).map_err(db_err)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(db_err)?)),
            None => Ok(None),
        }
    }

    pub fn must_get(&self, key: &str) -> Result<Record, SnapshotError> {
        self.get(key)?
            .ok_or_else(|| SnapshotError::NotFound(key.to_string()))
    }

    pub fn all(&self) -> Result<Vec<(String, Record)>, SnapshotError> {
        let mut out = Vec::new();
        for item in self.snaps.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            out.push((
                k.value().to_string(),
                serde_json::from_slice(v.value()).map_err(db_err)?,
            ));
        }
        Ok(out)
    }

    /// The committed parent `parent`, and its ancestors, nearest first.
    pub fn chain(&self, parent: Option<&str>) -> Result<Vec<(String, Record)>, SnapshotError> {
        let mut out: Vec<(String, Record)> = Vec::new();
        let mut next = parent.map(str::to_string);
        while let Some(name) = next {
            let rec = self.must_get(&name)?;
            next = rec.parent.clone();
            out.push((name, rec));
            if out.len() > 100_000 {
                return Err(SnapshotError::Db("parent chain has a cycle".into()));
            }
        }
        Ok(out)
    }

    /// Requires `parent` (if any) to be a committed snapshot.
    pub fn committed_parent(&self, parent: Option<&str>) -> Result<Option<Record>, SnapshotError> {
        let Some(p) = parent else { return Ok(None) };
        let rec = self.must_get(p)?;
        if rec.kind != Kind::Committed {
            return Err(SnapshotError::WrongKind {
                key: p.to_string(),
                kind: rec.kind,
            });
        }
        Ok(Some(rec))
    }

    pub fn dir(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }
}

impl Tx<'_> {
    pub fn put(&mut self, key: &str, rec: &Record) -> Result<(), SnapshotError> {
        let v = serde_json::to_vec(rec).map_err(db_err)?;
        self.snaps.insert(key, v.as_slice()).map_err(db_err)?;
        Ok(())
    }

    pub fn delete(&mut self, key: &str) -> Result<(), SnapshotError> {
        self.snaps.remove(key).map_err(db_err)?;
        Ok(())
    }

    pub fn next_id(&mut self) -> Result<u64, SnapshotError> {
        let id = self
            .meta
            .get(NEXT_ID_KEY)
            .map_err(db_err)?
            .map(|v| v.value())
            .unwrap_or(1);
        self.meta.insert(NEXT_ID_KEY, id + 1).map_err(db_err)?;
        Ok(id)
    }
}

impl Store {
    pub fn new(root: &Path) -> Result<Store, SnapshotError> {
        fs::create_dir_all(root.join("snapshots"))
            .map_err(io_err(format!("create {}", root.display())))?;
        // The database and its tables are made by the first write, and
        // every transaction checks the schema version.
        Ok(Store {
            root: root.to_path_buf(),
            db: SharedDb::new(&root.join("metadata.redb"), &root.join("lock")),
        })
    }

    /// Keeps the database open and locked until the hold drops.
    pub fn hold(&self) -> Result<DbHold, SnapshotError> {
        self.db.hold().map_err(open_err)
    }

    /// Refuses a schema version other than this code's; `None` is a new
    /// database.
    fn check_schema(found: Option<u64>) -> Result<(), SnapshotError> {
        match found {
            None | Some(SCHEMA_VERSION) => Ok(()),
            Some(v) => Err(SnapshotError::Db(format!(
                "metadata schema version {v}, this berth knows {SCHEMA_VERSION}"
            ))),
        }
    }

    /// Runs `f` in one read transaction under the root lock (nothing is
    /// committed). A database without tables yet is given them first.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&ReadTx<'_>) -> Result<T, SnapshotError>,
    ) -> Result<T, SnapshotError> {
        match self.try_read(f)? {
            Ok(out) => Ok(out),
            Err(f) => {
                self.with(|_| Ok(()))?;
                self.try_read(f)?
                    .map_err(|_| SnapshotError::Db("tables missing after creating them".into()))
            }
        }
    }

    /// [`Store::read`], handing `f` back when the tables do not exist.
    fn try_read<T, F>(&self, f: F) -> Result<Result<T, F>, SnapshotError>
    where
        F: FnOnce(&ReadTx<'_>) -> Result<T, SnapshotError>,
    {
        self.db.with(open_err, |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let (snaps, meta) = match (tx.open_table(SNAPSHOTS), tx.open_table(META)) {
                (Ok(s), Ok(m)) => (s, m),
                (Err(redb::TableError::TableDoesNotExist(_)), _)
                | (_, Err(redb::TableError::TableDoesNotExist(_))) => return Ok(Err(f)),
                (Err(e), _) | (_, Err(e)) => return Err(db_err(e)),
            };
            Self::check_schema(meta.get(SCHEMA_KEY).map_err(db_err)?.map(|v| v.value()))?;
            f(&Tables {
                snaps,
                meta,
                root: &self.root,
            })
            .map(Ok)
        })
    }

    pub fn dir(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    /// Runs `f` in one write transaction under the exclusive root lock;
    /// commits when it returns Ok.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, SnapshotError>,
    ) -> Result<T, SnapshotError> {
        self.db.with(open_err, |db| {
            let mut tx = db.begin_write().map_err(db_err)?;
            // No repair walk on the open after a crash.
            tx.set_quick_repair(true);
            let out = {
                let snaps = tx.open_table(SNAPSHOTS).map_err(db_err)?;
                let mut meta = tx.open_table(META).map_err(db_err)?;
                let schema = meta.get(SCHEMA_KEY).map_err(db_err)?.map(|v| v.value());
                Self::check_schema(schema)?;
                if schema.is_none() {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION).map_err(db_err)?;
                }
                let mut t = Tx {
                    snaps,
                    meta,
                    root: &self.root,
                };
                f(&mut t)?
            };
            tx.commit().map_err(db_err)?;
            Ok(out)
        })
    }

    /// Creates snapshot `key` with a fresh directory, filled by `populate`
    /// (given the new snapshot directory), under the lock.
    pub fn create(
        &self,
        key: &str,
        parent: Option<&str>,
        kind: Kind,
        check_parent: impl FnOnce(&Tx<'_>) -> Result<(), SnapshotError>,
        populate: impl FnOnce(&Tx<'_>, &Path) -> Result<(), SnapshotError>,
    ) -> Result<Record, SnapshotError> {
        check_key(key)?;
        if let Some(p) = parent {
            check_key(p)?;
        }
        self.with(|tx| {
            if tx.get(key)?.is_some() {
                return Err(SnapshotError::AlreadyExists(key.to_string()));
            }
            check_parent(tx)?;
            let id = tx.next_id()?;
            let dir = tx.dir(id);
            // A leftover directory of a failed, uncommitted attempt.
            if dir.exists() {
                fs::remove_dir_all(&dir).map_err(io_err(format!("remove {}", dir.display())))?;
            }
            fs::create_dir(&dir).map_err(io_err(format!("create {}", dir.display())))?;
            if let Err(e) = populate(tx, &dir) {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
            let rec = Record {
                id,
                parent: parent.map(str::to_string),
                kind,
                created: Utc::now(),
            };
            tx.put(key, &rec)?;
            Ok(rec)
        })
    }

    /// Commits active `key` as `name`; its parent must be committed.
    pub fn commit(&self, name: &str, key: &str) -> Result<(), SnapshotError> {
        check_key(name)?;
        self.with(|tx| {
            let rec = tx.must_get(key)?;
            if rec.kind != Kind::Active {
                return Err(SnapshotError::WrongKind {
                    key: key.to_string(),
                    kind: rec.kind,
                });
            }
            if tx.get(name)?.is_some() {
                return Err(SnapshotError::AlreadyExists(name.to_string()));
            }
            // The parent must be committed by now (for overlay layers it may
            // have been only a name at prepare time).
            if let Some(p) = rec.parent.as_deref() {
                match tx.get(p)? {
                    Some(r) if r.kind == Kind::Committed => {}
                    _ => return Err(SnapshotError::NotFound(p.to_string())),
                }
            }
            tx.delete(key)?;
            tx.put(
                name,
                &Record {
                    kind: Kind::Committed,
                    created: Utc::now(),
                    ..rec
                },
            )
        })
    }

    /// Removes `key` (no children allowed) and its directory. The record
    /// goes first: IDs are never reused, so from its commit on the
    /// directory is trash, moved to `rm-<id>` and deleted outside the lock.
    /// A kill at any point leaves either the whole snapshot or trash that
    /// [`Store::trash`] lists, never a record whose directory is gone.
    pub fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        let id = self.with(|tx| {
            let rec = tx.must_get(key)?;
            let children: Vec<String> = tx
                .all()?
                .into_iter()
                .filter(|(_, r)| r.parent.as_deref() == Some(key))
                .map(|(k, _)| k)
                .collect();
            if !children.is_empty() {
                return Err(SnapshotError::HasChildren(
                    key.to_string(),
                    children.join(", "),
                ));
            }
            tx.delete(key)?;
            Ok(rec.id)
        })?;
        let dir = self.dir(id);
        let trash = self.root.join("snapshots").join(format!("rm-{id}"));
        match fs::rename(&dir, &trash) {
            Ok(()) => {}
            // Gone already, or taken by GC as trash meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(format!("rename {}", dir.display()))(e)),
        }
        remove_tree(&trash).map_err(io_err(format!("remove {}", trash.display())))
    }

    /// Directories under `snapshots/` that no record owns, listed under the
    /// lock (so no create or remove is half-way through its transaction).
    pub fn trash(&self) -> Result<Vec<super::Trash>, SnapshotError> {
        let dir = self.root.join("snapshots");
        let names = self.read(|tx| {
            let ids: std::collections::HashSet<u64> =
                tx.all()?.into_iter().map(|(_, r)| r.id).collect();
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io_err(format!("read {}", dir.display()))(e)),
            };
            let mut out = Vec::new();
            for ent in rd {
                let ent = ent.map_err(io_err(format!("read {}", dir.display())))?;
                let Some(name) = ent.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let orphan = name.parse::<u64>().is_ok_and(|id| !ids.contains(&id));
                if name.starts_with("rm-") || orphan {
                    out.push(name);
                }
            }
            Ok(out)
        })?;
        let mut out = Vec::new();
        for name in names {
            let mut usage = Usage::default();
            let mut seen = std::collections::HashSet::new();
            // It may be going away under a live remover: count what is there.
            let _ = du(&dir.join(&name), &mut usage, &mut seen);
            out.push(super::Trash {
                name,
                size: usage.size,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deletes trash directory `name`. A removed snapshot's `rm-<id>` may
    /// still be being deleted by its remover; both deletions tolerate the
    /// other. A record-less `<id>` is first moved aside under the lock, so
    /// that a create reusing the ID never sees its directory deleted.
    pub fn remove_trash(&self, name: &str) -> Result<(), SnapshotError> {
        let snaps = self.root.join("snapshots");
        let path = if name.starts_with("rm-") && !name.contains('/') && name != "rm-" {
            snaps.join(name)
        } else if let Ok(id) = name.parse::<u64>() {
            let moved = self.with(|tx| {
                if tx.all()?.iter().any(|(_, r)| r.id == id) {
                    return Ok(None);
                }
                let from = snaps.join(name);
                let mut n = 0u32;
                let to = loop {
                    let to = snaps.join(format!("rm-orphan-{id}-{}-{n}", std::process::id()));
                    if to.symlink_metadata().is_err() {
                        break to;
                    }
                    n += 1;
                };
                match fs::rename(&from, &to) {
                    Ok(()) => Ok(Some(to)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io_err(format!("rename {}", from.display()))(e)),
                }
            })?;
            match moved {
                Some(p) => p,
                None => return Ok(()),
            }
        } else {
            return Err(SnapshotError::InvalidKey(
                name.to_string(),
                "not a trash directory",
            ));
        };
        remove_tree(&path).map_err(io_err(format!("remove {}", path.display())))
    }

    pub fn stat(&self, key: &str) -> Result<Option<Info>, SnapshotError> {
        self.read(|tx| Ok(tx.get(key)?.map(|r| r.info(key))))
    }

    pub fn list(&self) -> Result<Vec<Info>, SnapshotError> {
        self.read(|tx| Ok(tx.all()?.iter().map(|(k, r)| r.info(k)).collect()))
    }

    pub fn get(&self, key: &str) -> Result<Record, SnapshotError> {
        self.read(|tx| tx.must_get(key))
    }

    pub fn usage(&self, key: &str) -> Result<Usage, SnapshotError> {
        let rec = self.get(key)?;
        let dir = self.dir(rec.id).join("fs");
        let mut usage = Usage::default();
        let mut seen = std::collections::HashSet::new();
        du(&dir, &mut usage, &mut seen).map_err(io_err(format!("usage of {}", dir.display())))?;
        Ok(usage)
    }
}

fn du(
    path: &Path,
    usage: &mut Usage,
    seen: &mut std::collections::HashSet<(u64, u64)>,
) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let md = fs::symlink_metadata(path)?;
    if !seen.insert((md.dev(), md.ino())) {
        return Ok(());
    }
    usage.inodes += 1;
    if md.is_file() {
        usage.size += md.blocks() * 512;
    } else if md.is_dir() {
        for e in fs::read_dir(path)? {
            du(&e?.path(), usage, seen)?;
        }
    }
    Ok(())
}

/// Deletes `path` and everything under it (never following symlinks); one
/// that is gone already, or goes meanwhile under another remover, is fine.
fn remove_tree(path: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Read-only or read-write bind of `dir`.
pub(crate) fn bind(dir: &Path, rw: bool) -> Vec<Mount> {
    vec![Mount {
        typ: "bind".into(),
        source: path_str(dir),
        options: vec!["rbind".into(), if rw { "rw" } else { "ro" }.into()],
    }]
}

/// The overlayfs snapshotter.
#[derive(Debug)]
pub struct OverlaySnapshotter {
    store: Store,
}

impl OverlaySnapshotter {
    /// Opens (creating) a snapshotter rooted at `root`.
    pub fn new(root: &Path) -> Result<Self, SnapshotError> {
        Ok(OverlaySnapshotter {
            store: Store::new(root)?,
        })
    }

    /// Whether overlayfs works under `root`: mounts a two-layer overlay in a
    /// temporary directory under `root`, then unmounts and removes it.
    pub fn supported(root: &Path) -> bool {
        if fs::create_dir_all(root).is_err() {
            return false;
        }
        let Ok(tmp) = tempfile::Builder::new()
            .prefix("overlay-check-")
            .tempdir_in(root)
        else {
            return false;
        };
        let t = tmp.path();
        for d in ["l1", "l2", "u", "w", "m"] {
            if fs::create_dir(t.join(d)).is_err() {
                return false;
            }
        }
        let mounts = vec![Mount {
            typ: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                format!(
                    "lowerdir={}:{}",
                    path_str(&t.join("l1")),
                    path_str(&t.join("l2"))
                ),
                format!("upperdir={}", path_str(&t.join("u"))),
                format!("workdir={}", path_str(&t.join("w"))),
            ],
        }];
        let target = t.join("m");
        let ok = super::mount::mount_all(&mounts, &target).is_ok();
        if ok && super::mount::unmount_all(&target).is_err() {
            // Never delete through a mount that is still there.
            std::mem::forget(tmp);
            return false;
        }
        ok
    }

    fn fs_dir(&self, id: u64) -> PathBuf {
        self.store.dir(id).join("fs")
    }

    fn mounts_of(&self, rec: &Record, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        let chain = self.store.read(|tx| tx.chain(rec.parent.as_deref()))?;
        let lowers: Vec<String> = chain
            .iter()
            .map(|(_, r)| path_str(&self.fs_dir(r.id)))
            .collect();
        match rec.kind {
            Kind::Active => {
                if lowers.is_empty() {
                    return Ok(bind(&self.fs_dir(rec.id), true));
                }
                Ok(vec![Mount {
                    typ: "overlay".into(),
                    source: "overlay".into(),
                    options: vec![
                        format!("lowerdir={}", lowers.join(":")),
                        format!("upperdir={}", path_str(&self.fs_dir(rec.id))),
                        format!("workdir={}", path_str(&self.store.dir(rec.id).join("work"))),
                    ],
                }])
            }
            Kind::View => match lowers.len() {
                0 => Ok(bind(&self.fs_dir(rec.id), false)),
                1 => Ok(bind(Path::new(&lowers[0]), false)),
                _ => Ok(vec![Mount {
                    typ: "overlay".into(),
                    source: "overlay".into(),
                    options: vec![format!("lowerdir={}", lowers.join(":"))],
                }]),
            },
            Kind::Committed => Err(SnapshotError::WrongKind {
                key: key.to_string(),
                kind: rec.kind,
            }),
        }
    }

    fn make_dirs(dir: &Path, work: bool) -> Result<(), SnapshotError> {
        fs::create_dir(dir.join("fs")).map_err(io_err(format!("create {}/fs", dir.display())))?;
        if work {
            fs::create_dir(dir.join("work"))
                .map_err(io_err(format!("create {}/work", dir.display())))?;
        }
        Ok(())
    }
}

impl Snapshotter for OverlaySnapshotter {
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        let rec = self.store.create(
            key,
            parent,
            Kind::Active,
            |tx| tx.committed_parent(parent).map(|_| ()),
            |_, dir| Self::make_dirs(dir, true),
        )?;
        self.mounts_of(&rec, key)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        let rec = self.store.create(
            key,
            parent,
            Kind::View,
            |tx| tx.committed_parent(parent).map(|_| ()),
            |_, dir| Self::make_dirs(dir, false),
        )?;
        self.mounts_of(&rec, key)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        let rec = self.store.get(key)?;
        self.mounts_of(&rec, key)
    }

    fn prepare_layer(&self, key: &str, parent: Option<&str>) -> Result<PathBuf, SnapshotError> {
        // The parent is only a name here: it may still be unpacking, or not
        // even prepared yet. commit() checks that it is committed.
        let rec = self.store.create(
            key,
            parent,
            Kind::Active,
            |_| Ok(()),
            |_, dir| Self::make_dirs(dir, true),
        )?;
        Ok(self.fs_dir(rec.id))
    }

    fn parallel_layers(&self) -> bool {
        true
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

/// A conformance check every snapshotter passes, without mounting anything.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;

    fn fs_of(m: &[Mount]) -> PathBuf {
        PathBuf::from(&m[0].source)
    }

    pub fn run(s: &dyn Snapshotter) {
        let k1 = "sha256:aaaa-active";
        // prepare without a parent: a rw bind of the snapshot's directory.
        let m = s.prepare(k1, None).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].typ, "bind");
        assert!(m[0].options.contains(&"rw".to_string()));
        fs::write(fs_of(&m).join("one"), b"1").unwrap();
        assert_eq!(s.mounts(k1).unwrap(), m);
        assert_eq!(s.upper_dir(k1).unwrap(), fs_of(&m));
        assert!(matches!(
            s.prepare(k1, None),
            Err(SnapshotError::AlreadyExists(_))
        ));
        let u = s.usage(k1).unwrap();
        assert!(u.inodes >= 2 && u.size > 0, "{u:?}");

        // Parent not committed / missing.
        assert!(matches!(
            s.prepare("x", Some(k1)),
            Err(SnapshotError::WrongKind { .. })
        ));
        assert!(matches!(
            s.prepare("x", Some("nope")),
            Err(SnapshotError::NotFound(_))
        ));
        assert!(matches!(
            s.commit("c", "nope"),
            Err(SnapshotError::NotFound(_))
        ));

        s.commit("sha256:c1", k1).unwrap();
        assert!(s.stat(k1).unwrap().is_none());
        let info = s.stat("sha256:c1").unwrap().unwrap();
        assert_eq!(info.kind, Kind::Committed);
        assert_eq!(info.parent, None);
        assert!(matches!(
            s.mounts("sha256:c1"),
            Err(SnapshotError::WrongKind { .. })
        ));
        assert!(matches!(
            s.upper_dir("sha256:c1"),
            Err(SnapshotError::WrongKind { .. })
        ));

        // A layer on top of c1.
        let d2 = s.prepare_layer("layer2", Some("sha256:c1")).unwrap();
        fs::write(d2.join("two"), b"2").unwrap();
        assert!(matches!(
            s.commit("sha256:c1", "layer2"),
            Err(SnapshotError::AlreadyExists(_))
        ));
        s.commit("sha256:c2", "layer2").unwrap();

        // Views.
        let v1 = s.view("v1", Some("sha256:c1")).unwrap();
        assert_eq!(v1.len(), 1);
        assert!(v1[0].options.contains(&"ro".to_string()));
        assert!(fs_of(&v1).join("one").exists());
        let v2 = s.view("v2", Some("sha256:c2")).unwrap();
        assert_eq!(s.mounts("v2").unwrap(), v2);
        assert_eq!(s.stat("v2").unwrap().unwrap().kind, Kind::View);

        // Active on two layers.
        let a = s.prepare("rw", Some("sha256:c2")).unwrap();
        assert_eq!(
            s.stat("rw").unwrap().unwrap().parent.as_deref(),
            Some("sha256:c2")
        );
        assert_eq!(a.len(), 1);

        let mut keys: Vec<String> = s.list().unwrap().into_iter().map(|i| i.key).collect();
        keys.sort();
        assert_eq!(keys, ["rw", "sha256:c1", "sha256:c2", "v1", "v2"]);

        // Removal order.
        match s.remove("sha256:c1") {
            Err(SnapshotError::HasChildren(k, c)) => {
                assert_eq!(k, "sha256:c1");
                assert!(c.contains("sha256:c2") && c.contains("v1"), "{c}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(s.remove("nope"), Err(SnapshotError::NotFound(_))));
        let up = s.upper_dir("rw").unwrap();
        for k in ["rw", "v1", "v2", "sha256:c2", "sha256:c1"] {
            s.remove(k).unwrap();
        }
        assert!(!up.exists());
        assert!(s.list().unwrap().is_empty());

        // Keys.
        assert!(matches!(
            s.prepare("", None),
            Err(SnapshotError::InvalidKey(..))
        ));
        assert!(matches!(
            s.prepare(&"k".repeat(257), None),
            Err(SnapshotError::InvalidKey(..))
        ));
        assert!(matches!(
            s.prepare("a\0b", None),
            Err(SnapshotError::InvalidKey(..))
        ));
        s.prepare(&"k".repeat(256), None).unwrap();
        s.remove(&"k".repeat(256)).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_conformance() {
        let t = tempfile::tempdir().unwrap();
        let s = OverlaySnapshotter::new(t.path()).unwrap();
        conformance::run(&s);
    }

    #[test]
    fn overlay_layer_parent_may_not_exist_yet() {
        let t = tempfile::tempdir().unwrap();
        let s = OverlaySnapshotter::new(t.path()).unwrap();
        assert!(s.parallel_layers());
        // Layer 2 is prepared before layer 1 exists at all.
        s.prepare_layer("l2", Some("c1")).unwrap();
        assert!(matches!(s.commit("c2", "l2"), Err(SnapshotError::NotFound(ref k)) if k == "c1"));
        // An active snapshot under the parent's name is not committed yet.
        s.prepare_layer("l3", Some("a3")).unwrap();
        s.prepare_layer("a3", None).unwrap();
        assert!(matches!(s.commit("c3", "l3"), Err(SnapshotError::NotFound(ref k)) if k == "a3"));
        // A name with waiting children cannot be removed.
        assert!(matches!(
            s.remove("a3"),
            Err(SnapshotError::HasChildren(..))
        ));
        s.prepare_layer("l1", None).unwrap();
        s.commit("c1", "l1").unwrap();
        s.commit("c2", "l2").unwrap();
        // Mounts: nearest parent first.
        let m = s.prepare("top", Some("c2")).unwrap();
        assert_eq!(m[0].typ, "overlay");
        let lower = m[0].options[0].strip_prefix("lowerdir=").unwrap();
        let parts: Vec<&str> = lower.split(':').collect();
        let id = |k: &str| s.store.get(k).unwrap().id;
        assert_eq!(parts[0], path_str(&s.fs_dir(id("c2"))));
        assert_eq!(parts[1], path_str(&s.fs_dir(id("c1"))));
        assert!(m[0].options[1].starts_with("upperdir="));
        assert!(m[0].options[2].starts_with("workdir="));
        let v = s.view("v", Some("c2")).unwrap();
        assert_eq!(v[0].typ, "overlay");
        assert_eq!(v[0].options.len(), 1);
    }

    #[test]
    fn reopens_and_shares_between_handles() {
        let t = tempfile::tempdir().unwrap();
        let a = OverlaySnapshotter::new(t.path()).unwrap();
        let b = OverlaySnapshotter::new(t.path()).unwrap();
        std::thread::scope(|sc| {
            for (i, s) in [&a, &b].into_iter().enumerate() {
                sc.spawn(move || {
                    for j in 0..20 {
                        s.prepare_layer(&format!("k{i}-{j}"), None).unwrap();
                    }
                });
            }
        });
        assert_eq!(a.list().unwrap().len(), 40);
        let ids: std::collections::HashSet<u64> = a
            .list()
            .unwrap()
            .iter()
            .map(|i| a.store.get(&i.key).unwrap().id)
            .collect();
        assert_eq!(ids.len(), 40);
    }

    /// What killed removals and creations leave is listed as trash (with
    /// its size) and removed; directories of live snapshots never are.
    #[test]
    fn trash_is_listed_and_removed() {
        let t = tempfile::tempdir().unwrap();
        let s = OverlaySnapshotter::new(t.path()).unwrap();
        let live = s.prepare_layer("live", None).unwrap();
        fs::write(live.join("f"), b"data").unwrap();
        let gone = s.prepare_layer("gone", None).unwrap();
        fs::write(gone.join("f"), vec![1u8; 8192]).unwrap();
        let snaps = t.path().join("snapshots");
        // A removal killed after its rename, one killed between its commit
        // and its rename, and a creation killed before its commit.
        let id = s.store.get("gone").unwrap().id;
        s.store.with(|tx| tx.delete("gone")).unwrap();
        let left = snaps.join(id.to_string());
        assert!(left.exists());
        fs::create_dir_all(snaps.join("rm-77/fs/d")).unwrap();
        fs::write(snaps.join("rm-77/fs/d/x"), vec![2u8; 8192]).unwrap();
        fs::create_dir_all(snaps.join("99/fs")).unwrap();
        fs::create_dir(snaps.join("not-ours")).unwrap();
        let trash = s.trash().unwrap();
        let names: Vec<&str> = trash.iter().map(|t| t.name.as_str()).collect();
        let mut want = vec![id.to_string(), "99".to_string(), "rm-77".to_string()];
        want.sort();
        assert_eq!(names, want);
        assert!(trash.iter().find(|t| t.name == "rm-77").unwrap().size >= 8192);
        for t in &trash {
            s.remove_trash(&t.name).unwrap();
        }
        assert!(s.trash().unwrap().is_empty());
        let mut names: Vec<String> = fs::read_dir(&snaps)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let live_id = s.store.get("live").unwrap().id.to_string();
        assert_eq!(names, [live_id, "not-ours".to_string()]);
        assert_eq!(fs::read(live.join("f")).unwrap(), b"data");
        // Gone already, or not a trash name: nothing happens, or an error.
        s.remove_trash("rm-77").unwrap();
        s.remove_trash(&s.store.get("live").unwrap().id.to_string())
            .unwrap();
        assert!(live.exists());
        assert!(s.remove_trash("not-ours").is_err());
        assert!(s.remove_trash("rm-../x").is_err());
        // A removal whose directory is gone already still removes the record.
        let d = s.prepare_layer("bare", None).unwrap();
        fs::remove_dir_all(d.parent().unwrap()).unwrap();
        s.remove("bare").unwrap();
        assert!(s.stat("bare").unwrap().is_none());
    }
}
