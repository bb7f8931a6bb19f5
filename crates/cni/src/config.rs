//! Network configuration lists (`.conflist`) and single network configurations
//! (`.conf`/`.json`, promoted to a one-plugin list as libcni does), loading a
//! directory of them, and CNI version arithmetic.
//!
//! Invariants: a parsed list has a valid network name (usable in cache file
//! names), a known `cniVersion`, and at least one plugin, each an object with a
//! `type` that is a plain file name (never a path).

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::CniError;

/// The newest CNI spec version this executor implements.
pub const CURRENT_VERSION: &str = "1.1.0";

/// The CNI versions this executor can drive (those a plugin may be asked to speak).
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// A network configuration list: one network, a chain of plugins.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    /// The spec version the whole chain runs at (injected into each plugin).
    pub cni_version: String,
    /// The network's name (injected into each plugin; part of cache keys).
    pub name: String,
    /// `disableCheck`: CHECK is a no-op for this network.
    pub disable_check: bool,
    /// `disableGC`: GC is a no-op for this network.
    pub disable_gc: bool,
    /// The plugin configurations in chain order, as written in the file.
    pub plugins: Vec<Map<String, Value>>,
    /// The list's bytes: the original file for a `.conflist`, the promoted list
    /// for a single `.conf`. These are what the cache keeps.
    pub bytes: Vec<u8>,
}

impl NetworkConfigList {
    /// Parses a configuration list (`.conflist`).
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        parse_list(bytes).map_err(|r| CniError::invalid("network configuration list", r))
    }

    /// Parses a single plugin configuration (`.conf`) and promotes it to a list
    /// of one plugin with the conf's `name` and `cniVersion`.
    pub fn from_single_conf(bytes: &[u8]) -> Result<Self, CniError> {
        promote_conf(bytes).map_err(|r| CniError::invalid("network configuration", r))
    }

    /// Loads a file by its extension: `.conflist` is a list; `.conf` and
    /// `.json` are single configurations (or lists, if they have `plugins`).
    pub fn load(path: &Path) -> Result<Self, CniError> {
        let bytes = std::fs::read(path)
            .map_err(|e| CniError::io(format!("reading CNI config {}", path.display()), e))?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let parsed = match ext {
            "conflist" => parse_list(&bytes),
            "conf" | "json" => {
                let is_list = serde_json::from_slice::<Map<String, Value>>(&bytes)
                    .map(|m| m.contains_key("plugins"))
                    .unwrap_or(false);
                if is_list {
                    parse_list(&bytes)
                } else {
                    promote_conf(&bytes)
                }
            }
            _ => Err(format!(
                "unknown extension {ext:?} (want .conflist, .conf or .json)"
            )),
        };
        parsed.map_err(|r| CniError::invalid(format!("file {}", path.display()), r))
    }

    /// The `type` of each plugin, in chain order.
    pub fn plugin_types(&self) -> Vec<&str> {
        self.plugins
            .iter()
            .map(|p| p.get("type").and_then(Value::as_str).unwrap_or(""))
            .collect()
    }
}

fn is_config_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("conflist" | "conf" | "json")
    )
}

