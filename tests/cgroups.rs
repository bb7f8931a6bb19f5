//! Root integration tests of `berth-runtime`'s cgroup handling. Each runs a
//! busybox container and checks the effect in the kernel: the files of the
//! container's cgroup (found through `/proc/<init>/cgroup` and the mount table,
//! so the same test reads v1, hybrid and pure v2 hosts), the behaviour inside
//! the container, and what `events` reports.
//!
//! A controller the host lacks is skipped with a printed line. None of this
//! needs CAP_SYS_RESOURCE. scripts/vm-test.sh runs these on pure cgroup v2.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

const MIB: i64 = 1 << 20;

/// Create and start `id`; returns the host PID of its init.
fn start(rt: &Rt, id: &str, b: &Bundle) -> i32 {
    rt.create_ok(id, b);
    rt.ok(&["start", id]);
    rt.wait_status(id, "running");
    init_pid(rt, id)
}

/// The controller's directory in the container's cgroup and whether it is
/// cgroup2. `None` (with a skip line) when the host lacks the controller; a
/// panic when the host has it but the container's cgroup does not.
fn need(view: &CgroupView, controller: &str, test: &str) -> Option<(PathBuf, bool)> {
    if let Some(d) = view.dir(controller) {
        return Some(d);
    }
    assert!(
        !host_has_controller(controller),
        "the host has the {controller} controller but the container's cgroup does not: {view:?}"
    );
    println!("skipping the {controller} part of {test}: the host has no {controller} controller");
    None
}

