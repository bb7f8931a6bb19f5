//! Root integration tests of the host flags (`berth_engine::host`): bundles
//! made by `bundle::create` from a pulled busybox image with `-v`, `--tmpfs`,
//! resource limits, `--ulimit`, `--device` and `--network`, run by
//! `berth-runtime` and checked from inside; bad flags leave nothing behind.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_engine::bundle::{self, BundleOptions};
use berth_engine::host::{HostConfig, HostFlags};
use berth_engine::process::ProcessFlags;
use berth_engine::spec::SecurityFlags;
use berth_engine::volumes::VolumeStore;
use berth_image::platform::Platform;
use berth_image::store::{ImageStore, LocalImage, StoreOptions};
use berth_tests::registry::TestRegistry;
use berth_tests::*;
use serde_json::json;

/// A pulled busybox image with `/srv/seed/file` (a directory owned by
/// 1000:1000, mode 0750) and `Volumes {"/cache"}` holding `/cache/img`.
struct Fixture {
    tmp: tempfile::TempDir,
    _reg: TestRegistry,
    store: ImageStore,
    img: LocalImage,
    volumes: VolumeStore,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().expect("tmp");
        let reg = TestRegistry::start();
        let rootfs = tmp.path().join("rootfs");
        run_ok(Command::new(workspace().join("scripts/mkrootfs.sh")).arg(&rootfs));
        let seed = rootfs.join("srv/seed");
        std::fs::create_dir_all(&seed).unwrap();
        std::fs::write(seed.join("file"), "seeded\n").unwrap();
        std::os::unix::fs::chown(&seed, Some(1000), Some(1000)).unwrap();
        std::fs::set_permissions(&seed, std::os::unix::fs::PermissionsExt::from_mode(0o750))
            .unwrap();
        std::fs::create_dir_all(rootfs.join("cache")).unwrap();
        std::fs::write(rootfs.join("cache/img"), "from image\n").unwrap();
        let layout = tmp.path().join("layout");
        let config = json!({"Env": ["PATH=/bin"], "Cmd": ["sh"], "Volumes": {"/cache": {}}});
        run_ok(
            Command::new(workspace().join("scripts/mkimage.sh"))
                .env("MKIMAGE_CONFIG", config.to_string())
                .arg(&layout)
                .arg("latest")
                .arg(&rootfs),
        );
        reg.push_oci_layout(&layout, "latest", "host/bb:latest");
        let store = ImageStore::open(StoreOptions::new(&tmp.path().join("store"))).expect("store");
        let name = format!("{}/host/bb:latest", reg.addr);
        store
            .pull(&name, &Platform::host(), &berth_image::store::NoProgress)
            .expect("pull");
        let img = store.get(&name, &Platform::host()).expect("image");
        let volumes = VolumeStore::new(&tmp.path().join("berth"));
        Fixture {
            tmp,
            _reg: reg,
            store,
            img,
            volumes,
        }
    }

    fn options(&self, id: &str, script: &str, host: HostConfig) -> BundleOptions {
        BundleOptions {
            id: id.to_string(),
            hostname: None,
            process: ProcessFlags {
                cmd: vec!["sh".into(), "-c".into(), script.into()],
                ..ProcessFlags::default()
            },
            security: SecurityFlags::default(),
            cgroups_path: Some(format!("/berth-test-{id}")),
            host,
            volumes: self.volumes.clone(),
            init: None,
        }
    }

    /// Makes a bundle with `flags`, runs `script` in it, removes it; returns
    /// (exit code, stdout, stderr, the applied host config).
    fn run(
        &self,
        test: &str,
        flags: &HostFlags,
        script: &str,
    ) -> (i32, String, String, HostConfig) {
        let rt = Rt::new();
        let id = unique(test);
        let host = flags
            .parse(&mut SecurityFlags::default())
            .expect("parse flags");
        let dir = self.tmp.path().join(&id);
        let b = bundle::create(
            &self.store,
            &self.img,
            &dir,
            &self.options(&id, script, host),
        )
        .expect("bundle");
        let o = rt.out(&["run", "--bundle", dir.to_str().unwrap(), &id]);
        bundle::remove(&self.store, &dir, &id).expect("remove");
        assert_no_leftovers(&rt, &id, &dir);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
            b.host,
        )
    }

    /// What `bundle::create` must leave behind when it fails: nothing.
    fn assert_clean(&self, dir: &Path, id: &str) {
        assert!(!dir.exists(), "{} left", dir.display());
        assert!(self
            .store
            .snapshotter()
            .stat(&bundle::snapshot_key(id))
            .unwrap()
            .is_none());
        assert!(!std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(dir.to_str().unwrap()));
    }
}

