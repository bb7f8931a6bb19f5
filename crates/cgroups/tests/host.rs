//! Integration tests against the real host cgroups. They need root and a
//! cgroupfs; otherwise each test prints a skip line and passes. Every test uses
//! its own cgroup (`berth-test-<pid>-<n>`) and a guard removes it on any exit.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use berth_cgroups::{CgroupConfig, FreezerState, Manager};
use nix::sys::signal::Signal;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

static N: AtomicU32 = AtomicU32::new(0);

fn skip(name: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    let cg = Path::new("/sys/fs/cgroup").is_dir()
        && std::fs::read_to_string("/proc/self/mountinfo")
            .map(|m| m.contains(" - cgroup"))
            .unwrap_or(false);
    if !root || !cg {
        println!("SKIP {name}: needs root and a mounted cgroupfs");
        return true;
    }
    false
}

/// Removes the cgroup (and kills what is left in it) whatever happens.
struct Guard {
    m: Manager,
    children: Vec<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.m.thaw();
        let _ = self.m.kill_all(Signal::SIGKILL);
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Err(e) = self.m.destroy() {
            eprintln!("cleanup: {e}");
        }
    }
}

fn new_cgroup() -> Guard {
    let n = N.fetch_add(1, Ordering::SeqCst);
    let id = format!("berth-test-{}-{n}", std::process::id());
    let cfg = CgroupConfig {
        path: Some(PathBuf::from(format!("/{id}"))),
        id,
        systemd: false,
    };
    let m = Manager::new(&cfg).expect("detect");
    m.create().expect("create");
    Guard {
        m,
        children: vec![],
    }
}

fn dir_of(m: &Manager, controller: &str) -> PathBuf {
    match m {
        Manager::V1(v) => v.path(controller).expect(controller).to_path_buf(),
        Manager::V2(v) => v.path().to_path_buf(),
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// A child that blocks until added to the cgroup, then runs `script`.
fn spawn_in(g: &mut Guard, script: &str) -> i32 {
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("read _; {script}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let pid = child.id() as i32;
    g.m.add_process(pid).expect("add_process");
    g.children.push(child);
    let c = g.children.last_mut().unwrap();
    use std::io::Write;
    c.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    pid
}

fn resources() -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 * 1024 * 1024i64)
                .swap(128 * 1024 * 1024i64)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000i64)
                .period(100_000u64)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(20i64).build().unwrap())
        .build()
        .unwrap()
}

#[test]
fn create_apply_read_back_destroy() {
    if skip("create_apply_read_back_destroy") {
        return;
    }
    let mut g = new_cgroup();
    g.m.apply(&resources()).expect("apply");
    if g.m.is_v2() {
        let d = dir_of(&g.m, "");
        assert_eq!(read(&d.join("memory.max")), "67108864");
        assert_eq!(read(&d.join("cpu.max")), "50000 100000");
        assert_eq!(read(&d.join("pids.max")), "20");
    } else {
        let mem = dir_of(&g.m, "memory");
        assert_eq!(read(&mem.join("memory.limit_in_bytes")), "67108864");
        if mem.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(read(&mem.join("memory.memsw.limit_in_bytes")), "134217728");
        }
        let cpu = dir_of(&g.m, "cpu");
        assert_eq!(read(&cpu.join("cpu.shares")), "512");
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(&dir_of(&g.m, "pids").join("pids.max")), "20");
    }
    let pid = spawn_in(&mut g, "exec sleep 30");
    let pids = g.m.pids().unwrap();
    assert!(pids.contains(&pid), "{pids:?} lacks {pid}");
    let st = g.m.stats().unwrap();
    assert!(st.pids.current >= 1, "{st:?}");
    assert_eq!(st.pids.limit, 20);
    assert_eq!(st.memory.usage.limit, 64 * 1024 * 1024);
    println!("stats: {}", serde_json::to_string(&st).unwrap());

    g.m.kill_all(Signal::SIGKILL).unwrap();
    let c = g.children.pop().unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(!out.status.success());
    let paths: Vec<PathBuf> = g.m.hierarchies().into_iter().map(|h| h.path).collect();
    g.m.destroy().expect("destroy");
    for p in &paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

