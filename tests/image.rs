//! End-to-end tests of `berth`'s image commands against a real registry
//! (Debian's `docker-registry` on loopback), with real peers (skopeo, podman).
//! Each test has its own registry, store root and names; Drop guards clean up.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use berth_tests::registry::TestRegistry;
use berth_tests::{need_root, run_ok, unique, workspace};
use serde_json::{json, Value};

/// The `berth` binary under test (`BERTH_BIN`, else the build of this test's profile).
fn berth_bin() -> PathBuf {
    berth_tests::built_bin("berth", "BERTH_BIN")
}

/// A private berth store root, removed (with any mounts) on drop.
struct Berth {
    root: tempfile::TempDir,
}

impl Berth {
    fn new(test: &str) -> Berth {
        Berth {
            root: tempfile::Builder::new()
                .prefix(&format!("berth-img-{}-", unique(test)))
                .tempdir_in("/var/tmp")
                .expect("tempdir"),
        }
    }
    fn root(&self) -> &Path {
        self.root.path()
    }
    fn cmd(&self) -> Command {
        let mut c = Command::new(berth_bin());
        c.arg("--root").arg(self.root.path()).stdin(Stdio::null());
        c.env_remove("REGISTRY_AUTH_FILE");
        c.arg("--authfile").arg(self.root.path().join("auth.json"));
        c
    }
    fn out(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run berth")
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.out(args);
        assert!(
            o.status.success(),
            "berth {args:?} failed ({:?}):\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    fn fails(&self, args: &[&str]) -> String {
        let o = self.out(args);
        assert!(
            !o.status.success(),
            "berth {args:?} should fail:\n{}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }
    fn blobs(&self) -> Vec<String> {
        let dir = self.root().join("content/blobs/sha256");
        let mut v: Vec<String> = fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
    fn check_clean(&self) {
        let o = self.ok(&["system", "check"]);
        assert!(o.contains("no errors found"), "{o}");
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        // Snapshots are never mounted by image commands; nothing to unmount.
    }
}

/// Builds an OCI layout with one busybox image tagged `latest`.
fn busybox_layout(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    let layout = dir.join("layout");
    run_ok(Command::new(workspace().join("scripts/mkrootfs.sh")).arg(&rootfs));
    run_ok(
        Command::new(workspace().join("scripts/mkimage.sh"))
            .arg(&layout)
            .arg("latest")
            .arg(&rootfs),
    );
    layout
}

/// Adds tag `tag` to `layout`: busybox plus one layer per dir in `layers`.
fn layered(layout: &Path, tag: &str, base: &Path, layers: &[&Path]) {
    let mut c = Command::new(workspace().join("scripts/mkimage.sh"));
    c.arg(layout).arg(tag).arg(base);
    for l in layers {
        c.arg(l);
    }
    run_ok(&mut c);
}

#[test]
fn pull_push_round_trip_and_listing() {
    if !need_root("pull_push_round_trip_and_listing") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = busybox_layout(tmp.path());
    let reg = TestRegistry::start();
    reg.push_oci_layout(&layout, "latest", "bb/busybox:1.0");
    let b = Berth::new("roundtrip");
    let ref1 = format!("{}/bb/busybox:1.0", reg.addr);
    let id = b.ok(&["pull", "-q", &ref1]).trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    // The snapshot holds the busybox tree.
    let img: Value = serde_json::from_str(&b.ok(&["image", "inspect", &ref1])).expect("json");
    assert_eq!(img[0]["Id"], id.as_str());
    assert_eq!(img[0]["RepoTags"][0], ref1.as_str());

    let list = b.ok(&["images"]);
    assert!(list.starts_with("REPOSITORY"), "{list}");
    assert!(
        list.contains(&format!("{}/bb/busybox", reg.addr))
            && list.contains("1.0")
            && list.contains(&id[..12]),
        "{list}"
    );
    assert_eq!(b.ok(&["images", "-q"]).trim(), &id[..12]);
    let f = b.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert_eq!(f.trim(), format!("{ref1} {}", &id[..12]));
    let j: Value = serde_json::from_str(&b.ok(&["images", "--format", "json"])).expect("json");
    assert_eq!(j[0]["Tag"], "1.0");
    assert!(b.ok(&["images", "--digests"]).contains("sha256:"));

    // Tag and push under a new repository: the layers are mounted across, and
    // a fresh store pulls the same image ID back.
    let ref2 = format!("{}/other/bb:2", reg.addr);
    b.ok(&["tag", &ref1, &ref2]);
    assert!(b
        .ok(&["images", "--filter", "reference=*/other/*"])
        .contains("other/bb"));
    assert!(!b
        .ok(&["images", "--filter", "reference=*/other/*"])
        .contains("bb/busybox"));
    b.ok(&["push", "-q", &ref2]);
    let b2 = Berth::new("roundtrip2");
    assert_eq!(b2.ok(&["pull", "-q", &ref2]).trim(), id);
    // skopeo sees what berth pushed.
    let inspect = run_ok(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{ref2}"),
    ]));
    assert!(inspect.contains("\"Layers\""), "{inspect}");

    // History and inspect --format.
    let h = b.ok(&["image", "history", &ref1]);
    assert!(h.starts_with("ID"), "{h}");
    assert_eq!(
        b.ok(&[
            "image",
            "inspect",
            "--format",
            "{{.Os}}/{{.Architecture}}",
            &id[..12]
        ])
        .trim(),
        "linux/amd64"
    );

    // rmi of a name keeps the other; rmi by ID of a shared image needs -f.
    let e = b.fails(&["rmi", &id[..12]]);
    assert!(e.contains("several names"), "{e}");
    b.ok(&["rmi", &ref2]);
    assert!(!b.ok(&["images"]).contains("other/bb"));
    b.check_clean();
    b.ok(&["rmi", &ref1]);
    assert!(b.blobs().is_empty(), "GC after rmi left {:?}", b.blobs());
    let snaps: Vec<_> = fs::read_dir(b.root().join("snapshots/overlay/snapshots"))
        .map(|d| d.filter_map(|e| e.ok()).collect())
        .unwrap_or_default();
    assert!(snaps.is_empty(), "GC after rmi left snapshots {snaps:?}");
    let e = b.fails(&["image", "inspect", &ref1]);
    assert!(e.contains("not known"), "{e}");
}

#[test]
fn shared_layers_are_stored_once_and_gc_keeps_them() {
    if !need_root("shared_layers_are_stored_once_and_gc_keeps_them") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = busybox_layout(tmp.path());
    let extra = tmp.path().join("extra");
    fs::create_dir_all(extra.join("data")).expect("mkdir");
    fs::write(extra.join("data/hello"), "hello\n").expect("write");
    layered(&layout, "two", &tmp.path().join("rootfs"), &[&extra]);
    let reg = TestRegistry::start();
    reg.push_oci_layout(&layout, "latest", "s/one:latest");
    reg.push_oci_layout(&layout, "two", "s/two:latest");
    let b = Berth::new("shared");
    b.ok(&["pull", "-q", &format!("{}/s/one", reg.addr)]);
    let after_one = b.blobs().len();
    b.ok(&["pull", "-q", &format!("{}/s/two", reg.addr)]);
    // two adds its manifest, config and one layer; the base layer is shared.
    assert_eq!(b.blobs().len(), after_one + 3, "{:?}", b.blobs());
    b.ok(&["rmi", &format!("{}/s/two", reg.addr)]);
    assert_eq!(b.blobs().len(), after_one);
    b.check_clean();
    // Re-pulling what is present fetches no blob: the registry log shows only manifest requests.
    let before = reg.blob_gets();
    b.ok(&["pull", "-q", &format!("{}/s/one", reg.addr)]);
    assert_eq!(reg.blob_gets(), before, "a re-pull fetched blobs");
}

#[test]
fn tampered_blob_is_refused_and_store_unchanged() {
    if !need_root("tampered_blob_is_refused_and_store_unchanged") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = busybox_layout(tmp.path());
    let reg = TestRegistry::start();
    reg.push_oci_layout(&layout, "latest", "t/bb:latest");
    // Flip bytes of the layer blob inside the registry's storage.
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mdig = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let man: Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(&mdig[7..])).unwrap())
            .unwrap();
    let layer = man["layers"][0]["digest"].as_str().unwrap()[7..].to_string();
    let data = reg.storage().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{layer}/data",
        &layer[..2]
    ));
    let mut bytes = fs::read(&data).expect("read blob");
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    bytes[n - 20] ^= 0xff;
    fs::write(&data, bytes).expect("tamper");

    let b = Berth::new("tamper");
    let e = b.fails(&["pull", "-q", &format!("{}/t/bb", reg.addr)]);
    assert!(e.contains(&layer[..12]) || e.contains("digest"), "{e}");
    assert_eq!(b.ok(&["images", "-q"]).trim(), "");
    for d in b.blobs() {
        assert_ne!(d, layer, "the tampered blob was stored");
    }
    let snaps: Vec<_> = fs::read_dir(b.root().join("snapshots/overlay/snapshots"))
        .map(|d| d.filter_map(|e| e.ok()).collect())
        .unwrap_or_default();
    assert!(snaps.is_empty(), "a failed pull left snapshots {snaps:?}");
}

