//! berth's per-container monitor (issue 5, in progress): one small process
//! per container that holds its stdio or pty, writes its log, serves its
//! attach socket, reaps it and records how it ended.
//! - [`logfile`]: docker's json-file and the CRI k8s-file formats, written
//!   with size rotation and read back across rotated files;
//! - [`run`]: create and start a container through a runc-compatible
//!   runtime with its output on pipes or a pty, log it, relay it to attach
//!   clients, reap it (as a child subreaper, woken by a pidfd), write its
//!   exit record (with the OOM flag) and run record, delete its runtime
//!   state, restart it per policy;
//! - [`attach`]: the attach socket's protocol, its server side, and the
//!   client relay the CLI uses.
//!
//! The `berth-monitor` binary runs [`run`] for one container.

pub mod attach;
pub mod logfile;
pub mod run;
