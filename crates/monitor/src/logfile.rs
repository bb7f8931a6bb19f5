//! Container log files in the two formats clients read:
//!
//! - **json-file** (docker's): one JSON object per line,
//!   `{"log":"hello\n","stream":"stdout","time":"2026-11-28T19:00:00.123456789Z"}`.
//!   A line longer than the buffer is split into entries whose `log` has no
//!   trailing newline; the last piece has it.
//! - **k8s-file** (the CRI format kubelet reads):
//!   `2026-11-28T19:00:00.123456789Z stdout F hello`, where `F` marks a full
//!   line and `P` a partial one (a long line split, or output that ended
//!   without a newline).
//!
//! [`LogWriter`] takes raw bytes from a stream, cuts them into lines, and
//! rotates by size: when the file would pass `max_size`, `log` becomes
//! `log.1`, `log.1` becomes `log.2`, …, and the oldest beyond `max_file`
//! files is dropped. [`read_entries`] reads both formats back, oldest
//! first, across the rotated files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

/// The longest piece of a line written as one entry (docker's and CRI-O's
/// 16 KiB).
pub const MAX_LINE: usize = 16 * 1024;

/// Which format a log file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// docker's json-file.
    JsonFile,
    /// The CRI (k8s-file) format.
    K8sFile,
}

/// Which stream an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// stdout.
    Stdout,
    /// stderr.
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When the bytes were read.
    pub time: DateTime<Utc>,
    /// From which stream.
    pub stream: Stream,
    /// The bytes, with their newline if they ended a line.
    pub line: Vec<u8>,
}

/// A log file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An I/O error on the file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A line that is not in the file's format.
    #[error("{path}:{line}: not a {format:?} log line")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The expected format.
        format: Format,
    },
}