#[test]
fn bad_references_and_unknown_images_are_clear_errors() {
    if !need_root("bad_references_and_unknown_images_are_clear_errors") {
        return;
    }
    let b = Berth::new("badref");
    let e = b.fails(&["pull", "UPPER/Case::x"]);
    assert!(e.contains("UPPER/Case::x"), "{e}");
    let e = b.fails(&["image", "inspect", "nosuch"]);
    assert!(e.contains("nosuch"), "{e}");
    let e = b.fails(&["rmi", "nosuch"]);
    assert!(e.contains("nosuch"), "{e}");
    let e = b.fails(&["images", "--filter", "color=red"]);
    assert!(e.contains("color"), "{e}");
    let e = b.fails(&["pull", "--platform", "linux", "busybox"]);
    assert!(e.contains("linux"), "{e}");
    // A registry that is not there: the error names it, and nothing is stored.
    let e = b.fails(&["pull", "127.0.0.1:1/nothing/here"]);
    assert!(e.contains("127.0.0.1:1"), "{e}");
    assert!(b.blobs().is_empty());
}

#[test]
fn killed_pull_leaves_only_ingests_and_the_next_pull_resumes() {
    if !need_root("killed_pull_leaves_only_ingests_and_the_next_pull_resumes") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = busybox_layout(tmp.path());
    // One big incompressible layer, so the pull takes long enough to kill.
    let big = tmp.path().join("big");
    fs::create_dir_all(big.join("data")).expect("mkdir");
    run_ok(
        Command::new("head")
            .args(["-c", "160M", "/dev/urandom"])
            .stdout(fs::File::create(big.join("data/blob")).expect("create")),
    );
    layered(&layout, "big", &tmp.path().join("rootfs"), &[&big]);
    let reg = TestRegistry::start();
    reg.push_oci_layout(&layout, "big", "k/big:latest");
    let reference = format!("{}/k/big", reg.addr);

    let b = Berth::new("killed");
    let mut child = b
        .cmd()
        .args(["pull", "-q", &reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let ingest = b.root().join("content/ingest");
    let mut partial = 0;
    for _ in 0..20000 {
        partial = fs::read_dir(&ingest)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| fs::metadata(e.path().join("data")).ok())
                    .map(|m| m.len())
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        if partial > 8 << 20 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert!(
        partial > 8 << 20,
        "the pull never got 8 MiB into its ingest"
    );
    // No image record, and no blob that is not whole.
    assert_eq!(b.ok(&["images", "-q"]).trim(), "");
    let report = b.ok(&["system", "check"]);
    assert!(report.contains("stale ingest"), "{report}");
    assert!(!report.contains("corrupt"), "{report}");

    // The next pull finishes; the registry served the big blob with a Range request.
    let o = b
        .cmd()
        .args(["--log-level", "debug", "pull", "-q", &reference])
        .output()
        .expect("pull");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim().len(), 64);
    assert!(
        err.contains("resuming the layer download"),
        "the second pull did not resume:\n{err}"
    );
    b.check_clean();
    // GC removes what the killed pull left (its extraction snapshot); the image stays whole.
    b.ok(&["system", "gc"]);
    b.check_clean();
    let o = b.ok(&["system", "check", "--json"]);
    let v: Value = serde_json::from_str(&o).expect("json");
    assert_eq!(v["stale_ingests"].as_array().map(Vec::len), Some(0), "{o}");
}

/// Adds to `layout` an index tagged `multi` with the `latest` image as
/// linux/amd64 and a copy whose config says arm64 as linux/arm64/v8.
/// Returns the two config digests (amd64, arm64).
fn add_multiarch_index(layout: &Path) -> (String, String) {
    use berth_image::digest::Digest;
    let blobs = layout.join("blobs/sha256");
    let read = |d: &str| -> Vec<u8> { fs::read(blobs.join(&d[7..])).expect("read blob") };
    let put = |data: &[u8]| -> (String, usize) {
        let d = Digest::sha256_of(data);
        fs::write(blobs.join(d.hex()), data).expect("write blob");
        (d.to_string(), data.len())
    };
    let mut index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "latest")
        .expect("latest in the layout")
        .clone();
    let man_bytes = read(entry["digest"].as_str().unwrap());
    let man: Value = serde_json::from_slice(&man_bytes).unwrap();
    let amd_cfg = man["config"]["digest"].as_str().unwrap().to_string();
    let mut cfg: Value = serde_json::from_slice(&read(&amd_cfg)).unwrap();
    cfg["architecture"] = "arm64".into();
    cfg["variant"] = "v8".into();
    let (arm_cfg, arm_cfg_size) = put(&serde_json::to_vec(&cfg).unwrap());
    let mut man2 = man.clone();
    man2["config"]["digest"] = arm_cfg.clone().into();
    man2["config"]["size"] = arm_cfg_size.into();
    let (m2, m2size) = put(&serde_json::to_vec(&man2).unwrap());
    let idx = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": entry["digest"], "size": entry["size"],
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m2, "size": m2size,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ]
    });
    let (idig, isize) = put(&serde_json::to_vec(&idx).unwrap());
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": idig, "size": isize,
            "annotations": {"org.opencontainers.image.ref.name": "multi"}
        }));
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    (amd_cfg[7..].to_string(), arm_cfg[7..].to_string())
}

