//! Image archives: `docker-archive` (as `docker save` / `podman save` write
//! it) and `oci-archive` (a tar of an OCI image layout), both ways, and
//! import of an OCI image layout directory.
//!
//! An archive is hostile input: entry paths must be relative and free of
//! `..`, the JSON files read into memory are capped, and every blob that
//! reaches the content store is verified against its digest (for a
//! docker-archive layer, against the config's diff ID).
//!
//! Loading streams the tar once. Entries named `blobs/<alg>/<hex>` go
//! straight into the content store (verified by name); other regular files
//! (docker-archive configs and layers) are staged, hashed, in a temporary
//! directory under the content store's `tmp/`, removed when `load` returns.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::path::{Component, Path, PathBuf};

use crate::reference::Reference;
use serde_json::{json, Value};

use crate::content::{ContentError, ContentStore};
use crate::digest::{Algorithm, Digest, HashingWriter};
use crate::gc::{
    host_platform, is_index, is_manifest, media, parse_node, Node, MAX_CONFIG, MAX_MANIFEST,
};
use crate::meta::Descriptor;

/// Cap on `manifest.json`, `index.json`, `repositories` and `oci-layout`.
pub const MAX_ARCHIVE_JSON: u64 = 4 << 20;

/// The annotation that names an image in an OCI layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The two archive formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save` format: `manifest.json`, configs, uncompressed layers.
    DockerArchive,
    /// A tar of an OCI image layout.
    OciArchive,
}

/// One image found by [`load`] or [`import_layout`].
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// Its normalised name, if the archive named it.
    pub name: Option<String>,
    /// The manifest or index it points to (now in the content store).
    pub target: Descriptor,
}

/// Errors of archive save and load.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The content store failed.
    #[error("{0}")]
    Content(#[from] ContentError),
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What failed.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// An entry path that is absolute or climbs out with `..`.
    #[error("archive entry {0:?} has an unsafe path")]
    UnsafePath(String),
    /// A JSON file of the archive is larger than allowed.
    #[error("archive entry {path:?} is larger than {max} bytes")]
    TooLarge {
        /// The entry.
        path: String,
        /// The cap.
        max: u64,
    },
    /// Neither `manifest.json` nor `index.json` + `oci-layout`.
    #[error("not an image archive: it has neither manifest.json (docker-archive) nor index.json and oci-layout (oci-archive)")]
    UnknownFormat,
    /// A JSON document does not parse.
    #[error("{what}: invalid JSON: {source}")]
    BadJson {
        /// Which document.
        what: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A JSON document parses but lacks something.
    #[error("{what}: {problem}")]
    Invalid {
        /// Which document.
        what: String,
        /// What is wrong.
        problem: String,
    },
    /// `manifest.json` names an entry the archive lacks.
    #[error("archive entry {0:?} is referenced but not in the archive")]
    MissingEntry(String),
    /// A blob an image needs is neither in the archive nor in the store.
    #[error("image {image}: blob {digest} is missing")]
    MissingBlob {
        /// The image.
        image: String,
        /// The blob.
        digest: Digest,
    },
    /// An index has no manifest for the host platform.
    #[error("image {image}: index {digest} has no manifest for {os}/{arch}")]
    NoPlatform {
        /// The image.
        image: String,
        /// The index.
        digest: Digest,
        /// Host OS.
        os: String,
        /// Host architecture.
        arch: String,
    },
    /// A layer's uncompressed content does not match the config's diff ID.
    #[error("image {image}: layer {layer} does not match diff ID {expected} (got {actual})")]
    LayerMismatch {
        /// The image.
        image: String,
        /// The layer (archive path or digest).
        layer: String,
        /// The config's diff ID.
        expected: Digest,
        /// What the layer hashed to.
        actual: Digest,
    },
    /// An image name that does not parse.
    #[error("invalid image name {name:?}: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A directory that is not an OCI image layout.
    #[error("{0}: not an OCI image layout (no oci-layout file)")]
    NotALayout(PathBuf),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ArchiveError {
    let context = context.into();
    move |source| ArchiveError::Io { context, source }
}

fn parse_json(what: &str, bytes: &[u8]) -> Result<Value, ArchiveError> {
    serde_json::from_slice(bytes).map_err(|source| ArchiveError::BadJson {
        what: what.to_string(),
        source,
    })
}

fn invalid(what: &str, problem: impl Into<String>) -> ArchiveError {
    ArchiveError::Invalid {
        what: what.to_string(),
        problem: problem.into(),
    }
}

/// Normalises an image name: `busybox` → `docker.io/library/busybox:latest`.
pub fn normalize_name(name: &str) -> Result<String, ArchiveError> {
    let r: Reference =
        name.parse().map_err(
            |e: crate::reference::ReferenceError| ArchiveError::BadName {
                name: name.to_string(),
                reason: e.to_string(),
            },
        )?;
    Ok(r.whole())
}

/// The name an OCI index entry gives its image: `io.containerd.image.name`,
/// else `org.opencontainers.image.ref.name` when it is a full reference (a
/// bare tag like `latest` names nothing by itself).
fn oci_entry_name(entry: &Value) -> Result<Option<String>, ArchiveError> {
    let ann = entry.get("annotations");
    let get = |k: &str| ann.and_then(|a| a.get(k)).and_then(Value::as_str);
    if let Some(n) = get(CONTAINERD_NAME) {
        return normalize_name(n).map(Some);
    }
    match get(REF_NAME) {
        Some(n) if n.contains('/') || n.contains(':') || n.contains('@') => {
            normalize_name(n).map(Some)
        }
        _ => Ok(None),
    }
}

/// Wraps `r` in a gzip or zstd decoder when its first bytes say so.
fn decompressed<'a>(r: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(256 * 1024, r);
    let head = br.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(br)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(br)?))
    } else {
        Ok(Box::new(br))
    }
}

