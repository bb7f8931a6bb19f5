//! Runtime conformance with configs that other tools write (issue 13, section
//! "Runtime conformance"): container setup. Every case starts from the config
//! that `runc spec` or `crun spec` generates here at test time (or the
//! `--rootless` variant), edits it for the case, and runs it with berth's
//! runtime and, where runc 1.1.5 knows the feature, with runc too, to show the
//! expectation is the common one.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use berth_tests::peer::*;
use berth_tests::*;
use serde_json::{json, Value};

macro_rules! root_only {
    ($name:expr) => {
        if !need_root($name) {
            return;
        }
    };
}

/// A seccomp profile in the shape of the defaults docker and the OCI tooling
/// shipped before 2020: everything denied with EPERM but an allow-list of the
/// syscalls of the time. `close_range` (Linux 5.9), `clone3`, `openat2`,
/// `faccessat2` and the pidfd calls are not on it: they did not exist yet.
fn seccomp_profile_2019() -> Value {
    let names = [
        "accept",
        "accept4",
        "access",
        "adjtimex",
        "alarm",
        "arch_prctl",
        "bind",
        "brk",
        "capget",
        "capset",
        "chdir",
        "chmod",
        "chown",
        "chown32",
        "chroot",
        "clock_adjtime",
        "clock_getres",
        "clock_gettime",
        "clock_nanosleep",
        "clone",
        "close",
        "connect",
        "copy_file_range",
        "creat",
        "dup",
        "dup2",
        "dup3",
        "epoll_create",
        "epoll_create1",
        "epoll_ctl",
        "epoll_pwait",
        "epoll_wait",
        "eventfd",
        "eventfd2",
        "execve",
        "execveat",
        "exit",
        "exit_group",
        "faccessat",
        "fadvise64",
        "fallocate",
        "fanotify_mark",
        "fchdir",
        "fchmod",
        "fchmodat",
        "fchown",
        "fchownat",
        "fcntl",
        "fdatasync",
        "fgetxattr",
        "flistxattr",
        "flock",
        "fork",
        "fremovexattr",
        "fsetxattr",
        "fstat",
        "fstat64",
        "fstatfs",
        "fsync",
        "ftruncate",
        "futex",
        "futimesat",
        "get_robust_list",
        "get_thread_area",
        "getcpu",
        "getcwd",
        "getdents",
        "getdents64",
        "getegid",
        "geteuid",
        "getgid",
        "getgroups",
        "getitimer",
        "getpeername",
        "getpgid",
        "getpgrp",
        "getpid",
        "getppid",
        "getpriority",
        "getrandom",
        "getresgid",
        "getresuid",
        "getrlimit",
        "getrusage",
        "getsid",
        "getsockname",
        "getsockopt",
        "gettid",
        "gettimeofday",
        "getuid",
        "getxattr",
        "inotify_add_watch",
        "inotify_init",
        "inotify_init1",
        "inotify_rm_watch",
        "io_cancel",
        "io_destroy",
        "io_getevents",
        "io_setup",
        "io_submit",
        "ioctl",
        "ioprio_get",
        "ioprio_set",
        "ipc",
        "kill",
        "lchown",
        "lgetxattr",
        "link",
        "linkat",
        "listen",
        "listxattr",
        "llistxattr",
        "lremovexattr",
        "lseek",
        "lsetxattr",
        "lstat",
        "madvise",
        "memfd_create",
        "mincore",
        "mkdir",
        "mkdirat",
        "mknod",
        "mknodat",
        "mlock",
        "mlock2",
        "mlockall",
        "mmap",
        "mprotect",
        "mq_getsetattr",
        "mq_notify",
        "mq_open",
        "mq_timedreceive",
        "mq_timedsend",
        "mq_unlink",
        "mremap",
        "msgctl",
        "msgget",
        "msgrcv",
        "msgsnd",
        "msync",
        "munlock",
        "munlockall",
        "munmap",
        "nanosleep",
        "newfstatat",
        "open",
        "openat",
        "pause",
        "pipe",
        "pipe2",
        "poll",
        "ppoll",
        "prctl",
        "pread64",
        "preadv",
        "preadv2",
        "prlimit64",
        "pselect6",
        "pwrite64",
        "pwritev",
        "pwritev2",
        "read",
        "readahead",
        "readlink",
        "readlinkat",
        "readv",
        "recvfrom",
        "recvmmsg",
        "recvmsg",
        "remap_file_pages",
        "removexattr",
        "rename",
        "renameat",
        "renameat2",
        "restart_syscall",
        "rmdir",
        "rseq",
        "rt_sigaction",
        "rt_sigpending",
        "rt_sigprocmask",
        "rt_sigqueueinfo",
        "rt_sigreturn",
        "rt_sigsuspend",
        "rt_sigtimedwait",
        "rt_tgsigqueueinfo",
        "sched_get_priority_max",
        "sched_get_priority_min",
        "sched_getaffinity",
        "sched_getattr",
        "sched_getparam",
        "sched_getscheduler",
        "sched_rr_get_interval",
        "sched_setaffinity",
        "sched_setattr",
        "sched_setparam",
        "sched_setscheduler",
        "sched_yield",
        "seccomp",
        "select",
        "semctl",
        "semget",
        "semop",
        "semtimedop",
        "sendfile",
        "sendmmsg",
        "sendmsg",
        "sendto",
        "set_robust_list",
        "set_thread_area",
        "set_tid_address",
        "setfsgid",
        "setfsuid",
        "setgid",
        "setgroups",
        "setitimer",
        "setpgid",
        "setpriority",
        "setregid",
        "setresgid",
        "setresuid",
        "setreuid",
        "setrlimit",
        "setsid",
        "setsockopt",
        "setuid",
        "setxattr",
        "shmat",
        "shmctl",
        "shmdt",
        "shmget",
        "shutdown",
        "sigaltstack",
        "signalfd",
        "signalfd4",
        "socket",
        "socketpair",
        "splice",
        "stat",
        "statfs",
        "statx",
        "symlink",
        "symlinkat",
        "sync",
        "sync_file_range",
        "syncfs",
        "sysinfo",
        "tee",
        "tgkill",
        "time",
        "timer_create",
        "timer_delete",
        "timer_getoverrun",
        "timer_gettime",
        "timer_settime",
        "timerfd_create",
        "timerfd_gettime",
        "timerfd_settime",
        "times",
        "tkill",
        "truncate",
        "umask",
        "uname",
        "unlink",
        "unlinkat",
        "utime",
        "utimensat",
        "utimes",
        "vfork",
        "vmsplice",
        "wait4",
        "waitid",
        "write",
        "writev",
    ];
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": names.as_slice(), "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 4294967295u64, "op": "SCMP_CMP_EQ"}]}
        ]
    })
}

