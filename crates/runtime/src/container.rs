//! Container operations as the runtime (parent) side sees them: create, start,
//! run, exec, kill, delete, state, pause, resume, update, stats.

use std::collections::HashMap;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_cgroups::{CgroupConfig, FreezerState, Manager};
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::signal::{self, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Process, Spec};
use rustix::fs::{Mode, OFlags};
use tracing::{debug, info_span, warn};

use crate::channel::{self, Msg};
use crate::error::{Error, Result};
use crate::init;
use crate::seccomp;
use crate::spec;
use crate::state::{self, OciState, Record, StateDir, Status, CONFIG_FILE, EXEC_FIFO};
use crate::sys::{self, Forked};

/// The runtime: where state lives and which cgroup driver to use.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// State root (`--root`), e.g. `/run/berth-runtime`.
    pub root: PathBuf,
    /// `--systemd-cgroup`.
    pub systemd_cgroup: bool,
}

/// Options of `create` and `run`.
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    /// Container ID.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
    /// `--console-socket`.
    pub console_socket: Option<PathBuf>,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// `--no-new-keyring`.
    pub no_new_keyring: bool,
    /// `--preserve-fds`.
    pub preserve_fds: u32,
}

/// Options of `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOpts {
    /// `--console-socket`.
    pub console_socket: Option<PathBuf>,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
    /// `--detach`.
    pub detach: bool,
    /// `--preserve-fds`.
    pub preserve_fds: u32,
    /// `--ignore-paused`: exec into a paused container too (the process
    /// starts frozen, and runs when the container is resumed).
    pub ignore_paused: bool,
}

/// A container that `create` made.
#[derive(Debug)]
pub struct Created {
    /// Host PID of init.
    pub pid: Pid,
    /// The pty master, when the parent must relay the terminal.
    pub pty: Option<OwnedFd>,
    /// What was recorded in state.json.
    pub record: Record,
    /// The container's config.
    pub spec: Spec,
    /// The sync channel to init, kept when init waits on it for `start`.
    channel: Option<channel::Channel>,
}

fn ns_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// Order in which namespaces are joined: user first (it grants the rights to join
/// the others), mount last (it changes our root).
fn join_rank(f: CloneFlags) -> u8 {
    match f {
        CloneFlags::CLONE_NEWUSER => 0,
        CloneFlags::CLONE_NEWNS => 9,
        _ => 5,
    }
}

fn open_ns(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::io("open namespace", path, e.into()))
}

/// What a file is, for an error that says why it is no namespace.
fn file_kind(mode: u32) -> &'static str {
    match rustix::fs::FileType::from_raw_mode(mode) {
        rustix::fs::FileType::RegularFile => "a regular file",
        rustix::fs::FileType::Directory => "a directory",
        rustix::fs::FileType::Symlink => "a symlink",
        rustix::fs::FileType::Fifo => "a FIFO",
        rustix::fs::FileType::Socket => "a socket",
        rustix::fs::FileType::CharacterDevice => "a character device",
        rustix::fs::FileType::BlockDevice => "a block device",
        rustix::fs::FileType::Unknown => "an unknown kind of file",
    }
}

/// The namespace type of a `CLONE_NEW*` flag, as the runtime-spec names it.
fn ns_type_name(flag: libc::c_int) -> String {
    [
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::User,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Time,
    ]
    .into_iter()
    .find(|t| ns_flag(*t).bits() == flag)
    .map(spec::ns_type_name)
    .unwrap_or_else(|| format!("{flag:#x}"))
}

/// Opens a namespace file that the config names, refusing anything but a
/// namespace of type `t`, before any process exists. It is first opened
/// `O_PATH`, which neither blocks on a FIFO nor calls a device's driver; only
/// a file on nsfs is then opened for `setns`, through that fd, and its type
/// checked with `NS_GET_NSTYPE`.
fn open_config_ns(path: &Path, t: LinuxNamespaceType) -> Result<OwnedFd> {
    let bad = |what: String| {
        Error::InvalidArgument(format!(
            "linux.namespaces: path {} of the {} namespace {what}",
            path.display(),
            spec::ns_type_name(t)
        ))
    };
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    let handle = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| bad(format!("cannot be opened: {}", std::io::Error::from(e))))?;
    let fs = rustix::fs::fstatfs(&handle)
        .map_err(|e| bad(format!("cannot be examined: {}", std::io::Error::from(e))))?;
    if fs.f_type as i64 != NSFS_MAGIC {
        let st = rustix::fs::fstat(&handle)
            .map_err(|e| bad(format!("cannot be examined: {}", std::io::Error::from(e))))?;
        return Err(bad(format!(
            "is {}, not a namespace file",
            file_kind(st.st_mode as u32)
        )));
    }
    let fd = rustix::fs::open(
        format!("/proc/self/fd/{}", handle.as_raw_fd()),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open namespace", path, e.into()))?;
    match sys::ns_type(fd.as_fd()) {
        Ok(got) if got == ns_flag(t).bits() => Ok(fd),
        Ok(got) => Err(bad(format!("is a {} namespace", ns_type_name(got)))),
        // A kernel older than 4.11 cannot tell; setns will.
        Err(nix::errno::Errno::ENOTTY | nix::errno::Errno::EINVAL) => Ok(fd),
        Err(e) => Err(bad(format!("cannot be examined: {}", e.desc()))),
    }
}

/// Restores a namespace of ours on drop (after a setns for a child's sake).
struct NsRestore(Option<(OwnedFd, CloneFlags)>);
impl Drop for NsRestore {
    fn drop(&mut self) {
        if let Some((fd, f)) = self.0.take() {
            if let Err(e) = nix::sched::setns(fd.as_fd(), f) {
                warn!("restoring our own namespace: {e}");
            }
        }
    }
}

fn enter_for_children(target: &OwnedFd, flag: CloneFlags, own: &str) -> Result<NsRestore> {
    let saved = open_ns(Path::new(own))?;
    nix::sched::setns(target.as_fd(), flag).map_err(|e| Error::sys(format!("setns {own}"), e))?;
    Ok(NsRestore(Some((saved, flag))))
}

/// The cgroup, opened for a child to enter at birth (see `Manager::join_plan`).
struct CgroupJoin {
    /// v1 `tasks` files, each with its path and whether failure is tolerable.
    tasks: Vec<(OwnedFd, PathBuf, bool)>,
    /// The cgroup2 directory for `CLONE_INTO_CGROUP`.
    v2: Option<OwnedFd>,
}

impl CgroupJoin {
    fn open(cg: &Manager) -> Result<CgroupJoin> {
        Ok(CgroupJoin {
            tasks: Self::open_tasks(cg)?,
            v2: Self::open_v2(cg)?,
        })
    }

    /// Only the cgroup2 side, for a child whose v1 cgroups are made after it.
    fn open_v2_only(cg: &Manager) -> Result<CgroupJoin> {
        Ok(CgroupJoin {
            tasks: Vec::new(),
            v2: Self::open_v2(cg)?,
        })
    }

