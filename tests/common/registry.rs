//! A real container registry for integration tests, and a misbehaving HTTP
//! proxy to put in front of it.
//!
//! [`TestRegistry`] runs Debian's `docker-registry` (distribution 2.8) on a
//! free loopback port with its storage in a private temp dir; it is killed
//! and the dir removed when the value is dropped. Images are pushed into it
//! with `skopeo` from OCI layouts.
//!
//! [`FlakyProxy`] sits between a client and a registry and fails on purpose:
//! every 2nd request gets a `503`, and every 3rd large blob download is cut in
//! the middle, so tests can check that pulls retry and resume correctly.
//!
//! Nothing here ever contacts a non-loopback address.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long [`TestRegistry::start`] waits for the registry to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How many times a start is retried when the picked port was taken by
/// someone else between choosing it and the registry binding it.
const START_ATTEMPTS: usize = 3;

/// Blob responses larger than this may be cut by [`FlakyProxy`].
const CUT_THRESHOLD: u64 = 64 * 1024;

/// Picks a free TCP port on 127.0.0.1: binds port 0, reads the port the
/// kernel chose, and drops the listener. Returns `"127.0.0.1:PORT"`.
fn free_loopback_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to pick a free port");
    let port = l.local_addr().expect("local_addr of the port probe").port();
    format!("127.0.0.1:{port}")
}

/// Quotes `s` as a YAML double-quoted scalar (JSON strings are valid YAML).
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises to JSON")
}

/// The auth section of a registry config.
enum Auth<'a> {
    None,
    Htpasswd {
        user: &'a str,
        pass: &'a str,
    },
    Token {
        realm: &'a str,
        service: &'a str,
        issuer: &'a str,
        root_cert: &'a Path,
    },
}

/// A running `docker-registry serve` on a private loopback port, with its
/// storage, config and log in a temp dir.
///
/// Dropping it kills the registry (by PID), reaps it, and removes the dir.
#[derive(Debug)]
pub struct TestRegistry {
    /// `"127.0.0.1:PORT"`: where the registry listens (plain HTTP, or HTTPS
    /// for [`TestRegistry::start_tls`]).
    pub addr: String,
    dir: TempDir,
    child: Child,
}

impl TestRegistry {
    /// Starts an anonymous registry (anyone may push and pull).
    ///
    /// Panics, with the registry's log, if it does not answer `GET /v2/`
    /// within 20 seconds.
    pub fn start() -> TestRegistry {
        Self::start_with(Auth::None)
    }

    /// Starts a registry that demands HTTP basic auth with `user`/`pass`
    /// (the htpasswd file is made with `htpasswd -Bbn`).
    ///
    /// Push to it with [`TestRegistry::push_oci_layout_creds`].
    pub fn start_htpasswd(user: &str, pass: &str) -> TestRegistry {
        Self::start_with(Auth::Htpasswd { user, pass })
    }

    /// Starts a registry that demands bearer tokens from the token server at
    /// `realm_url`, for `service`, signed by `issuer` with a key whose
    /// certificate (chain) is the PEM file `root_cert_pem`.
    pub fn start_token(
        realm_url: &str,
        service: &str,
        issuer: &str,
        root_cert_pem: &Path,
    ) -> TestRegistry {
        Self::start_with(Auth::Token {
            realm: realm_url,
            service,
            issuer,
            root_cert: root_cert_pem,
        })
    }

    /// Starts an anonymous registry that serves HTTPS only, with the
    /// certificate (chain) and private key in the PEM files `cert_pem` and
    /// `key_pem` (config `http: tls: {certificate, key}`).
    ///
    /// Readiness is checked with a plain-HTTP request, which the registry
    /// answers with `400` ("HTTP request to an HTTPS server").
    pub fn start_tls(cert_pem: &Path, key_pem: &Path) -> TestRegistry {
        Self::start_full(Auth::None, Some((cert_pem, key_pem)))
    }

    fn start_with(auth: Auth<'_>) -> TestRegistry {
        Self::start_full(auth, None)
    }

