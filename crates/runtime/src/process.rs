//! Per-process settings applied in the container before `execve`: rlimits, I/O and
//! CPU scheduling, personality, executable lookup, and the messages of exec errors.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::resource::{setrlimit, Resource};
use oci_spec::runtime::{
    IOPriorityClass, LinuxIOPriority, LinuxMemoryPolicy, LinuxPersonality, LinuxPersonalityDomain,
    LinuxSchedulerFlag, LinuxSchedulerPolicy, MemoryPolicyFlagType, MemoryPolicyModeType,
    PosixRlimit, PosixRlimitType, Scheduler,
};

use crate::sys;

/// The PATH used when the process env has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The kernel resource for an OCI rlimit type.
pub fn resource(t: PosixRlimitType) -> Resource {
    match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

/// Apply one rlimit, with an error that says why raising a hard limit fails.
pub fn set_rlimit(r: &PosixRlimit) -> Result<(), String> {
    let res = resource(r.typ());
    setrlimit(res, r.soft(), r.hard()).map_err(|e| {
        let name = serde_json::to_string(&r.typ()).unwrap_or_default();
        let name = name.trim_matches('"');
        let mut msg = format!(
            "process.rlimits: setting {name} to soft {} hard {}: {}",
            r.soft(),
            r.hard(),
            e.desc()
        );
        if e == nix::errno::Errno::EPERM {
            msg.push_str(
                " (raising a hard limit needs CAP_SYS_RESOURCE, which this runtime lacks)",
            );
        }
        msg
    })
}

/// Apply `process.ioPriority`.
pub fn set_io_priority(p: &LinuxIOPriority) -> Result<(), String> {
    let class = match p.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    let level = p.priority();
    if !(0..=7).contains(&level) {
        return Err(format!(
            "process.ioPriority.priority {level}: must be 0 to 7"
        ));
    }
    sys::ioprio_set(class, level as u32)
        .map_err(|e| format!("process.ioPriority: ioprio_set: {}", e.desc()))
}

/// Translate `process.scheduler` to a `sched_attr`.
pub fn sched_attr(s: &Scheduler) -> Result<sys::SchedAttr, String> {
    let policy = match s.policy() {
        LinuxSchedulerPolicy::SchedOther => libc::SCHED_OTHER,
        LinuxSchedulerPolicy::SchedFifo => libc::SCHED_FIFO,
        LinuxSchedulerPolicy::SchedRr => libc::SCHED_RR,
        LinuxSchedulerPolicy::SchedBatch => libc::SCHED_BATCH,
        LinuxSchedulerPolicy::SchedIso => {
            return Err("process.scheduler: SCHED_ISO is not implemented by Linux".into())
        }
        LinuxSchedulerPolicy::SchedIdle => libc::SCHED_IDLE,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    };
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
            LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
        };
    }
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(format!("process.scheduler.nice {nice}: must be -20 to 19"));
    }
    Ok(sys::SchedAttr {
        size: 0,
        sched_policy: policy as u32,
        sched_flags: flags,
        sched_nice: nice,
        sched_priority: s.priority().unwrap_or(0).max(0) as u32,
        sched_runtime: s.runtime().unwrap_or(0),
        sched_deadline: s.deadline().unwrap_or(0),
        sched_period: s.period().unwrap_or(0),
    })
}

/// Apply `process.scheduler`.
pub fn set_scheduler(s: &Scheduler) -> Result<(), String> {
    let attr = sched_attr(s)?;
    sys::sched_setattr(&attr).map_err(|e| format!("process.scheduler: sched_setattr: {}", e.desc()))
}

/// Apply `linux.personality`.
pub fn set_personality(p: &LinuxPersonality) -> Result<(), String> {
    let v = match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    if let Some(flags) = p.flags() {
        if !flags.is_empty() {
            return Err(format!(
                "linux.personality.flags {flags:?}: no flags are supported"
            ));
        }
    }
    sys::personality(v).map_err(|e| format!("linux.personality: {}", e.desc()))
}

/// `linux.memoryPolicy`, checked and ready for `set_mempolicy(2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemPolicy {
    /// The mode, with the `MPOL_F_*` flags or'ed in.
    pub mode: libc::c_int,
    /// The node mask, 64 nodes a word; empty for none.
    pub mask: Vec<libc::c_ulong>,
}

