//! Snapshots: directories that hold one layer each, stacked by parent links.
//!
//! A snapshot is named by a *key*. The lifecycle, as in containerd:
//!
//! 1. [`Snapshotter::prepare`] makes an *active* (writable) snapshot on top of
//!    an optional committed parent and returns the mounts that show it.
//! 2. Something writes into it: the unpacker (through
//!    [`Snapshotter::prepare_layer`], which hands out the diff directory
//!    itself) or a container.
//! 3. [`Snapshotter::commit`] turns an active snapshot into a *committed* one
//!    under a new name (for image layers, the layer's chain ID). Committed
//!    snapshots are read-only and may be parents.
//! 4. [`Snapshotter::view`] makes a read-only snapshot of a committed parent.
//! 5. [`Snapshotter::remove`] deletes a snapshot that has no children.
//!
//! Invariant: a snapshotter never mounts anything; it returns [`Mount`]s, and
//! the caller mounts them (see `mount`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub mod mount;
pub mod native;
pub mod overlay;

/// One mount, as `mount(2)` takes it: `mount -t TYPE -o OPTIONS SOURCE TARGET`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Filesystem type: `overlay` or `bind`.
    #[serde(rename = "type")]
    pub typ: String,
    /// Source path, or `overlay`.
    pub source: String,
    /// Options such as `lowerdir=...`, `upperdir=...`, `ro`, `rbind`.
    pub options: Vec<String>,
}

/// The kind of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Writable, not yet committed.
    Active,
    /// Read-only view of a committed snapshot.
    View,
    /// Committed: immutable, may be a parent.
    Committed,
}

/// What a snapshotter knows about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// The key (active or view) or name (committed).
    pub key: String,
    /// The committed parent, if any.
    pub parent: Option<String>,
    /// Active, view or committed.
    pub kind: Kind,
    /// Creation time.
    pub created: chrono::DateTime<chrono::Utc>,
}

/// Disk use of one snapshot's own directory (not its parents).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes in regular files (st_blocks * 512).
    pub size: u64,
    /// Number of inodes.
    pub inodes: u64,
}

/// A directory under a snapshotter's root that no snapshot owns: a removed
/// snapshot whose deletion was cut short (a killed `rmi`, `rm -f` or
/// `prune`), or the directory of a snapshot whose creation was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trash {
    /// Its name under the root (`rm-<id>`, or a bare `<id>`).
    pub name: String,
    /// Bytes it takes (st_blocks * 512).
    pub size: u64,
}

/// Errors of a snapshotter.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// snapshot {0:?} does not exist
    #[error("snapshot {0:?} does not exist")]
    NotFound(String),
    /// snapshot {0:?} already exists
    #[error("snapshot {0:?} already exists")]
    AlreadyExists(String),
    /// snapshot {key:?} is {kind:?}, which this operation does not accept
    #[error("snapshot {key:?} is {kind:?}, which this operation does not accept")]
    WrongKind {
        /// The snapshot.
        key: String,
        /// Its kind.
        kind: Kind,
    },
    /// snapshot {0:?} still has children
    #[error("snapshot {0:?} still has children: {1}")]
    HasChildren(String, String),
    /// invalid snapshot key
    #[error("invalid snapshot key {0:?}: {1}")]
    InvalidKey(String, &'static str),
    /// An I/O or system call error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What failed, naming the path.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The snapshot metadata store failed.
    #[error("snapshot metadata: {0}")]
    Db(String),
}

/// A snapshotter: overlayfs, or the copy-based fallback.
pub trait Snapshotter: Send + Sync + std::fmt::Debug {
    /// Makes an active snapshot `key` on top of committed `parent` and returns
    /// the mounts that show it (writable).
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError>;

    /// Makes a read-only view `key` of committed `parent`.
    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError>;

    /// The mounts of an existing active or view snapshot.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError>;

    /// Makes an active snapshot `key` for unpacking one layer and returns the
    /// directory the layer's diff goes into. When
    /// [`Snapshotter::parallel_layers`] is true, `parent` only needs to exist
    /// (active or committed) now and to be committed by the time `key` is
    /// committed, so layers of one image can be unpacked side by side.
    fn prepare_layer(&self, key: &str, parent: Option<&str>) -> Result<PathBuf, SnapshotError>;

    /// Whether layer diffs are independent of their parents' content.
    fn parallel_layers(&self) -> bool;

    /// Commits active snapshot `key` under `name`. Its parent must be committed.
    fn commit(&self, name: &str, key: &str) -> Result<(), SnapshotError>;

    /// Removes a snapshot without children, and its directory.
    fn remove(&self, key: &str) -> Result<(), SnapshotError>;

    /// Keeps the metadata open and locked for this process until the hold
    /// drops, so a run of operations opens it once (see `MetaDb::hold`).
    /// One without a shared metadata file has nothing to hold.
    fn hold(&self) -> Result<crate::meta::DbHold, SnapshotError> {
        Ok(crate::shared_db::DbHold::nothing())
    }

    /// What is known of `key`, or None.
    fn stat(&self, key: &str) -> Result<Option<Info>, SnapshotError>;

    /// Every snapshot.
    fn list(&self) -> Result<Vec<Info>, SnapshotError>;

    /// Disk use of the snapshot's own directory.
    fn usage(&self, key: &str) -> Result<Usage, SnapshotError>;

    /// The writable directory of an active snapshot (the overlay upper dir),
    /// for `commit` of a container and `diff`.
    fn upper_dir(&self, key: &str) -> Result<PathBuf, SnapshotError>;

    /// Directories that no snapshot owns (see [`Trash`]).
    fn trash(&self) -> Result<Vec<Trash>, SnapshotError> {
        Ok(Vec::new())
    }

    /// Deletes one directory that [`Snapshotter::trash`] listed. One that is
    /// gone already, or that a snapshot owns again, is left alone.
    fn remove_trash(&self, _name: &str) -> Result<(), SnapshotError> {
        Ok(())
    }
}
