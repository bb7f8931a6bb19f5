//! The typed sync channel between the runtime (parent) and the container process (child).
//!
//! One `SOCK_SEQPACKET` socketpair: each message is JSON, optionally carrying
//! file descriptors. A message other than the one expected is an error that
//! names both.
//!
//! A packet of a unix socket is bounded by the sender's socket buffer (about
//! 208 KiB by default), and a message can be larger: the state JSON that
//! `HooksDone` carries holds the config's annotations, up to 256 KiB under
//! Kubernetes and more elsewhere. So a message goes as one packet or more of
//! at most [`MAX_PACKET`] bytes of JSON, each after a one-byte header that
//! says whether more of the message follows; fds ride on the first packet.
//! A small message, every one but `HooksDone` with large annotations, is one
//! packet as before: the header is a second iovec, with nothing copied.

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

/// Most bytes of a message's JSON in one packet: well below the default
/// socket buffer (`net.core.wmem_default`, 208 KiB), which bounds a packet.
pub const MAX_PACKET: usize = 64 * 1024;

/// The smallest packet a sender falls back to when the socket buffer was
/// set smaller than [`MAX_PACKET`].
const MIN_PACKET: usize = 1024;

/// Packet header: the message goes on in the next packet.
const MORE: u8 = b'+';
/// Packet header: the message ends with this packet.
const LAST: u8 = b'.';

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

    /// Send a message with fds attached (at most [`MAX_FDS`]), in as many
    /// packets as its size needs.
    pub fn send_fds(&self, msg: &Msg, fds: &[RawFd]) -> Result<()> {
        let data = serde_json::to_vec(msg).map_err(|e| Error::Sync(e.to_string()))?;
        let rights = [ControlMessage::ScmRights(fds)];
        let mut rest = data.as_slice();
        let mut first = true;
        let mut packet = MAX_PACKET;
        loop {
            let n = rest.len().min(packet);
            let header = [if n < rest.len() { MORE } else { LAST }];
            let iov = [IoSlice::new(&header), IoSlice::new(&rest[..n])];
            let cmsgs: &[ControlMessage] = if first && !fds.is_empty() {
                &rights
            } else {
                &[]
            };
            // A SEQPACKET send takes the whole packet or nothing.
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => {
                    rest = &rest[n..];
                    first = false;
                    if rest.is_empty() {
                        return Ok(());
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                // A socket buffer set smaller than the packet: halve it.
                Err(nix::errno::Errno::EMSGSIZE) if packet > MIN_PACKET => packet /= 2,
                Err(e) => return Err(Error::sys(format!("send {} on sync socket", msg.name()), e)),
            }
        }
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
        let mut fds = Vec::new();
        let Some(mut packet) = self.recv_packet(&mut fds)? else {
            return Ok(None);
        };
        // The common case: the whole message in one packet, parsed in place.
        let mut whole = Vec::new();
        while packet.first() == Some(&MORE) {
            whole.extend_from_slice(&packet[1..]);
            packet = self.recv_packet(&mut fds)?.ok_or_else(|| {
                Error::Sync("the peer closed the channel in the middle of a message".into())
            })?;
        }
        if packet.first() != Some(&LAST) {
            return Err(Error::Sync("malformed message: no packet header".into()));
        }
        let json = if whole.is_empty() {
            &packet[1..]
        } else {
            whole.extend_from_slice(&packet[1..]);
            &whole[..]
        };
        let msg: Msg = serde_json::from_slice(json)
            .map_err(|e| Error::Sync(format!("malformed message: {e}")))?;
        Ok(Some((msg, fds)))
    }

    /// Receive one packet, adding the fds it carries to `fds`; `None` when
    /// the peer closed the channel.
    fn recv_packet(&self, fds: &mut Vec<OwnedFd>) -> Result<Option<Vec<u8>>> {
        // The next packet's length, without taking it (SEQPACKET keeps
        // packet boundaries, and MSG_TRUNC reports the whole length), so the
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
        let n = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(r) => {
                    for c in r
                        .cmsgs()
                        .map_err(|e| Error::sys("read control message", e))?
                    {
                        if let ControlMessageOwned::ScmRights(got) = c {
                            for f in got {
                                // SAFETY: the kernel just installed `f` in our fd table
                                // for this message; nothing else owns it.
                                fds.push(unsafe { OwnedFd::from_raw_fd(f) });
                            }
                        }
                    }
                    break r.bytes;
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("receive on sync socket", e)),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some(buf))
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

    #[test]
    fn packets_shrink_to_a_small_socket_buffer() {
        let (a, b) = pair().unwrap();
        nix::sys::socket::setsockopt(&a.fd, nix::sys::socket::sockopt::SndBuf, &4096).unwrap();
        let m = Msg::Error("e".repeat(300 * 1024));
        let sent = m.clone();
        let sender = std::thread::spawn(move || a.send(&sent).unwrap());
        assert!(b.recv_with_fd().unwrap().unwrap().0 == m);
        sender.join().unwrap();
    }

    #[test]
    fn messages_larger_than_a_packet() {
        let (a, b) = pair().unwrap();
        // Two copies of a 1 MiB state, with characters JSON escapes.
        let big = "x\"".repeat(512 * 1024);
        let m = Msg::HooksDone(big.clone(), big.clone());
        let sent = m.clone();
        let sender = std::thread::spawn(move || {
            let f = std::fs::File::open("/dev/null").unwrap();
            a.send_with(&sent, Some(f.as_raw_fd())).unwrap();
            a.send(&Msg::Ready).unwrap();
            a
        });
        let (got, fds) = b.recv_with_fds().unwrap().unwrap();
        assert!(got == m, "the large message came back different");
        assert_eq!(fds.len(), 1);
        // The next message starts where the large one ended.
        assert_eq!(b.recv().unwrap(), Msg::Ready);
        drop(sender.join().unwrap());
        assert!(b.recv_with_fd().unwrap().is_none());
    }
}
