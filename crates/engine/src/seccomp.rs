//! The default seccomp profile, equivalent in effect to docker's and
//! containers-common's: an allow-list with `EPERM` for everything else.
//!
//! Rather than carrying a list of ~350 names that goes stale, the allow-list
//! is every system call libseccomp knows for the host's architectures, minus
//! those a container may not make:
//! - never, whatever its capabilities ([`NEVER`]: kexec, swap, module-era
//!   relics, keyrings, userfaultfd, io_uring, …);
//! - only with a capability ([`GATED`]): `mount`, `unshare`, `setns`, `bpf`,
//!   `process_vm_readv`, `reboot`, `settimeofday`, … are allowed when the container has
//!   the capability that makes them meaningful, as docker does for
//!   `--cap-add`;
//! - with argument rules: `clone` without namespace flags and `clone3` as
//!   `ENOSYS` (so libc falls back to `clone`) unless the container has
//!   `CAP_SYS_ADMIN`, and `personality` only for the harmless personas.
//!
//! A system call newer than the host's libseccomp is unknown here, so it is
//! refused by the default action, as with docker's list.

use std::collections::BTreeSet;

use libseccomp::{ScmpArch, ScmpSyscall};
use serde_json::{json, Value};

/// Refused to every container (besides `--privileged`, which has no
/// profile).
pub const NEVER: &[&str] = &[
    "add_key",
    "afs_syscall",
    "bdflush",
    "create_module",
    "get_kernel_syms",
    "getpmsg",
    // io_uring: a long run of kernel escapes (moby refuses it since 25,
    // containerd since 2.0, Google in production).
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "nfsservctl",
    "pivot_root",
    "putpmsg",
    "query_module",
    "request_key",
    "security",
    "swapoff",
    "swapon",
    "_sysctl",
    "sysfs",
    "tuxcall",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
    "vserver",
];

/// Allowed only to a container with the capability.
pub const GATED: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "finit_module", "init_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &[
            "adjtimex",
            "clock_adjtime",
            "clock_adjtime64",
            "clock_settime",
            "clock_settime64",
            "settimeofday",
            "stime",
        ],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "move_pages",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
];

/// The namespace flags `clone` may not carry without `CAP_SYS_ADMIN`:
/// CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME.
const CLONE_NS_FLAGS: u64 = 0x0002_0000
    | 0x0200_0000
    | 0x0400_0000
    | 0x0800_0000
    | 0x1000_0000
    | 0x2000_0000
    | 0x4000_0000
    | 0x80;

/// `personality` values allowed: PER_LINUX, UNAME26, PER_LINUX32,
/// UNAME26|PER_LINUX32, and the query 0xffffffff.
const PERSONAS: [u64; 5] = [0x0, 0x0002_0000, 0x8, 0x0002_0008, 0xffff_ffff];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The seccomp architectures for this host, in OCI names, with libseccomp's.
fn architectures() -> Vec<(&'static str, ScmpArch)> {
    match ScmpArch::native() {
        ScmpArch::X8664 => vec![
            ("SCMP_ARCH_X86_64", ScmpArch::X8664),
            ("SCMP_ARCH_X86", ScmpArch::X86),
            ("SCMP_ARCH_X32", ScmpArch::X32),
        ],
        ScmpArch::Aarch64 => vec![
            ("SCMP_ARCH_AARCH64", ScmpArch::Aarch64),
            ("SCMP_ARCH_ARM", ScmpArch::Arm),
        ],
        a => vec![("", a)],
    }
}

/// Every system call name libseccomp knows for `arch` (numbers 0..1024,
/// and x32's own range).
fn known_names(arch: ScmpArch) -> BTreeSet<String> {
    let base: i32 = if arch == ScmpArch::X32 {
        0x4000_0000
    } else {
        0
    };
    (0..1024)
        .filter_map(|n| ScmpSyscall::from(base + n).get_name_by_arch(arch).ok())
        .collect()
}

/// The profile for a container with capabilities `caps` (`CAP_*` names).
pub fn default_profile(caps: &BTreeSet<String>) -> Value {
    let archs = architectures();
    let mut denied: BTreeSet<&str> = NEVER.iter().copied().collect();
    for (cap, calls) in GATED {
        if !caps.contains(*cap) {
            denied.extend(calls.iter().copied());
        }
    }
    let admin = caps.contains("CAP_SYS_ADMIN");
    // Calls with their own rules below.
    let special = ["clone", "clone3", "personality"];
    let mut names: BTreeSet<String> = BTreeSet::new();
    for (_, a) in &archs {
        names.extend(known_names(*a));
    }
    let allowed: Vec<String> = names
        .into_iter()
        .filter(|n| !denied.contains(n.as_str()) && !special.contains(&n.as_str()))
        .collect();

    let mut syscalls = vec![json!({"names": allowed, "action": "SCMP_ACT_ALLOW"})];
    if admin {
        syscalls.push(json!({"names": ["clone", "clone3"], "action": "SCMP_ACT_ALLOW"}));
    } else {
        syscalls.push(json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": CLONE_NS_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        }));
        syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
    }
    for p in PERSONAS {
        syscalls.push(json!({
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}],
        }));
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": archs.iter().map(|(n, _)| *n).filter(|n| !n.is_empty()).collect::<Vec<_>>(),
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_of(p: &Value, action: &str) -> BTreeSet<String> {
        p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == action && r.get("args").is_none())
            .flat_map(|r| r["names"].as_array().unwrap().iter())
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    }

    fn caps(c: &[&str]) -> BTreeSet<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn default_caps_allow_the_ordinary_and_refuse_the_rest() {
        let p = default_profile(&caps(&crate::spec::DEFAULT_CAPS));
        let allowed = names_of(&p, "SCMP_ACT_ALLOW");
        // ptrace is allowed (docker: on kernels from 4.8, where it cannot
        // escape seccomp); without CAP_SYS_PTRACE it reaches only the
        // container's own processes.
        for ok in [
            "read", "write", "openat", "execve", "mmap", "futex", "chroot", "socket", "ptrace",
        ] {
            assert!(allowed.contains(ok), "{ok} should be allowed");
        }
        for no in [
            "mount",
            "unshare",
            "setns",
            "keyctl",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "bpf",
            "process_vm_readv",
            "reboot",
            "init_module",
            "kexec_load",
            "clone3",
            "pivot_root",
        ] {
            assert!(!allowed.contains(no), "{no} should be refused");
        }
        assert!(allowed.len() > 250, "only {} calls allowed", allowed.len());
        assert_eq!(names_of(&p, "SCMP_ACT_ERRNO"), caps(&["clone3"]));
    }

    #[test]
    fn capabilities_open_their_calls() {
        let mut c = caps(&crate::spec::DEFAULT_CAPS);
        c.insert("CAP_SYS_ADMIN".into());
        c.insert("CAP_SYS_PTRACE".into());
        let p = default_profile(&c);
        let allowed = names_of(&p, "SCMP_ACT_ALLOW");
        for ok in [
            "mount",
            "unshare",
            "setns",
            "process_vm_readv",
            "clone",
            "clone3",
        ] {
            assert!(allowed.contains(ok), "{ok}");
        }
        assert!(!allowed.contains("keyctl") && !allowed.contains("reboot"));
    }
}
