//! `--init`: berth's own minimal PID 1 (`berth-init`, crates/init) put in
//! front of the container's command, as docker does with tini and podman
//! with catatonit. The static binary is bind-mounted read-only at
//! [`INIT_PATH`] (so it needs nothing from the image and works with a
//! read-only rootfs), and the process becomes `[INIT_PATH, "--", args...]`.
//!
//! What is mounted is the container's own copy of the binary ([`install`],
//! in its bundle), never the host's file: the container's PID 1 executes it,
//! so `/proc/1/exe` hands the container a handle on it, and a container
//! allowed to remount (CAP_SYS_ADMIN) could make a bind of the host's file
//! writable and replace the init of every later container (the
//! CVE-2019-5736 class). A copy can only be spoiled for its own container.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// Where the init binary appears in the container.
pub const INIT_PATH: &str = "/run/berth-init";

/// The init binary could not be found.
#[derive(Debug, thiserror::Error)]
#[error("--init needs the berth-init binary, which is not in any of: {0} (build it with scripts/build-static.sh, or set BERTH_INIT)")]
pub struct InitError(String);

/// Finds `berth-init`: `$BERTH_INIT`, then beside the current executable,
/// then berth's libexec dirs.
pub fn find_binary() -> Result<PathBuf, InitError> {
    let mut tried: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("BERTH_INIT").filter(|p| !p.is_empty()) {
        tried.push(PathBuf::from(p));
    }
    if let Some(d) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        tried.push(d.join("berth-init"));
    }
    tried.push("/usr/libexec/berth/berth-init".into());
    tried.push("/usr/local/libexec/berth/berth-init".into());
    if let Some(p) = tried.iter().find(|p| p.is_file()) {
        return Ok(p.clone());
    }
    Err(InitError(
        tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    ))
}

/// Copies `init_binary` into the bundle `dir` (read and execute only) and
/// returns the copy's path, which is what [`apply`] should mount.
pub fn install(dir: &Path, init_binary: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let copy = dir.join("berth-init");
    std::fs::copy(init_binary, &copy)?;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o555))?;
    Ok(copy)
}

/// Puts `init_binary` in front of the process of the config `spec`.
pub fn apply(spec: &mut Value, init_binary: &Path) {
    let args: Vec<Value> = spec["process"]["args"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut new = vec![json!(INIT_PATH), json!("--")];
    new.extend(args);
    spec["process"]["args"] = Value::Array(new);
    let mount = json!({
        "destination": INIT_PATH,
        "type": "bind",
        "source": init_binary,
        "options": ["bind", "ro", "nosuid", "nodev", "rprivate"],
    });
    match spec["mounts"].as_array_mut() {
        Some(m) => m.push(mount),
        None => spec["mounts"] = json!([mount]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_goes_first_and_is_mounted() {
        let mut s = json!({"process": {"args": ["sh", "-c", "exit 3"]}, "mounts": []});
        apply(&mut s, Path::new("/opt/berth-init"));
        assert_eq!(
            s["process"]["args"],
            json!([INIT_PATH, "--", "sh", "-c", "exit 3"])
        );
        assert_eq!(s["mounts"][0]["source"], "/opt/berth-init");
        assert_eq!(s["mounts"][0]["destination"], INIT_PATH);
        assert!(s["mounts"][0]["options"]
            .as_array()
            .unwrap()
            .contains(&json!("ro")));
    }

    #[test]
    fn install_makes_a_read_only_copy_of_its_own() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let host = tempfile::tempdir().unwrap();
        let bundle = tempfile::tempdir().unwrap();
        let bin = host.path().join("berth-init");
        std::fs::write(&bin, b"\x7fELF not really").unwrap();
        let copy = install(bundle.path(), &bin).unwrap();
        assert_eq!(copy, bundle.path().join("berth-init"));
        assert_eq!(std::fs::read(&copy).unwrap(), b"\x7fELF not really");
        let (a, b) = (
            std::fs::metadata(&bin).unwrap(),
            std::fs::metadata(&copy).unwrap(),
        );
        assert_ne!((a.dev(), a.ino()), (b.dev(), b.ino()));
        assert_eq!(b.permissions().mode() & 0o7777, 0o555);
    }

    #[test]
    fn a_missing_binary_names_where_it_looked() {
        std::env::set_var("BERTH_INIT", "/no/such/berth-init-here");
        let e = find_binary();
        std::env::remove_var("BERTH_INIT");
        if let Err(e) = e {
            assert!(e.to_string().contains("/no/such/berth-init-here"), "{e}");
        }
    }
}
