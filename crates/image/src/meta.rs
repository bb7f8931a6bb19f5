//! The metadata DB: image records (name → target descriptor) and leases, in
//! one redb file with a versioned schema.
//!
//! Concurrency: several `berth` processes run at once, and redb lets only one
//! process have the file open. So [`MetaDb`] does not keep it open: every
//! operation takes an exclusive `flock(2)` on a sibling lock file
//! (`<path>.lock`), opens the database, runs one transaction and closes it
//! again. The flock also serialises threads of one process (each operation
//! opens its own file description). Operations are short, so waiting on the
//! lock is cheap; a crashed holder releases it by exiting. The price is an
//! open and close of the file per operation (with redb 4's small files,
//! about 1 ms for a read and 2 ms for a write here); reads use a read
//! transaction and commit nothing. A run of operations that must be quick
//! (making a container) takes a [`DbHold`] and opens the file once; see
//! `shared_db`. redb 4's multi-process mode
//! (`ConcurrencyMode::MultiWriter`) could keep one handle per process
//! instead; it is new (4.3), so berth keeps the flock for now.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
pub use crate::shared_db::DbHold;
use crate::shared_db::{OpenError, SharedDb};

/// The schema version this code writes and understands.
pub const SCHEMA_VERSION: u64 = 1;

const SCHEMA: TableDefinition<&str, u64> = TableDefinition::new("schema");
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases");

/// A content descriptor: what a blob is, its digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// The media type, e.g. `application/vnd.oci.image.manifest.v1+json`.
    pub media_type: String,
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
}

/// A named image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The full name, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// The manifest or index it points to.
    pub target: Descriptor,
    /// When the name was first created.
    pub created: DateTime<Utc>,
    /// When it was last pointed somewhere.
    pub updated: DateTime<Utc>,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
}

/// A lease: protects content and snapshots from GC while something (a pull,
/// an unpack) is working with them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    /// The lease's ID.
    pub id: String,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// When it stops protecting anything; None for never.
    pub expires: Option<DateTime<Utc>>,
    /// Protected blobs.
    pub content: BTreeSet<Digest>,
    /// Protected snapshot keys.
    pub snapshots: BTreeSet<String>,
}

impl Lease {
    /// Whether the lease has expired at `now`.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

/// Errors of the metadata DB.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The file was written by a newer berth.
    #[error("metadata DB {path}: schema version {found} is newer than the supported version {supported}")]
    SchemaTooNew {
        /// The DB file.
        path: PathBuf,
        /// The version in the file.
        found: u64,
        /// What this code understands.
        supported: u64,
    },
    /// redb failed.
    #[error("metadata DB {path}: {context}: {source}")]
    Db {
        /// The DB file.
        path: PathBuf,
        /// What was being done.
        context: String,
        /// The underlying error.
        source: Box<redb::Error>,
    },
    /// A record does not decode.
    #[error("metadata DB {path}: corrupt record {key:?}: {source}")]
    Corrupt {
        /// The DB file.
        path: PathBuf,
        /// The record's key.
        key: String,
        /// The decode error.
        source: serde_json::Error,
    },
    /// No such lease.
    #[error("lease {0:?} does not exist")]
    LeaseNotFound(String),
    /// The lease ID is taken.
    #[error("lease {0:?} already exists")]
    LeaseExists(String),
    /// A TTL too large to represent.
    #[error("lease {0:?}: TTL out of range")]
    BadTtl(String),
    /// A caller's own precondition failed inside an update (the message
    /// names what).
    #[error("{0}")]
    Conflict(String),
    /// An I/O error on the lock file.
    #[error("{context}: {source}")]
    Io {
        /// What failed, naming the path.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A table of JSON records that another part of berth keeps in this DB
/// (the engine's containers and their names), under the same schema
/// version, lock and transactions as the image records.
#[derive(Clone, Copy)]
pub struct RecordTable(
    TableDefinition<'static, &'static str, &'static [u8]>,
    &'static str,
);

impl RecordTable {
    /// The table named `name` (which must not be one of this module's).
    pub const fn new(name: &'static str) -> RecordTable {
        RecordTable(TableDefinition::new(name), name)
    }
}

impl std::fmt::Debug for RecordTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecordTable({:?})", self.1)
    }
}

