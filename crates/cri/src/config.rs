//! The daemon's configuration: a TOML file (default
//! [`DEFAULT_CONFIG_PATH`]) whose every key has a default, so a missing
//! default file is an empty one. Keys and defaults are listed in
//! `crates/cri/README.md`; unknown keys are refused, and every error names
//! the file and the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the config is read from when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/daemon.toml";
/// Where the CRI socket is made when neither `--listen` nor `listen` says.
pub const DEFAULT_SOCKET: &str = "/run/berth/berth.sock";
/// The name of the default runtime handler.
pub const DEFAULT_HANDLER: &str = "berth-runtime";

/// Errors reading the config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("daemon config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key with a bad value, an unknown key, or bad TOML.
    #[error("daemon config {path}: key `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key at fault (dotted path), or `.` for the file itself.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The cgroup driver. Only cgroupfs is implemented: berth places cgroups
/// itself and has no systemd integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    /// Paths under the cgroup mounts, as kubelet's `cgroupfs` driver.
    Cgroupfs,
}

/// One runtime handler (a Kubernetes RuntimeClass `handler`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Handler {
    /// A runc-compatible runtime binary.
    pub path: PathBuf,
}

/// The daemon's configuration, every field defaulted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// The CRI socket.
    pub listen: PathBuf,
    /// Images and containers (the CLI's `--root`).
    pub root: PathBuf,
    /// Runtime state (the CLI's `--run-dir`).
    pub run_dir: PathBuf,
    /// Where CNI config lists are; the first by name is the pod network.
    pub cni_conf_dir: PathBuf,
    /// Where CNI plugins are.
    pub cni_bin_dirs: Vec<PathBuf>,
    /// The cgroup driver reported to kubelet.
    pub cgroup_driver: CgroupDriver,
    /// The handler used when a pod names none.
    pub default_runtime: String,
    /// Handlers by name. The defaults come from [`default_handlers`]; a
    /// table in the file adds to them or replaces one of the same name.
    pub runtimes: BTreeMap<String, Handler>,
    /// Where the streaming server (exec, attach, port-forward) will listen.
    pub streaming_address: SocketAddr,
    /// Registries reached over plain HTTP (loopback ones always may be).
    pub insecure_registries: Vec<String>,
    /// The auth file (docker `config.json` format) for pulls without
    /// credentials in the request; empty: the CLI's default.
    pub auth_file: Option<PathBuf>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            listen: PathBuf::from(DEFAULT_SOCKET),
            root: PathBuf::from("/var/lib/berth"),
            run_dir: PathBuf::from("/run/berth"),
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            cni_bin_dirs: vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")],
            cgroup_driver: CgroupDriver::Cgroupfs,
            default_runtime: DEFAULT_HANDLER.to_string(),
            runtimes: BTreeMap::new(),
            streaming_address: SocketAddr::from(([127, 0, 0, 1], 0)),
            insecure_registries: Vec::new(),
            auth_file: None,
        }
    }
}

/// The handlers there are without a config: `berth-runtime` (found as the
/// CLI finds it), and `runc`, `crun` and `runsc` each only where its binary
/// is on `PATH`.
pub fn default_handlers(
    berth_runtime: PathBuf,
    path_var: Option<&std::ffi::OsStr>,
) -> BTreeMap<String, Handler> {
    let mut m = BTreeMap::new();
    m.insert(
        DEFAULT_HANDLER.to_string(),
        Handler {
            path: berth_runtime,
        },
    );
    let dirs: Vec<PathBuf> = path_var
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    for name in ["runc", "crun", "runsc"] {
        if let Some(p) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            m.insert(name.to_string(), Handler { path: p });
        }
    }
    m
}