#[test]
fn update_rolls_back_on_failure() {
    if skip("update_rolls_back_on_failure") {
        return;
    }
    let g = new_cgroup();
    g.m.apply(&resources()).unwrap();
    // cpu and pids writes succeed, then throttling a device that does not
    // exist fails in the kernel: everything written before must be undone
    let bad = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(7i64).build().unwrap())
        .cpu(LinuxCpuBuilder::default().shares(1024u64).build().unwrap())
        .block_io(
            oci_spec::runtime::LinuxBlockIoBuilder::default()
                .throttle_read_bps_device(vec![
                    oci_spec::runtime::LinuxThrottleDeviceBuilder::default()
                        .major(259i64)
                        .minor(4000i64)
                        .rate(1_000_000u64)
                        .build()
                        .unwrap(),
                ])
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let err = g.m.update(&bad).unwrap_err();
    println!("expected failure: {err}");
    if !g.m.is_v2() {
        assert_eq!(read(&dir_of(&g.m, "pids").join("pids.max")), "20");
        assert_eq!(read(&dir_of(&g.m, "cpu").join("cpu.shares")), "512");
    }
    // validation errors write nothing at all
    let invalid = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(9i64).build().unwrap())
        .cpu(LinuxCpuBuilder::default().shares(0u64).build().unwrap())
        .build()
        .unwrap();
    let err = g.m.update(&invalid).unwrap_err();
    assert_eq!(err.to_string(), "invalid cpu.shares value 0: must be >= 2");
    if !g.m.is_v2() {
        assert_eq!(read(&dir_of(&g.m, "pids").join("pids.max")), "20");
    }
}

#[test]
fn pids_max_stops_forks() {
    if skip("pids_max_stops_forks") {
        return;
    }
    let mut g = new_cgroup();
    let r = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(3i64).build().unwrap())
        .build()
        .unwrap();
    g.m.apply(&r).unwrap();
    // the shell plus two sleeps fill the limit; the third fork must fail
    spawn_in(
        &mut g,
        "sleep 30 & sleep 30 & sleep 30 & sleep 1; echo alive",
    );
    std::thread::sleep(Duration::from_millis(300));
    let pids = g.m.pids().unwrap();
    let st = g.m.stats().unwrap();
    println!("pids in cgroup: {pids:?}, stats {:?}", st.pids);
    assert_eq!(st.pids.limit, 3);
    assert!(pids.len() <= 3, "{pids:?}");
    assert_eq!(st.pids.current, 3);
    g.m.kill_all(Signal::SIGKILL).unwrap();
    let out = g.children.pop().unwrap().wait_with_output().unwrap();
    println!(
        "child: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// utime+stime of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // fields 14 and 15 of stat, counted from the state field (3)
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn freeze_stops_progress_and_thaw_resumes() {
    if skip("freeze_stops_progress_and_thaw_resumes") {
        return;
    }
    let mut g = new_cgroup();
    let pid = spawn_in(&mut g, "while :; do :; done");
    std::thread::sleep(Duration::from_millis(200));
    g.m.freeze().unwrap();
    assert_eq!(g.m.freezer_state().unwrap(), FreezerState::Frozen);
    let a = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(500));
    let b = cpu_ticks(pid);
    assert_eq!(a, b, "the spinning child used CPU while frozen");
    g.m.thaw().unwrap();
    assert_eq!(g.m.freezer_state().unwrap(), FreezerState::Thawed);
    std::thread::sleep(Duration::from_millis(500));
    let c = cpu_ticks(pid);
    assert!(c > b, "the child did not resume: {b} -> {c}");
    println!("cpu ticks: frozen {a} -> {b}, thawed -> {c}");
    g.m.kill_all(Signal::SIGKILL).unwrap();
}

