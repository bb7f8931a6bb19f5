//! End-to-end tests of `berth`'s container commands: images pulled from a
//! loopback `docker-registry`, containers run by berth-runtime (or
//! `BERTH_RUNTIME`) under berth-monitor. Each test has its own registry,
//! store root, run dir and names; the Drop guard removes every container
//! and checks that nothing is left behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_tests::cli::{berth_bin, Env};
use berth_tests::{need_root, unique, wait_until};
use serde_json::Value;

fn id_of(env: &Env, name: &str) -> String {
    env.inspect(name)["Id"].as_str().unwrap().to_string()
}

/// `run` pulls the image, runs the command in the foreground with its
/// stdout and stderr apart, returns its exit code, and `--rm` leaves
/// nothing behind.
#[test]
fn run_pulls_and_passes_output_and_exit_code() {
    if !need_root("run_pulls_and_passes_output_and_exit_code") {
        return;
    }
    let env = Env::new("ctr-run");
    let (code, out, err) = env.run(&[
        "run",
        "--rm",
        &env.image,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(code, 3, "{out}{err}");
    assert_eq!(out, "out\n");
    assert!(err.ends_with("err\n"), "{err}");
    env.assert_clean(&[]);
    // The image is now local: listed, and a second run does not pull.
    assert!(env.ok(&["images"]).contains("test/bb"));
    let (code, out, err) = env.run(&["run", "--rm", "--pull", "never", &env.image, "true"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
}

/// The whole lifecycle of a detached container, seen through ps and
/// inspect at each step.
#[test]
fn detached_lifecycle() {
    if !need_root("detached_lifecycle") {
        return;
    }
    let env = Env::new("ctr-life");
    let name = unique("web");
    let id = env
        .ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "-l",
            "tier=front",
            &env.image,
            "sh",
            "-c",
            "echo started; trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    assert_eq!(env.status(&name), "running");
    wait_until("the first line", || env.ok(&["logs", &name]) == "started\n");
    let ps = env.ok(&["ps"]);
    assert!(
        ps.contains(&id[..12]) && ps.contains(&name) && ps.contains("Up "),
        "{ps}"
    );
    let i = env.inspect(&id[..10]);
    assert_eq!(i["Name"], format!("/{name}"));
    assert_eq!(i["Config"]["Labels"]["tier"], "front");
    let pid = i["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert_eq!(
        env.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Running}}",
            &name
        ]),
        "running true\n"
    );
    // top shows the container's processes (and only those).
    let top = env.ok(&["top", &name]);
    assert!(top.starts_with("UID") && top.contains("sleep"), "{top}");
    assert!(!top.contains("berth-monitor"), "{top}");

    env.ok(&["pause", &name]);
    assert_eq!(env.status(&name), "paused");
    assert!(env.ok(&["ps"]).contains("(Paused)"));
    env.fails(&["pause", &name], 125);
    env.ok(&["unpause", &name]);
    assert_eq!(env.status(&name), "running");

    // rm refuses a running container; stop runs the trap (exit 0).
    let e = env.fails(&["rm", &name], 2);
    assert!(e.contains(&name) && e.contains("--force"), "{e}");
    assert_eq!(env.ok(&["stop", &name]), format!("{name}\n"));
    let i = env.inspect(&name);
    assert_eq!(i["State"]["Status"], "exited");
    assert_eq!(i["State"]["ExitCode"], 0);
    assert!(env.ok(&["logs", &name]).ends_with("bye\n"));
    assert!(!env.ok(&["ps"]).contains(&name));
    assert!(env.ok(&["ps", "-a"]).contains("Exited (0)"));

    // Started again, then killed with a signal: 128 + 9.
    env.ok(&["start", &name]);
    assert_eq!(env.status(&name), "running");
    env.ok(&["kill", &name]);
    env.wait_status(&name, "exited");
    assert_eq!(env.inspect(&name)["State"]["ExitCode"], 137);
    env.ok(&["restart", "-t", "1", &name]);
    assert_eq!(env.status(&name), "running");
    env.ok(&["kill", "-s", "TERM", &name]);
    env.wait_status(&name, "exited");
    assert_eq!(env.inspect(&name)["State"]["ExitCode"], 0);

    let new = unique("renamed");
    env.ok(&["rename", &name, &new]);
    assert_eq!(env.inspect(&id)["Name"], format!("/{new}"));
    assert_eq!(env.ok(&["rm", &new]), format!("{new}\n"));
    env.assert_clean(&[id]);
}

/// docker's exit codes: 125 for berth's own errors, 127 for a command not
/// found, 126 for one that cannot be executed; none leaves anything behind.
#[test]
fn exit_codes_and_bad_input_leave_nothing() {
    if !need_root("exit_codes_and_bad_input_leave_nothing") {
        return;
    }
    let env = Env::new("ctr-bad");
    let e = env.fails(&["run", "--rm", &env.image, "no-such-command"], 127);
    assert!(e.contains("no-such-command"), "{e}");
    let e = env.fails(&["run", "--rm", &env.image, "/etc/passwd"], 126);
    assert!(e.contains("/etc/passwd"), "{e}");
    let e = env.fails(&["run", &env.image, "no-such-command"], 127);
    assert!(e.contains("no-such-command"), "{e}");
    // Without --rm the container stays, created, as docker leaves it.
    assert_eq!(env.ids().len(), 1);
    let left = env.ids();
    env.ok(&["rm", &left[0]]);

    let missing = format!("{}/test/missing:latest", env.reg.addr);
    let e = env.fails(&["run", "--rm", &missing, "true"], 125);
    assert!(e.contains("test/missing"), "{e}");
    let e = env.fails(&["run", "--restart", "sometimes", &env.image, "true"], 125);
    assert!(e.contains("sometimes"), "{e}");
    let e = env.fails(
        &["run", "--log-opt", "max-size=lots", &env.image, "true"],
        125,
    );
    assert!(e.contains("max-size") && e.contains("lots"), "{e}");
    let e = env.fails(
        &["run", "--rm", "--restart", "always", &env.image, "true"],
        125,
    );
    assert!(e.contains("--restart") && e.contains("--rm"), "{e}");
    let e = env.fails(
        &["run", "--stop-signal", "SIGNOPE", &env.image, "true"],
        125,
    );
    assert!(e.contains("SIGNOPE"), "{e}");
    let e = env.fails(&["run", "-w", "relative", &env.image, "true"], 125);
    assert!(e.contains("relative"), "{e}");
    let e = env.fails(&["run", "-u", "nobody-here", &env.image, "true"], 125);
    assert!(e.contains("nobody-here"), "{e}");
    let e = env.fails(&["run", "--name", "bad name", &env.image, "true"], 125);
    assert!(e.contains("bad name"), "{e}");

    let name = unique("taken");
    env.ok(&["create", "--name", &name, &env.image, "true"]);
    let e = env.fails(&["run", "--name", &name, &env.image, "true"], 125);
    assert!(e.contains(&name) && e.contains("already in use"), "{e}");
    let e = env.fails(&["start", "no-such-container"], 125);
    assert!(e.contains("no-such-container"), "{e}");
    let e = env.fails(&["logs", "no-such-container"], 125);
    assert!(e.contains("no-such-container"), "{e}");
    let id = id_of(&env, &name);
    assert_eq!(env.ids(), [id.as_str()]);
    env.ok(&["rm", &name]);
    env.assert_clean(&[id]);
}