    fn start_full(auth: Auth<'_>, tls: Option<(&Path, &Path)>) -> TestRegistry {
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&auth, tls) {
                Ok(reg) => return reg,
                Err(log) if log.contains("address already in use") => last_log = log,
                Err(log) => {
                    panic!("docker-registry did not come up; its log:\n{log}")
                }
            }
        }
        panic!(
            "docker-registry did not come up after {START_ATTEMPTS} attempts \
             (port taken each time); last log:\n{last_log}"
        )
    }

    /// One start attempt; on failure returns the registry's log.
    fn try_start(auth: &Auth<'_>, tls: Option<(&Path, &Path)>) -> Result<TestRegistry, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("berth-registry-{}-", std::process::id()))
            .tempdir()
            .expect("create a temp dir for the test registry");
        let addr = free_loopback_addr();
        let data = dir.path().join("data");
        fs::create_dir(&data).expect("create the registry's storage dir");

        let mut cfg = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {}\n",
            yaml_str(&data.to_string_lossy()),
            yaml_str(&addr),
        );
        if let Some((cert, key)) = tls {
            cfg.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                yaml_str(&cert.to_string_lossy()),
                yaml_str(&key.to_string_lossy()),
            ));
        }
        match auth {
            Auth::None => {}
            Auth::Htpasswd { user, pass } => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, pass])
                    .output()
                    .expect("run htpasswd (apache2-utils)");
                assert!(
                    out.status.success(),
                    "htpasswd -Bbn failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
                let file = dir.path().join("htpasswd");
                fs::write(&file, &out.stdout).expect("write the htpasswd file");
                cfg.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                    yaml_str(&file.to_string_lossy())
                ));
            }
            Auth::Token {
                realm,
                service,
                issuer,
                root_cert,
            } => {
                cfg.push_str(&format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    \
                     rootcertbundle: {}\n",
                    yaml_str(realm),
                    yaml_str(service),
                    yaml_str(issuer),
                    yaml_str(&root_cert.to_string_lossy()),
                ));
            }
        }
        let cfg_path = dir.path().join("config.yml");
        fs::write(&cfg_path, cfg).expect("write the registry config");

        let log_path = dir.path().join("registry.log");
        let log = fs::File::create(&log_path).expect("create the registry log");
        let log2 = log.try_clone().expect("dup the registry log fd");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("spawn docker-registry (Debian package docker-registry)");
        // From here on, Drop kills the child if we bail out.
        let mut reg = TestRegistry { addr, dir, child };

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = reg.child.try_wait().expect("wait on docker-registry") {
                return Err(format!("(exited with {status})\n{}", reg.log()));
            }
            let ready = match http_status(&reg.addr, "/v2/") {
                Some(200 | 401) => tls.is_none(),
                Some(400) => tls.is_some(),
                _ => false,
            };
            if ready {
                return Ok(reg);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "(no answer on {} within {START_TIMEOUT:?})\n{}",
                    reg.addr,
                    reg.log()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The registry's storage root (its `rootdirectory`).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Everything the registry wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read(self.dir.path().join("registry.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("(cannot read registry.log: {e})"))
    }

    /// How many `GET` requests for paths containing `/blobs/` the registry
    /// has logged so far, whatever their status. Counted from the access
    /// log lines (`... "GET /v2/NAME/blobs/sha256:... HTTP/1.1" 200 ...`).
    ///
    /// The registry writes an access line just after the response, so a
    /// request that has only just completed may not be counted yet; use
    /// [`TestRegistry::blob_gets_settled`] right after a client finished.
    pub fn blob_gets(&self) -> usize {
        self.log()
            .lines()
            .filter_map(|line| {
                let rest = &line[line.find("\"GET ")? + 5..];
                let path = &rest[..rest.find(" HTTP/")?];
                Some(path)
            })
            .filter(|path| path.contains("/blobs/"))
            .count()
    }

    /// [`TestRegistry::blob_gets`] once it has not changed for 300 ms
    /// (at most 5 s), so that just-finished requests are counted.
    pub fn blob_gets_settled(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut n = self.blob_gets();
        loop {
            thread::sleep(Duration::from_millis(300));
            let m = self.blob_gets();
            if m == n || Instant::now() >= deadline {
                return m;
            }
            n = m;
        }
    }

    /// Pushes the image tagged `tag` in the OCI layout `layout` to this
    /// registry as `dest` (like `"name/x:1.0"`), with
    /// `skopeo copy -q --dest-tls-verify=false`. Panics with skopeo's output
    /// if it fails.
    pub fn push_oci_layout(&self, layout: &Path, tag: &str, dest: &str) {
        self.skopeo_push(layout, tag, dest, &[]);
    }

    /// Like [`TestRegistry::push_oci_layout`] with `--all`: pushes an image
    /// index and every image it lists.
    pub fn push_oci_layout_all(&self, layout: &Path, tag: &str, dest: &str) {
        self.skopeo_push(layout, tag, dest, &["--all"]);
    }

    /// Like [`TestRegistry::push_oci_layout`], logging in with
    /// `--dest-creds user:pass` (for [`TestRegistry::start_htpasswd`]).
    pub fn push_oci_layout_creds(
        &self,
        layout: &Path,
        tag: &str,
        dest: &str,
        user: &str,
        pass: &str,
    ) {
        let creds = format!("{user}:{pass}");
        self.skopeo_push(layout, tag, dest, &["--dest-creds", &creds]);
    }

    fn skopeo_push(&self, layout: &Path, tag: &str, dest: &str, extra: &[&str]) {
        // Our own policy and an empty auth file, so that the machine's
        // containers config and the user's logins do not matter.
        let policy = self.dir.path().join("policy.json");
        if !policy.exists() {
            fs::write(
                &policy,
                r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
            )
            .expect("write skopeo policy.json");
        }
        let src = format!("oci:{}:{tag}", layout.display());
        let dst = format!("docker://{}/{dest}", self.addr);
        let out = Command::new("skopeo")
            .arg("--policy")
            .arg(&policy)
            .args(["copy", "-q", "--dest-tls-verify=false"])
            .args(extra)
            .arg(&src)
            .arg(&dst)
            .stdin(Stdio::null())
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy {src} {dst} failed ({}):\nstdout: {}\nstderr: {}\nregistry log tail:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 20),
        );
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `n` lines of `s`.
fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Sends `GET path` to `addr` and returns the response status, or `None` if
/// the connection or the status line fails.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    parse_status(&line)
}