/// Item 1: with `noNewPrivileges: false` the filter is loaded while the
/// runtime still holds its privileges, before its last own steps; an old
/// allow-list that lacks `close_range` must not break create or exec.
#[test]
fn old_seccomp_profile_without_close_range() {
    root_only!("old_seccomp_profile_without_close_range");
    let old = |c: &mut Value| {
        c["process"]["noNewPrivileges"] = json!(false);
        c["linux"]["seccomp"] = seccomp_profile_2019();
    };
    for rt in Peer::both() {
        for tool in ["runc", "crun"] {
            let id = unique(&format!("seccomp-old-run-{}-{tool}", rt.name));
            let mut b = peer_bundle(tool, false, &id, &sh("echo ran"));
            b.edit(old);
            assert_eq!(rt.run_ok(&id, &b), "ran\n", "{}/{tool}", rt.name);
            rt.assert_clean(&id, b.path());

            // exec'd processes get the same filter, loaded the same way.
            let id = unique(&format!("seccomp-old-exec-{}-{tool}", rt.name));
            let mut b = peer_bundle(tool, false, &id, &["sleep", "1000"]);
            b.edit(old);
            rt.create_start(&id, &b);
            let out = rt.exec_ok(&id, &["sh", "-c", "echo exec-ok"]);
            assert_eq!(out, "exec-ok\n", "{}/{tool}", rt.name);
            // The filter is in force: a syscall it does not list fails.
            let o = rt.out(&["exec", &id, "unshare", "-U", "true"]);
            assert!(
                !o.status.success(),
                "{}/{tool}: unshare was allowed",
                rt.name
            );
            rt.remove(&id);
            rt.assert_clean(&id, b.path());
        }
    }
}