/// Bind mounts ro and rw, a named volume filled from the image that keeps
/// its files across two containers, the image's `VOLUME` as an anonymous
/// volume with the image's content, and a `--tmpfs` with its options.
#[test]
fn mounts_volumes_and_tmpfs() {
    if !need_root("mounts_volumes_and_tmpfs") {
        return;
    }
    let f = Fixture::new();
    let ro = f.tmp.path().join("ro-src");
    let rw = f.tmp.path().join("rw-src");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(ro.join("hello"), "host file\n").unwrap();
    let vol = unique("vol");
    let flags = HostFlags {
        volumes: vec![
            format!("{}:/ro:ro", ro.display()),
            format!("{}:/rw", rw.display()),
            format!("{vol}:/srv/seed"),
        ],
        tmpfs: vec!["/scratch:size=2m,mode=1770".into()],
        ..HostFlags::default()
    };
    let script = "cat /ro/hello
touch /ro/x 2>/dev/null && echo ro=writable || echo ro=readonly
echo written >/rw/out && echo rw=ok
cat /srv/seed/file; stat -c '%u:%g %a' /srv/seed
echo second >/srv/seed/more
cat /cache/img
grep ' /scratch ' /proc/mounts | cut -d' ' -f3,4
";
    let (code, out, err, host) = f.run("host-mounts", &flags, script);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..6],
        [
            "host file",
            "ro=readonly",
            "rw=ok",
            "seeded",
            "1000:1000 750",
            "from image"
        ],
        "{out}"
    );
    let tmpfs = lines[6];
    assert!(tmpfs.starts_with("tmpfs rw,nosuid,nodev,noexec"), "{tmpfs}");
    assert!(
        tmpfs.contains("size=2048k") && tmpfs.contains("mode=1770"),
        "{tmpfs}"
    );
    assert_eq!(
        std::fs::read_to_string(rw.join("out")).unwrap(),
        "written\n"
    );

    // The named volume is there with the first container's write; the
    // image's VOLUME was a fresh anonymous volume.
    let v = f.volumes.get(&vol).unwrap();
    assert!(!v.meta.anonymous);
    assert_eq!(std::fs::metadata(&v.mountpoint).unwrap().uid(), 1000);
    let anon = host.anonymous_volumes();
    assert_eq!(anon.len(), 1, "{host:?}");
    assert!(f.volumes.get(&anon[0]).unwrap().meta.anonymous);
    let flags2 = HostFlags {
        volumes: vec![format!("{vol}:/data")],
        ..HostFlags::default()
    };
    let (code, out, err, host2) = f.run("host-mounts2", &flags2, "cat /data/file /data/more");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "seeded\nsecond\n");
    // Each container gets its own anonymous volume for the image's VOLUME.
    assert_ne!(host2.anonymous_volumes(), anon);
}

fn read_cgroup(script_out: &str, key: &str) -> String {
    script_out
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {script_out}"))
        .to_string()
}

