//! The registry client: the OCI distribution spec (v2 API) over HTTP(S).
//!
//! - Authentication: anonymous first; on 401 the `WWW-Authenticate`
//!   challenge decides between basic credentials and a bearer token for the
//!   request's scope (`repository:NAME:pull[,push]`), cached until it expires.
//! - Transport: HTTPS with the system roots plus `certs.d` CA files; plain
//!   HTTP only for registries configured insecure and for loopback ones
//!   without a `certs.d` entry (a `CERTS_DIR/HOST[:PORT]/` dir, as podman
//!   and docker use, makes a loopback registry HTTPS too).
//! - Every request is retried with exponential backoff on 5xx, 429,
//!   connection errors and timeouts. [`BlobReader`] also resumes a broken
//!   download with `Range`.
//! - Redirects are followed by hand, so `Authorization` is dropped when the
//!   host changes.
//! - Reads of manifests and other JSON are capped.

use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tracing::debug;

use crate::digest::{Digest, Hasher};

pub mod authfile;
mod blob;
pub mod challenge;
mod tls;

pub use blob::BlobReader;
use challenge::Challenge;

/// Accept header for manifests: every kind berth understands.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Errors of the registry client. Each names the registry, repository, URL
/// or digest at fault.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// not found
    #[error("{0}: not found{1}")]
    NotFound(String, String),
    /// 401 after authenticating, or no credentials.
    #[error("{0}: unauthorized: {1}")]
    Unauthorized(String, String),
    /// 403.
    #[error("{0}: access denied{1}")]
    Denied(String, String),
    /// Another HTTP status.
    #[error("{url}: HTTP {status}{message}")]
    Http {
        /// The request.
        url: String,
        /// The status.
        status: u16,
        /// The registry's error JSON, if any.
        message: String,
    },
    /// Connection failed, after retries.
    #[error("{url}: {message}")]
    Transport {
        /// The request.
        url: String,
        /// What failed.
        message: String,
    },
    /// A body larger than allowed.
    #[error("{0}: larger than the {1} byte limit")]
    TooLarge(String, u64),
    /// Content that does not hash to its digest.
    #[error("{what}: content is {actual}, expected {expected}")]
    DigestMismatch {
        /// What was read.
        what: String,
        /// The asked digest.
        expected: Digest,
        /// What arrived.
        actual: Digest,
    },
    /// A blob of the wrong length.
    #[error("{0}: size is {1} bytes, expected {2}")]
    SizeMismatch(String, u64, u64),
    /// A response berth cannot use.
    #[error("{0}: invalid response: {1}")]
    InvalidResponse(String, String),
    /// TLS setup failed.
    #[error("TLS setup for {0}: {1}")]
    Tls(String, String),
    /// A malformed auth file.
    #[error("auth file {0}: {1}")]
    AuthFile(String, String),
    /// Local I/O.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Options of a [`Client`].
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `host[:port]` reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Dirs holding `HOST[:PORT]/*.crt` CA files.
    pub certs_dirs: Vec<PathBuf>,
    /// The auth file; None means [`authfile::AuthFile::default_path`].
    pub auth_file: Option<PathBuf>,
    /// The User-Agent.
    pub user_agent: String,
    /// Retries per request.
    pub max_retries: u32,
    /// Connect and read timeout.
    pub timeout: Duration,
    /// Largest manifest read.
    pub max_manifest_size: u64,
    /// Credentials given with the request (a CRI `AuthConfig`), used instead
    /// of the auth file for every registry this client talks to.
    pub credentials: Option<Credentials>,
}

/// Credentials handed to the client directly rather than read from the auth
/// file. `Debug` never shows a secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password: HTTP basic auth, or sent to the token
    /// service to get a bearer token.
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
    /// An identity token (an OAuth2 refresh token, docker's
    /// `identitytoken`): exchanged at the token service for a bearer token
    /// with `grant_type=refresh_token`.
    IdentityToken(String),
    /// A bearer token sent as it is on every request.
    RegistryToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Credentials::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: Vec::new(),
            certs_dirs: Vec::new(),
            auth_file: None,
            user_agent: format!("berth/{}", env!("CARGO_PKG_VERSION")),
            max_retries: 5,
            timeout: Duration::from_secs(30),
            max_manifest_size: 4 << 20,
            credentials: None,
        }
    }
}

