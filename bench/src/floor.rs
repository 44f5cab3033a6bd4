//! The disk floor: a raw append + `fdatasync` loop with no event-sourcing code at all, the
//! yardstick for "durable commands per second" on this machine.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use crate::util::secs;

/// Appends/s of `n` lines of `line_len` bytes, each followed by `fdatasync`.
pub fn fdatasync_rate(dir: &Path, n: usize, line_len: usize) -> Result<f64> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("floor.jsonl"))?;
    let mut line = vec![b'x'; line_len.saturating_sub(1)];
    line.push(b'\n');
    let start = Instant::now();
    for _ in 0..n {
        file.write_all(&line)?;
        file.sync_data()?;
    }
    Ok(n as f64 / secs(start))
}
