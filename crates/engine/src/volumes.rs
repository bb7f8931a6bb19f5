//! Named and anonymous volumes, in docker's layout:
//! `<root>/volumes/<name>/_data` holds the files the container sees and
//! `<root>/volumes/<name>/volume.json` the metadata (schema-versioned:
//! creation time, labels, whether the volume is anonymous).
//!
//! Invariants:
//! - A name always matches docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, so it is a
//!   safe single path component.
//! - A volume exists once its directory exists; the metadata is written
//!   with a temporary file and a rename, and a directory without it (a crash
//!   during create) reads as a volume with default metadata.
//! - Whether a volume is in use is known only to the caller (container
//!   records): [`VolumeStore::remove`] and [`VolumeStore::prune`] take the
//!   names in use.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The metadata file's schema version.
const SCHEMA: u32 = 1;
const META: &str = "volume.json";
const DATA: &str = "_data";

/// A volume operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The name does not follow docker's rule.
    #[error("{0:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path")]
    InvalidName(String),
    /// No such volume.
    #[error("no such volume: {0}")]
    NotFound(String),
    /// An explicit create of an existing name.
    #[error("volume {0} already exists")]
    Exists(String),
    /// A container uses the volume.
    #[error("remove {0}: volume is in use")]
    InUse(String),
    /// The metadata file is not readable.
    #[error("volume {name}: bad metadata: {reason}")]
    BadMeta {
        /// The volume.
        name: String,
        /// Why.
        reason: String,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> VolumeError {
    move |source| VolumeError::Io { context, source }
}

/// What is stored about a volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeMeta {
    /// Schema version.
    pub schema: u32,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Made for `-v /ctr` or an image's `VOLUME`, so `rm -v` removes it.
    #[serde(default)]
    pub anonymous: bool,
}

/// A volume.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Its name.
    pub name: String,
    /// The directory mounted into containers.
    pub mountpoint: PathBuf,
    /// Its metadata.
    pub meta: VolumeMeta,
}

impl Volume {
    /// docker's `volume inspect` document.
    pub fn inspect(&self) -> serde_json::Value {
        serde_json::json!({
            "CreatedAt": self.meta.created_at,
            "Driver": "local",
            "Labels": self.meta.labels,
            "Mountpoint": self.mountpoint,
            "Name": self.name,
            "Options": null,
            "Scope": "local",
            "Anonymous": self.meta.anonymous,
        })
    }
}

