//! The container commands: create, run, start, stop, kill, restart, rm,
//! pause, unpause, wait, ps, inspect, top, port, rename, logs, attach, exec.
//!
//! Each command opens the engine, acts on the container records and files
//! (see `berth_engine::container`) and exits; the container lives on under
//! its monitor. Exit codes are docker's: 125 when berth fails, 126 when the
//! command cannot be executed, 127 when it is not found, otherwise the
//! container's own.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use berth_engine::api::create::{CreateProgress, CreateRequest};
use berth_engine::api::logs::{parse_tail, parse_time, LogWindow, LogsRequest};
use berth_engine::api::ops::{CommitRequest, CopyEnd, ExecRequest, ExecStdio};
use berth_engine::api::ps::{self, PsRequest};
use berth_engine::api::{ApiError, ErrorKind};
use berth_engine::container::{find_binary, Container, Engine, EngineOptions};
use berth_engine::host::HostFlags;
use berth_engine::network::{Backend, NetworkOptions};
use berth_image::platform::Platform;
use berth_image::store::PullProgress;
use berth_monitor::attach::{self, RelayOptions};
use berth_monitor::logfile::{Entry, Stream};
use chrono::Utc;
use clap::Args;

use crate::format::{self, Row};
use crate::progress::Bars;
use crate::Cli;

/// The network options from the global flags.
pub fn network_options(cli: &Cli) -> NetworkOptions {
    NetworkOptions {
        config_dir: cli.network_config_dir.clone(),
        plugin_dirs: cli
            .cni_plugin_dirs
            .split(':')
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect(),
        backend: if cli.network_backend == "cni" {
            Backend::Cni
        } else {
            Backend::Fast
        },
        address_pools: cli.default_address_pools.clone(),
    }
}

/// The engine for `cli`'s root and namespace.
pub fn open_engine(cli: &Cli) -> Result<Engine> {
    let store = crate::images::open_store(cli, None)?;
    Ok(Engine::new(
        store,
        EngineOptions {
            root: cli.root.clone(),
            run_dir: cli.run_dir.clone(),
            runtime: find_binary("berth-runtime", "BERTH_RUNTIME"),
            monitor: find_binary("berth-monitor", "BERTH_MONITOR"),
            network: network_options(cli),
            namespace: cli.namespace.clone(),
        },
    ))
}

/// The flags of `create` and `run`.
#[derive(Debug, Clone, Args)]
#[command(disable_help_flag = true)]
pub struct CreateFlags {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the process a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// The container's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Replace the image's entrypoint ("" clears it).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Set a variable (KEY=VALUE, or KEY to take it from here).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read variables from a file.
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// The working directory.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// The user (name|uid[:group|gid]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// The hostname.
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// A label (KEY=VALUE).
    #[arg(short = 'l', long = "label")]
    pub labels: Vec<String>,
    /// Bind mount or volume: HOST:CTR[:ro], NAME:CTR[:ro] or CTR.
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// A tmpfs: CTR[:OPTIONS].
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Memory limit (e.g. 512m).
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory plus swap limit (-1: unlimited swap).
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CPUs (e.g. 1.5).
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight).
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<String>,
    /// CPUs to run on (0-3, 0,1).
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// The most processes (-1: unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<String>,
    /// A resource limit: NAME=SOFT[:HARD].
    #[arg(long = "ulimit")]
    pub ulimits: Vec<String>,
    /// Add a capability.
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop a capability.
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Give the container every capability and device, unconfined.
    #[arg(long)]
    pub privileged: bool,
    /// A host device: HOST[:CTR[:rwm]].
    #[arg(long = "device")]
    pub devices: Vec<String>,
    /// seccomp=PROFILE|unconfined, no-new-privileges, apparmor=, label=.
    #[arg(long = "security-opt")]
    pub security_opts: Vec<String>,
    /// Run a minimal init as PID 1 that reaps zombies and forwards signals.
    #[arg(long)]
    pub init: bool,
    /// no, on-failure[:N], always, unless-stopped.
    #[arg(long)]
    pub restart: Option<String>,
    /// The signal `stop` sends first.
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before killing.
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<u32>,
    /// json-file, k8s-file or none.
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// max-size=SIZE, max-file=N.
    #[arg(long = "log-opt")]
    pub log_opts: Vec<String>,
    /// bridge (the default), none, host, container:NAME, or networks by
    /// name (comma-separated).
    #[arg(long, alias = "net")]
    pub network: Option<String>,
    /// Publish a port: [IP:][HOSTPORT:]CTRPORT[/tcp|udp].
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes, on free host ports.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// The container's IPv4 address on its network.
    #[arg(long)]
    pub ip: Option<String>,
    /// Another runc-compatible runtime for this container.
    #[arg(long)]
    pub runtime: Option<PathBuf>,
    /// Pull the image: missing, always or never.
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// The platform of the image (os/arch[/variant]).
    #[arg(long)]
    pub platform: Option<String>,
    /// No pull progress.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// The image, then the command and its arguments (flags after the
    /// image belong to the command, as in docker).
    #[arg(
        trailing_var_arg = true,
        required = true,
        num_args = 1..,
        value_name = "IMAGE [COMMAND [ARG...]]"
    )]
    pub image_and_command: Vec<String>,
}

