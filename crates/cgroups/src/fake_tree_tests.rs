//! Manager tests against fake cgroupfs trees in a tempdir: exact file
//! contents, validation, rollback, conversions, stats parsing, state.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceType, LinuxHugepageLimitBuilder,
    LinuxMemoryBuilder, LinuxNetworkBuilder, LinuxPidsBuilder, LinuxResources,
    LinuxResourcesBuilder, LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
};

use crate::devices::tests::oci;
use crate::{CgroupConfig, Error, FreezerState, Manager};

const V1_DIRS: &[(&str, &str)] = &[
    ("cpu,cpuacct", "cpu,cpuacct"),
    ("cpuset", "cpuset"),
    ("memory", "memory"),
    ("devices", "devices"),
    ("freezer", "freezer"),
    ("blkio", "blkio"),
    ("pids", "pids"),
    ("systemd", "xattr,name=systemd"),
];

fn put(dir: &Path, file: &str, content: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(file), content).unwrap();
}

fn get(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
}

struct V1Fake {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    m: Manager,
}

impl V1Fake {
    fn dir(&self, h: &str) -> PathBuf {
        self.root.join(h).join("ctr")
    }
}

/// The usual files of a fresh v1 cgroup in each hierarchy.
fn v1_files(root: &Path, rel: &str) {
    let d = |h: &str| root.join(h).join(rel);
    let cpu = d("cpu,cpuacct");
    for (f, v) in [
        ("cpu.shares", "1024"),
        ("cpu.cfs_quota_us", "-1"),
        ("cpu.cfs_period_us", "100000"),
        ("cpu.cfs_burst_us", "0"),
        ("cpu.rt_period_us", "1000000"),
        ("cpu.rt_runtime_us", "0"),
        ("cpu.idle", "0"),
        (
            "cpu.stat",
            "nr_periods 10\nnr_throttled 2\nthrottled_time 5000\n",
        ),
        ("cpuacct.usage", "123456"),
        ("cpuacct.usage_percpu", "100000 23456 \n"),
        ("cpuacct.usage_user", "100000"),
        ("cpuacct.usage_sys", "23456"),
        ("cgroup.procs", ""),
    ] {
        put(&cpu, f, v);
    }
    let mem = d("memory");
    for (f, v) in [
        ("memory.limit_in_bytes", "9223372036854771712"),
        ("memory.memsw.limit_in_bytes", "9223372036854771712"),
        ("memory.soft_limit_in_bytes", "9223372036854771712"),
        ("memory.kmem.tcp.limit_in_bytes", "9223372036854771712"),
        ("memory.swappiness", "60"),
        (
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        ),
        ("memory.usage_in_bytes", "1048576"),
        ("memory.max_usage_in_bytes", "2097152"),
        ("memory.failcnt", "1"),
        (
            "memory.stat",
            "cache 4096\ntotal_inactive_file 8192\nrss 100\n",
        ),
        ("cgroup.procs", ""),
    ] {
        put(&mem, f, v);
    }
    put(&d("pids"), "pids.max", "max");
    put(&d("pids"), "pids.current", "2");
    put(&d("pids"), "cgroup.procs", "10\n11\n");
    put(&d("devices"), "devices.list", "a *:* rwm\n");
    put(&d("devices"), "devices.allow", "");
    put(&d("devices"), "devices.deny", "");
    put(&d("devices"), "cgroup.procs", "");
    put(&d("freezer"), "freezer.state", "THAWED\n");
    put(&d("freezer"), "cgroup.procs", "");
    put(&d("cpuset"), "cgroup.procs", "");
    let blk = d("blkio");
    for f in [
        "blkio.throttle.read_bps_device",
        "blkio.throttle.write_bps_device",
        "blkio.throttle.read_iops_device",
        "blkio.throttle.write_iops_device",
        "cgroup.procs",
    ] {
        put(&blk, f, "");
    }
    put(
        &blk,
        "blkio.throttle.io_service_bytes_recursive",
        "8:0 Read 4096\n8:0 Write 512\nTotal 4608\n",
    );
    put(&d("systemd"), "cgroup.procs", "");
}

