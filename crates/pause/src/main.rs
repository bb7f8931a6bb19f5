//! `berth-pause`: the process that holds a pod sandbox's namespaces, as
//! Kubernetes' `pause` container does, built into berth so a sandbox needs
//! no image pull.
//!
//! It is PID 1 of the sandbox (of its PID namespace when the pod shares
//! one). It blocks every signal and takes them with `sigwait`, so it has no
//! handlers: SIGTERM and SIGINT end it with exit code 0 (how the engine
//! stops a sandbox), SIGCHLD makes it reap every exited child (in a shared
//! PID namespace the orphans of all the pod's containers come to it), and
//! every other signal is ignored. It takes no arguments and prints nothing.
//!
//! It is built as a static binary (`scripts/build-static.sh`): the engine
//! copies it into each sandbox's own read-only root, which holds nothing
//! else.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// What the pause process does on a signal.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    /// Exit with code 0.
    Exit,
    /// Reap every exited child.
    Reap,
    /// Nothing.
    Ignore,
}

fn action(sig: Signal) -> Action {
    match sig {
        Signal::SIGTERM | Signal::SIGINT => Action::Exit,
        Signal::SIGCHLD => Action::Reap,
        _ => Action::Ignore,
    }
}

/// Reaps every child that has exited; returns how many.
fn reap() -> usize {
    let mut n = 0;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return n,
            Ok(_) => n += 1,
        }
    }
}

fn main() {
    let all = SigSet::all();
    if nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&all), None).is_err() {
        std::process::exit(1);
    }
    // Children may have exited before the mask was set.
    reap();
    loop {
        let Ok(sig) = all.wait() else { continue };
        match action(sig) {
            Action::Exit => std::process::exit(0),
            Action::Reap => {
                reap();
            }
            Action::Ignore => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(action(Signal::SIGTERM), Action::Exit);
        assert_eq!(action(Signal::SIGINT), Action::Exit);
        assert_eq!(action(Signal::SIGCHLD), Action::Reap);
        assert_eq!(action(Signal::SIGHUP), Action::Ignore);
        assert_eq!(action(Signal::SIGUSR1), Action::Ignore);
    }

    #[test]
    fn reaping_without_children_is_nothing() {
        assert_eq!(reap(), 0);
    }
}
