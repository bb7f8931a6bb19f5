//! berth's per-container monitor (issue 5, in progress). The monitor will be
//! one small process per container that holds its stdio, writes its log,
//! reaps it and records how it ended. So far this crate has the log files:
//! - [`logfile`]: docker's json-file and the CRI k8s-file formats, written
//!   with size rotation and read back across rotated files.

pub mod logfile;
