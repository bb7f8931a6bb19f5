//! Container records, kept in berth's metadata DB beside the image records
//! (two tables: `containers` by ID, `container_names` from name to ID), so
//! that they share its schema version, lock and transactions.
//!
//! Invariants:
//! - a name belongs to at most one container: [`ContainerStore::create`]
//!   checks and claims it in the same transaction that inserts the record,
//!   so two `berth` processes cannot both take it;
//! - a record is found by full ID, by name, or by an unambiguous ID prefix,
//!   as docker does.
//!
//! The record holds what the container was made from; how it is doing now
//! (running, its exit) is the monitor's exit file and the runtime's state,
//! read when asked, so a crash of `berth` between steps cannot leave the
//! record claiming something false.
//!
//! Records are per namespace ([`crate::namespace`]): a store sees, finds
//! and names only its own namespace's containers; IDs are random and so
//! unique across all of them. `default`'s records and names are stored as
//! they were before namespaces existed.

use berth_image::meta::{MetaDb, MetaError, RecordTable};
use serde::{Deserialize, Serialize};

use crate::namespace::{Namespace, DEFAULT};

const CONTAINERS: RecordTable = RecordTable::new("containers");
const NAMES: RecordTable = RecordTable::new("container_names");

/// One container's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    /// 64 hex characters.
    pub id: String,
    /// Unique among its namespace's containers.
    pub name: String,
    /// The namespace; `default` (also when absent: records made before
    /// namespaces) is not written.
    #[serde(default = "default_ns", skip_serializing_if = "is_default_ns")]
    pub namespace: String,
    /// The image as the user named it.
    pub image: String,
    /// The image ID (config digest).
    pub image_id: String,
    /// RFC 3339.
    pub created: String,
    /// The process's argv.
    pub command: Vec<String>,
    /// Everything else the engine needs to start it again (flags, paths),
    /// kept as the engine wrote it.
    #[serde(default)]
    pub config: serde_json::Value,
}

/// A lookup or update that failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// No container by that ID, name or prefix.
    #[error("no such container: {0}")]
    NotFound(String),
    /// An ID prefix that several containers share.
    #[error("container ID prefix {0:?} is ambiguous: {1}")]
    Ambiguous(String, String),
    /// The name is taken.
    #[error("the container name {name:?} is already in use by container {id}")]
    NameInUse {
        /// The name.
        name: String,
        /// Who has it.
        id: String,
    },
    /// The ID is taken.
    #[error("container ID {0} already exists")]
    IdInUse(String),
    /// A name docker would refuse.
    #[error("invalid container name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-]* are allowed")]
    BadName(String),
    /// The metadata DB failed.
    #[error(transparent)]
    Db(#[from] MetaError),
}

fn default_ns() -> String {
    DEFAULT.to_string()
}

fn is_default_ns(ns: &str) -> bool {
    ns == DEFAULT
}

/// docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
}

/// The container records of one namespace of a metadata DB.
#[derive(Debug, Clone)]
pub struct ContainerStore {
    meta: MetaDb,
    namespace: Namespace,
}

impl ContainerStore {
    /// The records of namespace `default` in `meta`.
    pub fn new(meta: MetaDb) -> ContainerStore {
        ContainerStore::in_namespace(meta, Namespace::default())
    }