/// Limits seen from inside: memory (and memory+swap at twice it), pids,
/// the CPU quota, an rlimit below the host's hard limit, and a host
/// device under another name.
#[test]
fn limits_rlimits_and_devices() {
    if !need_root("limits_rlimits_and_devices") {
        return;
    }
    let f = Fixture::new();
    let flags = HostFlags {
        memory: Some("64m".into()),
        pids_limit: Some("40".into()),
        cpus: Some("0.5".into()),
        ulimits: vec!["nofile=300:400".into()],
        devices: vec!["/dev/null:/dev/mynull".into()],
        ..HostFlags::default()
    };
    let script = "cg=/sys/fs/cgroup
echo mem=$(cat $cg/memory/memory.limit_in_bytes)
echo memsw=$(cat $cg/memory/memory.memsw.limit_in_bytes 2>/dev/null || echo none)
echo pids=$(cat $cg/pids/pids.max)
echo quota=$(cat $cg/cpu/cpu.cfs_quota_us 2>/dev/null || cat $cg/cpu,cpuacct/cpu.cfs_quota_us)
echo period=$(cat $cg/cpu/cpu.cfs_period_us 2>/dev/null || cat $cg/cpu,cpuacct/cpu.cfs_period_us)
echo soft=$(ulimit -n) hard=$(ulimit -Hn)
echo dev=$(stat -c '%t:%T' /dev/mynull)
echo data >/dev/mynull && echo write=ok
";
    let (code, out, err, _) = f.run("host-limits", &flags, script);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(read_cgroup(&out, "mem"), (64u64 << 20).to_string());
    // Swap defaults to as much again as memory (memory+swap = 2 × memory)
    // where the host accounts swap.
    let memsw = read_cgroup(&out, "memsw");
    if Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() {
        assert_eq!(memsw, (128u64 << 20).to_string());
    }
    assert_eq!(read_cgroup(&out, "pids"), "40");
    assert_eq!(read_cgroup(&out, "quota"), "50000");
    assert_eq!(read_cgroup(&out, "period"), "100000");
    assert!(out.contains("soft=300 hard=400\n"), "{out}");
    assert_eq!(read_cgroup(&out, "dev"), "1:3");
    assert!(out.contains("write=ok"), "{out}");
}

fn host_links() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// `--network none` has only `lo`; `--network host` sees the host's links
/// and gets the host's hostname.
#[test]
fn network_none_and_host() {
    if !need_root("network_none_and_host") {
        return;
    }
    let f = Fixture::new();
    let script = "ls /sys/class/net | sort | tr '\\n' ' '; echo; hostname";
    let none = HostFlags {
        network: Some("none".into()),
        ..HostFlags::default()
    };
    let (code, out, err, _) = f.run("host-netnone", &none, script);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().next(), Some("lo "), "{out}");
    let flags = HostFlags {
        network: Some("host".into()),
        ..HostFlags::default()
    };
    let (code, out, err, _) = f.run("host-nethost", &flags, script);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    let links: Vec<String> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    // Links may come and go with other tests; every one of ours but these
    // must be the host's, and there must be more than lo.
    assert!(links.len() > 1, "{out}");
    let host = host_links();
    assert!(
        links.iter().filter(|l| host.contains(l)).count() > 1,
        "{links:?} vs {host:?}"
    );
    let uname = rustix_hostname();
    assert_eq!(lines.next(), Some(uname.as_str()), "{out}");
}

