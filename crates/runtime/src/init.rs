//! Code that runs in the container's process between `clone` and `execve`.
//!
//! The runtime is single-threaded, so after `clone` this child owns a private copy
//! of the address space with no foreign locks held; it may allocate. It must not
//! log through `tracing` (the subscriber belongs to the parent): every failure is
//! sent to the parent as `Msg::Error` and the child exits.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, LinuxPersonality, Process, Spec};
use rustix::fs::OFlags;

use crate::channel::{Channel, Msg};
use crate::mount::{self, ensure_in_root, fd_path, open_in_root, MountOptions};
use crate::process::MemPolicy;
use crate::seccomp::SeccompProgram;
use crate::sys;

/// Everything the init child needs, prepared by the parent before `clone`.
#[derive(Debug)]
pub struct InitArgs<'a> {
    /// The container's config.
    pub spec: &'a Spec,
    /// Container ID.
    pub id: &'a str,
    /// Absolute rootfs path.
    pub rootfs: &'a Path,
    /// Absolute bundle path (relative bind sources are resolved against it).
    pub bundle: &'a Path,
    /// Namespaces to join by path, user first; setns'd in the child.
    pub join: Vec<(CloneFlags, OwnedFd)>,
    /// Unshare a cgroup namespace after the parent placed us in the cgroup.
    pub new_cgroupns: bool,
    /// The container has a new user namespace (its ID maps are written by the parent).
    pub new_userns: bool,
    /// No mount namespace: the parent bound the rootfs onto itself in its
    /// own; mounts go under it, `/` is left alone, and init is chrooted.
    pub host_mounts: bool,
    /// A user namespace to join by path before `deferred` namespaces are made.
    pub user_join: Option<OwnedFd>,
    /// Namespaces to unshare after joining `user_join` (with a fork for pid).
    pub deferred: CloneFlags,
    /// The container has a new network namespace.
    pub new_netns: bool,
    /// The container has a uts namespace of its own (new, or joined by
    /// path): `hostname` and `domainname` are set in it.
    pub utsns: bool,
    /// The exec FIFO, opened read-write by the parent; without one, init waits
    /// for `Proceed` on the channel instead.
    pub fifo: Option<OwnedFd>,
    /// Connected `--console-socket`, to receive the pty master.
    pub console_socket: Option<OwnedFd>,
    /// Send the pty master to the parent (foreground `run` with a terminal).
    pub pty_to_parent: bool,
    /// Compiled seccomp filter.
    pub seccomp: Option<&'a SeccompProgram>,
    /// `linux.memoryPolicy`, checked.
    pub memory_policy: Option<MemPolicy>,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// `--no-new-keyring`.
    pub no_new_keyring: bool,
    /// Number of fds from 3 up that stay open in the container.
    pub preserve_fds: u32,
    /// Extra environment (LISTEN_FDS).
    pub extra_env: Vec<String>,
    /// Cgroup hierarchies, for `cgroup` mounts.
    pub cgroup_mounts: Vec<berth_cgroups::CgroupMount>,
    /// v1 `tasks` files to join by writing "0" (see `Manager::join_plan`).
    pub cgroup_tasks: Vec<(OwnedFd, PathBuf, bool)>,
    /// Set up mounts first and join the v1 cgroups when the parent sends
    /// `JoinCgroup` (it makes them meanwhile), instead of waiting for `Proceed`.
    pub late_join: bool,
}

/// Arguments of an `exec` child.
#[derive(Debug)]
pub struct ExecArgs<'a> {
    /// The process to run.
    pub process: &'a Process,
    /// Namespaces of the container to join (pid is joined by the parent).
    pub join: Vec<(CloneFlags, OwnedFd)>,
    /// The container's root to chroot into, when it has no mount namespace
    /// of its own (its init is chrooted in the runtime's).
    pub root: Option<OwnedFd>,
    /// Connected console socket.
    pub console_socket: Option<OwnedFd>,
    /// Send the pty master to the parent.
    pub pty_to_parent: bool,
    /// The container's seccomp filter, applied to exec'd processes too.
    pub seccomp: Option<&'a SeccompProgram>,
    /// The container's `linux.personality`, applied to exec'd processes too.
    pub personality: Option<&'a LinuxPersonality>,
    /// The container's `linux.memoryPolicy`, applied to exec'd processes too.
    pub memory_policy: Option<MemPolicy>,
    /// Fds from 3 up to keep.
    pub preserve_fds: u32,
    /// Extra environment.
    pub extra_env: Vec<String>,
    /// v1 `tasks` files to join by writing "0".
    pub cgroup_tasks: Vec<(OwnedFd, PathBuf, bool)>,
}

type R<T> = Result<T, String>;

/// Enter the container's v1 cgroups: a single-threaded process writing "0" to
/// `tasks` moves itself without the kernel's global attach lock.
fn join_cgroups(tasks: Vec<(OwnedFd, PathBuf, bool)>) -> R<()> {
    for (fd, path, best_effort) in tasks {
        if let Err(e) = rustix::io::write(&fd, b"0") {
            if !best_effort {
                return Err(format!("join cgroup {}: {e}", path.display()));
            }
        }
    }
    Ok(())
}

fn errno(op: impl std::fmt::Display) -> impl FnOnce(nix::Error) -> String {
    move |e| format!("{op}: {}", e.desc())
}

fn ioerr(op: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{op}: {e}")
}

/// Set once the parent has stopped listening (init waits for `start`): later
/// errors can only go to the container's stderr.
static DETACHED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Run the child's work so that a panic can never unwind out of it: the child
/// is a copy of the parent, and unwinding would resume the parent's code in it.
fn child_guard(f: impl FnOnce() -> R<Infallible>) -> R<Infallible> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => Err("internal error: the container process panicked during setup".into()),
    }
}