fn config_files(dir: &Path) -> Result<Vec<PathBuf>, CniError> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| CniError::io(format!("reading CNI config dir {}", dir.display()), e))?;
    let mut files = Vec::new();
    for ent in rd {
        let ent =
            ent.map_err(|e| CniError::io(format!("reading CNI config dir {}", dir.display()), e))?;
        let path = ent.path();
        if is_config_file(&path) && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Loads every `.conflist`, `.conf` and `.json` in `dir`, sorted by file name
/// as libcni does. A malformed file is an error naming it.
pub fn load_dir(dir: &Path) -> Result<Vec<NetworkConfigList>, CniError> {
    config_files(dir)?
        .iter()
        .map(|p| NetworkConfigList::load(p))
        .collect()
}

/// Finds the network called `name` in `dir`: the first `.conflist` (by file
/// name) that defines it, else the first `.conf`/`.json`, as libcni does.
pub fn find_network(dir: &Path, name: &str) -> Result<NetworkConfigList, CniError> {
    let files = match config_files(dir) {
        Ok(f) => f,
        Err(CniError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(CniError::NetworkNotFound {
                name: name.to_string(),
                dir: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(e),
    };
    let (lists, singles): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|p| p.extension().and_then(|e| e.to_str()) == Some("conflist"));
    for path in lists.iter().chain(singles.iter()) {
        let net = NetworkConfigList::load(path)?;
        if net.name == name {
            return Ok(net);
        }
    }
    Err(CniError::NetworkNotFound {
        name: name.to_string(),
        dir: dir.to_path_buf(),
    })
}

fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("not a JSON object".to_string()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

fn parse_bool_field(obj: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(format!("field {key:?} must be a boolean, got {other}")),
    }
}

fn parse_name(obj: &Map<String, Value>) -> Result<String, String> {
    match obj.get("name") {
        None => Err("missing field \"name\"".to_string()),
        Some(Value::String(s)) => {
            validate_name("network name", s)?;
            Ok(s.clone())
        }
        Some(other) => Err(format!("field \"name\" must be a string, got {other}")),
    }
}

/// `cniVersion`, raised to the highest usable entry of `cniVersions` (1.1.0).
fn parse_version_fields(obj: &Map<String, Value>) -> Result<String, String> {
    let mut version = match obj.get("cniVersion") {
        None => None,
        Some(Value::String(s)) => {
            parse_version(s).map_err(|e| format!("field \"cniVersion\": {e}"))?;
            Some(s.clone())
        }
        Some(other) => {
            return Err(format!(
                "field \"cniVersion\" must be a string, got {other}"
            ))
        }
    };
    if let Some(vs) = obj.get("cniVersions") {
        let arr = vs
            .as_array()
            .ok_or_else(|| "field \"cniVersions\" must be an array of strings".to_string())?;
        for (i, v) in arr.iter().enumerate() {
            let s = v
                .as_str()
                .ok_or_else(|| format!("field \"cniVersions\"[{i}] must be a string"))?;
            parse_version(s).map_err(|e| format!("field \"cniVersions\"[{i}]: {e}"))?;
            if version_cmp(s, CURRENT_VERSION) == Ordering::Greater {
                continue;
            }
            let higher = match &version {
                None => true,
                Some(cur) => {
                    version_cmp(cur, CURRENT_VERSION) == Ordering::Greater
                        || version_cmp(s, cur) == Ordering::Greater
                }
            };
            if higher {
                version = Some(s.to_string());
            }
        }
    }
    version.ok_or_else(|| "missing field \"cniVersion\"".to_string())
}

fn check_plugin(i: usize, p: &Value) -> Result<Map<String, Value>, String> {
    let obj = p
        .as_object()
        .ok_or_else(|| format!("plugins[{i}] is not an object"))?;
    match obj.get("type") {
        None => Err(format!("plugins[{i}]: missing field \"type\"")),
        Some(Value::String(t)) => {
            validate_plugin_type(t).map_err(|e| format!("plugins[{i}]: {e}"))?;
            Ok(obj.clone())
        }
        Some(other) => Err(format!(
            "plugins[{i}]: field \"type\" must be a string, got {other}"
        )),
    }
}

fn parse_list(bytes: &[u8]) -> Result<NetworkConfigList, String> {
    let obj = parse_object(bytes)?;
    let name = parse_name(&obj)?;
    let cni_version = parse_version_fields(&obj)?;
    let disable_check = parse_bool_field(&obj, "disableCheck")?;
    let disable_gc = parse_bool_field(&obj, "disableGC")?;
    let plugins = match obj.get("plugins") {
        None => return Err("missing field \"plugins\"".to_string()),
        Some(Value::Array(a)) if a.is_empty() => {
            return Err("field \"plugins\" is empty".to_string())
        }
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, p)| check_plugin(i, p))
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(format!("field \"plugins\" must be an array, got {other}")),
    };
    Ok(NetworkConfigList {
        cni_version,
        name,
        disable_check,
        disable_gc,
        plugins,
        bytes: bytes.to_vec(),
    })
}

fn promote_conf(bytes: &[u8]) -> Result<NetworkConfigList, String> {
    let obj = parse_object(bytes)?;
    let name = parse_name(&obj)?;
    let cni_version = parse_version_fields(&obj)?;
    let plugin = check_plugin(0, &Value::Object(obj.clone())).map_err(|e| {
        // A single conf has no plugins array: name the field plainly.
        e.trim_start_matches("plugins[0]: ").to_string()
    })?;
    let list = serde_json::json!({
        "cniVersion": cni_version,
        "name": name,
        "plugins": [Value::Object(plugin.clone())],
    });
    let bytes = serde_json::to_vec(&list).map_err(|e| e.to_string())?;
    Ok(NetworkConfigList {
        cni_version,
        name,
        disable_check: false,
        disable_gc: false,
        plugins: vec![plugin],
        bytes,
    })
}

/// Parses `MAJOR.MINOR.PATCH` (MINOR and PATCH may be left out). The empty
/// version is 0.1.0, the spec's oldest.
pub fn parse_version(v: &str) -> Result<(u64, u64, u64), String> {
    if v.is_empty() {
        return Ok((0, 1, 0));
    }
    let parts: Vec<&str> = v.split('.').collect();
    if parts.len() > 3 {
        return Err(format!("invalid version {v:?}"));
    }
    let mut n = [0u64; 3];
    for (i, p) in parts.iter().enumerate() {
        n[i] = p
            .parse::<u64>()
            .map_err(|_| format!("invalid version {v:?}"))?;
    }
    Ok((n[0], n[1], n[2]))
}

/// Compares two versions; an unparsable one sorts lowest.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let pa = parse_version(a).unwrap_or((0, 0, 0));
    let pb = parse_version(b).unwrap_or((0, 0, 0));
    pa.cmp(&pb)
}