/// Item 11: `--preserve-fds N` keeps the caller's fds 3..3+N and nothing of
/// the runtime's own, also where the caller left a gap in that range (the
/// runtime's sync socket or cgroup handle could take the free numbers).
#[test]
fn preserve_fds_keeps_only_the_callers_fds() {
    root_only!("preserve_fds_keeps_only_the_callers_fds");
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let pass = fs::OpenOptions::new()
        .append(true)
        .open(out_file.path())
        .unwrap();
    let pass_fd = pass.as_raw_fd();
    for rt in Peer::both() {
        let id = unique(&format!("preserve-gap-{}", rt.name));
        // The shell is pid 1 and opens nothing itself: `ls` lists its fds.
        let b = peer_bundle(
            "runc",
            false,
            &id,
            &sh("echo via-fd3 >&3; ls -l /proc/1/fd; true"),
        );
        let mut c = rt.cmd();
        c.args([
            "run",
            "--preserve-fds",
            "8",
            "--bundle",
            b.path().to_str().unwrap(),
            &id,
        ])
        .stdin(Stdio::null());
        // SAFETY: dup2 and close in the pre-exec child touch only the child's fd table.
        unsafe {
            c.pre_exec(move || {
                nix::unistd::dup2(pass_fd, 3)?;
                for fd in 4..16 {
                    let _ = nix::unistd::close(fd);
                }
                Ok(())
            });
        }
        let o = c.output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        if !rt.is_berth() {
            // runc 1.1.5 refuses the gap: it hands each of the N fds on itself.
            assert!(
                !o.status.success(),
                "runc accepted a gap in --preserve-fds: {out}"
            );
            rt.assert_clean(&id, b.path());
            continue;
        }
        assert!(
            o.status.success(),
            "{out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let fds: Vec<&str> = out
            .lines()
            .filter_map(|l| l.split_once(" -> ")?.0.rsplit(' ').next())
            .collect();
        assert_eq!(
            fds,
            ["0", "1", "2", "3"],
            "the container holds more fds:\n{out}"
        );
        rt.assert_clean(&id, b.path());
    }
    assert_eq!(fs::read_to_string(out_file.path()).unwrap(), "via-fd3\n");
}

/// Item 2: a FIFO in `linux.devices` is made in /dev, and no device-cgroup
/// rule is derived from it (the device cgroup knows only b and c).
#[test]
fn fifo_in_linux_devices() {
    root_only!("fifo_in_linux_devices");
    for rt in Peer::both() {
        let id = unique(&format!("fifo-{}", rt.name));
        let mut b = peer_bundle(
            "crun",
            false,
            &id,
            &sh("test -p /dev/myfifo && stat -c '%a %u:%g' /dev/myfifo && echo hi > /dev/null"),
        );
        b.edit(|c| {
            c["linux"]["devices"] = json!([
                {"path": "/dev/myfifo", "type": "p", "fileMode": 0o640, "uid": 0, "gid": 0}
            ]);
        });
        let out = rt.run_ok(&id, &b);
        assert_eq!(out, "640 0:0\n", "{}", rt.name);
        rt.assert_clean(&id, b.path());
    }
}

/// The optional fields (propagation) of the mount at `mount_point`, as seen
/// in a container's `/proc/self/mountinfo` printed by the test.
fn mountinfo_entry<'a>(mountinfo: &'a str, mount_point: &str) -> Option<Vec<&'a str>> {
    mountinfo.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 6 && f[4] == mount_point).then_some(f)
    })
}

/// Item 5: `rootfsPropagation: unbindable` (and `runbindable`) make the
/// container's root unbindable; the rootfs bind mount that comes first must
/// not be refused for it. (runc 1.1.5 has the same defect; runc fixed it
/// later, so this runs on berth only.)
#[test]
fn rootfs_propagation_unbindable() {
    root_only!("rootfs_propagation_unbindable");
    let rt = Peer::berth();
    for (prop, want) in [
        ("unbindable", "unbindable"),
        ("runbindable", "unbindable"),
        ("rshared", "shared:"),
    ] {
        let id = unique(&format!("rootprop-{prop}"));
        let mut b = peer_bundle("runc", false, &id, &sh("cat /proc/self/mountinfo"));
        b.edit(|c| c["linux"]["rootfsPropagation"] = json!(prop));
        let out = rt.run_ok(&id, &b);
        let root = mountinfo_entry(&out, "/").expect("a / mount");
        let optional = &root[6..root.iter().position(|f| *f == "-").unwrap()];
        assert!(
            optional.iter().any(|f| f.starts_with(want)),
            "{prop}: / is not {want}: {root:?}"
        );
        rt.assert_clean(&id, b.path());
    }
}

