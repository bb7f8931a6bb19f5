//! Helpers for berth's root-only integration tests: locate the binaries, build
//! busybox bundles, run the runtime under a private `--root`, and check that
//! nothing is left behind.
//!
//! Every name a test makes (container ID, cgroup, netns, temp dir) carries the
//! test's name and this process' PID, so tests run side by side; every resource
//! is removed by a `Drop` guard, also when the test fails.

pub mod cli;
pub mod net;
pub mod peer;
pub mod registry;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use serde_json::{json, Value};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Whether we run as root; prints a skip line when not.
pub fn need_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        println!("skipping {test}: needs root");
        false
    }
}

/// The runtime binary under test (`BERTH_RUNTIME`, else target/{release,debug}).
pub fn runtime_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_RUNTIME") {
        return PathBuf::from(p);
    }
    for profile in ["release", "debug"] {
        let p = workspace()
            .join("target")
            .join(profile)
            .join("berth-runtime");
        if p.exists() {
            return p;
        }
    }
    panic!("berth-runtime not built: run cargo build --release or set BERTH_RUNTIME");
}

/// A binary of this workspace: `$ENV_VAR` if set, else the build of the
/// profile these tests were built with (so a stale build of the other
/// profile is never picked up).
pub fn built_bin(name: &str, env_var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let p = target.join(profile).join(name);
    assert!(
        p.exists(),
        "{} is not built: cargo build -p {name}",
        p.display()
    );
    p
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique in this test run: `PREFIX-PID-N`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{}-{}-{}",
        prefix.replace('_', "-"),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A busybox rootfs built once per test process, copied for each bundle.
fn template_rootfs() -> &'static Path {
    static T: OnceLock<tempfile::TempDir> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("berth-rootfs.")
            .tempdir()
            .expect("tempdir");
        let script = std::env::var_os("BERTH_ROOTFS_SCRIPT")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("scripts/mkrootfs.sh"));
        let out = Command::new("bash")
            .arg(&script)
            .arg(dir.path().join("rootfs"))
            .output()
            .expect("run mkrootfs");
        assert!(
            out.status.success(),
            "mkrootfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
    .path()
}

/// A bundle in a temp dir: a copy of the busybox rootfs and a config.json.
#[derive(Debug)]
pub struct Bundle {
    /// The temp dir (removed on drop).
    pub dir: tempfile::TempDir,
    /// The config as JSON, written by [`Bundle::write`].
    pub config: Value,
}

impl Bundle {
    /// A bundle running `args`, with the default spec of `berth-runtime spec`, no
    /// terminal, and a cgroup path unique to `id`.
    pub fn new(id: &str, args: &[&str]) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix(&format!("berth-bundle-{id}."))
            .tempdir()
            .expect("tempdir");
        let st = Command::new("cp")
            .arg("-a")
            .arg(template_rootfs().join("rootfs"))
            .arg(dir.path())
            .status()
            .expect("cp rootfs");
        assert!(st.success());
        let out = Command::new(runtime_bin())
            .arg("spec")
            .arg("--bundle")
            .arg(dir.path())
            .output()
            .expect("spec");
        assert!(
            out.status.success(),
            "spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut config: Value =
            serde_json::from_slice(&fs::read(dir.path().join("config.json")).unwrap()).unwrap();
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(args);
        config["linux"]["cgroupsPath"] = json!(format!("/berth-test-{id}"));
        let b = Bundle { dir, config };
        b.write();
        b
    }

    /// The bundle path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The rootfs path.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Write the config back.
    pub fn write(&self) {
        fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// Change the config and write it.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) {
        f(&mut self.config);
        self.write();
    }
}

/// The runtime with a private `--root`; deletes every container it knows on drop.
#[derive(Debug)]
pub struct Rt {
    /// The state root.
    pub root: tempfile::TempDir,
}

impl Default for Rt {
    fn default() -> Self {
        Self::new()
    }
}

impl Rt {
    /// A fresh runtime root.
    pub fn new() -> Rt {
        Rt {
            root: tempfile::Builder::new()
                .prefix("berth-rt.")
                .tempdir()
                .expect("tempdir"),
        }
    }