/// A content descriptor as a registry reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Content-Type.
    pub media_type: String,
    /// Docker-Content-Digest.
    pub digest: Digest,
    /// Content-Length.
    pub size: u64,
}

/// How a registry wants to be authenticated, learned from its challenge.
#[derive(Debug, Clone)]
enum AuthMode {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

#[derive(Debug)]
struct Inner {
    opts: RegistryOptions,
    auth_path: PathBuf,
    agents: Mutex<HashMap<String, ureq::Agent>>,
    modes: Mutex<HashMap<String, AuthMode>>,
    tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
}

/// A registry client. Cheap to clone; clones share connections and tokens.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// One repository of one registry.
#[derive(Debug, Clone)]
pub struct Repository {
    client: Client,
    registry: String,
    name: String,
}

/// A request body that can be sent again on a retry.
enum Body<'a> {
    None,
    Bytes(&'a [u8]),
}

/// The backoff before retry `attempt` (0-based): 100 ms doubling, at most 5 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(6)).min(5000))
}

fn is_loopback(host: &str) -> bool {
    let h = host
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map(|(h, _)| h)
        .unwrap_or(host);
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h == "localhost"
        || h.parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// The registry's error JSON as ": CODE: message; ...", or empty.
fn error_message(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct E {
        code: Option<String>,
        message: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Es {
        errors: Vec<E>,
    }
    match serde_json::from_str::<Es>(body) {
        Ok(es) if !es.errors.is_empty() => {
            let parts: Vec<String> = es
                .errors
                .into_iter()
                .map(|e| match (e.code, e.message) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c,
                    (None, Some(m)) => m,
                    (None, None) => String::new(),
                })
                .collect();
            format!(": {}", parts.join("; "))
        }
        _ => {
            let t = body.trim();
            if t.is_empty() || t.len() > 300 {
                String::new()
            } else {
                format!(": {t}")
            }
        }
    }
}

/// A token service's answer: `token` or `access_token`, and its lifetime.
fn parse_token(realm: &str, body: &[u8]) -> Result<(String, Duration), RegistryError> {
    #[derive(serde::Deserialize)]
    struct T {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    }
    let t: T = serde_json::from_slice(body)
        .map_err(|e| RegistryError::InvalidResponse(realm.to_string(), e.to_string()))?;
    let tok = t.token.or(t.access_token).ok_or_else(|| {
        RegistryError::InvalidResponse(realm.to_string(), "no token in the answer".into())
    })?;
    Ok((tok, Duration::from_secs(t.expires_in.unwrap_or(60).max(10))))
}

fn read_capped(r: impl Read, max: u64, what: &str) -> Result<Vec<u8>, RegistryError> {
    let mut buf = Vec::new();
    r.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| RegistryError::Transport {
            url: what.to_string(),
            message: format!("reading the body: {e}"),
        })?;
    if buf.len() as u64 > max {
        return Err(RegistryError::TooLarge(what.to_string(), max));
    }
    Ok(buf)
}