/// Whether `v >= min`.
pub fn version_at_least(v: &str, min: &str) -> bool {
    version_cmp(v, min) != Ordering::Less
}

/// Network names and container IDs: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub(crate) fn validate_name(what: &str, s: &str) -> Result<(), String> {
    let mut chars = s.chars();
    match chars.next() {
        None => return Err(format!("{what} is empty")),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return Err(format!("{what} {s:?} must start with a letter or digit"))
        }
        _ => {}
    }
    if let Some(bad) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!("{what} {s:?} has invalid character {bad:?}"));
    }
    Ok(())
}

/// Interface names: 1..=15 bytes, not `.`/`..`, no `/`, `:` or whitespace.
pub(crate) fn validate_ifname(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("interface name is empty".to_string());
    }
    if s.len() > 15 {
        return Err(format!("interface name {s:?} is longer than 15 bytes"));
    }
    if s == "." || s == ".." {
        return Err(format!("interface name {s:?} is not allowed"));
    }
    if let Some(bad) = s
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "interface name {s:?} has invalid character {bad:?}"
        ));
    }
    Ok(())
}

/// Plugin types are file names looked up in the plugin dirs, never paths.
pub(crate) fn validate_plugin_type(t: &str) -> Result<(), String> {
    if t.is_empty() || t == "." || t == ".." || t.contains('/') || t.contains('\0') {
        return Err(format!("plugin type {t:?} is not a plain file name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{"cniVersion":"1.0.0","name":"net1","disableCheck":true,
        "plugins":[{"type":"bridge","bridge":"cni0"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#;

    #[test]
    fn parses_a_list() {
        let l = NetworkConfigList::parse(LIST.as_bytes()).unwrap();
        assert_eq!(l.name, "net1");
        assert_eq!(l.cni_version, "1.0.0");
        assert!(l.disable_check);
        assert!(!l.disable_gc);
        assert_eq!(l.plugin_types(), vec!["bridge", "portmap"]);
        assert_eq!(l.bytes, LIST.as_bytes());
    }

    #[test]
    fn list_errors_name_the_field() {
        let cases = [
            ("not json", "not valid JSON"),
            ("[]", "not a JSON object"),
            (
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#,
                "missing field \"name\"",
            ),
            (
                r#"{"name":"n","plugins":[{"type":"x"}]}"#,
                "missing field \"cniVersion\"",
            ),
            (
                r#"{"name":"n","cniVersion":"1.x","plugins":[{"type":"x"}]}"#,
                "cniVersion",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0"}"#,
                "missing field \"plugins\"",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[]}"#,
                "\"plugins\" is empty",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[{"bridge":"x"}]}"#,
                "plugins[0]: missing field \"type\"",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[{"type":"x"},{"type":"../sh"}]}"#,
                "plugins[1]",
            ),
            (
                r#"{"name":"a/b","cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#,
                "network name",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","disableCheck":3,"plugins":[{"type":"x"}]}"#,
                "disableCheck",
            ),
        ];
        for (input, want) in cases {
            let err = NetworkConfigList::parse(input.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn cni_versions_picks_the_highest_supported() {
        let l = NetworkConfigList::parse(
            br#"{"name":"n","cniVersion":"0.4.0","cniVersions":["1.0.0","9.0.0","1.1.0"],"plugins":[{"type":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(l.cni_version, "1.1.0");
        let l = NetworkConfigList::parse(
            br#"{"name":"n","cniVersions":["0.3.1","1.0.0"],"plugins":[{"type":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(l.cni_version, "1.0.0");
    }

    #[test]
    fn disable_flags_accept_strings() {
        let l = NetworkConfigList::parse(
            br#"{"name":"n","cniVersion":"1.1.0","disableCheck":"true","disableGC":true,"plugins":[{"type":"x"}]}"#,
        )
        .unwrap();
        assert!(l.disable_check && l.disable_gc);
    }

    #[test]
    fn single_conf_is_promoted() {
        let conf = br#"{"cniVersion":"0.4.0","name":"single","type":"bridge","ipam":{"type":"host-local"}}"#;
        let l = NetworkConfigList::from_single_conf(conf).unwrap();
        assert_eq!(l.name, "single");
        assert_eq!(l.cni_version, "0.4.0");
        assert_eq!(l.plugins.len(), 1);
        assert_eq!(l.plugins[0]["type"], "bridge");
        // The bytes are a list again, so a cached copy parses as a list.
        let again = NetworkConfigList::parse(&l.bytes).unwrap();
        assert_eq!(again.plugins, l.plugins);
        let err = NetworkConfigList::from_single_conf(br#"{"cniVersion":"1.0.0","name":"s"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field \"type\""), "{err}");
    }

    #[test]
    fn load_dir_sorts_and_names_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("20-b.conflist"), LIST.replace("net1", "b")).unwrap();
        std::fs::write(
            dir.path().join("10-a.conf"),
            r#"{"cniVersion":"1.0.0","name":"a","type":"ptp"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("README"), "not a config").unwrap();
        let all = load_dir(dir.path()).unwrap();
        let names: Vec<_> = all.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, vec!["a", "b"]);
        assert_eq!(find_network(dir.path(), "b").unwrap().plugins.len(), 2);
        match find_network(dir.path(), "zzz") {
            Err(CniError::NetworkNotFound { name, .. }) => assert_eq!(name, "zzz"),
            other => panic!("{other:?}"),
        }
        match find_network(&dir.path().join("nope"), "a") {
            Err(CniError::NetworkNotFound { .. }) => {}
            other => panic!("{other:?}"),
        }
        std::fs::write(dir.path().join("30-bad.conflist"), "{").unwrap();
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("30-bad.conflist"), "{err}");
        let err = NetworkConfigList::load(&dir.path().join("README"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("README") && err.contains("extension"), "{err}");
    }

    #[test]
    fn versions_compare() {
        assert!(version_at_least("1.0.0", "0.4.0"));
        assert!(version_at_least("0.4.0", "0.4.0"));
        assert!(!version_at_least("0.3.1", "0.4.0"));
        assert!(!version_at_least("", "0.2.0"));
        assert!(version_at_least("1.1", "1.1.0"));
        assert!(parse_version("1.a.0").is_err());
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("x", "abc-1_2.3").is_ok());
        assert!(validate_name("x", "-abc").is_err());
        assert!(validate_name("x", "a b").is_err());
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("a23456789012345").is_ok());
        assert!(validate_ifname("a234567890123456").is_err());
        assert!(validate_ifname("a/b").is_err());
        assert!(validate_ifname("..").is_err());
    }
}