fn is_compressed(f: &mut File) -> io::Result<bool> {
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        let m = f.read(&mut head[n..])?;
        if m == 0 {
            break;
        }
        n += m;
    }
    f.rewind()?;
    Ok(head[..n].starts_with(&[0x1f, 0x8b]) || head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]))
}

// ---------------------------------------------------------------- save

fn tar_header(size: u64, dir: bool) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(if dir { 0o755 } else { 0o644 });
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h
}

struct TarOut<'a> {
    b: tar::Builder<&'a mut dyn Write>,
    written: BTreeSet<String>,
}

impl TarOut<'_> {
    fn dir(&mut self, path: &str) -> Result<(), ArchiveError> {
        if self.written.insert(path.to_string()) {
            let mut h = tar_header(0, true);
            self.b
                .append_data(&mut h, path, io::empty())
                .map_err(io_err(format!("write archive entry {path}")))?;
        }
        Ok(())
    }
    fn file(&mut self, path: &str, size: u64, data: impl Read) -> Result<(), ArchiveError> {
        if self.written.insert(path.to_string()) {
            let mut h = tar_header(size, false);
            self.b
                .append_data(&mut h, path, data)
                .map_err(io_err(format!("write archive entry {path}")))?;
        }
        Ok(())
    }
    fn bytes(&mut self, path: &str, data: &[u8]) -> Result<(), ArchiveError> {
        self.file(path, data.len() as u64, data)
    }
}

fn read_json_blob(
    content: &ContentStore,
    image: &str,
    d: &Digest,
    max: u64,
) -> Result<Vec<u8>, ArchiveError> {
    match content.read_blob(d, max) {
        Ok(b) => Ok(b),
        Err(ContentError::NotFound(_)) => Err(ArchiveError::MissingBlob {
            image: image.to_string(),
            digest: d.clone(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Every blob reachable from `target` (all platforms); missing ones are an
/// error naming the image.
fn reachable(
    content: &ContentStore,
    image: &str,
    target: &Descriptor,
) -> Result<Vec<Descriptor>, ArchiveError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut todo = vec![target.clone()];
    while let Some(d) = todo.pop() {
        if !seen.insert(d.digest.clone()) {
            continue;
        }
        if content.info(&d.digest)?.is_none() {
            return Err(ArchiveError::MissingBlob {
                image: image.to_string(),
                digest: d.digest,
            });
        }
        if is_index(&d.media_type) || is_manifest(&d.media_type) {
            let bytes = read_json_blob(content, image, &d.digest, MAX_MANIFEST)?;
            match parse_node(&d.media_type, &bytes) {
                Node::Index(children) => todo.extend(children.into_iter().map(|(c, _)| c)),
                Node::Manifest { config, layers } => {
                    todo.push(config);
                    todo.extend(layers);
                }
                _ => {}
            }
        }
        out.push(d);
    }
    Ok(out)
}

fn save_oci(
    content: &ContentStore,
    images: &[(String, Descriptor)],
    out: &mut TarOut<'_>,
) -> Result<(), ArchiveError> {
    let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
    let mut manifests = Vec::new();
    for (name, target) in images {
        for d in reachable(content, name, target)? {
            blobs.insert(d.digest, d.size);
        }
        manifests.push(json!({
            "mediaType": target.media_type,
            "digest": target.digest.to_string(),
            "size": target.size,
            "annotations": { REF_NAME: name, CONTAINERD_NAME: name },
        }));
    }
    out.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": manifests,
    });
    out.bytes(
        "index.json",
        &serde_json::to_vec(&index).map_err(|e| invalid("index.json", e.to_string()))?,
    )?;
    out.dir("blobs/")?;
    for d in blobs.keys() {
        let algo = d.algorithm().as_str();
        out.dir(&format!("blobs/{algo}/"))?;
        let f = content.open_blob(d)?;
        let size = f
            .metadata()
            .map_err(io_err(format!("stat {}", content.blob_path(d).display())))?
            .len();
        out.file(&format!("blobs/{algo}/{}", d.hex()), size, f)?;
    }
    Ok(())
}

/// Resolves `target` to a single manifest, picking the host platform's from
/// an index.
fn host_manifest(
    content: &ContentStore,
    image: &str,
    target: &Descriptor,
) -> Result<(Descriptor, Vec<u8>), ArchiveError> {
    let mut d = target.clone();
    for _ in 0..4 {
        let bytes = read_json_blob(content, image, &d.digest, MAX_MANIFEST)?;
        match parse_node(&d.media_type, &bytes) {
            Node::Manifest { .. } => return Ok((d, bytes)),
            Node::Index(children) => {
                let (os, arch) = host_platform();
                let pick = children
                    .iter()
                    .find(|(_, p)| p.as_ref().is_some_and(|(o, a)| o == os && a == arch))
                    .or_else(|| children.iter().find(|(_, p)| p.is_none()));
                match pick {
                    Some((c, _)) => d = c.clone(),
                    None => {
                        return Err(ArchiveError::NoPlatform {
                            image: image.to_string(),
                            digest: d.digest,
                            os: os.to_string(),
                            arch: arch.to_string(),
                        })
                    }
                }
            }
            _ => {
                return Err(invalid(
                    &format!("image {image}: blob {}", d.digest),
                    format!(
                        "media type {:?} is neither a manifest nor an index",
                        d.media_type
                    ),
                ))
            }
        }
    }
    Err(invalid(
        &format!("image {image}"),
        "indexes nested too deeply",
    ))
}

fn diff_ids_of(what: &str, config: &[u8]) -> Result<Vec<Digest>, ArchiveError> {
    let v = parse_json(what, config)?;
    let ids = v
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(what, "no rootfs.diff_ids"))?;
    ids.iter()
        .map(|d| {
            d.as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| invalid(what, format!("bad diff ID {d}")))
        })
        .collect()
}

