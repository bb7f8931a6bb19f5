//! Root integration tests of `berth-runtime`: each builds a busybox bundle, runs
//! it, and checks the feature from inside the container.

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use berth_tests::*;
use serde_json::{json, Value};

macro_rules! root_only {
    ($name:expr) => {
        if !need_root($name) {
            return;
        }
    };
}

fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

#[test]
fn run_prints_and_propagates_exit_code() {
    root_only!("run_prints_and_propagates_exit_code");
    let rt = Rt::new();
    let id = unique("run-exit");
    let b = Bundle::new(&id, &sh("echo hello; echo err >&2; exit 3"));
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 3, "stderr: {err}");
    assert_eq!(out, "hello\n");
    assert!(err.contains("err"));
    assert_no_leftovers(&rt, &id, b.path());
}

/// The container gets the caller's signal dispositions. Rust's start-up
/// ignores SIGPIPE, and SIG_IGN survives execve: berth-runtime once started
/// every container with SIGPIPE ignored, so `yes | head -1` in it got EPIPE
/// instead of dying. (Rust's `Command` resets SIGPIPE for berth-runtime.)
#[test]
fn container_gets_default_sigpipe() {
    root_only!("container_gets_default_sigpipe");
    let rt = Rt::new();
    let id = unique("sigpipe");
    let b = Bundle::new(&id, &sh("grep SigIgn /proc/self/status"));
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 0, "stderr: {err}");
    let mask = out.trim().trim_start_matches("SigIgn:").trim();
    let mask = u64::from_str_radix(mask, 16).unwrap_or_else(|e| panic!("{out:?}: {e}"));
    assert_eq!(mask & (1 << (13 - 1)), 0, "SIGPIPE is ignored: {out}");
    assert_no_leftovers(&rt, &id, b.path());
}

#[test]
fn lifecycle_create_start_kill_delete() {
    root_only!("lifecycle_create_start_kill_delete");
    let rt = Rt::new();
    let id = unique("life");
    let mut b = Bundle::new(&id, &sh("touch /tmp/started; exec sleep 1000"));
    b.edit(|c| c["root"]["readonly"] = json!(false));
    let pidfile = b.path().join("init.pid");
    let o = rt.create(&id, &b, &["--pid-file", pidfile.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let st = rt.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["bundle"], b.path().to_str().unwrap());
    assert!(st["ociVersion"].as_str().unwrap().starts_with("1."));
    let pid: i64 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(st["pid"], pid);
    // create leaves init blocked: the user process has not run.
    assert!(!b.rootfs().join("tmp/started").exists());
    let list = rt.ok(&["list", "--format", "json"]);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert!(rt
        .fails(&["delete", "nosuch-container"])
        .contains("does not exist"));

    rt.ok(&["start", &id]);
    wait_until("the user process", || {
        b.rootfs().join("tmp/started").exists()
    });
    assert_eq!(rt.status(&id), "running");
    assert!(rt.fails(&["start", &id]).contains("running"));
    let err = rt.fails(&["delete", &id]);
    assert!(err.contains("not stopped"), "{err}");

    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    assert_eq!(rt.state(&id)["pid"], 0);
    assert!(rt.fails(&["kill", &id]).contains("not running"));
    rt.ok(&["delete", &id]);
    assert!(rt.fails(&["state", &id]).contains("does not exist"));
    assert_no_leftovers(&rt, &id, b.path());
    // delete --force of a missing container succeeds, as with runc.
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn kill_by_number_and_name_and_delete_force() {
    root_only!("kill_by_number_and_name_and_delete_force");
    let rt = Rt::new();
    let id = unique("kill");
    let mut b = Bundle::new(
        &id,
        &sh("trap 'echo got-usr1 > /tmp/sig' USR1; while true; do sleep 0.05; done"),
    );
    b.edit(|c| c["root"]["readonly"] = json!(false));
    rt.create_ok(&id, &b);
    rt.ok(&["start", &id]);
    rt.wait_status(&id, "running");
    std::thread::sleep(std::time::Duration::from_millis(200));
    rt.ok(&["kill", &id, "10"]);
    wait_until("USR1 to arrive", || b.rootfs().join("tmp/sig").exists());
    assert!(rt.fails(&["kill", &id, "SIGNOPE"]).contains("SIGNOPE"));
    rt.ok(&["delete", "--force", &id]);
    assert_no_leftovers(&rt, &id, b.path());
}

#[test]
fn created_container_can_be_deleted() {
    root_only!("created_container_can_be_deleted");
    let rt = Rt::new();
    let id = unique("del-created");
    let b = Bundle::new(&id, &["true"]);
    rt.create_ok(&id, &b);
    rt.ok(&["delete", &id]);
    assert_no_leftovers(&rt, &id, b.path());
}

#[test]
fn namespaces_hostname_pid_net_ipc() {
    root_only!("namespaces_hostname_pid_net_ipc");
    let rt = Rt::new();
    let id = unique("ns");
    let mut b = Bundle::new(&id, &sh("hostname; cat /proc/sys/kernel/domainname; echo pid=$$; ls /sys/class/net; for n in ipc uts cgroup; do readlink /proc/self/ns/$n; done"));
    b.edit(|c| {
        c["hostname"] = json!("box1");
        c["domainname"] = json!("example.test");
    });
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "box1");
    assert_eq!(lines[1], "example.test");
    assert_eq!(lines[2], "pid=1");
    assert_eq!(lines[3], "lo", "a new netns holds only lo: {out}");
    for (i, ns) in ["ipc", "uts", "cgroup"].iter().enumerate() {
        let host = fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(
            lines[4 + i],
            host.to_str().unwrap(),
            "{ns} namespace is the host's"
        );
    }
}

/// A network namespace made with `ip netns`, removed on drop.
struct NetNs(String);
impl NetNs {
    fn new() -> NetNs {
        let name = unique("bt-ns");
        let st = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(st.success());
        NetNs(name)
    }
    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }
}
impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

