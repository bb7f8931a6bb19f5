//! The image store: one handle over the content store, the metadata DB, the
//! snapshotter and the registry client. `berth`'s image commands are thin
//! calls into this.
//!
//! Invariants:
//! - An image record is written only after everything it names (index,
//!   manifest, config, layer blobs, layer snapshots) is committed, so a
//!   killed pull never leaves a record that points at nothing.
//! - A pull takes one lease naming every blob and extraction snapshot it will
//!   write, before writing any, so a concurrent GC cannot remove them before
//!   the record exists; the record's write drops the lease in the same
//!   transaction.
//! - The snapshotter chosen on first use (overlay when the filesystem can,
//!   else native) is recorded in `ROOT/snapshotter` and kept.
//! - Store data is only ever added by a pull; removing is `rmi`, `prune` and GC.
//! - The root, `content/` and `snapshots/` are 0700 (see `private`);
//!   opening a store closes them if they are more open.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::reference::Reference;
use chrono::Utc;

use crate::content::{ContentError, ContentStore};
use crate::digest::{chain_ids, Digest};
use crate::manifest::{self, ImageConfig, Index, Manifest};
use crate::meta::{self, ImageRecord, MetaDb};
use crate::platform::Platform;
use crate::registry::{Client, RegistryError, RegistryOptions, Repository};
use crate::snapshot::native::NativeSnapshotter;
use crate::snapshot::overlay::OverlaySnapshotter;
use crate::snapshot::{SnapshotError, Snapshotter};
use crate::unpack::{self, Compression, UnpackOptions, WhiteoutMode};

/// How many layers a pull fetches at once.
const PARALLEL_LAYERS: usize = 4;

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// image not known locally
    #[error("image not known: {0}")]
    NotFound(String),
    /// A reference that does not parse.
    #[error("invalid image reference {0:?}: {1}")]
    InvalidReference(String, String),
    /// An ambiguous short ID.
    #[error("image ID prefix {0:?} matches several images: {1}")]
    Ambiguous(String, String),
    /// rmi of an image that other names share, without force.
    #[error("{0}")]
    Conflict(String),
    /// The index has no manifest for the platform.
    #[error("{reference}: no image for platform {platform} in the index (it has: {available})")]
    NoPlatform {
        /// The image.
        reference: String,
        /// The wanted platform.
        platform: String,
        /// What the index offers.
        available: String,
    },
    /// Unknown media type.
    #[error("{0}: unsupported media type {1:?}")]
    MediaType(String, String),
    /// A layer whose uncompressed digest is not the config's diff ID.
    #[error(
        "layer {layer}: uncompressed content is {actual}, but the image config says {expected}"
    )]
    DiffIdMismatch {
        /// The layer blob.
        layer: Digest,
        /// From the config.
        expected: Digest,
        /// What was unpacked.
        actual: Digest,
    },
    /// A descriptor whose size is not the size of the blob it names.
    #[error("{what} {digest}: its descriptor gives its size as {expected} bytes, but the blob has {actual}")]
    SizeMismatch {
        /// What the blob is: "layer", "config", "manifest".
        what: &'static str,
        /// The blob.
        digest: Digest,
        /// The size the descriptor gives.
        expected: u64,
        /// The blob's real size.
        actual: u64,
    },
    /// A manifest whose layer count differs from the config's diff IDs.
    #[error("{0}: the manifest has {1} layers but the config lists {2} diff IDs")]
    LayerCount(String, usize, usize),
    /// Registry error.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Content store error.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// Metadata DB error.
    #[error(transparent)]
    Meta(#[from] meta::MetaError),
    /// Snapshotter error.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Unpack error.
    #[error("layer {layer}: {source}")]
    Unpack {
        /// The layer blob.
        layer: Digest,
        /// What went wrong.
        source: unpack::UnpackError,
    },
    /// A document that does not parse.
    #[error(transparent)]
    Parse(#[from] manifest::ParseError),
    /// Archive error.
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    /// GC error.
    #[error(transparent)]
    Gc(#[from] crate::gc::GcError),
    /// Check error.
    #[error(transparent)]
    Check(#[from] crate::check::CheckError),
    /// Other I/O, naming what was being done.
    #[error("{0}: {1}")]
    Io(String, io::Error),
}

/// Which snapshotter to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotterKind {
    /// overlayfs when the root's filesystem supports it, else native.
    Auto,
    /// overlayfs.
    Overlay,
    /// Copying.
    Native,
}

/// Options of an image store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Root dir (`/var/lib/berth` by default).
    pub root: PathBuf,
    /// Registry client options.
    pub registry: RegistryOptions,
    /// Snapshotter choice.
    pub snapshotter: SnapshotterKind,
    /// Unpack limits and privileges.
    pub unpack: UnpackOptions,
}

impl StoreOptions {
    /// Defaults for `root`.
    pub fn new(root: &Path) -> StoreOptions {
        StoreOptions {
            root: root.to_path_buf(),
            registry: RegistryOptions::default(),
            snapshotter: SnapshotterKind::Auto,
            unpack: UnpackOptions::for_current_process(),
        }
    }
}

/// What a pull reports as it goes, for progress bars.
pub trait PullProgress: Send + Sync {
    /// A layer will be fetched (or was found present: `present`).
    fn layer(&self, digest: &Digest, size: u64, present: bool);
    /// `n` more bytes of the layer arrived.
    fn advance(&self, digest: &Digest, n: u64);
    /// The layer is stored and unpacked.
    fn done(&self, digest: &Digest);
}

/// A progress sink that shows nothing.
#[derive(Debug)]
pub struct NoProgress;
impl PullProgress for NoProgress {
    fn layer(&self, _: &Digest, _: u64, _: bool) {}
    fn advance(&self, _: &Digest, _: u64) {}
    fn done(&self, _: &Digest) {}
}

/// A local image, resolved to one platform manifest.
#[derive(Debug, Clone)]
pub struct LocalImage {
    /// The record.
    pub record: ImageRecord,
    /// The platform manifest's digest.
    pub manifest_digest: Digest,
    /// The manifest.
    pub manifest: Manifest,
    /// The config digest: the image ID.
    pub config_digest: Digest,
    /// The config.
    pub config: ImageConfig,
    /// The raw config JSON.
    pub config_json: serde_json::Value,
}

impl LocalImage {
    /// The image ID (config digest).
    pub fn id(&self) -> &Digest {
        &self.config_digest
    }
    /// Sum of the config and layer blob sizes.
    pub fn size(&self) -> u64 {
        self.manifest.config.size + self.manifest.layers.iter().map(|l| l.size).sum::<u64>()
    }
    /// The chain ID of the top layer: the snapshot to run from.
    pub fn top_chain_id(&self) -> Option<Digest> {
        chain_ids(&self.config.rootfs.diff_ids).pop()
    }
}

/// Normalises a user's image reference: `busybox` becomes
/// `docker.io/library/busybox:latest`.
pub fn normalize(reference: &str) -> Result<Reference, ImageError> {
    reference
        .parse::<Reference>()
        .map_err(|e| ImageError::InvalidReference(reference.to_string(), e.to_string()))
}

/// The store's metadata kept open for this process; see [`ImageStore::hold`].
#[derive(Debug)]
#[must_use = "the metadata is released when the hold drops"]
pub struct StoreHold {
    // Dropped in this order: snapshots first, then the image metadata.
    _snaps: crate::meta::DbHold,
    _meta: crate::meta::DbHold,
}

/// The image store.
#[derive(Debug, Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
    /// The registry client; [`ImageStore::with_registry`] swaps it for one
    /// pull (a CRI pull brings its own credentials) while sharing the rest.
    client: Client,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    content: ContentStore,
    meta: MetaDb,
    snaps: Box<dyn Snapshotter>,
    unpack: UnpackOptions,
}

