//! Streaming blob downloads that survive broken connections.

use std::io::{self, Read};

use tracing::debug;

use super::{backoff, RegistryError, Repository};
use crate::digest::Digest;

/// A blob being read from a registry. A connection error, timeout or
/// 5xx/429 is retried with backoff, resuming with `Range: bytes=N-` from the
/// last byte delivered; a server that ignores Range has the bytes already
/// delivered skipped. With a known size, a short or long stream is an error.
/// The digest is not checked here: the caller hashes what it reads.
pub struct BlobReader {
    repo: Repository,
    digest: Digest,
    size: Option<u64>,
    /// Bytes of the blob delivered to the caller so far (absolute).
    pos: u64,
    body: Option<Box<dyn Read + Send + Sync>>,
    /// Bytes to drop from the current body (server ignored Range).
    skip: u64,
    failures: u32,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("digest", &self.digest)
            .field("size", &self.size)
            .field("pos", &self.pos)
            .finish()
    }
}

impl BlobReader {
    pub(crate) fn open(
        repo: Repository,
        digest: Digest,
        size: Option<u64>,
        offset: u64,
    ) -> Result<BlobReader, RegistryError> {
        let mut r = BlobReader {
            repo,
            digest,
            size,
            pos: offset,
            body: None,
            skip: 0,
            failures: 0,
        };
        if size != Some(offset) {
            r.connect()?;
        }
        Ok(r)
    }

    fn connect(&mut self) -> Result<(), RegistryError> {
        let (body, ranged) = self.repo.get_blob_from(&self.digest, self.pos)?;
        self.skip = if self.pos > 0 && !ranged { self.pos } else { 0 };
        if self.skip > 0 {
            debug!(blob = %self.digest, skip = self.skip, "the registry ignored Range; skipping what was read");
        }
        self.body = Some(body);
        Ok(())
    }

    /// Bytes delivered so far, counting the starting offset.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn what(&self) -> String {
        format!(
            "blob {} from {}/{}",
            self.digest,
            self.repo.registry(),
            self.repo.name()
        )
    }

    /// Notes a failure; Ok when another try is allowed (after sleeping).
    fn failed(&mut self, why: String) -> io::Result<()> {
        self.body = None;
        if self.failures >= self.repo.max_retries() {
            return Err(io::Error::other(format!(
                "{}: {why} (after {} retries)",
                self.what(),
                self.failures
            )));
        }
        debug!(blob = %self.digest, pos = self.pos, why = %why, "blob download broke; resuming");
        std::thread::sleep(backoff(self.failures));
        self.failures += 1;
        Ok(())
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.size == Some(self.pos) && self.skip == 0 {
                return Ok(0);
            }
            if self.body.is_none() {
                match self.connect() {
                    Ok(()) => {}
                    Err(
                        e @ (RegistryError::Transport { .. } | RegistryError::InvalidResponse(..)),
                    ) => {
                        self.failed(e.to_string())?;
                        continue;
                    }
                    Err(e) => return Err(io::Error::other(e.to_string())),
                }
            }
            let body = self.body.as_mut().expect("connected");
            let n = match body.read(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.failed(e.to_string())?;
                    continue;
                }
            };
            if n == 0 {
                match self.size {
                    Some(s) if self.pos < s => {
                        let why = format!("the connection ended at byte {} of {s}", self.pos);
                        self.failed(why)?;
                        continue;
                    }
                    _ => return Ok(0),
                }
            }
            let mut n = n;
            if self.skip > 0 {
                let drop = (self.skip as usize).min(n);
                self.skip -= drop as u64;
                buf.copy_within(drop..n, 0);
                n -= drop;
                if n == 0 {
                    continue;
                }
            }
            if let Some(s) = self.size {
                if self.pos + n as u64 > s {
                    return Err(io::Error::other(format!(
                        "{}: the registry sent more than the expected {s} bytes",
                        self.what()
                    )));
                }
            }
            self.pos += n as u64;
            return Ok(n);
        }
    }
}
