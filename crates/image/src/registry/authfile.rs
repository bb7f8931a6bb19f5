//! Registry credentials in a docker `config.json`-compatible file:
//! `{"auths": {"HOST[:PORT]": {"auth": base64("user:password")}}}`.
//! Keys berth does not know are kept as they were.
//!
//! Credential helpers are used as docker uses them: `credHelpers` names a
//! helper per registry, `credsStore` one for every registry, and either wins
//! over `auths`. A helper `NAME` is the program `docker-credential-NAME` in
//! `$PATH`, run as `docker-credential-NAME get` with the server on stdin; it
//! prints `{"Username": …, "Secret": …}`, or fails with "credentials not
//! found". A `credsStore` whose program is not installed is skipped with a
//! warning (a config.json copied from a desktop often names one), so that
//! `auths` still works; a missing `credHelpers` program is an error.
//! `login` stores through the helper (`store`, a JSON object on stdin) when
//! one applies, and `logout` erases through it (`erase`) and from `auths`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::RegistryError;

/// An auth file, loaded.
#[derive(Debug, Clone)]
pub struct AuthFile {
    path: PathBuf,
    doc: Map<String, Value>,
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> RegistryError {
    move |source| RegistryError::Io {
        context: what,
        source,
    }
}

/// The keys an auth file may use for a registry: the bare host, with a
/// scheme, and docker's historic key for Docker Hub.
fn keys_for(registry: &str) -> Vec<String> {
    let mut v = vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ];
    if registry == "docker.io" {
        v.push("https://index.docker.io/v1/".to_string());
        v.push("index.docker.io".to_string());
    }
    v
}