#[test]
fn joins_namespace_by_path() {
    root_only!("joins_namespace_by_path");
    let rt = Rt::new();
    let id = unique("join");
    let ns = NetNs::new();
    let want = format!(
        "net:[{}]",
        std::os::unix::fs::MetadataExt::ino(&fs::metadata(ns.path()).unwrap())
    );
    let mut b = Bundle::new(&id, &sh("readlink /proc/self/ns/net"));
    b.edit(|c| {
        for n in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "network" {
                n["path"] = json!(ns.path());
            }
        }
    });
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), want);
    // A bad path fails create and names the path.
    let id2 = unique("join-bad");
    let mut b2 = Bundle::new(&id2, &["true"]);
    b2.edit(|c| {
        c["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "network", "path": "/var/run/netns/berth-no-such-ns"}]);
    });
    let o = rt.create(&id2, &b2, &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("berth-no-such-ns"));
    assert_no_leftovers(&rt, &id2, b2.path());
}

#[test]
fn user_namespace_with_mappings() {
    root_only!("user_namespace_with_mappings");
    let rt = Rt::new();
    let id = unique("userns");
    let mut b = Bundle::new(
        &id,
        &sh("id -u; cat /proc/self/uid_map; ls -ln /dev/null | awk '{print $1}'"),
    );
    b.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    });
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 0, "{err}");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "0");
    let m: Vec<&str> = l[1].split_whitespace().collect();
    assert_eq!(m, ["0", "200000", "65536"]);
    assert!(l[2].starts_with('c'), "/dev/null is a device: {out}");
    assert_no_leftovers(&rt, &id, b.path());
}

#[test]
fn time_namespace_offsets() {
    root_only!("time_namespace_offsets");
    if !Path::new("/proc/self/ns/time").exists() {
        println!("skipping: no time namespaces");
        return;
    }
    let rt = Rt::new();
    let id = unique("timens");
    let mut b = Bundle::new(&id, &sh("cut -d. -f1 /proc/uptime"));
    b.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "time"}));
        c["linux"]["timeOffsets"] = json!({"boottime": {"secs": 86400000, "nanosecs": 0}});
    });
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 0, "{err}");
    let up: u64 = out.trim().parse().unwrap();
    assert!(up >= 86400000, "uptime {up} lacks the offset");
}

#[test]
fn mounts_bind_ro_tmpfs_and_symlink_escape() {
    root_only!("mounts_bind_ro_tmpfs_and_symlink_escape");
    let rt = Rt::new();
    let id = unique("mounts");
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("f"), "from-host\n").unwrap();
    let marker = format!("berth-escape-{id}");
    let mut b = Bundle::new(
        &id,
        &sh("cat /data/f; echo x > /data/g 2>/dev/null && echo WROTE || echo ro-ok; mount | grep ' /scratch ' | grep -o 'size=[0-9]*k'; ls -d /escape/sub"),
    );
    // An image symlink that points at an absolute host path.
    std::os::unix::fs::symlink(format!("/etc/{marker}"), b.rootfs().join("escape")).unwrap();
    b.edit(|c| {
        let m = c["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/data", "type": "bind", "source": host.path(), "options": ["rbind", "ro"]}));
        m.push(json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1024k"]}));
        m.push(json!({"destination": "/escape/sub", "type": "tmpfs", "source": "tmpfs"}));
    });
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 0, "{err}");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "from-host");
    assert_eq!(l[1], "ro-ok");
    assert_eq!(l[2], "size=1024k");
    assert_eq!(l[3], "/escape/sub");
    assert!(
        !Path::new("/etc").join(&marker).exists(),
        "mount point created outside the rootfs"
    );
    assert!(b.rootfs().join("etc").join(&marker).join("sub").is_dir());
    assert!(!host.path().join("g").exists());
}

#[test]
fn readonly_root_masked_and_readonly_paths() {
    root_only!("readonly_root_masked_and_readonly_paths");
    let rt = Rt::new();
    let id = unique("ro");
    let b = Bundle::new(
        &id,
        &sh("touch /x 2>/dev/null && echo WROTE-ROOT || echo root-ro; cat /proc/kcore 2>/dev/null | wc -c; ls /sys/firmware | wc -l; echo 1 > /proc/sysrq-trigger 2>/dev/null && echo WROTE-SYSRQ || echo sysrq-ro; touch /tmp/ok && echo tmp-rw"),
    );
    // The default spec has a read-only root; /tmp is on it, so give /tmp a tmpfs.
    let mut b = b;
    b.edit(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    });
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "root-ro\n0\n0\nsysrq-ro\ntmp-rw\n");
}