    fn open_tasks(cg: &Manager) -> Result<Vec<(OwnedFd, PathBuf, bool)>> {
        let mut tasks = Vec::new();
        for (path, best_effort) in cg.join_plan().v1_tasks {
            match rustix::fs::open(&path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()) {
                Ok(fd) => tasks.push((fd, path, best_effort)),
                Err(e) if best_effort => debug!("skip {}: {e}", path.display()),
                Err(e) => return Err(Error::io("open cgroup tasks file", path, e.into())),
            }
        }
        Ok(tasks)
    }

    fn open_v2(cg: &Manager) -> Result<Option<OwnedFd>> {
        let v2 = match cg.join_plan().v2_dir {
            Some(dir) => Some(
                rustix::fs::open(
                    &dir,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| Error::io("open cgroup", dir, e.into()))?,
            ),
            None => None,
        };
        Ok(v2)
    }

    /// Fork with `flags`, born into the cgroup2 side when there is one. Falls back
    /// to plain clone where clone3 or CLONE_INTO_CGROUP is unavailable; the bool
    /// then says that the parent must move the child.
    fn fork(&self, flags: CloneFlags) -> Result<(Forked, bool)> {
        match sys::clone3_fork(
            flags.bits() as u32 as u64,
            self.v2.as_ref().map(|f| f.as_raw_fd()),
        ) {
            Ok(f) => Ok((f, false)),
            Err(
                e @ (nix::errno::Errno::ENOSYS
                | nix::errno::Errno::E2BIG
                | nix::errno::Errno::EINVAL),
            ) => {
                debug!("clone3 unavailable ({e}); using clone");
                let f = sys::clone_fork(flags.bits()).map_err(|e| Error::sys("clone", e))?;
                Ok((f, self.v2.is_some()))
            }
            Err(e) => Err(Error::sys("clone3", e)),
        }
    }
}

/// What a failed create must undo.
#[derive(Default)]
struct Undo {
    pid: Option<Pid>,
    cgroup: Option<Manager>,
    host_root: Option<state::HostRootMount>,
}

impl Undo {
    fn run(self) {
        if let Some(pid) = self.pid {
            let _ = signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        if let Some(cg) = self.cgroup {
            if let Err(e) = cg.kill_all(Signal::SIGKILL) {
                debug!("undo: kill cgroup: {e}");
            }
            if let Err(e) = cg.destroy() {
                warn!("undo: remove cgroup: {e}");
            }
        }
        if let Some(h) = self.host_root {
            if let Err(e) = detach_host_root(&h) {
                warn!("undo: {e}");
            }
        }
    }
}

/// The ID of the mount that `path` is on (statx `STATX_MNT_ID`, Linux 5.8).
fn mount_id_at(path: &Path) -> Result<u64> {
    let st = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        rustix::fs::StatxFlags::MNT_ID,
    )
    .map_err(|e| Error::io("find the mount of", path, e.into()))?;
    if st.stx_mask & rustix::fs::StatxFlags::MNT_ID.bits() == 0 {
        return Err(Error::Unsupported(
            "a container without a mount namespace on a kernel without statx mount IDs (Linux 5.8)"
                .into(),
        ));
    }
    Ok(st.stx_mnt_id)
}

/// Bind the rootfs of a container without a mount namespace onto itself in
/// our namespace, so that all of its mounts are made under one mount that
/// delete detaches; the bind gets `rootfsPropagation` (default rprivate, so
/// nothing made under it reaches other namespaces). The propagation of `/`
/// is left alone: it is the host's. Named in the pending record before and
/// after it is made.
fn bind_host_root(
    sd: &StateDir,
    pending: &mut state::Pending,
    undo: &mut Option<state::HostRootMount>,
    rootfs: &Path,
    propagation: MsFlags,
) -> Result<state::HostRootMount> {
    let mut h = state::HostRootMount {
        path: rootfs.to_path_buf(),
        below: mount_id_at(rootfs)?,
        mount: None,
    };
    pending.host_root = Some(h.clone());
    sd.save_pending(pending)?;
    *undo = Some(h.clone());
    crate::mount::mount(
        Some(rootfs),
        rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|e| Error::sys(format!("bind mount rootfs {}", rootfs.display()), e))?;
    h.mount = Some(mount_id_at(rootfs)?);
    pending.host_root = Some(h.clone());
    *undo = Some(h.clone());
    sd.save_pending(pending)?;
    crate::mount::set_propagation(rootfs, &[propagation])
        .map_err(|e| Error::sys(format!("set propagation of rootfs {}", rootfs.display()), e))?;
    Ok(h)
}

/// Detach the rootfs bind mount of a container without a mount namespace,
/// and with it every mount the container made under it; only when the mount
/// on its path is that one (or, if the create died before it could note its
/// ID, one made after it began).
fn detach_host_root(h: &state::HostRootMount) -> Result<()> {
    let now = match mount_id_at(&h.path) {
        Ok(id) => id,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(())
        }
        Err(e) => return Err(e),
    };
    let ours = match h.mount {
        Some(id) => now == id,
        None => now != h.below,
    };
    if !ours {
        debug!(path = %h.path.display(), "the rootfs bind mount is gone already");
        return Ok(());
    }
    nix::mount::umount2(
        &h.path,
        nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW,
    )
    .map_err(|e| Error::sys(format!("detach the rootfs mount {}", h.path.display()), e))
}

/// The user running the runtime, by name (root needs no lookup).
fn owner_name() -> String {
    let uid = nix::unistd::getuid();
    if uid.is_root() {
        return "root".into();
    }
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

fn write_pid_file(path: &Path, pid: Pid) -> Result<()> {
    state::write_atomic(path, pid.as_raw().to_string().as_bytes())
}

/// The socket-activation fds passed to us (from 3 up), and the environment
/// that hands them on to the container. As sd_listen_fds(3) (and runc) have
/// it, `LISTEN_FDS` counts only when `LISTEN_PID` is our PID: one left in
/// the environment for another process must not widen the fds kept open.
fn listen_fds() -> (u32, Vec<String>) {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    if !ours {
        return (0, vec![]);
    }
    match std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(n) if n > 0 => (n, vec![format!("LISTEN_FDS={n}"), "LISTEN_PID=1".into()]),
        _ => (0, vec![]),
    }
}

impl Runtime {
    fn oci_state(&self, rec: &Record, status: Status) -> OciState {
        OciState {
            oci_version: spec::OCI_VERSION.into(),
            id: rec.id.clone(),
            status,
            pid: if status == Status::Stopped {
                0
            } else {
                rec.pid
            },
            bundle: rec.bundle.clone(),
            rootfs: rec.rootfs.clone(),
            created: rec.created.clone(),
            owner: rec.owner.clone(),
            annotations: rec.annotations.clone(),
        }
    }

    fn status_of(&self, sd: &StateDir, rec: &Record) -> Status {
        self.status_in(&sd.path, rec)
    }

    /// The status of the container recorded in `rec`, whose state dir is `dir`.
    fn status_in(&self, dir: &Path, rec: &Record) -> Status {
        if !state::init_alive(rec) {
            return Status::Stopped;
        }
        if let Ok(cg) = Manager::from_state(&rec.cgroup) {
            if matches!(cg.freezer_state(), Ok(FreezerState::Frozen)) {
                return Status::Paused;
            }
        }
        if dir.join(EXEC_FIFO).exists() {
            Status::Created
        } else {
            Status::Running
        }
    }

