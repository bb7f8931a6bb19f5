//! seccomp: turn the OCI `linux.seccomp` section into a BPF program and load it.
//!
//! The work is split in two, because the two halves run in different processes:
//!
//! * [`compile`] runs in the runtime parent before `clone`. It validates the
//!   profile, builds the filter with libseccomp, and exports it as raw BPF.
//!   Every configuration error therefore surfaces at `create` time, with a
//!   message that names the syscall, action, flag or path at fault.
//! * [`SeccompProgram::load`] runs in the container init child right before
//!   `execve`. It is one `seccomp(2)` call on the precompiled program: no
//!   allocation, no libseccomp, no tracing, so it is async-signal-safe.
//!
//! Loading needs either `no_new_privs` set on the process or `CAP_SYS_ADMIN`
//! in its user namespace. If `process.noNewPrivileges` is false, the caller
//! must load the filter while it still holds `CAP_SYS_ADMIN` (before
//! dropping capabilities), as runc does.
//!
//! Compiling a large profile with libseccomp costs ~20 ms (docker's default
//! has ~400 syscalls), more than the rest of a container start. So the BPF
//! is cached, as crun does: under `/run/berth-runtime/seccomp/`, one file
//! per profile, named by the SHA-256 of the profile's JSON, the libseccomp
//! version, the architecture and the kernel's seccomp API level. The cache
//! is used only when its directory is root's alone (owner 0, no group or
//! other access), since a filter read from it is loaded as is; a file of the
//! wrong size is ignored and rewritten.
//!
//! With `SCMP_ACT_NOTIFY` rules, [`SeccompProgram::load`] returns the notify
//! fd. The child hands it to the runtime parent (with `sendmsg`, which is why
//! `sendmsg` and `write` may not be notified: the child would block on itself),
//! and the parent passes it on to the agent with [`send_to_listener`].