#[test]
fn multi_platform_index_pulls_the_asked_platform() {
    if !need_root("multi_platform_index_pulls_the_asked_platform") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = busybox_layout(tmp.path());
    let (amd, arm) = add_multiarch_index(&layout);
    let reg = TestRegistry::start();
    reg.push_oci_layout_all(&layout, "multi", "m/multi:latest");
    let reference = format!("{}/m/multi", reg.addr);
    let b = Berth::new("multiarch");
    assert_eq!(b.ok(&["pull", "-q", &reference]).trim(), amd);
    let b2 = Berth::new("multiarch2");
    assert_eq!(
        b2.ok(&["pull", "-q", "--platform", "linux/arm64", &reference])
            .trim(),
        arm
    );
    let e = b2.fails(&["pull", "-q", "--platform", "linux/s390x", &reference]);
    assert!(
        e.contains("linux/s390x") && e.contains("linux/arm64/v8"),
        "{e}"
    );
    // The record points at the index; inspect resolves the stored platform.
    let v: Value = serde_json::from_str(&b2.ok(&["image", "inspect", &reference])).unwrap();
    assert_eq!(v[0]["Architecture"], "arm64");
    // Both images save to an oci-archive that keeps the index, and load back.
    let archive = tmp.path().join("multi.tar");
    b.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        archive.to_str().unwrap(),
        &reference,
    ]);
    let b3 = Berth::new("multiarch3");
    let o = b3.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(o.contains("m/multi"), "{o}");
    assert_eq!(
        b3.ok(&["images", "-q", "--no-trunc"]).trim(),
        format!("sha256:{amd}")
    );
    b3.check_clean();
}

