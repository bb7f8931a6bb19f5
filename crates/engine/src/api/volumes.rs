//! Volumes of the engine's namespace: create, list, inspect, remove and
//! prune, with "in use" read from the namespace's container records.

use std::collections::BTreeMap;
use std::path::Path;

use super::ApiError;
use crate::container::Engine;
use crate::volumes::{Volume, VolumeError};

/// A volume to make.
#[derive(Debug, Clone, Default)]
pub struct VolumeCreateRequest {
    /// The name; a random one when None.
    pub name: Option<String>,
    /// The driver; only `local` (the default when empty).
    pub driver: String,
    /// `KEY=VALUE` (or `KEY`) labels.
    pub labels: Vec<String>,
}

/// What a prune removed.
#[derive(Debug, Clone, Default)]
pub struct VolumePruneReport {
    /// The volumes removed.
    pub removed: Vec<String>,
    /// The bytes their files held.
    pub freed: u64,
}

/// The bytes of the files under `p` (not following symlinks).
fn disk_usage(p: &Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !md.is_dir() {
        return md.len();
    }
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| disk_usage(&e.path())).sum())
        .unwrap_or(0)
}

impl Engine {
    /// Makes a volume (an existing name is an error).
    pub fn volume_create(&self, r: &VolumeCreateRequest) -> Result<Volume, ApiError> {
        if !(r.driver.is_empty() || r.driver == "local") {
            return Err(ApiError::Invalid(format!(
                "volume driver {:?} is not supported: only local",
                r.driver
            )));
        }
        let mut labels = BTreeMap::new();
        for l in &r.labels {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            if k.is_empty() {
                return Err(ApiError::Invalid(format!(
                    "invalid label {l:?}: expected KEY=VALUE"
                )));
            }
            labels.insert(k.to_string(), v.to_string());
        }
        let name = match &r.name {
            Some(n) => n.clone(),
            None => crate::volumes::random_name()?,
        };
        Ok(self.volumes().create(&name, labels, false, true)?.0)
    }

    /// Every volume of the namespace.
    pub fn volume_list(&self) -> Result<Vec<Volume>, ApiError> {
        Ok(self.volumes().list()?)
    }

    /// Volume `name`.
    pub fn volume_get(&self, name: &str) -> Result<Volume, ApiError> {
        Ok(self.volumes().get(name)?)
    }

    /// Removes volume `name` unless a container of the namespace mounts
    /// it; with `force` a missing one is no error. True if it was removed.
    pub fn volume_remove(&self, name: &str, force: bool) -> Result<bool, ApiError> {
        let used = self.volumes_in_use()?;
        match self.volumes().remove(name, &used) {
            Ok(()) => Ok(true),
            Err(VolumeError::NotFound(_)) if force => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the volumes no container of the namespace mounts: the
    /// anonymous ones, or with `all` the named ones too.
    pub fn volume_prune(&self, all: bool) -> Result<VolumePruneReport, ApiError> {
        let used = self.volumes_in_use()?;
        let store = self.volumes();
        let sizes: BTreeMap<String, u64> = store
            .list()?
            .into_iter()
            .map(|v| (v.name, disk_usage(&v.mountpoint)))
            .collect();
        let removed = store.prune(&used, all)?;
        let freed = removed.iter().filter_map(|n| sizes.get(n)).sum();
        Ok(VolumePruneReport { removed, freed })
    }
}