/// Entry point of the container init child. Never returns.
pub fn container_init(args: InitArgs<'_>, chan: Channel) -> ! {
    let err = match child_guard(|| init_inner(args, &chan)) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    if DETACHED.load(std::sync::atomic::Ordering::Relaxed) {
        let msg = format!("berth-runtime: container init: {err}\n");
        let _ = nix::unistd::write(std::io::stderr(), msg.as_bytes());
    } else {
        let _ = chan.send(&Msg::Error(err));
    }
    sys::exit_now(1)
}

/// Entry point of an `exec` child. Never returns.
pub fn exec_child(args: ExecArgs<'_>, chan: Channel) -> ! {
    let err = match child_guard(|| exec_inner(args, &chan)) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = chan.send(&Msg::Error(err));
    sys::exit_now(1)
}

fn init_inner(mut a: InitArgs<'_>, chan: &Channel) -> R<Infallible> {
    let spec = a.spec;
    let process = spec.process().as_ref().ok_or("process: missing")?;
    let linux = spec.linux().as_ref().ok_or("linux: missing")?;
    // Until execve this process runs our binary inside the container: keep
    // container processes from opening it through /proc/PID/exe (CVE-2019-5736).
    nix::sys::prctl::set_dumpable(false).map_err(errno("PR_SET_DUMPABLE"))?;
    join_cgroups(std::mem::take(&mut a.cgroup_tasks))?;
    set_affinity(process, true)?;

    let mut must_join = a.late_join;
    if !must_join {
        chan.expect(&Msg::Proceed).map_err(|e| e.to_string())?;
    }
    if a.new_userns {
        // The maps are written now.
        become_ns_root()?;
    }
    if let Some(userns) = a.user_join.take() {
        enter_joined_userns(userns, a.deferred, chan)?;
    }
    join_namespaces(&a.join)?;
    if a.new_cgroupns && !must_join {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(errno("unshare cgroup namespace"))?;
    }

    // --- the rootfs, in the new mount namespace (or, without one, under the
    // bind mount of the rootfs that the parent made in its own)
    let root_prop = linux
        .rootfs_propagation()
        .as_deref()
        .and_then(mount::propagation_flag)
        .filter(|_| !a.host_mounts);
    // Shared and unbindable propagation are applied to the container's root
    // after pivot_root: pivot_root refuses a shared mount, and the rootfs bind
    // mount below cannot take its source from an unbindable one.
    let late_prop = root_prop.filter(|p| p.intersects(MsFlags::MS_SHARED | MsFlags::MS_UNBINDABLE));
    if !a.host_mounts {
        let first = match root_prop {
            Some(p) if late_prop.is_none() => p,
            _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        };
        mount::set_propagation(Path::new("/"), &[first]).map_err(errno("set propagation of /"))?;
        mount::mount(
            Some(a.rootfs),
            a.rootfs,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .map_err(errno(format!("bind mount rootfs {}", a.rootfs.display())))?;
        mount::set_propagation(a.rootfs, &[MsFlags::MS_PRIVATE])
            .map_err(errno("make rootfs private"))?;
    }
    let rootfd = rustix::fs::open(
        a.rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("open rootfs {}: {e}", a.rootfs.display()))?;

    let label = crate::lsm::mount_label_option(linux.mount_label().as_deref());
    let mut dev_is_bind = false;
    for m in spec.mounts().iter().flatten() {
        // A cgroup mount shows the cgroup we are in: join it first.
        if must_join && matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")) {
            join_late(chan, a.new_cgroupns)?;
            must_join = false;
        }
        if m.destination() == Path::new("/dev") {
            let o = MountOptions::parse(m.options().as_deref().unwrap_or_default())?;
            dev_is_bind = o.bind || m.typ().as_deref() == Some("bind");
        }
        mount_one(rootfd.as_fd(), m, &a, label.as_deref())
            .map_err(|e| format!("mount {}: {e}", m.destination().display()))?;
    }
    if !dev_is_bind {
        create_devices(
            rootfd.as_fd(),
            linux.devices().as_deref().unwrap_or_default(),
            a.new_userns,
        )?;
        dev_symlinks(rootfd.as_fd())?;
    }

    if must_join {
        join_late(chan, a.new_cgroupns)?;
    }
    chan.send(&Msg::CreateHooks).map_err(|e| e.to_string())?;
    let (creating_json, state_json) = match chan.recv().map_err(|e| e.to_string())? {
        Msg::HooksDone(a, b) => (a, b),
        Msg::Error(e) => return Err(e),
        other => return Err(format!("sync: expected HooksDone, received {other:?}")),
    };
    if let Some(h) = spec.hooks() {
        crate::hooks::run_all(
            "createContainer",
            h.create_container().as_ref(),
            creating_json.as_bytes(),
        )
        .map_err(|e| e.to_string())?;
    }

    enter_rootfs(a.rootfs, a.no_pivot, a.host_mounts)?;
    drop(rootfd);
    let root = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("open /: {e}"))?;

    if process.terminal().unwrap_or(false) {
        setup_terminal(
            root.as_fd(),
            true,
            a.console_socket.as_ref(),
            a.pty_to_parent,
            chan,
        )?;
    }

    // sysctls first: /proc/sys is usually among the read-only paths.
    for (k, v) in linux.sysctl().iter().flatten() {
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        std::fs::write(&path, v).map_err(ioerr(format!("sysctl {k}={v}: write {path}")))?;
    }
    for p in linux.readonly_paths().iter().flatten() {
        readonly_path(root.as_fd(), p)?;
    }
    for p in linux.masked_paths().iter().flatten() {
        mask_path(root.as_fd(), p)?;
    }
    if a.utsns {
        if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            nix::unistd::sethostname(h).map_err(errno(format!("sethostname {h:?}")))?;
        }
        if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
            sys::set_domainname(d).map_err(errno(format!("setdomainname {d:?}")))?;
        }
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        let flags = mount::locked_flags(root.as_fd());
        mount::mount(
            None,
            Path::new("/"),
            None,
            flags | MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None,
        )
        .map_err(errno("remount / read-only"))?;
    }
    if let Some(p) = late_prop {
        mount::set_propagation(Path::new("/"), &[p]).map_err(errno("set rootfsPropagation"))?;
    }
    drop(root);
    if let Some(p) = linux.personality() {
        crate::process::set_personality(p)?;
    }
    if let Some(p) = &a.memory_policy {
        crate::process::set_memory_policy(p)?;
    }

    if !a.no_new_keyring {
        let name = CString::new(format!("_ses.{}", a.id)).unwrap_or_default();
        // A kernel without keyrings, or a seccomp profile of a parent runtime, may refuse.
        if let Err(e) = sys::join_session_keyring(&name) {
            if e != nix::errno::Errno::ENOSYS {
                return Err(format!("join session keyring: {}", e.desc()));
            }
        }
    }

    let (prog, env, late_seccomp) =
        finish_process(process, a.extra_env, a.seccomp, a.preserve_fds, chan)?;
    chan.send(&Msg::Ready).map_err(|e| e.to_string())?;
    DETACHED.store(true, std::sync::atomic::Ordering::Relaxed);

    // Wait for `start`: it writes one byte into the FIFO we hold open. Without
    // a FIFO (`run`), the runtime that made us says go on the channel.
    if let Some(fifo) = a.fifo {
        let mut b = [0u8; 1];
        loop {
            match nix::unistd::read(fifo.as_raw_fd(), &mut b) {
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("wait for start: {}", e.desc())),
            }
        }
        drop(fifo);
    } else {
        chan.expect(&Msg::Proceed)
            .map_err(|e| format!("wait for start: {e}"))?;
    }
    {
        if let Some(h) = spec.hooks() {
            crate::hooks::run_all(
                "startContainer",
                h.start_container().as_ref(),
                state_json.as_bytes(),
            )
            .map_err(|e| e.to_string())?;
        }
    }
    exec_program(process, prog, env, late_seccomp, chan)
}

