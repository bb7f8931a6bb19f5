//! Root integration tests of the engine's generated bundles: the config that
//! `berth-engine` writes, run by `berth-runtime`, checked from inside the
//! container.

use std::path::Path;
use std::process::Command;

use berth_engine::bundle::{self, BundleOptions};
use berth_engine::process::{self, ProcessFlags};
use berth_engine::spec::{self, SecurityFlags};
use berth_engine::user;
use berth_image::platform::Platform;
use berth_image::store::{ImageStore, StoreOptions};
use berth_tests::registry::TestRegistry;
use berth_tests::*;
use serde_json::json;

/// Runs `script` in a busybox bundle whose config is the engine's, with
/// `security`; returns the exit code and stdout.
fn run_engine_spec(test: &str, script: &str, security: &SecurityFlags) -> (i32, String) {
    run_engine_spec_with(test, script, security, |_| {})
}

/// As [`run_engine_spec`], with `prepare` adding to the rootfs first.
fn run_engine_spec_with(
    test: &str,
    script: &str,
    security: &SecurityFlags,
    prepare: impl FnOnce(&Path),
) -> (i32, String) {
    let rt = Rt::new();
    let id = unique(test);
    let mut b = Bundle::new(&id, &["true"]);
    prepare(&b.rootfs());
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

/// A static probe that tries `io_uring_setup` and prints the outcome.
const IO_URING_PROBE: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
    char params[120];
    memset(params, 0, sizeof params);
    long fd = syscall(425 /* io_uring_setup */, 4, params);
    if (fd >= 0) { puts("io_uring_setup=ok"); return 0; }
    printf("io_uring_setup=%s\n", strerror(errno));
    return 0;
}
"#;

/// Compiles [`IO_URING_PROBE`] into `rootfs/io_uring_probe`.
fn add_io_uring_probe(rootfs: &Path) {
    let src = rootfs.join("io_uring_probe.c");
    std::fs::write(&src, IO_URING_PROBE).unwrap();
    run_ok(
        Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(rootfs.join("io_uring_probe"))
            .arg(&src),
    );
}

/// io_uring is refused by the default profile (moby since 25, containerd
/// since 2.0: its history of kernel escapes), while the kernel offers it:
/// the same probe unconfined gets a ring.
#[test]
fn default_profile_refuses_io_uring() {
    if !need_root("default_profile_refuses_io_uring") {
        return;
    }
    let (code, out) = run_engine_spec_with(
        "eng-uring",
        "/io_uring_probe",
        &SecurityFlags::default(),
        add_io_uring_probe,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.trim(),
        "io_uring_setup=Operation not permitted",
        "{out}"
    );
    let unconfined = SecurityFlags {
        seccomp: spec::Seccomp::Unconfined,
        ..SecurityFlags::default()
    };
    let (code, out) = run_engine_spec_with(
        "eng-uring-u",
        "/io_uring_probe",
        &unconfined,
        add_io_uring_probe,
    );
    assert_eq!(code, 0, "{out}");
    // Otherwise the kernel itself refuses io_uring (kernel.io_uring_disabled)
    // and the first check proved nothing.
    assert_eq!(out.trim(), "io_uring_setup=ok", "unconfined: {out}");
}

/// A busybox image with a user `app` (uid 1000, group `app` 1000 and
/// member of `audio` 29), `WorkingDir /srv`, `Env GREETING=hi` and
/// `Cmd ["id"]`, pushed to a loopback registry and pulled into a store.
fn pulled_image(tmp: &Path, reg: &TestRegistry) -> ImageStore {
    let rootfs = tmp.join("rootfs");
    run_ok(Command::new(workspace().join("scripts/mkrootfs.sh")).arg(&rootfs));
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::create_dir_all(rootfs.join("srv")).unwrap();
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\naudio:x:29:app\napp:x:1000:\n",
    )
    .unwrap();
    let layout = tmp.join("layout");
    let config = json!({
        "User": "app", "WorkingDir": "/srv", "Env": ["PATH=/bin", "GREETING=hi"], "Cmd": ["id"],
    });
    run_ok(
        Command::new(workspace().join("scripts/mkimage.sh"))
            .env("MKIMAGE_CONFIG", config.to_string())
            .arg(&layout)
            .arg("latest")
            .arg(&rootfs),
    );
    reg.push_oci_layout(&layout, "latest", "eng/bb:latest");
    let store = ImageStore::open(StoreOptions::new(&tmp.join("store"))).expect("store");
    store
        .pull(
            &format!("{}/eng/bb:latest", reg.addr),
            &Platform::host(),
            &berth_image::store::NoProgress,
        )
        .expect("pull");
    store
}

/// A bundle made from a pulled image runs the image's command as the
/// image's user, in its working directory and environment, with the
/// generated /etc files; removing it leaves no mount, snapshot or directory,
/// and a bad USER leaves nothing behind either.
#[test]
fn bundle_from_a_pulled_image_runs_and_is_removed() {
    if !need_root("bundle_from_a_pulled_image_runs_and_is_removed") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = TestRegistry::start();
    let store = pulled_image(tmp.path(), &reg);
    let img = store
        .get(&format!("{}/eng/bb:latest", reg.addr), &Platform::host())
        .expect("image");
    let rt = Rt::new();
    let id = unique("eng-bundle");
    let dir = tmp.path().join("bundle");
    let o = BundleOptions {
        id: id.clone(),
        hostname: Some("box".into()),
        process: ProcessFlags {
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "id; pwd; echo $GREETING $HOME; cat /etc/hostname; grep box /etc/hosts".into(),
            ],
            ..ProcessFlags::default()
        },
        security: SecurityFlags::default(),
        cgroups_path: None,
        host: Default::default(),
        volumes: berth_engine::volumes::VolumeStore::new(tmp.path()),
        init: None,
    };
    let b = bundle::create(&store, &img, &dir, &o).expect("bundle");
    let o2 = rt.out(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    let (code, out, err) = (
        o2.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o2.stdout).into_owned(),
        String::from_utf8_lossy(&o2.stderr).into_owned(),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "uid=1000(app) gid=1000(app) groups=29(audio)\n/srv\nhi /home/app\nbox\n127.0.1.1\tbox\n"
    );
    bundle::remove(&store, &dir, &id).expect("remove");
    assert_no_leftovers(&rt, &id, &dir);
    assert!(!dir.exists());
    assert!(store
        .snapshotter()
        .stat(&bundle::snapshot_key(&id))
        .unwrap()
        .is_none());
    assert!(!std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(dir.to_str().unwrap()));
    // Idempotent.
    bundle::remove(&store, &dir, &id).expect("remove again");

    let bad = BundleOptions {
        process: ProcessFlags {
            user: Some("nobody".into()),
            ..ProcessFlags::default()
        },
        ..o
    };
    let e = bundle::create(&store, &img, &dir, &bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nobody") && e.contains(&id), "{e}");
    assert!(!dir.exists());
    assert!(store
        .snapshotter()
        .stat(&bundle::snapshot_key(&id))
        .unwrap()
        .is_none());
}