#[test]
fn save_and_load_interoperate_with_podman_and_skopeo() {
    if !need_root("save_and_load_interoperate_with_podman_and_skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = busybox_layout(tmp.path());
    let reg = TestRegistry::start();
    reg.push_oci_layout(&layout, "latest", "sl/bb:latest");
    let reference = format!("{}/sl/bb:latest", reg.addr);
    let b = Berth::new("saveload");
    let id = b.ok(&["pull", "-q", &reference]).trim().to_string();

    // berth save → skopeo and podman read it.
    let archive = tmp.path().join("bb.tar");
    b.ok(&["save", "-o", archive.to_str().unwrap(), &reference]);
    let info = run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", archive.display())),
    );
    assert!(info.contains("\"Layers\""), "{info}");
    let pod = tmp.path().join("podman");
    let podman = |args: &[&str]| -> String {
        run_ok(
            Command::new("podman")
                .arg("--root")
                .arg(pod.join("root"))
                .arg("--runroot")
                .arg(pod.join("run"))
                .args(["--storage-driver", "vfs"])
                .args(args),
        )
    };
    let loaded = podman(&["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.contains("sl/bb"), "{loaded}");
    assert!(
        podman(&["images", "--no-trunc", "-q"]).contains(&id),
        "podman's image ID differs from berth's"
    );

    // podman save → berth load, under a new name.
    podman(&[
        "tag",
        &reference,
        "localhost/fromPodman:v1".to_lowercase().as_str(),
    ]);
    let parchive = tmp.path().join("podman.tar");
    podman(&[
        "save",
        "-o",
        parchive.to_str().unwrap(),
        "localhost/frompodman:v1",
    ]);
    let b2 = Berth::new("saveload2");
    let o = b2.ok(&["load", "-i", parchive.to_str().unwrap()]);
    assert!(o.contains("localhost/frompodman:v1"), "{o}");
    assert_eq!(
        b2.ok(&["images", "-q", "--no-trunc"]).trim(),
        format!("sha256:{id}")
    );
    b2.check_clean();
    let _ = Command::new("umount")
        .arg("-R")
        .arg(pod.join("root"))
        .output();

    // An archive with a hostile path is refused and stores nothing.
    let evil = tmp.path().join("evil.tar");
    {
        let f = fs::File::create(&evil).unwrap();
        let mut t = tar::Builder::new(f);
        let mut h = tar::Header::new_gnu();
        let data = b"[]";
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        let name = b"../../manifest.json";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        t.append(&h, &data[..]).unwrap();
        t.finish().unwrap();
    }
    let b3 = Berth::new("saveload3");
    let e = b3.fails(&["load", "-i", evil.to_str().unwrap()]);
    assert!(e.contains(".."), "{e}");
    assert!(b3.blobs().is_empty());
}

#[test]
fn login_with_basic_auth_and_pull() {
    if !need_root("login_with_basic_auth_and_pull") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = busybox_layout(tmp.path());
    let reg = TestRegistry::start_htpasswd("alice", "s3cret");
    // skopeo needs the credentials to push.
    run_ok(Command::new("skopeo").args([
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:s3cret",
        &format!("oci:{}:latest", layout.display()),
        &format!("docker://{}/a/bb:latest", reg.addr),
    ]));
    let b = Berth::new("login");
    let reference = format!("{}/a/bb", reg.addr);
    let e = b.fails(&["pull", "-q", &reference]);
    assert!(e.contains(&reg.addr), "{e}");
    let e = b.fails(&["login", "-u", "alice", "-p", "wrong", &reg.addr]);
    assert!(e.contains(&reg.addr), "{e}");
    assert!(
        !b.root().join("auth.json").exists()
            || !fs::read_to_string(b.root().join("auth.json"))
                .unwrap()
                .contains(&reg.addr)
    );
    assert!(b
        .ok(&["login", "-u", "alice", "-p", "s3cret", &reg.addr])
        .contains("Login Succeeded"));
    let auth: Value =
        serde_json::from_str(&fs::read_to_string(b.root().join("auth.json")).unwrap()).unwrap();
    assert!(auth["auths"][&reg.addr]["auth"].is_string(), "{auth}");
    assert_eq!(b.ok(&["pull", "-q", &reference]).trim().len(), 64);
    assert!(b.ok(&["logout", &reg.addr]).contains(&reg.addr));
    let o = b.out(&["logout", &reg.addr]);
    assert_eq!(o.status.code(), Some(1));

    // A docker credential helper named by credHelpers, found in $PATH, asked
    // about this registry on stdin. It wins over a wrong password in auths.
    let bin = tmp.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let asked = tmp.path().join("asked");
    let helper = bin.join("docker-credential-berthtest");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n\
             get) cat >{a}; echo '{{\"ServerURL\":\"x\",\"Username\":\"alice\",\"Secret\":\"s3cret\"}}' ;;\n\
             store) cat >{a}.store ;;\nerase) cat >{a}.erase ;;\n*) exit 2 ;;\nesac\n",
            a = asked.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let c = Berth::new("credhelper");
    fs::write(
        c.root().join("auth.json"),
        format!(
            r#"{{"credHelpers":{{"{a}":"berthtest"}},"auths":{{"{a}":{{"auth":"YWxpY2U6d3Jvbmc="}}}}}}"#,
            a = reg.addr
        ),
    )
    .unwrap();
    let o = c
        .cmd()
        .env("PATH", &path)
        .args(["pull", "-q", &reference])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fs::read_to_string(&asked).unwrap(), reg.addr);
    // login stores through the helper (auths keeps its old entry), logout
    // erases through it and from auths.
    let o = c
        .cmd()
        .env("PATH", &path)
        .args(["login", "-u", "alice", "-p", "s3cret", &reg.addr])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stored: Value =
        serde_json::from_str(&fs::read_to_string(asked.with_extension("store")).unwrap()).unwrap();
    assert_eq!(
        (&stored["ServerURL"], &stored["Username"], &stored["Secret"]),
        (&json!(reg.addr), &json!("alice"), &json!("s3cret"))
    );
    let auth: Value =
        serde_json::from_str(&fs::read_to_string(c.root().join("auth.json")).unwrap()).unwrap();
    assert_eq!(auth["auths"][&reg.addr]["auth"], "YWxpY2U6d3Jvbmc=");
    let o = c
        .cmd()
        .env("PATH", &path)
        .args(["logout", &reg.addr])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        fs::read_to_string(asked.with_extension("erase")).unwrap(),
        reg.addr
    );
    let auth: Value =
        serde_json::from_str(&fs::read_to_string(c.root().join("auth.json")).unwrap()).unwrap();
    assert!(auth["auths"].get(&reg.addr).is_none(), "{auth}");
    // A helper that fails is named in the error.
    fs::write(&helper, "#!/bin/sh\necho 'keychain locked' >&2\nexit 1\n").unwrap();
    let o = c
        .cmd()
        .env("PATH", &path)
        .args(["pull", "-q", &format!("{reference}:other")])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        e.contains("docker-credential-berthtest") && e.contains("keychain locked"),
        "{e}"
    );
}

