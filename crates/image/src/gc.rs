//! Garbage collection: mark from the roots, sweep everything else.
//!
//! Roots: every image record's target; every unexpired lease's content and
//! snapshots; every active or view snapshot except those whose key starts
//! with `extract-` (layer extractions of a pull, which are roots only while
//! an unexpired lease names them, so a killed pull's leftovers go).
//!
//! From a manifest or index blob the walk marks its children (index →
//! manifests, manifest → config and layers), from a config the committed
//! snapshots named by the chain IDs of its `rootfs.diff_ids`; a marked
//! snapshot marks its parents. A missing child is not an error.
//!
//! Sweep: unmarked blobs, unmarked snapshots (children before parents), and
//! ingests older than [`GcOptions::ingest_max_age`] that no writer holds.
//! Expired leases are deleted.
//!
//! Races with concurrent pulls: blobs and snapshots are listed *before* the
//! roots are read, so anything committed while GC runs is never swept. A pull
//! must add a blob or snapshot to its lease before committing it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::content::{ContentError, ContentStore};
use crate::digest::{chain_ids, Digest};
use crate::meta::{Descriptor, Lease, MetaDb, MetaError};
use crate::snapshot::{Info, Kind, SnapshotError, Snapshotter};

/// Media types the walk understands.
pub mod media {
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI uncompressed layer.
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    /// OCI gzip layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker schema2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker uncompressed layer.
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    /// Docker gzip layer.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

/// Cap on reads of manifests and indexes.
pub(crate) const MAX_MANIFEST: u64 = 4 << 20;
/// Cap on reads of image configs.
pub(crate) const MAX_CONFIG: u64 = 16 << 20;

/// What a JSON blob turned out to be.
#[derive(Debug)]
pub(crate) enum Node {
    /// An index: its manifests with their platforms (os, architecture).
    Index(Vec<(Descriptor, Option<(String, String)>)>),
    /// A manifest.
    Manifest {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    /// An image config.
    Config { diff_ids: Vec<Digest> },
    /// Anything else.
    Other,
}

pub(crate) fn is_index(mt: &str) -> bool {
    mt == media::OCI_INDEX || mt == media::DOCKER_LIST
}

pub(crate) fn is_manifest(mt: &str) -> bool {
    mt == media::OCI_MANIFEST || mt == media::DOCKER_MANIFEST
}

pub(crate) fn is_config(mt: &str) -> bool {
    mt == media::OCI_CONFIG || mt == media::DOCKER_CONFIG
}

/// Parses a descriptor object of a manifest or index.
pub(crate) fn parse_descriptor(v: &Value) -> Option<Descriptor> {
    Some(Descriptor {
        media_type: v.get("mediaType")?.as_str().unwrap_or_default().to_string(),
        digest: v.get("digest")?.as_str()?.parse().ok()?,
        size: v.get("size")?.as_u64()?,
    })
}

/// Parses a blob of media type `mt` (sniffing its JSON when the type is not
/// one of the known ones).
pub(crate) fn parse_node(mt: &str, bytes: &[u8]) -> Node {
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return Node::Other;
    };
    let looks_index = v.get("manifests").is_some_and(Value::is_array);
    let looks_manifest = v.get("config").is_some_and(Value::is_object)
        && v.get("layers").is_some_and(Value::is_array);
    let looks_config = v.get("rootfs").is_some_and(Value::is_object);
    if is_index(mt) || (!is_manifest(mt) && !is_config(mt) && looks_index) {
        let list = v.get("manifests").and_then(Value::as_array);
        let children = list
            .into_iter()
            .flatten()
            .filter_map(|m| {
                let d = parse_descriptor(m)?;
                let p = m.get("platform").map(|p| {
                    let s = |k: &str| {
                        p.get(k)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string()
                    };
                    (s("os"), s("architecture"))
                });
                Some((d, p))
            })
            .collect();
        return Node::Index(children);
    }
    if is_manifest(mt) || (!is_config(mt) && looks_manifest) {
        let Some(config) = v.get("config").and_then(parse_descriptor) else {
            return Node::Other;
        };
        let layers = v
            .get("layers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(parse_descriptor)
            .collect();
        return Node::Manifest { config, layers };
    }
    if is_config(mt) || looks_config {
        let diff_ids = v
            .get("rootfs")
            .and_then(|r| r.get("diff_ids"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str()?.parse().ok())
            .collect();
        return Node::Config { diff_ids };
    }
    Node::Other
}

/// The host platform as OCI spells it: (os, architecture).
pub(crate) fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

/// What a walk from some roots reached.
#[derive(Debug, Default)]
pub(crate) struct Reached {
    /// Blobs reached (present or not).
    pub blobs: BTreeSet<Digest>,
    /// Blobs named by a reached manifest or index that are not in the store.
    pub missing: BTreeSet<Digest>,
    /// Chain IDs of the layers of reached configs, as `sha256:<hex>`.
    pub chain_ids: BTreeSet<String>,
}

/// Walks from `root`, following every child (or, with `host_only`, only the
/// children of an index for the host platform or with no platform).
pub(crate) fn walk(
    content: &ContentStore,
    root: &Descriptor,
    host_only: bool,
    out: &mut Reached,
) -> Result<(), ContentError> {
    // (descriptor, whether it is a manifest's config)
    let mut todo: Vec<(Descriptor, bool)> = vec![(root.clone(), false)];
    let (os, arch) = host_platform();
    while let Some((d, is_cfg)) = todo.pop() {
        if !out.blobs.insert(d.digest.clone()) {
            continue;
        }
        let Some(size) = content.info(&d.digest)? else {
            out.missing.insert(d.digest.clone());
            continue;
        };
        let mt = d.media_type.as_str();
        let known_json = is_index(mt) || is_manifest(mt) || is_config(mt) || is_cfg;
        let known_other = mt.contains(".layer.") || mt.contains(".rootfs.") || mt.contains("tar");
        let cap = if is_cfg || is_config(mt) {
            MAX_CONFIG
        } else {
            MAX_MANIFEST
        };
        if (!known_json && known_other) || size > cap {
            continue;
        }
        let bytes = match content.read_blob(&d.digest, cap) {
            Ok(b) => b,
            Err(ContentError::NotFound(_)) => {
                out.missing.insert(d.digest.clone());
                continue;
            }
            Err(e) => return Err(e),
        };
        let node = if is_cfg && !is_config(mt) {
            parse_node(media::OCI_CONFIG, &bytes)
        } else {
            parse_node(mt, &bytes)
        };
        match node {
            Node::Index(children) => {
                for (c, p) in children {
                    let wanted = match (&p, host_only) {
                        (_, false) | (None, true) => true,
                        (Some((o, a)), true) => o == os && a == arch,
                    };
                    if wanted {
                        todo.push((c, false));
                    }
                }
            }
            Node::Manifest { config, layers } => {
                todo.push((config, true));
                todo.extend(layers.into_iter().map(|l| (l, false)));
            }
            Node::Config { diff_ids } => {
                out.chain_ids
                    .extend(chain_ids(&diff_ids).into_iter().map(|c| c.to_string()));
            }
            Node::Other => {}
        }
    }
    Ok(())
}

/// Options of [`collect`].
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Ingests untouched for longer than this, and not locked, are removed.
    pub ingest_max_age: Duration,
    /// Report what would go, remove nothing (expired leases are kept too).
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            ingest_max_age: Duration::from_secs(24 * 3600),
            dry_run: false,
        }
    }
}

