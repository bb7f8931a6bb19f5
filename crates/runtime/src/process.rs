//! Per-process settings applied in the container before `execve`: rlimits, I/O and
//! CPU scheduling, personality, executable lookup, and the messages of exec errors.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::resource::{setrlimit, Resource};
use oci_spec::runtime::{
    IOPriorityClass, LinuxIOPriority, LinuxPersonality, LinuxPersonalityDomain, LinuxSchedulerFlag,
    LinuxSchedulerPolicy, PosixRlimit, PosixRlimitType, Scheduler,
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

    #[test]
    fn rlimit_names() {
        assert_eq!(
            resource(PosixRlimitType::RlimitNofile),
            Resource::RLIMIT_NOFILE
        );
    }
}