/// The per-mount options of every mount at `mount_point` in `mountinfo`
/// (a mount point may hold stacked mounts).
fn mount_opts<'a>(mountinfo: &'a str, mount_point: &str) -> Vec<Vec<&'a str>> {
    let all: Vec<Vec<&str>> = mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 6 && f[4] == mount_point).then(|| f[5].split(',').collect())
        })
        .collect();
    assert!(
        !all.is_empty(),
        "no mount at {mount_point} in:\n{mountinfo}"
    );
    all
}

/// Item 7: the recursive mount options apply to a bind mount and every mount
/// below it (mount_setattr with AT_RECURSIVE). The source is the host's /dev,
/// which has mounts below it (pts, shm). In a user namespace those mounts'
/// atime settings are locked, so the rootless variant sets the others only.
#[test]
fn recursive_mount_options() {
    root_only!("recursive_mount_options");
    let host_before = fs::read_to_string("/proc/self/mountinfo").unwrap();
    for rt in Peer::both() {
        for rootless in [false, true] {
            let id = unique(&format!("rec-{}-{rootless}", rt.name));
            let mut b = peer_bundle("runc", rootless, &id, &sh("cat /proc/self/mountinfo"));
            let mut opts = vec![
                "rbind",
                "rro",
                "rnosuid",
                "rnodev",
                "rnoexec",
                "rnosymfollow",
            ];
            let mut want = vec!["ro", "nosuid", "nodev", "noexec", "nosymfollow"];
            if !rootless {
                opts.extend(["rnoatime", "rnodiratime"]);
                want.extend(["noatime", "nodiratime"]);
            }
            b.edit(|c| {
                let m = c["mounts"].as_array_mut().unwrap();
                m.push(
                    json!({"destination": "/hostdev", "type": "bind", "source": "/dev",
                              "options": opts}),
                );
                if !rootless {
                    m.push(
                        json!({"destination": "/strict", "type": "bind", "source": "/dev",
                                  "options": ["rbind", "rstrictatime"]}),
                    );
                }
            });
            let out = rt.run_ok(&id, &b);
            for mp in ["/hostdev", "/hostdev/pts", "/hostdev/shm"] {
                for o in mount_opts(&out, mp) {
                    for w in &want {
                        assert!(
                            o.contains(w),
                            "{} rootless={rootless}: {mp} lacks {w}: {o:?}",
                            rt.name
                        );
                    }
                }
            }
            if !rootless {
                for mp in ["/strict", "/strict/pts", "/strict/shm"] {
                    for o in mount_opts(&out, mp) {
                        assert!(
                            !o.contains(&"relatime") && !o.contains(&"noatime"),
                            "{}: {mp} is not strictatime: {o:?}",
                            rt.name
                        );
                    }
                }
            }
            rt.assert_clean(&id, b.path());
        }
    }
    // The host's mounts are the container's source, not changed by it.
    let host_after = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(
        mount_opts(&host_before, "/dev/pts"),
        mount_opts(&host_after, "/dev/pts")
    );
}

