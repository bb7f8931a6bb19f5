//! The monitor's life with one container ([`Monitor`]): create and start it
//! through a runc-compatible runtime, write what comes out to the log and
//! to the attach clients, feed it stdin, reap it, record how it ended, and
//! delete its runtime state.
//!
//! Its stdio: without a terminal, stdout and stderr are pipes, and stdin is
//! a pipe whose write end the monitor holds (`stdin`) or /dev/null. With
//! `terminal`, the runtime gets `--console-socket` (a stream socket in the
//! monitor's state dir, reached through `/proc/PID/fd/N/` when its path is
//! too long) and sends the pty master over it (SCM_RIGHTS); all output is
//! read from the master and logged as stdout, and stdin is written to it.
//! Writes to the container's stdin never block: what it has not taken
//! waits, and the clients are not read meanwhile.
//!
//! One `poll` loop ([`Monitor`]'s `turn`) serves the output fds, the
//! init's pidfd, the stdin fd and the attach socket ([`crate::attach`]);
//! there are no threads. The monitor makes itself a child subreaper, so the
//! container's init (whose parent, the runtime's `create`, exits at once)
//! becomes its child and is reaped here. When the pidfd says the init
//! exited, the output is read to its end (every process of the container's
//! PID namespace is gone by then, so nothing holds the pipes or the pty
//! open); then the cgroup's OOM kill count is read (before `delete`
//! removes the cgroup), the exit record written, the runtime state deleted
//! and the exit sent to the clients.
//!
//! [`RestartPolicy`] is carried out here too, as docker does: `on-failure[:N]`
//! restarts after a non-zero exit (at most N times), `always` and
//! `unless-stopped` after any exit, unless the stop file exists (written by
//! whoever stops the container on purpose). Restarts wait 100 ms, doubling
//! up to a minute (the attach socket is served meanwhile); the delay starts
//! again after a run of ten seconds. Each start rewrites the state file
//! ([`RunRecord`]); every record is written atomically (temp file, rename).

use std::fs::{self, File};
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_exeseal::ReadOnlyView;
use chrono::{DateTime, SecondsFormat, Utc};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::pipe::{pipe_with, PipeFlags};
use rustix::process::{pidfd_open, waitpid, Pid, PidfdFlags, WaitOptions, WaitStatus};
use serde::{Deserialize, Serialize};

use crate::attach::{self, Msg};
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
    /// The bundle's `process.terminal`: the runtime gets `--console-socket`
    /// and the container's output (all of it stdout) and stdin go through
    /// the pty master.
    #[serde(default)]
    pub terminal: bool,
    /// Keep the container's stdin open (a pipe, or the pty master); else
    /// it is /dev/null.
    #[serde(default)]
    pub stdin: bool,
    /// The attach socket to listen on for the monitor's life (see
    /// [`crate::attach`]).
    #[serde(default)]
    pub attach_socket: Option<PathBuf>,
    /// Wait (up to [`WAIT_ATTACH`]) for the first attach client between
    /// `create` and `start`.
    #[serde(default)]
    pub wait_attach: bool,
    /// The bundle's `linux.cgroupsPath`, to read the OOM kill count from.
    #[serde(default)]
    pub cgroup_path: Option<String>,
    /// Where to write [`RunRecord`] each time the container starts.
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// A command to run when the container has exited for good (no more
    /// restarts): how a detached `--rm` container removes itself.
    #[serde(default)]
    pub exit_command: Vec<String>,
    /// Where the monitor writes its own PID (atomically) before anything
    /// else, so whoever started it need not live to write it.
    #[serde(default)]
    pub pid_file: Option<PathBuf>,
}

/// How long `waitAttach` waits for the first client.
pub const WAIT_ATTACH: Duration = Duration::from_secs(30);

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
    /// The kernel's OOM killer killed a process of the container's cgroup.
    #[serde(default)]
    pub oom_killed: bool,
    /// Why the record is not the monitor's own account of the exit (the
    /// engine writes one when the monitor died before its container): empty
    /// when the monitor reaped the container itself.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// The running container, written as JSON to the state file each time the
