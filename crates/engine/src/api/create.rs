//! A container from a request: the image (looked up, pulled as the policy
//! says), the environment (files and variables), the host flags (mounts,
//! volumes, resources, devices, networks, ports, security options), the
//! log, restart and stop settings, all checked before anything is made.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_image::platform::Platform;
use berth_image::store::{ImageError, LocalImage, PullProgress};
use berth_monitor::run::RestartPolicy;

use super::{io_err, ApiError};
use crate::bundle::BundleOptions;
use crate::container::{Container, ContainerConfig, CreateOptions, Engine};
use crate::host::{HostConfig, HostFlags};
use crate::process::ProcessFlags;
use crate::spec::SecurityFlags;

/// When to pull the image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Only when it is not present.
    #[default]
    Missing,
    /// Every time.
    Always,
    /// Never: a missing image is an error.
    Never,
}

impl std::str::FromStr for PullPolicy {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<PullPolicy, ApiError> {
        match s {
            "missing" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            other => Err(ApiError::Invalid(format!(
                "invalid --pull {other:?}: use missing, always or never"
            ))),
        }
    }
}

/// Everything a container is made from, as docker's `create` flags say it.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// The image as the user named it.
    pub image: String,
    /// The command and its arguments (empty: the image's).
    pub command: Vec<String>,
    /// The name (generated when None).
    pub name: Option<String>,
    /// Keep stdin open.
    pub interactive: bool,
    /// A terminal.
    pub tty: bool,
    /// Remove the container when it exits.
    pub auto_remove: bool,
    /// Replace the image's entrypoint ("" clears it).
    pub entrypoint: Option<String>,
    /// Variables: `KEY=VALUE`, or `KEY` looked up in `client_env`.
    pub env: Vec<String>,
    /// Files of variables (`KEY=VALUE` lines, `#` comments, bare `KEY`s
    /// looked up in `client_env`), read before `env`.
    pub env_files: Vec<PathBuf>,
    /// The environment of the client, where a bare `KEY` is looked up (a
    /// daemon passes none).
    pub client_env: BTreeMap<String, String>,
    /// The working directory.
    pub workdir: Option<String>,
    /// The user (name|uid[:group|gid]).
    pub user: Option<String>,
    /// The hostname.
    pub hostname: Option<String>,
    /// Labels (`KEY=VALUE` or `KEY`).
    pub labels: Vec<String>,
    /// The host flags: mounts, volumes, resources, devices, network, ports,
    /// `--security-opt`.
    pub host: HostFlags,
    /// Read-only root file system.
    pub read_only: bool,
    /// Capabilities to add.
    pub cap_add: Vec<String>,
    /// Capabilities to drop.
    pub cap_drop: Vec<String>,
    /// Every capability and device, unconfined.
    pub privileged: bool,
    /// berth's init as PID 1.
    pub init: bool,
    /// The restart policy (`no` when None).
    pub restart: Option<String>,
    /// The signal `stop` sends first.
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before killing.
    pub stop_timeout: Option<u32>,
    /// json-file (default), k8s-file or none.
    pub log_driver: Option<String>,
    /// max-size=SIZE, max-file=N.
    pub log_opts: Vec<String>,
    /// Another runc-compatible runtime.
    pub runtime: Option<PathBuf>,
    /// When to pull.
    pub pull: PullPolicy,
    /// The platform (os/arch[/variant]); the host's when None.
    pub platform: Option<String>,
}

/// What a create reports while it works (a pull's progress).
pub trait CreateProgress: PullProgress {
    /// The image is not present and will be pulled now.
    fn pulling(&self, image: &str);
}

/// Reports nothing.
#[derive(Debug)]
pub struct Quiet;

impl PullProgress for Quiet {
    fn layer(&self, _: &berth_image::digest::Digest, _: u64, _: bool) {}
    fn advance(&self, _: &berth_image::digest::Digest, _: u64) {}
    fn done(&self, _: &berth_image::digest::Digest) {}
}

impl CreateProgress for Quiet {
    fn pulling(&self, _: &str) {}
}

/// Reads env files: `KEY=VALUE` lines, `#` comments, and bare `KEY`s taken
/// from `client_env`.
pub fn env_files(
    files: &[PathBuf],
    client_env: &BTreeMap<String, String>,
) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(io_err(format!("reading --env-file {}", f.display())))?;
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.extend(env_value(line, client_env));
        }
    }
    Ok(out)
}

/// `KEY=VALUE` as is; `KEY` from `client_env`, or nothing.
pub fn env_value(s: &str, client_env: &BTreeMap<String, String>) -> Option<String> {
    if s.contains('=') {
        return Some(s.to_string());
    }
    client_env.get(s).map(|v| format!("{s}={v}"))
}

