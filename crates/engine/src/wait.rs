//! Waiting on a container without polling: a [`Waker`] sleeps in one
//! `poll(2)` until something that could change the container's state
//! happens, and the caller then reads the state again.
//!
//! What can end a wait:
//! - a change in the container's directory (inotify): the monitor writes
//!   `run.json`, `exit.json` and `monitor.pid` by rename, the log grows or
//!   is rotated, `rm` deletes the directory;
//! - the end of a process (pidfd): the monitor, or the container's init
//!   when no monitor is left to write its exit.
//!
//! The watches are made *before* the state is read, so a change between the
//! read and the `poll` still wakes it.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::inotify;

/// inotify on a directory plus pidfds, waited on together.
#[derive(Debug)]
pub struct Waker {
    inotify: Option<OwnedFd>,
    pidfds: Vec<OwnedFd>,
}

impl Waker {
    /// Watches `dir` (a container's directory). When it cannot be watched
    /// (it is gone) the waker still waits on the processes it is given.
    pub fn new(dir: &Path) -> Waker {
        let inotify = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .ok()
            .filter(|fd| {
                use inotify::WatchFlags as W;
                inotify::add_watch(
                    fd,
                    dir,
                    W::CREATE
                        | W::MOVED_TO
                        | W::MOVED_FROM
                        | W::CLOSE_WRITE
                        | W::MODIFY
                        | W::DELETE
                        | W::DELETE_SELF
                        | W::MOVE_SELF
                        | W::ONLYDIR,
                )
                .is_ok()
            });
        Waker {
            inotify,
            pidfds: Vec::new(),
        }
    }

    /// Also wakes when process `pid` ends. False when it cannot be watched
    /// (it is already gone).
    pub fn watch_pid(&mut self, pid: i32) -> bool {
        let Some(pid) = rustix::process::Pid::from_raw(pid) else {
            return false;
        };
        match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => {
                self.pidfds.push(fd);
                true
            }
            Err(_) => false,
        }
    }

    /// Whether it watches anything at all.
    pub fn watches(&self) -> bool {
        self.inotify.is_some() || !self.pidfds.is_empty()
    }

    /// Sleeps until something watched happens (true) or `deadline` passes
    /// (false). With nothing to watch it returns true at once, so the
    /// caller reads the state again (and finds the directory gone).
    pub fn wait(&self, deadline: Option<Instant>) -> bool {
        if !self.watches() {
            return true;
        }
        let mut fds: Vec<PollFd<'_>> = self
            .inotify
            .iter()
            .chain(&self.pidfds)
            .map(|fd| PollFd::new(fd, PollFlags::IN))
            .collect();
        let timeout = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos() as i64,
            }
        });
        loop {
            match poll(&mut fds, timeout.as_ref()) {
                Ok(0) => return false,
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                // Cannot wait: let the caller look again.
                Err(_) => return true,
            }
        }
        if let Some(fd) = &self.inotify {
            drain(fd.as_fd());
        }
        true
    }
}

/// Reads and drops the queued inotify events.
fn drain(fd: std::os::fd::BorrowedFd<'_>) {
    let mut buf = [0u8; 4096];
    while matches!(rustix::io::read(fd, &mut buf), Ok(n) if n > 0) {}
}

/// Waits until process `pid` has ended or `deadline` passes; true when it
/// has ended (or cannot be watched because it is gone).
pub fn wait_pid_gone(pid: i32, deadline: Option<Instant>) -> bool {
    let mut w = Waker {
        inotify: None,
        pidfds: Vec::new(),
    };
    // The pidfd becomes readable when the process ends.
    if !w.watch_pid(pid) {
        return true;
    }
    w.wait(deadline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn wakes_on_a_file_in_the_dir_and_on_a_timeout() {
        let t = tempfile::tempdir().unwrap();
        let w = Waker::new(t.path());
        assert!(w.watches());
        // Nothing happened: the deadline ends it.
        assert!(!w.wait(Some(Instant::now() + Duration::from_millis(1))));
        let dir = t.path().to_path_buf();
        let writer = std::thread::spawn(move || std::fs::write(dir.join("exit.json"), b"{}"));
        // The write ends it; no deadline.
        assert!(w.wait(None));
        writer.join().unwrap().unwrap();
    }

    #[test]
    fn wakes_when_a_process_ends() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let mut w = Waker::new(Path::new("/nonexistent-berth-dir"));
        assert!(w.watch_pid(pid));
        assert!(w.wait(None));
        child.wait().unwrap();
        assert!(wait_pid_gone(pid, None));
    }
}