fn read(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// A flat-keyed file ("key value" lines) as a map.
fn keyed(p: &Path) -> BTreeMap<String, u64> {
    read(p)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// The `data` object of `events --stats ID`.
fn stats(rt: &Rt, id: &str) -> Value {
    let out = rt.ok(&["events", "--stats", id]);
    let v: Value = serde_json::from_str(out.lines().next().unwrap_or(""))
        .unwrap_or_else(|e| panic!("events --stats printed no JSON ({e}): {out}"));
    assert_eq!(v["type"], "stats", "{v}");
    assert_eq!(v["id"], id, "{v}");
    v["data"].clone()
}

/// Is swap active on this machine? (Then a memory hog needs a swap limit too.)
fn swap_active() -> bool {
    fs::read_to_string("/proc/swaps")
        .map(|s| s.lines().count() > 1)
        .unwrap_or(false)
}

/// The limit files of the container's cgroup that `update` may touch, with
/// their contents: what must not change when an update fails.
fn limit_files(view: &CgroupView) -> BTreeMap<PathBuf, String> {
    const NAMES: &[&str] = &[
        "memory.limit_in_bytes",
        "memory.soft_limit_in_bytes",
        "memory.memsw.limit_in_bytes",
        "memory.max",
        "memory.low",
        "memory.swap.max",
        "cpu.shares",
        "cpu.cfs_quota_us",
        "cpu.cfs_period_us",
        "cpu.weight",
        "cpu.max",
        "cpuset.cpus",
        "cpuset.mems",
        "pids.max",
    ];
    let mut out = BTreeMap::new();
    for d in view.dirs() {
        for n in NAMES {
            if let Ok(s) = fs::read_to_string(d.join(n)) {
                out.insert(d.join(n), s);
            }
        }
    }
    assert!(!out.is_empty(), "no limit files found in {view:?}");
    out
}

#[test]
fn limits_are_in_the_cgroup_files() {
    let t = "limits_are_in_the_cgroup_files";
    root_only!(t);
    let rt = Rt::new();
    let id = unique("cg-limits");
    let mut b = Bundle::new(&id, &["sleep", "100000"]);
    b.edit(|c| {
        c["linux"]["resources"] = json!({
            "devices": [{"allow": false, "access": "rwm"}],
            "memory": {"limit": 64 * MIB, "reservation": 32 * MIB},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
            "pids": {"limit": 42}
        })
    });
    let pid = start(&rt, &id, &b);
    let view = CgroupView::of(pid);
    println!("{id}: {view:?}");
    for d in view.dirs() {
        assert!(
            d.ends_with(format!("berth-test-{id}")),
            "init is not in the container's cgroup: {}",
            d.display()
        );
    }
    if let Some((d, v2)) = need(&view, "memory", t) {
        let (limit, low) = if v2 {
            ("memory.max", "memory.low")
        } else {
            ("memory.limit_in_bytes", "memory.soft_limit_in_bytes")
        };
        assert_eq!(read(&d.join(limit)), (64 * MIB).to_string());
        assert_eq!(read(&d.join(low)), (32 * MIB).to_string());
        // memory+swap: set through update, when the kernel accounts swap.
        let swap_file = if v2 {
            "memory.swap.max"
        } else {
            "memory.memsw.limit_in_bytes"
        };
        if d.join(swap_file).exists() {
            rt.ok(&["update", "--memory", "64m", "--memory-swap", "96m", &id]);
            // v2 holds the swap alone: memory+swap minus memory.
            let want = if v2 { 32 * MIB } else { 96 * MIB };
            assert_eq!(read(&d.join(swap_file)), want.to_string());
        } else {
            println!("skipping the swap part of {t}: no {swap_file} (swap accounting is off)");
        }
        let s = stats(&rt, &id);
        assert_eq!(s["memory"]["usage"]["limit"], 64 * MIB, "{s}");
    }
    if let Some((d, v2)) = need(&view, "cpu", t) {
        if v2 {
            // runc's and crun's shares -> weight conversion maps 512 to 59.
            assert_eq!(read(&d.join("cpu.weight")), "59");
            assert_eq!(read(&d.join("cpu.max")), "50000 100000");
        } else {
            assert_eq!(read(&d.join("cpu.shares")), "512");
            assert_eq!(read(&d.join("cpu.cfs_quota_us")), "50000");
            assert_eq!(read(&d.join("cpu.cfs_period_us")), "100000");
        }
    }
    if let Some((d, _)) = need(&view, "cpuset", t) {
        assert_eq!(read(&d.join("cpuset.cpus")), "0");
        assert_eq!(read(&d.join("cpuset.mems")), "0");
        let s = stats(&rt, &id);
        assert_eq!(s["cpuset"]["cpus"], json!([0]), "{s}");
    }
    if let Some((d, _)) = need(&view, "pids", t) {
        assert_eq!(read(&d.join("pids.max")), "42");
        assert_eq!(stats(&rt, &id)["pids"]["limit"], 42);
    }
    rt.ok(&["delete", "--force", &id]);
    assert_no_leftovers(&rt, &id, b.path());
}

#[test]
fn oom_kill_is_reported_by_events() {
    let t = "oom_kill_is_reported_by_events";
    root_only!(t);
    if !host_has_controller("memory") {
        println!("skipping {t}: the host has no memory controller");
        return;
    }
    let rt = Rt::new();
    let id = unique("cg-oom");
    let mut b = Bundle::new(&id, &["sleep", "100000"]);
    b.edit(|c| {
        let mut mem = json!({"limit": 32 * MIB});
        if swap_active() {
            mem["swap"] = json!(32 * MIB);
        }
        c["linux"]["resources"]["memory"] = mem;
    });
    let pid = start(&rt, &id, &b);
    let (dir, v2) = CgroupView::of(pid).dir("memory").expect("memory cgroup");
    let events = Background::spawn({
        let mut c = rt.cmd();
        c.args(["events", "--interval", "1s", &id]);
        c
    });
    // The first stats line means `events` has read the OOM count before the hog.
    wait_until("events to print stats", || {
        events.output().contains("\"type\":\"stats\"")
    });
    // dd's 128 MiB buffer, filled from /dev/zero, cannot fit in 32 MiB.
    let o = rt.out(&[
        "exec",
        &id,
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=128M",
        "count=1",
    ]);
    assert!(
        !o.status.success(),
        "the memory hog survived: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        o.status.code(),
        Some(137),
        "exec should report SIGKILL as 137: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let kills = || {
        if v2 {
            keyed(&dir.join("memory.events"))["oom_kill"]
        } else {
            keyed(&dir.join("memory.oom_control"))["oom_kill"]
        }
    };
    assert!(kills() >= 1, "the kernel counted no OOM kill");
    wait_until("events to print an oom line", || {
        events.output().contains("\"type\":\"oom\"")
    });
    let line = events
        .output()
        .lines()
        .find(|l| l.contains("\"type\":\"oom\""))
        .map(String::from)
        .unwrap();
    let ev: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(ev["id"], id.as_str(), "{line}");
    assert_eq!(rt.status(&id), "running", "only the hog should have died");
    let s = stats(&rt, &id);
    let mem = &s["memory"];
    assert!(
        mem["usage"]["failcnt"].as_u64().unwrap_or(0) >= 1,
        "no limit hit counted: {mem}"
    );
    assert!(
        mem["oomKill"].as_u64().unwrap_or(0) >= 1,
        "events --stats has no OOM kill count: {mem}"
    );
    if v2 {
        assert!(
            mem["oomEvents"].as_u64().unwrap_or(0) >= 1,
            "events --stats has no OOM event count: {mem}"
        );
    }
    drop(events);
    rt.ok(&["delete", "--force", &id]);
    assert_no_leftovers(&rt, &id, b.path());
}

#[test]
fn fork_bomb_stops_at_pids_max() {
    let t = "fork_bomb_stops_at_pids_max";
    root_only!(t);
    if !host_has_controller("pids") {
        println!("skipping {t}: the host has no pids controller");
        return;
    }
    let limit = 16;
    let rt = Rt::new();
    let id = unique("cg-forkbomb");
    // A subshell forks sleepers until fork fails (which ends the subshell);
    // then the main shell counts the processes with builtins only (no fork),
    // and execs into sleep.
    let mut b = Bundle::new(
        &id,
        &sh("( i=0; while [ $i -lt 200 ]; do sleep 100000 & i=$((i+1)); done; echo forked-all ) >/tmp/loop 2>/tmp/forkerr; \
             set -- /proc/[0-9]*; read -r err </tmp/forkerr; \
             { echo \"procs=$#\"; echo \"err=$err\"; echo end; } >/tmp/result; exec sleep 100000"),
    );
    b.edit(|c| {
        c["root"]["readonly"] = json!(false);
        c["linux"]["resources"]["pids"] = json!({"limit": limit});
    });
    let pid = start(&rt, &id, &b);
    let result = b.rootfs().join("tmp/result");
    wait_until("the fork bomb to stop", || {
        fs::read_to_string(&result)
            .map(|s| s.contains("end"))
            .unwrap_or(false)
    });
    let text = read(&result);
    println!("{id}: {text}");
    let procs: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count: {text}"));
    assert!(
        procs <= limit,
        "{procs} processes in a container limited to {limit}"
    );
    assert!(
        procs >= limit - 2,
        "the bomb stopped at {procs}, well below {limit}: {text}"
    );
    assert!(
        !read(&b.rootfs().join("tmp/loop")).contains("forked-all"),
        "all 200 forks succeeded"
    );
    assert!(
        text.to_lowercase().contains("fork"),
        "the shell did not report a failed fork: {text}"
    );
    let (d, _) = CgroupView::of(pid).dir("pids").expect("pids cgroup");
    let current: i64 = read(&d.join("pids.current")).parse().unwrap();
    assert!(current <= limit, "pids.current {current} > {limit}");
    if d.join("pids.events").exists() {
        assert!(
            keyed(&d.join("pids.events"))
                .get("max")
                .copied()
                .unwrap_or(0)
                >= 1,
            "pids.events counted no refused fork"
        );
    }
    rt.ok(&["delete", "--force", &id]);
    assert_no_leftovers(&rt, &id, b.path());
}

#[test]
fn cpu_quota_throttles() {
    let t = "cpu_quota_throttles";
    root_only!(t);
    if !host_has_controller("cpu") {
        println!("skipping {t}: the host has no cpu controller");
        return;
    }
    let rt = Rt::new();
    let id = unique("cg-throttle");
    let mut b = Bundle::new(&id, &sh("while :; do :; done"));
    b.edit(|c| c["linux"]["resources"]["cpu"] = json!({"quota": 10000, "period": 100000}));
    let pid = start(&rt, &id, &b);
    let (d, _) = CgroupView::of(pid).dir("cpu").expect("cpu cgroup");
    // Both counted: a period can be counted as throttled before its
    // throttled time is (the time is added when the throttling ends).
    let stat = |key: &str| keyed(&d.join("cpu.stat")).get(key).copied().unwrap_or(0);
    wait_until("cpu.stat to count throttled periods and time", || {
        stat("nr_throttled") > 0 && (stat("throttled_time") > 0 || stat("throttled_usec") > 0)
    });
    let s = stats(&rt, &id);
    let th = &s["cpu"]["throttling"];
    assert!(
        th["throttledPeriods"].as_u64().unwrap_or(0) > 0,
        "events --stats shows no throttling: {s}"
    );
    assert!(th["periods"].as_u64().unwrap_or(0) > 0, "{th}");
    assert!(th["throttledTime"].as_u64().unwrap_or(0) > 0, "{th}");
    rt.ok(&["delete", "--force", &id]);
    assert_no_leftovers(&rt, &id, b.path());
}

#[test]
fn device_outside_the_allow_list_cannot_be_opened() {
    let t = "device_outside_the_allow_list_cannot_be_opened";
    root_only!(t);
    let host = Path::new("/dev/kmsg");
    let Ok(meta) = fs::metadata(host) else {
        println!("skipping {t}: the host has no /dev/kmsg");
        return;
    };
    let rdev = std::os::unix::fs::MetadataExt::rdev(&meta);
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    let rt = Rt::new();
    // Opened for writing only: reading /dev/kmsg would also need CAP_SYSLOG
    // (dmesg_restrict), which would hide what the device cgroup does.
    let script = "( : >/dev/hostkmsg ) 2>/dev/null && echo kmsg-opened || echo kmsg-denied; \
                  ( : </dev/null ) && echo null-opened";
    let bundle = |id: &str, rules: Value| {
        let mut b = Bundle::new(id, &sh(script));
        b.edit(|c| {
            c["linux"]["resources"]["devices"] = rules;
            c["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/dev/hostkmsg", "type": "bind",
                "source": "/dev/kmsg", "options": ["bind"]
            }));
        });
        b
    };
    // Deny all: the bind-mounted node is there, but the cgroup refuses it.
    let id = unique("cg-dev-deny");
    let b = bundle(&id, json!([{"allow": false, "access": "rwm"}]));
    rt.create_ok(&id, &b);
    let view = CgroupView::of(init_pid(&rt, &id));
    match view.v1.get("devices") {
        Some(d) => {
            let list = read(&d.join("devices.list"));
            assert!(!list.contains("a *:* rwm"), "devices.list allows all");
            assert!(list.contains("c 1:3 rwm"), "no /dev/null rule: {list}");
            assert!(
                !list.contains(&format!("c {major}:{minor} ")),
                "kmsg allowed: {list}"
            );
        }
        None => println!("{t}: devices are a BPF program on cgroup2; checked by behaviour"),
    }
    rt.ok(&["delete", &id]);
    assert_no_leftovers(&rt, &id, b.path());
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "kmsg-denied\nnull-opened\n");
    assert_no_leftovers(&rt, &id, b.path());
    // The same node, allowed for writing: the refusal above was the cgroup's.
    let id2 = unique("cg-dev-allow");
    let b2 = bundle(
        &id2,
        json!([{"allow": false, "access": "rwm"},
               {"allow": true, "type": "c", "major": major, "minor": minor, "access": "w"}]),
    );
    let (code, out, err) = rt.run(&id2, &b2);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "kmsg-opened\nnull-opened\n");
    assert_no_leftovers(&rt, &id2, b2.path());
}

