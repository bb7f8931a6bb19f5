//! `berth daemon`: CRI v1 RuntimeService and ImageService on a unix socket.
//!
//! - The socket's parent dir is made (or narrowed to) 0700 and the socket is
//!   0660, owned by the daemon's user (root). A stale socket left by a
//!   killed daemon is replaced; one a live daemon answers on is not.
//! - SIGTERM or SIGINT stops accepting connections, lets the calls in flight
//!   finish, removes the socket and returns.
//! - Calls run concurrently; the image store's own locking (flock per
//!   operation, ingest locks) keeps them and the CLI apart, and pulls of one
//!   name are serialised here so the second finds the first's work.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_image::registry::RegistryOptions;
use berth_image::store::{ImageError, ImageStore, StoreOptions};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tracing::{info, warn};

use crate::config::{DaemonConfig, Handler};
use crate::handlers::{self, RuntimeHandler};
use crate::proto;
use crate::proto::image_service_server::ImageServiceServer;
use crate::proto::runtime_service_server::RuntimeServiceServer;

/// Largest message the server takes or sends (kubelet's own limit).
const MAX_MESSAGE: usize = 16 << 20;

/// Errors of the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The image store cannot be opened.
    #[error("opening the image store in {0}: {1}")]
    Store(PathBuf, #[source] ImageError),
    /// The socket cannot be made.
    #[error("socket {0}: {1}")]
    Socket(PathBuf, String),
    /// The async runtime or the server failed.
    #[error("serving on {0}: {1}")]
    Serve(PathBuf, String),
}

/// Everything the daemon needs, resolved by the command line.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The merged configuration (file, then flags).
    pub config: DaemonConfig,
    /// The file it came from (for messages).
    pub config_path: PathBuf,
    /// The image store's options (root from the config).
    pub store: StoreOptions,
    /// The runtime handlers in effect.
    pub handlers: std::collections::BTreeMap<String, Handler>,
}

