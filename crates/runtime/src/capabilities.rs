//! Capabilities: validate `process.capabilities` in the parent, then apply
//! them in the init child.
//!
//! Order in the init child:
//! 1. [`drop_bounding`] while still privileged (it needs `CAP_SETPCAP`);
//! 2. the caller sets `PR_SET_KEEPCAPS` and switches user (setresgid/setresuid);
//! 3. [`apply`] sets effective, permitted and inheritable in one `capset`,
//!    then raises the ambient set.
//!
//! The child-side functions are async-signal-safe: they compute bit masks
//! from the spec and make raw `prctl`/`capset` calls, with no allocation on
//! the success path.

use std::collections::HashSet;

use caps::{CapSet, Capability as Cap};
use nix::errno::Errno;
use oci_spec::runtime::{Capability, LinuxCapabilities};

/// Errors from validating or applying capabilities.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// The kernel does not know the capability.
    #[error(
        "capability {cap} is not known to this kernel (its last capability is number {last_cap})"
    )]
    UnknownToKernel {
        /// The capability.
        cap: Cap,
        /// /proc/sys/kernel/cap_last_cap.
        last_cap: u8,
    },
    /// The capability is requested but the runtime cannot pass it on.
    #[error("capability {cap} is not in the runtime's bounding set, so the container cannot be given it (requested in the {set} set)")]
    NotInRuntimeBounding {
        /// The capability.
        cap: Cap,
        /// The set it was requested in (permitted, effective, inheritable, ambient).
        set: &'static str,
    },
    /// A capability is effective but not permitted.
    #[error("capability {0} is in the effective set but not in the permitted set; the kernel requires effective to be a subset of permitted")]
    EffectiveNotPermitted(Cap),
    /// Reading the runtime's own capability state failed.
    #[error("reading {what} failed: {detail}")]
    Read {
        /// What was read.
        what: &'static str,
        /// The error.
        detail: String,
    },
    /// Dropping a capability from the bounding set failed.
    #[error("dropping capability number {index} from the bounding set failed: {errno} (this needs CAP_SETPCAP)")]
    DropBounding {
        /// The capability number (it may be newer than this library's names).
        index: u8,
        /// The error.
        errno: Errno,
    },
    /// `capset` failed.
    #[error("setting the effective/permitted/inheritable capabilities failed: {0}")]
    Capset(Errno),
    /// Raising an ambient capability failed.
    #[error("raising capability {cap} in the ambient set failed: {errno}")]
    Ambient {
        /// The capability.
        cap: Cap,
        /// The error.
        errno: Errno,
    },
}