impl AuthFile {
    /// Where credentials live: `$REGISTRY_AUTH_FILE`, else
    /// `$XDG_RUNTIME_DIR/containers/auth.json` (as podman), else
    /// `~/.docker/config.json`.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
            return PathBuf::from(p);
        }
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
            return Path::new(&d).join("containers/auth.json");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
        Path::new(&home).join(".docker/config.json")
    }

    /// Loads `path`; a missing file is an empty one.
    pub fn load(path: &Path) -> Result<AuthFile, RegistryError> {
        let doc = match std::fs::read(path) {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Map::new(),
            Ok(b) => match serde_json::from_slice::<Value>(&b) {
                Ok(Value::Object(m)) => m,
                Ok(_) => {
                    return Err(RegistryError::AuthFile(
                        path.display().to_string(),
                        "not a JSON object".into(),
                    ))
                }
                Err(e) => {
                    return Err(RegistryError::AuthFile(
                        path.display().to_string(),
                        e.to_string(),
                    ))
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        };
        Ok(AuthFile {
            path: path.to_path_buf(),
            doc,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The user and password for `registry`: from its credential helper,
    /// else from `auths`. An error names a helper that failed.
    pub fn credentials(&self, registry: &str) -> Result<Option<(String, String)>, RegistryError> {
        if let Some((name, optional)) = self.helper_for(registry) {
            let found = helper_get(&self.path, &name, registry, optional)?;
            // A per-registry helper is the only source; credsStore falls
            // back to auths when it has nothing.
            if found.is_some() || !optional {
                return Ok(found);
            }
        }
        Ok(self.get(registry))
    }

    /// The user and password stored for `registry` in `auths`.
    pub fn get(&self, registry: &str) -> Option<(String, String)> {
        let auths = self.doc.get("auths")?.as_object()?;
        for k in keys_for(registry) {
            let Some(entry) = auths.get(&k).and_then(Value::as_object) else {
                continue;
            };
            if let Some(a) = entry.get("auth").and_then(Value::as_str) {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(a.trim())
                    .ok()?;
                let s = String::from_utf8(raw).ok()?;
                let (u, p) = s.split_once(':')?;
                return Some((u.to_string(), p.to_string()));
            }
            if let (Some(u), Some(p)) = (
                entry.get("username").and_then(Value::as_str),
                entry.get("password").and_then(Value::as_str),
            ) {
                return Some((u.to_string(), p.to_string()));
            }
        }
        None
    }

    /// The helper that keeps `registry`'s credentials, and whether it is
    /// only the general `credsStore` (skipped when not installed).
    fn helper_for(&self, registry: &str) -> Option<(String, bool)> {
        let per_registry = self
            .doc
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|m| keys_for(registry).iter().find_map(|k| m.get(k)))
            .and_then(Value::as_str);
        if let Some(n) = per_registry {
            return Some((n.to_string(), false));
        }
        self.doc
            .get("credsStore")
            .and_then(Value::as_str)
            .map(|n| (n.to_string(), true))
    }

    /// Stores credentials for `registry` where `login` should: in its
    /// credential helper when one applies (as docker), else in `auths`.
    /// The caller saves the file.
    pub fn store(&mut self, registry: &str, user: &str, pass: &str) -> Result<(), RegistryError> {
        if let Some((name, optional)) = self.helper_for(registry) {
            let input = serde_json::json!({
                "ServerURL": helper_server(registry),
                "Username": user,
                "Secret": pass,
            })
            .to_string();
            if let Some(out) = helper_run(
                &self.path,
                &name,
                "store",
                registry,
                input.as_bytes(),
                optional,
            )? {
                return helper_ok(&self.path, &name, registry, &out);
            }
        }
        self.set(registry, user, pass);
        Ok(())
    }

    /// Forgets `registry` in its credential helper (if one applies) and in
    /// `auths`; false when neither had anything. The caller saves the file.
    pub fn erase(&mut self, registry: &str) -> Result<bool, RegistryError> {
        let mut erased = false;
        if let Some((name, optional)) = self.helper_for(registry) {
            let server = helper_server(registry);
            if let Some(out) = helper_run(
                &self.path,
                &name,
                "erase",
                registry,
                server.as_bytes(),
                optional,
            )? {
                let not_found = String::from_utf8_lossy(&out.stdout)
                    .contains("credentials not found")
                    || String::from_utf8_lossy(&out.stderr).contains("credentials not found");
                if !not_found {
                    helper_ok(&self.path, &name, registry, &out)?;
                    erased = true;
                }
            }
        }
        Ok(self.remove(registry) || erased)
    }

    /// Stores credentials for `registry`.
    pub fn set(&mut self, registry: &str, user: &str, pass: &str) {
        let auths = self
            .doc
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        if let Some(m) = auths.as_object_mut() {
            let mut e = Map::new();
            e.insert("auth".into(), Value::String(auth));
            m.insert(registry.to_string(), Value::Object(e));
        }
    }

    /// Forgets `registry`; false when nothing was stored.
    pub fn remove(&mut self, registry: &str) -> bool {
        let Some(auths) = self.doc.get_mut("auths").and_then(Value::as_object_mut) else {
            return false;
        };
        let mut removed = false;
        for k in keys_for(registry) {
            removed |= auths.remove(&k).is_some();
        }
        removed
    }

    /// Writes the file atomically with mode 0600.
    pub fn save(&self) -> Result<(), RegistryError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            self.path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("auth.json"),
            std::process::id()
        ));
        let body = serde_json::to_vec_pretty(&Value::Object(self.doc.clone()))
            .map_err(|e| RegistryError::AuthFile(self.path.display().to_string(), e.to_string()))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(format!("creating {}", tmp.display())))?;
        let r = f
            .write_all(&body)
            .and_then(|_| f.write_all(b"\n"))
            .and_then(|_| f.sync_all())
            .and_then(|_| std::fs::rename(&tmp, &self.path));
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err(format!("writing {}", self.path.display()))(e));
        }
        Ok(())
    }
}

/// The server name a helper is asked about: docker's historic URL for
/// Docker Hub, the host otherwise.
fn helper_server(registry: &str) -> &str {
    if registry == "docker.io" {
        "https://index.docker.io/v1/"
    } else {
        registry
    }
}

/// Runs `docker-credential-NAME ACTION` with `input` on stdin; returns its
/// stdout, stderr and success, or None when the program is not installed
/// and `optional`.
fn helper_run(
    file: &Path,
    name: &str,
    action: &str,
    registry: &str,
    input: &[u8],
    optional: bool,
) -> Result<Option<std::process::Output>, RegistryError> {
    let program = format!("docker-credential-{name}");
    let child = std::process::Command::new(&program)
        .arg(action)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && optional => {
            tracing::warn!(helper = %program, "credsStore names a helper that is not installed; using auths");
            return Ok(None);
        }
        Err(e) => return Err(helper_err(file, name, registry, e.to_string())),
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its exit status.
        let _ = stdin.write_all(input);
    }
    child
        .wait_with_output()
        .map(Some)
        .map_err(|e| helper_err(file, name, registry, e.to_string()))
}

fn helper_err(file: &Path, name: &str, registry: &str, why: String) -> RegistryError {
    RegistryError::AuthFile(
        file.display().to_string(),
        format!("credential helper docker-credential-{name} for {registry}: {why}"),
    )
}

