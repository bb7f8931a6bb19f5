//! Container breakouts through our own binaries (CVE-2019-5736 and its
//! relatives): a process in a container must never get a handle on
//! `berth-runtime`, `berth-monitor` or `berth-init` that it can write once the
//! file is no longer busy.
//!
//! The attack, as published: the container makes our binary execute inside it
//! (its command is a script whose interpreter line is `#!/proc/self/exe`, run
//! by the container's init or an `exec`'d process while `/proc/self/exe` still
//! names the runtime), opens `/proc/PID/exe` of that process read-only, waits
//! until the binary is no longer executed, and reopens `/proc/self/fd/N` for
//! writing. The published exploit gets its code into the runtime process with
//! `LD_PRELOAD`; these tests need no loader: a second process in the same PID
//! namespace (the attacker) opens the victim's `/proc/PID/exe`, and the victim
//! (our binary, started with arguments it refuses) is held alive by a full
//! stderr pipe until the attacker holds its handle. Every run uses a copy of
//! the runtime binary in a directory of its own, so a successful attack
//! damages only the copy. Each scenario runs on runc as well, which is not
//! vulnerable: runc 1.1.5 re-executes itself through a private read-only bind
//! mount of its binary (a sealed memfd copy where it cannot mount).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{ChildStdout, Command, Stdio};

use berth_tests::cli::Env;
use berth_tests::peer::{runc_bin, Peer};
use berth_tests::{need_root, runtime_bin, unique, Bundle};
use serde_json::json;

macro_rules! root_only {
    ($name:expr) => {
        if !need_root($name) {
            return;
        }
    };
}

/// The attacker, PID 1 of its container: waits for the test's go-ahead on
/// `/ready`, finds a process whose executable is not busybox (the victim),
/// opens its executable read-only as fd 3 and reports the handle's device and
/// inode. Then it waits on `/go` (the test writes it once the victim is gone)
/// and tries to append to the binary through the handle.
const ATTACKER: &str = r#"
read x < /ready
n=0
while [ $n -lt 200000 ]; do
  n=$((n+1))
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = 1 ] && continue
    l=$(readlink /proc/$p/exe 2>/dev/null) || continue
    case "$l" in /bin/busybox|"") continue;; esac
    exec 3< /proc/$p/exe || continue
    echo "GOT $p $(stat -L -c '%d:%i' /proc/self/fd/3) $l"
    read x < /go
    if e=$( (echo pwned >> /proc/self/fd/3) 2>&1 ); then echo WROTE; else echo "FAILED $e"; fi
    exec sleep 1000000
  done
done
echo NOTFOUND
"#;

/// A runtime binary copied into a directory of its own (a [`Peer`] with its
/// own root, which deletes its containers on drop).
struct Runtime {
    peer: Peer,
    original: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Runtime {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        &self.peer
    }
}

impl Runtime {
    fn copy_of(name: &'static str, bin: &Path) -> Runtime {
        let dir = tempfile::Builder::new()
            .prefix("berth-exe-copy.")
            .tempdir()
            .unwrap();
        let copy = dir.path().join(bin.file_name().unwrap());
        fs::copy(bin, &copy).unwrap();
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
        Runtime {
            original: fs::read(&copy).unwrap(),
            peer: Peer::new(name, copy),
            _dir: dir,
        }
    }

    /// The runtimes every scenario runs on: berth's and runc.
    fn all() -> [Runtime; 2] {
        [
            Runtime::copy_of("berth-runtime", &runtime_bin()),
            Runtime::copy_of("runc", &runc_bin()),
        ]
    }

    /// The runtime's command, with stdin on /dev/null.
    fn cmd(&self) -> Command {
        let mut c = self.peer.cmd();
        c.stdin(Stdio::null());
        c
    }

    fn assert_intact(&self) {
        assert!(
            fs::read(&self.bin).unwrap() == self.original,
            "{}: the container rewrote the runtime binary",
            self.name
        );
    }
}

/// A pipe whose buffer is full, so a process writing to it blocks until the
/// test reads: (read end, write end, bytes already in it).
fn full_pipe() -> (OwnedFd, OwnedFd, usize) {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    rustix::pipe::fcntl_setpipe_size(&w, 4096).unwrap();
    rustix::fs::fcntl_setfl(&w, rustix::fs::OFlags::NONBLOCK).unwrap();
    let mut n = 0;
    while let Ok(k) = rustix::io::write(&w, &[b'.'; 512]) {
        n += k;
    }
    rustix::fs::fcntl_setfl(&w, rustix::fs::OFlags::empty()).unwrap();
    (r, w, n)
}