#[test]
fn default_and_extra_devices() {
    root_only!("default_and_extra_devices");
    let rt = Rt::new();
    let id = unique("dev");
    let mut b = Bundle::new(
        &id,
        &sh("for d in null zero full random urandom tty mynull; do stat -c '%n %t:%T %a' /dev/$d; done; readlink /dev/ptmx; readlink /dev/fd; echo hi > /dev/mynull && echo wrote; (echo probe > /dev/hostkmsg) 2>/dev/null && echo KMSG-OPENED || echo kmsg-denied"),
    );
    b.edit(|c| {
        c["linux"]["devices"] = json!([{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 438, "uid": 0, "gid": 0}]);
        c["linux"]["resources"]["devices"] = json!([{"allow": false, "access": "rwm"}]);
        // A device node outside the allow-list, reachable through a bind mount.
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/dev/hostkmsg", "type": "bind", "source": "/dev/kmsg", "options": ["bind"]}));
    });
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 0, "{err}");
    let want = "/dev/null 1:3 666\n/dev/zero 1:5 666\n/dev/full 1:7 666\n/dev/random 1:8 666\n/dev/urandom 1:9 666\n/dev/tty 5:0 666\n/dev/mynull 1:3 666\npts/ptmx\n/proc/self/fd\nwrote\nkmsg-denied\n";
    assert_eq!(out, want);
}

#[test]
fn process_env_cwd_user_umask_rlimits() {
    root_only!("process_env_cwd_user_umask_rlimits");
    let rt = Rt::new();
    let id = unique("proc");
    let mut b = Bundle::new(&id, &sh("echo $FOO; pwd; id; umask; ulimit -n; echo $HOME; grep NoNewPrivs /proc/self/status | tr -d ' \\t'; cat /proc/self/oom_score_adj"));
    b.edit(|c| {
        c["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz"]);
        c["process"]["cwd"] = json!("/tmp");
        c["process"]["user"] =
            json!({"uid": 65534, "gid": 65534, "additionalGids": [10, 20], "umask": 63});
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]);
        c["process"]["noNewPrivileges"] = json!(true);
        c["process"]["oomScoreAdj"] = json!(500);
    });
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 0, "{err}");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "bar baz");
    assert_eq!(l[1], "/tmp");
    assert_eq!(l[2], "uid=65534(nobody) gid=65534(nogroup) groups=10,20");
    assert_eq!(l[3], "0077");
    assert_eq!(l[4], "123");
    assert_eq!(l[5], "/nonexistent");
    assert_eq!(l[6], "NoNewPrivs:1");
    assert_eq!(l[7], "500");
}

#[test]
fn capabilities_all_five_sets() {
    root_only!("capabilities_all_five_sets");
    let rt = Rt::new();
    let id = unique("caps");
    let mut b = Bundle::new(&id, &sh("grep ^Cap /proc/self/status | tr -d '\\t'"));
    b.edit(|c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
            "permitted": ["CAP_CHOWN", "CAP_KILL"],
            "effective": ["CAP_CHOWN", "CAP_KILL"],
            "inheritable": ["CAP_KILL"],
            "ambient": ["CAP_KILL"]
        });
    });
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 0, "{err}");
    // CHOWN=0, KILL=5, NET_RAW=13. After execve as non-root only ambient survives
    // into permitted/effective.
    assert!(out.contains("CapInh:0000000000000020"), "{out}");
    assert!(out.contains("CapPrm:0000000000000020"), "{out}");
    assert!(out.contains("CapEff:0000000000000020"), "{out}");
    assert!(out.contains("CapBnd:0000000000002021"), "{out}");
    assert!(out.contains("CapAmb:0000000000000020"), "{out}");
}

#[test]
fn unknown_capability_is_a_clear_error() {
    root_only!("unknown_capability_is_a_clear_error");
    let rt = Rt::new();
    let id = unique("badcap");
    let mut b = Bundle::new(&id, &["true"]);
    b.edit(|c| c["process"]["capabilities"]["bounding"] = json!(["CAP_FLY"]));
    let o = rt.create(&id, &b, &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("CAP_FLY") || err.contains("FLY"), "{err}");
    assert_no_leftovers(&rt, &id, b.path());
}

#[test]
fn negative_oom_score_adj_without_cap_sys_resource() {
    root_only!("negative_oom_score_adj_without_cap_sys_resource");
    let rt = Rt::new();
    let id = unique("oomadj");
    let mut b = Bundle::new(&id, &sh("cat /proc/self/oom_score_adj"));
    b.edit(|c| c["process"]["oomScoreAdj"] = json!(-500));
    let (code, out, err) = rt.run(&id, &b);
    if code == 0 {
        // The host grants CAP_SYS_RESOURCE: the value must then be applied.
        assert_eq!(out.trim(), "-500");
    } else {
        assert!(err.contains("oomScoreAdj -500"), "{err}");
    }
    assert_no_leftovers(&rt, &id, b.path());
}

#[test]
fn scheduler_personality_affinity_sysctl() {
    root_only!("scheduler_personality_affinity_sysctl");
    let rt = Rt::new();
    let id = unique("sched");
    let mut b = Bundle::new(&id, &sh("grep '^policy' /proc/self/sched | tr -d ' '; uname -m; grep Cpus_allowed_list /proc/self/status | tr -d '\\t'; cat /proc/sys/net/ipv4/ip_forward"));
    b.edit(|c| {
        c["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 3});
        c["process"]["execCPUAffinity"] = json!({"final": "0"});
        c["linux"]["personality"] = json!({"domain": "LINUX32"});
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    });
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 0, "{err}");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "policy:3");
    assert_eq!(l[1], "i686");
    assert_eq!(l[2], "Cpus_allowed_list:0");
    assert_eq!(l[3], "1");
}

