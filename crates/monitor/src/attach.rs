//! The attach socket: how clients (`berth run`, `attach`, `start -a`) see a
//! container's output and feed its stdin while the monitor holds them.
//!
//! The monitor listens on a `SOCK_SEQPACKET` unix socket for its whole life
//! and removes it at exit. Any number of clients may connect at any time;
//! each gets all output from the moment it connects, and any may send
//! stdin. One message is one packet; its first byte is its type:
//!
//! | type | direction | body |
//! |---|---|---|
//! | `0` | client → monitor | stdin bytes |
//! | `1` | monitor → client | stdout bytes (with a terminal, all output) |
//! | `2` | monitor → client | stderr bytes |
//! | `3` | monitor → client | exit code, `i32` little-endian: sent each time the container exits, after its output is drained and its runtime state deleted (clients stay connected across restarts) |
//! | `4` | client → monitor | close the container's stdin (EOF); ignored with a terminal, as docker does |
//! | `5` | client → monitor | resize the terminal: rows `u16` LE, cols `u16` LE |
//!
//! A body is at most [`MAX_DATA`] bytes. A client that hangs up is dropped
//! (it detached); so is a client whose socket buffer is full when output
//! comes (a slow client never blocks the container or its log) and one that
//! sends a malformed message.
//!
//! The client side is [`connect`] and [`relay`]/[`relay_fd`]: copy output to
//! our stdout/stderr and our stdin to the container, with our terminal in
//! raw mode and its size forwarded (again on every `SIGWINCH`) for `-t`.
//!
//! Paths longer than a `sockaddr_un` holds are reached through
//! `/proc/self/fd/N/NAME` with `N` an `O_PATH` descriptor of the directory.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

/// Type byte: stdin bytes (client → monitor).
pub const STDIN: u8 = 0;
/// Type byte: stdout bytes (monitor → client).
pub const STDOUT: u8 = 1;
/// Type byte: stderr bytes (monitor → client).
pub const STDERR: u8 = 2;
/// Type byte: the container exited (monitor → client).
pub const EXIT: u8 = 3;
/// Type byte: close the container's stdin (client → monitor).
pub const CLOSE_STDIN: u8 = 4;
/// Type byte: resize the terminal (client → monitor).
pub const RESIZE: u8 = 5;
/// The largest body of one message.
pub const MAX_DATA: usize = 32 * 1024;

/// One attach message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg<'a> {
    /// `0`: bytes for the container's stdin.
    Stdin(&'a [u8]),
    /// `1`: bytes the container wrote to stdout (or its terminal).
    Stdout(&'a [u8]),
    /// `2`: bytes the container wrote to stderr.
    Stderr(&'a [u8]),
    /// `3`: the container exited with this code.
    Exit(i32),
    /// `4`: close the container's stdin.
    CloseStdin,
    /// `5`: the client's terminal size.
    Resize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
}

impl<'a> Msg<'a> {
    /// Parses one packet.
    pub fn decode(b: &'a [u8]) -> Result<Msg<'a>, AttachError> {
        let bad = |why: &str| AttachError::Malformed(why.to_string());
        let (&t, body) = b.split_first().ok_or_else(|| bad("empty message"))?;
        if body.len() > MAX_DATA {
            return Err(bad(&format!("{} bytes is too long", body.len())));
        }
        Ok(match t {
            STDIN => Msg::Stdin(body),
            STDOUT => Msg::Stdout(body),
            STDERR => Msg::Stderr(body),
            EXIT => Msg::Exit(i32::from_le_bytes(
                body.try_into().map_err(|_| bad("exit needs 4 bytes"))?,
            )),
            CLOSE_STDIN if body.is_empty() => Msg::CloseStdin,
            CLOSE_STDIN => return Err(bad("close-stdin has no body")),
            RESIZE if body.len() == 4 => Msg::Resize {
                rows: u16::from_le_bytes([body[0], body[1]]),
                cols: u16::from_le_bytes([body[2], body[3]]),
            },
            RESIZE => return Err(bad("resize needs 4 bytes")),
            t => return Err(bad(&format!("unknown type {t}"))),
        })
    }

    /// Appends the packet to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Msg::Stdin(b) => {
                out.push(STDIN);
                out.extend_from_slice(b)
            }
            Msg::Stdout(b) => {
                out.push(STDOUT);
                out.extend_from_slice(b)
            }
            Msg::Stderr(b) => {
                out.push(STDERR);
                out.extend_from_slice(b)
            }
            Msg::Exit(c) => {
                out.push(EXIT);
                out.extend_from_slice(&c.to_le_bytes())
            }
            Msg::CloseStdin => out.push(CLOSE_STDIN),
            Msg::Resize { rows, cols } => {
                out.push(RESIZE);
                out.extend_from_slice(&rows.to_le_bytes());
                out.extend_from_slice(&cols.to_le_bytes());
            }
        }
    }
}