impl ImageStore {
    /// Opens (creating) a store under `opts.root`.
    pub fn open(opts: StoreOptions) -> Result<ImageStore, ImageError> {
        let root = opts.root.clone();
        // Closed to other users, and closed again if an older berth left
        // them open: they lead to layers (setuid binaries, device nodes).
        crate::private::private_dir(&root, crate::private::ROOT_MODE)
            .map_err(|e| ImageError::Io(format!("creating {}", root.display()), e))?;
        for sub in ["content", "snapshots"] {
            let dir = root.join(sub);
            crate::private::private_dir(&dir, crate::private::DIR_MODE)
                .map_err(|e| ImageError::Io(format!("creating {}", dir.display()), e))?;
        }
        let content = ContentStore::open(&root.join("content"))?;
        let meta = MetaDb::open(&root.join("meta.redb"))?;
        let snap_root = |name: &str| root.join("snapshots").join(name);
        let choice = root.join("snapshotter");
        let recorded = match std::fs::read_to_string(&choice).as_deref().map(str::trim) {
            Ok("overlay") => Some(SnapshotterKind::Overlay),
            Ok("native") => Some(SnapshotterKind::Native),
            _ => None,
        };
        let kind = match (opts.snapshotter, recorded) {
            (SnapshotterKind::Auto, Some(k)) => k,
            (SnapshotterKind::Auto, None) => {
                let dir = snap_root("overlay");
                std::fs::create_dir_all(&dir)
                    .map_err(|e| ImageError::Io(format!("creating {}", dir.display()), e))?;
                let k = if overlay_known_good(&dir) || OverlaySnapshotter::supported(&dir) {
                    SnapshotterKind::Overlay
                } else {
                    SnapshotterKind::Native
                };
                let name = if k == SnapshotterKind::Overlay {
                    "overlay"
                } else {
                    "native"
                };
                std::fs::write(&choice, format!("{name}\n"))
                    .map_err(|e| ImageError::Io(format!("writing {}", choice.display()), e))?;
                k
            }
            (k, _) => k,
        };
        let mut unpack = opts.unpack.clone();
        let snaps: Box<dyn Snapshotter> = match kind {
            SnapshotterKind::Native => {
                unpack.whiteouts = WhiteoutMode::Delete;
                Box::new(NativeSnapshotter::new(&snap_root("native"))?)
            }
            _ => {
                unpack.whiteouts = WhiteoutMode::Overlay;
                Box::new(OverlaySnapshotter::new(&snap_root("overlay"))?)
            }
        };
        let client = Client::new(opts.registry)?;
        Ok(ImageStore {
            inner: Arc::new(Inner {
                root,
                content,
                meta,
                snaps,
                unpack,
            }),
            client,
        })
    }