#[test]
fn devices_deny_dev_zero() {
    if skip("devices_deny_dev_zero") {
        return;
    }
    let mut g = new_cgroup();
    let rule = |allow: bool, t: Option<LinuxDeviceType>, ma: Option<i64>, mi: Option<i64>| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .access("rwm");
        if let Some(t) = t {
            b = b.typ(t);
        }
        if let Some(m) = ma {
            b = b.major(m);
        }
        if let Some(m) = mi {
            b = b.minor(m);
        }
        b.build().unwrap()
    };
    let mut devs = vec![rule(false, Some(LinuxDeviceType::A), None, None)];
    devs.extend(berth_cgroups::default_allowed_devices());
    devs.push(rule(false, Some(LinuxDeviceType::C), Some(1), Some(5))); // /dev/zero
    let r = LinuxResourcesBuilder::default()
        .devices(devs)
        .build()
        .unwrap();
    g.m.apply(&r).unwrap();
    if !g.m.is_v2() {
        let list = read(&dir_of(&g.m, "devices").join("devices.list"));
        assert!(
            list.contains("c 1:3 rwm") && !list.contains("c 1:5"),
            "{list}"
        );
    }
    spawn_in(
        &mut g,
        "head -c1 /dev/null && echo null=ok; head -c1 /dev/zero >/dev/null 2>&1 && echo zero=ok || echo zero=denied",
    );
    let out = g.children.pop().unwrap().wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("null=ok") && text.contains("zero=denied"),
        "{text}"
    );
}

#[test]
fn state_round_trip_and_mounts() {
    if skip("state_round_trip_and_mounts") {
        return;
    }
    let g = new_cgroup();
    let st = g.m.to_state();
    let json = serde_json::to_string(&st).unwrap();
    let back: berth_cgroups::CgroupState = serde_json::from_str(&json).unwrap();
    let m2 = Manager::from_state(&back).unwrap();
    assert_eq!(m2.to_state(), st);
    let mounts = m2.mounts();
    assert!(!mounts.is_empty());
    for m in &mounts {
        println!("{m:?}");
        assert!(m.host_path.exists());
    }
    // the reopened manager removes what the first created
    m2.destroy().unwrap();
    for m in &mounts {
        assert!(!m.host_path.exists());
    }
}

#[test]
fn relative_path_and_join_existing() {
    if skip("relative_path_and_join_existing") {
        return;
    }
    let n = N.fetch_add(1, Ordering::SeqCst);
    let id = format!("berth-test-{}-{n}", std::process::id());
    let cfg = CgroupConfig {
        path: None,
        id: id.clone(),
        systemd: false,
    };
    let m = Manager::new(&cfg).unwrap();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    for h in m.hierarchies() {
        assert!(h.path.ends_with(&id), "{}", h.path.display());
    }
    let g = Guard {
        m,
        children: vec![],
    };
    g.m.create().unwrap();
    // a second manager joining the same cgroup creates nothing and removes nothing
    let joined = Manager::new(&cfg).unwrap();
    joined.create().unwrap();
    assert!(joined.to_state().created.is_empty());
    joined.destroy().unwrap();
    assert!(g.m.hierarchies().iter().all(|h| h.path.exists()), "{own}");
}

