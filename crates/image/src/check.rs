//! The store check: re-hashes every blob and cross-checks images, blobs,
//! leases, ingests and snapshots. It only reports; it changes nothing.
//!
//! - corrupt: a blob whose content does not hash to its name;
//! - missing: a blob an image needs (its target, or for an index the host
//!   platform's manifest, config and layers) that is not in the store;
//! - orphan: a blob no image or unexpired lease reaches (GC would remove it);
//! - stale ingest: partial data no writer holds now (left by a killed or
//!   interrupted pull; a later pull resumes it, GC removes it once old);
//! - missing snapshot: a committed layer snapshot (named by chain ID) of an
//!   image's host-platform config that the snapshotter does not have;
//! - orphan snapshot: one GC would remove, such as the `extract-*` snapshot
//!   of a killed pull (a lease whose holder is gone keeps nothing);
//! - snapshot trash: a directory no snapshot owns, left by a removal or
//!   creation that was killed half-way.

use std::io;

use crate::content::{ContentError, ContentStore};
use crate::digest::{Digest, HashingReader};
use crate::gc::{marked_snapshots, walk, Reached};
use crate::meta::{Descriptor, Lease, MetaDb, MetaError};
use crate::snapshot::{SnapshotError, Snapshotter};

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Blobs re-hashed.
    pub checked_blobs: u64,
    /// Blobs whose content does not hash to their name.
    pub corrupt_blobs: Vec<Digest>,
    /// (image, blob) pairs where the image needs a blob the store lacks.
    pub missing_blobs: Vec<(String, Digest)>,
    /// Blobs nothing references.
    pub orphan_blobs: Vec<Digest>,
    /// Ingests no writer holds.
    pub stale_ingests: Vec<Digest>,
    /// (image, snapshot) pairs where the image's layer snapshot is absent.
    pub missing_snapshots: Vec<(String, String)>,
    /// Snapshots nothing keeps (GC would remove them).
    pub orphan_snapshots: Vec<String>,
    /// Directories under the snapshotter that no snapshot owns.
    pub snapshot_trash: Vec<crate::snapshot::Trash>,
}

impl CheckReport {
    /// Whether nothing is wrong (orphans and stale ingests count as wrong).
    pub fn is_clean(&self) -> bool {
        self.corrupt_blobs.is_empty()
            && self.missing_blobs.is_empty()
            && self.orphan_blobs.is_empty()
            && self.stale_ingests.is_empty()
            && self.missing_snapshots.is_empty()
            && self.orphan_snapshots.is_empty()
            && self.snapshot_trash.is_empty()
    }
}

