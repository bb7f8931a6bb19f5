//! `commit`: a new image from a container. The container's writable layer
//! (the overlay upper directory of its snapshot) becomes one more gzip layer
//! on top of its image's, in OCI form (whiteouts as `.wh.NAME`, opaque
//! directories as `.wh..wh..opq`); the config is the image's with the new
//! diff ID, a history entry, and the changes asked for (`--change` with
//! docker's instructions). Blobs go to the content store, then the image
//! record; the new layer is unpacked into its snapshot through the normal
//! path, so the image is runnable at once.
//!
//! Invariant: the image record is written last, after every blob is in the
//! store and the layers are unpacked, so a failure leaves no image that
//! points at missing content (stray blobs are collected by GC).

use std::io::{self, BufWriter, Seek, Write};
use std::path::Path;

use berth_image::digest::{Algorithm, Digest, HashingWriter};
use berth_image::manifest::{OCI_CONFIG, OCI_MANIFEST};
use berth_image::meta::{Descriptor, ImageRecord};
use berth_image::platform::Platform;
use berth_image::store::{normalize, ImageStore, LocalImage};
use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::files::{self, FilesError};

/// The media type of the new layer.
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A commit that failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A `--change` berth does not take.
    #[error("invalid --change {0:?}: {1}")]
    BadChange(String, String),
    /// The container's layer cannot be read as a diff.
    #[error("commit needs the overlay snapshotter (the container's layer is not a diff): {0}")]
    NotOverlay(String),
    /// Reading the container's files failed.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] berth_image::store::ImageError),
    /// Anything else.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> CommitError {
    let context = context.into();
    move |source| CommitError::Io { context, source }
}

/// What to commit with.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// The new image's name (`repo[:tag]`); untagged when None.
    pub reference: Option<String>,
    /// `--author`.
    pub author: Option<String>,
    /// `--message`.
    pub message: Option<String>,
    /// `--change` instructions.
    pub changes: Vec<String>,
}

/// `["a","b"]` (JSON form) or `a b` (shell form, run by `/bin/sh -c`).
fn exec_form(arg: &str, shell: bool) -> Value {
    if let Ok(v @ Value::Array(_)) = serde_json::from_str::<Value>(arg) {
        return v;
    }
    if shell {
        json!(["/bin/sh", "-c", arg])
    } else {
        json!(arg.split_whitespace().collect::<Vec<_>>())
    }
}

/// Applies docker's `--change` instructions to a run config.
pub fn apply_changes(cfg: &mut Value, changes: &[String]) -> Result<(), CommitError> {
    if !cfg.is_object() {
        *cfg = json!({});
    }
    for ch in changes {
        let bad = |why: &str| CommitError::BadChange(ch.clone(), why.to_string());
        let (ins, arg) = ch
            .trim()
            .split_once(char::is_whitespace)
            .map(|(i, a)| (i.to_ascii_uppercase(), a.trim().to_string()))
            .ok_or_else(|| bad("use INSTRUCTION ARGUMENTS"))?;
        match ins.as_str() {
            "CMD" => cfg["Cmd"] = exec_form(&arg, true),
            "ENTRYPOINT" => cfg["Entrypoint"] = exec_form(&arg, true),
            "WORKDIR" => {
                if !arg.starts_with('/') {
                    return Err(bad("WORKDIR needs an absolute path"));
                }
                cfg["WorkingDir"] = json!(arg);
            }
            "USER" => cfg["User"] = json!(arg),
            "STOPSIGNAL" => cfg["StopSignal"] = json!(arg),
            "ENV" => {
                let (k, v) = arg
                    .split_once('=')
                    .or_else(|| arg.split_once(char::is_whitespace))
                    .ok_or_else(|| bad("ENV takes KEY=VALUE"))?;
                let k = k.trim();
                if k.is_empty() {
                    return Err(bad("ENV takes KEY=VALUE"));
                }
                let mut env: Vec<String> =
                    serde_json::from_value(cfg["Env"].clone()).unwrap_or_default();
                env.retain(|e| !e.starts_with(&format!("{k}=")));
                env.push(format!("{k}={}", v.trim().trim_matches('"')));
                cfg["Env"] = json!(env);
            }
            "LABEL" => {
                let (k, v) = arg
                    .split_once('=')
                    .ok_or_else(|| bad("LABEL takes KEY=VALUE"))?;
                if !cfg["Labels"].is_object() {
                    cfg["Labels"] = json!({});
                }
                cfg["Labels"][k.trim().trim_matches('"')] = json!(v.trim().trim_matches('"'));
            }
            "EXPOSE" => {
                if !cfg["ExposedPorts"].is_object() {
                    cfg["ExposedPorts"] = json!({});
                }
                for p in arg.split_whitespace() {
                    let p = if p.contains('/') {
                        p.to_string()
                    } else {
                        format!("{p}/tcp")
                    };
                    cfg["ExposedPorts"][p] = json!({});
                }
            }
            "VOLUME" => {
                if !cfg["Volumes"].is_object() {
                    cfg["Volumes"] = json!({});
                }
                let list: Vec<String> = match serde_json::from_str::<Vec<String>>(&arg) {
                    Ok(v) => v,
                    Err(_) => arg.split_whitespace().map(str::to_string).collect(),
                };
                for v in list {
                    cfg["Volumes"][v] = json!({});
                }
            }
            _ => {
                return Err(bad(
                    "use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME or WORKDIR",
                ))
            }
        }
    }
    Ok(())
}