fn save_docker(
    content: &ContentStore,
    images: &[(String, Descriptor)],
    out: &mut TarOut<'_>,
) -> Result<(), ArchiveError> {
    // config digest → (index in entries); entries keep manifest.json order.
    let mut entries: Vec<(Digest, Vec<String>, Vec<String>)> = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (name, target) in images {
        let (_, mbytes) = host_manifest(content, name, target)?;
        let Node::Manifest { config, layers } = parse_node(media::OCI_MANIFEST, &mbytes) else {
            return Err(invalid(&format!("image {name}: manifest"), "no config"));
        };
        let cfg = read_json_blob(content, name, &config.digest, MAX_CONFIG)?;
        let diff_ids = diff_ids_of(&format!("image {name}: config {}", config.digest), &cfg)?;
        if diff_ids.len() != layers.len() {
            return Err(invalid(
                &format!("image {name}: config {}", config.digest),
                format!("{} diff IDs for {} layers", diff_ids.len(), layers.len()),
            ));
        }
        let tag = match name.parse::<Reference>() {
            Ok(r) if r.tag().is_some() && r.digest().is_none() => Some(r),
            _ => None,
        };
        if let Some(i) = entries.iter().position(|(c, _, _)| *c == config.digest) {
            if let Some(r) = &tag {
                entries[i].1.push(r.whole());
            }
            continue;
        }
        let config_path = format!("{}.json", config.digest.hex());
        out.bytes(&config_path, &cfg)?;
        let mut layer_paths = Vec::new();
        for (l, diff_id) in layers.iter().zip(&diff_ids) {
            let path = format!("{}/layer.tar", diff_id.hex());
            if !out.written.contains(&path) {
                let blob = match content.open_blob(&l.digest) {
                    Ok(f) => f,
                    Err(ContentError::NotFound(_)) => {
                        return Err(ArchiveError::MissingBlob {
                            image: name.clone(),
                            digest: l.digest.clone(),
                        })
                    }
                    Err(e) => return Err(e.into()),
                };
                let ctx = format!("decompress layer {} of {name}", l.digest);
                let mut tmp =
                    tempfile::tempfile_in(content.tmp_dir()).map_err(io_err(ctx.clone()))?;
                let mut w = HashingWriter::new(&mut tmp, diff_id.algorithm());
                io::copy(
                    &mut decompressed(blob).map_err(io_err(ctx.clone()))?,
                    &mut w,
                )
                .map_err(io_err(ctx.clone()))?;
                let (actual, size) = (w.digest(), w.count());
                if actual != *diff_id {
                    return Err(ArchiveError::LayerMismatch {
                        image: name.clone(),
                        layer: l.digest.to_string(),
                        expected: diff_id.clone(),
                        actual,
                    });
                }
                tmp.rewind().map_err(io_err(ctx))?;
                out.dir(&format!("{}/", diff_id.hex()))?;
                out.file(&path, size, tmp)?;
            }
            layer_paths.push(path);
        }
        if let (Some(r), Some(top)) = (&tag, diff_ids.last()) {
            let repo = format!("{}/{}", r.registry(), r.repository());
            repositories.entry(repo).or_default().insert(
                r.tag().unwrap_or("latest").to_string(),
                top.hex().to_string(),
            );
        }
        entries.push((
            config.digest.clone(),
            tag.iter().map(|r| r.whole()).collect(),
            layer_paths,
        ));
    }
    let manifest: Vec<Value> = entries
        .into_iter()
        .map(|(cfg, tags, layers)| {
            json!({
                "Config": format!("{}.json", cfg.hex()),
                "RepoTags": tags,
                "Layers": layers,
            })
        })
        .collect();
    let m = serde_json::to_vec(&manifest).map_err(|e| invalid("manifest.json", e.to_string()))?;
    out.bytes("manifest.json", &m)?;
    let r =
        serde_json::to_vec(&repositories).map_err(|e| invalid("repositories", e.to_string()))?;
    out.bytes("repositories", &r)?;
    Ok(())
}