/// monitor (re)starts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// The init PID.
    pub pid: i32,
    /// When `start` returned.
    pub started_at: String,
    /// How many times the monitor restarted it before this run.
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
        self.runtime_cmd_via(None, args)
    }

    /// The runtime command, executed through `view` (a read-only view of
    /// the runtime binary) when there is one: the runtime then need not
    /// re-execute itself from a sealed copy (`berth_exeseal`).
    fn runtime_cmd_via(&self, view: Option<&ReadOnlyView>, args: &[&str]) -> Command {
        let mut c = match view {
            Some(v) => {
                let mut c = Command::new(v.path());
                c.arg0(&self.runtime);
                c
            }
            None => Command::new(&self.runtime),
        };
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

/// One run of the container: its init and the monitor's ends of its stdio.
#[derive(Debug)]
pub struct Run {
    /// The init PID.
    pub pid: i32,
    init: Pid,
    pidfd: OwnedFd,
    /// stdout's read end, or the pty master.
    out: Option<OwnedFd>,
    /// stderr's read end (None with a terminal).
    err: Option<OwnedFd>,
    /// Where stdin goes (non-blocking): the pipe's write end or a dup of
    /// the pty master; None when it is /dev/null or was closed.
    stdin: Option<OwnedFd>,
    /// stdin bytes the container has not taken yet; clients are not read
    /// while there are some (so they wait in their sockets, in order).
    pending: Vec<u8>,
    /// How the init ended, once reaped.
    status: Option<WaitStatus>,
}

impl Run {
    fn done(&self) -> bool {
        self.out.is_none() && self.err.is_none() && self.status.is_some()
    }

    /// Writes what it can of the pending stdin bytes.
    fn flush_stdin(&mut self) {
        let Some(fd) = &self.stdin else {
            self.pending.clear();
            return;
        };
        match rustix::io::write(fd, &self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
            }
            Err(Errno::AGAIN) | Err(Errno::INTR) => {}
            Err(_) => {
                // The container closed its stdin.
                self.stdin = None;
                self.pending.clear();
            }
        }
    }
}

/// The monitor of one container: its config, its log, its attach socket.
#[derive(Debug)]
pub struct Monitor {
    cfg: MonitorConfig,
    log: Option<LogWriter>,
    attach: Option<attach::Server>,
    /// One buffer for all I/O: byte 0 is left for the attach message type.
    buf: Vec<u8>,
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), MonitorError> {
    rustix::io::ioctl_fionbio(fd, true).map_err(|e| io_err("set O_NONBLOCK")(e.into()))
}