    /// A command for the runtime binary with `--root` set.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(runtime_bin());
        c.arg("--root").arg(self.root.path());
        c
    }

    /// Run the runtime with `args`; stdin is /dev/null, output captured.
    pub fn out(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn berth-runtime")
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.out(args);
        assert!(
            o.status.success(),
            "berth-runtime {args:?} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Run and require failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.out(args);
        assert!(
            !o.status.success(),
            "berth-runtime {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// `run ID` in the foreground: (exit code, stdout, stderr).
    pub fn run(&self, id: &str, b: &Bundle) -> (i32, String, String) {
        let o = self.out(&["run", "--bundle", b.path().to_str().unwrap(), id]);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// `create` with stdio not on pipes: the container's init inherits them and
    /// would hold a pipe open. stderr goes through a file and comes back in `Output`.
    pub fn create(&self, id: &str, b: &Bundle, extra: &[&str]) -> Output {
        let err = tempfile::tempfile().expect("temp file");
        let mut c = self.cmd();
        c.args(["create", "--bundle", b.path().to_str().unwrap()])
            .args(extra)
            .arg(id);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err.try_clone().expect("dup"));
        let status = c.status().expect("spawn create");
        let mut err = err;
        let mut text = Vec::new();
        use std::io::{Read, Seek};
        err.seek(std::io::SeekFrom::Start(0)).expect("seek");
        err.read_to_end(&mut text).expect("read");
        Output {
            status,
            stdout: Vec::new(),
            stderr: text,
        }
    }

    /// `create` that must succeed.
    pub fn create_ok(&self, id: &str, b: &Bundle) {
        let o = self.create(id, b, &[]);
        assert!(
            o.status.success(),
            "create {id}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// The state JSON of `id`.
    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state JSON")
    }

    /// The status string of `id`.
    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap_or("").to_string()
    }

    /// Wait until `id` reaches `status` (bounded; panics after 10 s).
    pub fn wait_status(&self, id: &str, status: &str) {
        wait_until(&format!("{id} to be {status}"), || {
            self.status(id) == status
        });
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        if let Ok(rd) = fs::read_dir(self.root.path()) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self
                    .cmd()
                    .args(["delete", "--force", &id])
                    .stdin(Stdio::null())
                    .output();
            }
        }
    }
}

/// Runs `c`, panics with its output unless it succeeds; returns its stdout.
pub fn run_ok(c: &mut Command) -> String {
    let o = c.output().expect("spawn");
    assert!(
        o.status.success(),
        "{c:?} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Poll `f` every 10 ms for up to 10 s (a bound against hangs, not a timing check).
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("gave up waiting for {what}");
}

/// Every cgroup directory a container with cgroupsPath `/berth-test-ID` may have.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            out.push(e.path().join(format!("berth-test-{id}")));
        }
    }
    out.push(PathBuf::from(format!("/sys/fs/cgroup/berth-test-{id}")));
    out
}

/// Assert that nothing of container `id` remains: state dir, cgroups, mounts of
/// the bundle, processes mentioning the bundle.
pub fn assert_no_leftovers(rt: &Rt, id: &str, bundle: &Path) {
    assert!(
        !rt.root.path().join(id).exists(),
        "state dir of {id} left behind"
    );
    for d in cgroup_dirs(id) {
        assert!(!d.exists(), "cgroup {} left behind", d.display());
    }
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let b = bundle.to_string_lossy();
    assert!(!mi.contains(b.as_ref()), "mount under {b} left behind");
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            assert!(
                !(cmd.contains("berth-runtime") && cmd.contains(&format!(" {id}"))),
                "process left behind: {cmd}"
            );
        }
    }
}

/// The cgroup directories of one process, found through `/proc/PID/cgroup` and
/// the mount table (not by assuming a layout), so one test reads v1, hybrid
/// and pure v2 hosts alike.
#[derive(Debug, Clone, Default)]
pub struct CgroupView {
    /// v1 controller (or `name=...`) -> the process' directory in that hierarchy
    pub v1: std::collections::BTreeMap<String, PathBuf>,
    /// the process' directory in the cgroup2 hierarchy, when one is mounted
    pub v2: Option<PathBuf>,
}

