//! Running OCI hooks: the hook binary gets the state JSON on stdin, its own args and
//! env (the runtime's, when the hook names none), and is killed when its timeout passes;
//! its output is read while it runs, and the end of it kept for the error of a failure.

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// Run each hook in order; the first failure stops the sequence (prestart,
/// createRuntime, createContainer, startContainer: a failure fails the operation).
pub fn run_all(phase: &str, hooks: Option<&Vec<Hook>>, state_json: &[u8]) -> Result<()> {
    for h in hooks.into_iter().flatten() {
        run(phase, h, state_json)?;
    }
    Ok(())
}

/// Run every hook, also after one failed, and return the failures: for
/// poststart and poststop, whose failures the runtime-spec makes warnings
/// ("the remaining hooks and lifecycle continue as if the hook had succeeded").
pub fn run_every(phase: &str, hooks: Option<&Vec<Hook>>, state_json: &[u8]) -> Vec<Error> {
    hooks
        .into_iter()
        .flatten()
        .filter_map(|h| run(phase, h, state_json).err())
        .collect()
}

/// Keeps SIGPIPE blocked in this thread while it lives, so that writing to a
/// hook that closed its stdin fails with EPIPE instead of killing us. The
/// runtime keeps its caller's SIGPIPE disposition for the container's sake
/// (see berth-runtime.rs), so ignoring the signal is not an option; a mask
/// is per thread and restored on drop, after taking the SIGPIPE our writes
/// left pending, so neither the hook (spawned before) nor the container sees it.
struct SigpipeBlocked {
    old: Option<SigSet>,
}

impl SigpipeBlocked {
    fn new() -> SigpipeBlocked {
        let pipe = Self::set();
        let mut old = SigSet::empty();
        let blocked = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&pipe), Some(&mut old)).is_ok();
        SigpipeBlocked {
            old: (blocked && !old.contains(Signal::SIGPIPE)).then_some(old),
        }
    }

    fn set() -> SigSet {
        let mut s = SigSet::empty();
        s.add(Signal::SIGPIPE);
        s
    }
}

impl Drop for SigpipeBlocked {
    fn drop(&mut self) {
        let Some(old) = self.old.take() else {
            return;
        };
        if let Ok(sfd) =
            SignalFd::with_flags(&Self::set(), SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        {
            while let Ok(Some(_)) = sfd.read_signal() {}
        }
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
}

/// How much of a hook's stderr, and of its stdout, a failure's error keeps:
/// the end of each, where a failing program says why.
const OUTPUT_KEPT: usize = 8 * 1024;

/// How often to look whether a hook has exited where no pidfd tells it
/// (Linux before 5.3, or a seccomp filter that refuses pidfd_open).
const EXIT_CHECK_WITHOUT_PIDFD: Duration = Duration::from_millis(10);

/// The end of an output stream, at most [`OUTPUT_KEPT`] bytes of it.
#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
    total: u64,
}

impl Tail {
    fn push(&mut self, b: &[u8]) {
        self.total += b.len() as u64;
        self.buf.extend_from_slice(b);
        if self.buf.len() > 2 * OUTPUT_KEPT {
            let cut = self.buf.len() - OUTPUT_KEPT;
            self.buf.drain(..cut);
        }
    }