/// What [`collect`] removed (or, in a dry run, would remove).
#[derive(Debug, Default)]
pub struct GcReport {
    /// Blobs removed.
    pub removed_blobs: Vec<Digest>,
    /// Snapshots removed, in removal order.
    pub removed_snapshots: Vec<String>,
    /// Ingests removed.
    pub removed_ingests: Vec<Digest>,
    /// Snapshot trash directories removed (see [`crate::snapshot::Trash`]).
    pub removed_trash: Vec<String>,
    /// Bytes freed: blobs, ingests and snapshot directories.
    pub bytes_freed: u64,
}

/// Errors of GC.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The metadata DB failed.
    #[error("gc: {0}")]
    Meta(#[from] MetaError),
    /// The content store failed.
    #[error("gc: {0}")]
    Content(#[from] ContentError),
    /// The snapshotter failed.
    #[error("gc: {0}")]
    Snapshot(#[from] SnapshotError),
}

/// Marks every snapshot reachable from `roots` through parent links.
fn mark_snapshots(
    all: &BTreeMap<String, Info>,
    roots: impl IntoIterator<Item = String>,
) -> BTreeSet<String> {
    let mut marked = BTreeSet::new();
    let mut todo: Vec<String> = roots.into_iter().collect();
    while let Some(k) = todo.pop() {
        let Some(info) = all.get(&k) else { continue };
        if marked.insert(k) {
            if let Some(p) = &info.parent {
                todo.push(p.clone());
            }
        }
    }
    marked
}

/// The snapshots GC keeps: those named by `live` leases, every active or
/// view snapshot but unfinished layer extractions (`extract-*`, which only
/// a lease keeps), and the layers named by `chain_ids`; each with its
/// parents.
pub(crate) fn marked_snapshots<'a>(
    all: &BTreeMap<String, Info>,
    live: impl IntoIterator<Item = &'a Lease>,
    chain_ids: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut roots: Vec<String> = Vec::new();
    for l in live {
        roots.extend(l.snapshots.iter().cloned());
    }
    for i in all.values() {
        if matches!(i.kind, Kind::Active | Kind::View) && !i.key.starts_with("extract-") {
            roots.push(i.key.clone());
        }
    }
    roots.extend(chain_ids.iter().cloned());
    mark_snapshots(all, roots)
}

/// Orders `doomed` snapshots so that children come before their parents.
/// Snapshots that still have a child outside `doomed` are left out (they
/// cannot be removed).
fn removal_order(all: &BTreeMap<String, Info>, doomed: &BTreeSet<String>) -> Vec<String> {
    let mut remaining: BTreeSet<String> = doomed.clone();
    let mut order = Vec::new();
    loop {
        let leaves: Vec<String> = remaining
            .iter()
            .filter(|k| {
                !all.values().any(|i| {
                    i.parent.as_deref() == Some(k.as_str())
                        && (remaining.contains(&i.key) || !doomed.contains(&i.key))
                })
            })
            .cloned()
            .collect();
        if leaves.is_empty() {
            break;
        }
        for l in leaves {
            remaining.remove(&l);
            order.push(l);
        }
    }
    order
}

/// Runs one mark and sweep.
pub fn collect(
    meta: &MetaDb,
    content: &ContentStore,
    snaps: &dyn Snapshotter,
    opts: &GcOptions,
) -> Result<GcReport, GcError> {
    // List first: anything committed from now on survives this run.
    let blobs = content.list()?;
    let all_snaps: BTreeMap<String, Info> = snaps
        .list()?
        .into_iter()
        .map(|i| (i.key.clone(), i))
        .collect();
    let now = chrono::Utc::now();

    let mut reached = Reached::default();
    for img in meta.list_images()? {
        walk(content, &img.target, false, &mut reached)?;
    }
    let leases = meta.list_leases()?;
    let live: Vec<&Lease> = leases.iter().filter(|l| !l.expired(now)).collect();
    for l in &live {
        for d in &l.content {
            let desc = Descriptor {
                media_type: String::new(),
                digest: d.clone(),
                size: 0,
            };
            walk(content, &desc, false, &mut reached)?;
        }
    }
    let marked_snaps = marked_snapshots(&all_snaps, live, &reached.chain_ids);

    let mut report = GcReport::default();
    if !opts.dry_run {
        meta.delete_expired_leases(now)?;
    }

    // Snapshots, children first.
    let doomed: BTreeSet<String> = all_snaps
        .keys()
        .filter(|k| !marked_snaps.contains(*k))
        .cloned()
        .collect();
    for key in removal_order(&all_snaps, &doomed) {
        let size = snaps.usage(&key).map(|u| u.size).unwrap_or(0);
        if !opts.dry_run {
            match snaps.remove(&key) {
                Ok(()) => {}
                Err(SnapshotError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        tracing::debug!(snapshot = %key, "gc: removed snapshot");
        report.bytes_freed += size;
        report.removed_snapshots.push(key);
    }

    // What interrupted removals and creations left under the snapshotter.
    for t in snaps.trash()? {
        if !opts.dry_run {
            if let Err(e) = snaps.remove_trash(&t.name) {
                tracing::warn!(trash = %t.name, "gc: {e}");
                continue;
            }
        }
        tracing::debug!(trash = %t.name, "gc: removed snapshot trash");
        report.bytes_freed += t.size;
        report.removed_trash.push(t.name);
    }

    for (d, size) in blobs {
        if reached.blobs.contains(&d) {
            continue;
        }
        if !opts.dry_run && !content.delete(&d)? {
            continue;
        }
        tracing::debug!(blob = %d, "gc: removed blob");
        report.bytes_freed += size;
        report.removed_blobs.push(d);
    }

    let now_sys = SystemTime::now();
    for ing in content.ingests()? {
        let age = now_sys.duration_since(ing.modified).unwrap_or_default();
        if ing.locked || age <= opts.ingest_max_age {
            continue;
        }
        if !opts.dry_run {
            match content.remove_ingest(&ing.digest) {
                Ok(()) => {}
                // A writer resumed it meanwhile.
                Err(ContentError::IngestLocked(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        report.bytes_freed += ing.size;
        report.removed_ingests.push(ing.digest);
    }
    Ok(report)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::meta::ImageRecord;
    use crate::snapshot::{Mount, Usage};
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::Mutex;

    /// An in-memory snapshotter.
    #[derive(Debug, Default)]
    pub(crate) struct FakeSnaps {
        pub snaps: Mutex<BTreeMap<String, Info>>,
    }

    impl FakeSnaps {
        pub(crate) fn add(&self, key: &str, parent: Option<&str>, kind: Kind) {
            self.snaps.lock().unwrap().insert(
                key.to_string(),
                Info {
                    key: key.to_string(),
                    parent: parent.map(str::to_string),
                    kind,
                    created: chrono::Utc::now(),
                },
            );
        }
        pub(crate) fn keys(&self) -> Vec<String> {
            self.snaps.lock().unwrap().keys().cloned().collect()
        }
    }

    impl Snapshotter for FakeSnaps {
        fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
            self.add(key, parent, Kind::Active);
            Ok(vec![])
        }
        fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
            self.add(key, parent, Kind::View);
            Ok(vec![])
        }
        fn mounts(&self, _key: &str) -> Result<Vec<Mount>, SnapshotError> {
            Ok(vec![])
        }
        fn prepare_layer(&self, key: &str, parent: Option<&str>) -> Result<PathBuf, SnapshotError> {
            self.add(key, parent, Kind::Active);
            Ok(PathBuf::from("/nonexistent"))
        }
        fn parallel_layers(&self) -> bool {
            false
        }
        fn commit(&self, name: &str, key: &str) -> Result<(), SnapshotError> {
            let mut m = self.snaps.lock().unwrap();
            let mut i = m
                .remove(key)
                .ok_or_else(|| SnapshotError::NotFound(key.into()))?;
            i.key = name.to_string();
            i.kind = Kind::Committed;
            m.insert(name.to_string(), i);
            Ok(())
        }
        fn remove(&self, key: &str) -> Result<(), SnapshotError> {
            let mut m = self.snaps.lock().unwrap();
            if let Some(c) = m.values().find(|i| i.parent.as_deref() == Some(key)) {
                return Err(SnapshotError::HasChildren(key.into(), c.key.clone()));
            }
            m.remove(key)
                .map(|_| ())
                .ok_or_else(|| SnapshotError::NotFound(key.into()))
        }
        fn stat(&self, key: &str) -> Result<Option<Info>, SnapshotError> {
            Ok(self.snaps.lock().unwrap().get(key).cloned())
        }
        fn list(&self) -> Result<Vec<Info>, SnapshotError> {
            Ok(self.snaps.lock().unwrap().values().cloned().collect())
        }
        fn usage(&self, _key: &str) -> Result<Usage, SnapshotError> {
            Ok(Usage { size: 1, inodes: 1 })
        }
        fn upper_dir(&self, key: &str) -> Result<PathBuf, SnapshotError> {
            Err(SnapshotError::NotFound(key.into()))
        }
    }

    /// A synthetic image: layers (raw bytes, stored as-is) → config → manifest.
    pub(crate) struct TestImage {
        pub manifest: Descriptor,
        pub config: Digest,
        pub layers: Vec<Digest>,
        pub chain: Vec<String>,
    }

    pub(crate) fn put(c: &ContentStore, mt: &str, data: &[u8]) -> Descriptor {
        Descriptor {
            media_type: mt.to_string(),
            digest: c.put_bytes(data, None).unwrap(),
            size: data.len() as u64,
        }
    }

    fn desc_json(d: &Descriptor) -> Value {
        serde_json::json!({"mediaType": d.media_type, "digest": d.digest.to_string(), "size": d.size})
    }

    /// Stores an image whose layers are the given tar contents (already
    /// tarred bytes; diff IDs equal layer digests since they are stored
    /// uncompressed).
    pub(crate) fn make_image(c: &ContentStore, layers: &[Vec<u8>], tag: &str) -> TestImage {
        let ls: Vec<Descriptor> = layers.iter().map(|l| put(c, media::OCI_LAYER, l)).collect();
        let diff_ids: Vec<String> = ls.iter().map(|l| l.digest.to_string()).collect();
        let cfg = serde_json::json!({
            "architecture": host_platform().1, "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Labels": {"tag": tag}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let cfg = put(c, media::OCI_CONFIG, &serde_json::to_vec(&cfg).unwrap());
        let man = serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": desc_json(&cfg),
            "layers": ls.iter().map(desc_json).collect::<Vec<_>>(),
        });
        let manifest = put(c, media::OCI_MANIFEST, &serde_json::to_vec(&man).unwrap());
        let chain = chain_ids(&ls.iter().map(|l| l.digest.clone()).collect::<Vec<_>>())
            .iter()
            .map(|d| d.to_string())
            .collect();
        TestImage {
            manifest,
            config: cfg.digest,
            layers: ls.into_iter().map(|l| l.digest).collect(),
            chain,
        }
    }

    /// Commits snapshots for an image's chain.
    pub(crate) fn unpack(s: &FakeSnaps, img: &TestImage) {
        let mut parent: Option<String> = None;
        for c in &img.chain {
            s.add(c, parent.as_deref(), Kind::Committed);
            parent = Some(c.clone());
        }
    }

    pub(crate) fn record(name: &str, target: &Descriptor) -> ImageRecord {
        let now = chrono::Utc::now();
        ImageRecord {
            name: name.into(),
            target: target.clone(),
            created: now,
            updated: now,
            labels: BTreeMap::new(),
        }
    }

    pub(crate) struct Env {
        pub _t: tempfile::TempDir,
        pub meta: MetaDb,
        pub content: ContentStore,
        pub snaps: FakeSnaps,
    }

    pub(crate) fn env() -> Env {
        let t = tempfile::tempdir().unwrap();
        let meta = MetaDb::open(&t.path().join("meta.db")).unwrap();
        let content = ContentStore::open(&t.path().join("content")).unwrap();
        Env {
            _t: t,
            meta,
            content,
            snaps: FakeSnaps::default(),
        }
    }

    fn opts() -> GcOptions {
        GcOptions {
            ingest_max_age: Duration::from_secs(3600),
            dry_run: false,
        }
    }

    #[test]
    fn removing_one_of_two_images_keeps_the_shared_base() {
        let e = env();
        let base = b"base layer".to_vec();
        let a = make_image(&e.content, &[base.clone(), b"a top".to_vec()], "a");
        let b = make_image(&e.content, &[base.clone(), b"b top".to_vec()], "b");
        unpack(&e.snaps, &a);
        unpack(&e.snaps, &b);
        e.meta.put_image(&record("x/a:1", &a.manifest)).unwrap();
        e.meta.put_image(&record("x/b:1", &b.manifest)).unwrap();
        // A container on top of a, and a stray blob.
        e.snaps.add("ctr-1", Some(&a.chain[1]), Kind::Active);
        let stray = e.content.put_bytes(b"stray", None).unwrap();

        let r = collect(&e.meta, &e.content, &e.snaps, &opts()).unwrap();
        assert_eq!(r.removed_blobs, vec![stray]);
        assert!(r.removed_snapshots.is_empty());

        e.meta.delete_image("x/b:1").unwrap();
        let dry = collect(
            &e.meta,
            &e.content,
            &e.snaps,
            &GcOptions {
                dry_run: true,
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(dry.removed_blobs.len(), 3);
        assert_eq!(e.content.list().unwrap().len(), 7);

        let r = collect(&e.meta, &e.content, &e.snaps, &opts()).unwrap();
        let mut want = vec![
            b.manifest.digest.clone(),
            b.config.clone(),
            b.layers[1].clone(),
        ];
        want.sort();
        let mut got = r.removed_blobs.clone();
        got.sort();
        assert_eq!(got, want);
        assert_eq!(r.removed_snapshots, vec![b.chain[1].clone()]);
        assert!(e.content.info(&a.layers[0]).unwrap().is_some());
        assert!(e.snaps.stat(&a.chain[0]).unwrap().is_some());

        // Without the image, the container's snapshot still holds its chain.
        e.meta.delete_image("x/a:1").unwrap();
        let r = collect(&e.meta, &e.content, &e.snaps, &opts()).unwrap();
        assert_eq!(r.removed_blobs.len(), 4);
        assert!(r.removed_snapshots.is_empty());
        e.snaps.remove("ctr-1").unwrap();
        let r = collect(&e.meta, &e.content, &e.snaps, &opts()).unwrap();
        assert_eq!(
            r.removed_snapshots,
            vec![a.chain[1].clone(), a.chain[0].clone()]
        );
        assert!(e.snaps.keys().is_empty());
        assert!(e.content.list().unwrap().is_empty());
    }

    #[test]
    fn leases_protect_and_extract_snapshots_need_one() {
        let e = env();
        let img = make_image(&e.content, &[b"l1".to_vec()], "x");
        e.meta
            .create_lease("pull", Some(Duration::from_secs(600)))
            .unwrap();
        e.meta
            .add_lease_content("pull", &img.manifest.digest)
            .unwrap();
        e.snaps.add("extract-1-leased", None, Kind::Active);
        e.snaps.add("extract-2-killed", None, Kind::Active);
        e.meta
            .add_lease_snapshot("pull", "extract-1-leased")
            .unwrap();
        e.snaps.add("sha256:unrelated", None, Kind::Committed);
        e.snaps.add("view-1", Some("sha256:unrelated"), Kind::View);
        e.meta
            .create_lease("expired", Some(Duration::ZERO))
            .unwrap();
        let other = e.content.put_bytes(b"only in expired lease", None).unwrap();
        e.meta.add_lease_content("expired", &other).unwrap();

        let r = collect(&e.meta, &e.content, &e.snaps, &opts()).unwrap();
        assert_eq!(r.removed_blobs, vec![other]);
        assert_eq!(r.removed_snapshots, vec!["extract-2-killed".to_string()]);
        assert!(e.content.info(&img.layers[0]).unwrap().is_some());
        let leases: Vec<_> = e
            .meta
            .list_leases()
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(leases, ["pull"]);

        e.meta.delete_lease("pull").unwrap();
        let r = collect(&e.meta, &e.content, &e.snaps, &opts()).unwrap();
        assert_eq!(r.removed_blobs.len(), 3);
        assert_eq!(r.removed_snapshots, vec!["extract-1-leased".to_string()]);
        assert_eq!(e.snaps.keys(), ["sha256:unrelated", "view-1"]);
    }

    #[test]
    fn old_unlocked_ingests_go() {
        let e = env();
        let d1 = Digest::sha256_of(b"one");
        let mut w = e.content.ingest(&d1, None).unwrap();
        w.write_all(b"on").unwrap();
        drop(w);
        let d2 = Digest::sha256_of(b"two");
        let mut held = e.content.ingest(&d2, None).unwrap();
        held.write_all(b"tw").unwrap();
        let r = collect(&e.meta, &e.content, &e.snaps, &opts()).unwrap();
        assert!(r.removed_ingests.is_empty());
        let zero = GcOptions {
            ingest_max_age: Duration::ZERO,
            dry_run: false,
        };
        std::thread::sleep(Duration::from_millis(20));
        let r = collect(&e.meta, &e.content, &e.snaps, &zero).unwrap();
        assert_eq!(r.removed_ingests, vec![d1]);
        assert_eq!(r.bytes_freed, 2);
        let left: Vec<_> = e
            .content
            .ingests()
            .unwrap()
            .into_iter()
            .map(|i| i.digest)
            .collect();
        assert_eq!(left, vec![d2]);
        drop(held);
    }

    #[test]
    fn index_children_are_marked() {
        let e = env();
        let amd = make_image(&e.content, &[b"amd".to_vec()], "amd");
        let arm = make_image(&e.content, &[b"arm".to_vec()], "arm");
        let entry = |d: &Descriptor, arch: &str| {
            serde_json::json!({"mediaType": d.media_type, "digest": d.digest.to_string(),
                "size": d.size, "platform": {"os": "linux", "architecture": arch}})
        };
        let idx = serde_json::json!({"schemaVersion": 2, "manifests": [
            entry(&amd.manifest, "amd64"), entry(&arm.manifest, "arm64"),
            entry(&Descriptor { media_type: media::OCI_MANIFEST.into(),
                digest: Digest::sha256_of(b"absent"), size: 6 }, "s390x")]});
        // Unknown media type: the walk sniffs the JSON.
        let idx = put(
            &e.content,
            "application/json",
            &serde_json::to_vec(&idx).unwrap(),
        );
        unpack(&e.snaps, &amd);
        e.meta.put_image(&record("x/multi:1", &idx)).unwrap();
        let r = collect(&e.meta, &e.content, &e.snaps, &opts()).unwrap();
        assert!(r.removed_blobs.is_empty(), "{r:?}");
        assert!(r.removed_snapshots.is_empty());
        e.meta.delete_image("x/multi:1").unwrap();
        let r = collect(&e.meta, &e.content, &e.snaps, &opts()).unwrap();
        assert_eq!(r.removed_blobs.len(), 7);
        assert_eq!(r.removed_snapshots, vec![amd.chain[0].clone()]);
    }

    #[test]
    fn handles_are_send_and_sync() {
        fn ss<T: Send + Sync>() {}
        fn s<T: Send>() {}
        ss::<ContentStore>();
        ss::<MetaDb>();
        s::<crate::content::Ingest>();
    }

    #[test]
    fn sniffs_unknown_media_types() {
        let img_json = br#"{"manifests":[{"mediaType":"x","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0,"platform":{"os":"linux","architecture":"arm64"}}]}"#;
        match parse_node("application/octet-stream", img_json) {
            Node::Index(c) => {
                assert_eq!(c.len(), 1);
                assert_eq!(c[0].1.as_ref().unwrap().1, "arm64");
            }
            n => panic!("{n:?}"),
        }
        assert!(matches!(
            parse_node("", br#"{"rootfs":{"diff_ids":[]}}"#),
            Node::Config { .. }
        ));
        assert!(matches!(
            parse_node(media::OCI_MANIFEST, b"not json"),
            Node::Other
        ));
    }
}
