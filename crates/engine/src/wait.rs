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
    /// Whether writes to the log (`ctr.log*`) are no event: a waiter for a
    /// state change must not wake for every line a chatty container logs.
    ignore_log: bool,
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
            ignore_log: false,
        }
    }

    /// [`Waker::new`] for a waiter on the container's state: the log's
    /// growth and rotation do not wake it.
    pub fn for_state(dir: &Path) -> Waker {
        Waker {
            ignore_log: true,
            ..Waker::new(dir)
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
        loop {
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
            match poll(&mut fds, timeout.as_ref()) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                // Cannot wait: let the caller look again.
                Err(_) => return true,
            }
            let ready = |i: usize| !fds[i].revents().is_empty();
            let first_pid = usize::from(self.inotify.is_some());
            if (first_pid..fds.len()).any(ready) {
                return true;
            }
            if let Some(fd) = &self.inotify {
                if drain(fd.as_fd(), self.ignore_log) {
                    return true;
                }
            }
        }
    }
}

/// Reads and drops the queued inotify events; true if one of them counts
/// (any, unless `ignore_log`, when those about `ctr.log*` do not).
fn drain(fd: std::os::fd::BorrowedFd<'_>, ignore_log: bool) -> bool {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut r = inotify::Reader::new(fd, &mut buf);
    let mut counts = false;
    loop {
        match r.next() {
            Ok(e) => {
                let log = e
                    .file_name()
                    .is_some_and(|n| n.to_bytes().starts_with(b"ctr.log"));
                counts |= !(ignore_log && log);
            }
            Err(rustix::io::Errno::INTR) => continue,
            // EAGAIN: nothing more queued.
            Err(_) => return counts,
        }
    }
}

/// Waits until process `pid` has ended or `deadline` passes; true when it
/// has ended (or cannot be watched because it is gone).
pub fn wait_pid_gone(pid: i32, deadline: Option<Instant>) -> bool {
    let mut w = Waker {
        inotify: None,
        pidfds: Vec::new(),
        ignore_log: false,
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
    fn a_state_waiter_sleeps_through_log_lines() {
        let t = tempfile::tempdir().unwrap();
        let w = Waker::for_state(t.path());
        std::fs::write(t.path().join("ctr.log"), b"line\n").unwrap();
        // Only the log changed: the deadline ends it.
        assert!(!w.wait(Some(Instant::now() + Duration::from_millis(1))));
        std::fs::write(t.path().join("exit.json"), b"{}").unwrap();
        assert!(w.wait(None));
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