/// Why attaching failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The attach socket cannot be reached.
    #[error("attach socket {path}: {source}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An I/O error while relaying.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A message that breaks the protocol.
    #[error("malformed attach message: {0}")]
    Malformed(String),
}

fn io_err(context: &'static str) -> impl FnOnce(Errno) -> AttachError {
    move |e| AttachError::Io {
        context,
        source: e.into(),
    }
}

/// A unix socket address for `path`, through `/proc/self/fd/N/NAME` when
/// `path` is too long for `sockaddr_un` (the directory fd must stay open
/// while the address is used).
pub(crate) fn unix_addr(path: &Path) -> io::Result<(SocketAddrUnix, Option<OwnedFd>)> {
    if let Ok(a) = SocketAddrUnix::new(path) {
        return Ok((a, None));
    }
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(d), Some(n)) => (
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            },
            n,
        ),
        _ => return Err(io::Error::other("not a socket path")),
    };
    let fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let mut short = format!("/proc/self/fd/{}/", fd.as_raw_fd()).into_bytes();
    short.extend_from_slice(name.as_bytes());
    let a = SocketAddrUnix::new(std::ffi::OsStr::from_bytes(&short))?;
    Ok((a, Some(fd)))
}

/// A listening unix socket at a path, removed on drop.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) fd: OwnedFd,
    pub(crate) path: PathBuf,
}

impl Listener {
    /// Binds (non-blocking, mode 0600) at `path`, replacing a stale socket.
    pub(crate) fn bind(path: &Path, kind: SocketType) -> io::Result<Listener> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
                std::fs::remove_file(path)?
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists and is not a socket",
                ))
            }
            Err(_) => {}
        }
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            kind,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        let (addr, _dir) = unix_addr(path)?;
        rustix::net::bind(&fd, &addr)?;
        let l = Listener {
            fd,
            path: path.to_path_buf(),
        };
        rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(0o600))?;
        rustix::net::listen(&l.fd, 64)?;
        Ok(l)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The monitor's side: the listening socket and its clients.
#[derive(Debug)]
pub struct Server {
    listener: Listener,
    /// Clients; None once dropped (compacted at the next [`Server::compact`]).
    clients: Vec<Option<OwnedFd>>,
}

/// Each client's send buffer: room for bursts while it catches up.
const CLIENT_SNDBUF: usize = 1 << 20;

impl Server {
    /// Listens at `path` (a stale socket there is replaced).
    pub fn bind(path: &Path) -> io::Result<Server> {
        Ok(Server {
            listener: Listener::bind(path, SocketType::SEQPACKET)?,
            clients: Vec::new(),
        })
    }