impl CreateFlags {
    /// The image.
    pub fn image(&self) -> &str {
        &self.image_and_command[0]
    }
    /// The command and its arguments.
    pub fn command(&self) -> &[String] {
        &self.image_and_command[1..]
    }
}

/// `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub flags: CreateFlags,
}

/// `run`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run in the background and print the container ID.
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[command(flatten)]
    pub flags: CreateFlags,
}

/// This process's environment, where the engine looks up a bare `-e KEY`.
pub fn client_env() -> std::collections::BTreeMap<String, String> {
    std::env::vars().collect()
}

/// docker's byte sizes, with `what` (the flag) named in the error.
pub fn parse_bytes(what: &str, s: &str) -> Result<u64> {
    Ok(berth_engine::api::create::parse_bytes(what, s)?)
}

/// The request of `create`/`run`'s flags.
fn create_request(f: &CreateFlags) -> Result<CreateRequest> {
    Ok(CreateRequest {
        image: f.image().to_string(),
        command: f.command().to_vec(),
        name: f.name.clone(),
        interactive: f.interactive,
        tty: f.tty,
        auto_remove: f.rm,
        entrypoint: f.entrypoint.clone(),
        env: f.env.clone(),
        env_files: f.env_file.clone(),
        client_env: client_env(),
        workdir: f.workdir.clone(),
        user: f.user.clone(),
        hostname: f.hostname.clone(),
        labels: f.labels.clone(),
        host: HostFlags {
            volumes: f.volumes.clone(),
            tmpfs: f.tmpfs.clone(),
            memory: f.memory.clone(),
            memory_swap: f.memory_swap.clone(),
            cpus: f.cpus.clone(),
            cpu_shares: f.cpu_shares.clone(),
            cpuset_cpus: f.cpuset_cpus.clone(),
            pids_limit: f.pids_limit.clone(),
            ulimits: f.ulimits.clone(),
            devices: f.devices.clone(),
            network: f.network.clone(),
            ip: f.ip.clone(),
            publish: f.publish.clone(),
            publish_all: f.publish_all,
            security_opts: f.security_opts.clone(),
        },
        read_only: f.read_only,
        cap_add: f.cap_add.clone(),
        cap_drop: f.cap_drop.clone(),
        privileged: f.privileged,
        init: f.init,
        restart: f.restart.clone(),
        stop_signal: f.stop_signal.clone(),
        stop_timeout: f.stop_timeout,
        log_driver: f.log_driver.clone(),
        log_opts: f.log_opts.clone(),
        runtime: f.runtime.clone(),
        pull: f.pull.parse()?,
        platform: f.platform.clone(),
    })
}

/// A pull's progress on stderr: a line, then bars on a terminal.
struct PullReport {
    quiet: bool,
    bars: Option<Bars>,
}

impl PullProgress for PullReport {
    fn layer(&self, d: &berth_image::digest::Digest, size: u64, present: bool) {
        if let Some(b) = &self.bars {
            b.layer(d, size, present)
        }
    }
    fn advance(&self, d: &berth_image::digest::Digest, n: u64) {
        if let Some(b) = &self.bars {
            b.advance(d, n)
        }
    }
    fn done(&self, d: &berth_image::digest::Digest) {
        if let Some(b) = &self.bars {
            b.done(d)
        }
    }
}

impl CreateProgress for PullReport {
    fn pulling(&self, image: &str) {
        if !self.quiet {
            eprintln!("Unable to find image '{image}' locally; pulling it");
        }
    }
}

