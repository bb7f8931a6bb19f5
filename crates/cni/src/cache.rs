//! The attachment cache, in libcni's layout and format so that other CNI
//! tools can read it: one JSON file per attachment at
//! `<cache_dir>/results/<network>-<containerid>-<ifname>`, kind `cniCacheV1`,
//! holding the list's config bytes (base64, as Go encodes `[]byte`), the netns,
//! CNI_ARGS, the capability args and the chain's final result.
//!
//! Invariants: files are written to a dot-named temp file in the same
//! directory, then renamed, so a reader sees a whole entry or none; entries
//! that do not parse or have another kind are skipped when listing.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::CniError;

const KIND: &str = "cniCacheV1";

/// One cached attachment of a container to a network.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAttachment {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    /// The netns path given at ADD (may no longer exist).
    pub netns: String,
    /// CNI_ARGS given at ADD.
    pub args: Vec<(String, String)>,
    /// The capability args given at ADD.
    pub capability_args: Map<String, Value>,
    /// The network config list's bytes at ADD.
    pub config: Vec<u8>,
    /// The chain's final result, as the last plugin printed it.
    pub result: Option<Value>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    kind: String,
    #[serde(rename = "containerId")]
    container_id: String,
    #[serde(with = "b64")]
    config: Vec<u8>,
    #[serde(rename = "ifName")]
    ifname: String,
    #[serde(rename = "networkName")]
    network: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    netns: String,
    #[serde(rename = "cniArgs", default, skip_serializing_if = "Vec::is_empty")]
    args: Vec<(String, String)>,
    #[serde(
        rename = "capabilityArgs",
        default,
        skip_serializing_if = "Map::is_empty"
    )]
    capability_args: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// The file of one attachment.
pub(crate) fn entry_path(
    cache_dir: &Path,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> PathBuf {
    cache_dir
        .join("results")
        .join(format!("{network}-{container_id}-{ifname}"))
}

/// Writes (or replaces) an entry atomically.
pub(crate) fn write(cache_dir: &Path, a: &CachedAttachment) -> Result<(), CniError> {
    let path = entry_path(cache_dir, &a.network, &a.container_id, &a.ifname);
    let dir = path.parent().unwrap_or(cache_dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CniError::io(format!("creating CNI cache dir {}", dir.display()), e))?;
    let wire = Wire {
        kind: KIND.to_string(),
        container_id: a.container_id.clone(),
        config: a.config.clone(),
        ifname: a.ifname.clone(),
        network: a.network.clone(),
        netns: a.netns.clone(),
        args: a.args.clone(),
        capability_args: a.capability_args.clone(),
        result: a.result.clone(),
    };
    let bytes = serde_json::to_vec(&wire).map_err(|e| {
        CniError::io(
            format!("encoding CNI cache entry {}", path.display()),
            std::io::Error::other(e),
        )
    })?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(CniError::io(
            format!("writing CNI cache entry {}", path.display()),
            e,
        ));
    }
    Ok(())
}

fn decode(bytes: &[u8]) -> Option<CachedAttachment> {
    let w: Wire = serde_json::from_slice(bytes).ok()?;
    if w.kind != KIND {
        return None;
    }
    Some(CachedAttachment {
        network: w.network,
        container_id: w.container_id,
        ifname: w.ifname,
        netns: w.netns,
        args: w.args,
        capability_args: w.capability_args,
        config: w.config,
        result: w.result,
    })
}

/// Reads one entry; Ok(None) if there is none.
pub(crate) fn read(
    cache_dir: &Path,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Result<Option<CachedAttachment>, CniError> {
    let path = entry_path(cache_dir, network, container_id, ifname);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CniError::io(
                format!("reading CNI cache entry {}", path.display()),
                e,
            ))
        }
    };
    match decode(&bytes) {
        Some(a) => Ok(Some(a)),
        None => Err(CniError::invalid(
            format!("cache entry {}", path.display()),
            format!("not a {KIND} entry"),
        )),
    }
}

