//! Root integration tests of the engine's generated bundles: the config that
//! `berth-engine` writes, run by `berth-runtime`, checked from inside the
//! container.

use berth_engine::process::{self, ProcessFlags};
use berth_engine::spec::{self, SecurityFlags};
use berth_engine::user;
use berth_tests::*;
use serde_json::json;

/// Runs `script` in a busybox bundle whose config is the engine's, with
/// `security`; returns the exit code and stdout.
fn run_engine_spec(test: &str, script: &str, security: &SecurityFlags) -> (i32, String) {
    let rt = Rt::new();
    let id = unique(test);
    let mut b = Bundle::new(&id, &["true"]);
    let flags = ProcessFlags {
        cmd: vec!["sh".into(), "-c".into(), script.into()],
        ..ProcessFlags::default()
    };
    let plan = process::plan(None, &id, &flags).expect("plan");
    let passwd = std::fs::read_to_string(b.rootfs().join("etc/passwd")).ok();
    let u = user::resolve(&plan.user, passwd.as_deref(), None).expect("user");
    let s = spec::build(&plan, &u, &id, "rootfs", false, security).expect("spec");
    let mut v = serde_json::to_value(s).expect("json");
    v["linux"]["cgroupsPath"] = json!(format!("/berth-test-{id}"));
    b.edit(|c| *c = v);
    let (code, out, err) = rt.run(&id, &b);
    assert_no_leftovers(&rt, &id, b.path());
    assert!(err.is_empty() || code == 0, "stderr: {err}");
    (code, out)
}

const PROBE: &str = "\
grep CapEff /proc/self/status
mkdir -p /mnt
unshare -n true 2>/dev/null && echo unshare=ok || echo unshare=refused
mount -t tmpfs none /mnt 2>/dev/null && echo mount=ok || echo mount=refused
echo interrupts=$(wc -c </proc/interrupts)
echo x 2>/dev/null >/proc/sys/kernel/domainname && echo procsys=rw || echo procsys=ro
(true &) ; wait ; echo fork=ok
";

/// docker's defaults hold: its fourteen capabilities (CapEff a80425fb, as in
/// `docker run`), seccomp refusing unshare and mount, /proc/interrupts masked,
/// /proc/sys read-only, and ordinary forks working (clone3 answers ENOSYS,
/// so libc falls back to clone without namespace flags).
#[test]
fn default_spec_confines_the_container() {
    if !need_root("default_spec_confines_the_container") {
        return;
    }
    let (code, out) = run_engine_spec("eng-default", PROBE, &SecurityFlags::default());
    assert_eq!(code, 0, "{out}");
    let want = [
        "CapEff:\t00000000a80425fb",
        "unshare=refused",
        "mount=refused",
        "interrupts=0",
        "procsys=ro",
        "fork=ok",
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), want, "{out}");
}

/// `--cap-add SYS_ADMIN` opens mount and unshare (capability and seccomp
/// alike); `--privileged` lifts the masks and read-only paths too.
#[test]
fn capabilities_and_privileged_lift_the_defaults() {
    if !need_root("capabilities_and_privileged_lift_the_defaults") {
        return;
    }
    let admin = SecurityFlags {
        cap_add: vec!["sys_admin".into()],
        ..SecurityFlags::default()
    };
    let (code, out) = run_engine_spec("eng-admin", PROBE, &admin);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("unshare=ok") && out.contains("mount=ok"),
        "{out}"
    );
    assert!(
        out.contains("interrupts=0") && out.contains("procsys=ro"),
        "{out}"
    );

    let privileged = SecurityFlags {
        privileged: true,
        ..SecurityFlags::default()
    };
    let (code, out) = run_engine_spec("eng-priv", PROBE, &privileged);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("unshare=ok") && out.contains("mount=ok"),
        "{out}"
    );
    assert!(out.contains("procsys=rw"), "{out}");
    assert!(!out.contains("interrupts=0"), "{out}");
}