    fn load(&self, id: &str) -> Result<(StateDir, Record)> {
        let sd = StateDir::open(&self.root, id)?;
        match sd.load()? {
            Some(r) => Ok((sd, r)),
            None => Err(Error::WrongState {
                id: id.into(),
                status: "creating".into(),
                msg: "its create has not finished (delete --force removes it)".into(),
            }),
        }
    }

    fn saved_spec(&self, sd: &StateDir) -> Result<Spec> {
        spec::load(&sd.file(CONFIG_FILE))
    }

    /// Create a container: init is left blocked until `start`.
    pub fn create(&self, o: &CreateOpts) -> Result<Created> {
        let _span = info_span!("create", id = %o.id).entered();
        let sd = StateDir::create(&self.root, &o.id)?;
        let mut undo = Undo::default();
        match self.create_in(&sd, o, false, false, &mut undo) {
            Ok(c) => Ok(c),
            Err(e) => {
                undo.run();
                let _ = sd.remove();
                Err(e)
            }
        }
    }

    fn create_in(
        &self,
        sd: &StateDir,
        o: &CreateOpts,
        relay_pty: bool,
        start_on_channel: bool,
        undo: &mut Undo,
    ) -> Result<Created> {
        let bundle =
            fs::canonicalize(&o.bundle).map_err(|e| Error::io("open bundle", &o.bundle, e))?;
        let cfg_path = bundle.join("config.json");
        let (spec, cfg_bytes) = spec::load_with_bytes(&cfg_path)?;
        let rootfs = spec::validate(&spec, &bundle, &cfg_path)?;
        let limits = spec::KernelLimits::from_host(spec::mounts_made(&spec));
        spec::check_kernel_limits(&spec, &limits).map_err(|msg| Error::InvalidConfig {
            path: cfg_path.clone(),
            msg,
        })?;
        let rootfs = fs::canonicalize(&rootfs).map_err(|e| Error::io("open rootfs", &rootfs, e))?;
        sd.save_config(&cfg_bytes)?;
        drop(cfg_bytes);
        let process = spec.process().as_ref().expect("validated");
        let linux = spec.linux().as_ref().expect("validated");

        // Namespaces: new ones come from clone; joined ones are opened now, and
        // checked to be namespaces of their type, so a bad path fails before
        // anything runs.
        let mut clone_flags = CloneFlags::empty();
        let mut join: Vec<(CloneFlags, OwnedFd)> = Vec::new();
        let (mut pid_join, mut time_join, mut new_time, mut new_cgroupns) =
            (None, None, false, false);
        let mut ns_names = Vec::new();
        for ns in linux.namespaces().iter().flatten() {
            ns_names.push(ns.typ().to_string());
            match (ns.typ(), ns.path()) {
                (t @ LinuxNamespaceType::Pid, Some(p)) => pid_join = Some(open_config_ns(p, t)?),
                (t @ LinuxNamespaceType::Time, Some(p)) => time_join = Some(open_config_ns(p, t)?),
                (LinuxNamespaceType::Time, None) => new_time = true,
                (LinuxNamespaceType::Cgroup, None) => new_cgroupns = true,
                (t, Some(p)) => join.push((ns_flag(t), open_config_ns(p, t)?)),
                (t, None) => clone_flags |= ns_flag(t),
            }
        }
        join.sort_by_key(|(f, _)| join_rank(*f));
        // Namespaces created after joining a user namespace by path must belong to
        // it: the child joins it first, then unshares them (and forks once more
        // for a new pid namespace).
        let user_join = match join.first() {
            Some((f, _)) if *f == CloneFlags::CLONE_NEWUSER => Some(join.remove(0).1),
            _ => None,
        };
        let deferred = if user_join.is_some() {
            std::mem::replace(&mut clone_flags, CloneFlags::empty())
        } else {
            CloneFlags::empty()
        };
        // No mount namespace at all: the container's mounts are made in ours,
        // under a bind mount of the rootfs, and it is chrooted (runc and youki
        // run such configs too).
        let host_mounts = !linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == LinuxNamespaceType::Mount);
        let new_flags = clone_flags | deferred;
        let utsns = new_flags.contains(CloneFlags::CLONE_NEWUTS)
            || join.iter().any(|(f, _)| *f == CloneFlags::CLONE_NEWUTS);
        let new_userns = clone_flags.contains(CloneFlags::CLONE_NEWUSER);

        // Everything that can be refused is checked before the cgroup and the child exist.
        let seccomp = linux.seccomp().as_ref().map(seccomp::compile).transpose()?;
        let memory_policy = checked_memory_policy(linux, &cfg_path)?;
        if let Some(c) = process.capabilities() {
            crate::capabilities::validate(c)?;
        }
        let terminal = process.terminal().unwrap_or(false);
        let console = match (&o.console_socket, terminal) {
            (Some(p), true) => Some(crate::console::connect(p)?),
            (None, true) if !relay_pty => {
                return Err(Error::InvalidArgument(
                    "process.terminal is true: --console-socket is required when the runtime does not stay attached".into(),
                ))
            }
            _ => None,
        };

        let cg = Manager::new(&CgroupConfig {
            path: linux.cgroups_path().clone(),
            id: o.id.clone(),
            systemd: self.systemd_cgroup,
        })?;
        // From here on things are made: each is named in the pending record
        // before it exists, so that a create killed at any point can be undone
        // by delete.
        let mut pending = state::Pending {
            schema: state::STATE_SCHEMA,
            id: o.id.clone(),
            bundle: bundle.clone(),
            created: state::now_rfc3339(),
            owner: owner_name(),
            pid: 0,
            pid_start: 0,
            cgroup: Some(planned_cgroup_state(&cg)),
            host_root: None,
        };
        sd.save_pending(&pending)?;
        // Without user namespaces the child needs nothing from the parent to set
        // up its mounts: it is born into the cgroup2 side, and the v1 cgroups are
        // made and limited while it works; it joins them before any hook runs.
        let late_join = !new_userns && user_join.is_none();
        let resources = device_rules(linux);
        let cg_mounts = cg.mounts();
        undo.cgroup = Some(cg);
        let cg = undo.cgroup.as_ref().expect("set above");
        if late_join {
            cg.create_cgroup2_side()?;
        } else {
            cg.create()?;
            cg.apply(&resources)?;
        }

