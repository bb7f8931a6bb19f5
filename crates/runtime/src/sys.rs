//! The few raw system calls that neither nix nor rustix wraps for us. All of the
//! runtime's `unsafe` code for syscalls lives here.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::Pid;

/// Result of [`clone_fork`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// We are the parent; this is the child's PID.
    Parent(Pid),
    /// We are the child.
    Child,
}

/// `clone(2)` with `flags | SIGCHLD` and no new stack: fork semantics, plus new namespaces.
///
/// The caller must be single-threaded, as with `fork`, so that the child's copy of
/// the address space holds no locks owned by other threads.
pub fn clone_fork(flags: libc::c_int) -> nix::Result<Forked> {
    // SAFETY: with a NULL stack the kernel gives the child a copy of the caller's
    // stack, exactly like fork(2); the arguments are plain integers and NULL
    // pointers, which the x86_64/aarch64 clone ABI accepts (parent_tid/child_tid/tls
    // are only read when the matching CLONE_* flags are set, and they are not).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match Errno::result(ret)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
    }
}

/// The kernel's `struct clone_args` (version 2, with `cgroup`).
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `clone3(2)` with fork semantics (no new stack), `flags`, and, when given, the
/// cgroup2 directory fd the child is born into (`CLONE_INTO_CGROUP`).
///
/// The caller must be single-threaded, as with [`clone_fork`].
pub fn clone3_fork(flags: u64, cgroup: Option<std::os::fd::RawFd>) -> nix::Result<Forked> {
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: `args` is a fully initialised clone_args of the size we pass, alive
    // for the call; with stack 0 the child continues on a copy of our stack, as
    // with fork(2). No pidfd/tid/tls pointers are requested.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match Errno::result(ret)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
    }
}

/// Mark every fd from `first` upward close-on-exec.
///
/// `close_range(CLOSE_RANGE_CLOEXEC)` does it in one call. Where that call is
/// refused (a seccomp filter of a runtime we run under that predates it:
/// EPERM; a kernel before 5.9: ENOSYS; before 5.11, which lacks the flag:
/// EINVAL), each open fd is marked with `fcntl` instead.
pub fn cloexec_from(first: u32) -> nix::Result<()> {
    match close_range_cloexec(first) {
        Err(Errno::ENOSYS | Errno::EPERM | Errno::EINVAL) => cloexec_each(first),
        r => r,
    }
}

fn close_range_cloexec(first: u32) -> nix::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes flags on descriptors of this process; it
    // takes no pointers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    Errno::result(ret).map(drop)
}

/// The fallback of [`cloexec_from`]: the fds listed in /proc/self/fd, or,
/// without /proc, every number below the fd limit.
fn cloexec_each(first: u32) -> nix::Result<()> {
    let first = first as RawFd;
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        // Listed first and marked after: the listing's own fd is among them.
        Ok(dir) => dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd >= first)
            .collect(),
        Err(_) => {
            let (soft, _) =
                nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
            (first..soft.min(1 << 20) as RawFd).collect()
        }
    };
    for fd in fds {
        set_cloexec(fd)?;
    }
    Ok(())
}

fn set_cloexec(fd: RawFd) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let flags = match fcntl(fd, FcntlArg::F_GETFD) {
        Ok(f) => FdFlag::from_bits_retain(f),
        // Closed since it was listed (the listing's own fd), or never open.
        Err(Errno::EBADF) => return Ok(()),
        Err(e) => return Err(e),
    };
    if !flags.contains(FdFlag::FD_CLOEXEC) {
        fcntl(fd, FcntlArg::F_SETFD(flags | FdFlag::FD_CLOEXEC))?;
    }
    Ok(())
}

/// Change per-mount attributes of the mount at `fd` and of every mount below
/// it: `mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE)` with `MOUNT_ATTR_*`
/// bits to set and to clear.
pub fn mount_setattr_recursive(fd: BorrowedFd<'_>, set: u64, clear: u64) -> nix::Result<()> {
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is a valid empty C string and `attr` an initialised
    // mount_attr whose size we pass; both outlive the call, which only reads them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    Errno::result(ret).map(drop)
}

/// `set_mempolicy(mode, nodemask, maxnode)` for the calling thread; `mask` holds
/// the node bits (node N is bit N % 64 of word N / 64).
pub fn set_mempolicy(mode: libc::c_int, mask: &[libc::c_ulong]) -> nix::Result<()> {
    let (ptr, maxnode) = if mask.is_empty() {
        (std::ptr::null(), 0)
    } else {
        // The kernel reads maxnode - 1 bits: one more than the mask holds.
        (mask.as_ptr(), mask.len() * libc::c_ulong::BITS as usize + 1)
    };
    // SAFETY: `ptr` is NULL with maxnode 0, or points to `mask`, which holds
    // the maxnode - 1 bits the kernel reads, for the duration of the call.
    let ret = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, ptr, maxnode) };
    Errno::result(ret).map(drop)
}

