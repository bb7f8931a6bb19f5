//! Running OCI hooks: the hook binary gets the state JSON on stdin, its own args and
//! env (the runtime's, when the hook names none), and is killed when its timeout passes.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// Run one hook.
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
    // The state goes in as the hook takes it, so that its timeout holds while
    // it does not read; a hook that exits without reading it is fine (EPIPE).
    let _sigpipe = SigpipeBlocked::new();
    let mut stdin = child.stdin.take().filter(|s| {
        rustix::fs::fcntl_getfl(s)
            .and_then(|fl| rustix::fs::fcntl_setfl(s, fl | rustix::fs::OFlags::NONBLOCK))
            .is_ok()
    });
    let mut pending = state_json;
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let status = loop {
        if let Some(s) = stdin.as_mut() {
            match s.write(pending) {
                Ok(n) => pending = &pending[n..],
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                // EPIPE: the hook closed its stdin.
                Err(_) => pending = &[],
            }
            if pending.is_empty() {
                stdin = None;
            }
        }
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Err(fail(e.to_string())),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "timed out after {}s",
                hook.timeout().unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    drop(stdin);
    if !status.success() {
        let mut out = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut out);
        }
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        let out = out.trim();
        return Err(fail(if out.is_empty() {
            status.to_string()
        } else {
            format!("{status}: {out}")
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
    fn timeout_kills() {
        let h = sh("sleep 10", Some(1));
        let e = run("prestart", &h, b"{}").unwrap_err().to_string();
        assert!(e.contains("timed out after 1s"), "{e}");
    }
}