/// Makes the container from the flags; returns it.
fn create_container(engine: &Engine, f: &CreateFlags, detach: bool) -> Result<Container> {
    let r = create_request(f)?;
    let quiet = f.quiet || detach;
    let progress = PullReport {
        quiet,
        bars: Bars::new(quiet, "Downloading"),
    };
    Ok(engine.create_container(&r, &progress)?)
}

pub fn create(cli: &Cli, a: &CreateArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let c = create_container(&engine, &a.flags, false)?;
    println!("{}", c.id());
    Ok(ExitCode::SUCCESS)
}

/// The `berth rm -f ID` a detached `--rm` container's monitor runs when it
/// exits for good.
fn exit_command(cli: &Cli, c: &Container) -> Vec<String> {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "berth".into());
    vec![
        exe,
        "--root".into(),
        cli.root.display().to_string(),
        "--run-dir".into(),
        cli.run_dir.display().to_string(),
        "--snapshotter".into(),
        cli.snapshotter.clone(),
        "--network-config-dir".into(),
        cli.network_config_dir.display().to_string(),
        "--cni-plugin-dir".into(),
        cli.cni_plugin_dirs.clone(),
        "--network-backend".into(),
        cli.network_backend.clone(),
        "--namespace".into(),
        cli.namespace.to_string(),
        "rm".into(),
        "--force".into(),
        "--volumes".into(),
        c.id().to_string(),
    ]
}

pub fn run(cli: &Cli, a: &RunArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let f = &a.flags;
    let c = create_container(&engine, f, a.detach)?;
    if a.detach {
        let exit_cmd = if f.rm {
            exit_command(cli, &c)
        } else {
            Vec::new()
        };
        engine.start_detached(&c, &exit_cmd)?;
        println!("{}", c.id());
        return Ok(ExitCode::SUCCESS);
    }
    let code = match foreground(&engine, &c, f.interactive) {
        Ok(code) => code,
        Err(e) => {
            if f.rm {
                let _ = engine.remove_container(&c, true, true);
            }
            return Err(e);
        }
    };
    if f.rm {
        engine
            .remove_after_run(&c)
            .with_context(|| format!("removing container {}", c.name()))?;
    }
    Ok(ExitCode::from(code as u8))
}

/// Starts `c` with its output (and stdin, with `stdin`) relayed here, from
/// its first byte, until it exits; returns its exit code.
fn foreground(engine: &Engine, c: &Container, stdin: bool) -> Result<i32> {
    let fd = engine.start_attached(c)?;
    // Only now: the monitor must not inherit the blocked signals.
    proxy_signals(engine, c)?;
    let opts = RelayOptions {
        stdin,
        close_stdin: stdin,
        tty: c.config.tty,
        until_exit: true,
    };
    match attach::relay_fd(fd, &opts).with_context(|| format!("attached to {}", c.name()))? {
        Some(code) => Ok(code),
        // Dropped by the monitor (too slow a reader) or its end: the exit
        // record tells.
        None => Ok(engine.exit_after_attach(c)?),
    }
}

/// Forwards the signals this process gets (INT, TERM, HUP, QUIT, USR1,
/// USR2) to the container's init, as docker's `--sig-proxy` does: they are
/// blocked here and taken by a thread that sends them through the engine.
fn proxy_signals(engine: &Engine, c: &Container) -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        set.add(s);
    }
    set.thread_block()
        .context("blocking signals to proxy them")?;
    let signaller = engine.signaller(c);
    std::thread::spawn(move || loop {
        let Ok(sig) = set.wait() else { return };
        let _ = signaller.send(sig as i32);
    });
    Ok(())
}

/// `attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Do not forward stdin.
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Accepted for docker compatibility (signals are not proxied).
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    /// The container.
    pub container: String,
}

pub fn attach_cmd(cli: &Cli, a: &AttachArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let c = engine.get(&a.container)?;
    let fd = engine.attach_running(&c)?;
    let opts = RelayOptions {
        stdin: !a.no_stdin && c.config.open_stdin,
        close_stdin: false,
        tty: c.config.tty,
        until_exit: true,
    };
    let code =
        match attach::relay_fd(fd, &opts).with_context(|| format!("attaching to {}", c.name()))? {
            Some(code) => code,
            None => engine.exit_after_attach(&c)?,
        };
    Ok(ExitCode::from(code as u8))
}