/// Writes one container's log, rotating by size.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    format: Format,
    max_size: Option<u64>,
    max_file: u32,
    file: File,
    size: u64,
    /// Per stream: bytes of an unfinished line.
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens (appending to) `path`. `max_size` None means no rotation;
    /// `max_file` is how many files to keep in all (at least 1).
    pub fn open(
        path: &Path,
        format: Format,
        max_size: Option<u64>,
        max_file: u32,
    ) -> io::Result<LogWriter> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            format,
            max_size,
            max_file: max_file.max(1),
            file,
            size,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Takes bytes read from `stream` at `now`: whole lines are written,
    /// the rest waits for more (or for [`LogWriter::flush_partial`]); a
    /// pending piece reaching [`MAX_LINE`] is written as a partial entry.
    pub fn write(&mut self, stream: Stream, data: &[u8], now: DateTime<Utc>) -> io::Result<()> {
        let i = stream as usize;
        let mut rest = data;
        while !rest.is_empty() {
            let room = MAX_LINE - self.pending[i].len();
            match rest[..rest.len().min(room)]
                .iter()
                .position(|&b| b == b'\n')
            {
                Some(n) => {
                    self.pending[i].extend_from_slice(&rest[..=n]);
                    rest = &rest[n + 1..];
                    let line = std::mem::take(&mut self.pending[i]);
                    self.entry(stream, &line, now)?;
                }
                None => {
                    let take = rest.len().min(room);
                    self.pending[i].extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if self.pending[i].len() == MAX_LINE {
                        let piece = std::mem::take(&mut self.pending[i]);
                        self.entry(stream, &piece, now)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes what is pending on both streams as partial entries (the
    /// container exited, or output paused without a newline).
    pub fn flush_partial(&mut self, now: DateTime<Utc>) -> io::Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let piece = std::mem::take(&mut self.pending[stream as usize]);
            if !piece.is_empty() {
                self.entry(stream, &piece, now)?;
            }
        }
        Ok(())
    }

    /// Formats and appends one entry, rotating first if it would not fit.
    fn entry(&mut self, stream: Stream, line: &[u8], now: DateTime<Utc>) -> io::Result<()> {
        let time = now.to_rfc3339_opts(SecondsFormat::Nanos, true);
        let mut out = match self.format {
            Format::JsonFile => {
                let v = serde_json::json!({
                    "log": String::from_utf8_lossy(line),
                    "stream": stream.as_str(),
                    "time": time,
                });
                serde_json::to_vec(&v).map_err(io::Error::other)?
            }
            Format::K8sFile => {
                let (body, tag) = match line.strip_suffix(b"\n") {
                    Some(b) => (b, "F"),
                    None => (line, "P"),
                };
                let mut o = format!("{time} {} {tag} ", stream.as_str()).into_bytes();
                o.extend_from_slice(body);
                o
            }
        };
        out.push(b'\n');
        if let Some(max) = self.max_size {
            if self.size > 0 && self.size + out.len() as u64 > max {
                self.rotate()?;
            }
        }
        self.file.write_all(&out)?;
        self.size += out.len() as u64;
        Ok(())
    }

    /// `log.{n-1}` → `log.n`, …, `log` → `log.1`, and a fresh `log`.
    fn rotate(&mut self) -> io::Result<()> {
        if self.max_file <= 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let last = rotated(&self.path, self.max_file - 1);
        let _ = fs::remove_file(&last);
        for n in (1..self.max_file - 1).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                fs::rename(&from, rotated(&self.path, n + 1))?;
            }
        }
        fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// `PATH.n`.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Every entry of the log at `path` and its rotated files, oldest first.
pub fn read_entries(path: &Path, format: Format) -> Result<Vec<Entry>, LogError> {
    let mut files = Vec::new();
    let mut n = 1;
    while rotated(path, n).exists() {
        files.push(rotated(path, n));
        n += 1;
    }
    files.reverse();
    files.push(path.to_path_buf());
    let mut out = Vec::new();
    for f in files {
        let file = match File::open(&f) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(LogError::Io { path: f, source }),
        };
        for (i, line) in BufReader::new(file).split(b'\n').enumerate() {
            let line = line.map_err(|source| LogError::Io {
                path: f.clone(),
                source,
            })?;
            let bad = || LogError::Malformed {
                path: f.clone(),
                line: i + 1,
                format,
            };
            out.push(parse_line(&line, format).ok_or_else(bad)?);
        }
    }
    Ok(out)
}

fn parse_stream(s: &str) -> Option<Stream> {
    match s {
        "stdout" => Some(Stream::Stdout),
        "stderr" => Some(Stream::Stderr),
        _ => None,
    }
}

/// One line of a log file (without its newline).
pub fn parse_line(line: &[u8], format: Format) -> Option<Entry> {
    match format {
        Format::JsonFile => {
            let v: serde_json::Value = serde_json::from_slice(line).ok()?;
            Some(Entry {
                time: DateTime::parse_from_rfc3339(v["time"].as_str()?)
                    .ok()?
                    .with_timezone(&Utc),
                stream: parse_stream(v["stream"].as_str()?)?,
                line: v["log"].as_str()?.as_bytes().to_vec(),
            })
        }
        Format::K8sFile => {
            let mut parts = line.splitn(4, |&b| b == b' ');
            let time = std::str::from_utf8(parts.next()?).ok()?;
            let stream = parse_stream(std::str::from_utf8(parts.next()?).ok()?)?;
            let tag = parts.next()?;
            let mut body = parts.next().unwrap_or_default().to_vec();
            match tag {
                b"F" => body.push(b'\n'),
                b"P" => {}
                _ => return None,
            }
            Some(Entry {
                time: DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc),
                stream,
                line: body,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-11-28T19:00:{s:02}.000000001Z"))
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn json_file_is_dockers_format() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p, Format::JsonFile, None, 1).unwrap();
        w.write(Stream::Stdout, b"hel", t(1)).unwrap();
        w.write(Stream::Stderr, b"oops\n", t(2)).unwrap();
        w.write(Stream::Stdout, b"lo\nwor", t(3)).unwrap();
        w.flush_partial(t(4)).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            "{\"log\":\"oops\\n\",\"stream\":\"stderr\",\"time\":\"2026-11-28T19:00:02.000000001Z\"}\n\
             {\"log\":\"hello\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-28T19:00:03.000000001Z\"}\n\
             {\"log\":\"wor\",\"stream\":\"stdout\",\"time\":\"2026-11-28T19:00:04.000000001Z\"}\n"
        );
        let e = read_entries(&p, Format::JsonFile).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            (e[1].stream, e[1].line.as_slice()),
            (Stream::Stdout, &b"hello\n"[..])
        );
    }

    #[test]
    fn k8s_file_is_the_cri_format_with_partials() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p, Format::K8sFile, None, 1).unwrap();
        let long = vec![b'x'; MAX_LINE + 10];
        w.write(Stream::Stdout, &long, t(1)).unwrap();
        w.write(Stream::Stdout, b"\nend", t(2)).unwrap();
        w.flush_partial(t(3)).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("2026-11-28T19:00:01.000000001Z stdout P xxx"));
        assert_eq!(lines[0].len(), 30 + " stdout P ".len() + MAX_LINE);
        assert_eq!(
            lines[1],
            format!("2026-11-28T19:00:02.000000001Z stdout F {}", "x".repeat(10))
        );
        assert_eq!(lines[2], "2026-11-28T19:00:03.000000001Z stdout P end");
        let e = read_entries(&p, Format::K8sFile).unwrap();
        let joined: Vec<u8> = e.iter().flat_map(|x| x.line.clone()).collect();
        let mut want = long.clone();
        want.extend_from_slice(b"\nend");
        assert_eq!(joined, want);
    }

    #[test]
    fn rotates_by_size_and_keeps_max_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p, Format::K8sFile, Some(200), 3).unwrap();
        for i in 0..20 {
            w.write(Stream::Stdout, format!("line {i:02}\n").as_bytes(), t(i))
                .unwrap();
        }
        // Each entry is 48 bytes: four fit in 200.
        assert!(p.exists() && rotated(&p, 1).exists() && rotated(&p, 2).exists());
        assert!(!rotated(&p, 3).exists());
        for f in [p.clone(), rotated(&p, 1), rotated(&p, 2)] {
            assert!(fs::metadata(&f).unwrap().len() <= 200, "{}", f.display());
        }
        let e = read_entries(&p, Format::K8sFile).unwrap();
        let lines: Vec<String> = e
            .iter()
            .map(|x| String::from_utf8_lossy(&x.line).into_owned())
            .collect();
        // The newest entries survive, in order.
        assert_eq!(lines.last().unwrap(), "line 19\n");
        assert!(lines.windows(2).all(|w| w[0] < w[1]), "{lines:?}");
        assert!(lines.len() >= 9 && lines.len() <= 12, "{lines:?}");
    }

    #[test]
    fn malformed_lines_are_named() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        fs::write(&p, "2026-11-28T19:00:01Z stdout F ok\nnot a log line\n").unwrap();
        let e = read_entries(&p, Format::K8sFile).unwrap_err().to_string();
        assert!(e.ends_with("c.log:2: not a K8sFile log line"), "{e}");
    }
}
