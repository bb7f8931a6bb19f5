//! The container commands: create, run, start, stop, kill, restart, rm,
//! pause, unpause, wait, ps, inspect, top, port, rename, logs, attach, exec.
//!
//! Each command opens the engine, acts on the container records and files
//! (see `berth_engine::container`) and exits; the container lives on under
//! its monitor. Exit codes are docker's: 125 when berth fails, 126 when the
//! command cannot be executed, 127 when it is not found, otherwise the
//! container's own.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_engine::bundle::BundleOptions;
use berth_engine::container::{
    find_binary, Container, ContainerConfig, CreateOptions, Engine, EngineOptions, State, Status,
};
use berth_engine::host::{HostConfig, HostFlags};
use berth_engine::network::{Backend, NetworkOptions};
use berth_engine::process::ProcessFlags;
use berth_engine::spec::SecurityFlags;
use berth_engine::volumes::VolumeStore;
use berth_image::platform::Platform;
use berth_image::store::{ImageError, LocalImage, NoProgress, PullProgress};
use berth_monitor::attach::{self, RelayOptions};
use berth_monitor::logfile::{self, Entry, Format, Stream};
use berth_monitor::run::RestartPolicy;
use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::Value;

use crate::format::{self, Row};
use crate::progress::Bars;
use crate::Cli;

/// The engine for `cli`'s root.
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

/// Reads `--env-file` files: `KEY=VALUE` lines, `#` comments, and bare
/// `KEY` taken from this process's environment.
fn env_files(files: &[PathBuf]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading --env-file {}", f.display()))?;
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.extend(env_value(line));
        }
    }
    Ok(out)
}

/// `KEY=VALUE` as is; `KEY` from this process's environment, or nothing.
fn env_value(s: &str) -> Option<String> {
    if s.contains('=') {
        return Some(s.to_string());
    }
    std::env::var(s).ok().map(|v| format!("{s}={v}"))
}

/// docker's byte sizes (`10`, `10k`, `2m`, `1.5g`, `10MB`: powers of
/// 1024), with `what` (the flag) named in the error.
pub fn parse_bytes(what: &str, s: &str) -> Result<u64> {
    berth_engine::host::parse_bytes(s)
        .map(|n| n as u64)
        .map_err(|e| anyhow::anyhow!("invalid {what} {s:?}: {e}"))
}

/// The security flags and the parsed host flags (mounts, resources,
/// devices, network, `--security-opt`).
fn security_and_host(f: &CreateFlags) -> Result<(SecurityFlags, HostConfig)> {
    let mut s = SecurityFlags {
        privileged: f.privileged,
        cap_add: f.cap_add.clone(),
        cap_drop: f.cap_drop.clone(),
        read_only: f.read_only,
        ..SecurityFlags::default()
    };
    let flags = HostFlags {
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
    };
    let host = flags.parse(&mut s)?;
    Ok((s, host))
}

/// The image for `name`, pulled first as `policy` says.
fn image_for(
    cli: &Cli,
    engine: &Engine,
    name: &str,
    policy: &str,
    platform: Option<&str>,
    quiet: bool,
) -> Result<LocalImage> {
    let platform = match platform {
        Some(p) => p.parse::<Platform>()?,
        None => Platform::host(),
    };
    let store = engine.store();
    let local = match policy {
        "always" => None,
        "missing" | "never" => match store.get(name, &platform) {
            Ok(img) => Some(img),
            Err(ImageError::NotFound(_)) => None,
            Err(e) => return Err(e).with_context(|| format!("looking up image {name}")),
        },
        other => bail!("invalid --pull {other:?}: use missing, always or never"),
    };
    if let Some(img) = local {
        return Ok(img);
    }
    if policy == "never" {
        bail!("image {name} is not present locally, and --pull=never forbids pulling it");
    }
    if !quiet {
        eprintln!("Unable to find image '{name}' locally; pulling it");
    }
    let bars = Bars::new(quiet, "Downloading");
    let progress: &dyn PullProgress = match &bars {
        Some(b) => b,
        None => &NoProgress,
    };
    let _ = cli;
    store
        .pull(name, &platform, progress)
        .with_context(|| format!("pulling image {name}"))
}