/// Writes `images` (name, target) from the content store as an archive.
pub fn save(
    content: &ContentStore,
    images: &[(String, Descriptor)],
    format: ArchiveFormat,
    out: &mut dyn Write,
) -> Result<(), ArchiveError> {
    let mut t = TarOut {
        b: tar::Builder::new(out),
        written: BTreeSet::new(),
    };
    match format {
        ArchiveFormat::OciArchive => save_oci(content, images, &mut t)?,
        ArchiveFormat::DockerArchive => save_docker(content, images, &mut t)?,
    }
    t.b.finish().map_err(io_err("finish the archive"))?;
    Ok(())
}

// ---------------------------------------------------------------- load

/// Cleans an archive entry path: strips `./`, refuses absolute paths and `..`.
fn clean_path(p: &Path) -> Result<String, ArchiveError> {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(s) => parts.push(
                s.to_str()
                    .ok_or_else(|| ArchiveError::UnsafePath(p.display().to_string()))?,
            ),
            _ => return Err(ArchiveError::UnsafePath(p.display().to_string())),
        }
    }
    Ok(parts.join("/"))
}

/// Resolves a symlink target relative to the link's directory, staying
/// inside the archive.
fn resolve_link(link: &str, target: &Path) -> Result<String, ArchiveError> {
    let bad = || ArchiveError::UnsafePath(format!("{link} -> {}", target.display()));
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for c in target.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop().ok_or_else(bad)?;
            }
            Component::Normal(s) => parts.push(s.to_str().ok_or_else(bad)?),
            _ => return Err(bad()),
        }
    }
    Ok(parts.join("/"))
}

#[derive(Debug, Clone)]
enum Entry {
    /// Staged in the temporary directory.
    Staged {
        path: PathBuf,
        digest: Digest,
        size: u64,
    },
    /// In the content store.
    Blob(Digest),
    /// A symlink or hard link to another entry.
    Link(String),
    /// Small JSON kept in memory.
    Json(Vec<u8>),
}

struct Loaded {
    entries: BTreeMap<String, Entry>,
    _stage: tempfile::TempDir,
}

impl Loaded {
    fn lookup(&self, path: &str) -> Result<Entry, ArchiveError> {
        let mut p = clean_path(Path::new(path))?;
        for _ in 0..16 {
            match self.entries.get(&p) {
                Some(Entry::Link(t)) => p = t.clone(),
                Some(e) => return Ok(e.clone()),
                None => return Err(ArchiveError::MissingEntry(path.to_string())),
            }
        }
        Err(ArchiveError::UnsafePath(format!("{path}: too many links")))
    }

    fn open(
        &self,
        content: &ContentStore,
        path: &str,
    ) -> Result<(File, Digest, u64), ArchiveError> {
        match self.lookup(path)? {
            Entry::Staged {
                path: p,
                digest,
                size,
            } => {
                let f = File::open(&p).map_err(io_err(format!("open staged {}", p.display())))?;
                Ok((f, digest, size))
            }
            Entry::Blob(d) => {
                let size = content
                    .info(&d)?
                    .ok_or_else(|| ContentError::NotFound(d.clone()))?;
                Ok((content.open_blob(&d)?, d, size))
            }
            Entry::Json(_) | Entry::Link(_) => Err(ArchiveError::MissingEntry(path.to_string())),
        }
    }

    fn read_capped(
        &self,
        content: &ContentStore,
        path: &str,
        max: u64,
    ) -> Result<Vec<u8>, ArchiveError> {
        if let Entry::Json(b) = self.lookup(path)? {
            return Ok(b);
        }
        let (f, _, size) = self.open(content, path)?;
        if size > max {
            return Err(ArchiveError::TooLarge {
                path: path.to_string(),
                max,
            });
        }
        let mut buf = Vec::new();
        f.take(max)
            .read_to_end(&mut buf)
            .map_err(io_err(format!("read archive entry {path}")))?;
        Ok(buf)
    }

    fn json(&self, name: &str) -> Option<&[u8]> {
        match self.entries.get(name) {
            Some(Entry::Json(b)) => Some(b),
            _ => None,
        }
    }
}

