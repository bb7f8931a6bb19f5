//! Root tests of the content store's archive formats against the real
//! tools: berth's docker-archive must load into podman and inspect with
//! skopeo; skopeo's and podman's archives and umoci's layouts must load
//! into berth, with every layer verified.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_image::archive::{self, ArchiveFormat, LoadedImage};
use berth_image::content::ContentStore;
use berth_image::digest::{chain_ids, Digest};
use berth_image::meta::Descriptor;
use berth_tests::*;
use serde_json::Value;

/// A private temp dir (removed on drop, also when the test fails).
fn tmp(test: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("berth-{}-", unique(test)))
        .tempdir()
        .expect("temp dir")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// podman with all its state under `t`.
fn podman(t: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(t.join("root"))
        .arg("--runroot")
        .arg(t.join("run"))
        .arg("--tmpdir")
        .arg(t.join("ptmp"))
        .args(["--storage-driver", "vfs", "--events-backend", "file"])
        .args(["--cgroup-manager", "cgroupfs"]);
    c
}

/// An OCI layout at `layout` with image `tag` made of one layer per dir
/// (scripts/mkimage.sh when present, else the same steps with umoci).
fn mkimage(layout: &Path, tag: &str, dirs: &[&Path]) {
    let script = workspace().join("scripts/mkimage.sh");
    if script.exists() {
        let mut c = Command::new(script);
        c.arg(layout).arg(tag).args(dirs);
        run(&mut c);
        return;
    }
    let img = format!("{}:{tag}", layout.display());
    run(Command::new("umoci")
        .arg("init")
        .arg("--layout")
        .arg(layout));
    run(Command::new("umoci").args(["new", "--image", &img]));
    // One unpack/copy/repack round per layer: repack diffs against the
    // bundle's own unpack.
    let bundle = layout.with_extension("bundle");
    for d in dirs {
        run(Command::new("umoci")
            .args(["unpack", "--image", &img])
            .arg(&bundle));
        run(Command::new("cp")
            .arg("-a")
            .arg(d.join("."))
            .arg(bundle.join("rootfs")));
        run(Command::new("umoci")
            .args(["repack", "--image", &img])
            .arg(&bundle));
        fs::remove_dir_all(&bundle).expect("remove the umoci bundle");
    }
}

/// A busybox layout with two layers: the rootfs and a small extra dir.
fn busybox_layout(t: &Path) -> PathBuf {
    let rootfs = t.join("rootfs");
    run(Command::new(workspace().join("scripts/mkrootfs.sh")).arg(&rootfs));
    let extra = t.join("extra");
    fs::create_dir_all(extra.join("etc")).unwrap();
    fs::write(extra.join("etc/berth-test"), "hello\n").unwrap();
    let layout = t.join("layout");
    mkimage(&layout, "latest", &[&rootfs, &extra]);
    layout
}

/// Checks that a loaded image is complete: its manifest's layers are in the
/// store, uncompressed layers hash to the config's diff IDs.
fn assert_complete(c: &ContentStore, img: &LoadedImage) -> Vec<Digest> {
    let m: Value =
        serde_json::from_slice(&c.read_blob(&img.target.digest, 1 << 22).unwrap()).unwrap();
    let cfg: Digest = m["config"]["digest"].as_str().unwrap().parse().unwrap();
    let cfg: Value = serde_json::from_slice(&c.read_blob(&cfg, 1 << 22).unwrap()).unwrap();
    let diff_ids: Vec<Digest> = cfg["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().parse().unwrap())
        .collect();
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), diff_ids.len());
    for (l, diff) in layers.iter().zip(&diff_ids) {
        let d: Digest = l["digest"].as_str().unwrap().parse().unwrap();
        assert!(c.info(&d).unwrap().is_some(), "layer {d} missing");
        if l["mediaType"].as_str().unwrap().ends_with(".tar") {
            assert_eq!(&d, diff);
        }
    }
    chain_ids(&diff_ids)
}

fn berth_store(t: &Path, name: &str) -> ContentStore {
    ContentStore::open(&t.join(name)).unwrap()
}