/// One cgroup or cgroup2 mount of `/proc/self/mountinfo`:
/// (fstype, super options, root inside the hierarchy, mount point).
fn cgroup_mounts() -> Vec<(String, Vec<String>, String, PathBuf)> {
    let mi = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let mut out = Vec::new();
    for line in mi.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 || !post[0].starts_with("cgroup") {
            continue;
        }
        out.push((
            post[0].to_string(),
            post[2].split(',').map(String::from).collect(),
            pre[3].to_string(),
            PathBuf::from(pre[4].replace("\\040", " ")),
        ));
    }
    out
}

impl CgroupView {
    /// The cgroups of process `pid`, as the host sees them.
    pub fn of(pid: i32) -> CgroupView {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/cgroup: {e}"));
        let mounts = cgroup_mounts();
        let place = |root: &str, mp: &Path, path: &str| -> Option<PathBuf> {
            let rel = Path::new(path).strip_prefix(root).ok()?;
            Some(mp.join(rel))
        };
        let mut view = CgroupView::default();
        for line in text.lines() {
            let mut it = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            if ctrls.is_empty() {
                view.v2 = mounts
                    .iter()
                    .filter(|m| m.0 == "cgroup2")
                    .find_map(|m| place(&m.2, &m.3, path));
                continue;
            }
            for c in ctrls.split(',') {
                if let Some(dir) = mounts
                    .iter()
                    .filter(|m| m.0 == "cgroup" && m.1.iter().any(|o| o == c))
                    .find_map(|m| place(&m.2, &m.3, path))
                {
                    view.v1.insert(c.to_string(), dir);
                }
            }
        }
        view
    }

    /// Where `controller`'s files are, and whether that is cgroup2: its v1
    /// hierarchy, else the cgroup2 directory when the controller is enabled
    /// there (listed in its `cgroup.controllers`). `None` when the host lacks it.
    pub fn dir(&self, controller: &str) -> Option<(PathBuf, bool)> {
        if let Some(d) = self.v1.get(controller) {
            return Some((d.clone(), false));
        }
        let d = self.v2.as_ref()?;
        let list = fs::read_to_string(d.join("cgroup.controllers")).ok()?;
        list.split_whitespace()
            .any(|c| c == controller)
            .then(|| (d.clone(), true))
    }

    /// `controller`'s file: `v1_file` on a v1 hierarchy, `v2_file` on cgroup2;
    /// `None` when the controller is absent. Panics when the file is unreadable.
    pub fn read(&self, controller: &str, v1_file: &str, v2_file: &str) -> Option<String> {
        let (d, v2) = self.dir(controller)?;
        let p = d.join(if v2 { v2_file } else { v1_file });
        Some(
            fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .trim()
                .to_string(),
        )
    }

    /// Every directory of this view (v1 hierarchies and cgroup2), deduplicated.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.v1.values().cloned().collect();
        out.extend(self.v2.clone());
        out.sort();
        out.dedup();
        out
    }
}

/// The host PID of container `id`'s init.
pub fn init_pid(rt: &Rt, id: &str) -> i32 {
    let pid = rt.state(id)["pid"].as_i64().unwrap_or(0);
    assert!(pid > 0, "{id} has no init pid");
    pid as i32
}

/// A command running in the background with stdout and stderr in a temp file;
/// killed (by its PID) and reaped on drop.
#[derive(Debug)]
pub struct Background {
    child: std::process::Child,
    out: tempfile::NamedTempFile,
}

impl Background {
    /// Spawn `cmd` (stdin is /dev/null).
    pub fn spawn(mut cmd: Command) -> Background {
        let out = tempfile::NamedTempFile::new().expect("temp file");
        // one open file description for both, so they share the offset
        let f = out.reopen().expect("reopen");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .spawn()
            .expect("spawn background command");
        Background { child, out }
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        fs::read_to_string(self.out.path()).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the host offers cgroup `controller`: a v1 hierarchy with it, or a
/// cgroup2 mount whose root lists it in `cgroup.controllers`.
pub fn host_has_controller(controller: &str) -> bool {
    cgroup_mounts().iter().any(|(fstype, opts, root, mp)| {
        if fstype == "cgroup" {
            return opts.iter().any(|o| o == controller);
        }
        root == "/"
            && fs::read_to_string(mp.join("cgroup.controllers"))
                .map(|l| l.split_whitespace().any(|c| c == controller))
                .unwrap_or(false)
    })
}