/// The variables of `files` then `vars`, each resolved.
pub fn environment(
    files: &[PathBuf],
    vars: &[String],
    client_env: &BTreeMap<String, String>,
) -> Result<Vec<String>, ApiError> {
    let mut env = env_files(files, client_env)?;
    env.extend(vars.iter().filter_map(|e| env_value(e, client_env)));
    Ok(env)
}

/// docker's byte sizes (`10`, `10k`, `2m`, `1.5g`, `10MB`: powers of
/// 1024), with `what` (the flag) named in the error.
pub fn parse_bytes(what: &str, s: &str) -> Result<u64, ApiError> {
    crate::host::parse_bytes(s)
        .map(|n| n as u64)
        .map_err(|e| ApiError::Invalid(format!("invalid {what} {s:?}: {e}")))
}

/// A signal name (`TERM`, `SIGTERM`) or number to its number.
pub fn signal_number(s: &str) -> Result<i32, ApiError> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(ApiError::Invalid(format!("signal {n} is out of range")));
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let sig: nix::sys::signal::Signal = format!("SIG{name}")
        .parse()
        .map_err(|_| ApiError::Invalid(format!("unknown signal {s:?}")))?;
    Ok(sig as i32)
}

/// The log settings of a request: driver, max size, max files.
fn log_settings(r: &CreateRequest) -> Result<(String, Option<u64>, u32), ApiError> {
    let driver = r.log_driver.clone().unwrap_or_else(|| "json-file".into());
    if !matches!(driver.as_str(), "json-file" | "k8s-file" | "none") {
        return Err(ApiError::Invalid(format!(
            "invalid --log-driver {driver:?}: use json-file, k8s-file or none"
        )));
    }
    let mut max_size = None;
    let mut max_file = 1;
    for o in &r.log_opts {
        match o.split_once('=') {
            Some(("max-size", v)) => max_size = Some(parse_bytes("--log-opt max-size", v)?),
            Some(("max-file", v)) => {
                max_file = v.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    ApiError::Invalid(format!(
                        "invalid --log-opt max-file {v:?}: use a number ≥ 1"
                    ))
                })?
            }
            _ => {
                return Err(ApiError::Invalid(format!(
                    "invalid --log-opt {o:?}: use max-size=SIZE or max-file=N"
                )))
            }
        }
    }
    Ok((driver, max_size, max_file))
}

impl Engine {
    /// The image `name` for `platform`, pulled first as `policy` says.
    pub fn image_for(
        &self,
        name: &str,
        policy: PullPolicy,
        platform: Option<&str>,
        progress: &dyn CreateProgress,
    ) -> Result<LocalImage, ApiError> {
        let platform = match platform {
            Some(p) => p
                .parse::<Platform>()
                .map_err(|e| ApiError::Invalid(format!("invalid --platform {p:?}: {e}")))?,
            None => Platform::host(),
        };
        let store = self.store();
        if policy != PullPolicy::Always {
            match store.get(name, &platform) {
                Ok(img) => return Ok(img),
                Err(ImageError::NotFound(_)) => {}
                Err(source) => {
                    return Err(ApiError::Image {
                        context: format!("looking up image {name}"),
                        source: Box::new(source),
                    })
                }
            }
        }
        if policy == PullPolicy::Never {
            return Err(ApiError::NoImage(name.to_string()));
        }
        progress.pulling(name);
        store
            .pull(name, &platform, progress)
            .map_err(|source| ApiError::Image {
                context: format!("pulling image {name}"),
                source: Box::new(source),
            })
    }

