//! Root integration tests of `berth-monitor`: a real container on
//! `berth-runtime`, its output in the log file, its exit recorded, nothing
//! left behind.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_monitor::attach::{self, Msg};
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
        exit_command: Vec::new(),
        pid_file: None,
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

/// A test's attach client: one seqpacket connection to the monitor.
struct Client(std::os::fd::OwnedFd);

impl Client {
    fn connect(path: &Path) -> Client {
        Client(attach::connect(path).expect("connect to the attach socket"))
    }

    fn send(&self, m: Msg<'_>) {
        let mut p = Vec::new();
        m.encode(&mut p);
        rustix::net::send(&self.0, &p, rustix::net::SendFlags::NOSIGNAL).expect("send");
    }

    /// The next message (bounded wait against hangs); None at hang-up.
    fn recv(&self) -> Option<Vec<u8>> {
        let mut fds = [rustix::event::PollFd::new(
            &self.0,
            rustix::event::PollFlags::IN,
        )];
        let t = rustix::event::Timespec {
            tv_sec: 20,
            tv_nsec: 0,
        };
        let n = rustix::event::poll(&mut fds, Some(&t)).expect("poll");
        assert!(n > 0, "no attach message within 20 s");
        let mut buf = vec![0u8; 1 + attach::MAX_DATA];
        let (_, n) =
            rustix::net::recv(&self.0, &mut buf[..], rustix::net::RecvFlags::empty()).unwrap();
        (n > 0).then(|| buf[..n].to_vec())
    }

    /// Output (types 1 and 2, tagged) until the container's exit message;
    /// returns them and the exit code.
    fn until_exit(&self) -> (Vec<(u8, Vec<u8>)>, i32) {
        let mut out = Vec::new();
        loop {
            let m = self.recv().expect("hang-up before the exit message");
            match Msg::decode(&m).unwrap() {
                Msg::Stdout(b) => out.push((attach::STDOUT, b.to_vec())),
                Msg::Stderr(b) => out.push((attach::STDERR, b.to_vec())),
                Msg::Exit(c) => return (out, c),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// stdout bytes until `want` has arrived.
    fn stdout_until(&self, want: &str) -> String {
        let mut got = String::new();
        while !got.contains(want) {
            let m = self.recv().expect("hang-up");
            match Msg::decode(&m).unwrap() {
                Msg::Stdout(b) => got.push_str(&String::from_utf8_lossy(b)),
                other => panic!("unexpected {other:?} while waiting for {want:?} in {got:?}"),
            }
        }
        got
    }
}

fn joined(out: &[(u8, Vec<u8>)], t: u8) -> String {
    out.iter()
        .filter(|(k, _)| *k == t)
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect()
}

fn log_text(dir: &Path) -> String {
    logfile::read_entries(&dir.join("ctr.log"), Format::K8sFile)
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e.stream, Stream::Stdout, "{e:?}");
            String::from_utf8_lossy(&e.line).into_owned()
        })
        .collect()
}

/// `-i`: `cat` reads what a client sends; its output comes back as type 1
/// and goes to the log; `4` closes its stdin so it exits 0, and the client
/// gets the exit message; the socket is gone once the monitor exits.
#[test]
fn stdin_through_an_attach_client() {
    if !need_root("stdin_through_an_attach_client") {
        return;
    }
    let rt = Rt::new();
    let id = unique("mon-stdin");
    let b = Bundle::new(&id, &["cat"]);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("attach.sock");
    let mut cfg = config(&rt, &id, &b, dir.path(), "k8s-file");
    cfg.stdin = true;
    cfg.attach_socket = Some(sock.clone());
    cfg.wait_attach = true;
    let (child, pid) = spawn(&cfg, dir.path());
    assert!(pid.trim().parse::<i32>().is_ok(), "{pid:?}");
    let c = Client::connect(&sock);
    c.send(Msg::Stdin(b"hello\n"));
    assert_eq!(c.stdout_until("hello\n"), "hello\n");
    c.send(Msg::Stdin(b"bye"));
    c.send(Msg::CloseStdin);
    let (out, code) = c.until_exit();
    assert_eq!((joined(&out, attach::STDOUT), code), ("bye".to_string(), 0));
    assert_eq!(c.recv(), None, "hang-up after the last exit");
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(log_text(dir.path()), "hello\nbye");
    assert!(!sock.exists(), "attach socket left behind");
    let exit = run::read_exit(&dir.path().join("exit.json"))
        .unwrap()
        .unwrap();
    assert_eq!((exit.exit_code, exit.oom_killed), (0, false));
    assert_no_leftovers(&rt, &id, b.path());
}

