//! `berth-runtime`: an OCI runtime with runc's command line, so that podman,
//! containerd and CRI-O can use it unchanged.
//!
//! The binary has no Rust `main`: `#![no_main]` and the C `main` below skip
//! std's start-up, which would (1) set SIGPIPE to SIG_IGN, a disposition that
//! survives execve, so every container process started with SIGPIPE ignored
//! (runc and crun pass the caller's disposition through, and so does this),
//! and (2) probe the main thread's stack guard with `pthread_getattr_np`,
//! which parses /proc/self/maps with sscanf: a tenth of the instructions of a
//! whole `run`.

#![cfg_attr(not(test), no_main)]

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use berth_runtime::{state, CreateOpts, ExecOpts, Runtime};
use clap::{Args, Parser, Subcommand, ValueEnum};
use nix::sys::signal::Signal;
use serde_json::json;

#[derive(Parser, Debug, PartialEq)]
#[command(
    name = "berth-runtime",
    about = "berth's OCI container runtime (runc-compatible command line)",
    disable_version_flag = true
)]
struct Cli {
    /// Directory for container state.
    #[arg(long, global = true, default_value = "/run/berth-runtime")]
    root: PathBuf,
    /// Write log messages to this file (default: stderr).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log debug messages.
    #[arg(long, global = true)]
    debug: bool,
    /// Use the systemd cgroup driver (not supported yet: a clear error).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Print the version.
    #[arg(short = 'v', long)]
    version: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Format {
    Table,
    Json,
}

#[derive(Args, Debug, PartialEq)]
struct CreateArgs {
    /// Container ID.
    id: String,
    /// Path to the bundle directory.
    #[arg(short = 'b', long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket that receives the pty master.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// File to write the init PID to.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Use MS_MOVE and chroot instead of pivot_root.
    #[arg(long)]
    no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass N extra fds (3 .. 3+N-1) to the container.
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
}

#[derive(Subcommand, Debug, PartialEq)]
enum Cmd {
    /// Create a container; its process waits for `start`.
    Create(CreateArgs),
    /// Run the user process of a created container.
    Start { id: String },
    /// Create and start a container.
    Run {
        #[command(flatten)]
        c: CreateArgs,
        /// Detach from the container's process.
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits (accepted, ignored for detached runs).
        #[arg(long)]
        keep: bool,
    },
    /// Print the state of a container as JSON.
    State { id: String },
    /// Send a signal (name or number, default SIGTERM) to a container.
    Kill {
        id: String,
        signal: Option<String>,
        /// Signal every process of the container.
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a container and its resources.
    Delete {
        id: String,
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
    },
    /// Run a new process inside a container.
    Exec(ExecArgs),
    /// List processes of a container.
    Ps {
        id: String,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Arguments for ps(1) (default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List containers.
    List {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Print only IDs.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Freeze all processes of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Print container events (stats, OOM) as JSON lines.
    Events {
        id: String,
        /// Print one stats event and exit.
        #[arg(long)]
        stats: bool,
        /// Interval between stats events.
        #[arg(long, default_value = "5s")]
        interval: String,
    },
    /// Change resource limits of a running container.
    Update(UpdateArgs),
    /// Print the features this runtime implements, as JSON.
    Features,
    /// Write a default config.json for a bundle.
    Spec {
        /// Directory to write config.json into.
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// A config for a rootless container.
        #[arg(long)]
        rootless: bool,
    },
    /// Checkpointing needs CRIU, which berth-runtime does not support.
    Checkpoint { id: String },
}

#[derive(Args, Debug, PartialEq)]
struct ExecArgs {
    /// Container ID.
    id: String,
    /// The command and its arguments (unless --process is given).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
    /// process.json with the whole process.
    #[arg(short, long)]
    process: Option<PathBuf>,
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Working directory.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Environment variables (KEY=VALUE).
    #[arg(short, long)]
    env: Vec<String>,
    /// Allocate a pty.
    #[arg(short, long)]
    tty: bool,
    /// UID[:GID].
    #[arg(short, long)]
    user: Option<String>,
    /// Additional group IDs.
    #[arg(short = 'g', long)]
    additional_gids: Vec<u32>,
    /// Extra capabilities.
    #[arg(short, long)]
    cap: Vec<String>,
    #[arg(short, long)]
    detach: bool,
    #[arg(long)]
    pid_file: Option<PathBuf>,
    #[arg(long)]
    no_new_privs: bool,
    #[arg(long)]
    apparmor: Option<String>,
    #[arg(long)]
    process_label: Option<String>,
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    /// Allow exec into a paused container (the process runs once it is resumed).
    #[arg(long)]
    ignore_paused: bool,
}

#[derive(Args, Debug, PartialEq)]
struct UpdateArgs {
    id: String,
    /// JSON file with linux.resources ("-" for stdin).
    #[arg(short, long)]
    resources: Option<PathBuf>,
    #[arg(long)]
    blkio_weight: Option<u16>,
    #[arg(long)]
    cpu_period: Option<u64>,
    #[arg(long)]
    cpu_quota: Option<i64>,
    #[arg(long)]
    cpu_rt_period: Option<u64>,
    #[arg(long)]
    cpu_rt_runtime: Option<i64>,
    #[arg(long)]
    cpu_share: Option<u64>,
    #[arg(long)]
    cpuset_cpus: Option<String>,
    #[arg(long)]
    cpuset_mems: Option<String>,
    #[arg(long)]
    memory: Option<String>,
    #[arg(long)]
    memory_reservation: Option<String>,
    #[arg(long)]
    memory_swap: Option<String>,
    #[arg(long)]
    pids_limit: Option<i64>,
    #[arg(long)]
    kernel_memory: Option<String>,
}

/// The C entry point, called by glibc's start code; std is usable here (on
/// glibc, std takes argc/argv and the environment from its own
/// `.init_array` hook). Does what std's start-up would still be wanted for:
/// fds 0–2 are made valid (a closed one is opened on /dev/null, so that no
/// file opened later lands on stdout), a panic exits 101, and stdout is
/// flushed at the end.
// SAFETY: exported as `main`, the symbol the C runtime's start code calls;
// no other object in this binary defines it (no Rust `main` with
// `#![no_main]`). The unit-test build keeps the test harness's `main`.
#[cfg_attr(not(test), unsafe(export_name = "main"))]
#[cfg_attr(test, allow(dead_code))]
extern "C" fn c_main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    for fd in 0..3 {
        // SAFETY: fd 0–2 are only probed here; `fcntl_getfd` does not keep
        // the borrow.
        let probe = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if rustix::io::fcntl_getfd(probe) == Err(rustix::io::Errno::BADF) {
            // The lowest free descriptor: this one.
            if let Ok(f) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                std::mem::forget(f);
            }
        }
    }
    logrus::start();
    if let Err(e) = seal_if_needed() {
        // Before the command line is parsed: logrus' default (text) shape.
        eprintln!("{}", logrus::text_line("error", &e.to_string()));
        return 1;
    }
    let code = std::panic::catch_unwind(real_main).unwrap_or(101);
    let _ = std::io::stdout().flush();
    code
}

/// Commands that start a process inside a container: `create` and `run`
/// (its init) and `exec`. Until that process calls `execve`, its
/// `/proc/self/exe` is this binary; the container must never get a writable
/// handle on it (CVE-2019-5736), so these run from a sealed copy of the
/// binary (`berth_exeseal`). Other commands never let a container near the
/// binary and skip the cost. A container ID or path that happens to equal
/// one of these words costs a needless re-exec, nothing else.
const SEALED_COMMANDS: [&str; 3] = ["create", "run", "exec"];

fn seal_if_needed() -> Result<(), berth_exeseal::Error> {
    let needed = std::env::args_os()
        .skip(1)
        .any(|a| SEALED_COMMANDS.iter().any(|c| a == *c));
    if needed && !cfg!(feature = "bench-unsealed") {
        berth_exeseal::ensure_sealed()?;
    }
    Ok(())
}

fn real_main() -> std::ffi::c_int {
    run_cli().into()
}

/// The exit code of the command line's command.
fn run_cli() -> u8 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let cli = fast_cli::parse(&args).unwrap_or_else(Cli::parse);
    if cli.version {
        println!("berth-runtime version {}", env!("CARGO_PKG_VERSION"));
        println!("spec: {}", berth_runtime::spec::OCI_VERSION);
        let v = libseccomp::ScmpVersion::current()
            .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
            .unwrap_or_else(|_| "unknown".into());
        println!("libseccomp: {v}");
        return 0;
    }
    init_logging(&cli);
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = error_line(&e);
            log_error(&cli, &msg);
            1
        }
    }
}