/// Reads one line from `r`, waiting at most a minute (a generous bound: the
/// other side answers within milliseconds unless the test is broken).
fn line(r: &mut BufReader<ChildStdout>) -> String {
    if r.buffer().is_empty() {
        let mut fds = [rustix::event::PollFd::new(
            r.get_ref(),
            rustix::event::PollFlags::IN,
        )];
        let t = rustix::event::Timespec {
            tv_sec: 60,
            tv_nsec: 0,
        };
        let n = rustix::event::poll(&mut fds, Some(&t)).unwrap();
        assert!(n > 0, "no line from the attacker within a minute");
    }
    let mut s = String::new();
    r.read_line(&mut s).unwrap();
    s.trim_end().to_string()
}

/// Waits for `pid` to exit.
fn wait_gone(pid: i32) {
    assert!(exited_within(pid, 60), "pid {pid} did not exit");
}

/// Puts the dynamic loader and the libraries `bin` needs into `rootfs`, at
/// their host paths, as any glibc-based image has them: without them a
/// dynamically linked runtime cannot even start inside the container.
fn add_libraries_of(rootfs: &Path, bin: &Path) {
    let out = Command::new("ldd").arg(bin).output().unwrap();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let path = match l.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => l.split_whitespace().next(),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else {
            continue;
        };
        let dest = rootfs.join(path.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(path, &dest).unwrap();
    }
}

/// Spawns a runtime command whose stderr is `w` (a full pipe, shared with
/// the victim it starts) and waits for it to finish. If it blocks instead
/// (it is writing an error into the full pipe), the pipe is drained and the
/// error reported.
fn run_into_full_pipe(what: &str, mut c: Command, w: OwnedFd, r: &OwnedFd) {
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::from(w))
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    if !exited_within(pid, 60) {
        let _ = child.kill();
        let mut buf = vec![0u8; 65536];
        let n = rustix::io::read(r, &mut buf).unwrap_or(0);
        panic!("{what} blocked: {}", String::from_utf8_lossy(&buf[..n]));
    }
    let st = child.wait().unwrap();
    assert!(st.success(), "{what} failed");
}

/// Whether `pid` exits within `secs` seconds (a pidfd: event-driven).
fn exited_within(pid: i32, secs: i64) -> bool {
    let Ok(fd) = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::PidfdFlags::empty(),
    ) else {
        return true; // already gone
    };
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let t = rustix::event::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&t)).unwrap() > 0
}

fn write_fifo(p: &Path) {
    fs::OpenOptions::new()
        .write(true)
        .open(p)
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
}

/// The attacker's container, running; its stdout is where it reports.
struct Attacker {
    bundle: Bundle,
    out: BufReader<ChildStdout>,
    init_pid: i32,
}

