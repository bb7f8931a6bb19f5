//! Reading a container's log: what it holds now (the rotated files oldest
//! first, then the complete lines of the current one) through a window
//! (`tail`, `since`, `until`), and then, when following, each line as it
//! is completed, across rotations, until the container has exited and
//! its log is read to the end.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_monitor::logfile::{self, Entry, Format};
use chrono::{DateTime, Utc};

use super::{io_err, ApiError};
use crate::container::{Container, Engine, Status};

/// Which entries to show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogWindow {
    /// Only the last N of what exists when reading starts (all when None).
    pub tail: Option<usize>,
    /// Only entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only entries at or before this time.
    pub until: Option<DateTime<Utc>>,
}

impl LogWindow {
    /// Whether `e` is inside the time bounds.
    pub fn admits(&self, e: &Entry) -> bool {
        !(self.since.is_some_and(|s| e.time < s) || self.until.is_some_and(|u| e.time > u))
    }
}

/// What to read of a container's log.
#[derive(Debug, Clone, Default)]
pub struct LogsRequest {
    /// The window.
    pub window: LogWindow,
    /// Keep reading new output until the container has exited.
    pub follow: bool,
}

/// `--tail`: a number, or `all` / `-1` for every line.
pub fn parse_tail(s: &str) -> Result<Option<usize>, ApiError> {
    match s {
        "all" | "-1" => Ok(None),
        n => n
            .parse()
            .map(Some)
            .map_err(|_| ApiError::Invalid(format!("invalid --tail {n:?}: use a number or all"))),
    }
}

/// A time as `logs --since` takes it: RFC 3339, Unix seconds[.frac], or a
/// duration before `now` (`90s`, `10m`, `1h30m`).
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let bad = || {
        ApiError::Invalid(format!(
            "invalid time {s:?}: use RFC 3339, Unix seconds, or a duration like 10m"
        ))
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(secs) = s.parse::<f64>() {
        let nanos = (secs.fract() * 1e9) as u32;
        return DateTime::from_timestamp(secs.trunc() as i64, nanos)
            .ok_or_else(|| ApiError::Invalid(format!("time {s:?} is out of range")));
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut any = false;
    for ch in s.chars() {
        if ch.is_ascii_digit() || ch == '.' {
            num.push(ch);
            continue;
        }
        let n: f64 = num.parse().map_err(|_| bad())?;
        total += n * match ch {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            _ => return Err(bad()),
        };
        num.clear();
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(bad());
    }
    Ok(now - chrono::Duration::milliseconds((total * 1000.0) as i64))
}

/// A reader of one log file and its rotations.
#[derive(Debug)]
pub struct LogReader {
    path: PathBuf,
    format: Format,
    window: LogWindow,
    /// The inode of the file read as current, and how far.
    ino: Option<u64>,
    offset: u64,
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

impl LogReader {
    /// Reads what `path` and its rotations hold now; returns the reader (to
    /// follow from exactly there) and the entries the window shows.
    pub fn open(
        path: &Path,
        format: Format,
        window: LogWindow,
    ) -> Result<(LogReader, Vec<Entry>), ApiError> {
        let mut entries = Vec::new();
        let mut olds = Vec::new();
        let mut n = 1;
        while rotated(path, n).exists() {
            olds.push(rotated(path, n));
            n += 1;
        }
        for p in olds.iter().rev() {
            entries
                .extend(logfile::read_entries(p, format).map_err(|e| {
                    io_err(format!("reading {}", p.display()))(io::Error::other(e))
                })?);
        }
        let mut ino = None;
        let mut offset = 0;
        if let Ok(mut f) = File::open(path) {
            ino = f.metadata().ok().map(|m| m.ino());
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)
                .map_err(io_err(format!("reading {}", path.display())))?;
            // Only complete lines: following goes on from the last one.
            let end = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            offset = end as u64;
            for line in buf[..end].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                entries.extend(logfile::parse_line(line, format));
            }
        }
        let skip = window.tail.map_or(0, |n| entries.len().saturating_sub(n));
        let shown = entries
            .into_iter()
            .skip(skip)
            .filter(|e| window.admits(e))
            .collect();
        Ok((
            LogReader {
                path: path.to_path_buf(),
                format,
                window,
                ino,
                offset,
            },
            shown,
        ))
    }

    /// Gives `sink` every line completed since the last call (the end of
    /// the old file first when the log was rotated meanwhile); true if it
    /// read anything.
    pub fn read_new(
        &mut self,
        sink: &mut dyn FnMut(&Entry) -> io::Result<()>,
    ) -> Result<bool, ApiError> {
        let cur = File::open(&self.path).ok();
        let cur_ino = cur
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.ino());
        let mut progressed = false;
        if cur_ino != self.ino {
            // Rotated: finish the old file (now PATH.1), then start afresh.
            if self.ino.is_some() {
                if let Ok(mut f) = File::open(rotated(&self.path, 1)) {
                    progressed |= self.read_from(&mut f, self.offset, sink)? != self.offset;
                }
            }
            self.ino = cur_ino;
            self.offset = 0;
        }
        if let Some(mut f) = cur {
            let n = self.read_from(&mut f, self.offset, sink)?;
            progressed |= n != self.offset;
            self.offset = n;
        }
        Ok(progressed)
    }

    /// Gives `sink` the complete lines of `f` from `offset`; returns the
    /// new offset.
    fn read_from(
        &self,
        f: &mut File,
        offset: u64,
        sink: &mut dyn FnMut(&Entry) -> io::Result<()>,
    ) -> Result<u64, ApiError> {
        let ctx = || format!("reading {}", self.path.display());
        f.seek(SeekFrom::Start(offset)).map_err(io_err(ctx()))?;
        let mut r = BufReader::new(f);
        let mut line = Vec::new();
        let mut pos = offset;
        loop {
            line.clear();
            let n = r.read_until(b'\n', &mut line).map_err(io_err(ctx()))?;
            if n == 0 || !line.ends_with(b"\n") {
                return Ok(pos);
            }
            pos += n as u64;
            line.pop();
            if let Some(e) = logfile::parse_line(&line, self.format) {
                if self.window.admits(&e) {
                    sink(&e).map_err(io_err("writing the log"))?;
                }
            }
        }
    }
}