fn rustix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// Bad flags give errors naming what is wrong; a failure inside
/// `bundle::create` (a bad USER after the volumes are made) leaves no
/// mount, snapshot, bundle dir or volume behind.
#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    if !need_root("bad_input_is_refused_and_leaves_nothing") {
        return;
    }
    let missing = format!("/nonexistent-{}", unique("src"));
    let cases: [(HostFlags, &str); 5] = [
        (
            HostFlags {
                volumes: vec![format!("{missing}:/x")],
                ..HostFlags::default()
            },
            "bind source path does not exist",
        ),
        (
            HostFlags {
                memory: Some("12q".into()),
                ..HostFlags::default()
            },
            "--memory",
        ),
        (
            HostFlags {
                ulimits: vec!["openfiles=10".into()],
                ..HostFlags::default()
            },
            "invalid ulimit type: openfiles",
        ),
        (
            HostFlags {
                network: Some("container:".into()),
                ..HostFlags::default()
            },
            "container:NAME",
        ),
        (
            HostFlags {
                network: Some("none".into()),
                publish: vec!["80".into()],
                ..HostFlags::default()
            },
            "not --network none",
        ),
    ];
    for (flags, want) in cases {
        let e = flags
            .parse(&mut SecurityFlags::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{want}: {e}");
    }

    let f = Fixture::new();
    let id = unique("host-bad");
    let dir: PathBuf = f.tmp.path().join(&id);
    let vol = unique("badvol");
    let host = HostFlags {
        volumes: vec![format!("{vol}:/srv/seed"), "/anon".into()],
        ..HostFlags::default()
    }
    .parse(&mut SecurityFlags::default())
    .unwrap();
    let mut o = f.options(&id, "true", host);
    o.process.user = Some("nobody-here".into());
    let e = bundle::create(&f.store, &f.img, &dir, &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nobody-here"), "{e}");
    f.assert_clean(&dir, &id);
    assert!(
        f.volumes.list().unwrap().is_empty(),
        "{:?}",
        f.volumes.list()
    );

    // An existing named volume survives the failure (it was not made by it).
    f.volumes
        .create(&vol, Default::default(), false, true)
        .unwrap();
    let e = bundle::create(&f.store, &f.img, &dir, &o).unwrap_err();
    assert!(e.to_string().contains("nobody-here"), "{e}");
    f.assert_clean(&dir, &id);
    let left: Vec<String> = f
        .volumes
        .list()
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(left, [vol]);
}

fn berth(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new(built_bin("berth", "BERTH_BIN"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("spawn berth")
}

fn stdout_ok(root: &Path, args: &[&str]) -> String {
    let o = berth(root, args);
    assert!(
        o.status.success(),
        "berth {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `berth volume`: create (twice is an error), ls, inspect, rm refusing a
/// volume a container record mounts, prune of anonymous volumes only
/// unless `--all`.
#[test]
fn volume_commands() {
    if !need_root("volume_commands") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    assert_eq!(
        stdout_ok(root, &["volume", "create", "--label", "k=v", "vol-a"]),
        "vol-a\n"
    );
    let o = berth(root, &["volume", "create", "vol-a"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    let unnamed = stdout_ok(root, &["volume", "create"]);
    let unnamed = unnamed.trim();
    assert_eq!(unnamed.len(), 64);
    let store = VolumeStore::new(root);
    let (anon, _) = store
        .create(
            &berth_engine::volumes::random_name().unwrap(),
            Default::default(),
            true,
            true,
        )
        .unwrap();
    let ls = stdout_ok(root, &["volume", "ls"]);
    assert!(ls.starts_with("DRIVER  "), "{ls}");
    assert!(
        ls.contains("VOLUME NAME") && ls.contains("local   vol-a"),
        "{ls}"
    );
    let mut q: Vec<String> = stdout_ok(root, &["volume", "ls", "-q"])
        .lines()
        .map(String::from)
        .collect();
    q.sort();
    let mut want = vec!["vol-a".to_string(), unnamed.to_string(), anon.name.clone()];
    want.sort();
    assert_eq!(q, want);
    let doc: serde_json::Value =
        serde_json::from_str(&stdout_ok(root, &["volume", "inspect", "vol-a"])).unwrap();
    assert_eq!(doc[0]["Labels"], json!({"k": "v"}));
    assert_eq!(
        doc[0]["Mountpoint"],
        json!(root.join("volumes/vol-a/_data"))
    );
    let o = berth(root, &["volume", "inspect", "nope"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such volume: nope"));

    // A container record whose host config mounts vol-a keeps it.
    let mut host = HostFlags {
        volumes: vec!["vol-a:/data".into()],
        ..HostFlags::default()
    }
    .parse(&mut SecurityFlags::default())
    .unwrap();
    host.prepare(root, &store, &[]).unwrap();
    let meta = berth_image::meta::MetaDb::open(&root.join("meta.redb")).unwrap();
    berth_engine::records::ContainerStore::new(meta)
        .create(&berth_engine::records::ContainerRecord {
            id: "b".repeat(64),
            name: "user-of-vol-a".into(),
            namespace: "default".into(),
            image: "busybox".into(),
            image_id: "sha256:x".into(),
            created: String::new(),
            command: vec![],
            config: json!({"host": host}),
        })
        .unwrap();
    let o = berth(root, &["volume", "rm", "vol-a"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("remove vol-a: volume is in use"),
        "{o:?}"
    );
    assert_eq!(stdout_ok(root, &["volume", "rm", "-f", "nope"]), "");

    let pruned = stdout_ok(root, &["volume", "prune", "-f"]);
    assert!(
        pruned.starts_with(&format!("Deleted Volumes:\n{}\n\n", anon.name)),
        "{pruned}"
    );
    let pruned = stdout_ok(root, &["volume", "prune", "-f", "-a"]);
    assert!(
        pruned.contains(unnamed) && !pruned.contains("vol-a"),
        "{pruned}"
    );
    assert_eq!(stdout_ok(root, &["volume", "ls", "-q"]), "vol-a\n");
}