#[test]
fn pull_through_a_flaky_registry_succeeds() {
    if !need_root("pull_through_a_flaky_registry_succeeds") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = busybox_layout(tmp.path());
    let big = tmp.path().join("big");
    fs::create_dir_all(big.join("data")).expect("mkdir");
    run_ok(
        Command::new("head")
            .args(["-c", "24M", "/dev/urandom"])
            .stdout(fs::File::create(big.join("data/blob")).expect("create")),
    );
    layered(&layout, "big", &tmp.path().join("rootfs"), &[&big]);
    let reg = TestRegistry::start();
    reg.push_oci_layout(&layout, "big", "f/big:latest");
    let proxy = berth_tests::registry::FlakyProxy::start(&reg.addr);
    let b = Berth::new("flaky");
    let direct = Berth::new("flaky-direct");
    let want = direct.ok(&["pull", "-q", &format!("{}/f/big", reg.addr)]);
    let got = b.ok(&["pull", "-q", &format!("{}/f/big", proxy.addr)]);
    assert_eq!(got, want);
    b.check_clean();
}

#[test]
fn progress_bars_only_on_a_terminal() {
    if !need_root("progress_bars_only_on_a_terminal") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = busybox_layout(tmp.path());
    let reg = TestRegistry::start();
    reg.push_oci_layout(&layout, "latest", "p/bb:latest");
    let reference = format!("{}/p/bb", reg.addr);
    let b = Berth::new("progress");
    // `script` gives berth a pseudo-terminal and copies what it draws.
    let on_tty = |extra: &str| -> String {
        let cmd = format!(
            "{} --root {} --authfile {} pull {extra} {reference}",
            berth_bin().display(),
            b.root().display(),
            b.root().join("auth.json").display()
        );
        let out = run_ok(Command::new("script").args(["-q", "-e", "-c", &cmd, "/dev/null"]));
        out.replace('\r', "\n")
    };
    let first = on_tty("");
    assert!(
        first.contains("Complete"),
        "no finished bar on a terminal:\n{first}"
    );
    let again = on_tty("");
    assert!(again.contains("Already exists"), "{again}");
    let quiet = on_tty("-q");
    assert!(
        !quiet.contains("Already exists") && !quiet.contains('\u{1b}'),
        "{quiet}"
    );
    // Not a terminal: no bars, no escape codes.
    let o = b.out(&["pull", &reference]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success());
    assert!(
        !err.contains("Complete") && !err.contains('\u{1b}'),
        "{err}"
    );
}

