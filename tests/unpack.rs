//! Root integration tests of layer unpack and the snapshotters: ownership,
//! device nodes and setuid bits kept; overlay whiteouts and opaque dirs seen
//! through a real overlay mount; a 128-layer stack; the copy-based snapshotter
//! giving the same view. Everything lives in a fresh temp dir; mounts are
//! detached by a guard even when a test fails.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_image::snapshot::mount::{mount_all, unmount_all};
use berth_image::snapshot::native::NativeSnapshotter;
use berth_image::snapshot::overlay::OverlaySnapshotter;
use berth_image::snapshot::Snapshotter;
use berth_image::unpack::{apply_layer, Compression, UnpackOptions, WhiteoutMode};
use berth_tests::need_root;

macro_rules! root_only {
    ($name:expr) => {
        if !need_root($name) {
            return;
        }
    };
}

/// Detaches the mounts on `target` when dropped.
struct MountGuard(PathBuf);
impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = unmount_all(&self.0);
    }
}

fn mount_at(mounts: &[berth_image::snapshot::Mount], target: &Path) -> MountGuard {
    fs::create_dir_all(target).unwrap();
    let g = MountGuard(target.to_path_buf());
    mount_all(mounts, target).unwrap();
    g
}

/// Tars `stage` with GNU tar (numeric owners, xattrs as PAX SCHILY.xattr).
fn tar_of(stage: &Path) -> Vec<u8> {
    let out = std::process::Command::new("tar")
        .args([
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "-cf",
            "-",
            "-C",
        ])
        .arg(stage)
        .arg(".")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Builds a layer from (path, content) files; a path ending in '/' is a dir.
fn layer(tmp: &Path, files: &[(&str, &str)]) -> Vec<u8> {
    let stage = tempfile::tempdir_in(tmp).unwrap();
    for (p, c) in files {
        let full = stage.path().join(p.trim_end_matches('/'));
        if p.ends_with('/') {
            fs::create_dir_all(&full).unwrap();
        } else {
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(&full, c).unwrap();
        }
    }
    tar_of(stage.path())
}

fn c(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).unwrap()
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let path = c(p.to_str().unwrap());
    let name = c(name);
    // SAFETY: both strings are NUL-terminated CStrings and value is a valid
    // slice, all alive for the call.
    let r = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
}

fn get_xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let path = c(p.to_str().unwrap());
    let name = c(name);
    let mut buf = vec![0u8; 256];
    // SAFETY: NUL-terminated strings and a buffer of buf.len() bytes.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn ownership_devices_and_setuid_are_kept() {
    root_only!("ownership_devices_and_setuid_are_kept");
    let t = tempfile::tempdir().unwrap();
    let stage = t.path().join("stage");
    fs::create_dir_all(stage.join("bin")).unwrap();
    fs::create_dir_all(stage.join("dev")).unwrap();
    fs::create_dir_all(stage.join("shared")).unwrap();
    fs::write(stage.join("bin/su"), b"su").unwrap();
    std::os::unix::fs::lchown(stage.join("bin/su"), Some(1234), Some(5678)).unwrap();
    fs::set_permissions(stage.join("bin/su"), PermissionsExt::from_mode(0o4755)).unwrap();
    std::os::unix::fs::lchown(stage.join("shared"), Some(42), Some(43)).unwrap();
    fs::set_permissions(stage.join("shared"), PermissionsExt::from_mode(0o2775)).unwrap();
    for (name, kind, maj, min) in [
        ("dev/null", libc::S_IFCHR, 1, 3),
        ("dev/loop9", libc::S_IFBLK, 7, 9),
    ] {
        let p = c(stage.join(name).to_str().unwrap());
        // SAFETY: p is a NUL-terminated path alive for the call.
        let r = unsafe { libc::mknod(p.as_ptr(), kind | 0o660, libc::makedev(maj, min)) };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        std::os::unix::fs::lchown(stage.join(name), Some(0), Some(6)).unwrap();
    }
    std::os::unix::fs::symlink("su", stage.join("bin/link")).unwrap();
    std::os::unix::fs::lchown(stage.join("bin/link"), Some(7), Some(8)).unwrap();
    fs::write(stage.join("x"), b"").unwrap();
    set_xattr(&stage.join("x"), "trusted.berth", b"t");
    let tar = tar_of(&stage);

    let opts = UnpackOptions::for_current_process();
    assert!(opts.allow_devices && opts.preserve_ownership);
    let dir = t.path().join("layer");
    fs::create_dir(&dir).unwrap();
    apply_layer(&dir, &tar[..], Compression::None, &opts).unwrap();

    let su = fs::metadata(dir.join("bin/su")).unwrap();
    assert_eq!((su.uid(), su.gid()), (1234, 5678));
    assert_eq!(su.mode() & 0o7777, 0o4755);
    let shared = fs::metadata(dir.join("shared")).unwrap();
    assert_eq!((shared.uid(), shared.gid()), (42, 43));
    assert_eq!(shared.mode() & 0o7777, 0o2775);
    let null = fs::symlink_metadata(dir.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    assert_eq!(null.gid(), 6);
    let lp = fs::symlink_metadata(dir.join("dev/loop9")).unwrap();
    assert!(lp.file_type().is_block_device());
    assert_eq!(lp.rdev(), libc::makedev(7, 9));
    let link = fs::symlink_metadata(dir.join("bin/link")).unwrap();
    assert_eq!((link.uid(), link.gid()), (7, 8));
    assert_eq!(
        get_xattr(&dir.join("x"), "trusted.berth").as_deref(),
        Some(&b"t"[..])
    );
}