use std::collections::HashSet;
use std::fs::File;
use std::io::{IoSlice, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

/// The kernel's limit on the length of a classic BPF program (`BPF_MAXINSNS`).
const BPF_MAXINSNS: usize = 4096;

/// Number of syscall arguments seccomp can inspect.
const MAX_SYSCALL_ARGS: usize = 6;

/// Syscalls the init child itself makes between loading the filter and
/// handing the notify fd over; notifying them would deadlock the child.
const NOTIFY_FORBIDDEN: &[&str] = &["write", "sendmsg"];

/// Errors from compiling, loading or handing over a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The default action cannot be SCMP_ACT_NOTIFY.
    #[error("seccomp: SCMP_ACT_NOTIFY cannot be the defaultAction: the runtime's own syscalls before execve would wait on an agent that does not have the notify fd yet")]
    NotifyAsDefault,
    /// A NOTIFY rule covers a syscall the runtime needs to hand over the notify fd.
    #[error("seccomp: SCMP_ACT_NOTIFY cannot be used for the `{0}` syscall: the runtime uses it to hand over the notify fd")]
    NotifyForbiddenSyscall(String),
    /// A NOTIFY rule exists but no listenerPath is configured.
    #[error("seccomp: SCMP_ACT_NOTIFY is used for syscall(s) {0} but linux.seccomp.listenerPath is not set")]
    NotifyWithoutListener(String),
    /// A listenerPath is configured but no rule uses NOTIFY.
    #[error("seccomp: listenerPath {0} is set but no syscall rule uses SCMP_ACT_NOTIFY")]
    ListenerWithoutNotify(PathBuf),
    /// errnoRet was given for an action that has no errno.
    #[error("seccomp: errnoRet {errno} is set for {target} with action {action}, which takes no errno (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)")]
    ErrnoNotAllowed {
        /// `defaultAction` or the syscall names of the rule.
        target: String,
        /// The OCI action string.
        action: LinuxSeccompAction,
        /// The errnoRet value.
        errno: u32,
    },
    /// errnoRet does not fit in the 16 bits seccomp returns.
    #[error("seccomp: errnoRet {errno} for {target} is out of range (at most 65535)")]
    ErrnoOutOfRange {
        /// `defaultAction` or the syscall names of the rule.
        target: String,
        /// The errnoRet value.
        errno: u32,
    },
    /// An argument index is 6 or more.
    #[error("seccomp: rule for syscall(s) {syscalls} has an argument condition on index {index}, but syscalls have only 6 arguments (0-5)")]
    ArgIndex {
        /// The syscall names of the rule.
        syscalls: String,
        /// The bad index.
        index: usize,
    },
    /// A kernel does not know one of the requested filter flags.
    #[error("seccomp: flag(s) {flags} are not supported by this kernel")]
    FlagUnsupported {
        /// The flag names.
        flags: String,
    },
    /// libseccomp refused to set up the filter (default action or architecture).
    #[error("seccomp: setting up the filter ({what}) failed: {source}")]
    Filter {
        /// What was being set up, e.g. the architecture name.
        what: String,
        /// The libseccomp error.
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// libseccomp refused a rule.
    #[error("seccomp: adding rule {action} for syscall `{syscall}` failed: {source}")]
    Rule {
        /// The syscall name.
        syscall: String,
        /// The OCI action string.
        action: LinuxSeccompAction,
        /// The libseccomp error.
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// Exporting the compiled BPF failed.
    #[error("seccomp: exporting the compiled filter failed: {0}")]
    Export(String),
    /// The compiled program is longer than the kernel accepts.
    #[error("seccomp: the compiled filter has {0} BPF instructions, more than the kernel's limit of 4096; shorten the profile")]
    TooLong(usize),
    /// `seccomp(2)` refused the filter because the process has neither
    /// `no_new_privs` nor `CAP_SYS_ADMIN`.
    #[error("seccomp: loading the filter was refused (EACCES): set no_new_privs first or load it while the process still has CAP_SYS_ADMIN")]
    LoadNeedsPrivilege,
    /// `seccomp(2)` failed.
    #[error("seccomp: loading the filter failed: {0}")]
    Load(Errno),
    /// Handing the notify fd to the seccomp agent failed.
    #[error("seccomp: listener {path}: {step} failed: {errno}")]
    Listener {
        /// The listenerPath.
        path: PathBuf,
        /// The step that failed (connect, sendmsg, ...).
        step: &'static str,
        /// The error.
        errno: Errno,
    },
    /// The container process state could not be built or serialized.
    #[error("seccomp: building the container process state for the listener failed: {0}")]
    ProcessState(String),
}

/// A seccomp filter compiled to BPF, ready to be loaded in the init child.
#[derive(Debug, Clone)]
pub struct SeccompProgram {
    filter: Vec<libc::sock_filter>,
    /// `SECCOMP_FILTER_FLAG_*` bits for `seccomp(2)`.
    flags: libc::c_ulong,
    listener_path: Option<PathBuf>,
    listener_metadata: Option<String>,
}

/// Where compiled filters are cached (see the module doc).
pub const CACHE_DIR: &str = "/run/berth-runtime/seccomp";

/// Compiles an OCI seccomp profile, through the cache at [`CACHE_DIR`]
/// when this process is root. Runs in the runtime parent.
pub fn compile(s: &LinuxSeccomp) -> Result<SeccompProgram, SeccompError> {
    let cache = rustix::process::geteuid()
        .is_root()
        .then(|| Path::new(CACHE_DIR));
    compile_cached(s, cache)
}

/// The cache file name of profile `s`: the SHA-256 of everything the BPF
/// depends on.
fn cache_key(s: &LinuxSeccomp) -> Option<String> {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(s).ok()?;
    let v = libseccomp::ScmpVersion::current().ok()?;
    let mut h = Sha256::new();
    h.update(&json);
    h.update(format!(
        "|libseccomp {}.{}.{}|{:?}|api {}",
        v.major,
        v.minor,
        v.micro,
        ScmpArch::native(),
        libseccomp::get_api()
    ));
    Some(format!("{:x}", h.finalize()))
}

/// Whether `dir` may hold filters we load: a directory owned by root with
/// no group or other access (made so when missing).
fn trusted_cache_dir(dir: &Path) -> bool {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    match std::fs::symlink_metadata(dir) {
        Ok(m) => m.is_dir() && m.uid() == 0 && m.mode() & 0o077 == 0,
        Err(_) => false,
    }
}

fn read_cached(path: &Path) -> Option<Vec<libc::sock_filter>> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.is_empty() || bytes.len() % 8 != 0 || bytes.len() / 8 > BPF_MAXINSNS {
        return None;
    }
    Some(decode_bpf(&bytes))
}

fn write_cached(dir: &Path, key: &str, filter: &[libc::sock_filter]) {
    let mut bytes = Vec::with_capacity(filter.len() * 8);
    for f in filter {
        bytes.extend_from_slice(&f.code.to_ne_bytes());
        bytes.push(f.jt);
        bytes.push(f.jf);
        bytes.extend_from_slice(&f.k.to_ne_bytes());
    }
    let tmp = dir.join(format!(".{key}.{}", std::process::id()));
    if std::fs::write(&tmp, &bytes).is_ok() && std::fs::rename(&tmp, dir.join(key)).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// [`compile`] with the cache in `cache` (None: no cache).
pub fn compile_cached(
    s: &LinuxSeccomp,
    cache: Option<&Path>,
) -> Result<SeccompProgram, SeccompError> {
    let default = to_scmp_action(s.default_action(), s.default_errno_ret(), "defaultAction")?;
    if default == ScmpAction::Notify {
        return Err(SeccompError::NotifyAsDefault);
    }
    let syscalls = s.syscalls().as_deref().unwrap_or_default();

    // Notify consistency, checked before any libseccomp work.
    let notify_names: Vec<&str> = syscalls
        .iter()
        .filter(|r| r.action() == LinuxSeccompAction::ScmpActNotify)
        .flat_map(|r| r.names().iter().map(String::as_str))
        .collect();
    if let Some(bad) = notify_names.iter().find(|n| NOTIFY_FORBIDDEN.contains(n)) {
        return Err(SeccompError::NotifyForbiddenSyscall((*bad).to_string()));
    }
    let listener_path = s.listener_path().clone();
    match (&listener_path, notify_names.is_empty()) {
        (None, false) => return Err(SeccompError::NotifyWithoutListener(notify_names.join(", "))),
        (Some(p), true) => return Err(SeccompError::ListenerWithoutNotify(p.clone())),
        _ => {}
    }

    let mut flags = filter_flags(s.flags().as_deref().unwrap_or_default());
    if listener_path.is_some() {
        flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        if flags & libc::SECCOMP_FILTER_FLAG_TSYNC != 0 {
            // The kernel only accepts TSYNC together with NEW_LISTENER when
            // TSYNC failures are reported as ESRCH (the return value is the fd).
            flags |= libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
        }
    }
    probe_flags(flags)?;

    let cache = cache.filter(|d| trusted_cache_dir(d));
    let key = cache.and_then(|_| cache_key(s));
    if let (Some(dir), Some(key)) = (cache, &key) {
        if let Some(filter) = read_cached(&dir.join(key)) {
            return Ok(SeccompProgram {
                filter,
                flags,
                listener_path,
                listener_metadata: s.listener_metadata().clone(),
            });
        }
    }

    let mut ctx = ScmpFilterContext::new(default).map_err(|source| SeccompError::Filter {
        what: format!("default action {}", s.default_action()),
        source,
    })?;
    for arch in s.architectures().as_deref().unwrap_or_default() {
        ctx.add_arch(to_scmp_arch(*arch))
            .map_err(|source| SeccompError::Filter {
                what: format!("architecture {arch}"),
                source,
            })?;
    }

    for rule in syscalls {
        let names = rule.names();
        let action = to_scmp_action(rule.action(), rule.errno_ret(), &names.join(", "))?;
        if action == default {
            tracing::debug!(syscalls = ?names, action = %rule.action(), "seccomp rule equals the default action, skipped");
            continue;
        }
        let groups =
            condition_groups(rule.args().as_deref().unwrap_or_default()).map_err(|index| {
                SeccompError::ArgIndex {
                    syscalls: names.join(", "),
                    index,
                }
            })?;
        for name in names {
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                tracing::warn!(syscall = %name, "seccomp: syscall unknown to libseccomp on this architecture, rule skipped");
                continue;
            };
            for conds in &groups {
                let added = if conds.is_empty() {
                    ctx.add_rule(action, syscall)
                } else {
                    ctx.add_rule_conditional(action, syscall, conds)
                };
                added.map_err(|source| SeccompError::Rule {
                    syscall: name.clone(),
                    action: rule.action(),
                    source,
                })?;
            }
        }
    }

    let filter = export_bpf(&ctx)?;
    if let (Some(dir), Some(key)) = (cache, &key) {
        write_cached(dir, key, &filter);
    }
    Ok(SeccompProgram {
        filter,
        flags,
        listener_path,
        listener_metadata: s.listener_metadata().clone(),
    })
}

impl SeccompProgram {
    /// Loads the filter into the calling thread. Called in the container
    /// init child right before `execve` (single-threaded, after `clone`).
    /// Async-signal-safe: one `seccomp(2)` call, no allocation, no tracing.
    /// Returns the notify fd when a listener is configured.
    pub fn load(&self) -> Result<Option<OwnedFd>, SeccompError> {
        let prog = libc::sock_fprog {
            // compile() guarantees at most BPF_MAXINSNS instructions.
            len: self.filter.len() as libc::c_ushort,
            filter: self.filter.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at `self.filter`, which is alive and unchanged
        // for the whole call; the kernel only reads it (it copies the program).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc < 0 {
            return Err(match Errno::last() {
                Errno::EACCES => SeccompError::LoadNeedsPrivilege,
                e => SeccompError::Load(e),
            });
        }
        if self.flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER == 0 {
            return Ok(None);
        }
        // SAFETY: with NEW_LISTENER, a successful seccomp(2) returns a new
        // file descriptor that nothing else owns.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(rc as RawFd) }))
    }

    /// The unix socket of the seccomp agent, if NOTIFY rules are configured.
    pub fn listener_path(&self) -> Option<&Path> {
        self.listener_path.as_deref()
    }

    /// `listenerMetadata`, passed to the agent in the container process state.
    pub fn listener_metadata(&self) -> Option<&str> {
        self.listener_metadata.as_deref()
    }

    /// Number of BPF instructions in the compiled program.
    pub fn len(&self) -> usize {
        self.filter.len()
    }

    /// Whether the compiled program is empty (never the case after [`compile`]).
    pub fn is_empty(&self) -> bool {
        self.filter.is_empty()
    }
}

/// Builds the runtime-spec `containerProcessState` JSON sent to the seccomp
/// agent: `ociVersion`, `fds: ["seccompFd"]`, `pid`, `metadata` and `state`.
/// `pid` is the container process as seen by the runtime.
pub fn process_state_json(
    state: &oci_spec::runtime::State,
    pid: i32,
    metadata: Option<&str>,
) -> Result<Vec<u8>, SeccompError> {
    let mut b = oci_spec::runtime::ContainerProcessStateBuilder::default()
        .version(state.version().clone())
        .fds(vec![oci_spec::runtime::SECCOMP_FD_NAME.to_string()])
        .pid(pid)
        .state(state.clone());
    if let Some(m) = metadata {
        b = b.metadata(m.to_string());
    }
    let cps = b
        .build()
        .map_err(|e| SeccompError::ProcessState(e.to_string()))?;
    serde_json::to_vec(&cps).map_err(|e| SeccompError::ProcessState(e.to_string()))
}

/// Runtime side: connects to the agent's unix socket at `path` and sends
/// `fd` with `SCM_RIGHTS`, with `process_state_json` (see
/// [`process_state_json`]) as the message data, in one `sendmsg`.
pub fn send_to_listener(
    path: &Path,
    fd: BorrowedFd<'_>,
    process_state_json: &[u8],
) -> Result<(), SeccompError> {
    let fail = |step: &'static str| {
        move |errno: Errno| SeccompError::Listener {
            path: path.to_path_buf(),
            step,
            errno,
        }
    };
    if process_state_json.is_empty() {
        // A stream socket cannot carry SCM_RIGHTS without data.
        return Err(fail("sending an empty process state")(Errno::EINVAL));
    }
    let addr = UnixAddr::new(path).map_err(fail("building the socket address"))?;
    let sock = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(fail("socket"))?;
    socket::connect(sock.as_raw_fd(), &addr).map_err(fail("connect"))?;
    let fds = [fd.as_raw_fd()];
    let sent = socket::sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(process_state_json)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(fail("sendmsg"))?;
    // A large state may not fit in one send; the rest follows as plain data.
    let mut rest = &process_state_json[sent..];
    while !rest.is_empty() {
        match socket::send(sock.as_raw_fd(), rest, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => rest = &rest[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(fail("send")(e)),
        }
    }
    Ok(())
}

/// Maps an OCI action plus errnoRet to a libseccomp action. ERRNO and TRACE
/// default to EPERM like runc; errnoRet on any other action is an error.
fn to_scmp_action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    target: &str,
) -> Result<ScmpAction, SeccompError> {
    use LinuxSeccompAction as A;
    let errno = match (action, errno_ret) {
        (A::ScmpActErrno | A::ScmpActTrace, Some(e)) if e > u32::from(u16::MAX) => {
            return Err(SeccompError::ErrnoOutOfRange {
                target: target.to_string(),
                errno: e,
            });
        }
        (A::ScmpActErrno | A::ScmpActTrace, e) => e.unwrap_or(libc::EPERM as u32) as u16,
        (_, Some(errno)) => {
            return Err(SeccompError::ErrnoNotAllowed {
                target: target.to_string(),
                action,
                errno,
            });
        }
        (_, None) => 0,
    };
    Ok(match action {
        A::ScmpActKill | A::ScmpActKillThread => ScmpAction::KillThread,
        A::ScmpActKillProcess => ScmpAction::KillProcess,
        A::ScmpActTrap => ScmpAction::Trap,
        A::ScmpActErrno => ScmpAction::Errno(i32::from(errno)),
        A::ScmpActTrace => ScmpAction::Trace(errno),
        A::ScmpActNotify => ScmpAction::Notify,
        A::ScmpActLog => ScmpAction::Log,
        A::ScmpActAllow => ScmpAction::Allow,
    })
}

