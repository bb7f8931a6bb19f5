//! The engine's service API: what every front end (the `berth` CLI, the
//! CRI server, a later Docker-compatible API) calls, so none of them holds
//! lifecycle logic of its own. Requests are plain data in engine types;
//! answers are typed results and [`ApiError`]s whose [`ApiError::kind`] a
//! front end maps to its own codes (the CLI to exit codes, CRI to gRPC
//! codes). Nothing here parses a command line or prints.
//!
//! Shape (podman's `ContainerEngine` split, in our terms): one [`Engine`]
//! per store namespace, methods by concern:
//! - [`create`]: a container from a [`create::CreateRequest`] (image
//!   resolution and pull, env files, host flags, volumes, networks);
//! - [`run`]: start attached or detached, the exit after an attach, `--rm`;
//! - [`ops`]: start, stop, restart, kill, pause, rm (with anonymous
//!   volumes), wait, top, port, exec, cp, export, commit;
//! - [`ps`]: listing with docker's filters and status text;
//! - [`inspect`]: docker's inspect document of a container;
//! - [`logs`]: reading a container's log with since/until/tail, and
//!   following it.
//!
//! Safe to share: [`Engine`] is `Send + Sync`, holds no process-global
//! state, never changes the working directory, and does nothing that
//! assumes a short-lived process; what several processes share (the
//! metadata DB, a container's files) is guarded by flocks and redb
//! transactions, so the CLI and a daemon can act on one store at once.
//!
//! [`Engine`]: crate::container::Engine

pub mod create;
pub mod images;
pub mod inspect;
pub mod logs;
pub mod networks;
pub mod ops;
pub mod ps;
pub mod run;
pub mod system;
pub mod volumes;

use std::io;

use crate::container::{ContainerError, Status};
use crate::records::RecordError;
use crate::volumes::VolumeError;

/// What kind of failure an [`ApiError`] is, for front ends to map to their
/// own codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such container, image or volume.
    NotFound,
    /// A name already taken.
    AlreadyExists,
    /// Bad input in the request.
    InvalidArgument,
    /// The object is not in a state that allows this.
    FailedPrecondition,
    /// Anything else.
    Internal,
}