/// Parses `blobs/<alg>/<hex>` into a digest.
fn blob_name(path: &str) -> Option<Digest> {
    let rest = path.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    format!("{alg}:{hex}").parse().ok()
}

fn ingest_verified(
    content: &ContentStore,
    d: &Digest,
    size: Option<u64>,
    r: &mut dyn Read,
) -> Result<(), ArchiveError> {
    let mut w = content.ingest(d, size)?;
    if w.offset() > 0 {
        // A stale partial from an interrupted pull: start over, since we
        // cannot skip the reader ahead cheaply and the partial is unverified.
        w.abort()?;
        w = content.ingest(d, size)?;
    }
    io::copy(r, &mut w).map_err(io_err(format!("write blob {d}")))?;
    w.commit()?;
    Ok(())
}

fn read_entries(content: &ContentStore, input: &mut dyn Read) -> Result<Loaded, ArchiveError> {
    let stage = tempfile::Builder::new()
        .prefix("load-")
        .tempdir_in(content.tmp_dir())
        .map_err(io_err(format!(
            "create a staging directory in {}",
            content.tmp_dir().display()
        )))?;
    let mut entries = BTreeMap::new();
    let mut ar = tar::Archive::new(input);
    let mut n = 0u64;
    for e in ar.entries().map_err(io_err("read the archive"))? {
        let mut e = e.map_err(io_err("read the archive"))?;
        let raw = e
            .path()
            .map_err(io_err("read an archive entry name"))?
            .into_owned();
        let path = clean_path(&raw)?;
        if path.is_empty() {
            continue;
        }
        let ty = e.header().entry_type();
        if ty.is_symlink() || ty.is_hard_link() {
            let target = e
                .link_name()
                .map_err(io_err(format!("read link of {path}")))?
                .ok_or_else(|| ArchiveError::UnsafePath(path.clone()))?
                .into_owned();
            let resolved = if ty.is_hard_link() {
                clean_path(&target)?
            } else {
                resolve_link(&path, &target)?
            };
            entries.insert(path, Entry::Link(resolved));
            continue;
        }
        if !ty.is_file() {
            continue;
        }
        let size = e.size();
        if matches!(
            path.as_str(),
            "manifest.json" | "index.json" | "repositories" | "oci-layout"
        ) {
            if size > MAX_ARCHIVE_JSON {
                return Err(ArchiveError::TooLarge {
                    path,
                    max: MAX_ARCHIVE_JSON,
                });
            }
            let mut buf = Vec::new();
            (&mut e)
                .take(MAX_ARCHIVE_JSON)
                .read_to_end(&mut buf)
                .map_err(io_err(format!("read archive entry {path}")))?;
            entries.insert(path, Entry::Json(buf));
            continue;
        }
        if let Some(d) = blob_name(&path) {
            if content.info(&d)?.is_none() {
                ingest_verified(content, &d, Some(size), &mut e)?;
            }
            entries.insert(path, Entry::Blob(d));
            continue;
        }
        n += 1;
        let staged = stage.path().join(n.to_string());
        let f = File::create(&staged).map_err(io_err(format!("create {}", staged.display())))?;
        let mut w = HashingWriter::new(io::BufWriter::new(f), Algorithm::Sha256);
        io::copy(&mut e, &mut w).map_err(io_err(format!("stage archive entry {path}")))?;
        let (digest, size) = (w.digest(), w.count());
        w.into_inner()
            .flush()
            .map_err(io_err(format!("stage archive entry {path}")))?;
        entries.insert(
            path,
            Entry::Staged {
                path: staged,
                digest,
                size,
            },
        );
    }
    Ok(Loaded {
        entries,
        _stage: stage,
    })
}