/// The three layers: 1 makes a, keep, d/{x,y}; 2 adds b; 3 whites out a and
/// makes d opaque with d/z.
fn three_layers(tmp: &Path) -> Vec<Vec<u8>> {
    vec![
        layer(
            tmp,
            &[
                ("a", "a"),
                ("keep", "k"),
                ("d/", ""),
                ("d/x", "x"),
                ("d/y", "y"),
            ],
        ),
        layer(tmp, &[("b", "b")]),
        layer(
            tmp,
            &[
                (".wh.a", ""),
                ("d/", ""),
                ("d/.wh..wh..opq", ""),
                ("d/z", "z"),
            ],
        ),
    ]
}

fn check_three(view: &Path) {
    assert_eq!(names(view), ["b", "d", "keep"]);
    assert_eq!(names(&view.join("d")), ["z"]);
    assert_eq!(fs::read(view.join("d/z")).unwrap(), b"z");
}

fn unpack_stack(s: &dyn Snapshotter, layers: &[Vec<u8>], mode: WhiteoutMode) -> String {
    let opts = UnpackOptions {
        whiteouts: mode,
        ..UnpackOptions::for_current_process()
    };
    let mut parent: Option<String> = None;
    for (i, l) in layers.iter().enumerate() {
        let key = format!("extract-{i}");
        let dir = s.prepare_layer(&key, parent.as_deref()).unwrap();
        apply_layer(&dir, &l[..], Compression::None, &opts).unwrap();
        let name = format!("sha256:layer{i}");
        s.commit(&name, &key).unwrap();
        parent = Some(name);
    }
    parent.unwrap()
}

#[test]
fn overlay_whiteouts_and_opaque_dirs() {
    root_only!("overlay_whiteouts_and_opaque_dirs");
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("snap");
    if !OverlaySnapshotter::supported(&root) {
        println!("skipping: overlayfs not supported here");
        return;
    }
    let s = OverlaySnapshotter::new(&root).unwrap();
    let top = unpack_stack(&s, &three_layers(t.path()), WhiteoutMode::Overlay);
    let m = s.view("view", Some(&top)).unwrap();
    assert_eq!(m[0].typ, "overlay");
    let target = t.path().join("mnt");
    let g = mount_at(&m, &target);
    check_three(&target);
    drop(g);
    // A writable container on top.
    let m = s.prepare("rw", Some(&top)).unwrap();
    let target2 = t.path().join("rw");
    let g = mount_at(&m, &target2);
    check_three(&target2);
    fs::write(target2.join("new"), b"n").unwrap();
    drop(g);
    assert!(s.upper_dir("rw").unwrap().join("new").exists());
}

#[test]
fn overlay_128_layers() {
    root_only!("overlay_128_layers");
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("snap");
    if !OverlaySnapshotter::supported(&root) {
        println!("skipping: overlayfs not supported here");
        return;
    }
    let s = OverlaySnapshotter::new(&root).unwrap();
    let layers: Vec<Vec<u8>> = (0..128)
        .map(|i| layer(t.path(), &[(&format!("f{i:03}"), &i.to_string())]))
        .collect();
    let top = unpack_stack(&s, &layers, WhiteoutMode::Overlay);
    for (key, rw) in [("view", false), ("rw", true)] {
        let m = if rw {
            s.prepare(key, Some(&top)).unwrap()
        } else {
            s.view(key, Some(&top)).unwrap()
        };
        assert_eq!(m[0].typ, "overlay");
        let target = t.path().join(key);
        let _g = mount_at(&m, &target);
        let n = names(&target);
        assert_eq!(n.len(), 128);
        for i in 0..128 {
            assert_eq!(
                fs::read_to_string(target.join(format!("f{i:03}"))).unwrap(),
                i.to_string()
            );
        }
    }
}

#[test]
fn native_gives_the_same_view() {
    root_only!("native_gives_the_same_view");
    let t = tempfile::tempdir().unwrap();
    let s = NativeSnapshotter::new(&t.path().join("snap")).unwrap();
    let top = unpack_stack(&s, &three_layers(t.path()), WhiteoutMode::Delete);
    let m = s.view("view", Some(&top)).unwrap();
    assert_eq!(m[0].typ, "bind");
    let target = t.path().join("mnt");
    let _g = mount_at(&m, &target);
    check_three(&target);
    // The view is read-only.
    assert!(fs::write(target.join("nope"), b"").is_err());
}

/// Speed check against `tar -xzf`: set BERTH_UNPACK_BENCH to a .tar.gz and run
/// `cargo test --release --test unpack -- --ignored --nocapture bench`.
#[test]
#[ignore]
fn bench_unpack_against_tar() {
    let Ok(src) = std::env::var("BERTH_UNPACK_BENCH") else {
        println!("BERTH_UNPACK_BENCH not set");
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let ours = t.path().join("ours");
    let theirs = t.path().join("tar");
    fs::create_dir(&ours).unwrap();
    fs::create_dir(&theirs).unwrap();
    let start = std::time::Instant::now();
    let st = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&src)
        .arg("-C")
        .arg(&theirs)
        .status()
        .unwrap();
    assert!(st.success());
    let tar_time = start.elapsed();
    let start = std::time::Instant::now();
    let f = fs::File::open(&src).unwrap();
    let stats = apply_layer(
        &ours,
        f,
        Compression::Gzip,
        &UnpackOptions::for_current_process(),
    )
    .unwrap();
    let our_time = start.elapsed();
    println!(
        "tar -xzf: {:.2}s; apply_layer: {:.2}s ({} entries, {} bytes, {})",
        tar_time.as_secs_f64(),
        our_time.as_secs_f64(),
        stats.entries,
        stats.size,
        stats.diff_id
    );
}
