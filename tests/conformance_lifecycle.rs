//! Runtime conformance with configs other tools write (issue 13): the
//! lifecycle items. Every bundle starts from `runc spec` output made at test
//! time and is edited per case; where runc 1.1 agrees with the expectation
//! the same case runs against `/usr/sbin/runc` too, so the expectation is
//! shown to be the common one and not berth's own.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use berth_tests::peer::*;
use berth_tests::*;
use serde_json::{json, Value};

macro_rules! root_only {
    ($name:expr) => {
        if !need_root($name) {
            return;
        }
    };
}

fn drop_namespace(c: &mut Value, typ: &str) {
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != typ);
}

fn set_namespace_path(c: &mut Value, typ: &str, path: &str) {
    let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
    match ns.iter_mut().find(|n| n["type"] == typ) {
        Some(n) => n["path"] = json!(path),
        None => ns.push(json!({"type": typ, "path": path})),
    }
}

/// The mountinfo line of our `/`, without its mount ID: its propagation
/// must be the same after a container without a mount namespace ran.
fn root_mount_line() -> String {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .map(|l| l.split_once(' ').unwrap().1.to_string())
        .expect("a mount on /")
}

// ---------------------------------------------------------------- item 3

/// A config without a mount namespace runs, as with runc and youki: the
/// mounts go under the rootfs in the caller's namespace, the process is
/// chrooted into it, and maskedPaths/readonlyPaths (which need a namespace
/// of their own) are refused. berth keeps its mounts on one bind mount of
/// the rootfs and removes it at delete, leaves the propagation of `/` alone,
/// and `exec` enters the container's root.
#[test]
fn no_mount_namespace_runs_chrooted() {
    root_only!("no_mount_namespace_runs_chrooted");
    let script = "cat /marker; test -r /proc/self/status && echo proc-ok; \
                  if touch /rw-probe 2>/dev/null; then echo rootfs-rw; else echo rootfs-ro; fi";
    for mut rt in Peer::both() {
        // runc mounts in the namespace it runs in and never unmounts: give
        // it one of its own.
        rt.private_mntns = !rt.is_berth();
        let id = unique("nomnt");
        let mut b = peer_bundle("runc", false, &id, &sh(script));
        b.edit(|c| {
            drop_namespace(c, "mount");
            let l = c["linux"].as_object_mut().unwrap();
            l.remove("maskedPaths");
            l.remove("readonlyPaths");
        });
        fs::write(b.rootfs().join("marker"), "marker-in-rootfs\n").unwrap();
        let before = root_mount_line();
        let (code, out, err) = rt.run(&id, &b);
        assert_eq!(code, 0, "{}: {out}{err}", rt.name);
        assert!(out.contains("marker-in-rootfs"), "{}: {out}", rt.name);
        assert!(out.contains("proc-ok"), "{}: {out}", rt.name);
        if rt.is_berth() {
            // runc 1.1 skips root.readonly without a mount namespace; berth
            // keeps it (on its own bind mount of the rootfs).
            assert!(out.contains("rootfs-ro"), "{out}");
            assert_eq!(root_mount_line(), before, "the propagation of / changed");
            assert!(!b.rootfs().join("rw-probe").exists());
            rt.assert_clean(&id, b.path());
        }

        // With maskedPaths (runc spec has them) both refuse the config.
        let id = unique("nomnt-masked");
        let mut b = peer_bundle("runc", false, &id, &["true"]);
        b.edit(|c| drop_namespace(c, "mount"));
        let o = rt.create(&id, &b);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{} accepted maskedPaths", rt.name);
        if rt.is_berth() {
            assert!(
                err.contains("maskedPaths") && err.contains("mount namespace"),
                "{err}"
            );
            rt.assert_clean(&id, b.path());
        }
    }

    // exec enters the container's root, and delete removes the mounts of
    // a created (not run) container.
    let rt = Peer::berth();
    let id = unique("nomnt-exec");
    let mut b = peer_bundle("runc", false, &id, &["sleep", "1000"]);
    b.edit(|c| {
        drop_namespace(c, "mount");
        let l = c["linux"].as_object_mut().unwrap();
        l.remove("maskedPaths");
        l.remove("readonlyPaths");
    });
    fs::write(b.rootfs().join("marker"), "exec-sees-rootfs\n").unwrap();
    rt.create_ok(&id, &b);
    rt.ok(&["start", &id]);
    let out = rt.ok(&["exec", &id, "cat", "/marker"]);
    assert_eq!(out, "exec-sees-rootfs\n");
    rt.ok(&["delete", "--force", &id]);
    rt.assert_clean(&id, b.path());
}

// ---------------------------------------------------------------- item 4

/// A process in a UTS namespace of its own, whose namespace a config joins
/// by path; killed on drop.
struct UtsHolder {
    child: Child,
}

