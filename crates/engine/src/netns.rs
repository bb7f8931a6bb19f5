//! Pinned network namespaces: a container on a bridge or user network gets a
//! network namespace that berth makes before the container exists, keeps as
//! a bind mount at `<run_dir>/netns/<id>` (as `ip netns add` does under
//! `/run/netns`), hands to the CNI plugins or the fast bridge path, and names
//! in the container's `config.json` for the runtime to join.
//!
//! Invariants: a pin is a file with a namespace bind-mounted on it, or
//! nothing; [`remove`] is idempotent and also clears a file whose mount a
//! crash never made, so `rm` and `system prune` can always call it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// The directory of pins under berth's run dir.
pub fn dir(run_dir: &Path) -> PathBuf {
    run_dir.join("netns")
}

/// The pin of container `id`.
pub fn path(run_dir: &Path, id: &str) -> PathBuf {
    dir(run_dir).join(id)
}

/// Makes a new network namespace pinned at `pin` (whose directory is made if
/// missing). Nothing is left behind on error.
pub fn create(pin: &Path) -> io::Result<()> {
    if let Some(d) = pin.parent() {
        fs::create_dir_all(d)?;
    }
    // O_EXCL: two containers never share a pin by accident.
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(pin)?;
    let target = pin.to_path_buf();
    // A thread of its own unshares, so this process's other threads keep the
    // host's namespace; the thread ends (and its namespace reference with
    // it) once the bind mount holds the namespace.
    let made = std::thread::spawn(move || -> io::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(io::Error::from)
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("the netns thread panicked")));
    if let Err(e) = made {
        let _ = fs::remove_file(pin);
        return Err(e);
    }
    Ok(())
}

/// Unmounts and removes the pin; fine if it is already gone.
pub fn remove(pin: &Path) -> io::Result<()> {
    if is_pinned(pin) {
        match umount2(pin, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    match fs::remove_file(pin) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether `pin` holds a network namespace (a mount of the nsfs).
pub fn is_pinned(pin: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Some(parent), Ok(ns)) = (pin.parent(), fs::metadata(pin)) else {
        return false;
    };
    // A namespace file lives on nsfs, another device than its directory.
    fs::metadata(parent).is_ok_and(|d| d.dev() != ns.dev())
}

/// The ids of every pin under `run_dir`, for `system prune` and the cleanup
/// of leftovers.
pub fn list(run_dir: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir(run_dir)) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_removing_nothing() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(path(t.path(), "abc"), t.path().join("netns/abc"));
        // Removing a pin that was never made is fine (idempotent).
        remove(&path(t.path(), "abc")).unwrap();
        assert!(list(t.path()).is_empty());
        // A plain file left by a crash is not a pin, and is cleared.
        fs::create_dir_all(dir(t.path())).unwrap();
        fs::write(path(t.path(), "abc"), b"").unwrap();
        assert!(!is_pinned(&path(t.path(), "abc")));
        assert_eq!(list(t.path()), vec!["abc".to_string()]);
        remove(&path(t.path(), "abc")).unwrap();
        assert!(!path(t.path(), "abc").exists());
    }
}