/// `ioctl(fd, NS_GET_NSTYPE)` (Linux 4.11): the `CLONE_NEW*` flag of the
/// namespace that the nsfs file `fd` refers to.
pub fn ns_type(fd: std::os::fd::BorrowedFd<'_>) -> nix::Result<libc::c_int> {
    use std::os::fd::AsRawFd;
    const NS_GET_NSTYPE: libc::c_ulong = 0xb7 << 8 | 0x3;
    // SAFETY: NS_GET_NSTYPE takes no argument and returns the type as the
    // result; `fd` is a valid descriptor borrowed for the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    Errno::result(ret)
}

/// `setdomainname(2)`.
pub fn set_domainname(name: &str) -> nix::Result<()> {
    // SAFETY: the pointer and length describe the bytes of `name`, valid for the call.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    Errno::result(ret).map(drop)
}

/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, prio)` for the calling process.
pub fn ioprio_set(class: u32, level: u32) -> nix::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    let prio = (class << 13) | level;
    // SAFETY: integer arguments only.
    let ret = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio) };
    Errno::result(ret).map(drop)
}

/// The kernel's `struct sched_attr` (first version, 56 bytes).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SchedAttr {
    /// Size of this struct.
    pub size: u32,
    /// Policy (SCHED_*).
    pub sched_policy: u32,
    /// SCHED_FLAG_*.
    pub sched_flags: u64,
    /// Nice value for SCHED_OTHER/BATCH.
    pub sched_nice: i32,
    /// Priority for SCHED_FIFO/RR.
    pub sched_priority: u32,
    /// SCHED_DEADLINE runtime (ns).
    pub sched_runtime: u64,
    /// SCHED_DEADLINE deadline (ns).
    pub sched_deadline: u64,
    /// SCHED_DEADLINE period (ns).
    pub sched_period: u64,
}

/// `sched_setattr(0, attr, 0)` for the calling thread.
pub fn sched_setattr(attr: &SchedAttr) -> nix::Result<()> {
    let mut a = *attr;
    a.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `a` is a properly sized, initialised sched_attr that lives across the call.
    let ret = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &a as *const SchedAttr, 0) };
    Errno::result(ret).map(drop)
}

/// Join a new anonymous session keyring named `name`.
pub fn join_session_keyring(name: &CStr) -> nix::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let ret =
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    Errno::result(ret).map(drop)
}

/// `personality(2)`.
pub fn personality(persona: libc::c_ulong) -> nix::Result<()> {
    // SAFETY: integer argument only.
    let ret = unsafe { libc::personality(persona) };
    Errno::result(ret).map(drop)
}

/// `_exit(2)`: leave the child without running the parent's atexit handlers or
/// flushing buffers that belong to the parent's copy of stdio.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn cloexec(fd: RawFd) -> bool {
        let f = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        nix::fcntl::FdFlag::from_bits_retain(f).contains(nix::fcntl::FdFlag::FD_CLOEXEC)
    }

    /// Under a seccomp filter that predates close_range (here: one that
    /// refuses it), the fds are still marked, one by one.
    #[test]
    fn cloexec_without_close_range() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let first = r.as_raw_fd().min(w.as_raw_fd());
        assert!(!cloexec(r.as_raw_fd()) && !cloexec(w.as_raw_fd()));
        // A filter without TSYNC binds only the thread that loads it.
        std::thread::spawn(move || {
            use libseccomp::{ScmpAction, ScmpFilterContext, ScmpSyscall};
            let mut ctx = ScmpFilterContext::new(ScmpAction::Allow).unwrap();
            let close_range = ScmpSyscall::from_name("close_range").unwrap();
            ctx.add_rule(ScmpAction::Errno(libc::EPERM), close_range)
                .unwrap();
            ctx.load().unwrap();
            assert_eq!(close_range_cloexec(first as u32), Err(Errno::EPERM));
            cloexec_from(first as u32).unwrap();
        })
        .join()
        .unwrap();
        assert!(cloexec(r.as_raw_fd()) && cloexec(w.as_raw_fd()));
    }

    #[test]
    fn cloexec_each_leaves_lower_fds() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let (lo, hi) = if r.as_raw_fd() < w.as_raw_fd() {
            (r, w)
        } else {
            (w, r)
        };
        cloexec_each(hi.as_raw_fd() as u32).unwrap();
        assert!(cloexec(hi.as_raw_fd()));
        assert!(!cloexec(lo.as_raw_fd()));
    }
}