/// A terminal: the container's stdio is a /dev/pts device whose size is
/// what the client sent with `5`; all output is type 1 and stdout in the
/// log; `4` is ignored with a terminal (docker's behaviour), so the
/// container goes on reading. The console and attach sockets have paths
/// longer than `sockaddr_un` holds.
#[test]
fn terminal_through_the_pty() {
    if !need_root("terminal_through_the_pty") {
        return;
    }
    let rt = Rt::new();
    let id = unique("mon-tty");
    let mut b = Bundle::new(
        &id,
        &[
            "sh",
            "-c",
            "read a; stty size; tty; echo err >&2; read b; echo \"b=$b\"",
        ],
    );
    b.edit(|c| c["process"]["terminal"] = serde_json::json!(true));
    let dir = tempfile::tempdir().unwrap();
    // Socket paths too long for sockaddr_un: reached through /proc/PID/fd.
    let deep = dir.path().join("d".repeat(100));
    std::fs::create_dir(&deep).unwrap();
    let sock = deep.join("attach.sock");
    let mut cfg = config(&rt, &id, &b, dir.path(), "k8s-file");
    cfg.exit_file = deep.join("exit.json");
    cfg.terminal = true;
    cfg.stdin = true;
    cfg.attach_socket = Some(sock.clone());
    cfg.wait_attach = true;
    let (child, _) = spawn(&cfg, dir.path());
    let c = Client::connect(&sock);
    c.send(Msg::Resize { rows: 33, cols: 77 });
    c.send(Msg::Stdin(b"go\n"));
    c.send(Msg::CloseStdin);
    let got = c.stdout_until("err");
    c.send(Msg::Stdin(b"still\n"));
    let (out, code) = c.until_exit();
    assert_eq!(code, 0);
    assert!(out.iter().all(|(t, _)| *t == attach::STDOUT), "{out:?}");
    let all = got + &joined(&out, attach::STDOUT);
    assert!(all.contains("33 77\r\n/dev/pts/"), "{all:?}");
    assert!(all.contains("b=still"), "{all:?}");
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(log_text(dir.path()).contains("33 77"));
    assert!(!sock.exists(), "attach socket left behind");
    let exit = run::read_exit(&cfg.exit_file).unwrap().unwrap();
    assert_eq!(exit.exit_code, 0);
    assert!(
        !deep.join("exit.runtime").exists(),
        "runtime state dir left"
    );
    assert_no_leftovers(&rt, &id, b.path());
}

/// `waitAttach`: a container that prints at once, its first line received
/// by a client that connects after the PID line.
#[test]
fn wait_attach_sees_the_first_byte() {
    if !need_root("wait_attach_sees_the_first_byte") {
        return;
    }
    let rt = Rt::new();
    let id = unique("mon-wait");
    let b = Bundle::new(&id, &["sh", "-c", "echo first; echo second >&2; exit 4"]);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("attach.sock");
    let mut cfg = config(&rt, &id, &b, dir.path(), "k8s-file");
    cfg.attach_socket = Some(sock.clone());
    cfg.wait_attach = true;
    let (child, _) = spawn(&cfg, dir.path());
    let c = Client::connect(&sock);
    let (out, code) = c.until_exit();
    assert_eq!(code, 4);
    assert_eq!(joined(&out, attach::STDOUT), "first\n");
    assert_eq!(joined(&out, attach::STDERR), "second\n");
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_no_leftovers(&rt, &id, b.path());
}