/// Maps an oci-spec capability to the `caps` crate's (oci-spec has no conversion).
pub fn to_caps(c: Capability) -> Cap {
    use Capability as C;
    match c {
        C::AuditControl => Cap::CAP_AUDIT_CONTROL,
        C::AuditRead => Cap::CAP_AUDIT_READ,
        C::AuditWrite => Cap::CAP_AUDIT_WRITE,
        C::BlockSuspend => Cap::CAP_BLOCK_SUSPEND,
        C::Bpf => Cap::CAP_BPF,
        C::CheckpointRestore => Cap::CAP_CHECKPOINT_RESTORE,
        C::Chown => Cap::CAP_CHOWN,
        C::DacOverride => Cap::CAP_DAC_OVERRIDE,
        C::DacReadSearch => Cap::CAP_DAC_READ_SEARCH,
        C::Fowner => Cap::CAP_FOWNER,
        C::Fsetid => Cap::CAP_FSETID,
        C::IpcLock => Cap::CAP_IPC_LOCK,
        C::IpcOwner => Cap::CAP_IPC_OWNER,
        C::Kill => Cap::CAP_KILL,
        C::Lease => Cap::CAP_LEASE,
        C::LinuxImmutable => Cap::CAP_LINUX_IMMUTABLE,
        C::MacAdmin => Cap::CAP_MAC_ADMIN,
        C::MacOverride => Cap::CAP_MAC_OVERRIDE,
        C::Mknod => Cap::CAP_MKNOD,
        C::NetAdmin => Cap::CAP_NET_ADMIN,
        C::NetBindService => Cap::CAP_NET_BIND_SERVICE,
        C::NetBroadcast => Cap::CAP_NET_BROADCAST,
        C::NetRaw => Cap::CAP_NET_RAW,
        C::Perfmon => Cap::CAP_PERFMON,
        C::Setgid => Cap::CAP_SETGID,
        C::Setfcap => Cap::CAP_SETFCAP,
        C::Setpcap => Cap::CAP_SETPCAP,
        C::Setuid => Cap::CAP_SETUID,
        C::SysAdmin => Cap::CAP_SYS_ADMIN,
        C::SysBoot => Cap::CAP_SYS_BOOT,
        C::SysChroot => Cap::CAP_SYS_CHROOT,
        C::SysModule => Cap::CAP_SYS_MODULE,
        C::SysNice => Cap::CAP_SYS_NICE,
        C::SysPacct => Cap::CAP_SYS_PACCT,
        C::SysPtrace => Cap::CAP_SYS_PTRACE,
        C::SysRawio => Cap::CAP_SYS_RAWIO,
        C::SysResource => Cap::CAP_SYS_RESOURCE,
        C::SysTime => Cap::CAP_SYS_TIME,
        C::SysTtyConfig => Cap::CAP_SYS_TTY_CONFIG,
        C::Syslog => Cap::CAP_SYSLOG,
        C::WakeAlarm => Cap::CAP_WAKE_ALARM,
    }
}

/// Bit mask (bit n = capability number n) of an optional OCI set.
fn mask(set: &Option<HashSet<Capability>>) -> u64 {
    set.iter()
        .flatten()
        .fold(0, |m, c| m | to_caps(*c).bitmask())
}

/// In the init child, before changing user: drops from the bounding set every
/// capability the kernel knows that is not in `c.bounding` (a missing list
/// keeps nothing). Needs `CAP_SETPCAP` in the effective set.
pub fn drop_bounding(c: &LinuxCapabilities) -> Result<(), CapsError> {
    let keep = mask(c.bounding());
    for index in 0..64u8 {
        // SAFETY: prctl with integer arguments only.
        let present =
            unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(index), 0, 0, 0) };
        if present < 0 {
            break; // EINVAL: past the kernel's last capability
        }
        if present == 0 || keep & (1 << index) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(index), 0, 0, 0) } < 0 {
            return Err(CapsError::DropBounding {
                index,
                errno: Errno::last(),
            });
        }
    }
    Ok(())
}

/// After setresuid/setresgid (done with `PR_SET_KEEPCAPS` by the caller):
/// sets effective, permitted and inheritable in one `capset`, then raises the
/// ambient set. Ambient capabilities that are not both permitted and
/// inheritable are skipped, since the kernel cannot raise them ([`validate`]
/// warns about them in the parent).
pub fn apply(c: &LinuxCapabilities) -> Result<(), CapsError> {
    let effective = mask(c.effective());
    let permitted = mask(c.permitted());
    let inheritable = mask(c.inheritable());
    capset(effective, permitted, inheritable).map_err(CapsError::Capset)?;

    // Start from an empty ambient set. Raising needs the cap in both
    // permitted and inheritable. (Kernels before 4.3 have no ambient set;
    // the clear then fails harmlessly and any raise below reports it.)
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    for cap in c.ambient().iter().flatten().map(|c| to_caps(*c)) {
        if permitted & inheritable & cap.bitmask() == 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                libc::c_ulong::from(cap.index()),
                0,
                0,
            )
        };
        if rc < 0 {
            return Err(CapsError::Ambient {
                cap,
                errno: Errno::last(),
            });
        }
    }
    Ok(())
}