/// Other parts' tables inside one write transaction of [`MetaDb::update_records`].
pub struct RecordTx<'t> {
    db: &'t MetaDb,
    tx: &'t WriteTransaction,
    context: &'t str,
}

impl std::fmt::Debug for RecordTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordTx")
            .field("context", &self.context)
            .finish()
    }
}

impl RecordTx<'_> {
    /// Record `key` of `table`.
    pub fn get<T: for<'a> Deserialize<'a>>(
        &self,
        table: &RecordTable,
        key: &str,
    ) -> Result<Option<T>, MetaError> {
        let t = self.db.table(self.tx, table.0, self.context)?;
        self.db.get(&t, key, self.context)
    }

    /// Every record of `table`.
    pub fn all<T: for<'a> Deserialize<'a>>(
        &self,
        table: &RecordTable,
    ) -> Result<Vec<T>, MetaError> {
        let t = self.db.table(self.tx, table.0, self.context)?;
        self.db.all(&t, self.context)
    }

    /// Creates or replaces record `key` of `table`.
    pub fn put<T: Serialize>(
        &self,
        table: &RecordTable,
        key: &str,
        value: &T,
    ) -> Result<(), MetaError> {
        self.db.put(self.tx, table.0, key, value, self.context)
    }

    /// Removes record `key` of `table`; false if there was none.
    pub fn remove(&self, table: &RecordTable, key: &str) -> Result<bool, MetaError> {
        self.db.remove(self.tx, table.0, key, self.context)
    }
}

/// The metadata DB. `Send + Sync`; holds no open file between operations
/// unless [`MetaDb::hold`] asks it to. Clones share a hold.
#[derive(Debug, Clone)]
pub struct MetaDb {
    path: PathBuf,
    db: SharedDb,
}