    fn text(&self) -> String {
        let kept = &self.buf[self.buf.len().saturating_sub(OUTPUT_KEPT)..];
        let text = String::from_utf8_lossy(kept);
        let text = text.trim();
        let cut = self.total - kept.len() as u64;
        if cut > 0 && !text.is_empty() {
            format!("[{cut} bytes cut] ...{text}")
        } else {
            text.to_string()
        }
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let fl = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, fl | rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

/// Write as much of `pending` as the hook's stdin takes now; the pipe is
/// dropped once all is written or the hook closed its end (EPIPE: a hook
/// need not read its stdin).
fn feed(stdin: &mut Option<ChildStdin>, pending: &mut &[u8]) {
    while let Some(s) = stdin.as_ref() {
        if pending.is_empty() {
            *stdin = None;
            break;
        }
        match rustix::io::write(s, pending) {
            Ok(n) => *pending = &pending[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => break,
            Err(_) => *stdin = None,
        }
    }
}

/// Read what the pipe holds now into `tail`, but no more than 16 reads (a
/// hook that writes without end must not keep us from its timeout); the pipe
/// is dropped at its end.
fn drain<P: AsFd>(pipe: &mut Option<P>, tail: &mut Tail, buf: &mut [u8]) {
    for _ in 0..16 {
        let Some(p) = pipe.as_ref() else { break };
        match rustix::io::read(p, &mut *buf) {
            Ok(0) => *pipe = None,
            Ok(n) => tail.push(&buf[..n]),
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => break,
            Err(_) => *pipe = None,
        }
    }
}

/// Run one hook.
///
/// Its stdin, stdout and stderr are pipes that are served while it runs, in
/// one thread with poll(2) (the runtime has no threads before `clone`, and
/// hooks run in the container's process too): the state goes in as the hook
/// takes it, and its output is read as it comes, so a hook that writes more
/// than a pipe holds never blocks on us. A pidfd wakes the loop when the
/// hook exits, and the poll's timeout is the hook's. Of the output, the end
/// of each stream is kept for the error of a failing hook.
pub fn run(phase: &str, hook: &Hook, state_json: &[u8]) -> Result<()> {
    let path = hook.path();
    let fail = |msg: String| Error::Hook(format!("{phase} hook {}: {msg}", path.display()));
    let mut cmd = Command::new(path);
    if let Some(args) = hook.args() {
        if let Some(a0) = args.first() {
            cmd.arg0(a0);
        }
        cmd.args(args.iter().skip(1));
    }
    // No `env` means the runtime's environment, as in runc and youki; an
    // empty list means an empty environment.
    if let Some(env) = hook.env() {
        cmd.env_clear();
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let nonblocking = [
        stdin.as_ref().map(|p| p.as_fd()),
        stdout.as_ref().map(|p| p.as_fd()),
        stderr.as_ref().map(|p| p.as_fd()),
    ]
    .into_iter()
    .flatten()
    .try_for_each(set_nonblocking);
    if let Err(e) = nonblocking {
        let _ = child.kill();
        let _ = child.wait();
        return Err(fail(format!("make its pipes non-blocking: {e}")));
    }
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_child(&child),
        rustix::process::PidfdFlags::empty(),
    )
    .ok();
    // Writing to a hook that closed its stdin must fail with EPIPE, not kill us.
    let _sigpipe = SigpipeBlocked::new();
    let mut pending = state_json;
    let (mut out, mut err) = (Tail::default(), Tail::default());
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let status = loop {
        feed(&mut stdin, &mut pending);
        drain(&mut stdout, &mut out, &mut buf);
        drain(&mut stderr, &mut err, &mut buf);
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Err(fail(e.to_string())),
        }
        let mut wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if wait == Some(Duration::ZERO) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "timed out after {}s",
                hook.timeout().unwrap_or_default()
            )));
        }
        if pidfd.is_none() {
            wait = Some(wait.map_or(EXIT_CHECK_WITHOUT_PIDFD, |w| {
                w.min(EXIT_CHECK_WITHOUT_PIDFD)
            }));
        }
        let mut fds = Vec::with_capacity(4);
        if let Some(s) = &stdin {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLOUT));
        }
        for p in [
            stdout.as_ref().map(|p| p.as_fd()),
            stderr.as_ref().map(|p| p.as_fd()),
        ]
        .into_iter()
        .flatten()
        .chain(pidfd.as_ref().map(|p| p.as_fd()))
        {
            fds.push(PollFd::new(p, PollFlags::POLLIN));
        }
        let timeout = match wait {
            // Rounded up, so that the deadline has passed when poll returns.
            Some(w) => {
                PollTimeout::try_from(w.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32)
                    .unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("poll: {}", e.desc())));
            }
        }
    };
    // What the hook wrote before it exited. A process it left behind may
    // hold the pipes open: take what is there, and wait for nothing more.
    drain(&mut stdout, &mut out, &mut buf);
    drain(&mut stderr, &mut err, &mut buf);
    if !status.success() {
        let mut text = err.text();
        let o = out.text();
        if !o.is_empty() {
            if !text.is_empty() {
                text.push_str("; stdout: ");
            }
            text.push_str(&o);
        }
        return Err(fail(if text.is_empty() {
            status.to_string()
        } else {
            format!("{status}: {text}")
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;

    fn sh(script: &str, timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default()
            .path("/bin/sh")
            .args(vec!["sh".to_string(), "-c".to_string(), script.to_string()])
            .env(vec!["HOOKVAR=hv".to_string()]);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().unwrap()
    }

    #[test]
    fn gets_state_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let h = sh(
            &format!("cat > {0}; echo $HOOKVAR >> {0}", out.display()),
            None,
        );
        run("createRuntime", &h, b"{\"id\":\"x\"}").unwrap();
        let got = std::fs::read_to_string(out).unwrap();
        assert_eq!(got, "{\"id\":\"x\"}hv\n");
    }

    #[test]
    fn failure_names_hook_and_output() {
        let h = sh("echo broken >&2; exit 3", None);
        let e = run("poststart", &h, b"{}").unwrap_err().to_string();
        assert!(e.contains("poststart hook /bin/sh"), "{e}");
        assert!(e.contains("broken"), "{e}");
    }

    #[test]
    fn without_env_inherits_ours() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let h = HookBuilder::default()
            .path("/bin/sh")
            .args(vec![
                "sh".to_string(),
                "-c".to_string(),
                format!("/usr/bin/env > {}", out.display()),
            ])
            .build()
            .unwrap();
        assert!(h.env().is_none());
        run("createRuntime", &h, b"{}").unwrap();
        let got = std::fs::read_to_string(&out).unwrap();
        // Every variable of ours the shell does not set itself is there.
        for (k, v) in std::env::vars() {
            if !["PWD", "OLDPWD", "SHLVL", "_"].contains(&k.as_str()) && !v.contains('\n') {
                assert!(got.contains(&format!("{k}={v}\n")), "{k} missing: {got}");
            }
        }
        // An empty list is an empty environment.
        let mut h = h;
        h.set_env(Some(vec![]));
        run("createRuntime", &h, b"{}").unwrap();
        let got = std::fs::read_to_string(&out).unwrap();
        assert!(
            got.lines().all(|l| ["PWD=", "OLDPWD=", "SHLVL=", "_="]
                .iter()
                .any(|p| l.starts_with(p))),
            "{got}"
        );
    }

    #[test]
    fn a_hook_that_does_not_read_its_stdin() {
        // More than a pipe holds: the write meets the closed pipe.
        let big = vec![b'x'; 256 * 1024];
        run("poststop", &sh("exit 0", None), &big).unwrap();
        // And one that never reads nor exits still times out.
        let e = run("prestart", &sh("sleep 10", Some(1)), &big).unwrap_err();
        assert!(e.to_string().contains("timed out"), "{e}");
    }

    #[test]
    fn every_one_runs() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("second");
        let hooks = vec![
            sh("exit 3", None),
            sh(&format!("echo ran > {}", out.display()), None),
            sh("exit 4", None),
        ];
        let errs = run_every("poststop", Some(&hooks), b"{}");
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(out.exists());
        assert!(run_all("poststop", Some(&hooks), b"{}").is_err());
    }

    #[test]
    fn output_beyond_a_pipe_buffer() {
        // The timeout only bounds a hang: the hook ends at once when its
        // output is read while it runs.
        let loud = "yes out | head -c 1048576; yes err | head -c 1048576 >&2";
        run("createRuntime", &sh(loud, Some(20)), b"{}").unwrap();
        let h = sh(
            &format!("{loud}; echo the-last-words >&2; exit 3"),
            Some(20),
        );
        let e = run("createRuntime", &h, b"{}").unwrap_err().to_string();
        assert!(!e.contains("timed out"), "{}", &e[..e.len().min(300)]);
        assert!(
            e.contains("the-last-words"),
            "{}",
            &e[e.len().saturating_sub(300)..]
        );
        assert!(e.len() < 64 * 1024, "the error keeps {} bytes", e.len());
    }

    #[test]
    fn timeout_kills() {
        let h = sh("sleep 10", Some(1));
        let e = run("prestart", &h, b"{}").unwrap_err().to_string();
        assert!(e.contains("timed out after 1s"), "{e}");
        // Also one that writes without end.
        let h = sh("yes; yes >&2", Some(1));
        let e = run("prestart", &h, b"{}").unwrap_err().to_string();
        assert!(e.contains("timed out after 1s"), "{e}");
    }
}
