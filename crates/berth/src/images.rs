//! The image commands: pull, push, images, rmi, tag, save, load, import,
//! login, logout, image inspect/history/prune, system check/gc.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_image::archive::{self, ArchiveFormat};
use berth_image::gc::GcOptions;
use berth_image::meta::ImageRecord;
use berth_image::platform::Platform;
use berth_image::store::{
    normalize, ImageStore, LocalImage, NoProgress, PullProgress, SnapshotterKind, StoreOptions,
};
use chrono::{DateTime, Utc};
use clap::Args;

use crate::format::{self, Row};
use crate::progress::Bars;
use crate::{Cli, TlsArgs};

pub(crate) fn open_store(cli: &Cli, extra_insecure: Option<&str>) -> Result<ImageStore> {
    let mut opts = StoreOptions::new(&cli.root);
    opts.registry.insecure = cli.insecure_registries.clone();
    if let Some(h) = extra_insecure {
        opts.registry.insecure.push(h.to_string());
    }
    opts.registry.auth_file = cli.authfile.clone();
    opts.registry.user_agent = format!("berth/{}", env!("CARGO_PKG_VERSION"));
    let mut dirs = cli.cert_dirs.clone();
    dirs.push(PathBuf::from("/etc/berth/certs.d"));
    dirs.push(PathBuf::from("/etc/containers/certs.d"));
    dirs.push(PathBuf::from("/etc/docker/certs.d"));
    opts.registry.certs_dirs = dirs;
    opts.unpack.max_size = crate::containers::parse_bytes("--max-layer-size", &cli.max_layer_size)?;
    opts.snapshotter = match cli.snapshotter.as_str() {
        "auto" => SnapshotterKind::Auto,
        "overlay" | "overlayfs" => SnapshotterKind::Overlay,
        "native" => SnapshotterKind::Native,
        other => bail!("unknown --snapshotter {other:?}: use auto, overlay or native"),
    };
    ImageStore::open(opts)
        .with_context(|| format!("opening the image store in {}", cli.root.display()))
}

/// The registry host of a reference, for `--tls-verify=false`.
fn insecure_host(reference: &str, tls: &TlsArgs) -> Result<Option<String>> {
    if tls.tls_verify {
        return Ok(None);
    }
    Ok(Some(normalize(reference)?.registry().to_string()))
}

/// `pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image, e.g. busybox or registry:5000/app@sha256:...
    pub reference: String,
    /// The platform to pull from a multi-platform index (os/arch[/variant]).
    #[arg(long)]
    pub platform: Option<String>,
    /// Print only the image ID.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

pub fn pull(cli: &Cli, a: &PullArgs) -> Result<ExitCode> {
    let platform = match &a.platform {
        Some(p) => p.parse::<Platform>()?,
        None => Platform::host(),
    };
    let store = open_store(cli, insecure_host(&a.reference, &a.tls)?.as_deref())?;
    let bars = Bars::new(a.quiet, "Downloading");
    let progress: &dyn PullProgress = match &bars {
        Some(b) => b,
        None => &NoProgress,
    };
    let name = normalize(&a.reference)?.whole();
    if !a.quiet {
        eprintln!("Pulling {name}");
    }
    let img = store
        .pull(&a.reference, &platform, progress)
        .with_context(|| format!("pulling {name}"))?;
    if !a.quiet {
        eprintln!("Digest: {}", img.record.target.digest);
    }
    println!("{}", img.config_digest.hex());
    Ok(ExitCode::SUCCESS)
}

/// `push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The local image.
    pub image: String,
    /// Where to push it (default: its own name).
    pub destination: Option<String>,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