        // `run` starts init through the channel; only `create` needs the FIFO
        // that a later `start` opens.
        let fifo = if start_on_channel {
            None
        } else {
            let fifo_path = sd.file(EXEC_FIFO);
            nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| Error::sys(format!("mkfifo {}", fifo_path.display()), e))?;
            Some(
                rustix::fs::open(&fifo_path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| Error::io("open exec fifo", &fifo_path, e.into()))?,
            )
        };

        let (preserve, extra_env) = {
            let (n, env) = listen_fds();
            (o.preserve_fds + n, env)
        };
        let host_root = if host_mounts {
            let prop = linux
                .rootfs_propagation()
                .as_deref()
                .and_then(crate::mount::propagation_flag)
                .unwrap_or(MsFlags::MS_PRIVATE | MsFlags::MS_REC);
            Some(bind_host_root(
                sd,
                &mut pending,
                &mut undo.host_root,
                &rootfs,
                prop,
            )?)
        } else {
            None
        };
        let (parent_ch, child_ch) = channel::pair()?;
        let join_cg = if late_join {
            CgroupJoin::open_v2_only(cg)?
        } else {
            CgroupJoin::open(cg)?
        };

        let (forked, guards) = {
            let _pid_restore = match &pid_join {
                Some(fd) => Some(enter_for_children(
                    fd,
                    CloneFlags::CLONE_NEWPID,
                    "/proc/self/ns/pid",
                )?),
                None => None,
            };
            let time_flag = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
            let _time_restore = match (&time_join, new_time) {
                (Some(fd), _) => Some(enter_for_children(fd, time_flag, "/proc/self/ns/time")?),
                (None, true) => {
                    let saved = open_ns(Path::new("/proc/self/ns/time"))?;
                    nix::sched::unshare(time_flag)
                        .map_err(|e| Error::sys("unshare time namespace", e))?;
                    let guard = NsRestore(Some((saved, time_flag)));
                    write_time_offsets(linux.time_offsets().as_ref())?;
                    Some(guard)
                }
                _ => None,
            };
            debug!(flags = ?clone_flags, "clone");
            let forked = join_cg.fork(clone_flags)?;
            (forked, (_pid_restore, _time_restore))
        };
        let (forked, parent_moves) = forked;
        let pid = match forked {
            Forked::Child => {
                // The namespaces we entered are the child's for good.
                std::mem::forget(guards);
                drop(parent_ch);
                // The flock belongs to the open file, which we share with the
                // parent: keep only the parent's reference.
                let _ = nix::unistd::close(sd.lock_fd());
                init::container_init(
                    init::InitArgs {
                        spec: &spec,
                        id: &o.id,
                        rootfs: &rootfs,
                        bundle: &bundle,
                        join,
                        new_cgroupns,
                        new_userns,
                        host_mounts,
                        user_join,
                        deferred,
                        new_netns: new_flags.contains(CloneFlags::CLONE_NEWNET),
                        utsns,
                        fifo,
                        console_socket: console,
                        pty_to_parent: relay_pty && terminal && o.console_socket.is_none(),
                        seccomp: seccomp.as_ref(),
                        memory_policy,
                        no_pivot: o.no_pivot,
                        no_new_keyring: o.no_new_keyring,
                        preserve_fds: preserve,
                        extra_env,
                        cgroup_mounts: cg_mounts,
                        cgroup_tasks: join_cg.tasks,
                        late_join,
                    },
                    child_ch,
                )
            }
            Forked::Parent(pid) => {
                drop(guards);
                pid
            }
        };
        drop(child_ch);
        drop(fifo);
        drop(console);
        undo.pid = Some(pid);
        debug!(pid = pid.as_raw(), "container init cloned");
        pending.pid = pid.as_raw();
        pending.pid_start = state::pid_start_time(pid.as_raw()).unwrap_or(0);
        sd.save_pending(&pending)?;

        // The child enters the v1 hierarchies itself; the parent moves it only
        // when clone3 could not place it on the cgroup2 side.
        drop(join_cg);
        let cg = undo.cgroup.as_ref().expect("set above");
        if late_join {
            cg.create()?;
            cg.apply(&resources)?;
        }
        if parent_moves {
            cg.add_process(pid.as_raw())?;
        }
        if new_userns {
            write_id_maps(pid, linux)?;
        }
        let sent = if late_join {
            let tasks = if parent_moves {
                Vec::new()
            } else {
                CgroupJoin::open_tasks(cg)?
            };
            let names = tasks
                .iter()
                .map(|(_, p, b)| (p.display().to_string(), *b))
                .collect();
            let fds: Vec<_> = tasks.iter().map(|(f, _, _)| f.as_raw_fd()).collect();
            parent_ch.send_fds(&Msg::JoinCgroup(names), &fds)
        } else {
            parent_ch.send(&Msg::Proceed)
        };
        if let Err(e) = sent {
            // The child may have failed while we worked: its message says why.
            if let Ok(Some((Msg::Error(msg), _))) = parent_ch.recv_with_fd() {
                return Err(Error::Init(msg));
            }
            return Err(e);
        }
        let cg_state = cg.to_state();

        let mut rec = Record {
            schema: state::STATE_SCHEMA,
            id: o.id.clone(),
            bundle: bundle.clone(),
            rootfs: rootfs.clone(),
            pid: pid.as_raw(),
            pid_start: pending.pid_start,
            created: pending.created.clone(),
            owner: pending.owner.clone(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            cgroup: cg_state,
            namespaces: ns_names,
            host_root,
        };
        let mut pty = None;
        let mut pid = pid;
        loop {
            let (msg, fd) = match parent_ch.recv_with_fd()? {
                Some(x) => x,
                None => return Err(Error::Init("container init exited during setup".into())),
            };
            match msg {
                Msg::CreateHooks => {
                    let creating = self.oci_state(&rec, Status::Creating);
                    let creating = serde_json::to_string(&creating).unwrap_or_default();
                    if let Some(h) = spec.hooks() {
                        #[allow(deprecated)]
                        crate::hooks::run_all(
                            "prestart",
                            h.prestart().as_ref(),
                            creating.as_bytes(),
                        )?;
                        crate::hooks::run_all(
                            "createRuntime",
                            h.create_runtime().as_ref(),
                            creating.as_bytes(),
                        )?;
                    }
                    let created = serde_json::to_string(&self.oci_state(&rec, Status::Created))
                        .unwrap_or_default();
                    parent_ch.send(&Msg::HooksDone(creating, created))?;
                }
                Msg::SeccompFd => {
                    let fd = fd.ok_or_else(|| Error::Sync("SeccompFd without an fd".into()))?;
                    let s = seccomp
                        .as_ref()
                        .and_then(|s| s.listener_path().map(Path::to_path_buf));
                    if let Some(path) = s {
                        let st = self.process_state(&rec, Status::Creating, linux);
                        seccomp::send_to_listener(&path, fd.as_fd(), &st)?;
                    }
                    parent_ch.send(&Msg::Ack)?;
                }
                Msg::PtyMaster => {
                    pty = fd;
                    parent_ch.send(&Msg::Ack)?;
                }
                Msg::Pid(p) => {
                    // The intermediate forked the real init (born our child through
                    // CLONE_PARENT) and exits; reap it and follow init.
                    let _ = waitpid(pid, None);
                    pid = Pid::from_raw(p);
                    undo.pid = Some(pid);
                    rec.pid = p;
                    pending.pid = p;
                    pending.pid_start = state::pid_start_time(p).unwrap_or(0);
                    sd.save_pending(&pending)?;
                }
                Msg::Ready => break,
                Msg::Error(e) => return Err(Error::Init(e)),
                other => return Err(Error::Sync(format!("expected Ready, received {other:?}"))),
            }
        }
        rec.pid_start = state::pid_start_time(pid.as_raw()).unwrap_or(rec.pid_start);
        sd.save(&rec)?;
        sd.remove_pending();
        if let Some(p) = &o.pid_file {
            write_pid_file(p, pid)?;
        }
        // Success: the cgroup, the process and the mounts now belong to the container.
        undo.pid = None;
        undo.cgroup = None;
        undo.host_root = None;
        Ok(Created {
            pid,
            pty,
            record: rec,
            spec,
            channel: start_on_channel.then_some(parent_ch),
        })
    }

    fn process_state(
        &self,
        rec: &Record,
        status: Status,
        linux: &oci_spec::runtime::Linux,
    ) -> Vec<u8> {
        let st = self.oci_state(rec, status);
        let meta = linux
            .seccomp()
            .as_ref()
            .and_then(|s| s.listener_metadata().clone())
            .unwrap_or_default();
        serde_json::to_vec(&serde_json::json!({
            "ociVersion": spec::OCI_VERSION,
            "fds": ["seccompFd"],
            "pid": rec.pid,
            "metadata": meta,
            "state": st,
        }))
        .unwrap_or_default()
    }

    /// Let a created container's init run the user process.
    pub fn start(&self, id: &str) -> Result<()> {
        let _span = info_span!("start", id).entered();
        let (sd, rec) = self.load(id)?;
        self.start_locked(&sd, &rec)
    }

    fn start_locked(&self, sd: &StateDir, rec: &Record) -> Result<()> {
        let status = self.status_of(sd, rec);
        if status != Status::Created {
            return Err(Error::WrongState {
                id: rec.id.clone(),
                status: status.to_string(),
                msg: "only a created container can be started".into(),
            });
        }
        let spec = self.saved_spec(sd)?;
        self.release_via_fifo(sd, rec)?;
        self.poststart(rec, &spec);
        Ok(())
    }

    /// Let init go on by writing into the FIFO it holds.
    fn release_via_fifo(&self, sd: &StateDir, rec: &Record) -> Result<()> {
        let fifo_path = sd.file(EXEC_FIFO);
        let fifo = rustix::fs::open(
            &fifo_path,
            OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::NXIO => Error::WrongState {
                id: rec.id.clone(),
                status: "stopped".into(),
                msg: "its init process has exited".into(),
            },
            e => Error::io("open exec fifo", &fifo_path, e.into()),
        })?;
        rustix::io::write(&fifo, b"0")
            .map_err(|e| Error::io("write exec fifo", &fifo_path, e.into()))?;
        drop(fifo);
        let _ = fs::remove_file(&fifo_path);
        Ok(())
    }

    /// Poststart hooks: every one runs, and a failure is a warning, as the
    /// runtime-spec asks.
    fn poststart(&self, rec: &Record, spec: &Spec) {
        if let Some(h) = spec.hooks() {
            let st =
                serde_json::to_string(&self.oci_state(rec, Status::Running)).unwrap_or_default();
            for e in crate::hooks::run_every("poststart", h.poststart().as_ref(), st.as_bytes()) {
                warn!("{e}");
                eprintln!("warning: {e}");
            }
        }
    }

    /// Create and start a container. With `detach` false, stay attached: relay the
    /// terminal, forward signals, wait, delete, and return the exit code.
    pub fn run(&self, o: &CreateOpts, detach: bool) -> Result<i32> {
        let _span = info_span!("run", id = %o.id).entered();
        let sd = StateDir::create(&self.root, &o.id)?;
        let mut undo = Undo::default();
        let created = match self.create_in(&sd, o, !detach, true, &mut undo) {
            Ok(c) => c,
            Err(e) => {
                undo.run();
                let _ = sd.remove();
                return Err(e);
            }
        };
        // Block the signals we forward before init can exit, so none is lost.
        let mask = forwarded_signals();
        if !detach {
            let _ = mask.thread_block();
        }
        let released = match &created.channel {
            Some(ch) => ch.send(&Msg::Proceed),
            None => self.release_via_fifo(&sd, &created.record),
        };
        if let Err(e) = released {
            let _ = signal::kill(created.pid, Signal::SIGKILL);
            let _ = waitpid(created.pid, None);
            drop(sd);
            let _ = self.delete(&o.id, true);
            return Err(e);
        }
        self.poststart(&created.record, &created.spec);
        if detach {
            return Ok(0);
        }
        drop(sd);
        let relay = created.pty.map(crate::console::spawn_relay);
        let code = wait_forwarding(created.pid, &mask);
        if let Some(r) = relay {
            r.drain();
        }
        // We reaped init ourselves: delete with what we already know.
        let removed = StateDir::open(&self.root, &o.id).and_then(|sd| {
            let cg = Manager::from_state(&created.record.cgroup)?;
            self.remove_stopped(sd, &created.record, &cg, Some(&created.spec))
        });
        match removed {
            Ok(()) | Err(Error::NotFound(_)) => {}
            Err(e) => warn!("delete after run: {e}"),
        }
        Ok(code)
    }

    /// The runtime-spec state of a container, read as `list` reads it:
    /// without waiting for a command that holds the container's lock
    /// (state.json is replaced atomically). A container whose create has not
    /// finished, or died, is `creating`, as `list` shows it; a hook may ask
    /// for the state of the container it runs for.
    pub fn state(&self, id: &str) -> Result<OciState> {
        state::validate_id(id)?;
        let dir = self.root.join(id);
        if let Some(rec) = state::read_record(&dir, id)? {
            let st = self.status_in(&dir, &rec);
            return Ok(self.oci_state(&rec, st));
        }
        if !dir.is_dir() {
            return Err(Error::NotFound(id.into()));
        }
        // A create that finished since the first look has written its
        // record before it removed the pending one.
        if let Ok(None) = state::read_pending(&dir, id) {
            if let Some(rec) = state::read_record(&dir, id)? {
                let st = self.status_in(&dir, &rec);
                return Ok(self.oci_state(&rec, st));
            }
        }
        Ok(self.creating_state(&dir, id))
    }

    /// All containers under the root, without waiting for any command that
    /// holds one (state.json is replaced atomically, so it is read as is). A
    /// state dir whose create never finished is listed as `creating`.
    pub fn list(&self) -> Result<Vec<OciState>> {
        let mut out = Vec::new();
        let rd = match fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io("read runtime root", &self.root, e)),
        };
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            if state::validate_id(&name).is_err() || !ent.path().is_dir() {
                continue;
            }
            let dir = ent.path();
            match state::read_record(&dir, &name) {
                Ok(Some(rec)) => {
                    let st = self.status_in(&dir, &rec);
                    out.push(self.oci_state(&rec, st));
                }
                Ok(None) => out.push(self.creating_state(&dir, &name)),
                Err(e) => debug!("list: skip {name}: {e}"),
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(out)
    }

    /// What is known of a container whose create has not finished (or died):
    /// its pending record, or only its state dir.
    fn creating_state(&self, dir: &Path, id: &str) -> OciState {
        if let Ok(Some(p)) = state::read_pending(dir, id) {
            let alive = p.pid > 0 && state::pid_start_time(p.pid) == Some(p.pid_start);
            return OciState {
                oci_version: spec::OCI_VERSION.into(),
                id: id.into(),
                status: Status::Creating,
                pid: if alive { p.pid } else { 0 },
                bundle: p.bundle,
                rootfs: PathBuf::new(),
                created: p.created,
                owner: p.owner,
                annotations: HashMap::new(),
            };
        }
        let created = fs::metadata(dir)
            .and_then(|m| m.modified())
            .map(|t| {
                chrono::DateTime::<chrono::Utc>::from(t)
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
            })
            .unwrap_or_default();
        OciState {
            oci_version: spec::OCI_VERSION.into(),
            id: id.into(),
            status: Status::Creating,
            pid: 0,
            bundle: PathBuf::new(),
            rootfs: PathBuf::new(),
            created,
            owner: String::new(),
            annotations: HashMap::new(),
        }
    }

    /// Send `sig` to init, or with `all` to every process of the container.
    pub fn kill(&self, id: &str, sig: Signal, all: bool) -> Result<()> {
        let _span = info_span!("kill", id).entered();
        let (sd, rec) = self.load(id)?;
        let status = self.status_of(&sd, &rec);
        if all {
            let cg = Manager::from_state(&rec.cgroup)?;
            return Ok(cg.kill_all(sig)?);
        }
        if status == Status::Stopped {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                msg: "container not running".into(),
            });
        }
        signal::kill(Pid::from_raw(rec.pid), sig)
            .map_err(|e| Error::sys(format!("kill {} {sig}", rec.pid), e))
    }

    /// Delete a container. Without `force`, only a stopped or created one.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let _span = info_span!("delete", id).entered();
        let sd = match StateDir::open(&self.root, id) {
            Ok(sd) => sd,
            Err(Error::NotFound(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(rec) = sd.load()? else {
            // A create that died half-way: we hold the lock, so nobody is making it.
            return self.remove_abandoned(sd);
        };
        let status = self.status_of(&sd, &rec);
        let cg = Manager::from_state(&rec.cgroup)?;
        match status {
            Status::Stopped => {}
            Status::Created => self.kill_and_wait(&rec, &cg)?,
            _ if force => self.kill_and_wait(&rec, &cg)?,
            _ => {
                return Err(Error::WrongState {
                    id: id.into(),
                    status: status.to_string(),
                    msg: "cannot delete a container that is not stopped (use --force)".into(),
                })
            }
        }
        let spec = self.saved_spec(&sd).ok();
        self.remove_stopped(sd, &rec, &cg, spec.as_ref())
    }

    /// Undo a create that died half-way, from what its pending record names:
    /// its process (if it still runs), the processes in a cgroup it made, the
    /// cgroup, the rootfs bind mount of a container without a mount
    /// namespace, then the state dir.
    fn remove_abandoned(&self, sd: StateDir) -> Result<()> {
        let pending = match state::read_pending(&sd.path, &sd.id) {
            Ok(p) => p,
            Err(e) => {
                warn!("{e}; removing the state dir only");
                None
            }
        };
        if let Some(p) = pending {
            if p.pid > 0 {
                self.kill_pid_and_wait(&p.id, p.pid, p.pid_start)?;
            }
            if let Some(cs) = &p.cgroup {
                let cg = Manager::from_state(cs)?;
                // Everything in a cgroup this create made is the container's; a
                // cgroup that existed before may hold others' processes.
                let made_by_it = cg
                    .hierarchies()
                    .iter()
                    .all(|h| cs.created.contains(&h.path));
                if made_by_it && !cg.pids().unwrap_or_default().is_empty() {
                    if let Err(e) = cg.kill_all(Signal::SIGKILL) {
                        debug!("kill the processes of an abandoned create: {e}");
                    }
                }
                cg.destroy()?;
            }
            if let Some(h) = &p.host_root {
                detach_host_root(h)?;
            }
        }
        sd.remove()
    }

    /// The end of every delete: whatever outlived init goes, then the cgroup,
    /// the poststop hooks and the state dir.
    fn remove_stopped(
        &self,
        sd: StateDir,
        rec: &Record,
        cg: &Manager,
        spec: Option<&Spec>,
    ) -> Result<()> {
        // Processes that outlived init go too. With a pid namespace of its own
        // there are none: the kernel kills them all before init's exit shows.
        let own_pidns = spec.and_then(|s| s.linux().as_ref()).is_some_and(|l| {
            l.namespaces()
                .iter()
                .flatten()
                .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none())
        });
        if !own_pidns && !cg.pids().unwrap_or_default().is_empty() {
            let _ = cg.kill_all(Signal::SIGKILL);
        }
        cg.destroy()?;
        if let Some(h) = &rec.host_root {
            detach_host_root(h)?;
        }
        if let Some(h) = spec.and_then(|s| s.hooks().as_ref()) {
            let st =
                serde_json::to_string(&self.oci_state(rec, Status::Stopped)).unwrap_or_default();
            for e in crate::hooks::run_every("poststop", h.poststop().as_ref(), st.as_bytes()) {
                warn!("{e}");
                eprintln!("warning: {e}");
            }
        }
        sd.remove()
    }

    fn kill_and_wait(&self, rec: &Record, cg: &Manager) -> Result<()> {
        if let Err(e) = cg.kill_all(Signal::SIGKILL) {
            debug!("kill_all: {e}");
        }
        self.kill_pid_and_wait(&rec.id, rec.pid, rec.pid_start)
    }

    /// SIGKILL the process `pid` if it is still the one that started at
    /// `start`, and wait until it is gone.
    fn kill_pid_and_wait(&self, id: &str, pid: i32, start: u64) -> Result<()> {
        let alive = || pid > 0 && state::pid_start_time(pid) == Some(start);
        if alive() {
            let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive() {
            // Reap it if it is our own child (run, or a create in this process).
            let _ = waitpid(
                Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
            if Instant::now() > deadline {
                return Err(Error::WrongState {
                    id: id.into(),
                    status: "running".into(),
                    msg: format!("init {pid} did not die after SIGKILL"),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    /// Freeze all processes of the container.
    pub fn pause(&self, id: &str) -> Result<()> {
        let (sd, rec) = self.load(id)?;
        let status = self.status_of(&sd, &rec);
        if status != Status::Running && status != Status::Created {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                msg: "only a running container can be paused".into(),
            });
        }
        Ok(Manager::from_state(&rec.cgroup)?.freeze()?)
    }

    /// Thaw a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        let (sd, rec) = self.load(id)?;
        let status = self.status_of(&sd, &rec);
        if status != Status::Paused {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                msg: "only a paused container can be resumed".into(),
            });
        }
        Ok(Manager::from_state(&rec.cgroup)?.thaw()?)
    }

    /// PIDs (host view) of every process in the container.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let (_sd, rec) = self.load(id)?;
        Ok(Manager::from_state(&rec.cgroup)?.pids()?)
    }

    /// Change the resource limits of a running container.
    pub fn update(&self, id: &str, r: &LinuxResources) -> Result<()> {
        let (sd, rec) = self.load(id)?;
        let status = self.status_of(&sd, &rec);
        if status == Status::Stopped {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                msg: "cannot update a stopped container".into(),
            });
        }
        Ok(Manager::from_state(&rec.cgroup)?.update(r)?)
    }

    /// Resource usage.
    pub fn stats(&self, id: &str) -> Result<berth_cgroups::Stats> {
        let (_sd, rec) = self.load(id)?;
        Ok(Manager::from_state(&rec.cgroup)?.stats()?)
    }

    /// OOM kills seen in the container's cgroup so far.
    pub fn oom_kills(&self, id: &str) -> Result<u64> {
        let (_sd, rec) = self.load(id)?;
        Ok(Manager::from_state(&rec.cgroup)?.oom_kill_count()?)
    }

    /// The saved config of a container (for exec defaults).
    pub fn config(&self, id: &str) -> Result<Spec> {
        let (sd, _rec) = self.load(id)?;
        self.saved_spec(&sd)
    }

    /// Run a new process in a running container. Returns the exit code, or 0 with `detach`.
    pub fn exec(&self, id: &str, process: &Process, o: &ExecOpts) -> Result<i32> {
        let _span = info_span!("exec", id).entered();
        spec::validate_process(process).map_err(Error::InvalidArgument)?;
        let (sd, rec) = self.load(id)?;
        let status = self.status_of(&sd, &rec);
        match status {
            Status::Running | Status::Created => {}
            Status::Paused if o.ignore_paused => {}
            Status::Paused => {
                return Err(Error::WrongState {
                    id: id.into(),
                    status: status.to_string(),
                    msg: "cannot exec in a paused container (use --ignore-paused to make \
                          the process anyway; it runs once the container is resumed)"
                        .into(),
                })
            }
            _ => {
                return Err(Error::WrongState {
                    id: id.into(),
                    status: status.to_string(),
                    msg: format!("cannot exec in a {status} container"),
                })
            }
        }
        let spec = self.saved_spec(&sd)?;
        let seccomp = spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
            .map(seccomp::compile)
            .transpose()?;
        if let Some(c) = process.capabilities() {
            crate::capabilities::validate(c)?;
        }
        let memory_policy = match spec.linux() {
            Some(l) => checked_memory_policy(l, &sd.file(CONFIG_FILE))?,
            None => None,
        };
        let terminal = process.terminal().unwrap_or(false);
        let console = match (&o.console_socket, terminal) {
            (Some(p), true) => Some(crate::console::connect(p)?),
            (None, true) if o.detach => {
                return Err(Error::InvalidArgument(
                    "--tty with --detach needs --console-socket".into(),
                ))
            }
            _ => None,
        };
        // Join every namespace in which the container differs from us.
        let mut join = Vec::new();
        let (mut pid_ns, mut time_ns, mut root) = (None, None, None);
        for name in ["user", "ipc", "uts", "net", "cgroup", "pid", "time", "mnt"] {
            let theirs = PathBuf::from(format!("/proc/{}/ns/{name}", rec.pid));
            let ours = PathBuf::from(format!("/proc/self/ns/{name}"));
            let (Ok(a), Ok(b)) = (fs::metadata(&theirs), fs::metadata(&ours)) else {
                continue;
            };
            if a.ino() == b.ino() && a.dev() == b.dev() {
                if name == "mnt" {
                    // No mount namespace of its own: init is chrooted into the
                    // rootfs; the process goes where init's root is.
                    let p = format!("/proc/{}/root", rec.pid);
                    root = Some(
                        rustix::fs::open(
                            &p,
                            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                            Mode::empty(),
                        )
                        .map_err(|e| Error::io("open the container's root", p, e.into()))?,
                    );
                }
                continue;
            }
            let fd = open_ns(&theirs)?;
            match name {
                "pid" => pid_ns = Some(fd),
                "time" => time_ns = Some(fd),
                _ => {
                    let t = LinuxNamespaceType::try_from(name)
                        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                    join.push((ns_flag(t), fd));
                }
            }
        }
        join.sort_by_key(|(f, _)| join_rank(*f));
        // Do not hold the lock while the process runs (and do not hand it down).
        drop(sd);
        let (parent_ch, child_ch) = channel::pair()?;
        let (lp, extra_env) = listen_fds();
        let cg = Manager::from_state(&rec.cgroup)?;
        let join_cg = CgroupJoin::open(&cg)?;
        let (forked, guards) = {
            let _p = match &pid_ns {
                Some(fd) => Some(enter_for_children(
                    fd,
                    CloneFlags::CLONE_NEWPID,
                    "/proc/self/ns/pid",
                )?),
                None => None,
            };
            let _t = match &time_ns {
                Some(fd) => Some(enter_for_children(
                    fd,
                    CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
                    "/proc/self/ns/time",
                )?),
                None => None,
            };
            let forked = join_cg.fork(CloneFlags::empty())?;
            (forked, (_p, _t))
        };
        let (forked, parent_moves) = forked;
        let pid = match forked {
            Forked::Child => {
                std::mem::forget(guards);
                drop(parent_ch);
                init::exec_child(
                    init::ExecArgs {
                        process,
                        join,
                        root,
                        console_socket: console,
                        pty_to_parent: terminal && o.console_socket.is_none(),
                        seccomp: seccomp.as_ref(),
                        personality: spec.linux().as_ref().and_then(|l| l.personality().as_ref()),
                        memory_policy,
                        preserve_fds: o.preserve_fds + lp,
                        extra_env,
                        cgroup_tasks: join_cg.tasks,
                    },
                    child_ch,
                )
            }
            Forked::Parent(pid) => {
                drop(guards);
                pid
            }
        };
        drop(child_ch);
        drop(console);
        let fail = |e: Error| {
            let _ = signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            e
        };
        drop(join_cg);
        if parent_moves {
            cg.add_process(pid.as_raw()).map_err(|e| fail(e.into()))?;
        }
        parent_ch.send(&Msg::Proceed).map_err(fail)?;
        let mut pty = None;
        loop {
            // EOF: the sync socket closed on a successful execve.
            let Some((msg, fd)) = parent_ch.recv_with_fd().map_err(fail)? else {
                break;
            };
            match msg {
                Msg::SeccompFd => {
                    if let (Some(fd), Some(path)) =
                        (fd, seccomp.as_ref().and_then(|s| s.listener_path()))
                    {
                        let linux = spec.linux().as_ref().expect("validated at create");
                        let st = self.process_state(&rec, Status::Running, linux);
                        seccomp::send_to_listener(path, fd.as_fd(), &st)
                            .map_err(|e| fail(e.into()))?;
                    }
                    parent_ch.send(&Msg::Ack).map_err(fail)?;
                }
                Msg::PtyMaster => {
                    pty = fd;
                    parent_ch.send(&Msg::Ack).map_err(fail)?;
                }
                Msg::Error(e) => {
                    let _ = waitpid(pid, None);
                    return Err(Error::Init(e));
                }
                other => {
                    return Err(fail(Error::Sync(format!(
                        "unexpected {other:?} from exec child"
                    ))))
                }
            }
        }
        if let Some(p) = &o.pid_file {
            write_pid_file(p, pid)?;
        }
        if o.detach {
            return Ok(0);
        }
        let mask = forwarded_signals();
        let _ = mask.thread_block();
        let relay = pty.map(crate::console::spawn_relay);
        let code = wait_forwarding(pid, &mask);
        if let Some(r) = relay {
            r.drain();
        }
        Ok(code)
    }
}