/// The v2 device filter, loaded into the real kernel and attached to a cgroup
/// on this host's cgroup2 hierarchy (`unified` on hybrid hosts).
#[test]
fn bpf_device_filter_on_cgroup2() {
    if skip("bpf_device_filter_on_cgroup2") {
        return;
    }
    let base = if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
        PathBuf::from("/sys/fs/cgroup/unified")
    } else if Path::new("/sys/fs/cgroup/cgroup.procs").exists() {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        println!("SKIP bpf_device_filter_on_cgroup2: no cgroup2 hierarchy");
        return;
    };
    let n = N.fetch_add(1, Ordering::SeqCst);
    let dir = base.join(format!("berth-test-{}-{n}", std::process::id()));
    struct DirGuard(PathBuf);
    impl Drop for DirGuard {
        fn drop(&mut self) {
            if let Ok(p) = std::fs::read_to_string(self.0.join("cgroup.procs")) {
                for pid in p.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            for _ in 0..50 {
                if std::fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    std::fs::create_dir(&dir).unwrap();
    let _guard = DirGuard(dir.clone());
    let rule = |allow: bool, t: LinuxDeviceType, ma: Option<i64>, mi: Option<i64>| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .access("rwm")
            .typ(t);
        if let Some(m) = ma {
            b = b.major(m);
        }
        if let Some(m) = mi {
            b = b.minor(m);
        }
        b.build().unwrap()
    };
    let run = |script: &str| -> String {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("read _; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
        use std::io::Write;
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let probe = "head -c1 /dev/null && echo null=ok; head -c1 /dev/zero >/dev/null 2>&1 && echo zero=ok || echo zero=denied";

    let mut rules = vec![rule(false, LinuxDeviceType::A, None, None)];
    rules.extend(berth_cgroups::default_allowed_devices());
    rules.push(rule(false, LinuxDeviceType::C, Some(1), Some(5)));
    berth_cgroups::v2::devices::apply_rules(&dir, &rules).expect("load and attach");
    let out = run(probe);
    assert!(
        out.contains("null=ok") && out.contains("zero=denied"),
        "{out}"
    );

    // replacing the filter detaches the old one: /dev/zero works again
    berth_cgroups::v2::devices::apply_rules(&dir, &[rule(true, LinuxDeviceType::A, None, None)])
        .expect("replace");
    let out = run(probe);
    assert!(out.contains("null=ok") && out.contains("zero=ok"), "{out}");
    println!("device filter enforced and replaced on {}", dir.display());
}

/// Hugetlb limits: the v1 hierarchy when mounted, else (hybrid hosts such as
/// this one) the cgroup2 side when it offers the controller.
#[test]
fn hugetlb_limit_lands_somewhere_real() {
    if skip("hugetlb_limit_lands_somewhere_real") {
        return;
    }
    if !Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() {
        println!("SKIP hugetlb_limit_lands_somewhere_real: no 2MB huge pages");
        return;
    }
    // on hybrid hosts the limit needs +hugetlb in the cgroup2 root; put the
    // root back as it was afterwards, leaving the host as found
    let root_ctl = Path::new("/sys/fs/cgroup/unified/cgroup.subtree_control");
    let had = std::fs::read_to_string(root_ctl)
        .map(|s| s.split_whitespace().any(|c| c == "hugetlb"))
        .unwrap_or(true);
    struct Restore(bool, &'static Path);
    impl Drop for Restore {
        fn drop(&mut self) {
            if !self.0 {
                let _ = std::fs::write(self.1, "-hugetlb");
            }
        }
    }
    let _restore = Restore(
        had,
        Path::new("/sys/fs/cgroup/unified/cgroup.subtree_control"),
    );
    let g = new_cgroup();
    let r = LinuxResourcesBuilder::default()
        .hugepage_limits(vec![oci_spec::runtime::LinuxHugepageLimitBuilder::default(
        )
        .page_size("2MB")
        .limit(4 * 1024 * 1024i64)
        .build()
        .unwrap()])
        .build()
        .unwrap();
    match g.m.apply(&r) {
        Ok(()) => {
            let h =
                g.m.hierarchies()
                    .into_iter()
                    .find(|h| h.controllers.iter().any(|c| c == "hugetlb") || h.cgroup2)
                    .unwrap();
            let f = if h.cgroup2 {
                "hugetlb.2MB.max"
            } else {
                "hugetlb.2MB.limit_in_bytes"
            };
            assert_eq!(read(&h.path.join(f)), "4194304");
            let st = g.m.stats().unwrap();
            assert!(st.hugetlb.contains_key("2MB"), "{:?}", st.hugetlb);
            println!("hugetlb limit written to {}", h.path.join(f).display());
        }
        Err(e) => {
            // a host without any hugetlb controller must say so clearly
            assert!(e.to_string().contains("hugetlb"), "{e}");
            println!("no hugetlb controller: {e}");
        }
    }
}
