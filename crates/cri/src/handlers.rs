//! Runtime handlers and the features `Status` reports for each, learned once
//! at start from the runtime's own `features` document (runc 1.1+,
//! `berth-runtime`); a runtime without one is reported with none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::config::Handler;

/// What a handler can do, in CRI's terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// `rro` mounts: the runtime lists the option and the kernel is 5.12+.
    pub recursive_read_only_mounts: bool,
    /// User namespaces with idmapped mounts.
    pub user_namespaces: bool,
}

/// One handler as the daemon serves it.
#[derive(Debug, Clone)]
pub struct RuntimeHandler {
    /// The RuntimeClass handler name.
    pub name: String,
    /// The runtime binary.
    pub path: PathBuf,
    /// Its features.
    pub features: Features,
    /// Its `features` document, for verbose `Status`.
    pub document: Option<serde_json::Value>,
}

/// The kernel release's (major, minor), from `uname -r`.
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(['.', '-', '+']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// Features from a runtime's `features` document (the OCI
/// runtime-spec `features.md` shape) and the kernel release.
pub fn features_from(doc: &serde_json::Value, kernel_release: &str) -> Features {
    let has_rro = doc["mountOptions"]
        .as_array()
        .is_some_and(|a| a.iter().any(|o| o == "rro"));
    let kernel_ok = parse_release(kernel_release).is_some_and(|v| v >= (5, 12));
    let userns = doc["linux"]["namespaces"]
        .as_array()
        .is_some_and(|a| a.iter().any(|n| n == "user"));
    let idmap =
        doc["linux"]["mountExtensions"]["idmap"]["enabled"] == serde_json::Value::Bool(true);
    Features {
        recursive_read_only_mounts: has_rro && kernel_ok,
        user_namespaces: userns && idmap,
    }
}

/// Runs `PATH features` (killed after 5 s) and parses its output.
fn features_document(path: &Path) -> Option<serde_json::Value> {
    use rustix::event::{poll, PollFd, PollFlags};
    use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};

    let mut child = Command::new(path)
        .arg("features")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut out = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut buf);
        buf
    });
    // The child is not reaped before the wait below, so its pidfd (and PID)
    // cannot name another process meanwhile.
    let pidfd =
        Pid::from_raw(child.id() as i32).and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok());
    if let Some(fd) = &pidfd {
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        let timeout = rustix::event::Timespec {
            tv_sec: 5,
            tv_nsec: 0,
        };
        if matches!(poll(&mut fds, Some(&timeout)), Ok(0)) {
            let _ = pidfd_send_signal(fd, Signal::KILL);
        }
    }
    let status = child.wait().ok();
    let buf = reader.join().ok()?;
    if !status.is_some_and(|s| s.success()) {
        return None;
    }
    serde_json::from_slice(&buf).ok()
}

/// Probes every handler's features.
pub fn probe(handlers: &BTreeMap<String, Handler>) -> Vec<RuntimeHandler> {
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    handlers
        .iter()
        .map(|(name, h)| {
            let document = features_document(&h.path);
            let features = document
                .as_ref()
                .map(|d| features_from(d, &release))
                .unwrap_or_default();
            RuntimeHandler {
                name: name.clone(),
                path: h.path.clone(),
                features,
                document,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rro_needs_the_option_and_kernel_5_12() {
        let doc = json!({"mountOptions": ["ro", "rro"]});
        assert!(features_from(&doc, "6.1.0-13-amd64").recursive_read_only_mounts);
        assert!(features_from(&doc, "5.12.0").recursive_read_only_mounts);
        assert!(!features_from(&doc, "5.11.22").recursive_read_only_mounts);
        assert!(
            !features_from(&json!({"mountOptions": ["ro"]}), "6.18.0").recursive_read_only_mounts
        );
        assert!(!features_from(&doc, "garbage").recursive_read_only_mounts);
    }

    #[test]
    fn user_namespaces_need_idmap_mounts() {
        let with = json!({"linux": {"namespaces": ["user", "pid"], "mountExtensions": {"idmap": {"enabled": true}}}});
        assert!(features_from(&with, "6.1").user_namespaces);
        let without = json!({"linux": {"namespaces": ["user"]}});
        assert!(!features_from(&without, "6.1").user_namespaces);
        assert_eq!(features_from(&json!({}), "6.1"), Features::default());
    }
}