    /// The root dir.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }
    /// The content store.
    pub fn content(&self) -> &ContentStore {
        &self.inner.content
    }
    /// The metadata DB.
    pub fn meta(&self) -> &MetaDb {
        &self.inner.meta
    }
    /// Keeps the image metadata and the snapshot metadata open and locked for
    /// this process until the hold drops, so a run of operations (making or
    /// removing a container) opens each once. Other processes wait
    /// meanwhile: hold it only for short work.
    pub fn hold(&self) -> Result<StoreHold, ImageError> {
        // Always meta first, then snapshots, so two holders cannot deadlock.
        let meta = self.inner.meta.hold()?;
        let snaps = self.inner.snaps.hold()?;
        Ok(StoreHold {
            _snaps: snaps,
            _meta: meta,
        })
    }
    /// The snapshotter.
    pub fn snapshotter(&self) -> &dyn Snapshotter {
        self.inner.snaps.as_ref()
    }
    /// The registry client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The same store with a registry client of its own, made from `opts`:
    /// content, metadata and snapshots are shared, connections, learned
    /// auth modes and tokens are not (so credentials given for one pull are
    /// never used by another).
    pub fn with_registry(&self, opts: RegistryOptions) -> Result<ImageStore, ImageError> {
        Ok(ImageStore {
            inner: self.inner.clone(),
            client: Client::new(opts)?,
        })
    }

    /// Pulls `reference` for `platform`: fetches the manifest, then every
    /// missing layer in parallel, each streamed through digest check and
    /// decompression straight into its snapshot. Returns the stored image.
    pub fn pull(
        &self,
        reference: &str,
        platform: &Platform,
        progress: &dyn PullProgress,
    ) -> Result<LocalImage, ImageError> {
        let r = normalize(reference)?;
        let name = r.whole();
        let repo = self.client.repository(r.registry(), r.repository());
        let tag_or_digest = r.digest().or(r.tag()).unwrap_or("latest").to_string();
        let lease = format!(
            "pull-{}-{}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or(0)
        );
        let res = self.pull_leased(&repo, &name, &tag_or_digest, platform, progress, &lease);
        if res.is_err() {
            let _ = self.inner.meta.delete_lease(&lease);
        }
        res
    }