fn exec_inner(a: ExecArgs<'_>, chan: &Channel) -> R<Infallible> {
    let process = a.process;
    nix::sys::prctl::set_dumpable(false).map_err(errno("PR_SET_DUMPABLE"))?;
    join_cgroups(a.cgroup_tasks)?;
    set_affinity(process, true)?;
    chan.expect(&Msg::Proceed).map_err(|e| e.to_string())?;
    if let Some(root) = &a.root {
        // Before joining a user namespace, which would take the right to chroot.
        nix::unistd::fchdir(root.as_raw_fd()).map_err(errno("enter the container's root"))?;
        nix::unistd::chroot(".").map_err(errno("chroot into the container's root"))?;
    }
    join_namespaces(&a.join)?;
    // After joining the mount namespace our root and cwd are its root: the
    // container's rootfs (or we chrooted there). Re-anchor both explicitly
    // so no host path leaks in.
    nix::unistd::chdir("/").map_err(errno("chdir /"))?;
    if let Some(p) = a.personality {
        crate::process::set_personality(p)?;
    }
    if let Some(p) = &a.memory_policy {
        crate::process::set_memory_policy(p)?;
    }
    if process.terminal().unwrap_or(false) {
        let root = rustix::fs::open(
            "/",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| format!("open /: {e}"))?;
        setup_terminal(
            root.as_fd(),
            false,
            a.console_socket.as_ref(),
            a.pty_to_parent,
            chan,
        )?;
    }
    let (prog, env, late_seccomp) =
        finish_process(process, a.extra_env, a.seccomp, a.preserve_fds, chan)?;
    exec_program(process, prog, env, late_seccomp, chan)
}

/// The last steps before a process may be exec'd, shared by init and exec:
/// process attributes, the executable, a listener's seccomp filter, credentials,
/// and the fds it keeps. Returns the program, its env, and the seccomp filter
/// still to load right before execve.
fn finish_process<'s>(
    process: &Process,
    extra_env: Vec<String>,
    seccomp: Option<&'s SeccompProgram>,
    preserve_fds: u32,
    chan: &Channel,
) -> R<(PathBuf, Vec<String>, Option<&'s SeccompProgram>)> {
    let env = prepare_process(process, extra_env)?;
    let prog = resolve_program(process, &env)?;
    // Before any seccomp filter: a profile that does not list close_range
    // (every one written before 2020) would refuse it afterwards.
    keep_fds(preserve_fds)?;
    if let Some(s) = seccomp.filter(|s| s.listener_path().is_some()) {
        load_seccomp(s, chan)?;
    }
    let late = finish_credentials(
        process,
        seccomp.filter(|s| s.listener_path().is_none()),
        chan,
    )?;
    Ok((prog, env, late))
}

/// Join the cgroups the parent made while we set up mounts (`late_join`), then
/// make the cgroup namespace, whose root is the cgroup we are in.
fn join_late(chan: &Channel, new_cgroupns: bool) -> R<()> {
    let (msg, fds) = chan
        .recv_with_fds()
        .map_err(|e| e.to_string())?
        .ok_or("sync: the runtime went away before the cgroup was made")?;
    let names = match msg {
        Msg::JoinCgroup(n) => n,
        Msg::Error(e) => return Err(e),
        other => return Err(format!("sync: expected JoinCgroup, received {other:?}")),
    };
    if names.len() != fds.len() {
        return Err(format!(
            "sync: {} cgroup names for {} fds",
            names.len(),
            fds.len()
        ));
    }
    let tasks = fds
        .into_iter()
        .zip(names)
        .map(|(fd, (name, best_effort))| (fd, PathBuf::from(name), best_effort))
        .collect();
    join_cgroups(tasks)?;
    if new_cgroupns {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(errno("unshare cgroup namespace"))?;
    }
    Ok(())
}

