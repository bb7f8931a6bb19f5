//! Linux security modules: AppArmor profiles and SELinux labels.
//!
//! Both take effect at the container's `execve`: the init child writes the
//! label to its `attr/exec` file in procfs right before `execve`. When the
//! module is not enabled on the host, a configured profile or label is
//! ignored, as runc does.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Errors from applying security labels.
#[derive(Debug, thiserror::Error)]
pub enum LsmError {
    /// Writing the exec label to procfs failed.
    #[error("setting the {lsm} exec label {label:?} via {path} failed: {source}")]
    SetExecLabel {
        /// "AppArmor" or "SELinux".
        lsm: &'static str,
        /// The profile or label.
        label: String,
        /// The procfs file written.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Whether AppArmor is enabled on this host.
pub fn apparmor_enabled() -> bool {
    apparmor_enabled_in(Path::new("/"))
}

/// Whether SELinux is enabled on this host (selinuxfs mounted and its
/// `enforce` file readable).
pub fn selinux_enabled() -> bool {
    selinux_enabled_in(Path::new("/"))
}

/// In the init child before `execve`: sets the AppArmor profile and the
/// SELinux label the container process will get at `execve`. Each is skipped
/// when unset, empty, or when its module is not enabled.
pub fn apply_exec_labels(apparmor: Option<&str>, selinux: Option<&str>) -> Result<(), LsmError> {
    if let Some(profile) = apparmor.filter(|p| !p.is_empty()) {
        if apparmor_enabled() {
            // The AppArmor-specific file exists on kernels with LSM stacking
            // (5.8+); older ones only have the shared attr/exec.
            write_attr(
                "AppArmor",
                profile,
                &[
                    "/proc/thread-self/attr/apparmor/exec",
                    "/proc/thread-self/attr/exec",
                ],
                format!("exec {profile}").as_bytes(),
            )?;
        }
    }
    if let Some(label) = selinux.filter(|l| !l.is_empty()) {
        if selinux_enabled() {
            write_attr(
                "SELinux",
                label,
                &["/proc/thread-self/attr/exec"],
                label.as_bytes(),
            )?;
        }
    }
    Ok(())
}

/// The mount option for `linux.mountLabel`: `context="<label>"` when SELinux
/// is enabled and a label is set, else `None`.
pub fn mount_label_option(label: Option<&str>) -> Option<String> {
    let label = label.filter(|l| !l.is_empty())?;
    selinux_enabled().then(|| context_option(label))
}

/// Quoted, because MCS labels contain commas (`s0:c1,c2`), which would
/// otherwise split the mount option string.
fn context_option(label: &str) -> String {
    format!("context=\"{label}\"")
}

/// Writes `data` in one `write` to the first of `paths` that exists.
fn write_attr(lsm: &'static str, label: &str, paths: &[&str], data: &[u8]) -> Result<(), LsmError> {
    let mut last = None;
    for path in paths {
        let opened = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path);
        let result = match opened {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                last = Some((path, e));
                continue;
            }
            Err(e) => Err(e),
            // The kernel parses the whole attribute from a single write.
            Ok(mut f) => f.write(data).and_then(|n| {
                if n == data.len() {
                    Ok(())
                } else {
                    Err(std::io::Error::new(ErrorKind::WriteZero, "short write"))
                }
            }),
        };
        return result.map_err(|source| LsmError::SetExecLabel {
            lsm,
            label: label.to_string(),
            path: PathBuf::from(path),
            source,
        });
    }
    let (path, source) = last.expect("paths is never empty");
    Err(LsmError::SetExecLabel {
        lsm,
        label: label.to_string(),
        path: PathBuf::from(path),
        source,
    })
}

/// [`apparmor_enabled`] with every host path below `root`.
fn apparmor_enabled_in(root: &Path) -> bool {
    let enabled = std::fs::read_to_string(root.join("sys/module/apparmor/parameters/enabled"))
        .is_ok_and(|s| s.starts_with('Y'));
    enabled && root.join("sys/kernel/security/apparmor").exists()
}