/// Validation in the parent before clone: every requested capability must be
/// known to this kernel, and capabilities requested in the permitted,
/// effective, inheritable or ambient sets must be in the runtime's own
/// bounding set (the child cannot gain what the runtime lacks). A bounding
/// entry the runtime lacks only warns: the container simply won't have it.
pub fn validate(c: &LinuxCapabilities) -> Result<(), CapsError> {
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .map_err(|e| e.to_string())
        .and_then(|s| s.trim().parse::<u8>().map_err(|e| e.to_string()))
        .map_err(|detail| CapsError::Read {
            what: "/proc/sys/kernel/cap_last_cap",
            detail,
        })?;
    let bounding = caps::read(None, CapSet::Bounding)
        .map_err(|e| CapsError::Read {
            what: "the runtime's bounding set",
            detail: e.to_string(),
        })?
        .iter()
        .fold(0u64, |m, cap| m | cap.bitmask());
    validate_against(c, last_cap, bounding)
}

/// [`validate`] against a given kernel `last_cap` and runtime bounding mask.
fn validate_against(c: &LinuxCapabilities, last_cap: u8, bounding: u64) -> Result<(), CapsError> {
    let sets: [(&'static str, &Option<HashSet<Capability>>); 4] = [
        ("permitted", c.permitted()),
        ("effective", c.effective()),
        ("inheritable", c.inheritable()),
        ("ambient", c.ambient()),
    ];
    for (set, caps) in sets {
        // Sorted so that the error is deterministic.
        let mut caps: Vec<Cap> = caps.iter().flatten().map(|c| to_caps(*c)).collect();
        caps.sort_by_key(Cap::index);
        for cap in caps {
            if cap.index() > last_cap {
                return Err(CapsError::UnknownToKernel { cap, last_cap });
            }
            if bounding & cap.bitmask() == 0 {
                return Err(CapsError::NotInRuntimeBounding { cap, set });
            }
        }
    }
    for cap in c.bounding().iter().flatten().map(|c| to_caps(*c)) {
        if cap.index() > last_cap || bounding & cap.bitmask() == 0 {
            tracing::warn!(capability = %cap, "capability in the bounding list is not available to the runtime; the container will not have it");
        }
    }
    let (effective, permitted, inheritable) = (
        mask(c.effective()),
        mask(c.permitted()),
        mask(c.inheritable()),
    );
    if let Some(cap) = first_cap(effective & !permitted) {
        return Err(CapsError::EffectiveNotPermitted(cap));
    }
    let mut ambient_skipped: Vec<Cap> = c
        .ambient()
        .iter()
        .flatten()
        .map(|c| to_caps(*c))
        .filter(|c| permitted & inheritable & c.bitmask() == 0)
        .collect();
    ambient_skipped.sort_by_key(Cap::index);
    for cap in ambient_skipped {
        tracing::debug!(capability = %cap, "ambient capability is not in both the permitted and inheritable sets; it will not be raised");
    }
    Ok(())
}

/// The lowest-numbered capability in `mask` that the `caps` crate can name.
fn first_cap(mask: u64) -> Option<Cap> {
    caps::all()
        .into_iter()
        .filter(|c| mask & c.bitmask() != 0)
        .min_by_key(Cap::index)
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets as two 32-bit halves.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Sets the three sets of the calling thread at once, so no intermediate
/// state (e.g. effective not within permitted) is ever asked of the kernel.
fn capset(effective: u64, permitted: u64, inheritable: u64) -> Result<(), Errno> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |m: u64, hi: bool| if hi { (m >> 32) as u32 } else { m as u32 };
    let data = [false, true].map(|hi| CapData {
        effective: half(effective, hi),
        permitted: half(permitted, hi),
        inheritable: half(inheritable, hi),
    });
    // SAFETY: header and data are valid, correctly laid out (#[repr(C)]) and
    // sized for version 3 (two data structs); the kernel only reads data.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Reads the calling thread's (effective, permitted, inheritable) masks.
#[cfg(test)]
fn capget() -> Result<(u64, u64, u64), Errno> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and data are valid and sized for version 3; the kernel
    // writes two data structs.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    if rc < 0 {
        return Err(Errno::last());
    }
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
        join(data[0].inheritable, data[1].inheritable),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    use oci_spec::runtime::LinuxCapabilitiesBuilder;

    fn set(caps: &[Capability]) -> HashSet<Capability> {
        caps.iter().copied().collect()
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
            && caps::has_cap(None, CapSet::Effective, Cap::CAP_SETPCAP).unwrap_or(false)
    }

    /// Runs `f` in a forked child (raw syscalls only, no allocation: the
    /// test harness is multi-threaded) and returns its exit code.
    fn in_child(f: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child runs only `f`, then `_exit`s.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let code = f();
                // SAFETY: _exit never returns.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => match waitpid(child, None).expect("waitpid") {
                WaitStatus::Exited(_, code) => code,
                other => panic!("child: {other:?}"),
            },
        }
    }

    fn in_bounding(cap: Cap) -> bool {
        // SAFETY: prctl with integer arguments only.
        unsafe {
            libc::prctl(
                libc::PR_CAPBSET_READ,
                libc::c_ulong::from(cap.index()),
                0,
                0,
                0,
            ) == 1
        }
    }

    fn ambient_is_set(cap: Cap) -> bool {
        // SAFETY: prctl with integer arguments only.
        unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_IS_SET as libc::c_ulong,
                libc::c_ulong::from(cap.index()),
                0,
                0,
            ) == 1
        }
    }

    #[test]
    fn mapping_matches_names() {
        for name in [
            "CAP_CHOWN",
            "CAP_SYS_ADMIN",
            "CAP_CHECKPOINT_RESTORE",
            "CAP_WAKE_ALARM",
            "CAP_BPF",
        ] {
            let oci: Capability = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            assert_eq!(to_caps(oci).to_string(), name);
        }
    }

    #[test]
    fn oci_spec_rejects_unknown_names_naming_them() {
        let e =
            serde_json::from_str::<LinuxCapabilities>(r#"{"bounding":["CAP_CHOWN","CAP_FLY"]}"#)
                .unwrap_err()
                .to_string();
        assert!(e.contains("CAP_FLY"), "{e}");
    }

    #[test]
    fn validate_against_names_the_capability() {
        let c = LinuxCapabilitiesBuilder::default()
            .bounding(set(&[Capability::Chown, Capability::SysResource]))
            .permitted(set(&[Capability::Chown, Capability::SysResource]))
            .effective(set(&[Capability::Chown]))
            .build()
            .unwrap();
        let all = u64::MAX >> (63 - 40);
        let without = all & !Cap::CAP_SYS_RESOURCE.bitmask();
        assert!(validate_against(&c, 40, all).is_ok());
        let e = validate_against(&c, 40, without).unwrap_err().to_string();
        assert_eq!(
            e,
            "capability CAP_SYS_RESOURCE is not in the runtime's bounding set, so the container cannot be given it (requested in the permitted set)"
        );
        // Only in the bounding list: a warning, not an error.
        let b = LinuxCapabilitiesBuilder::default()
            .bounding(set(&[Capability::SysResource]))
            .permitted(set(&[]))
            .effective(set(&[]))
            .inheritable(set(&[]))
            .ambient(set(&[]))
            .build()
            .unwrap();
        assert!(validate_against(&b, 40, without).is_ok());
        // A kernel that stops at CAP_AUDIT_READ (37) does not know CAP_BPF (39).
        let bpf = LinuxCapabilitiesBuilder::default()
            .bounding(set(&[]))
            .permitted(set(&[Capability::Bpf]))
            .effective(set(&[]))
            .inheritable(set(&[]))
            .ambient(set(&[]))
            .build()
            .unwrap();
        let e = validate_against(&bpf, 37, all).unwrap_err().to_string();
        assert!(
            e.contains("CAP_BPF") && e.contains("not known to this kernel"),
            "{e}"
        );
        let eff = LinuxCapabilitiesBuilder::default()
            .bounding(set(&[]))
            .permitted(set(&[Capability::Chown]))
            .effective(set(&[Capability::Chown, Capability::Kill]))
            .inheritable(set(&[]))
            .ambient(set(&[]))
            .build()
            .unwrap();
        let e = validate_against(&eff, 40, all).unwrap_err().to_string();
        assert!(e.contains("CAP_KILL") && e.contains("effective"), "{e}");
    }

    #[test]
    fn validate_on_this_host() {
        let c = LinuxCapabilitiesBuilder::default()
            .permitted(set(&[Capability::SysResource]))
            .effective(set(&[Capability::SysResource]))
            .build()
            .unwrap();
        let r = validate(&c);
        if in_bounding(Cap::CAP_SYS_RESOURCE) {
            assert!(r.is_ok(), "{r:?}");
        } else {
            let e = r.unwrap_err().to_string();
            assert!(
                e.contains("CAP_SYS_RESOURCE is not in the runtime's bounding set"),
                "{e}"
            );
        }
        assert!(validate(&LinuxCapabilities::default()).is_ok());
    }

    #[test]
    fn drop_bounding_in_child() {
        if !is_root() {
            eprintln!("skipped: needs root with CAP_SETPCAP");
            return;
        }
        let c = LinuxCapabilitiesBuilder::default()
            .bounding(set(&[Capability::Chown, Capability::Kill]))
            .build()
            .unwrap();
        let code = in_child(|| {
            if drop_bounding(&c).is_err() {
                return 10;
            }
            if !in_bounding(Cap::CAP_CHOWN) || !in_bounding(Cap::CAP_KILL) {
                return 11;
            }
            if in_bounding(Cap::CAP_SYS_ADMIN) || in_bounding(Cap::CAP_SETPCAP) {
                return 12;
            }
            0
        });
        assert_eq!(code, 0, "child exit code tells which check failed");
    }

    #[test]
    fn apply_after_user_switch_in_child() {
        if !is_root() {
            eprintln!("skipped: needs root with CAP_SETPCAP");
            return;
        }
        let c = LinuxCapabilitiesBuilder::default()
            .bounding(set(&[
                Capability::Chown,
                Capability::NetBindService,
                Capability::Kill,
            ]))
            .permitted(set(&[
                Capability::Chown,
                Capability::NetBindService,
                Capability::Kill,
            ]))
            .effective(set(&[Capability::Chown, Capability::NetBindService]))
            .inheritable(set(&[Capability::NetBindService]))
            // KILL is not inheritable, so it cannot be ambient: skipped.
            .ambient(set(&[Capability::NetBindService, Capability::Kill]))
            .build()
            .unwrap();
        let want_e = Cap::CAP_CHOWN.bitmask() | Cap::CAP_NET_BIND_SERVICE.bitmask();
        let want_p = want_e | Cap::CAP_KILL.bitmask();
        let want_i = Cap::CAP_NET_BIND_SERVICE.bitmask();
        let code = in_child(|| {
            if drop_bounding(&c).is_err() {
                return 10;
            }
            // SAFETY: prctl and set*id with integer arguments only.
            unsafe {
                if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0
                    || libc::setresgid(1000, 1000, 1000) < 0
                    || libc::setresuid(1000, 1000, 1000) < 0
                {
                    return 11;
                }
            }
            if apply(&c).is_err() {
                return 12;
            }
            match capget() {
                Ok((e, p, i)) if e == want_e && p == want_p && i == want_i => {}
                _ => return 13,
            }
            if !ambient_is_set(Cap::CAP_NET_BIND_SERVICE) || ambient_is_set(Cap::CAP_KILL) {
                return 14;
            }
            0
        });
        assert_eq!(code, 0, "child exit code tells which check failed");
    }

    #[test]
    fn apply_with_empty_sets_drops_everything_in_child() {
        if !is_root() {
            eprintln!("skipped: needs root with CAP_SETPCAP");
            return;
        }
        let c = LinuxCapabilitiesBuilder::default()
            .bounding(set(&[]))
            .permitted(set(&[]))
            .effective(set(&[]))
            .inheritable(set(&[]))
            .ambient(set(&[]))
            .build()
            .unwrap();
        let code = in_child(|| {
            if drop_bounding(&c).is_err() || apply(&c).is_err() {
                return 10;
            }
            match capget() {
                Ok((0, 0, 0)) => 0,
                _ => 11,
            }
        });
        assert_eq!(code, 0);
    }
}