/// The highest node number accepted in a node list: the kernel's own limit
/// (`MAX_NUMNODES`) is at most 1024.
const MAX_NODE: usize = 1023;

/// Parse a node list such as `0-3,7`; an empty string is no nodes.
pub fn parse_node_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        if part.is_empty() && s.trim().is_empty() {
            continue;
        }
        let bad =
            || format!("linux.memoryPolicy.nodes {s:?}: {part:?} is not a node number or range");
        let num = |v: &str| -> Result<usize, String> {
            let n: usize = v.trim().parse().map_err(|_| bad())?;
            if n > MAX_NODE {
                return Err(format!(
                    "linux.memoryPolicy.nodes {s:?}: node {n} is above the kernel's limit of {MAX_NODE}"
                ));
            }
            Ok(n)
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The NUMA nodes of this host that have memory, from sysfs; `None` on a
/// kernel without NUMA support.
pub fn host_memory_nodes() -> Option<Vec<usize>> {
    let dir = Path::new("/sys/devices/system/node");
    let list = std::fs::read_to_string(dir.join("has_memory"))
        .or_else(|_| std::fs::read_to_string(dir.join("online")))
        .ok()?;
    parse_node_list(list.trim()).ok()
}

/// Check `linux.memoryPolicy` and turn it into `set_mempolicy` arguments.
/// `host_nodes` are the nodes with memory (`None`: the kernel has no NUMA).
/// Checked here, before the container exists, so that a bad policy is a clear
/// error rather than an EINVAL from the container's init.
pub fn memory_policy(
    p: &LinuxMemoryPolicy,
    host_nodes: Option<&[usize]>,
) -> Result<MemPolicy, String> {
    use MemoryPolicyModeType as M;
    let mode = p.mode();
    let name = mode.to_string();
    let nodes = parse_node_list(p.nodes().as_deref().unwrap_or(""))?;
    let mut flags = 0;
    let (mut fstatic, mut frelative) = (false, false);
    for f in p.flags().iter().flatten() {
        flags |= match f {
            MemoryPolicyFlagType::MpolFNumaBalancing => {
                if !matches!(mode, M::MpolBind | M::MpolPreferredMany) {
                    return Err(format!(
                        "linux.memoryPolicy.flags: MPOL_F_NUMA_BALANCING needs mode MPOL_BIND or MPOL_PREFERRED_MANY, not {name}"
                    ));
                }
                libc::MPOL_F_NUMA_BALANCING
            }
            MemoryPolicyFlagType::MpolFRelativeNodes => {
                frelative = true;
                libc::MPOL_F_RELATIVE_NODES
            }
            MemoryPolicyFlagType::MpolFStaticNodes => {
                fstatic = true;
                libc::MPOL_F_STATIC_NODES
            }
        };
    }
    if fstatic && frelative {
        return Err("linux.memoryPolicy.flags: MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other".into());
    }
    let (code, nodes_needed) = match mode {
        M::MpolDefault => (0, Some(false)),
        M::MpolPreferred => (1, None),
        M::MpolBind => (2, Some(true)),
        M::MpolInterleave => (3, Some(true)),
        M::MpolLocal => (4, Some(false)),
        M::MpolPreferredMany => (5, Some(true)),
        M::MpolWeightedInterleave => (6, Some(true)),
    };
    match nodes_needed {
        Some(false) if !nodes.is_empty() => {
            return Err(format!(
                "linux.memoryPolicy: mode {name} takes no nodes, but nodes is {:?}",
                p.nodes().as_deref().unwrap_or("")
            ))
        }
        Some(false) if flags != 0 => {
            return Err(format!("linux.memoryPolicy: mode {name} takes no flags"))
        }
        Some(true) if nodes.is_empty() => {
            return Err(format!(
                "linux.memoryPolicy: mode {name} needs at least one node in nodes"
            ))
        }
        None if nodes.is_empty() && (fstatic || frelative) => {
            return Err(format!(
                "linux.memoryPolicy: mode {name} without nodes takes no MPOL_F_STATIC_NODES or MPOL_F_RELATIVE_NODES"
            ))
        }
        _ => {}
    }
    if mode != M::MpolDefault {
        let Some(host) = host_nodes else {
            return Err(format!(
                "linux.memoryPolicy: mode {name} needs a kernel with NUMA support, and this one has none"
            ));
        };
        // Relative node numbers are positions in the allowed set, and static
        // ones may be absent for now, as long as one is there.
        let missing: Vec<usize> = nodes
            .iter()
            .copied()
            .filter(|n| !host.contains(n))
            .collect();
        let refused = if frelative {
            false
        } else if fstatic {
            missing.len() == nodes.len() && !nodes.is_empty()
        } else {
            !missing.is_empty()
        };
        if refused {
            return Err(format!(
                "linux.memoryPolicy.nodes {:?}: node {} does not exist or has no memory on this host (nodes with memory: {host:?})",
                p.nodes().as_deref().unwrap_or(""),
                missing[0]
            ));
        }
    }
    let bits = libc::c_ulong::BITS as usize;
    let mut mask = Vec::new();
    if let Some(max) = nodes.last() {
        mask = vec![0; max / bits + 1];
        for n in &nodes {
            mask[n / bits] |= 1 << (n % bits);
        }
    }
    Ok(MemPolicy {
        mode: code | flags,
        mask,
    })
}

/// Apply a checked memory policy to this process (and so to what it execs).
pub fn set_memory_policy(p: &MemPolicy) -> Result<(), String> {
    sys::set_mempolicy(p.mode, &p.mask)
        .map_err(|e| format!("linux.memoryPolicy: set_mempolicy: {}", e.desc()))
}

/// The home directory of `uid` from the container's /etc/passwd, or `/`.
pub fn home_of(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
            })
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into())
}

