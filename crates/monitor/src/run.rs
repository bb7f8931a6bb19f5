//! The monitor's life with one container: create and start it through a
//! runc-compatible runtime with stdout and stderr on pipes, write what comes
//! out to the log, reap the container, record how it ended, and delete its
//! runtime state.
//!
//! The monitor makes itself a child subreaper, so the container's init
//! (whose parent, the runtime's `create`, exits at once) becomes its child
//! and is reaped here. A pidfd of the init wakes the loop when it exits;
//! the pipes are then read to their end (every process of the container's
//! PID namespace is gone by then, so nothing holds them open).
//!
//! [`RestartPolicy`] is carried out here too, as docker does: `on-failure[:N]`
//! restarts after a non-zero exit (at most N times), `always` and
//! `unless-stopped` after any exit, unless the stop file exists (written by
//! whoever stops the container on purpose). Restarts wait 100 ms, doubling
//! up to a minute; the delay starts again after a run of ten seconds.
//!
//! Not here yet (issue 5): a terminal, stdin and attach, OOM detection.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use chrono::{DateTime, SecondsFormat, Utc};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::pipe::{pipe_with, PipeFlags};
use rustix::process::{pidfd_open, waitpid, Pid, PidfdFlags, WaitOptions};
use serde::{Deserialize, Serialize};

use crate::logfile::{Format, LogWriter, Stream};

/// What the monitor is told to run (the JSON file its command line names).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MonitorConfig {
    /// The runtime binary (berth-runtime, runc, crun, …).
    pub runtime: PathBuf,
    /// The runtime's `--root`.
    pub runtime_root: PathBuf,
    /// The container ID.
    pub id: String,
    /// The bundle.
    pub bundle: PathBuf,
    /// The log file; None for the `none` driver.
    pub log_path: Option<PathBuf>,
    /// `json-file` or `k8s-file`.
    pub log_driver: String,
    /// Rotate the log past this size.
    pub log_max_size: Option<u64>,
    /// Keep this many log files.
    pub log_max_file: u32,
    /// Where to write [`ExitRecord`].
    pub exit_file: PathBuf,
    /// When to start the container again.
    #[serde(default)]
    pub restart: RestartPolicy,
}

/// docker's `--restart`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartPolicy {
    /// `no`, `on-failure`, `always` or `unless-stopped`.
    pub name: String,
    /// For `on-failure`: the most restarts (0: no limit).
    #[serde(default)]
    pub max_retries: u32,
}

impl RestartPolicy {
    /// Parses `no`, `on-failure[:N]`, `always`, `unless-stopped`.
    pub fn parse(s: &str) -> Result<RestartPolicy, String> {
        let (name, n) = match s.split_once(':') {
            Some((name, n)) => (name, Some(n)),
            None => (s, None),
        };
        let max_retries = match (name, n) {
            ("on-failure", Some(n)) => n
                .parse()
                .map_err(|_| format!("invalid restart count {n:?} in {s:?}"))?,
            (_, Some(_)) => return Err(format!("restart policy {name:?} takes no count")),
            _ => 0,
        };
        match name {
            "" | "no" | "on-failure" | "always" | "unless-stopped" => Ok(RestartPolicy {
                name: if name.is_empty() {
                    "no".into()
                } else {
                    name.into()
                },
                max_retries,
            }),
            _ => Err(format!(
                "invalid restart policy {s:?} (no, on-failure[:N], always, unless-stopped)"
            )),
        }
    }

    /// Whether to start again after `exit_code`, with `restarts` done so
    /// far, when the container was `stopped` on purpose or not.
    pub fn should_restart(&self, exit_code: i32, restarts: u32, stopped: bool) -> bool {
        if stopped {
            return false;
        }
        match self.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => {
                exit_code != 0 && (self.max_retries == 0 || restarts < self.max_retries)
            }
            _ => false,
        }
    }
}

/// How the container ended, written as JSON to the exit file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    /// The exit code; 128 + N for death by signal N, as docker reports.
    pub exit_code: i32,
    /// When it was reaped.
    pub exited_at: String,
    /// The init PID it had.
    pub pid: i32,
    /// How many times the monitor had restarted it before this run.
    #[serde(default)]
    pub restart_count: u32,
}

/// Why the container could not be run.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The runtime refused (its message).
    #[error("{runtime} {command} {id}: {message}")]
    Runtime {
        /// The runtime binary.
        runtime: String,
        /// `create` or `start`.
        command: &'static str,
        /// The container.
        id: String,
        /// What the runtime said.
        message: String,
    },
    /// Anything else.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> MonitorError {
    let context = context.into();
    move |source| MonitorError::Io { context, source }
}

