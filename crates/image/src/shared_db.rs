//! One redb file used by many berth processes at once.
//!
//! redb lets only one handle have a file open, and berth has no daemon, so
//! by default every operation takes an exclusive `flock(2)` on a sibling lock
//! file (a new open file description each time, so threads of one process
//! exclude each other too), opens the database, runs its transaction and
//! closes both again.
//!
//! A [`DbHold`] keeps the lock and the open database across several
//! operations of one process: making a container does about six, and each
//! open and close costs a lock, a header write and its syncs. Other processes
//! wait on the flock while a hold lives, so holds are for short stretches of
//! work, never across a wait on a container. Threads of the holding process
//! share the open database through a mutex, one operation at a time.
//! Invariant: a hold never nests inside an operation, and an operation never
//! runs inside another one (both would deadlock on the flock or the mutex).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use redb::Database;
use rustix::fs::{flock, FlockOperation};

/// Why the database could not be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Opening or locking the lock file.
    Lock(PathBuf, std::io::Error),
    /// Opening the database file.
    Db(redb::DatabaseError),
}

struct Open {
    // Dropped after `db`: the lock is released once the file is closed.
    db: Database,
    _lock: File,
}

type Slot = Arc<Mutex<Option<Open>>>;

/// A redb file and its lock file, shared by clones of this value.
#[derive(Clone)]
pub(crate) struct SharedDb {
    db_path: PathBuf,
    lock_path: PathBuf,
    held: Slot,
}

impl std::fmt::Debug for SharedDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedDb")
            .field("db_path", &self.db_path)
            .field("lock_path", &self.lock_path)
            .finish_non_exhaustive()
    }
}

fn slot(held: &Slot) -> MutexGuard<'_, Option<Open>> {
    // A panic inside an operation leaves nothing half-done in the slot: the
    // transaction was not committed, and the database stays usable.
    held.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SharedDb {
    pub(crate) fn new(db_path: &Path, lock_path: &Path) -> SharedDb {
        SharedDb {
            db_path: db_path.to_path_buf(),
            lock_path: lock_path.to_path_buf(),
            held: Arc::default(),
        }
    }

    fn open(&self) -> Result<Open, OpenError> {
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock_path)
            .map_err(|e| OpenError::Lock(self.lock_path.clone(), e))?;
        flock(&lock, FlockOperation::LockExclusive)
            .map_err(|e| OpenError::Lock(self.lock_path.clone(), e.into()))?;
        let db = Database::create(&self.db_path).map_err(OpenError::Db)?;
        Ok(Open { db, _lock: lock })
    }

    /// Runs `f` on the open database: the held one, or one opened (and
    /// locked) for this call alone.
    pub(crate) fn with<T, E>(
        &self,
        on_open: impl FnOnce(OpenError) -> E,
        f: impl FnOnce(&Database) -> Result<T, E>,
    ) -> Result<T, E> {
        let held = slot(&self.held);
        if let Some(open) = held.as_ref() {
            return f(&open.db);
        }
        drop(held);
        let open = self.open().map_err(on_open)?;
        f(&open.db)
    }

    /// Keeps the database open and locked until the returned hold drops. A
    /// second hold while one lives is a no-op.
    pub(crate) fn hold(&self) -> Result<DbHold, OpenError> {
        let mut held = slot(&self.held);
        if held.is_some() {
            return Ok(DbHold { slot: None });
        }
        *held = Some(self.open()?);
        Ok(DbHold {
            slot: Some(self.held.clone()),
        })
    }
}

/// Keeps a metadata database open and locked for this process; see the
/// module docs of `shared_db`. Dropping it closes the database and releases
/// the lock.
#[must_use = "the database is released when the hold drops"]
pub struct DbHold {
    slot: Option<Slot>,
}

impl std::fmt::Debug for DbHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbHold")
            .field("owner", &self.slot.is_some())
            .finish()
    }
}

impl DbHold {
    /// A hold of nothing, for stores without a shared file.
    pub(crate) fn nothing() -> DbHold {
        DbHold { slot: None }
    }
}

impl Drop for DbHold {
    fn drop(&mut self) {
        if let Some(s) = self.slot.take() {
            slot(&s).take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, TableDefinition};

    const T: TableDefinition<&str, u64> = TableDefinition::new("t");

    fn put(db: &SharedDb, v: u64) {
        db.with(
            |e| format!("{e:?}"),
            |d| {
                let tx = d.begin_write().map_err(|e| e.to_string())?;
                tx.open_table(T)
                    .map_err(|e| e.to_string())?
                    .insert("k", v)
                    .map_err(|e| e.to_string())?;
                tx.commit().map_err(|e| e.to_string())
            },
        )
        .unwrap();
    }

    fn get(db: &SharedDb) -> u64 {
        db.with(
            |e| format!("{e:?}"),
            |d| {
                let tx = d.begin_read().map_err(|e| e.to_string())?;
                let t = tx.open_table(T).map_err(|e| e.to_string())?;
                Ok(t.get("k").map_err(|e| e.to_string())?.unwrap().value())
            },
        )
        .unwrap()
    }

    #[test]
    fn a_hold_keeps_one_open_database_and_releases_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = SharedDb::new(&dir.path().join("db"), &dir.path().join("db.lock"));
        put(&db, 1);
        {
            let _h = db.hold().unwrap();
            let _nested = db.hold().unwrap();
            put(&db, 2);
            // A clone shares the held database.
            assert_eq!(get(&db.clone()), 2);
            // Another handle on the file (another process, in effect) cannot
            // open it while the hold lives.
            assert!(Database::create(dir.path().join("db")).is_err());
        }
        // Released: a fresh handle opens it and sees the committed value.
        assert!(slot(&db.held).is_none());
        let other = SharedDb::new(&dir.path().join("db"), &dir.path().join("db.lock"));
        assert_eq!(get(&other), 2);
    }
}
