//! The registry client against a private `docker-registry` on loopback: push
//! and pull round trips, resolve, mounts, basic and token auth, a flaky proxy,
//! TLS with a CA from a certs dir, tampered blobs and oversized manifests.
//!
//! Every registry, token server and proxy listens on 127.0.0.1 on a port the
//! kernel picked, with its files in a temp dir; all are stopped and removed
//! by `Drop`, also when a test fails.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use berth_image::digest::{Algorithm, Digest, HashingReader};
use berth_image::registry::authfile::AuthFile;
use berth_image::registry::{Client, RegistryError, RegistryOptions, Repository};
use berth_tests::registry::{FlakyProxy, TestRegistry};
use berth_tests::{need_root, unique};
use serde_json::json;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Options with the auth file in `auth_dir` (never the user's), no certs
/// dirs and a short timeout.
fn options(auth_dir: &Path) -> RegistryOptions {
    RegistryOptions {
        auth_file: Some(auth_dir.join("auth.json")),
        certs_dirs: vec![],
        timeout: Duration::from_secs(10),
        ..RegistryOptions::default()
    }
}

/// Pseudo-random bytes (xorshift), different per seed.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn push(repo: &Repository, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    repo.push_blob(&d, data.len() as u64, &mut &data[..])
        .unwrap_or_else(|e| panic!("push blob {d}: {e}"));
    d
}

/// Pushes a config and layers, then an OCI manifest tagged `tag`; returns
/// (manifest bytes, digest).
fn push_image(repo: &Repository, tag: &str, layers: &[&[u8]]) -> (Vec<u8>, Digest) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = push(repo, config);
    let layers: Vec<_> = layers
        .iter()
        .map(|l| {
            json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": push(repo, l).to_string(),
                "size": l.len(),
            })
        })
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": cd.to_string(),
            "size": config.len(),
        },
        "layers": layers,
    }))
    .unwrap();
    let md = repo
        .put_manifest(tag, OCI_MANIFEST, &manifest)
        .expect("put manifest");
    assert_eq!(md, Digest::sha256_of(&manifest));
    (manifest, md)
}

/// Reads a whole blob with [`Repository::open_blob`]; returns (digest, size).
fn stream_blob(repo: &Repository, d: &Digest, size: u64) -> (Digest, u64) {
    let mut r = HashingReader::new(
        repo.open_blob(d, Some(size), 0)
            .unwrap_or_else(|e| panic!("open blob {d}: {e}")),
        Algorithm::Sha256,
    );
    std::io::copy(&mut r, &mut std::io::sink()).unwrap_or_else(|e| panic!("read blob {d}: {e}"));
    (r.digest(), r.count())
}