#[test]
fn seccomp_errno_rule() {
    root_only!("seccomp_errno_rule");
    let rt = Rt::new();
    let id = unique("seccomp");
    let mut b = Bundle::new(&id, &sh("mkdir /tmp/a 2>&1; echo rc=$?; ls -d /tmp"));
    b.edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
        });
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    });
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Permission denied"), "{out}");
    assert!(out.contains("rc=1"));
    assert!(out.contains("/tmp"));
}

#[test]
fn seccomp_listener_gets_notify_fd_and_state() {
    root_only!("seccomp_listener_gets_notify_fd_and_state");
    let rt = Rt::new();
    let id = unique("notify");
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut b = Bundle::new(&id, &sh("mkdir /tmp/a 2>&1; echo done"));
    b.edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock,
            "listenerMetadata": "meta-42",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        });
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    });
    let agent = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 2]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
        let mut fds = vec![];
        for c in msg.cmsgs().unwrap() {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(f) = c {
                fds.extend(f);
            }
        }
        let n = msg.bytes;
        let json: Value = serde_json::from_slice(&buf[..n]).unwrap();
        // Closing the notify fd makes the notified syscall fail with ENOSYS.
        for f in fds.iter() {
            // SAFETY: the fd was just received and is owned by nobody else.
            drop(unsafe { OwnedFd::from_raw_fd(*f) });
        }
        (json, fds.len())
    });
    let (code, out, err) = rt.run(&id, &b);
    let (json, nfds) = agent.join().unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(nfds, 1);
    assert_eq!(json["fds"], json!(["seccompFd"]));
    assert_eq!(json["metadata"], "meta-42");
    assert_eq!(json["state"]["id"], id.as_str());
    assert!(out.contains("done"));
    assert!(!out.starts_with("done"), "mkdir should have failed: {out}");
}

#[test]
fn hooks_run_in_order_with_state() {
    root_only!("hooks_run_in_order_with_state");
    let rt = Rt::new();
    let id = unique("hooks");
    let log = tempfile::NamedTempFile::new().unwrap();
    let logp = log.path().to_str().unwrap().to_string();
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("st=$(cat); echo \"{name} $(echo $st | grep -o '\"status\":\"[a-z]*\"') $(readlink /proc/self/ns/mnt)\" >> {logp}")]});
    let mut b = Bundle::new(&id, &["true"]);
    // startContainer runs inside the container: give it a log it can reach.
    let inner = b.rootfs().join("tmp/hooklog");
    b.edit(|c| {
        c["root"]["readonly"] = json!(false);
        c["hooks"] = json!({
            "prestart": [hook("prestart")],
            "createRuntime": [hook("createRuntime")],
            "createContainer": [hook("createContainer")],
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/hooklog"]}],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")]
        });
    });
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 0, "{out} {err}");
    let text = fs::read_to_string(log.path()).unwrap();
    let host_mnt = fs::read_link("/proc/self/ns/mnt").unwrap();
    let host_mnt = host_mnt.to_str().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let names: Vec<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "poststart",
            "poststop"
        ],
        "{text}"
    );
    assert!(
        lines[0].contains("\"status\":\"creating\"") && lines[0].ends_with(host_mnt),
        "{text}"
    );
    assert!(
        lines[1].ends_with(host_mnt),
        "createRuntime runs in the runtime namespace: {text}"
    );
    assert!(
        !lines[2].ends_with(host_mnt),
        "createContainer runs in the container namespace: {text}"
    );
    assert!(lines[3].contains("\"status\":\"running\""), "{text}");
    assert!(lines[4].contains("\"status\":\"stopped\""), "{text}");
    let st: Value = serde_json::from_str(&fs::read_to_string(inner).unwrap()).unwrap();
    assert_eq!(st["id"], id.as_str());
}

#[test]
fn failing_hook_fails_create_and_leaves_nothing() {
    root_only!("failing_hook_fails_create_and_leaves_nothing");
    let rt = Rt::new();
    let id = unique("hookfail");
    let mut b = Bundle::new(&id, &["true"]);
    b.edit(|c| {
        c["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "sleep 30"], "timeout": 1}]});
    });
    let o = rt.create(&id, &b, &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("createRuntime hook") && err.contains("timed out"),
        "{err}"
    );
    assert_no_leftovers(&rt, &id, b.path());
}

fn recv_fd(conn: &std::os::unix::net::UnixStream) -> OwnedFd {
    let mut buf = [0u8; 4096];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    for c in msg.cmsgs().unwrap() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(f) = c {
            // SAFETY: just received; we are its only owner.
            return unsafe { OwnedFd::from_raw_fd(f[0]) };
        }
    }
    panic!("no fd received on the console socket");
}