fn start_attacker(rt: &Runtime, id: &str) -> Attacker {
    let bundle = Bundle::new(id, &["sh", "-c", ATTACKER]);
    let rootfs = bundle.rootfs();
    for f in ["ready", "go"] {
        nix::unistd::mkfifo(
            &rootfs.join(f),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
    }
    fs::write(rootfs.join("script"), "#!/proc/self/exe\n").unwrap();
    fs::set_permissions(rootfs.join("script"), fs::Permissions::from_mode(0o755)).unwrap();
    add_libraries_of(&rootfs, &rt.bin);
    let pidf = bundle.path().join("attacker.pid");
    // create + start, so that no runtime process stays behind (one would keep
    // the binary busy); the init inherits create's stdout, our pipe.
    let mut child = rt
        .cmd()
        .args(["create", "--pid-file", pidf.to_str().unwrap(), "--bundle"])
        .arg(bundle.path())
        .arg(id)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    assert!(
        child.wait().unwrap().success(),
        "{}: create of the attacker failed",
        rt.name
    );
    rt.ok(&["start", id]);
    let init_pid = fs::read_to_string(&pidf).unwrap().trim().parse().unwrap();
    Attacker {
        bundle,
        out,
        init_pid,
    }
}

/// Plays one attack to its end: the victim (already blocked on its full
/// stderr pipe) is seen by the attacker, released, waited for; then the
/// attacker tries to write. Returns the attacker's two report lines.
fn play(a: &mut Attacker, victim_pid: i32, stderr_r: OwnedFd) -> (String, String) {
    write_fifo(&a.bundle.rootfs().join("ready"));
    let got = line(&mut a.out);
    // Let the victim finish: drain its stderr until every writer is gone.
    let mut f = fs::File::from(stderr_r);
    let mut sink = Vec::new();
    f.read_to_end(&mut sink).unwrap();
    wait_gone(victim_pid);
    write_fifo(&a.bundle.rootfs().join("go"));
    let result = line(&mut a.out);
    (got, result)
}

fn check(rt: &Runtime, got: &str, result: &str) {
    assert!(
        got.starts_with("GOT "),
        "{}: attacker said {got:?}",
        rt.name
    );
    // Refused because the handle is on a read-only mount or a sealed memfd,
    // not for any incidental reason.
    assert!(
        result.starts_with("FAILED")
            && (result.contains("Read-only file system")
                || result.contains("Operation not permitted")),
        "{}: attacker reports {result:?} (its handle: {got})",
        rt.name
    );
    rt.assert_intact();
}

#[test]
fn exec_of_proc_self_exe_cannot_overwrite_the_runtime() {
    root_only!("exec_of_proc_self_exe_cannot_overwrite_the_runtime");
    for rt in Runtime::all() {
        let id = unique("cve-exec");
        let mut a = start_attacker(&rt, &id);
        // The victim: `exec` of the script, so the runtime binary runs in the
        // container; it refuses its arguments and blocks writing why.
        let (r, w, _) = full_pipe();
        let pidf = a.bundle.path().join("victim.pid");
        let mut c = rt.cmd();
        c.args([
            "exec",
            "-d",
            "--pid-file",
            pidf.to_str().unwrap(),
            &id,
            "/script",
        ]);
        run_into_full_pipe(&format!("{} exec -d /script", rt.name), c, w, &r);
        let victim: i32 = fs::read_to_string(&pidf).unwrap().trim().parse().unwrap();
        let (got, result) = play(&mut a, victim, r);
        check(&rt, &got, &result);
    }
}

#[test]
fn init_of_proc_self_exe_cannot_overwrite_the_runtime() {
    // The container's own command is the script: its init runs the runtime
    // binary. The attacker shares its PID namespace (as a pod's containers
    // do), so it outlives the victim.
    root_only!("init_of_proc_self_exe_cannot_overwrite_the_runtime");
    for rt in Runtime::all() {
        let id = unique("cve-init");
        let mut a = start_attacker(&rt, &id);
        let vid = format!("{id}-v");
        let mut vb = Bundle::new(&vid, &["/script"]);
        fs::write(vb.rootfs().join("script"), "#!/proc/self/exe\n").unwrap();
        fs::set_permissions(
            vb.rootfs().join("script"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        add_libraries_of(&vb.rootfs(), &rt.bin);
        let pidns = format!("/proc/{}/ns/pid", a.init_pid);
        vb.edit(|c| {
            for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
                if ns["type"] == "pid" {
                    ns["path"] = json!(pidns);
                }
            }
        });
        let (r, w, _) = full_pipe();
        let pidf = vb.path().join("victim.pid");
        let mut c = rt.cmd();
        c.args(["create", "--pid-file", pidf.to_str().unwrap(), "--bundle"])
            .arg(vb.path())
            .arg(&vid);
        run_into_full_pipe(&format!("{} create of the victim", rt.name), c, w, &r);
        // A created init runs our binary too: even the host's root must not be
        // able to write it through /proc.
        let victim: i32 = fs::read_to_string(&pidf).unwrap().trim().parse().unwrap();
        let created = exe_protection(rt.name, victim);
        rt.ok(&["start", &vid]);
        let (got, result) = play(&mut a, victim, r);
        check(&rt, &got, &result);
        created.unwrap();
    }
}

/// What `/proc/PID/exe` hands anyone who can open it must be a file nothing
/// can write: one on a read-only mount (berth's private overlay, runc 1.1's
/// read-only bind) or a fully sealed memfd. A busy file (ETXTBSY) is not
/// enough: it stops being busy when the process ends.
fn assert_exe_unwritable(what: &str, pid: i32) {
    exe_protection(what, pid).unwrap()
}

fn exe_protection(what: &str, pid: i32) -> Result<(), String> {
    let p = format!("/proc/{pid}/exe");
    let f = fs::File::open(&p).unwrap();
    let ro = rustix::fs::fstatvfs(&f)
        .unwrap()
        .f_flag
        .contains(rustix::fs::StatVfsMountFlags::RDONLY);
    let sealed = rustix::fs::fcntl_get_seals(&f).is_ok_and(|s| {
        s.contains(
            rustix::fs::SealFlags::WRITE
                | rustix::fs::SealFlags::GROW
                | rustix::fs::SealFlags::SHRINK,
        )
    });
    if ro || sealed {
        return Ok(());
    }
    Err(format!(
        "{what}: {p} ({}) is a writable file: a process that can open it could replace it",
        fs::read_link(&p).unwrap_or_default().display()
    ))
}

#[test]
fn monitor_and_init_are_out_of_reach() {
    root_only!("monitor_and_init_are_out_of_reach");
    // berth-init is the container's PID 1 with --init. Even a container
    // allowed to remount (CAP_SYS_ADMIN) must not reach the host's file: it
    // gets a copy of its own. A copy of berth-init stands in for the host's,
    // so a failure damages only the copy.
    let init_dir = tempfile::Builder::new()
        .prefix("berth-init-copy.")
        .tempdir()
        .unwrap();
    let init = init_dir.path().join("berth-init");
    fs::copy(
        berth_tests::workspace().join("target/release/berth-init"),
        &init,
    )
    .unwrap();
    let before = fs::read(&init).unwrap();
    let env = Env::new("breakout");
    let name = unique("cve-init");
    let host = fs::metadata(&init).unwrap();
    let host_dev_ino = format!("{}:{}", host.dev(), host.ino());
    let mut c = env.cmd();
    c.env("BERTH_INIT", &init).args([
        "run",
        "-d",
        "--name",
        &name,
        "--init",
        "--cap-add",
        "SYS_ADMIN",
        &env.image,
        "sh",
        "-c",
        "echo exe=$(stat -L -c %d:%i /proc/1/exe); \
         mount -o remount,rw,bind /run/berth-init && echo remounted; \
         echo pwned >> /proc/1/exe; echo pwned >> /run/berth-init; \
         echo attack-done; exec sleep 1000000",
    ]);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = env.inspect(&name)["Id"].as_str().unwrap().to_string();
    // The monitor runs from a copy nothing can write.
    let monitor_pid: i32 =
        fs::read_to_string(env.root.path().join(format!("containers/{id}/monitor.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    assert_exe_unwritable("berth-monitor", monitor_pid);
    berth_tests::wait_until("the container's attack", || {
        env.run(&["logs", &name]).1.contains("attack-done")
    });
    let logs = env.ok(&["logs", &name]);
    // PID 1 is not the host's file (its own copy), so whatever it wrote
    // stayed in the container.
    assert!(logs.contains("exe="), "{logs}");
    assert!(
        !logs.contains(&format!("exe={host_dev_ino}")),
        "the container's PID 1 is the host's berth-init: {logs}"
    );
    assert!(
        fs::read(&init).unwrap() == before,
        "the container rewrote the host's berth-init"
    );
    env.ok(&["rm", "-f", &name]);
}

/// What berth itself does when it starts its monitor, the runtime's
/// `create` and `exec` (`berth_engine::container::sealed_command`): the
/// child is executed through a read-only view of the binary, so it never
/// runs from the writable host file and need not re-execute itself. The
/// same binary started plainly is writable, which the check must see.
#[test]
fn binaries_berth_starts_run_from_a_read_only_view() {
    root_only!("binaries_berth_starts_run_from_a_read_only_view");
    let dir = tempfile::Builder::new()
        .prefix("berth-view.")
        .tempdir()
        .unwrap();
    let bin = dir.path().join("sleeper");
    fs::copy("/bin/sleep", &bin).unwrap();
    let before = fs::read(&bin).unwrap();
    let (mut c, view) = berth_engine::container::sealed_command(&bin);
    assert!(view.is_some(), "no read-only view of {}", bin.display());
    let mut viewed = c.arg("1000").spawn().unwrap();
    drop(view);
    let mut plain = Command::new(&bin).arg("1000").spawn().unwrap();
    let v = exe_protection("through the view", viewed.id() as i32);
    let p = exe_protection("started plainly", plain.id() as i32);
    // Through the view, writing the file fails even for root.
    let w = fs::OpenOptions::new()
        .append(true)
        .open(format!("/proc/{}/exe", viewed.id()));
    for ch in [&mut viewed, &mut plain] {
        let _ = ch.kill();
        let _ = ch.wait();
    }
    v.unwrap();
    assert!(p.is_err(), "a plainly started copy counted as protected");
    assert!(w.is_err(), "the view's file opened for writing");
    assert_eq!(fs::read(&bin).unwrap(), before);
}