/// Join a user namespace by path, then make the container's new namespaces so
/// that they belong to it. A new pid namespace takes one more fork: the child
/// (born the runtime's child through CLONE_PARENT) goes on as init, and this
/// intermediate reports its PID and exits.
fn enter_joined_userns(userns: OwnedFd, deferred: CloneFlags, chan: &Channel) -> R<()> {
    nix::sched::setns(userns.as_fd(), CloneFlags::CLONE_NEWUSER).map_err(errno("setns user"))?;
    drop(userns);
    become_ns_root()?;
    let now = deferred & !CloneFlags::CLONE_NEWPID;
    if !now.is_empty() {
        nix::sched::unshare(now)
            .map_err(errno("unshare namespaces in the joined user namespace"))?;
    }
    if deferred.contains(CloneFlags::CLONE_NEWPID) {
        nix::sched::unshare(CloneFlags::CLONE_NEWPID).map_err(errno("unshare pid namespace"))?;
        match sys::clone_fork(libc::CLONE_PARENT)
            .map_err(errno("fork init into the new pid namespace"))?
        {
            sys::Forked::Child => {}
            sys::Forked::Parent(pid) => {
                let _ = chan.send(&Msg::Pid(pid.as_raw()));
                sys::exit_now(0);
            }
        }
    }
    Ok(())
}

/// Become root of the user namespace we are in, so files we create are owned
/// by a mapped ID.
fn become_ns_root() -> R<()> {
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(errno("setresgid(0) in the user namespace (is 0 mapped?)"))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(errno("setresuid(0) in the user namespace (is 0 mapped?)"))
}

fn join_namespaces(join: &[(CloneFlags, OwnedFd)]) -> R<()> {
    for (flag, fd) in join {
        nix::sched::setns(fd.as_fd(), *flag).map_err(errno(format!("setns {}", ns_name(*flag))))?;
    }
    Ok(())
}

/// Short name of a namespace flag.
pub fn ns_name(f: CloneFlags) -> &'static str {
    match f {
        CloneFlags::CLONE_NEWUSER => "user",
        CloneFlags::CLONE_NEWNS => "mnt",
        CloneFlags::CLONE_NEWPID => "pid",
        CloneFlags::CLONE_NEWNET => "net",
        CloneFlags::CLONE_NEWIPC => "ipc",
        CloneFlags::CLONE_NEWUTS => "uts",
        CloneFlags::CLONE_NEWCGROUP => "cgroup",
        _ => "time",
    }
}

fn mount_one(
    root: BorrowedFd<'_>,
    m: &oci_spec::runtime::Mount,
    a: &InitArgs<'_>,
    label: Option<&str>,
) -> R<()> {
    let opts = MountOptions::parse(m.options().as_deref().unwrap_or_default())?;
    let typ = m.typ().as_deref().unwrap_or("");
    let dest = m.destination();
    if opts.bind || typ == "bind" {
        let src = m.source().as_ref().ok_or("bind mount without a source")?;
        let src = if src.is_absolute() {
            src.clone()
        } else {
            a.bundle.join(src)
        };
        let meta = std::fs::metadata(&src).map_err(ioerr(format!("source {}", src.display())))?;
        let target =
            ensure_in_root(root, dest, meta.is_dir()).map_err(ioerr("create mount point"))?;
        let tpath = fd_path(target.as_fd());
        let rec = if opts.recursive {
            MsFlags::MS_REC
        } else {
            MsFlags::empty()
        };
        mount::mount(Some(&src), &tpath, None, MsFlags::MS_BIND | rec, None)
            .map_err(errno(format!("bind {}", src.display())))?;
        drop(target);
        let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            // Bind mounts take their flags on a remount, and must keep the flags
            // that the source mount has locked (nosuid, nodev... in a user namespace).
            let target =
                open_in_root(root, dest, OFlags::PATH).map_err(ioerr("reopen mount point"))?;
            let locked = mount::locked_flags(target.as_fd()) & !MsFlags::MS_RDONLY;
            mount::remount_bind(target.as_fd(), locked | extra)
                .map_err(errno("remount bind with flags"))?;
        }
        if !opts.propagation.is_empty() {
            let target =
                open_in_root(root, dest, OFlags::PATH).map_err(ioerr("reopen mount point"))?;
            mount::set_propagation(&fd_path(target.as_fd()), &opts.propagation)
                .map_err(errno("set propagation"))?;
        }
        return set_recursive_attrs(root, dest, &opts);
    }
    if typ == "cgroup" || typ == "cgroup2" {
        mount_cgroup(root, dest, &opts, a)?;
        return set_recursive_attrs(root, dest, &opts);
    }
    if typ == "proc" || typ == "sysfs" {
        check_ordinary_dir(root, dest, typ)?;
    }
    let target = ensure_in_root(root, dest, true).map_err(ioerr("create mount point"))?;
    let tpath = fd_path(target.as_fd());
    let lbl = match typ {
        "proc" | "sysfs" | "cgroup" | "cgroup2" => None,
        _ => label,
    };
    let data = opts.data_string(lbl);
    let src = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    let res = mount::mount(Some(&src), &tpath, Some(typ), opts.flags, data.as_deref());
    match res {
        Ok(()) => {}
        Err(nix::errno::Errno::EPERM) | Err(nix::errno::Errno::EBUSY)
            if typ == "sysfs" && !a.new_netns =>
        {
            // Without a network namespace of its own the container may not mount a
            // fresh sysfs; give it the host's, read-only, as runc does.
            mount::mount(
                Some(Path::new("/sys")),
                &tpath,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(errno("bind /sys"))?;
            let t = open_in_root(root, dest, OFlags::PATH).map_err(ioerr("reopen"))?;
            let locked = mount::locked_flags(t.as_fd());
            mount::remount_bind(t.as_fd(), locked | opts.flags | MsFlags::MS_RDONLY)
                .map_err(errno("remount /sys read-only"))?;
        }
        Err(nix::errno::Errno::EINVAL) if !opts.data.is_empty() => {
            return Err(format!(
                "mount {} type {typ}: {} (the filesystem refused one of the options {:?})",
                src.display(),
                nix::errno::Errno::EINVAL.desc(),
                opts.data
            ))
        }
        Err(e) => return Err(format!("mount {} type {typ}: {}", src.display(), e.desc())),
    }
    if !opts.propagation.is_empty() {
        let target = open_in_root(root, dest, OFlags::PATH).map_err(ioerr("reopen mount point"))?;
        mount::set_propagation(&fd_path(target.as_fd()), &opts.propagation)
            .map_err(errno("set propagation"))?;
    }
    set_recursive_attrs(root, dest, &opts)
}

