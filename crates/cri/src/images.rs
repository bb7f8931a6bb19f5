//! CRI's ImageService over berth's image store. Every call runs the store's
//! synchronous code on tokio's blocking pool.
//!
//! Names are berth's: an image's ID is its config digest (`sha256:…`, what
//! `berth images --no-trunc` prints), its repo tags are the names of the
//! records that point at it, and its repo digests are `REPO@DIGEST` with the
//! digest each record points at (`berth images --digests`, `RepoDigests` of
//! `berth image inspect`). A CRI image is one ID with all its names.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use base64::Engine as _;
use berth_image::gc::GcOptions;
use berth_image::meta::ImageRecord;
use berth_image::platform::Platform;
use berth_image::registry::Credentials;
use berth_image::store::{normalize, ImageError, ImageStore, LocalImage, NoProgress};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};

use crate::errors::{image_status, join_status};
use crate::proto::image_service_server::ImageService;
use crate::proto::{self, AuthConfig};
use crate::server::State;

/// How many images one `StreamImages` message carries.
const STREAM_CHUNK: usize = 256;

/// The ImageService.
#[derive(Debug, Clone)]
pub struct ImageSvc {
    pub(crate) state: Arc<State>,
}

/// Runs `f` with the store on the blocking pool.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| join_status(what, e))?
}

/// The `REGISTRY/REPOSITORY` part of a record's name, if it parses.
fn repo_of(name: &str) -> Option<String> {
    let r = normalize(name).ok()?;
    Some(format!("{}/{}", r.registry(), r.repository()))
}

/// A CRI image from one resolved image and every record pointing at it.
pub(crate) fn cri_image(img: &LocalImage, records: &[ImageRecord]) -> proto::Image {
    let mut tags = BTreeSet::new();
    let mut digests = BTreeSet::new();
    for rec in records {
        let Ok(r) = normalize(&rec.name) else {
            continue;
        };
        if r.tag().is_some() && r.digest().is_none() {
            tags.insert(rec.name.clone());
        }
        digests.insert(format!(
            "{}/{}@{}",
            r.registry(),
            r.repository(),
            rec.target.digest
        ));
    }
    let user = img
        .config
        .config
        .as_ref()
        .and_then(|c| c.user.clone())
        .unwrap_or_default();
    let user = user.split(':').next().unwrap_or("").to_string();
    let (uid, username) = match user.parse::<i64>() {
        Ok(n) => (Some(proto::Int64Value { value: n }), String::new()),
        Err(_) => (None, user),
    };
    let id = img.id().to_string();
    proto::Image {
        id: id.clone(),
        repo_tags: tags.into_iter().collect(),
        repo_digests: digests.into_iter().collect(),
        size: img.size(),
        uid,
        username,
        spec: Some(proto::ImageSpec {
            image: id,
            ..Default::default()
        }),
        pinned: false,
    }
}

/// Every local image, grouped by ID: the image and its records. Records that
/// do not resolve for this host (an index with no platform stored) are left
/// out, as `berth images` shows them without an ID.
fn grouped(
    store: &ImageStore,
) -> Result<BTreeMap<String, (LocalImage, Vec<ImageRecord>)>, ImageError> {
    let host = Platform::host();
    let mut by_id: BTreeMap<String, (LocalImage, Vec<ImageRecord>)> = BTreeMap::new();
    for rec in store.list()? {
        match store.resolve(&rec, &host) {
            Ok(img) => by_id
                .entry(img.id().to_string())
                .or_insert_with(|| (img, Vec::new()))
                .1
                .push(rec),
            Err(e) => debug!(name = %rec.name, error = %e, "image record does not resolve"),
        }
    }
    Ok(by_id)
}

/// The ID of the image a CRI `ImageSpec.image` names: a reference, an ID
/// or unique ID prefix, or `REPO@DIGEST` of any record. None when there is
/// none.
fn find_id(store: &ImageStore, name: &str) -> Result<Option<String>, ImageError> {
    match store.lookup(name) {
        Ok(rec) => {
            return Ok(Some(
                store.resolve(&rec, &Platform::host())?.id().to_string(),
            ))
        }
        Err(ImageError::NotFound(_)) | Err(ImageError::InvalidReference(..)) => {}
        Err(e) => return Err(e),
    }
    if let Ok(r) = normalize(name) {
        if let Some(d) = r.digest() {
            let repo = format!("{}/{}", r.registry(), r.repository());
            for rec in store.list()? {
                if rec.target.digest.to_string() == d
                    && repo_of(&rec.name).as_deref() == Some(&repo)
                {
                    return Ok(Some(
                        store.resolve(&rec, &Platform::host())?.id().to_string(),
                    ));
                }
            }
        }
    }
    Ok(None)
}