    /// The listening socket (poll it for `IN`, then [`Server::accept`]).
    pub fn listener(&self) -> BorrowedFd<'_> {
        self.listener.fd.as_fd()
    }

    /// Accepts every pending connection.
    pub fn accept(&mut self) {
        while let Ok(c) = rustix::net::accept_with(&self.listener.fd, SocketFlags::CLOEXEC) {
            let _ = rustix::net::sockopt::set_socket_send_buffer_size(&c, CLIENT_SNDBUF);
            self.clients.push(Some(c));
        }
    }

    /// How many clients are connected.
    pub fn len(&self) -> usize {
        self.clients.iter().flatten().count()
    }

    /// Whether no client is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets dropped clients (indices change).
    pub fn compact(&mut self) {
        self.clients.retain(Option::is_some);
    }

    /// The clients by index (stable until [`Server::compact`]).
    pub fn clients(&self) -> impl Iterator<Item = (usize, BorrowedFd<'_>)> {
        self.clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c.as_fd())))
    }

    /// Drops client `i`.
    pub fn drop_client(&mut self, i: usize) {
        if let Some(c) = self.clients.get_mut(i) {
            *c = None;
        }
    }

    /// Receives one packet from client `i` into `buf`: Some(len), or None
    /// when it hung up or broke the protocol (it is then dropped) or has
    /// nothing to read.
    pub fn recv(&mut self, i: usize, buf: &mut [u8]) -> Option<usize> {
        let c = self.clients.get(i)?.as_ref()?;
        match rustix::net::recv(c, &mut *buf, RecvFlags::DONTWAIT | RecvFlags::TRUNC) {
            Ok((_, n)) if n > 0 && n <= buf.len() => Some(n),
            Err(Errno::AGAIN) | Err(Errno::INTR) => None,
            _ => {
                self.drop_client(i);
                None
            }
        }
    }

    /// Sends one packet to every client, dropping those that cannot take it
    /// now.
    pub fn broadcast(&mut self, packet: &[u8]) {
        for c in &mut self.clients {
            if let Some(fd) = c {
                if rustix::net::send(&*fd, packet, SendFlags::DONTWAIT | SendFlags::NOSIGNAL)
                    .is_err()
                {
                    *c = None;
                }
            }
        }
    }
}

/// Connects to the attach socket at `socket` (before the monitor starts
/// the container, for `waitAttach`: it waits for this connection).
pub fn connect(socket: &Path) -> Result<OwnedFd, AttachError> {
    let err = |e: io::Error| AttachError::Connect {
        path: socket.to_path_buf(),
        source: e,
    };
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| err(e.into()))?;
    let (addr, _dir) = unix_addr(socket).map_err(err)?;
    rustix::net::connect(&fd, &addr).map_err(|e| err(e.into()))?;
    Ok(fd)
}

/// What [`relay`] does.
#[derive(Debug, Clone, Copy, Default)]
pub struct RelayOptions {
    /// Forward our stdin to the container.
    pub stdin: bool,
    /// At the end of our stdin, close the container's (`4`), as docker does
    /// for `run -i`. The monitor ignores it when the container has a terminal.
    pub close_stdin: bool,
    /// The container has a terminal: put our stdin terminal (if it is one)
    /// in raw mode while we forward it, and send our terminal's size at
    /// once and on every `SIGWINCH`.
    pub tty: bool,
    /// Return at the container's first exit (`Some(code)`) rather than when
    /// the monitor hangs up (`None`).
    pub until_exit: bool,
}

/// Connects to `socket` and relays until the container exits or the
/// monitor hangs up (see [`RelayOptions`]).
pub fn relay(socket: &Path, opts: &RelayOptions) -> Result<Option<i32>, AttachError> {
    relay_fd(connect(socket)?, opts)
}

/// Our terminal's settings, restored on drop.
struct RawMode {
    fd: BorrowedFd<'static>,
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        let fd = rustix::stdio::stdin();
        let saved = rustix::termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ =
            rustix::termios::tcsetattr(self.fd, rustix::termios::OptionalActions::Now, &self.saved);
    }
}

/// The write end of the `SIGWINCH` self-pipe (-1: none).
static WINCH_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_winch(_: libc::c_int) {
    let fd = WINCH_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) and errno access are async-signal-safe; the fd is
        // a non-blocking pipe kept open while the handler is installed, and
        // errno is restored for the interrupted code.
        unsafe {
            let e = *libc::__errno_location();
            libc::write(fd, b"w".as_ptr().cast(), 1);
            *libc::__errno_location() = e;
        }
    }
}

/// A `SIGWINCH` handler writing to a self-pipe; the previous handler is
/// put back on drop.
struct Winch {
    read: OwnedFd,
    _write: OwnedFd,
    old: libc::sigaction,
}

impl Winch {
    fn install() -> Option<Winch> {
        let (read, write) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )
        .ok()?;
        if WINCH_FD
            .compare_exchange(-1, write.as_raw_fd(), Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return None; // another relay in this process has it
        }
        // SAFETY: sigaction with a zeroed (valid) struct naming an
        // async-signal-safe handler; `old` receives the previous action.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_winch as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGWINCH, &sa, &mut old) != 0 {
                WINCH_FD.store(-1, Ordering::SeqCst);
                return None;
            }
            Some(Winch {
                read,
                _write: write,
                old,
            })
        }
    }
}