/// One line for an error and its causes, skipping a cause whose text the line
/// already holds (library errors name their source in their own message).
fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn init_logging(cli: &Cli) {
    let level = if cli.debug { "debug" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let file = cli
        .log
        .as_ref()
        .and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok());
    match (file, cli.log_format) {
        (Some(f), LogFormat::Json) => {
            let _ = builder
                .json()
                .flatten_event(true)
                .with_writer(std::sync::Mutex::new(f))
                .try_init();
        }
        (Some(f), LogFormat::Text) => {
            let _ = builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .try_init();
        }
        (None, _) => {
            let _ = builder.with_writer(std::io::stderr).try_init();
        }
    }
}

/// A failure is reported as runc 1.1 reports it (through logrus), so that
/// clients and test tools that look for "error" find it:
/// - with `--log FILE`, the log line goes to the file (where containerd and
///   conmon read it) and stderr gets the bare message;
/// - without, the log line goes to stderr: `time="..." level=error
///   msg="..."` for `--log-format text` (logrus' coloured `ERRO[0000] msg`
///   when stderr is a terminal), `{"level":"error","msg":"...","time":"..."}`
///   for json.
fn log_error(cli: &Cli, msg: &str) {
    let line = |format: LogFormat| match format {
        LogFormat::Json => logrus::json_line("error", msg),
        LogFormat::Text => logrus::text_line("error", msg),
    };
    match &cli.log {
        Some(p) => {
            if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(p) {
                let _ = writeln!(f, "{}", line(cli.log_format));
            }
            eprintln!("{msg}");
        }
        None if cli.log_format == LogFormat::Text && std::io::stderr().is_terminal() => {
            eprintln!("{}", logrus::terminal_line("ERRO", 31, msg));
        }
        None => eprintln!("{}", line(cli.log_format)),
    }
}