/// The spec's image name, or InvalidArgument.
fn spec_name(spec: Option<&proto::ImageSpec>) -> Result<String, Status> {
    match spec.map(|s| s.image.trim()) {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err(Status::invalid_argument(
            "an image spec with a non-empty image is required",
        )),
    }
}

/// The host part of an `AuthConfig.server_address` (`https://h:p/v1/` → `h:p`).
fn server_host(addr: &str) -> &str {
    let rest = addr.split_once("://").map(|(_, r)| r).unwrap_or(addr);
    rest.split('/').next().unwrap_or(rest)
}

/// The credentials of a CRI `AuthConfig`, checked against the registry of
/// the image. Precedence as containerd's: user name and password, then the
/// identity token, then `auth` (base64 of `USER:PASSWORD`), then the
/// registry token.
pub(crate) fn credentials(
    auth: &AuthConfig,
    registry: &str,
) -> Result<Option<Credentials>, Status> {
    if !auth.server_address.is_empty() {
        let host = server_host(&auth.server_address);
        let same = host == registry
            || (registry == "docker.io"
                && matches!(host, "index.docker.io" | "registry-1.docker.io"));
        if !same {
            return Err(Status::invalid_argument(format!(
                "the auth config is for {:?}, but the image is on {registry}",
                auth.server_address
            )));
        }
    }
    if !auth.username.is_empty() {
        return Ok(Some(Credentials::Basic {
            username: auth.username.clone(),
            password: auth.password.clone(),
        }));
    }
    if !auth.identity_token.is_empty() {
        return Ok(Some(Credentials::IdentityToken(
            auth.identity_token.clone(),
        )));
    }
    if !auth.auth.is_empty() {
        let bad =
            || Status::invalid_argument("the auth config's `auth` is not base64 of USER:PASSWORD");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.auth.trim())
            .map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let (u, p) = text.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credentials::Basic {
            username: u.to_string(),
            password: p.to_string(),
        }));
    }
    if !auth.registry_token.is_empty() {
        return Ok(Some(Credentials::RegistryToken(
            auth.registry_token.clone(),
        )));
    }
    Ok(None)
}

/// What a tree holds: bytes allocated (hard links once) and inodes, without
/// crossing into another filesystem (a mounted rootfs).
fn usage(dir: &Path, dev: u64, seen: &mut HashSet<(u64, u64)>, bytes: &mut u64, inodes: &mut u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(md) = e.path().symlink_metadata() else {
            continue;
        };
        if md.dev() != dev || !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        *bytes += md.blocks() * 512;
        *inodes += 1;
        if md.is_dir() {
            usage(&e.path(), dev, seen, bytes, inodes);
        }
    }
}

/// The image filesystem's usage: the store root, and what its content and
/// snapshots use.
pub(crate) fn fs_usage(root: &Path) -> Result<proto::FilesystemUsage, std::io::Error> {
    let md = std::fs::metadata(root)?;
    let mut seen = HashSet::new();
    let (mut bytes, mut inodes) = (0u64, 0u64);
    for sub in ["content", "snapshots", "meta.redb"] {
        let p = root.join(sub);
        if let Ok(m) = p.symlink_metadata() {
            if m.dev() == md.dev() && seen.insert((m.dev(), m.ino())) {
                bytes += m.blocks() * 512;
                inodes += 1;
                if m.is_dir() {
                    usage(&p, md.dev(), &mut seen, &mut bytes, &mut inodes);
                }
            }
        }
    }
    Ok(proto::FilesystemUsage {
        timestamp: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(1),
        fs_id: Some(proto::FilesystemIdentifier {
            mountpoint: root.to_string_lossy().into_owned(),
        }),
        used_bytes: Some(proto::UInt64Value { value: bytes }),
        inodes_used: Some(proto::UInt64Value { value: inodes }),
    })
}

impl ImageSvc {
    /// Every image, or only the one the filter names.
    async fn list(&self, filter: Option<proto::ImageFilter>) -> Result<Vec<proto::Image>, Status> {
        let store = self.state.store.clone();
        let want = filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|s| !s.is_empty());
        blocking("listing images", move || {
            let want_id = match &want {
                Some(name) => {
                    match find_id(&store, name).map_err(|e| image_status("listing images", &e))? {
                        Some(id) => Some(id),
                        None => return Ok(Vec::new()),
                    }
                }
                None => None,
            };
            let groups = grouped(&store).map_err(|e| image_status("listing images", &e))?;
            Ok(groups
                .iter()
                .filter(|(id, _)| want_id.as_ref().is_none_or(|w| w == *id))
                .map(|(_, (img, recs))| cri_image(img, recs))
                .collect())
        })
        .await
    }
}

