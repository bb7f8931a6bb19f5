//! Containers from creation to removal, without a daemon: what `berth
//! create/start/stop/kill/rm/pause/unpause/wait` and `ps` do to one
//! container, and how its state is read back by any later `berth` process.
//!
//! Each container has a directory `<root>/containers/<id>/`:
//! - `bundle/`: the OCI bundle ([`crate::bundle`]), its rootfs mounted from
//!   the snapshot `container-<id>` for the container's whole life;
//! - `monitor.json`: the [`MonitorConfig`] its monitor runs from;
//! - `run.json`: written by the monitor at every (re)start ([`RunRecord`]);
//! - `exit.json`: written by the monitor at every exit ([`ExitRecord`]);
//! - `exit.stop`: present when the container was stopped on purpose, so the
//!   monitor does not restart it;
//! - `monitor.pid`, `monitor.err`: the monitor's PID and its stderr;
//! - `ctr.log`: the container's log (json-file or k8s-file);
//! - `lock`: `flock`ed by every command that changes the container.
//!
//! The attach socket lives under the run dir (`<run>/<id>.attach`), since a
//! unix socket path must stay under 108 bytes; the runtime's state is under
//! `<run>/runtime`.
//!
//! Invariants:
//! - The record in the metadata DB is written first at create and removed
//!   last at rm, so a crash at any point leaves a record that `ps` shows and
//!   `rm -f` cleans (every removal step is idempotent).
//! - The state shown is never stored as such: it is derived when asked from
//!   the monitor's files, the liveness of the recorded PID (checked to be in
//!   this container's cgroup, so a reused PID is not mistaken for it) and
//!   the freezer, so nothing can go stale when a process dies.
//! - Commands that change a container hold its lock; the monitor only ever
//!   writes its own files, atomically.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_image::store::{ImageStore, LocalImage};
use berth_monitor::run::{
    read_exit, read_run, ExitRecord, MonitorConfig, RestartPolicy, RunRecord,
};
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::bundle::{self, BundleError, BundleOptions};
use crate::command::{self, CommandError};
use crate::host::{HostConfig, Network};
use crate::records::{ContainerRecord, ContainerStore, RecordError};

/// Why a container operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The record lookup or update failed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The bundle could not be made or removed.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The command is not in the image or not executable (docker's 127/126).
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] berth_image::store::ImageError),
    /// A network could not be set up or torn down.
    #[error(transparent)]
    Network(#[from] crate::network::NetError),
    /// The container's create was cut short.
    #[error(
        "container {name} was not completely created (the berth that created it was stopped \
         half-way): remove it with `berth rm {name}`, and create it again"
    )]
    Incomplete {
        /// The container's name.
        name: String,
    },
    /// The container is not in a state that allows this.
    #[error("container {name} is {state}: {what}")]
    State {
        /// The container's name.
        name: String,
        /// Its state.
        state: Status,
        /// What cannot be done.
        what: String,
    },
    /// The monitor could not start the container.
    #[error("container {name}: {message}")]
    Start {
        /// The container's name.
        name: String,
        /// The monitor's (or runtime's) message.
        message: String,
    },
    /// The runtime refused a command.
    #[error("container {name}: {runtime} {command}: {message}")]
    Runtime {
        /// The container's name.
        name: String,
        /// The runtime binary.
        runtime: String,
        /// The runtime command.
        command: String,
        /// What it said.
        message: String,
    },
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

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ContainerError {
    let context = context.into();
    move |source| ContainerError::Io { context, source }
}

/// A container's state, in docker's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, never started.
    Created,
    /// Its process runs.
    Running,
    /// Frozen.
    Paused,
    /// Exited; the monitor will start it again.
    Restarting,
    /// Exited.
    Exited,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
        })
    }
}

/// A container's state, derived from its files and processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// The status.
    pub status: Status,
    /// The init PID while running, else 0.
    pub pid: i32,
    /// The last exit code (0 before any exit).
    pub exit_code: i32,
    /// Whether the last exit was an OOM kill.
    pub oom_killed: bool,
    /// When it last started.
    pub started_at: Option<String>,
    /// When it last exited.
    pub finished_at: Option<String>,
    /// How many times the monitor restarted it.
    pub restart_count: u32,
    /// A problem found while reading the state, if any.
    pub error: String,
}

impl State {
    /// Whether a process of it may be alive (running, paused, restarting).
    pub fn is_active(&self) -> bool {
        matches!(
            self.status,
            Status::Running | Status::Paused | Status::Restarting
        )
    }
}

/// Everything about a container beyond the record's basics: what it was
/// made with, kept in the record's `config` so `start`, `inspect` and
/// `restart` can use it later.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerConfig {
    /// The runtime binary.
    pub runtime: PathBuf,
    /// A terminal for the process (`-t`).
    pub tty: bool,
    /// Keep stdin open (`-i`).
    pub open_stdin: bool,
    /// The signal `stop` sends first.
    pub stop_signal: String,
    /// Seconds `stop` waits before SIGKILL.
    pub stop_timeout: u32,
    /// The restart policy.
    pub restart: RestartPolicy,
    /// Remove the container when it exits (`--rm`).
    pub auto_remove: bool,
    /// `json-file`, `k8s-file` or `none`.
    pub log_driver: String,
    /// `--log-opt max-size`.
    pub log_max_size: Option<u64>,
    /// `--log-opt max-file`.
    pub log_max_file: u32,
    /// The process's environment.
    pub env: Vec<String>,
    /// The process's working directory.
    pub working_dir: String,
    /// The user as given (`-u` or the image's).
    pub user: String,
    /// The entrypoint (the image's, or `--entrypoint`).
    pub entrypoint: Option<Vec<String>>,
    /// The command after the entrypoint (the image's `Cmd` or the arguments).
    pub cmd: Vec<String>,
    /// The hostname.
    pub hostname: String,
    /// `--label`s.
    pub labels: BTreeMap<String, String>,
    /// `--network`.
    pub network: String,
    /// `--init`.
    pub init: bool,
    /// Volumes this container created without a name (removed by `rm -v`).
    pub anonymous_volumes: Vec<String>,
    /// The host config as the bundle applied it ([`crate::host::HostConfig`],
    /// every volume named), read by `volumes::in_use` and inspect.
    pub host: serde_json::Value,
    /// The cgroup path given to the runtime.
    pub cgroups_path: String,
}