    fn pull_leased(
        &self,
        repo: &Repository,
        name: &str,
        reference: &str,
        platform: &Platform,
        progress: &dyn PullProgress,
        lease: &str,
    ) -> Result<LocalImage, ImageError> {
        let inner = &self.inner;
        let (top_bytes, top_type, top_digest) = repo.get_manifest(reference)?;
        let top_type = if top_type.is_empty() || top_type == "application/json" {
            manifest::sniff_media_type(&top_bytes).unwrap_or_default()
        } else {
            top_type
        };
        let (manifest_digest, manifest_bytes, manifest_is_new) = if manifest::is_index(&top_type) {
            let index: Index = manifest::parse("index", &top_digest, &top_bytes)?;
            let entry = index
                .select(platform)
                .ok_or_else(|| ImageError::NoPlatform {
                    reference: name.to_string(),
                    platform: platform.to_string(),
                    available: index
                        .manifests
                        .iter()
                        .filter_map(|d| d.platform.as_ref())
                        .map(|p| match &p.variant {
                            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                            None => format!("{}/{}", p.os, p.architecture),
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            let (bytes, new) = match inner.content.info(&entry.digest)? {
                Some(_) => (
                    inner
                        .content
                        .read_blob(&entry.digest, manifest::MAX_MANIFEST_SIZE)?,
                    false,
                ),
                None => (repo.get_manifest(&entry.digest.to_string())?.0, true),
            };
            check_size("manifest", &entry.digest, entry.size, bytes.len() as u64)?;
            (entry.digest.clone(), bytes, new)
        } else if manifest::is_manifest(&top_type) {
            (top_digest.clone(), top_bytes.clone(), false)
        } else {
            return Err(ImageError::MediaType(name.to_string(), top_type));
        };
        let man: Manifest = manifest::parse("manifest", &manifest_digest, &manifest_bytes)?;

        // The config: small, fetched whole and verified.
        let (config_bytes, config_is_new) = match inner.content.info(&man.config.digest)? {
            Some(_) => (
                inner
                    .content
                    .read_blob(&man.config.digest, manifest::MAX_CONFIG_SIZE)?,
                false,
            ),
            None => (
                repo.get_blob_bytes(&man.config.digest, manifest::MAX_CONFIG_SIZE)?,
                true,
            ),
        };
        check_size(
            "config",
            &man.config.digest,
            man.config.size,
            config_bytes.len() as u64,
        )?;
        let config: ImageConfig = manifest::parse("config", &man.config.digest, &config_bytes)?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != man.layers.len() {
            return Err(ImageError::LayerCount(
                name.to_string(),
                man.layers.len(),
                diff_ids.len(),
            ));
        }
        // One lease names everything this pull writes, before it writes any
        // of it, so a concurrent GC keeps it all.
        let keys = extract_keys(diff_ids);
        let mut content = vec![
            top_digest.clone(),
            manifest_digest.clone(),
            man.config.digest.clone(),
        ];
        content.extend(man.layers.iter().map(|l| l.digest.clone()));
        inner.meta.create_lease_with(
            lease,
            Some(Duration::from_secs(24 * 3600)),
            &content,
            &keys,
        )?;
        if manifest_is_new {
            inner
                .content
                .put_bytes(&manifest_bytes, Some(&manifest_digest))?;
        }
        if config_is_new {
            inner
                .content
                .put_bytes(&config_bytes, Some(&man.config.digest))?;
        }
        self.fetch_layers(Some(repo), &man, diff_ids, &keys, progress)?;

        // Everything is committed: now the blobs of the top document and the record.
        if inner.content.info(&top_digest)?.is_none() {
            inner.content.put_bytes(&top_bytes, Some(&top_digest))?;
        }
        let now = Utc::now();
        let record = ImageRecord {
            name: name.to_string(),
            target: meta::Descriptor {
                media_type: top_type,
                digest: top_digest,
                size: top_bytes.len() as u64,
            },
            created: now,
            updated: now,
            labels: BTreeMap::new(),
        };
        inner.meta.put_image_release(&record, lease)?;
        self.resolve(&record, platform)
    }

    /// Makes sure every layer of `man` is in the content store (when `repo` is
    /// given) and unpacked into its snapshot. Layers run side by side; each
    /// commits after its parent.
    fn fetch_layers(
        &self,
        repo: Option<&Repository>,
        man: &Manifest,
        diff_ids: &[Digest],
        keys: &[String],
        progress: &dyn PullProgress,
    ) -> Result<(), ImageError> {
        let chains = chain_ids(diff_ids);
        let n = man.layers.len();
        let parallel = self.inner.snaps.parallel_layers();
        // committed[i]: layer i's snapshot exists (or failed: Err).
        let state = Arc::new((Mutex::new(vec![None::<bool>; n]), Condvar::new()));
        let mut jobs = Vec::new();
        // One listing instead of a metadata lookup per layer.
        let committed: std::collections::HashSet<String> = self
            .inner
            .snaps
            .list()?
            .into_iter()
            .filter(|i| i.kind == crate::snapshot::Kind::Committed)
            .map(|i| i.key)
            .collect();
        for (i, (chain, layer)) in chains.iter().zip(&man.layers).enumerate() {
            let present_snap = committed.contains(&chain.to_string());
            // A stored blob is checked against the manifest here; a fetched
            // one by its ingest, which expects the manifest's size.
            let stored = self.inner.content.info(&layer.digest)?;
            if let Some(actual) = stored {
                check_size("layer", &layer.digest, layer.size, actual)?;
            }
            let present_blob = stored.is_some();
            progress.layer(&layer.digest, layer.size, present_snap && present_blob);
            if present_snap && present_blob {
                state.0.lock().expect("layer state")[i] = Some(true);
                progress.done(&layer.digest);
            } else {
                jobs.push((i, present_snap));
            }
        }
        if jobs.is_empty() {
            return Ok(());
        }
        let errors: Mutex<Vec<ImageError>> = Mutex::new(Vec::new());
        let next = Mutex::new(jobs.into_iter());
        let workers = if parallel { PARALLEL_LAYERS } else { 1 };
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let Some((i, present_snap)) = next.lock().expect("job queue").next() else {
                        break;
                    };
                    let r = self.fetch_one(
                        repo,
                        man,
                        diff_ids,
                        &chains,
                        &keys[i],
                        i,
                        present_snap,
                        &state,
                        progress,
                    );
                    let mut st = state.0.lock().expect("layer state");
                    st[i] = Some(r.is_ok());
                    state.1.notify_all();
                    drop(st);
                    match r {
                        Ok(()) => progress.done(&man.layers[i].digest),
                        Err(e) => errors.lock().expect("errors").push(e),
                    }
                });
            }
        });
        let mut errors = errors.into_inner().expect("errors");
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.remove(0))
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn fetch_one(
        &self,
        repo: Option<&Repository>,
        man: &Manifest,
        diff_ids: &[Digest],
        chains: &[Digest],
        extract_key: &str,
        i: usize,
        present_snap: bool,
        state: &Arc<(Mutex<Vec<Option<bool>>>, Condvar)>,
        progress: &dyn PullProgress,
    ) -> Result<(), ImageError> {
        let inner = &self.inner;
        let layer = &man.layers[i];
        let chain = chains[i].to_string();
        let parent = (i > 0).then(|| chains[i - 1].to_string());
        let compression = Compression::from_media_type(&layer.media_type).ok_or_else(|| {
            ImageError::MediaType(layer.digest.to_string(), layer.media_type.clone())
        })?;

        // The source: the stored blob, or the registry teed into an ingest.
        let have_blob = inner.content.info(&layer.digest)?.is_some();
        let mut ingest = None;
        let mut source: Box<dyn Read + Send + '_> = if have_blob {
            let f = inner.content.open_blob(&layer.digest)?;
            Box::new(f)
        } else {
            let repo =
                repo.ok_or_else(|| ImageError::NotFound(format!("blob {}", layer.digest)))?;
            let ing = inner.content.ingest(&layer.digest, Some(layer.size))?;
            let offset = ing.offset();
            if offset > 0 {
                tracing::debug!(layer = %layer.digest, offset, "resuming the layer download");
            }
            progress.advance(&layer.digest, offset);
            let partial = ing.partial()?;
            let net = repo.open_blob(&layer.digest, Some(layer.size), offset)?;
            let shared = Arc::new(Mutex::new(ing));
            ingest = Some(shared.clone());
            Box::new(partial.chain(Tee {
                inner: net,
                sink: shared,
                progress,
                digest: &layer.digest,
            }))
        };

        // Unpack while the bytes stream in, unless the snapshot is there.
        let mut key = None;
        let unpacked = if present_snap {
            io::copy(&mut source, &mut io::sink())
                .map_err(|e| ImageError::Io(format!("fetching layer {}", layer.digest), e))?;
            None
        } else {
            if !inner.snaps.parallel_layers() {
                wait_committed(state, i)?;
            }
            let k = extract_key.to_string();
            let dir = inner.snaps.prepare_layer(&k, parent.as_deref())?;
            key = Some(k);
            let res = unpack::apply_layer(&dir, &mut source, compression, &inner.unpack)
                .map_err(|source| ImageError::Unpack {
                    layer: layer.digest.clone(),
                    source,
                })
                .and_then(|stats| {
                    // Whatever follows the compressed stream still counts for the digest.
                    io::copy(&mut source, &mut io::sink()).map_err(|e| {
                        ImageError::Io(format!("fetching layer {}", layer.digest), e)
                    })?;
                    Ok(stats)
                });
            match res {
                Ok(s) => Some(s),
                Err(e) => {
                    drop(source);
                    let _ = inner.snaps.remove(key.as_deref().unwrap_or_default());
                    // A layer refused for what it holds is refused for good:
                    // its partial download is no use to a later pull.
                    if matches!(&e, ImageError::Unpack { source, .. } if source.is_refusal()) {
                        if let Some(ing) = ingest.take().and_then(Arc::into_inner) {
                            let ing = ing.into_inner().unwrap_or_else(|p| p.into_inner());
                            if let Err(err) = ing.abort() {
                                tracing::warn!(layer = %layer.digest, "dropping the refused layer's download: {err}");
                            }
                        }
                    }
                    return Err(e);
                }
            }
        };
        drop(source);
        let cleanup = |key: &Option<String>| {
            if let Some(k) = key {
                let _ = inner.snaps.remove(k);
            }
        };

        // The blob is complete: verify and commit it.
        if let Some(ing) = ingest {
            let ing = Arc::try_unwrap(ing)
                .map_err(|_| {
                    ImageError::Io(
                        format!("layer {}", layer.digest),
                        io::Error::other("ingest still shared"),
                    )
                })?
                .into_inner()
                .expect("ingest lock");
            if let Err(e) = ing.commit() {
                cleanup(&key);
                return Err(e.into());
            }
        }
        if let Some(stats) = unpacked {
            if stats.diff_id != diff_ids[i] {
                cleanup(&key);
                return Err(ImageError::DiffIdMismatch {
                    layer: layer.digest.clone(),
                    expected: diff_ids[i].clone(),
                    actual: stats.diff_id,
                });
            }
            if i > 0 {
                if let Err(e) = wait_committed(state, i) {
                    cleanup(&key);
                    return Err(e);
                }
            }
            let k = key.clone().unwrap_or_default();
            match inner.snaps.commit(&chain, &k) {
                Ok(()) => {}
                Err(SnapshotError::AlreadyExists(_)) => cleanup(&key),
                Err(e) => {
                    cleanup(&key);
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Resolves a user's name for a local image: a full or short reference
    /// (`busybox`), an image ID or its prefix, or `NAME@DIGEST`.
    pub fn lookup(&self, name: &str) -> Result<ImageRecord, ImageError> {
        let meta = &self.inner.meta;
        if let Ok(r) = normalize(name) {
            if let Some(rec) = meta.get_image(&r.whole())? {
                return Ok(rec);
            }
        }
        if let Some(rec) = meta.get_image(name)? {
            return Ok(rec);
        }
        // An ID (config digest) or prefix.
        let hexpart = name.strip_prefix("sha256:").unwrap_or(name);
        if hexpart.len() >= 3 && hexpart.bytes().all(|b| b.is_ascii_hexdigit()) {
            let host = Platform::host();
            let mut found: Vec<ImageRecord> = Vec::new();
            for rec in meta.list_images()? {
                if let Ok(img) = self.resolve(&rec, &host) {
                    if img.config_digest.hex().starts_with(hexpart)
                        || rec.target.digest.hex().starts_with(hexpart)
                    {
                        found.push(rec);
                    }
                }
            }
            let mut ids: Vec<&Digest> = found.iter().map(|r| &r.target.digest).collect();
            ids.dedup();
            if let Some(first) = found.first() {
                if found.iter().all(|r| r.target.digest == first.target.digest) {
                    return Ok(first.clone());
                }
                return Err(ImageError::Ambiguous(
                    name.to_string(),
                    found
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                ));
            }
        }
        Err(ImageError::NotFound(name.to_string()))
    }

    /// A local image by name, resolved for `platform`.
    pub fn get(&self, name: &str, platform: &Platform) -> Result<LocalImage, ImageError> {
        let rec = self.lookup(name)?;
        self.resolve(&rec, platform)
    }

    /// Reads the manifest and config of a record from the content store.
    pub fn resolve(
        &self,
        rec: &ImageRecord,
        platform: &Platform,
    ) -> Result<LocalImage, ImageError> {
        let c = &self.inner.content;
        let mut digest = rec.target.digest.clone();
        let mut bytes = c.read_blob(&digest, manifest::MAX_MANIFEST_SIZE)?;
        let mut mt = rec.target.media_type.clone();
        if mt.is_empty() {
            mt = manifest::sniff_media_type(&bytes).unwrap_or_default();
        }
        if manifest::is_index(&mt) {
            let index: Index = manifest::parse("index", &digest, &bytes)?;
            // Prefer the platform; else the first entry present locally.
            let entry = index
                .select(platform)
                .filter(|d| matches!(c.info(&d.digest), Ok(Some(_))))
                .or_else(|| {
                    index
                        .manifests
                        .iter()
                        .find(|d| matches!(c.info(&d.digest), Ok(Some(_))))
                })
                .ok_or_else(|| ImageError::NoPlatform {
                    reference: rec.name.clone(),
                    platform: platform.to_string(),
                    available: "none stored locally".into(),
                })?;
            digest = entry.digest.clone();
            bytes = c.read_blob(&digest, manifest::MAX_MANIFEST_SIZE)?;
        }
        let man: Manifest = manifest::parse("manifest", &digest, &bytes)?;
        let cbytes = c.read_blob(&man.config.digest, manifest::MAX_CONFIG_SIZE)?;
        let config: ImageConfig = manifest::parse("config", &man.config.digest, &cbytes)?;
        let config_json: serde_json::Value =
            serde_json::from_slice(&cbytes).map_err(|source| manifest::ParseError {
                what: "config",
                digest: man.config.digest.to_string(),
                source,
            })?;
        Ok(LocalImage {
            record: rec.clone(),
            manifest_digest: digest,
            config_digest: man.config.digest.clone(),
            manifest: man,
            config,
            config_json,
        })
    }

    /// Unpacks a local image's layers from the content store into snapshots,
    /// where missing (after `load` or `import`, or a GC'd snapshot).
    pub fn ensure_unpacked(&self, img: &LocalImage) -> Result<(), ImageError> {
        let lease = format!(
            "unpack-{}-{}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or(0)
        );
        let keys = extract_keys(&img.config.rootfs.diff_ids);
        self.inner.meta.create_lease_with(
            &lease,
            Some(Duration::from_secs(24 * 3600)),
            &[],
            &keys,
        )?;
        let r = self.fetch_layers(
            None,
            &img.manifest,
            &img.config.rootfs.diff_ids,
            &keys,
            &NoProgress,
        );
        let _ = self.inner.meta.delete_lease(&lease);
        r
    }

    /// What to export for a record: its target, or, for an index with
    /// platforms that are not stored whole here, a new index of the stored
    /// ones (written to the content store; GC collects it later).
    pub fn exportable_target(&self, rec: &ImageRecord) -> Result<meta::Descriptor, ImageError> {
        let c = &self.inner.content;
        if !manifest::is_index(&rec.target.media_type) {
            return Ok(rec.target.clone());
        }
        let bytes = c.read_blob(&rec.target.digest, manifest::MAX_MANIFEST_SIZE)?;
        let mut index: Index = manifest::parse("index", &rec.target.digest, &bytes)?;
        let whole = |d: &manifest::Descriptor| -> Result<bool, ImageError> {
            if c.info(&d.digest)?.is_none() {
                return Ok(false);
            }
            let b = c.read_blob(&d.digest, manifest::MAX_MANIFEST_SIZE)?;
            let m: Manifest = match manifest::parse("manifest", &d.digest, &b) {
                Ok(m) => m,
                Err(_) => return Ok(false),
            };
            for blob in m.layers.iter().chain(std::iter::once(&m.config)) {
                if c.info(&blob.digest)?.is_none() {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        let mut keep = Vec::new();
        for d in &index.manifests {
            if whole(d)? {
                keep.push(d.clone());
            }
        }
        if keep.len() == index.manifests.len() {
            return Ok(rec.target.clone());
        }
        if keep.is_empty() {
            return Err(ImageError::NotFound(format!(
                "{}: no platform of this index is stored whole",
                rec.name
            )));
        }
        index.manifests = keep;
        let body = serde_json::to_vec(&index).map_err(|source| manifest::ParseError {
            what: "index",
            digest: rec.target.digest.to_string(),
            source,
        })?;
        let digest = c.put_bytes(&body, None)?;
        Ok(meta::Descriptor {
            media_type: rec.target.media_type.clone(),
            digest,
            size: body.len() as u64,
        })
    }

    /// Every local image record.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        Ok(self.inner.meta.list_images()?)
    }

    /// Gives the image `source` the extra name `target`.
    pub fn tag(&self, source: &str, target: &str) -> Result<ImageRecord, ImageError> {
        let rec = self.lookup(source)?;
        let t = normalize(target)?;
        let now = Utc::now();
        let new = ImageRecord {
            name: t.whole(),
            target: rec.target.clone(),
            created: now,
            updated: now,
            labels: rec.labels.clone(),
        };
        self.inner.meta.put_image(&new)?;
        Ok(new)
    }

    /// Removes names. A name removes only that name; an ID removes every name
    /// of that image, which needs `force` when there are several. Returns the
    /// removed names. Content goes at the next GC, which `rmi` runs.
    pub fn remove(&self, name: &str, force: bool) -> Result<Vec<String>, ImageError> {
        let meta = &self.inner.meta;
        let by_name = normalize(name)
            .ok()
            .and_then(|r| meta.get_image(&r.whole()).ok().flatten())
            .or_else(|| meta.get_image(name).ok().flatten());
        if let Some(rec) = by_name {
            meta.delete_image(&rec.name)?;
            return Ok(vec![rec.name]);
        }
        let rec = self.lookup(name)?;
        let same: Vec<ImageRecord> = meta
            .list_images()?
            .into_iter()
            .filter(|r| r.target.digest == rec.target.digest)
            .collect();
        if same.len() > 1 && !force {
            return Err(ImageError::Conflict(format!(
                "unable to delete image {name}: it is referenced by several names ({}); name one, or use --force",
                same.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        let mut out = Vec::new();
        for r in same {
            meta.delete_image(&r.name)?;
            out.push(r.name);
        }
        Ok(out)
    }

    /// Runs mark-and-sweep GC. Leases of pulls whose process is gone (a
    /// killed `berth`) are dropped first, so what they protected (an
    /// extraction snapshot, say) can go too; their ingest files stay for a
    /// resume until they age out.
    pub fn gc(&self, opts: &crate::gc::GcOptions) -> Result<crate::gc::GcReport, ImageError> {
        for lease in self.inner.meta.list_leases()? {
            if let Some(pid) = lease_pid(&lease.id) {
                if !process_alive(pid) {
                    self.inner.meta.delete_lease(&lease.id)?;
                }
            }
        }
        Ok(crate::gc::collect(
            &self.inner.meta,
            &self.inner.content,
            self.inner.snaps.as_ref(),
            opts,
        )?)
    }

    /// Verifies the store. A lease of a pull whose process is gone protects
    /// nothing (GC drops it), so what only it names shows as orphaned.
    pub fn check(&self) -> Result<crate::check::CheckReport, ImageError> {
        Ok(crate::check::check(
            &self.inner.meta,
            &self.inner.content,
            self.inner.snaps.as_ref(),
            &|l| lease_pid(&l.id).is_none_or(process_alive),
        )?)
    }

    /// Pushes local image `name` to `destination` (default: its own name).
    /// Blobs the registry has are skipped; blobs from another repository of
    /// the same registry are mounted across.
    pub fn push(
        &self,
        name: &str,
        destination: Option<&str>,
        progress: &dyn PullProgress,
    ) -> Result<Digest, ImageError> {
        let rec = self.lookup(name)?;
        let dest = normalize(destination.unwrap_or(&rec.name))?;
        let repo = self.client.repository(dest.registry(), dest.repository());
        let c = &self.inner.content;
        let top = c.read_blob(&rec.target.digest, manifest::MAX_MANIFEST_SIZE)?;
        // Manifests to push: the platform manifests present (for an index), then the top.
        let mut manifests: Vec<(Digest, String, Vec<u8>)> = Vec::new();
        if manifest::is_index(&rec.target.media_type) {
            let index: Index = manifest::parse("index", &rec.target.digest, &top)?;
            for d in &index.manifests {
                if c.info(&d.digest)?.is_some() {
                    let b = c.read_blob(&d.digest, manifest::MAX_MANIFEST_SIZE)?;
                    manifests.push((d.digest.clone(), d.media_type.clone(), b));
                }
            }
        } else {
            manifests.push((
                rec.target.digest.clone(),
                rec.target.media_type.clone(),
                top.clone(),
            ));
        }
        // Other repositories of the same registry this image came from, for mounts.
        let src = normalize(&rec.name)?;
        let mount_from = (src.registry() == dest.registry()
            && src.repository() != dest.repository())
        .then(|| src.repository().to_string());
        for (d, _, bytes) in &manifests {
            let man: Manifest = manifest::parse("manifest", d, bytes)?;
            for blob in man.layers.iter().chain(std::iter::once(&man.config)) {
                progress.layer(&blob.digest, blob.size, false);
                if repo.blob_exists(&blob.digest)?.is_some() {
                    progress.done(&blob.digest);
                    continue;
                }
                if let Some(from) = &mount_from {
                    if repo.mount_blob(&blob.digest, from)? {
                        progress.done(&blob.digest);
                        continue;
                    }
                }
                let mut f = c.open_blob(&blob.digest)?;
                repo.push_blob(&blob.digest, blob.size, &mut f)?;
                progress.advance(&blob.digest, blob.size);
                progress.done(&blob.digest);
            }
        }
        let tag = dest.tag().unwrap_or("latest").to_string();
        if manifest::is_index(&rec.target.media_type) {
            for (d, mt, bytes) in &manifests {
                repo.put_manifest(&d.to_string(), mt, bytes)?;
            }
        }
        Ok(repo.put_manifest(&tag, &rec.target.media_type, &top)?)
    }
}

/// Whether overlayfs is known to work with an upper dir on `dir`'s
/// filesystem without a test mount: the kernel lists overlay, and the
/// filesystem is one overlay supports as upper (ext4, xfs, btrfs, tmpfs).
/// Anything else gets the real test mount.
fn overlay_known_good(dir: &Path) -> bool {
    const EXT4: u64 = 0xef53;
    const XFS: u64 = 0x5846_5342;
    const BTRFS: u64 = 0x9123_683e;
    const TMPFS: u64 = 0x0102_1994;
    let listed = std::fs::read_to_string("/proc/filesystems")
        .map(|f| {
            f.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay"))
        })
        .unwrap_or(false);
    let Ok(st) = rustix::fs::statfs(dir) else {
        return false;
    };
    #[allow(clippy::unnecessary_cast)]
    let t = st.f_type as u64;
    listed && [EXT4, XFS, BTRFS, TMPFS].contains(&t)
}

/// Refuses a descriptor whose size is not its blob's: a manifest that
/// misstates the size of a blob stored here would otherwise be taken, and
/// its image listed with the wrong size.
fn check_size(
    what: &'static str,
    digest: &Digest,
    expected: u64,
    actual: u64,
) -> Result<(), ImageError> {
    if expected == actual {
        Ok(())
    } else {
        Err(ImageError::SizeMismatch {
            what,
            digest: digest.clone(),
            expected,
            actual,
        })
    }
}

/// Keys for the extraction snapshots of a pull, one per layer:
/// `extract-PID-NANOS-I`. GC collects them once no live lease names them.
fn extract_keys(diff_ids: &[Digest]) -> Vec<String> {
    let stamp = Utc::now().timestamp_nanos_opt().unwrap_or(0);
    (0..diff_ids.len())
        .map(|i| format!("extract-{}-{stamp}-{i}", std::process::id()))
        .collect()
}

/// The PID in a lease ID made by this module (`pull-PID-NANOS`, `unpack-PID-NANOS`).
fn lease_pid(id: &str) -> Option<i32> {
    let mut parts = id.splitn(3, '-');
    let kind = parts.next()?;
    if kind != "pull" && kind != "unpack" {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Whether a process with this PID exists (EPERM counts as alive).
fn process_alive(pid: i32) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    !matches!(rustix::process::test_kill_process(pid), Err(e) if e == rustix::io::Errno::SRCH)
}

/// Waits until layer `i`'s parent (layer `i - 1`) is committed.
fn wait_committed(
    state: &Arc<(Mutex<Vec<Option<bool>>>, Condvar)>,
    i: usize,
) -> Result<(), ImageError> {
    if i == 0 {
        return Ok(());
    }
    let (lock, cv) = &**state;
    let mut st = lock.lock().expect("layer state");
    loop {
        match st[i - 1] {
            Some(true) => return Ok(()),
            Some(false) => {
                return Err(ImageError::Io(
                    format!("layer {i}"),
                    io::Error::other("the parent layer failed"),
                ))
            }
            None => st = cv.wait(st).expect("layer state"),
        }
    }
}

/// Copies what it reads into the ingest, reporting progress.
struct Tee<'a, R> {
    inner: R,
    sink: Arc<Mutex<crate::content::Ingest>>,
    progress: &'a dyn PullProgress,
    digest: &'a Digest,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.sink.lock().expect("ingest").write_all(&buf[..n])?;
            self.progress.advance(self.digest, n as u64);
        }
        Ok(n)
    }
}