impl UtsHolder {
    fn new() -> UtsHolder {
        let mut child = Command::new("unshare")
            .args([
                "--uts",
                "--",
                "sh",
                "-c",
                "hostname holder-orig && echo ready && exec cat",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn unshare");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
        UtsHolder { child }
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/uts", self.child.id())
    }

    fn hostname(&self) -> String {
        run_ok(Command::new("nsenter").args(["-t", &self.child.id().to_string(), "-u", "hostname"]))
            .trim()
            .to_string()
    }
}

impl Drop for UtsHolder {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn uts_namespace_joined_by_path_takes_the_hostname() {
    root_only!("uts_namespace_joined_by_path_takes_the_hostname");
    for rt in Peer::both() {
        let holder = UtsHolder::new();
        let id = unique("utsjoin");
        let mut b = peer_bundle("runc", false, &id, &["hostname"]);
        let want = format!("joined-{}", std::process::id());
        b.edit(|c| {
            set_namespace_path(c, "uts", &holder.path());
            c["hostname"] = json!(want);
        });
        let (code, out, err) = rt.run(&id, &b);
        assert_eq!(code, 0, "{}: {err}", rt.name);
        assert_eq!(out.trim(), want, "{}", rt.name);
        assert_eq!(holder.hostname(), want, "{}", rt.name);
        rt.assert_clean(&id, b.path());
    }
}

// ---------------------------------------------------------------- item 6

/// The runtime-spec: "If any poststop hook fails, the runtime MUST log a
/// warning, but the remaining hooks and lifecycle continue as if the hook
/// had succeeded" (the same for poststart). runc 1.1 stops at the first
/// failing one, so this runs on berth only.
#[test]
fn every_poststart_and_poststop_hook_runs_when_one_fails() {
    root_only!("every_poststart_and_poststop_hook_runs_when_one_fails");
    let rt = Peer::berth();
    let id = unique("hookall");
    let mut b = peer_bundle("runc", false, &id, &["true"]);
    let dir = b.path().to_path_buf();
    let hook = |script: String| json!({"path": "/bin/sh", "args": ["sh", "-c", script]});
    b.edit(|c| {
        c["hooks"] = json!({
            "poststart": [hook("exit 3".into()), hook(format!("echo > {}/poststart-2", dir.display()))],
            "poststop": [hook("exit 4".into()), hook(format!("echo > {}/poststop-2", dir.display()))],
        });
    });
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        dir.join("poststart-2").exists(),
        "second poststart hook did not run: {err}"
    );
    assert!(
        dir.join("poststop-2").exists(),
        "second poststop hook did not run: {err}"
    );
    assert!(
        err.contains("poststop") && err.contains("poststart"),
        "{err}"
    );
    rt.assert_clean(&id, b.path());
}

/// A hook without `env` runs with the runtime's environment (runc's and
/// youki's behaviour); one with `env` gets exactly that.
#[test]
fn hooks_without_env_inherit_the_runtime_environment() {
    root_only!("hooks_without_env_inherit_the_runtime_environment");
    for rt in Peer::both() {
        let id = unique("hookenv");
        let mut b = peer_bundle("runc", false, &id, &["true"]);
        let dir = b.path().to_path_buf();
        b.edit(|c| {
            c["hooks"] = json!({"createRuntime": [
                {"path": "/bin/sh", "args": ["sh", "-c", format!("env > {}/env-inherited", dir.display())]},
                {"path": "/bin/sh", "args": ["sh", "-c", format!("env > {}/env-given", dir.display())],
                 "env": ["ONLY=this"]},
            ]});
        });
        let mut c = rt.cmd();
        c.env("BERTH_HOOK_PROBE", "from-the-caller").args([
            "run",
            "--bundle",
            b.path().to_str().unwrap(),
            &id,
        ]);
        let o = rt.out_of(c);
        assert!(
            o.status.success(),
            "{}: {}",
            rt.name,
            String::from_utf8_lossy(&o.stderr)
        );
        let inherited = fs::read_to_string(dir.join("env-inherited")).unwrap();
        assert!(
            inherited.contains("BERTH_HOOK_PROBE=from-the-caller"),
            "{}: {inherited}",
            rt.name
        );
        let given = fs::read_to_string(dir.join("env-given")).unwrap();
        assert!(given.contains("ONLY=this"), "{}: {given}", rt.name);
        assert!(!given.contains("BERTH_HOOK_PROBE"), "{}: {given}", rt.name);
        rt.assert_clean(&id, b.path());
    }
}

/// A hook that exits without reading its stdin: the state JSON (made larger
/// than a pipe's buffer by an annotation, so the write must meet the closed
/// pipe) gets EPIPE, and the runtime goes on. Every phase has such a hook.
#[test]
fn hook_that_ignores_its_stdin_does_not_kill_the_runtime() {
    root_only!("hook_that_ignores_its_stdin_does_not_kill_the_runtime");
    for rt in Peer::both() {
        let id = unique("hookpipe");
        let mut b = peer_bundle("runc", false, &id, &["true"]);
        let quiet = json!([{"path": "/bin/true", "args": ["true"]}]);
        b.edit(|c| {
            c["annotations"] = json!({"org.example.big": "x".repeat(80 * 1024)});
            c["hooks"] = json!({
                "prestart": quiet, "createRuntime": quiet, "createContainer": quiet,
                "startContainer": quiet, "poststart": quiet, "poststop": quiet,
            });
        });
        let (code, out, err) = rt.run(&id, &b);
        assert_eq!(code, 0, "{}: {out}{err}", rt.name);
        rt.assert_clean(&id, b.path());
    }
}

// ---------------------------------------------------------------- item 12

/// Waits, without polling, until some process opens `name` in `dir`.
struct OpenWatch {
    fd: std::os::fd::OwnedFd,
}

impl OpenWatch {
    fn new(dir: &Path) -> OpenWatch {
        use rustix::fs::inotify;
        let fd =
            inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).unwrap();
        inotify::add_watch(&fd, dir, inotify::WatchFlags::OPEN).unwrap();
        OpenWatch { fd }
    }

    /// True once `name` was opened; false if `child` exited first.
    fn wait_for(&self, name: &str, child: &Child) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let pid = rustix::process::Pid::from_child(child);
        let pidfd =
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).expect("pidfd");
        let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
        loop {
            let mut fds = [
                PollFd::new(self.fd.as_fd(), PollFlags::POLLIN),
                PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            ];
            poll(&mut fds, PollTimeout::NONE).expect("poll");
            let mut r = rustix::fs::inotify::Reader::new(self.fd.as_fd(), &mut buf);
            while let Ok(ev) = r.next() {
                if ev
                    .file_name()
                    .is_some_and(|n| n.to_bytes() == name.as_bytes())
                {
                    return true;
                }
            }
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                return false;
            }
        }
    }
}