/// Item 7: an option the runtime does not know is an error that names it and
/// the mount, where it would otherwise be dropped without a word (bind mounts
/// take no filesystem data) or refused by the kernel with a bare EINVAL. The
/// data options of `runc spec`'s own mounts (mode=755, size=65536k,
/// newinstance, ptmxmode=0666, gid=5) still reach the kernel: every other
/// test here runs that config.
#[test]
fn unknown_mount_option_is_an_error() {
    root_only!("unknown_mount_option_is_an_error");
    let bind_cases = [
        json!({"destination": "/view", "type": "bind", "source": "/tmp",
               "options": ["rbind", "rbogus"]}),
        json!({"destination": "/view", "type": "none", "source": "/tmp",
               "options": ["bind", "nosuid", "rdonly"]}),
    ];
    let tmpfs_case = json!({"destination": "/view", "type": "tmpfs", "source": "tmpfs",
                            "options": ["nosuid", "mode=755", "rbogus"]});
    for rt in Peer::both() {
        // runc 1.1.5 passes an unknown option to mount(2) as filesystem data,
        // which a bind mount ignores: there it runs the container without it.
        let cases: Vec<&Value> = if !rt.is_berth() {
            vec![&tmpfs_case]
        } else {
            bind_cases.iter().chain([&tmpfs_case]).collect()
        };
        for (n, m) in cases.into_iter().enumerate() {
            let id = unique(&format!("badopt-{}-{n}", rt.name));
            let opts = m["options"].as_array().unwrap();
            let bad = opts.last().unwrap().as_str().unwrap().to_string();
            let mut b = peer_bundle("runc", false, &id, &sh("true"));
            b.edit(|c| c["mounts"].as_array_mut().unwrap().push(m.clone()));
            let err = rt.run_fails(&id, &b);
            if rt.is_berth() {
                assert!(
                    err.contains(&format!("{bad:?}")) && err.contains("/view"),
                    "case {n}: the error does not name {bad:?} and /view: {err}"
                );
            }
            rt.assert_clean(&id, b.path());
        }
    }
}

/// Item 8: proc and sysfs are mounted only on a real directory of the rootfs:
/// a symlink there would send them elsewhere in the container.
#[test]
fn symlinked_proc_or_sys_is_refused() {
    root_only!("symlinked_proc_or_sys_is_refused");
    for rt in Peer::both() {
        for dir in ["proc", "sys"] {
            let id = unique(&format!("symproc-{}-{dir}", rt.name));
            let b = peer_bundle("runc", false, &id, &sh("ls /elsewhere; true"));
            let r = b.rootfs();
            fs::remove_dir(r.join(dir)).unwrap();
            fs::create_dir(r.join("elsewhere")).unwrap();
            std::os::unix::fs::symlink("elsewhere", r.join(dir)).unwrap();
            let err = rt.run_fails(&id, &b);
            assert!(
                err.contains("ordinary directory"),
                "{}: {dir}: the error does not say why: {err}",
                rt.name
            );
            rt.assert_clean(&id, b.path());
        }
    }
}

/// Item 9: a masked path that is a symlink is refused. A link in a loop (as
/// the runtime-tools and youki tests make it) is refused by runc as well.
#[test]
fn masked_symlink_is_refused() {
    root_only!("masked_symlink_is_refused");
    for rt in Peer::both() {
        let id = unique(&format!("masklink-{}", rt.name));
        let mut b = peer_bundle("runc", false, &id, &sh("true"));
        std::os::unix::fs::symlink("../masked_link", b.rootfs().join("masked_link")).unwrap();
        b.edit(|c| {
            c["linux"]["maskedPaths"]
                .as_array_mut()
                .unwrap()
                .push(json!("/masked_link"))
        });
        let err = rt.run_fails(&id, &b);
        assert!(err.contains("masked_link"), "{}: {err}", rt.name);
        rt.assert_clean(&id, b.path());
    }
    // A link to a file that exists: runc 1.1.5 masks its target; berth
    // refuses, since the image decides where such a link points.
    let rt = Peer::berth();
    let id = unique("masklink-target");
    let mut b = peer_bundle("runc", false, &id, &sh("cat /secret"));
    fs::write(b.rootfs().join("secret"), "secret\n").unwrap();
    std::os::unix::fs::symlink("/secret", b.rootfs().join("masked_link")).unwrap();
    b.edit(|c| {
        c["linux"]["maskedPaths"]
            .as_array_mut()
            .unwrap()
            .push(json!("/masked_link"))
    });
    let err = rt.run_fails(&id, &b);
    assert!(
        err.contains("maskedPaths")
            && err.contains("/masked_link")
            && err.contains("symbolic link"),
        "{err}"
    );
    rt.assert_clean(&id, b.path());
}

