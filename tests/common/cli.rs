//! One test's `berth`: a store root, a run dir, a private CNI config dir
//! with its own default network ([`crate::net::TestNet`]), and a loopback
//! registry holding busybox. Dropping it removes every container and what
//! they left, then the networks.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::net::TestNet;
use crate::registry::TestRegistry;
use crate::{run_ok, unique, wait_until, workspace};

/// The berth binary under test.
pub fn berth_bin() -> PathBuf {
    crate::built_bin("berth", "BERTH_BIN")
}

/// One test's berth: a store root, a run dir, a registry holding busybox
/// as `IMAGE`, and its own networks.
#[derive(Debug)]
pub struct Env {
    pub root: tempfile::TempDir,
    pub run_dir: PathBuf,
    pub reg: TestRegistry,
    pub image: String,
    /// Dropped last: the bridges go once the containers are gone.
    pub net: TestNet,
}

impl Env {
    pub fn new(test: &str) -> Env {
        let name = unique(test);
        let root = tempfile::Builder::new()
            .prefix(&format!("berth-ctr-{name}-"))
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        let run_dir = PathBuf::from(format!("/run/bt-{name}"));
        let reg = TestRegistry::start();
        let rootfs = root.path().join("img-rootfs");
        let layout = root.path().join("img-layout");
        run_ok(Command::new(workspace().join("scripts/mkrootfs.sh")).arg(&rootfs));
        run_ok(
            Command::new(workspace().join("scripts/mkimage.sh"))
                .arg(&layout)
                .arg("latest")
                .arg(&rootfs),
        );
        reg.push_oci_layout(&layout, "latest", "test/bb:latest");
        let image = format!("{}/test/bb:latest", reg.addr);
        let net = TestNet::new(root.path(), &name);
        Env {
            root,
            run_dir,
            reg,
            image,
            net,
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(berth_bin());
        // The static berth-init is built into target/release by
        // scripts/build-init.sh; a debug berth would not find it beside itself.
        if std::env::var_os("BERTH_INIT").is_none() {
            let init = workspace().join("target/release/berth-init");
            if init.exists() {
                c.env("BERTH_INIT", init);
            }
        }
        c.arg("--root")
            .arg(self.root.path())
            .arg("--run-dir")
            .arg(&self.run_dir)
            .arg("--network-config-dir")
            .arg(&self.net.dir)
            .stdin(Stdio::null());
        c
    }

    pub fn out(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run berth")
    }

    /// Runs berth; returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let o = self.out(args);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "berth {args:?} failed:\n{out}{err}");
        out
    }

    /// Runs berth expecting exit code `code`; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let (c, out, err) = self.run(args);
        assert_eq!(c, code, "berth {args:?}: want exit {code}:\n{out}{err}");
        err
    }

    pub fn inspect(&self, what: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["inspect", what])).expect("json");
        v[0].clone()
    }

    pub fn status(&self, what: &str) -> String {
        self.inspect(what)["State"]["Status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn wait_status(&self, what: &str, want: &str) {
        wait_until(&format!("{what} to be {want}"), || {
            self.status(what) == want
        });
    }

    pub fn ids(&self) -> Vec<String> {
        self.ok(&["ps", "-aq", "--no-trunc"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Asserts that no container is left: no record, directory, mount,
    /// cgroup, monitor or container process, attach socket or runtime state.
    pub fn assert_clean(&self, ids: &[String]) {
        assert!(self.ids().is_empty(), "records left: {:?}", self.ids());
        let dir = self.root.path().join("containers");
        let left: Vec<_> = fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "container dirs left: {left:?}");
        let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let r = self.root.path().to_string_lossy();
        assert!(!mi.contains(r.as_ref()), "mounts under {r} left");
        for id in ids {
            for e in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
                let d = e.path().join("berth").join(id);
                assert!(!d.exists(), "cgroup {} left", d.display());
            }
            for e in fs::read_dir("/proc").unwrap().flatten() {
                if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
                    let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                    assert!(!cmd.contains(id.as_str()), "process left: {cmd}");
                }
                // A zombie is not a process left running: this host's PID 1
                // does not reap the orphans it inherits.
                let zombie = fs::read_to_string(e.path().join("stat"))
                    .map(|s| {
                        s.rsplit_once(')')
                            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                    })
                    .unwrap_or(true);
                if let Ok(cg) = fs::read_to_string(e.path().join("cgroup")) {
                    assert!(
                        zombie || !cg.contains(id.as_str()),
                        "process left in {id}'s cgroup"
                    );
                }
            }
            assert!(!self.run_dir.join(format!("{id}.attach")).exists());
            assert!(!self.run_dir.join("runtime").join(id).exists());
        }
        self.assert_no_network_left();
    }

    /// Asserts that no pinned namespace, veth on the test's bridges, CNI
    /// cache entry, host-local reservation or fast-path attachment is left.
    pub fn assert_no_network_left(&self) {
        let pins: Vec<_> = fs::read_dir(self.run_dir.join("netns"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(pins.is_empty(), "pinned netns left: {pins:?}");
        let ports = TestNet::ports_of(&self.net.bridge);
        assert!(
            ports.is_empty(),
            "veths left on {}: {ports:?}",
            self.net.bridge
        );
        let cached: Vec<_> = fs::read_dir(self.root.path().join("cni/results"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(cached.is_empty(), "CNI cache entries left: {cached:?}");
        for net in fs::read_dir(self.net.dir.join("ipam"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let ips: Vec<_> = fs::read_dir(net.path())
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
                        .collect()
                })
                .unwrap_or_default();
            assert!(ips.is_empty(), "host-local reservations left: {ips:?}");
        }
        let nft = Command::new("nft")
            .args(["list", "table", "ip", &format!("berth_{}", self.net.bridge)])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let prefix = self.net.subnet.trim_end_matches(".0/24");
        let ips_left: Vec<&str> = nft
            .lines()
            .filter(|l| l.contains(&format!("{prefix}.")) && !l.contains(&format!("{prefix}.0/24")))
            .collect();
        assert!(
            ips_left.is_empty(),
            "nft rules for containers left: {ips_left:?}"
        );
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids = self
            .out(&["ps", "-aq", "--no-trunc"])
            .stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect::<Vec<_>>();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.iter().map(String::as_str));
            let _ = self.out(&args);
        }
        // Anything a failed test left mounted under the root.
        let mi = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let r = self.root.path().to_string_lossy().into_owned();
        let mut mounts: Vec<&str> = mi
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(r.as_str()))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        let _ = fs::remove_dir_all(&self.run_dir);
        let _ = berth_engine::isolation::remove(self.root.path());
    }
}
