//! v2 freezer: cgroup.freeze, waiting for "frozen 1" in cgroup.events.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::fs;
use crate::FreezerState;

const TIMEOUT: Duration = Duration::from_secs(5);

fn frozen(dir: &Path) -> Result<bool, Error> {
    Ok(fs::read_flat_keyed(dir, "cgroup.events")?
        .get("frozen")
        .copied()
        .unwrap_or(0)
        == 1)
}

pub(crate) fn state(dir: &Path) -> Result<FreezerState, Error> {
    let Some(want) = fs::read_opt(dir, "cgroup.freeze")? else {
        // kernels before 5.2 have no v2 freezer: nothing can be frozen
        return Ok(FreezerState::Thawed);
    };
    match (want.trim(), frozen(dir)?) {
        ("0", false) => Ok(FreezerState::Thawed),
        ("0", true) => Ok(FreezerState::Freezing), // thawing in progress
        (_, true) => Ok(FreezerState::Frozen),
        (_, false) => Ok(FreezerState::Freezing),
    }
}

fn set_and_wait(dir: &Path, freeze: bool) -> Result<(), Error> {
    if !fs::exists(dir, "cgroup.freeze") {
        return Err(Error::Unsupported {
            path: dir.join("cgroup.freeze"),
            what: "freezing (the kernel has no cgroup v2 freezer)".into(),
        });
    }
    fs::write(dir, "cgroup.freeze", if freeze { "1" } else { "0" })?;
    let start = Instant::now();
    let mut delay = Duration::from_micros(100);
    loop {
        if frozen(dir)? == freeze {
            return Ok(());
        }
        if start.elapsed() > TIMEOUT {
            return Err(Error::FreezeTimeout {
                path: dir.join("cgroup.events"),
                want: format!("frozen {}", u8::from(freeze)),
                last: format!("frozen {}", u8::from(!freeze)),
                waited_ms: start.elapsed().as_millis() as u64,
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}

pub(crate) fn freeze(dir: &Path) -> Result<(), Error> {
    let r = set_and_wait(dir, true);
    if r.is_err() {
        let _ = fs::write(dir, "cgroup.freeze", "0");
    }
    r
}

pub(crate) fn thaw(dir: &Path) -> Result<(), Error> {
    set_and_wait(dir, false)
}