/// Log lines in the shapes of logrus, the logger of runc (and containerd),
/// whose output clients parse.
mod logrus {
    use std::fmt::Write;
    use std::sync::OnceLock;
    use std::time::Instant;

    /// When this process began to log: the `[0000]` of the terminal form
    /// counts seconds from here.
    pub fn start() -> Instant {
        static START: OnceLock<Instant> = OnceLock::new();
        *START.get_or_init(Instant::now)
    }

    /// RFC 3339 in whole seconds, local time, as Go's `time.RFC3339`.
    fn now() -> String {
        chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    /// logrus' TextFormatter without a terminal: `time="…" level=L msg=…`.
    pub fn text_line(level: &str, msg: &str) -> String {
        format!("time={} level={level} msg={}", value(&now()), value(msg))
    }

    /// logrus' JSONFormatter: keys sorted, HTML characters escaped as Go's
    /// encoding/json does.
    pub fn json_line(level: &str, msg: &str) -> String {
        format!(
            "{{\"level\":{},\"msg\":{},\"time\":{}}}",
            json_string(level),
            json_string(msg),
            json_string(&now())
        )
    }

    /// logrus' TextFormatter on a terminal: `ERRO[0000] msg` with the level
    /// in colour and the message padded to 44 columns.
    pub fn terminal_line(level: &str, colour: u8, msg: &str) -> String {
        let secs = start().elapsed().as_secs();
        format!(
            "\x1b[{colour}m{level}\x1b[0m[{secs:04}] {:<44} ",
            msg.trim_end_matches('\n')
        )
    }

    /// A value as logrus writes it: bare when it has only `[A-Za-z0-9-._/@^+]`,
    /// else quoted as Go's `%q` does.
    fn value(v: &str) -> String {
        let bare = v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
        if bare {
            v.to_string()
        } else {
            go_quote(v)
        }
    }

    /// Go's `strconv.Quote` for what a message holds: `"` and `\` escaped,
    /// control characters as `\n`, `\t`, …, `\xNN` or `\uNNNN`.
    pub fn go_quote(s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c == '\x7f' => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// A JSON string as Go's encoding/json writes it (`<`, `>`, `&`, U+2028
    /// and U+2029 escaped).
    fn json_string(s: &str) -> String {
        let j = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        if !j.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
            return j;
        }
        j.replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
    }
}

fn runtime(cli: &Cli) -> Runtime {
    Runtime {
        root: cli.root.clone(),
        systemd_cgroup: cli.systemd_cgroup,
    }
}

fn create_opts(c: &CreateArgs) -> CreateOpts {
    CreateOpts {
        id: c.id.clone(),
        bundle: c.bundle.clone(),
        pid_file: c.pid_file.clone(),
        console_socket: c.console_socket.clone(),
        no_pivot: c.no_pivot,
        no_new_keyring: c.no_new_keyring,
        preserve_fds: c.preserve_fds,
    }
}

fn dispatch(cli: &Cli) -> anyhow::Result<u8> {
    let rt = runtime(cli);
    let Some(cmd) = &cli.cmd else {
        bail!("no command given; see berth-runtime --help");
    };
    match cmd {
        Cmd::Create(c) => {
            rt.create(&create_opts(c))?;
        }
        Cmd::Start { id } => rt.start(id)?,
        Cmd::Run { c, detach, .. } => {
            let code = rt.run(&create_opts(c), *detach)?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Cmd::State { id } => {
            let st = rt.state(id)?;
            println!("{}", serde_json::to_string_pretty(&st)?);
        }
        Cmd::Kill { id, signal, all } => {
            let sig = parse_signal(signal.as_deref().unwrap_or("SIGTERM"))?;
            rt.kill(id, sig, *all)?;
        }
        Cmd::Delete { id, force } => rt.delete(id, *force)?,
        Cmd::Exec(e) => return exec(&rt, e),
        Cmd::Ps {
            id,
            format,
            ps_args,
        } => ps(&rt, id, *format, ps_args)?,
        Cmd::List { format, quiet } => list(&rt, *format, *quiet)?,
        Cmd::Pause { id } => rt.pause(id)?,
        Cmd::Resume { id } => rt.resume(id)?,
        Cmd::Events {
            id,
            stats,
            interval,
        } => events(&rt, id, *stats, interval)?,
        Cmd::Update(u) => update(&rt, u)?,
        Cmd::Features => println!(
            "{}",
            serde_json::to_string_pretty(&berth_runtime::features::features())?
        ),
        Cmd::Spec { bundle, rootless } => write_spec(bundle, *rootless)?,
        Cmd::Checkpoint { .. } => {
            bail!("checkpoint is not supported: berth-runtime has no CRIU integration")
        }
    }
    Ok(0)
}

/// A signal by name (`KILL`, `SIGKILL`) or number (`9`).
fn parse_signal(s: &str) -> anyhow::Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| anyhow!("unknown signal {s:?}"));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    Signal::from_str(&name).map_err(|_| anyhow!("unknown signal {s:?}"))
}