/// The file holding blob `d` in the registry's filesystem storage.
fn blob_file(reg: &TestRegistry, d: &Digest) -> PathBuf {
    let hex = d.hex();
    reg.storage()
        .join("docker/registry/v2/blobs")
        .join(d.algorithm().as_str())
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

#[test]
fn push_pull_round_trip_resolve_and_mount() {
    if !need_root("push_pull_round_trip_resolve_and_mount") {
        return;
    }
    let reg = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let client = Client::new(options(tmp.path())).unwrap();
    let name = unique("berth/round-trip");
    let repo = client.repository(&reg.addr, &name);
    assert_eq!(repo.name(), name);
    assert_eq!(repo.registry(), reg.addr);
    // This client uploads every blob in one PUT, whatever its size.
    let big = noise((3 << 20) + 12345, 1);
    let small = noise(1000, 2);
    let (manifest, md) = push_image(&repo, "v1", &[&big, &small]);

    // resolve by tag and by digest
    let by_tag = repo.resolve("v1").unwrap();
    assert_eq!(by_tag.digest, md);
    assert_eq!(by_tag.size, manifest.len() as u64);
    assert_eq!(by_tag.media_type, OCI_MANIFEST);
    let by_digest = repo.resolve(&md.to_string()).unwrap();
    assert_eq!(by_digest, by_tag);
    let err = repo.resolve("nope").unwrap_err();
    assert!(matches!(err, RegistryError::NotFound(..)), "{err}");

    // manifests by tag and digest
    let (body, mt, d) = repo.get_manifest("v1").unwrap();
    assert_eq!(
        (body.as_slice(), mt.as_str(), &d),
        (&manifest[..], OCI_MANIFEST, &md)
    );
    let (body, _, d) = repo.get_manifest(&md.to_string()).unwrap();
    assert_eq!((body, d), (manifest.clone(), md.clone()));
    let err = repo.get_manifest("nope").unwrap_err();
    assert!(matches!(err, RegistryError::NotFound(..)), "{err}");
    assert_eq!(repo.tags().unwrap(), vec!["v1".to_string()]);

    // blobs
    let bd = Digest::sha256_of(&big);
    assert_eq!(repo.blob_exists(&bd).unwrap(), Some(big.len() as u64));
    assert_eq!(
        repo.blob_exists(&Digest::sha256_of(b"absent")).unwrap(),
        None
    );
    assert_eq!(
        repo.get_blob_bytes(&Digest::sha256_of(&small), 4096)
            .unwrap(),
        small
    );
    let err = repo.get_blob_bytes(&bd, 1 << 20).unwrap_err();
    assert!(
        matches!(err, RegistryError::TooLarge(_, limit) if limit == 1 << 20),
        "{err}"
    );
    assert_eq!(
        stream_blob(&repo, &bd, big.len() as u64),
        (bd.clone(), big.len() as u64)
    );

    // reads from an offset (Range), and at the end (no request at all)
    let mut tail = Vec::new();
    let mut r = repo
        .open_blob(&bd, Some(big.len() as u64), 3 << 20)
        .unwrap();
    r.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, big[3 << 20..]);
    assert_eq!(r.position(), big.len() as u64);
    let mut r = repo
        .open_blob(&bd, Some(big.len() as u64), big.len() as u64)
        .unwrap();
    assert_eq!(r.read(&mut [0u8; 16]).unwrap(), 0);

    // A wrong digest is refused by the registry (400 DIGEST_INVALID) and
    // nothing is stored under it; a wrong size is caught before sending.
    let wrong = Digest::sha256_of(b"something else");
    let err = repo
        .push_blob(&wrong, small.len() as u64, &mut &small[..])
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Http { status: 400, .. }),
        "{err}"
    );
    assert_eq!(repo.blob_exists(&wrong).unwrap(), None);
    let err = repo
        .push_blob(&Digest::sha256_of(&small), 10, &mut &small[..])
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::SizeMismatch(_, 1000, 10)),
        "{err}"
    );

    // cross-repository mount
    let other = client.repository(&reg.addr, &unique("berth/mounted"));
    assert_eq!(other.blob_exists(&bd).unwrap(), None);
    assert!(other.mount_blob(&bd, &name).unwrap());
    assert_eq!(other.blob_exists(&bd).unwrap(), Some(big.len() as u64));
    assert!(!other
        .mount_blob(&Digest::sha256_of(b"nowhere"), &name)
        .unwrap());
}

#[test]
fn manifest_cap_and_tampered_blob() {
    if !need_root("manifest_cap_and_tampered_blob") {
        return;
    }
    let reg = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let client = Client::new(options(tmp.path())).unwrap();
    let name = unique("berth/cap");
    let repo = client.repository(&reg.addr, &name);
    let layer = noise(5000, 3);
    let (manifest, md) = push_image(&repo, "t", &[&layer]);
    assert!(manifest.len() > 100);

    // a manifest over max_manifest_size is refused, by tag and by digest
    let tiny = Client::new(RegistryOptions {
        max_manifest_size: 100,
        ..options(tmp.path())
    })
    .unwrap();
    let tiny_repo = tiny.repository(&reg.addr, &name);
    for reference in ["t".to_string(), md.to_string()] {
        let err = tiny_repo.get_manifest(&reference).unwrap_err();
        assert!(matches!(err, RegistryError::TooLarge(_, 100)), "{err}");
        assert!(err.to_string().contains(&reg.addr), "{err}");
    }
    assert_eq!(repo.get_manifest("t").unwrap().0, manifest);

    // a blob changed in the registry's storage (same length) is caught
    let d = Digest::sha256_of(&layer);
    let path = blob_file(&reg, &d);
    let mut bad = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(bad, layer);
    bad[10] ^= 0xff;
    fs::write(&path, &bad).unwrap();
    let err = repo.get_blob_bytes(&d, 1 << 20).unwrap_err();
    match &err {
        RegistryError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &d);
            assert_eq!(actual, &Digest::sha256_of(&bad));
        }
        other => panic!("expected DigestMismatch, got {other}"),
    }
    assert!(err.to_string().contains(&d.to_string()), "{err}");
    // Streaming does not check (the caller hashes); it sees the bad bytes.
    assert_eq!(
        stream_blob(&repo, &d, layer.len() as u64),
        (Digest::sha256_of(&bad), layer.len() as u64)
    );
}