    /// The records of `namespace` in `meta`.
    pub fn in_namespace(meta: MetaDb, namespace: Namespace) -> ContainerStore {
        ContainerStore { meta, namespace }
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    fn mine(&self, rec: &ContainerRecord) -> bool {
        rec.namespace == self.namespace.as_str()
    }

    /// Inserts `rec` (into this store's namespace, whatever it says),
    /// claiming its name.
    pub fn create(&self, rec: &ContainerRecord) -> Result<(), RecordError> {
        if !valid_name(&rec.name) {
            return Err(RecordError::BadName(rec.name.clone()));
        }
        let mut rec = rec.clone();
        rec.namespace = self.namespace.as_str().to_string();
        let rec = &rec;
        let key = self.namespace.name_key(&rec.name);
        let r = self
            .meta
            .update_records(&format!("create container {}", rec.id), |tx| {
                if tx.get::<ContainerRecord>(&CONTAINERS, &rec.id)?.is_some() {
                    return Err(MetaError::Conflict(format!("id:{}", rec.id)));
                }
                if let Some(owner) = tx.get::<String>(&NAMES, &key)? {
                    return Err(MetaError::Conflict(format!("name:{owner}")));
                }
                tx.put(&CONTAINERS, &rec.id, rec)?;
                tx.put(&NAMES, &key, &rec.id)
            });
        match r {
            Err(MetaError::Conflict(c)) => match c.split_once(':') {
                Some(("name", owner)) => Err(RecordError::NameInUse {
                    name: rec.name.clone(),
                    id: owner.to_string(),
                }),
                _ => Err(RecordError::IdInUse(rec.id.clone())),
            },
            r => Ok(r?),
        }
    }

    /// The record of `what` in this namespace: a full ID, a name, or a
    /// unique ID prefix.
    pub fn get(&self, what: &str) -> Result<ContainerRecord, RecordError> {
        if let Some(r) = self.meta.get_record::<ContainerRecord>(&CONTAINERS, what)? {
            if self.mine(&r) {
                return Ok(r);
            }
        }
        // A `/` would reach into another namespace's keys.
        if !what.contains('/') {
            let key = self.namespace.name_key(what);
            if let Some(id) = self.meta.get_record::<String>(&NAMES, &key)? {
                if let Some(r) = self.meta.get_record::<ContainerRecord>(&CONTAINERS, &id)? {
                    if self.mine(&r) {
                        return Ok(r);
                    }
                }
            }
        }
        let all = self.list()?;
        let mut hits: Vec<&ContainerRecord> = all
            .iter()
            .filter(|r| !what.is_empty() && r.id.starts_with(what))
            .collect();
        match hits.len() {
            0 => Err(RecordError::NotFound(what.to_string())),
            1 => Ok(hits.remove(0).clone()),
            _ => Err(RecordError::Ambiguous(
                what.to_string(),
                hits.iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    /// Every record of this namespace, by ID.
    pub fn list(&self) -> Result<Vec<ContainerRecord>, RecordError> {
        let mut all = self.list_all()?;
        all.retain(|r| self.mine(r));
        Ok(all)
    }

    /// Every record of every namespace, by ID: for what the namespaces
    /// share (images in use, host ports, leaked networks).
    pub fn list_all(&self) -> Result<Vec<ContainerRecord>, RecordError> {
        Ok(self.meta.list_records(&CONTAINERS)?)
    }

    /// The namespaces that have containers.
    pub fn namespaces(&self) -> Result<Vec<String>, RecordError> {
        let mut v: Vec<String> = self.list_all()?.into_iter().map(|r| r.namespace).collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    /// Renames container `id`.
    pub fn rename(&self, id: &str, new_name: &str) -> Result<(), RecordError> {
        if !valid_name(new_name) {
            return Err(RecordError::BadName(new_name.to_string()));
        }
        let ns = &self.namespace;
        let r = self
            .meta
            .update_records(&format!("rename container {id}"), |tx| {
                let Some(mut rec) = tx.get::<ContainerRecord>(&CONTAINERS, id)? else {
                    return Err(MetaError::Conflict("missing".into()));
                };
                if rec.namespace != ns.as_str() {
                    return Err(MetaError::Conflict("missing".into()));
                }
                if let Some(owner) = tx.get::<String>(&NAMES, &ns.name_key(new_name))? {
                    if owner != id {
                        return Err(MetaError::Conflict(format!("name:{owner}")));
                    }
                }
                tx.remove(&NAMES, &ns.name_key(&rec.name))?;
                rec.name = new_name.to_string();
                tx.put(&NAMES, &ns.name_key(new_name), &rec.id)?;
                tx.put(&CONTAINERS, id, &rec)
            });
        match r {
            Err(MetaError::Conflict(c)) => match c.split_once(':') {
                Some(("name", owner)) => Err(RecordError::NameInUse {
                    name: new_name.to_string(),
                    id: owner.to_string(),
                }),
                _ => Err(RecordError::NotFound(id.to_string())),
            },
            r => Ok(r?),
        }
    }

    /// Replaces the record of `rec.id` (keeping its current name, which only
    /// [`ContainerStore::rename`] changes).
    pub fn update(&self, rec: &ContainerRecord) -> Result<(), RecordError> {
        let r = self
            .meta
            .update_records(&format!("update container {}", rec.id), |tx| {
                let Some(old) = tx.get::<ContainerRecord>(&CONTAINERS, &rec.id)? else {
                    return Err(MetaError::Conflict("missing".into()));
                };
                let mut new = rec.clone();
                new.name = old.name;
                new.namespace = old.namespace;
                tx.put(&CONTAINERS, &rec.id, &new)
            });
        match r {
            Err(MetaError::Conflict(_)) => Err(RecordError::NotFound(rec.id.clone())),
            r => Ok(r?),
        }
    }

    /// Removes container `id` and frees its name; false if it was gone.
    pub fn remove(&self, id: &str) -> Result<bool, RecordError> {
        Ok(self
            .meta
            .update_records(&format!("remove container {id}"), |tx| {
                let Some(rec) = tx.get::<ContainerRecord>(&CONTAINERS, id)? else {
                    return Ok(false);
                };
                // The name key of the record's own namespace.
                let ns = Namespace::new(&rec.namespace)
                    .map_err(|e| MetaError::Conflict(e.to_string()))?;
                tx.remove(&NAMES, &ns.name_key(&rec.name))?;
                tx.remove(&CONTAINERS, id)
            })?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, name: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            name: name.into(),
            namespace: DEFAULT.into(),
            image: "busybox".into(),
            image_id: "sha256:abc".into(),
            created: "2026-11-28T20:00:00Z".into(),
            command: vec!["sh".into()],
            config: serde_json::json!({"restart": "no"}),
        }
    }

    fn store(dir: &std::path::Path) -> ContainerStore {
        ContainerStore::new(MetaDb::open(&dir.join("meta.redb")).unwrap())
    }

    #[test]
    fn create_find_rename_remove() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        let a = rec(&format!("aa{}", "1".repeat(62)), "web");
        let b = rec(&format!("ab{}", "2".repeat(62)), "db");
        s.create(&a).unwrap();
        s.create(&b).unwrap();
        assert_eq!(s.get("web").unwrap(), a);
        assert_eq!(s.get(&b.id).unwrap(), b);
        assert_eq!(s.get("ab").unwrap(), b);
        assert!(matches!(s.get("a"), Err(RecordError::Ambiguous(..))));
        assert!(matches!(s.get("zz"), Err(RecordError::NotFound(_))));
        assert!(matches!(s.get(""), Err(RecordError::NotFound(_))));

        let e = s.create(&rec(&"c".repeat(64), "web")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "the container name \"web\" is already in use by container {}",
                a.id
            )
        );
        assert!(matches!(
            s.create(&rec(&a.id, "other")),
            Err(RecordError::IdInUse(_))
        ));
        assert!(matches!(
            s.create(&rec(&"d".repeat(64), "-x")),
            Err(RecordError::BadName(_))
        ));
        // A failed create wrote nothing.
        assert_eq!(s.list().unwrap().len(), 2);
        assert!(matches!(s.get("other"), Err(RecordError::NotFound(_))));

        s.rename(&a.id, "front").unwrap();
        assert_eq!(s.get("front").unwrap().id, a.id);
        assert!(matches!(s.get("web"), Err(RecordError::NotFound(_))));
        assert!(matches!(
            s.rename(&a.id, "db"),
            Err(RecordError::NameInUse { .. })
        ));

        assert!(s.remove(&a.id).unwrap());
        assert!(!s.remove(&a.id).unwrap());
        // The name is free again.
        s.create(&rec(&"e".repeat(64), "front")).unwrap();
        // Another handle (another process) sees the same.
        assert_eq!(store(t.path()).list().unwrap().len(), 2);
    }

    /// Eight racing creates of one name (each with its own DB handle, as
    /// separate processes would have): exactly one wins.
    #[test]
    fn one_name_one_winner() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().to_path_buf();
        let wins: usize = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let dir = dir.clone();
                    sc.spawn(move || {
                        store(&dir)
                            .create(&rec(&format!("{i:064}"), "same"))
                            .is_ok() as usize
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 1);
        assert_eq!(store(&dir).list().unwrap().len(), 1);
    }

    /// The same name in two namespaces; each sees, finds, renames and
    /// removes only its own; `default` is stored as before namespaces.
    #[test]
    fn namespaces_keep_apart() {
        let t = tempfile::tempdir().unwrap();
        let meta = MetaDb::open(&t.path().join("meta.redb")).unwrap();
        let d = ContainerStore::new(meta.clone());
        let k = ContainerStore::in_namespace(meta.clone(), Namespace::new("k8s.io").unwrap());
        let a = rec(&"a".repeat(64), "web");
        let b = rec(&"b".repeat(64), "web");
        d.create(&a).unwrap();
        k.create(&b).unwrap();
        assert_eq!(d.get("web").unwrap().id, a.id);
        assert_eq!(k.get("web").unwrap().id, b.id);
        assert_eq!(k.get("web").unwrap().namespace, "k8s.io");
        // Neither finds the other's by ID, prefix or key.
        assert!(matches!(d.get(&b.id), Err(RecordError::NotFound(_))));
        assert!(matches!(d.get("bbb"), Err(RecordError::NotFound(_))));
        assert!(matches!(d.get("k8s.io/web"), Err(RecordError::NotFound(_))));
        assert!(matches!(k.get(&a.id), Err(RecordError::NotFound(_))));
        assert_eq!(d.list().unwrap(), vec![a.clone()]);
        assert_eq!(k.list().unwrap().len(), 1);
        assert_eq!(d.list_all().unwrap().len(), 2);
        assert_eq!(d.namespaces().unwrap(), ["default", "k8s.io"]);
        assert!(matches!(
            k.rename(&a.id, "x"),
            Err(RecordError::NotFound(_))
        ));
        k.rename(&b.id, "api").unwrap();
        assert!(matches!(d.get("api"), Err(RecordError::NotFound(_))));
        assert!(k.remove(&b.id).unwrap());
        assert_eq!(d.get("web").unwrap().id, a.id);
        // `default`'s record and name are written as before namespaces.
        let raw: serde_json::Value = meta.get_record(&CONTAINERS, &a.id).unwrap().unwrap();
        assert!(raw.get("namespace").is_none(), "{raw}");
        assert_eq!(
            meta.get_record::<String>(&NAMES, "web").unwrap().as_deref(),
            Some(a.id.as_str())
        );
    }

    /// A record written before namespaces (no field) is `default`'s.
    #[test]
    fn old_records_are_defaults() {
        let old = serde_json::json!({"id": "x", "name": "web", "image": "busybox",
            "imageId": "sha256:abc", "created": "2026-11-28T20:00:00Z", "command": ["sh"]});
        let r: ContainerRecord = serde_json::from_value(old).unwrap();
        assert_eq!(r.namespace, "default");
    }

    #[test]
    fn names_follow_docker() {
        for ok in ["a", "web-1", "x_y.z", "9lives"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "ä"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