fn load_docker(
    content: &ContentStore,
    l: &Loaded,
    manifest: &[u8],
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let m = parse_json("manifest.json", manifest)?;
    let list = m
        .as_array()
        .ok_or_else(|| invalid("manifest.json", "not an array"))?;
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let what = format!("manifest.json entry {i}");
        let config_path = item
            .get("Config")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(&what, "no Config"))?;
        let tags: Vec<&str> = item
            .get("RepoTags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let label = tags.first().map_or_else(|| what.clone(), |t| t.to_string());
        let layer_paths: Vec<&str> = item
            .get("Layers")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(&what, "no Layers"))?
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| invalid(&what, "a layer path is not a string"))
            })
            .collect::<Result<_, _>>()?;

        let cfg = l.read_capped(content, config_path, MAX_CONFIG)?;
        let diff_ids = diff_ids_of(&format!("image {label}: config {config_path}"), &cfg)?;
        if diff_ids.len() != layer_paths.len() {
            return Err(invalid(
                &format!("image {label}"),
                format!(
                    "{} layers but {} diff IDs in the config",
                    layer_paths.len(),
                    diff_ids.len()
                ),
            ));
        }
        let cfg_digest = content.put_bytes(&cfg, None)?;
        let mut layers = Vec::new();
        for (p, diff_id) in layer_paths.iter().zip(&diff_ids) {
            let (mut f, digest, size) = l.open(content, p)?;
            let mismatch = |actual: Digest| ArchiveError::LayerMismatch {
                image: label.clone(),
                layer: p.to_string(),
                expected: diff_id.clone(),
                actual,
            };
            let stored_size = if let Some(s) = content.info(diff_id)? {
                s
            } else if digest == *diff_id {
                ingest_verified(content, diff_id, Some(size), &mut f)?;
                size
            } else if is_compressed(&mut f).map_err(io_err(format!("read layer {p}")))? {
                let mut r = decompressed(f).map_err(io_err(format!("decompress layer {p}")))?;
                match ingest_verified(content, diff_id, None, &mut r) {
                    Ok(()) => {}
                    Err(ArchiveError::Content(ContentError::DigestMismatch { actual, .. })) => {
                        return Err(mismatch(actual))
                    }
                    Err(e) => return Err(e),
                }
                content
                    .info(diff_id)?
                    .ok_or_else(|| ContentError::NotFound(diff_id.clone()))?
            } else {
                return Err(mismatch(digest));
            };
            layers.push(json!({
                "mediaType": media::DOCKER_LAYER,
                "digest": diff_id.to_string(),
                "size": stored_size,
            }));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media::DOCKER_MANIFEST,
            "config": {
                "mediaType": media::DOCKER_CONFIG,
                "digest": cfg_digest.to_string(),
                "size": cfg.len(),
            },
            "layers": layers,
        });
        let mbytes = serde_json::to_vec(&manifest).map_err(|e| invalid(&what, e.to_string()))?;
        let target = Descriptor {
            media_type: media::DOCKER_MANIFEST.to_string(),
            digest: content.put_bytes(&mbytes, None)?,
            size: mbytes.len() as u64,
        };
        if tags.is_empty() {
            out.push(LoadedImage { name: None, target });
        } else {
            for t in tags {
                out.push(LoadedImage {
                    name: Some(normalize_name(t)?),
                    target: target.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// Where the blobs of an OCI layout come from: already in the store (an
/// oci-archive's blobs were ingested while reading), or a layout directory.
trait BlobSource {
    /// Copies blob `d` into the store (verified). False if the source lacks it.
    fn fetch(&self, content: &ContentStore, d: &Descriptor) -> Result<bool, ArchiveError>;
}

struct StoreOnly;
impl BlobSource for StoreOnly {
    fn fetch(&self, _: &ContentStore, _: &Descriptor) -> Result<bool, ArchiveError> {
        Ok(false)
    }
}

struct LayoutDir<'a>(&'a Path);
impl BlobSource for LayoutDir<'_> {
    fn fetch(&self, content: &ContentStore, d: &Descriptor) -> Result<bool, ArchiveError> {
        let p = self
            .0
            .join("blobs")
            .join(d.digest.algorithm().as_str())
            .join(d.digest.hex());
        let mut f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(format!("open {}", p.display()))(e)),
        };
        ingest_verified(content, &d.digest, Some(d.size), &mut f)?;
        Ok(true)
    }
}

/// Makes sure everything `target` needs is in the store: every manifest of
/// an index that is present (at least one must be), and every config and
/// layer of every manifest.
fn complete(
    content: &ContentStore,
    src: &dyn BlobSource,
    image: &str,
    target: &Descriptor,
) -> Result<(), ArchiveError> {
    let ensure = |d: &Descriptor| -> Result<bool, ArchiveError> {
        if content.info(&d.digest)?.is_some() {
            return Ok(true);
        }
        src.fetch(content, d)
    };
    let missing = |d: &Descriptor| ArchiveError::MissingBlob {
        image: image.to_string(),
        digest: d.digest.clone(),
    };
    let mut todo = vec![target.clone()];
    let mut seen = BTreeSet::new();
    while let Some(d) = todo.pop() {
        if !seen.insert(d.digest.clone()) {
            continue;
        }
        if !ensure(&d)? {
            return Err(missing(&d));
        }
        let bytes = read_json_blob(content, image, &d.digest, MAX_MANIFEST)?;
        match parse_node(&d.media_type, &bytes) {
            Node::Index(children) => {
                let mut any = false;
                for (c, _) in children {
                    if ensure(&c)? {
                        any = true;
                        todo.push(c);
                    } else {
                        tracing::debug!(image, manifest = %c.digest, "platform manifest not in the archive");
                    }
                }
                if !any {
                    return Err(invalid(
                        &format!("image {image}: index {}", d.digest),
                        "none of its manifests is present",
                    ));
                }
            }
            Node::Manifest { config, layers } => {
                for b in std::iter::once(&config).chain(&layers) {
                    if !ensure(b)? {
                        return Err(missing(b));
                    }
                }
            }
            _ => {
                return Err(invalid(
                    &format!("image {image}: blob {}", d.digest),
                    format!(
                        "media type {:?} is neither a manifest nor an index",
                        d.media_type
                    ),
                ))
            }
        }
    }
    Ok(())
}