/// Errors of the check (problems found are not errors; they are reported).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The metadata DB failed.
    #[error("check: {0}")]
    Meta(#[from] MetaError),
    /// The content store failed.
    #[error("check: {0}")]
    Content(#[from] ContentError),
    /// The snapshotter failed.
    #[error("check: {0}")]
    Snapshot(#[from] SnapshotError),
    /// Reading a blob failed.
    #[error("check: read blob {digest}: {source}")]
    Read {
        /// The blob.
        digest: Digest,
        /// The underlying error.
        source: io::Error,
    },
}

/// Checks the store. `live` says whether a lease still protects what it
/// names (it is asked only of unexpired ones).
pub fn check(
    meta: &MetaDb,
    content: &ContentStore,
    snaps: &dyn Snapshotter,
    live: &dyn Fn(&Lease) -> bool,
) -> Result<CheckReport, CheckError> {
    // Listed first, as GC does: a snapshot committed meanwhile is not an
    // orphan.
    let all_snaps: std::collections::BTreeMap<String, crate::snapshot::Info> = snaps
        .list()?
        .into_iter()
        .map(|i| (i.key.clone(), i))
        .collect();
    let mut report = CheckReport::default();
    let blobs = content.list()?;
    for (d, _) in &blobs {
        let f = match content.open_blob(d) {
            Ok(f) => f,
            Err(ContentError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut r = HashingReader::new(f, d.algorithm());
        io::copy(&mut r, &mut io::sink()).map_err(|source| CheckError::Read {
            digest: d.clone(),
            source,
        })?;
        report.checked_blobs += 1;
        if r.digest() != *d {
            tracing::warn!(blob = %d, actual = %r.digest(), "check: corrupt blob");
            report.corrupt_blobs.push(d.clone());
        }
    }

    let mut all = Reached::default();
    for img in meta.list_images()? {
        walk(content, &img.target, false, &mut all)?;
        let mut host = Reached::default();
        walk(content, &img.target, true, &mut host)?;
        for d in host.missing {
            report.missing_blobs.push((img.name.clone(), d));
        }
        for c in host.chain_ids {
            if snaps.stat(&c)?.is_none() {
                report.missing_snapshots.push((img.name.clone(), c));
            }
        }
    }
    let now = chrono::Utc::now();
    let leases: Vec<Lease> = meta
        .list_leases()?
        .into_iter()
        .filter(|l| !l.expired(now) && live(l))
        .collect();
    for l in &leases {
        for d in &l.content {
            let desc = Descriptor {
                media_type: String::new(),
                digest: d.clone(),
                size: 0,
            };
            walk(content, &desc, false, &mut all)?;
        }
    }
    let marked = marked_snapshots(&all_snaps, &leases, &all.chain_ids);
    report.orphan_snapshots = all_snaps
        .keys()
        .filter(|k| !marked.contains(*k))
        .cloned()
        .collect();
    report.snapshot_trash = snaps.trash()?;
    report.orphan_blobs = blobs
        .into_iter()
        .map(|(d, _)| d)
        .filter(|d| !all.blobs.contains(d))
        .collect();
    report.stale_ingests = content
        .ingests()?
        .into_iter()
        .filter(|i| !i.locked)
        .map(|i| i.digest)
        .collect();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gc::tests::{env, make_image, record, unpack};
    use std::io::Write;

    #[test]
    fn finds_corrupt_orphan_missing_and_stale() {
        let e = env();
        let a = make_image(&e.content, &[b"base".to_vec(), b"top".to_vec()], "a");
        unpack(&e.snaps, &a);
        e.meta.put_image(&record("x/a:1", &a.manifest)).unwrap();
        let r = check(&e.meta, &e.content, &e.snaps, &|_| true).unwrap();
        assert!(r.is_clean(), "{r:?}");
        assert_eq!(r.checked_blobs, 4);

        // Corrupt a layer, lose another, drop a snapshot, add an orphan and
        // a stale ingest.
        std::fs::write(e.content.blob_path(&a.layers[0]), b"rotten").unwrap();
        e.content.delete(&a.layers[1]).unwrap();
        e.snaps.snaps.lock().unwrap().remove(&a.chain[1]);
        let orphan = e.content.put_bytes(b"orphan", None).unwrap();
        let d = Digest::sha256_of(b"partial!");
        let mut w = e.content.ingest(&d, None).unwrap();
        w.write_all(b"part").unwrap();
        drop(w);
        let held_d = Digest::sha256_of(b"held");
        let _held = e.content.ingest(&held_d, None).unwrap();

        let r = check(&e.meta, &e.content, &e.snaps, &|_| true).unwrap();
        assert_eq!(r.checked_blobs, 4);
        assert_eq!(r.corrupt_blobs, vec![a.layers[0].clone()]);
        assert_eq!(
            r.missing_blobs,
            vec![("x/a:1".to_string(), a.layers[1].clone())]
        );
        assert_eq!(r.orphan_blobs, vec![orphan]);
        assert_eq!(r.stale_ingests, vec![d]);
        assert_eq!(
            r.missing_snapshots,
            vec![("x/a:1".to_string(), a.chain[1].clone())]
        );
    }
}