fn to_scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
    }
}

/// Kernel `seccomp(2)` flag bits for the OCI flags. Unknown flag strings
/// never get here: oci-spec rejects them when parsing config.json.
fn filter_flags(flags: &[LinuxSeccompFilterFlag]) -> libc::c_ulong {
    flags.iter().fold(0, |acc, f| {
        acc | match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
        }
    })
}

const FLAG_NAMES: &[(libc::c_ulong, &str)] = &[
    (libc::SECCOMP_FILTER_FLAG_TSYNC, "SECCOMP_FILTER_FLAG_TSYNC"),
    (libc::SECCOMP_FILTER_FLAG_LOG, "SECCOMP_FILTER_FLAG_LOG"),
    (
        libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    ),
    (
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
        "SECCOMP_FILTER_FLAG_NEW_LISTENER",
    ),
    (
        libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH,
        "SECCOMP_FILTER_FLAG_TSYNC_ESRCH",
    ),
    (
        libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    ),
];

/// Asks the kernel whether it accepts `flags`, without installing anything:
/// with a NULL program, known flags fail with EFAULT, unknown ones with EINVAL.
fn probe_flags(flags: libc::c_ulong) -> Result<(), SeccompError> {
    if flags == 0 {
        return Ok(());
    }
    // SAFETY: a NULL program pointer is never dereferenced by us; the kernel
    // validates the flags and then fails to copy the program (EFAULT), so no
    // filter is installed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    if rc < 0 && Errno::last() == Errno::EINVAL {
        let names: Vec<&str> = FLAG_NAMES
            .iter()
            .filter(|(bit, _)| flags & bit != 0)
            .map(|(_, n)| *n)
            .collect();
        return Err(SeccompError::FlagUnsupported {
            flags: names.join(", "),
        });
    }
    Ok(())
}