impl Client {
    /// A client with `opts`.
    pub fn new(opts: RegistryOptions) -> Result<Client, RegistryError> {
        let auth_path = opts
            .auth_file
            .clone()
            .unwrap_or_else(authfile::AuthFile::default_path);
        Ok(Client {
            inner: Arc::new(Inner {
                opts,
                auth_path,
                agents: Mutex::new(HashMap::new()),
                modes: Mutex::new(HashMap::new()),
                tokens: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// A repository handle. `docker.io` is served by `registry-1.docker.io`.
    pub fn repository(&self, registry: &str, repository: &str) -> Repository {
        Repository {
            client: self.clone(),
            registry: registry.to_string(),
            name: repository.to_string(),
        }
    }

    fn host_of(registry: &str) -> &str {
        if registry == "docker.io" || registry == "index.docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        }
    }

    fn insecure(&self, registry: &str) -> bool {
        self.inner.opts.insecure.iter().any(|i| i == registry)
    }

    /// Whether some certs dir has an entry (`DIR/HOST[:PORT]/`) for `host`.
    fn has_certs_dir(&self, host: &str) -> bool {
        self.inner
            .opts
            .certs_dirs
            .iter()
            .any(|d| d.join(host).is_dir())
    }

    /// The base URL of the v2 API: HTTPS, except for registries configured
    /// insecure and loopback registries without a certs dir entry.
    fn base(&self, registry: &str) -> String {
        let host = Self::host_of(registry);
        let scheme = if self.insecure(registry) || (is_loopback(host) && !self.has_certs_dir(host))
        {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}/v2/")
    }

    fn agent(&self, registry: &str) -> Result<ureq::Agent, RegistryError> {
        let mut agents = self.inner.agents.lock().expect("agents");
        if let Some(a) = agents.get(registry) {
            return Ok(a.clone());
        }
        let host = Self::host_of(registry);
        let mut b = ureq::AgentBuilder::new()
            .timeout_connect(self.inner.opts.timeout)
            .timeout_read(self.inner.opts.timeout)
            .redirects(0)
            .user_agent(&self.inner.opts.user_agent);
        // Loading the system roots costs tens of milliseconds: only for HTTPS.
        if self.base(registry).starts_with("https:") {
            b = b.tls_config(tls::config(
                host,
                &self.inner.opts.certs_dirs,
                self.insecure(registry),
            )?);
        }
        let a = b.build();
        agents.insert(registry.to_string(), a.clone());
        Ok(a)
    }

    fn credentials(&self, registry: &str) -> Result<Option<(String, String)>, RegistryError> {
        match &self.inner.opts.credentials {
            Some(Credentials::Basic { username, password }) => {
                Ok(Some((username.clone(), password.clone())))
            }
            // A token stands for the credentials: the auth file is not read.
            Some(_) => Ok(None),
            None => authfile::AuthFile::load(&self.inner.auth_path)?.credentials(registry),
        }
    }

    /// Whether the client has something to authenticate with.
    fn has_credentials(&self, registry: &str) -> Result<bool, RegistryError> {
        Ok(matches!(
            self.inner.opts.credentials,
            Some(Credentials::IdentityToken(_) | Credentials::RegistryToken(_))
        ) || self.credentials(registry)?.is_some())
    }

    /// Exchanges an identity (refresh) token for a bearer token, as the
    /// OAuth2 flow of the distribution token spec has it.
    fn fetch_oauth_token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        refresh_token: &str,
    ) -> Result<(String, Duration), RegistryError> {
        let agent = self.agent(registry)?;
        let scope = scopes.join(" ");
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", "berth"),
        ];
        if let Some(s) = service {
            form.push(("service", s));
        }
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        debug!(realm, ?scopes, "exchanging an identity token");
        match agent.post(realm).send_form(&form) {
            Ok(resp) => {
                let body = read_capped(resp.into_reader(), 1 << 20, realm)?;
                parse_token(realm, &body)
            }
            Err(ureq::Error::Status(code, resp)) => {
                let msg = error_message(&resp.into_string().unwrap_or_default());
                Err(RegistryError::Unauthorized(
                    registry.to_string(),
                    format!(
                        "the token service {realm} refused the identity token (HTTP {code}){msg}"
                    ),
                ))
            }
            Err(ureq::Error::Transport(t)) => Err(RegistryError::Transport {
                url: realm.to_string(),
                message: t.to_string(),
            }),
        }
    }

    /// Fetches a bearer token for `scopes` (or none, for login).
    fn fetch_token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        creds: Option<&(String, String)>,
    ) -> Result<(String, Duration), RegistryError> {
        let agent = self.agent(registry)?;
        let mut req = agent.get(realm);
        if let Some(s) = service {
            req = req.query("service", s);
        }
        for s in scopes {
            req = req.query("scope", s);
        }
        if let Some((u, p)) = creds {
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            req = req.set("Authorization", &format!("Basic {b}"));
        }
        debug!(realm, ?scopes, "fetching a registry token");
        let mut last = String::new();
        for attempt in 0..=self.inner.opts.max_retries {
            match req.clone().call() {
                Ok(resp) => {
                    let body = read_capped(resp.into_reader(), 1 << 20, realm)?;
                    return parse_token(realm, &body);
                }
                Err(ureq::Error::Status(code @ (401 | 403), resp)) => {
                    let msg = error_message(&resp.into_string().unwrap_or_default());
                    let why = if creds.is_some() {
                        format!(
                            "the token service {realm} refused the credentials (HTTP {code}){msg}"
                        )
                    } else {
                        format!("the token service {realm} wants credentials (HTTP {code}){msg}: use `berth login {registry}`")
                    };
                    return Err(RegistryError::Unauthorized(registry.to_string(), why));
                }
                Err(ureq::Error::Status(code, resp)) if code == 429 || code >= 500 => {
                    last = format!(
                        "HTTP {code}{}",
                        error_message(&resp.into_string().unwrap_or_default())
                    );
                }
                Err(ureq::Error::Status(code, resp)) => {
                    return Err(RegistryError::Http {
                        url: realm.to_string(),
                        status: code,
                        message: error_message(&resp.into_string().unwrap_or_default()),
                    })
                }
                Err(ureq::Error::Transport(t)) => last = t.to_string(),
            }
            if attempt < self.inner.opts.max_retries {
                std::thread::sleep(backoff(attempt));
            }
        }
        Err(RegistryError::Transport {
            url: realm.to_string(),
            message: last,
        })
    }

    /// The Authorization header for `registry` and `scopes`, if the registry
    /// is known to want one.
    fn authorization(
        &self,
        registry: &str,
        scopes: &[String],
    ) -> Result<Option<String>, RegistryError> {
        if let Some(Credentials::RegistryToken(t)) = &self.inner.opts.credentials {
            return Ok(Some(format!("Bearer {t}")));
        }
        let mode = self
            .inner
            .modes
            .lock()
            .expect("modes")
            .get(registry)
            .cloned();
        match mode {
            None => Ok(None),
            Some(AuthMode::Basic) => Ok(self.credentials(registry)?.map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            })),
            Some(AuthMode::Bearer { realm, service }) => {
                let key = (registry.to_string(), scopes.join(" "));
                if let Some((t, exp)) = self.inner.tokens.lock().expect("tokens").get(&key) {
                    if *exp > Instant::now() {
                        return Ok(Some(format!("Bearer {t}")));
                    }
                }
                let (tok, ttl) = match &self.inner.opts.credentials {
                    Some(Credentials::IdentityToken(rt)) => {
                        self.fetch_oauth_token(registry, &realm, service.as_deref(), scopes, rt)?
                    }
                    _ => {
                        let creds = self.credentials(registry)?;
                        self.fetch_token(
                            registry,
                            &realm,
                            service.as_deref(),
                            scopes,
                            creds.as_ref(),
                        )?
                    }
                };
                // Renew a little early.
                let exp = Instant::now() + ttl.saturating_sub(Duration::from_secs(5));
                self.inner
                    .tokens
                    .lock()
                    .expect("tokens")
                    .insert(key, (tok.clone(), exp));
                Ok(Some(format!("Bearer {tok}")))
            }
        }
    }