impl Drop for Winch {
    fn drop(&mut self) {
        // SAFETY: restores the action saved by `install`.
        unsafe {
            libc::sigaction(libc::SIGWINCH, &self.old, std::ptr::null_mut());
        }
        WINCH_FD.store(-1, Ordering::SeqCst);
    }
}

/// Our terminal's size (stdin's, else stdout's) as a resize packet.
fn resize_packet() -> Option<Vec<u8>> {
    let ws = rustix::termios::tcgetwinsize(rustix::stdio::stdin())
        .or_else(|_| rustix::termios::tcgetwinsize(rustix::stdio::stdout()))
        .ok()?;
    let mut p = Vec::with_capacity(5);
    Msg::Resize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    }
    .encode(&mut p);
    Some(p)
}

/// [`relay`] on a socket from [`connect`].
///
/// Packets to the monitor are sent without blocking and queued when the
/// socket is full (the monitor reads a client only as fast as the
/// container takes its stdin); our stdin is not read while some wait, and
/// the monitor's output is read all the while, so we are never dropped for
/// being slow because the container is.
pub fn relay_fd(sock: OwnedFd, opts: &RelayOptions) -> Result<Option<i32>, AttachError> {
    let stdin = rustix::stdio::stdin();
    let _raw = if opts.tty && opts.stdin {
        RawMode::enter()
    } else {
        None
    };
    let winch = if opts.tty { Winch::install() } else { None };
    let mut queue: VecDeque<Vec<u8>> = VecDeque::new();
    if opts.tty {
        queue.extend(resize_packet());
    }
    let mut stdin_open = opts.stdin;
    let mut buf = vec![0u8; 1 + MAX_DATA];
    loop {
        flush_queue(&sock, &mut queue)?;
        let (sock_ev, in_ev, winch_ev) = {
            let mut ev = PollFlags::IN;
            if !queue.is_empty() {
                ev |= PollFlags::OUT;
            }
            let mut fds = vec![PollFd::new(&sock, ev)];
            let read_stdin = stdin_open && queue.is_empty();
            if read_stdin {
                fds.push(PollFd::new(&stdin, PollFlags::IN));
            }
            if let Some(w) = &winch {
                fds.push(PollFd::new(&w.read, PollFlags::IN));
            }
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(e) => return Err(io_err("poll")(e)),
            }
            let s = fds[0].revents();
            let i = if read_stdin {
                fds[1].revents()
            } else {
                PollFlags::empty()
            };
            let w = if winch.is_some() {
                fds[fds.len() - 1].revents()
            } else {
                PollFlags::empty()
            };
            (s, i, w)
        };
        // A resize goes before keys typed after it.
        if !winch_ev.is_empty() {
            if let Some(w) = &winch {
                let mut drain = [0u8; 64];
                let _ = rustix::io::read(&w.read, &mut drain);
            }
            queue.extend(resize_packet());
        }
        if sock_ev.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
            let n = match rustix::net::recv(
                &sock,
                &mut buf[..],
                RecvFlags::TRUNC | RecvFlags::DONTWAIT,
            ) {
                Ok((_, n)) => n,
                Err(Errno::INTR) | Err(Errno::AGAIN) => continue,
                Err(Errno::CONNRESET) => 0,
                Err(e) => return Err(io_err("receive from the monitor")(e)),
            };
            if n == 0 {
                return Ok(None);
            }
            if n > buf.len() {
                return Err(AttachError::Malformed(format!("{n} bytes is too long")));
            }
            match Msg::decode(&buf[..n])? {
                Msg::Stdout(b) => write_out(&mut io::stdout().lock(), b)?,
                Msg::Stderr(b) => write_out(&mut io::stderr().lock(), b)?,
                Msg::Exit(code) if opts.until_exit => return Ok(Some(code)),
                _ => {}
            }
        }
        if !in_ev.is_empty() {
            match rustix::io::read(stdin, &mut buf[1..]) {
                Err(Errno::INTR) | Err(Errno::AGAIN) => {}
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    if opts.close_stdin {
                        queue.push_back(vec![CLOSE_STDIN]);
                    }
                }
                Ok(n) => {
                    buf[0] = STDIN;
                    queue.push_back(buf[..1 + n].to_vec());
                }
            }
        }
    }
}