/// Writes an OCI layout at `layout` whose image `tag` has the one gzip
/// layer `gz` (of uncompressed tar `tar`); returns the layer's digest.
fn one_layer_layout(layout: &Path, tag: &str, tar: &Path, gz: &Path) -> String {
    use berth_image::digest::Digest;
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("mkdir blobs");
    let put = |bytes: &[u8]| -> (String, usize) {
        let d = Digest::sha256_of(bytes);
        fs::write(blobs.join(d.hex()), bytes).expect("write blob");
        (d.to_string(), bytes.len())
    };
    let diff_id = Digest::sha256_of(&fs::read(tar).expect("read tar")).to_string();
    let (layer, layer_size) = put(&fs::read(gz).expect("read gz"));
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/big"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let (cfg, cfg_size) = put(config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": cfg_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": layer_size}],
    });
    let (man, man_size) = put(manifest.to_string().as_bytes());
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": man,
            "size": man_size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    fs::write(layout.join("index.json"), index.to_string()).expect("index.json");
    layer
}

/// Bytes the files under `dir` take on disk (st_blocks), not their sizes.
fn allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(md) = e.path().symlink_metadata() else {
            continue;
        };
        total += md.blocks() * 512;
        if md.is_dir() {
            total += allocated(&e.path());
        }
    }
    total
}

