//! Root integration tests of `berth-monitor`: a real container on
//! `berth-runtime`, its output in the log file, its exit recorded, nothing
//! left behind.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_monitor::logfile::{self, Format, Stream};
use berth_monitor::run::{self, MonitorConfig};
use berth_tests::*;

fn monitor_bin() -> PathBuf {
    built_bin("berth-monitor", "BERTH_MONITOR")
}

/// Starts the monitor on `b`; returns it and the PID line it printed (read
/// to the end of its stdout, which it closes once the container runs).
fn spawn_monitor(
    rt: &Rt,
    id: &str,
    b: &Bundle,
    dir: &Path,
    driver: &str,
) -> (std::process::Child, String) {
    spawn_monitor_with(rt, id, b, dir, driver, run::RestartPolicy::default())
}

fn spawn_monitor_with(
    rt: &Rt,
    id: &str,
    b: &Bundle,
    dir: &Path,
    driver: &str,
    restart: run::RestartPolicy,
) -> (std::process::Child, String) {
    let mut cfg = config(rt, id, b, dir, driver);
    cfg.restart = restart;
    spawn(&cfg, dir)
}

/// The monitor's config for `b`: log `DIR/ctr.log`, exit record
/// `DIR/exit.json`, no terminal, stdin or attach socket.
fn config(rt: &Rt, id: &str, b: &Bundle, dir: &Path, driver: &str) -> MonitorConfig {
    MonitorConfig {
        runtime: runtime_bin(),
        runtime_root: rt.root.path().to_path_buf(),
        id: id.to_string(),
        bundle: b.path().to_path_buf(),
        log_path: Some(dir.join("ctr.log")),
        log_driver: driver.to_string(),
        log_max_size: None,
        log_max_file: 1,
        exit_file: dir.join("exit.json"),
        restart: run::RestartPolicy::default(),
        terminal: false,
        stdin: false,
        attach_socket: None,
        wait_attach: false,
        cgroup_path: None,
        state_file: None,
    }
}

/// Starts the monitor with `cfg` (written to `DIR/monitor.json`); returns
/// it and the PID line it printed.
fn spawn(cfg: &MonitorConfig, dir: &Path) -> (std::process::Child, String) {
    let cfg_path = dir.join("monitor.json");
    std::fs::write(&cfg_path, serde_json::to_vec(cfg).unwrap()).unwrap();
    let mut child = Command::new(monitor_bin())
        .arg(&cfg_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth-monitor");
    let mut pid_line = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut pid_line)
        .unwrap();
    (child, pid_line)
}