/// `logs` reads both formats, with --tail, --timestamps and --since,
/// follows until the container exits, and reads across rotated files.
#[test]
fn logs_formats_follow_and_rotation() {
    if !need_root("logs_formats_follow_and_rotation") {
        return;
    }
    let env = Env::new("ctr-logs");
    let script = "for i in 1 2 3 4 5; do echo line$i; done; echo oops >&2";
    for driver in ["json-file", "k8s-file"] {
        let name = unique(driver);
        env.ok(&[
            "run",
            "--name",
            &name,
            "--log-driver",
            driver,
            &env.image,
            "sh",
            "-c",
            script,
        ]);
        let (_, out, err) = env.run(&["logs", &name]);
        assert_eq!(out, "line1\nline2\nline3\nline4\nline5\n", "{driver}");
        assert_eq!(err, "oops\n", "{driver}");
        assert_eq!(env.ok(&["logs", "--tail", "2", &name]), "line5\n");
        let ts = env.ok(&["logs", "-t", "-n", "2", &name]);
        assert!(ts.ends_with("Z line5\n") && ts.starts_with("20"), "{ts}");
        assert_eq!(
            env.ok(&["logs", "--since", "2000-01-01T00:00:00Z", "-n", "2", &name]),
            "line5\n"
        );
        assert_eq!(
            env.run(&["logs", "--until", "2000-01-01T00:00:00Z", &name])
                .1,
            ""
        );
        let file = env.inspect(&name)["LogPath"].as_str().unwrap().to_string();
        let body = fs::read_to_string(&file).unwrap();
        match driver {
            "json-file" => assert!(
                body.starts_with("{\"log\":\"line1\\n\",\"stream\":\"stdout\""),
                "{body}"
            ),
            _ => assert!(
                body.lines().next().unwrap().ends_with(" stdout F line1"),
                "{body}"
            ),
        }
    }
    // -f follows a running container to its end.
    let name = unique("follow");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        &env.image,
        "sh",
        "-c",
        "echo a; sleep 0.5; echo b",
    ]);
    assert_eq!(env.ok(&["logs", "-f", &name]), "a\nb\n");
    // Rotation at 1 KiB with two files kept: the newest lines survive.
    let name = unique("rotate");
    env.ok(&[
        "run",
        "--name",
        &name,
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=2",
        &env.image,
        "sh",
        "-c",
        "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done",
    ]);
    let file = PathBuf::from(env.inspect(&name)["LogPath"].as_str().unwrap());
    let mut rotated = file.clone().into_os_string();
    rotated.push(".1");
    assert!(Path::new(&rotated).exists());
    let mut third = file.clone().into_os_string();
    third.push(".2");
    assert!(!Path::new(&third).exists());
    assert!(fs::metadata(&file).unwrap().len() <= 1024);
    let out = env.ok(&["logs", &name]);
    assert!(
        out.ends_with("line-199\n") && !out.contains("line-0\n"),
        "{out}"
    );
    let lines: Vec<&str> = out.lines().collect();
    let first: usize = lines[0].trim_start_matches("line-").parse().unwrap();
    assert_eq!(lines.len(), 200 - first, "the kept lines are contiguous");
    // The none driver keeps nothing, and says so.
    let name = unique("nolog");
    env.ok(&[
        "run",
        "--name",
        &name,
        "--log-driver",
        "none",
        &env.image,
        "echo",
        "x",
    ]);
    let e = env.fails(&["logs", &name], 125);
    assert!(e.contains("none"), "{e}");
}

/// `wait` blocks until exit and prints the code; restart policies are
/// carried out by the monitor, and a stop is not undone by them.
#[test]
fn wait_and_restart_policies() {
    if !need_root("wait_and_restart_policies") {
        return;
    }
    let env = Env::new("ctr-wait");
    let name = unique("w");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        &env.image,
        "sh",
        "-c",
        "sleep 0.3; exit 5",
    ]);
    assert_eq!(env.ok(&["wait", &name]), "5\n");

    let name = unique("onfail");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--restart",
        "on-failure:2",
        &env.image,
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    wait_until("two restarts", || {
        let i = env.inspect(&name);
        i["State"]["Status"] == "exited" && i["RestartCount"] == 2
    });
    assert_eq!(env.ok(&["logs", &name]), "run\nrun\nrun\n");
    assert_eq!(
        env.inspect(&name)["HostConfig"]["RestartPolicy"]["Name"],
        "on-failure"
    );

    let name = unique("always");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--restart",
        "always",
        &env.image,
        "sh",
        "-c",
        "sleep 0.2",
    ]);
    wait_until("a restart", || {
        env.inspect(&name)["RestartCount"].as_u64() >= Some(1)
    });
    env.ok(&["stop", "-t", "1", &name]);
    let i = env.inspect(&name);
    assert_eq!(i["State"]["Status"], "exited");
    let n = i["RestartCount"].clone();
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(
        env.inspect(&name)["RestartCount"],
        n,
        "restarted after stop"
    );
    assert_eq!(env.status(&name), "exited");
}

/// ps's filters, formats and quiet mode.
#[test]
fn ps_filters_and_formats() {
    if !need_root("ps_filters_and_formats") {
        return;
    }
    let env = Env::new("ctr-ps");
    let up = unique("up");
    let down = unique("down");
    env.ok(&[
        "run", "-d", "--name", &up, "-l", "app=one", &env.image, "sleep", "30",
    ]);
    assert_eq!(
        env.run(&["run", "--name", &down, &env.image, "sh", "-c", "exit 4"])
            .0,
        4
    );
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["ps", "--format", "{{.Names}}"];
        a.extend_from_slice(args);
        env.ok(&a).lines().map(str::to_string).collect()
    };
    assert_eq!(names(&[]), [up.as_str()]);
    assert_eq!(names(&["-a"]).len(), 2);
    assert_eq!(names(&["-a", "--filter", "status=exited"]), [down.as_str()]);
    assert_eq!(names(&["--filter", "exited=4"]), [down.as_str()]);
    assert_eq!(names(&["--filter", "label=app=one"]), [up.as_str()]);
    assert_eq!(names(&["--filter", &format!("name={up}")]), [up.as_str()]);
    assert_eq!(
        names(&["-a", "--filter", "ancestor=nothing-like-it"]).len(),
        0
    );
    assert_eq!(
        names(&["-a", "--filter", &format!("ancestor={}", env.image)]).len(),
        2
    );
    assert_eq!(names(&["-n", "1"]), [down.as_str()]);
    let e = env.fails(&["ps", "--filter", "status=sleepy"], 125);
    assert!(e.contains("sleepy"), "{e}");
    let e = env.fails(&["ps", "--filter", "color=red"], 125);
    assert!(e.contains("color"), "{e}");
    let q = env.ok(&["ps", "-aq"]);
    assert_eq!(q.lines().count(), 2);
    assert!(q.lines().all(|l| l.len() == 12));
    let t = env.ok(&["ps", "-a", "--format", "table {{.Names}}\\t{{.State}}"]);
    assert!(t.starts_with("NAMES"), "{t}");
    let j: Value = serde_json::from_str(&env.ok(&["ps", "-a", "--format", "json"])).unwrap();
    assert_eq!(j.as_array().unwrap().len(), 2);
}