fn is_executable(p: &Path) -> Result<bool, std::io::Error> {
    let m = std::fs::metadata(p)?;
    Ok(m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Find `arg0` as execve would with the container's PATH; errors read like runc's
/// so that clients (podman) map them to exit codes 126 and 127.
pub fn find_executable(arg0: &str, env: &[String]) -> Result<PathBuf, String> {
    if arg0.contains('/') {
        let p = PathBuf::from(arg0);
        return match std::fs::metadata(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
                "exec: {arg0:?}: stat {arg0}: no such file or directory"
            )),
            Err(e) => Err(format!("exec: {arg0:?}: stat {arg0}: {e}")),
            Ok(m) if m.is_dir() => {
                Err(format!("exec: {arg0:?}: is a directory: permission denied"))
            }
            Ok(m) if m.permissions().mode() & 0o111 == 0 => {
                Err(format!("exec: {arg0:?}: permission denied"))
            }
            Ok(_) => Ok(p),
        };
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let mut denied = false;
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = Path::new(dir).join(arg0);
        match is_executable(&cand) {
            Ok(true) => return Ok(cand),
            Ok(false) => denied |= cand.is_file(),
            Err(_) => {}
        }
    }
    if denied {
        return Err(format!("exec: {arg0:?}: permission denied"));
    }
    Err(format!(
        "exec: {arg0:?}: executable file not found in $PATH"
    ))
}