type ImageStream = Pin<Box<dyn Stream<Item = Result<proto::StreamImagesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ImageService for ImageSvc {
    async fn list_images(
        &self,
        req: Request<proto::ListImagesRequest>,
    ) -> Result<Response<proto::ListImagesResponse>, Status> {
        let images = self.list(req.into_inner().filter).await?;
        Ok(Response::new(proto::ListImagesResponse { images }))
    }

    type StreamImagesStream = ImageStream;

    async fn stream_images(
        &self,
        req: Request<proto::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let images = self.list(req.into_inner().filter).await?;
        let chunks: Vec<Result<proto::StreamImagesResponse, Status>> = images
            .chunks(STREAM_CHUNK)
            .map(|c| Ok(proto::StreamImagesResponse { images: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn image_status(
        &self,
        req: Request<proto::ImageStatusRequest>,
    ) -> Result<Response<proto::ImageStatusResponse>, Status> {
        let req = req.into_inner();
        let name = spec_name(req.image.as_ref())?;
        let store = self.state.store.clone();
        let snapshotter = self.state.snapshotter_name();
        blocking("image status", move || {
            let what = format!("image status of {name}");
            let Some(id) = find_id(&store, &name).map_err(|e| image_status(&what, &e))? else {
                return Ok(Response::new(proto::ImageStatusResponse::default()));
            };
            let groups = grouped(&store).map_err(|e| image_status(&what, &e))?;
            let Some((img, recs)) = groups.get(&id) else {
                // Removed between the two reads.
                return Ok(Response::new(proto::ImageStatusResponse::default()));
            };
            let mut info = std::collections::HashMap::new();
            if req.verbose {
                let v = serde_json::json!({
                    "id": id,
                    "names": recs.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
                    "targets": recs.iter().map(|r| serde_json::json!({
                        "name": r.name,
                        "mediaType": r.target.media_type,
                        "digest": r.target.digest.to_string(),
                        "size": r.target.size,
                    })).collect::<Vec<_>>(),
                    "manifestDigest": img.manifest_digest.to_string(),
                    "layers": img.manifest.layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>(),
                    "chainID": img.top_chain_id().map(|d| d.to_string()),
                    "snapshotter": snapshotter,
                    "imageSpec": img.config_json,
                });
                info.insert("info".to_string(), v.to_string());
            }
            Ok(Response::new(proto::ImageStatusResponse {
                image: Some(cri_image(img, recs)),
                info,
            }))
        })
        .await
    }

    async fn pull_image(
        &self,
        req: Request<proto::PullImageRequest>,
    ) -> Result<Response<proto::PullImageResponse>, Status> {
        let req = req.into_inner();
        let name = spec_name(req.image.as_ref())?;
        let r = normalize(&name)
            .map_err(|e| Status::invalid_argument(format!("pulling {name}: {e}")))?;
        let handler = req
            .image
            .as_ref()
            .map(|s| s.runtime_handler.as_str())
            .unwrap_or("");
        if !handler.is_empty() && !self.state.handlers.iter().any(|h| h.name == handler) {
            return Err(Status::invalid_argument(format!(
                "pulling {name}: unknown runtime handler {handler:?}"
            )));
        }
        let creds = match &req.auth {
            Some(a) => credentials(a, r.registry())?,
            None => None,
        };
        if let Some(sb) = req
            .sandbox_config
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
        {
            debug!(pod = %sb.name, namespace = %sb.namespace, "pull for a pod");
        }
        let whole = r.whole();
        // One pull of a name at a time in this daemon: a second waits and
        // then finds everything stored.
        let lock = self.state.pull_lock(&whole);
        let _guard = lock.lock().await;
        let store = match creds {
            Some(c) => {
                let mut opts = self.state.registry.clone();
                opts.credentials = Some(c);
                self.state
                    .store
                    .with_registry(opts)
                    .map_err(|e| image_status(&format!("pulling {whole}"), &e))?
            }
            None => self.state.store.clone(),
        };
        info!(image = %whole, "pulling");
        let w = whole.clone();
        let id = blocking("pulling", move || {
            store
                .pull(&name, &Platform::host(), &NoProgress)
                .map(|img| img.id().to_string())
                .map_err(|e| image_status(&format!("pulling {w}"), &e))
        })
        .await;
        drop(_guard);
        self.state.release_pull_lock(&whole, lock);
        let id = id?;
        info!(image = %whole, id = %id, "pulled");
        Ok(Response::new(proto::PullImageResponse { image_ref: id }))
    }

    async fn remove_image(
        &self,
        req: Request<proto::RemoveImageRequest>,
    ) -> Result<Response<proto::RemoveImageResponse>, Status> {
        let name = spec_name(req.into_inner().image.as_ref())?;
        let store = self.state.store.clone();
        blocking("removing an image", move || {
            let what = format!("removing image {name}");
            let Some(id) = find_id(&store, &name).map_err(|e| image_status(&what, &e))? else {
                debug!(image = %name, "remove: no such image");
                return Ok(Response::new(proto::RemoveImageResponse {}));
            };
            let groups = grouped(&store).map_err(|e| image_status(&what, &e))?;
            if let Some((_, recs)) = groups.get(&id) {
                for rec in recs {
                    match store.remove(&rec.name, false) {
                        Ok(_) | Err(ImageError::NotFound(_)) => {}
                        Err(e) => return Err(image_status(&what, &e)),
                    }
                }
                info!(image = %name, id = %id, names = recs.len(), "removed");
            }
            let gc = GcOptions {
                ingest_max_age: std::time::Duration::from_secs(24 * 3600),
                dry_run: false,
            };
            if let Err(e) = store.gc(&gc) {
                warn!(error = %e, "garbage collection after a removal failed");
            }
            Ok(Response::new(proto::RemoveImageResponse {}))
        })
        .await
    }

    async fn image_fs_info(
        &self,
        _req: Request<proto::ImageFsInfoRequest>,
    ) -> Result<Response<proto::ImageFsInfoResponse>, Status> {
        let root = self.state.store.root().to_path_buf();
        blocking("image filesystem info", move || {
            let u = fs_usage(&root).map_err(|e| {
                Status::internal(format!("image filesystem info of {}: {e}", root.display()))
            })?;
            Ok(Response::new(proto::ImageFsInfoResponse {
                image_filesystems: vec![u],
                container_filesystems: Vec::new(),
            }))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> AuthConfig {
        AuthConfig::default()
    }

    #[test]
    fn auth_config_maps_to_credentials() {
        assert_eq!(credentials(&auth(), "r:5000").unwrap(), None);
        let a = AuthConfig {
            username: "u".into(),
            password: "p".into(),
            ..auth()
        };
        assert_eq!(
            credentials(&a, "r:5000").unwrap(),
            Some(Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        let a = AuthConfig {
            auth: "dTpwOng=".into(),
            ..auth()
        }; // u:p:x
        assert_eq!(
            credentials(&a, "r:5000").unwrap(),
            Some(Credentials::Basic {
                username: "u".into(),
                password: "p:x".into()
            })
        );
        let a = AuthConfig {
            identity_token: "it".into(),
            registry_token: "rt".into(),
            ..auth()
        };
        assert_eq!(
            credentials(&a, "r").unwrap(),
            Some(Credentials::IdentityToken("it".into()))
        );
        let a = AuthConfig {
            registry_token: "rt".into(),
            ..auth()
        };
        assert_eq!(
            credentials(&a, "r").unwrap(),
            Some(Credentials::RegistryToken("rt".into()))
        );
    }

    #[test]
    fn bad_auth_and_foreign_server_address_are_invalid_arguments() {
        let a = AuthConfig {
            auth: "not base64!".into(),
            ..auth()
        };
        assert_eq!(
            credentials(&a, "r").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let a = AuthConfig {
            auth: "bm9jb2xvbg==".into(),
            ..auth()
        }; // "nocolon"
        assert_eq!(
            credentials(&a, "r").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let a = AuthConfig {
            username: "u".into(),
            server_address: "https://other:5000/v1/".into(),
            ..auth()
        };
        let e = credentials(&a, "r:5000").unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("other:5000"), "{}", e.message());
        let a = AuthConfig {
            username: "u".into(),
            server_address: "https://r:5000".into(),
            ..auth()
        };
        assert!(credentials(&a, "r:5000").unwrap().is_some());
        let a = AuthConfig {
            username: "u".into(),
            server_address: "https://index.docker.io/v1/".into(),
            ..auth()
        };
        assert!(credentials(&a, "docker.io").unwrap().is_some());
    }

    #[test]
    fn the_debug_of_an_auth_config_hides_its_secrets() {
        let a = AuthConfig {
            username: "user".into(),
            password: "hunter2".into(),
            auth: "c2VjcmV0".into(),
            identity_token: "idtok".into(),
            registry_token: "regtok".into(),
            server_address: "r".into(),
        };
        let s = format!("{a:?}");
        assert!(s.contains("user"));
        for secret in ["hunter2", "c2VjcmV0", "idtok", "regtok"] {
            assert!(!s.contains(secret), "{s}");
        }
    }
}
