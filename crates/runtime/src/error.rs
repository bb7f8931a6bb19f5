//! The runtime's error type. Each variant's message names the thing at fault.

use std::path::PathBuf;

/// Broad classes that callers (the CLI, the engine, CRI) map to exit codes or status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The container, file or process does not exist.
    NotFound,
    /// A container with that ID exists already.
    AlreadyExists,
    /// The caller gave a value that cannot be used.
    InvalidArgument,
    /// The container is in the wrong state for the operation.
    FailedPrecondition,
    /// Anything else: a kernel call failed, a hook failed, ...
    Internal,
}

/// Errors returned by the runtime library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The container ID is not usable.
    #[error(
        "invalid container id {0:?}: it must be non-empty and use only letters, digits and _ + - ."
    )]
    InvalidId(String),
    /// A container with this ID already exists under the runtime root.
    #[error("container with id {0:?} already exists")]
    AlreadyExists(String),
    /// No container with this ID exists under the runtime root.
    #[error("container {0:?} does not exist")]
    NotFound(String),
    /// The bundle's config.json is malformed, or holds a value the runtime refuses.
    #[error("invalid config {path}: {msg}")]
    InvalidConfig {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// A value given on the command line or in a process.json is unusable.
    #[error("{0}")]
    InvalidArgument(String),
    /// The container is not in a state that allows the operation.
    #[error("container {id:?} is {status}: {msg}")]
    WrongState {
        /// Container ID.
        id: String,
        /// Its current status.
        status: String,
        /// What could not be done.
        msg: String,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A kernel call failed.
    #[error("{op}: {source}")]
    Sys {
        /// What was being done.
        op: String,
        /// The errno.
        source: nix::Error,
    },
    /// The container's init process reported a failure during setup.
    #[error("{0}")]
    Init(String),
    /// A hook failed or timed out.
    #[error("{0}")]
    Hook(String),
    /// A cgroup operation failed.
    #[error(transparent)]
    Cgroup(#[from] berth_cgroups::Error),
    /// A seccomp profile could not be compiled or loaded.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// A capability set could not be used.
    #[error(transparent)]
    Caps(#[from] crate::capabilities::CapsError),
    /// The parent and child disagreed on the sync channel.
    #[error("sync with container process: {0}")]
    Sync(String),
    /// The state file of a container could not be read or written.
    #[error("state of container {id:?}: {msg}")]
    State {
        /// Container ID.
        id: String,
        /// What went wrong.
        msg: String,
    },
    /// The requested feature is not supported by this runtime.
    #[error("{0} is not supported")]
    Unsupported(String),
}

impl Error {
    /// The broad class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Error::InvalidId(_)
            | Error::InvalidConfig { .. }
            | Error::InvalidArgument(_)
            | Error::Unsupported(_) => ErrorKind::InvalidArgument,
            Error::WrongState { .. } => ErrorKind::FailedPrecondition,
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            _ => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(op: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            op: op.into(),
            source,
        }
    }
}

/// Result alias for the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;
