//! The typed sync channel between the runtime (parent) and the container process (child).
//!
//! One `SOCK_SEQPACKET` socketpair: each message is one packet of JSON, optionally
//! carrying a file descriptor. A message other than the one expected is an error
//! that names both.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A message on the sync channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// Parent to child: the cgroup is joined and ID maps are written; go on.
    Proceed,
    /// Parent to child: the cgroup is made now; join it through the attached
    /// `tasks` fds (named here, with whether a failure may be ignored).
    JoinCgroup(Vec<(String, bool)>),
    /// Child to parent: mounts are prepared; run prestart and createRuntime hooks.
    CreateHooks,
    /// Parent to child: hooks ran; here is the state JSON for the createContainer
    /// hooks (status creating) and for the startContainer hooks (status created).
    HooksDone(String, String),
    /// Child to parent, with an fd: the seccomp notify fd for the listener.
    SeccompFd,
    /// Child to parent, with an fd: a pty master for the parent to relay.
    PtyMaster,
    /// Parent to child: the fd was handled.
    Ack,
    /// Intermediate to parent: the PID of the real container process.
    Pid(i32),
    /// Child to parent: setup is done; init now waits for `start`.
    Ready,
    /// Child to parent: setup failed.
    Error(String),
}

impl Msg {
    fn name(&self) -> &'static str {
        match self {
            Msg::Proceed => "Proceed",
            Msg::JoinCgroup(_) => "JoinCgroup",
            Msg::CreateHooks => "CreateHooks",
            Msg::HooksDone(..) => "HooksDone",
            Msg::SeccompFd => "SeccompFd",
            Msg::PtyMaster => "PtyMaster",
            Msg::Ack => "Ack",
            Msg::Pid(_) => "Pid",
            Msg::Ready => "Ready",
            Msg::Error(_) => "Error",
        }
    }
}

/// Most fds one message carries.
pub const MAX_FDS: usize = 16;

/// One end of the sync channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// Make a connected pair (both close-on-exec).
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::sys("socketpair", e))?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    /// The raw fd (for close-on-exec checks).
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Send a message, with an optional fd attached.
    pub fn send_with(&self, msg: &Msg, fd: Option<RawFd>) -> Result<()> {
        match fd {
            Some(f) => self.send_fds(msg, &[f]),
            None => self.send_fds(msg, &[]),
        }
    }

    /// Send a message with fds attached (at most [`MAX_FDS`]).
    pub fn send_fds(&self, msg: &Msg, fds: &[RawFd]) -> Result<()> {
        let data = serde_json::to_vec(msg).map_err(|e| Error::Sync(e.to_string()))?;
        let iov = [IoSlice::new(&data)];
        let rights = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
        sendmsg::<()>(
            self.fd.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| Error::sys(format!("send {} on sync socket", msg.name()), e))?;
        Ok(())
    }

    /// Send a message.
    pub fn send(&self, msg: &Msg) -> Result<()> {
        self.send_with(msg, None)
    }

    /// Receive one message, and the fd it carries if any. `Ok(None)` means the peer
    /// closed the channel (for example by a successful execve).
    pub fn recv_with_fd(&self) -> Result<Option<(Msg, Option<OwnedFd>)>> {
        Ok(self
            .recv_with_fds()?
            .map(|(m, fds)| (m, fds.into_iter().next())))
    }

    /// Receive one message and every fd it carries (up to [`MAX_FDS`]).
    pub fn recv_with_fds(&self) -> Result<Option<(Msg, Vec<OwnedFd>)>> {
        // The next message's length, without taking it (SEQPACKET keeps
        // message boundaries, and MSG_TRUNC reports the whole length), so the
        // buffer is its size: zeroing a fixed 256 KiB buffer per message cost
        // a memset and 64 page faults in both processes.
        let len = loop {
            match nix::sys::socket::recv(
                self.fd.as_raw_fd(),
                &mut [],
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
            ) {
                Ok(len) => break len,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("receive on sync socket", e)),
            }
        };
        if len == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; len];
        let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
        let (n, fd) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(r) => {
                    let mut fd = Vec::new();
                    for c in r
                        .cmsgs()
                        .map_err(|e| Error::sys("read control message", e))?
                    {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            for f in fds {
                                // SAFETY: the kernel just installed `f` in our fd table
                                // for this message; nothing else owns it.
                                fd.push(unsafe { OwnedFd::from_raw_fd(f) });
                            }
                        }
                    }
                    break (r.bytes, fd);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("receive on sync socket", e)),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        let msg: Msg = serde_json::from_slice(&buf[..n])
            .map_err(|e| Error::Sync(format!("malformed message: {e}")))?;
        Ok(Some((msg, fd)))
    }

    /// Receive one message; the peer closing is an error.
    pub fn recv(&self) -> Result<Msg> {
        match self.recv_with_fd()? {
            Some((m, _)) => Ok(m),
            None => Err(Error::Sync(
                "the container process exited before finishing setup".into(),
            )),
        }
    }

    /// Receive and check that it is `want`. An `Error` from the peer is returned as such.
    pub fn expect(&self, want: &Msg) -> Result<Msg> {
        let got = self.recv()?;
        check(want, got)
    }
}

/// Compare a received message with the expected kind.
pub fn check(want: &Msg, got: Msg) -> Result<Msg> {
    if let Msg::Error(e) = got {
        return Err(Error::Init(e));
    }
    if std::mem::discriminant(want) == std::mem::discriminant(&got) {
        Ok(got)
    } else {
        Err(Error::Sync(format!(
            "expected {}, received {}",
            want.name(),
            got.name()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_mismatch() {
        let (a, b) = pair().unwrap();
        a.send(&Msg::Pid(42)).unwrap();
        assert_eq!(b.expect(&Msg::Pid(0)).unwrap(), Msg::Pid(42));
        a.send(&Msg::Ready).unwrap();
        let e = b.expect(&Msg::Proceed).unwrap_err().to_string();
        assert!(e.contains("expected Proceed, received Ready"), "{e}");
        a.send(&Msg::Error("boom".into())).unwrap();
        let e = b.expect(&Msg::Ready).unwrap_err().to_string();
        assert_eq!(e, "boom");
        drop(a);
        assert!(b.recv_with_fd().unwrap().is_none());
    }

    #[test]
    fn passes_several_fds() {
        let (a, b) = pair().unwrap();
        let f1 = std::fs::File::open("/dev/null").unwrap();
        let f2 = std::fs::File::open("/dev/zero").unwrap();
        let m = Msg::JoinCgroup(vec![("x".into(), false), ("y".into(), true)]);
        a.send_fds(&m, &[f1.as_raw_fd(), f2.as_raw_fd()]).unwrap();
        let (got, fds) = b.recv_with_fds().unwrap().unwrap();
        assert_eq!(got, m);
        assert_eq!(fds.len(), 2);
    }

    #[test]
    fn passes_fd() {
        let (a, b) = pair().unwrap();
        let f = std::fs::File::open("/dev/null").unwrap();
        a.send_with(&Msg::SeccompFd, Some(f.as_raw_fd())).unwrap();
        let (m, fd) = b.recv_with_fd().unwrap().unwrap();
        assert_eq!(m, Msg::SeccompFd);
        assert!(fd.is_some());
    }
}