/// Groups the argument conditions of one OCI rule into libseccomp rules.
///
/// libseccomp accepts at most one condition per argument index in a rule.
/// When all indexes differ, the conditions form one rule (all must match).
/// When an index repeats, each condition becomes its own rule (any may
/// match), which is how runc reads such profiles (e.g. several allowed
/// values of `personality`'s argument 0). No conditions yield one rule
/// without conditions. Returns the offending index if one is out of range.
fn condition_groups(args: &[LinuxSeccompArg]) -> Result<Vec<Vec<ScmpArgCompare>>, usize> {
    let conds = args
        .iter()
        .map(to_arg_compare)
        .collect::<Result<Vec<_>, usize>>()?;
    let mut seen = HashSet::new();
    if args.iter().all(|a| seen.insert(a.index())) {
        Ok(vec![conds])
    } else {
        Ok(conds.into_iter().map(|c| vec![c]).collect())
    }
}

fn to_arg_compare(a: &LinuxSeccompArg) -> Result<ScmpArgCompare, usize> {
    if a.index() >= MAX_SYSCALL_ARGS {
        return Err(a.index());
    }
    let index = a.index() as u32;
    let op = match a.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // OCI: `value` is the mask, `valueTwo` the value compared with (arg & mask).
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return Ok(ScmpArgCompare::new(
                index,
                ScmpCompareOp::MaskedEqual(a.value()),
                a.value_two().unwrap_or(0),
            ));
        }
    };
    Ok(ScmpArgCompare::new(index, op, a.value()))
}