    /// Sends one request with auth, retries and redirects. Returns the
    /// response for any status below 400; 4xx/5xx become errors.
    fn send(
        &self,
        registry: &str,
        scopes: &[String],
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<ureq::Response, RegistryError> {
        let agent = self.agent(registry)?;
        let mut authed_once = false;
        let mut attempt = 0;
        let mut url = url.to_string();
        let origin_host = host_part(&url).to_string();
        let mut redirects = 0;
        loop {
            let same_host = host_part(&url) == origin_host;
            let mut req = agent.request(method, &url);
            for (k, v) in headers {
                req = req.set(k, v);
            }
            if same_host {
                if let Some(a) = self.authorization(registry, scopes)? {
                    req = req.set("Authorization", &a);
                }
            }
            debug!(method, url = %url, "registry request");
            let res = match &body {
                Body::None => req.call(),
                Body::Bytes(b) => req.send_bytes(b),
            };
            let retry_reason = match res {
                Ok(resp) if (300..400).contains(&resp.status()) && resp.status() != 304 => {
                    let Some(loc) = resp.header("Location").map(str::to_string) else {
                        return Ok(resp);
                    };
                    redirects += 1;
                    if redirects > 10 {
                        return Err(RegistryError::InvalidResponse(
                            url,
                            "too many redirects".into(),
                        ));
                    }
                    url = resolve_url(&url, &loc);
                    continue;
                }
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(401, resp)) if same_host && !authed_once => {
                    authed_once = true;
                    let ch = resp.header("WWW-Authenticate").and_then(challenge::parse);
                    let mode = match ch {
                        Some(Challenge::Basic) => AuthMode::Basic,
                        Some(Challenge::Bearer { realm, service, .. }) => AuthMode::Bearer { realm, service },
                        None => {
                            return Err(RegistryError::Unauthorized(
                                registry.to_string(),
                                "the registry asked for an authentication scheme berth does not support".into(),
                            ))
                        }
                    };
                    if matches!(mode, AuthMode::Basic) && self.credentials(registry)?.is_none() {
                        let why = match &self.inner.opts.credentials {
                            Some(Credentials::IdentityToken(_) | Credentials::RegistryToken(_)) => "the registry wants basic auth, which a token cannot give: pass a user name and password".to_string(),
                            _ => format!("credentials needed: use `berth login {registry}`"),
                        };
                        return Err(RegistryError::Unauthorized(registry.to_string(), why));
                    }
                    self.inner
                        .modes
                        .lock()
                        .expect("modes")
                        .insert(registry.to_string(), mode);
                    continue;
                }
                Err(ureq::Error::Status(401, resp)) => {
                    let msg = error_message(&resp.into_string().unwrap_or_default());
                    let hint = if self.inner.opts.credentials.is_some() {
                        "the credentials given were refused"
                    } else if self.has_credentials(registry)? {
                        "the stored credentials were refused"
                    } else {
                        "no credentials stored: use `berth login`"
                    };
                    return Err(RegistryError::Unauthorized(
                        registry.to_string(),
                        format!("{hint}{msg}"),
                    ));
                }
                Err(ureq::Error::Status(403, resp)) => {
                    return Err(RegistryError::Denied(
                        url,
                        error_message(&resp.into_string().unwrap_or_default()),
                    ))
                }
                Err(ureq::Error::Status(404, resp)) => {
                    return Err(RegistryError::NotFound(
                        url,
                        error_message(&resp.into_string().unwrap_or_default()),
                    ))
                }
                Err(ureq::Error::Status(code, resp)) if code == 429 || code >= 500 => {
                    format!(
                        "HTTP {code}{}",
                        error_message(&resp.into_string().unwrap_or_default())
                    )
                }
                Err(ureq::Error::Status(code, resp)) => {
                    return Err(RegistryError::Http {
                        url,
                        status: code,
                        message: error_message(&resp.into_string().unwrap_or_default()),
                    })
                }
                Err(ureq::Error::Transport(t)) => t.to_string(),
            };
            if attempt >= self.inner.opts.max_retries {
                return Err(RegistryError::Transport {
                    url,
                    message: format!("{retry_reason} (after {} retries)", attempt),
                });
            }
            debug!(url = %url, reason = %retry_reason, attempt, "retrying");
            std::thread::sleep(backoff(attempt));
            attempt += 1;
        }
    }