fn v1_fake() -> V1Fake {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cgroup");
    let mut mi = format!("31 23 0:28 / {} rw - tmpfs tmpfs rw\n", root.display());
    for (i, (dir, opts)) in V1_DIRS.iter().enumerate() {
        mi.push_str(&format!(
            "{} 31 0:{} / {} rw,relatime - cgroup cgroup rw,{opts}\n",
            40 + i,
            40 + i,
            root.join(dir).display()
        ));
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    put(&root.join("cpuset"), "cpuset.cpus", "0-3\n");
    put(&root.join("cpuset"), "cpuset.mems", "0\n");
    // the runtime itself sits in /user.slice in the memory hierarchy
    let pc = "3:memory:/user.slice\n2:cpu,cpuacct:/\n1:name=systemd:/\n4:cpuset:/\n5:devices:/\n6:freezer:/\n7:blkio:/\n8:pids:/\n0::/\n";
    let cfg = CgroupConfig {
        path: Some("/ctr".into()),
        id: "ctr".into(),
        systemd: false,
    };
    let m = Manager::with_root(&cfg, &root, &mi, pc).unwrap();
    V1Fake { _tmp: tmp, root, m }
}

fn created_v1() -> V1Fake {
    let f = v1_fake();
    // cpuset of the new cgroup starts empty, like the kernel's
    put(&f.dir("cpuset"), "cpuset.cpus", "");
    put(&f.dir("cpuset"), "cpuset.mems", "");
    f.m.create().unwrap();
    v1_files(&f.root, "ctr");
    f
}

fn res() -> LinuxResourcesBuilder {
    LinuxResourcesBuilder::default()
}

#[test]
fn systemd_is_refused_with_a_clear_message() {
    let cfg = CgroupConfig {
        path: None,
        id: "x".into(),
        systemd: true,
    };
    let e = Manager::with_root(&cfg, Path::new("/x"), "", "").unwrap_err();
    assert!(matches!(e, Error::SystemdUnsupported));
    assert_eq!(
        e.to_string(),
        "the systemd cgroup driver is not supported yet; omit --systemd-cgroup"
    );
}

#[test]
fn v1_paths_follow_runc() {
    let f = v1_fake();
    let Manager::V1(v) = &f.m else { panic!() };
    assert_eq!(v.path("cpu").unwrap(), f.root.join("cpu,cpuacct/ctr"));
    assert_eq!(v.path("cpuacct").unwrap(), f.root.join("cpu,cpuacct/ctr"));
    assert_eq!(v.path("name=systemd").unwrap(), f.root.join("systemd/ctr"));
    // relative: below our own cgroup in each hierarchy
    let cfg = CgroupConfig {
        path: None,
        id: "c1".into(),
        systemd: false,
    };
    let host = crate::HostInfo {
        root: f.root.clone(),
        layout: crate::Layout::Legacy,
        mounts: v_mounts(&f.root),
        own: crate::detect::parse_proc_cgroup(
            "3:memory:/user.slice\n2:cpu,cpuacct:/\n5:devices:/a\n",
        ),
    };
    let Manager::V1(v) = Manager::from_host_info(&cfg, &host).unwrap() else {
        panic!()
    };
    assert_eq!(
        v.path("memory").unwrap(),
        f.root.join("memory/user.slice/c1")
    );
    assert_eq!(v.path("devices").unwrap(), f.root.join("devices/a/c1"));
    assert_eq!(v.path("cpu").unwrap(), f.root.join("cpu,cpuacct/c1"));
}

fn v_mounts(root: &Path) -> Vec<crate::detect::CgroupMountInfo> {
    ["cpu,cpuacct", "memory", "devices"]
        .iter()
        .map(|d| crate::detect::CgroupMountInfo {
            mount_point: root.join(d),
            root: "/".into(),
            cgroup2: false,
            controllers: d.split(',').map(str::to_string).collect(),
        })
        .collect()
}

#[test]
fn v1_create_inherits_cpuset_and_records_dirs() {
    let f = v1_fake();
    put(&f.dir("cpuset"), "cpuset.cpus", "");
    put(&f.dir("cpuset"), "cpuset.mems", "\n");
    f.m.create().unwrap();
    assert_eq!(get(&f.dir("cpuset"), "cpuset.cpus"), "0-3");
    assert_eq!(get(&f.dir("cpuset"), "cpuset.mems"), "0");
    let st = f.m.to_state();
    // cpuset existed already (joined), the others were made
    assert!(!st.created.contains(&f.dir("cpuset")));
    assert!(st.created.contains(&f.dir("memory")));
    assert!(st.created.contains(&f.dir("cpu,cpuacct")));
}

#[test]
fn v1_apply_writes_exact_values() {
    let f = created_v1();
    let r = res()
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(20_000i64)
                .period(50_000u64)
                .burst(10_000u64)
                .realtime_period(500_000u64)
                .realtime_runtime(100_000i64)
                .idle(1i64)
                .cpus("0-1")
                .mems("0")
                .build()
                .unwrap(),
        )
        .memory(
            LinuxMemoryBuilder::default()
                .limit(100_000_000i64)
                .swap(200_000_000i64)
                .reservation(50_000_000i64)
                .swappiness(10u64)
                .disable_oom_killer(true)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(-1i64).build().unwrap())
        .block_io(
            LinuxBlockIoBuilder::default()
                .throttle_read_bps_device(vec![LinuxThrottleDeviceBuilder::default()
                    .major(8i64)
                    .minor(0i64)
                    .rate(1000u64)
                    .build()
                    .unwrap()])
                .build()
                .unwrap(),
        )
        .devices(vec![
            oci(false, Some(LinuxDeviceType::A), None, None, "rwm"),
            oci(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rwm"),
        ])
        .build()
        .unwrap();
    f.m.apply(&r).unwrap();
    let cpu = f.dir("cpu,cpuacct");
    assert_eq!(get(&cpu, "cpu.shares"), "512");
    assert_eq!(get(&cpu, "cpu.cfs_quota_us"), "20000");
    assert_eq!(get(&cpu, "cpu.cfs_period_us"), "50000");
    assert_eq!(get(&cpu, "cpu.cfs_burst_us"), "10000");
    assert_eq!(get(&cpu, "cpu.rt_period_us"), "500000");
    assert_eq!(get(&cpu, "cpu.rt_runtime_us"), "100000");
    assert_eq!(get(&cpu, "cpu.idle"), "1");
    assert_eq!(get(&f.dir("cpuset"), "cpuset.cpus"), "0-1");
    let mem = f.dir("memory");
    assert_eq!(get(&mem, "memory.limit_in_bytes"), "100000000");
    assert_eq!(get(&mem, "memory.memsw.limit_in_bytes"), "200000000");
    assert_eq!(get(&mem, "memory.soft_limit_in_bytes"), "50000000");
    assert_eq!(get(&mem, "memory.swappiness"), "10");
    assert_eq!(get(&mem, "memory.oom_control"), "1");
    assert_eq!(get(&f.dir("pids"), "pids.max"), "max");
    assert_eq!(
        get(&f.dir("blkio"), "blkio.throttle.read_bps_device"),
        "8:0 1000"
    );
    // the last write wins in a plain file: the allow line
    assert_eq!(get(&f.dir("devices"), "devices.deny"), "a");
    assert_eq!(get(&f.dir("devices"), "devices.allow"), "c 1:3 rwm");
}

#[test]
fn v1_memory_swap_ordering() {
    use crate::fs::Plan;
    let f = created_v1();
    let mem = f.dir("memory");
    let mk = |l: i64, s: i64| {
        res()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(l)
                    .swap(s)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let order = |p: Plan| p.steps.iter().map(|s| s.file.clone()).collect::<Vec<_>>();
    // raising above the current limit: memsw first
    put(&mem, "memory.limit_in_bytes", "1000");
    let p = crate::v1::memory::plan(Some(&mem), &mk(2000, 4000)).unwrap();
    assert_eq!(
        order(p),
        ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
    );
    // lowering: the limit first
    put(&mem, "memory.limit_in_bytes", "5000");
    let p = crate::v1::memory::plan(Some(&mem), &mk(2000, 4000)).unwrap();
    assert_eq!(
        order(p),
        ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
    );
    // -1 memory with swap unset sets both unlimited
    let p = crate::v1::memory::plan(Some(&mem), &mk(-1, 0)).unwrap();
    assert_eq!(p.steps[0].value, "-1");
    assert_eq!(p.steps.len(), 2);
    // memsw below the limit is invalid
    let e = f.m.apply(&mk(4000, 2000)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid memory.swap value 2000: memory+swap must be >= the memory limit 4000"
    );
}

#[test]
fn v1_check_before_update() {
    let f = created_v1();
    let r = res()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(1000i64)
                .check_before_update(true)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let e = f.m.update(&r).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BelowUsage {
                usage: 1_048_576,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn validation_errors_write_nothing() {
    let f = created_v1();
    let pids = f.dir("pids");
    let cases: Vec<(LinuxResources, &str)> = vec![
        (
            res().cpu(LinuxCpuBuilder::default().shares(0u64).build().unwrap()).build().unwrap(),
            "invalid cpu.shares value 0: must be >= 2",
        ),
        (
            res().cpu(LinuxCpuBuilder::default().quota(-5i64).build().unwrap()).build().unwrap(),
            "invalid cpu.quota value -5: must be -1 (unlimited), 0 (unset) or >= 1000 microseconds",
        ),
        (
            res().cpu(LinuxCpuBuilder::default().cpus("3-1").build().unwrap()).build().unwrap(),
            "invalid cpuset.cpus value \"3-1\": range start is above its end",
        ),
        (
            res().memory(LinuxMemoryBuilder::default().swappiness(101u64).build().unwrap()).build().unwrap(),
            "invalid memory.swappiness value 101: must be between 0 and 100",
        ),
        (
            res().block_io(LinuxBlockIoBuilder::default().weight(5u16).build().unwrap()).build().unwrap(),
            "invalid blockIO.weight value 5: must be between 10 and 1000",
        ),
        (
            res().devices(vec![oci(true, Some(LinuxDeviceType::P), None, None, "rwm")]).build().unwrap(),
            "invalid linux.resources.devices[].type value \"p\": the device cgroup only knows a, b and c",
        ),
        (
            res().hugepage_limits(vec![LinuxHugepageLimitBuilder::default().page_size("2XB").limit(1i64).build().unwrap()]).build().unwrap(),
            "invalid hugepageLimits.pageSize value \"2XB\": expected a size like 2MB, 1GB or 64KB",
        ),
    ];
    for (r, msg) in cases {
        // a valid pids value rides along and must not be written
        let mut r = r;
        r.set_pids(Some(
            LinuxPidsBuilder::default().limit(5i64).build().unwrap(),
        ));
        let e = f.m.apply(&r).unwrap_err();
        assert_eq!(e.to_string(), msg);
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        assert_eq!(get(&pids, "pids.max"), "max");
    }
}

#[test]
fn v1_update_failure_restores_previous_values() {
    let f = created_v1();
    // blkio files exist but the write target for a device weight does not
    let r = res()
        .cpu(
            LinuxCpuBuilder::default()
                .shares(300u64)
                .quota(30_000i64)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(50i64).build().unwrap())
        .memory(
            LinuxMemoryBuilder::default()
                .limit(4096i64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    // make the pids write fail in the kernel's way: the file vanished
    fs::remove_file(f.dir("pids").join("pids.max")).unwrap();
    fs::create_dir(f.dir("pids").join("pids.max")).unwrap();
    let e = f.m.update(&r).unwrap_err();
    assert!(e.to_string().starts_with("writing \"50\" to "), "{e}");
    assert!(e.to_string().contains("pids/ctr/pids.max"), "{e}");
    let cpu = f.dir("cpu,cpuacct");
    assert_eq!(get(&cpu, "cpu.shares"), "1024");
    assert_eq!(get(&cpu, "cpu.cfs_quota_us"), "-1");
    assert_eq!(
        get(&f.dir("memory"), "memory.limit_in_bytes"),
        "9223372036854771712"
    );
}

#[test]
fn v1_missing_controllers_and_files() {
    let f = created_v1();
    let e =
        f.m.apply(
            &res()
                .block_io(
                    LinuxBlockIoBuilder::default()
                        .weight(500u16)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .unwrap_err();
    assert!(
        e.to_string().starts_with("cannot set blockIO.weight 500"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("blkio/ctr/blkio.weight does not exist"),
        "{e}"
    );
    let e =
        f.m.apply(
            &res()
                .network(
                    LinuxNetworkBuilder::default()
                        .class_id(7u32)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot set network.classID 7: the net_cls controller is not available on this host"
    );
    let mut u = std::collections::HashMap::new();
    u.insert("memory.high".to_string(), "1000".to_string());
    let e = f.m.apply(&res().unified(u).build().unwrap()).unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot be applied on a cgroup v1 host"),
        "{e}"
    );
    let e =
        f.m.apply(
            &res()
                .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                    .page_size("2MB")
                    .limit(1i64)
                    .build()
                    .unwrap()])
                .build()
                .unwrap(),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot set hugepageLimits: the hugetlb controller is not available on this host"
    );
}

#[test]
fn v1_weight_device_and_unset_values() {
    let f = created_v1();
    put(&f.dir("blkio"), "blkio.weight_device", "");
    let r = res()
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight_device(vec![LinuxWeightDeviceBuilder::default()
                    .major(8i64)
                    .minor(16i64)
                    .weight(300u16)
                    .build()
                    .unwrap()])
                .build()
                .unwrap(),
        )
        // 0 means unset (runc), so nothing is written for pids
        .pids(LinuxPidsBuilder::default().limit(0i64).build().unwrap())
        .build()
        .unwrap();
    f.m.apply(&r).unwrap();
    assert_eq!(get(&f.dir("blkio"), "blkio.weight_device"), "8:16 300");
    assert_eq!(get(&f.dir("pids"), "pids.max"), "max");
}

#[test]
fn v1_stats_from_sample_files() {
    let f = created_v1();
    let s = f.m.stats().unwrap();
    assert_eq!(s.cpu.usage.total, 123_456);
    assert_eq!(s.cpu.usage.percpu, vec![100_000, 23_456]);
    assert_eq!(s.cpu.usage.user, 100_000);
    assert_eq!(s.cpu.throttling.throttled_periods, 2);
    assert_eq!(s.memory.usage.usage, 1_048_576);
    assert_eq!(s.memory.usage.max, 2_097_152);
    assert_eq!(s.memory.usage.failcnt, 1);
    assert_eq!(s.memory.cache, 4096);
    assert_eq!(s.memory.working_set, 1_048_576 - 8192);
    assert_eq!(s.memory.oom_kill, 3);
    assert_eq!(f.m.oom_kill_count().unwrap(), 3);
    assert_eq!(s.pids.current, 2);
    assert_eq!(s.pids.limit, 0);
    assert_eq!(s.blkio.io_service_bytes_recursive.len(), 2);
    assert_eq!(f.m.pids().unwrap(), vec![10, 11]);
}

#[test]
fn v1_freezer_state_and_mounts() {
    let f = created_v1();
    assert_eq!(f.m.freezer_state().unwrap(), FreezerState::Thawed);
    put(&f.dir("freezer"), "freezer.state", "FREEZING\n");
    assert_eq!(f.m.freezer_state().unwrap(), FreezerState::Freezing);
    let m = f.m.mounts();
    let names: Vec<_> = m
        .iter()
        .map(|m| (m.name.as_str(), m.options.as_str()))
        .collect();
    assert!(names.contains(&("cpu,cpuacct", "cpu,cpuacct")));
    assert!(names.contains(&("systemd", "none,name=systemd")));
    assert!(m.iter().all(|m| m.fs_type == "cgroup"));
}

#[test]
fn v1_destroy_removes_only_what_create_made() {
    let f = v1_fake();
    fs::create_dir_all(f.dir("memory")).unwrap(); // pre-existing: joined
    let cfg_state = {
        f.m.create().unwrap();
        f.m.to_state()
    };
    // a later invocation reopens from state
    let json = serde_json::to_string(&cfg_state).unwrap();
    let m2 = Manager::from_state(&serde_json::from_str(&json).unwrap()).unwrap();
    // plain dirs in a tempdir hold no cgroup files, so rmdir works once the fakes are gone
    m2.destroy().unwrap();
    assert!(f.dir("memory").exists());
    assert!(!f.dir("pids").exists());
    assert!(!f.dir("cpu,cpuacct").exists());
    // already gone is fine
    m2.destroy().unwrap();
}

#[test]
fn state_is_checked() {
    let f = v1_fake();
    let mut s = f.m.to_state();
    s.schema = 99;
    assert!(Manager::from_state(&s).is_err());
    let mut s = f.m.to_state();
    s.created.push("/etc".into());
    assert!(Manager::from_state(&s)
        .unwrap_err()
        .to_string()
        .contains("/etc"));
}

// ---------- v2 ----------

struct V2Fake {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    m: Manager,
}

fn v2_fake(path: Option<&str>, own: &str) -> V2Fake {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cgroup");
    fs::create_dir_all(&root).unwrap();
    let mi = format!("30 23 0:26 / {} rw - cgroup2 cgroup2 rw\n", root.display());
    put(
        &root,
        "cgroup.controllers",
        "cpuset cpu io memory hugetlb pids rdma misc\n",
    );
    put(&root, "cgroup.subtree_control", "");
    let cfg = CgroupConfig {
        path: path.map(PathBuf::from),
        id: "ctr".into(),
        systemd: false,
    };
    let m = Manager::with_root(&cfg, &root, &mi, &format!("0::{own}\n")).unwrap();
    V2Fake { _tmp: tmp, root, m }
}

fn v2_files(dir: &Path) {
    for (f, v) in [
        ("cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma"),
        ("cgroup.procs", "5\n"),
        ("cgroup.freeze", "0"),
        ("cgroup.events", "populated 1\nfrozen 0\n"),
        ("cpu.weight", "100"),
        ("cpu.max", "max 100000"),
        ("cpu.max.burst", "0"),
        ("cpu.idle", "0"),
        ("cpu.stat", "usage_usec 1000\nuser_usec 600\nsystem_usec 400\nnr_periods 7\nnr_throttled 3\nthrottled_usec 20\n"),
        ("cpu.pressure", "some avg10=0.50 avg60=0.10 avg300=0.00 total=99\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=9\n"),
        ("cpuset.cpus", ""),
        ("cpuset.mems", ""),
        ("cpuset.cpus.effective", "0-1"),
        ("memory.max", "max"),
        ("memory.low", "0"),
        ("memory.swap.max", "max"),
        ("memory.current", "4096"),
        ("memory.peak", "8192"),
        ("memory.swap.current", "100"),
        ("memory.stat", "file 1024\ninactive_file 512\nanon 3000\n"),
        ("memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\n"),
        ("memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
        ("memory.high", "max"),
        ("pids.max", "max"),
        ("pids.current", "1"),
        ("io.weight", "default 100"),
        ("io.max", ""),
        ("io.stat", "8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n"),
        ("hugetlb.2MB.max", "max"),
        ("hugetlb.2MB.rsvd.max", "max"),
        ("hugetlb.2MB.current", "2097152"),
        ("hugetlb.2MB.events", "max 1\n"),
        ("rdma.max", ""),
    ] {
        put(dir, f, v);
    }
}

fn created_v2() -> (V2Fake, PathBuf) {
    let f = v2_fake(Some("/berth/ctr"), "/");
    f.m.create().unwrap();
    let d = f.root.join("berth/ctr");
    v2_files(&d);
    (f, d)
}

#[test]
fn v2_paths_follow_runc() {
    let f = v2_fake(Some("/a/b"), "/user.slice/session.scope");
    let Manager::V2(v) = &f.m else { panic!() };
    assert_eq!(v.path(), f.root.join("a/b"));
    // relative: below the parent of our own cgroup
    let f = v2_fake(None, "/user.slice/session.scope");
    let Manager::V2(v) = &f.m else { panic!() };
    assert_eq!(v.path(), f.root.join("user.slice/ctr"));
    let f = v2_fake(Some("x/../../y"), "/");
    let Manager::V2(v) = &f.m else { panic!() };
    assert_eq!(v.path(), f.root.join("y"));
    assert!(f.m.is_v2());
    let m = f.m.mounts();
    assert_eq!(m.len(), 1);
    assert_eq!((m[0].name.as_str(), m[0].fs_type.as_str()), ("", "cgroup2"));
}

#[test]
fn v2_create_enables_controllers_on_ancestors() {
    let (f, _) = created_v2();
    // the fake file keeps the last write; enabling happens in one write
    assert_eq!(
        get(&f.root, "cgroup.subtree_control"),
        "+cpuset +cpu +io +memory +hugetlb +pids +rdma +misc"
    );
    let st = f.m.to_state();
    assert_eq!(
        st.created,
        vec![f.root.join("berth"), f.root.join("berth/ctr")]
    );
    assert!(st.v2);
}

#[test]
fn v2_apply_converts_values() {
    let (f, d) = created_v2();
    let r = res()
        .cpu(
            LinuxCpuBuilder::default()
                .shares(1024u64)
                .quota(50_000i64)
                .period(100_000u64)
                .burst(10_000u64)
                .idle(0i64)
                .cpus("1")
                .build()
                .unwrap(),
        )
        .memory(
            LinuxMemoryBuilder::default()
                .limit(100_000i64)
                .swap(300_000i64)
                .reservation(50_000i64)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(42i64).build().unwrap())
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight(500u16)
                .throttle_write_iops_device(vec![LinuxThrottleDeviceBuilder::default()
                    .major(8i64)
                    .minor(0i64)
                    .rate(300u64)
                    .build()
                    .unwrap()])
                .build()
                .unwrap(),
        )
        .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(4_194_304i64)
            .build()
            .unwrap()])
        .unified(
            [("memory.high".to_string(), "90000".to_string())]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()
        .unwrap();
    f.m.apply(&r).unwrap();
    assert_eq!(get(&d, "cpu.weight"), "100");
    assert_eq!(get(&d, "cpu.max"), "50000 100000");
    assert_eq!(get(&d, "cpu.max.burst"), "10000");
    assert_eq!(get(&d, "cpu.idle"), "0");
    assert_eq!(get(&d, "cpuset.cpus"), "1");
    assert_eq!(get(&d, "memory.max"), "100000");
    assert_eq!(get(&d, "memory.swap.max"), "200000");
    assert_eq!(get(&d, "memory.low"), "50000");
    assert_eq!(get(&d, "memory.high"), "90000");
    assert_eq!(get(&d, "pids.max"), "42");
    assert_eq!(get(&d, "io.weight"), "default 4950");
    assert_eq!(get(&d, "io.max"), "8:0 wiops=300");
    assert_eq!(get(&d, "hugetlb.2MB.max"), "4194304");
    assert_eq!(get(&d, "hugetlb.2MB.rsvd.max"), "4194304");
}

#[test]
fn v2_unlimited_and_errors() {
    let (f, d) = created_v2();
    let r = res()
        .memory(LinuxMemoryBuilder::default().limit(-1i64).build().unwrap())
        .cpu(
            LinuxCpuBuilder::default()
                .quota(-1i64)
                .period(20_000u64)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(-1i64).build().unwrap())
        .build()
        .unwrap();
    f.m.apply(&r).unwrap();
    assert_eq!(get(&d, "memory.max"), "max");
    assert_eq!(get(&d, "memory.swap.max"), "max");
    assert_eq!(get(&d, "cpu.max"), "max 20000");
    assert_eq!(get(&d, "pids.max"), "max");

    let e =
        f.m.apply(
            &res()
                .cpu(
                    LinuxCpuBuilder::default()
                        .realtime_runtime(1000i64)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("realtime CPU limits do not exist on cgroup v2"),
        "{e}"
    );
    let e =
        f.m.apply(
            &res()
                .memory(LinuxMemoryBuilder::default().swap(1000i64).build().unwrap())
                .build()
                .unwrap(),
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("a swap limit needs a memory limit"),
        "{e}"
    );
    let e =
        f.m.apply(
            &res()
                .unified(
                    [("memory.nope".to_string(), "1".to_string())]
                        .into_iter()
                        .collect::<std::collections::HashMap<_, _>>(),
                )
                .build()
                .unwrap(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("memory.nope does not exist"), "{e}");
    let e =
        f.m.apply(
            &res()
                .unified(
                    [("misc.max".to_string(), "x 1".to_string())]
                        .into_iter()
                        .collect::<std::collections::HashMap<_, _>>(),
                )
                .build()
                .unwrap(),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot set unified misc.max: the misc controller is not available on this host"
    );
    let e =
        f.m.apply(
            &res()
                .unified(
                    [("cgroup.procs".to_string(), "1".to_string())]
                        .into_iter()
                        .collect::<std::collections::HashMap<_, _>>(),
                )
                .build()
                .unwrap(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("managed by the runtime"), "{e}");
}

#[test]
fn v2_update_failure_restores_previous_values() {
    let (f, d) = created_v2();
    fs::remove_file(d.join("pids.max")).unwrap();
    fs::create_dir(d.join("pids.max")).unwrap();
    let r = res()
        .cpu(
            LinuxCpuBuilder::default()
                .shares(2048u64)
                .quota(10_000i64)
                .build()
                .unwrap(),
        )
        .memory(
            LinuxMemoryBuilder::default()
                .limit(1_000_000i64)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(9i64).build().unwrap())
        .build()
        .unwrap();
    let e = f.m.update(&r).unwrap_err();
    assert!(e.to_string().contains("pids.max"), "{e}");
    assert_eq!(get(&d, "cpu.weight"), "100");
    assert_eq!(get(&d, "cpu.max"), "max 100000");
    assert_eq!(get(&d, "memory.max"), "max");
}

#[test]
fn v2_stats_from_sample_files() {
    let (f, _) = created_v2();
    let s = f.m.stats().unwrap();
    assert_eq!(s.cpu.usage.total, 1_000_000);
    assert_eq!(s.cpu.usage.user, 600_000);
    assert_eq!(s.cpu.usage.kernel, 400_000);
    assert_eq!(s.cpu.throttling.periods, 7);
    assert_eq!(s.cpu.throttling.throttled_time, 20_000);
    assert_eq!(s.cpu.psi.unwrap().some.avg10, 0.5);
    assert_eq!(s.cpuset.cpus, vec![0, 1]);
    assert_eq!(s.memory.usage.usage, 4096);
    assert_eq!(s.memory.usage.limit, u64::MAX);
    assert_eq!(s.memory.usage.max, 8192);
    assert_eq!(s.memory.usage.failcnt, 4);
    assert_eq!(s.memory.swap.usage, 4196);
    assert_eq!(s.memory.cache, 1024);
    assert_eq!(s.memory.working_set, 4096 - 512);
    assert_eq!(s.memory.oom_events, 2);
    assert_eq!(s.memory.oom_kill, 1);
    assert!(s.memory.psi.is_some());
    assert_eq!(s.pids.current, 1);
    assert_eq!(s.blkio.io_service_bytes_recursive[0].value, 4096);
    assert_eq!(s.hugetlb["2MB"].usage, 2_097_152);
    assert_eq!(s.hugetlb["2MB"].failcnt, 1);
    assert_eq!(f.m.oom_kill_count().unwrap(), 1);
    assert_eq!(f.m.pids().unwrap(), vec![5]);
}

#[test]
fn v2_freezer_and_kill_files() {
    let (f, d) = created_v2();
    assert_eq!(f.m.freezer_state().unwrap(), FreezerState::Thawed);
    // the fake kernel reports frozen at once
    put(&d, "cgroup.events", "populated 1\nfrozen 1\n");
    f.m.freeze().unwrap();
    assert_eq!(get(&d, "cgroup.freeze"), "1");
    assert_eq!(f.m.freezer_state().unwrap(), FreezerState::Frozen);
    put(&d, "cgroup.events", "populated 1\nfrozen 0\n");
    assert_eq!(f.m.freezer_state().unwrap(), FreezerState::Freezing);
    f.m.thaw().unwrap();
    assert_eq!(get(&d, "cgroup.freeze"), "0");
    put(&d, "cgroup.kill", "");
    f.m.kill_all(nix::sys::signal::Signal::SIGKILL).unwrap();
    assert_eq!(get(&d, "cgroup.kill"), "1");
}

#[test]
fn join_plan_lists_tasks_files_and_the_cgroup2_dir() {
    let f = v1_fake();
    let plan = f.m.join_plan();
    assert!(plan.v2_dir.is_none());
    let mem = plan
        .v1_tasks
        .iter()
        .find(|(p, _)| p.starts_with(f.root.join("memory")))
        .expect("memory hierarchy");
    assert!(mem.0.ends_with("tasks"));
    assert!(!mem.1, "a controller hierarchy is not best effort");
    let named = plan
        .v1_tasks
        .iter()
        .find(|(p, _)| p.starts_with(f.root.join("systemd")));
    if let Some((_, best_effort)) = named {
        assert!(*best_effort, "name=systemd membership is best effort");
    }
    let v2 = v2_fake(Some("/ctr"), "/");
    let plan = v2.m.join_plan();
    assert!(plan.v1_tasks.is_empty());
    assert_eq!(plan.v2_dir, Some(v2.root.join("ctr")));
}

#[test]
fn destroy_leaves_other_containers_under_a_shared_parent() {
    // This container made the shared parent; a sibling appeared under it since.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cgroup");
    fs::create_dir_all(&root).unwrap();
    let mi = format!("30 23 0:26 / {} rw - cgroup2 cgroup2 rw\n", root.display());
    put(&root, "cgroup.controllers", "cpu memory pids\n");
    put(&root, "cgroup.subtree_control", "");
    let cfg = CgroupConfig {
        path: Some("/shared/a".into()),
        id: "a".into(),
        systemd: false,
    };
    let m = Manager::with_root(&cfg, &root, &mi, "0::/\n").unwrap();
    m.create().unwrap();
    fs::create_dir(root.join("shared/b")).unwrap();
    m.destroy().unwrap();
    assert!(!root.join("shared/a").exists());
    assert!(
        root.join("shared/b").is_dir(),
        "a sibling's cgroup was removed"
    );
    assert!(root.join("shared").is_dir());
}

#[test]
fn cgroup2_side_first_then_the_rest() {
    let f = v1_fake();
    f.m.create_cgroup2_side().unwrap();
    assert!(!f.dir("memory").exists(), "v1 dirs wait for create()");
    f.m.create().unwrap();
    assert!(f.dir("memory").is_dir());
    f.m.destroy().unwrap();
    assert!(!f.dir("memory").exists());
}
