//! End-to-end tests with real clients (podman, containerd's `ctr`) driving
//! berth-runtime, or any runc-compatible runtime named by `BERTH_RUNTIME`.
//!
//! They need root; without it each test prints a skip line and returns.
//! Every test builds its own busybox OCI image (from `scripts/mkrootfs.sh`
//! and umoci) and its own private podman store or containerd daemon under a
//! temporary directory, names everything after the test and this process'
//! PID, and tears it all down in a `Drop` guard, also when it panics: the
//! containers, the processes it started (found by the unique temp path in
//! their command line), the mounts under the temp dir and the cgroups.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

/// Longest any single client command may take before the test kills it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The runtime under test, or `None` (after printing a skip line) when the
/// test cannot run here.
fn runtime_for(test: &str) -> Option<PathBuf> {
    if !nix::unistd::geteuid().is_root() {
        println!("skipping {test}: needs root");
        return None;
    }
    let runtime = env::var_os("BERTH_RUNTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/release/berth-runtime"));
    let runtime = runtime.canonicalize().unwrap_or_else(|e| {
        panic!(
            "runtime {} not usable ({e}); build it with `cargo build --release` or set BERTH_RUNTIME",
            runtime.display()
        )
    });
    println!("{test}: runtime {}", runtime.display());
    Some(runtime)
}

/// A name unique to this test in this process, usable as a container,
/// namespace or cgroup name.
fn unique(test: &str) -> String {
    format!("berth-{}-{}", test.replace('_', "-"), std::process::id())
}

fn private_dir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("{name}."))
        .tempdir()
        .expect("create temp dir")
}

fn require_tool(tool: &str) {
    let found = env::var_os("PATH")
        .map(|p| env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} not found in PATH; install it with scripts/install-deps.sh"
    );
}