    /// Checks credentials against the registry, then stores them.
    pub fn login(&self, registry: &str, user: &str, password: &str) -> Result<(), RegistryError> {
        let url = self.base(registry);
        let agent = self.agent(registry)?;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let probe = |auth: Option<&str>| -> Result<Result<(), Refusal>, RegistryError> {
            let mut req = agent.get(&url);
            if let Some(a) = auth {
                req = req.set("Authorization", a);
            }
            match req.call() {
                Ok(_) => Ok(Ok(())),
                Err(ureq::Error::Status(code, resp)) => {
                    let ch = resp.header("WWW-Authenticate").and_then(challenge::parse);
                    Ok(Err((
                        code,
                        ch,
                        error_message(&resp.into_string().unwrap_or_default()),
                    )))
                }
                Err(ureq::Error::Transport(t)) => Err(RegistryError::Transport {
                    url: url.clone(),
                    message: t.to_string(),
                }),
            }
        };
        match probe(None)? {
            Ok(()) => {}
            Err((401, Some(Challenge::Basic), _)) => match probe(Some(&basic))? {
                Ok(()) => {}
                Err((code, _, msg)) => {
                    return Err(RegistryError::Unauthorized(
                        registry.to_string(),
                        format!("invalid username or password (HTTP {code}){msg}"),
                    ))
                }
            },
            Err((401, Some(Challenge::Bearer { realm, service, .. }), _)) => {
                let creds = (user.to_string(), password.to_string());
                let (tok, _) =
                    self.fetch_token(registry, &realm, service.as_deref(), &[], Some(&creds))?;
                if let Err((code, _, msg)) = probe(Some(&format!("Bearer {tok}")))? {
                    return Err(RegistryError::Unauthorized(
                        registry.to_string(),
                        format!("the token was refused (HTTP {code}){msg}"),
                    ));
                }
            }
            Err((code, _, msg)) => {
                return Err(RegistryError::Http {
                    url,
                    status: code,
                    message: msg,
                })
            }
        }
        let mut f = authfile::AuthFile::load(&self.inner.auth_path)?;
        f.store(registry, user, password)?;
        f.save()?;
        // Forget what was learned with other credentials.
        self.inner
            .tokens
            .lock()
            .expect("tokens")
            .retain(|(r, _), _| r != registry);
        Ok(())
    }