#[test]
fn console_socket_receives_pty_master() {
    root_only!("console_socket_receives_pty_master");
    let rt = Rt::new();
    let id = unique("tty");
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut b = Bundle::new(&id, &sh("tty; stty size; echo tty-ok"));
    b.edit(|c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["consoleSize"] = json!({"height": 40, "width": 100});
    });
    let t = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        recv_fd(&conn)
    });
    let o = rt.create(&id, &b, &["--console-socket", sock.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let master = t.join().unwrap();
    rt.ok(&["start", &id]);
    let mut f = fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&out).contains("tty-ok") {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("tty-ok"));
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
    // terminal without a console socket (and not attached) is refused.
    let id2 = unique("tty-nosock");
    let o = rt.create(&id2, &b, &[]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--console-socket"));
    assert_no_leftovers(&rt, &id2, b.path());
}

#[test]
fn preserve_fds_and_no_leaked_fds() {
    root_only!("preserve_fds_and_no_leaked_fds");
    let rt = Rt::new();
    let id = unique("fds");
    let b = Bundle::new(
        &id,
        &sh("echo via-fd3 >&3; ls /proc/self/fd | sort -n | tr '\\n' ' '"),
    );
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let leak = fs::File::open("/etc").unwrap();
    let pass = fs::OpenOptions::new()
        .append(true)
        .open(out_file.path())
        .unwrap();
    let (pass_fd, leak_fd) = (pass.as_raw_fd(), leak.as_raw_fd());
    let mut c = rt.cmd();
    c.args([
        "run",
        "--preserve-fds",
        "1",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    c.stdin(Stdio::null());
    // SAFETY: dup2 in the pre-exec child only touches the child's fd table.
    unsafe {
        c.pre_exec(move || {
            nix::unistd::dup2(pass_fd, 3)?;
            nix::unistd::dup2(leak_fd, 4)?;
            Ok(())
        });
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fs::read_to_string(out_file.path()).unwrap(), "via-fd3\n");
    // 0-2, the preserved 3, and ls's own directory fd; never the host's /etc (4).
    let fds: Vec<&str> = std::str::from_utf8(&o.stdout)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&fds[..4], ["0", "1", "2", "3"], "{fds:?}");
    assert!(fds.len() <= 5, "unexpected fds in the container: {fds:?}");
}

#[test]
fn cwd_through_leaked_fd_is_refused() {
    // CVE-2024-21626: a cwd of /proc/self/fd/N must not reach a host directory.
    root_only!("cwd_through_leaked_fd_is_refused");
    let rt = Rt::new();
    for n in 3..8 {
        let id = unique("cwd-leak");
        let mut b = Bundle::new(&id, &sh("pwd; ls"));
        b.edit(|c| c["process"]["cwd"] = json!(format!("/proc/self/fd/{n}")));
        let leak = fs::File::open("/etc").unwrap();
        let leak_fd = leak.as_raw_fd();
        let mut c = rt.cmd();
        c.args(["run", "--bundle", b.path().to_str().unwrap(), &id])
            .stdin(Stdio::null());
        // SAFETY: dup2 in the pre-exec child only touches the child's fd table.
        unsafe {
            c.pre_exec(move || {
                nix::unistd::dup2(leak_fd, n)?;
                Ok(())
            });
        }
        let o = c.output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            !out.contains("passwd"),
            "fd {n}: the container saw the host's /etc: {out}"
        );
        if !o.status.success() {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("process.cwd"), "fd {n}: {err}");
        }
        assert_no_leftovers(&rt, &id, b.path());
    }
}