#[test]
fn basic_auth_login_and_logout() {
    if !need_root("basic_auth_login_and_logout") {
        return;
    }
    let reg = TestRegistry::start_htpasswd("alice", "wonder land");
    let tmp = tempfile::tempdir().unwrap();
    let auth_path = tmp.path().join("auth.json");
    let client = Client::new(options(tmp.path())).unwrap();
    let repo = client.repository(&reg.addr, &unique("berth/basic"));
    let data = noise(2000, 4);

    // anonymous: refused, naming the registry
    let err = repo
        .push_blob(&Digest::sha256_of(&data), 2000, &mut &data[..])
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized(..)), "{err}");
    assert!(err.to_string().contains(&reg.addr), "{err}");
    let err = repo.tags().unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized(..)), "{err}");

    // a wrong password: a clear error, nothing stored
    let err = client.login(&reg.addr, "alice", "wrong").unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized(..)), "{err}");
    assert!(err.to_string().contains(&reg.addr), "{err}");
    assert!(
        err.to_string().contains("invalid username or password"),
        "{err}"
    );
    assert!(!auth_path.exists());

    // the right one: stored in the auth file of the options
    client.login(&reg.addr, "alice", "wonder land").unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&fs::read(&auth_path).unwrap()).unwrap();
    assert_eq!(
        stored["auths"][&reg.addr]["auth"],
        STANDARD.encode("alice:wonder land")
    );
    assert_eq!(
        AuthFile::load(&auth_path).unwrap().get(&reg.addr),
        Some(("alice".to_string(), "wonder land".to_string()))
    );
    let (manifest, md) = push_image(&repo, "v1", &[&data]);
    let d = Digest::sha256_of(&data);
    assert_eq!(repo.get_blob_bytes(&d, 4096).unwrap(), data);
    assert_eq!(repo.resolve("v1").unwrap().digest, md);
    assert_eq!(repo.get_manifest("v1").unwrap().0, manifest);
    assert_eq!(repo.tags().unwrap(), vec!["v1".to_string()]);
    // another client with the same auth file needs no login
    let second = Client::new(options(tmp.path())).unwrap();
    assert_eq!(
        second
            .repository(&reg.addr, repo.name())
            .get_blob_bytes(&d, 4096)
            .unwrap(),
        data
    );

    // logout: true, then false; then anonymous again
    assert!(client.logout(&reg.addr).unwrap());
    assert!(!client.logout(&reg.addr).unwrap());
    assert_eq!(AuthFile::load(&auth_path).unwrap().get(&reg.addr), None);
    let fresh = Client::new(options(tmp.path())).unwrap();
    let err = fresh
        .repository(&reg.addr, repo.name())
        .get_blob_bytes(&d, 4096)
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized(..)), "{err}");
}

