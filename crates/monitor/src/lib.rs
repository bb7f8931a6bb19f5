//! berth's per-container monitor (issue 5, in progress). The monitor will be
//! one small process per container that holds its stdio, writes its log,
//! reaps it and records how it ended. So far this crate has the log files:
//! - [`logfile`]: docker's json-file and the CRI k8s-file formats, written
//!   with size rotation and read back across rotated files;
//! - [`run`]: create and start a container through a runc-compatible runtime
//!   with its output on pipes, log it, reap it (as a child subreaper, woken
//!   by a pidfd), write its exit record, delete its runtime state.
//!
//! The `berth-monitor` binary runs [`run`] for one container.

pub mod attach;
pub mod logfile;
pub mod run;