/// Why a service call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A container operation failed.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// A record lookup failed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The host flags were refused.
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    /// A volume operation failed.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// `--init` has no binary.
    #[error(transparent)]
    Init(#[from] crate::init::InitError),
    /// An image is not present and may not be pulled.
    #[error("image {0} is not present locally, and --pull=never forbids pulling it")]
    NoImage(String),
    /// An image operation failed.
    #[error("{context}: {source}")]
    Image {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: Box<berth_image::store::ImageError>,
    },
    /// A copy failed.
    #[error("{context}: {source}")]
    Files {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: crate::files::FilesError,
    },
    /// A commit failed.
    #[error("{context}: {source}")]
    Commit {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: Box<crate::commit::CommitError>,
    },
    /// The attach socket failed.
    #[error("{context}: {source}")]
    Attach {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: berth_monitor::attach::AttachError,
    },
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ApiError {
    let context = context.into();
    move |source| ApiError::Io { context, source }
}

impl ApiError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        use ErrorKind as K;
        let record = |r: &RecordError| match r {
            RecordError::NotFound(_) => K::NotFound,
            RecordError::NameInUse { .. } | RecordError::IdInUse(_) => K::AlreadyExists,
            RecordError::BadName(_) => K::InvalidArgument,
            RecordError::Ambiguous(..) => K::InvalidArgument,
            RecordError::Db(_) => K::Internal,
        };
        match self {
            ApiError::Invalid(_) | ApiError::Host(_) => K::InvalidArgument,
            ApiError::Record(r) | ApiError::Container(ContainerError::Record(r)) => record(r),
            ApiError::Container(ContainerError::State { .. })
            | ApiError::Container(ContainerError::Incomplete { .. }) => K::FailedPrecondition,
            ApiError::Container(_) => K::Internal,
            ApiError::Volume(VolumeError::NotFound(_)) => K::NotFound,
            ApiError::Volume(VolumeError::Exists(_)) => K::AlreadyExists,
            ApiError::Volume(VolumeError::InvalidName(_)) => K::InvalidArgument,
            ApiError::Volume(VolumeError::InUse(_)) => K::FailedPrecondition,
            ApiError::Volume(_) => K::Internal,
            ApiError::NoImage(_) => K::NotFound,
            ApiError::Image { source, .. }
                if matches!(**source, berth_image::store::ImageError::NotFound(_)) =>
            {
                K::NotFound
            }
            ApiError::Files {
                source: crate::files::FilesError::NotFound { .. },
                ..
            } => K::NotFound,
            ApiError::Files { .. } => K::InvalidArgument,
            _ => K::Internal,
        }
    }

    /// Whether a container was found running where it may not be (podman's
    /// `rm` exit code 2).
    pub fn is_running_conflict(&self) -> bool {
        matches!(
            self,
            ApiError::Container(ContainerError::State {
                state: Status::Running | Status::Paused | Status::Restarting,
                ..
            })
        )
    }

    /// docker's exit code when the container's command cannot be run: 127
    /// not found, 126 not executable.
    pub fn command_exit_code(&self) -> Option<u8> {
        match self {
            ApiError::Container(ContainerError::Command(c)) => Some(c.exit_code()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{Engine, EngineOptions};
    use crate::namespace::Namespace;
    use crate::records::ContainerRecord;
    use std::sync::Arc;

    #[test]
    fn engine_is_send_and_sync() {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<Engine>();
        shared::<ApiError>();
    }

    /// An engine over a fresh store in `root` (the native snapshotter, no
    /// host paths), in namespace `ns`.
    fn engine(root: &std::path::Path, ns: &str) -> Engine {
        let mut so = berth_image::store::StoreOptions::new(root);
        so.snapshotter = berth_image::store::SnapshotterKind::Native;
        let store = berth_image::store::ImageStore::open(so).unwrap();
        Engine::new(
            store,
            EngineOptions {
                root: root.to_path_buf(),
                run_dir: root.join("run"),
                runtime: "/nonexistent/runtime".into(),
                monitor: "/nonexistent/monitor".into(),
                network: crate::network::NetworkOptions {
                    config_dir: root.join("net.d"),
                    plugin_dirs: vec![],
                    ..Default::default()
                },
                namespace: Namespace::new(ns).unwrap(),
            },
        )
    }

    /// Two namespaces' engines, each shared by four threads that add
    /// records, list, look up, inspect, make volumes and remove, all at
    /// once: every thread sees exactly its namespace's objects, and no
    /// name is lost or doubled.
    #[test]
    fn one_engine_many_threads() {
        let t = tempfile::tempdir().unwrap();
        let a = Arc::new(engine(t.path(), "default"));
        let b = Arc::new(engine(t.path(), "k8s.io"));
        let root = t.path();
        std::thread::scope(|sc| {
            for (ns, e) in [("default", &a), ("k8s.io", &b)] {
                for i in 0..4 {
                    let e = Arc::clone(e);
                    sc.spawn(move || {
                        let name = format!("c{i}");
                        let id =
                            format!("{}{i}", if ns == "default" { "a" } else { "b" }.repeat(63));
                        e.records()
                            .create(&ContainerRecord {
                                id: id.clone(),
                                name: name.clone(),
                                namespace: String::new(),
                                image: "busybox".into(),
                                image_id: "sha256:abc".into(),
                                created: format!("2026-01-01T00:00:0{i}Z"),
                                command: vec!["sh".into()],
                                config: serde_json::json!({"logDriver": "json-file"}),
                            })
                            .unwrap();
                        let c = e.get(&name).unwrap();
                        assert_eq!(c.id(), id);
                        let doc = e.inspect_container(&c);
                        assert_eq!(doc["Namespace"], ns);
                        assert_eq!(doc["State"]["Status"], "created");
                        let listed = e
                            .ps(&ps::PsRequest {
                                all: true,
                                ..Default::default()
                            })
                            .unwrap();
                        assert!(listed.iter().all(|p| p.container.record.namespace == ns));
                        let (v, made) = e
                            .volumes()
                            .create(&format!("v{i}"), Default::default(), false, true)
                            .unwrap();
                        assert!(made && v.mountpoint.starts_with(root));
                    });
                }
            }
        });
        for (ns, e) in [("default", &a), ("k8s.io", &b)] {
            let names: Vec<String> = e
                .list()
                .unwrap()
                .iter()
                .map(|c| c.name().to_string())
                .collect();
            assert_eq!(names.len(), 4, "{ns}: {names:?}");
            assert_eq!(e.volumes().list().unwrap().len(), 4, "{ns}");
        }
        // Removed from several threads at once, each in its namespace.
        std::thread::scope(|sc| {
            for e in [&a, &b] {
                for c in e.list().unwrap() {
                    let e = Arc::clone(e);
                    sc.spawn(move || e.remove_container(&c, false, true).unwrap());
                }
            }
        });
        assert!(a.list_all().unwrap().is_empty());
    }

    #[test]
    fn kinds() {
        assert_eq!(
            ApiError::from(RecordError::NotFound("x".into())).kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            ApiError::from(ContainerError::Record(RecordError::NameInUse {
                name: "a".into(),
                id: "b".into()
            }))
            .kind(),
            ErrorKind::AlreadyExists
        );
        let st = ApiError::from(ContainerError::State {
            name: "a".into(),
            state: Status::Running,
            what: "x".into(),
        });
        assert_eq!(st.kind(), ErrorKind::FailedPrecondition);
        assert!(st.is_running_conflict());
        assert_eq!(
            ApiError::Invalid("bad".into()).kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(ApiError::NoImage("x".into()).kind(), ErrorKind::NotFound);
    }
}
