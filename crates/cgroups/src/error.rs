//! The one error type of this crate. Every variant names the file, controller
//! or value at fault, so the message alone tells an operator what went wrong.

use std::io;
use std::path::PathBuf;

/// Errors from cgroup management. The doc comment of each variant is its message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The systemd cgroup driver was requested.
    #[error("the systemd cgroup driver is not supported yet; omit --systemd-cgroup")]
    SystemdUnsupported,

    /// The host's cgroup layout could not be understood.
    #[error("detecting the cgroup layout: {0}")]
    Detect(String),

    /// A value in the resources failed validation before anything was written.
    #[error("invalid {file} value {value}: {reason}")]
    Invalid {
        /// the cgroup file (or spec field) the value is meant for
        file: String,
        /// the offending value as given
        value: String,
        /// why it is rejected
        reason: String,
    },

    /// A limit was requested for a controller that this host does not provide.
    #[error("cannot set {what}: the {controller} controller is not available on this host")]
    ControllerMissing {
        /// the controller, e.g. "net_cls"
        controller: String,
        /// the requested setting, e.g. "network.classID"
        what: String,
    },

    /// A setting needs a cgroup file that this kernel or I/O scheduler does not provide.
    #[error("cannot set {what}: {} does not exist on this host", path.display())]
    Unsupported {
        /// the file that would be written
        path: PathBuf,
        /// the requested setting
        what: String,
    },

    /// Writing a cgroup file failed.
    #[error("writing {value:?} to {}: {source}", path.display())]
    Write {
        /// the file
        path: PathBuf,
        /// the value written
        value: String,
        /// the kernel's answer
        #[source]
        source: io::Error,
    },

    /// Reading a cgroup file failed.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// the file
        path: PathBuf,
        /// the kernel's answer
        #[source]
        source: io::Error,
    },

    /// A cgroup file held something we could not parse.
    #[error("parsing {}: {reason}", path.display())]
    Parse {
        /// the file
        path: PathBuf,
        /// what was wrong
        reason: String,
    },

    /// Creating a cgroup directory failed.
    #[error("creating cgroup {}: {source}", path.display())]
    Create {
        /// the directory
        path: PathBuf,
        /// the kernel's answer
        #[source]
        source: io::Error,
    },

    /// Removing a cgroup directory failed.
    #[error("removing cgroup {}: {source}", path.display())]
    Remove {
        /// the directory
        path: PathBuf,
        /// the kernel's answer
        #[source]
        source: io::Error,
    },

    /// `memory.checkBeforeUpdate` refused a limit below the current usage.
    #[error("refusing memory limit {limit} for {}: below the current usage {usage} (checkBeforeUpdate)", path.display())]
    BelowUsage {
        /// the cgroup directory
        path: PathBuf,
        /// the requested limit in bytes
        limit: i64,
        /// the current usage in bytes
        usage: u64,
    },

    /// Freezing or thawing did not settle in time.
    #[error("{} did not become {want} within {waited_ms} ms (last state {last})", path.display())]
    FreezeTimeout {
        /// the state file
        path: PathBuf,
        /// the state we waited for
        want: String,
        /// the last state read
        last: String,
        /// how long we waited
        waited_ms: u64,
    },

    /// Sending a signal to a process of the container failed.
    #[error("sending {signal} to pid {pid}: {source}")]
    Signal {
        /// the signal
        signal: String,
        /// the process
        pid: i32,
        /// the kernel's answer
        #[source]
        source: nix::Error,
    },

    /// A bpf(2) call for the v2 device filter failed.
    #[error("bpf {op} for {}: {source}{}", path.display(), if log.is_empty() { String::new() } else { format!("; verifier log: {log}") })]
    Bpf {
        /// the bpf command, e.g. "BPF_PROG_LOAD"
        op: &'static str,
        /// the cgroup directory
        path: PathBuf,
        /// the kernel's answer
        #[source]
        source: io::Error,
        /// the verifier log, if any
        log: String,
    },

    /// Saved cgroup state could not be used.
    #[error("invalid saved cgroup state: {0}")]
    State(String),
}

/// The few kinds callers map errors to (CLI exit codes, gRPC codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Something does not exist.
    NotFound,
    /// The request itself is wrong.
    InvalidArgument,
    /// The request is fine but the host or cgroup state does not allow it.
    FailedPrecondition,
    /// The host lacks a feature.
    Unavailable,
    /// Any other failure of the kernel.
    Internal,
}

impl Error {
    /// The kind of this error, for mapping at API boundaries.
    pub fn kind(&self) -> ErrorKind {
        let io_kind = |e: &io::Error| match e.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::InvalidInput => ErrorKind::InvalidArgument,
            io::ErrorKind::PermissionDenied => ErrorKind::FailedPrecondition,
            _ => ErrorKind::Internal,
        };
        match self {
            Error::SystemdUnsupported
            | Error::ControllerMissing { .. }
            | Error::Unsupported { .. } => ErrorKind::Unavailable,
            Error::Detect(_) => ErrorKind::Unavailable,
            Error::Invalid { .. } | Error::State(_) => ErrorKind::InvalidArgument,
            Error::BelowUsage { .. } | Error::FreezeTimeout { .. } => ErrorKind::FailedPrecondition,
            Error::Write { source, .. }
            | Error::Read { source, .. }
            | Error::Create { source, .. }
            | Error::Remove { source, .. }
            | Error::Bpf { source, .. } => io_kind(source),
            Error::Parse { .. } => ErrorKind::Internal,
            Error::Signal { source, .. } => {
                if *source == nix::Error::ESRCH {
                    ErrorKind::NotFound
                } else {
                    ErrorKind::Internal
                }
            }
        }
    }

    pub(crate) fn invalid(
        file: impl Into<String>,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Error {
        Error::Invalid {
            file: file.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn missing(controller: &str, what: impl Into<String>) -> Error {
        Error::ControllerMissing {
            controller: controller.to_string(),
            what: what.into(),
        }
    }
}
