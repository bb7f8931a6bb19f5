//! Terminals: handing a pty master to a `--console-socket`, connecting to one, and
//! relaying a pty for a foreground `run`/`exec` that has no console socket.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::termios;

use crate::error::{Error, Result};

/// Send `fd` over the unix socket `sock` with SCM_RIGHTS; `name` is the payload
/// (the pty's path, as runc sends it).
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>, name: &[u8]) -> nix::Result<()> {
    let fds = [fd.as_raw_fd()];
    let payload: &[u8] = if name.is_empty() { b"pty" } else { name };
    let iov = [IoSlice::new(payload)];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(drop)
}

/// Connect to the console socket at `path`.
pub fn connect(path: &Path) -> Result<OwnedFd> {
    let s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| Error::io("connect to console socket", path, e))?;
    Ok(OwnedFd::from(s))
}

/// A relay running on its own thread.
#[derive(Debug)]
pub struct Relay {
    done: std::sync::mpsc::Receiver<()>,
}

/// Start relaying `master` on a thread.
pub fn spawn_relay(master: OwnedFd) -> Relay {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        relay(master);
        let _ = tx.send(());
    });
    Relay { done: rx }
}

impl Relay {
    /// After the container process exited: let the relay copy what is still in
    /// the pty, until the pty closes (bounded, in case a leftover process holds it).
    pub fn drain(self) {
        let _ = self.done.recv_timeout(std::time::Duration::from_secs(2));
    }
}

/// Copy between our stdin/stdout and `master` until the pty closes. Puts our own
/// terminal (if stdin is one) in raw mode meanwhile and forwards its size.
pub fn relay(master: OwnedFd) {
    let stdin = std::io::stdin();
    let saved = termios::tcgetattr(stdin.as_fd()).ok();
    if let Some(t) = &saved {
        let mut raw = t.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw);
        if let Ok(ws) = rustix::termios::tcgetwinsize(stdin.as_fd()) {
            let _ = rustix::termios::tcsetwinsize(&master, ws);
        }
    }
    let mut buf = [0u8; 8192];
    let mut stdin_open = true;
    loop {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let m = fds[0].revents().unwrap_or(PollFlags::empty());
        let i = fds
            .get(1)
            .and_then(|f| f.revents())
            .unwrap_or(PollFlags::empty());
        if m.intersects(PollFlags::POLLIN) {
            match nix::unistd::read(master.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if write_all(std::io::stdout().as_fd(), &buf[..n]).is_err() {
                        break;
                    }
                }
            }
        } else if m.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            break;
        }
        if i.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) {
            match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let _ = write_all(master.as_fd(), &buf[..n]);
                }
            }
        }
    }
    if let Some(t) = saved {
        let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &t);
    }
}

fn write_all(fd: BorrowedFd<'_>, mut b: &[u8]) -> nix::Result<()> {
    while !b.is_empty() {
        match nix::unistd::write(fd, b) {
            Ok(n) => b = &b[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