/// The daemon's shared state.
#[derive(Debug)]
pub struct State {
    pub(crate) config: DaemonConfig,
    pub(crate) config_path: PathBuf,
    pub(crate) store: ImageStore,
    pub(crate) registry: RegistryOptions,
    pub(crate) handlers: Vec<RuntimeHandler>,
    pub(crate) pod_cidr: Mutex<String>,
    pulls: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl State {
    /// The lock serialising pulls of `name`.
    pub(crate) fn pull_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.pulls
            .lock()
            .expect("pull locks")
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Drops the entry of `name` when no other pull holds or waits on it.
    pub(crate) fn release_pull_lock(&self, name: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut m = self.pulls.lock().expect("pull locks");
        // Ours and the map's.
        if Arc::strong_count(&lock) == 2 {
            m.remove(name);
        }
    }

    /// The snapshotter the store uses.
    pub(crate) fn snapshotter_name(&self) -> String {
        std::fs::read_to_string(self.store.root().join("snapshotter"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// The `Status` answer: RuntimeReady, NetworkReady (a CNI config list in
    /// the conf dir), the handlers and, verbose, the config.
    pub(crate) fn status(&self, verbose: bool) -> proto::StatusResponse {
        let default = self
            .handlers
            .iter()
            .find(|h| h.name == self.config.default_runtime);
        let runtime_ready = match default {
            Some(h) => match std::fs::metadata(&h.path) {
                Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {
                    proto::RuntimeCondition {
                        r#type: "RuntimeReady".into(),
                        status: true,
                        reason: String::new(),
                        message: String::new(),
                    }
                }
                Ok(_) => proto::RuntimeCondition {
                    r#type: "RuntimeReady".into(),
                    status: false,
                    reason: "RuntimeBinaryNotExecutable".into(),
                    message: format!(
                        "{} (handler {}) is not an executable file",
                        h.path.display(),
                        h.name
                    ),
                },
                Err(e) => proto::RuntimeCondition {
                    r#type: "RuntimeReady".into(),
                    status: false,
                    reason: "RuntimeBinaryMissing".into(),
                    message: format!("{} (handler {}): {e}", h.path.display(), h.name),
                },
            },
            None => proto::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: false,
                reason: "NoDefaultHandler".into(),
                message: format!("no handler {:?}", self.config.default_runtime),
            },
        };
        let dir = &self.config.cni_conf_dir;
        let (network_ready, network) = match berth_cni::config::load_dir(dir) {
            Ok(lists) if !lists.is_empty() => (
                proto::RuntimeCondition {
                    r#type: "NetworkReady".into(),
                    status: true,
                    reason: String::new(),
                    message: String::new(),
                },
                Some(lists[0].name.clone()),
            ),
            Ok(_) => (
                proto::RuntimeCondition {
                    r#type: "NetworkReady".into(),
                    status: false,
                    reason: "NetworkPluginNotReady".into(),
                    message: format!(
                        "Network plugin returns error: no CNI config list in {}",
                        dir.display()
                    ),
                },
                None,
            ),
            Err(e) => (
                proto::RuntimeCondition {
                    r#type: "NetworkReady".into(),
                    status: false,
                    reason: "NetworkPluginNotReady".into(),
                    message: format!("Network plugin returns error: {}", crate::errors::chain(&e)),
                },
                None,
            ),
        };
        let feat = |h: &RuntimeHandler| proto::RuntimeHandlerFeatures {
            recursive_read_only_mounts: h.features.recursive_read_only_mounts,
            user_namespaces: h.features.user_namespaces,
        };
        let mut runtime_handlers = Vec::new();
        if let Some(h) = default {
            runtime_handlers.push(proto::RuntimeHandler {
                name: String::new(),
                features: Some(feat(h)),
            });
        }
        for h in &self.handlers {
            runtime_handlers.push(proto::RuntimeHandler {
                name: h.name.clone(),
                features: Some(feat(h)),
            });
        }
        let mut info = HashMap::new();
        if verbose {
            let cfg = serde_json::to_value(&self.config).unwrap_or_default();
            info.insert("config".to_string(), cfg.to_string());
            info.insert(
                "configFile".to_string(),
                serde_json::Value::from(self.config_path.to_string_lossy().into_owned())
                    .to_string(),
            );
            // An object keyed by name (crictl shows only objects as JSON).
            let hs: serde_json::Map<String, serde_json::Value> = self
                .handlers
                .iter()
                .map(|h| {
                    let v = serde_json::json!({
                        "path": h.path,
                        "default": h.name == self.config.default_runtime,
                        "features": {
                            "recursiveReadOnlyMounts": h.features.recursive_read_only_mounts,
                            "userNamespaces": h.features.user_namespaces,
                        },
                        "runtimeFeatures": h.document,
                    });
                    (h.name.clone(), v)
                })
                .collect();
            info.insert(
                "runtimeHandlers".to_string(),
                serde_json::Value::Object(hs).to_string(),
            );
            info.insert(
                "cni".to_string(),
                serde_json::json!({
                    "confDir": self.config.cni_conf_dir,
                    "binDirs": self.config.cni_bin_dirs,
                    "network": network,
                })
                .to_string(),
            );
            info.insert(
                "podCIDR".to_string(),
                serde_json::Value::from(self.pod_cidr.lock().expect("pod CIDR lock").clone())
                    .to_string(),
            );
            info.insert(
                "snapshotter".to_string(),
                serde_json::Value::from(self.snapshotter_name()).to_string(),
            );
        }
        proto::StatusResponse {
            status: Some(proto::RuntimeStatus {
                conditions: vec![runtime_ready, network_ready],
            }),
            info,
            runtime_handlers,
            features: Some(proto::RuntimeFeatures {
                supplemental_groups_policy: false,
                user_namespaces_host_network: false,
            }),
        }
    }
}

/// Makes the socket's dir and binds the socket (0660), replacing a stale
/// socket file, refusing a live one or any other file.
fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let err = |m: String| ServerError::Socket(path.to_path_buf(), m);
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| err("has no parent directory".into()))?;
    berth_image::private::private_dir(parent, 0o700)
        .map_err(|e| err(format!("making {}: {e}", parent.display())))?;
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(err("another daemon is serving on it".into()));
            }
            std::fs::remove_file(path)
                .map_err(|e| err(format!("removing the stale socket: {e}")))?;
            info!(socket = %path.display(), "removed a stale socket");
        }
        Ok(_) => return Err(err("exists and is not a socket".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e.to_string())),
    }
    let l = UnixListener::bind(path).map_err(|e| err(format!("bind: {e}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| err(format!("chmod 0660: {e}")))?;
    Ok(l)
}

/// Tells a service manager (systemd's `Type=notify`, or a test) how the
/// daemon is doing, when `NOTIFY_SOCKET` names a datagram socket.
fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let sent = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
        }
        None => sock.send_to(state.as_bytes(), &path),
    };
    if let Err(e) = sent {
        warn!(error = %e, "NOTIFY_SOCKET: cannot send {state:?}");
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed by the caller
/// before the daemon says it is ready, so no early signal kills it.
async fn shutdown_signal(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
) {
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    info!(
        signal = which,
        "shutting down: no new connections, finishing calls in flight"
    );
    sd_notify("STOPPING=1");
}

/// Runs the daemon until SIGTERM/SIGINT. Blocks.
pub fn run(opts: DaemonOptions) -> Result<(), ServerError> {
    let socket = opts.config.listen.clone();
    let mut store_opts = opts.store.clone();
    store_opts.root = opts.config.root.clone();
    let registry = store_opts.registry.clone();
    let store = ImageStore::open(store_opts)
        .map_err(|e| ServerError::Store(opts.config.root.clone(), e))?;
    let handlers = handlers::probe(&opts.handlers);
    for h in &handlers {
        info!(handler = %h.name, path = %h.path.display(), rro = h.features.recursive_read_only_mounts, userns = h.features.user_namespaces, "runtime handler");
    }
    let state = Arc::new(State {
        config: opts.config,
        config_path: opts.config_path,
        store,
        registry,
        handlers,
        pod_cidr: Mutex::new(String::new()),
        pulls: Mutex::new(HashMap::new()),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("berth-cri")
        .build()
        .map_err(|e| {
            ServerError::Serve(socket.clone(), format!("starting the async runtime: {e}"))
        })?;
    rt.block_on(serve(state, socket))
}

async fn serve(state: Arc<State>, socket: PathBuf) -> Result<(), ServerError> {
    use tokio::signal::unix::{signal, SignalKind};
    let sig = |k| {
        signal(k).map_err(|e| {
            ServerError::Serve(socket.clone(), format!("installing signal handlers: {e}"))
        })
    };
    let (term, int) = (sig(SignalKind::terminate())?, sig(SignalKind::interrupt())?);
    let listener = bind(&socket)?;
    let ino = std::fs::metadata(&socket).map(|m| m.ino()).ok();
    let runtime = RuntimeServiceServer::new(crate::runtime::RuntimeSvc {
        state: state.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE)
    .max_encoding_message_size(MAX_MESSAGE);
    let images = ImageServiceServer::new(crate::images::ImageSvc { state })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    info!(socket = %socket.display(), "serving CRI v1");
    sd_notify(&format!("READY=1\nMAINPID={}", std::process::id()));
    let res = tonic::transport::Server::builder()
        .add_service(runtime)
        .add_service(images)
        .serve_with_incoming_shutdown(
            UnixListenerStream::new(listener),
            shutdown_signal(term, int),
        )
        .await;
    // Remove the socket only if it is still ours.
    if let Ok(md) = std::fs::symlink_metadata(&socket) {
        if Some(md.ino()) == ino {
            let _ = std::fs::remove_file(&socket);
        }
    }
    res.map_err(|e| ServerError::Serve(socket.clone(), crate::errors::chain(&e)))?;
    info!("stopped");
    Ok(())
}