/// proc and sysfs go on a real directory of the rootfs (or a missing one, made
/// here): a symlink in the image would move them elsewhere in the container,
/// where they escape the masked and read-only paths meant for them.
fn check_ordinary_dir(root: BorrowedFd<'_>, dest: &Path, typ: &str) -> R<()> {
    let fd = match open_in_root(root, dest, OFlags::PATH | OFlags::NOFOLLOW) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(format!("{typ} mount point: {e}")),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| format!("{typ} mount point: {e}"))?;
    let what = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::Directory => return Ok(()),
        rustix::fs::FileType::Symlink => "a symbolic link",
        _ => "not a directory",
    };
    Err(format!(
        "{typ} must be mounted on an ordinary directory, but {} in the rootfs is {what}",
        dest.display()
    ))
}

/// Apply the recursive options (`rro`, `rnosuid`...) to the mount at `dest`
/// and every mount below it.
fn set_recursive_attrs(root: BorrowedFd<'_>, dest: &Path, opts: &MountOptions) -> R<()> {
    if !opts.has_recursive_attrs() {
        return Ok(());
    }
    let target = open_in_root(root, dest, OFlags::PATH).map_err(ioerr("reopen mount point"))?;
    sys::mount_setattr_recursive(target.as_fd(), opts.rec_set, opts.rec_clear).map_err(|e| {
        let why = match e {
            nix::errno::Errno::ENOSYS => " (recursive mount options need Linux 5.12 or later)",
            nix::errno::Errno::EPERM => " (a locked mount of a user namespace keeps its settings)",
            _ => "",
        };
        format!("recursive mount options: mount_setattr: {}{why}", e.desc())
    })
}