/// `linux.memoryPolicy`, checked against this host's NUMA nodes.
fn checked_memory_policy(
    linux: &oci_spec::runtime::Linux,
    config: &Path,
) -> Result<Option<crate::process::MemPolicy>> {
    let Some(p) = linux.memory_policy() else {
        return Ok(None);
    };
    let nodes = crate::process::host_memory_nodes();
    crate::process::memory_policy(p, nodes.as_deref())
        .map(Some)
        .map_err(|msg| Error::InvalidConfig {
            path: config.to_owned(),
            msg,
        })
}

/// The cgroup's record with every directory a create may make counted as
/// made: those on the way to the container's cgroup that do not exist yet.
/// Written before the mkdirs, it lets delete remove what a killed create made.
fn planned_cgroup_state(cg: &Manager) -> berth_cgroups::CgroupState {
    let mut st = cg.to_state();
    for h in cg.hierarchies() {
        let mut dir = Some(h.path.as_path());
        while let Some(d) = dir {
            if d == h.mount_point || !d.starts_with(&h.mount_point) || d.exists() {
                break;
            }
            if !st.created.iter().any(|c| c == d) {
                st.created.push(d.to_path_buf());
            }
            dir = d.parent();
        }
    }
    st
}

/// The resources to apply: the config's, with device rules completed as runc
/// does: the config's own rules, then an allow rule for each device node the
/// config creates, then the devices every container needs.
fn device_rules(linux: &oci_spec::runtime::Linux) -> LinuxResources {
    use oci_spec::runtime::LinuxDeviceType;
    let mut r = linux.resources().clone().unwrap_or_default();
    let mut rules = r.devices().clone().unwrap_or_default();
    for d in linux.devices().iter().flatten() {
        // The device cgroup knows block and char devices only: a FIFO needs no
        // rule, and an unbuffered char device ("u") is a char device to it.
        let typ = match d.typ() {
            LinuxDeviceType::B => LinuxDeviceType::B,
            LinuxDeviceType::C | LinuxDeviceType::U => LinuxDeviceType::C,
            LinuxDeviceType::P | LinuxDeviceType::A => continue,
        };
        let mut rule = oci_spec::runtime::LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(typ));
        rule.set_major(Some(d.major()));
        rule.set_minor(Some(d.minor()));
        rule.set_access(Some("rwm".into()));
        rules.push(rule);
    }
    rules.extend(berth_cgroups::default_allowed_devices());
    r.set_devices(Some(rules));
    r
}

