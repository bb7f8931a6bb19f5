//! Mounting what a snapshotter returns.
//!
//! Overlay mounts use the new mount API (`fsopen("overlay")`, one
//! `lowerdir+` per layer, `fsmount`, `move_mount`), so a stack of many layers
//! is not limited by the one-page option string of `mount(2)`; classic
//! `mount(2)` is the fallback when `fsopen` is missing.

use std::path::Path;

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

use super::{Mount, SnapshotError};

fn err(context: String, e: rustix::io::Errno) -> SnapshotError {
    SnapshotError::Io {
        context,
        source: e.into(),
    }
}

/// Mounts `mounts` on `target`, in order.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<(), SnapshotError> {
    for m in mounts {
        match m.typ.as_str() {
            "bind" => mount_bind(m, target)?,
            "overlay" => mount_overlay(m, target)?,
            other => {
                return Err(SnapshotError::Io {
                    context: format!("mount {} on {}", m.source, target.display()),
                    source: std::io::Error::new(
                        std::io::ErrorKind::Unsupported,
                        format!("mount type {other:?}"),
                    ),
                })
            }
        }
    }
    Ok(())
}

fn mount_bind(m: &Mount, target: &Path) -> Result<(), SnapshotError> {
    let ctx = || format!("bind {} on {}", m.source, target.display());
    let mut flags = MountFlags::BIND;
    if m.options.iter().any(|o| o == "rbind") {
        flags |= MountFlags::REC;
    }
    rustix::mount::mount(m.source.as_str(), target, "", flags, None).map_err(|e| err(ctx(), e))?;
    if m.options.iter().any(|o| o == "ro") {
        rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")
            .map_err(|e| err(format!("remount {} read-only", target.display()), e))?;
    }
    Ok(())
}

fn mount_overlay(m: &Mount, target: &Path) -> Result<(), SnapshotError> {
    let ctx = |what: &str| format!("overlay on {}: {what}", target.display());
    let fs = match rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOSYS) => return mount_overlay_classic(m, target),
        Err(e) => return Err(err(ctx("fsopen"), e)),
    };
    let mut attrs = MountAttrFlags::empty();
    for opt in &m.options {
        match opt.split_once('=') {
            Some(("lowerdir", dirs)) => {
                for d in dirs.split(':') {
                    rustix::mount::fsconfig_set_string(&fs, "lowerdir+", d)
                        .map_err(|e| err(ctx(&format!("lowerdir+={d}")), e))?;
                }
            }
            Some((k, v)) => {
                rustix::mount::fsconfig_set_string(&fs, k, v).map_err(|e| err(ctx(opt), e))?
            }
            None if opt == "ro" => attrs |= MountAttrFlags::MOUNT_ATTR_RDONLY,
            None if opt == "rw" => {}
            None => {
                rustix::mount::fsconfig_set_flag(&fs, opt.as_str()).map_err(|e| err(ctx(opt), e))?
            }
        }
    }
    rustix::mount::fsconfig_create(&fs).map_err(|e| err(ctx("create"), e))?;
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
        .map_err(|e| err(ctx("fsmount"), e))?;
    rustix::mount::move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| err(ctx("move_mount"), e))?;
    Ok(())
}

fn mount_overlay_classic(m: &Mount, target: &Path) -> Result<(), SnapshotError> {
    let mut flags = MountFlags::empty();
    let data: Vec<&str> = m
        .options
        .iter()
        .filter(|o| match o.as_str() {
            "ro" => {
                flags |= MountFlags::RDONLY;
                false
            }
            "rw" => false,
            _ => true,
        })
        .map(String::as_str)
        .collect();
    let data = std::ffi::CString::new(data.join(",")).map_err(|_| SnapshotError::Io {
        context: format!("mount overlay on {}", target.display()),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in mount options"),
    })?;
    rustix::mount::mount("overlay", target, "overlay", flags, Some(data.as_c_str()))
        .map_err(|e| err(format!("mount overlay on {}", target.display()), e))
}

/// Detaches every mount stacked on `target`; nothing mounted is fine.
pub fn unmount_all(target: &Path) -> Result<(), SnapshotError> {
    loop {
        match rustix::mount::unmount(target, UnmountFlags::DETACH) {
            Ok(()) => {}
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(err(format!("unmount {}", target.display()), e)),
        }
    }
}