/// runc's meaning of `exec --ignore-paused`: exec into a paused container
/// fails with an error that names the flag; with it, the process is made
/// (frozen with the container) and runs once the container is resumed.
#[test]
fn exec_into_a_paused_container_needs_ignore_paused() {
    root_only!("exec_into_a_paused_container_needs_ignore_paused");
    for rt in Peer::both() {
        let id = unique("pausedexec");
        let b = peer_bundle("runc", false, &id, &["sleep", "1000"]);
        rt.create_ok(&id, &b);
        rt.ok(&["start", &id]);
        rt.ok(&["pause", &id]);
        let o = rt.out(&["exec", &id, "true"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success(),
            "{}: exec into a paused container",
            rt.name
        );
        assert!(
            err.contains("paused") && err.contains("--ignore-paused"),
            "{}: {err}",
            rt.name
        );
        if rt.is_berth() {
            // berth reads the saved config right after the status check: its
            // opening says the exec got past the check while paused.
            let watch = OpenWatch::new(&rt.root.join(&id));
            let pf = b.path().join("process.json");
            let process = json!({"args": ["echo", "exec-ran"], "cwd": "/",
                "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}});
            fs::write(&pf, serde_json::to_vec(&process).unwrap()).unwrap();
            let mut c = rt.cmd();
            c.args([
                "exec",
                "--ignore-paused",
                "--process",
                pf.to_str().unwrap(),
                &id,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            let mut child = c.spawn().unwrap();
            let past_check = watch.wait_for("config.json", &child);
            rt.ok(&["resume", &id]);
            let (mut out, mut err) = (String::new(), String::new());
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            let st = child.wait().unwrap();
            assert!(
                past_check,
                "exec --ignore-paused stopped at the check: {err}"
            );
            assert!(st.success(), "exec --ignore-paused: {err}");
            assert_eq!(out, "exec-ran\n");
        }
        rt.ok(&["delete", "--force", &id]);
        rt.assert_clean(&id, b.path());
    }
}

// ---------------------------------------------------------------- item 13

/// Go's `%q` of `s`, as logrus quotes a value (strconv.Quote).
fn go_unquote(q: &str) -> String {
    let inner = q
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_else(|| panic!("not a quoted value: {q}"));
    let mut out = String::new();
    let mut it = inner.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(o) => out.push(o),
            None => {}
        }
    }
    out
}

/// A logrus text line `time="..." level=error msg="..."`: its message.
fn logrus_text_error(line: &str) -> String {
    let rest = line
        .strip_prefix("time=\"")
        .unwrap_or_else(|| panic!("no time= first: {line:?}"));
    let (time, rest) = rest.split_once("\" ").expect("time closes");
    assert!(
        chrono_like(time),
        "time {time:?} is not RFC 3339 in seconds: {line:?}"
    );
    let msg = rest
        .strip_prefix("level=error msg=")
        .unwrap_or_else(|| panic!("no level=error msg= after time: {line:?}"));
    go_unquote(msg)
}

/// `2026-12-07T20:43:01Z` or with a numeric offset.
fn chrono_like(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && (t.ends_with('Z') || t[19..].starts_with('+') || t[19..].starts_with('-'))
        && !t.contains('.')
}

fn json_error(line: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3, "{line}");
    assert_eq!(v["level"], "error", "{line}");
    assert!(chrono_like(v["time"].as_str().unwrap()), "{line}");
    assert!(
        line.starts_with("{\"level\":\"error\",\"msg\":"),
        "keys in logrus' order: {line}"
    );
    v["msg"].as_str().unwrap().to_string()
}

/// On failure both runtimes print runc 1.1's shape: without `--log` the
/// logrus line (text or JSON) on stderr; with `--log` the line goes to the
/// file and stderr has the bare message; on a terminal `ERRO[0000] msg`.
#[test]
fn error_lines_have_runc_shape() {
    root_only!("error_lines_have_runc_shape");
    for rt in Peer::both() {
        let who = rt.name;
        let last_line = |o: &Output| {
            assert_eq!(o.status.code(), Some(1), "{who}");
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
                .to_string()
        };
        let o = rt.out(&["state", "no-such-ctr"]);
        let msg = logrus_text_error(&last_line(&o));
        assert!(msg.contains("does not exist"), "{who}: {msg}");

        let o = rt.out(&["--log-format", "json", "state", "no-such-ctr"]);
        let msg = json_error(&last_line(&o));
        assert!(msg.contains("does not exist"), "{who}: {msg}");

        let logs = tempfile::tempdir().unwrap();
        for format in ["text", "json"] {
            let log = logs.path().join(format!("log.{format}"));
            let o = rt.out(&[
                "--log",
                log.to_str().unwrap(),
                "--log-format",
                format,
                "state",
                "no-such-ctr",
            ]);
            let plain = last_line(&o);
            let text = fs::read_to_string(&log).unwrap();
            let logged = text.lines().last().unwrap_or("");
            let msg = if format == "json" {
                json_error(logged)
            } else {
                logrus_text_error(logged)
            };
            assert_eq!(plain, msg, "{who}: stderr has the bare message");
        }

        // On a terminal: logrus' coloured short form.
        let pty = nix::pty::openpty(None, None).unwrap();
        let mut c = rt.cmd();
        c.args(["state", "no-such-ctr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::from(pty.slave));
        let st = c.status().unwrap();
        assert_eq!(st.code(), Some(1));
        let mut buf = vec![0u8; 4096];
        let n = nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&pty.master), &mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            text.starts_with("\x1b[31mERRO\x1b[0m[0000] ") && text.contains("does not exist"),
            "{who}: {text:?}"
        );
    }
}

// ---------------------------------------------------------------- item 16

/// Waits for `child` to exit, failing the test (after killing it) if it
/// has not within `secs`: a guard against a hang, not a timing check.
fn wait_bounded(child: &mut Child, secs: u64, what: &str) -> std::process::ExitStatus {
    let pid = rustix::process::Pid::from_child(child);
    let pidfd =
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).expect("pidfd");
    let mut fds = [nix::poll::PollFd::new(
        pidfd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let n = nix::poll::poll(
        &mut fds,
        nix::poll::PollTimeout::try_from(secs as i64 * 1000).unwrap(),
    )
    .expect("poll");
    if n == 0 {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what} hung (killed after {secs} s)");
    }
    child.wait().unwrap()
}

/// A namespace path that is a FIFO must not hang `create` in open(2): it is
/// refused, naming the path, and nothing is left. (runc 1.1 hangs here too,
/// so this runs on berth only.) `list` shows every state dir there is.
#[test]
fn namespace_path_that_is_a_fifo_is_refused() {
    root_only!("namespace_path_that_is_a_fifo_is_refused");
    let rt = Peer::berth();
    let id = unique("nsfifo");
    let mut b = peer_bundle("runc", false, &id, &["true"]);
    let fifo = b.path().join("ns-fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    b.edit(|c| set_namespace_path(c, "network", fifo.to_str().unwrap()));
    let err_file = tempfile::NamedTempFile::new().unwrap();
    let mut c = rt.cmd();
    c.args(["create", "--bundle", b.path().to_str().unwrap(), &id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_file.reopen().unwrap());
    let mut child = c.spawn().unwrap();
    let st = wait_bounded(&mut child, 60, "create with a FIFO as network namespace");
    let err = fs::read_to_string(err_file.path()).unwrap();
    assert!(!st.success());
    assert!(
        err.contains(fifo.to_str().unwrap()) && err.contains("network namespace"),
        "{err}"
    );
    let list = rt.ok(&["list", "--quiet"]);
    assert!(!list.contains(&id), "{list}");
    rt.assert_clean(&id, b.path());

    // A state dir without state.json (a create that never finished) is listed.
    let stale = unique("stale");
    fs::create_dir(rt.root.join(&stale)).unwrap();
    let list: Value = serde_json::from_str(&rt.ok(&["list", "--format", "json"])).unwrap();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == stale.as_str())
        .unwrap_or_else(|| panic!("list omits {stale}: {list}"));
    assert_eq!(entry["status"], "creating", "{entry}");
    rt.ok(&["delete", "--force", &stale]);
    assert!(!rt.root.join(&stale).exists());
}

// ---------------------------------------------------------------- item 17

/// A namespace path that is not a namespace of the right type is refused
/// before clone, with an error naming the path and the type it should be.
/// runc refuses these too (after clone, in nsexec).
#[test]
fn namespace_path_of_the_wrong_type_is_refused() {
    root_only!("namespace_path_of_the_wrong_type_is_refused");
    for rt in Peer::both() {
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("regular");
        fs::write(&file, "x").unwrap();
        let cases = [
            ("a regular file", file.to_str().unwrap().to_string()),
            ("a directory", scratch.path().to_str().unwrap().to_string()),
            ("/dev/null", "/dev/null".to_string()),
            ("a mount namespace", "/proc/self/ns/mnt".to_string()),
            ("a pid namespace", "/proc/self/ns/pid".to_string()),
        ];
        for (what, path) in cases {
            let id = unique("nswrong");
            let mut b = peer_bundle("runc", false, &id, &["true"]);
            b.edit(|c| set_namespace_path(c, "network", &path));
            let o = rt.create(&id, &b);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{}: {what} accepted", rt.name);
            if rt.is_berth() {
                assert!(
                    err.contains(&path) && err.contains("network namespace"),
                    "{what}: {err}"
                );
                assert!(!err.contains("setns"), "{what}: refused after clone: {err}");
            }
            rt.assert_clean(&id, b.path());
        }
    }
}

// ---------------------------------------------------------------- item 18

/// Configs beyond the kernel's limits are refused up front with an error
/// that names the limit: more than 340 ID map lines (Linux 4.15+), a map
/// longer than a page, more mounts than `fs.mount-max`.
#[test]
fn configs_beyond_kernel_limits_are_refused_up_front() {
    root_only!("configs_beyond_kernel_limits_are_refused_up_front");
    let userns = |c: &mut Value, uid: Value| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = uid;
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    };
    let many: Vec<Value> = (0..100_000u32)
        .map(|i| json!({"containerID": i, "hostID": 200_000 + i, "size": 1}))
        .collect();
    let long: Vec<Value> = (0..300u32)
        .map(|i| json!({"containerID": i * 2, "hostID": 4_000_000_000u32 + i * 2, "size": 1}))
        .collect();
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .unwrap()
        .unwrap()
        .to_string();
    for rt in Peer::both() {
        for (what, maps, want) in [
            ("100000 uid mappings", Value::Array(many.clone()), "340"),
            (
                "a uid map longer than a page",
                Value::Array(long.clone()),
                page.as_str(),
            ),
        ] {
            let id = unique("idmaps");
            let mut b = peer_bundle("runc", false, &id, &["true"]);
            b.edit(|c| userns(c, maps));
            let o = rt.create(&id, &b);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{}: {what} accepted", rt.name);
            if rt.is_berth() {
                assert!(
                    err.contains("uidMappings") && err.contains(want),
                    "{what}: {err}"
                );
            }
            rt.assert_clean(&id, b.path());
        }
    }

    // 100 000 mounts: berth only (runc makes them one by one until the
    // kernel says ENOSPC).
    let rt = Peer::berth();
    let id = unique("mounts");
    let mut b = peer_bundle("runc", false, &id, &["true"]);
    b.edit(|c| {
        let m = c["mounts"].as_array_mut().unwrap();
        for i in 0..100_000 {
            m.push(json!({"destination": format!("/m/{i}"), "type": "tmpfs", "source": "tmpfs"}));
        }
    });
    let o = rt.create(&id, &b);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("mount-max") && err.contains("100"), "{err}");
    rt.assert_clean(&id, b.path());
    assert!(!b.rootfs().join("m").exists(), "mount points were made");
}

// ---------------------------------------------------------------- item 19

/// A FIFO the test reads from or writes to, to meet a hook at a point.
fn fifo(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    p
}

/// The FIFO a hook waits on; dropping it lets a hook that still waits go
/// (one that was killed has no reader, and then there is nobody to tell).
struct Gate(PathBuf);

impl Gate {
    /// Lets the waiting hook go; blocks until it opens the FIFO.
    fn open_blocking(&self) {
        let mut g = fs::OpenOptions::new().write(true).open(&self.0).unwrap();
        g.write_all(b"go\n").unwrap();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Ok(mut g) = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.0)
        {
            let _ = g.write_all(b"go\n");
        }
    }
}