/// Sends queued packets until the socket is full (or drops them when the
/// monitor hung up).
fn flush_queue(sock: &OwnedFd, queue: &mut VecDeque<Vec<u8>>) -> Result<(), AttachError> {
    while let Some(p) = queue.front() {
        match rustix::net::send(sock, p, SendFlags::NOSIGNAL | SendFlags::DONTWAIT) {
            Ok(_) => {
                queue.pop_front();
            }
            Err(Errno::AGAIN) => return Ok(()),
            Err(Errno::INTR) => {}
            // The monitor is gone: what it sent before is still to be read.
            Err(Errno::PIPE) | Err(Errno::CONNRESET) => {
                queue.clear();
                return Ok(());
            }
            Err(e) => return Err(io_err("send to the monitor")(e)),
        }
    }
    Ok(())
}

fn write_out(w: &mut impl Write, b: &[u8]) -> Result<(), AttachError> {
    w.write_all(b)
        .and_then(|_| w.flush())
        .map_err(|source| AttachError::Io {
            context: "write the container's output",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(m: Msg<'_>) -> Vec<u8> {
        let mut p = Vec::new();
        m.encode(&mut p);
        assert_eq!(Msg::decode(&p).unwrap(), m);
        p
    }

    #[test]
    fn messages_encode_and_decode() {
        assert_eq!(round(Msg::Stdin(b"hi")), b"\0hi");
        assert_eq!(round(Msg::Stdout(b"out")), b"\x01out");
        assert_eq!(round(Msg::Stderr(b"")), b"\x02");
        assert_eq!(round(Msg::Exit(-2)), [3, 0xfe, 0xff, 0xff, 0xff]);
        assert_eq!(round(Msg::Exit(137)), [3, 137, 0, 0, 0]);
        assert_eq!(round(Msg::CloseStdin), [4]);
        assert_eq!(
            round(Msg::Resize {
                rows: 24,
                cols: 300
            }),
            [5, 24, 0, 0x2c, 1]
        );
        round(Msg::Stdout(&[7; MAX_DATA]));
    }

    #[test]
    fn malformed_messages_are_refused() {
        for (p, why) in [
            (&b""[..], "empty"),
            (b"\x03\x01", "exit needs 4"),
            (b"\x04x", "no body"),
            (b"\x05\x01\x02\x03", "resize needs 4"),
            (b"\x09", "unknown type 9"),
        ] {
            let e = Msg::decode(p).unwrap_err().to_string();
            assert!(e.contains(why), "{p:?}: {e}");
        }
        let mut big = vec![STDIN];
        big.resize(MAX_DATA + 2, b'x');
        assert!(Msg::decode(&big).is_err());
    }

    #[test]
    fn server_and_client_talk_over_a_socket() {
        let d = tempfile::tempdir().unwrap();
        // A path longer than sockaddr_un holds goes through /proc/self/fd.
        let long = d.path().join("x".repeat(80)).join("y".repeat(40));
        std::fs::create_dir_all(long.parent().unwrap()).unwrap();
        let mut s = Server::bind(&long).unwrap();
        let c1 = connect(&long).unwrap();
        let c2 = connect(&long).unwrap();
        s.accept();
        assert_eq!(s.len(), 2);
        s.broadcast(b"\x01hello");
        let mut buf = [0u8; 64];
        for c in [&c1, &c2] {
            let (_, n) = rustix::net::recv(c, &mut buf[..], RecvFlags::empty()).unwrap();
            assert_eq!(Msg::decode(&buf[..n]).unwrap(), Msg::Stdout(b"hello"));
        }
        flush_queue(&c1, &mut VecDeque::from([vec![CLOSE_STDIN]])).unwrap();
        let n = s.recv(0, &mut buf).unwrap();
        assert_eq!(Msg::decode(&buf[..n]).unwrap(), Msg::CloseStdin);
        drop(c1);
        assert_eq!(s.recv(0, &mut buf), None);
        s.compact();
        assert_eq!(s.len(), 1);
        // A client that does not read is dropped once its buffer is full.
        let chunk = vec![STDOUT; 1 + MAX_DATA];
        for _ in 0..1000 {
            s.broadcast(&chunk);
        }
        assert!(s.is_empty());
        drop(c2);
        drop(s);
        assert!(!long.exists());
    }
}