/// Item 10: a relative `linux.readonlyPaths` entry is taken relative to the
/// container's root, as runc and youki do.
#[test]
fn relative_readonly_path() {
    root_only!("relative_readonly_path");
    for rt in Peer::both() {
        for rootless in [false, true] {
            let id = unique(&format!("relro-{}-{rootless}", rt.name));
            let mut b = peer_bundle(
                "runc",
                rootless,
                &id,
                &sh("touch /ro/x 2>/dev/null && echo ro-writable; touch /rw/x && echo rw-ok"),
            );
            fs::create_dir(b.rootfs().join("ro")).unwrap();
            fs::create_dir(b.rootfs().join("rw")).unwrap();
            b.edit(|c| {
                c["root"]["readonly"] = json!(false);
                c["linux"]["readonlyPaths"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("ro"));
            });
            let out = rt.run_ok(&id, &b);
            assert_eq!(out, "rw-ok\n", "{} rootless={rootless}", rt.name);
            rt.assert_clean(&id, b.path());
        }
    }
}

/// Item 14: `linux.personality` applies to every process of the container,
/// the exec'd ones too (as runc does since 1.2; runc 1.1.5 ignores the field
/// altogether, its init reports x86_64, so this runs on berth only).
#[test]
fn personality_applies_to_exec() {
    root_only!("personality_applies_to_exec");
    let rt = Peer::berth();
    let id = unique("persona");
    let mut b = peer_bundle("crun", false, &id, &["sleep", "1000"]);
    b.edit(|c| c["linux"]["personality"] = json!({"domain": "LINUX32"}));
    rt.create_start(&id, &b);
    let pid = serde_json::from_str::<Value>(&rt.ok(&["state", &id])).unwrap()["pid"]
        .as_i64()
        .unwrap();
    assert_eq!(
        fs::read_to_string(format!("/proc/{pid}/personality")).unwrap(),
        "00000008\n"
    );
    assert_eq!(rt.exec_ok(&id, &["uname", "-m"]), "i686\n");
    assert_eq!(
        rt.exec_ok(&id, &["cat", "/proc/self/personality"]),
        "00000008\n"
    );
    rt.remove(&id);
    rt.assert_clean(&id, b.path());
}

/// The memory policy of the first mapping in a `numa_maps` listing.
fn first_policy(numa_maps: &str) -> String {
    numa_maps
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or_default()
        .to_string()
}

/// Item 15: `linux.memoryPolicy` (runtime-spec 1.3) sets the NUMA policy of
/// init and of exec'd processes with set_mempolicy. The host has one node
/// (0), so the policy is observed in `/proc/self/numa_maps`. runc 1.1.5
/// predates the field and ignores it.
#[test]
fn memory_policy() {
    root_only!("memory_policy");
    let rt = Peer::berth();
    for (policy, want) in [
        (json!({"mode": "MPOL_BIND", "nodes": "0"}), "bind:0"),
        (
            json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}),
            "interleave:0",
        ),
        (json!({"mode": "MPOL_PREFERRED", "nodes": "0"}), "prefer:0"),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}),
            "bind=static:0",
        ),
        (json!({"mode": "MPOL_LOCAL"}), "local"),
        (json!({"mode": "MPOL_DEFAULT"}), "default"),
    ] {
        let id = unique("mempolicy");
        let mut b = peer_bundle(
            "runc",
            false,
            &id,
            &sh("cat /proc/self/numa_maps; exec sleep 1000"),
        );
        b.edit(|c| {
            c["ociVersion"] = json!("1.3.0");
            c["linux"]["memoryPolicy"] = policy.clone();
        });
        rt.create_start(&id, &b);
        let exec = rt.exec_ok(&id, &["cat", "/proc/self/numa_maps"]);
        assert_eq!(first_policy(&exec), want, "exec with {policy}: {exec}");
        // init's own policy, seen from the host.
        let pid = serde_json::from_str::<Value>(&rt.ok(&["state", &id])).unwrap()["pid"]
            .as_i64()
            .unwrap();
        let init = fs::read_to_string(format!("/proc/{pid}/numa_maps")).unwrap();
        assert_eq!(first_policy(&init), want, "init with {policy}: {init}");
        rt.remove(&id);
        rt.assert_clean(&id, b.path());
    }
}