#[test]
fn runtime_binary_is_out_of_reach() {
    // CVE-2019-5736 class: while our binary runs as the container's init (created
    // state), a process in the container tries to read and overwrite it.
    root_only!("runtime_binary_is_out_of_reach");
    let rt = Rt::new();
    let id = unique("exe");
    let b = Bundle::new(&id, &["true"]);
    let before = fs::read(runtime_bin()).unwrap();
    rt.create_ok(&id, &b);
    let attack = "for p in /proc/[0-9]*; do \
        readlink $p/exe 2>/dev/null | grep -q berth && echo SAW-PATH; \
        cat $p/exe > /dev/null 2>&1 && echo READ-$p; \
        (echo pwned >> $p/exe) 2>/dev/null && echo WROTE-$p; \
        done; echo attack-done";
    let out = rt.ok(&["exec", &id, "sh", "-c", attack]);
    assert!(out.contains("attack-done"), "{out}");
    assert!(!out.contains("SAW-PATH"), "{out}");
    assert!(!out.contains("READ-/proc/1"), "{out}");
    assert!(!out.contains("WROTE"), "{out}");
    assert_eq!(
        fs::read(runtime_bin()).unwrap(),
        before,
        "the runtime binary changed"
    );
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn exec_flags_and_process_file() {
    root_only!("exec_flags_and_process_file");
    let rt = Rt::new();
    let id = unique("exec");
    let b = Bundle::new(&id, &["sleep", "1000"]);
    rt.create_ok(&id, &b);
    rt.ok(&["start", &id]);
    let out = rt.ok(&[
        "exec",
        "--env",
        "A=1",
        "--cwd",
        "/etc",
        "--user",
        "65534:65534",
        &id,
        "sh",
        "-c",
        "echo $A $(pwd) $(id -u):$(id -g)",
    ]);
    assert_eq!(out, "1 /etc 65534:65534\n");
    let o = rt.out(&["exec", &id, "sh", "-c", "exit 42"]);
    assert_eq!(o.status.code(), Some(42));
    let err = rt.fails(&["exec", &id, "no-such-cmd"]);
    assert!(err.contains("executable file not found"), "{err}");
    let pf = b.path().join("process.json");
    fs::write(&pf, serde_json::to_vec(&json!({"args": ["sh", "-c", "echo from-file $B"], "cwd": "/", "env": ["B=2", "PATH=/bin"], "user": {"uid": 0, "gid": 0}})).unwrap()).unwrap();
    assert_eq!(
        rt.ok(&["exec", "--process", pf.to_str().unwrap(), &id]),
        "from-file 2\n"
    );
    // Detached exec with a pid file.
    let pidf = b.path().join("exec.pid");
    let mut c = rt.cmd();
    c.args([
        "exec",
        "-d",
        "--pid-file",
        pidf.to_str().unwrap(),
        &id,
        "sleep",
        "1000",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    assert!(c.status().unwrap().success());
    let pid: i32 = fs::read_to_string(&pidf).unwrap().trim().parse().unwrap();
    let ps: Vec<i32> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(ps.contains(&pid), "{ps:?} lacks {pid}");
    assert!(rt.ok(&["ps", &id]).contains("sleep 1000"));
    rt.ok(&["delete", "--force", &id]);
    assert_no_leftovers(&rt, &id, b.path());
}

#[test]
fn no_pivot_mode() {
    root_only!("no_pivot_mode");
    let rt = Rt::new();
    let id = unique("nopivot");
    let b = Bundle::new(&id, &sh("ls / | wc -l; cat /etc/hostname"));
    let o = rt.out(&[
        "run",
        "--no-pivot",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("berth"));
}

#[test]
fn bad_input_gets_clear_errors_and_leaves_nothing() {
    root_only!("bad_input_gets_clear_errors_and_leaves_nothing");
    let rt = Rt::new();
    type Mutate = Box<dyn Fn(&mut Bundle)>;
    let cases: Vec<(&str, Mutate, &str)> = vec![
        (
            "malformed",
            Box::new(|b: &mut Bundle| {
                fs::write(b.path().join("config.json"), "{\"ociVersion\": \"1.2.0\", ").unwrap()
            }),
            "config.json",
        ),
        (
            "bad-ns",
            Box::new(|b: &mut Bundle| {
                b.edit(|c| c["linux"]["namespaces"][0]["type"] = json!("bogus"))
            }),
            "bogus",
        ),
        (
            "no-rootfs",
            Box::new(|b: &mut Bundle| b.edit(|c| c["root"]["path"] = json!("missing-rootfs"))),
            "missing-rootfs",
        ),
        (
            "version",
            Box::new(|b: &mut Bundle| b.edit(|c| c["ociVersion"] = json!("2.0.0"))),
            "unsupported ociVersion",
        ),
        (
            "no-exe",
            Box::new(|b: &mut Bundle| b.edit(|c| c["process"]["args"] = json!(["/no/such/bin"]))),
            "/no/such/bin",
        ),
        (
            "bad-cwd",
            Box::new(|b: &mut Bundle| b.edit(|c| c["process"]["cwd"] = json!("/no/such/dir"))),
            "process.cwd",
        ),
        (
            "bad-rlimit",
            Box::new(|b: &mut Bundle| {
                b.edit(|c| {
                    c["process"]["rlimits"] =
                        json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}])
                })
            }),
            "soft limit",
        ),
        (
            "bad-sysctl",
            Box::new(|b: &mut Bundle| {
                b.edit(|c| c["linux"]["sysctl"] = json!({"vm.swappiness": "1"}))
            }),
            "vm.swappiness",
        ),
    ];
    for (name, mutate, want) in cases {
        let id = unique(&format!("bad-{name}"));
        let mut b = Bundle::new(&id, &["true"]);
        mutate(&mut b);
        let o = rt.create(&id, &b, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(want), "{name}: error lacks {want:?}: {err}");
        assert_no_leftovers(&rt, &id, b.path());
    }
    // Invalid and duplicate IDs.
    let b = Bundle::new("x", &["sleep", "100"]);
    assert!(rt.create("bad/id", &b, &[]).status.code() == Some(1));
    let id = unique("dup");
    let mut b2 = Bundle::new(&id, &["sleep", "100"]);
    b2.edit(|_| {});
    rt.create_ok(&id, &b2);
    let o = rt.create(&id, &b2, &[]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    assert_eq!(
        rt.status(&id),
        "created",
        "the first container must be untouched"
    );
    rt.ok(&["delete", &id]);
    assert_no_leftovers(&rt, &id, b2.path());
}

#[test]
fn concurrent_creates_of_one_id_serialise() {
    root_only!("concurrent_creates_of_one_id_serialise");
    let rt = std::sync::Arc::new(Rt::new());
    let id = unique("race");
    let b = std::sync::Arc::new(Bundle::new(&id, &["sleep", "100"]));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (rt, b, id) = (rt.clone(), b.clone(), id.clone());
            std::thread::spawn(move || rt.create(&id, &b, &[]).status.success())
        })
        .collect();
    let wins = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|w| *w)
        .count();
    assert_eq!(wins, 1);
    let states: Vec<_> = (0..4)
        .map(|_| {
            let (rt, id) = (rt.clone(), id.clone());
            std::thread::spawn(move || rt.status(&id))
        })
        .collect();
    for s in states {
        assert_eq!(s.join().unwrap(), "created");
    }
    rt.ok(&["delete", &id]);
}