/// Puts `bytes` in the content store; returns its descriptor.
fn put_blob(store: &ImageStore, media_type: &str, bytes: &[u8]) -> Result<Descriptor, CommitError> {
    let d = Digest::sha256_of(bytes);
    let mut ing = store
        .content()
        .ingest(&d, Some(bytes.len() as u64))
        .map_err(|e| io_err("store a blob")(io::Error::other(e)))?;
    if ing.offset() == 0 {
        ing.write_all(bytes).map_err(io_err("store a blob"))?;
    }
    ing.commit()
        .map_err(|e| io_err("store a blob")(io::Error::other(e)))?;
    Ok(Descriptor {
        media_type: media_type.into(),
        digest: d,
        size: bytes.len() as u64,
    })
}

/// Commits the container whose writable snapshot is `snapshot` (made from
/// `img`). Returns the new image's ID (config digest) and record name.
pub fn commit(
    store: &ImageStore,
    img: &LocalImage,
    snapshot: &str,
    o: &CommitOptions,
) -> Result<(Digest, String), CommitError> {
    let upper = store
        .snapshotter()
        .upper_dir(snapshot)
        .map_err(|e| CommitError::NotOverlay(e.to_string()))?;
    if store.snapshotter().parallel_layers() {
        // Overlay layers are diffs; the native snapshotter's are full copies.
    } else {
        return Err(CommitError::NotOverlay(format!(
            "{snapshot} is a full copy, not a diff"
        )));
    }
    let mut config = img.config_json.clone();
    let mut run = config["config"].take();
    apply_changes(&mut run, &o.changes)?;
    config["config"] = run;

    // The layer: tar -> (diff ID) -> gzip -> (digest) -> a temp file.
    let tmp_dir = store.content().tmp_dir();
    std::fs::create_dir_all(&tmp_dir).map_err(io_err(format!("create {}", tmp_dir.display())))?;
    let mut tmp = tempfile::tempfile_in(&tmp_dir).map_err(io_err("create a temp file"))?;
    let (diff_id, digest, size) = {
        let compressed = HashingWriter::new(BufWriter::new(&mut tmp), Algorithm::Sha256);
        let gz = flate2::write::GzEncoder::new(compressed, flate2::Compression::fast());
        let mut raw = HashingWriter::new(gz, Algorithm::Sha256);
        files::layer_from_overlay_upper(&upper, &mut raw)?;
        let diff_id = raw.digest();
        let gz = raw.into_inner();
        let mut compressed = gz.finish().map_err(io_err("compress the layer"))?;
        compressed.flush().map_err(io_err("write the layer"))?;
        (diff_id, compressed.digest(), compressed.count())
    };
    tmp.rewind().map_err(io_err("read the layer back"))?;
    {
        let mut ing = store
            .content()
            .ingest(&digest, Some(size))
            .map_err(|e| io_err("store the layer")(io::Error::other(e)))?;
        if ing.offset() == 0 {
            io::copy(&mut tmp, &mut ing).map_err(io_err("store the layer"))?;
        }
        ing.commit()
            .map_err(|e| io_err("store the layer")(io::Error::other(e)))?;
    }

    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
    if !config["rootfs"]["diff_ids"].is_array() {
        config["rootfs"] = json!({"type": "layers", "diff_ids": []});
    }
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .expect("made an array above")
        .push(json!(diff_id.to_string()));
    let mut hist = json!({"created": now, "created_by": "berth commit"});
    if let Some(a) = &o.author {
        config["author"] = json!(a);
        hist["author"] = json!(a);
    }
    if let Some(m) = &o.message {
        hist["comment"] = json!(m);
    }
    if !config["history"].is_array() {
        config["history"] = json!([]);
    }
    config["history"]
        .as_array_mut()
        .expect("made an array above")
        .push(hist);
    config["created"] = json!(now);
    let config_bytes = serde_json::to_vec(&config)
        .map_err(|e| io_err("encode the config")(io::Error::other(e)))?;
    let config_desc = put_blob(store, OCI_CONFIG, &config_bytes)?;

    let mut layers: Vec<Value> = img
        .manifest
        .layers
        .iter()
        .map(|l| json!({"mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size}))
        .collect();
    layers.push(json!({"mediaType": LAYER_GZIP, "digest": digest.to_string(), "size": size}));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_desc.digest.to_string(), "size": config_desc.size},
        "layers": layers,
    });
    let manifest_bytes = serde_json::to_vec(&manifest)
        .map_err(|e| io_err("encode the manifest")(io::Error::other(e)))?;
    let target = put_blob(store, OCI_MANIFEST, &manifest_bytes)?;

    let name = match &o.reference {
        Some(r) => normalize(r)?.whole(),
        None => format!("sha256:{}", config_desc.digest.hex()),
    };
    let rec = ImageRecord {
        name: name.clone(),
        target,
        created: Utc::now(),
        updated: Utc::now(),
        labels: Default::default(),
    };
    let new = store.resolve(&rec, &Platform::host())?;
    store.ensure_unpacked(&new)?;
    store
        .meta()
        .put_image(&rec)
        .map_err(|e| io_err("record the image")(io::Error::other(e)))?;
    Ok((config_desc.digest, name))
}

