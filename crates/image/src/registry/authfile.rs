//! Registry credentials in a docker `config.json`-compatible file:
//! `{"auths": {"HOST[:PORT]": {"auth": base64("user:password")}}}`.
//! Keys berth does not know are kept as they were.

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

    /// The user and password stored for `registry`.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
