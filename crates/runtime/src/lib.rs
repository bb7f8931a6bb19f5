//! berth's OCI runtime: a bundle (`config.json` plus a rootfs) in, an isolated
//! process out. It knows nothing of images, networks or daemons.
//!
//! The parent side ([`container`]) validates the config, makes the cgroup, and
//! `clone`s the container's init with its namespaces in one step. The child side
//! ([`init`]) sets up the rootfs, the process attributes and the security
//! settings, then waits for `start` and `execve`s the user process. No re-exec of
//! our own binary, no async runtime.

pub mod capabilities;
pub mod channel;
pub mod console;
pub mod container;
pub mod cpus;
pub mod error;
pub mod features;
pub mod hooks;
pub mod init;
pub mod lsm;
pub mod mount;
pub mod process;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod sys;

pub use container::{CreateOpts, ExecOpts, Runtime};
pub use error::{Error, ErrorKind, Result};