fn mount_cgroup(root: BorrowedFd<'_>, dest: &Path, opts: &MountOptions, a: &InitArgs<'_>) -> R<()> {
    let ro = opts.flags & MsFlags::MS_RDONLY;
    let base = opts.flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    let v2_only = a.cgroup_mounts.len() == 1
        && a.cgroup_mounts[0].fs_type == "cgroup2"
        && a.cgroup_mounts[0].name.is_empty();
    if v2_only {
        let t = ensure_in_root(root, dest, true).map_err(ioerr("create mount point"))?;
        let tp = fd_path(t.as_fd());
        if a.new_cgroupns {
            mount::mount(
                Some(Path::new("cgroup2")),
                &tp,
                Some("cgroup2"),
                base | ro,
                None,
            )
            .map_err(errno("mount cgroup2"))?;
        } else {
            let h = &a.cgroup_mounts[0].host_path;
            mount::mount(
                Some(h.as_path()),
                &tp,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(errno(format!("bind {}", h.display())))?;
            let t = open_in_root(root, dest, OFlags::PATH).map_err(ioerr("reopen"))?;
            mount::remount_bind(t.as_fd(), base | ro).map_err(errno("remount cgroup"))?;
        }
        return Ok(());
    }
    // v1 or hybrid: a tmpfs holding one mount per hierarchy, like the host's layout.
    let t = ensure_in_root(root, dest, true).map_err(ioerr("create mount point"))?;
    mount::mount(
        Some(Path::new("tmpfs")),
        &fd_path(t.as_fd()),
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )
    .map_err(errno("mount tmpfs for cgroups"))?;
    drop(t);
    for cm in &a.cgroup_mounts {
        let sub = dest.join(&cm.name);
        let t =
            ensure_in_root(root, &sub, true).map_err(ioerr(format!("create {}", sub.display())))?;
        let tp = fd_path(t.as_fd());
        if a.new_cgroupns {
            mount::mount(
                Some(Path::new("cgroup")),
                &tp,
                Some(cm.fs_type.as_str()),
                base | ro,
                (!cm.options.is_empty()).then_some(cm.options.as_str()),
            )
            .map_err(errno(format!("mount {} hierarchy {}", cm.fs_type, cm.name)))?;
        } else {
            mount::mount(
                Some(cm.host_path.as_path()),
                &tp,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(errno(format!("bind {}", cm.host_path.display())))?;
            let t = open_in_root(root, &sub, OFlags::PATH).map_err(ioerr("reopen"))?;
            mount::remount_bind(t.as_fd(), base | ro)
                .map_err(errno(format!("remount {}", sub.display())))?;
        }
        // Co-mounted controllers ("cpu,cpuacct") also get a link per controller.
        if cm.name.contains(',') {
            let dir =
                open_in_root(root, dest, OFlags::DIRECTORY).map_err(ioerr("open cgroup dir"))?;
            for c in cm.name.split(',') {
                match rustix::fs::symlinkat(cm.name.as_str(), &dir, c) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(format!("symlink {c}: {e}")),
                }
            }
        }
    }
    if ro.contains(MsFlags::MS_RDONLY) {
        let t = open_in_root(root, dest, OFlags::PATH).map_err(ioerr("reopen"))?;
        mount::mount(
            None,
            &fd_path(t.as_fd()),
            Some("tmpfs"),
            base | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            Some("mode=755"),
        )
        .map_err(errno("remount cgroup tmpfs read-only"))?;
    }
    Ok(())
}

/// The devices every container gets (runtime-spec "Default Devices").
fn default_devices() -> Vec<(&'static str, u64, u64)> {
    vec![
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
}

fn create_devices(root: BorrowedFd<'_>, extra: &[LinuxDevice], userns: bool) -> R<()> {
    let mut all: Vec<(PathBuf, SFlag, u64, u64, u32, u32, u32)> = default_devices()
        .into_iter()
        .map(|(p, ma, mi)| (PathBuf::from(p), SFlag::S_IFCHR, ma, mi, 0o666, 0, 0))
        .collect();
    for d in extra {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(format!(
                    "linux.devices: {}: type \"a\" is not a device type",
                    d.path().display()
                ))
            }
        };
        all.retain(|x| x.0 != *d.path());
        all.push((
            d.path().clone(),
            kind,
            d.major() as u64,
            d.minor() as u64,
            d.file_mode().unwrap_or(0o666) & 0o7777,
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
        ));
    }
    for (path, kind, major, minor, mode, uid, gid) in all {
        let parent = path.parent().unwrap_or(Path::new("/dev"));
        let name = path
            .file_name()
            .ok_or_else(|| format!("device path {}", path.display()))?;
        let pfd = ensure_in_root(root, parent, true)
            .map_err(ioerr(format!("create {}", parent.display())))?;
        let pfd = rustix::fs::openat(
            &pfd,
            ".",
            OFlags::DIRECTORY | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| format!("open {}: {e}", parent.display()))?;
        let mknod = || {
            nix::sys::stat::mknodat(
                Some(pfd.as_raw_fd()),
                name,
                kind,
                Mode::from_bits_truncate(mode),
                nix::sys::stat::makedev(major, minor),
            )
        };
        let made = if userns {
            let _ = rustix::fs::unlinkat(&pfd, name, rustix::fs::AtFlags::empty());
            Err(nix::errno::Errno::EPERM)
        } else {
            match mknod() {
                // Replace whatever the image has there.
                Err(nix::errno::Errno::EEXIST) => {
                    let _ = rustix::fs::unlinkat(&pfd, name, rustix::fs::AtFlags::empty());
                    mknod()
                }
                r => r,
            }
        };
        match made {
            Ok(()) => {
                nix::unistd::fchownat(
                    Some(pfd.as_raw_fd()),
                    name,
                    Some(Uid::from_raw(uid)),
                    Some(Gid::from_raw(gid)),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(errno(format!("chown {}", path.display())))?;
                // mknod is subject to the umask; set the exact mode.
                nix::sys::stat::fchmodat(
                    Some(pfd.as_raw_fd()),
                    name,
                    Mode::from_bits_truncate(mode),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(errno(format!("chmod {}", path.display())))?;
            }
            Err(nix::errno::Errno::EPERM) => {
                // In a user namespace: bind the host's device node instead.
                let t = ensure_in_root(root, &path, false)
                    .map_err(ioerr(format!("create {}", path.display())))?;
                mount::mount(
                    Some(&path),
                    &fd_path(t.as_fd()),
                    None,
                    MsFlags::MS_BIND,
                    None,
                )
                .map_err(errno(format!("bind device {}", path.display())))?;
            }
            Err(e) => return Err(format!("mknod {}: {}", path.display(), e.desc())),
        }
    }
    Ok(())
}

fn dev_symlinks(root: BorrowedFd<'_>) -> R<()> {
    let dev = ensure_in_root(root, Path::new("/dev"), true).map_err(ioerr("create /dev"))?;
    let dev = rustix::fs::openat(
        &dev,
        ".",
        OFlags::DIRECTORY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("open /dev: {e}"))?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        match rustix::fs::symlinkat(target, &dev, name) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(format!("symlink /dev/{name}: {e}")),
        }
    }
    // /dev/ptmx must lead to the container's own devpts instance.
    let _ = rustix::fs::unlinkat(&dev, "ptmx", rustix::fs::AtFlags::empty());
    rustix::fs::symlinkat("pts/ptmx", &dev, "ptmx")
        .map_err(|e| format!("symlink /dev/ptmx: {e}"))?;
    Ok(())
}

fn enter_rootfs(rootfs: &Path, no_pivot: bool, host_mounts: bool) -> R<()> {
    nix::unistd::chdir(rootfs).map_err(errno(format!("chdir {}", rootfs.display())))?;
    if host_mounts {
        // In the runtime's mount namespace neither pivot_root nor a move of
        // the rootfs onto / may touch the host's root: chroot, as runc and
        // youki do.
        nix::unistd::chroot(".").map_err(errno("chroot"))?;
    } else if no_pivot {
        mount::mount(Some(rootfs), Path::new("/"), None, MsFlags::MS_MOVE, None)
            .map_err(errno("move rootfs to /"))?;
        nix::unistd::chroot(".").map_err(errno("chroot"))?;
    } else {
        // pivot_root(".", ".") stacks the old root under the new one; detach it at once.
        nix::unistd::pivot_root(".", ".").map_err(errno("pivot_root"))?;
        mount::set_propagation(Path::new("."), &[MsFlags::MS_SLAVE | MsFlags::MS_REC])
            .map_err(errno("make old root a slave"))?;
        nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH)
            .map_err(errno("detach old root"))?;
    }
    nix::unistd::chdir("/").map_err(errno("chdir /"))?;
    Ok(())
}

