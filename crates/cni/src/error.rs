//! The crate's one error type. Every variant names the thing at fault: the
//! network, the plugin, the file.

use std::path::PathBuf;

/// An error from loading a network configuration or running its plugins.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// No configuration file in `dir` defines a network called `name`.
    #[error("CNI network {name:?} not found in {}", dir.display())]
    NetworkNotFound { name: String, dir: PathBuf },
    /// A configuration (or an argument such as a container ID) is invalid.
    #[error("invalid CNI configuration {what}: {reason}")]
    InvalidConfig { what: String, reason: String },
    /// The plugin binary is in none of the plugin directories.
    #[error("CNI plugin {plugin:?} not found in {}", fmt_dirs(dirs))]
    PluginNotFound { plugin: String, dirs: Vec<PathBuf> },
    /// The plugin exited non-zero; `msg` and `details` come from the spec's
    /// error JSON on its stdout, or from its output when that is not JSON.
    #[error(
        "CNI plugin {plugin:?} for network {network:?} failed: {msg}{} (code {code})",
        fmt_details(details)
    )]
    Plugin {
        plugin: String,
        network: String,
        code: u32,
        msg: String,
        details: String,
    },
    /// The plugin ran longer than the timeout; its process group was killed.
    #[error(
        "CNI plugin {plugin:?} for network {network:?} timed out after {secs} s and was killed"
    )]
    Timeout {
        plugin: String,
        network: String,
        secs: u64,
    },
    /// The plugin succeeded but printed something that is not a valid result.
    #[error("CNI plugin {plugin:?} returned a bad result: {reason}")]
    BadResult { plugin: String, reason: String },
    /// CHECK found no cached result of an ADD for this attachment.
    #[error("container {container_id:?} interface {ifname:?} is not attached to CNI network {network:?} (no cached result)")]
    NotAttached {
        network: String,
        container_id: String,
        ifname: String,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Several independent steps failed (GC, best-effort cleanup); all are kept.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Multiple(Vec<CniError>),
}

impl CniError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        CniError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        CniError::InvalidConfig {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

fn fmt_dirs(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "(no plugin directories)".to_string();
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_details(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(": {details}")
    }
}