pub fn push(cli: &Cli, a: &PushArgs) -> Result<ExitCode> {
    let dest = a.destination.clone().unwrap_or_else(|| a.image.clone());
    let store = open_store(cli, insecure_host(&dest, &a.tls)?.as_deref())?;
    let bars = Bars::new(a.quiet, "Pushing");
    let progress: &dyn PullProgress = match &bars {
        Some(b) => b,
        None => &NoProgress,
    };
    let d = store
        .push(&a.image, a.destination.as_deref(), progress)
        .with_context(|| {
            format!(
                "pushing {} to {}",
                a.image,
                normalize(&dest).map(|r| r.whole()).unwrap_or(dest.clone())
            )
        })?;
    if !a.quiet {
        eprintln!("Digest: {d}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `images`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only this repository (a reference or pattern with *).
    pub reference: Option<String>,
    /// Go-template subset ({{.Repository}} {{.Tag}} {{.ID}} {{.Digest}} {{.CreatedSince}} {{.CreatedAt}} {{.Size}}), `table ...`, or `json`.
    #[arg(long)]
    pub format: Option<String>,
    /// Show digests.
    #[arg(long)]
    pub digests: bool,
    /// Only IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// Filters: reference=PATTERN, dangling=true|false, before=IMAGE, since=IMAGE, label=KEY[=VALUE].
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Show all images (accepted for compatibility; berth has no intermediate images).
    #[arg(short, long)]
    pub all: bool,
}

struct Listed {
    rec: ImageRecord,
    img: Option<LocalImage>,
    created: Option<DateTime<Utc>>,
}

pub(crate) fn split_name(name: &str) -> (String, String) {
    berth_engine::api::images::split_name(name)
}

fn glob(pattern: &str, s: &str) -> bool {
    // `*` matches any run of characters except '/', as docker's reference filter.
    fn go(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], s) || (!s.is_empty() && s[0] != b'/' && go(p, &s[1..])),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), s.as_bytes())
}

fn reference_matches(pattern: &str, name: &str) -> bool {
    let (repo, tag) = split_name(name);
    let short = repo
        .strip_prefix("docker.io/library/")
        .or_else(|| repo.strip_prefix("docker.io/"))
        .unwrap_or(&repo);
    for cand in [
        repo.clone(),
        short.to_string(),
        format!("{repo}:{tag}"),
        format!("{short}:{tag}"),
    ] {
        if glob(pattern, &cand) {
            return true;
        }
    }
    // A plain short name such as `busybox` matches its normalised form.
    normalize(pattern)
        .map(|r| {
            r.whole() == name
                || r.whole().starts_with(&format!("{repo}:")) && !pattern.contains(':')
        })
        .unwrap_or(false)
}

