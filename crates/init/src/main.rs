//! `berth-init [--] COMMAND [ARG...]`: the PID 1 that `berth run --init`
//! puts in front of the container's command, as docker's tini and podman's
//! catatonit do.
//!
//! It runs COMMAND as its only child, in the child's own process group
//! (made the terminal's foreground group when stdin is a terminal), then:
//! - forwards every signal it receives, except SIGCHLD, to that child
//!   (so a shell or a program that ignores SIGTERM as PID 1 still gets it);
//! - reaps every process that exits, orphans included (as PID 1 of the
//!   container's PID namespace it inherits them all);
//! - exits with the child's exit code, or 128+N when a signal N killed it.
//!
//! A command that cannot be run exits 127 (not found) or 126 (found, but
//! not executable), with one line on stderr naming it; any other failure
//! of berth-init itself exits 1.
//!
//! It is built as a static binary (`scripts/build-static.sh`), since it runs
//! inside images that may have no libc. Signals are all blocked and taken
//! with `sigwaitinfo`, so there are no handlers and nothing async-unsafe.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Args {
    /// Run this argv.
    Run(Vec<OsString>),
    /// Print the usage (`-h`, `--help`).
    Help,
    /// Print the version (`--version`).
    Version,
}

fn parse(args: Vec<OsString>) -> Result<Args, String> {
    let mut it = args.into_iter().peekable();
    match it.peek().map(|a| a.as_bytes()) {
        Some(b"--") => {
            it.next();
        }
        Some(b"-h" | b"--help") => return Ok(Args::Help),
        Some(b"--version") => return Ok(Args::Version),
        Some(a) if a.starts_with(b"-") => {
            return Err(format!(
                "unknown option {:?} (usage: berth-init [--] COMMAND [ARG...])",
                String::from_utf8_lossy(a)
            ))
        }
        _ => {}
    }
    let argv: Vec<OsString> = it.collect();
    if argv.is_empty() {
        return Err("no command given (usage: berth-init [--] COMMAND [ARG...])".into());
    }
    Ok(Args::Run(argv))
}

/// The exit code for a wait status: the code, or 128+N for signal N.
fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

/// The exit code for an `execvp` failure: docker's 127 and 126.
fn exec_failure_code(errno: i32) -> i32 {
    match errno {
        libc::ENOENT | libc::ENOTDIR => 127,
        _ => 126,
    }
}

fn die(msg: &str) -> ! {
    eprintln!("berth-init: {msg}");
    std::process::exit(1)
}

fn main() {
    let args = match parse(std::env::args_os().skip(1).collect()) {
        Ok(a) => a,
        Err(e) => die(&e),
    };
    let argv = match args {
        Args::Run(a) => a,
        Args::Help => {
            println!("usage: berth-init [--] COMMAND [ARG...]");
            return;
        }
        Args::Version => {
            println!("berth-init version {}", env!("CARGO_PKG_VERSION"));
            return;
        }
    };
    let cargs: Vec<CString> = match argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
    {
        Ok(v) => v,
        Err(_) => die("an argument contains a NUL byte"),
    };
    let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());

    // SAFETY: sigset_t is plain data; sigfillset and sigprocmask only write
    // the sets given to them.
    let (all, old) = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        if libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old) != 0 {
            die("cannot block signals");
        }
        (all, old)
    };

    // SAFETY: this process has one thread, so the child may do anything;
    // it only calls async-signal-safe functions before execvp, and every
    // pointer it passes (argv, the sets) was made before the fork.
    let child = unsafe { libc::fork() };
    if child < 0 {
        die("fork failed");
    }
    if child == 0 {
        // SAFETY: as above; the child's own process group, the terminal's
        // foreground group if stdin is one (SIGTTOU is still blocked), the
        // old signal mask, then the command.
        unsafe {
            libc::setpgid(0, 0);
            if libc::isatty(0) == 1 {
                libc::tcsetpgrp(0, libc::getpid());
            }
            libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            libc::execvp(ptrs[0], ptrs.as_ptr());
        }
        let err = std::io::Error::last_os_error();
        eprintln!(
            "berth-init: cannot run {}: {err}",
            String::from_utf8_lossy(argv[0].as_bytes())
        );
        std::process::exit(exec_failure_code(err.raw_os_error().unwrap_or(0)));
    }

    loop {
        // SAFETY: siginfo_t is plain data that sigwaitinfo fills in.
        let sig = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::sigwaitinfo(&all, &mut info)
        };
        if sig < 0 {
            continue;
        }
        if sig != libc::SIGCHLD {
            // SAFETY: kill only sends a signal.
            unsafe { libc::kill(child, sig) };
            continue;
        }
        // Reap everything that has exited.
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: waitpid writes only `status`.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == child {
                std::process::exit(exit_code(status));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments() {
        assert_eq!(
            parse(os(&["sh", "-c", "x"])),
            Ok(Args::Run(os(&["sh", "-c", "x"])))
        );
        assert_eq!(parse(os(&["--", "-weird"])), Ok(Args::Run(os(&["-weird"]))));
        assert_eq!(parse(os(&["--help"])), Ok(Args::Help));
        assert_eq!(parse(os(&["--version"])), Ok(Args::Version));
        assert!(parse(os(&[])).unwrap_err().contains("no command"));
        assert!(parse(os(&["--"])).unwrap_err().contains("no command"));
        assert!(parse(os(&["-x", "sh"])).unwrap_err().contains("\"-x\""));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(libc::SIGKILL), 137);
        assert_eq!(exec_failure_code(libc::ENOENT), 127);
        assert_eq!(exec_failure_code(libc::EACCES), 126);
    }
}