/// The status code of an HTTP status line.
fn parse_status(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Counters shared between a [`FlakyProxy`] and its threads.
#[derive(Debug, Default)]
struct ProxyState {
    stop: AtomicBool,
    /// Requests read from clients.
    requests: AtomicUsize,
    /// 503s sent plus responses cut.
    failures: AtomicUsize,
    /// Forwarded `GET` responses that were `200`, for `/blobs/`, and over
    /// [`CUT_THRESHOLD`]: every 3rd is cut.
    big_blobs: AtomicUsize,
}

/// An HTTP/1.1 proxy in front of a registry that fails on purpose.
///
/// Clients talk to it as if it were the registry (plain HTTP, origin-form
/// request targets). Each client connection carries exactly one request:
/// the proxy reads it (request line, headers, and a `Content-Length` body if
/// any), answers, and closes the connection; every response it sends says
/// `Connection: close`.
///
/// - Every 2nd request (2nd, 4th, ...) is answered with
///   `503 Service Unavailable`, `Content-Length: 0`, and not forwarded.
/// - The others go to the upstream on a fresh connection, with the `Host`
///   header rewritten to the upstream and `Connection: close`; the response
///   is relayed as received (except that `Connection` is replaced by
///   `Connection: close`).
/// - Of the forwarded `GET` responses that are `200`, for a path containing
///   `/blobs/`, and have a `Content-Length` over 64 KiB, every 3rd (3rd,
///   6th, ...) is cut after half its body and the connection closed.
///
/// Because `Host` is rewritten, absolute URLs the registry hands out (such
/// as upload `Location`s) point at the upstream, not at the proxy; the proxy
/// is meant for pulls. Chunked request bodies are not supported.
///
/// Dropping it stops accepting connections; connections in progress finish
/// on their own threads.
#[derive(Debug)]
pub struct FlakyProxy {
    /// `"127.0.0.1:PORT"`: where the proxy listens.
    pub addr: String,
    state: Arc<ProxyState>,
    accept: Option<JoinHandle<()>>,
}

impl FlakyProxy {
    /// Starts a proxy to `upstream` (`"HOST:PORT"`, e.g. a
    /// [`TestRegistry::addr`]) on a free loopback port.
    pub fn start(upstream: &str) -> FlakyProxy {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for the flaky proxy");
        let addr = listener
            .local_addr()
            .expect("local_addr of the flaky proxy")
            .to_string();
        let state = Arc::new(ProxyState::default());
        let upstream = upstream.to_string();
        let st = Arc::clone(&state);
        let accept = thread::Builder::new()
            .name("flaky-proxy-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let st = Arc::clone(&st);
                    let upstream = upstream.clone();
                    let _ = thread::Builder::new()
                        .name("flaky-proxy-conn".into())
                        .spawn(move || {
                            // Errors only mean this one exchange failed; the
                            // client sees a closed connection.
                            let _ = serve_one(conn, &upstream, &st);
                        });
                }
            })
            .expect("spawn the flaky proxy's accept thread");
        FlakyProxy {
            addr,
            state,
            accept: Some(accept),
        }
    }

    /// Requests received from clients so far (failed ones included).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Failures injected so far: `503`s sent plus blob responses cut.
    pub fn failures(&self) -> usize {
        self.state.failures.load(Ordering::SeqCst)
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// A request as read from a client.
struct Request {
    method: String,
    path: String,
    /// The request line, without CRLF.
    line: String,
    /// Header lines, without CRLF.
    headers: Vec<String>,
    body: Vec<u8>,
}

/// The value of header `name` in `headers`, if present.
fn header<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
    headers.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads one header block (up to the empty line); the first line is returned
/// separately. `None` on EOF before anything was read.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<(String, Vec<String>)>> {
    let mut first = String::new();
    if r.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF inside HTTP headers",
            ));
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        headers.push(line);
    }
    Ok(Some((
        first.trim_end_matches(['\r', '\n']).to_string(),
        headers,
    )))
}

