//! Per-layer progress bars for pull and push (indicatif), shown only on a
//! terminal and never with `--quiet`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use berth_image::digest::Digest;
use berth_image::store::PullProgress;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Bars on stderr, one per layer.
#[derive(Debug)]
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
    verb: &'static str,
}

impl Bars {
    /// Bars when stderr is a terminal and not `quiet`; otherwise None.
    pub fn new(quiet: bool, verb: &'static str) -> Option<Bars> {
        if quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
            verb,
        })
    }
}

impl PullProgress for Bars {
    fn layer(&self, digest: &Digest, size: u64, present: bool) {
        let bar = self.multi.add(ProgressBar::new(size));
        let style =
            ProgressStyle::with_template("{prefix}: {msg:<16} [{bar:30}] {bytes}/{total_bytes}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(digest.short().to_string());
        if present {
            bar.set_position(size);
            bar.finish_with_message("Already exists");
        } else {
            bar.set_message(self.verb);
        }
        self.bars.lock().expect("bars").insert(digest.clone(), bar);
    }
    fn advance(&self, digest: &Digest, n: u64) {
        if let Some(b) = self.bars.lock().expect("bars").get(digest) {
            b.inc(n);
        }
    }
    fn done(&self, digest: &Digest) {
        if let Some(b) = self.bars.lock().expect("bars").get(digest) {
            if !b.is_finished() {
                b.set_position(b.length().unwrap_or(0));
                b.finish_with_message("Complete");
            }
        }
    }
}