/// Item 15: a memory policy the host cannot apply is refused before any
/// process exists, with an error that names the field.
#[test]
fn memory_policy_errors() {
    root_only!("memory_policy_errors");
    let rt = Peer::berth();
    let online = fs::read_to_string("/sys/devices/system/node/online").unwrap_or_default();
    let absent = (0..4096)
        .find(|n| parse_nodes(&online).iter().all(|o| o != n))
        .unwrap();
    for (policy, words) in [
        (
            json!({"mode": "MPOL_BIND", "nodes": absent.to_string()}),
            vec!["linux.memoryPolicy.nodes", "node"],
        ),
        (
            json!({"mode": "MPOL_BIND"}),
            vec!["linux.memoryPolicy", "MPOL_BIND", "node"],
        ),
        (
            json!({"mode": "MPOL_DEFAULT", "nodes": "0"}),
            vec!["linux.memoryPolicy", "MPOL_DEFAULT"],
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0-x"}),
            vec!["linux.memoryPolicy.nodes", "0-x"],
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0",
                   "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}),
            vec!["linux.memoryPolicy.flags"],
        ),
        (
            json!({"mode": "MPOL_NOPE", "nodes": "0"}),
            vec!["linux.memoryPolicy.mode", "MPOL_NOPE"],
        ),
    ] {
        let id = unique("mempolicy-bad");
        let mut b = peer_bundle("runc", false, &id, &sh("true"));
        b.edit(|c| {
            c["ociVersion"] = json!("1.3.0");
            c["linux"]["memoryPolicy"] = policy.clone();
        });
        let err = rt.run_fails(&id, &b);
        for w in words {
            assert!(err.contains(w), "{policy}: the error lacks {w:?}: {err}");
        }
        rt.assert_clean(&id, b.path());
    }
}

/// The node numbers of a sysfs node list such as `0-1,3`.
fn parse_nodes(list: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap()),
            None => out.push(part.parse().unwrap()),
        }
    }
    out
}

// ================================================ follow-ups of the review

/// `LISTEN_FDS` counts only when `LISTEN_PID` names the runtime itself (as
/// sd_listen_fds(3) and runc have it): a stray `LISTEN_FDS`, or one meant
/// for another process, neither widens the fds the container gets nor
/// reaches its environment. With `LISTEN_PID` set to the runtime's PID (by
/// a shell that then execs it), the fds are passed on.
#[test]
fn listen_fds_count_only_with_our_listen_pid() {
    root_only!("listen_fds_count_only_with_our_listen_pid");
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let pass = fs::OpenOptions::new()
        .append(true)
        .open(out_file.path())
        .unwrap();
    let pass_fd = pass.as_raw_fd();
    for rt in Peer::both() {
        for (case, listen_pid) in [("stray", None), ("other", Some("1")), ("ours", Some("$$"))] {
            let id = unique(&format!("listen-{case}-{}", rt.name));
            let b = peer_bundle(
                "runc",
                false,
                &id,
                &sh("echo \"env=$LISTEN_FDS:$LISTEN_PID\"; ls -l /proc/1/fd; true"),
            );
            let script = match listen_pid {
                Some(p) => format!("LISTEN_PID={p}; export LISTEN_PID; exec \"$@\""),
                None => "exec \"$@\"".to_string(),
            };
            let mut c = Command::new("/bin/sh");
            c.args(["-c", &script, "sh"])
                .arg(&rt.bin)
                .arg("--root")
                .arg(&rt.root)
                .args(["run", "--bundle", b.path().to_str().unwrap(), &id])
                .env("LISTEN_FDS", "2")
                .env_remove("LISTEN_PID")
                .stdin(Stdio::null());
            // SAFETY: dup2 in the pre-exec child touches only the child's fd table.
            unsafe {
                c.pre_exec(move || {
                    // Through a copy above 4: dup2 onto itself would keep
                    // the close-on-exec flag.
                    let hi = nix::fcntl::fcntl(pass_fd, nix::fcntl::FcntlArg::F_DUPFD(10))?;
                    nix::unistd::dup2(hi, 3)?;
                    nix::unistd::dup2(hi, 4)?;
                    nix::unistd::close(hi)?;
                    Ok(())
                });
            }
            let o = c.output().unwrap();
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success(),
                "{} {case}: {out}{}",
                rt.name,
                String::from_utf8_lossy(&o.stderr)
            );
            let fds: Vec<&str> = out
                .lines()
                .filter_map(|l| l.split_once(" -> ")?.0.rsplit(' ').next())
                .collect();
            let env = out.lines().find(|l| l.starts_with("env=")).unwrap_or("");
            if case == "ours" {
                assert_eq!(env, "env=2:1", "{} {case}: {out}", rt.name);
                assert_eq!(fds, ["0", "1", "2", "3", "4"], "{} {case}: {out}", rt.name);
            } else {
                assert_eq!(env, "env=:", "{} {case}: {out}", rt.name);
                assert_eq!(fds, ["0", "1", "2"], "{} {case}: {out}", rt.name);
            }
            rt.assert_clean(&id, b.path());
        }
    }
}