/// Reads one request from the client; `None` if it closed without sending.
fn read_request(
    r: &mut BufReader<TcpStream>,
    client: &mut TcpStream,
) -> io::Result<Option<Request>> {
    let Some((line, headers)) = read_head(r)? else {
        return Ok(None);
    };
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let len: u64 = header(&headers, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if len > 0 && header(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let mut body = Vec::new();
    r.take(len).read_to_end(&mut body)?;
    if (body.len() as u64) < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "EOF inside request body",
        ));
    }
    Ok(Some(Request {
        method,
        path,
        line,
        headers,
        body,
    }))
}

/// Serves one request on `client`, then closes it.
fn serve_one(mut client: TcpStream, upstream: &str, st: &ProxyState) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    client.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let Some(req) = read_request(&mut reader, &mut client)? else {
        return Ok(());
    };
    let n = st.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if n.is_multiple_of(2) {
        st.failures.fetch_add(1, Ordering::SeqCst);
        client.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        client.flush()?;
        return client.shutdown(Shutdown::Both);
    }

    let mut up = match TcpStream::connect(upstream) {
        Ok(up) => up,
        Err(e) => {
            let msg = format!("flaky proxy: cannot connect to upstream {upstream}: {e}\n");
            write!(
                client,
                "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                msg.len()
            )?;
            return client.shutdown(Shutdown::Both);
        }
    };
    up.set_read_timeout(Some(Duration::from_secs(30)))?;
    up.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{}\r\nHost: {upstream}\r\nConnection: close\r\n", req.line);
    for h in &req.headers {
        let name = h.split(':').next().unwrap_or_default().trim();
        if [
            "host",
            "connection",
            "keep-alive",
            "proxy-connection",
            "expect",
        ]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
        {
            continue;
        }
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&req.body)?;
    up.flush()?;

    let mut upr = BufReader::new(up);
    let Some((status_line, headers)) = read_head(&mut upr)? else {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "upstream closed without a response",
        ));
    };
    let status = parse_status(&status_line);
    let len: Option<u64> = header(&headers, "content-length").and_then(|v| v.parse().ok());
    let cut_at = match len {
        Some(len)
            if req.method == "GET"
                && status == Some(200)
                && req.path.contains("/blobs/")
                && len > CUT_THRESHOLD =>
        {
            let k = st.big_blobs.fetch_add(1, Ordering::SeqCst) + 1;
            k.is_multiple_of(3).then_some(len / 2)
        }
        _ => None,
    };

    let mut out = format!("{status_line}\r\n");
    for h in &headers {
        let name = h.split(':').next().unwrap_or_default().trim();
        if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    client.write_all(out.as_bytes())?;

    match cut_at {
        Some(half) => {
            st.failures.fetch_add(1, Ordering::SeqCst);
            io::copy(&mut (&mut upr).take(half), &mut client)?;
        }
        // Upstream closes after the response (we sent Connection: close),
        // so relaying to EOF is the whole body, whatever its framing.
        None => {
            io::copy(&mut upr, &mut client)?;
        }
    }
    client.flush()?;
    client.shutdown(Shutdown::Both)
}