/// Makes the container from the flags; returns it.
fn create_container(
    cli: &Cli,
    engine: &Engine,
    f: &CreateFlags,
    detach: bool,
) -> Result<Container> {
    let restart = match &f.restart {
        Some(r) => RestartPolicy::parse(r).map_err(|e| anyhow::anyhow!("--restart: {e}"))?,
        None => RestartPolicy::parse("no").expect("valid"),
    };
    if f.rm && restart.name != "no" {
        bail!("conflicting options: --restart and --rm");
    }
    let log_driver = f.log_driver.clone().unwrap_or_else(|| "json-file".into());
    if !matches!(log_driver.as_str(), "json-file" | "k8s-file" | "none") {
        bail!("invalid --log-driver {log_driver:?}: use json-file, k8s-file or none");
    }
    let mut log_max_size = None;
    let mut log_max_file = 1;
    for o in &f.log_opts {
        match o.split_once('=') {
            Some(("max-size", v)) => log_max_size = Some(parse_bytes("--log-opt max-size", v)?),
            Some(("max-file", v)) => {
                log_max_file = v.parse::<u32>().ok().filter(|n| *n >= 1).with_context(|| {
                    format!("invalid --log-opt max-file {v:?}: use a number ≥ 1")
                })?
            }
            _ => bail!("invalid --log-opt {o:?}: use max-size=SIZE or max-file=N"),
        }
    }
    if let Some(s) = &f.stop_signal {
        signal_number(s).with_context(|| format!("invalid --stop-signal {s:?}"))?;
    }
    let mut labels = BTreeMap::new();
    for l in &f.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    if let Some(rt) = &f.runtime {
        if !rt.is_file() {
            bail!("--runtime {}: no such file", rt.display());
        }
    }
    let (security, host) = security_and_host(f)?;
    let mut env = env_files(&f.env_file)?;
    env.extend(f.env.iter().filter_map(|e| env_value(e)));
    let entrypoint = f.entrypoint.as_ref().map(|e| {
        if e.is_empty() {
            Vec::new()
        } else {
            vec![e.clone()]
        }
    });
    let img = image_for(
        cli,
        engine,
        f.image(),
        &f.pull,
        f.platform.as_deref(),
        f.quiet || detach,
    )?;
    let process = ProcessFlags {
        entrypoint: entrypoint.clone(),
        cmd: f.command().to_vec(),
        env,
        workdir: f.workdir.clone(),
        user: f.user.clone(),
        tty: f.tty,
    };
    let image_cfg = img.config.config.clone().unwrap_or_default();
    let config = ContainerConfig {
        runtime: f.runtime.clone().unwrap_or_default(),
        tty: f.tty,
        open_stdin: f.interactive,
        stop_signal: f.stop_signal.clone().unwrap_or_default(),
        stop_timeout: f.stop_timeout.unwrap_or(10),
        restart,
        auto_remove: f.rm,
        log_driver,
        log_max_size,
        log_max_file,
        user: f
            .user
            .clone()
            .or(image_cfg.user.clone())
            .unwrap_or_default(),
        entrypoint: entrypoint.or(image_cfg.entrypoint.clone()),
        cmd: if f.command().is_empty() && f.entrypoint.is_none() {
            image_cfg.cmd.clone().unwrap_or_default()
        } else {
            f.command().to_vec()
        },
        hostname: f.hostname.clone().unwrap_or_default(),
        labels,
        network: host.network.mode(),
        init: f.init,
        ..ContainerConfig::default()
    };
    let o = CreateOptions {
        image_name: f.image().to_string(),
        name: f.name.clone(),
        bundle: BundleOptions {
            id: String::new(),
            hostname: f.hostname.clone(),
            process,
            security,
            cgroups_path: None,
            host,
            volumes: VolumeStore::new(&cli.root),
            init: if f.init {
                Some(berth_engine::init::find_binary()?)
            } else {
                None
            },
        },
        config,
    };
    Ok(engine.create(&img, o)?)
}

pub fn create(cli: &Cli, a: &CreateArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let c = create_container(cli, &engine, &a.flags, false)?;
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
        "rm".into(),
        "--force".into(),
        "--volumes".into(),
        c.id().to_string(),
    ]
}

pub fn run(cli: &Cli, a: &RunArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let f = &a.flags;
    let c = create_container(cli, &engine, f, a.detach)?;
    if a.detach {
        let exit_cmd = if f.rm {
            exit_command(cli, &c)
        } else {
            Vec::new()
        };
        if let Err(e) = engine.start(&c, false, &exit_cmd) {
            if f.rm {
                let _ = engine.remove(&c, true);
            }
            return Err(e.into());
        }
        println!("{}", c.id());
        return Ok(ExitCode::SUCCESS);
    }
    let code = match foreground(&engine, &c, f.interactive) {
        Ok(code) => code,
        Err(e) => {
            if f.rm {
                let _ = engine.remove(&c, true);
            }
            return Err(e);
        }
    };
    if f.rm {
        engine.wait_monitor_gone(&c, Duration::from_secs(30));
        engine
            .remove(&c, true)
            .with_context(|| format!("removing container {}", c.name()))?;
    }
    Ok(ExitCode::from(code as u8))
}

/// Starts `c` with its output (and stdin, with `stdin`) attached here, from
/// its first byte, until it exits; returns its exit code.
fn foreground(engine: &Engine, c: &Container, stdin: bool) -> Result<i32> {
    engine.start(c, true, &[])?;
    // Only now: the monitor must not inherit the blocked signals.
    proxy_signals(engine, c)?;
    let sock = engine.attach_socket(c.id());
    let fd = attach::connect(&sock).with_context(|| format!("attaching to {}", c.name()))?;
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
        None => exit_after_hangup(engine, c),
    }
}

/// Forwards the signals this process gets (INT, TERM, HUP, QUIT, USR1,
/// USR2) to the container's init, as docker's `--sig-proxy` does: they are
/// blocked here and taken by a thread that runs the runtime's `kill`.
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
    let rt = engine.runtime_of(c);
    let root = engine.runtime_root();
    let id = c.id().to_string();
    std::thread::spawn(move || loop {
        let Ok(sig) = set.wait() else { return };
        let _ = Command::new(&rt)
            .arg("--root")
            .arg(&root)
            .arg("kill")
            .arg(&id)
            .arg((sig as i32).to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    });
    Ok(())
}