/// `create` with stdio on /dev/null, as a child we can kill.
fn spawn_create(rt: &Peer, id: &str, b: &Bundle) -> Child {
    let mut c = rt.cmd();
    c.args(["create", "--bundle", b.path().to_str().unwrap(), id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.spawn().unwrap()
}

/// After the runtime was killed mid-create: `list` shows the container as
/// creating (or created, if the create got that far), `delete --force`
/// removes it, and nothing is left.
fn delete_abandoned(rt: &Peer, id: &str, b: &Bundle, must_be_listed: bool) {
    let list: Value = serde_json::from_str(&rt.ok(&["list", "--format", "json"])).unwrap();
    let entry = list.as_array().unwrap().iter().find(|e| e["id"] == id);
    if must_be_listed {
        let e = entry.unwrap_or_else(|| panic!("list omits {id}: {list}"));
        assert_eq!(e["status"], "creating", "{e}");
    }
    rt.ok(&["delete", "--force", id]);
    rt.assert_clean(id, b.path());
}

/// `kill -9` of berth-runtime in the middle of `create` — in a createRuntime
/// hook (runtime side, cgroups made), in a createContainer hook (container
/// side, its process alive in the cgroup), and after random delays — then
/// `delete --force` leaves no state dir, cgroup (v1 hierarchies and the
/// cgroup2 side), mount or process.
#[test]
fn delete_force_removes_an_abandoned_create() {
    root_only!("delete_force_removes_an_abandoned_create");
    let rt = Peer::berth();
    for phase in ["createRuntime", "createContainer"] {
        let id = unique("abandoned");
        let mut b = peer_bundle("runc", false, &id, &["true"]);
        let ready = fifo(b.path(), "ready");
        let gate = Gate(fifo(b.path(), "gate"));
        let script = format!(
            "echo here > {}; read x < {}",
            ready.display(),
            gate.0.display()
        );
        b.edit(|c| {
            c["hooks"] = json!({phase: [{"path": "/bin/sh", "args": ["sh", "-c", script]}]})
        });
        let mut child = spawn_create(&rt, &id, &b);
        // The hook runs: the runtime is mid-create.
        let mut line = String::new();
        BufReader::new(fs::File::open(&ready).unwrap())
            .read_line(&mut line)
            .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        delete_abandoned(&rt, &id, &b, true);
        // The runtime-side hook outlives the runtime (it is no part of the
        // container): let it go. The container-side one died with the
        // container's processes.
        if phase == "createRuntime" {
            gate.open_blocking();
        }
    }

    // Random points, with and without a mount namespace.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    println!("random kill points: seed {seed}");
    let mut x = seed;
    for round in 0..12 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = std::time::Duration::from_micros(x % 12_000);
        let id = unique("killed");
        let mut b = peer_bundle("runc", false, &id, &["sleep", "1000"]);
        if round % 2 == 1 {
            b.edit(|c| {
                drop_namespace(c, "mount");
                let l = c["linux"].as_object_mut().unwrap();
                l.remove("maskedPaths");
                l.remove("readonlyPaths");
            });
        }
        let mut child = spawn_create(&rt, &id, &b);
        std::thread::sleep(delay);
        let _ = child.kill();
        child.wait().unwrap();
        delete_abandoned(&rt, &id, &b, false);
    }
}

// ================================================ follow-ups of the review

/// The end of a long output, for a failure message.
fn tail(s: &str) -> &str {
    let mut start = s.len().saturating_sub(2000);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// The hook phases, in the order they run.
const PHASES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// Where a hook of `phase` writes `name`, as the hook sees it: the bundle
/// dir, but the container's root for startContainer hooks (they run in the
/// container); and where the test finds it.
fn hook_file(b: &Bundle, phase: &str, suffix: &str) -> (PathBuf, PathBuf) {
    let name = format!("{phase}.{suffix}");
    if phase == "startContainer" {
        (Path::new("/").join(&name), b.rootfs().join(&name))
    } else {
        (b.path().join(&name), b.path().join(&name))
    }
}

/// Annotations of about `size` bytes in the shape Kubernetes gives them: a
/// few keys, one a JSON document (kubectl's last-applied-configuration) full
/// of characters that JSON escapes.
fn big_annotations(size: usize) -> Value {
    let mut m = serde_json::Map::new();
    let piece = r#"{"kind":"ConfigMap","data":{"k":"v\n\"quoted\""}},"#;
    m.insert(
        "kubectl.kubernetes.io/last-applied-configuration".into(),
        json!(piece.repeat(size / 2 / piece.len())),
    );
    for i in 0..4 {
        m.insert(
            format!("org.example.note-{i}"),
            json!(i.to_string().repeat(size / 8)),
        );
    }
    Value::Object(m)
}

/// Annotations larger than one packet of berth's sync socket (200 KiB, as
/// Kubernetes allows 256 KiB per object, and 1 MiB) do not stop a
/// container: create, start, exec, state, delete and run work, and every
/// hook gets the whole state on its stdin, annotations included.
#[test]
fn large_annotations_reach_every_hook() {
    root_only!("large_annotations_reach_every_hook");
    for rt in Peer::both() {
        for size in [200 * 1024, 1024 * 1024] {
            let annotations = big_annotations(size);
            for how in ["create", "run"] {
                let id = unique(&format!("bigann-{how}"));
                let args: &[&str] = if how == "run" {
                    &["true"]
                } else {
                    &["sleep", "1000"]
                };
                let mut b = peer_bundle("runc", false, &id, args);
                let hooks: serde_json::Map<String, Value> = PHASES
                    .iter()
                    .map(|p| {
                        let out = hook_file(&b, p, "json").0;
                        let script = format!("cat > {}", out.display());
                        (
                            p.to_string(),
                            json!([{"path": "/bin/sh", "args": ["sh", "-c", script]}]),
                        )
                    })
                    .collect();
                b.edit(|c| {
                    c["root"]["readonly"] = json!(false);
                    c["annotations"] = annotations.clone();
                    c["hooks"] = Value::Object(hooks);
                });
                let what = format!("{} {how} with {size} bytes of annotations", rt.name);
                if how == "run" {
                    let (code, out, err) = rt.run(&id, &b);
                    assert_eq!(code, 0, "{what}: {out}{}", tail(&err));
                } else {
                    let o = rt.create(&id, &b);
                    assert!(
                        o.status.success(),
                        "{what}: {}",
                        tail(&String::from_utf8_lossy(&o.stderr))
                    );
                    rt.ok(&["start", &id]);
                    let out = rt.ok(&["exec", &id, "echo", "exec-ok"]);
                    assert_eq!(out, "exec-ok\n", "{what}");
                    let st: Value = serde_json::from_str(&rt.ok(&["state", &id])).unwrap();
                    assert!(
                        st["annotations"] == annotations,
                        "{what}: state lost the annotations"
                    );
                    rt.ok(&["delete", "--force", &id]);
                }
                for p in PHASES {
                    let file = hook_file(&b, p, "json").1;
                    let text = fs::read(&file)
                        .unwrap_or_else(|e| panic!("{what}: the {p} hook wrote nothing: {e}"));
                    let st: Value = serde_json::from_slice(&text)
                        .unwrap_or_else(|e| panic!("{what}: {p} hook's stdin: {e}"));
                    assert_eq!(st["id"], id.as_str(), "{what}: {p}");
                    assert!(
                        st["annotations"] == annotations,
                        "{what}: the {p} hook's state lacks the annotations"
                    );
                }
                rt.assert_clean(&id, b.path());
            }
        }
    }
}

/// Runs `args` as the unprivileged user nobody, without groups or
/// capabilities. setpriv keeps root's capabilities until its own execve, so
/// the probe runs after one more, through sh.
fn as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/bin/sh",
            "-c",
            "exec \"$@\"",
            "sh",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv")
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// No other host user reads a container's saved config (its environment)
/// or state. A runtime root the runtime makes is 0700, as runc makes its
/// own; an existing one is left as its owner made it (runc leaves it too),
/// and the state dirs inside keep others out.
#[test]
fn runtime_state_is_private() {
    root_only!("runtime_state_is_private");
    use std::os::unix::fs::PermissionsExt;
    for (name, bin) in [("berth-runtime", runtime_bin()), ("runc", runc_bin())] {
        for existing in [false, true] {
            let tmp = tempfile::Builder::new()
                .prefix("berth-conf-priv.")
                .tempdir()
                .unwrap();
            fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
            let control = tmp.path().join("control");
            fs::write(&control, "readable\n").unwrap();
            fs::set_permissions(&control, fs::Permissions::from_mode(0o644)).unwrap();
            let root = tmp.path().join("state").join("root");
            if existing {
                fs::create_dir_all(&root).unwrap();
                for d in [root.parent().unwrap(), &root] {
                    fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
                }
            }
            let rt = Peer::at(name, bin.clone(), root.clone(), tmp);
            let what = format!("{name} (existing root: {existing})");
            let id = unique("private");
            let mut b = peer_bundle("runc", false, &id, &["sleep", "1000"]);
            b.edit(|c| {
                c["process"]["env"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("SECRET_TOKEN=hunter2"))
            });
            rt.create_ok(&id, &b);
            // The probe can read what is open to everyone.
            let o = as_nobody(&["cat", control.to_str().unwrap()]);
            assert_eq!(
                String::from_utf8_lossy(&o.stdout),
                "readable\n",
                "{what}: the probe does not work: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let want = if existing { 0o755 } else { 0o700 };
            assert_eq!(mode_of(&root), want, "{what}: mode of the root");
            let dir = root.join(&id);
            let mut files = vec!["state.json"];
            if rt.is_berth() {
                files.push("config.json");
            }
            for f in files {
                let p = dir.join(f);
                assert!(p.exists(), "{what}: no {}", p.display());
                let o = as_nobody(&["cat", p.to_str().unwrap()]);
                let out = String::from_utf8_lossy(&o.stdout);
                assert!(
                    !o.status.success() && !out.contains("hunter2"),
                    "{what}: nobody read {}: {}",
                    p.display(),
                    tail(&out)
                );
                assert!(
                    String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
                    "{what}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            let o = as_nobody(&["ls", dir.to_str().unwrap()]);
            assert!(
                !o.status.success(),
                "{what}: nobody listed the state dir: {}",
                String::from_utf8_lossy(&o.stdout)
            );
            rt.ok(&["delete", "--force", &id]);
            rt.assert_clean(&id, b.path());
        }
    }
}

/// Hooks that write more than a pipe holds (64 KiB) to stdout and stderr
/// run to their end in every phase: the runtime reads their output while
/// they run. A failing one's error keeps the end of what it wrote (on berth
/// a bounded amount of it).
#[test]
fn hooks_that_write_more_than_a_pipe_holds() {
    root_only!("hooks_that_write_more_than_a_pipe_holds");
    let loud = "yes out | head -c 1048576; yes err | head -c 1048576 >&2";
    for rt in Peer::both() {
        let id = unique("hookloud");
        let mut b = peer_bundle("runc", false, &id, &["true"]);
        let hooks: serde_json::Map<String, Value> = PHASES
            .iter()
            .map(|p| {
                let done = hook_file(&b, p, "done").0;
                let script = format!("{loud}; echo > {}", done.display());
                (
                    p.to_string(),
                    json!([{"path": "/bin/sh", "args": ["sh", "-c", script], "timeout": 20}]),
                )
            })
            .collect();
        b.edit(|c| {
            c["root"]["readonly"] = json!(false);
            c["hooks"] = Value::Object(hooks);
        });
        let (code, _out, err) = rt.run(&id, &b);
        assert_eq!(code, 0, "{}: {}", rt.name, tail(&err));
        assert!(!err.contains("timed out"), "{}: {}", rt.name, tail(&err));
        for p in PHASES {
            assert!(
                hook_file(&b, p, "done").1.exists(),
                "{}: the {p} hook did not finish: {}",
                rt.name,
                tail(&err)
            );
        }
        rt.assert_clean(&id, b.path());

        let id = unique("hookloud-fails");
        let mut b = peer_bundle("runc", false, &id, &["true"]);
        let script = format!("{loud}; echo the-last-words >&2; exit 3");
        b.edit(|c| {
            c["hooks"] = json!({"createRuntime": [
                {"path": "/bin/sh", "args": ["sh", "-c", script], "timeout": 20}
            ]})
        });
        let (code, _out, err) = rt.run(&id, &b);
        assert_ne!(code, 0, "{}: the failing hook was ignored", rt.name);
        assert!(
            err.contains("the-last-words") && !err.contains("timed out"),
            "{}: {}",
            rt.name,
            tail(&err)
        );
        if rt.is_berth() {
            assert!(
                err.len() < 64 * 1024,
                "the error holds all {} bytes of output",
                err.len()
            );
        }
        rt.assert_clean(&id, b.path());
    }
}

/// Runs the runtime with `args`, stdout and stderr in files, failing the
/// test if it has not finished within `secs` (a guard against a hang).
fn out_bounded(rt: &Peer, args: &[&str], secs: u64) -> Output {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let mut child = rt
        .cmd()
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut child, secs, &format!("{} {args:?}", rt.name));
    let read = |mut f: fs::File| {
        use std::io::Seek;
        let mut v = Vec::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    };
    Output {
        status,
        stdout: read(out),
        stderr: read(err),
    }
}

/// `state` of a container whose create has not finished answers at once
/// with status `creating`, as `list` shows it: while the create waits in a
/// hook, and after the create was killed. (runc 1.1 says "container does
/// not exist" and its list leaves such a container out, so this runs on
/// berth only.)
#[test]
fn state_of_an_unfinished_create_is_creating() {
    root_only!("state_of_an_unfinished_create_is_creating");
    let rt = Peer::berth();
    let listed = |id: &str| -> Value {
        let list: Value = serde_json::from_str(&rt.ok(&["list", "--format", "json"])).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("list omits {id}: {list}"))
    };
    for killed in [false, true] {
        let id = unique("statecreating");
        let mut b = peer_bundle("runc", false, &id, &["sleep", "1000"]);
        let ready = fifo(b.path(), "ready");
        let gate = Gate(fifo(b.path(), "gate"));
        let script = format!(
            "echo here > {}; read x < {}",
            ready.display(),
            gate.0.display()
        );
        b.edit(|c| {
            c["hooks"] =
                json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]})
        });
        let mut child = spawn_create(&rt, &id, &b);
        let mut line = String::new();
        BufReader::new(fs::File::open(&ready).unwrap())
            .read_line(&mut line)
            .unwrap();
        if killed {
            child.kill().unwrap();
        }
        let o = out_bounded(&rt, &["state", &id], 10);
        assert!(
            o.status.success(),
            "killed={killed}: state failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let st: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(st["status"], "creating", "killed={killed}: {st}");
        assert_eq!(st["id"], id.as_str());
        let bundle = fs::canonicalize(b.path()).unwrap();
        assert_eq!(st["bundle"], bundle.to_str().unwrap(), "{st}");
        let l = listed(&id);
        assert_eq!(l["status"], st["status"], "{l} vs {st}");
        gate.open_blocking();
        let status = wait_bounded(&mut child, 30, "create");
        if !killed {
            // The runtime waits for the hook: its init is alive, in both.
            assert!(st["pid"].as_i64().unwrap_or(0) > 0, "{st}");
            assert_eq!(l["pid"], st["pid"], "{l} vs {st}");
            assert!(status.success());
            assert_eq!(
                serde_json::from_str::<Value>(&rt.ok(&["state", &id])).unwrap()["status"],
                "created"
            );
        }
        rt.ok(&["delete", "--force", &id]);
        rt.assert_clean(&id, b.path());
    }
}