/// Opens an entry of `linux.maskedPaths` or `linux.readonlyPaths` (`list`)
/// in the container without following it: None when it does not exist. A
/// symlink is refused: where a link in the image points is the image's
/// choice, so masking it or binding over it could hide or protect the wrong
/// thing, or nothing. `doing` completes the refusal ("mask it").
fn open_listed_path(
    root: BorrowedFd<'_>,
    list: &str,
    p: &str,
    doing: &str,
) -> R<Option<(OwnedFd, rustix::fs::FileType)>> {
    let fd = match open_in_root(root, Path::new(p), OFlags::PATH | OFlags::NOFOLLOW) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(format!("{list} {p}: {e}")),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| format!("{list} {p}: {e}"))?;
    let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
    if kind == rustix::fs::FileType::Symlink {
        return Err(format!(
            "linux.{list}: {p} is a symbolic link in the container; refusing to {doing} (list the path it points to instead)"
        ));
    }
    Ok(Some((fd, kind)))
}

fn mask_path(root: BorrowedFd<'_>, p: &str) -> R<()> {
    let Some((fd, kind)) = open_listed_path(root, "maskedPaths", p, "mask it")? else {
        return Ok(());
    };
    let target = fd_path(fd.as_fd());
    let is_dir = kind == rustix::fs::FileType::Directory;
    let res = if is_dir {
        mount::mount(
            Some(Path::new("tmpfs")),
            &target,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None,
        )
    } else {
        mount::mount(
            Some(Path::new("/dev/null")),
            &target,
            None,
            MsFlags::MS_BIND,
            None,
        )
    };
    res.map_err(errno(format!("maskedPaths {p}")))
}

fn readonly_path(root: BorrowedFd<'_>, p: &str) -> R<()> {
    let Some((fd, _)) = open_listed_path(root, "readonlyPaths", p, "make it read-only")? else {
        return Ok(());
    };
    let target = fd_path(fd.as_fd());
    mount::mount(
        Some(&target),
        &target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(errno(format!("readonlyPaths {p}: bind")))?;
    let fd = open_in_root(root, Path::new(p), OFlags::PATH | OFlags::NOFOLLOW)
        .map_err(ioerr(format!("readonlyPaths {p}")))?;
    let locked = mount::locked_flags(fd.as_fd());
    mount::remount_bind(fd.as_fd(), locked | MsFlags::MS_RDONLY | MsFlags::MS_REC)
        .map_err(errno(format!("readonlyPaths {p}: remount")))
}

fn setup_terminal(
    root: BorrowedFd<'_>,
    console_dev: bool,
    console_socket: Option<&OwnedFd>,
    to_parent: bool,
    chan: &Channel,
) -> R<()> {
    let master = open_in_root(root, Path::new("/dev/ptmx"), OFlags::RDWR | OFlags::NOCTTY)
        .or_else(|_| {
            open_in_root(
                root,
                Path::new("/dev/pts/ptmx"),
                OFlags::RDWR | OFlags::NOCTTY,
            )
        })
        .map_err(ioerr("open /dev/ptmx (is /dev/pts mounted?)"))?;
    rustix::pty::unlockpt(&master).map_err(|e| format!("unlockpt: {e}"))?;
    let name = rustix::pty::ptsname(&master, Vec::new()).map_err(|e| format!("ptsname: {e}"))?;
    let name = PathBuf::from(std::ffi::OsStr::from_bytes(name.as_bytes()));
    let slave = rustix::fs::open(
        &name,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("open {}: {e}", name.display()))?;
    if console_dev {
        if let Ok(t) = ensure_in_root(root, Path::new("/dev/console"), false) {
            mount::mount(
                Some(&name),
                &fd_path(t.as_fd()),
                None,
                MsFlags::MS_BIND,
                None,
            )
            .map_err(errno("bind /dev/console"))?;
        }
    }
    nix::unistd::setsid().map_err(errno("setsid"))?;
    rustix::process::ioctl_tiocsctty(&slave).map_err(|e| format!("TIOCSCTTY: {e}"))?;
    for target in 0..3 {
        nix::unistd::dup2(slave.as_raw_fd(), target).map_err(errno("dup2 pty"))?;
    }
    drop(slave);
    if let Some(sock) = console_socket {
        crate::console::send_fd(sock.as_fd(), master.as_fd(), name.as_os_str().as_bytes())
            .map_err(|e| format!("send pty master to console socket: {e}"))?;
    } else if to_parent {
        chan.send_with(&Msg::PtyMaster, Some(master.as_raw_fd()))
            .map_err(|e| e.to_string())?;
        chan.expect(&Msg::Ack).map_err(|e| e.to_string())?;
    } else {
        return Err("process.terminal is set but no --console-socket was given".into());
    }
    Ok(())
}

fn set_affinity(p: &Process, initial: bool) -> R<()> {
    let Some(aff) = p.exec_cpu_affinity() else {
        return Ok(());
    };
    let list = if initial {
        aff.initial()
    } else {
        aff.cpu_affinity_final()
    };
    let Some(list) = list.as_deref() else {
        return Ok(());
    };
    let mut set = nix::sched::CpuSet::new();
    for cpu in crate::cpus::parse_list(list)? {
        set.set(cpu)
            .map_err(errno(format!("execCPUAffinity cpu {cpu}")))?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(errno(format!("execCPUAffinity {list:?}")))
}

/// Per-process settings that need no privileges to be dropped yet; returns the env.
fn prepare_process(p: &Process, extra_env: Vec<String>) -> R<Vec<String>> {
    let umask = p.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(Mode::from_bits_truncate(umask as libc::mode_t));
    let cwd = p.cwd();
    nix::unistd::chdir(cwd).map_err(errno(format!("process.cwd {}", cwd.display())))?;
    // The cwd must lie inside the container (CVE-2024-21626): the kernel marks a
    // directory outside our root as unreachable.
    let outside = || {
        format!(
            "process.cwd {} resolves outside the container",
            cwd.display()
        )
    };
    // glibc reports a cwd outside our root as ENOENT; the raw syscall says "(unreachable)".
    let here = nix::unistd::getcwd().map_err(|_| outside())?;
    if !here.is_absolute() || here.as_os_str().as_bytes().starts_with(b"(unreachable)") {
        return Err(outside());
    }
    for r in p.rlimits().iter().flatten() {
        crate::process::set_rlimit(r)?;
    }
    if let Some(adj) = p.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|e| {
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EPERM) {
                format!("process.oomScoreAdj {adj}: {e} (a negative value needs CAP_SYS_RESOURCE)")
            } else {
                format!("process.oomScoreAdj {adj}: {e}")
            }
        })?;
    }
    if let Some(io) = p.io_priority() {
        crate::process::set_io_priority(io)?;
    }
    if let Some(s) = p.scheduler() {
        crate::process::set_scheduler(s)?;
    }
    crate::lsm::apply_exec_labels(
        p.apparmor_profile().as_deref(),
        p.selinux_label().as_deref(),
    )
    .map_err(|e| e.to_string())?;
    let mut env: Vec<String> = p.env().clone().unwrap_or_default();
    env.extend(extra_env);
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", crate::process::home_of(p.user().uid())));
    }
    Ok(env)
}