/// Whether `name` follows docker's rule for local volume names.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A fresh anonymous volume name: 64 random hex digits, as docker's.
pub fn random_name() -> Result<String, VolumeError> {
    let mut b = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(io("read /dev/urandom".into()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The volumes under one berth root.
#[derive(Debug, Clone)]
pub struct VolumeStore {
    dir: PathBuf,
    /// Directories above `dir` to make (private) first: a namespace's.
    parents: Vec<PathBuf>,
}

impl VolumeStore {
    /// The store of berth root `root` (`<root>/volumes`); nothing is made
    /// until a volume is.
    pub fn new(root: &Path) -> VolumeStore {
        VolumeStore {
            dir: root.join("volumes"),
            parents: Vec::new(),
        }
    }

    /// The volumes of namespace `ns` under berth root `root`
    /// ([`crate::namespace::Namespace::volumes_dir`]): `default`'s are
    /// [`VolumeStore::new`]'s.
    pub fn in_namespace(root: &Path, ns: &crate::namespace::Namespace) -> VolumeStore {
        let dir = ns.volumes_dir(root);
        let parents = if ns.is_default() {
            Vec::new()
        } else {
            let nsdir = dir.parent().expect("namespaces/NS/volumes").to_path_buf();
            vec![nsdir.parent().expect("namespaces").to_path_buf(), nsdir]
        };
        VolumeStore { dir, parents }
    }

    /// The directory holding every volume.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn checked(&self, name: &str) -> Result<PathBuf, VolumeError> {
        if !valid_name(name) {
            return Err(VolumeError::InvalidName(name.to_string()));
        }
        Ok(self.dir.join(name))
    }

    /// Makes volume `name`. With `exclusive` an existing name is an error
    /// (`volume create`); without, the existing volume is returned
    /// (`-v name:/x`). The bool says whether this call made it.
    pub fn create(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        anonymous: bool,
        exclusive: bool,
    ) -> Result<(Volume, bool), VolumeError> {
        let dir = self.checked(name)?;
        // Closed to other users: volumes hold containers' data.
        for d in self.parents.iter().chain([&self.dir]) {
            berth_image::private::private_dir(d, berth_image::private::DIR_MODE)
                .map_err(io(format!("create {}", d.display())))?;
        }
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if exclusive {
                    return Err(VolumeError::Exists(name.to_string()));
                }
                return Ok((self.get(name)?, false));
            }
            Err(e) => return Err(io(format!("create {}", dir.display()))(e)),
        }
        let meta = VolumeMeta {
            schema: SCHEMA,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels,
            anonymous,
        };
        let made = fs::create_dir(dir.join(DATA))
            .map_err(io(format!("create {}", dir.join(DATA).display())))
            .and_then(|_| write_meta(&dir, &meta));
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        tracing::debug!(volume = name, anonymous, "created volume");
        Ok((
            Volume {
                name: name.to_string(),
                mountpoint: dir.join(DATA),
                meta,
            },
            true,
        ))
    }

    /// Volume `name`.
    pub fn get(&self, name: &str) -> Result<Volume, VolumeError> {
        let dir = self.checked(name)?;
        if !dir.is_dir() {
            return Err(VolumeError::NotFound(name.to_string()));
        }
        let meta = match fs::read(dir.join(META)) {
            Ok(b) => {
                let m: VolumeMeta =
                    serde_json::from_slice(&b).map_err(|e| VolumeError::BadMeta {
                        name: name.to_string(),
                        reason: e.to_string(),
                    })?;
                if m.schema != SCHEMA {
                    return Err(VolumeError::BadMeta {
                        name: name.to_string(),
                        reason: format!("schema {} (this berth reads {SCHEMA})", m.schema),
                    });
                }
                m
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => VolumeMeta {
                schema: SCHEMA,
                created_at: String::new(),
                labels: BTreeMap::new(),
                anonymous: false,
            },
            Err(e) => return Err(io(format!("read {}", dir.join(META).display()))(e)),
        };
        Ok(Volume {
            name: name.to_string(),
            mountpoint: dir.join(DATA),
            meta,
        })
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>, VolumeError> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(format!("read {}", self.dir.display()))(e)),
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| valid_name(n))
            .collect();
        names.sort();
        names.iter().map(|n| self.get(n)).collect()
    }

    /// Removes volume `name` and its files; refused when `in_use` holds it.
    pub fn remove(&self, name: &str, in_use: &BTreeSet<String>) -> Result<(), VolumeError> {
        let dir = self.checked(name)?;
        if !dir.is_dir() {
            return Err(VolumeError::NotFound(name.to_string()));
        }
        if in_use.contains(name) {
            return Err(VolumeError::InUse(name.to_string()));
        }
        fs::remove_dir_all(&dir).map_err(io(format!("remove {}", dir.display())))?;
        tracing::debug!(volume = name, "removed volume");
        Ok(())
    }

    /// Removes every volume not in `in_use`; with `all` false only anonymous
    /// ones (docker 23's default). Returns the names removed.
    pub fn prune(&self, in_use: &BTreeSet<String>, all: bool) -> Result<Vec<String>, VolumeError> {
        let mut out = Vec::new();
        for v in self.list()? {
            if in_use.contains(&v.name) || !(all || v.meta.anonymous) {
                continue;
            }
            self.remove(&v.name, in_use)?;
            out.push(v.name);
        }
        Ok(out)
    }

    /// The data directory of volume `name` (whether or not it exists).
    pub fn path(&self, name: &str) -> Result<PathBuf, VolumeError> {
        Ok(self.checked(name)?.join(DATA))
    }
}