/// A token server on 127.0.0.1: RS256 JWTs signed by a key made with
/// `openssl`, the certificate in the `x5c` header, granting every asked-for
/// action to `user` (with `password`, as basic auth). Stopped on drop.
struct TokenServer {
    realm: String,
    cert: PathBuf,
    issued: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

const TOKEN_ISSUER: &str = "berth-test-issuer";

impl TokenServer {
    fn start(user: &'static str, password: &'static str, service: &'static str) -> TokenServer {
        let dir = tempfile::Builder::new()
            .prefix(&format!("berth-token-{}-", std::process::id()))
            .tempdir()
            .unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=berth-test-token-issuer",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]);
        let der = dir.path().join("cert.der");
        openssl(&[
            "x509",
            "-in",
            cert.to_str().unwrap(),
            "-outform",
            "DER",
            "-out",
            der.to_str().unwrap(),
        ]);
        let x5c = STANDARD.encode(fs::read(&der).unwrap());
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let realm = format!("http://{}/token", l.local_addr().unwrap());
        let issued = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (issued2, stop2) = (issued.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => {
                        if s.set_nonblocking(false).is_ok() {
                            serve_token(s, &key, &x5c, user, password, service, &issued2);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TokenServer {
            realm,
            cert,
            issued,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    fn issued(&self) -> u32 {
        self.issued.load(Ordering::Relaxed)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve_token(
    mut s: TcpStream,
    key: &Path,
    x5c: &str,
    user: &str,
    password: &str,
    service: &str,
    issued: &AtomicU32,
) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(clone) = s.try_clone() else { return };
    let mut r = BufReader::new(clone);
    let mut line = String::new();
    r.read_line(&mut line).unwrap_or(0);
    let target = line.split(' ').nth(1).unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let reply = |s: &mut TcpStream, code: &str, body: &str| {
        let _ = write!(
            s,
            "HTTP/1.1 {code}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
    let Some(auth) = headers.get("authorization") else {
        return reply(
            &mut s,
            "401 Unauthorized",
            r#"{"details":"credentials required"}"#,
        );
    };
    if *auth != expected {
        return reply(
            &mut s,
            "401 Unauthorized",
            r#"{"details":"wrong credentials"}"#,
        );
    }
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut access = Vec::new();
    for (k, v) in query.split('&').filter_map(|p| p.split_once('=')) {
        let v = url_decode(v);
        if k == "service" && v != service {
            return reply(
                &mut s,
                "400 Bad Request",
                r#"{"details":"unknown service"}"#,
            );
        }
        if k == "scope" {
            let mut parts = v.splitn(3, ':');
            let (Some(t), Some(n), Some(a)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            access.push(json!({"type": t, "name": n, "actions": a.split(',').collect::<Vec<_>>()}));
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let n = issued.fetch_add(1, Ordering::Relaxed);
    let header = json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
    let claims = json!({
        "iss": TOKEN_ISSUER, "sub": user, "aud": service,
        "exp": now + 300, "nbf": now - 10, "iat": now - 10,
        "jti": format!("berth-{}-{n}", std::process::id()),
        "access": access,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let Ok(mut child) = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    else {
        return reply(&mut s, "500 Internal Server Error", "{}");
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let sig = match child.wait_with_output() {
        Ok(out) if out.status.success() => out.stdout,
        _ => return reply(&mut s, "500 Internal Server Error", "{}"),
    };
    let jwt = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
    reply(
        &mut s,
        "200 OK",
        &json!({"token": jwt, "expires_in": 300}).to_string(),
    );
}

#[test]
fn token_auth() {
    if !need_root("token_auth") {
        return;
    }
    const SERVICE: &str = "berth-test-registry";
    let ts = TokenServer::start("bob", "builder", SERVICE);
    let reg = TestRegistry::start_token(&ts.realm, SERVICE, TOKEN_ISSUER, &ts.cert);
    let tmp = tempfile::tempdir().unwrap();
    let auth_path = tmp.path().join("auth.json");
    let client = Client::new(options(tmp.path())).unwrap();
    let name = unique("berth/token");
    let repo = client.repository(&reg.addr, &name);

    // anonymous: the token service wants credentials
    let err = repo.tags().unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized(..)), "{err}");
    assert!(err.to_string().contains(&reg.addr), "{err}");

    // a wrong password fails and stores nothing; the right one works
    let err = client.login(&reg.addr, "bob", "nope").unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized(..)), "{err}");
    assert!(err.to_string().contains(&reg.addr), "{err}");
    assert!(!auth_path.exists());
    client
        .login(&reg.addr, "bob", "builder")
        .unwrap_or_else(|e| panic!("{e}\n{}", reg.log()));
    assert!(auth_path.exists());

    // push, then pull
    let layer = noise(300_000, 5);
    let (manifest, md) = push_image(&repo, "latest", &[&layer]);
    let before = ts.issued();
    assert_eq!(repo.resolve("latest").unwrap().digest, md);
    assert_eq!(repo.get_manifest("latest").unwrap().0, manifest);
    let ld = Digest::sha256_of(&layer);
    assert_eq!(repo.get_blob_bytes(&ld, 1 << 20).unwrap(), layer);
    assert_eq!(
        stream_blob(&repo, &ld, layer.len() as u64),
        (ld.clone(), layer.len() as u64)
    );
    assert_eq!(repo.tags().unwrap(), vec!["latest".to_string()]);
    // one pull token, cached for all the pulls
    assert_eq!(ts.issued(), before + 1);

    // a mount needs push on the target and pull on the source: two scopes
    // in one token; without the second the registry would start an upload
    let other = client.repository(&reg.addr, &unique("berth/token-mount"));
    assert!(other
        .mount_blob(&ld, &name)
        .unwrap_or_else(|e| panic!("{e}\n{}", reg.log())));
    assert_eq!(other.blob_exists(&ld).unwrap(), Some(layer.len() as u64));
}

#[test]
fn flaky_proxy_pull_still_succeeds() {
    if !need_root("flaky_proxy_pull_still_succeeds") {
        return;
    }
    let reg = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let client = Client::new(options(tmp.path())).unwrap();
    let name = unique("berth/flaky");
    let layer = noise(6 << 20, 6);
    let (manifest, md) = push_image(&client.repository(&reg.addr, &name), "v", &[&layer]);
    let gets_before = reg.blob_gets_settled();

    let proxy = FlakyProxy::start(&reg.addr);
    let via = Client::new(options(tmp.path())).unwrap();
    let repo = via.repository(&proxy.addr, &name);
    assert_eq!(repo.resolve("v").unwrap().digest, md);
    assert_eq!(repo.get_manifest("v").unwrap().0, manifest);
    // Three full downloads: the proxy cuts the 3rd large blob response in
    // the middle, and the reader resumes it with Range.
    let ld = Digest::sha256_of(&layer);
    for _ in 0..3 {
        assert_eq!(
            stream_blob(&repo, &ld, layer.len() as u64),
            (ld.clone(), layer.len() as u64)
        );
    }
    assert_eq!(repo.get_blob_bytes(&ld, 8 << 20).unwrap(), layer);
    assert!(
        proxy.failures() >= 4,
        "only {} failures injected",
        proxy.failures()
    );
    assert!(proxy.requests() >= 8, "only {} requests", proxy.requests());
    // 4 downloads and at least one resume reached the registry
    let gets = reg.blob_gets_settled() - gets_before;
    assert!(gets >= 5, "{gets} blob GETs reached the registry");
}

/// A CA and a server certificate for 127.0.0.1 and localhost, in `dir`:
/// `ca.crt`, `server.crt`, `server.key`.
fn make_pki(dir: &Path) {
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=berth-test-ca",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.crt"),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("server.key"),
        "-out",
        &p("server.csr"),
    ]);
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("ca.crt"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("server.crt"),
    ]);
}

#[test]
fn tls_with_ca_from_certs_dir() {
    if !need_root("tls_with_ca_from_certs_dir") {
        return;
    }
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let reg = TestRegistry::start_tls(
        &pki.path().join("server.crt"),
        &pki.path().join("server.key"),
    );
    let tmp = tempfile::tempdir().unwrap();

    // certs dir with HOST:PORT/ca.crt: HTTPS (also on loopback), trusted
    let certs = tempfile::tempdir().unwrap();
    fs::create_dir_all(certs.path().join(&reg.addr)).unwrap();
    fs::copy(
        pki.path().join("ca.crt"),
        certs.path().join(&reg.addr).join("ca.crt"),
    )
    .unwrap();
    let client = Client::new(RegistryOptions {
        certs_dirs: vec![certs.path().to_path_buf()],
        ..options(tmp.path())
    })
    .unwrap();
    let repo = client.repository(&reg.addr, &unique("berth/tls"));
    let data = noise(70_000, 7);
    let (manifest, md) = push_image(&repo, "v1", &[&data]);
    let d = Digest::sha256_of(&data);
    assert_eq!(
        repo.get_blob_bytes(&d, 1 << 20)
            .unwrap_or_else(|e| panic!("{e}\n{}", reg.log())),
        data
    );
    assert_eq!(repo.resolve("v1").unwrap().digest, md);
    assert_eq!(repo.get_manifest(&md.to_string()).unwrap().0, manifest);

    // an entry without the CA: HTTPS, and the certificate is not trusted
    let no_ca = tempfile::tempdir().unwrap();
    fs::create_dir_all(no_ca.path().join(&reg.addr)).unwrap();
    let untrusting = Client::new(RegistryOptions {
        certs_dirs: vec![no_ca.path().to_path_buf()],
        max_retries: 1,
        ..options(tmp.path())
    })
    .unwrap();
    let err = untrusting
        .repository(&reg.addr, repo.name())
        .blob_exists(&d)
        .unwrap_err();
    assert!(matches!(err, RegistryError::Transport { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "not a TLS error: {err}"
    );
    assert!(err.to_string().contains("https://"), "{err}");

    // no entry at all: a loopback registry is plain HTTP, which a TLS-only
    // registry refuses
    let plain = Client::new(RegistryOptions {
        max_retries: 1,
        ..options(tmp.path())
    })
    .unwrap();
    let err = plain
        .repository(&reg.addr, repo.name())
        .blob_exists(&d)
        .unwrap_err();
    assert!(err.to_string().contains("http://"), "{err}");
}