impl MetaDb {
    /// The DB at `path` (made by the first write). Creates its directory.
    pub fn open(path: &Path) -> Result<Self, MetaError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| MetaError::Io {
                context: format!("create {}", dir.display()),
                source,
            })?;
        }
        let mut lock = OsString::from(path.as_os_str());
        lock.push(".lock");
        // The file and its tables are made by the first write; every
        // transaction checks the schema version.
        Ok(MetaDb {
            path: path.to_path_buf(),
            db: SharedDb::new(path, Path::new(&lock)),
        })
    }

    /// Keeps the DB open and locked for this process until the hold drops,
    /// so a run of operations opens it once. Other processes wait meanwhile:
    /// hold it only for short work.
    pub fn hold(&self) -> Result<DbHold, MetaError> {
        self.db.hold().map_err(|e| self.open_err("hold")(e))
    }

    fn open_err(&self, context: &str) -> impl FnOnce(OpenError) -> MetaError + '_ {
        let context = context.to_string();
        move |e| match e {
            OpenError::Lock(path, source) => MetaError::Io {
                context: format!("lock {}", path.display()),
                source,
            },
            OpenError::Db(e) => MetaError::Db {
                path: self.path.clone(),
                context,
                source: Box::new(e.into()),
            },
        }
    }

    /// The DB file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db_err<E: Into<redb::Error>>(&self, context: &str) -> impl FnOnce(E) -> MetaError + '_ {
        let context = context.to_string();
        move |e| MetaError::Db {
            path: self.path.clone(),
            context,
            source: Box::new(e.into()),
        }
    }

    /// Runs `f` in one write transaction under the lock, committing if it
    /// returns Ok. Creates the tables and the schema record on first use and
    /// refuses newer schemas.
    fn write<T>(
        &self,
        context: &str,
        f: impl FnOnce(&WriteTransaction) -> Result<T, MetaError>,
    ) -> Result<T, MetaError> {
        self.db.with(self.open_err(context), |db| {
            let mut tx = db.begin_write().map_err(self.db_err(context))?;
            // Saves the allocator state with each commit, so an open after a
            // crash needs no repair walk.
            tx.set_quick_repair(true);
            {
                let mut schema = tx.open_table(SCHEMA).map_err(self.db_err(context))?;
                let found = schema
                    .get("version")
                    .map_err(self.db_err(context))?
                    .map(|v| v.value());
                match found {
                    None => {
                        schema
                            .insert("version", SCHEMA_VERSION)
                            .map_err(self.db_err(context))?;
                    }
                    Some(v) if v > SCHEMA_VERSION => {
                        return Err(MetaError::SchemaTooNew {
                            path: self.path.clone(),
                            found: v,
                            supported: SCHEMA_VERSION,
                        })
                    }
                    Some(_) => {}
                }
                tx.open_table(IMAGES).map_err(self.db_err(context))?;
                tx.open_table(LEASES).map_err(self.db_err(context))?;
            }
            let out = f(&tx)?;
            tx.commit().map_err(self.db_err(context))?;
            Ok(out)
        })
    }

    fn decode<T: for<'a> Deserialize<'a>>(&self, key: &str, v: &[u8]) -> Result<T, MetaError> {
        serde_json::from_slice(v).map_err(|source| MetaError::Corrupt {
            path: self.path.clone(),
            key: key.to_string(),
            source,
        })
    }

    fn get<T: for<'a> Deserialize<'a>>(
        &self,
        t: &impl ReadableTable<&'static str, &'static [u8]>,
        key: &str,
        context: &str,
    ) -> Result<Option<T>, MetaError> {
        let v = t.get(key).map_err(self.db_err(context))?;
        match v {
            Some(v) => Ok(Some(self.decode(key, v.value())?)),
            None => Ok(None),
        }
    }

    fn table<'t>(
        &self,
        tx: &'t WriteTransaction,
        def: TableDefinition<&'static str, &'static [u8]>,
        context: &str,
    ) -> Result<redb::Table<'t, &'static str, &'static [u8]>, MetaError> {
        tx.open_table(def).map_err(self.db_err(context))
    }

    fn put<T: Serialize>(
        &self,
        tx: &WriteTransaction,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &T,
        context: &str,
    ) -> Result<(), MetaError> {
        let bytes = serde_json::to_vec(value).map_err(|source| MetaError::Corrupt {
            path: self.path.clone(),
            key: key.to_string(),
            source,
        })?;
        let mut t = tx.open_table(table).map_err(self.db_err(context))?;
        t.insert(key, bytes.as_slice())
            .map_err(self.db_err(context))?;
        Ok(())
    }

    fn remove(
        &self,
        tx: &WriteTransaction,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        context: &str,
    ) -> Result<bool, MetaError> {
        let mut t = tx.open_table(table).map_err(self.db_err(context))?;
        let old = t.remove(key).map_err(self.db_err(context))?;
        Ok(old.is_some())
    }

    fn all<T: for<'a> Deserialize<'a>>(
        &self,
        t: &impl ReadableTable<&'static str, &'static [u8]>,
        context: &str,
    ) -> Result<Vec<T>, MetaError> {
        let mut out = Vec::new();
        for item in t.iter().map_err(self.db_err(context))? {
            let (k, v) = item.map_err(self.db_err(context))?;
            out.push(self.decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Runs `f` on `table` in a read transaction under the lock (no commit,
    /// so no fsync). None if the table does not exist (a DB file recreated
    /// behind our back), which reads as empty.
    fn read<T>(
        &self,
        context: &str,
        table: TableDefinition<&'static str, &'static [u8]>,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static str, &'static [u8]>) -> Result<T, MetaError>,
    ) -> Result<Option<T>, MetaError> {
        self.db.with(self.open_err(context), |db| {
            let tx = db.begin_read().map_err(self.db_err(context))?;
            match tx.open_table(SCHEMA) {
                Ok(schema) => {
                    if let Some(v) = schema.get("version").map_err(self.db_err(context))? {
                        if v.value() > SCHEMA_VERSION {
                            return Err(MetaError::SchemaTooNew {
                                path: self.path.clone(),
                                found: v.value(),
                                supported: SCHEMA_VERSION,
                            });
                        }
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(self.db_err(context)(e)),
            }
            match tx.open_table(table) {
                Ok(t) => f(&t).map(Some),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
                Err(e) => Err(self.db_err(context)(e)),
            }
        })
    }

    /// Creates lease `id` holding `content` and `snapshots`, in one
    /// transaction (a pull names everything it will write up front).
    pub fn create_lease_with(
        &self,
        id: &str,
        ttl: Option<Duration>,
        content: &[Digest],
        snapshots: &[String],
    ) -> Result<Lease, MetaError> {
        let ctx = format!("create lease {id}");
        let now = Utc::now();
        let expires = match ttl {
            None => None,
            Some(t) => Some(
                chrono::Duration::from_std(t)
                    .ok()
                    .and_then(|t| now.checked_add_signed(t))
                    .ok_or_else(|| MetaError::BadTtl(id.to_string()))?,
            ),
        };
        let lease = Lease {
            id: id.to_string(),
            created: now,
            expires,
            content: content.iter().cloned().collect(),
            snapshots: snapshots.iter().cloned().collect(),
        };
        self.write(&ctx, |tx| {
            if self
                .get::<Lease>(&self.table(tx, LEASES, &ctx)?, id, &ctx)?
                .is_some()
            {
                return Err(MetaError::LeaseExists(id.to_string()));
            }
            self.put(tx, LEASES, id, &lease, &ctx)
        })?;
        Ok(lease)
    }

    /// Writes an image record and drops the lease that protected its content
    /// while it was fetched, in one transaction.
    pub fn put_image_release(&self, r: &ImageRecord, lease: &str) -> Result<(), MetaError> {
        let ctx = format!("put image {}", r.name);
        self.write(&ctx, |tx| {
            let mut rec = r.clone();
            if let Some(old) =
                self.get::<ImageRecord>(&self.table(tx, IMAGES, &ctx)?, &r.name, &ctx)?
            {
                rec.created = old.created;
            }
            self.put(tx, IMAGES, &r.name, &rec, &ctx)?;
            self.remove(tx, LEASES, lease, &ctx)?;
            Ok(())
        })
    }

    /// Creates or updates an image record. An update keeps the existing
    /// record's `created`.
    pub fn put_image(&self, r: &ImageRecord) -> Result<(), MetaError> {
        let ctx = format!("put image {}", r.name);
        self.write(&ctx, |tx| {
            let mut rec = r.clone();
            if let Some(old) =
                self.get::<ImageRecord>(&self.table(tx, IMAGES, &ctx)?, &r.name, &ctx)?
            {
                rec.created = old.created;
            }
            self.put(tx, IMAGES, &r.name, &rec, &ctx)
        })
    }

    /// Record `key` of another part's table.
    pub fn get_record<T: for<'a> Deserialize<'a>>(
        &self,
        table: &RecordTable,
        key: &str,
    ) -> Result<Option<T>, MetaError> {
        let ctx = format!("get {} {key}", table.1);
        Ok(self
            .read(&ctx, table.0, |t| self.get(t, key, &ctx))?
            .flatten())
    }

    /// Every record of another part's table, by key.
    pub fn list_records<T: for<'a> Deserialize<'a>>(
        &self,
        table: &RecordTable,
    ) -> Result<Vec<T>, MetaError> {
        let ctx = format!("list {}", table.1);
        Ok(self
            .read(&ctx, table.0, |t| self.all(t, &ctx))?
            .unwrap_or_default())
    }

    /// Runs `f` on other parts' tables in one write transaction, committed
    /// when `f` returns Ok (so a check and the writes it guards are atomic
    /// across processes).
    pub fn update_records<R>(
        &self,
        context: &str,
        f: impl FnOnce(&RecordTx<'_>) -> Result<R, MetaError>,
    ) -> Result<R, MetaError> {
        self.write(context, |tx| {
            f(&RecordTx {
                db: self,
                tx,
                context,
            })
        })
    }

    /// The image record named `name`.
    pub fn get_image(&self, name: &str) -> Result<Option<ImageRecord>, MetaError> {
        let ctx = format!("get image {name}");
        Ok(self
            .read(&ctx, IMAGES, |t| self.get(t, name, &ctx))?
            .flatten())
    }

    /// Deletes an image record; false if there was none.
    pub fn delete_image(&self, name: &str) -> Result<bool, MetaError> {
        let ctx = format!("delete image {name}");
        self.write(&ctx, |tx| self.remove(tx, IMAGES, name, &ctx))
    }

    /// Every image record, sorted by name.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>, MetaError> {
        Ok(self
            .read("list images", IMAGES, |t| self.all(t, "list images"))?
            .unwrap_or_default())
    }

    /// Creates lease `id`, expiring after `ttl` (never, with None).
    pub fn create_lease(&self, id: &str, ttl: Option<Duration>) -> Result<Lease, MetaError> {
        self.create_lease_with(id, ttl, &[], &[])
    }

    fn update_lease(
        &self,
        id: &str,
        ctx: &str,
        f: impl FnOnce(&mut Lease),
    ) -> Result<(), MetaError> {
        self.write(ctx, |tx| {
            let mut l: Lease = self
                .get(&self.table(tx, LEASES, ctx)?, id, ctx)?
                .ok_or_else(|| MetaError::LeaseNotFound(id.to_string()))?;
            f(&mut l);
            self.put(tx, LEASES, id, &l, ctx)
        })
    }

    /// Adds a blob to lease `id`.
    pub fn add_lease_content(&self, id: &str, d: &Digest) -> Result<(), MetaError> {
        let ctx = format!("add {d} to lease {id}");
        self.update_lease(id, &ctx, |l| {
            l.content.insert(d.clone());
        })
    }

    /// Adds a snapshot key to lease `id`.
    pub fn add_lease_snapshot(&self, id: &str, key: &str) -> Result<(), MetaError> {
        let ctx = format!("add snapshot {key} to lease {id}");
        self.update_lease(id, &ctx, |l| {
            l.snapshots.insert(key.to_string());
        })
    }

    /// Deletes lease `id`; false if there was none.
    pub fn delete_lease(&self, id: &str) -> Result<bool, MetaError> {
        let ctx = format!("delete lease {id}");
        self.write(&ctx, |tx| self.remove(tx, LEASES, id, &ctx))
    }

    /// Every lease, sorted by ID.
    pub fn list_leases(&self) -> Result<Vec<Lease>, MetaError> {
        Ok(self
            .read("list leases", LEASES, |t| self.all(t, "list leases"))?
            .unwrap_or_default())
    }

    /// Deletes every lease expired at `now`, in one transaction, and returns
    /// their IDs.
    pub fn delete_expired_leases(&self, now: DateTime<Utc>) -> Result<Vec<String>, MetaError> {
        let ctx = "delete expired leases";
        self.write(ctx, |tx| {
            let expired: Vec<String> = self
                .all::<Lease>(&self.table(tx, LEASES, ctx)?, ctx)?
                .into_iter()
                .filter(|l| l.expired(now))
                .map(|l| l.id)
                .collect();
            for id in &expired {
                self.remove(tx, LEASES, id, ctx)?;
            }
            Ok(expired)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, data: &[u8]) -> ImageRecord {
        let now = Utc::now();
        ImageRecord {
            name: name.to_string(),
            target: Descriptor {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                digest: Digest::sha256_of(data),
                size: data.len() as u64,
            },
            created: now,
            updated: now,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn image_crud() {
        let t = tempfile::tempdir().unwrap();
        let db = MetaDb::open(&t.path().join("meta.db")).unwrap();
        let a = rec("docker.io/library/a:latest", b"a");
        db.put_image(&a).unwrap();
        db.put_image(&rec("docker.io/library/b:1", b"b")).unwrap();
        let mut a2 = rec("docker.io/library/a:latest", b"a2");
        a2.created = Utc::now() + chrono::Duration::days(1);
        a2.labels.insert("k".into(), "v".into());
        db.put_image(&a2).unwrap();
        let got = db.get_image(&a.name).unwrap().unwrap();
        assert_eq!(got.created, a.created);
        assert_eq!(got.target, a2.target);
        assert_eq!(got.labels["k"], "v");
        let names: Vec<_> = db
            .list_images()
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(
            names,
            ["docker.io/library/a:latest", "docker.io/library/b:1"]
        );
        assert!(db.delete_image(&a.name).unwrap());
        assert!(!db.delete_image(&a.name).unwrap());
        assert!(db.get_image(&a.name).unwrap().is_none());
        // A second handle (as another process would) sees the same data.
        let db2 = MetaDb::open(&t.path().join("meta.db")).unwrap();
        assert_eq!(db2.list_images().unwrap().len(), 1);
    }

    #[test]
    fn newer_schema_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("meta.db");
        {
            let db = redb::Database::create(&p).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(SCHEMA).unwrap().insert("version", 7).unwrap();
            tx.commit().unwrap();
        }
        // Opening touches nothing; every read and write refuses.
        let db = MetaDb::open(&p).unwrap();
        for e in [
            db.list_images().unwrap_err(),
            db.delete_image("x").unwrap_err(),
        ] {
            let msg = e.to_string();
            assert!(msg.contains('7') && msg.contains('1'), "{msg}");
            assert!(matches!(
                e,
                MetaError::SchemaTooNew {
                    found: 7,
                    supported: 1,
                    ..
                }
            ));
        }
    }

    #[test]
    fn leases() {
        let t = tempfile::tempdir().unwrap();
        let db = MetaDb::open(&t.path().join("meta.db")).unwrap();
        let l = db
            .create_lease("pull-1", Some(Duration::from_secs(3600)))
            .unwrap();
        assert!(l.expires.is_some());
        assert!(matches!(
            db.create_lease("pull-1", None),
            Err(MetaError::LeaseExists(_))
        ));
        let d = Digest::sha256_of(b"x");
        db.add_lease_content("pull-1", &d).unwrap();
        db.add_lease_snapshot("pull-1", "extract-1").unwrap();
        assert!(matches!(
            db.add_lease_content("nope", &d),
            Err(MetaError::LeaseNotFound(_))
        ));
        db.create_lease("old", Some(Duration::ZERO)).unwrap();
        let ls = db.list_leases().unwrap();
        assert_eq!(ls.len(), 2);
        assert!(ls[1].content.contains(&d));
        assert!(ls[1].snapshots.contains("extract-1"));
        assert_eq!(db.delete_expired_leases(Utc::now()).unwrap(), ["old"]);
        assert!(db.delete_lease("pull-1").unwrap());
        assert!(!db.delete_lease("pull-1").unwrap());
        assert!(db.list_leases().unwrap().is_empty());
    }

    #[test]
    fn threads_share_one_db() {
        let t = tempfile::tempdir().unwrap();
        let db = std::sync::Arc::new(MetaDb::open(&t.path().join("meta.db")).unwrap());
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let db = db.clone();
                std::thread::spawn(move || {
                    for j in 0..5 {
                        db.put_image(&rec(&format!("x/{i}:{j}"), b"z")).unwrap();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(db.list_images().unwrap().len(), 20);
    }
}