/// A CPU list in `process.execCPUAffinity` beyond the CPUs a runtime can
/// name (`0-4294967295` would be a list of four billion CPUs) is refused
/// before anything is made, with an error naming the field, for create and
/// for exec. (runc 1.1.5 does not know the field, so this runs on berth.)
#[test]
fn huge_exec_cpu_affinity_is_refused() {
    root_only!("huge_exec_cpu_affinity_is_refused");
    let rt = Peer::berth();
    for (field, list) in [
        ("initial", "0-4294967295"),
        ("final", "0,1,18446744073709551615"),
        ("initial", "1024"),
    ] {
        let id = unique("cpuaff-huge");
        let mut b = peer_bundle("runc", false, &id, &sh("true"));
        b.edit(|c| c["process"]["execCPUAffinity"] = json!({ field: list }));
        let err = rt.run_fails(&id, &b);
        assert!(
            err.contains(&format!("process.execCPUAffinity.{field}")) && err.contains("1023"),
            "{field} {list}: {err}"
        );
        rt.assert_clean(&id, b.path());
    }
    // exec with such a process.
    let id = unique("cpuaff-exec");
    let b = peer_bundle("runc", false, &id, &["sleep", "1000"]);
    rt.create_start(&id, &b);
    let mut p = b.config["process"].clone();
    p["args"] = json!(["true"]);
    p["execCPUAffinity"] = json!({"initial": "0-4294967295"});
    let pf = b.path().join("process.json");
    fs::write(&pf, serde_json::to_vec(&p).unwrap()).unwrap();
    let o = rt.out(&["exec", "--process", pf.to_str().unwrap(), &id]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "exec took the list");
    assert!(err.contains("process.execCPUAffinity.initial"), "{err}");
    rt.remove(&id);
    rt.assert_clean(&id, b.path());
}

/// A `linux.readonlyPaths` entry that is a symlink is refused, naming the
/// path, as a masked one is. A link in a loop is refused by runc as well.
#[test]
fn readonly_symlink_is_refused() {
    root_only!("readonly_symlink_is_refused");
    for rt in Peer::both() {
        let id = unique(&format!("rolink-{}", rt.name));
        let mut b = peer_bundle("runc", false, &id, &sh("true"));
        std::os::unix::fs::symlink("../ro_link", b.rootfs().join("ro_link")).unwrap();
        b.edit(|c| {
            c["linux"]["readonlyPaths"]
                .as_array_mut()
                .unwrap()
                .push(json!("/ro_link"))
        });
        let err = rt.run_fails(&id, &b);
        assert!(err.contains("ro_link"), "{}: {err}", rt.name);
        rt.assert_clean(&id, b.path());
    }
    // A link to a directory that exists: runc 1.1.5 makes its target
    // read-only; berth refuses, since the image decides where the link
    // points (and a bind mount over the link itself protects nothing).
    let rt = Peer::berth();
    for target in ["/data", "data"] {
        let id = unique("rolink-target");
        let mut b = peer_bundle(
            "runc",
            false,
            &id,
            &sh("touch /data/x && echo data-writable"),
        );
        fs::create_dir(b.rootfs().join("data")).unwrap();
        std::os::unix::fs::symlink(target, b.rootfs().join("ro_link")).unwrap();
        b.edit(|c| {
            c["root"]["readonly"] = json!(false);
            c["linux"]["readonlyPaths"]
                .as_array_mut()
                .unwrap()
                .push(json!("/ro_link"))
        });
        let err = rt.run_fails(&id, &b);
        assert!(
            err.contains("readonlyPaths")
                && err.contains("/ro_link")
                && err.contains("symbolic link"),
            "{target}: {err}"
        );
        rt.assert_clean(&id, b.path());
    }
}
