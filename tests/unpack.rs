//! Root tests of layer unpack and the snapshotters: ownership, devices and
//! setuid bits; overlay and native views of a stack with whiteouts; a stack
//! of 128 layers. Everything lives in a fresh temp dir; mounts are detached by
//! guards even when an assertion fails.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_image::snapshot::mount::{mount_all, unmount_all};
use berth_image::snapshot::native::NativeSnapshotter;
use berth_image::snapshot::overlay::OverlaySnapshotter;
use berth_image::snapshot::Snapshotter;
use berth_image::unpack::{apply_layer, Compression, UnpackOptions, WhiteoutMode};
use berth_tests::need_root;

/// Detaches whatever is mounted on the path when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = unmount_all(&self.0);
    }
}

/// A minimal ustar writer (the tests crate does not depend on `tar`).
#[derive(Default)]
struct Tar(Vec<u8>);

struct Entry<'a> {
    kind: u8,
    path: &'a str,
    mode: u32,
    uid: u32,
    gid: u32,
    link: &'a str,
    dev: (u32, u32),
    data: &'a [u8],
}

impl<'a> Entry<'a> {
    fn new(kind: u8, path: &'a str, mode: u32) -> Self {
        Entry {
            kind,
            path,
            mode,
            uid: 0,
            gid: 0,
            link: "",
            dev: (0, 0),
            data: b"",
        }
    }
}

impl Tar {
    fn add(&mut self, e: Entry<'_>) {
        let mut h = [0u8; 512];
        let octal = |h: &mut [u8; 512], off: usize, len: usize, v: u64| {
            let s = format!("{:0w$o}", v, w = len - 1);
            h[off..off + len - 1].copy_from_slice(s.as_bytes());
        };
        h[..e.path.len()].copy_from_slice(e.path.as_bytes());
        octal(&mut h, 100, 8, e.mode.into());
        octal(&mut h, 108, 8, e.uid.into());
        octal(&mut h, 116, 8, e.gid.into());
        octal(&mut h, 124, 12, e.data.len() as u64);
        octal(&mut h, 136, 12, 1_500_000_000);
        h[156] = e.kind;
        h[157..157 + e.link.len()].copy_from_slice(e.link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        octal(&mut h, 329, 8, e.dev.0.into());
        octal(&mut h, 337, 8, e.dev.1.into());
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let cs = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(cs.as_bytes());
        self.0.extend_from_slice(&h);
        self.0.extend_from_slice(e.data);
        let pad = (512 - e.data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
    }

    /// A PAX header carrying one record for the next entry.
    fn pax(&mut self, key: &str, value: &[u8]) {
        let body_len = key.len() + value.len() + 3;
        let mut len = body_len + 1;
        while len.to_string().len() + body_len != len {
            len += 1;
        }
        let mut rec = format!("{len} {key}=").into_bytes();
        rec.extend_from_slice(value);
        rec.push(b'\n');
        let mut e = Entry::new(b'x', "PaxHeaders/next", 0o644);
        e.data = &rec;
        self.add(e);
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0u8; 1024]);
        self.0
    }
}

/// A tar of (path, content) files; paths ending in `/` are directories.
fn layer(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut t = Tar::default();
    for (p, data) in entries {
        if p.ends_with('/') {
            t.add(Entry::new(b'5', p, 0o755));
        } else {
            let mut e = Entry::new(b'0', p, 0o644);
            e.data = data.as_bytes();
            t.add(e);
        }
    }
    t.finish()
}

/// The value of xattr `name` on `path` (not following symlinks), if any.
fn lgetxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated and live across the call; the
    // buffer pointer and length describe a writable allocation we own.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

