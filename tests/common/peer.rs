//! berth's runtime and runc side by side: the same case run by each, every
//! runtime with a `--root` of its own, and bundles whose config is what a
//! peer tool (`runc spec`, `crun spec`) writes, generated at test time.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

use crate::{cgroup_dirs, run_ok, runtime_bin, Bundle};

/// runc, which scripts/install-deps.sh installs.
pub fn runc_bin() -> PathBuf {
    ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("runc is installed by scripts/install-deps.sh")
}

/// One runtime under test with a private `--root`; deletes every container
/// it knows on drop. `private_mntns` runs each command in a mount namespace
/// of its own (for runc, which mounts in the caller's namespace when the
/// config has none).
#[derive(Debug)]
pub struct Peer {
    /// `berth-runtime` or `runc`.
    pub name: &'static str,
    /// The binary.
    pub bin: PathBuf,
    /// `--root`: the temp dir, or a path inside it.
    pub root: PathBuf,
    _tmp: tempfile::TempDir,
    /// Run every command in a private mount namespace.
    pub private_mntns: bool,
}

impl Peer {
    /// berth's runtime under test.
    pub fn berth() -> Peer {
        Peer::new("berth-runtime", runtime_bin())
    }

    /// runc.
    pub fn runc() -> Peer {
        Peer::new("runc", runc_bin())
    }

    /// berth's runtime first, then runc.
    pub fn both() -> [Peer; 2] {
        [Peer::berth(), Peer::runc()]
    }

    /// `bin` under `name`, with a fresh root.
    pub fn new(name: &'static str, bin: PathBuf) -> Peer {
        assert!(bin.exists(), "{name}: {} is not installed", bin.display());
        let tmp = tempfile::Builder::new()
            .prefix(&format!("berth-peer-{name}."))
            .tempdir()
            .expect("tempdir");
        Peer::at(name, bin, tmp.path().to_path_buf(), tmp)
    }

    /// With `--root` at `root`, which `tmp` holds (and removes on drop).
    pub fn at(name: &'static str, bin: PathBuf, root: PathBuf, tmp: tempfile::TempDir) -> Peer {
        Peer {
            name,
            bin,
            root,
            _tmp: tmp,
            private_mntns: false,
        }
    }

    /// Whether this is berth's runtime (not the peer).
    pub fn is_berth(&self) -> bool {
        self.name == "berth-runtime"
    }

    /// A command for the runtime with `--root` set.
    pub fn cmd(&self) -> Command {
        let mut c = if self.private_mntns {
            let mut c = Command::new("unshare");
            c.args(["-m", "--propagation", "private", "--"])
                .arg(&self.bin);
            c
        } else {
            Command::new(&self.bin)
        };
        c.arg("--root").arg(&self.root);
        c
    }

    /// Runs with stdin on /dev/null and stdout/stderr in files (a container
    /// that outlives the command must not hold a pipe of ours open).
    pub fn out_of(&self, mut c: Command) -> Output {
        let out = tempfile::tempfile().expect("temp file");
        let err = tempfile::tempfile().expect("temp file");
        c.stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(err.try_clone().expect("dup"));
        let status = c.status().expect("spawn runtime");
        let read = |mut f: fs::File| {
            use std::io::Seek;
            let mut v = Vec::new();
            f.seek(std::io::SeekFrom::Start(0)).expect("seek");
            f.read_to_end(&mut v).expect("read");
            v
        };
        Output {
            status,
            stdout: read(out),
            stderr: read(err),
        }
    }

    /// The runtime with `args`.
    pub fn out(&self, args: &[&str]) -> Output {
        let mut c = self.cmd();
        c.args(args);
        self.out_of(c)
    }