/// Where things are and which binaries to use.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// berth's root (images, containers, volumes).
    pub root: PathBuf,
    /// The run dir (runtime state, attach sockets), on tmpfs normally.
    pub run_dir: PathBuf,
    /// The default runtime.
    pub runtime: PathBuf,
    /// The monitor binary.
    pub monitor: PathBuf,
    /// The CNI config and plugin dirs, and the default network's path.
    pub network: crate::network::NetworkOptions,
    /// The store namespace this engine's containers and volumes are in
    /// (images and networks are shared by all).
    pub namespace: crate::namespace::Namespace,
}

/// Makes the engine's directories, closed to other users, or closes them
/// if an older berth left them open (see `berth_image::private`):
/// `containers/` (bundles whose config holds the env, mounted root file
/// systems, logs), `volumes/`, and the run dir with the runtime's state
/// (which keeps the config too).
fn private_dirs(opts: &EngineOptions) -> io::Result<()> {
    use berth_image::private::{private_dir, DIR_MODE};
    for d in [
        opts.root.join("containers"),
        opts.root.join("volumes"),
        opts.run_dir.clone(),
        opts.run_dir.join("runtime"),
    ] {
        private_dir(&d, DIR_MODE)?;
    }
    Ok(())
}

/// The message of a failed runc-compatible runtime, from its stderr. runc
/// (and berth-runtime) print a logrus line there when no `--log` is given:
/// `time="…" level=error msg="…"` or `{"level":"error","msg":"…",…}`, and
/// `ERRO[0000] msg` on a terminal; the last error line's message is the
/// answer. Any other output is returned trimmed, as it is.
pub fn runtime_error_message(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    for line in text.lines().rev() {
        let line = line.trim();
        if line.starts_with('{') {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                if matches!(v["level"].as_str(), Some("error" | "fatal")) {
                    if let Some(m) = v["msg"].as_str() {
                        return m.to_string();
                    }
                }
            }
            continue;
        }
        for level in ["error", "fatal"] {
            if let Some((_, msg)) = line.split_once(&format!(" level={level} msg=")) {
                if line.starts_with("time=") {
                    return logrus_value(msg);
                }
            }
        }
        for tag in ["\x1b[31mERRO\x1b[0m[", "\x1b[31mFATA\x1b[0m["] {
            if let Some(rest) = line.strip_prefix(tag) {
                if let Some((_, msg)) = rest.split_once("] ") {
                    return msg.trim().to_string();
                }
            }
        }
    }
    text.trim().to_string()
}