fn exec(rt: &Runtime, e: &ExecArgs) -> anyhow::Result<u8> {
    let process = match &e.process {
        Some(p) => berth_runtime::spec::parse_process(p)?,
        None => {
            if e.command.is_empty() {
                bail!("exec: no command given (pass a command or --process FILE)");
            }
            let spec = rt.config(&e.id)?;
            let base = spec.process().clone().unwrap_or_default();
            let mut v = serde_json::to_value(&base)?;
            v["args"] = json!(e.command);
            v["terminal"] = json!(e.tty);
            if let Some(cwd) = &e.cwd {
                v["cwd"] = json!(cwd);
            }
            if !e.env.is_empty() {
                let mut env: Vec<String> = base.env().clone().unwrap_or_default();
                for kv in &e.env {
                    let key = kv.split('=').next().unwrap_or("");
                    env.retain(|x| x.split('=').next() != Some(key));
                    env.push(kv.clone());
                }
                v["env"] = json!(env);
            }
            if let Some(u) = &e.user {
                let (uid, gid) = match u.split_once(':') {
                    Some((a, b)) => (a, Some(b)),
                    None => (u.as_str(), None),
                };
                let uid: u32 = uid
                    .parse()
                    .with_context(|| format!("--user {u:?}: uid must be a number"))?;
                v["user"]["uid"] = json!(uid);
                if let Some(g) = gid {
                    let gid: u32 = g
                        .parse()
                        .with_context(|| format!("--user {u:?}: gid must be a number"))?;
                    v["user"]["gid"] = json!(gid);
                }
            }
            if !e.additional_gids.is_empty() {
                v["user"]["additionalGids"] = json!(e.additional_gids);
            }
            if !e.cap.is_empty() {
                for set in ["bounding", "effective", "permitted"] {
                    let mut cur: Vec<String> = v["capabilities"][set]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default();
                    for c in &e.cap {
                        if !cur.contains(c) {
                            cur.push(c.clone());
                        }
                    }
                    v["capabilities"][set] = json!(cur);
                }
            }
            if e.no_new_privs {
                v["noNewPrivileges"] = json!(true);
            }
            if let Some(a) = &e.apparmor {
                v["apparmorProfile"] = json!(a);
            }
            if let Some(l) = &e.process_label {
                v["selinuxLabel"] = json!(l);
            }
            serde_json::from_value(v).context("building the exec process")?
        }
    };
    let code = rt.exec(
        &e.id,
        &process,
        &ExecOpts {
            console_socket: e.console_socket.clone(),
            pid_file: e.pid_file.clone(),
            detach: e.detach,
            preserve_fds: e.preserve_fds,
            ignore_paused: e.ignore_paused,
        },
    )?;
    Ok(code.clamp(0, 255) as u8)
}