impl Engine {
    /// Gives `sink` `c`'s log as `r` says; with `follow`, until the
    /// container has exited and its log is read to the end.
    pub fn logs(
        &self,
        c: &Container,
        r: &LogsRequest,
        sink: &mut dyn FnMut(&Entry) -> io::Result<()>,
    ) -> Result<(), ApiError> {
        if c.config.log_driver == "none" {
            return Err(ApiError::Invalid(format!(
                "container {} has the log driver none: there are no logs to read",
                c.name()
            )));
        }
        let format = if c.config.log_driver == "k8s-file" {
            Format::K8sFile
        } else {
            Format::JsonFile
        };
        let (mut reader, entries) =
            LogReader::open(&self.log_path(c.id()), format, r.window.clone())?;
        for e in &entries {
            sink(e).map_err(io_err("writing the log"))?;
        }
        if !r.follow {
            return Ok(());
        }
        let dir = self.dir(c.id());
        loop {
            // Watches first. The log and the monitor's records are in the
            // container's directory: new output, a rotation, a (re)start
            // or an exit wakes it (inotify), and so does the end of the
            // monitor, or of the init when no monitor is left (pidfd).
            let mut waker = crate::wait::Waker::new(&dir);
            let monitor = self.monitor_pid(c.id());
            if let Some(m) = monitor {
                waker.watch_pid(m);
            }
            let st = self.state(c);
            if monitor.is_none() && st.pid > 0 {
                waker.watch_pid(st.pid);
            }
            let running = matches!(
                st.status,
                Status::Running | Status::Paused | Status::Restarting | Status::Created
            ) && dir.exists();
            let progressed = reader.read_new(sink)?;
            if !running && !progressed {
                return Ok(());
            }
            if !progressed {
                waker.wait(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_monitor::logfile::{LogWriter, Stream};

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn lines(v: &[Entry]) -> Vec<String> {
        v.iter()
            .map(|e| String::from_utf8_lossy(&e.line).trim_end().to_string())
            .collect()
    }

    /// Six lines at t+1..t+6, in small files rotated as the monitor does
    /// (none dropped).
    fn log(dir: &Path) -> PathBuf {
        let p = dir.join("ctr.log");
        let mut w = LogWriter::open(&p, Format::JsonFile, Some(100), 10).unwrap();
        for i in 1..=6 {
            let s = if i % 2 == 0 {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            w.write(s, format!("line {i}\n").as_bytes(), t(i)).unwrap();
        }
        p
    }

    #[test]
    fn windows_over_rotated_files() {
        let d = tempfile::tempdir().unwrap();
        let p = log(d.path());
        assert!(rotated(&p, 2).exists(), "rotated more than once");
        let all = |w: LogWindow| lines(&LogReader::open(&p, Format::JsonFile, w).unwrap().1);
        let every: Vec<String> = (1..=6).map(|i| format!("line {i}")).collect();
        assert_eq!(
            all(LogWindow::default()),
            every,
            "oldest first across rotations"
        );
        assert_eq!(
            all(LogWindow {
                tail: Some(2),
                ..Default::default()
            }),
            ["line 5", "line 6"]
        );
        assert_eq!(
            all(LogWindow {
                since: Some(t(3)),
                until: Some(t(4)),
                ..Default::default()
            }),
            ["line 3", "line 4"]
        );
        // tail counts what exists, then the times apply.
        assert_eq!(
            all(LogWindow {
                tail: Some(3),
                until: Some(t(4)),
                ..Default::default()
            }),
            ["line 4"]
        );
        let (_, e) = LogReader::open(&p, Format::JsonFile, LogWindow::default()).unwrap();
        assert_eq!(e[1].stream, Stream::Stderr);
        assert_eq!(e[0].time, t(1));
    }

    #[test]
    fn following_reads_new_lines_and_rotations() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ctr.log");
        let mut w = LogWriter::open(&p, Format::JsonFile, None, 1).unwrap();
        w.write(Stream::Stdout, b"one\n", t(1)).unwrap();
        // A line not finished yet is not read.
        w.write(Stream::Stdout, b"tw", t(2)).unwrap();
        let (mut r, first) = LogReader::open(&p, Format::JsonFile, LogWindow::default()).unwrap();
        assert_eq!(lines(&first), ["one"]);
        let mut got = Vec::new();
        let mut sink = |e: &Entry| {
            got.push(String::from_utf8_lossy(&e.line).trim_end().to_string());
            Ok(())
        };
        assert!(!r.read_new(&mut sink).unwrap());
        w.write(Stream::Stdout, b"o\nthree\n", t(2)).unwrap();
        // Rotated as the monitor does it (rename, then a new file): the
        // end of the old file comes first.
        std::fs::rename(&p, rotated(&p, 1)).unwrap();
        w.write(Stream::Stdout, b"four\n", t(4)).unwrap();
        let mut w = LogWriter::open(&p, Format::JsonFile, None, 1).unwrap();
        w.write(Stream::Stdout, b"five\n", t(5)).unwrap();
        assert!(r.read_new(&mut sink).unwrap());
        assert!(!r.read_new(&mut sink).unwrap());
        assert_eq!(got, ["two", "three", "four", "five"]);
    }

    #[test]
    fn times_and_tails() {
        let now = Utc::now();
        let d = chrono::Duration::seconds;
        assert_eq!(parse_time("10m", now).unwrap(), now - d(600));
        assert_eq!(parse_time("1h30m", now).unwrap(), now - d(5400));
        assert_eq!(
            parse_time("1700000000", now).unwrap().timestamp(),
            1_700_000_000
        );
        assert_eq!(
            parse_time("2026-01-02T03:04:05Z", now).unwrap().timestamp(),
            DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
                .unwrap()
                .timestamp()
        );
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("10", now).is_ok());
        assert!(parse_time("5x", now).is_err());
        assert_eq!(parse_tail("all").unwrap(), None);
        assert_eq!(parse_tail("-1").unwrap(), None);
        assert_eq!(parse_tail("3").unwrap(), Some(3));
        assert!(parse_tail("x").is_err());
    }
}