/// Concurrent berth processes on the same names and containers stay
/// consistent: one of several runs claiming a name wins; parallel
/// `rm -f`s of one container all succeed and leave nothing.
#[test]
fn concurrent_commands_are_safe() {
    if !need_root("concurrent_commands_are_safe") {
        return;
    }
    let env = Env::new("ctr-conc");
    env.ok(&["pull", &env.image]);
    let name = unique("race");
    let kids: Vec<_> = (0..4)
        .map(|_| {
            env.cmd()
                .args(["run", "-d", "--name", &name, &env.image, "sleep", "30"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let codes: Vec<i32> = kids
        .into_iter()
        .map(|k| k.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    assert_eq!(codes.iter().filter(|&&c| c == 0).count(), 1, "{codes:?}");
    assert!(codes.iter().all(|&c| c == 0 || c == 125), "{codes:?}");
    assert_eq!(env.ids().len(), 1);
    let id = id_of(&env, &name);
    let kids: Vec<_> = (0..3)
        .map(|_| {
            env.cmd()
                .args(["rm", "-f", &name])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for k in kids {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    env.assert_clean(&[id]);
}

/// A killed monitor (as after a crash) does not make ps lie: the container
/// still runs and is shown running; `rm -f` still cleans everything.
#[test]
fn crash_of_the_monitor_is_shown_truthfully_and_cleaned() {
    if !need_root("crash_of_the_monitor_is_shown_truthfully_and_cleaned") {
        return;
    }
    let env = Env::new("ctr-crash");
    let name = unique("orphan");
    env.ok(&["run", "-d", "--name", &name, &env.image, "sleep", "30"]);
    let id = id_of(&env, &name);
    let dir = env.root.path().join("containers").join(&id);
    let mon: i32 = fs::read_to_string(dir.join("monitor.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(mon),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("the monitor to die", || {
        !Path::new(&format!("/proc/{mon}/cmdline")).exists()
            || fs::read(format!("/proc/{mon}/cmdline")).map_or(true, |c| c.is_empty())
    });
    assert_eq!(env.status(&name), "running");
    env.ok(&["rm", "-f", &name]);
    env.assert_clean(&[id]);

    // A container whose start failed half-way is created, and rm cleans it.
    let name = unique("half");
    env.ok(&["create", "--name", &name, &env.image, "true"]);
    let id = id_of(&env, &name);
    let bundle = env.root.path().join("containers").join(&id).join("bundle");
    fs::remove_file(bundle.join("config.json")).unwrap();
    let e = env.fails(&["start", &name], 125);
    assert!(e.contains(&name), "{e}");
    assert_eq!(env.status(&name), "created");
    env.ok(&["rm", &name]);
    env.assert_clean(&[id]);
}

/// SIGKILLs container `id`'s monitor and waits (on a pidfd) until it is gone.
fn kill_monitor(env: &Env, id: &str) {
    let dir = env.root.path().join("containers").join(id);
    let mon: i32 = fs::read_to_string(dir.join("monitor.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pid = rustix::process::Pid::from_raw(mon).unwrap();
    let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
    rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::KILL).unwrap();
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    rustix::event::poll(&mut fds, None).unwrap();
}

/// The monitor killed with SIGKILL while its container runs: the container
/// is shown running as long as it runs; once it is gone it is exited with
/// the exit code podman gives when its conmon died (-1: it could not be
/// known), an error saying why, and a FinishedAt that is recorded, not
/// 0001-01-01. `start` then works (the runtime's leftover state is
/// deleted first), after an exit on its own and after `stop`, on
/// berth-runtime and on runc; `rm` leaves nothing.
#[test]
fn killed_monitor_is_shown_truthfully_and_start_works_again() {
    if !need_root("killed_monitor_is_shown_truthfully_and_start_works_again") {
        return;
    }
    let env = Env::new("ctr-monkill");
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("runc is installed by scripts/install-deps.sh");
    for runtime in [None, Some(runc)] {
        let name = unique("monkill");
        let mut args = vec!["run", "-d", "--name", &name];
        if let Some(r) = runtime {
            args.extend(["--runtime", r]);
        }
        // It runs until /tmp/go exists in its rootfs, then exits 3.
        let script = "until [ -e /tmp/go ]; do sleep 0.05; done; exit 3";
        args.extend([env.image.as_str(), "sh", "-c", script]);
        env.ok(&args);
        let id = id_of(&env, &name);
        let go = env
            .root
            .path()
            .join("containers")
            .join(&id)
            .join("bundle/rootfs/tmp/go");
        let exited = |why: &str| {
            let st = env.inspect(&name)["State"].clone();
            assert_eq!(st["Status"], "exited", "{why}: {st}");
            assert_eq!(st["ExitCode"], -1, "{why}: {st}");
            let started = st["StartedAt"].as_str().unwrap().to_string();
            let finished = st["FinishedAt"].as_str().unwrap().to_string();
            assert!(!finished.starts_with("0001"), "{why}: {st}");
            assert!(finished >= started, "{why}: {st}");
            assert!(
                st["Error"].as_str().unwrap().contains("monitor"),
                "{why}: {st}"
            );
            // Recorded once, not made up anew at each look.
            assert_eq!(
                env.inspect(&name)["State"]["FinishedAt"],
                st["FinishedAt"],
                "{why}"
            );
            let ps = env.ok(&[
                "ps",
                "-a",
                "--filter",
                &format!("name={name}"),
                "--format",
                "{{.Status}}",
            ]);
            assert!(ps.starts_with("Exited (-1) "), "{why}: {ps}");
        };

        // Killed while it runs: it is still running, and shown so.
        kill_monitor(&env, &id);
        let st = env.inspect(&name)["State"].clone();
        assert_eq!(st["Status"], "running", "{st}");
        assert!(st["Pid"].as_i64().unwrap() > 0, "{st}");
        assert!(env.ok(&["ps", "--format", "{{.Names}}"]).contains(&name));
        // It ends on its own: its exit cannot be known.
        fs::write(&go, "").unwrap();
        assert_eq!(env.ok(&["wait", &name]).trim(), "-1");
        exited("ended on its own");
        // Started again, it runs under a new monitor.
        fs::remove_file(&go).unwrap();
        env.ok(&["start", &name]);
        assert_eq!(env.status(&name), "running");

        // Killed again, then stopped.
        kill_monitor(&env, &id);
        env.ok(&["stop", "-t", "0", &name]);
        exited("stopped");
        env.ok(&["start", &name]);
        assert_eq!(env.status(&name), "running");
        // The new monitor records the real exit code again.
        fs::write(&go, "").unwrap();
        assert_eq!(env.ok(&["wait", &name]).trim(), "3");
        assert_eq!(env.inspect(&name)["State"]["Error"], "");

        // Killed once more: rm -f cleans it all up.
        fs::remove_file(&go).unwrap();
        env.ok(&["start", &name]);
        kill_monitor(&env, &id);
        env.ok(&["rm", "-f", &name]);
        env.assert_clean(&[id]);
    }
}

/// `run -d` SIGKILLed at random moments (spread over how long a whole one
/// takes here), on berth-runtime and runc: what it leaves is either nothing,
/// a running container, or a created one that `start` either starts with
/// its network whole or refuses with an error saying to remove it; `rm -f`
/// always leaves nothing.
#[test]
fn run_killed_at_random_points_leaves_a_startable_or_removable_container() {
    if !need_root("run_killed_at_random_points_leaves_a_startable_or_removable_container") {
        return;
    }
    let env = Env::new("ctr-runkill");
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("runc is installed by scripts/install-deps.sh");
    env.ok(&["pull", "-q", &env.image]);
    let probe = unique("probe");
    let began = std::time::Instant::now();
    env.ok(&["run", "-d", "--name", &probe, &env.image, "sleep", "1000"]);
    let whole = began.elapsed();
    env.ok(&["rm", "-f", &probe]);
    let mut seed = [0u8; 8];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
        .unwrap();
    let mut rnd = u64::from_le_bytes(seed) | 1;
    let mut next = move || {
        // xorshift64
        rnd ^= rnd << 13;
        rnd ^= rnd >> 7;
        rnd ^= rnd << 17;
        rnd
    };
    let prefix = env.net.subnet.trim_end_matches(".0/24").to_string();
    let mut seen = std::collections::BTreeMap::<&str, u32>::new();
    for i in 0..40 {
        let name = unique("runkill");
        let delay = whole.mul_f64((next() % 1000) as f64 / 1000.0);
        let mut args = vec!["run", "-d", "--name", &name, "-p", "80"];
        if i % 2 == 1 {
            args.extend(["--runtime", runc]);
        }
        args.extend([env.image.as_str(), "sleep", "1000"]);
        let mut child = env
            .cmd()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let ids = env.ok(&[
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("name={name}"),
        ]);
        let Some(id) = ids.lines().next().map(str::to_string) else {
            *seen.entry("nothing").or_default() += 1;
            env.assert_clean(&[]);
            continue;
        };
        let status = env.status(&name);
        let outcome = match status.as_str() {
            "running" => "running",
            "created" => {
                let (code, out, err) = env.run(&["start", &name]);
                if code == 0 {
                    assert_eq!(env.status(&name), "running", "{out}{err}");
                    "started"
                } else if err.contains("is running: it is already started") {
                    // Its monitor was starting it: `start` waited for
                    // that (the monitor holds the lock until then).
                    "running"
                } else {
                    assert!(
                        err.contains(&format!("berth rm {name}")),
                        "iteration {i} after {delay:?}: start failed without saying to remove it:\n{out}{err}"
                    );
                    "refused"
                }
            }
            other => panic!("iteration {i} after {delay:?}: {name} is {other}"),
        };
        if outcome != "refused" {
            // Its network is whole: an address on the test's network.
            let addr = env.ok(&["exec", &name, "ip", "-4", "-o", "addr", "show", "eth0"]);
            assert!(
                addr.contains(&format!("inet {prefix}.")),
                "iteration {i} after {delay:?}: {outcome} without its network: {addr}"
            );
        }
        *seen.entry(outcome).or_default() += 1;
        env.ok(&["rm", "-f", &name]);
        env.assert_clean(&[id]);
    }
    eprintln!("run -d killed after 0..{whole:?}: {seen:?}");

    // A rootfs no longer mounted (as after a reboot) is mounted again.
    let name = unique("unmounted");
    env.ok(&[
        "create",
        "--name",
        &name,
        &env.image,
        "cat",
        "/etc/hostname",
    ]);
    let id = id_of(&env, &name);
    let rootfs = env
        .root
        .path()
        .join("containers")
        .join(&id)
        .join("bundle/rootfs");
    berth_tests::run_ok(Command::new("umount").arg(&rootfs));
    env.ok(&["start", &name]);
    assert_eq!(env.ok(&["wait", &name]).trim(), "0");
    assert_eq!(env.ok(&["logs", &name]), format!("{}\n", &id[..12]));
    env.ok(&["rm", &name]);
    env.assert_clean(&[id]);
}

/// Pushes an image of the test's busybox rootfs whose run config is
/// `config` (written to a file: it may be too big for an environment
/// variable) as `test/NAME:latest`; returns its reference.
fn push_config_image(env: &Env, name: &str, config: &Value) -> String {
    let layout = env.root.path().join(format!("{name}-layout"));
    let file = env.root.path().join(format!("{name}-config.json"));
    fs::write(&file, config.to_string()).unwrap();
    berth_tests::run_ok(
        Command::new(berth_tests::workspace().join("scripts/mkimage.sh"))
            .env("MKIMAGE_CONFIG_FILE", &file)
            .arg(&layout)
            .arg("latest")
            .arg(env.root.path().join("img-rootfs")),
    );
    env.reg
        .push_oci_layout(&layout, "latest", &format!("test/{name}:latest"));
    format!("{}/test/{name}:latest", env.reg.addr)
}

/// An image with 100 000 environment variables runs (create was quadratic
/// in them: 18 s of CPU), with docker's precedence kept (`-e` replaces a
/// variable in place); an environment the kernel would not let the exec
/// take (one variable over 128 KiB, or all of them over a quarter of the
/// stack limit) is refused with an error that says so, and leaves nothing.
#[test]
fn image_with_100000_env_vars() {
    if !need_root("image_with_100000_env_vars") {
        return;
    }
    let env = Env::new("ctr-manyenv");
    let mut vars = vec!["PATH=/bin:/usr/bin".to_string()];
    vars.extend((0..100_000).map(|i| format!("E{i:05}={}", i % 10)));
    // `env` itself, not a shell: busybox's sh takes its variables in one
    // by one, slowly.
    let image = push_config_image(
        &env,
        "manyenv",
        &serde_json::json!({"Env": vars, "Cmd": ["env"]}),
    );
    env.ok(&["pull", "-q", &image]);
    let cpu = || {
        let u =
            nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
        let t = |v: nix::sys::time::TimeVal| v.tv_sec() as f64 + v.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    };
    let name = unique("manyenv");
    let before = cpu();
    env.ok(&["create", "--name", &name, &image]);
    eprintln!(
        "berth create with 100 000 env vars: {:.2} s of CPU",
        cpu() - before
    );
    env.ok(&["start", &name]);
    assert_eq!(env.ok(&["wait", &name]).trim(), "0");
    let out = env.ok(&["logs", &name]);
    let mine: Vec<&str> = out.lines().filter(|l| l.starts_with('E')).collect();
    assert_eq!(
        mine,
        vars[1..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    env.ok(&["rm", &name]);
    // -e replaces the image's variable in its place and adds a new one
    // after the image's.
    let out = env.ok(&["run", "--rm", "-e", "E00007=seven", "-e", "NEW=1", &image]);
    let lines: Vec<&str> = out.lines().collect();
    let at = |v: &str| {
        lines
            .iter()
            .position(|l| *l == v)
            .unwrap_or_else(|| panic!("no {v}"))
    };
    assert_eq!(at("E00007=seven"), at("E00006=6") + 1);
    assert!(at("NEW=1") > at("E99999=9"));
    assert_eq!(lines.iter().filter(|l| l.starts_with('E')).count(), 100_000);

    // A stack limit of 1 MiB lets an exec take 256 KiB: too little for
    // these 1.7 MB.
    let name = unique("stack");
    let e = env.fails(
        &[
            "run",
            "--name",
            &name,
            "--ulimit",
            "stack=1048576:1048576",
            &image,
        ],
        125,
    );
    assert!(e.contains("environment") && e.contains("stack"), "{e}");
    // One variable of 200 000 bytes: more than the kernel's 128 KiB for
    // one string.
    let big = format!("BIG={}", "x".repeat(200_000));
    let image = push_config_image(
        &env,
        "bigvar",
        &serde_json::json!({"Env": ["PATH=/bin", big], "Cmd": ["true"]}),
    );
    let name = unique("bigvar");
    let e = env.fails(&["run", "--name", &name, &image], 125);
    assert!(e.contains("BIG") && e.contains("131072"), "{e}");
    env.assert_clean(&[]);
}

/// `-i` pipes stdin and closes it at its end; `-it` gives a real terminal
/// (driven here through `script`), sized like ours.
#[test]
fn stdin_and_terminal() {
    if !need_root("stdin_and_terminal") {
        return;
    }
    let env = Env::new("ctr-tty");
    env.ok(&["pull", "-q", &env.image]);
    let mut child = env
        .cmd()
        .args([
            "run",
            "--rm",
            "-i",
            &env.image,
            "sh",
            "-c",
            "cat; echo done",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut w = child.stdin.take().unwrap();
        w.write_all(b"one\ntwo\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "one\ntwo\ndone\n");
    // Without -i the container's stdin is empty.
    let mut child = env
        .cmd()
        .args(["run", "--rm", &env.image, "sh", "-c", "cat; echo end"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let _ = child.stdin.take().unwrap().write_all(b"ignored\n");
    }
    assert_eq!(
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout),
        "end\n"
    );

    let inner = format!(
        "stty rows 33 cols 77; {} --root {} --run-dir {} --network-config-dir {} run --rm -it {} sh -c 'tty; stty -a | head -1; exit 3'",
        berth_bin().display(),
        env.root.path().display(),
        env.run_dir.display(),
        env.net.dir.display(),
        env.image
    );
    // `script` gives the command a pty; its own stdin stays open a while.
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("sleep 3 | script -qec \"{inner}\" /dev/null"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("rows 33; columns 77"), "{out}");
    assert_eq!(o.status.code(), Some(3), "{out}");
    env.assert_clean(&[]);
}

/// `attach` joins a running container's output and stdin from another
/// berth process, and returns its exit code.
#[test]
fn attach_from_another_process() {
    if !need_root("attach_from_another_process") {
        return;
    }
    let env = Env::new("ctr-attach");
    let name = unique("att");
    env.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        &name,
        &env.image,
        "sh",
        "-c",
        "read x; echo got $x; exit 6",
    ]);
    let mut child = env
        .cmd()
        .args(["attach", &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.as_mut().unwrap().write_all(b"hello\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "got hello\n");
    assert_eq!(o.status.code(), Some(6));
    let e = env.fails(&["attach", &name], 125);
    assert!(e.contains(&name) && e.contains("exited"), "{e}");
}

/// A detached `--rm` container removes itself when it exits.
#[test]
fn detached_rm_removes_itself() {
    if !need_root("detached_rm_removes_itself") {
        return;
    }
    let env = Env::new("ctr-drm");
    let id = env
        .ok(&["run", "-d", "--rm", &env.image, "sh", "-c", "sleep 0.2"])
        .trim()
        .to_string();
    wait_until("the container to remove itself", || env.ids().is_empty());
    env.assert_clean(&[id]);
}

/// `run --rm` removes the container's anonymous volumes with it, in the
/// foreground as detached (docker's `--rm`); a named volume stays.
#[test]
fn rm_run_takes_its_anonymous_volumes() {
    if !need_root("rm_run_takes_its_anonymous_volumes") {
        return;
    }
    let env = Env::new("ctr-rmvol");
    let vol = unique("keep");
    let named = format!("{vol}:/n");
    env.ok(&[
        "run", "--rm", "-v", "/anon", "-v", &named, &env.image, "true",
    ]);
    assert_eq!(env.ok(&["volume", "ls", "-q"]).trim(), vol);
    let id = env
        .ok(&["run", "-d", "--rm", "-v", "/anon", &env.image, "true"])
        .trim()
        .to_string();
    wait_until("the container to remove itself", || env.ids().is_empty());
    assert_eq!(env.ok(&["volume", "ls", "-q"]).trim(), vol);
    env.ok(&["volume", "rm", &vol]);
    env.assert_clean(&[id]);
}

/// `exec` runs in the container with its environment, as another user, in
/// another directory, and passes the exit code; a missing command is 127.
#[test]
fn exec_in_a_running_container() {
    if !need_root("exec_in_a_running_container") {
        return;
    }
    let env = Env::new("ctr-exec");
    let name = unique("ex");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "-e",
        "FROM_RUN=1",
        &env.image,
        "sleep",
        "30",
    ]);
    let (code, out, _) = env.run(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo $FROM_RUN $HOSTNAME; exit 4",
    ]);
    assert_eq!(code, 4);
    assert_eq!(out, format!("1 {}\n", &id_of(&env, &name)[..12]));
    let out = env.ok(&[
        "exec",
        "-u",
        "nobody",
        "-w",
        "/tmp",
        "-e",
        "X=y",
        &name,
        "sh",
        "-c",
        "id -u; pwd; echo $X",
    ]);
    assert_eq!(out, "65534\n/tmp\ny\n");
    let e = env.fails(&["exec", &name, "no-such-tool"], 127);
    assert!(e.contains("no-such-tool"), "{e}");
    let e = env.fails(&["exec", &name, "/etc/passwd"], 126);
    assert!(e.contains("/etc/passwd"), "{e}");
    env.ok(&["exec", "-d", &name, "sh", "-c", "echo bg > /tmp/bg"]);
    wait_until("the detached exec", || {
        env.run(&["exec", &name, "cat", "/tmp/bg"]).1 == "bg\n"
    });
    let mut child = env
        .cmd()
        .args(["exec", "-i", &name, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    }
    assert_eq!(
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout),
        "piped\n"
    );
    env.ok(&["stop", "-t", "0", &name]);
    let e = env.fails(&["exec", &name, "true"], 125);
    assert!(e.contains("exited"), "{e}");
}

/// info, version, system df and prune; rmi refuses an image a container
/// uses.
#[test]
fn system_commands_and_images_in_use() {
    if !need_root("system_commands_and_images_in_use") {
        return;
    }
    let env = Env::new("ctr-sys");
    let up = unique("up");
    let done = unique("done");
    env.ok(&["run", "-d", "--name", &up, &env.image, "sleep", "30"]);
    env.ok(&[
        "run",
        "--name",
        &done,
        &env.image,
        "sh",
        "-c",
        "head -c 100000 /dev/zero > /blob",
    ]);
    let info: Value = serde_json::from_str(&env.ok(&["info", "--format", "json"])).unwrap();
    assert_eq!(info["Containers"], 2);
    assert_eq!(info["ContainersRunning"], 1);
    assert_eq!(info["ContainersStopped"], 1);
    assert_eq!(info["Images"], 1);
    assert_eq!(
        env.ok(&["info", "-f", "{{.Host.Architecture}}"]).trim(),
        std::env::consts::ARCH
    );
    let v = env.ok(&["version"]);
    assert!(
        v.contains(env!("CARGO_PKG_VERSION")) && v.contains("Runtime:"),
        "{v}"
    );
    let df = env.ok(&["system", "df"]);
    let line = df
        .lines()
        .find(|l| l.starts_with("Containers"))
        .unwrap()
        .to_string();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cols[1..3], ["2", "1"], "{df}");
    assert!(cols[3].ends_with("kB"), "the written file counts: {df}");

    let e = env.fails(&["rmi", &env.image], 1);
    assert!(e.contains(&up) && e.contains(&done), "{e}");
    assert!(env.ok(&["images"]).contains("test/bb"));
    env.ok(&["image", "prune", "-a"]);
    assert!(
        env.ok(&["images"]).contains("test/bb"),
        "prune -a keeps images in use"
    );

    // Without --force, prune asks; "n" cancels and keeps everything.
    let mut child = env
        .cmd()
        .args(["system", "prune"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"n\n").unwrap();
    }
    assert!(!child.wait_with_output().unwrap().status.success());
    assert_eq!(env.ids().len(), 2);
    let out = env.ok(&["system", "prune", "-f"]);
    assert!(out.contains("Deleted Containers:"), "{out}");
    assert_eq!(env.ids().len(), 1, "the running container stays");
    env.ok(&["rm", "-f", &up]);
    env.ok(&["system", "prune", "-a", "-f"]);
    assert!(!env.ok(&["images"]).contains("test/bb"));
    env.assert_clean(&[]);
}

/// `--runtime` runs one container on another runc-compatible runtime
/// (runc), through the whole lifecycle; `start -a` attaches from the start.
#[test]
fn another_runtime_and_start_attached() {
    if !need_root("another_runtime_and_start_attached") {
        return;
    }
    let env = Env::new("ctr-runc");
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("runc is installed by scripts/install-deps.sh");
    let name = unique("onrunc");
    env.ok(&[
        "run",
        "-d",
        "--runtime",
        runc,
        "--name",
        &name,
        &env.image,
        "sleep",
        "30",
    ]);
    assert_eq!(env.inspect(&name)["HostConfig"]["Runtime"], runc);
    assert_eq!(env.status(&name), "running");
    assert_eq!(env.ok(&["exec", &name, "echo", "hi"]), "hi\n");
    env.ok(&["pause", &name]);
    assert_eq!(env.status(&name), "paused");
    env.ok(&["unpause", &name]);
    assert!(env.ok(&["top", &name]).contains("sleep"));
    let id = id_of(&env, &name);
    env.ok(&["rm", "-f", &name]);
    let (code, out, _) = env.run(&[
        "run",
        "--rm",
        "--runtime",
        runc,
        &env.image,
        "sh",
        "-c",
        "echo via runc; exit 2",
    ]);
    assert_eq!((code, out.as_str()), (2, "via runc\n"));
    let e = env.fails(
        &["run", "--runtime", "/no/such/runtime", &env.image, "true"],
        125,
    );
    assert!(e.contains("/no/such/runtime"), "{e}");

    let name = unique("later");
    env.ok(&[
        "create",
        "--name",
        &name,
        &env.image,
        "sh",
        "-c",
        "echo first; exit 9",
    ]);
    assert_eq!(env.status(&name), "created");
    let (code, out, _) = env.run(&["start", "-a", &name]);
    assert_eq!((code, out.as_str()), (9, "first\n"));
    // It publishes no ports (tests/network.rs covers published ones).
    assert_eq!(env.ok(&["port", &name]), "");
    let e = env.fails(&["port", &name, "80"], 125);
    assert!(e.contains("80/tcp"), "{e}");
    env.ok(&["rm", &name]);
    env.assert_clean(&[id]);
}

/// A foreground `run` passes the signals it gets to the container
/// (docker's --sig-proxy).
#[test]
fn foreground_run_proxies_signals() {
    if !need_root("foreground_run_proxies_signals") {
        return;
    }
    let env = Env::new("ctr-sig");
    env.ok(&["pull", "-q", &env.image]);
    let mut child = env
        .cmd()
        .args([
            "run",
            "--rm",
            &env.image,
            "sh",
            "-c",
            "trap 'echo got INT; exit 7' INT; echo ready; while :; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "got INT\n");
    assert_eq!(child.wait().unwrap().code(), Some(7));
    env.assert_clean(&[]);
}

/// The host and security flags through `run`: bind mounts, named and
/// anonymous volumes (rm -v), tmpfs, read-only root, limits with the OOM
/// flag, an rlimit, a device, capabilities, privileged, seccomp, network.
#[test]
fn run_flags_end_to_end() {
    if !need_root("run_flags_end_to_end") {
        return;
    }
    let env = Env::new("ctr-flags");
    env.ok(&["pull", "-q", &env.image]);
    let host_dir = env.root.path().join("shared");
    fs::create_dir(&host_dir).unwrap();
    fs::write(host_dir.join("in"), "from host\n").unwrap();
    let bind = format!("{}:/data", host_dir.display());
    let bind_ro = format!("{}:/ro:ro", host_dir.display());
    let vol = unique("vol");
    let named = format!("{vol}:/v");
    let out = env.ok(&[
        "run",
        "--rm",
        "-v",
        &bind,
        "-v",
        &bind_ro,
        "-v",
        &named,
        "--tmpfs",
        "/scratch:size=1m",
        "--read-only",
        &env.image,
        "sh",
        "-c",
        "cat /data/in; echo out > /data/out; echo keep > /v/file; \
         touch /ro/x 2>/dev/null || echo ro-refused; touch /etc/x 2>/dev/null || echo root-ro; \
         grep -c ' /scratch tmpfs ' /proc/mounts",
    ]);
    assert_eq!(out, "from host\nro-refused\nroot-ro\n1\n");
    assert_eq!(fs::read_to_string(host_dir.join("out")).unwrap(), "out\n");
    // The named volume outlives the container.
    assert_eq!(
        env.ok(&["run", "--rm", "-v", &named, &env.image, "cat", "/v/file"]),
        "keep\n"
    );
    assert!(env.ok(&["volume", "ls", "-q"]).lines().any(|l| l == vol));
    // An anonymous volume goes with `rm -v`; a named one stays.
    let name = unique("anon");
    env.ok(&[
        "run", "--name", &name, "-v", "/anon", "-v", &named, &env.image, "true",
    ]);
    let vols_before = env.ok(&["volume", "ls", "-q"]).lines().count();
    assert_eq!(vols_before, 2);
    env.ok(&["rm", "-v", &name]);
    assert_eq!(env.ok(&["volume", "ls", "-q"]).trim(), vol);
    let e = env.fails(&["run", "-v", "/no/such/dir:/x", &env.image, "true"], 125);
    assert!(e.contains("/no/such/dir"), "{e}");
    let e = env.fails(&["run", "--memory", "lots", &env.image, "true"], 125);
    assert!(e.contains("--memory") && e.contains("lots"), "{e}");
    let e = env.fails(&["run", "--network", "container:", &env.image, "true"], 125);
    assert!(e.contains("container:NAME"), "{e}");
    let e = env.fails(&["run", "--ulimit", "bogus=1", &env.image, "true"], 125);
    assert!(e.contains("bogus"), "{e}");

    // Limits: memory (with an OOM kill recorded), pids, nofile.
    let name = unique("oom");
    let (code, _, _) = env.run(&[
        "run",
        "--name",
        &name,
        "--memory",
        "8m",
        "--memory-swap",
        "8m",
        &env.image,
        "sh",
        "-c",
        "head -c 64m /dev/zero | tail > /dev/null",
    ]);
    assert_eq!(code, 137);
    let i = env.inspect(&name);
    assert_eq!(i["State"]["OOMKilled"], true);
    assert_eq!(i["State"]["ExitCode"], 137);
    env.ok(&["rm", &name]);
    let out = env.ok(&[
        "run",
        "--rm",
        "--pids-limit",
        "50",
        "--ulimit",
        "nofile=300:400",
        &env.image,
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn",
    ]);
    assert_eq!(out, "300\n400\n");
    let name = unique("normal");
    env.ok(&["run", "--name", &name, &env.image, "true"]);
    assert_eq!(env.inspect(&name)["State"]["OOMKilled"], false);

    // A device, capabilities, privileged and seccomp.
    let out = env.ok(&[
        "run",
        "--rm",
        "--device",
        "/dev/null:/dev/mynull",
        &env.image,
        "sh",
        "-c",
        "echo x > /dev/mynull && echo dev-ok",
    ]);
    assert_eq!(out, "dev-ok\n");
    let probe = "grep CapEff /proc/self/status; mkdir -p /m; mount -t tmpfs none /m 2>/dev/null && echo mount=ok || echo mount=refused";
    let out = env.ok(&["run", "--rm", &env.image, "sh", "-c", probe]);
    assert_eq!(out, "CapEff:\t00000000a80425fb\nmount=refused\n");
    let out = env.ok(&[
        "run",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        &env.image,
        "sh",
        "-c",
        probe,
    ]);
    assert!(out.ends_with("mount=ok\n"), "{out}");
    let out = env.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        &env.image,
        "sh",
        "-c",
        probe,
    ]);
    assert_eq!(out, "CapEff:\t0000000000000000\nmount=refused\n");
    let out = env.ok(&[
        "run",
        "--rm",
        "--privileged",
        &env.image,
        "sh",
        "-c",
        "wc -c < /proc/interrupts | grep -qv '^0$' && echo unmasked",
    ]);
    assert_eq!(out, "unmasked\n");
    let out = env.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "--security-opt",
        "no-new-privileges",
        &env.image,
        "sh",
        "-c",
        "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status",
    ]);
    assert_eq!(out, "NoNewPrivs:\t1\nSeccomp:\t0\n");
    // Networks: none has only lo, the default bridge adds eth0; host sees
    // the host's links.
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &env.image,
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(out, "lo\n");
    let out = env.ok(&["run", "--rm", &env.image, "ls", "/sys/class/net"]);
    assert_eq!(out, "eth0\nlo\n");
    // The host's links: those there before and after are seen inside
    // (other tests add and remove veths and bridges meanwhile).
    let links = || -> std::collections::BTreeSet<String> {
        fs::read_dir("/sys/class/net")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let before = links();
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        &env.image,
        "ls",
        "/sys/class/net",
    ]);
    let after = links();
    let inside: std::collections::BTreeSet<String> = out.lines().map(str::to_string).collect();
    for l in before.intersection(&after) {
        assert!(
            inside.contains(l),
            "{l} not seen with --network host: {out}"
        );
    }
}

/// The process flags: --entrypoint, -e (also KEY from here), --env-file,
/// -w, -u, --hostname; --stop-signal and --stop-timeout drive `stop`.
#[test]
fn process_and_stop_flags() {
    if !need_root("process_and_stop_flags") {
        return;
    }
    let env = Env::new("ctr-proc");
    env.ok(&["pull", "-q", &env.image]);
    let envfile = env.root.path().join("vars");
    fs::write(&envfile, "# comment\nFROM_FILE=yes\nFROM_HERE\n").unwrap();
    let out = env
        .cmd()
        .env("FROM_HERE", "passed")
        .args([
            "run",
            "--rm",
            "--entrypoint",
            "/bin/sh",
            "--env-file",
            envfile.to_str().unwrap(),
            "-e",
            "A=1",
            "-e",
            "FROM_HERE",
            "-w",
            "/tmp",
            "-u",
            "nobody",
            "--hostname",
            "box",
            &env.image,
            "-c",
            "echo $A $FROM_FILE $FROM_HERE; pwd; id -u; hostname; cat /etc/hostname",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1 yes passed\n/tmp\n65534\nbox\nbox\n"
    );

    // stop sends the stop signal, then SIGKILL after the stop timeout.
    let name = unique("usr1");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--stop-signal",
        "USR1",
        &env.image,
        "sh",
        "-c",
        "trap 'exit 11' USR1; while :; do sleep 0.1; done",
    ]);
    env.ok(&["stop", &name]);
    assert_eq!(env.inspect(&name)["State"]["ExitCode"], 11);
    assert_eq!(env.inspect(&name)["Config"]["StopSignal"], "USR1");
    let name = unique("stubborn");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--stop-timeout",
        "1",
        &env.image,
        "sh",
        "-c",
        "trap '' TERM; while :; do sleep 0.1; done",
    ]);
    env.ok(&["stop", &name]);
    assert_eq!(env.inspect(&name)["State"]["ExitCode"], 137);
}

/// `--init` puts berth-init in front as PID 1: the exit code passes
/// through, orphans are reaped, and `stop`'s SIGTERM reaches a command that
/// would ignore it as PID 1.
#[test]
fn init_as_pid_one() {
    if !need_root("init_as_pid_one") {
        return;
    }
    let env = Env::new("ctr-init");
    env.ok(&["pull", "-q", &env.image]);
    let (code, out, err) = env.run(&[
        "run",
        "--rm",
        "--init",
        &env.image,
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; exit 3",
    ]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        out,
        "/run/berth-init -- sh -c cat /proc/1/cmdline | tr '\\0' ' '; exit 3 "
    );
    // An orphan that exits is reaped by PID 1.
    let out = env.ok(&[
        "run",
        "--rm",
        "--init",
        &env.image,
        "sh",
        "-c",
        "sh -c 'sleep 0.2 & exit 0'; sleep 0.8; ps -o stat | grep -c '^Z' || true",
    ]);
    assert_eq!(out, "0\n");
    // sleep as PID 1 ignores SIGTERM: stop has to kill it (137). Under
    // berth-init, SIGTERM reaches sleep, which dies of it (143).
    let plain = unique("plain");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &plain,
        "--stop-timeout",
        "1",
        &env.image,
        "sleep",
        "100",
    ]);
    env.ok(&["stop", &plain]);
    assert_eq!(env.inspect(&plain)["State"]["ExitCode"], 137);
    let init = unique("withinit");
    env.ok(&[
        "run",
        "-d",
        "--init",
        "--name",
        &init,
        "--stop-timeout",
        "30",
        &env.image,
        "sleep",
        "100",
    ]);
    assert_eq!(env.inspect(&init)["HostConfig"]["Init"], true);
    assert_eq!(env.inspect(&init)["Path"], "sleep");
    env.ok(&["stop", &init]);
    assert_eq!(env.inspect(&init)["State"]["ExitCode"], 143);
    let e = env.fails(&["run", "--rm", "--init", &env.image, "no-such-cmd"], 127);
    assert!(e.contains("no-such-cmd"), "{e}");
}

/// `cp` both ways and as tar streams, resolving the container's symlinks
/// inside it (never on the host); `export`; `commit` then `run` of the
/// result, with deletions from lower layers carried as whiteouts.
#[test]
fn cp_export_and_commit() {
    if !need_root("cp_export_and_commit") {
        return;
    }
    let env = Env::new("ctr-files");
    let name = unique("files");
    env.ok(&[
        "run",
        "--name",
        &name,
        &env.image,
        "sh",
        "-c",
        "mkdir -p /srv/app && echo one > /srv/app/a && ln -s /etc /srv/evil && \
         ln -s ../../../../../../ /srv/up && rm /etc/group && rm -r /tmp && echo x > /srv/app/b",
    ]);
    let host = env.root.path().join("host");
    fs::create_dir(&host).unwrap();
    let hs = |p: &str| host.join(p).display().to_string();
    // Out: a file, a dir (created), a dir's contents.
    env.ok(&["cp", &format!("{name}:/srv/app/a"), &hs("a")]);
    assert_eq!(fs::read_to_string(host.join("a")).unwrap(), "one\n");
    env.ok(&["cp", &format!("{name}:/srv/app"), &hs("app")]);
    assert_eq!(fs::read_to_string(host.join("app/b")).unwrap(), "x\n");
    fs::create_dir(host.join("flat")).unwrap();
    env.ok(&["cp", &format!("{name}:/srv/app/."), &hs("flat")]);
    assert!(host.join("flat/a").exists() && !host.join("flat/app").exists());
    // In: a host file through the planted links lands in the container.
    fs::write(host.join("hosts.new"), "planted\n").unwrap();
    let before = fs::read("/etc/hostname").unwrap();
    env.ok(&[
        "cp",
        &hs("hosts.new"),
        &format!("{name}:/srv/evil/hostname"),
    ]);
    env.ok(&["cp", &hs("hosts.new"), &format!("{name}:/srv/up/etc/")]);
    assert_eq!(
        fs::read("/etc/hostname").unwrap(),
        before,
        "the host's /etc was written"
    );
    assert!(
        !Path::new("/etc/hosts.new").exists(),
        "the host's /etc was written"
    );
    env.fails(&["cp", &format!("{name}:/no/such"), &hs("x")], 125);
    let e = env.fails(&["cp", &hs("a"), &hs("b")], 125);
    assert!(e.contains("CONTAINER:PATH"), "{e}");
    // Tar streams: out to stdout, in from stdin.
    let o = env
        .cmd()
        .args(["cp", &format!("{name}:/srv/app"), "-"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let mut ar = tar::Archive::new(&o.stdout[..]);
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.iter().any(|n| n == "app/a"), "{names:?}");
    let mut child = env
        .cmd()
        .args(["cp", "-", &format!("{name}:/srv")])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut b = tar::Builder::new(child.stdin.take().unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(6);
        h.set_mode(0o600);
        b.append_data(&mut h, "fromtar", &b"tarred"[..]).unwrap();
        b.finish().unwrap();
    }
    assert!(child.wait().unwrap().success());

    // export: the image's files plus the container's changes, minus its
    // deletions.
    let tarball = env.root.path().join("export.tar");
    env.ok(&["export", "-o", tarball.to_str().unwrap(), &name]);
    let f = fs::File::open(&tarball).unwrap();
    let names: Vec<String> = tar::Archive::new(f)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        names.iter().any(|n| n == "bin/busybox"),
        "exported {} entries",
        names.len()
    );
    assert!(names.iter().any(|n| n == "srv/fromtar") && names.iter().any(|n| n == "etc/hostname"));
    assert!(!names.iter().any(|n| n == "etc/group"));
    // What went in through the planted links is the container's own /etc.
    assert!(names.iter().any(|n| n == "etc/hosts.new"), "{names:?}");
    let mut ar = tar::Archive::new(fs::File::open(&tarball).unwrap());
    let mut hostname = String::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap() == Path::new("etc/hostname") {
            std::io::Read::read_to_string(&mut e, &mut hostname).unwrap();
        }
    }
    assert_eq!(hostname, "planted\n");

    // commit, then run the new image.
    let id = env
        .ok(&[
            "commit",
            "-c",
            "ENV COMMITTED=yes",
            "-c",
            "CMD cat /srv/app/a",
            "-m",
            "test",
            &name,
            "localhost/committed:1",
        ])
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    let out = env.ok(&["run", "--rm", "localhost/committed:1"]);
    assert_eq!(out, "one\n");
    let out = env.ok(&[
        "run", "--rm", "localhost/committed:1", "sh", "-c",
        "echo $COMMITTED; cat /srv/fromtar; echo; ls /etc/group /tmp 2>&1 | wc -l; readlink /srv/evil",
    ]);
    assert_eq!(out, "yes\ntarred\n2\n/etc\n");
    let hist = env.ok(&["image", "history", "localhost/committed:1"]);
    assert!(hist.contains("berth commit"), "{hist}");
    let e = env.fails(&["commit", "-c", "RUN make", &name], 125);
    assert!(e.contains("RUN"), "{e}");
}

/// Runs `args` as the unprivileged host user nobody, with no supplementary
/// groups; returns whether it succeeded, and its output. setpriv keeps its
/// capabilities until its own execve (which path lookup then passes), so
/// the command is exec'd by a shell that has none.
fn as_nobody(args: &[&str]) -> (bool, String) {
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["/bin/sh", "-c", "exec \"$@\"", "sh"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv");
    let mut out = String::from_utf8_lossy(&o.stdout).into_owned();
    out.push_str(&String::from_utf8_lossy(&o.stderr));
    (o.status.success(), out)
}

/// Asserts that nobody is refused `args` on `path` (which exists) with
/// "Permission denied".
fn nobody_is_refused(what: &str, path: &Path, args: &[&str]) {
    assert!(
        path.symlink_metadata().is_ok(),
        "{what}: {} does not exist",
        path.display()
    );
    let (ok, out) = as_nobody(args);
    let modes: Vec<String> = path
        .ancestors()
        .map(|a| format!("{:o} {}", mode_of(a), a.display()))
        .collect();
    assert!(
        !ok && out.contains("Permission denied"),
        "{what}: an unprivileged user could do {args:?}:\n{out}\n{modes:#?}"
    );
}

/// The one regular file named `name` under `dir` (not following symlinks).
fn find_one(dir: &Path, name: &str) -> PathBuf {
    fn walk(dir: &Path, name: &str, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            match p.symlink_metadata() {
                Ok(md) if md.is_dir() => walk(&p, name, out),
                Ok(md) if md.is_file() && e.file_name() == name => out.push(p),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, name, &mut out);
    assert_eq!(out.len(), 1, "{name} under {}: {out:?}", dir.display());
    out.remove(0)
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// The store and the run dir are root's alone (the CVE-2021-41091 class):
/// an unprivileged host user can neither run a setuid-root binary of an
/// image layer (from the layer's directory or the container's mounted
/// rootfs), nor open a device node an image carries, nor read a
/// container's config (its env), its log, a volume's data or the runtime's
/// state — for berth-runtime and for runc. A store left open by an older
/// berth is closed again when berth opens it; a new one is made closed.
#[test]
fn store_and_run_dir_are_closed_to_other_users() {
    if !need_root("store_and_run_dir_are_closed_to_other_users") {
        return;
    }
    let env = Env::new("ctr-perms");
    let store = env.root.path();
    // As an older berth left /var/lib/berth: open to everyone.
    chmod(store, 0o755);
    // A layer with a setuid-root copy of busybox (as `id`) and a device
    // node anyone may write.
    let layer = store.join("suid-layer");
    let dir = layer.join("opt/suid");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(store.join("img-rootfs/bin/busybox"), dir.join("id")).unwrap();
    chmod(&dir.join("id"), 0o4755);
    nix::sys::stat::mknod(
        &dir.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    chmod(&dir.join("null"), 0o666);
    let layout = store.join("suid-layout");
    berth_tests::run_ok(
        Command::new(berth_tests::workspace().join("scripts/mkimage.sh"))
            .arg(&layout)
            .arg("latest")
            .arg(store.join("img-rootfs"))
            .arg(&layer),
    );
    env.reg
        .push_oci_layout(&layout, "latest", "test/suid:latest");
    let image = format!("{}/test/suid:latest", env.reg.addr);
    let vol = unique("permvol");
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("runc is installed by scripts/install-deps.sh");
    let mut ids = Vec::new();
    for runtime in [None, Some(runc)] {
        let name = unique("perm");
        let mut args = vec!["run", "-d", "--name", &name];
        if let Some(r) = runtime {
            args.extend(["--runtime", r]);
        }
        let mount = format!("{vol}:/data");
        args.extend([
            "-e",
            "SECRET=hunter2",
            "-v",
            &mount,
            &image,
            "sh",
            "-c",
            "echo data > /data/f; echo logged; exec sleep 1000",
        ]);
        let id = env.ok(&args).trim().to_string();
        wait_until("the log line", || env.ok(&["logs", &name]) == "logged\n");
        ids.push(id);
    }
    let check = || {
        let snaps = store.join("snapshots");
        let layer_bin = find_one(&snaps, "id");
        let layer_dev = layer_bin.with_file_name("null");
        // The setuid bit and the device are there, for root to see.
        assert_eq!(mode_of(&layer_bin), 0o4755);
        let sh = format!(": > {}", layer_dev.display());
        nobody_is_refused(
            "setuid binary in the layer",
            &layer_bin,
            &[layer_bin.to_str().unwrap()],
        );
        nobody_is_refused("device node in the layer", &layer_dev, &["sh", "-c", &sh]);
        let volume = store.join("volumes").join(&vol).join("_data/f");
        nobody_is_refused("volume data", &volume, &["cat", volume.to_str().unwrap()]);
        for id in &ids {
            let ctr = store.join("containers").join(id);
            let rootfs = ctr.join("bundle/rootfs");
            let bin = rootfs.join("opt/suid/id");
            let dev = rootfs.join("opt/suid/null");
            let sh = format!(": > {}", dev.display());
            nobody_is_refused(
                "setuid binary in the rootfs",
                &bin,
                &[bin.to_str().unwrap()],
            );
            nobody_is_refused("device node in the rootfs", &dev, &["sh", "-c", &sh]);
            let config = ctr.join("bundle/config.json");
            assert!(fs::read_to_string(&config).unwrap().contains("hunter2"));
            nobody_is_refused("config.json", &config, &["cat", config.to_str().unwrap()]);
            let log = ctr.join("ctr.log");
            nobody_is_refused("ctr.log", &log, &["cat", log.to_str().unwrap()]);
            // The runtime's state: berth-runtime keeps the config (with
            // the env) there, runc its state.json.
            let state = env.run_dir.join("runtime").join(id);
            let saved = state.join("config.json");
            let file = if saved.exists() {
                assert!(fs::read_to_string(&saved).unwrap().contains("hunter2"));
                saved
            } else {
                state.join("state.json")
            };
            nobody_is_refused("runtime state", &file, &["cat", file.to_str().unwrap()]);
        }
        assert_eq!(mode_of(store) & 0o007, 0, "root {:o}", mode_of(store));
        for d in ["content", "snapshots", "containers", "volumes"] {
            assert_eq!(mode_of(&store.join(d)), 0o700, "{d}");
        }
        assert_eq!(mode_of(&env.run_dir), 0o700, "run dir");
    };
    check();
    assert_eq!(mode_of(store), 0o700);

    // An older berth's store, opened up again, is closed on the next open.
    for d in ["", "content", "snapshots", "containers", "volumes"] {
        chmod(&store.join(d), 0o755);
    }
    chmod(&env.run_dir, 0o755);
    chmod(&env.run_dir.join("runtime"), 0o755);
    env.ok(&["ps"]);
    check();
    // A mode the admin made tighter is kept.
    chmod(store, 0o500);
    env.ok(&["ps"]);
    assert_eq!(mode_of(store), 0o500);
    chmod(store, 0o700);

    // A root berth makes itself is closed from the start.
    let fresh = store.join("fresh/store");
    let o = Command::new(berth_bin())
        .arg("--root")
        .arg(&fresh)
        .arg("images")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(mode_of(&fresh), 0o700);
    assert_eq!(mode_of(fresh.parent().unwrap()) & 0o755, 0o755);
    for d in ["content", "snapshots"] {
        assert_eq!(mode_of(&fresh.join(d)), 0o700, "{d}");
    }

    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.iter().map(String::as_str));
    env.ok(&rm);
    env.ok(&["volume", "rm", &vol]);
    env.assert_clean(&ids);
}

/// Runs `cmd` and SIGKILLs it as soon as an entry for which `hit` holds is
/// created in, or moved into, `dir` (inotify). Returns whether it was
/// killed, rather than ending first.
fn kill_on_entry(mut cmd: Command, dir: &Path, hit: impl Fn(&str) -> bool) -> bool {
    use rustix::fs::inotify;
    use std::os::fd::AsFd;
    let ino = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
        .expect("inotify");
    inotify::add_watch(
        &ino,
        dir,
        inotify::WatchFlags::CREATE | inotify::WatchFlags::MOVED_TO,
    )
    .expect("inotify watch");
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = rustix::process::Pid::from_child(&child);
    let pidfd =
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).expect("pidfd_open");
    let mut buf = [std::mem::MaybeUninit::uninit(); 8192];
    loop {
        let mut fds = [
            nix::poll::PollFd::new(ino.as_fd(), nix::poll::PollFlags::POLLIN),
            nix::poll::PollFd::new(pidfd.as_fd(), nix::poll::PollFlags::POLLIN),
        ];
        // A bound against hangs, not a timing check.
        let n = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(60_000u16)).expect("poll");
        assert!(n > 0, "{cmd:?}: neither an entry nor its end in 60 s");
        let mut r = inotify::Reader::new(&ino, &mut buf);
        loop {
            match r.next() {
                Ok(ev) => {
                    let name = ev.file_name().map(|n| n.to_string_lossy().into_owned());
                    if name.as_deref().is_some_and(&hit) {
                        let _ = child.kill();
                        child.wait().expect("wait");
                        return true;
                    }
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(e) => panic!("inotify read: {e}"),
            }
        }
        if child.try_wait().expect("try_wait").is_some() {
            return false;
        }
    }
}

/// Names in `dir`.
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `rmi`, `rm -f` and `system prune` killed (SIGKILL) while they delete a
/// snapshot, and pulls killed while they unpack, at chosen moments and
/// after random delays, leave directories that nothing refers to (removed
/// snapshots' `rm-N` trash, unfinished `extract-*` snapshots).
/// `system check` lists them, `system df` counts them, `system gc` removes
/// every one of them, and the store stays whole: the image pulls and runs.
#[test]
fn killed_removals_leave_trash_that_check_shows_and_gc_removes() {
    if !need_root("killed_removals_leave_trash_that_check_shows_and_gc_removes") {
        return;
    }
    let env = Env::new("ctr-trash");
    let store = env.root.path();
    // A layer of 10 000 files, so that deleting its snapshot takes a while.
    let many = store.join("many-layer/many");
    for d in 0..20 {
        let dir = many.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..500 {
            fs::write(dir.join(format!("f{f}")), b"x").unwrap();
        }
    }
    let layout = store.join("many-layout");
    berth_tests::run_ok(
        Command::new(berth_tests::workspace().join("scripts/mkimage.sh"))
            .arg(&layout)
            .arg("latest")
            .arg(store.join("img-rootfs"))
            .arg(store.join("many-layer")),
    );
    env.reg
        .push_oci_layout(&layout, "latest", "test/many:latest");
    let image = format!("{}/test/many:latest", env.reg.addr);
    let snaps = store.join("snapshots/overlay/snapshots");
    let is_trash = |n: &str| n.starts_with("rm-");
    let cmd = |args: &[&str]| {
        let mut c = env.cmd();
        c.args(args);
        c
    };

    // rmi, killed as it moves the layer's snapshot to the trash.
    env.ok(&["pull", "-q", &image]);
    assert!(kill_on_entry(cmd(&["rmi", &image]), &snaps, is_trash));
    let after_rmi = names_in(&snaps).into_iter().filter(|n| is_trash(n)).count();
    assert!(after_rmi >= 1, "{:?}", names_in(&snaps));

    // rm -f of a container that wrote many files, killed the same way; a
    // second rm -f finishes the container.
    env.ok(&["pull", "-q", &image]);
    let name = unique("trash");
    env.ok(&[
        "run",
        "--name",
        &name,
        &image,
        "sh",
        "-c",
        "cp -a /many /copy",
    ]);
    assert!(kill_on_entry(cmd(&["rm", "-f", &name]), &snaps, is_trash));
    env.ok(&["rm", "-f", &name]);

    // check and df show what the kills left (no GC has run since: rm -f
    // runs none).
    let trash: Vec<String> = names_in(&snaps)
        .into_iter()
        .filter(|n| is_trash(n))
        .collect();
    assert!(trash.len() >= 2, "{:?}", names_in(&snaps));
    let report = env.ok(&["system", "check"]);
    for t in &trash {
        assert!(
            report.contains(t.as_str()),
            "check does not show {t}:\n{report}"
        );
    }
    let json: Value =
        serde_json::from_str(&env.ok(&["system", "check", "--json"])).expect("check json");
    assert_eq!(
        json["snapshot_trash"].as_array().map(Vec::len),
        Some(trash.len()),
        "{json}"
    );
    let df = env.ok(&["system", "df"]);
    assert!(
        df.lines().any(|l| l.starts_with("Trash")
            && l.split_whitespace().nth(1) == Some(trash.len().to_string().as_str())),
        "df does not count the trash:\n{df}"
    );

    // system prune -a, killed the same way.
    assert!(kill_on_entry(
        cmd(&["system", "prune", "-a", "-f"]),
        &snaps,
        is_trash
    ));

    // A pull killed as soon as its layer's snapshot directory is made.
    env.run(&["rmi", &image]);
    kill_on_entry(cmd(&["pull", "-q", &image]), &snaps, |n| {
        n.bytes().all(|b| b.is_ascii_digit())
    });

    // And at random moments: pulls, rmi and rm -f.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    println!("random kills: seed {seed}");
    for round in 0..8 {
        let delay = std::time::Duration::from_millis(next() % 1500);
        let args: Vec<String> = match round % 3 {
            0 => vec!["pull".into(), "-q".into(), image.clone()],
            1 => {
                env.run(&["pull", "-q", &image]);
                vec!["rmi".into(), "-f".into(), image.clone()]
            }
            _ => {
                env.run(&["pull", "-q", &image]);
                let n = unique("rnd");
                env.run(&["create", "--name", &n, &image, "true"]);
                vec!["rm".into(), "-f".into(), n]
            }
        };
        println!("round {round}: {args:?} killed after {delay:?}");
        let mut child = env
            .cmd()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        child.wait().unwrap();
    }
    // Containers the kills left half-removed are removed for good.
    for id in env.ids() {
        env.ok(&["rm", "-f", &id]);
    }
    let trash: Vec<String> = names_in(&snaps)
        .into_iter()
        .filter(|n| is_trash(n))
        .collect();
    let report = env.ok(&["system", "check"]);
    for t in &trash {
        assert!(
            report.contains(t.as_str()),
            "check does not show {t}:\n{report}"
        );
    }
    println!("before gc: {:?}\n{report}", names_in(&snaps));

    let gc = env.ok(&["system", "gc"]);
    assert!(gc.contains("trash"), "{gc}");
    let left: Vec<String> = names_in(&snaps)
        .into_iter()
        .filter(|n| is_trash(n))
        .collect();
    assert!(left.is_empty(), "gc left {left:?}");
    let report = env.ok(&["system", "check"]);
    assert!(report.contains("no errors found"), "{report}");
    assert!(
        !report.contains("trash") && !report.contains("extract-"),
        "{report}"
    );
    // Every snapshot directory left belongs to a snapshot.
    let json: Value =
        serde_json::from_str(&env.ok(&["system", "check", "--json"])).expect("check json");
    assert_eq!(
        json["snapshot_trash"].as_array().map(Vec::len),
        Some(0),
        "{json}"
    );
    assert_eq!(
        json["orphan_snapshots"].as_array().map(Vec::len),
        Some(0),
        "{json}"
    );

    // The store is whole: the image pulls and runs.
    env.ok(&["pull", "-q", &image]);
    let out = env.ok(&[
        "run",
        "--rm",
        &image,
        "sh",
        "-c",
        "ls /many | wc -l; ls /many/d19 | wc -l",
    ]);
    assert_eq!(out, "20\n500\n");
    env.assert_clean(&[]);
}