fn write_id_maps(pid: Pid, linux: &oci_spec::runtime::Linux) -> Result<()> {
    let fmt = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        m.iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    for (file, maps) in [
        ("uid_map", fmt(linux.uid_mappings())),
        ("gid_map", fmt(linux.gid_mappings())),
    ] {
        let p = format!("/proc/{}/{file}", pid.as_raw());
        fs::write(&p, &maps).map_err(|e| Error::io("write id map", &p, e))?;
    }
    Ok(())
}

fn write_time_offsets(
    offsets: Option<&HashMap<String, oci_spec::runtime::LinuxTimeOffset>>,
) -> Result<()> {
    let mut s = String::new();
    for (clock, off) in offsets.into_iter().flatten() {
        let id = match clock.as_str() {
            "monotonic" => "monotonic",
            "boottime" => "boottime",
            other => {
                return Err(Error::InvalidArgument(format!(
                    "linux.timeOffsets: unknown clock {other:?} (monotonic or boottime)"
                )))
            }
        };
        s.push_str(&format!(
            "{id} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    if !s.is_empty() {
        fs::write("/proc/self/timens_offsets", &s)
            .map_err(|e| Error::io("write time offsets", "/proc/self/timens_offsets", e))?;
    }
    Ok(())
}

fn forwarded_signals() -> signal::SigSet {
    let mut set = signal::SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCHLD,
    ] {
        set.add(s);
    }
    set
}

/// Wait for `pid` while forwarding signals to it; return its exit code as a shell would.
fn wait_forwarding(pid: Pid, mask: &signal::SigSet) -> i32 {
    let sfd =
        nix::sys::signalfd::SignalFd::with_flags(mask, nix::sys::signalfd::SfdFlags::SFD_CLOEXEC)
            .ok();
    loop {
        match waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => return c,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Ok(_) => {}
            Err(nix::errno::Errno::ECHILD) => return 255,
            Err(_) => {}
        }
        match &sfd {
            Some(sfd) => {
                if let Ok(Some(info)) = sfd.read_signal() {
                    let signo = info.ssi_signo as i32;
                    if signo != libc::SIGCHLD {
                        if let Ok(s) = Signal::try_from(signo) {
                            let _ = signal::kill(pid, s);
                        }
                    }
                }
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_rules_only_for_device_nodes() {
        let linux: oci_spec::runtime::Linux = serde_json::from_str(
            r#"{"devices": [
                {"path": "/dev/fifo", "type": "p"},
                {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
                {"path": "/dev/raw", "type": "u", "major": 162, "minor": 1},
                {"path": "/dev/loop9", "type": "b", "major": 7, "minor": 9}
            ]}"#,
        )
        .unwrap();
        let r = device_rules(&linux);
        let rules = r.devices().as_ref().unwrap();
        let made: Vec<String> = rules
            .iter()
            .take(3)
            .map(|r| {
                format!(
                    "{} {:?}:{:?}",
                    r.typ().unwrap().as_str(),
                    r.major(),
                    r.minor()
                )
            })
            .collect();
        assert_eq!(
            made,
            [
                "c Some(10):Some(229)",
                "c Some(162):Some(1)",
                "b Some(7):Some(9)"
            ]
        );
        // Every rule is one the cgroup backends accept.
        berth_cgroups::devices::rules_from_oci(rules).unwrap();
    }

    #[test]
    fn config_namespace_paths_are_checked_before_use() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let file = d.path().join("file");
        fs::write(&file, "x").unwrap();
        let net = LinuxNamespaceType::Network;
        // A FIFO is refused at once (a plain open would wait for a writer).
        let e = open_config_ns(&fifo, net).unwrap_err().to_string();
        assert!(
            e.contains("is a FIFO") && e.contains("network namespace"),
            "{e}"
        );
        assert!(e.contains(fifo.to_str().unwrap()), "{e}");
        let e = open_config_ns(&file, net).unwrap_err().to_string();
        assert!(e.contains("is a regular file"), "{e}");
        let e = open_config_ns(d.path(), net).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        // Our own namespaces: the right type is taken, another is named.
        open_config_ns(Path::new("/proc/self/ns/net"), net).unwrap();
        let e = open_config_ns(Path::new("/proc/self/ns/mnt"), net)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a mount namespace"), "{e}");
    }
}