#[test]
fn frozen_container_makes_no_progress_until_thawed() {
    let t = "frozen_container_makes_no_progress_until_thawed";
    root_only!(t);
    let rt = Rt::new();
    let id = unique("cg-freeze");
    let mut b = Bundle::new(
        &id,
        &sh("i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.01; done"),
    );
    b.edit(|c| c["root"]["readonly"] = json!(false));
    let pid = start(&rt, &id, &b);
    let view = CgroupView::of(pid);
    let freezer = || -> String {
        match (view.v1.get("freezer"), &view.v2) {
            (Some(d), _) => read(&d.join("freezer.state")),
            (None, Some(d)) => {
                let frozen = keyed(&d.join("cgroup.events"))["frozen"];
                format!(
                    "cgroup.freeze={} frozen={frozen}",
                    read(&d.join("cgroup.freeze"))
                )
            }
            (None, None) => panic!("no freezer in {view:?}"),
        }
    };
    let (frozen_state, thawed_state) = if view.v1.contains_key("freezer") {
        ("FROZEN", "THAWED")
    } else {
        ("cgroup.freeze=1 frozen=1", "cgroup.freeze=0 frozen=0")
    };
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
    assert_eq!(freezer(), frozen_state);
    let at_pause = count();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(), at_pause, "a frozen container made progress");
    assert_eq!(freezer(), frozen_state);
    rt.ok(&["resume", &id]);
    assert_eq!(rt.status(&id), "running");
    assert_eq!(freezer(), thawed_state);
    wait_until("progress after thawing", || count() > at_pause);
    rt.ok(&["delete", "--force", &id]);
    assert_no_leftovers(&rt, &id, b.path());
}

