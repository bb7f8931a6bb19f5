//! Per-container state under the runtime root: `<root>/<id>/state.json`, a copy of
//! the config, the exec FIFO, and an advisory lock that serialises commands on one ID.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Version of the on-disk state format.
pub const STATE_SCHEMA: u32 = 1;
/// Name of the FIFO that holds a created container's init until `start`.
pub const EXEC_FIFO: &str = "exec.fifo";
/// Name of the state file.
pub const STATE_FILE: &str = "state.json";
/// Name of the saved config.
pub const CONFIG_FILE: &str = "config.json";
/// Name of the record a create writes before it makes anything, so that a
/// create that died half-way can be undone (see [`Pending`]).
pub const PENDING_FILE: &str = "creating.json";

/// The lifecycle status of a container, as in the runtime-spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created.
    Creating,
    /// Created; init waits for `start`.
    Created,
    /// The user process runs.
    Running,
    /// Frozen.
    Paused,
    /// Init has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What the runtime remembers about a container between invocations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Schema version of this file.
    pub schema: u32,
    /// Container ID.
    pub id: String,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Host PID of the init process.
    pub pid: i32,
    /// Start time of init (field 22 of /proc/PID/stat), to detect PID reuse.
    pub pid_start: u64,
    /// Creation time, RFC 3339.
    pub created: String,
    /// The user that created the container.
    pub owner: String,
    /// Annotations from the config.
    pub annotations: HashMap<String, String>,
    /// Where the cgroup lives.
    pub cgroup: berth_cgroups::CgroupState,
    /// Namespace types the container has (new or joined), for `exec`.
    pub namespaces: Vec<String>,
    /// Without a mount namespace: the rootfs bind mount that delete detaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_root: Option<HostRootMount>,
}

/// What a create has made so far, written before each thing it makes (a
/// cgroup, a mount) and replaced by [`Record`] when it succeeds: a create that
/// was killed half-way leaves this, and `delete` undoes what it names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    /// Schema version of this file (that of state.json).
    pub schema: u32,
    /// Container ID.
    pub id: String,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// When the create began, RFC 3339.
    pub created: String,
    /// The user that runs the create.
    pub owner: String,
    /// Host PID of the container's process once cloned (0 before).
    pub pid: i32,
    /// Its start time, to tell it from a later process with the same PID.
    pub pid_start: u64,
    /// The cgroup, with every directory the create may make listed as made
    /// (those that did not exist before it began).
    pub cgroup: Option<berth_cgroups::CgroupState>,
    /// The rootfs bind mount of a container without a mount namespace.
    pub host_root: Option<HostRootMount>,
}

/// The bind mount of its rootfs that a container without a mount namespace
/// has in the runtime's mount namespace: the container's mounts are made
/// under it, so detaching it at delete removes them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRootMount {
    /// The rootfs it is mounted on.
    pub path: PathBuf,
    /// The ID of the mount that `path` was on before (which must stay).
    pub below: u64,
    /// The bind mount's own ID, once it is made.
    pub mount: Option<u64>,
}

/// The state JSON of `runtime state` and of hooks' stdin (runtime-spec).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    /// Spec version.
    pub oci_version: String,
    /// Container ID.
    pub id: String,
    /// Lifecycle status.
    pub status: Status,
    /// Init PID (0 once stopped).
    pub pid: i32,
    /// Bundle path.
    pub bundle: PathBuf,
    /// Rootfs path (runc's extension).
    pub rootfs: PathBuf,
    /// Creation time (runc's extension).
    pub created: String,
    /// Owner (runc's extension).
    pub owner: String,
    /// Annotations.
    #[serde(skip_serializing_if = "HashMap::is_empty", default)]
    pub annotations: HashMap<String, String>,
}

/// Check that `id` can name a container (runc's rule).
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

/// A container's state directory, locked for the lifetime of this value.
#[derive(Debug)]
pub struct StateDir {
    /// `<root>/<id>`.
    pub path: PathBuf,
    /// Container ID.
    pub id: String,
    _lock: File,
}

impl StateDir {
    /// Create a fresh state dir; fails if the ID is taken.
    ///
    /// A state dir holds the container's saved config, its environment
    /// included, so it is 0700, and so is a root (with its missing parents)
    /// made here, as runc makes its own. A root that exists is left as its
    /// owner made it, as runc leaves it (containerd, for one, makes its
    /// runtime roots 0711 on purpose).
    pub fn create(root: &Path, id: &str) -> Result<StateDir> {
        use std::os::unix::fs::DirBuilderExt;
        validate_id(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| Error::io("create runtime root", root, e))?;
        let path = root.join(id);
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(id.into()))
            }
            Err(e) => return Err(Error::io("create state dir", &path, e)),
        }
        Self::lock(path, id)
    }

    /// Open and lock an existing state dir.
    pub fn open(root: &Path, id: &str) -> Result<StateDir> {
        validate_id(id)?;
        let path = root.join(id);
        if !path.is_dir() {
            return Err(Error::NotFound(id.into()));
        }
        Self::lock(path, id)
    }

    fn lock(path: PathBuf, id: &str) -> Result<StateDir> {
        let f = File::open(&path).map_err(|e| Error::io("open state dir", &path, e))?;
        rustix::fs::flock(f.as_fd(), rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::io("lock state dir", &path, e.into()))?;
        // The dir may have been removed while we waited for the lock.
        if !path.is_dir() {
            return Err(Error::NotFound(id.into()));
        }
        Ok(StateDir {
            path,
            id: id.into(),
            _lock: f,
        })
    }

    /// The lock's fd: a forked child must close it, or it would keep the lock.
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self._lock.as_raw_fd()
    }

    /// Path of a file in the state dir.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Read the record; a missing file means the create never finished.
    pub fn load(&self) -> Result<Option<Record>> {
        read_record(&self.path, &self.id)
    }

    /// Write what the create has made so far (before it makes the next thing).
    pub fn save_pending(&self, p: &Pending) -> Result<()> {
        let data = serde_json::to_vec(p).map_err(|e| Error::State {
            id: self.id.clone(),
            msg: e.to_string(),
        })?;
        write_atomic_mode(&self.file(PENDING_FILE), &data, PRIVATE_FILE)
    }

    /// Save the config (the bytes that were parsed), 0600: it holds the
    /// container's environment.
    pub fn save_config(&self, data: &[u8]) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let dst = self.file(CONFIG_FILE);
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE)
            .open(&dst)
            .and_then(|mut f| f.write_all(data))
            .map_err(|e| Error::io("save config", &dst, e))
    }

    /// Drop the pending record once state.json replaces it.
    pub fn remove_pending(&self) {
        let _ = fs::remove_file(self.file(PENDING_FILE));
    }

    /// Write the record atomically.
    pub fn save(&self, r: &Record) -> Result<()> {
        let data = serde_json::to_vec(r).map_err(|e| Error::State {
            id: self.id.clone(),
            msg: e.to_string(),
        })?;
        write_atomic_mode(&self.file(STATE_FILE), &data, PRIVATE_FILE)
    }

    /// Remove the whole directory.
    pub fn remove(self) -> Result<()> {
        fs::remove_dir_all(&self.path).map_err(|e| Error::io("remove state dir", &self.path, e))
    }
}