/// The volumes the containers of `records` mount: each record's
/// `config.host` is the [`crate::host::HostConfig`] its bundle applied
/// ([`crate::bundle::Bundle::host`]). A record without one mounts none.
pub fn in_use(records: &[crate::records::ContainerRecord]) -> BTreeSet<String> {
    records
        .iter()
        .filter_map(|r| r.config.get("host"))
        .filter_map(|h| serde_json::from_value::<crate::host::HostConfig>(h.clone()).ok())
        .flat_map(|h| h.volume_names())
        .collect()
}

fn write_meta(dir: &Path, meta: &VolumeMeta) -> Result<(), VolumeError> {
    let tmp = dir.join(format!("{META}.tmp"));
    let body = serde_json::to_vec_pretty(meta).map_err(|e| VolumeError::BadMeta {
        name: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    fs::write(&tmp, body).map_err(io(format!("write {}", tmp.display())))?;
    fs::rename(&tmp, dir.join(META)).map_err(io(format!("rename {}", tmp.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["ab", "a1", "my_vol.2-x", "0abc"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "a", "_ab", ".ab", "a/b", "..", "a b", "/abs", "-ab"] {
            assert!(!valid_name(bad), "{bad}");
        }
        let r = random_name().unwrap();
        assert_eq!(r.len(), 64);
        assert!(valid_name(&r) && r.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(r, random_name().unwrap());
    }

    #[test]
    fn in_use_reads_the_records_host_config() {
        let mut h = crate::host::HostConfig::default();
        h.mounts.push(crate::host::Mount {
            destination: "/d".into(),
            source: crate::host::MountSource::Volume {
                name: Some("vol1".into()),
                anonymous: false,
            },
            read_only: false,
            propagation: None,
            relabel: None,
            nocopy: false,
        });
        let rec = |config| crate::records::ContainerRecord {
            id: "a".repeat(64),
            name: "c".into(),
            namespace: "default".into(),
            image: "i".into(),
            image_id: "x".into(),
            created: String::new(),
            command: vec![],
            config,
        };
        let recs = [
            rec(serde_json::json!({"host": h})),
            rec(serde_json::Value::Null),
        ];
        assert_eq!(in_use(&recs), BTreeSet::from(["vol1".to_string()]));
    }

    #[test]
    fn create_get_list_remove_prune() {
        let t = tempfile::tempdir().unwrap();
        let s = VolumeStore::new(t.path());
        assert!(s.list().unwrap().is_empty());
        let labels = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let (v, made) = s.create("data", labels.clone(), false, true).unwrap();
        assert!(made);
        assert_eq!(v.mountpoint, t.path().join("volumes/data/_data"));
        assert!(v.mountpoint.is_dir());
        let e = s
            .create("data", BTreeMap::new(), false, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("already exists"), "{e}");
        let (again, made) = s.create("data", BTreeMap::new(), false, false).unwrap();
        assert!(!made);
        assert_eq!(again, v);
        assert_eq!(s.get("data").unwrap().meta.labels, labels);
        let anon = random_name().unwrap();
        s.create(&anon, BTreeMap::new(), true, false).unwrap();
        let e = s.get("nope").unwrap_err().to_string();
        assert_eq!(e, "no such volume: nope");
        assert!(s.create("../x", BTreeMap::new(), false, true).is_err());
        let mut names: Vec<String> = s.list().unwrap().into_iter().map(|v| v.name).collect();
        names.sort();
        let mut want = vec!["data".to_string(), anon.clone()];
        want.sort();
        assert_eq!(names, want);

        let in_use = BTreeSet::from(["data".to_string()]);
        let e = s.remove("data", &in_use).unwrap_err().to_string();
        assert_eq!(e, "remove data: volume is in use");
        // Prune without --all takes only the anonymous one.
        assert_eq!(s.prune(&BTreeSet::new(), false).unwrap(), vec![anon]);
        assert_eq!(s.prune(&in_use, true).unwrap(), Vec::<String>::new());
        assert_eq!(
            s.prune(&BTreeSet::new(), true).unwrap(),
            vec!["data".to_string()]
        );
        assert!(s.list().unwrap().is_empty());
        assert!(s.remove("data", &BTreeSet::new()).is_err());
    }
}
