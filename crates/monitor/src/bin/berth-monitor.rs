//! `berth-monitor CONFIG.json`: one container's monitor. It creates and
//! starts the container, prints `PID` of its init on stdout and closes
//! stdout (the caller waits for that line), then logs the container's
//! output, serves its attach socket, reaps it and writes its exit record,
//! and restarts it as its restart policy says. A failure to start is one
//! line on stderr and exit code 1.
//!
//! With `waitAttach` the PID line comes right after `create`; the monitor
//! then waits (up to 30 s) for the first attach client before `start`, so
//! that client sees all output. A `start` that fails after that line is
//! reported the same way (stderr, exit 1, no exit record).
//!
//! Its stdin may be a lock its caller holds (the engine passes the
//! container's `flock`ed lock file): it is kept until the PID line is out,
//! so no other command acts on the container while it is being created and
//! started, even when the caller dies meanwhile. The monitor writes its own
//! PID file (`pidFile`) first, for the same reason.
//!
//! No argument parser and no async runtime: the monitor stays small, since
//! one runs per container.

use std::io::Write;
use std::process::ExitCode;

use berth_monitor::run::{self, Monitor, MonitorConfig};

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("berth-monitor: {e}");
    ExitCode::from(1)
}

fn main() -> ExitCode {
    // The monitor outlives the CLI beside a running container: run from a
    // copy of this binary that nothing can write, so not even a container
    // that can see it (a shared PID namespace with CAP_SYS_PTRACE) can reach
    // the host's file through /proc/PID/exe (the CVE-2019-5736 class).
    if let Err(e) = berth_exeseal::ensure_sealed() {
        eprintln!("berth-monitor: {e}");
        return ExitCode::from(2);
    }
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: berth-monitor CONFIG.json");
        return ExitCode::from(2);
    };
    let cfg: MonitorConfig = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "berth-monitor: {}: {e}",
                std::path::Path::new(&path).display()
            );
            return ExitCode::from(2);
        }
    };
    if let Some(p) = &cfg.pid_file {
        if let Err(e) = run::write_pid_file(p) {
            return fail(e);
        }
    }
    let wait_attach = cfg.wait_attach && cfg.attach_socket.is_some();
    let mut m = match Monitor::new(cfg) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let mut ctr = match m.create() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if !wait_attach {
        if let Err(e) = m.start(&ctr, 0) {
            return fail(e);
        }
    }
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", ctr.pid);
        let _ = out.flush();
    }
    // The caller reads until end of file: stdout must not stay open here;
    // and stdin (the caller's lock, if it passed one) is let go.
    let null = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDWR,
        rustix::fs::Mode::empty(),
    )
    .expect("open /dev/null");
    let _ = rustix::stdio::dup2_stdout(&null);
    let _ = rustix::stdio::dup2_stdin(&null);
    if wait_attach {
        if let Err(e) = m
            .wait_attach(&mut ctr, run::WAIT_ATTACH)
            .and_then(|_| m.start(&ctr, 0))
        {
            return fail(e);
        }
    }
    let exit_command = m.config().exit_command.clone();
    let r = m.supervise_with_restarts(ctr);
    // The monitor's own resources (the attach socket) go before the exit
    // command runs, since it removes the container.
    drop(m);
    if let Some((prog, args)) = exit_command.split_first() {
        // exec, not spawn: the command (`berth rm`) waits for this monitor
        // to be gone, which it is once this process is the command.
        use std::os::unix::process::CommandExt;
        let e = std::process::Command::new(prog)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .exec();
        return fail(format!("exit command {prog}: {e}"));
    }
    match r {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}