/// A schema-versioned file of a state dir.
trait Versioned: serde::de::DeserializeOwned {
    fn schema(&self) -> u32;
}

impl Versioned for Record {
    fn schema(&self) -> u32 {
        self.schema
    }
}

impl Versioned for Pending {
    fn schema(&self) -> u32 {
        self.schema
    }
}

/// Reads `file` of the state dir `dir` of container `id`, if it is there,
/// refusing a schema this runtime does not read; `what` names it in errors.
fn read_versioned<T: Versioned>(
    dir: &Path,
    id: &str,
    file: &str,
    what: &'static str,
) -> Result<Option<T>> {
    let p = dir.join(file);
    match fs::read(&p) {
        Ok(b) => {
            let r: T = serde_json::from_slice(&b).map_err(|e| Error::State {
                id: id.into(),
                msg: format!("{}: {e}", p.display()),
            })?;
            if r.schema() != STATE_SCHEMA {
                return Err(Error::State {
                    id: id.into(),
                    msg: format!(
                        "{} has schema {} but this runtime reads {STATE_SCHEMA}",
                        p.display(),
                        r.schema()
                    ),
                });
            }
            Ok(Some(r))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(what, p, e)),
    }
}

/// Read the record in the state dir `dir` of container `id`, without its
/// lock (the file is replaced atomically); a missing file means the create
/// never finished.
pub fn read_record(dir: &Path, id: &str) -> Result<Option<Record>> {
    read_versioned(dir, id, STATE_FILE, "read state")
}

/// Read the pending record of an unfinished create in state dir `dir`, if
/// it got as far as writing one.
pub fn read_pending(dir: &Path, id: &str) -> Result<Option<Pending>> {
    read_versioned(dir, id, PENDING_FILE, "read pending state")
}

/// The mode of the records in a state dir.
const PRIVATE_FILE: u32 = 0o600;

/// Write `data` to `path` through a temp file and a rename, so readers never see half of it.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_mode(path, data, 0o666)
}

/// [`write_atomic`] with the file's mode (before the umask).
fn write_atomic_mode(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(data).map_err(|e| Error::io("write", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))
}

/// The start time of `pid` in clock ticks since boot, or None if it is gone or a zombie.
pub fn pid_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether the process recorded in `r` is still the same live process.
pub fn init_alive(r: &Record) -> bool {
    r.pid > 0 && pid_start_time(r.pid) == Some(r.pid_start)
}

/// Current time as RFC 3339 with nanoseconds, as runc writes it.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "abc-DEF_1.2+3", &"x".repeat(64)] {
            validate_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "ä", "../x"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn create_twice_and_open_missing() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::create(d.path(), "c1").unwrap();
        drop(s);
        let e = StateDir::create(d.path(), "c1").unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        let e = StateDir::open(d.path(), "nope").unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::NotFound);
    }

    #[test]
    fn root_and_state_dirs_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let d = tempfile::tempdir().unwrap();
        // A root the runtime makes (with its missing parents) is 0700.
        let root = d.path().join("a/root");
        let s = StateDir::create(&root, "c1").unwrap();
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&d.path().join("a")), 0o700);
        assert_eq!(mode(&s.path), 0o700);
        // An existing root is left as its owner made it (as runc does); the
        // state dirs in it are still 0700.
        let open = d.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        let s = StateDir::create(&open, "c2").unwrap();
        assert_eq!(mode(&open), 0o755);
        assert_eq!(mode(&s.path), 0o700);
        // The records written into it are 0600.
        let p = Pending {
            schema: STATE_SCHEMA,
            id: "c2".into(),
            bundle: "/b".into(),
            created: now_rfc3339(),
            owner: "root".into(),
            pid: 0,
            pid_start: 0,
            cgroup: None,
            host_root: None,
        };
        s.save_pending(&p).unwrap();
        assert_eq!(mode(&s.file(PENDING_FILE)), 0o600);
    }

    #[test]
    fn own_start_time() {
        let me = std::process::id() as i32;
        assert!(pid_start_time(me).is_some());
        assert!(pid_start_time(i32::MAX).is_none());
    }

    #[test]
    fn status_json() {
        assert_eq!(
            serde_json::to_string(&Status::Paused).unwrap(),
            "\"paused\""
        );
    }
}