#[test]
fn update_changes_limits_and_a_bad_update_changes_nothing() {
    let t = "update_changes_limits_and_a_bad_update_changes_nothing";
    root_only!(t);
    let rt = Rt::new();
    let id = unique("cg-update");
    let mut b = Bundle::new(&id, &["sleep", "100000"]);
    b.edit(|c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 64 * MIB});
        c["linux"]["resources"]["pids"] = json!({"limit": 42});
        c["linux"]["resources"]["cpu"] = json!({"shares": 512, "quota": 50000, "period": 100000});
    });
    let pid = start(&rt, &id, &b);
    let view = CgroupView::of(pid);
    rt.ok(&[
        "update",
        "--memory",
        "128m",
        "--pids-limit",
        "33",
        "--cpu-share",
        "1024",
        "--cpu-quota",
        "20000",
        "--cpu-period",
        "50000",
        &id,
    ]);
    if let Some((d, v2)) = need(&view, "memory", t) {
        let f = if v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        assert_eq!(read(&d.join(f)), (128 * MIB).to_string());
    }
    if let Some((d, _)) = need(&view, "pids", t) {
        assert_eq!(read(&d.join("pids.max")), "33");
    }
    if let Some((d, v2)) = need(&view, "cpu", t) {
        if v2 {
            assert_eq!(read(&d.join("cpu.weight")), "100");
            assert_eq!(read(&d.join("cpu.max")), "20000 50000");
        } else {
            assert_eq!(read(&d.join("cpu.shares")), "1024");
            assert_eq!(read(&d.join("cpu.cfs_quota_us")), "20000");
            assert_eq!(read(&d.join("cpu.cfs_period_us")), "50000");
        }
    }
    // A resources file, as containerd passes it.
    let res = b.path().join("update.json");
    fs::write(&res, r#"{"pids": {"limit": 55}}"#).unwrap();
    rt.ok(&["update", "--resources", res.to_str().unwrap(), &id]);
    if let Some((d, _)) = view.dir("pids") {
        assert_eq!(read(&d.join("pids.max")), "55");
    }

    // Invalid updates, each also carrying valid changes: all refused, nothing written.
    let before = limit_files(&view);
    let cases: &[(&[&str], &[&str])] = &[
        (&["--cpu-share", "0", "--pids-limit", "99"], &["shares"]),
        (
            &[
                "--memory",
                "200m",
                "--pids-limit",
                "99",
                "--cpu-period",
                "5000000",
            ],
            &["period"],
        ),
        (
            &[
                "--pids-limit",
                "99",
                "--cpu-quota",
                "500",
                "--cpu-period",
                "100000",
            ],
            &["quota"],
        ),
        (&["--memory", "200m", "--memory-swap", "100m"], &["swap"]),
        (&["--pids-limit", "99", "--cpuset-cpus", "0-abc"], &["cpus"]),
        (&["--memory", "lots"], &["lots"]),
    ];
    for (args, want) in cases {
        let mut all: Vec<&str> = vec!["update"];
        all.extend_from_slice(args);
        all.push(&id);
        let err = rt.fails(&all);
        println!("{args:?}: {}", err.trim());
        let lower = err.to_lowercase();
        assert!(
            want.iter().any(|w| lower.contains(w)),
            "update {args:?}: the error names none of {want:?}: {err}"
        );
        assert_eq!(
            limit_files(&view),
            before,
            "update {args:?} failed but changed the cgroup"
        );
    }
    // A cpuset that does not exist on this machine, when cpuset is there.
    if view.dir("cpuset").is_some() {
        let err = rt.fails(&["update", "--pids-limit", "99", "--cpuset-cpus", "4095", &id]);
        println!("cpuset 4095: {}", err.trim());
        assert!(err.contains("cpuset"), "{err}");
        assert_eq!(
            limit_files(&view),
            before,
            "a failed cpuset update changed the cgroup"
        );
    }
    assert_eq!(rt.status(&id), "running");
    rt.ok(&["delete", "--force", &id]);
    assert_no_leftovers(&rt, &id, b.path());
}