// ---------------------------------------------------------------------------
// Running commands with a timeout.

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn drain(mut r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

/// Runs `cmd` with stdin from /dev/null, capturing its output, killing it
/// after `timeout`. Returns `None` on a timeout.
fn run_for(cmd: &mut Command, timeout: Duration) -> Option<Output> {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn `{what}`: {e}"));
    let out = drain(child.stdout.take().expect("piped stdout"));
    let err = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            stop_child(&mut child);
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    // A daemonized grandchild may keep the pipes open; do not wait for it forever.
    let grace = Duration::from_secs(5);
    let stdout = out.recv_timeout(grace).unwrap_or_default();
    let stderr = err.recv_timeout(grace).unwrap_or_default();
    match status {
        Some(status) => Some(Output {
            status,
            stdout,
            stderr,
        }),
        None => {
            eprintln!("`{what}` timed out after {timeout:?}\nstdout: {stdout}\nstderr: {stderr}");
            None
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    let what = describe(cmd);
    run_for(cmd, COMMAND_TIMEOUT)
        .unwrap_or_else(|| panic!("`{what}` timed out after {COMMAND_TIMEOUT:?}"))
}

/// Runs `cmd`, panics unless it exits 0, returns its stdout.
fn run_ok(cmd: &mut Command) -> String {
    let what = describe(cmd);
    let out = run(cmd);
    assert!(
        out.status.success(),
        "`{what}` failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// Runs a cleanup command, ignoring failures and giving up after a while.
fn run_quietly(cmd: &mut Command) {
    let _ = run_for(cmd, Duration::from_secs(30));
}

fn stop_child(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.wait();
}

/// Polls `f` every 50 ms until it returns true; panics with `what` after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// Cleanup helpers shared by the guards.

/// Kills every process (other than this one) whose command line mentions
/// `marker`, a unique temp path: the conmon, shim and daemon processes that
/// this test started.
fn kill_processes_mentioning(marker: &Path) {
    let marker = marker.as_os_str().as_encoded_bytes();
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if u32::try_from(pid) == Ok(me) {
            continue;
        }
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.windows(marker.len()).any(|w| w == marker) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Decodes the octal escapes (`\040`) that /proc/self/mountinfo uses.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lazily unmounts everything mounted at or below `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let prefix = dir.to_string_lossy().into_owned();
    for _ in 0..5 {
        let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let mut points: Vec<String> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(unescape_mountinfo)
            .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
            .collect();
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = umount2(p.as_str(), MntFlags::MNT_DETACH);
        }
    }
}

/// Removes the cgroup directory `name` (relative to each hierarchy's root)
/// and everything below it in every v1/v2 hierarchy under /sys/fs/cgroup.
/// Only empty cgroups can be removed, so this never touches live processes.
fn remove_cgroups(name: &str) {
    fn rmdir_tree(dir: &Path) {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    rmdir_tree(&e.path());
                }
            }
        }
        let _ = fs::remove_dir(dir);
    }
    let name = name.trim_start_matches('/');
    if name.is_empty() {
        return;
    }
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
        roots.extend(entries.flatten().map(|e| e.path()));
    }
    for root in roots {
        let dir = root.join(name);
        if dir.is_dir() {
            rmdir_tree(&dir);
        }
    }
}

// ---------------------------------------------------------------------------
// The busybox image, as an OCI layout built offline.

const IMAGE_TAG: &str = "busybox";

/// Builds a busybox OCI image layout in `dir/oci` (tag [`IMAGE_TAG`]) and
/// returns the layout's path.
fn build_busybox_layout(dir: &Path) -> PathBuf {
    require_tool("umoci");
    let script = env::var_os("BERTH_ROOTFS_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("scripts/mkrootfs.sh"));
    let rootfs = dir.join("image-rootfs");
    run_ok(Command::new("bash").arg(&script).arg(&rootfs));

    let layout = dir.join("oci");
    let image = format!("{}:{IMAGE_TAG}", layout.display());
    let umoci = |args: &[&OsStr]| run_ok(Command::new("umoci").args(args));
    umoci(&["init".as_ref(), "--layout".as_ref(), layout.as_os_str()]);
    umoci(&["new".as_ref(), "--image".as_ref(), image.as_ref()]);
    umoci(&[
        "insert".as_ref(),
        "--image".as_ref(),
        image.as_ref(),
        rootfs.as_os_str(),
        "/".as_ref(),
    ]);
    umoci(&[
        "config".as_ref(),
        "--image".as_ref(),
        image.as_ref(),
        "--config.cmd".as_ref(),
        "/bin/sh".as_ref(),
        "--config.env".as_ref(),
        PATH_ENV.as_ref(),
    ]);
    umoci(&["gc".as_ref(), "--layout".as_ref(), layout.as_os_str()]);
    let _ = fs::remove_dir_all(&rootfs);
    layout
}

// ---------------------------------------------------------------------------
// A private podman: own store, run root, tmp dir, lock files, network
// config, events file and cgroup parent.

struct Podman {
    runtime: PathBuf,
    /// Name prefix for containers; also the cgroup parent's name.
    name: String,
    image: String,
    dir: TempDir,
}

impl Podman {
    fn new(test: &str, runtime: PathBuf) -> Self {
        require_tool("podman");
        require_tool("conmon");
        require_tool("skopeo");
        let name = unique(test);
        let dir = private_dir(&name);
        let d = dir.path();
        for sub in ["root", "runroot", "tmp", "net"] {
            fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        // HOST.md: cgroupfs (no systemd), file events, and ulimits within the
        // hard limits that root cannot raise here (CAP_SYS_RESOURCE is missing).
        let containers_conf = format!(
            r#"[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"
netns = "none"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
lock_type = "file"
tmp_dir = "{tmp}"

[network]
network_config_dir = "{net}"
"#,
            tmp = d.join("tmp").display(),
            net = d.join("net").display(),
        );
        let storage_conf = format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            d.join("root").display(),
            d.join("runroot").display(),
        );
        fs::write(d.join("containers.conf"), containers_conf).expect("write containers.conf");
        fs::write(d.join("storage.conf"), storage_conf).expect("write storage.conf");

        let mut podman = Podman {
            runtime,
            name,
            image: String::new(),
            dir,
        };
        // `podman pull oci:DIR` would name the image after DIR (and reject
        // upper case in it), so copy it into the private store under a name.
        let layout = build_busybox_layout(podman.dir.path());
        let image = "localhost/berth-busybox:test";
        let d = podman.dir.path();
        run_ok(
            Command::new("skopeo")
                .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
                .arg("copy")
                .arg("--quiet")
                .arg(format!("oci:{}:{IMAGE_TAG}", layout.display()))
                .arg(format!(
                    "containers-storage:[overlay@{}+{}]{image}",
                    d.join("root").display(),
                    d.join("runroot").display()
                )),
        );
        podman.image = image.to_string();
        podman
    }

    fn cmd(&self) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .args(["--storage-driver", "overlay"])
            .args(["--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file"])
            .arg("--runtime")
            .arg(&self.runtime);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        run(self.cmd().args(args))
    }

    fn ok(&self, args: &[&str]) -> String {
        run_ok(self.cmd().args(args))
    }

    fn container(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    /// `podman run` with this test's cgroup parent and, unless `args` name
    /// one, no network, then `args`.
    fn run_container(&self, args: &[&str]) -> Output {
        let parent = format!("/{}", self.name);
        let mut full = vec!["run", "--cgroup-parent", &parent];
        if !args.contains(&"--network") {
            full.extend_from_slice(&["--network", "none"]);
        }
        full.extend_from_slice(args);
        self.run(&full)
    }

    fn status(&self, container: &str) -> String {
        self.ok(&["inspect", "--format", "{{.State.Status}}", container])
            .trim()
            .to_string()
    }

    /// Waits until `podman logs` of `container` contains `needle`.
    fn wait_for_log(&self, container: &str, needle: &str) {
        wait_until(
            &format!("{needle:?} in the logs of {container}"),
            Duration::from_secs(30),
            || self.run(&["logs", container]).stdout.contains(needle),
        );
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        run_quietly(self.cmd().args(["rm", "--force", "--all", "--time", "0"]));
        let d = self.dir.path().to_path_buf();
        kill_processes_mentioning(&d);
        unmount_under(&d);
        remove_cgroups(&self.name);
        // The TempDir field removes the directory after this.
    }
}

fn assert_status(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: unexpected status {}\nstdout: {}\nstderr: {}",
        out.status,
        out.stdout,
        out.stderr
    );
}

#[test]
fn podman_run_rm_captures_output_and_exit_code() {
    let test = "podman_run";
    let Some(runtime) = runtime_for(test) else {
        return;
    };
    let p = Podman::new(test, runtime);
    let name = p.container("echo");
    let out = p.run_container(&[
        "--rm",
        "--name",
        &name,
        &p.image,
        "sh",
        "-c",
        "echo hello from berth; id -u; cat /etc/hostname >/dev/null && echo ok",
    ]);
    assert_status(&out, 0, "podman run");
    assert_eq!(out.stdout, "hello from berth\n0\nok\n");

    let out = p.run_container(&["--rm", &p.image, "sh", "-c", "exit 7"]);
    assert_status(&out, 7, "podman run of `exit 7`");

    assert_eq!(
        p.ok(&["ps", "--all", "--quiet"]).trim(),
        "",
        "--rm left containers"
    );
}

#[test]
fn podman_exec_into_detached_container() {
    let test = "podman_exec";
    let Some(runtime) = runtime_for(test) else {
        return;
    };
    let p = Podman::new(test, runtime);
    let name = p.container("sleeper");
    let out = p.run_container(&["-d", "--name", &name, &p.image, "sleep", "1000"]);
    assert_status(&out, 0, "podman run -d");
    assert_eq!(p.status(&name), "running");

    let out = p.ok(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo exec-$((6 * 7)); tr '\\0' ' ' </proc/1/cmdline",
    ]);
    assert_eq!(out, "exec-42\nsleep 1000 ");

    assert_eq!(
        p.ok(&["exec", "--user", "65534", &name, "id", "-u"]).trim(),
        "65534"
    );
    assert_eq!(
        p.ok(&[
            "exec",
            "--env",
            "BERTH_X=y",
            &name,
            "sh",
            "-c",
            "echo $BERTH_X"
        ])
        .trim(),
        "y"
    );
    let out = p.run(&["exec", &name, "sh", "-c", "exit 5"]);
    assert_status(&out, 5, "podman exec of `exit 5`");

    p.ok(&["rm", "--force", "--time", "0", &name]);
}

#[test]
fn podman_pause_and_unpause() {
    let test = "podman_pause";
    let Some(runtime) = runtime_for(test) else {
        return;
    };
    let p = Podman::new(test, runtime);
    let name = p.container("paused");
    let out = p.run_container(&["-d", "--name", &name, &p.image, "sleep", "1000"]);
    assert_status(&out, 0, "podman run -d");

    p.ok(&["pause", &name]);
    assert_eq!(p.status(&name), "paused");
    p.ok(&["unpause", &name]);
    assert_eq!(p.status(&name), "running");
    assert_eq!(p.ok(&["exec", &name, "echo", "alive"]), "alive\n");

    p.ok(&["rm", "--force", "--time", "0", &name]);
}

#[test]
fn podman_stop_delivers_sigterm() {
    let test = "podman_stop";
    let Some(runtime) = runtime_for(test) else {
        return;
    };
    let p = Podman::new(test, runtime);
    let name = p.container("stopped");
    // PID 1 ignores SIGTERM unless it installs a handler, so trap it and exit
    // with a code that proves the signal arrived.
    let script = "trap 'exit 3' TERM; echo ready; while :; do sleep 0.1; done";
    let out = p.run_container(&["-d", "--name", &name, &p.image, "sh", "-c", script]);
    assert_status(&out, 0, "podman run -d");
    p.wait_for_log(&name, "ready");

    let started = Instant::now();
    p.ok(&["stop", "--time", "20", &name]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stop fell back to SIGKILL"
    );
    assert_eq!(p.status(&name), "exited");
    let code = p.ok(&["inspect", "--format", "{{.State.ExitCode}}", &name]);
    assert_eq!(code.trim(), "3");

    p.ok(&["rm", &name]);
}

#[test]
fn podman_network_none_has_only_loopback() {
    let test = "podman_netnone";
    let Some(runtime) = runtime_for(test) else {
        return;
    };
    let p = Podman::new(test, runtime);
    // /proc/net/dev lists the interfaces of the container's network namespace.
    let out = p.run_container(&[
        "--rm",
        "--network",
        "none",
        &p.image,
        "sh",
        "-c",
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '",
    ]);
    assert_status(&out, 0, "podman run --network none");
    assert_eq!(out.stdout, "lo\n");
}

// ---------------------------------------------------------------------------
// A private containerd: own root, state, sockets, opt dir and namespace.

struct Containerd {
    runtime: PathBuf,
    /// The containerd namespace; also the cgroup parent containerd derives.
    ns: String,
    image: String,
    daemon: Option<Child>,
    dir: TempDir,
}

impl Containerd {
    fn new(test: &str, runtime: PathBuf) -> Self {
        require_tool("containerd");
        require_tool("ctr");
        let ns = unique(test);
        let dir = private_dir(&ns);
        let d = dir.path();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[debug]
  address = "{d}/debug.sock"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#,
            d = d.display()
        );
        fs::write(d.join("config.toml"), config).expect("write config.toml");
        let log = fs::File::create(d.join("containerd.log")).expect("create log");
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start containerd");

        let mut c = Containerd {
            runtime,
            ns,
            image: String::new(),
            daemon: Some(daemon),
            dir,
        };
        wait_until("containerd to serve", Duration::from_secs(30), || {
            if let Some(Ok(Some(status))) = c.daemon.as_mut().map(|d| d.try_wait()) {
                let log = fs::read_to_string(c.dir.path().join("containerd.log"));
                panic!(
                    "containerd exited with {status}: {}",
                    log.unwrap_or_default()
                );
            }
            c.dir.path().join("containerd.sock").exists()
                && run(c.ctr().arg("version")).status.success()
        });

        // containerd imports an OCI archive: the layout as a tar. umoci names
        // the manifest by its tag in the index's ref.name annotation; with
        // --base-name ctr turns that into the image name BASE:TAG.
        let layout = build_busybox_layout(c.dir.path());
        let archive = c.dir.path().join("busybox.tar");
        run_ok(
            Command::new("tar")
                .arg("-C")
                .arg(&layout)
                .arg("-cf")
                .arg(&archive)
                .args(["oci-layout", "index.json", "blobs"]),
        );
        let base = "localhost/berth-busybox";
        run_ok(
            c.ctr()
                .args(["images", "import", "--base-name", base])
                .arg(&archive),
        );
        c.image = format!("{base}:{IMAGE_TAG}");
        c
    }

    fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.dir.path().join("containerd.sock"))
            .args(["--namespace", &self.ns]);
        cmd
    }

    /// `ctr run` with the runtime under test, a private runtime root and
    /// FIFO dir, then `args`.
    fn run_cmd(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut cmd = self.ctr();
        cmd.arg("run")
            .arg("--runc-binary")
            .arg(&self.runtime)
            .arg("--runc-root")
            .arg(d.join("runtime-root"))
            .arg("--fifo-dir")
            .arg(d.join("fifo"))
            .args(args);
        cmd
    }

    fn task_status(&self, id: &str) -> Option<String> {
        let out = run_ok(self.ctr().args(["task", "ls"]));
        out.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f.last().unwrap_or(&"").to_string())
        })
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            if matches!(daemon.try_wait(), Ok(None)) {
                let ids = run_for(
                    self.ctr().args(["containers", "ls", "-q"]),
                    Duration::from_secs(30),
                )
                .map(|o| o.stdout)
                .unwrap_or_default();
                for id in ids.split_whitespace() {
                    run_quietly(self.ctr().args(["task", "kill", "--signal", "SIGKILL", id]));
                    run_quietly(self.ctr().args(["task", "rm", "--force", id]));
                    run_quietly(self.ctr().args(["containers", "rm", id]));
                }
                if let Ok(pid) = i32::try_from(daemon.id()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                }
                let deadline = Instant::now() + Duration::from_secs(10);
                while matches!(daemon.try_wait(), Ok(None)) && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(20));
                }
            }
            stop_child(&mut daemon);
        }
        let d = self.dir.path().to_path_buf();
        // Shims carry `-address <dir>/containerd.sock` in their command line.
        kill_processes_mentioning(&d);
        unmount_under(&d);
        remove_cgroups(&self.ns);
    }
}

#[test]
fn containerd_ctr_run_rm_echo() {
    let test = "ctr_run";
    let Some(runtime) = runtime_for(test) else {
        return;
    };
    let c = Containerd::new(test, runtime);
    let id = format!("{}-echo", c.ns);
    let out = run_ok(&mut c.run_cmd(&["--rm", &c.image, &id, "echo", "hi"]));
    assert_eq!(out, "hi\n");

    let id = format!("{}-exit", c.ns);
    let out = run(&mut c.run_cmd(&["--rm", &c.image, &id, "sh", "-c", "exit 3"]));
    assert_status(&out, 3, "ctr run of `exit 3`");

    assert_eq!(
        run_ok(c.ctr().args(["containers", "ls", "-q"])).trim(),
        "",
        "--rm left containers"
    );
}

#[test]
fn containerd_ctr_detached_exec_kill_rm() {
    let test = "ctr_detached";
    let Some(runtime) = runtime_for(test) else {
        return;
    };
    let c = Containerd::new(test, runtime);
    let id = format!("{}-sleeper", c.ns);
    run_ok(&mut c.run_cmd(&["--detach", &c.image, &id, "sleep", "1000"]));
    assert_eq!(c.task_status(&id).as_deref(), Some("RUNNING"));

    let out = run_ok(c.ctr().args([
        "task",
        "exec",
        "--exec-id",
        "probe",
        &id,
        "sh",
        "-c",
        "echo exec-$((6 * 7))",
    ]));
    assert_eq!(out, "exec-42\n");

    run_ok(c.ctr().args(["task", "pause", &id]));
    assert_eq!(c.task_status(&id).as_deref(), Some("PAUSED"));
    run_ok(c.ctr().args(["task", "resume", &id]));
    assert_eq!(c.task_status(&id).as_deref(), Some("RUNNING"));

    run_ok(c.ctr().args(["task", "kill", "--signal", "SIGKILL", &id]));
    wait_until("the task to stop", Duration::from_secs(30), || {
        c.task_status(&id).as_deref() == Some("STOPPED")
    });
    run_ok(c.ctr().args(["task", "rm", &id]));
    assert_eq!(c.task_status(&id), None);
    run_ok(c.ctr().args(["containers", "rm", &id]));
    assert_eq!(run_ok(c.ctr().args(["containers", "ls", "-q"])).trim(), "");
}
