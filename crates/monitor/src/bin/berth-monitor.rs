//! `berth-monitor CONFIG.json`: one container's monitor. It creates and
//! starts the container, prints `PID` of its init on stdout and closes
//! stdout (the caller waits for that line), then logs the container's
//! output, reaps it and writes its exit record, and restarts it as its
//! restart policy says. A failure to start is one
//! line on stderr and exit code 1.
//!
//! No argument parser and no async runtime: the monitor stays small, since
//! one runs per container.

use std::io::Write;
use std::process::ExitCode;

use berth_monitor::run::{self, MonitorConfig};

fn main() -> ExitCode {
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
    let (pid, out_r, err_r) = match run::start(&cfg) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("berth-monitor: {e}");
            return ExitCode::from(1);
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{pid}");
        let _ = out.flush();
    }
    // The caller reads until end of file: stdout must not stay open here.
    let _ = rustix::stdio::dup2_stdout(
        rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::WRONLY,
            rustix::fs::Mode::empty(),
        )
        .expect("open /dev/null"),
    );
    match run::supervise_with_restarts(&cfg, pid, out_r, err_r) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-monitor: {e}");
            ExitCode::from(1)
        }
    }
}