    /// Removes stored credentials; false when there were none.
    pub fn logout(&self, registry: &str) -> Result<bool, RegistryError> {
        let mut f = authfile::AuthFile::load(&self.inner.auth_path)?;
        if !f.erase(registry)? {
            return Ok(false);
        }
        f.save()?;
        Ok(true)
    }
}

/// A refused `/v2/` probe: status, challenge, registry message.
type Refusal = (u16, Option<Challenge>, String);

fn host_part(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split('/').next().unwrap_or(rest)
}

/// Resolves a Location header against the request URL.
fn resolve_url(base: &str, loc: &str) -> String {
    if loc.contains("://") {
        return loc.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    let host = rest.split('/').next().unwrap_or(rest);
    if loc.starts_with('/') {
        format!("{scheme}://{host}{loc}")
    } else {
        let dir = match base.rfind('/') {
            Some(i) => &base[..=i],
            None => base,
        };
        format!("{dir}{loc}")
    }
}

impl Repository {
    /// The repository's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The registry.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    fn url(&self, tail: &str) -> String {
        format!("{}{}/{tail}", self.client.base(&self.registry), self.name)
    }

    fn pull_scope(&self) -> Vec<String> {
        vec![format!("repository:{}:pull", self.name)]
    }

    fn push_scope(&self) -> Vec<String> {
        vec![format!("repository:{}:pull,push", self.name)]
    }

    fn send(
        &self,
        scopes: &[String],
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<ureq::Response, RegistryError> {
        self.client
            .send(&self.registry, scopes, method, url, headers, body)
    }

    /// HEADs a manifest and returns its descriptor.
    pub fn resolve(&self, reference: &str) -> Result<Descriptor, RegistryError> {
        let url = self.url(&format!("manifests/{reference}"));
        let resp = self.send(
            &self.pull_scope(),
            "HEAD",
            &url,
            &[("Accept", MANIFEST_ACCEPT)],
            Body::None,
        )?;
        let media_type = resp.content_type().to_string();
        let size = resp.header("Content-Length").and_then(|s| s.parse().ok());
        let digest = resp
            .header("Docker-Content-Digest")
            .and_then(|d| d.parse::<Digest>().ok());
        match (digest, size) {
            (Some(digest), Some(size)) => Ok(Descriptor {
                media_type,
                digest,
                size,
            }),
            _ => {
                let (b, mt, d) = self.get_manifest(reference)?;
                Ok(Descriptor {
                    media_type: mt,
                    digest: d,
                    size: b.len() as u64,
                })
            }
        }
    }

    /// GETs a manifest: its bytes, media type and digest (verified when the
    /// reference is a digest).
    pub fn get_manifest(
        &self,
        reference: &str,
    ) -> Result<(Vec<u8>, String, Digest), RegistryError> {
        let url = self.url(&format!("manifests/{reference}"));
        let max = self.client.inner.opts.max_manifest_size;
        let resp = self.send(
            &self.pull_scope(),
            "GET",
            &url,
            &[("Accept", MANIFEST_ACCEPT)],
            Body::None,
        )?;
        if let Some(len) = resp
            .header("Content-Length")
            .and_then(|s| s.parse::<u64>().ok())
        {
            if len > max {
                return Err(RegistryError::TooLarge(url, max));
            }
        }
        let media_type = resp.content_type().to_string();
        let body = read_capped(resp.into_reader(), max, &url)?;
        let actual = Digest::sha256_of(&body);
        if let Ok(expected) = reference.parse::<Digest>() {
            let mut h = Hasher::new(expected.algorithm());
            h.update(&body);
            let got = h.finish();
            if got != expected {
                return Err(RegistryError::DigestMismatch {
                    what: url,
                    expected,
                    actual: got,
                });
            }
            return Ok((body, media_type, expected));
        }
        Ok((body, media_type, actual))
    }

    /// GETs a small blob whole, capped and verified.
    pub fn get_blob_bytes(&self, digest: &Digest, max: u64) -> Result<Vec<u8>, RegistryError> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.send(&self.pull_scope(), "GET", &url, &[], Body::None)?;
        if let Some(len) = resp
            .header("Content-Length")
            .and_then(|s| s.parse::<u64>().ok())
        {
            if len > max {
                return Err(RegistryError::TooLarge(url, max));
            }
        }
        let body = read_capped(resp.into_reader(), max, &url)?;
        let mut h = Hasher::new(digest.algorithm());
        h.update(&body);
        let got = h.finish();
        if &got != digest {
            return Err(RegistryError::DigestMismatch {
                what: url,
                expected: digest.clone(),
                actual: got,
            });
        }
        Ok(body)
    }

    /// Opens a blob for streaming from `offset`; see [`BlobReader`].
    pub fn open_blob(
        &self,
        digest: &Digest,
        size: Option<u64>,
        offset: u64,
    ) -> Result<BlobReader, RegistryError> {
        BlobReader::open(self.clone(), digest.clone(), size, offset)
    }

    /// One GET of a blob from `offset` (with Range when above 0). Returns the
    /// body reader and whether the server honoured the range.
    pub(crate) fn get_blob_from(
        &self,
        digest: &Digest,
        offset: u64,
    ) -> Result<(Box<dyn Read + Send + Sync>, bool), RegistryError> {
        let url = self.url(&format!("blobs/{digest}"));
        let range = format!("bytes={offset}-");
        let headers: Vec<(&str, &str)> = if offset > 0 {
            vec![("Range", &range)]
        } else {
            vec![]
        };
        let resp = self.send(&self.pull_scope(), "GET", &url, &headers, Body::None)?;
        let ranged = resp.status() == 206;
        Ok((resp.into_reader(), ranged))
    }

    pub(crate) fn max_retries(&self) -> u32 {
        self.client.inner.opts.max_retries
    }

    /// Whether the registry has the blob, and its size.
    pub fn blob_exists(&self, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        let url = self.url(&format!("blobs/{digest}"));
        match self.send(&self.pull_scope(), "HEAD", &url, &[], Body::None) {
            Ok(resp) => Ok(Some(
                resp.header("Content-Length")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
            )),
            Err(RegistryError::NotFound(..)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Mounts a blob from another repository of the same registry. False
    /// when the registry started an upload instead (which is cancelled).
    pub fn mount_blob(
        &self,
        digest: &Digest,
        from_repository: &str,
    ) -> Result<bool, RegistryError> {
        let url = self.url(&format!(
            "blobs/uploads/?mount={digest}&from={from_repository}"
        ));
        let mut scopes = self.push_scope();
        scopes.push(format!("repository:{from_repository}:pull"));
        let resp = self.send(&scopes, "POST", &url, &[], Body::Bytes(&[]))?;
        if resp.status() == 201 {
            return Ok(true);
        }
        if let Some(loc) = resp.header("Location") {
            let loc = resolve_url(&url, loc);
            let _ = self.send(&scopes, "DELETE", &loc, &[], Body::None);
        }
        Ok(false)
    }

    /// Uploads a blob: POST for a session, then one PUT with the data.
    pub fn push_blob(
        &self,
        digest: &Digest,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<(), RegistryError> {
        let url = self.url("blobs/uploads/");
        let scopes = self.push_scope();
        let resp = self.send(&scopes, "POST", &url, &[], Body::Bytes(&[]))?;
        let loc = resp
            .header("Location")
            .map(|l| resolve_url(&url, l))
            .ok_or_else(|| {
                RegistryError::InvalidResponse(url.clone(), "no Location for the upload".into())
            })?;
        let mut buf = Vec::with_capacity(size.min(64 << 20) as usize);
        data.read_to_end(&mut buf)
            .map_err(|source| RegistryError::Io {
                context: format!("reading blob {digest} to push"),
                source,
            })?;
        if buf.len() as u64 != size {
            return Err(RegistryError::SizeMismatch(
                format!("blob {digest}"),
                buf.len() as u64,
                size,
            ));
        }
        let sep = if loc.contains('?') { '&' } else { '?' };
        let put = format!("{loc}{sep}digest={digest}");
        let resp = self.send(
            &scopes,
            "PUT",
            &put,
            &[("Content-Type", "application/octet-stream")],
            Body::Bytes(&buf),
        )?;
        if resp.status() != 201 {
            return Err(RegistryError::InvalidResponse(
                put,
                format!("HTTP {} instead of 201", resp.status()),
            ));
        }
        Ok(())
    }

    /// Uploads a manifest under a tag or digest; returns its digest.
    pub fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<Digest, RegistryError> {
        let url = self.url(&format!("manifests/{reference}"));
        let resp = self.send(
            &self.push_scope(),
            "PUT",
            &url,
            &[("Content-Type", media_type)],
            Body::Bytes(body),
        )?;
        let computed = Digest::sha256_of(body);
        if let Some(d) = resp
            .header("Docker-Content-Digest")
            .and_then(|d| d.parse::<Digest>().ok())
        {
            if d != computed {
                return Err(RegistryError::DigestMismatch {
                    what: url,
                    expected: computed,
                    actual: d,
                });
            }
        }
        Ok(computed)
    }

    /// The repository's tags.
    pub fn tags(&self) -> Result<Vec<String>, RegistryError> {
        let url = self.url("tags/list");
        let resp = self.send(&self.pull_scope(), "GET", &url, &[], Body::None)?;
        let body = read_capped(resp.into_reader(), 16 << 20, &url)?;
        #[derive(serde::Deserialize)]
        struct T {
            tags: Option<Vec<String>>,
        }
        let t: T = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::InvalidResponse(url, e.to_string()))?;
        Ok(t.tags.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(10), Duration::from_millis(5000));
    }

    #[test]
    fn loopback_and_schemes() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
        assert!(!is_loopback("registry.example"));
        let c = Client::new(RegistryOptions {
            insecure: vec!["reg.lan:5000".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.base("127.0.0.1:5000"), "http://127.0.0.1:5000/v2/");
        assert_eq!(c.base("reg.lan:5000"), "http://reg.lan:5000/v2/");
        assert_eq!(c.base("quay.io"), "https://quay.io/v2/");
        assert_eq!(c.base("docker.io"), "https://registry-1.docker.io/v2/");
    }

    #[test]
    fn loopback_with_certs_dir_entry_is_https() {
        let certs = tempfile::tempdir().unwrap();
        std::fs::create_dir(certs.path().join("127.0.0.1:5000")).unwrap();
        // A file, not a dir, is no entry.
        std::fs::write(certs.path().join("localhost:5001"), b"").unwrap();
        let c = Client::new(RegistryOptions {
            certs_dirs: vec![PathBuf::from("/nonexistent"), certs.path().to_path_buf()],
            insecure: vec!["127.0.0.1:5002".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.base("127.0.0.1:5000"), "https://127.0.0.1:5000/v2/");
        assert_eq!(c.base("127.0.0.1:5003"), "http://127.0.0.1:5003/v2/");
        assert_eq!(c.base("localhost:5001"), "http://localhost:5001/v2/");
        // insecure still means plain HTTP
        std::fs::create_dir(certs.path().join("127.0.0.1:5002")).unwrap();
        assert_eq!(c.base("127.0.0.1:5002"), "http://127.0.0.1:5002/v2/");
    }

    #[test]
    fn urls_resolve() {
        assert_eq!(
            resolve_url(
                "http://h:1/v2/a/blobs/uploads/",
                "/v2/a/blobs/uploads/x?s=1"
            ),
            "http://h:1/v2/a/blobs/uploads/x?s=1"
        );
        assert_eq!(
            resolve_url("http://h/v2/a", "https://cdn/x"),
            "https://cdn/x"
        );
        assert_eq!(host_part("https://cdn.example/x/y"), "cdn.example");
    }

    #[test]
    fn registry_error_json_is_shown() {
        assert_eq!(
            error_message(
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
            ),
            ": MANIFEST_UNKNOWN: manifest unknown"
        );
        assert_eq!(error_message(""), "");
    }
}