/// `start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach to the output and wait for the exit.
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach stdin.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn start(cli: &Cli, a: &StartArgs) -> Result<ExitCode> {
    if a.attach || a.interactive {
        if a.containers.len() != 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        let engine = open_engine(cli)?;
        let c = engine.get(&a.containers[0])?;
        let code = foreground(&engine, &c, a.interactive)?;
        return Ok(ExitCode::from(code as u8));
    }
    each(cli, &a.containers, |e, c| e.start_container(c))
}

fn exit_for(failed: bool) -> ExitCode {
    if failed {
        ExitCode::from(125)
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs `f` on each named container, printing the name as given on
/// success, as docker does.
fn each(
    cli: &Cli,
    names: &[String],
    mut f: impl FnMut(&Engine, &Container) -> Result<(), ApiError>,
) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let mut failed = false;
    for what in names {
        match engine
            .get(what)
            .map_err(ApiError::from)
            .and_then(|c| f(&engine, &c))
        {
            Ok(()) => println!("{what}"),
            Err(e) => {
                eprintln!("Error: {}", crate::message(&e.into()));
                failed = true;
            }
        }
    }
    Ok(exit_for(failed))
}

/// `stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing.
    #[arg(short = 't', long = "time", alias = "timeout")]
    pub time: Option<u32>,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn stop(cli: &Cli, a: &StopArgs) -> Result<ExitCode> {
    each(cli, &a.containers, |e, c| e.stop_container(c, a.time))
}

/// `restart`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Seconds to wait before killing.
    #[arg(short = 't', long = "time", alias = "timeout")]
    pub time: Option<u32>,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn restart(cli: &Cli, a: &RestartArgs) -> Result<ExitCode> {
    each(cli, &a.containers, |e, c| e.restart_container(c, a.time))
}

/// `kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// The signal (name or number).
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn kill(cli: &Cli, a: &KillArgs) -> Result<ExitCode> {
    // A bad signal fails before any container is looked at.
    berth_engine::api::create::signal_number(&a.signal)
        .with_context(|| format!("invalid --signal {:?}", a.signal))?;
    each(cli, &a.containers, |e, c| e.kill_container(c, &a.signal))
}

/// `pause`.
#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn pause(cli: &Cli, a: &PauseArgs) -> Result<ExitCode> {
    each(cli, &a.containers, |e, c| Ok(e.pause(c)?))
}

pub fn unpause(cli: &Cli, a: &PauseArgs) -> Result<ExitCode> {
    each(cli, &a.containers, |e, c| Ok(e.unpause(c)?))
}

/// `rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill a running container first.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove its anonymous volumes too.
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn rm(cli: &Cli, a: &RmArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    // podman's codes: 1 when a container did not exist, 2 when one is
    // running, 125 for any other failure.
    let mut code = 0u8;
    for what in &a.containers {
        let r = engine
            .get(what)
            .map_err(ApiError::from)
            .and_then(|c| engine.remove_container(&c, a.force, a.volumes));
        match r {
            Ok(()) => println!("{what}"),
            // `rm -f` of a container that is gone is not an error (docker).
            Err(e) if a.force && e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                let this = if e.kind() == ErrorKind::NotFound {
                    1
                } else if e.is_running_conflict() {
                    2
                } else {
                    125
                };
                eprintln!("Error: {}", crate::message(&e.into()));
                code = code.max(this);
            }
        }
    }
    Ok(ExitCode::from(code))
}

/// `wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn wait(cli: &Cli, a: &WaitArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let mut failed = false;
    for what in &a.containers {
        match engine.get(what) {
            Ok(c) => println!("{}", engine.wait_exit(&c).exit_code),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    Ok(exit_for(failed))
}

/// `rename`.
#[derive(Debug, Args)]
pub struct RenameArgs {
    /// The container.
    pub container: String,
    /// Its new name.
    pub new_name: String,
}

pub fn rename(cli: &Cli, a: &RenameArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let c = engine.get(&a.container)?;
    engine.rename(&c, &a.new_name)?;
    Ok(ExitCode::SUCCESS)
}

/// `ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show every container (the default shows running ones).
    #[arg(short, long)]
    pub all: bool,
    /// Only IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Template, `table TEMPLATE` or json.
    #[arg(long)]
    pub format: Option<String>,
    /// KEY=VALUE: id, name, status, ancestor, exited, label.
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Full IDs and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only the last N created.
    #[arg(short = 'n', long = "last")]
    pub last: Option<usize>,
    /// Only the last created.
    #[arg(short, long)]
    pub latest: bool,
}