/// The regular files named `name` anywhere under `dir`.
fn find_named(dir: &Path, name: &str, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let Ok(md) = p.symlink_metadata() else {
            continue;
        };
        if md.is_dir() {
            find_named(&p, name, out);
        } else if md.is_file() && e.file_name() == name {
            out.push(p);
        }
    }
}

/// A sparse-file bomb: a tiny gzip layer whose one tar entry is a 4 GiB
/// sparse file, written by GNU tar `--sparse` in its GNU format and in its
/// PAX format. The size limit holds it at its full size: under a 1 GiB limit
/// (`BERTH_MAX_LAYER_SIZE`) the pull is refused, naming the layer and the
/// entry, and leaves nothing behind (no snapshot, ingest or blob, nothing
/// allocated); under a raised limit (`--max-layer-size`) the file is made
/// with its holes, so it takes almost no disk, and with its data in place.
#[test]
fn sparse_file_layers_count_their_full_size() {
    if !need_root("sparse_file_layers_count_their_full_size") {
        return;
    }
    use std::os::unix::fs::{FileExt, MetadataExt};
    const REAL: u64 = 4 << 30;
    const MARK: &[u8] = b"the one block of data in the middle";
    let tmp = tempfile::Builder::new()
        .prefix("berth-sparse-")
        .tempdir_in("/var/tmp")
        .expect("tmp");
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    run_ok(
        Command::new("truncate")
            .args(["-s", &REAL.to_string()])
            .arg(src.join("big")),
    );
    let f = fs::OpenOptions::new()
        .write(true)
        .open(src.join("big"))
        .expect("open");
    f.write_all_at(MARK, REAL / 2).expect("write mark");
    drop(f);
    let reg = TestRegistry::start();
    for format in ["gnu", "pax"] {
        let tar = tmp.path().join(format!("{format}.tar"));
        run_ok(
            Command::new("tar")
                .args(["--sparse", &format!("--format={format}"), "-C"])
                .arg(&src)
                .arg("-cf")
                .arg(&tar)
                .arg("big"),
        );
        let gz = tmp.path().join(format!("{format}.tar.gz"));
        run_ok(Command::new("sh").arg("-c").arg(format!(
            "gzip -n -c {} > {}",
            tar.display(),
            gz.display()
        )));
        let gz_len = fs::metadata(&gz).unwrap().len();
        assert!(gz_len < 4096, "{format}: the layer is {gz_len} bytes");
        let layout = tmp.path().join(format!("layout-{format}"));
        let layer = one_layer_layout(&layout, "latest", &tar, &gz);
        reg.push_oci_layout(&layout, "latest", &format!("sparse/{format}:latest"));
        let reference = format!("{}/sparse/{format}", reg.addr);

        let b = Berth::new(&format!("sparse-{format}"));
        let o = b
            .cmd()
            .env("BERTH_MAX_LAYER_SIZE", "1G")
            .args(["pull", "-q", &reference])
            .output()
            .expect("pull");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success(),
            "{format}: a 4 GiB sparse file passed a 1 GiB limit ({} bytes allocated)",
            allocated(b.root())
        );
        assert!(
            err.contains(&layer) && err.contains("\"big\"") && err.contains("1073741824"),
            "{format}: the error does not name the layer, the entry and the limit:\n{err}"
        );
        assert_eq!(b.ok(&["images", "-q"]).trim(), "", "{format}");
        let snaps: Vec<_> = fs::read_dir(b.root().join("snapshots/overlay/snapshots"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(snaps.is_empty(), "{format}: snapshots left: {snaps:?}");
        let ingests: Vec<_> = fs::read_dir(b.root().join("content/ingest"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(ingests.is_empty(), "{format}: ingests left: {ingests:?}");
        assert!(
            !b.blobs().iter().any(|d| layer.ends_with(d.as_str())),
            "{format}"
        );
        let report = b.ok(&["system", "check"]);
        assert!(!report.contains("stale"), "{format}: {report}");
        assert!(
            allocated(b.root()) < 16 << 20,
            "{format}: {}",
            allocated(b.root())
        );

        // A limit above the file's size lets it in, holes and all.
        b.ok(&["--max-layer-size", "5g", "pull", "-q", &reference]);
        let mut found = Vec::new();
        find_named(&b.root().join("snapshots"), "big", &mut found);
        assert_eq!(found.len(), 1, "{format}: {found:?}");
        assert_eq!(
            found[0].parent().and_then(|p| p.file_name()),
            Some(std::ffi::OsStr::new("fs")),
            "{format}: the file is not at the layer's root: {found:?}"
        );
        let md = fs::metadata(&found[0]).expect("stat");
        assert_eq!(md.len(), REAL, "{format}");
        assert!(
            md.blocks() * 512 < 1 << 20,
            "{format}: {} blocks",
            md.blocks()
        );
        let mut got = vec![0u8; MARK.len()];
        fs::File::open(&found[0])
            .unwrap()
            .read_exact_at(&mut got, REAL / 2)
            .unwrap();
        assert_eq!(got, MARK, "{format}");
        b.check_clean();
    }
}

/// PUTs `manifest` (an OCI image manifest) to `reg` as `repo:tag`.
fn put_manifest(reg: &TestRegistry, repo: &str, tag: &str, manifest: &Value) {
    let body = serde_json::to_vec(manifest).unwrap();
    let mut child = Command::new("curl")
        .args([
            "-sS",
            "--fail-with-body",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.manifest.v1+json",
            "--data-binary",
            "@-",
            &format!("http://{}/v2/{repo}/manifests/{tag}", reg.addr),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl");
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&body).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "PUT manifest {repo}:{tag}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A manifest that reuses stored blobs but gives them a wrong size is
/// refused with the blob's digest in the error, whether the blob is stored
/// already (the case that was accepted, making `images` show the wrong
/// size) or not; the store keeps only the right image, with its right size.
#[test]
fn a_manifest_with_wrong_blob_sizes_is_refused() {
    if !need_root("a_manifest_with_wrong_blob_sizes_is_refused") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = busybox_layout(tmp.path());
    let reg = TestRegistry::start();
    reg.push_oci_layout(&layout, "latest", "sz/good:latest");
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mdig = index["manifests"][0]["digest"].as_str().unwrap();
    let man: Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(&mdig[7..])).unwrap())
            .unwrap();
    let layer = man["layers"][0]["digest"].as_str().unwrap().to_string();
    let layer_size = man["layers"][0]["size"].as_u64().unwrap();
    let config = man["config"]["digest"].as_str().unwrap().to_string();
    let config_size = man["config"]["size"].as_u64().unwrap();
    // The registry takes a manifest whose blobs the repository has.
    reg.push_oci_layout(&layout, "latest", "sz/badlayer:good");
    reg.push_oci_layout(&layout, "latest", "sz/badconfig:good");
    let mut bad_layer = man.clone();
    bad_layer["layers"][0]["size"] = json!(layer_size + 1000);
    put_manifest(&reg, "sz/badlayer", "latest", &bad_layer);
    let mut bad_config = man.clone();
    bad_config["config"]["size"] = json!(config_size - 1);
    put_manifest(&reg, "sz/badconfig", "latest", &bad_config);
    let good = format!("{}/sz/good", reg.addr);
    let badl = format!("{}/sz/badlayer", reg.addr);
    let badc = format!("{}/sz/badconfig", reg.addr);

    // The blobs are stored already.
    let b = Berth::new("wrongsize");
    b.ok(&["pull", "-q", &good]);
    let e = b.fails(&["pull", "-q", &badl]);
    assert!(
        e.contains(&layer) && e.contains(&(layer_size + 1000).to_string()),
        "{e}"
    );
    let e = b.fails(&["pull", "-q", &badc]);
    assert!(e.contains(&config), "{e}");
    let names = b.ok(&["images", "--format", "{{.Repository}}"]);
    assert_eq!(names.trim(), good, "{names}");
    let img: Value = serde_json::from_str(&b.ok(&["image", "inspect", &good])).unwrap();
    assert_eq!(img[0]["Size"], json!(layer_size + config_size));
    b.check_clean();

    // A fresh store: nothing stored yet.
    let b = Berth::new("wrongsize-fresh");
    let e = b.fails(&["pull", "-q", &badl]);
    assert!(e.contains(&layer), "{e}");
    let e = b.fails(&["pull", "-q", &badc]);
    assert!(e.contains(&config), "{e}");
    assert_eq!(b.ok(&["images", "-q"]).trim(), "");
    b.ok(&["pull", "-q", &good]);
    b.check_clean();
}