/// Accepts the runtime's connection on the console socket and takes the
/// pty master it sends (SCM_RIGHTS).
fn receive_pty(l: &attach::Listener) -> io::Result<OwnedFd> {
    let wait = |fd: &OwnedFd| -> io::Result<()> {
        let t = rustix::event::Timespec {
            tv_sec: 10,
            tv_nsec: 0,
        };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        loop {
            match poll(&mut fds, Some(&t)) {
                Ok(0) => return Err(io::Error::other("the runtime sent no pty master")),
                Ok(_) => return Ok(()),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    };
    wait(&l.fd)?;
    let conn = rustix::net::accept_with(&l.fd, rustix::net::SocketFlags::CLOEXEC)?;
    wait(&conn)?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 256];
    rustix::net::recvmsg(
        &conn,
        &mut [io::IoSliceMut::new(&mut name)],
        &mut cmsg,
        rustix::net::RecvFlags::CMSG_CLOEXEC,
    )?;
    for m in cmsg.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(mut fds) = m {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(io::Error::other("the console socket message carried no fd"))
}

/// Where an event came from, in [`Monitor::turn`].
#[derive(Debug, Clone, Copy)]
enum Src {
    Out,
    Err,
    Pid,
    Stdin,
    Listen,
    Client(usize),
}

impl Monitor {
    /// Opens the log and the attach socket and makes the monitor a child
    /// subreaper (so the container's init becomes its child).
    pub fn new(cfg: MonitorConfig) -> Result<Monitor, MonitorError> {
        let format = match cfg.log_driver.as_str() {
            "json-file" => Format::JsonFile,
            "k8s-file" => Format::K8sFile,
            other => {
                return Err(io_err("log driver")(io::Error::other(format!(
                    "unknown log driver {other:?} (json-file, k8s-file or none)"
                ))))
            }
        };
        let log = match &cfg.log_path {
            Some(path) => Some(
                LogWriter::open(path, format, cfg.log_max_size, cfg.log_max_file)
                    .map_err(io_err(format!("open {}", path.display())))?,
            ),
            None => None,
        };
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(|e| io_err("become a child subreaper")(e.into()))?;
        let attach = match &cfg.attach_socket {
            Some(p) => Some(
                attach::Server::bind(p)
                    .map_err(io_err(format!("attach socket {}", p.display())))?,
            ),
            None => None,
        };
        Ok(Monitor {
            cfg,
            log,
            attach,
            buf: vec![0; 1 + attach::MAX_DATA],
        })
    }

    /// The config.
    pub fn config(&self) -> &MonitorConfig {
        &self.cfg
    }

    fn state_dir(&self) -> PathBuf {
        self.cfg.exit_file.with_extension("runtime")
    }

    fn delete(&self) {
        let _ = self
            .cfg
            .runtime_cmd(&["delete", "--force", &self.cfg.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// `runtime create`: the container exists, its init waits for `start`.
    pub fn create(&mut self) -> Result<Run, MonitorError> {
        let cfg = &self.cfg;
        let pipe = || pipe_with(PipeFlags::CLOEXEC).map_err(|e| io_err("pipe")(e.into()));
        let state = self.state_dir();
        fs::create_dir_all(&state).map_err(io_err(format!("create {}", state.display())))?;
        let pid_file = state.join("pid");
        let log = state.join("runtime.log");
        // Kept until the runtime has been started.
        let view = ReadOnlyView::new(&cfg.runtime).ok();
        let mut create = cfg.runtime_cmd_via(view.as_ref(), &[]);
        create
            .arg("--log")
            .arg(&log)
            .arg("--log-format")
            .arg("json")
            .arg("create")
            .arg("--bundle")
            .arg(&cfg.bundle)
            .arg("--pid-file")
            .arg(&pid_file);
        let (mut out, mut err, mut stdin, mut console) = (None, None, None, None);
        if cfg.terminal {
            let path = state.join("console.sock");
            let l = attach::Listener::bind(&path, rustix::net::SocketType::STREAM)
                .map_err(io_err(format!("console socket {}", path.display())))?;
            // A path too long for sockaddr_un is reached through our fd.
            let (_, dir) = attach::unix_addr(&path)
                .map_err(io_err(format!("console socket {}", path.display())))?;
            match &dir {
                Some(d) => create.arg("--console-socket").arg(format!(
                    "/proc/{}/fd/{}/console.sock",
                    rustix::process::getpid().as_raw_nonzero(),
                    rustix::fd::AsRawFd::as_raw_fd(d)
                )),
                None => create.arg("--console-socket").arg(&path),
            };
            console = Some((l, dir));
            create
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        } else {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            out = Some(out_r);
            err = Some(err_r);
            create.stdout(Stdio::from(out_w)).stderr(Stdio::from(err_w));
            if cfg.stdin {
                let (in_r, in_w) = pipe()?;
                set_nonblocking(&in_w)?;
                stdin = Some(in_w);
                create.stdin(Stdio::from(in_r));
            } else {
                create.stdin(Stdio::null());
            }
        }
        create.arg(&cfg.id);
        cfg.runtime_step("create", create, &log)?;
        let made = (|| {
            if let Some((l, _dir)) = &console {
                let master = receive_pty(l).map_err(io_err("receive the pty master"))?;
                set_nonblocking(&master)?;
                if cfg.stdin {
                    stdin = Some(
                        rustix::io::fcntl_dupfd_cloexec(&master, 3)
                            .map_err(|e| io_err("dup the pty master")(e.into()))?,
                    );
                }
                out = Some(master);
            }
            let pid: i32 = fs::read_to_string(&pid_file)
                .map_err(io_err(format!("read {}", pid_file.display())))?
                .trim()
                .parse()
                .map_err(|e| {
                    io_err(format!("parse {}", pid_file.display()))(io::Error::other(e))
                })?;
            let init =
                Pid::from_raw(pid).ok_or_else(|| io_err("container PID")(io::Error::other("0")))?;
            let pidfd = pidfd_open(init, PidfdFlags::empty())
                .map_err(|e| io_err(format!("pidfd_open {pid}"))(e.into()))?;
            Ok((pid, init, pidfd))
        })();
        drop(console);
        let (pid, init, pidfd) = match made {
            Ok(v) => v,
            Err(e) => {
                self.delete();
                return Err(e);
            }
        };
        Ok(Run {
            pid,
            init,
            pidfd,
            out,
            err,
            stdin,
            pending: Vec::new(),
            status: None,
        })
    }

    /// `runtime start`, then the state file. A failure deletes the container.
    pub fn start(&mut self, run: &Run, restart_count: u32) -> Result<(), MonitorError> {
        let log = self.state_dir().join("runtime.log");
        let mut start = self.cfg.runtime_cmd(&[]);
        start
            .arg("--log")
            .arg(&log)
            .arg("--log-format")
            .arg("json")
            .arg("start")
            .arg(&self.cfg.id);
        start
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Err(e) = self.cfg.runtime_step("start", start, &log) {
            self.delete();
            return Err(e);
        }
        if let Some(p) = &self.cfg.state_file {
            write_json(
                p,
                &RunRecord {
                    pid: run.pid,
                    started_at: now_rfc3339(Utc::now()),
                    restart_count,
                },
            )?;
        }
        Ok(())
    }

    /// Between `create` and `start`: waits up to `timeout` for the first
    /// attach client (so it sees all output), serving it meanwhile.
    pub fn wait_attach(&mut self, run: &mut Run, timeout: Duration) -> Result<(), MonitorError> {
        let deadline = Instant::now() + timeout;
        while self.attach.as_ref().is_some_and(|a| a.is_empty()) && run.status.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.turn(Some(run), Some(left))?;
        }
        // What the client sent at once (its terminal size) goes first.
        self.turn(Some(run), Some(Duration::ZERO))
    }

    /// Serves the attach socket for `d` (the container is not running).
    fn idle(&mut self, d: Duration) -> Result<(), MonitorError> {
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            self.turn(None, Some(left))?;
        }
    }

    /// Logs and relays the started container's output until it exits and
    /// its output is drained; reaps it, reads its OOM kill count, writes
    /// the exit record, deletes its runtime state and tells the clients.
    pub fn supervise(
        &mut self,
        mut run: Run,
        restart_count: u32,
    ) -> Result<ExitRecord, MonitorError> {
        while !run.done() {
            self.turn(Some(&mut run), None)?;
        }
        if let Some(l) = self.log.as_mut() {
            l.flush_partial(Utc::now())
                .map_err(io_err("write the log"))?;
        }
        let st = run.status.expect("a done run is reaped");
        let exit_code = st
            .exit_status()
            .or_else(|| st.terminating_signal().map(|s| 128 + s))
            .unwrap_or(255);
        // Before `delete` removes the cgroup.
        let oom_killed = self
            .cfg
            .cgroup_path
            .as_deref()
            .and_then(oom_kills)
            .is_some_and(|n| n > 0);
        let record = ExitRecord {
            exit_code,
            exited_at: now_rfc3339(Utc::now()),
            pid: run.pid,
            restart_count,
            oom_killed,
            error: String::new(),
        };
        drop(run);
        write_json(&self.cfg.exit_file, &record)?;
        self.delete();
        let _ = fs::remove_dir_all(self.state_dir());
        if let Some(a) = self.attach.as_mut() {
            let mut p = Vec::with_capacity(5);
            Msg::Exit(exit_code).encode(&mut p);
            a.broadcast(&p);
        }
        Ok(record)
    }

    /// Supervises the started container, restarting it as its policy says;
    /// returns the last exit record.
    pub fn supervise_with_restarts(&mut self, mut run: Run) -> Result<ExitRecord, MonitorError> {
        let mut restarts = 0;
        let mut delay = Duration::from_millis(100);
        loop {
            let began = Instant::now();
            let rec = self.supervise(run, restarts)?;
            if !self.cfg.restart.should_restart(
                rec.exit_code,
                restarts,
                stop_file(&self.cfg).exists(),
            ) {
                return Ok(rec);
            }
            if began.elapsed() >= Duration::from_secs(10) {
                delay = Duration::from_millis(100);
            }
            self.idle(delay)?;
            delay = (delay * 2).min(Duration::from_secs(60));
            if stop_file(&self.cfg).exists() {
                return Ok(rec);
            }
            restarts += 1;
            run = self.create()?;
            self.start(&run, restarts)?;
        }
    }

    /// One poll over the container's stdio and pidfd (when `run` is given),
    /// the attach socket and its clients; handles what is ready.
    fn turn(
        &mut self,
        mut run: Option<&mut Run>,
        timeout: Option<Duration>,
    ) -> Result<(), MonitorError> {
        if let Some(a) = self.attach.as_mut() {
            a.compact();
        }
        let ready: Vec<Src> = {
            let mut fds = Vec::new();
            let mut srcs = Vec::new();
            let mut read_clients = true;
            if let Some(r) = run.as_deref() {
                if let Some(f) = &r.out {
                    fds.push(PollFd::new(f, PollFlags::IN));
                    srcs.push(Src::Out);
                }
                if let Some(f) = &r.err {
                    fds.push(PollFd::new(f, PollFlags::IN));
                    srcs.push(Src::Err);
                }
                if r.status.is_none() {
                    fds.push(PollFd::new(&r.pidfd, PollFlags::IN));
                    srcs.push(Src::Pid);
                }
                if let (Some(f), false) = (&r.stdin, r.pending.is_empty()) {
                    fds.push(PollFd::new(f, PollFlags::OUT));
                    srcs.push(Src::Stdin);
                    read_clients = false;
                }
            }
            if let Some(a) = &self.attach {
                fds.push(PollFd::from_borrowed_fd(a.listener(), PollFlags::IN));
                srcs.push(Src::Listen);
                if read_clients {
                    for (i, c) in a.clients() {
                        fds.push(PollFd::from_borrowed_fd(c, PollFlags::IN));
                        srcs.push(Src::Client(i));
                    }
                }
            }
            let ts = timeout.map(|d| rustix::event::Timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: i64::from(d.subsec_nanos()),
            });
            match poll(&mut fds, ts.as_ref()) {
                Ok(_) => {}
                Err(Errno::INTR) => return Ok(()),
                Err(e) => return Err(io_err("poll")(e.into())),
            }
            fds.iter()
                .zip(srcs)
                .filter(|(p, _)| !p.revents().is_empty())
                .map(|(_, s)| s)
                .collect()
        };
        for src in ready {
            match (src, run.as_deref_mut()) {
                (Src::Out, Some(r)) => self.output(r, Stream::Stdout)?,
                (Src::Err, Some(r)) => self.output(r, Stream::Stderr)?,
                (Src::Pid, Some(r)) => {
                    if let Ok(Some((_, st))) = waitpid(Some(r.init), WaitOptions::NOHANG) {
                        r.status = Some(st);
                    }
                }
                (Src::Stdin, Some(r)) => r.flush_stdin(),
                (Src::Listen, _) => {
                    if let Some(a) = self.attach.as_mut() {
                        a.accept();
                    }
                }
                (Src::Client(i), r) if r.as_ref().is_none_or(|r| r.pending.is_empty()) => {
                    self.client(r, i)
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads one chunk of the container's output: to the log and clients.
    fn output(&mut self, run: &mut Run, stream: Stream) -> Result<(), MonitorError> {
        let fd = match stream {
            Stream::Stdout => &mut run.out,
            Stream::Stderr => &mut run.err,
        };
        let Some(f) = fd else { return Ok(()) };
        let n = match rustix::io::read(&*f, &mut self.buf[1..]) {
            Ok(n) => n,
            Err(Errno::AGAIN) | Err(Errno::INTR) => return Ok(()),
            // EIO: the pty's last slave closed.
            Err(_) => 0,
        };
        if n == 0 {
            *fd = None;
            return Ok(());
        }
        if let Some(l) = self.log.as_mut() {
            l.write(stream, &self.buf[1..=n], Utc::now())
                .map_err(io_err("write the log"))?;
        }
        if let Some(a) = self.attach.as_mut() {
            self.buf[0] = match stream {
                Stream::Stdout => attach::STDOUT,
                Stream::Stderr => attach::STDERR,
            };
            a.broadcast(&self.buf[..=n]);
        }
        Ok(())
    }

    /// Takes one message from client `i`.
    fn client(&mut self, run: Option<&mut Run>, i: usize) {
        let Some(a) = self.attach.as_mut() else {
            return;
        };
        let Some(n) = a.recv(i, &mut self.buf) else {
            return;
        };
        let msg = match Msg::decode(&self.buf[..n]) {
            Ok(m) => m,
            Err(_) => {
                a.drop_client(i);
                return;
            }
        };
        let Some(run) = run else { return };
        match msg {
            Msg::Stdin(b) if run.stdin.is_some() => {
                run.pending.extend_from_slice(b);
                run.flush_stdin();
            }
            // docker closes stdin at the client's EOF only without a tty.
            Msg::CloseStdin if !self.cfg.terminal => {
                run.stdin = None;
                run.pending.clear();
            }
            Msg::Resize { rows, cols } if self.cfg.terminal => {
                if let Some(m) = &run.out {
                    let _ = rustix::termios::tcsetwinsize(
                        m,
                        rustix::termios::Winsize {
                            ws_row: rows,
                            ws_col: cols,
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        },
                    );
                }
            }
            _ => {}
        }
    }
}

/// The OOM kill count of the cgroup at `cgroups_path` (as in config.json,
/// resolved as berth-runtime and runc do): v2 `memory.events`, else v1
/// `memory/…/memory.oom_control`; None when it cannot be read.
pub fn oom_kills(cgroups_path: &str) -> Option<u64> {
    let root = Path::new("/sys/fs/cgroup");
    let v2 = root.join("cgroup.controllers").exists();
    let (hier, file) = if v2 {
        (root.to_path_buf(), "memory.events")
    } else {
        (root.join("memory"), "memory.oom_control")
    };
    let base = if cgroups_path.starts_with('/') {
        hier
    } else {
        // Relative: below our own cgroup (v1) or its parent (v2).
        let own = fs::read_to_string("/proc/self/cgroup").ok()?;
        let own = own.lines().find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctl, path) = (p.next()?, p.next()?, p.next()?);
            let hit = if v2 {
                ctl.is_empty()
            } else {
                ctl.split(',').any(|c| c == "memory")
            };
            hit.then(|| path.to_string())
        })?;
        let d = below(&hier, &own);
        if v2 && d != hier {
            d.parent().map(Path::to_path_buf).unwrap_or(d)
        } else {
            d
        }
    };
    parse_oom_kill(&fs::read_to_string(below(&base, cgroups_path).join(file)).ok()?)
}

/// `base` joined with a cleaned cgroup path (`..` cannot climb out).
fn below(base: &Path, p: &str) -> PathBuf {
    let mut rel = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            std::path::Component::Normal(n) => rel.push(n),
            std::path::Component::ParentDir => {
                rel.pop();
            }
            _ => {}
        }
    }
    base.join(rel)
}

/// The `oom_kill N` line of `memory.events` or `memory.oom_control`.
fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

fn now_rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Writes `v` as JSON atomically (`PATH.tmp`, then rename). Not synced:
/// the rename is atomic against a crash of any process, and after a crash of
/// the host no container is running, so the records these files hold (the
/// pid, the exit) would say nothing true anyway.
fn write_json(path: &Path, v: &impl Serialize) -> Result<(), MonitorError> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let body = serde_json::to_vec(v).map_err(|e| io_err("encode record")(io::Error::other(e)))?;
    let mut f = File::create(&tmp).map_err(io_err(format!("create {}", tmp.display())))?;
    f.write_all(&body)
        .map_err(io_err(format!("write {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io_err(format!("rename {}", path.display())))?;
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, MonitorError> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| io_err(format!("parse {}", path.display()))(io::Error::other(e))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(format!("read {}", path.display()))(e)),
    }
}

/// Writes an exit record atomically, as the monitor does; for whoever
/// records the exit of a container whose monitor died.
pub fn write_exit(path: &Path, rec: &ExitRecord) -> Result<(), MonitorError> {
    write_json(path, rec)
}

/// Writes this process's PID to `path` atomically.
pub fn write_pid_file(path: &Path) -> Result<(), MonitorError> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, std::process::id().to_string())
        .map_err(io_err(format!("write {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io_err(format!("rename {}", path.display())))
}

/// Reads an exit record; None while the container has not exited.
pub fn read_exit(path: &Path) -> Result<Option<ExitRecord>, MonitorError> {
    read_json(path)
}

/// Reads a run record (the state file); None before the first start.
pub fn read_run(path: &Path) -> Result<Option<RunRecord>, MonitorError> {
    read_json(path)
}

/// The file whose existence means "stopped on purpose: do not restart".
pub fn stop_file(cfg: &MonitorConfig) -> PathBuf {
    cfg.exit_file.with_extension("stop")
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

    #[test]
    fn oom_kill_counts_of_both_cgroup_versions() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        let v2 = "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(v1), Some(2));
        assert_eq!(parse_oom_kill(v2), Some(1));
        assert_eq!(parse_oom_kill("oom_kill_disable 0\n"), None);
        assert_eq!(
            below(Path::new("/sys/fs/cgroup/memory"), "/berth/../../x/y"),
            PathBuf::from("/sys/fs/cgroup/memory/x/y")
        );
    }

    #[test]
    fn old_configs_and_records_still_parse() {
        let cfg: MonitorConfig = serde_json::from_str(
            r#"{"runtime":"r","runtimeRoot":"/r","id":"c","bundle":"/b","logPath":null,
                "logDriver":"k8s-file","logMaxSize":null,"logMaxFile":1,"exitFile":"/e"}"#,
        )
        .unwrap();
        assert!(!cfg.terminal && !cfg.stdin && !cfg.wait_attach);
        assert!(cfg.attach_socket.is_none() && cfg.state_file.is_none());
        let r: ExitRecord =
            serde_json::from_str(r#"{"exitCode":1,"exitedAt":"t","pid":5}"#).unwrap();
        assert!(!r.oom_killed);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("run.json");
        assert_eq!(read_run(&p).unwrap(), None);
        let rec = RunRecord {
            pid: 9,
            started_at: now_rfc3339(Utc::now()),
            restart_count: 1,
        };
        write_json(&p, &rec).unwrap();
        assert_eq!(read_run(&p).unwrap(), Some(rec));
        let text = fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("\"startedAt\"") && text.contains("\"restartCount\":1"),
            "{text}"
        );
    }
}