    /// Makes a container from `r`: every flag is checked before the image
    /// is pulled or anything is made.
    pub fn create_container(
        &self,
        r: &CreateRequest,
        progress: &dyn CreateProgress,
    ) -> Result<Container, ApiError> {
        let restart = match &r.restart {
            Some(p) => {
                RestartPolicy::parse(p).map_err(|e| ApiError::Invalid(format!("--restart: {e}")))?
            }
            None => RestartPolicy::parse("no").expect("valid"),
        };
        if r.auto_remove && restart.name != "no" {
            return Err(ApiError::Invalid(
                "conflicting options: --restart and --rm".into(),
            ));
        }
        let (log_driver, log_max_size, log_max_file) = log_settings(r)?;
        if let Some(s) = &r.stop_signal {
            signal_number(s)
                .map_err(|e| ApiError::Invalid(format!("invalid --stop-signal {s:?}: {e}")))?;
        }
        let mut labels = BTreeMap::new();
        for l in &r.labels {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            labels.insert(k.to_string(), v.to_string());
        }
        if let Some(rt) = &r.runtime {
            if !rt.is_file() {
                return Err(ApiError::Invalid(format!(
                    "--runtime {}: no such file",
                    rt.display()
                )));
            }
        }
        let mut security = SecurityFlags {
            privileged: r.privileged,
            cap_add: r.cap_add.clone(),
            cap_drop: r.cap_drop.clone(),
            read_only: r.read_only,
            ..SecurityFlags::default()
        };
        let host: HostConfig = r.host.parse(&mut security)?;
        let env = environment(&r.env_files, &r.env, &r.client_env)?;
        let entrypoint = r.entrypoint.as_ref().map(|e| {
            if e.is_empty() {
                Vec::new()
            } else {
                vec![e.clone()]
            }
        });
        let init = if r.init {
            Some(crate::init::find_binary()?)
        } else {
            None
        };
        let img = self.image_for(&r.image, r.pull, r.platform.as_deref(), progress)?;
        let process = ProcessFlags {
            entrypoint: entrypoint.clone(),
            cmd: r.command.clone(),
            env,
            workdir: r.workdir.clone(),
            user: r.user.clone(),
            tty: r.tty,
        };
        let image_cfg = img.config.config.clone().unwrap_or_default();
        let config = ContainerConfig {
            runtime: r.runtime.clone().unwrap_or_default(),
            tty: r.tty,
            open_stdin: r.interactive,
            stop_signal: r.stop_signal.clone().unwrap_or_default(),
            stop_timeout: r.stop_timeout.unwrap_or(10),
            restart,
            auto_remove: r.auto_remove,
            log_driver,
            log_max_size,
            log_max_file,
            user: r
                .user
                .clone()
                .or(image_cfg.user.clone())
                .unwrap_or_default(),
            entrypoint: entrypoint.or(image_cfg.entrypoint.clone()),
            cmd: if r.command.is_empty() && r.entrypoint.is_none() {
                image_cfg.cmd.clone().unwrap_or_default()
            } else {
                r.command.clone()
            },
            hostname: r.hostname.clone().unwrap_or_default(),
            labels,
            network: host.network.mode(),
            init: r.init,
            ..ContainerConfig::default()
        };
        let o = CreateOptions {
            image_name: r.image.clone(),
            name: r.name.clone(),
            bundle: BundleOptions {
                id: String::new(),
                hostname: r.hostname.clone(),
                process,
                security,
                cgroups_path: None,
                host,
                volumes: self.volumes(),
                init,
            },
            config,
        };
        Ok(self.create(&img, o)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("x", "10").unwrap(), 10);
        assert_eq!(parse_bytes("x", "1k").unwrap(), 1024);
        assert_eq!(parse_bytes("x", "2m").unwrap(), 2 << 20);
        assert_eq!(parse_bytes("x", "1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("x", "10MB").unwrap(), 10 << 20);
        let e = parse_bytes("--log-opt max-size", "ten")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max-size") && e.contains("ten"), "{e}");
        assert!(parse_bytes("x", "-1").is_err());
    }

    #[test]
    fn signals() {
        assert_eq!(signal_number("TERM").unwrap(), 15);
        assert_eq!(signal_number("sigkill").unwrap(), 9);
        assert_eq!(signal_number("SIGUSR1").unwrap(), 10);
        assert_eq!(signal_number("2").unwrap(), 2);
        assert!(signal_number("0").is_err());
        assert!(signal_number("NOPE").is_err());
    }

    #[test]
    fn env_values_and_files() {
        let client = BTreeMap::from([("BERTH_TEST_ENV_VALUE".to_string(), "x y".to_string())]);
        assert_eq!(env_value("A=1", &client).as_deref(), Some("A=1"));
        assert_eq!(env_value("UNSET", &client), None);
        assert_eq!(
            env_value("BERTH_TEST_ENV_VALUE", &client).as_deref(),
            Some("BERTH_TEST_ENV_VALUE=x y")
        );
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("env");
        std::fs::write(
            &f,
            "# comment\n\nA=1\n  B=two words\nBERTH_TEST_ENV_VALUE\n",
        )
        .unwrap();
        assert_eq!(
            environment(
                std::slice::from_ref(&f),
                &["C=3".into(), "A=2".into()],
                &client
            )
            .unwrap(),
            [
                "A=1",
                "B=two words",
                "BERTH_TEST_ENV_VALUE=x y",
                "C=3",
                "A=2"
            ]
        );
        let e = env_files(&[t.path().join("nope")], &client)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn log_and_pull_settings() {
        let mut r = CreateRequest::default();
        assert_eq!(log_settings(&r).unwrap(), ("json-file".into(), None, 1));
        r.log_opts = vec!["max-size=1k".into(), "max-file=3".into()];
        assert_eq!(
            log_settings(&r).unwrap(),
            ("json-file".into(), Some(1024), 3)
        );
        r.log_opts = vec!["max-file=0".into()];
        assert!(log_settings(&r).is_err());
        r.log_opts.clear();
        r.log_driver = Some("syslog".into());
        assert!(log_settings(&r).unwrap_err().to_string().contains("syslog"));
        assert_eq!("never".parse::<PullPolicy>().unwrap(), PullPolicy::Never);
        assert!("sometimes".parse::<PullPolicy>().is_err());
    }
}