/// Runs the monitor on `b` until it exits; returns its exit status, the
/// PID line it printed and its stderr.
fn monitor(rt: &Rt, id: &str, b: &Bundle, dir: &Path, driver: &str) -> (i32, String, String) {
    let (child, pid_line) = spawn_monitor(rt, id, b, dir, driver);
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        pid_line,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn logs_output_and_records_the_exit() {
    if !need_root("logs_output_and_records_the_exit") {
        return;
    }
    for driver in ["k8s-file", "json-file"] {
        let rt = Rt::new();
        let id = unique("mon-exit");
        let b = Bundle::new(
            &id,
            &["sh", "-c", "echo out; echo err >&2; printf tail; exit 7"],
        );
        let dir = tempfile::tempdir().unwrap();
        let (code, pid, err) = monitor(&rt, &id, &b, dir.path(), driver);
        assert_eq!(code, 0, "{err}");
        let pid: i32 = pid.trim().parse().unwrap_or_else(|_| panic!("{pid:?}"));
        let exit = run::read_exit(&dir.path().join("exit.json"))
            .unwrap()
            .unwrap();
        assert_eq!((exit.exit_code, exit.pid), (7, pid));
        let format = if driver == "k8s-file" {
            Format::K8sFile
        } else {
            Format::JsonFile
        };
        let entries = logfile::read_entries(&dir.path().join("ctr.log"), format).unwrap();
        let mut got: Vec<(Stream, String)> = entries
            .iter()
            .map(|e| (e.stream, String::from_utf8_lossy(&e.line).into_owned()))
            .collect();
        got.sort_by_key(|(s, _)| *s as u8);
        assert_eq!(
            got,
            vec![
                (Stream::Stdout, "out\n".to_string()),
                (Stream::Stdout, "tail".to_string()),
                (Stream::Stderr, "err\n".to_string())
            ],
            "{driver}"
        );
        assert_no_leftovers(&rt, &id, b.path());
    }
}

/// The container's init killed from the host by SIGKILL: exit code 137.
#[test]
fn death_by_signal_is_128_plus_n() {
    if !need_root("death_by_signal_is_128_plus_n") {
        return;
    }
    let rt = Rt::new();
    let id = unique("mon-sig");
    let b = Bundle::new(&id, &["sleep", "100"]);
    let dir = tempfile::tempdir().unwrap();
    let (child, pid) = spawn_monitor(&rt, &id, &b, dir.path(), "k8s-file");
    let pid: i32 = pid.trim().parse().unwrap_or_else(|_| panic!("{pid:?}"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the container's init");
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let exit = run::read_exit(&dir.path().join("exit.json"))
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, 137);
    assert_no_leftovers(&rt, &id, b.path());
}

/// A container the runtime cannot start: the monitor says why (the
/// runtime's own message), exits 1, writes no exit record and leaves
/// nothing behind.
#[test]
fn a_failed_start_is_reported_and_cleaned() {
    if !need_root("a_failed_start_is_reported_and_cleaned") {
        return;
    }
    let rt = Rt::new();
    let id = unique("mon-fail");
    let b = Bundle::new(&id, &["/no/such/program"]);
    let dir = tempfile::tempdir().unwrap();
    let (code, pid, err) = monitor(&rt, &id, &b, dir.path(), "k8s-file");
    assert_eq!(code, 1, "{err}");
    assert!(pid.is_empty());
    assert!(
        err.contains("/no/such/program") && err.contains(&id),
        "{err}"
    );
    assert!(run::read_exit(&dir.path().join("exit.json"))
        .unwrap()
        .is_none());
    assert_no_leftovers(&rt, &id, b.path());
}

/// `on-failure:2`: a container that keeps failing runs three times, its
/// log has every run, and the last record counts two restarts. `always`
/// restarts a clean exit until the stop file appears.
#[test]
fn restart_policies_are_carried_out() {
    if !need_root("restart_policies_are_carried_out") {
        return;
    }
    let rt = Rt::new();
    let id = unique("mon-restart");
    let b = Bundle::new(&id, &["sh", "-c", "echo run; exit 3"]);
    let dir = tempfile::tempdir().unwrap();
    let policy = run::RestartPolicy::parse("on-failure:2").unwrap();
    let (child, _) = spawn_monitor_with(&rt, &id, &b, dir.path(), "k8s-file", policy);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let exit = run::read_exit(&dir.path().join("exit.json"))
        .unwrap()
        .unwrap();
    assert_eq!((exit.exit_code, exit.restart_count), (3, 2));
    let runs = logfile::read_entries(&dir.path().join("ctr.log"), Format::K8sFile).unwrap();
    assert_eq!(runs.len(), 3);
    assert_no_leftovers(&rt, &id, b.path());

    let id = unique("mon-always");
    let b = Bundle::new(&id, &["sh", "-c", "echo run"]);
    let dir = tempfile::tempdir().unwrap();
    let policy = run::RestartPolicy::parse("always").unwrap();
    let (child, _) = spawn_monitor_with(&rt, &id, &b, dir.path(), "k8s-file", policy);
    let log = dir.path().join("ctr.log");
    wait_until("three runs of the always-restarted container", || {
        logfile::read_entries(&log, Format::K8sFile)
            .map(|e| e.len() >= 3)
            .unwrap_or(false)
    });
    std::fs::write(dir.path().join("exit.stop"), "").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let exit = run::read_exit(&dir.path().join("exit.json"))
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, 0);
    assert!(exit.restart_count >= 2, "{exit:?}");
    assert_no_leftovers(&rt, &id, b.path());
}