/// The message for a failed execve.
pub fn exec_error(arg0: &str, prog: &Path, e: nix::Error) -> String {
    format!(
        "exec {arg0:?} ({}): {}",
        prog.display(),
        match e {
            nix::errno::Errno::ENOENT => "no such file or directory".to_string(),
            nix::errno::Errno::EACCES => "permission denied".to_string(),
            nix::errno::Errno::ENOEXEC => "exec format error".to_string(),
            other => other.desc().to_lowercase(),
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_in_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        let p = find_executable("sh", &env).unwrap();
        assert!(p.ends_with("sh"));
        let e = find_executable("no-such-binary-xyz", &env).unwrap_err();
        assert_eq!(
            e,
            "exec: \"no-such-binary-xyz\": executable file not found in $PATH"
        );
        let e = find_executable("/no/such", &env).unwrap_err();
        assert!(e.contains("no such file or directory"), "{e}");
        let e = find_executable("/tmp", &env).unwrap_err();
        assert!(e.contains("permission denied"), "{e}");
    }

    #[test]
    fn sched_attr_translation() {
        let s: Scheduler = serde_json::from_str(
            r#"{"policy":"SCHED_BATCH","nice":5,"flags":["SCHED_RESET_ON_FORK"]}"#,
        )
        .unwrap();
        let a = sched_attr(&s).unwrap();
        assert_eq!(a.sched_policy, libc::SCHED_BATCH as u32);
        assert_eq!(a.sched_nice, 5);
        assert_eq!(a.sched_flags, 1);
        let s: Scheduler = serde_json::from_str(r#"{"policy":"SCHED_OTHER","nice":40}"#).unwrap();
        assert!(sched_attr(&s).unwrap_err().contains("nice 40"));
    }

    fn policy(json: &str) -> LinuxMemoryPolicy {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn node_lists() {
        assert_eq!(parse_node_list("0-2,5,1").unwrap(), vec![0, 1, 2, 5]);
        assert_eq!(parse_node_list("").unwrap(), Vec::<usize>::new());
        assert!(parse_node_list("0-x").unwrap_err().contains("\"0-x\""));
        assert!(parse_node_list("3-1").is_err());
        assert!(parse_node_list("0,,1").is_err());
        // A huge range is refused, not allocated.
        assert!(parse_node_list("0-4294967295")
            .unwrap_err()
            .contains("limit"));
    }

    #[test]
    fn memory_policies() {
        let one = Some(&[0usize][..]);
        let p = memory_policy(&policy(r#"{"mode":"MPOL_BIND","nodes":"0"}"#), one).unwrap();
        assert_eq!(
            p,
            MemPolicy {
                mode: 2,
                mask: vec![1]
            }
        );
        let p = memory_policy(
            &policy(
                r#"{"mode":"MPOL_INTERLEAVE","nodes":"0-1,65","flags":["MPOL_F_RELATIVE_NODES"]}"#,
            ),
            one,
        )
        .unwrap();
        assert_eq!(p.mode, 3 | libc::MPOL_F_RELATIVE_NODES);
        assert_eq!(p.mask, vec![0b11, 0b10]);
        let p = memory_policy(&policy(r#"{"mode":"MPOL_LOCAL"}"#), one).unwrap();
        assert_eq!(
            p,
            MemPolicy {
                mode: 4,
                mask: vec![]
            }
        );
        // MPOL_DEFAULT works even without NUMA; nothing else does.
        memory_policy(&policy(r#"{"mode":"MPOL_DEFAULT"}"#), None).unwrap();
        let e = memory_policy(&policy(r#"{"mode":"MPOL_PREFERRED"}"#), None).unwrap_err();
        assert!(e.contains("NUMA"), "{e}");
        // Static nodes may be partly absent, plain ones not.
        memory_policy(
            &policy(r#"{"mode":"MPOL_BIND","nodes":"0,3","flags":["MPOL_F_STATIC_NODES"]}"#),
            one,
        )
        .unwrap();
        for (json, words) in [
            (
                r#"{"mode":"MPOL_BIND","nodes":"0,3"}"#,
                &["linux.memoryPolicy.nodes", "node 3"][..],
            ),
            (
                r#"{"mode":"MPOL_BIND"}"#,
                &["MPOL_BIND", "at least one node"],
            ),
            (
                r#"{"mode":"MPOL_DEFAULT","nodes":"0"}"#,
                &["MPOL_DEFAULT", "no nodes"],
            ),
            (
                r#"{"mode":"MPOL_LOCAL","flags":["MPOL_F_STATIC_NODES"]}"#,
                &["MPOL_LOCAL", "no flags"],
            ),
            (
                r#"{"mode":"MPOL_BIND","nodes":"0","flags":["MPOL_F_STATIC_NODES","MPOL_F_RELATIVE_NODES"]}"#,
                &["linux.memoryPolicy.flags", "exclude"],
            ),
            (
                r#"{"mode":"MPOL_INTERLEAVE","nodes":"0","flags":["MPOL_F_NUMA_BALANCING"]}"#,
                &["MPOL_F_NUMA_BALANCING", "MPOL_INTERLEAVE"],
            ),
            (
                r#"{"mode":"MPOL_PREFERRED","flags":["MPOL_F_STATIC_NODES"]}"#,
                &["MPOL_PREFERRED", "without nodes"],
            ),
        ] {
            let e = memory_policy(&policy(json), one).unwrap_err();
            for w in words {
                assert!(e.contains(w), "{json}: {e}");
            }
        }
    }

    #[test]
    fn rlimit_names() {
        assert_eq!(
            resource(PosixRlimitType::RlimitNofile),
            Resource::RLIMIT_NOFILE
        );
    }
}
