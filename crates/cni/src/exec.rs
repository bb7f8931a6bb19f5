//! Running one plugin binary: look it up in the plugin dirs, give it the CNI
//! environment and its config on stdin, collect stdout/stderr, and enforce the
//! timeout.
//!
//! Invariants: the plugin runs in its own process group with only stdio open
//! (every other fd is marked close-on-exec in the child before exec) and an environment of
//! the CNI variables plus `PATH`; on timeout the whole group is SIGKILLed and
//! the plugin is reaped before returning, so no plugin outlives a call.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::error::CniError;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The spec's error code for errors without a code of their own.
pub const ERR_INTERNAL: u32 = 999;

/// The CNI_* variables of one invocation.
#[derive(Debug, Clone, Default)]
pub(crate) struct CniEnv {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
    pub path: String,
}

impl CniEnv {
    /// The full environment handed to the plugin.
    pub fn vars(&self) -> Vec<(String, String)> {
        let path = std::env::var("PATH")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_PATH.to_string());
        vec![
            ("CNI_COMMAND".into(), self.command.clone()),
            ("CNI_CONTAINERID".into(), self.container_id.clone()),
            ("CNI_NETNS".into(), self.netns.clone()),
            ("CNI_IFNAME".into(), self.ifname.clone()),
            ("CNI_ARGS".into(), self.args.clone()),
            ("CNI_PATH".into(), self.path.clone()),
            ("PATH".into(), path),
        ]
    }
}

/// CNI_ARGS: `K=V;K2=V2`.
pub(crate) fn format_args(args: &[(String, String)]) -> String {
    args.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// CNI_PATH: the plugin dirs joined with `:`.
pub(crate) fn format_path(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// The first regular file named `plugin` in `dirs`.
pub(crate) fn find_plugin(dirs: &[PathBuf], plugin: &str) -> Result<PathBuf, CniError> {
    crate::config::validate_plugin_type(plugin)
        .map_err(|r| CniError::invalid(format!("plugin {plugin:?}"), r))?;
    dirs.iter()
        .map(|d| d.join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| CniError::PluginNotFound {
            plugin: plugin.to_string(),
            dirs: dirs.to_vec(),
        })
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

enum Event {
    Exited(std::io::Result<std::process::ExitStatus>),
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

fn reader(mut r: impl Read + Send + 'static, tx: mpsc::Sender<Event>, out: bool) {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(if out {
            Event::Stdout(buf)
        } else {
            Event::Stderr(buf)
        });
    });
}

/// Runs `path` (plugin `plugin` of network `network`) and returns its stdout
/// if it exits 0.
pub(crate) fn run(
    path: &Path,
    plugin: &str,
    network: &str,
    env: &CniEnv,
    stdin: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, CniError> {
    tracing::debug!(plugin, network, command = %env.command, "running CNI plugin");
    let mut cmd = Command::new(path);
    cmd.env_clear()
        .envs(env.vars())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: the closure runs in the child between fork and exec; it makes
    // one raw syscall (async-signal-safe), allocates nothing and touches no
    // state shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            // std opens its own fds close-on-exec; this also covers any fd
            // opened elsewhere in the process without O_CLOEXEC, so a plugin
            // gets stdio and nothing else. Kernels before 5.11 lack the flag
            // (the call fails and changes nothing).
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    let mut attempt = 0;
    let mut child = loop {
        match cmd.spawn() {
            Ok(c) => break c,
            // ETXTBSY: a plugin binary just written (by an installer, or by a
            // test) can still be open for writing in another process briefly.
            Err(e) if e.raw_os_error() == Some(libc_etxtbsy()) && attempt < 20 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                return Err(CniError::io(
                    format!("starting CNI plugin {}", path.display()),
                    e,
                ))
            }
        }
    };
    let pgid = rustix::process::Pid::from_child(&child);
    let (tx, rx) = mpsc::channel();
    if let Some(mut w) = child.stdin.take() {
        let data = stdin.to_vec();
        std::thread::spawn(move || {
            // A plugin that exits without reading its config gives EPIPE: fine.
            let _ = w.write_all(&data);
        });
    }
    if let Some(out) = child.stdout.take() {
        reader(out, tx.clone(), true);
    }
    if let Some(err) = child.stderr.take() {
        reader(err, tx.clone(), false);
    }
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(Event::Exited(child.wait()));
        });
    }
    drop(tx);

    let deadline = Instant::now() + timeout;
    let (mut status, mut stdout, mut stderr) = (None, None, None);
    let mut timed_out = false;
    while status.is_none() || stdout.is_none() || stderr.is_none() {
        let ev = if timed_out {
            // Everything in the group is dead; only a process that left the
            // group could still hold a pipe open, and we do not wait for it.
            rx.recv_timeout(Duration::from_secs(5)).ok()
        } else {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(ev) => Some(ev),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    timed_out = true;
                    // The group outlives its leader while any member lives, so
                    // this also reaches children that kept stdout open.
                    let _ =
                        rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
            }
        };
        match ev {
            Some(Event::Exited(s)) => status = Some(s),
            Some(Event::Stdout(b)) => stdout = Some(b),
            Some(Event::Stderr(b)) => stderr = Some(b),
            None => break,
        }
    }
    if timed_out {
        return Err(CniError::Timeout {
            plugin: plugin.to_string(),
            network: network.to_string(),
            secs: timeout.as_millis().div_ceil(1000) as u64,
        });
    }
    let status = match status {
        Some(Ok(s)) => s,
        Some(Err(e)) => return Err(CniError::io(format!("waiting for CNI plugin {plugin}"), e)),
        None => {
            return Err(CniError::io(
                format!("waiting for CNI plugin {plugin}"),
                std::io::Error::other("lost track of the plugin process"),
            ))
        }
    };
    let stdout = stdout.unwrap_or_default();
    let stderr = stderr.unwrap_or_default();
    if status.success() {
        if !stderr.is_empty() {
            tracing::debug!(plugin, network, stderr = %String::from_utf8_lossy(&stderr).trim(), "CNI plugin stderr");
        }
        return Ok(stdout);
    }
    Err(plugin_error(plugin, network, status, &stdout, &stderr))
}

fn libc_etxtbsy() -> i32 {
    rustix::io::Errno::TXTBSY.raw_os_error()
}

fn plugin_error(
    plugin: &str,
    network: &str,
    status: std::process::ExitStatus,
    stdout: &[u8],
    stderr: &[u8],
) -> CniError {
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "failed".to_string(),
    };
    if let Ok(e) = serde_json::from_slice::<WireError>(stdout) {
        if !e.msg.is_empty() || e.code != 0 {
            return CniError::Plugin {
                plugin: plugin.to_string(),
                network: network.to_string(),
                code: e.code,
                msg: if e.msg.is_empty() { how } else { e.msg },
                details: e.details,
            };
        }
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    let msg = [text(stderr), text(stdout)]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or_else(|| "no error message".to_string());
    CniError::Plugin {
        plugin: plugin.to_string(),
        network: network.to_string(),
        code: ERR_INTERNAL,
        msg,
        details: how,
    }
}
