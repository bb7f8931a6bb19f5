//! Running OCI hooks: the hook binary gets the state JSON on stdin, its own args and
//! env, and is killed when its timeout passes.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// Run each hook in order; the first failure stops the sequence.
pub fn run_all(phase: &str, hooks: Option<&Vec<Hook>>, state_json: &[u8]) -> Result<()> {
    for h in hooks.into_iter().flatten() {
        run(phase, h, state_json)?;
    }
    Ok(())
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
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state_json);
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let status = loop {
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
    fn timeout_kills() {
        let h = sh("sleep 10", Some(1));
        let e = run("prestart", &h, b"{}").unwrap_err().to_string();
        assert!(e.contains("timed out after 1s"), "{e}");
    }
}
