//! File helpers shared by both backends, and the write plan that makes
//! `apply`/`update` all-or-nothing.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use crate::error::Error;

/// Write `value` to `dir/file` with a single write(2), as the kernel expects.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), Error> {
    let path = dir.join(file);
    debug!(path = %path.display(), value, "cgroup write");
    let res = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    if let Err(source) = res {
        debug!(path = %path.display(), value, error = %source, "cgroup write failed");
        return Err(Error::Write {
            path,
            value: value.to_string(),
            source,
        });
    }
    Ok(())
}

/// Read `dir/file` whole.
pub(crate) fn read(dir: &Path, file: &str) -> Result<String, Error> {
    let path = dir.join(file);
    fs::read_to_string(&path).map_err(|source| Error::Read { path, source })
}

/// Read `dir/file`, `None` if it does not exist.
pub(crate) fn read_opt(dir: &Path, file: &str) -> Result<Option<String>, Error> {
    match read(dir, file) {
        Ok(s) => Ok(Some(s)),
        Err(Error::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

fn parse_err(dir: &Path, file: &str, reason: impl Into<String>) -> Error {
    Error::Parse {
        path: dir.join(file),
        reason: reason.into(),
    }
}

/// Parse a single number; "max" maps to `u64::MAX`.
pub(crate) fn parse_u64(dir: &Path, file: &str, s: &str) -> Result<u64, Error> {
    let t = s.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse::<u64>()
        .map_err(|e| parse_err(dir, file, format!("{t:?} is not a number: {e}")))
}

/// Read a single-number file; "max" maps to `u64::MAX`.
pub(crate) fn read_u64(dir: &Path, file: &str) -> Result<u64, Error> {
    let s = read(dir, file)?;
    parse_u64(dir, file, &s)
}

/// Like `read_u64` but 0 for a missing file.
pub(crate) fn read_u64_or_zero(dir: &Path, file: &str) -> Result<u64, Error> {
    match read_opt(dir, file)? {
        Some(s) => parse_u64(dir, file, &s),
        None => Ok(0),
    }
}

/// Parse a flat keyed file (`key value` per line), skipping lines that are not numbers.
pub(crate) fn parse_flat_keyed(s: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for line in s.lines() {
        let mut it = line.split_whitespace();
        if let (Some(k), Some(v), None) = (it.next(), it.next(), it.next()) {
            if let Ok(v) = v.parse::<u64>() {
                m.insert(k.to_string(), v);
            } else if v == "max" {
                m.insert(k.to_string(), u64::MAX);
            }
        }
    }
    m
}

/// Read a flat keyed file, empty if it does not exist.
pub(crate) fn read_flat_keyed(dir: &Path, file: &str) -> Result<BTreeMap<String, u64>, Error> {
    Ok(read_opt(dir, file)?
        .map(|s| parse_flat_keyed(&s))
        .unwrap_or_default())
}

/// Read `cgroup.procs` of one directory.
pub(crate) fn read_procs(dir: &Path) -> Result<Vec<i32>, Error> {
    let s = read(dir, "cgroup.procs")?;
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim()
                .parse::<i32>()
                .map_err(|e| parse_err(dir, "cgroup.procs", format!("{l:?}: {e}")))
        })
        .collect()
}

/// All pids in `dir` and every cgroup below it.
pub(crate) fn read_procs_recursive(dir: &Path) -> Result<Vec<i32>, Error> {
    let mut out = read_procs(dir)?;
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(source) => {
            return Err(Error::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for ent in rd.flatten() {
        if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            match read_procs_recursive(&ent.path()) {
                Ok(mut v) => out.append(&mut v),
                // a child cgroup removed while we walk is fine
                Err(Error::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// `mkdir -p`, returning the directories that did not exist before, outermost first.
pub(crate) fn mkdir_p(path: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut missing = Vec::new();
    let mut cur = Some(path);
    while let Some(p) = cur {
        if p.exists() {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    missing.reverse();
    let mut created = Vec::new();
    for p in missing {
        debug!(path = %p.display(), "mkdir cgroup");
        match fs::create_dir(&p) {
            Ok(()) => created.push(p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                // undo what this call made, innermost first
                for c in created.iter().rev() {
                    let _ = fs::remove_dir(c);
                }
                return Err(Error::Create { path: p, source });
            }
        }
    }
    Ok(created)
}

/// Remove a cgroup directory: its child cgroups first, retrying on EBUSY
/// while the last processes exit. A directory that is already gone is fine.
/// Remove a parent cgroup that `create` made, only if it is empty now: other
/// containers may have their cgroups below it, and those are not ours to remove.
pub(crate) fn remove_parent_cgroup(path: &Path) {
    debug!(path = %path.display(), "rmdir parent cgroup if empty");
    if let Err(e) = fs::remove_dir(path) {
        debug!(error = %e, path = %path.display(), "leaving a parent cgroup that is still in use");
    }
}

pub(crate) fn remove_cgroup(path: &Path) -> Result<(), Error> {
    if let Ok(rd) = fs::read_dir(path) {
        for ent in rd.flatten() {
            if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup(&ent.path())?;
            }
        }
    }
    let mut delay = std::time::Duration::from_millis(10);
    let mut tries = 0;
    loop {
        debug!(path = %path.display(), "rmdir cgroup");
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 7 => {
                tries += 1;
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(source) => {
                return Err(Error::Remove {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// How to undo one planned write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Undo {
    /// Read the file before writing and write that content back.
    Previous,
    /// Write these (file, value) pairs in this order, in the same directory.
    Explicit(Vec<(String, String)>),
    /// Nothing to undo (or cannot be undone).
    Nothing,
}

/// One write in a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    pub dir: PathBuf,
    pub file: String,
    pub value: String,
    pub undo: Undo,
}

/// An ordered list of writes, built (and validated) before anything is written.
/// `execute` rolls back the writes already done when one fails, so a failing
/// apply or update leaves the cgroup as it was.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn push(&mut self, dir: &Path, file: &str, value: impl Into<String>) {
        self.steps.push(Step {
            dir: dir.to_path_buf(),
            file: file.to_string(),
            value: value.into(),
            undo: Undo::Previous,
        });
    }

    pub fn push_undo(&mut self, dir: &Path, file: &str, value: impl Into<String>, undo: Undo) {
        self.steps.push(Step {
            dir: dir.to_path_buf(),
            file: file.to_string(),
            value: value.into(),
            undo,
        });
    }

    pub fn append(&mut self, mut other: Plan) {
        self.steps.append(&mut other.steps);
    }

    /// Run the plan. On failure, undo the completed steps in reverse order and
    /// return the first error.
    pub fn execute(self) -> Result<Rollback, Error> {
        let mut done: Vec<(PathBuf, Vec<(String, String)>)> = Vec::new();
        for step in self.steps {
            let undo = match &step.undo {
                Undo::Previous => match read(&step.dir, &step.file) {
                    Ok(prev) => vec![(step.file.clone(), prev.trim_end().to_string())],
                    Err(e) => {
                        debug!(error = %e, "cannot read previous value; this write cannot be undone");
                        vec![]
                    }
                },
                Undo::Explicit(v) => v.clone(),
                Undo::Nothing => vec![],
            };
            if let Err(e) = write(&step.dir, &step.file, &step.value) {
                Rollback { done }.run();
                return Err(e);
            }
            done.push((step.dir, undo));
        }
        Ok(Rollback { done })
    }
}

/// The undo log of an executed plan, for callers that have later steps
/// (such as the v2 device program) which may still fail.
#[derive(Debug, Default)]
pub(crate) struct Rollback {
    done: Vec<(PathBuf, Vec<(String, String)>)>,
}

impl Rollback {
    pub fn run(self) {
        for (dir, undo) in self.done.into_iter().rev() {
            for (file, value) in undo {
                if let Err(e) = write(&dir, &file, &value) {
                    warn!(error = %e, "rollback write failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_rolls_back_on_failure() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a"), "1\n").unwrap();
        fs::write(d.path().join("b"), "2\n").unwrap();
        let mut p = Plan::default();
        p.push(d.path(), "a", "10");
        p.push(d.path(), "b", "20");
        p.push(d.path(), "missing-dir/c", "30");
        let err = p.execute().unwrap_err();
        assert!(err.to_string().contains("missing-dir/c"), "{err}");
        assert_eq!(fs::read_to_string(d.path().join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(d.path().join("b")).unwrap(), "2");
    }

    #[test]
    fn mkdir_p_reports_created() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("x")).unwrap();
        let c = mkdir_p(&d.path().join("x/y/z")).unwrap();
        assert_eq!(c, vec![d.path().join("x/y"), d.path().join("x/y/z")]);
        assert!(mkdir_p(&d.path().join("x/y/z")).unwrap().is_empty());
    }

    #[test]
    fn flat_keyed() {
        let m = parse_flat_keyed("a 1\nb max\nc x\nd 1 2\n");
        assert_eq!(m.get("a"), Some(&1));
        assert_eq!(m.get("b"), Some(&u64::MAX));
        assert!(!m.contains_key("c") && !m.contains_key("d"));
    }
}
