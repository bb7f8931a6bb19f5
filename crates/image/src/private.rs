//! Directories only root may enter.
//!
//! A store holds what a non-root host user must never reach: setuid-root
//! binaries and device nodes of image layers, containers' configs (their
//! environment, secrets included), logs and volumes. Anyone who can walk
//! into a layer's directory can run its setuid binaries as root (the
//! CVE-2021-41091 class), so the directories that lead there are closed.
//! docker makes `/var/lib/docker`, its `containers` and `overlay2` 0710 and
//! `image` 0700; the group's search bit is for the remapped root of
//! `userns-remap`, which berth does not have, and it would let the group
//! reach files right under the root (`meta.redb` holds containers' env), so
//! berth makes them all 0700.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// The mode of a store's root (`--root`).
pub const ROOT_MODE: u32 = 0o700;
/// The mode of every directory in it that leads to layers, root file
/// systems, bundles, logs or volumes, and of the run dir.
pub const DIR_MODE: u32 = 0o700;

/// Makes `path` a directory that permits at most `mode`: creates it (and,
/// open as usual, any missing parents) with `mode`, or takes from an
/// existing one (an older berth's, say) the permission bits `mode` lacks.
/// A mode tighter than `mode` is kept, and so are the special bits.
pub fn private_dir(path: &Path, mode: u32) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    match DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let md = fs::metadata(path)?;
    if !md.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a directory", path.display()),
        ));
    }
    let have = md.mode() & 0o7777;
    // The umask may have taken bits from a new one, never added any.
    let want = (have & 0o7000) | (have & 0o777 & mode);
    if want != have {
        fs::set_permissions(path, fs::Permissions::from_mode(want))?;
        tracing::info!(
            path = %path.display(),
            "closed directory: mode {have:04o} -> {want:04o}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn makes_tightens_and_keeps_tighter_modes() {
        let t = tempfile::tempdir().unwrap();
        // New, with its parents made as usual.
        let p = t.path().join("a/b/root");
        private_dir(&p, 0o710).unwrap();
        assert_eq!(mode(&p), 0o710);
        assert_eq!(mode(&t.path().join("a/b")) & 0o700, 0o700);
        // An older, open one is closed; a second call changes nothing.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&p, 0o710).unwrap();
        assert_eq!(mode(&p), 0o710);
        private_dir(&p, 0o710).unwrap();
        assert_eq!(mode(&p), 0o710);
        // Tighter than asked, and special bits, are kept.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o2500)).unwrap();
        private_dir(&p, ROOT_MODE).unwrap();
        assert_eq!(mode(&p), 0o2500);
        let d = t.path().join("d");
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
        private_dir(&d, DIR_MODE).unwrap();
        assert_eq!(mode(&d), 0o700);
        // A file in the way is an error naming it.
        let f = t.path().join("f");
        fs::write(&f, b"").unwrap();
        let e = private_dir(&f, DIR_MODE).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
    }
}