fn ps(rt: &Runtime, id: &str, format: Format, args: &[String]) -> anyhow::Result<()> {
    let pids = rt.pids(id)?;
    if format == Format::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args: Vec<String> = if args.is_empty() {
        vec!["-ef".into()]
    } else {
        args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("running ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| anyhow!("ps output has no PID column"))?;
    println!("{header}");
    for l in lines {
        if let Some(p) = l
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
        {
            if pids.contains(&p) {
                println!("{l}");
            }
        }
    }
    Ok(())
}

fn list(rt: &Runtime, format: Format, quiet: bool) -> anyhow::Result<()> {
    let all = rt.list()?;
    if quiet {
        for s in &all {
            println!("{}", s.id);
        }
        return Ok(());
    }
    if format == Format::Json {
        println!("{}", serde_json::to_string(&all)?);
        return Ok(());
    }
    let mut rows = vec![[
        "ID".to_string(),
        "PID".into(),
        "STATUS".into(),
        "BUNDLE".into(),
        "CREATED".into(),
        "OWNER".into(),
    ]];
    for s in &all {
        rows.push([
            s.id.clone(),
            s.pid.to_string(),
            s.status.to_string(),
            s.bundle.display().to_string(),
            s.created.clone(),
            s.owner.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", c, w = widths[i]))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
    Ok(())
}

fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let (num, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow!("--interval {s:?}: not a duration like 5s"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => bail!("--interval {s:?}: unknown unit {unit:?} (ms, s, m)"),
    };
    if secs <= 0.0 {
        bail!("--interval {s:?}: must be positive");
    }
    Ok(Duration::from_secs_f64(secs))
}

fn events(rt: &Runtime, id: &str, once: bool, interval: &str) -> anyhow::Result<()> {
    let every = parse_duration(interval)?;
    let emit = |typ: &str, data: serde_json::Value| {
        println!("{}", json!({"type": typ, "id": id, "data": data}));
        let _ = std::io::stdout().flush();
    };
    if once {
        emit("stats", serde_json::to_value(rt.stats(id)?)?);
        return Ok(());
    }
    let mut ooms = rt.oom_kills(id).unwrap_or(0);
    let mut next = std::time::Instant::now();
    loop {
        let st = match rt.state(id) {
            Ok(s) => s,
            Err(_) => return Ok(()),
        };
        if st.status == state::Status::Stopped {
            return Ok(());
        }
        let now_ooms = rt.oom_kills(id).unwrap_or(ooms);
        if now_ooms > ooms {
            emit("oom", json!(null));
            ooms = now_ooms;
        }
        if std::time::Instant::now() >= next {
            if let Ok(s) = rt.stats(id) {
                emit("stats", serde_json::to_value(s)?);
            }
            next += every;
        }
        std::thread::sleep(Duration::from_millis(200).min(every));
    }
}

/// Bytes with an optional binary suffix (k, m, g, t), or -1.
fn parse_bytes(s: &str) -> anyhow::Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.trim_end_matches('b');
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: i64 = num.parse().map_err(|_| anyhow!("invalid size {s:?}"))?;
    n.checked_mul(mul)
        .ok_or_else(|| anyhow!("size {s:?} is too large"))
}

fn update(rt: &Runtime, u: &UpdateArgs) -> anyhow::Result<()> {
    let mut v = match &u.resources {
        Some(p) if p == Path::new("-") => {
            serde_json::from_reader(std::io::stdin()).context("reading resources from stdin")?
        }
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?;
            serde_json::from_reader(f).with_context(|| format!("parse {}", p.display()))?
        }
        None => json!({}),
    };
    if let Some(w) = u.blkio_weight {
        v["blockIO"]["weight"] = json!(w);
    }
    if let Some(x) = u.cpu_period {
        v["cpu"]["period"] = json!(x);
    }
    if let Some(x) = u.cpu_quota {
        v["cpu"]["quota"] = json!(x);
    }
    if let Some(x) = u.cpu_rt_period {
        v["cpu"]["realtimePeriod"] = json!(x);
    }
    if let Some(x) = u.cpu_rt_runtime {
        v["cpu"]["realtimeRuntime"] = json!(x);
    }
    if let Some(x) = u.cpu_share {
        v["cpu"]["shares"] = json!(x);
    }
    if let Some(x) = &u.cpuset_cpus {
        v["cpu"]["cpus"] = json!(x);
    }
    if let Some(x) = &u.cpuset_mems {
        v["cpu"]["mems"] = json!(x);
    }
    if let Some(x) = &u.memory {
        v["memory"]["limit"] = json!(parse_bytes(x)?);
    }
    if let Some(x) = &u.memory_reservation {
        v["memory"]["reservation"] = json!(parse_bytes(x)?);
    }
    if let Some(x) = &u.memory_swap {
        v["memory"]["swap"] = json!(parse_bytes(x)?);
    }
    if let Some(x) = u.pids_limit {
        v["pids"]["limit"] = json!(x);
    }
    if u.kernel_memory.is_some() {
        eprintln!("warning: --kernel-memory is ignored (deprecated by the kernel)");
    }
    let r: oci_spec::runtime::LinuxResources =
        serde_json::from_value(v).context("invalid resources")?;
    rt.update(&u.id, &r)?;
    Ok(())
}

fn write_spec(bundle: &Path, rootless: bool) -> anyhow::Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("{} already exists; remove it first", path.display());
    }
    let mut spec = default_spec();
    if rootless {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let ns = spec["linux"]["namespaces"].as_array_mut().expect("literal");
        ns.retain(|n| n["type"] != "network" && n["type"] != "cgroup");
        ns.push(json!({"type": "user"}));
        spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
        spec["linux"]
            .as_object_mut()
            .expect("literal")
            .remove("resources");
        let mounts = spec["mounts"].as_array_mut().expect("literal");
        mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
        for m in mounts.iter_mut() {
            if m["destination"] == "/sys" {
                *m = json!({"destination": "/sys", "type": "none", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
            }
            if m["destination"] == "/dev/pts" {
                let o = m["options"].as_array_mut().expect("literal");
                o.retain(|x| x != "gid=5");
            }
        }
    }
    std::fs::write(&path, serde_json::to_string_pretty(&spec)? + "\n")
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

fn default_spec() -> serde_json::Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": berth_runtime::spec::OCI_VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "berth",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_line_skips_repeated_causes() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let e = anyhow::Error::new(berth_runtime::Error::InvalidArgument(format!(
            "open x: {io}"
        )))
        .context("create c1");
        assert_eq!(
            error_line(&e),
            "create c1: open x: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn logrus_text_lines() {
        let l = logrus::text_line("error", "container \"c1\" does not exist");
        let (time, rest) = l
            .strip_prefix("time=\"")
            .and_then(|r| r.split_once("\" "))
            .unwrap();
        assert!(!time.contains('.') && time.contains('T'), "{l}");
        assert_eq!(rest, r#"level=error msg="container \"c1\" does not exist""#);
        assert!(logrus::text_line("error", "plain-word_1.0/x@y^z+w")
            .ends_with(" msg=plain-word_1.0/x@y^z+w"));
        assert_eq!(
            logrus::go_quote("a\tb\nc\\d\u{1}\u{7f}\u{85}é"),
            r#""a\tb\nc\\d\x01\x7f\u0085é""#
        );
    }

    #[test]
    fn logrus_json_lines() {
        let l = logrus::json_line("error", "a <b> & \"c\"");
        assert!(
            l.starts_with(r#"{"level":"error","msg":"a \u003cb\u003e \u0026 \"c\"","time":""#),
            "{l}"
        );
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["msg"], "a <b> & \"c\"");
    }

    #[test]
    fn logrus_terminal_line() {
        let l = logrus::terminal_line("ERRO", 31, "short");
        assert!(l.starts_with("\x1b[31mERRO\x1b[0m[0000] short "), "{l:?}");
        assert_eq!(l.len(), "\x1b[31mERRO\x1b[0m[0000] ".len() + 45);
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("NOPE")
            .unwrap_err()
            .to_string()
            .contains("NOPE"));
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn options_before_or_after_id() {
        let a =
            Cli::try_parse_from(["r", "--root", "/x", "create", "--bundle", "/b", "c1"]).unwrap();
        let b =
            Cli::try_parse_from(["r", "create", "c1", "--bundle", "/b", "--root", "/x"]).unwrap();
        for c in [a, b] {
            assert_eq!(c.root, PathBuf::from("/x"));
            match c.cmd {
                Some(Cmd::Create(ca)) => {
                    assert_eq!(ca.id, "c1");
                    assert_eq!(ca.bundle, PathBuf::from("/b"));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn exec_command_keeps_its_flags() {
        let c = Cli::try_parse_from(["r", "exec", "-t", "c1", "sh", "-c", "echo -n hi"]).unwrap();
        match c.cmd {
            Some(Cmd::Exec(e)) => {
                assert!(e.tty);
                assert_eq!(e.command, vec!["sh", "-c", "echo -n hi"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kill_and_delete_forms() {
        let c = Cli::try_parse_from(["r", "kill", "--all", "c1", "KILL"]).unwrap();
        assert!(matches!(c.cmd, Some(Cmd::Kill { all: true, .. })));
        let c = Cli::try_parse_from(["r", "delete", "-f", "c1"]).unwrap();
        assert!(matches!(c.cmd, Some(Cmd::Delete { force: true, .. })));
        let c = Cli::try_parse_from(["r", "--log", "/l", "--log-format", "json", "state", "c1"])
            .unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(Cli::try_parse_from(["r", "--log-format", "xml", "state", "c1"]).is_err());
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("100M").unwrap(), 100 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        assert!(parse_bytes("lots").is_err());
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn default_spec_parses() {
        let s: oci_spec::runtime::Spec = serde_json::from_value(default_spec()).unwrap();
        assert_eq!(
            s.process().as_ref().unwrap().args().as_ref().unwrap()[0],
            "sh"
        );
    }
}

/// A fast path for the commands clients call on every container (`create`,
/// `run`, `start`, `state`, `kill`, `delete`), in their plain forms.
///
/// clap builds the parser of every subcommand on each start: 0.3 ms and 59
/// page faults of a 1.1 ms `berth-runtime list` here, about 5% of a whole
/// `run`. This path accepts only what it is sure of: known flags (long
/// forms as `--flag VALUE` or `--flag=VALUE`, and the documented short
/// ones), each at most once, values that do not start with `-`, and the right
/// number of positionals. Anything else (help, errors, `--`, other commands)
/// returns None and goes to clap, so clap stays the one definition of the
/// grammar; a unit test checks that both agree wherever this path answers.
mod fast_cli {
    use std::ffi::OsString;
    use std::path::PathBuf;

    use super::{Cli, Cmd, CreateArgs, LogFormat};

    /// Globals, then the command's own flags and positionals, as clap would.
    pub fn parse(args: &[OsString]) -> Option<Cli> {
        let args: Vec<&str> = args.iter().map(|a| a.to_str()).collect::<Option<_>>()?;
        let mut cli = Cli {
            root: PathBuf::from("/run/berth-runtime"),
            log: None,
            log_format: LogFormat::Text,
            debug: false,
            systemd_cgroup: false,
            version: false,
            cmd: None,
        };
        let mut seen: Vec<&str> = Vec::new();
        let mut command: Option<&str> = None;
        let mut positionals: Vec<&str> = Vec::new();
        let mut c = CreateArgs {
            id: String::new(),
            bundle: PathBuf::from("."),
            console_socket: None,
            pid_file: None,
            no_pivot: false,
            no_new_keyring: false,
            preserve_fds: 0,
        };
        let (mut detach, mut keep, mut all, mut force) = (false, false, false, false);
        let mut i = 0;
        while i < args.len() {
            let a = args[i];
            i += 1;
            if !a.starts_with('-') {
                if command.is_none() {
                    command = Some(a);
                } else {
                    positionals.push(a);
                }
                continue;
            }
            // The flag and its value, if it takes one.
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v)),
                _ => (a, None),
            };
            let takes_value = matches!(
                name,
                "--root"
                    | "--log"
                    | "--log-format"
                    | "-b"
                    | "--bundle"
                    | "--console-socket"
                    | "--pid-file"
                    | "--preserve-fds"
            );
            let value = if takes_value {
                match inline {
                    Some(v) => Some(v),
                    None => {
                        let v = *args.get(i)?;
                        i += 1;
                        Some(v)
                    }
                }
            } else if inline.is_some() {
                return None;
            } else {
                None
            };
            if value.is_some_and(|v| v.is_empty() || v.starts_with('-')) {
                return None;
            }
            // Each flag once; `-b` and `--bundle` are one flag.
            let key = match name {
                "-b" => "--bundle",
                "-d" => "--detach",
                "-a" => "--all",
                "-f" => "--force",
                n => n,
            };
            if seen.contains(&key) {
                return None;
            }
            seen.push(key);
            let cmd = command.unwrap_or("");
            let create_like = matches!(cmd, "create" | "run");
            match (key, value) {
                ("--root", Some(v)) => cli.root = PathBuf::from(v),
                ("--log", Some(v)) => cli.log = Some(PathBuf::from(v)),
                ("--log-format", Some("text")) => cli.log_format = LogFormat::Text,
                ("--log-format", Some("json")) => cli.log_format = LogFormat::Json,
                ("--debug", None) => cli.debug = true,
                ("--systemd-cgroup", None) => cli.systemd_cgroup = true,
                ("--bundle", Some(v)) if create_like => c.bundle = PathBuf::from(v),
                ("--console-socket", Some(v)) if create_like => {
                    c.console_socket = Some(PathBuf::from(v))
                }
                ("--pid-file", Some(v)) if create_like => c.pid_file = Some(PathBuf::from(v)),
                ("--preserve-fds", Some(v)) if create_like => c.preserve_fds = v.parse().ok()?,
                ("--no-pivot", None) if create_like => c.no_pivot = true,
                ("--no-new-keyring", None) if create_like => c.no_new_keyring = true,
                ("--detach", None) if cmd == "run" => detach = true,
                ("--keep", None) if cmd == "run" => keep = true,
                ("--all", None) if cmd == "kill" => all = true,
                ("--force", None) if cmd == "delete" => force = true,
                _ => return None,
            }
        }
        let one = |p: &[&str]| (p.len() == 1).then(|| p[0].to_string());
        cli.cmd = Some(match command? {
            "create" => {
                c.id = one(&positionals)?;
                Cmd::Create(c)
            }
            "run" => {
                c.id = one(&positionals)?;
                Cmd::Run { c, detach, keep }
            }
            "start" => Cmd::Start {
                id: one(&positionals)?,
            },
            "state" => Cmd::State {
                id: one(&positionals)?,
            },
            "delete" => Cmd::Delete {
                id: one(&positionals)?,
                force,
            },
            "kill" => match positionals[..] {
                [id] => Cmd::Kill {
                    id: id.into(),
                    signal: None,
                    all,
                },
                [id, sig] => Cmd::Kill {
                    id: id.into(),
                    signal: Some(sig.into()),
                    all,
                },
                _ => return None,
            },
            _ => return None,
        });
        Some(cli)
    }

    #[cfg(test)]
    mod tests {
        use clap::Parser;

        use super::*;

        fn argv(s: &str) -> Vec<OsString> {
            s.split_whitespace().map(OsString::from).collect()
        }

        /// Wherever the fast path answers, clap gives the same `Cli`; the
        /// corpus has each command in the forms clients use, and forms the
        /// fast path must leave to clap.
        #[test]
        fn agrees_with_clap() {
            let answered = [
                "create --bundle /b c1",
                "create c1 --bundle /b",
                "--root /r create -b /b --pid-file /p --console-socket /s c1",
                "--root=/r --log /l --log-format json create c1 --bundle=/b --no-pivot --no-new-keyring --preserve-fds 2",
                "run --bundle /b c1",
                "run -d --bundle /b c1 --keep",
                "--debug --systemd-cgroup run c1",
                "start c1",
                "state c1",
                "--root /r kill c1",
                "kill c1 KILL",
                "kill --all c1 9",
                "kill c1 -a",
                "delete c1",
                "delete --force c1",
                "delete -f c1 --root /x",
            ];
            for line in answered {
                let args = argv(line);
                let fast = parse(&args).unwrap_or_else(|| panic!("fast path refused {line:?}"));
                let mut full = vec![OsString::from("berth-runtime")];
                full.extend(args);
                let slow = Cli::try_parse_from(full).unwrap_or_else(|e| panic!("{line}: {e}"));
                assert_eq!(fast, slow, "{line}");
            }
            let refused = [
                "",
                "--help",
                "create --help",
                "create",
                "create c1 c2",
                "run --bundle c1",
                "create --bundle -x c1",
                "create --bundle= c1",
                "create -b /b --bundle /c c1",
                "--root /a --root /b state c1",
                "create --preserve-fds x c1",
                "create -d c1",
                "start --force c1",
                "kill c1 9 x",
                "delete -fa c1",
                "--log-format xml state c1",
                "--debug=1 state c1",
                "exec c1 ls",
                "list",
                "-v",
                "state -- c1",
                "c1 start",
            ];
            for line in refused {
                assert_eq!(parse(&argv(line)), None, "{line:?}");
            }
        }
    }
}
