//! What spans the store: container counts, disk usage, and `system prune`
//! (stopped containers of the namespace, unused networks, leaked network
//! state, unused images, then the content and snapshot GC). Images are
//! shared, so an image counts as used when a container of any namespace
//! was made from it.

use std::collections::BTreeSet;
use std::time::Duration;

use berth_image::gc::GcOptions;
use berth_image::platform::Platform;
use berth_image::store::ImageError;

use super::ApiError;
use crate::container::{Engine, Status};

fn image_err(context: &str) -> impl FnOnce(ImageError) -> ApiError + '_ {
    move |e| ApiError::Image {
        context: context.to_string(),
        source: Box::new(e),
    }
}

/// How many containers the namespace has, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerCounts {
    /// All.
    pub total: usize,
    /// Running or restarting.
    pub running: usize,
    /// Paused.
    pub paused: usize,
    /// Created or exited.
    pub stopped: usize,
}

/// One image's disk use.
#[derive(Debug, Clone)]
pub struct ImageUsage {
    /// The record's name.
    pub name: String,
    /// The image ID.
    pub id: String,
    /// Its size.
    pub size: u64,
    /// Whether a container (of any namespace) was made from it.
    pub active: bool,
}

/// One container's disk use (its writable layer).
#[derive(Debug, Clone)]
pub struct ContainerUsage {
    /// The ID.
    pub id: String,
    /// The name.
    pub name: String,
    /// Its writable layer's size.
    pub size: u64,
    /// Its status.
    pub status: Status,
}

/// `system df`'s data.
#[derive(Debug, Clone, Default)]
pub struct DiskUsage {
    /// Every image record (an image under two names is listed twice).
    pub images: Vec<ImageUsage>,
    /// The namespace's containers.
    pub containers: Vec<ContainerUsage>,
    /// Snapshot directories interrupted removals left.
    pub trash_count: usize,
    /// Their size (all of it reclaimable by GC).
    pub trash_size: u64,
}

/// What `system prune` removed.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    /// Containers (IDs).
    pub containers: Vec<String>,
    /// Networks.
    pub networks: Vec<String>,
    /// Leaked network state (pins, attachments).
    pub leaked: Vec<String>,
    /// Image records untagged.
    pub images: Vec<String>,
    /// Blobs deleted.
    pub removed_blobs: Vec<String>,
    /// Bytes freed (containers' layers and GC).
    pub freed: u64,
}

impl Engine {
    /// The image IDs that containers of every namespace were made from.
    pub fn images_in_use(&self) -> Result<BTreeSet<String>, ApiError> {
        Ok(self
            .list_all()?
            .into_iter()
            .map(|c| c.record.image_id)
            .collect())
    }

    /// The namespace's containers, by state.
    pub fn container_counts(&self) -> Result<ContainerCounts, ApiError> {
        let mut n = ContainerCounts::default();
        for c in self.list()? {
            n.total += 1;
            match self.state(&c).status {
                Status::Running | Status::Restarting => n.running += 1,
                Status::Paused => n.paused += 1,
                Status::Created | Status::Exited => n.stopped += 1,
            }
        }
        Ok(n)
    }

    /// The disk use of images, this namespace's containers and trash.
    pub fn disk_usage(&self) -> Result<DiskUsage, ApiError> {
        let store = self.store();
        let used = self.images_in_use()?;
        let host = Platform::host();
        let mut du = DiskUsage::default();
        for rec in store.list().map_err(image_err("listing images"))? {
            let Ok(img) = store.resolve(&rec, &host) else {
                continue;
            };
            let id = img.id().to_string();
            du.images.push(ImageUsage {
                name: rec.name.clone(),
                active: used.contains(&id),
                size: img.size(),
                id,
            });
        }
        for c in self.list()? {
            du.containers.push(ContainerUsage {
                size: store
                    .snapshotter()
                    .usage(&crate::bundle::snapshot_key(c.id()))
                    .map(|u| u.size)
                    .unwrap_or(0),
                status: self.state(&c).status,
                id: c.id().to_string(),
                name: c.name().to_string(),
            });
        }
        let trash = store
            .snapshotter()
            .trash()
            .map_err(|e| image_err("listing snapshot trash")(e.into()))?;
        du.trash_count = trash.len();
        du.trash_size = trash.iter().map(|t| t.size).sum();
        Ok(du)
    }

    /// Removes the namespace's stopped containers, the networks berth made
    /// that no container uses, leaked network state, the dangling (or with
    /// `all` every unused) image records, then collects garbage.
    pub fn system_prune(&self, all: bool) -> Result<PruneReport, ApiError> {
        let mut r = PruneReport::default();
        for c in self.list()? {
            if self.state(&c).is_active() {
                continue;
            }
            r.freed += self
                .store()
                .snapshotter()
                .usage(&crate::bundle::snapshot_key(c.id()))
                .map(|u| u.size)
                .unwrap_or(0);
            self.remove(&c, false)?;
            r.containers.push(c.id().to_string());
        }
        r.networks = self.network_prune()?;
        r.leaked = self.remove_leaked_networks()?;
        self.gc_networks()?;
        let store = self.store();
        let used = self.images_in_use()?;
        let host = Platform::host();
        for rec in store.list().map_err(image_err("listing images"))? {
            if !(all || super::images::is_dangling(&rec.name)) {
                continue;
            }
            let in_use = store
                .resolve(&rec, &host)
                .map(|img| used.contains(&img.id().to_string()))
                .unwrap_or(false);
            if in_use {
                continue;
            }
            store
                .meta()
                .delete_image(&rec.name)
                .map_err(|e| image_err("untagging an image")(e.into()))?;
            r.images.push(rec.name);
        }
        let report = store
            .gc(&GcOptions {
                ingest_max_age: Duration::from_secs(3600),
                dry_run: false,
            })
            .map_err(image_err("collecting garbage"))?;
        r.removed_blobs = report.removed_blobs.iter().map(|d| d.to_string()).collect();
        r.freed += report.bytes_freed;
        Ok(r)
    }
}