/// The exit code once the monitor has hung up on us.
fn exit_after_hangup(engine: &Engine, c: &Container) -> Result<i32> {
    loop {
        let st = engine.state(c);
        match st.status {
            Status::Exited | Status::Restarting => return Ok(st.exit_code),
            Status::Created if engine.monitor_pid(c.id()).is_none() => {
                let err = std::fs::read_to_string(engine.dir(c.id()).join("monitor.err"))
                    .unwrap_or_default();
                bail!(
                    "container {} did not start: {}",
                    c.name(),
                    err.trim().trim_start_matches("berth-monitor: ")
                );
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
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
    let st = engine.state(&c);
    if !matches!(st.status, Status::Running | Status::Paused) {
        bail!(
            "you cannot attach to container {}: it is {}",
            c.name(),
            st.status
        );
    }
    let stdin = !a.no_stdin && c.config.open_stdin;
    let opts = RelayOptions {
        stdin,
        close_stdin: false,
        tty: c.config.tty,
        until_exit: true,
    };
    let code = match attach::relay(&engine.attach_socket(c.id()), &opts)
        .with_context(|| format!("attaching to {}", c.name()))?
    {
        Some(code) => code,
        None => exit_after_hangup(&engine, &c)?,
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
    let engine = open_engine(cli)?;
    if a.attach || a.interactive {
        if a.containers.len() != 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        let c = engine.get(&a.containers[0])?;
        let code = foreground(&engine, &c, a.interactive)?;
        return Ok(ExitCode::from(code as u8));
    }
    let mut failed = false;
    for what in &a.containers {
        let r = engine.get(what).map_err(anyhow::Error::from).and_then(|c| {
            if engine.state(&c).is_active() {
                return Ok(());
            }
            engine.start(&c, false, &[]).map(|_| ()).map_err(Into::into)
        });
        match r {
            Ok(()) => println!("{what}"),
            Err(e) => {
                eprintln!("Error: {}", crate::message(&e));
                failed = true;
            }
        }
    }
    Ok(exit_for(failed))
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
    mut f: impl FnMut(&Engine, &Container) -> Result<()>,
) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let mut failed = false;
    for what in names {
        match engine
            .get(what)
            .map_err(anyhow::Error::from)
            .and_then(|c| f(&engine, &c))
        {
            Ok(()) => println!("{what}"),
            Err(e) => {
                eprintln!("Error: {}", crate::message(&e));
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
    each(cli, &a.containers, |e, c| {
        e.stop(c, a.time)?;
        Ok(())
    })
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
    each(cli, &a.containers, |e, c| {
        e.stop(c, a.time)?;
        e.wait_monitor_gone(c, Duration::from_secs(30));
        e.start(c, false, &[])?;
        Ok(())
    })
}

/// A signal name (`TERM`, `SIGTERM`) or number to its number.
pub fn signal_number(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        bail!("signal {n} is out of range");
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let sig: nix::sys::signal::Signal = format!("SIG{name}")
        .parse()
        .map_err(|_| anyhow::anyhow!("unknown signal {s:?}"))?;
    Ok(sig as i32)
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
    let n = signal_number(&a.signal).with_context(|| format!("invalid --signal {:?}", a.signal))?;
    each(cli, &a.containers, |e, c| {
        e.kill(c, &n.to_string())?;
        Ok(())
    })
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
        let r = engine.get(what).map_err(anyhow::Error::from).and_then(|c| {
            let vols = engine.remove(&c, a.force)?;
            if a.volumes {
                remove_anonymous_volumes(cli, &engine, &vols)?;
            }
            Ok(())
        });
        match r {
            Ok(()) => println!("{what}"),
            // `rm -f` of a container that is gone is not an error (docker).
            Err(e) if a.force && is_not_found(&e) => {}
            Err(e) => {
                eprintln!("Error: {}", crate::message(&e));
                let this = if is_not_found(&e) {
                    1
                } else if e.chain().any(|c| {
                    matches!(
                        c.downcast_ref::<berth_engine::container::ContainerError>(),
                        Some(berth_engine::container::ContainerError::State { .. })
                    )
                }) {
                    2
                } else {
                    125
                };
                code = code.max(this);
            }
        }
    }
    Ok(ExitCode::from(code))
}

/// Removes the anonymous volumes of a removed container, unless another
/// container mounts them.
fn remove_anonymous_volumes(cli: &Cli, engine: &Engine, vols: &[String]) -> Result<()> {
    if vols.is_empty() {
        return Ok(());
    }
    let records: Vec<_> = engine.list()?.into_iter().map(|c| c.record).collect();
    let in_use = berth_engine::volumes::in_use(&records);
    let store = VolumeStore::new(&cli.root);
    for v in vols {
        if !in_use.contains(v) {
            store
                .remove(v, &in_use)
                .with_context(|| format!("removing volume {v}"))?;
        }
    }
    Ok(())
}

fn is_not_found(e: &anyhow::Error) -> bool {
    use berth_engine::container::ContainerError;
    use berth_engine::records::RecordError;
    // ContainerError::Record is transparent, so the RecordError inside is
    // not a link of the chain of its own.
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<RecordError>(),
            Some(RecordError::NotFound(_))
        ) || matches!(
            c.downcast_ref::<ContainerError>(),
            Some(ContainerError::Record(RecordError::NotFound(_)))
        )
    })
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
        let r = engine.get(what).map(|c| wait_exit(&engine, &c));
        match r {
            Ok(st) => println!("{}", st.exit_code),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    Ok(exit_for(failed))
}

/// Waits until `c` has exited (a created container first has to start).
fn wait_exit(engine: &Engine, c: &Container) -> State {
    let mut nap = Duration::from_millis(2);
    loop {
        let st = engine.state(c);
        if matches!(st.status, Status::Exited | Status::Restarting) {
            return st;
        }
        if !engine.dir(c.id()).exists() {
            return st;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(50));
    }
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

/// docker's "Up 5 seconds" durations.
pub fn human_duration(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        172_800..=1_209_599 => format!("{} days", s / 86400),
        1_209_600..=5_183_999 => format!("{} weeks", s / 604_800),
        5_184_000..=63_071_999 => format!("{} months", s / 2_592_000),
        _ => format!("{} years", s / 31_536_000),
    }
}

fn parse_time(s: &Option<String>) -> Option<DateTime<Utc>> {
    s.as_deref()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The STATUS column: "Up 5 seconds", "Exited (0) 3 minutes ago", ...
pub fn status_text(st: &State, now: DateTime<Utc>) -> String {
    let since = |t: &Option<String>| parse_time(t).map(|t| human_duration(now - t));
    match st.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", since(&st.started_at).unwrap_or_default()),
        Status::Paused => format!("Up {} (Paused)", since(&st.started_at).unwrap_or_default()),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            st.exit_code,
            since(&st.finished_at).unwrap_or_default()
        ),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            st.exit_code,
            since(&st.finished_at).unwrap_or_default()
        ),
    }
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

fn matches_filter(c: &Container, st: &State, f: &str) -> Result<bool> {
    let (k, v) = f
        .split_once('=')
        .with_context(|| format!("invalid --filter {f:?}: use KEY=VALUE"))?;
    Ok(match k {
        "id" => c.id().starts_with(v),
        "name" => c.name().contains(v),
        "status" => {
            let valid = [
                "created",
                "running",
                "paused",
                "restarting",
                "exited",
                "removing",
                "dead",
            ];
            if !valid.contains(&v) {
                bail!(
                    "invalid --filter status={v:?}: use one of {}",
                    valid.join(", ")
                );
            }
            st.status.to_string() == v
        }
        "ancestor" => {
            c.record.image == v
                || c.record
                    .image_id
                    .trim_start_matches("sha256:")
                    .starts_with(v.trim_start_matches("sha256:"))
        }
        "exited" => {
            let n: i32 = v
                .parse()
                .with_context(|| format!("invalid --filter exited={v:?}"))?;
            st.status == Status::Exited && st.exit_code == n
        }
        "label" => match v.split_once('=') {
            Some((lk, lv)) => c.config.labels.get(lk).is_some_and(|x| x == lv),
            None => c.config.labels.contains_key(v),
        },
        _ => bail!("invalid --filter {k:?}: use id, name, status, ancestor, exited or label"),
    })
}

pub fn ps(cli: &Cli, a: &PsArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let now = Utc::now();
    let mut all: Vec<(Container, State)> = engine
        .list()?
        .into_iter()
        .map(|c| {
            let st = engine.state(&c);
            (c, st)
        })
        .collect();
    all.sort_by(|a, b| b.0.record.created.cmp(&a.0.record.created));
    let last = if a.latest { Some(1) } else { a.last };
    let show_all = a.all || last.is_some() || !a.filter.is_empty();
    let mut rows = Vec::new();
    for (c, st) in &all {
        if !show_all
            && !matches!(
                st.status,
                Status::Running | Status::Paused | Status::Restarting
            )
        {
            continue;
        }
        let mut keep = true;
        for f in &a.filter {
            keep &= matches_filter(c, st, f)?;
        }
        if !keep {
            continue;
        }
        let mut r = Row::new();
        let id = if a.no_trunc {
            c.id().to_string()
        } else {
            c.id()[..12].to_string()
        };
        let cmd = quote_command(&c.record.command);
        let created = parse_time(&Some(c.record.created.clone())).unwrap_or(now);
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
        r.insert("Status", status_text(st, now));
        r.insert("State", st.status.to_string());
        r.insert(
            "Ports",
            engine
                .net_state(c.id())
                .ports
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
        if last.is_some_and(|n| rows.len() >= n) {
            break;
        }
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

/// docker's `NetworkSettings`: the namespace, each network's address, and
/// the published ports.
fn network_settings(engine: &Engine, c: &Container) -> serde_json::Value {
    let st = engine.net_state(c.id());
    let mut networks = serde_json::Map::new();
    for a in &st.attachments {
        networks.insert(
            a.network.clone(),
            serde_json::json!({
                "IPAddress": a.ip.map(|i| i.to_string()).unwrap_or_default(),
                "IPPrefixLen": a.prefix,
                "Gateway": a.gateway.map(|g| g.to_string()).unwrap_or_default(),
                "MacAddress": a.mac,
                "InterfaceName": a.ifname,
            }),
        );
    }
    let mut ports: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for m in &st.ports {
        ports
            .entry(format!("{}/{}", m.container_port, m.protocol))
            .or_default()
            .push(serde_json::json!({
                "HostIp": m.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED).to_string(),
                "HostPort": m.host_port.to_string(),
            }));
    }
    let first = st.attachments.first();
    serde_json::json!({
        "SandboxKey": st.netns.map(|p| p.display().to_string()).unwrap_or_default(),
        "IPAddress": first.and_then(|a| a.ip).map(|i| i.to_string()).unwrap_or_default(),
        "IPPrefixLen": first.map(|a| a.prefix).unwrap_or(0),
        "Gateway": first.and_then(|a| a.gateway).map(|g| g.to_string()).unwrap_or_default(),
        "MacAddress": first.map(|a| a.mac.clone()).unwrap_or_default(),
        "Networks": networks,
        "Ports": ports,
    })
}

/// docker's inspect document for a container.
pub fn inspect_json(engine: &Engine, c: &Container) -> serde_json::Value {
    let st = engine.state(c);
    let dir = engine.dir(c.id());
    let bundle = engine.bundle_dir(c.id());
    let cfg = &c.config;
    let argv = &c.record.command;
    serde_json::json!({
        "Id": c.id(),
        "Created": c.record.created,
        "Path": argv.first().cloned().unwrap_or_default(),
        "Args": argv.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": st.status.to_string(),
            "Running": matches!(st.status, Status::Running | Status::Paused),
            "Paused": st.status == Status::Paused,
            "Restarting": st.status == Status::Restarting,
            "OOMKilled": st.oom_killed,
            "Dead": false,
            "Pid": st.pid,
            "ExitCode": st.exit_code,
            "Error": st.error,
            "StartedAt": st.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "FinishedAt": st.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        },
        "Image": c.record.image_id,
        "ImageName": c.record.image,
        "ResolvConfPath": bundle.join("resolv.conf"),
        "HostnamePath": bundle.join("hostname"),
        "HostsPath": bundle.join("hosts"),
        "LogPath": if cfg.log_driver == "none" { serde_json::Value::String(String::new()) } else { serde_json::to_value(engine.log_path(c.id())).unwrap_or_default() },
        "Name": format!("/{}", c.name()),
        "RestartCount": st.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "RestartPolicy": {"Name": cfg.restart.name, "MaximumRetryCount": cfg.restart.max_retries},
            "AutoRemove": cfg.auto_remove,
            "LogConfig": {"Type": cfg.log_driver, "Config": {
                "max-size": cfg.log_max_size.map(|s| s.to_string()),
                "max-file": cfg.log_max_file.to_string(),
            }},
            "NetworkMode": cfg.network,
            "Runtime": if cfg.runtime.as_os_str().is_empty() { engine.options().runtime.clone() } else { cfg.runtime.clone() },
            "Init": cfg.init,
            "CgroupParent": cfg.cgroups_path,
            "Host": cfg.host,
        },
        "NetworkSettings": network_settings(engine, c),
        "GraphDriver": {"Name": "overlay", "Data": {"MergedDir": bundle.join("rootfs")}},
        "Mounts": cfg.host.get("mounts").cloned().unwrap_or_else(|| serde_json::json!([])),
        "Config": {
            "Hostname": if cfg.hostname.is_empty() { c.id()[..12].to_string() } else { cfg.hostname.clone() },
            "User": cfg.user,
            "Tty": cfg.tty,
            "OpenStdin": cfg.open_stdin,
            "Env": cfg.env,
            "Cmd": cfg.cmd,
            "Entrypoint": cfg.entrypoint,
            "Image": c.record.image,
            "WorkingDir": cfg.working_dir,
            "Labels": cfg.labels,
            "StopSignal": cfg.stop_signal,
            "StopTimeout": cfg.stop_timeout,
        },
        "BundlePath": bundle,
        "StateDir": dir,
    })
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
                    out.push(inspect_json(&engine, &c));
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
    let st = engine.state(&c);
    if !matches!(st.status, Status::Running | Status::Paused) {
        bail!("container {} is not running", c.name());
    }
    // The runtime's `ps ID [PS OPTIONS]` (runc's interface) runs ps and
    // keeps the rows of the container's processes.
    let rt = engine.runtime_of(&c);
    let out = Command::new(&rt)
        .arg("--root")
        .arg(engine.runtime_root())
        .arg("ps")
        .arg(c.id())
        .args(&a.container_and_args[1..])
        .output()
        .with_context(|| format!("running {}", rt.display()))?;
    if !out.status.success() {
        bail!(
            "{} ps: {}",
            rt.display(),
            berth_engine::container::runtime_error_message(&out.stderr)
        );
    }
    io::stdout().write_all(&out.stdout)?;
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
    let ports = engine.net_state(c.id()).ports;
    match &a.port {
        Some(p) => {
            let want = if p.contains('/') {
                p.clone()
            } else {
                format!("{p}/tcp")
            };
            let found: Vec<_> = ports
                .iter()
                .filter(|m| format!("{}/{}", m.container_port, m.protocol) == want)
                .collect();
            if found.is_empty() {
                bail!("no public port {want:?} published for {}", c.name());
            }
            for m in found {
                println!(
                    "{}:{}",
                    m.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                    m.host_port
                );
            }
        }
        None => {
            for m in &ports {
                println!("{m}");
            }
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

/// What to print of a log.
#[derive(Debug, Default, Clone)]
pub struct LogsOptions {
    follow: bool,
    tail: Option<usize>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    timestamps: bool,
}

/// A time as `logs --since` takes it: RFC 3339, Unix seconds[.frac], or a
/// duration before now (`90s`, `10m`, `1h30m`).
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(secs) = s.parse::<f64>() {
        let nanos = (secs.fract() * 1e9) as u32;
        return DateTime::from_timestamp(secs.trunc() as i64, nanos)
            .with_context(|| format!("time {s:?} is out of range"));
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut any = false;
    for ch in s.chars() {
        if ch.is_ascii_digit() || ch == '.' {
            num.push(ch);
            continue;
        }
        let n: f64 = num.parse().with_context(|| format!("invalid time {s:?}"))?;
        total += n * match ch {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            _ => bail!("invalid time {s:?}: use RFC 3339, Unix seconds, or a duration like 10m"),
        };
        num.clear();
        any = true;
    }
    if !num.is_empty() || !any {
        bail!("invalid time {s:?}: use RFC 3339, Unix seconds, or a duration like 10m");
    }
    Ok(now - chrono::Duration::milliseconds((total * 1000.0) as i64))
}

fn log_format(c: &Container) -> Format {
    if c.config.log_driver == "k8s-file" {
        Format::K8sFile
    } else {
        Format::JsonFile
    }
}

fn write_entry(
    e: &Entry,
    o: &LogsOptions,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<()> {
    if o.since.is_some_and(|s| e.time < s) || o.until.is_some_and(|u| e.time > u) {
        return Ok(());
    }
    let w: &mut dyn Write = match e.stream {
        Stream::Stdout => out,
        Stream::Stderr => err,
    };
    if o.timestamps {
        write!(
            w,
            "{} ",
            e.time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        )?;
    }
    w.write_all(&e.line)?;
    w.flush()
}

/// Prints the log as `o` says; with `follow`, until the container has
/// exited and its log is read to the end.
fn print_logs(engine: &Engine, c: &Container, o: &LogsOptions) -> Result<()> {
    if c.config.log_driver == "none" {
        bail!(
            "container {} has the log driver none: there are no logs to read",
            c.name()
        );
    }
    let path = engine.log_path(c.id());
    let format = log_format(c);
    let stdout = io::stdout();
    let stderr = io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    // What exists now: the rotated files (oldest first), then the complete
    // lines of the current file, measured first so that following goes on
    // from exactly there.
    let start_ino = std::fs::metadata(&path).ok().map(|m| m.ino());
    let mut offset = count_complete(&path);
    let mut entries = Vec::new();
    let mut rotated = Vec::new();
    let mut n = 1;
    loop {
        let mut p = path.as_os_str().to_os_string();
        p.push(format!(".{n}"));
        let p = PathBuf::from(p);
        if !p.exists() {
            break;
        }
        rotated.push(p);
        n += 1;
    }
    for p in rotated.iter().rev() {
        entries.extend(
            logfile::read_entries(p, format)
                .with_context(|| format!("reading the log of {}", c.name()))?,
        );
    }
    if let Ok(mut f) = File::open(&path) {
        let mut buf = vec![0u8; offset as usize];
        f.read_exact(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        for line in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            entries.extend(logfile::parse_line(line, format));
        }
    } else {
        offset = 0;
    }
    let skip = o.tail.map_or(0, |n| entries.len().saturating_sub(n));
    for e in &entries[skip..] {
        write_entry(e, o, &mut out, &mut err)?;
    }
    if !o.follow {
        return Ok(());
    }
    let mut ino = start_ino;
    let mut nap = Duration::from_millis(5);
    loop {
        let running = {
            let st = engine.state(c);
            matches!(
                st.status,
                Status::Running | Status::Paused | Status::Restarting | Status::Created
            )
        };
        let cur = File::open(&path).ok();
        let cur_ino = cur
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.ino());
        if cur_ino != ino {
            // Rotated: finish the old file (now PATH.1), then start afresh.
            if ino.is_some() {
                let mut old = path.as_os_str().to_os_string();
                old.push(".1");
                if let Ok(mut f) = File::open(PathBuf::from(old)) {
                    read_from(&mut f, offset, format, o, &mut out, &mut err)?;
                }
            }
            ino = cur_ino;
            offset = 0;
        }
        let mut progressed = false;
        if let Some(mut f) = cur {
            let n = read_from(&mut f, offset, format, o, &mut out, &mut err)?;
            progressed = n != offset;
            offset = n;
        }
        if !running && !progressed {
            return Ok(());
        }
        if progressed {
            nap = Duration::from_millis(5);
        } else {
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(100));
        }
    }
}

/// The length of the complete lines of `path`.
fn count_complete(path: &Path) -> u64 {
    let Ok(mut f) = File::open(path) else {
        return 0;
    };
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    buf.iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i as u64 + 1)
}

/// Prints the complete lines of `f` from `offset`; returns the new offset.
fn read_from(
    f: &mut File,
    offset: u64,
    format: Format,
    o: &LogsOptions,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<u64> {
    f.seek(SeekFrom::Start(offset))?;
    let mut r = BufReader::new(f);
    let mut line = Vec::new();
    let mut pos = offset;
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 || !line.ends_with(b"\n") {
            return Ok(pos);
        }
        pos += n as u64;
        line.pop();
        if let Some(e) = logfile::parse_line(&line, format) {
            write_entry(&e, o, out, err)?;
        }
    }
}

pub fn logs(cli: &Cli, a: &LogsArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let c = engine.get(&a.container)?;
    let now = Utc::now();
    let o = LogsOptions {
        follow: a.follow,
        tail: match a.tail.as_str() {
            "all" | "-1" => None,
            n => Some(
                n.parse()
                    .with_context(|| format!("invalid --tail {n:?}: use a number or all"))?,
            ),
        },
        since: a
            .since
            .as_deref()
            .map(|s| parse_since(s, now))
            .transpose()?,
        until: a
            .until
            .as_deref()
            .map(|s| parse_since(s, now))
            .transpose()?,
        timestamps: a.timestamps,
    };
    print_logs(&engine, &c, &o)?;
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

/// Sets `var` (`KEY=VALUE`) in `env`, replacing one of the same name.
fn set_env(env: &mut Vec<String>, var: &str) {
    let key = var.split_once('=').map_or(var, |(k, _)| k);
    let prefix = format!("{key}=");
    match env.iter_mut().find(|e| e.starts_with(&prefix)) {
        Some(e) => *e = var.to_string(),
        None => env.push(var.to_string()),
    }
}

pub fn exec(cli: &Cli, a: &ExecArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let c = engine.get(a.container())?;
    let st = engine.state(&c);
    if st.status != Status::Running {
        bail!(
            "container {} is {}: exec needs a running container",
            c.name(),
            st.status
        );
    }
    let bundle = engine.bundle_dir(c.id());
    let spec: Value = serde_json::from_slice(
        &std::fs::read(bundle.join("config.json")).context("reading the container's config")?,
    )
    .context("parsing the container's config")?;
    let mut process = spec["process"].clone();
    let mut env: Vec<String> = serde_json::from_value(process["env"].clone()).unwrap_or_default();
    for e in env_files(&a.env_file)?.iter().chain(
        a.env
            .iter()
            .filter_map(|e| env_value(e))
            .collect::<Vec<_>>()
            .iter(),
    ) {
        if e.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
            bail!("invalid environment variable {e:?}");
        }
        set_env(&mut env, e);
    }
    let rootfs = bundle.join("rootfs");
    if let Some(u) = &a.user {
        let passwd = berth_engine::bundle::read_in_root(&rootfs, "etc/passwd")?;
        let group = berth_engine::bundle::read_in_root(&rootfs, "etc/group")?;
        let r = berth_engine::user::resolve(u, passwd.as_deref(), group.as_deref())
            .with_context(|| format!("exec in {}", c.name()))?;
        process["user"] = serde_json::json!({
            "uid": r.uid, "gid": r.gid, "additionalGids": r.additional_gids,
        });
        set_env(&mut env, &format!("HOME={}", r.home));
    }
    if let Some(w) = &a.workdir {
        if !w.starts_with('/') {
            bail!("the working directory {w:?} is invalid: it needs to be an absolute path");
        }
        process["cwd"] = w.clone().into();
    }
    if a.tty {
        set_env(&mut env, "TERM=xterm");
    }
    let cwd = process["cwd"].as_str().unwrap_or("/").to_string();
    berth_engine::command::check(&rootfs, &a.command()[0], &env, &cwd)
        .map_err(berth_engine::container::ContainerError::Command)?;
    process["args"] = serde_json::to_value(a.command())?;
    process["env"] = serde_json::to_value(&env)?;
    process["terminal"] = a.tty.into();
    let file = tempfile::Builder::new()
        .prefix("exec-")
        .suffix(".json")
        .tempfile_in(engine.dir(c.id()))
        .context("writing the exec process")?;
    std::fs::write(file.path(), serde_json::to_vec(&process)?)?;
    let rt = if c.config.runtime.as_os_str().is_empty() {
        engine.options().runtime.clone()
    } else {
        c.config.runtime.clone()
    };
    let (mut cmd, _view) = berth_engine::container::sealed_command(&rt);
    cmd.arg("--root")
        .arg(engine.runtime_root())
        .arg("exec")
        .arg("--process")
        .arg(file.path());
    if a.detach {
        cmd.arg("--detach");
    }
    cmd.arg(c.id());
    if a.detach {
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
    } else if !a.interactive {
        cmd.stdin(std::process::Stdio::null());
    }
    let st = cmd
        .status()
        .with_context(|| format!("running {}", rt.display()))?;
    let code = st
        .code()
        .or_else(|| std::os::unix::process::ExitStatusExt::signal(&st).map(|s| 128 + s))
        .unwrap_or(125);
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
    use berth_engine::files::{self, CopyOptions, Location};
    let engine = open_engine(cli)?;
    let o = CopyOptions {
        archive: a.archive,
        follow_link: a.follow_link,
    };
    let root = Path::new("/");
    match (container_path(&a.src), container_path(&a.dest)) {
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("one of the paths must name a container: CONTAINER:PATH"),
        (Some((name, path)), None) => {
            let c = engine.get(name)?;
            let rootfs = engine.bundle_dir(c.id()).join("rootfs");
            let side = format!("container {}", c.name());
            let src = Location {
                root: &rootfs,
                path,
                side: &side,
            };
            if a.dest == "-" {
                let last = Path::new(path)
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned());
                let name = if path.ends_with("/.") { None } else { last };
                files::write_tar(&src, name.as_deref(), a.follow_link, io::stdout().lock())
                    .with_context(|| format!("copying {} out of {}", path, c.name()))?;
            } else {
                let dest = host_path(&a.dest)?;
                files::copy(
                    &src,
                    &Location {
                        root,
                        path: &dest,
                        side: "the host",
                    },
                    o,
                )
                .with_context(|| format!("copying {} out of {}", path, c.name()))?;
            }
        }
        (None, Some((name, path))) => {
            let c = engine.get(name)?;
            let rootfs = engine.bundle_dir(c.id()).join("rootfs");
            let side = format!("container {}", c.name());
            if a.src == "-" {
                files::extract(&rootfs, path, io::stdin().lock(), true).with_context(|| {
                    format!("copying a tar stream into {} at {}", c.name(), path)
                })?;
            } else {
                let src = host_path(&a.src)?;
                files::copy(
                    &Location {
                        root,
                        path: &src,
                        side: "the host",
                    },
                    &Location {
                        root: &rootfs,
                        path,
                        side: &side,
                    },
                    o,
                )
                .with_context(|| format!("copying {} into {}", a.src, c.name()))?;
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
    let rootfs = engine.bundle_dir(c.id()).join("rootfs");
    match &a.output {
        Some(p) => {
            let f = File::create(p).with_context(|| format!("creating {}", p.display()))?;
            let mut w = io::BufWriter::new(f);
            berth_engine::files::export(&rootfs, &mut w)
                .with_context(|| format!("exporting {}", c.name()))?;
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
            berth_engine::files::export(&rootfs, &mut w)
                .with_context(|| format!("exporting {}", c.name()))?;
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
    use berth_engine::commit::{self, CommitOptions};
    let engine = open_engine(cli)?;
    let c = engine.get(&a.container)?;
    let store = engine.store();
    let host = Platform::host();
    let img = match store.get(&c.record.image, &host) {
        Ok(i) if i.id().to_string() == c.record.image_id => i,
        _ => {
            let rec = store
                .list()?
                .into_iter()
                .find(|r| {
                    store
                        .resolve(r, &host)
                        .is_ok_and(|i| i.id().to_string() == c.record.image_id)
                })
                .with_context(|| {
                    format!(
                        "the image of container {} ({}) is no longer present",
                        c.name(),
                        c.record.image_id
                    )
                })?;
            store.resolve(&rec, &host)?
        }
    };
    let paused = a.pause && engine.state(&c).status == Status::Running && engine.pause(&c).is_ok();
    let r = commit::commit(
        store,
        &img,
        &berth_engine::bundle::snapshot_key(c.id()),
        &CommitOptions {
            reference: a.reference.clone(),
            author: a.author.clone(),
            message: a.message.clone(),
            changes: a.changes.clone(),
        },
    );
    if paused {
        engine
            .unpause(&c)
            .with_context(|| format!("unpausing {} after the commit", c.name()))?;
    }
    let (id, _) = r.with_context(|| format!("committing {}", c.name()))?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// The exit code for a failed command: 127/126 when the container's
/// command cannot be run, else 125.
pub fn error_code(e: &anyhow::Error) -> u8 {
    for c in e.chain() {
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
    fn durations_and_times() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(0)), "Less than a second");
        assert_eq!(human_duration(d(5)), "5 seconds");
        assert_eq!(human_duration(d(90)), "About a minute");
        assert_eq!(human_duration(d(3 * 3600)), "3 hours");
        let now = Utc::now();
        assert_eq!(parse_since("10m", now).unwrap(), now - d(600));
        assert_eq!(parse_since("1h30m", now).unwrap(), now - d(5400));
        assert_eq!(
            parse_since("1700000000", now).unwrap().timestamp(),
            1_700_000_000
        );
        assert_eq!(
            parse_since("2026-01-02T03:04:05Z", now)
                .unwrap()
                .timestamp(),
            DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
                .unwrap()
                .timestamp()
        );
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("10", now).is_ok());
        assert!(parse_since("5x", now).is_err());
    }

    #[test]
    fn status_column() {
        let now = Utc::now();
        let ts = |s: i64| Some((now - chrono::Duration::seconds(s)).to_rfc3339());
        let mut st = State {
            status: Status::Running,
            pid: 1,
            exit_code: 0,
            oom_killed: false,
            started_at: ts(5),
            finished_at: None,
            restart_count: 0,
            error: String::new(),
        };
        assert_eq!(status_text(&st, now), "Up 5 seconds");
        st.status = Status::Paused;
        assert_eq!(status_text(&st, now), "Up 5 seconds (Paused)");
        st.status = Status::Exited;
        st.exit_code = 3;
        st.finished_at = ts(120);
        assert_eq!(status_text(&st, now), "Exited (3) 2 minutes ago");
        st.status = Status::Created;
        assert_eq!(status_text(&st, now), "Created");
    }

    #[test]
    fn env_values() {
        assert_eq!(env_value("A=1").as_deref(), Some("A=1"));
        assert_eq!(env_value("BERTH_SURELY_UNSET_VARIABLE"), None);
        std::env::set_var("BERTH_TEST_ENV_VALUE", "x y");
        assert_eq!(
            env_value("BERTH_TEST_ENV_VALUE").as_deref(),
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
            env_files(&[f]).unwrap(),
            ["A=1", "B=two words", "BERTH_TEST_ENV_VALUE=x y"]
        );
        let e = env_files(&[t.path().join("nope")]).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