/// Exports the filter as raw BPF through a memfd and decodes the
/// instructions (8 bytes each, native endian: code u16, jt u8, jf u8, k u32).
fn export_bpf(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let fd = nix::sys::memfd::memfd_create(
        c"berth-seccomp",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .map_err(|e| SeccompError::Export(format!("memfd_create: {e}")))?;
    let mut file = File::from(fd);
    ctx.export_bpf(&file)
        .map_err(|e| SeccompError::Export(e.to_string()))?;
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| SeccompError::Export(format!("reading back the program: {e}")))?;
    if bytes.is_empty() || bytes.len() % 8 != 0 {
        return Err(SeccompError::Export(format!(
            "unexpected program size of {} bytes",
            bytes.len()
        )));
    }
    let insns = bytes.len() / 8;
    if insns > BPF_MAXINSNS {
        return Err(SeccompError::TooLong(insns));
    }
    Ok(decode_bpf(&bytes))
}

/// Raw BPF (8 bytes per instruction, native endian) to instructions.
fn decode_bpf(bytes: &[u8]) -> Vec<libc::sock_filter> {
    bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSyscallBuilder};

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).expect("test profile parses")
    }

    fn err(json: &str) -> String {
        compile(&profile(json))
            .expect_err("profile must be rejected")
            .to_string()
    }

    fn arg(index: usize, value: u64, op: LinuxSeccompOperator) -> LinuxSeccompArg {
        LinuxSeccompArgBuilder::default()
            .index(index)
            .value(value)
            .op(op)
            .build()
            .unwrap()
    }

    /// Runs `f` in a forked child and returns its exit code. The child only
    /// makes raw syscalls (the test harness is multi-threaded, so it must not
    /// allocate) and leaves with `_exit`.
    fn in_child(f: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child runs only `f`, which makes async-signal-safe
        // calls, then `_exit`s without returning into the harness.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let code = f();
                // SAFETY: _exit is async-signal-safe and never returns.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => match waitpid(child, None).expect("waitpid") {
                WaitStatus::Exited(_, code) => code,
                other => panic!("child did not exit normally: {other:?}"),
            },
        }
    }

    fn set_no_new_privs() {
        // SAFETY: plain prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    }

    /// Raw syscall result: Ok(ret) or Err(errno).
    fn raw(rc: libc::c_long) -> Result<libc::c_long, i32> {
        if rc < 0 {
            Err(Errno::last_raw())
        } else {
            Ok(rc)
        }
    }

    fn getcwd_raw() -> Result<libc::c_long, i32> {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length.
        raw(unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) })
    }

    fn mkdir_raw(path: &std::ffi::CStr) -> Result<libc::c_long, i32> {
        // SAFETY: `path` is a valid NUL-terminated string.
        raw(unsafe { libc::syscall(libc::SYS_mkdir, path.as_ptr(), 0o700) })
    }

    #[test]
    fn errno_defaults_to_eperm_and_takes_errno_ret() {
        let a = to_scmp_action(LinuxSeccompAction::ScmpActErrno, None, "x").unwrap();
        assert_eq!(a, ScmpAction::Errno(libc::EPERM));
        let a = to_scmp_action(LinuxSeccompAction::ScmpActErrno, Some(42), "x").unwrap();
        assert_eq!(a, ScmpAction::Errno(42));
        let a = to_scmp_action(LinuxSeccompAction::ScmpActTrace, None, "x").unwrap();
        assert_eq!(a, ScmpAction::Trace(libc::EPERM as u16));
        let a = to_scmp_action(LinuxSeccompAction::ScmpActKill, None, "x").unwrap();
        assert_eq!(a, ScmpAction::KillThread);
    }

    #[test]
    fn errno_ret_on_other_action_is_rejected() {
        let e = err(r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["getcwd","chdir"],"action":"SCMP_ACT_ALLOW","errnoRet":5}]}"#);
        assert!(
            e.contains("getcwd, chdir") && e.contains("SCMP_ACT_ALLOW"),
            "{e}"
        );
        let e = err(r#"{"defaultAction":"SCMP_ACT_KILL_PROCESS","defaultErrnoRet":3}"#);
        assert!(
            e.contains("defaultAction") && e.contains("SCMP_ACT_KILL_PROCESS"),
            "{e}"
        );
        let e = err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":70000}]}"#);
        assert!(e.contains("70000") && e.contains("mkdir"), "{e}");
    }

    #[test]
    fn notify_validation() {
        let e = err(r#"{"defaultAction":"SCMP_ACT_NOTIFY","listenerPath":"/run/a.sock"}"#);
        assert!(e.contains("defaultAction"), "{e}");
        let e = err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#);
        assert!(e.contains("mkdir") && e.contains("listenerPath"), "{e}");
        let e = err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/agent.sock",
            "syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
        );
        assert!(
            e.contains("/run/agent.sock") && e.contains("SCMP_ACT_NOTIFY"),
            "{e}"
        );
        let e = err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/agent.sock",
            "syscalls":[{"names":["mkdir","write"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        );
        assert!(e.contains("`write`"), "{e}");
    }

    #[test]
    fn arg_index_out_of_range_names_the_syscall() {
        let e = err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["personality"],
            "action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        assert!(e.contains("personality") && e.contains("index 6"), "{e}");
    }

    #[test]
    fn unknown_flag_and_action_fail_at_parse_naming_the_value() {
        let e = serde_json::from_str::<LinuxSeccomp>(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_BOGUS"]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("SECCOMP_FILTER_FLAG_BOGUS"), "{e}");
        let e = serde_json::from_str::<LinuxSeccomp>(r#"{"defaultAction":"SCMP_ACT_MAYBE"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("SCMP_ACT_MAYBE"), "{e}");
    }

    #[test]
    fn rules_split_only_when_an_index_repeats() {
        use LinuxSeccompOperator::*;
        assert_eq!(
            condition_groups(&[]).unwrap(),
            vec![Vec::<ScmpArgCompare>::new()]
        );
        let distinct = [arg(0, 1, ScmpCmpEq), arg(1, 2, ScmpCmpNe)];
        let g = condition_groups(&distinct).unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].len(), 2);
        let repeated = [
            arg(0, 0, ScmpCmpEq),
            arg(0, 8, ScmpCmpEq),
            arg(0, 0x20000, ScmpCmpEq),
        ];
        let g = condition_groups(&repeated).unwrap();
        assert_eq!(g.len(), 3);
        assert!(g.iter().all(|r| r.len() == 1));
        assert_eq!(g[1][0], ScmpArgCompare::new(0, ScmpCompareOp::Equal, 8));
        assert_eq!(condition_groups(&[arg(7, 0, ScmpCmpEq)]).unwrap_err(), 7);
    }

    #[test]
    fn masked_eq_uses_value_as_mask() {
        let a = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(0x7E02_0000u64)
            .value_two(0u64)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()
            .unwrap();
        assert_eq!(
            to_arg_compare(&a).unwrap(),
            ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(0x7E02_0000), 0)
        );
    }

    /// The cache gives back the same program, ignores a damaged file, and
    /// is not used in a directory others could write (nor by non-root).
    #[test]
    fn compiled_filters_are_cached_only_in_a_private_dir() {
        use std::os::unix::fs::PermissionsExt;
        let profile: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read", "write", "exit_group", "getpid"], "action": "SCMP_ACT_ALLOW"}]
        }))
        .unwrap();
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("cache");
        let plain = compile_cached(&profile, None).unwrap();
        let first = compile_cached(&profile, Some(&dir)).unwrap();
        let files = || std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        let same = |a: &SeccompProgram, b: &SeccompProgram| {
            a.filter.len() == b.filter.len()
                && a.filter
                    .iter()
                    .zip(&b.filter)
                    .all(|(x, y)| (x.code, x.jt, x.jf, x.k) == (y.code, y.jt, y.jf, y.k))
        };
        assert!(same(&plain, &first));
        if !rustix::process::geteuid().is_root() {
            assert_eq!(files(), 0, "only root's own directory is trusted");
            return;
        }
        assert_eq!(files(), 1);
        let key = cache_key(&profile).unwrap();
        assert!(same(&plain, &compile_cached(&profile, Some(&dir)).unwrap()));
        std::fs::write(dir.join(&key), b"short").unwrap();
        assert!(same(&plain, &compile_cached(&profile, Some(&dir)).unwrap()));
        assert_eq!(
            std::fs::read(dir.join(&key)).unwrap().len(),
            plain.filter.len() * 8
        );
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        compile_cached(&profile, Some(&open)).unwrap();
        assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);
    }

    #[test]
    fn compiles_a_docker_like_profile() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,
            "architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
            "flags":["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls":[
              {"names":["read","write","exit_group","no_such_syscall_xyz"],"action":"SCMP_ACT_ALLOW"},
              {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[
                 {"index":0,"value":0,"op":"SCMP_CMP_EQ"},
                 {"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},
              {"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[
                 {"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]},
              {"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":1},
              {"names":["ptrace"],"action":"SCMP_ACT_KILL_PROCESS"}]}"#,
        );
        let prog = compile(&p).expect("compiles");
        assert!(!prog.is_empty());
        assert!(prog.listener_path().is_none());
        assert_eq!(prog.flags, libc::SECCOMP_FILTER_FLAG_LOG);
    }

    #[test]
    fn tsync_with_listener_adds_tsync_esrch_and_loads() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/unused/agent.sock",
            "flags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        );
        let prog = compile(&p).unwrap();
        assert_eq!(
            prog.flags,
            libc::SECCOMP_FILTER_FLAG_TSYNC
                | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
                | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
                | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH
        );
        let code = in_child(|| {
            set_no_new_privs();
            match prog.load() {
                Ok(Some(_fd)) => 0,
                Ok(None) => 30,
                Err(_) => 31,
            }
        });
        assert_eq!(code, 0, "child exit code tells which check failed");
    }

    #[test]
    fn load_in_child_applies_errno_ret() {
        let p = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![
                LinuxSyscallBuilder::default()
                    .names(vec!["getcwd".to_string()])
                    .action(LinuxSeccompAction::ScmpActErrno)
                    .errno_ret(42u32)
                    .build()
                    .unwrap(),
                LinuxSyscallBuilder::default()
                    .names(vec!["mkdir".to_string()])
                    .action(LinuxSeccompAction::ScmpActErrno)
                    .build()
                    .unwrap(),
            ])
            .build()
            .unwrap();
        let prog = compile(&p).unwrap();
        let code = in_child(|| {
            if getcwd_raw().is_err() {
                return 10; // getcwd must work before the filter
            }
            set_no_new_privs();
            match prog.load() {
                Ok(None) => {}
                _ => return 11,
            }
            if getcwd_raw() != Err(42) {
                return 12;
            }
            if mkdir_raw(c"/nonexistent-dir/x") != Err(libc::EPERM) {
                return 13;
            }
            0
        });
        assert_eq!(code, 0, "child exit code tells which check failed");
    }

    #[test]
    fn notify_round_trip_through_socketpair() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/unused/agent.sock",
            "listenerMetadata":"hello","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        );
        let prog = compile(&p).unwrap();
        assert_eq!(prog.listener_path(), Some(Path::new("/unused/agent.sock")));
        assert_eq!(prog.listener_metadata(), Some("hello"));
        let (parent_sock, child_sock) = socket::socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();

        // SAFETY: the child only makes raw syscalls and `_exit`s.
        let child = match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                set_no_new_privs();
                let code = match prog.load() {
                    Ok(Some(fd)) => {
                        send_fd_raw(child_sock.as_raw_fd(), fd.as_raw_fd());
                        drop(fd);
                        // The agent (the parent) answers EEXIST.
                        if mkdir_raw(c"/nonexistent-dir/y") == Err(libc::EEXIST) {
                            0
                        } else {
                            21
                        }
                    }
                    _ => 20,
                };
                // SAFETY: _exit is async-signal-safe and never returns.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => child,
        };
        drop(child_sock);
        let notify_fd = recv_fd(parent_sock.as_raw_fd());
        let req = libseccomp::ScmpNotifReq::receive(notify_fd.as_raw_fd()).expect("notification");
        assert_eq!(req.data.syscall, ScmpSyscall::from_name("mkdir").unwrap());
        assert_eq!(req.pid, child.as_raw() as u32);
        libseccomp::ScmpNotifResp::new_error(
            req.id,
            -libc::EEXIST,
            libseccomp::ScmpNotifRespFlags::empty(),
        )
        .respond(notify_fd.as_raw_fd())
        .expect("respond");
        match waitpid(child, None).unwrap() {
            WaitStatus::Exited(_, code) => assert_eq!(code, 0, "child exit code"),
            other => panic!("child: {other:?}"),
        }
    }

    #[test]
    fn send_to_listener_passes_fd_and_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let state = oci_spec::runtime::StateBuilder::default()
            .version("1.2.0")
            .id("c1")
            .status(oci_spec::runtime::ContainerState::Creating)
            .pid(1234)
            .bundle("/b")
            .build()
            .unwrap();
        let json = process_state_json(&state, 1234, Some("meta")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["ociVersion"], "1.2.0");
        assert_eq!(v["fds"], serde_json::json!(["seccompFd"]));
        assert_eq!(v["pid"], 1234);
        assert_eq!(v["metadata"], "meta");
        assert_eq!(v["state"]["id"], "c1");
        assert_eq!(v["state"]["status"], "creating");

        let file = tempfile::tempfile().unwrap();
        let sender = {
            let json = json.clone();
            let path = path.clone();
            std::thread::spawn(move || {
                send_to_listener(&path, std::os::fd::AsFd::as_fd(&file), &json)
            })
        };
        let (conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .unwrap();
        let fds: Vec<RawFd> = msg
            .cmsgs()
            .unwrap()
            .filter_map(|c| match c {
                socket::ControlMessageOwned::ScmRights(f) => Some(f),
                _ => None,
            })
            .flatten()
            .collect();
        let n = msg.bytes;
        assert_eq!(fds.len(), 1);
        // SAFETY: the fd was just received and is owned by nobody else.
        drop(unsafe { OwnedFd::from_raw_fd(fds[0]) });
        assert_eq!(&buf[..n], &json[..]);
        sender.join().unwrap().unwrap();

        let e = send_to_listener(
            &dir.path().join("missing.sock"),
            std::os::fd::AsFd::as_fd(&listener),
            &json,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("missing.sock") && e.contains("connect"), "{e}");
    }

    /// Sends one fd with a one-byte payload, without allocating (child side).
    fn send_fd_raw(sock: RawFd, fd: RawFd) {
        #[repr(C)]
        union Cmsg {
            buf: [u8; 64],
            _align: libc::cmsghdr,
        }
        let mut space = Cmsg { buf: [0; 64] };
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        // SAFETY: msghdr is plain data; all-zero is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        // SAFETY: the union is 64 bytes, aligned for cmsghdr, and CMSG_SPACE
        // of one int (24 bytes on 64-bit) fits; CMSG_* only compute offsets
        // within that buffer.
        unsafe {
            msg.msg_control = space.buf.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
            libc::sendmsg(sock, &msg, 0);
        }
    }

    fn recv_fd(sock: RawFd) -> OwnedFd {
        let mut buf = [0u8; 1];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg =
            socket::recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::empty()).unwrap();
        for c in msg.cmsgs().unwrap() {
            if let socket::ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: the fd was just received and is owned by nobody else.
                return unsafe { OwnedFd::from_raw_fd(fds[0]) };
            }
        }
        panic!("no fd received");
    }
}