fn load_oci_index(
    content: &ContentStore,
    src: &dyn BlobSource,
    index: &[u8],
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let v = parse_json("index.json", index)?;
    let list = v
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("index.json", "no manifests"))?;
    let mut out = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let target = crate::gc::parse_descriptor(m).ok_or_else(|| {
            invalid(
                "index.json",
                format!("manifest entry {i} is not a descriptor"),
            )
        })?;
        let name = oci_entry_name(m)?;
        let label = name.clone().unwrap_or_else(|| target.digest.to_string());
        complete(content, src, &label, &target)?;
        out.push(LoadedImage { name, target });
    }
    Ok(out)
}

/// Loads a docker-archive or oci-archive from `input` into the content
/// store and returns the images it holds.
pub fn load(
    content: &ContentStore,
    input: &mut dyn Read,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let l = read_entries(content, input)?;
    if let Some(m) = l.json("manifest.json") {
        return load_docker(content, &l, m);
    }
    match (l.json("index.json"), l.json("oci-layout")) {
        (Some(index), Some(_)) => load_oci_index(content, &StoreOnly, index),
        _ => Err(ArchiveError::UnknownFormat),
    }
}

/// Imports an OCI image layout directory. Names come from the index's
/// `org.opencontainers.image.ref.name` annotations; a bare tag such as
/// `latest` gives no name (the caller supplies one).
pub fn import_layout(content: &ContentStore, dir: &Path) -> Result<Vec<LoadedImage>, ArchiveError> {
    if !dir.join("oci-layout").is_file() {
        return Err(ArchiveError::NotALayout(dir.to_path_buf()));
    }
    let p = dir.join("index.json");
    let f = File::open(&p).map_err(io_err(format!("open {}", p.display())))?;
    let size = f
        .metadata()
        .map_err(io_err(format!("stat {}", p.display())))?
        .len();
    if size > MAX_ARCHIVE_JSON {
        return Err(ArchiveError::TooLarge {
            path: p.display().to_string(),
            max: MAX_ARCHIVE_JSON,
        });
    }
    let mut buf = Vec::new();
    f.take(MAX_ARCHIVE_JSON)
        .read_to_end(&mut buf)
        .map_err(io_err(format!("read {}", p.display())))?;
    load_oci_index(content, &LayoutDir(dir), &buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gc::tests::{make_image, put};

    fn store() -> (tempfile::TempDir, ContentStore) {
        let t = tempfile::tempdir().unwrap();
        let s = ContentStore::open(&t.path().join("c")).unwrap();
        (t, s)
    }

    fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, d) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(d.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, p, *d).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// An image with a gzip layer (diff ID = the uncompressed tar).
    fn gzip_image(c: &ContentStore) -> Descriptor {
        let raw = layer_tar(&[("etc/hello", b"hi")]);
        let gz = put(c, media::OCI_LAYER_GZIP, &gzip(&raw));
        let cfg = json!({"architecture": host_platform().1, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [Digest::sha256_of(&raw).to_string()]}});
        let cfg = put(c, media::OCI_CONFIG, &serde_json::to_vec(&cfg).unwrap());
        let m = json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": cfg.media_type, "digest": cfg.digest.to_string(), "size": cfg.size},
            "layers": [{"mediaType": gz.media_type, "digest": gz.digest.to_string(), "size": gz.size}]});
        let m = put(c, media::OCI_MANIFEST, &serde_json::to_vec(&m).unwrap());
        let idx = json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": [
            {"mediaType": m.media_type, "digest": m.digest.to_string(), "size": m.size,
             "platform": {"os": "linux", "architecture": host_platform().1}}]});
        put(c, media::OCI_INDEX, &serde_json::to_vec(&idx).unwrap())
    }

    #[test]
    fn oci_round_trip_keeps_indexes() {
        let (_t, a) = store();
        let target = gzip_image(&a);
        let plain = make_image(&a, &[layer_tar(&[("x", b"1")])], "p");
        let mut buf = Vec::new();
        let images = vec![
            ("docker.io/library/gz:1".to_string(), target.clone()),
            ("example.com/p/plain:2".to_string(), plain.manifest.clone()),
        ];
        save(&a, &images, ArchiveFormat::OciArchive, &mut buf).unwrap();
        let (_t2, b) = store();
        let got = load(&b, &mut &buf[..]).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name.as_deref(), Some("docker.io/library/gz:1"));
        assert_eq!(got[0].target, target);
        assert_eq!(got[1].target, plain.manifest);
        assert_eq!(a.list().unwrap(), b.list().unwrap());
        assert!(std::fs::read_dir(b.tmp_dir()).unwrap().next().is_none());
    }

    #[test]
    fn docker_round_trip_decompresses_and_verifies() {
        let (_t, a) = store();
        let target = gzip_image(&a);
        let mut buf = Vec::new();
        let images = vec![
            ("docker.io/library/gz:1".to_string(), target.clone()),
            ("gz:2".to_string(), target.clone()),
        ];
        save(&a, &images, ArchiveFormat::DockerArchive, &mut buf).unwrap();
        let (_t2, b) = store();
        let got = load(&b, &mut &buf[..]).unwrap();
        let names: Vec<_> = got.iter().map(|g| g.name.clone().unwrap()).collect();
        assert_eq!(names, ["docker.io/library/gz:1", "docker.io/library/gz:2"]);
        let t = &got[0].target;
        assert_eq!(t.media_type, media::DOCKER_MANIFEST);
        let m: Value = serde_json::from_slice(&b.read_blob(&t.digest, 1 << 20).unwrap()).unwrap();
        let layer: Digest = m["layers"][0]["digest"].as_str().unwrap().parse().unwrap();
        let raw = layer_tar(&[("etc/hello", b"hi")]);
        assert_eq!(layer, Digest::sha256_of(&raw));
        assert_eq!(b.read_blob(&layer, 1 << 20).unwrap(), raw);
        assert_eq!(m["layers"][0]["mediaType"], media::DOCKER_LAYER);
        // A second save of the loaded image gives the same layer.
        let mut again = Vec::new();
        save(
            &b,
            &[("x:1".into(), t.clone())],
            ArchiveFormat::DockerArchive,
            &mut again,
        )
        .unwrap();
        let (_t3, c) = store();
        load(&c, &mut &again[..]).unwrap();
        assert!(c.info(&layer).unwrap().is_some());
    }

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, d) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(d.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // set_path refuses "..", so write the raw name.
            let name = p.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            b.append(&h, *d).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn hostile_archives_are_refused() {
        let (_t, s) = store();
        for bad in ["../evil", "/abs/evil", "a/../../evil"] {
            let t = tar_of(&[(bad, b"x")]);
            let e = load(&s, &mut &t[..]).unwrap_err();
            assert!(matches!(e, ArchiveError::UnsafePath(_)), "{bad}: {e}");
        }
        let e = load(&s, &mut &tar_of(&[("foo", b"x")])[..]).unwrap_err();
        assert!(matches!(e, ArchiveError::UnknownFormat), "{e}");
        // A layer that does not match its diff ID.
        let cfg = json!({"rootfs": {"type": "layers", "diff_ids": [Digest::sha256_of(b"good").to_string()]}});
        let cfg = serde_json::to_vec(&cfg).unwrap();
        let man = br#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":["l/layer.tar"]}]"#;
        let t = tar_of(&[
            ("manifest.json", man),
            ("c.json", &cfg),
            ("l/layer.tar", b"evil"),
        ]);
        match load(&s, &mut &t[..]).unwrap_err() {
            ArchiveError::LayerMismatch {
                expected, actual, ..
            } => {
                assert_eq!(expected, Digest::sha256_of(b"good"));
                assert_eq!(actual, Digest::sha256_of(b"evil"));
            }
            e => panic!("{e}"),
        }
        // An OCI blob whose content is not its name.
        let name = format!("blobs/sha256/{}", Digest::sha256_of(b"a").hex());
        let t = tar_of(&[(&name, b"b")]);
        let e = load(&s, &mut &t[..]).unwrap_err();
        assert!(
            matches!(
                e,
                ArchiveError::Content(ContentError::DigestMismatch { .. })
            ),
            "{e}"
        );
        assert!(s
            .list()
            .unwrap()
            .iter()
            .all(|(d, _)| *d != Digest::sha256_of(b"a")));
    }

    #[test]
    fn import_layout_dir_and_bare_tags() {
        let (_t, a) = store();
        let img = make_image(&a, &[layer_tar(&[("y", b"2")])], "l");
        let layout = tempfile::tempdir().unwrap();
        let mut buf = Vec::new();
        save(
            &a,
            &[("example.com/l:1".into(), img.manifest.clone())],
            ArchiveFormat::OciArchive,
            &mut buf,
        )
        .unwrap();
        tar::Archive::new(&buf[..]).unpack(layout.path()).unwrap();
        // Rewrite the index with a bare tag.
        let idx = json!({"schemaVersion": 2, "manifests": [{
            "mediaType": img.manifest.media_type, "digest": img.manifest.digest.to_string(),
            "size": img.manifest.size, "annotations": {REF_NAME: "latest"}}]});
        std::fs::write(
            layout.path().join("index.json"),
            serde_json::to_vec(&idx).unwrap(),
        )
        .unwrap();
        let (_t2, b) = store();
        let got = import_layout(&b, layout.path()).unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].name.is_none());
        assert_eq!(got[0].target, img.manifest);
        assert_eq!(a.list().unwrap(), b.list().unwrap());
        let e = import_layout(&b, &layout.path().join("blobs")).unwrap_err();
        assert!(matches!(e, ArchiveError::NotALayout(_)));
    }
}