#[test]
fn pause_resume_and_cgroup_limits() {
    root_only!("pause_resume_and_cgroup_limits");
    let rt = Rt::new();
    let id = unique("pause");
    let mut b = Bundle::new(
        &id,
        &sh("i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.01; done"),
    );
    b.edit(|c| {
        c["root"]["readonly"] = json!(false);
        c["linux"]["resources"]["memory"] = json!({"limit": 67108864});
        c["linux"]["resources"]["pids"] = json!({"limit": 50});
        c["linux"]["resources"]["cpu"] = json!({"quota": 50000, "period": 100000});
    });
    rt.create_ok(&id, &b);
    rt.ok(&["start", &id]);
    let count = || {
        fs::read_to_string(b.rootfs().join("tmp/count"))
            .unwrap_or_default()
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
    };
    wait_until("the counter to run", || count() > 2);
    rt.ok(&["pause", &id]);
    assert_eq!(rt.status(&id), "paused");
    let frozen = count();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(count(), frozen, "a paused container made progress");
    assert!(rt.fails(&["pause", &id]).contains("paused"));
    rt.ok(&["resume", &id]);
    assert_eq!(rt.status(&id), "running");
    wait_until("progress after resume", || count() > frozen);
    // Limits are in the container's cgroup.
    let pids: Vec<i32> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &id])).unwrap();
    let init = rt.state(&id)["pid"].as_i64().unwrap() as i32;
    assert!(pids.contains(&init));
    let cg = fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    assert!(cg.contains(&format!("/berth-test-{id}")), "{cg}");
    let stats: Value =
        serde_json::from_str(rt.ok(&["events", "--stats", &id]).lines().next().unwrap()).unwrap();
    assert_eq!(stats["type"], "stats");
    assert_eq!(stats["id"], id.as_str());
    // update: pids limit changes on the running container.
    rt.ok(&["update", "--pids-limit", "77", &id]);
    let upd = rt.ok(&["events", "--stats", &id]);
    let upd: Value = serde_json::from_str(upd.lines().next().unwrap()).unwrap();
    assert_eq!(upd["data"]["pids"]["limit"], 77, "{upd}");
    rt.ok(&["delete", "--force", &id]);
    assert_no_leftovers(&rt, &id, b.path());
}

#[test]
fn version_features_and_spec() {
    root_only!("version_features_and_spec");
    let rt = Rt::new();
    let v = rt.ok(&["--version"]);
    assert!(
        v.lines()
            .next()
            .unwrap()
            .starts_with("berth-runtime version "),
        "{v}"
    );
    assert!(v.contains("spec: 1."));
    let f: Value = serde_json::from_str(&rt.ok(&["features"])).unwrap();
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("time")));
    let d = tempfile::tempdir().unwrap();
    rt.ok(&["spec", "--bundle", d.path().to_str().unwrap()]);
    assert!(rt
        .fails(&["spec", "--bundle", d.path().to_str().unwrap()])
        .contains("already exists"));
    let d2 = tempfile::tempdir().unwrap();
    rt.ok(&[
        "spec",
        "--rootless",
        "--bundle",
        d2.path().to_str().unwrap(),
    ]);
    let c: Value =
        serde_json::from_slice(&fs::read(d2.path().join("config.json")).unwrap()).unwrap();
    assert!(c["linux"]["uidMappings"].is_array());
    let id = unique("systemd");
    let b = Bundle::new(&id, &["true"]);
    let err = rt.fails(&[
        "--systemd-cgroup",
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    assert!(err.contains("systemd"), "{err}");
    assert_no_leftovers(&rt, &id, b.path());
}

#[test]
fn joins_user_namespace_by_path_and_creates_the_others_inside_it() {
    root_only!("joins_user_namespace_by_path_and_creates_the_others_inside_it");
    let rt = Rt::new();
    let holder = unique("userns-holder");
    let mut a = Bundle::new(&holder, &["sleep", "1000"]);
    a.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
    });
    rt.create_ok(&holder, &a);
    let hpid = rt.state(&holder)["pid"].as_i64().unwrap();
    let userns = format!("/proc/{hpid}/ns/user");
    let want = fs::read_link(&userns).unwrap();

    let id = unique("userns-join");
    let mut b = Bundle::new(
        &id,
        &sh("readlink /proc/self/ns/user; cat /proc/self/uid_map; echo pid=$$; id -u"),
    );
    b.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user", "path": userns}));
    });
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 0, "{err}");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], want.to_str().unwrap());
    let m: Vec<&str> = l[1].split_whitespace().collect();
    assert_eq!(m, ["0", "300000", "65536"]);
    assert_eq!(
        l[2], "pid=1",
        "a new pid namespace inside the joined user namespace"
    );
    assert_eq!(l[3], "0");
    assert_no_leftovers(&rt, &id, b.path());
    rt.ok(&["delete", "--force", &holder]);
    assert_no_leftovers(&rt, &holder, a.path());
}

#[test]
fn foreground_terminal_is_relayed() {
    root_only!("foreground_terminal_is_relayed");
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipping: script(1) is not installed");
        return;
    }
    let rt = Rt::new();
    let id = unique("fg-tty");
    let mut b = Bundle::new(&id, &sh("tty; read line; echo got:$line"));
    b.edit(|c| c["process"]["terminal"] = json!(true));
    // script(1) gives the runtime a real pty as its stdio, as a person's shell would.
    let cmdline = format!(
        "{} --root {} run --bundle {} {id}",
        runtime_bin().display(),
        rt.root.path().display(),
        b.path().display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.as_mut().unwrap().write_all(b"hello\n").unwrap();
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("got:hello"), "{out}");
    assert_no_leftovers(&rt, &id, b.path());
}