impl DaemonConfig {
    /// Parses `text` (the contents of `path`).
    pub fn parse(path: &Path, text: &str) -> Result<DaemonConfig, ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        let de = toml::Deserializer::new(text);
        let cfg: DaemonConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let mut message = inner.message().to_string();
            if let Some(span) = inner.span() {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                message = format!("{message} (line {line})");
            }
            invalid(key, message)
        })?;
        if cfg.default_runtime.is_empty() {
            return Err(invalid(
                "default_runtime".into(),
                "must name a handler".into(),
            ));
        }
        for (name, h) in &cfg.runtimes {
            if name.is_empty() {
                return Err(invalid("runtimes".into(), "a handler needs a name".into()));
            }
            if !h.path.is_absolute() {
                return Err(invalid(
                    format!("runtimes.{name}.path"),
                    format!("{} is not an absolute path", h.path.display()),
                ));
            }
        }
        for (key, p) in [
            ("listen", &cfg.listen),
            ("root", &cfg.root),
            ("run_dir", &cfg.run_dir),
            ("cni_conf_dir", &cfg.cni_conf_dir),
        ] {
            if !p.is_absolute() {
                return Err(invalid(
                    key.into(),
                    format!("{} is not an absolute path", p.display()),
                ));
            }
        }
        Ok(cfg)
    }

    /// Reads the config at `path`. A missing file is the defaults only when
    /// it is the default path (`explicit` false); a file named on the
    /// command line must exist.
    pub fn load(path: &Path, explicit: bool) -> Result<DaemonConfig, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(DaemonConfig::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The handlers in effect: the defaults overlaid with the file's, and a
    /// check that the default one exists.
    pub fn handlers(
        &self,
        defaults: BTreeMap<String, Handler>,
        path: &Path,
    ) -> Result<BTreeMap<String, Handler>, ConfigError> {
        let mut m = defaults;
        m.extend(self.runtimes.clone());
        if !m.contains_key(&self.default_runtime) {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                key: "default_runtime".into(),
                message: format!(
                    "no handler {:?} (there are: {})",
                    self.default_runtime,
                    m.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("/etc/berth/daemon.toml")
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(
            DaemonConfig::parse(p(), "").unwrap(),
            DaemonConfig::default()
        );
        let d = DaemonConfig::default();
        assert_eq!(d.listen, Path::new("/run/berth/berth.sock"));
        assert_eq!(d.cni_conf_dir, Path::new("/etc/cni/net.d"));
        assert_eq!(d.cgroup_driver, CgroupDriver::Cgroupfs);
        assert_eq!(d.default_runtime, "berth-runtime");
    }

    #[test]
    fn every_key_parses() {
        let c = DaemonConfig::parse(
            p(),
            r#"
listen = "/tmp/x.sock"
root = "/srv/berth"
run_dir = "/run/b2"
cni_conf_dir = "/etc/cni/other"
cni_bin_dirs = ["/opt/cni/bin"]
cgroup_driver = "cgroupfs"
default_runtime = "runc"
streaming_address = "127.0.0.1:10010"
insecure_registries = ["reg.local:5000"]
auth_file = "/etc/berth/auth.json"
[runtimes.runc]
path = "/usr/sbin/runc"
"#,
        )
        .unwrap();
        assert_eq!(c.root, Path::new("/srv/berth"));
        assert_eq!(c.runtimes["runc"].path, Path::new("/usr/sbin/runc"));
        assert_eq!(c.streaming_address.port(), 10010);
        assert_eq!(c.default_runtime, "runc");
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let e = DaemonConfig::parse(p(), "root = 5\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/berth/daemon.toml") && e.contains("`root`"),
            "{e}"
        );
        let e = DaemonConfig::parse(p(), "cgroup_driver = \"systemd\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`cgroup_driver`") && e.contains("systemd"),
            "{e}"
        );
        let e = DaemonConfig::parse(p(), "[runtimes.x]\npath = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`runtimes.x.path`"), "{e}");
        let e = DaemonConfig::parse(p(), "[runtimes.x]\npath = \"rel/bin\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`runtimes.x.path`") && e.contains("absolute"),
            "{e}"
        );
        let e = DaemonConfig::parse(p(), "colour = \"red\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
        let e = DaemonConfig::parse(p(), "streaming_address = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`streaming_address`"), "{e}");
        let e = DaemonConfig::parse(p(), "root = \n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/berth/daemon.toml") && e.contains("line 1"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_default_file_is_fine_a_missing_named_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("none.toml");
        assert_eq!(
            DaemonConfig::load(&f, false).unwrap(),
            DaemonConfig::default()
        );
        let e = DaemonConfig::load(&f, true).unwrap_err().to_string();
        assert!(e.contains("none.toml"), "{e}");
    }

    #[test]
    fn handlers_overlay_the_defaults_and_need_the_default_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("runc"), "").unwrap();
        let defaults = default_handlers(
            PathBuf::from("/x/berth-runtime"),
            Some(dir.path().as_os_str()),
        );
        assert_eq!(
            defaults.keys().collect::<Vec<_>>(),
            ["berth-runtime", "runc"],
            "crun and runsc are absent from that PATH"
        );
        let c = DaemonConfig::parse(p(), "[runtimes.fast]\npath = \"/opt/fast\"\n").unwrap();
        let h = c.handlers(defaults.clone(), p()).unwrap();
        assert_eq!(h.len(), 3);
        let c = DaemonConfig::parse(p(), "default_runtime = \"gone\"\n").unwrap();
        let e = c.handlers(defaults, p()).unwrap_err().to_string();
        assert!(e.contains("`default_runtime`") && e.contains("gone"), "{e}");
    }
}