    /// The runtime with `args`, which must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.out(args);
        assert!(
            o.status.success(),
            "{} {args:?} failed ({}): {}{}",
            self.name,
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `run` in the foreground: (exit code, stdout, stderr).
    pub fn run(&self, id: &str, b: &Bundle) -> (i32, String, String) {
        let o = self.out(&["run", "--bundle", b.path().to_str().unwrap(), id]);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// `run` that must succeed; returns stdout.
    pub fn run_ok(&self, id: &str, b: &Bundle) -> String {
        let (code, out, err) = self.run(id, b);
        assert_eq!(code, 0, "{}: run {id} failed: {out}{err}", self.name);
        out
    }

    /// `run` that must fail; returns stdout and the error's message (runc
    /// and berth-runtime print logrus lines, `level=error msg="…"` with
    /// quotes escaped: the checks read the message itself).
    pub fn run_fails(&self, id: &str, b: &Bundle) -> String {
        let (code, out, err) = self.run(id, b);
        assert_ne!(
            code, 0,
            "{}: run {id} unexpectedly succeeded: {out}",
            self.name
        );
        let msg = berth_engine::container::runtime_error_message(err.as_bytes());
        format!("{out}{msg}")
    }

    /// `create` (stdio in files, see [`Peer::out_of`]).
    pub fn create(&self, id: &str, b: &Bundle) -> Output {
        self.out(&["create", "--bundle", b.path().to_str().unwrap(), id])
    }

    /// `create` that must succeed.
    pub fn create_ok(&self, id: &str, b: &Bundle) {
        let o = self.create(id, b);
        assert!(
            o.status.success(),
            "{} create {id}: {}",
            self.name,
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// `create` then `start`, both of which must succeed.
    pub fn create_start(&self, id: &str, b: &Bundle) {
        self.create_ok(id, b);
        self.ok(&["start", id]);
    }

    /// `exec ID args...` that must succeed; returns stdout.
    pub fn exec_ok(&self, id: &str, args: &[&str]) -> String {
        let mut a = vec!["exec", id];
        a.extend_from_slice(args);
        self.ok(&a)
    }

    /// `delete --force`, whatever the outcome.
    pub fn remove(&self, id: &str) {
        let _ = self.out(&["delete", "--force", id]);
    }

    /// Nothing of `id` is left: state dir, cgroups (every v1 hierarchy and
    /// the cgroup2 side), mounts under the bundle, processes.
    pub fn assert_clean(&self, id: &str, bundle: &Path) {
        let who = self.name;
        assert!(
            !self.root.join(id).exists(),
            "{who}: state dir of {id} left behind"
        );
        for d in cgroup_dirs(id) {
            assert!(!d.exists(), "{who}: cgroup {} left behind", d.display());
        }
        let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let b = bundle.to_string_lossy();
        assert!(
            !mi.contains(b.as_ref()),
            "{who}: mount under {b} left behind"
        );
        for e in fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                assert!(
                    !(cmd.contains(self.bin.to_str().unwrap()) && cmd.contains(&format!(" {id}"))),
                    "{who}: process left behind: {cmd}"
                );
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(rd) = fs::read_dir(&self.root) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                self.remove(&id);
            }
        }
    }
}

/// The config `tool spec` (runc or crun) writes, generated now.
pub fn peer_spec(tool: &str, rootless: bool) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new(tool);
    c.arg("spec");
    if rootless {
        c.arg("--rootless");
    }
    c.arg("--bundle").arg(dir.path());
    run_ok(&mut c);
    serde_json::from_slice(&fs::read(dir.path().join("config.json")).unwrap()).unwrap()
}

/// A busybox bundle whose config is `tool spec`'s, running `args` without a
/// terminal, in a cgroup unique to `id`.
pub fn peer_bundle(tool: &str, rootless: bool, id: &str, args: &[&str]) -> Bundle {
    let mut b = Bundle::new(id, args);
    let mut c = peer_spec(tool, rootless);
    c["process"]["terminal"] = json!(false);
    c["process"]["args"] = json!(args);
    c["linux"]["cgroupsPath"] = json!(format!("/berth-test-{id}"));
    b.config = c;
    b.write();
    b
}

/// `["sh", "-c", script]`.
pub fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}