/// [`selinux_enabled`] with every host path below `root`: finds the selinuxfs
/// mount in `/proc/self/mountinfo` (falling back to `/sys/fs/selinux`) and
/// checks that its `enforce` file can be read.
fn selinux_enabled_in(root: &Path) -> bool {
    let mount = std::fs::read_to_string(root.join("proc/self/mountinfo"))
        .ok()
        .and_then(|m| selinuxfs_mount_point(&m))
        .unwrap_or_else(|| "/sys/fs/selinux".to_string());
    let enforce = root.join(mount.trim_start_matches('/')).join("enforce");
    std::fs::read_to_string(enforce).is_ok()
}

/// The mount point of the first selinuxfs in a mountinfo text.
fn selinuxfs_mount_point(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        let (fields, rest) = line.split_once(" - ")?;
        if rest.split(' ').next()? != "selinuxfs" {
            return None;
        }
        fields.split(' ').nth(4).map(unescape_mountinfo)
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, etc.).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn touch(root: &Path, rel: &str, content: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    #[test]
    fn context_option_is_quoted() {
        assert_eq!(
            context_option("system_u:object_r:container_file_t:s0:c1,c2"),
            "context=\"system_u:object_r:container_file_t:s0:c1,c2\""
        );
    }

    #[test]
    fn mount_label_option_none_without_label() {
        assert_eq!(mount_label_option(None), None);
        assert_eq!(mount_label_option(Some("")), None);
        if !selinux_enabled() {
            assert_eq!(mount_label_option(Some("system_u:object_r:x:s0")), None);
        }
    }

    #[test]
    fn apparmor_detection_on_fake_root() {
        let root = tempfile::tempdir().unwrap();
        assert!(!apparmor_enabled_in(root.path()));
        touch(root.path(), "sys/module/apparmor/parameters/enabled", "Y\n");
        assert!(!apparmor_enabled_in(root.path()), "securityfs dir missing");
        fs::create_dir_all(root.path().join("sys/kernel/security/apparmor")).unwrap();
        assert!(apparmor_enabled_in(root.path()));
        touch(root.path(), "sys/module/apparmor/parameters/enabled", "N\n");
        assert!(!apparmor_enabled_in(root.path()));
    }

    #[test]
    fn selinux_detection_on_fake_root() {
        let root = tempfile::tempdir().unwrap();
        assert!(!selinux_enabled_in(root.path()));
        // Mounted at a non-default place, found through mountinfo.
        touch(
            root.path(),
            "proc/self/mountinfo",
            "22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw\n\
             40 22 0:35 / /my\\040selinux rw,relatime - selinuxfs selinuxfs rw\n",
        );
        assert!(!selinux_enabled_in(root.path()), "enforce file missing");
        touch(root.path(), "my selinux/enforce", "0");
        assert!(selinux_enabled_in(root.path()));
    }

    #[test]
    fn selinux_detection_falls_back_to_default_mount() {
        let root = tempfile::tempdir().unwrap();
        touch(root.path(), "sys/fs/selinux/enforce", "1");
        assert!(selinux_enabled_in(root.path()));
    }

    #[test]
    fn mountinfo_parsing() {
        assert_eq!(
            selinuxfs_mount_point("22 1 0:21 / /sys rw - sysfs sysfs rw\n"),
            None
        );
        assert_eq!(
            selinuxfs_mount_point("40 22 0:35 / /sys/fs/selinux rw - selinuxfs selinuxfs rw\n"),
            Some("/sys/fs/selinux".to_string())
        );
        assert_eq!(unescape_mountinfo("a\\040b\\134c"), "a b\\c");
    }

    #[test]
    fn labels_are_ignored_when_modules_are_off() {
        if apparmor_enabled() || selinux_enabled() {
            eprintln!("skipped: an LSM is enabled on this host");
            return;
        }
        apply_exec_labels(
            Some("berth-default"),
            Some("system_u:system_r:container_t:s0"),
        )
        .unwrap();
    }

    #[test]
    fn write_attr_names_the_path_and_label() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/file");
        let e = write_attr(
            "AppArmor",
            "prof",
            &[missing.to_str().unwrap()],
            b"exec prof",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("AppArmor") && e.contains("\"prof\"") && e.contains("no/such/file"),
            "{e}"
        );
        let ok = dir.path().join("attr");
        fs::write(&ok, "").unwrap();
        write_attr(
            "SELinux",
            "l",
            &[missing.to_str().unwrap(), ok.to_str().unwrap()],
            b"l",
        )
        .unwrap();
        assert_eq!(fs::read(&ok).unwrap(), b"l");
    }
}
