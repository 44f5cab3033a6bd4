//! Store-wide reads in a read-only process (another process may be writing): the index comes
//! from one full scan at open and then grows by tailing each log from the length this process
//! last saw (`refresh`), so paging through the store or following it never rescans it. Holes:
//! see the `ledger` module doc; a pending position makes a one-shot read wait, then fail with
//! [`StoreError::PositionPending`].

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use evfold_core::{scan_log, LogEnd, ScanStart, StoredEvent};

use crate::error::StoreError;
use crate::fsio;
use crate::layout::{self, StoreLayout};
use crate::ledger::{Found, Ledger, PENDING_GRACE};
use crate::log::{self, TornTail};
use crate::readers::read_positions;
use crate::settled;

/// How often a read waiting at a pending position looks again.
const PENDING_POLL: Duration = Duration::from_millis(20);

/// Reads what was appended to every log since this process last looked (and any new log),
/// re-reads the settled mark, and extends the index. Returns whether readers may see more.
pub(crate) fn refresh(layout: &StoreLayout, ledger: &Ledger) -> Result<bool, StoreError> {
    let known = ledger.known_logs();
    let mut found: Vec<Found> = Vec::new();
    let mut logs = Vec::new();
    for stream in layout::list_streams(layout, None)? {
        let path = layout.events_file(&stream);
        let (known_len, known_version) = known.get(&stream).copied().unwrap_or((0, 0));
        let file = match fsio::open_read(&path) {
            Ok(file) => file,
            Err(e) if fsio::is_not_found(&e) => continue,
            Err(e) => return Err(e),
        };
        let len = file.metadata().map_err(|e| StoreError::io(&path, e))?.len();
        if len == known_len {
            continue;
        }
        let stream = Arc::new(stream);
        if len < known_len {
            // Cut (by `repair`) below what this process saw: read this one log again.
            let Some(headers) = log::load_headers(&path, TornTail::Ignore)? else { continue };
            tracing::warn!(path = %path.display(), was = known_len, now = headers.len(), "log became shorter");
            ledger.forget_from(&stream, headers.len(), headers.version());
            for line in &headers.lines {
                found.push((line.pos, stream.clone(), line.offset, line.id.clone()));
            }
            logs.push(((*stream).clone(), headers.len(), headers.version()));
            continue;
        }
        let mut bytes = vec![0u8; (len - known_len) as usize];
        file.read_exact_at(&mut bytes, known_len).map_err(|e| StoreError::io(&path, e))?;
        let start = ScanStart { offset: known_len, line: known_version + 1, next_seq: known_version + 1 };
        let scan = scan_log(&bytes, start);
        if let LogEnd::Corrupt { line, offset, error } = scan.end {
            return Err(StoreError::Corrupt { path, line, offset, reason: error.to_string() });
        }
        // A torn end may be an append in flight: the next refresh reads it from `valid_len`.
        let valid = &bytes[..(scan.valid_len - known_len) as usize];
        let mut offset = known_len;
        let ends = valid.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| known_len + i as u64 + 1);
        let version = known_version + scan.records.len() as u64;
        for (record, end) in scan.records.into_iter().zip(ends) {
            found.push((record.pos, stream.clone(), offset, record.id));
            offset = end;
        }
        logs.push(((*stream).clone(), scan.valid_len, version));
    }
    let mark = match ledger.settled_path() {
        Some(path) => settled::read(path)?,
        None => 0,
    };
    ledger.extend(found, logs, mark)
}

/// Up to `limit` events after position `after`, in store-wide order, tailing the logs when the
/// index runs out. Stops at the last event found; at a pending position it waits up to
/// [`PENDING_GRACE`] for it to appear or be settled, then fails with
/// [`StoreError::PositionPending`]: a page is never cut short silently before a later event.
pub(crate) fn read_page(
    layout: &StoreLayout,
    ledger: &Ledger,
    mut after: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut events = Vec::new();
    let mut refreshed = false;
    let mut waiting: Option<Instant> = None;
    while events.len() < limit {
        let chunk = (limit - events.len()).min(4096);
        let (batch, next) = read_positions(layout, ledger, after, chunk)?;
        if next != after {
            events.extend(batch);
            after = next;
            continue;
        }
        if !refreshed {
            refreshed = true;
            if refresh(layout, ledger)? {
                continue;
            }
        }
        let Some((pos, next)) = ledger.pending()? else { break };
        // A short page would read as "the end": wait for the position, or fail.
        let since = *waiting.get_or_insert_with(Instant::now);
        if since.elapsed() >= PENDING_GRACE {
            return Err(StoreError::PositionPending { pos, next });
        }
        std::thread::sleep(PENDING_POLL);
        refresh(layout, ledger)?;
    }
    Ok(events)
}