pub fn images(cli: &Cli, a: &ImagesArgs) -> Result<ExitCode> {
    let store = open_store(cli, None)?;
    let host = Platform::host();
    let mut listed: Vec<Listed> = Vec::new();
    for rec in store.list()? {
        let img = store.resolve(&rec, &host).ok();
        let created = img
            .as_ref()
            .and_then(|i| i.config.created.as_deref())
            .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
            .map(|c| c.with_timezone(&Utc));
        listed.push(Listed { rec, img, created });
    }
    let mut filters: Vec<(String, String)> = Vec::new();
    for f in &a.filter {
        let (k, v) = f
            .split_once('=')
            .with_context(|| format!("invalid --filter {f:?}: expected KEY=VALUE"))?;
        if !["reference", "dangling", "before", "since", "label"].contains(&k) {
            bail!("invalid --filter {f:?}: unknown key {k:?} (use reference, dangling, before, since or label)");
        }
        filters.push((k.to_string(), v.to_string()));
    }
    if let Some(r) = &a.reference {
        filters.push(("reference".into(), r.clone()));
    }
    let time_of = |name: &str| -> Result<Option<DateTime<Utc>>> {
        let rec = store
            .lookup(name)
            .with_context(|| format!("filter image {name:?}"))?;
        Ok(store
            .resolve(&rec, &host)
            .ok()
            .and_then(|i| i.config.created)
            .and_then(|c| DateTime::parse_from_rfc3339(&c).ok())
            .map(|c| c.with_timezone(&Utc)))
    };
    let mut keep = Vec::new();
    'outer: for l in listed {
        for (k, v) in &filters {
            let ok = match k.as_str() {
                "reference" => reference_matches(v, &l.rec.name),
                "dangling" => {
                    let want = match v.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => bail!("invalid --filter dangling={v}: use true or false"),
                    };
                    (split_name(&l.rec.name).1 == "<none>") == want
                }
                "before" => matches!((time_of(v)?, l.created), (Some(t), Some(c)) if c < t),
                "since" => matches!((time_of(v)?, l.created), (Some(t), Some(c)) if c > t),
                "label" => {
                    let labels = l
                        .img
                        .as_ref()
                        .and_then(|i| i.config.config.as_ref())
                        .and_then(|c| c.labels.clone())
                        .unwrap_or_default();
                    match v.split_once('=') {
                        Some((lk, lv)) => labels.get(lk).map(String::as_str) == Some(lv),
                        None => labels.contains_key(v.as_str()),
                    }
                }
                _ => true,
            };
            if !ok {
                continue 'outer;
            }
        }
        keep.push(l);
    }
    keep.sort_by(|x, y| y.created.cmp(&x.created).then(x.rec.name.cmp(&y.rec.name)));
    let now = Utc::now();
    if a.quiet {
        let mut seen = BTreeSet::new();
        for l in &keep {
            if let Some(i) = &l.img {
                let id = if a.no_trunc {
                    i.id().to_string()
                } else {
                    i.id().short().to_string()
                };
                if seen.insert(id.clone()) {
                    println!("{id}");
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Row> = keep
        .iter()
        .map(|l| {
            let (repo, tag) = split_name(&l.rec.name);
            let mut r = Row::new();
            r.insert("Repository", repo);
            r.insert("Tag", tag);
            r.insert("Digest", l.rec.target.digest.to_string());
            let id = l.img.as_ref().map(|i| {
                if a.no_trunc {
                    i.id().to_string()
                } else {
                    i.id().short().to_string()
                }
            });
            r.insert("ID", id.unwrap_or_else(|| "<missing>".into()));
            r.insert(
                "CreatedSince",
                l.created.map(|c| format::ago(c, now)).unwrap_or_default(),
            );
            r.insert(
                "CreatedAt",
                l.created.map(|c| c.to_rfc3339()).unwrap_or_default(),
            );
            r.insert(
                "Size",
                l.img
                    .as_ref()
                    .map(|i| format::human_size(i.size()))
                    .unwrap_or_default(),
            );
            r
        })
        .collect();
    let mut cols = vec![("Repository", "REPOSITORY"), ("Tag", "TAG")];
    if a.digests {
        cols.push(("Digest", "DIGEST"));
    }
    cols.extend([
        ("ID", "IMAGE ID"),
        ("CreatedSince", "CREATED"),
        ("Size", "SIZE"),
    ]);
    let all_cols = [
        ("Repository", "REPOSITORY"),
        ("Tag", "TAG"),
        ("Digest", "DIGEST"),
        ("ID", "IMAGE ID"),
        ("CreatedSince", "CREATED"),
        ("CreatedAt", "CREATED AT"),
        ("Size", "SIZE"),
    ];
    let out = match a.format.as_deref() {
        None => format::render(&rows, &cols, None)?,
        Some(f) => format::render(&rows, &all_cols, Some(f))?,
    };
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// `rmi`.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Images: names or IDs.
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove every name of an image given by ID.
    #[arg(short, long)]
    pub force: bool,
}

/// The names of the containers made from the image `name` (none when
/// there is no such image).
fn containers_using(cli: &Cli, store: &ImageStore, name: &str) -> Result<Vec<String>> {
    Ok(berth_engine::api::images::containers_using_image(
        store,
        &cli.namespace,
        name,
    )?)
}

pub fn rmi(cli: &Cli, a: &RmiArgs) -> Result<ExitCode> {
    let store = open_store(cli, None)?;
    let mut failed = false;
    for i in &a.images {
        let users = containers_using(cli, &store, i)?;
        if !users.is_empty() && !a.force {
            eprintln!(
                "Error: image {i} is in use by container(s) {}: remove them first, or untag it with --force",
                users.join(", ")
            );
            failed = true;
            continue;
        }
        match store.remove(i, a.force) {
            Ok(names) => {
                for n in names {
                    println!("Untagged: {n}");
                }
            }
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    let report = store.gc(&GcOptions {
        ingest_max_age: Duration::from_secs(24 * 3600),
        dry_run: false,
    })?;
    for d in &report.removed_blobs {
        println!("Deleted: {d}");
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image.
    pub source: String,
    /// New names.
    #[arg(required = true)]
    pub targets: Vec<String>,
}

pub fn tag(cli: &Cli, a: &TagArgs) -> Result<ExitCode> {
    let store = open_store(cli, None)?;
    for t in &a.targets {
        store
            .tag(&a.source, t)
            .with_context(|| format!("tagging {} as {t}", a.source))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Images.
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Output file (default: stdout, which must not be a terminal).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// docker-archive (default) or oci-archive.
    #[arg(long, default_value = "docker-archive")]
    pub format: String,
}

pub fn save(cli: &Cli, a: &SaveArgs) -> Result<ExitCode> {
    let fmt = match a.format.as_str() {
        "docker-archive" => ArchiveFormat::DockerArchive,
        "oci-archive" => ArchiveFormat::OciArchive,
        f => bail!("unknown --format {f:?}: use docker-archive or oci-archive"),
    };
    let store = open_store(cli, None)?;
    let mut list = Vec::new();
    for i in &a.images {
        let rec = store.lookup(i)?;
        let target = store.exportable_target(&rec)?;
        list.push((rec.name.clone(), target));
    }
    match &a.output {
        Some(p) => {
            let tmp = p.with_extension("berth-tmp");
            let f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let mut w = BufWriter::new(f);
            let r = archive::save(store.content(), &list, fmt, &mut w)
                .map_err(anyhow::Error::from)
                .and_then(|_| w.flush().map_err(anyhow::Error::from));
            if let Err(e) = r {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.context(format!("saving to {}", p.display())));
            }
            std::fs::rename(&tmp, p).with_context(|| format!("renaming to {}", p.display()))?;
        }
        None => {
            if io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE or redirect stdout");
            }
            let mut w = BufWriter::new(io::stdout().lock());
            archive::save(store.content(), &list, fmt, &mut w)?;
            w.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Input file (default: stdin).
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
}

fn record_loaded(store: &ImageStore, loaded: Vec<archive::LoadedImage>, quiet: bool) -> Result<()> {
    let host = Platform::host();
    for l in loaded {
        let name = l
            .name
            .clone()
            .unwrap_or_else(|| format!("<none>@{}", l.target.digest));
        let now = Utc::now();
        let rec = ImageRecord {
            name: match &l.name {
                Some(n) => normalize(n)?.whole(),
                None => format!("sha256:{}", l.target.digest.hex()),
            },
            target: l.target.clone(),
            created: now,
            updated: now,
            labels: BTreeMap::new(),
        };
        let img = store
            .resolve(&rec, &host)
            .with_context(|| format!("reading loaded image {name}"))?;
        store
            .ensure_unpacked(&img)
            .with_context(|| format!("unpacking loaded image {name}"))?;
        store.meta().put_image(&rec)?;
        if !quiet {
            println!("Loaded image: {}", rec.name);
        }
    }
    Ok(())
}

pub fn load(cli: &Cli, a: &LoadArgs) -> Result<ExitCode> {
    let store = open_store(cli, None)?;
    let mut input: Box<dyn Read> = match &a.input {
        Some(p) => Box::new(BufReader::new(
            File::open(p).with_context(|| format!("opening {}", p.display()))?,
        )),
        None => Box::new(io::stdin().lock()),
    };
    let loaded = archive::load(store.content(), &mut input).context("loading the archive")?;
    record_loaded(&store, loaded, a.quiet)?;
    Ok(ExitCode::SUCCESS)
}

/// `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// An OCI image layout directory.
    pub dir: PathBuf,
    /// Name for the image when the layout has one unnamed image.
    pub name: Option<String>,
}

pub fn import(cli: &Cli, a: &ImportArgs) -> Result<ExitCode> {
    let store = open_store(cli, None)?;
    let mut loaded = archive::import_layout(store.content(), &a.dir)
        .with_context(|| format!("importing the OCI layout {}", a.dir.display()))?;
    if let Some(n) = &a.name {
        if loaded.len() != 1 {
            bail!(
                "{} holds {} images; a NAME can only be given for one",
                a.dir.display(),
                loaded.len()
            );
        }
        loaded[0].name = Some(n.clone());
    }
    record_loaded(&store, loaded, false)?;
    Ok(ExitCode::SUCCESS)
}

/// `login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry (HOST[:PORT]).
    pub registry: String,
    /// User name.
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password.
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

pub fn login(cli: &Cli, a: &LoginArgs) -> Result<ExitCode> {
    let user = match &a.username {
        Some(u) => u.clone(),
        None => {
            eprint!("Username: ");
            let mut s = String::new();
            io::stdin().read_line(&mut s)?;
            s.trim().to_string()
        }
    };
    let password = match (&a.password, a.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p.clone(),
        (None, _) => {
            if !a.password_stdin {
                eprint!("Password: ");
            }
            let mut s = String::new();
            io::stdin().read_line(&mut s)?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
    };
    if user.is_empty() {
        bail!("login to {}: a user name is needed", a.registry);
    }
    let insecure = (!a.tls.tls_verify).then(|| a.registry.clone());
    let store = open_store(cli, insecure.as_deref())?;
    store
        .client()
        .login(&a.registry, &user, &password)
        .with_context(|| format!("logging in to {}", a.registry))?;
    println!("Login Succeeded!");
    Ok(ExitCode::SUCCESS)
}

/// `logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry.
    pub registry: String,
}

pub fn logout(cli: &Cli, a: &LogoutArgs) -> Result<ExitCode> {
    let store = open_store(cli, None)?;
    if store.client().logout(&a.registry)? {
        println!("Removed login credentials for {}", a.registry);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("Error: not logged in to {}", a.registry);
        Ok(ExitCode::from(1))
    }
}

/// `image inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Images.
    #[arg(required = true)]
    pub images: Vec<String>,
    /// A template ({{.Field}} of the top-level keys) instead of JSON.
    #[arg(short, long)]
    pub format: Option<String>,
}

pub(crate) fn inspect_json(img: &LocalImage) -> serde_json::Value {
    let cfg = &img.config_json;
    let (repo_tags, repo_digests): (Vec<String>, Vec<String>) = {
        let (r, _) = split_name(&img.record.name);
        (
            vec![img.record.name.clone()],
            vec![format!("{r}@{}", img.record.target.digest)],
        )
    };
    serde_json::json!({
        "Id": img.config_digest.hex(),
        "Digest": img.record.target.digest.to_string(),
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Created": cfg.get("created"),
        "Author": cfg.get("author"),
        "Architecture": cfg.get("architecture"),
        "Os": cfg.get("os"),
        "Config": cfg.get("config"),
        "RootFS": cfg.get("rootfs"),
        "Size": img.size(),
        "History": cfg.get("history"),
        "ManifestType": img.manifest.media_type.clone().unwrap_or_else(|| img.record.target.media_type.clone()),
        "ManifestDigest": img.manifest_digest.to_string(),
        "Layers": img.manifest.layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>(),
        "Labels": cfg.get("config").and_then(|c| c.get("Labels")),
    })
}

pub fn inspect(cli: &Cli, a: &InspectArgs) -> Result<ExitCode> {
    let store = open_store(cli, None)?;
    let host = Platform::host();
    let mut out = Vec::new();
    for i in &a.images {
        let img = store
            .get(i, &host)
            .with_context(|| format!("inspecting {i}"))?;
        out.push(inspect_json(&img));
    }
    match &a.format {
        None => println!("{}", serde_json::to_string_pretty(&out)?),
        Some(f) => {
            for v in &out {
                let mut row = Row::new();
                for k in [
                    "Id",
                    "Digest",
                    "Created",
                    "Architecture",
                    "Os",
                    "Size",
                    "Author",
                ] {
                    let s = match v.get(k) {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(serde_json::Value::Null) | None => String::new(),
                        Some(x) => x.to_string(),
                    };
                    row.insert(k, s);
                }
                print!("{}", format::render(&[row], &[], Some(f))?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `image history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The image.
    pub image: String,
    /// Don't truncate the CREATED BY column.
    #[arg(long)]
    pub no_trunc: bool,
    /// Template or json.
    #[arg(long)]
    pub format: Option<String>,
    /// Only IDs.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn history(cli: &Cli, a: &HistoryArgs) -> Result<ExitCode> {
    let store = open_store(cli, None)?;
    let img = store
        .get(&a.image, &Platform::host())
        .with_context(|| format!("history of {}", a.image))?;
    let now = Utc::now();
    let mut layers = img.manifest.layers.iter();
    let mut rows = Vec::new();
    let hist = if img.config.history.is_empty() {
        // No history: one line per layer.
        img.manifest
            .layers
            .iter()
            .map(|_| Default::default())
            .collect()
    } else {
        img.config.history.clone()
    };
    for h in hist.iter() {
        let layer = if h.empty_layer { None } else { layers.next() };
        let mut r = Row::new();
        r.insert(
            "ID",
            layer
                .map(|l| {
                    if a.no_trunc {
                        l.digest.to_string()
                    } else {
                        l.digest.short().to_string()
                    }
                })
                .unwrap_or_else(|| "<missing>".into()),
        );
        let created = h
            .created
            .as_deref()
            .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
            .map(|c| c.with_timezone(&Utc));
        r.insert(
            "CreatedSince",
            created.map(|c| format::ago(c, now)).unwrap_or_default(),
        );
        r.insert(
            "CreatedAt",
            created.map(|c| c.to_rfc3339()).unwrap_or_default(),
        );
        let by = h.created_by.clone().unwrap_or_default();
        let by = if a.no_trunc || by.chars().count() <= 45 {
            by
        } else {
            by.chars().take(44).collect::<String>() + "…"
        };
        r.insert("CreatedBy", by);
        r.insert(
            "Size",
            format::human_size(layer.map(|l| l.size).unwrap_or(0)),
        );
        r.insert("Comment", h.comment.clone().unwrap_or_default());
        rows.push(r);
    }
    rows.reverse();
    if a.quiet {
        for r in &rows {
            println!("{}", r["ID"]);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let cols = [
        ("ID", "ID"),
        ("CreatedSince", "CREATED"),
        ("CreatedBy", "CREATED BY"),
        ("Size", "SIZE"),
        ("Comment", "COMMENT"),
    ];
    print!("{}", format::render(&rows, &cols, a.format.as_deref())?);
    Ok(ExitCode::SUCCESS)
}

/// `image prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove every image that no container uses, not only dangling ones.
    #[arg(short, long)]
    pub all: bool,
    /// Don't ask (berth never asks; accepted for compatibility).
    #[arg(short, long)]
    pub force: bool,
}

pub fn prune(cli: &Cli, a: &PruneArgs) -> Result<ExitCode> {
    let store = open_store(cli, None)?;
    for rec in store.list()? {
        let dangling = split_name(&rec.name).1 == "<none>";
        if (a.all || dangling) && containers_using(cli, &store, &rec.name)?.is_empty() {
            store.meta().delete_image(&rec.name)?;
            println!("Untagged: {}", rec.name);
        }
    }
    let report = store.gc(&GcOptions {
        ingest_max_age: Duration::from_secs(3600),
        dry_run: false,
    })?;
    for d in &report.removed_blobs {
        println!("Deleted: {d}");
    }
    println!(
        "Total reclaimed space: {}",
        format::human_size(report.bytes_freed)
    );
    Ok(ExitCode::SUCCESS)
}

/// `system check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn check(cli: &Cli, a: &CheckArgs) -> Result<ExitCode> {
    let store = open_store(cli, None)?;
    let r = store.check()?;
    let problems = r.corrupt_blobs.len() + r.missing_blobs.len();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "checked_blobs": r.checked_blobs,
                "corrupt_blobs": r.corrupt_blobs.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                "missing_blobs": r.missing_blobs.iter().map(|(i, d)| serde_json::json!({"image": i, "digest": d.to_string()})).collect::<Vec<_>>(),
                "orphan_blobs": r.orphan_blobs.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                "stale_ingests": r.stale_ingests.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                "missing_snapshots": r.missing_snapshots.iter().map(|(i, s)| serde_json::json!({"image": i, "snapshot": s})).collect::<Vec<_>>(),
                "orphan_snapshots": r.orphan_snapshots,
                "snapshot_trash": r.snapshot_trash.iter().map(|t| serde_json::json!({"name": t.name, "size": t.size})).collect::<Vec<_>>(),
            }))?
        );
    } else {
        println!("checked {} blobs", r.checked_blobs);
        for d in &r.corrupt_blobs {
            println!("corrupt blob: {d} (its content does not match its digest)");
        }
        for (i, d) in &r.missing_blobs {
            println!("missing blob: {d} (needed by {i})");
        }
        for d in &r.orphan_blobs {
            println!("orphan blob: {d} (no image refers to it; `berth system gc` removes it)");
        }
        for d in &r.stale_ingests {
            println!("stale ingest: {d} (an interrupted download; the next pull resumes it or gc removes it)");
        }
        for (i, s) in &r.missing_snapshots {
            println!("missing snapshot: {s} of {i} (unpacked again on use)");
        }
        for s in &r.orphan_snapshots {
            println!("orphan snapshot: {s} (nothing uses it; `berth system gc` removes it)");
        }
        for t in &r.snapshot_trash {
            println!(
                "snapshot trash: {}, {} (left by an interrupted removal or pull; `berth system gc` removes it)",
                t.name,
                format::human_size(t.size)
            );
        }
        if problems == 0 {
            println!("no errors found");
        }
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `system gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Only report what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn gc(cli: &Cli, a: &GcArgs) -> Result<ExitCode> {
    let store = open_store(cli, None)?;
    let r = store.gc(&GcOptions {
        ingest_max_age: Duration::from_secs(3600),
        dry_run: a.dry_run,
    })?;
    let verb = if a.dry_run { "would remove" } else { "removed" };
    println!(
        "{verb} {} blobs, {} snapshots, {} ingests, {} trash directories ({})",
        r.removed_blobs.len(),
        r.removed_snapshots.len(),
        r.removed_ingests.len(),
        r.removed_trash.len(),
        format::human_size(r.bytes_freed)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_like_docker() {
        assert_eq!(
            split_name("docker.io/library/busybox:latest"),
            ("docker.io/library/busybox".into(), "latest".into())
        );
        assert_eq!(
            split_name("127.0.0.1:5000/x/y:1.0"),
            ("127.0.0.1:5000/x/y".into(), "1.0".into())
        );
        assert_eq!(
            split_name("127.0.0.1:5000/x"),
            ("127.0.0.1:5000/x".into(), "<none>".into())
        );
        assert_eq!(split_name("a/b@sha256:00"), ("a/b".into(), "<none>".into()));
    }

    #[test]
    fn reference_filter() {
        assert!(reference_matches(
            "busybox",
            "docker.io/library/busybox:latest"
        ));
        assert!(reference_matches(
            "busy*",
            "docker.io/library/busybox:latest"
        ));
        assert!(reference_matches("*/x:*", "127.0.0.1:5000/x:1"));
        assert!(!reference_matches(
            "alpine",
            "docker.io/library/busybox:latest"
        ));
        assert!(!reference_matches(
            "busybox:1",
            "docker.io/library/busybox:latest"
        ));
    }
}