/// A logrus text value at the start of `s`: bare up to the next space, or
/// quoted as Go's `%q` (strconv.Unquote).
fn logrus_value(s: &str) -> String {
    let Some(q) = s.strip_prefix('"') else {
        return s.split(' ').next().unwrap_or("").to_string();
    };
    let mut out = String::new();
    let mut it = q.chars();
    while let Some(c) = it.next() {
        match c {
            '"' => break,
            '\\' => {
                let code = |it: &mut std::str::Chars<'_>, n: usize| {
                    let hex: String = it.by_ref().take(n).collect();
                    u32::from_str_radix(&hex, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .unwrap_or(char::REPLACEMENT_CHARACTER)
                };
                match it.next() {
                    Some('a') => out.push('\x07'),
                    Some('b') => out.push('\x08'),
                    Some('f') => out.push('\x0c'),
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some('v') => out.push('\x0b'),
                    Some('x') => out.push(code(&mut it, 2)),
                    Some('u') => out.push(code(&mut it, 4)),
                    Some('U') => out.push(code(&mut it, 8)),
                    Some(o) => out.push(o),
                    None => break,
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// A command that executes `binary` (one of berth's, or a runtime that
/// enters containers) through a read-only view of it, when one can be made,
/// so that it need not re-execute itself from a sealed copy
/// (CVE-2019-5736, `berth_exeseal`). argv[0] stays `binary`. The view must
/// be kept until the command has been spawned.
pub fn sealed_command(binary: &Path) -> (Command, Option<berth_exeseal::ReadOnlyView>) {
    use std::os::unix::process::CommandExt;
    match berth_exeseal::ReadOnlyView::new(binary) {
        Ok(v) => {
            let mut c = Command::new(v.path());
            c.arg0(binary);
            (c, Some(v))
        }
        Err(e) => {
            tracing::debug!("no read-only view of {}: {e}", binary.display());
            (Command::new(binary), None)
        }
    }
}

/// Finds a helper binary: `$ENV`, then beside the current executable, then
/// berth's libexec dirs, then `PATH`.
pub fn find_binary(name: &str, env: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(d);
    }
    dirs.push("/usr/libexec/berth".into());
    dirs.push("/usr/local/libexec/berth".into());
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// What `create` needs beyond the bundle options.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// The image as the user named it.
    pub image_name: String,
    /// The name; a generated one when None.
    pub name: Option<String>,
    /// The bundle options (the ID in it is ignored: the engine makes one).
    pub bundle: BundleOptions,
    /// The rest of the container's configuration.
    pub config: ContainerConfig,
}

/// The engine: containers over one image store.
#[derive(Debug)]
pub struct Engine {
    store: ImageStore,
    records: ContainerStore,
    opts: EngineOptions,
    attachers: Box<dyn crate::network::Attachers + Send + Sync>,
}

/// A container: its record and config.
#[derive(Debug, Clone)]
pub struct Container {
    /// The record.
    pub record: ContainerRecord,
    /// The config from the record.
    pub config: ContainerConfig,
}

impl Container {
    fn from_record(record: ContainerRecord) -> Container {
        let config = serde_json::from_value(record.config.clone()).unwrap_or_default();
        Container { record, config }
    }
    /// The ID.
    pub fn id(&self) -> &str {
        &self.record.id
    }
    /// The name.
    pub fn name(&self) -> &str {
        &self.record.name
    }
}

/// An exclusive `flock` on a container's lock file, released on drop.
#[derive(Debug)]
pub struct ContainerLock {
    _file: File,
}

/// A fresh random container ID: 64 hex characters.
pub(crate) fn new_id() -> Result<String, ContainerError> {
    let mut b = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(io_err("read /dev/urandom"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

const ADJECTIVES: [&str; 24] = [
    "amber", "brisk", "calm", "dapper", "eager", "fleet", "gentle", "hardy", "idle", "jolly",
    "keen", "lucid", "mellow", "nimble", "placid", "quiet", "rapid", "steady", "tidy", "upbeat",
    "vivid", "wry", "young", "zesty",
];
const NOUNS: [&str; 24] = [
    "anchor", "barge", "buoy", "capstan", "dinghy", "ferry", "galley", "harbor", "hull", "jetty",
    "keel", "lantern", "mast", "mooring", "pier", "quay", "rudder", "schooner", "sloop", "tugboat",
    "wharf", "yawl", "bollard", "cutter",
];

/// A docker-style generated name (`adjective_noun`), from the ID's bytes.
fn generated_name(id: &str, attempt: usize) -> String {
    let b = id.as_bytes();
    let a = (b[0] as usize * 7 + b[1] as usize) % ADJECTIVES.len();
    let n = (b[2] as usize * 5 + b[3] as usize) % NOUNS.len();
    if attempt == 0 {
        format!("{}_{}", ADJECTIVES[a], NOUNS[n])
    } else {
        format!("{}_{}{}", ADJECTIVES[a], NOUNS[n], attempt)
    }
}

/// Whether `pid` is alive (not a zombie) and in a cgroup whose path names
/// `id`.
fn pid_in_container(pid: i32, id: &str) -> bool {
    if pid <= 0 {
        return false;
    }
    let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')').and_then(|(_, rest)| {
                rest.split_whitespace()
                    .next()
                    .map(|st| st == "Z" || st == "X")
            })
        })
        .unwrap_or(true);
    if zombie {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/cgroup")) {
        Ok(s) => s.contains(id),
        Err(_) => false,
    }
}

/// The exit code of a container whose exit could not be known (its
/// monitor died first), as podman reports when conmon dies.
pub const LOST_EXIT_CODE: i32 = -1;
/// The error shown for such an exit.
const LOST_EXIT: &str = "its monitor died before it: the exit code could not be \
retrieved, and FinishedAt is when berth found it exited";
/// The error shown while a container runs without its monitor.
const MONITOR_GONE: &str = "its monitor died: its output is no longer logged, and its \
exit code will not be known";

/// Whether the cgroup `path` is frozen (v1 freezer or v2 `cgroup.freeze`).
fn frozen(cgroups_path: &str) -> bool {
    if cgroups_path.is_empty() {
        return false;
    }
    let rel = cgroups_path.trim_start_matches('/');
    if let Ok(s) = fs::read_to_string(format!("/sys/fs/cgroup/freezer/{rel}/freezer.state")) {
        return s.trim() != "THAWED";
    }
    fs::read_to_string(format!("/sys/fs/cgroup/{rel}/cgroup.freeze"))
        .map(|s| s.trim() == "1")
        .unwrap_or(false)
}

fn read_json<T: for<'a> Deserialize<'a>>(path: &Path) -> Option<T> {
    fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Writes `bytes` to `path` atomically.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ContainerError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(io_err(format!("write {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io_err(format!("rename {}", path.display())))
}

impl Engine {
    /// The engine over `store` with `opts`.
    pub fn new(store: ImageStore, opts: EngineOptions) -> Engine {
        if let Err(e) = private_dirs(&opts) {
            tracing::warn!("closing berth's directories to other users: {e}");
        }
        let records = ContainerStore::in_namespace(store.meta().clone(), opts.namespace.clone());
        let attachers = Box::new(crate::adapters::Plugged::new(&opts));
        Engine {
            store,
            records,
            opts,
            attachers,
        }
    }

    /// The network attachers: the CNI plugins and the fast bridge path.
    pub fn attachers(&self) -> &dyn crate::network::Attachers {
        &*self.attachers
    }

    /// The image store.
    pub fn store(&self) -> &ImageStore {
        &self.store
    }

    /// The container records.
    pub fn records(&self) -> &ContainerStore {
        &self.records
    }

    /// The options.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// The directory of container `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.opts.root.join("containers").join(id)
    }

    /// The bundle directory of container `id`.
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.dir(id).join("bundle")
    }

    /// The log file of container `id`.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir(id).join("ctr.log")
    }

    /// The attach socket of container `id`.
    pub fn attach_socket(&self, id: &str) -> PathBuf {
        self.opts.run_dir.join(format!("{id}.attach"))
    }

    /// The runtime's `--root`.
    pub fn runtime_root(&self) -> PathBuf {
        self.opts.run_dir.join("runtime")
    }

    /// The container named by `what` (ID, name or ID prefix).
    pub fn get(&self, what: &str) -> Result<Container, ContainerError> {
        Ok(Container::from_record(self.records.get(what)?))
    }

    /// Every container of this engine's namespace.
    pub fn list(&self) -> Result<Vec<Container>, ContainerError> {
        Ok(self
            .records
            .list()?
            .into_iter()
            .map(Container::from_record)
            .collect())
    }

    /// Every container of every namespace: for what namespaces share
    /// (host ports, networks, images).
    pub fn list_all(&self) -> Result<Vec<Container>, ContainerError> {
        Ok(self
            .records
            .list_all()?
            .into_iter()
            .map(Container::from_record)
            .collect())
    }

    /// The namespace.
    pub fn namespace(&self) -> &crate::namespace::Namespace {
        &self.opts.namespace
    }

    /// This namespace's volumes.
    pub fn volumes(&self) -> crate::volumes::VolumeStore {
        crate::volumes::VolumeStore::in_namespace(&self.opts.root, &self.opts.namespace)
    }

    /// Takes container `id`'s lock (waiting for it). Fails when the
    /// container was removed meanwhile. The lock file is made with the
    /// directory and never re-created here: a waiter re-creating it in a
    /// directory being removed would make that removal fail.
    pub fn lock(&self, c: &Container) -> Result<ContainerLock, ContainerError> {
        let dir = self.dir(c.id());
        let path = dir.join("lock");
        let f = fs::OpenOptions::new().read(true).open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ContainerError::Record(RecordError::NotFound(c.name().to_string()))
            } else {
                io_err(format!("open {}", path.display()))(e)
            }
        })?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err(format!("lock {}", path.display()))(e.into()))?;
        if !dir.exists() {
            return Err(RecordError::NotFound(c.name().to_string()).into());
        }
        Ok(ContainerLock { _file: f })
    }

    /// Takes container `c`'s lock if nobody holds it (this process
    /// included: `flock`s on two opens of the file exclude each other).
    fn try_lock(&self, c: &Container) -> Option<ContainerLock> {
        let dir = self.dir(c.id());
        let f = File::open(dir.join("lock")).ok()?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).ok()?;
        dir.exists().then_some(ContainerLock { _file: f })
    }

    /// The container's state, derived now. The exit of a container whose
    /// monitor died before it is recorded here, by the first look that
    /// finds it gone and can take the container's lock (see
    /// [`Engine::record_lost_exit`]).
    pub fn state(&self, c: &Container) -> State {
        let (st, lost) = self.derive_state(c);
        match lost {
            Some(run) => match self.try_lock(c) {
                Some(lock) => self.record_lost_exit(c, &run, &lock).unwrap_or(st),
                None => st,
            },
            None => st,
        }
    }

    /// [`Engine::state`] for a caller that holds the container's lock.
    fn state_held(&self, c: &Container, lock: &ContainerLock) -> State {
        let (st, lost) = self.derive_state(c);
        match lost {
            Some(run) => self.record_lost_exit(c, &run, lock).unwrap_or(st),
            None => st,
        }
    }

    /// The state from the files and processes, and the run whose exit
    /// nobody recorded (its monitor died, then its process) if that is
    /// what was found.
    fn derive_state(&self, c: &Container) -> (State, Option<RunRecord>) {
        let dir = self.dir(c.id());
        let run: Option<RunRecord> = read_run(&dir.join("run.json")).ok().flatten();
        let exit: Option<ExitRecord> = read_exit(&dir.join("exit.json")).ok().flatten();
        let mut st = State {
            status: Status::Created,
            pid: 0,
            exit_code: exit.as_ref().map_or(0, |e| e.exit_code),
            oom_killed: exit.as_ref().is_some_and(|e| e.oom_killed),
            started_at: run.as_ref().map(|r| r.started_at.clone()),
            finished_at: exit.as_ref().map(|e| e.exited_at.clone()),
            restart_count: run.as_ref().map_or(0, |r| r.restart_count),
            error: exit.as_ref().map(|e| e.error.clone()).unwrap_or_default(),
        };
        let Some(run) = run else {
            return (st, None);
        };
        let this_run_exited = exit
            .as_ref()
            .is_some_and(|e| e.pid == run.pid && e.restart_count == run.restart_count);
        let monitor_alive = self.monitor_pid(c.id()).is_some();
        if this_run_exited {
            let e = exit.as_ref().expect("checked");
            let stopped = dir.join("exit.stop").exists();
            st.status = if monitor_alive
                && c.config
                    .restart
                    .should_restart(e.exit_code, e.restart_count, stopped)
            {
                Status::Restarting
            } else {
                Status::Exited
            };
            return (st, None);
        }
        // An earlier run's exit record is not this run's.
        st.finished_at = None;
        st.error = String::new();
        st.exit_code = 0;
        st.oom_killed = false;
        if pid_in_container(run.pid, c.id()) {
            st.pid = run.pid;
            st.status = if frozen(&c.config.cgroups_path) {
                Status::Paused
            } else {
                Status::Running
            };
            if !monitor_alive {
                st.error = MONITOR_GONE.into();
            }
            return (st, None);
        }
        if monitor_alive {
            // Exited a moment ago; the monitor is writing its record.
            st.status = Status::Running;
            st.pid = run.pid;
            return (st, None);
        }
        st.status = Status::Exited;
        st.exit_code = LOST_EXIT_CODE;
        st.error = LOST_EXIT.into();
        (st, Some(run))
    }

    /// Records the exit of `run`, whose monitor died before it (so nothing
    /// reaped it for us and its exit code is lost), in `exit.json` as the
    /// monitor would have: exit code -1 (podman's for a container whose
    /// conmon died), the time it was found gone (no earlier than its
    /// real end, and at most one `stop` poll later when `stop` ended it),
    /// and the OOM kill count still in its cgroup. The caller holds the
    /// container's lock, so no command is changing the container meanwhile.
    fn record_lost_exit(
        &self,
        c: &Container,
        run: &RunRecord,
        _lock: &ContainerLock,
    ) -> Option<State> {
        // Looked at again under the lock: a start may have begun a new run.
        let (mut st, lost) = self.derive_state(c);
        let lost = lost?;
        if lost != *run {
            return None;
        }
        let rec = ExitRecord {
            exit_code: LOST_EXIT_CODE,
            exited_at: now(),
            pid: run.pid,
            restart_count: run.restart_count,
            oom_killed: berth_monitor::run::oom_kills(&c.config.cgroups_path)
                .is_some_and(|n| n > 0),
            error: LOST_EXIT.into(),
        };
        if let Err(e) = berth_monitor::run::write_exit(&self.dir(c.id()).join("exit.json"), &rec) {
            tracing::warn!(container = c.id(), "recording a lost exit: {e}");
            return None;
        }
        st.finished_at = Some(rec.exited_at);
        st.oom_killed = rec.oom_killed;
        Some(st)
    }

    /// The monitor's PID while it lives.
    pub fn monitor_pid(&self, id: &str) -> Option<i32> {
        let pid: i32 = fs::read_to_string(self.dir(id).join("monitor.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let s = String::from_utf8_lossy(&cmdline);
        (s.contains("berth-monitor") && s.contains(id)).then_some(pid)
    }

    /// Makes a container: record, bundle, monitor config, and its networks.
    /// Undone on failure.
    pub fn create(
        &self,
        img: &LocalImage,
        mut o: CreateOptions,
    ) -> Result<Container, ContainerError> {
        // Bad networks and ports are refused before anything is made.
        let host = &mut o.bundle.host;
        let defs = self.resolve_networks(&host.network)?;
        let mut ports = host.ports.clone();
        if host.publish_all {
            let exposed = img
                .config
                .config
                .as_ref()
                .and_then(|c| c.exposed_ports.as_ref())
                .map(|m| m.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default();
            for p in crate::ports::exposed(&exposed).map_err(crate::network::NetError::from)? {
                if !ports
                    .iter()
                    .any(|q| q.container_port == p.container_port && q.protocol == p.protocol)
                {
                    ports.push(p);
                }
            }
        }
        let joined = match &host.network {
            Network::Container(other) => Some(self.joined_netns(other)?),
            _ => None,
        };
        let request = (!defs.is_empty()).then(|| crate::network::NetRequest {
            networks: defs.iter().map(|d| d.name.clone()).collect(),
            ports: ports.clone(),
            ip: host.ip,
        });
        let c = {
            // About six metadata operations follow: open the files once.
            let _hold = self.store.hold()?;
            self.create_record_and_bundle(img, o, joined, request)?
        };
        if !defs.is_empty() {
            let host: HostConfig =
                serde_json::from_value(c.config.host.clone()).unwrap_or_default();
            if let Err(e) = self.setup_network(&c, &defs, ports, host.ip, self.attachers()) {
                if let Err(r) = self.remove(&c, true) {
                    tracing::warn!(container = c.id(), "undoing a failed create: {r}");
                }
                return Err(e.into());
            }
        }
        Ok(c)
    }

    fn create_record_and_bundle(
        &self,
        img: &LocalImage,
        mut o: CreateOptions,
        joined: Option<PathBuf>,
        request: Option<crate::network::NetRequest>,
    ) -> Result<Container, ContainerError> {
        if let Some(top) = img.top_chain_id() {
            if self
                .store
                .snapshotter()
                .stat(&top.to_string())
                .ok()
                .flatten()
                .is_none()
            {
                self.store.ensure_unpacked(img)?;
            }
        }
        let id = new_id()?;
        o.bundle.id = id.clone();
        o.bundle.host.netns_path = match &o.bundle.host.network {
            Network::Networks(_) => Some(crate::netns::path(&self.opts.run_dir, &id)),
            Network::Container(_) => joined.clone(),
            _ => None,
        };
        o.config.cgroups_path = match &o.bundle.host.cgroup_parent {
            Some(parent) => format!("{}/{id}", parent.trim_end_matches('/')),
            None => format!("/berth/{id}"),
        };
        o.bundle.cgroups_path = Some(o.config.cgroups_path.clone());
        let mut rec = ContainerRecord {
            id: id.clone(),
            name: String::new(),
            namespace: self.opts.namespace.to_string(),
            image: o.image_name.clone(),
            image_id: img.id().to_string(),
            created: now(),
            command: Vec::new(),
            config: serde_json::Value::Null,
        };
        rec.config = serde_json::to_value(&o.config)
            .map_err(|e| io_err("encode config")(io::Error::other(e)))?;
        match &o.name {
            Some(n) => {
                rec.name = n.clone();
                self.records.create(&rec)?;
            }
            None => {
                let mut attempt = 0;
                loop {
                    rec.name = generated_name(&id, attempt);
                    match self.records.create(&rec) {
                        Ok(()) => break,
                        Err(RecordError::NameInUse { .. }) if attempt < 1000 => attempt += 1,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        let made = self.make_files(img, &rec, &o, request).and_then(|c| {
            if let Network::Container(other) = &o.bundle.host.network {
                self.share_etc_files(other, &c)?;
            }
            Ok(c)
        });
        match made {
            Ok(c) => Ok(c),
            Err(e) => {
                let _ = bundle::remove(&self.store, &self.bundle_dir(&id), &id);
                let _ = fs::remove_dir_all(self.dir(&id));
                let _ = self.records.remove(&id);
                Err(e)
            }
        }
    }

    fn make_files(
        &self,
        img: &LocalImage,
        rec: &ContainerRecord,
        o: &CreateOptions,
        request: Option<crate::network::NetRequest>,
    ) -> Result<Container, ContainerError> {
        let id = &rec.id;
        let dir = self.dir(id);
        private_dirs(&self.opts).map_err(io_err("create berth's directories"))?;
        fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        fs::write(dir.join("lock"), b"")
            .map_err(io_err(format!("create {}/lock", dir.display())))?;
        let b = bundle::create(&self.store, img, &self.bundle_dir(id), &o.bundle)?;
        let mut config = o.config.clone();
        // The process as made, for inspect and exec.
        let spec: serde_json::Value = read_json(&b.dir.join("config.json")).unwrap_or_default();
        let mut args: Vec<String> =
            serde_json::from_value(spec["process"]["args"].clone()).unwrap_or_default();
        // The container's own command, without the init in front of it.
        if args.first().map(String::as_str) == Some(crate::init::INIT_PATH) {
            args.drain(..2.min(args.len()));
        }
        config.env = serde_json::from_value(spec["process"]["env"].clone()).unwrap_or_default();
        config.working_dir = spec["process"]["cwd"].as_str().unwrap_or("/").to_string();
        if config.stop_signal.is_empty() {
            config.stop_signal = b.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into());
        }
        config.anonymous_volumes = b.host.anonymous_volumes();
        config.host = serde_json::to_value(&b.host)
            .map_err(|e| io_err("encode host config")(io::Error::other(e)))?;
        let mut rec = rec.clone();
        rec.command = args;
        rec.config = serde_json::to_value(&config)
            .map_err(|e| io_err("encode config")(io::Error::other(e)))?;
        self.records.update(&rec).map_err(ContainerError::Record)?;
        let c = Container {
            record: rec,
            config,
        };
        // The networks asked for, before they are made: a create cut short
        // from here on is finished by `start` (see `ensure_network`).
        if let Some(r) = request {
            let st = crate::network::NetState {
                pending: Some(r),
                ..Default::default()
            };
            self.save_net_state(id, &st)?;
        }
        // Written last: a container without it was not completely made.
        self.write_monitor_config(&c, false, &[])?;
        Ok(c)
    }

    /// A `container:` container uses the other's `/etc/hosts`,
    /// `/etc/hostname` and `/etc/resolv.conf`, as docker's do.
    fn share_etc_files(&self, other: &str, c: &Container) -> Result<(), ContainerError> {
        let o = self.get(other)?;
        for f in ["hosts", "hostname", "resolv.conf"] {
            let from = self.bundle_dir(o.id()).join(f);
            let to = self.bundle_dir(c.id()).join(f);
            if from.exists() {
                fs::copy(&from, &to).map_err(io_err(format!(
                    "copy {} to {}",
                    from.display(),
                    to.display()
                )))?;
            }
        }
        Ok(())
    }

    fn monitor_config(
        &self,
        c: &Container,
        wait_attach: bool,
        exit_command: &[String],
    ) -> MonitorConfig {
        let id = c.id();
        let dir = self.dir(id);
        let none = c.config.log_driver == "none";
        MonitorConfig {
            runtime: self.runtime_of(c),
            runtime_root: self.runtime_root(),
            id: id.to_string(),
            bundle: self.bundle_dir(id),
            log_path: (!none).then(|| self.log_path(id)),
            log_driver: if none {
                "json-file".into()
            } else {
                c.config.log_driver.clone()
            },
            log_max_size: c.config.log_max_size,
            log_max_file: c.config.log_max_file.max(1),
            exit_file: dir.join("exit.json"),
            restart: c.config.restart.clone(),
            terminal: c.config.tty,
            stdin: c.config.open_stdin,
            attach_socket: Some(self.attach_socket(id)),
            wait_attach,
            cgroup_path: Some(c.config.cgroups_path.clone()),
            state_file: Some(dir.join("run.json")),
            exit_command: exit_command.to_vec(),
            pid_file: Some(dir.join("monitor.pid")),
        }
    }

    pub(crate) fn write_monitor_config(
        &self,
        c: &Container,
        wait_attach: bool,
        exit_command: &[String],
    ) -> Result<(), ContainerError> {
        let cfg = self.monitor_config(c, wait_attach, exit_command);
        let path = self.dir(c.id()).join("monitor.json");
        let bytes = serde_json::to_vec(&cfg)
            .map_err(|e| io_err("encode the monitor config")(io::Error::other(e)))?;
        write_atomic(&path, &bytes)
    }

    /// Checks that the container's command can be executed, for docker's
    /// exit codes 127 and 126.
    pub fn check_command(&self, c: &Container) -> Result<(), ContainerError> {
        let Some(argv0) = c.record.command.first() else {
            return Ok(());
        };
        let rootfs = self.bundle_dir(c.id()).join("rootfs");
        command::check(&rootfs, argv0, &c.config.env, &c.config.working_dir)?;
        Ok(())
    }

    /// Starts the container under a new monitor; returns its init PID.
    /// With `wait_attach`, the monitor holds the container after `create`
    /// until a client attaches. `exit_command` runs when the container
    /// exits for good (used by `--rm` with `-d`).
    pub fn start(
        &self,
        c: &Container,
        wait_attach: bool,
        exit_command: &[String],
    ) -> Result<i32, ContainerError> {
        let incomplete = || ContainerError::Incomplete {
            name: c.name().to_string(),
        };
        let lock = match self.lock(c) {
            // The record is there, its directory is not (yet): its create
            // was cut short.
            Err(ContainerError::Record(RecordError::NotFound(_)))
                if self.records.get(c.id()).is_ok() =>
            {
                return Err(incomplete())
            }
            r => r?,
        };
        let dir = self.dir(c.id());
        // `create` writes the monitor config last, after the bundle and the
        // record: without it what the container was made from is not all
        // known here, so it cannot be finished.
        if !dir.join("monitor.json").exists()
            || !self.bundle_dir(c.id()).join("config.json").exists()
        {
            return Err(incomplete());
        }
        let st = self.state_held(c, &lock);
        if st.is_active() {
            return Err(ContainerError::State {
                name: c.name().to_string(),
                state: st.status,
                what: "it is already started".into(),
            });
        }
        // A monitor that died (or was killed with its `berth run`) before
        // its container's end left the runtime's state of it behind, which
        // would make the new monitor's `create` fail.
        if self.monitor_pid(c.id()).is_none() && self.runtime_root().join(c.id()).exists() {
            self.runtime_cmd(c, &["delete", "--force"])?;
        }
        // What a reboot or a create cut short may have left unmade.
        bundle::ensure_mounted(&self.store, &self.bundle_dir(c.id()), c.id())?;
        self.check_command(c)?;
        self.ensure_network(c)?;
        for f in ["exit.json", "exit.stop", "run.json", "monitor.pid"] {
            let _ = fs::remove_file(dir.join(f));
        }
        let _ = fs::remove_file(self.attach_socket(c.id()));
        private_dirs(&self.opts).map_err(io_err("create berth's directories"))?;
        self.write_monitor_config(c, wait_attach, exit_command)?;
        let err_path = dir.join("monitor.err");
        let err =
            File::create(&err_path).map_err(io_err(format!("create {}", err_path.display())))?;
        // The monitor holds our lock (as its stdin) until its PID line is
        // out: killed before that, this `berth` leaves the container to a
        // monitor that no other command can act against meanwhile.
        let held = lock
            ._file
            .try_clone()
            .map_err(io_err("share the container's lock"))?;
        let (mut cmd, _view) = sealed_command(&self.opts.monitor);
        cmd.arg(dir.join("monitor.json"))
            .stdin(Stdio::from(held))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err));
        // SAFETY: the closure only calls setsid(2), which is
        // async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::setsid().map_err(io::Error::from)?;
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(io_err(format!("run {}", self.opts.monitor.display())))?;
        let mut line = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut line);
        }
        let pid: Option<i32> = line.trim().parse().ok();
        match pid {
            Some(pid) => {
                // The monitor lives on; it is reaped by whoever inherits it.
                std::mem::forget(child);
                Ok(pid)
            }
            None => {
                let _ = child.wait();
                let msg = fs::read_to_string(&err_path).unwrap_or_default();
                let msg = msg.trim().trim_start_matches("berth-monitor: ").to_string();
                let _ = fs::remove_file(dir.join("monitor.pid"));
                Err(ContainerError::Start {
                    name: c.name().to_string(),
                    message: if msg.is_empty() {
                        "the monitor exited without starting it".into()
                    } else {
                        msg
                    },
                })
            }
        }
    }

    /// The runtime binary of `c`.
    pub fn runtime_of(&self, c: &Container) -> PathBuf {
        if c.config.runtime.as_os_str().is_empty() {
            self.opts.runtime.clone()
        } else {
            c.config.runtime.clone()
        }
    }

    /// Runs `runtime --root R COMMAND [FLAGS...] ID [ARGS...]`: `args` is the
    /// command and its flags, `after` what follows the ID (kill's signal).
    fn runtime_cmd_with(
        &self,
        c: &Container,
        args: &[&str],
        after: &[&str],
    ) -> Result<(), ContainerError> {
        let rt = self.runtime_of(c);
        let out = Command::new(&rt)
            .arg("--root")
            .arg(self.runtime_root())
            .args(args)
            .arg(c.id())
            .args(after)
            .stdin(Stdio::null())
            .output()
            .map_err(io_err(format!("run {}", rt.display())))?;
        if out.status.success() {
            return Ok(());
        }
        Err(ContainerError::Runtime {
            name: c.name().to_string(),
            runtime: rt.display().to_string(),
            command: args
                .iter()
                .chain(after)
                .copied()
                .collect::<Vec<_>>()
                .join(" "),
            message: runtime_error_message(&out.stderr),
        })
    }

    /// Runs `runtime --root R ARGS... ID`.
    fn runtime_cmd(&self, c: &Container, args: &[&str]) -> Result<(), ContainerError> {
        self.runtime_cmd_with(c, args, &[])
    }

    /// Sends `sig` through the runtime.
    fn signal(&self, c: &Container, sig: &str) -> Result<(), ContainerError> {
        self.runtime_cmd_with(c, &["kill"], &[sig])
    }

    /// Sends `signal` (a name or number) to the container's init. A kill on
    /// purpose also keeps the restart policy from starting it again, as in
    /// docker.
    pub fn kill(&self, c: &Container, signal: &str) -> Result<(), ContainerError> {
        let lock = self.lock(c)?;
        let st = self.state_held(c, &lock);
        if !matches!(st.status, Status::Running | Status::Paused) {
            return Err(ContainerError::State {
                name: c.name().to_string(),
                state: st.status,
                what: "it is not running".into(),
            });
        }
        self.signal(c, signal)
    }

    /// Waits until the container is no longer running (or `timeout` passes);
    /// returns its state then.
    pub fn wait_stopped(&self, c: &Container, timeout: Option<Duration>) -> State {
        self.wait_stopped_with(c, timeout, None)
    }

    /// [`Engine::wait_stopped`], by a caller holding the lock or not.
    fn wait_stopped_with(
        &self,
        c: &Container,
        timeout: Option<Duration>,
        lock: Option<&ContainerLock>,
    ) -> State {
        let deadline = timeout.map(|t| Instant::now() + t);
        self.wait_until(c, deadline, lock, |st| {
            !matches!(st.status, Status::Running | Status::Paused)
        })
    }

    /// Waits until `done` holds for the container's state, or `deadline`
    /// passes, or its directory is gone (removed); returns the state then.
    /// Ended by events, never by polling: the monitor's renames of
    /// `run.json`/`exit.json` in the container's directory (inotify), the
    /// end of the monitor (pidfd), and, when no monitor is left to record
    /// the exit, the end of the init (pidfd), whose lost exit the next look
    /// records.
    pub fn wait_until(
        &self,
        c: &Container,
        deadline: Option<Instant>,
        lock: Option<&ContainerLock>,
        mut done: impl FnMut(&State) -> bool,
    ) -> State {
        let dir = self.dir(c.id());
        loop {
            // Watches first, then the look: a change in between still wakes.
            let mut waker = crate::wait::Waker::for_state(&dir);
            let monitor = self.monitor_pid(c.id());
            if let Some(m) = monitor {
                waker.watch_pid(m);
            }
            let st = match lock {
                Some(l) => self.state_held(c, l),
                None => self.state(c),
            };
            if done(&st) || !dir.exists() {
                return st;
            }
            // A monitor writes the exit when the init ends; without one the
            // init's own end is the event.
            if monitor.is_none() && st.pid > 0 {
                waker.watch_pid(st.pid);
            }
            if !waker.wait(deadline) {
                return match lock {
                    Some(l) => self.state_held(c, l),
                    None => self.state(c),
                };
            }
        }
    }

    /// Waits until the container has exited for good or to restart
    /// (`Exited` or `Restarting`), or was removed; a created container
    /// first has to start. Ended by the events of [`Engine::wait_until`].
    pub fn wait_exit(&self, c: &Container) -> State {
        self.wait_until(c, None, None, |st| {
            matches!(st.status, Status::Exited | Status::Restarting)
        })
    }

    /// The exit code once an attached client's connection has ended (the
    /// monitor dropped it, or went): waits for the exit record, or fails
    /// with the monitor's error when the container never started. Ended by
    /// the events of [`Engine::wait_until`].
    pub fn exit_after_attach(&self, c: &Container) -> Result<i32, ContainerError> {
        let st = self.wait_until(c, None, None, |st| {
            matches!(st.status, Status::Exited | Status::Restarting)
                || (st.status == Status::Created && self.monitor_pid(c.id()).is_none())
        });
        if st.status == Status::Created {
            let err = fs::read_to_string(self.dir(c.id()).join("monitor.err")).unwrap_or_default();
            return Err(ContainerError::Start {
                name: c.name().to_string(),
                message: format!(
                    "it did not start: {}",
                    err.trim().trim_start_matches("berth-monitor: ")
                ),
            });
        }
        Ok(st.exit_code)
    }

    /// Stops the container: its stop signal, then SIGKILL after `timeout`
    /// seconds (the container's own when None). Marks it stopped on purpose.
    pub fn stop(&self, c: &Container, timeout: Option<u32>) -> Result<State, ContainerError> {
        let lock = self.lock(c)?;
        let dir = self.dir(c.id());
        let st = self.state_held(c, &lock);
        if !st.is_active() {
            return Ok(st);
        }
        fs::write(dir.join("exit.stop"), b"").map_err(io_err("write exit.stop"))?;
        if st.status == Status::Restarting {
            drop(lock);
            return Ok(self.wait_monitor_gone(c, Duration::from_secs(120)));
        }
        let secs = timeout.unwrap_or(if c.config.stop_timeout == 0 {
            10
        } else {
            c.config.stop_timeout
        });
        let sig = if c.config.stop_signal.is_empty() {
            "SIGTERM"
        } else {
            &c.config.stop_signal
        };
        if secs > 0 {
            let _ = self.signal(c, sig);
            if st.status == Status::Paused {
                let _ = self.runtime_cmd(c, &["resume"]);
            }
            let st = self.wait_stopped_with(c, Some(Duration::from_secs(secs.into())), Some(&lock));
            if !matches!(st.status, Status::Running | Status::Paused) {
                return Ok(st);
            }
        }
        let _ = self.signal(c, "SIGKILL");
        if self.state_held(c, &lock).status == Status::Paused {
            let _ = self.runtime_cmd(c, &["resume"]);
        }
        drop(lock);
        Ok(self.wait_stopped(c, Some(Duration::from_secs(30))))
    }

    /// Waits for the monitor to end (it ends after deleting the runtime
    /// state), up to `timeout`.
    pub fn wait_monitor_gone(&self, c: &Container, timeout: Duration) -> State {
        let deadline = Instant::now() + timeout;
        // Each monitor's end (pidfd) ends the wait for it; a PID that
        // cannot be watched is gone.
        while let Some(pid) = self.monitor_pid(c.id()) {
            if !crate::wait::wait_pid_gone(pid, Some(deadline)) || Instant::now() >= deadline {
                break;
            }
        }
        self.state(c)
    }

    /// Freezes the container.
    pub fn pause(&self, c: &Container) -> Result<(), ContainerError> {
        let lock = self.lock(c)?;
        let st = self.state_held(c, &lock);
        if st.status != Status::Running {
            return Err(ContainerError::State {
                name: c.name().to_string(),
                state: st.status,
                what: "only a running container can be paused".into(),
            });
        }
        self.runtime_cmd(c, &["pause"])
    }

    /// Thaws the container.
    pub fn unpause(&self, c: &Container) -> Result<(), ContainerError> {
        let lock = self.lock(c)?;
        let st = self.state_held(c, &lock);
        if st.status != Status::Paused {
            return Err(ContainerError::State {
                name: c.name().to_string(),
                state: st.status,
                what: "it is not paused".into(),
            });
        }
        self.runtime_cmd(c, &["resume"])
    }

    /// Removes the container. A running one is refused unless `force`,
    /// which kills it first. Every step is idempotent, so this also cleans
    /// what a crash left half-made. Returns the anonymous volumes it had.
    pub fn remove(&self, c: &Container, force: bool) -> Result<Vec<String>, ContainerError> {
        let _lock = match self.lock(c) {
            Ok(l) => Some(l),
            // A crash may have left a record without a directory.
            Err(ContainerError::Record(RecordError::NotFound(_))) => None,
            Err(e) => return Err(e),
        };
        let dir = self.dir(c.id());
        let st = self.state(c);
        if st.is_active() {
            if !force {
                return Err(ContainerError::State {
                    name: c.name().to_string(),
                    state: st.status,
                    what: "stop it first, or remove it with --force".into(),
                });
            }
            let _ = fs::write(dir.join("exit.stop"), b"");
            let _ = self.signal(c, "SIGKILL");
            if st.status == Status::Paused {
                let _ = self.runtime_cmd(c, &["resume"]);
            }
        }
        // A monitor of a container that never started is holding it after
        // `create` for an attach that will not come (its `berth run` died):
        // nothing of its own to finish, so it is stopped at once.
        if st.status == Status::Created {
            if let Some(pid) = self.monitor_pid(c.id()) {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        // The monitor deletes the runtime's state and then ends.
        let st = self.wait_monitor_gone(c, Duration::from_secs(30));
        if let Some(pid) = self.monitor_pid(c.id()) {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).expect("pid > 0"),
                rustix::process::Signal::KILL,
            );
        }
        if st.pid > 0 && pid_in_container(st.pid, c.id()) {
            // No monitor, but the process lives: kill it and wait for it.
            let _ = self.signal(c, "SIGKILL");
            // Its end (pidfd) ends the wait.
            crate::wait::wait_pid_gone(st.pid, Some(Instant::now() + Duration::from_secs(10)));
        }
        if self.runtime_root().join(c.id()).exists() {
            let _ = self.runtime_cmd(c, &["delete", "--force"]);
        }
        if let Err(e) = self.teardown_network(c, self.attachers()) {
            // Still removed: a network that cannot be torn down (its plugin
            // gone) must not keep the container forever.
            tracing::warn!(container = c.id(), "network teardown: {e}");
        }
        // Nothing runs for the container any more: the snapshot and the
        // record go under one open of the metadata.
        let _hold = self.store.hold()?;
        bundle::remove(&self.store, &self.bundle_dir(c.id()), c.id())?;
        let _ = fs::remove_file(self.attach_socket(c.id()));
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("remove {}", dir.display()))(e)),
        }
        self.records.remove(c.id())?;
        Ok(c.config.anonymous_volumes.clone())
    }

    /// Renames the container.
    pub fn rename(&self, c: &Container, new_name: &str) -> Result<(), ContainerError> {
        let _lock = self.lock(c)?;
        Ok(self.records.rename(c.id(), new_name)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_error_messages() {
        // runc 1.1's and berth-runtime's shapes without --log.
        let text = b"time=\"2026-12-07T20:50:45Z\" level=fatal msg=\"nsexec-1[19463]: failed\"\n\
                     time=\"2026-12-07T20:50:45Z\" level=error msg=\"container \\\"c1\\\" is paused:\\tx\\u00e9\"\n";
        assert_eq!(
            runtime_error_message(text),
            "container \"c1\" is paused:\txé"
        );
        let bare = b"time=\"2026-12-07T20:50:45Z\" level=error msg=stopped\n";
        assert_eq!(runtime_error_message(bare), "stopped");
        let json = b"{\"level\":\"error\",\"msg\":\"no \\u003cid\\u003e\",\"time\":\"2026-12-07T20:50:45Z\"}\n";
        assert_eq!(runtime_error_message(json), "no <id>");
        let tty = b"\x1b[31mERRO\x1b[0m[0000] container does not exist                     \n";
        assert_eq!(runtime_error_message(tty), "container does not exist");
        // With --log the runtime prints the bare message; anything else is kept.
        assert_eq!(
            runtime_error_message(b"  just a message\n"),
            "just a message"
        );
    }

    #[test]
    fn ids_and_names() {
        let a = new_id().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_id().unwrap());
        let n = generated_name(&a, 0);
        assert!(crate::records::valid_name(&n), "{n}");
        assert!(n.contains('_'));
        assert_eq!(generated_name(&a, 3), format!("{n}3"));
    }

    #[test]
    fn status_words_are_dockers() {
        assert_eq!(Status::Exited.to_string(), "exited");
        assert_eq!(
            serde_json::to_value(Status::Paused).unwrap(),
            serde_json::json!("paused")
        );
    }

    #[test]
    fn frozen_is_false_without_a_cgroup() {
        assert!(!frozen(""));
        assert!(!frozen("/berth/no-such-container-here"));
        assert!(!pid_in_container(0, "x"));
        assert!(!pid_in_container(
            std::process::id() as i32,
            "no-such-id-0123"
        ));
    }
}