/// Whether `path` is an overlay upper directory's whiteout (for tests).
pub fn is_whiteout(path: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_char_device() && m.rdev() == 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_as_docker() {
        let mut c = json!({"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"]});
        apply_changes(
            &mut c,
            &[
                "CMD [\"echo\", \"hi\"]".into(),
                "ENTRYPOINT /bin/tini --".into(),
                "ENV A=2".into(),
                "ENV B three".into(),
                "WORKDIR /srv".into(),
                "USER 1000:1000".into(),
                "LABEL team=infra".into(),
                "EXPOSE 80 53/udp".into(),
                "VOLUME /data".into(),
                "STOPSIGNAL SIGINT".into(),
                "cmd echo lower".into(),
            ],
        )
        .unwrap();
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo lower"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/bin/tini --"]));
        assert_eq!(c["Env"], json!(["PATH=/bin", "A=2", "B=three"]));
        assert_eq!(c["WorkingDir"], "/srv");
        assert_eq!(c["User"], "1000:1000");
        assert_eq!(c["Labels"]["team"], "infra");
        assert!(c["ExposedPorts"]["80/tcp"].is_object() && c["ExposedPorts"]["53/udp"].is_object());
        assert!(c["Volumes"]["/data"].is_object());
        assert_eq!(c["StopSignal"], "SIGINT");
        for bad in ["RUN make", "WORKDIR rel", "ENV", "LABEL x", "NOPE x"] {
            let e = apply_changes(&mut c, &[bad.into()])
                .unwrap_err()
                .to_string();
            assert!(e.contains(bad.split_whitespace().next().unwrap()), "{e}");
        }
    }

    #[test]
    fn overlay_upper_becomes_an_oci_layer() {
        let t = tempfile::tempdir().unwrap();
        let up = t.path();
        std::fs::create_dir_all(up.join("etc")).unwrap();
        std::fs::write(up.join("etc/new"), "n").unwrap();
        // A whiteout needs mknod (root); skip that part otherwise.
        let wh = rustix::fs::mknodat(
            rustix::fs::CWD,
            up.join("etc/gone"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0),
            0,
        )
        .is_ok();
        let mut out = Vec::new();
        files::layer_from_overlay_upper(up, &mut out).unwrap();
        let mut ar = tar::Archive::new(&out[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(names.iter().any(|n| n == "etc/new"), "{names:?}");
        if wh {
            assert!(is_whiteout(&up.join("etc/gone")));
            assert!(names.iter().any(|n| n == "etc/.wh.gone"), "{names:?}");
            assert!(!names.iter().any(|n| n == "etc/gone"), "{names:?}");
        }
    }
}