impl MonitorConfig {
    fn runtime_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.runtime);
        c.arg("--root").arg(&self.runtime_root).args(args);
        c
    }

    /// Runs `runtime COMMAND …`, turning a failure into its message (from
    /// its `--log`, else its stderr).
    fn runtime_step(
        &self,
        command: &'static str,
        mut c: Command,
        log: &Path,
    ) -> Result<(), MonitorError> {
        let out = c
            .output()
            .map_err(io_err(format!("run {}", self.runtime.display())))?;
        if out.status.success() {
            return Ok(());
        }
        let logged = fs::read_to_string(log).unwrap_or_default();
        let message = logged
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["msg"].as_str().map(str::to_string))
            .next_back()
            .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
        Err(MonitorError::Runtime {
            runtime: self.runtime.display().to_string(),
            command,
            id: self.id.clone(),
            message,
        })
    }
}

/// Creates and starts the container, returning its init PID and the read
/// ends of its stdout and stderr.
pub fn start(cfg: &MonitorConfig) -> Result<(i32, OwnedFd, OwnedFd), MonitorError> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(|e| io_err("become a child subreaper")(e.into()))?;
    let pipe = || pipe_with(PipeFlags::CLOEXEC).map_err(|e| io_err("pipe")(e.into()));
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let state = cfg.exit_file.with_extension("runtime");
    fs::create_dir_all(&state).map_err(io_err(format!("create {}", state.display())))?;
    let pid_file = state.join("pid");
    let log = state.join("runtime.log");
    let mut create = cfg.runtime_cmd(&[]);
    create
        .arg("--log")
        .arg(&log)
        .arg("--log-format")
        .arg("json")
        .arg("create")
        .arg("--bundle")
        .arg(&cfg.bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&cfg.id)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w));
    cfg.runtime_step("create", create, &log)?;
    let pid: i32 = fs::read_to_string(&pid_file)
        .map_err(io_err(format!("read {}", pid_file.display())))?
        .trim()
        .parse()
        .map_err(|e| io_err(format!("parse {}", pid_file.display()))(io::Error::other(e)))?;
    let mut start = cfg.runtime_cmd(&[]);
    start
        .arg("--log")
        .arg(&log)
        .arg("--log-format")
        .arg("json")
        .arg("start")
        .arg(&cfg.id);
    start
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Err(e) = cfg.runtime_step("start", start, &log) {
        let _ = cfg
            .runtime_cmd(&["delete", "--force", &cfg.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        return Err(e);
    }
    Ok((pid, out_r, err_r))
}

/// Logs the container's output until it exits, reaps it, writes the exit
/// record and deletes the runtime's state of it.
pub fn supervise(
    cfg: &MonitorConfig,
    pid: i32,
    out_r: OwnedFd,
    err_r: OwnedFd,
    restart_count: u32,
) -> Result<ExitRecord, MonitorError> {
    let format = match cfg.log_driver.as_str() {
        "json-file" => Format::JsonFile,
        "k8s-file" => Format::K8sFile,
        other => {
            return Err(io_err("log driver")(io::Error::other(format!(
                "unknown log driver {other:?} (json-file, k8s-file or none)"
            ))))
        }
    };
    let mut log = match &cfg.log_path {
        Some(path) => Some(
            LogWriter::open(path, format, cfg.log_max_size, cfg.log_max_file)
                .map_err(io_err(format!("open {}", path.display())))?,
        ),
        None => None,
    };
    let init = Pid::from_raw(pid).ok_or_else(|| io_err("container PID")(io::Error::other("0")))?;
    let pidfd = pidfd_open(init, PidfdFlags::empty())
        .map_err(|e| io_err(format!("pidfd_open {pid}"))(e.into()))?;
    let mut streams: Vec<(Stream, Option<File>)> = vec![
        (Stream::Stdout, Some(File::from(out_r))),
        (Stream::Stderr, Some(File::from(err_r))),
    ];
    let mut status = None;
    let mut buf = vec![0u8; 64 * 1024];
    while streams.iter().any(|(_, f)| f.is_some()) || status.is_none() {
        let mut fds: Vec<PollFd<'_>> = Vec::new();
        let mut which = Vec::new();
        for (i, (_, f)) in streams.iter().enumerate() {
            if let Some(f) = f {
                fds.push(PollFd::new(f, PollFlags::IN));
                which.push(Some(i));
            }
        }
        if status.is_none() {
            fds.push(PollFd::new(&pidfd, PollFlags::IN));
            which.push(None);
        }
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(io_err("poll")(e.into())),
        }
        let ready: Vec<Option<usize>> = fds
            .iter()
            .zip(&which)
            .filter(|(p, _)| !p.revents().is_empty())
            .map(|(_, w)| *w)
            .collect();
        drop(fds);
        for w in ready {
            match w {
                None => {
                    if let Ok(Some((_, st))) = waitpid(Some(init), WaitOptions::NOHANG) {
                        status = Some(st);
                    }
                }
                Some(i) => {
                    let (stream, file) = &mut streams[i];
                    let n = match file.as_mut().map(|f| f.read(&mut buf)) {
                        Some(Ok(n)) => n,
                        Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                        _ => 0,
                    };
                    if n == 0 {
                        *file = None;
                    } else if let Some(l) = log.as_mut() {
                        l.write(*stream, &buf[..n], Utc::now())
                            .map_err(io_err("write the log"))?;
                    }
                }
            }
        }
    }
    if let Some(l) = log.as_mut() {
        l.flush_partial(Utc::now())
            .map_err(io_err("write the log"))?;
    }
    let st = status.expect("loop ends reaped");
    let exit_code = st
        .exit_status()
        .or_else(|| st.terminating_signal().map(|s| 128 + s))
        .unwrap_or(255);
    let record = ExitRecord {
        exit_code,
        exited_at: now_rfc3339(Utc::now()),
        pid,
        restart_count,
    };
    write_exit(&cfg.exit_file, &record)?;
    let _ = cfg
        .runtime_cmd(&["delete", "--force", &cfg.id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = fs::remove_dir_all(cfg.exit_file.with_extension("runtime"));
    Ok(record)
}

fn now_rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Writes the exit record atomically (temp file, then rename).
fn write_exit(path: &Path, r: &ExitRecord) -> Result<(), MonitorError> {
    let tmp = path.with_extension("tmp");
    let body =
        serde_json::to_vec(r).map_err(|e| io_err("encode exit record")(io::Error::other(e)))?;
    let mut f = File::create(&tmp).map_err(io_err(format!("create {}", tmp.display())))?;
    f.write_all(&body)
        .and_then(|_| f.sync_all())
        .map_err(io_err(format!("write {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io_err(format!("rename {}", path.display())))?;
    Ok(())
}

/// Reads an exit record; None while the container has not exited.
pub fn read_exit(path: &Path) -> Result<Option<ExitRecord>, MonitorError> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| io_err(format!("parse {}", path.display()))(io::Error::other(e))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(format!("read {}", path.display()))(e)),
    }
}

/// The file whose existence means "stopped on purpose: do not restart".
pub fn stop_file(cfg: &MonitorConfig) -> PathBuf {
    cfg.exit_file.with_extension("stop")
}

/// Supervises the started container, restarting it as its policy says;
/// returns the last exit record.
pub fn supervise_with_restarts(
    cfg: &MonitorConfig,
    mut pid: i32,
    mut out_r: OwnedFd,
    mut err_r: OwnedFd,
) -> Result<ExitRecord, MonitorError> {
    let mut restarts = 0;
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        let began = std::time::Instant::now();
        let rec = supervise(cfg, pid, out_r, err_r, restarts)?;
        if !cfg
            .restart
            .should_restart(rec.exit_code, restarts, stop_file(cfg).exists())
        {
            return Ok(rec);
        }
        if began.elapsed() >= std::time::Duration::from_secs(10) {
            delay = std::time::Duration::from_millis(100);
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(std::time::Duration::from_secs(60));
        if stop_file(cfg).exists() {
            return Ok(rec);
        }
        restarts += 1;
        (pid, out_r, err_r) = start(cfg)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_as_docker() {
        let p = |s: &str| RestartPolicy::parse(s).unwrap();
        assert_eq!(p("no").name, "no");
        assert_eq!(p("on-failure:3").max_retries, 3);
        assert!(RestartPolicy::parse("on-failure:x").is_err());
        assert!(RestartPolicy::parse("always:2").is_err());
        assert!(RestartPolicy::parse("sometimes")
            .unwrap_err()
            .contains("sometimes"));

        assert!(!p("no").should_restart(1, 0, false));
        assert!(p("on-failure").should_restart(1, 100, false));
        assert!(!p("on-failure").should_restart(0, 0, false));
        assert!(p("on-failure:2").should_restart(1, 1, false));
        assert!(!p("on-failure:2").should_restart(1, 2, false));
        assert!(p("always").should_restart(0, 9, false));
        assert!(!p("always").should_restart(0, 0, true));
        assert!(!p("unless-stopped").should_restart(1, 0, true));
        assert!(RestartPolicy::default().name.is_empty());
        assert!(!RestartPolicy::default().should_restart(1, 0, false));
    }
}