#[test]
fn docker_archive_loads_into_podman_and_skopeo_and_back() {
    if !need_root("docker_archive_loads_into_podman_and_skopeo_and_back") {
        return;
    }
    let t = tmp("store-docker");
    let t = t.path();
    let layout = busybox_layout(t);

    // umoci's layout names the image "latest": a bare tag, so no name.
    let c = berth_store(t, "content");
    let imgs = archive::import_layout(&c, &layout).unwrap();
    assert_eq!(imgs.len(), 1);
    assert!(imgs[0].name.is_none());
    let chain = assert_complete(&c, &imgs[0]);
    assert_eq!(chain.len(), 2);

    let name = "localhost/berth-test/busybox:1".to_string();
    let file = t.join("berth-docker.tar");
    let mut f = File::create(&file).unwrap();
    archive::save(
        &c,
        &[(name.clone(), imgs[0].target.clone())],
        ArchiveFormat::DockerArchive,
        &mut f,
    )
    .unwrap();
    drop(f);

    let out = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", file.display())));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2, "{out}");

    let out = run(podman(t).arg("load").arg("-i").arg(&file));
    assert!(out.contains(&name), "{out}");
    let out = run(podman(t).args(["image", "inspect", &name]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v[0]["RootFS"]["Layers"].as_array().unwrap().len(),
        2,
        "{out}"
    );

    // podman save (docker-archive, with symlinked layers) → berth.
    let psave = t.join("podman-save.tar");
    run(podman(t)
        .args(["save", "--format", "docker-archive", "-o"])
        .arg(&psave)
        .arg(&name));
    let c2 = berth_store(t, "content2");
    let got = archive::load(&c2, &mut File::open(&psave).unwrap()).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name.as_deref(), Some(name.as_str()));
    assert_eq!(assert_complete(&c2, &got[0]), chain);
}

#[test]
fn skopeo_docker_archive_loads_into_berth() {
    if !need_root("skopeo_docker_archive_loads_into_berth") {
        return;
    }
    let t = tmp("store-skopeo");
    let t = t.path();
    let layout = busybox_layout(t);
    let file = t.join("skopeo.tar");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("docker-archive:{}:busybox:tag1", file.display())));
    let c = berth_store(t, "content");
    let got = archive::load(&c, &mut File::open(&file).unwrap()).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].name.as_deref(),
        Some("docker.io/library/busybox:tag1")
    );
    assert_eq!(assert_complete(&c, &got[0]).len(), 2);
    assert!(
        fs::read_dir(c.tmp_dir()).unwrap().next().is_none(),
        "staging left behind"
    );
}

#[test]
fn oci_archive_round_trips_through_skopeo() {
    if !need_root("oci_archive_round_trips_through_skopeo") {
        return;
    }
    let t = tmp("store-oci");
    let t = t.path();
    let layout = busybox_layout(t);

    // skopeo's oci-archive → berth.
    let sk = t.join("skopeo-oci.tar");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("oci-archive:{}", sk.display())));
    let c = berth_store(t, "content");
    let got = archive::load(&c, &mut File::open(&sk).unwrap()).unwrap();
    assert_eq!(got.len(), 1);
    let chain = assert_complete(&c, &got[0]);

    // berth's oci-archive → skopeo and back into a fresh berth store.
    let name = "example.com/berth/oci:2".to_string();
    let file = t.join("berth-oci.tar");
    let mut f = File::create(&file).unwrap();
    archive::save(
        &c,
        &[(name.clone(), got[0].target.clone())],
        ArchiveFormat::OciArchive,
        &mut f,
    )
    .unwrap();
    drop(f);
    let out = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}:{name}", file.display())));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2, "{out}");
    let copy = t.join("copy-layout");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci-archive:{}:{name}", file.display()))
        .arg(format!("oci:{}:again", copy.display())));

    let c2 = berth_store(t, "content2");
    let back = archive::load(&c2, &mut File::open(&file).unwrap()).unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].name.as_deref(), Some(name.as_str()));
    assert_eq!(back[0].target, got[0].target);
    assert_eq!(assert_complete(&c2, &back[0]), chain);

    let c3 = berth_store(t, "content3");
    let imported = archive::import_layout(&c3, &copy).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(assert_complete(&c3, &imported[0]), chain);
    let _: &Descriptor = &imported[0].target;
}