/// Removes an entry; a missing one is fine.
pub(crate) fn remove(
    cache_dir: &Path,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Result<(), CniError> {
    let path = entry_path(cache_dir, network, container_id, ifname);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CniError::io(
            format!("removing CNI cache entry {}", path.display()),
            e,
        )),
    }
}

/// Every valid entry, sorted by file name.
pub(crate) fn list(cache_dir: &Path) -> Result<Vec<CachedAttachment>, CniError> {
    let dir = cache_dir.join("results");
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(CniError::io(
                format!("reading CNI cache dir {}", dir.display()),
                e,
            ))
        }
    };
    let mut paths = Vec::new();
    for ent in rd {
        let ent =
            ent.map_err(|e| CniError::io(format!("reading CNI cache dir {}", dir.display()), e))?;
        if ent.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        paths.push(ent.path());
    }
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        match std::fs::read(&p).ok().and_then(|b| decode(&b)) {
            Some(a) => out.push(a),
            None => tracing::debug!(path = %p.display(), "skipping unreadable CNI cache entry"),
        }
    }
    Ok(out)
}

/// libcni's encoding of config bytes, for tests that compare with it.
#[cfg(test)]
pub(crate) fn encode_config(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> CachedAttachment {
        CachedAttachment {
            network: "net1".into(),
            container_id: "c1".into(),
            ifname: "eth0".into(),
            netns: "/run/netns/x".into(),
            args: vec![("K".into(), "V".into())],
            capability_args: json!({"portMappings": [{"hostPort": 8080}]})
                .as_object()
                .unwrap()
                .clone(),
            config: br#"{"name":"net1"}"#.to_vec(),
            result: Some(json!({"cniVersion": "1.0.0"})),
        }
    }

    #[test]
    fn round_trip_in_libcni_format() {
        let dir = tempfile::tempdir().unwrap();
        let a = sample();
        write(dir.path(), &a).unwrap();
        let path = dir.path().join("results/net1-c1-eth0");
        let on_disk: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(on_disk["kind"], "cniCacheV1");
        assert_eq!(on_disk["containerId"], "c1");
        assert_eq!(on_disk["ifName"], "eth0");
        assert_eq!(on_disk["networkName"], "net1");
        assert_eq!(on_disk["config"], encode_config(br#"{"name":"net1"}"#));
        assert_eq!(on_disk["cniArgs"], json!([["K", "V"]]));
        assert_eq!(
            on_disk["capabilityArgs"]["portMappings"][0]["hostPort"],
            8080
        );
        assert_eq!(
            read(dir.path(), "net1", "c1", "eth0").unwrap(),
            Some(a.clone())
        );
        assert_eq!(list(dir.path()).unwrap(), vec![a]);
        // No temp files are left behind.
        assert_eq!(
            std::fs::read_dir(dir.path().join("results"))
                .unwrap()
                .count(),
            1
        );
        remove(dir.path(), "net1", "c1", "eth0").unwrap();
        remove(dir.path(), "net1", "c1", "eth0").unwrap();
        assert_eq!(read(dir.path(), "net1", "c1", "eth0").unwrap(), None);
    }

    #[test]
    fn list_skips_junk_and_reads_libcni_entries() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
        std::fs::create_dir_all(dir.path().join("results")).unwrap();
        std::fs::write(dir.path().join("results/junk"), "xx").unwrap();
        std::fs::write(
            dir.path().join("results/other-kind"),
            r#"{"kind":"v2","containerId":"a","config":"","ifName":"e","networkName":"n"}"#,
        )
        .unwrap();
        // As libcni writes it, without the optional fields.
        std::fs::write(
            dir.path().join("results/n-a-e"),
            r#"{"kind":"cniCacheV1","containerId":"a","config":"e30=","ifName":"e","networkName":"n"}"#,
        )
        .unwrap();
        let all = list(dir.path()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].config, b"{}");
        assert!(all[0].result.is_none());
        let err = read(dir.path(), "x", "y", "z").unwrap();
        assert!(err.is_none());
        std::fs::write(dir.path().join("results/x-y-z"), "bad").unwrap();
        let err = read(dir.path(), "x", "y", "z").unwrap_err().to_string();
        assert!(err.contains("x-y-z"), "{err}");
    }
}