/// Runs `docker-credential-NAME get` for `registry`. `optional`: a helper
/// that is not installed is skipped (None) instead of being an error.
fn helper_get(
    file: &Path,
    name: &str,
    registry: &str,
    optional: bool,
) -> Result<Option<(String, String)>, RegistryError> {
    let server = helper_server(registry);
    let Some(out) = helper_run(file, name, "get", registry, server.as_bytes(), optional)? else {
        return Ok(None);
    };
    parse_helper_output(&out.stdout, &out.stderr, out.status.success())
        .map_err(|why| helper_err(file, name, registry, why))
}

/// A failed `store`/`erase`: the helper's message.
fn helper_ok(
    file: &Path,
    name: &str,
    registry: &str,
    out: &std::process::Output,
) -> Result<(), RegistryError> {
    if out.status.success() {
        return Ok(());
    }
    let msg = String::from_utf8_lossy(if out.stdout.is_empty() {
        &out.stderr
    } else {
        &out.stdout
    })
    .trim()
    .to_string();
    Err(helper_err(
        file,
        name,
        registry,
        if msg.is_empty() { "failed".into() } else { msg },
    ))
}

/// A helper's answer: credentials, None for "not found", or why it failed.
fn parse_helper_output(
    stdout: &[u8],
    stderr: &[u8],
    success: bool,
) -> Result<Option<(String, String)>, String> {
    if !success {
        let msg = String::from_utf8_lossy(if stdout.is_empty() { stderr } else { stdout });
        let msg = msg.trim();
        if msg.contains("credentials not found") {
            return Ok(None);
        }
        return Err(if msg.is_empty() {
            "failed".into()
        } else {
            msg.to_string()
        });
    }
    let v: Value = serde_json::from_slice(stdout).map_err(|e| format!("bad answer: {e}"))?;
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (user, secret) = (field("Username"), field("Secret"));
    if user == "<token>" {
        return Err("identity tokens (Username \"<token>\") are not supported".into());
    }
    if user.is_empty() && secret.is_empty() {
        return Ok(None);
    }
    Ok(Some((user, secret)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn helper_answers() {
        let ok = br#"{"ServerURL":"r","Username":"u","Secret":"p"}"#;
        assert_eq!(
            parse_helper_output(ok, b"", true),
            Ok(Some(("u".into(), "p".into())))
        );
        assert_eq!(
            parse_helper_output(b"credentials not found in native keychain\n", b"", false),
            Ok(None)
        );
        assert_eq!(
            parse_helper_output(b"", b"boom", false),
            Err("boom".to_string())
        );
        assert!(parse_helper_output(b"{", b"", true).is_err());
        let tok = br#"{"Username":"<token>","Secret":"refresh"}"#;
        assert!(parse_helper_output(tok, b"", true)
            .unwrap_err()
            .contains("identity"));
        assert_eq!(helper_server("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(helper_server("quay.io"), "quay.io");
    }

    /// A credsStore whose program is not installed falls back to auths; a
    /// missing credHelpers program is an error naming it.
    #[test]
    fn missing_helpers() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"credsStore":"berth-test-none","credHelpers":{"b.example":"berth-test-none"},
                "auths":{"a.example":{"auth":"dTpw"}}}"#,
        )
        .unwrap();
        let f = AuthFile::load(&p).unwrap();
        assert_eq!(
            f.credentials("a.example").unwrap(),
            Some(("u".into(), "p".into()))
        );
        let e = f.credentials("b.example").unwrap_err().to_string();
        assert!(e.contains("docker-credential-berth-test-none"), "{e}");
    }

    #[test]
    fn round_trip_keeps_unknown_keys_and_is_private() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/auth.json");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            r#"{"credsStore":"x","auths":{"https://index.docker.io/v1/":{"auth":"dTpw"}}}"#,
        )
        .unwrap();
        let mut a = AuthFile::load(&p).unwrap();
        assert_eq!(a.get("docker.io"), Some(("u".into(), "p".into())));
        a.set("127.0.0.1:5000", "alice", "s3:cret");
        a.save().unwrap();
        let b = AuthFile::load(&p).unwrap();
        assert_eq!(
            b.get("127.0.0.1:5000"),
            Some(("alice".into(), "s3:cret".into()))
        );
        let raw: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(raw["credsStore"], "x");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let mut c = b.clone();
        assert!(c.remove("127.0.0.1:5000"));
        assert!(!c.remove("127.0.0.1:5000"));
        assert!(AuthFile::load(&d.path().join("none.json"))
            .unwrap()
            .get("x")
            .is_none());
        std::fs::write(&p, "[1]").unwrap();
        assert!(AuthFile::load(&p)
            .unwrap_err()
            .to_string()
            .contains("auth.json"));
    }
}