fn quote_command(argv: &[String]) -> String {
    argv.join(" ")
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n.saturating_sub(1)).collect();
        format!("{t}…")
    }
}

pub fn ps(cli: &Cli, a: &PsArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let r = PsRequest {
        all: a.all,
        filters: a
            .filter
            .iter()
            .map(|f| f.parse())
            .collect::<Result<_, _>>()?,
        last: if a.latest { Some(1) } else { a.last },
    };
    let now = Utc::now();
    let mut rows = Vec::new();
    for p in engine.ps(&r)? {
        let (c, st) = (&p.container, &p.state);
        let mut r = Row::new();
        let id = if a.no_trunc {
            c.id().to_string()
        } else {
            c.id()[..12].to_string()
        };
        let cmd = quote_command(&c.record.command);
        let created = ps::parse_rfc3339(&c.record.created).unwrap_or(now);
        r.insert("ID", id);
        r.insert("Image", c.record.image.clone());
        r.insert(
            "Command",
            if a.no_trunc {
                format!("\"{cmd}\"")
            } else {
                format!("\"{}\"", truncate(&cmd, 20))
            },
        );
        r.insert(
            "CreatedAt",
            created.format("%Y-%m-%d %H:%M:%S %z UTC").to_string(),
        );
        r.insert("RunningFor", format::ago(created, now));
        r.insert("Status", ps::status_text(st, now));
        r.insert("State", st.status.to_string());
        r.insert(
            "Ports",
            p.ports
                .iter()
                .map(|m| {
                    format!(
                        "{}:{}->{}/{}",
                        m.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                        m.host_port,
                        m.container_port,
                        m.protocol
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        );
        r.insert("Names", c.name().to_string());
        r.insert(
            "Labels",
            c.config
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        );
        r.insert("Networks", c.config.network.clone());
        rows.push(r);
    }
    if a.quiet {
        for r in &rows {
            println!("{}", r["ID"]);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let cols = [
        ("ID", "CONTAINER ID"),
        ("Image", "IMAGE"),
        ("Command", "COMMAND"),
        ("RunningFor", "CREATED"),
        ("Status", "STATUS"),
        ("Ports", "PORTS"),
        ("Names", "NAMES"),
    ];
    print!("{}", format::render(&rows, &cols, a.format.as_deref())?);
    Ok(ExitCode::SUCCESS)
}

/// `inspect` (containers, then images).
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Go-template-like format: {{.State.Status}}, {{json .Config}}.
    #[arg(short, long)]
    pub format: Option<String>,
    /// container or image (default: either).
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Containers or images.
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub fn inspect(cli: &Cli, a: &InspectArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let mut out = Vec::new();
    let want = a.kind.as_deref();
    if let Some(k) = want {
        if !matches!(k, "container" | "image") {
            bail!("invalid --type {k:?}: use container or image");
        }
    }
    for name in &a.names {
        if want != Some("image") {
            match engine.get(name) {
                Ok(c) => {
                    out.push(engine.inspect_container(&c));
                    continue;
                }
                Err(e) if want == Some("container") => return Err(e.into()),
                Err(_) => {}
            }
        }
        let img = engine
            .store()
            .get(name, &Platform::host())
            .with_context(|| format!("no such container or image: {name}"))?;
        out.push(crate::images::inspect_json(&img));
    }
    match &a.format {
        None => println!("{}", serde_json::to_string_pretty(&out)?),
        Some(f) => {
            for v in &out {
                println!("{}", format::template_value(f, v)?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// The container, then `ps` options (default -ef).
    #[arg(
        trailing_var_arg = true,
        required = true,
        num_args = 1..,
        value_name = "CONTAINER [PS OPTIONS...]"
    )]
    pub container_and_args: Vec<String>,
}

pub fn top(cli: &Cli, a: &TopArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let c = engine.get(&a.container_and_args[0])?;
    let out = engine.top(&c, &a.container_and_args[1..])?;
    io::stdout().write_all(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// `port`.
#[derive(Debug, Args)]
pub struct PortArgs {
    /// The container.
    pub container: String,
    /// PORT[/PROTO].
    pub port: Option<String>,
}

pub fn port(cli: &Cli, a: &PortArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let c = engine.get(&a.container)?;
    let ports = engine.published_ports(&c, a.port.as_deref())?;
    for m in &ports {
        if a.port.is_some() {
            println!(
                "{}:{}",
                m.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                m.host_port
            );
        } else {
            println!("{m}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container exits.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines ("all" for every line).
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Only output since TIME (RFC 3339, Unix seconds, or 10m ago style 10m).
    #[arg(long)]
    pub since: Option<String>,
    /// Only output before TIME.
    #[arg(long)]
    pub until: Option<String>,
    /// Prefix each line with its time.
    #[arg(short, long)]
    pub timestamps: bool,
    /// The container.
    pub container: String,
}

pub fn logs(cli: &Cli, a: &LogsArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let c = engine.get(&a.container)?;
    let now = Utc::now();
    let r = LogsRequest {
        window: LogWindow {
            tail: parse_tail(&a.tail)?,
            since: a.since.as_deref().map(|s| parse_time(s, now)).transpose()?,
            until: a.until.as_deref().map(|s| parse_time(s, now)).transpose()?,
        },
        follow: a.follow,
    };
    let stdout = io::stdout();
    let stderr = io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let mut print = |e: &Entry| -> io::Result<()> {
        let w: &mut dyn Write = match e.stream {
            Stream::Stdout => &mut out,
            Stream::Stderr => &mut err,
        };
        if a.timestamps {
            write!(
                w,
                "{} ",
                e.time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
            )?;
        }
        w.write_all(&e.line)?;
        w.flush()
    };
    engine.logs(&c, &r, &mut print)?;
    Ok(ExitCode::SUCCESS)
}

/// `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Run in the background.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the process a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set a variable (KEY=VALUE, or KEY to take it from here).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read variables from a file.
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// The user (name|uid[:group|gid]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// The working directory.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// The container, then the command and its arguments.
    #[arg(
        trailing_var_arg = true,
        required = true,
        num_args = 2..,
        value_name = "CONTAINER COMMAND [ARG...]"
    )]
    pub container_and_command: Vec<String>,
}

impl ExecArgs {
    fn container(&self) -> &str {
        &self.container_and_command[0]
    }
    fn command(&self) -> &[String] {
        &self.container_and_command[1..]
    }
}

pub fn exec(cli: &Cli, a: &ExecArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let c = engine.get(a.container())?;
    let r = ExecRequest {
        command: a.command().to_vec(),
        env: a.env.clone(),
        env_files: a.env_file.clone(),
        client_env: client_env(),
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        tty: a.tty,
        detach: a.detach,
    };
    let code = engine.exec(&c, &r, ExecStdio::inherit(a.interactive))?;
    Ok(ExitCode::from(code as u8))
}

/// `cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Keep the source's uid and gid.
    #[arg(short, long)]
    pub archive: bool,
    /// Follow a symlink source path.
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// CONTAINER:SRC, a host path, or - (a tar stream on stdin).
    pub src: String,
    /// CONTAINER:DEST, a host path, or - (a tar stream on stdout).
    pub dest: String,
}

/// `CONTAINER:PATH` (a colon before any slash), else None (a host path).
fn container_path(arg: &str) -> Option<(&str, &str)> {
    let (c, p) = arg.split_once(':')?;
    (!c.is_empty() && !c.contains('/')).then_some((c, p))
}

/// A host path made absolute (relative to the working directory).
fn host_path(p: &str) -> Result<String> {
    if p.starts_with('/') {
        return Ok(p.to_string());
    }
    let cwd = std::env::current_dir().context("reading the working directory")?;
    let mut s = cwd.join(p).display().to_string();
    if p.ends_with('/') && !s.ends_with('/') {
        s.push('/');
    }
    if (p == "." || p.ends_with("/.")) && !s.ends_with("/.") {
        s.push_str("/.");
    }
    Ok(s)
}

pub fn cp(cli: &Cli, a: &CpArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let o = berth_engine::files::CopyOptions {
        archive: a.archive,
        follow_link: a.follow_link,
    };
    match (container_path(&a.src), container_path(&a.dest)) {
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("one of the paths must name a container: CONTAINER:PATH"),
        (Some((name, path)), None) => {
            let c = engine.get(name)?;
            if a.dest == "-" {
                engine.copy_out_tar(&c, path, a.follow_link, io::stdout().lock())?;
            } else {
                let dest = host_path(&a.dest)?;
                engine.copy(CopyEnd::Container(&c, path), CopyEnd::Host(&dest), o)?;
            }
        }
        (None, Some((name, path))) => {
            let c = engine.get(name)?;
            if a.src == "-" {
                engine.copy_in_tar(&c, path, io::stdin().lock())?;
            } else {
                let src = host_path(&a.src)?;
                engine.copy(CopyEnd::Host(&src), CopyEnd::Container(&c, path), o)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to this file instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// The container.
    pub container: String,
}

pub fn export(cli: &Cli, a: &ExportArgs) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let engine = open_engine(cli)?;
    let c = engine.get(&a.container)?;
    match &a.output {
        Some(p) => {
            let f =
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
            let mut w = io::BufWriter::new(f);
            engine.export_container(&c, &mut w)?;
            w.flush()
                .with_context(|| format!("writing {}", p.display()))?;
        }
        None => {
            if io::stdout().is_terminal() {
                bail!(
                    "refusing to write a tar archive to a terminal: use -o FILE or redirect stdout"
                );
            }
            let mut w = io::BufWriter::new(io::stdout().lock());
            engine.export_container(&c, &mut w)?;
            w.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `commit`.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// The author.
    #[arg(short, long)]
    pub author: Option<String>,
    /// A commit message (the history entry's comment).
    #[arg(short, long)]
    pub message: Option<String>,
    /// A Dockerfile instruction to apply: CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR.
    #[arg(short, long = "change")]
    pub changes: Vec<String>,
    /// Pause a running container while committing.
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pause: bool,
    /// The container.
    pub container: String,
    /// The new image's name (REPOSITORY[:TAG]).
    pub reference: Option<String>,
}

pub fn commit(cli: &Cli, a: &CommitArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let c = engine.get(&a.container)?;
    let id = engine.commit_container(
        &c,
        &CommitRequest {
            options: berth_engine::commit::CommitOptions {
                reference: a.reference.clone(),
                author: a.author.clone(),
                message: a.message.clone(),
                changes: a.changes.clone(),
            },
            pause: a.pause,
        },
    )?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// The exit code for a failed command: 127/126 when the container's
/// command cannot be run, else 125.
pub fn error_code(e: &anyhow::Error) -> u8 {
    for c in e.chain() {
        if let Some(code) = c
            .downcast_ref::<ApiError>()
            .and_then(ApiError::command_exit_code)
        {
            return code;
        }
        if let Some(berth_engine::container::ContainerError::Command(ce)) =
            c.downcast_ref::<berth_engine::container::ContainerError>()
        {
            return ce.exit_code();
        }
        if let Some(ce) = c.downcast_ref::<berth_engine::command::CommandError>() {
            return ce.exit_code();
        }
    }
    125
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_after_the_image_belong_to_the_command() {
        use clap::Parser;
        let cli = crate::Cli::try_parse_from([
            "berth",
            "run",
            "--rm",
            "-e",
            "A=1",
            "busybox",
            "sh",
            "-c",
            "echo -c --rm",
            "-t",
        ])
        .unwrap();
        let crate::Command::Run(r) = cli.command else {
            panic!("not run")
        };
        assert!(r.flags.rm && !r.flags.tty);
        assert_eq!(r.flags.image(), "busybox");
        assert_eq!(r.flags.command(), ["sh", "-c", "echo -c --rm", "-t"]);
        let cli = crate::Cli::try_parse_from(["berth", "exec", "-i", "web", "ls", "-la"]).unwrap();
        let crate::Command::Exec(e) = cli.command else {
            panic!("not exec")
        };
        assert!(e.interactive);
        assert_eq!(
            (e.container(), e.command()),
            ("web", &["ls".to_string(), "-la".to_string()][..])
        );
        assert!(crate::Cli::try_parse_from(["berth", "exec", "web"]).is_err());
        assert!(crate::Cli::try_parse_from(["berth", "run", "--rm"]).is_err());
    }

    #[test]
    fn container_paths() {
        assert_eq!(container_path("web:/etc"), Some(("web", "/etc")));
        assert_eq!(container_path("./a:b"), None);
        assert_eq!(container_path(":x"), None);
        assert_eq!(host_path("/x").unwrap(), "/x");
    }
}
