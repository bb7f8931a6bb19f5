//! v1 `freezer`: freezer.state FROZEN/THAWED, waiting until the state settles.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::fs;
use crate::FreezerState;

const STATE: &str = "freezer.state";
const TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn state(dir: &Path) -> Result<FreezerState, Error> {
    let s = fs::read(dir, STATE)?;
    match s.trim() {
        "THAWED" => Ok(FreezerState::Thawed),
        "FROZEN" => Ok(FreezerState::Frozen),
        "FREEZING" => Ok(FreezerState::Freezing),
        other => Err(Error::Parse {
            path: dir.join(STATE),
            reason: format!("unknown freezer state {other:?}"),
        }),
    }
}

fn set_and_wait(dir: &Path, want: FreezerState) -> Result<(), Error> {
    let word = if want == FreezerState::Frozen {
        "FROZEN"
    } else {
        "THAWED"
    };
    let start = Instant::now();
    let mut delay = Duration::from_micros(100);
    loop {
        // re-writing FROZEN nudges a cgroup stuck in FREEZING (as runc does)
        fs::write(dir, STATE, word)?;
        let cur = state(dir)?;
        if cur == want {
            return Ok(());
        }
        if start.elapsed() > TIMEOUT {
            return Err(Error::FreezeTimeout {
                path: dir.join(STATE),
                want: word.into(),
                last: format!("{cur:?}"),
                waited_ms: start.elapsed().as_millis() as u64,
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}

pub(crate) fn freeze(dir: &Path) -> Result<(), Error> {
    let r = set_and_wait(dir, FreezerState::Frozen);
    if r.is_err() {
        // never leave a half-frozen container behind
        let _ = fs::write(dir, STATE, "THAWED");
    }
    r
}

pub(crate) fn thaw(dir: &Path) -> Result<(), Error> {
    set_and_wait(dir, FreezerState::Thawed)
}