fn load_seccomp(s: &SeccompProgram, chan: &Channel) -> R<()> {
    let fd = s.load().map_err(|e| e.to_string())?;
    if let Some(fd) = fd {
        chan.send_with(&Msg::SeccompFd, Some(fd.as_raw_fd()))
            .map_err(|e| e.to_string())?;
        chan.expect(&Msg::Ack).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Switch user and capabilities. Seccomp is loaded here when it needs privileges
/// (no `noNewPrivileges`); otherwise it is returned, to be loaded right before execve.
fn finish_credentials<'s>(
    p: &Process,
    seccomp: Option<&'s SeccompProgram>,
    chan: &Channel,
) -> R<Option<&'s SeccompProgram>> {
    let nnp = p.no_new_privileges().unwrap_or(false);
    if nnp {
        nix::sys::prctl::set_no_new_privs().map_err(errno("set no_new_privs"))?;
    } else if let Some(s) = seccomp {
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: do it now.
        load_seccomp(s, chan)?;
    }
    if let Some(c) = p.capabilities() {
        crate::capabilities::drop_bounding(c).map_err(|e| e.to_string())?;
    }
    nix::sys::prctl::set_keepcaps(true).map_err(errno("PR_SET_KEEPCAPS"))?;
    let user = p.user();
    let gids: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    if let Err(e) = nix::unistd::setgroups(&gids) {
        // setgroups is denied in a user namespace with setgroups=deny; only an
        // explicit request for extra groups makes that an error.
        if !gids.is_empty() || e != nix::errno::Errno::EPERM {
            return Err(format!(
                "setgroups {:?}: {}",
                user.additional_gids(),
                e.desc()
            ));
        }
    }
    let gid = Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid).map_err(errno(format!("setresgid {}", user.gid())))?;
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid).map_err(errno(format!("setresuid {}", user.uid())))?;
    if let Some(c) = p.capabilities() {
        crate::capabilities::apply(c).map_err(|e| e.to_string())?;
    }
    nix::sys::prctl::set_keepcaps(false).map_err(errno("clear PR_SET_KEEPCAPS"))?;
    // With no_new_privs an unprivileged process may load its own filter: the later
    // it is loaded, the fewer of the runtime's own syscalls it must allow.
    Ok(if nnp { seccomp } else { None })
}

fn resolve_program(p: &Process, env: &[String]) -> R<PathBuf> {
    let arg0 = p
        .args()
        .as_ref()
        .and_then(|a| a.first())
        .ok_or("process.args: empty")?;
    crate::process::find_executable(arg0, env)
}

fn keep_fds(n: u32) -> R<()> {
    // Every fd from 3 + n up is close-on-exec, so nothing of the host leaks in.
    // The caller's fds 3..3+n stay as they came: inheritable, since they
    // crossed the caller's execve of this runtime. A number in that range the
    // caller left free may hold an fd of ours (the sync socket, a cgroup
    // handle); those are all opened close-on-exec and stay so.
    sys::cloexec_from(3 + n).map_err(errno("mark fds close-on-exec"))
}

fn exec_program(
    p: &Process,
    prog: PathBuf,
    env: Vec<String>,
    seccomp: Option<&SeccompProgram>,
    chan: &Channel,
) -> R<Infallible> {
    set_affinity(p, false)?;
    let argv: Vec<CString> = p
        .args()
        .iter()
        .flatten()
        .map(|a| {
            CString::new(a.as_bytes()).map_err(|_| format!("process.args: {a:?} holds a NUL byte"))
        })
        .collect::<R<_>>()?;
    let envp: Vec<CString> = env
        .iter()
        .map(|e| {
            CString::new(e.as_bytes()).map_err(|_| format!("process.env: {e:?} holds a NUL byte"))
        })
        .collect::<R<_>>()?;
    let path = mount::cstring(&prog);
    if let Some(s) = seccomp {
        load_seccomp(s, chan)?;
    }
    let e = nix::unistd::execve(&path, &argv, &envp).unwrap_err();
    Err(crate::process::exec_error(
        &p.args().as_ref().map(|a| a[0].clone()).unwrap_or_default(),
        &prog,
        e,
    ))
}