#[test]
fn bad_values_at_create_fail_and_leave_no_cgroup() {
    let t = "bad_values_at_create_fail_and_leave_no_cgroup";
    root_only!(t);
    let rt = Rt::new();
    let cases: Vec<(&str, Value, &[&str])> = vec![
        // Values the JSON types refuse: the error names the file and the value.
        (
            "neg-blkio-weight",
            json!({"blockIO": {"weight": -5}}),
            &["-5"],
        ),
        ("neg-shares", json!({"cpu": {"shares": -2}}), &["-2"]),
        ("shares-1", json!({"cpu": {"shares": 1}}), &["shares"]),
        (
            "dev-type",
            json!({"devices": [{"allow": true, "type": "x", "major": 1, "minor": 3, "access": "r"}]}),
            &["`x`", "\"x\""],
        ),
        (
            "dev-access",
            json!({"devices": [{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwz"}]}),
            &["access", "rwz"],
        ),
        (
            "swap-below-memory",
            json!({"memory": {"limit": 64 * MIB, "swap": 32 * MIB}}),
            &["swap"],
        ),
        ("bad-cpus", json!({"cpu": {"cpus": "0-abc"}}), &["cpus"]),
        (
            "period-too-long",
            json!({"cpu": {"quota": 10000, "period": 5_000_000}}),
            &["period"],
        ),
        (
            "quota-too-small",
            json!({"cpu": {"quota": 500, "period": 100000}}),
            &["quota"],
        ),
    ];
    for (name, resources, want) in cases {
        let id = unique(&format!("cg-bad-{name}"));
        let mut b = Bundle::new(&id, &["true"]);
        b.edit(|c| {
            for (k, v) in resources.as_object().unwrap() {
                c["linux"]["resources"][k] = v.clone();
            }
        });
        let o = rt.create(&id, &b, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        println!("{name}: {}", err.trim());
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        let lower = err.to_lowercase();
        assert!(
            want.iter().any(|w| lower.contains(w)),
            "{name}: the error names none of {want:?}: {err}"
        );
        assert_no_leftovers(&rt, &id, b.path());
    }
}

#[test]
fn cgroup_namespace_sees_only_its_own_subtree() {
    let t = "cgroup_namespace_sees_only_its_own_subtree";
    root_only!(t);
    if !Path::new("/proc/self/ns/cgroup").exists() {
        println!("skipping {t}: no cgroup namespaces");
        return;
    }
    let rt = Rt::new();
    let id = unique("cg-ns");
    // The default spec has a cgroup namespace and a read-only cgroup mount.
    let mut b = Bundle::new(
        &id,
        &sh(
            "cat /proc/self/cgroup; echo ---; grep ' - cgroup' /proc/self/mountinfo; echo ---; \
             if [ -f /sys/fs/cgroup/cgroup.controllers ]; then d=/sys/fs/cgroup; m=$d/memory.max; \
             else d=/sys/fs/cgroup/memory; m=$d/memory.limit_in_bytes; fi; \
             cat $m 2>/dev/null || echo no-memory; echo ---; cat $d/cgroup.procs; echo ---; \
             mkdir $d/berth-probe 2>/dev/null && echo mkdir-ok || echo mkdir-refused; echo ---; \
             ls /sys/fs/cgroup $d",
        ),
    );
    b.edit(|c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 48 * MIB});
        let ns = c["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.iter().any(|n| n["type"] == "cgroup"), "{ns:?}");
    });
    let (code, out, err) = rt.run(&id, &b);
    assert_eq!(code, 0, "{err}");
    println!("{out}");
    let parts: Vec<&str> = out.split("---\n").collect();
    assert_eq!(parts.len(), 6, "{out}");
    for l in parts[0].lines() {
        assert!(l.ends_with(":/"), "/proc/self/cgroup shows a path: {l}");
    }
    assert!(!parts[1].trim().is_empty(), "no cgroup mount: {out}");
    for l in parts[1].lines() {
        let fields: Vec<&str> = l.split(' ').collect();
        assert_eq!(fields[3], "/", "the mount shows more than its subtree: {l}");
        assert!(
            fields[5].split(',').any(|o| o == "ro"),
            "a cgroup mount is writable: {l}"
        );
    }
    if host_has_controller("memory") {
        assert_eq!(parts[2].trim(), (48 * MIB).to_string(), "{out}");
    }
    assert!(
        parts[3].lines().any(|l| l.trim() == "1"),
        "cgroup.procs lacks the container's init: {out}"
    );
    assert_eq!(parts[4].trim(), "mkdir-refused");
    assert!(
        !parts[5].contains("berth-test"),
        "the host's tree shows: {out}"
    );
    assert_no_leftovers(&rt, &id, b.path());
}