/// Two clients both get the output; one that hangs up does not disturb
/// the other.
#[test]
fn two_clients_and_a_detach() {
    if !need_root("two_clients_and_a_detach") {
        return;
    }
    let rt = Rt::new();
    let id = unique("mon-two");
    let b = Bundle::new(
        &id,
        &[
            "sh",
            "-c",
            "read x; echo \"one $x\"; read y; echo \"two $y\"",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("attach.sock");
    let mut cfg = config(&rt, &id, &b, dir.path(), "k8s-file");
    cfg.stdin = true;
    cfg.attach_socket = Some(sock.clone());
    cfg.wait_attach = true;
    let (child, _) = spawn(&cfg, dir.path());
    let a = Client::connect(&sock);
    let b2 = Client::connect(&sock);
    a.send(Msg::Stdin(b"a\n"));
    assert_eq!(a.stdout_until("one a\n"), "one a\n");
    assert_eq!(b2.stdout_until("one a\n"), "one a\n");
    drop(b2);
    a.send(Msg::Stdin(b"b\n"));
    let (out, code) = a.until_exit();
    assert_eq!(
        (joined(&out, attach::STDOUT), code),
        ("two b\n".to_string(), 0)
    );
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(log_text(dir.path()), "one a\ntwo b\n");
    assert_no_leftovers(&rt, &id, b.path());
}

/// A container over its 8 MiB memory limit (no swap) is OOM-killed: 137
/// and `oomKilled`; a normal exit under the same limit is not.
#[test]
fn oom_kill_is_recorded() {
    if !need_root("oom_kill_is_recorded") {
        return;
    }
    let rt = Rt::new();
    // busybox tail keeps a whole newline-free input in memory.
    for (args, code, oom) in [
        (
            &["sh", "-c", "head -c 67108864 /dev/zero | tail"][..],
            137,
            true,
        ),
        (
            &["sh", "-c", "head -c 1024 /dev/zero | tail >/dev/null"][..],
            0,
            false,
        ),
    ] {
        let id = unique("mon-oom");
        let mut b = Bundle::new(&id, args);
        b.edit(|c| {
            c["linux"]["resources"]["memory"] =
                serde_json::json!({"limit": 8 << 20, "swap": 8 << 20})
        });
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(&rt, &id, &b, dir.path(), "k8s-file");
        cfg.cgroup_path = Some(format!("/berth-test-{id}"));
        let (child, _) = spawn(&cfg, dir.path());
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let exit = run::read_exit(&dir.path().join("exit.json"))
            .unwrap()
            .unwrap();
        assert_eq!((exit.exit_code, exit.oom_killed), (code, oom), "{args:?}");
        assert_no_leftovers(&rt, &id, b.path());
    }
}

/// The state file names the running init and is rewritten with
/// `restartCount` 1 after a restart; clients stay connected across it and
/// get one exit message per run.
#[test]
fn state_file_follows_restarts() {
    if !need_root("state_file_follows_restarts") {
        return;
    }
    let rt = Rt::new();
    let id = unique("mon-state");
    let b = Bundle::new(&id, &["sh", "-c", "read x; exit 1"]);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("attach.sock");
    let state = dir.path().join("run.json");
    let mut cfg = config(&rt, &id, &b, dir.path(), "k8s-file");
    cfg.stdin = true;
    cfg.attach_socket = Some(sock.clone());
    cfg.wait_attach = true;
    cfg.state_file = Some(state.clone());
    cfg.restart = run::RestartPolicy::parse("on-failure:1").unwrap();
    let (child, pid) = spawn(&cfg, dir.path());
    let pid: i32 = pid.trim().parse().unwrap_or_else(|_| panic!("{pid:?}"));
    let c = Client::connect(&sock);
    wait_until("the state file", || {
        run::read_run(&state).unwrap().is_some()
    });
    let first = run::read_run(&state).unwrap().unwrap();
    assert_eq!((first.pid, first.restart_count), (pid, 0));
    c.send(Msg::Stdin(b"x\n"));
    assert_eq!(c.until_exit().1, 1);
    wait_until("the restart's state file", || {
        run::read_run(&state).unwrap().unwrap().restart_count == 1
    });
    let second = run::read_run(&state).unwrap().unwrap();
    assert_ne!(second.pid, pid);
    assert!(second.started_at > first.started_at, "{first:?} {second:?}");
    c.send(Msg::Stdin(b"y\n"));
    assert_eq!(c.until_exit().1, 1);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let exit = run::read_exit(&dir.path().join("exit.json"))
        .unwrap()
        .unwrap();
    assert_eq!((exit.pid, exit.restart_count), (second.pid, 1));
    assert_no_leftovers(&rt, &id, b.path());
}

/// Not a test: the child of `relay_under_a_real_terminal` (under a pty)
/// and `relay_pipes_more_than_the_buffers_hold` (with
/// `BERTH_TEST_RELAY_PIPE`: stdin closed at its end, no tty), run by this
/// test binary with the socket in `BERTH_TEST_RELAY_SOCKET`; exits with the
/// container's exit code.
#[test]
fn relay_child_helper() {
    let Some(sock) = std::env::var_os("BERTH_TEST_RELAY_SOCKET") else {
        return;
    };
    let tty = std::env::var_os("BERTH_TEST_RELAY_PIPE").is_none();
    let opts = attach::RelayOptions {
        stdin: true,
        close_stdin: !tty,
        tty,
        until_exit: true,
    };
    let code = attach::relay(Path::new(&sock), &opts).expect("relay");
    std::process::exit(code.unwrap_or(100));
}

/// Reads `master` until its text contains `want` (bounded).
fn read_until(master: &std::os::fd::OwnedFd, got: &mut String, want: &str) {
    let mut buf = [0u8; 4096];
    while !got.contains(want) {
        let mut fds = [rustix::event::PollFd::new(
            master,
            rustix::event::PollFlags::IN,
        )];
        let t = rustix::event::Timespec {
            tv_sec: 20,
            tv_nsec: 0,
        };
        let n = rustix::event::poll(&mut fds, Some(&t)).expect("poll");
        assert!(n > 0, "no {want:?} within 20 s in {got:?}");
        let n = rustix::io::read(master, &mut buf).expect("read the pty");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// `relay` with a terminal, in a child on a real pty: our terminal goes raw
/// while it runs and is restored after; its size reaches the container at
/// once and again after SIGWINCH; keys reach the container and its output
/// comes back; the container's exit code is returned.
#[test]
fn relay_under_a_real_terminal() {
    if !need_root("relay_under_a_real_terminal") {
        return;
    }
    use rustix::termios::{tcgetattr, tcgetwinsize, tcsetwinsize, LocalModes, Winsize};
    let rt = Rt::new();
    let id = unique("mon-relay");
    let mut b = Bundle::new(
        &id,
        &["sh", "-c", "read a; stty size; read b; stty size; exit 3"],
    );
    b.edit(|c| c["process"]["terminal"] = serde_json::json!(true));
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("attach.sock");
    let mut cfg = config(&rt, &id, &b, dir.path(), "k8s-file");
    cfg.terminal = true;
    cfg.stdin = true;
    cfg.attach_socket = Some(sock.clone());
    cfg.wait_attach = true;
    let (monitor, pid) = spawn(&cfg, dir.path());
    let pid: i32 = pid.trim().parse().unwrap_or_else(|_| panic!("{pid:?}"));

    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    let size = |rows, cols| Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    tcsetwinsize(&master, size(40, 100)).unwrap();
    let cooked = LocalModes::ICANON | LocalModes::ECHO;
    assert!(tcgetattr(&master).unwrap().local_modes.contains(cooked));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "relay_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BERTH_TEST_RELAY_SOCKET", &sock)
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .expect("spawn the relay child");
    wait_until("the relay's raw mode", || {
        !tcgetattr(&master)
            .unwrap()
            .local_modes
            .intersects(LocalModes::ICANON | LocalModes::ECHO)
    });
    let mut got = String::new();
    rustix::io::write(&master, b"one\r").unwrap();
    read_until(&master, &mut got, "40 100");
    tcsetwinsize(&master, size(50, 120)).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGWINCH,
    )
    .unwrap();
    // The container's own terminal, through its init's stdin.
    let ctr_tty = std::fs::File::open(format!("/proc/{pid}/fd/0")).unwrap();
    wait_until("the container's terminal to be resized", || {
        tcgetwinsize(&ctr_tty).map(|w| (w.ws_row, w.ws_col)).ok() == Some((50, 120))
    });
    drop(ctr_tty);
    rustix::io::write(&master, b"two\r").unwrap();
    read_until(&master, &mut got, "50 120");
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(3), "{got:?}");
    assert!(
        tcgetattr(&master).unwrap().local_modes.contains(cooked),
        "the terminal was not restored"
    );
    let o = monitor.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_no_leftovers(&rt, &id, b.path());
}

/// `relay` without a terminal, as `cat FILE | berth run -i IMAGE cat`
/// would: 4 MiB (more than the socket buffers hold) through the
/// container and back, stdin closed at its end, exit code 0.
#[test]
fn relay_pipes_more_than_the_buffers_hold() {
    if !need_root("relay_pipes_more_than_the_buffers_hold") {
        return;
    }
    let rt = Rt::new();
    let id = unique("mon-pipe");
    let b = Bundle::new(&id, &["cat"]);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("attach.sock");
    let mut cfg = config(&rt, &id, &b, dir.path(), "k8s-file");
    cfg.stdin = true;
    cfg.attach_socket = Some(sock.clone());
    cfg.wait_attach = true;
    let (monitor, _) = spawn(&cfg, dir.path());
    let mut data = String::new();
    let mut i = 0;
    while data.len() < 4 << 20 {
        data.push_str(&format!("line {i}\n"));
        i += 1;
    }
    let input = dir.path().join("input");
    std::fs::write(&input, &data).unwrap();
    let o = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "relay_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BERTH_TEST_RELAY_SOCKET", &sock)
        .env("BERTH_TEST_RELAY_PIPE", "1")
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .expect("run the relay child");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // libtest's "running 1 test" comes first.
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(
        out.ends_with(&data) && out.len() - data.len() < 100,
        "{} bytes back of {}: {:?}",
        out.len(),
        data.len(),
        &out[..out.len().min(200)]
    );
    let o = monitor.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_no_leftovers(&rt, &id, b.path());
}