#[test]
fn listen_fds_are_passed_on() {
    root_only!("listen_fds_are_passed_on");
    let rt = Rt::new();
    let id = unique("listen");
    let b = Bundle::new(
        &id,
        &sh("echo $LISTEN_FDS $LISTEN_PID; echo via-listen-fd >&3"),
    );
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let pass = fs::OpenOptions::new()
        .append(true)
        .open(out_file.path())
        .unwrap();
    let pass_fd = pass.as_raw_fd();
    // LISTEN_PID must name the runtime itself (sd_listen_fds(3)): a shell
    // sets it to its own PID and then becomes the runtime.
    let mut c = Command::new("/bin/sh");
    c.args(["-c", "LISTEN_PID=$$; export LISTEN_PID; exec \"$@\"", "sh"])
        .arg(runtime_bin())
        .arg("--root")
        .arg(rt.root.path())
        .args(["run", "--bundle", b.path().to_str().unwrap(), &id])
        .stdin(Stdio::null())
        .env("LISTEN_FDS", "1");
    // SAFETY: dup2 in the pre-exec child only touches the child's fd table.
    unsafe {
        c.pre_exec(move || {
            nix::unistd::dup2(pass_fd, 3)?;
            Ok(())
        });
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1 1\n");
    assert_eq!(
        fs::read_to_string(out_file.path()).unwrap(),
        "via-listen-fd\n"
    );
}

#[test]
fn kill_all_and_list_formats() {
    root_only!("kill_all_and_list_formats");
    let rt = Rt::new();
    let id = unique("killall");
    // A shared pid namespace (none of its own) keeps extra processes alive after init.
    let mut b = Bundle::new(&id, &sh("sleep 1000 & sleep 1000 & wait"));
    b.edit(|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "pid");
    });
    rt.create_ok(&id, &b);
    rt.ok(&["start", &id]);
    wait_until("three processes", || {
        serde_json::from_str::<Vec<i32>>(&rt.ok(&["ps", "--format", "json", &id]))
            .map(|p| p.len() >= 3)
            .unwrap_or(false)
    });
    let table = rt.ok(&["list"]);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains(&id) && table.contains("running"));
    assert_eq!(rt.ok(&["list", "-q"]).trim(), id);
    rt.ok(&["kill", "--all", &id, "KILL"]);
    wait_until("all processes gone", || {
        serde_json::from_str::<Vec<i32>>(&rt.ok(&["ps", "--format", "json", &id]))
            .map(|p| p.is_empty())
            .unwrap_or(false)
    });
    rt.ok(&["delete", &id]);
    assert_no_leftovers(&rt, &id, b.path());
}

#[test]
fn io_priority_and_ignored_lsm_labels() {
    root_only!("io_priority_and_ignored_lsm_labels");
    let rt = Rt::new();
    let id = unique("ioprio");
    let mut b = Bundle::new(&id, &sh("ionice -p $$"));
    b.edit(|c| {
        c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
        // AppArmor and SELinux are not enabled here: like runc, ignore the labels.
        c["process"]["apparmorProfile"] = json!("berth-test-profile");
        c["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0");
    });
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "idle");
}

#[test]
fn seccomp_argument_conditions() {
    root_only!("seccomp_argument_conditions");
    let rt = Rt::new();
    let id = unique("seccomp-args");
    let mut b = Bundle::new(
        &id,
        &sh("touch /tmp/f; chmod 755 /tmp/f && echo 755-ok; chmod 777 /tmp/f 2>/dev/null && echo 777-ALLOWED || echo 777-denied"),
    );
    b.edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 511, "op": "SCMP_CMP_EQ"}]},
                {"names": ["fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 2, "value": 511, "op": "SCMP_CMP_EQ"}]}
            ]
        });
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    });
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "755-ok\n777-denied\n");
}

#[test]
fn json_log_carries_errors_for_clients() {
    root_only!("json_log_carries_errors_for_clients");
    let rt = Rt::new();
    let id = unique("jsonlog");
    let mut b = Bundle::new(&id, &["true"]);
    b.edit(|c| c["process"]["args"] = json!(["/no/such/program"]));
    let log = b.path().join("runtime.log");
    let o = rt.create(&id, &b, &[]);
    assert!(!o.status.success());
    let mut c = rt.cmd();
    c.args([
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    assert!(!c.status().unwrap().success());
    let text = fs::read_to_string(&log).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(
        last["msg"].as_str().unwrap().contains("/no/such/program"),
        "{last}"
    );
    assert!(last["time"].is_string());
    assert_no_leftovers(&rt, &id, b.path());
}

#[test]
fn events_stream_and_update_from_file() {
    root_only!("events_stream_and_update_from_file");
    let rt = Rt::new();
    let id = unique("events");
    let b = Bundle::new(&id, &["sleep", "1000"]);
    rt.create_ok(&id, &b);
    rt.ok(&["start", &id]);
    let mut ev = rt
        .cmd()
        .args(["events", "--interval", "100ms", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(ev.stdout.take().unwrap()));
    for _ in 0..2 {
        let l: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(l["type"], "stats");
        assert_eq!(l["id"], id.as_str());
    }
    let res = b.path().join("resources.json");
    fs::write(&res, r#"{"pids": {"limit": 33}}"#).unwrap();
    rt.ok(&["update", "--resources", res.to_str().unwrap(), &id]);
    let s: Value =
        serde_json::from_str(rt.ok(&["events", "--stats", &id]).lines().next().unwrap()).unwrap();
    assert_eq!(s["data"]["pids"]["limit"], 33, "{s}");
    // events exits by itself once the container stops.
    rt.ok(&["kill", &id, "KILL"]);
    wait_until("events to exit", || matches!(ev.try_wait(), Ok(Some(_))));
    rt.ok(&["delete", &id]);
    assert_no_leftovers(&rt, &id, b.path());
}