#[test]
fn ownership_devices_and_setuid() {
    if !need_root("ownership_devices_and_setuid") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut t = Tar::default();
    let mut e = Entry::new(b'0', "bin/su", 0o4755);
    (e.uid, e.gid, e.data) = (1234, 5678, b"#!");
    t.add(e);
    let mut e = Entry::new(b'0', "bin/wall", 0o2755);
    e.gid = 5;
    t.add(e);
    t.add(Entry::new(b'5', "tmp/", 0o1777));
    let mut e = Entry::new(b'3', "dev/null", 0o666);
    e.dev = (1, 3);
    t.add(e);
    let mut e = Entry::new(b'4', "dev/loop9", 0o660);
    (e.dev, e.gid) = ((7, 9), 6);
    t.add(e);
    t.add(Entry::new(b'6', "run/fifo", 0o600));
    let mut e = Entry::new(b'2', "bin/link", 0o777);
    (e.link, e.uid) = ("su", 42);
    t.add(e);
    let cap = [
        1u8, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    t.pax("SCHILY.xattr.security.capability", &cap);
    t.add(Entry::new(b'0', "bin/ping", 0o755));
    let tar = t.finish();

    let opts = UnpackOptions::for_current_process();
    assert!(
        opts.allow_devices && opts.preserve_ownership,
        "root should get both"
    );
    let st = apply_layer(tmp.path(), &tar[..], Compression::None, &opts).unwrap();
    assert_eq!(st.entries, 8);

    let d = tmp.path();
    let su = std::fs::metadata(d.join("bin/su")).unwrap();
    assert_eq!((su.uid(), su.gid()), (1234, 5678));
    assert_eq!(su.mode() & 0o7777, 0o4755, "setuid kept after chown");
    let wall = std::fs::metadata(d.join("bin/wall")).unwrap();
    assert_eq!((wall.gid(), wall.mode() & 0o7777), (5, 0o2755));
    assert_eq!(
        std::fs::metadata(d.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    let null = std::fs::metadata(d.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    let lp = std::fs::metadata(d.join("dev/loop9")).unwrap();
    assert!(lp.file_type().is_block_device());
    assert_eq!((lp.rdev(), lp.gid()), (libc::makedev(7, 9), 6));
    assert!(std::fs::metadata(d.join("run/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let l = std::fs::symlink_metadata(d.join("bin/link")).unwrap();
    assert_eq!(l.uid(), 42);
    assert_eq!(l.mtime(), 1_500_000_000);
    assert_eq!(
        lgetxattr(&d.join("bin/ping"), "security.capability").as_deref(),
        Some(&cap[..])
    );
}

/// Layer 1 has a/keep, a/gone, o/old, o/sub/x; layer 2 adds b; layer 3
/// whiteouts a/gone, makes o opaque and adds o/new.
fn three_layers() -> Vec<Vec<u8>> {
    vec![
        layer(&[
            ("a/", ""),
            ("a/keep", "k"),
            ("a/gone", "g"),
            ("o/", ""),
            ("o/old", "1"),
            ("o/sub/x", "2"),
        ]),
        layer(&[("b", "b")]),
        layer(&[
            ("a/.wh.gone", ""),
            ("o/", ""),
            ("o/.wh..wh..opq", ""),
            ("o/new", "n"),
        ]),
    ]
}

fn check_three(root: &Path) {
    assert_eq!(std::fs::read(root.join("a/keep")).unwrap(), b"k");
    assert!(!root.join("a/gone").exists(), "whiteout hides a/gone");
    assert_eq!(std::fs::read(root.join("b")).unwrap(), b"b");
    assert_eq!(std::fs::read(root.join("o/new")).unwrap(), b"n");
    let mut o: Vec<String> = std::fs::read_dir(root.join("o"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    o.sort();
    assert_eq!(o, ["new"], "opaque dir hides the lower o/*");
}

fn stack(s: &dyn Snapshotter, layers: &[Vec<u8>], whiteouts: WhiteoutMode) -> String {
    let opts = UnpackOptions {
        whiteouts,
        ..UnpackOptions::for_current_process()
    };
    let mut parent: Option<String> = None;
    for (i, l) in layers.iter().enumerate() {
        let key = format!("extract-{i}");
        let dir = s.prepare_layer(&key, parent.as_deref()).unwrap();
        apply_layer(&dir, &l[..], Compression::None, &opts).unwrap();
        let name = format!("layer-{i}");
        s.commit(&name, &key).unwrap();
        parent = Some(name);
    }
    parent.unwrap()
}

#[test]
fn overlay_three_layers_with_whiteouts() {
    if !need_root("overlay_three_layers_with_whiteouts") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    if !OverlaySnapshotter::supported(&root) {
        println!("skipping: overlayfs not supported here");
        return;
    }
    let s = OverlaySnapshotter::new(&root).unwrap();
    let top = stack(&s, &three_layers(), WhiteoutMode::Overlay);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();

    let view = s.view("v", Some(&top)).unwrap();
    mount_all(&view, &mnt).unwrap();
    let guard = Mounted(mnt.clone());
    check_three(&mnt);
    drop(guard);

    // A writable container snapshot shows the same and takes writes in its upper dir.
    let m = s.prepare("ctr", Some(&top)).unwrap();
    mount_all(&m, &mnt).unwrap();
    let guard = Mounted(mnt.clone());
    check_three(&mnt);
    std::fs::write(mnt.join("written"), b"w").unwrap();
    drop(guard);
    assert_eq!(
        std::fs::read(s.upper_dir("ctr").unwrap().join("written")).unwrap(),
        b"w"
    );
    assert!(
        std::fs::read_dir(&mnt).unwrap().next().is_none(),
        "unmounted"
    );
}

#[test]
fn native_three_layers_with_delete_whiteouts() {
    if !need_root("native_three_layers_with_delete_whiteouts") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = NativeSnapshotter::new(&tmp.path().join("root")).unwrap();
    let top = stack(&s, &three_layers(), WhiteoutMode::Delete);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let view = s.view("v", Some(&top)).unwrap();
    mount_all(&view, &mnt).unwrap();
    let guard = Mounted(mnt.clone());
    check_three(&mnt);
    assert!(
        std::fs::write(mnt.join("ro"), b"x").is_err(),
        "view is read-only"
    );
    drop(guard);
    let m = s.prepare("ctr", Some(&top)).unwrap();
    mount_all(&m, &mnt).unwrap();
    let _guard = Mounted(mnt.clone());
    check_three(&mnt);
}

#[test]
fn overlay_128_layers() {
    if !need_root("overlay_128_layers") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    if !OverlaySnapshotter::supported(&root) {
        println!("skipping: overlayfs not supported here");
        return;
    }
    let s = OverlaySnapshotter::new(&root).unwrap();
    let layers: Vec<Vec<u8>> = (0..128)
        .map(|i| {
            let name = format!("layer-file-{i:03}");
            let data = i.to_string();
            layer(&[(name.as_str(), data.as_str())])
        })
        .collect();
    let top = stack(&s, &layers, WhiteoutMode::Overlay);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = s.prepare("ctr", Some(&top)).unwrap();
    let opt_len: usize = m[0].options.iter().map(|o| o.len() + 1).sum();
    assert!(
        opt_len > 4096,
        "option string of {opt_len} bytes should exceed a page"
    );
    mount_all(&m, &mnt).unwrap();
    let _guard = Mounted(mnt.clone());
    for i in 0..128 {
        let p = mnt.join(format!("layer-file-{i:03}"));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), i.to_string());
    }
    let ro = s.view("v", Some(&top)).unwrap();
    let mnt2 = tmp.path().join("mnt2");
    std::fs::create_dir(&mnt2).unwrap();
    mount_all(&ro, &mnt2).unwrap();
    let _g2 = Mounted(mnt2.clone());
    assert_eq!(std::fs::read_dir(&mnt2).unwrap().count(), 128);
    assert!(
        std::fs::metadata(mnt2.join("layer-file-000"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
            == 0o644
    );
}
