//! Live subscriptions: a thread per subscriber that sends past events, then new ones as the
//! durable watermark moves, into a bounded channel (backpressure: a slow subscriber slows only
//! its own thread). In a read-only process the thread tails the logs another process writes:
//! a file-change watcher (`notify`: inotify on Linux) on the store wakes it, with a slow safety
//! poll, and a fast poll when no watcher can be set up. A pending position (see `ledger`) is
//! waited for, never skipped.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use evfold_core::StoredEvent;
use tokio::sync::mpsc;

use crate::error::StoreError;
use crate::ledger::Wake;
use crate::mailbox::Mailbox;
use crate::readers::read_positions;
use crate::store::Inner;

/// Read-only follow: how often to look without a change notification (a safety net).
const SAFETY_POLL: Duration = Duration::from_secs(1);
/// Read-only follow without a working watcher.
const FALLBACK_POLL: Duration = Duration::from_millis(50);

/// Past then live events in store-wide order. Drop it to stop the subscription.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Result<StoredEvent, StoreError>>,
}

impl Subscription {
    /// The next event; `None` once the store closed. An `Err` ends the subscription.
    pub async fn recv(&mut self) -> Option<Result<StoredEvent, StoreError>> {
        self.rx.recv().await
    }

    /// The underlying channel (e.g. for `tokio_stream::wrappers::ReceiverStream`).
    pub fn into_receiver(self) -> mpsc::Receiver<Result<StoredEvent, StoreError>> {
        self.rx
    }
}

pub(crate) fn spawn(inner: &Arc<Inner>, from_pos: u64) -> Result<Subscription, StoreError> {
    let (tx, rx) = mpsc::channel(1024);
    let waker: Arc<Mailbox<()>> = Arc::new(Mailbox::default());
    let weak: Weak<dyn Wake> = Arc::downgrade(&waker) as Weak<dyn Wake>;
    inner.ledger.watch(weak);
    let inner = inner.clone();
    std::thread::Builder::new()
        .name("evfold-subscription".into())
        .spawn(move || {
            if inner.read_only {
                tail(&inner, waker, &tx, from_pos.saturating_sub(1));
            } else {
                pump(&inner, &waker, &tx, from_pos.saturating_sub(1));
            }
        })
        .map_err(|e| StoreError::io("subscription thread", e))?;
    Ok(Subscription { rx })
}

fn pump(inner: &Inner, waker: &Mailbox<()>, tx: &mpsc::Sender<Result<StoredEvent, StoreError>>, mut after: u64) {
    while !inner.is_closed() && !tx.is_closed() {
        match read_positions(&inner.layout, &inner.ledger, after, 256) {
            Ok((events, next)) if events.is_empty() && next == after => {
                let _ = waker.recv(Some(Instant::now() + Duration::from_millis(200)));
            }
            Ok((events, next)) => {
                for event in events {
                    if tx.blocking_send(Ok(event)).is_err() {
                        return;
                    }
                }
                after = next;
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
}

/// Read-only: reads what the index holds, then tails the logs on every change notification.
fn tail(inner: &Inner, waker: Arc<Mailbox<()>>, tx: &mpsc::Sender<Result<StoredEvent, StoreError>>, mut after: u64) {
    let watcher = watch(inner, &waker);
    let poll = if watcher.is_some() { SAFETY_POLL } else { FALLBACK_POLL };
    let mut warned = None;
    while !inner.is_closed() && !tx.is_closed() {
        match read_positions(&inner.layout, &inner.ledger, after, 256) {
            Ok((events, next)) if events.is_empty() && next == after => {
                match crate::index_read::refresh(&inner.layout, &inner.ledger) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
                if let Ok(Some((pos, next))) = inner.ledger.pending() {
                    if warned != Some(pos) {
                        warned = Some(pos);
                        tracing::warn!(pos, next, "waiting for a missing position no writer has settled yet");
                    }
                }
                let _ = waker.recv(Some(Instant::now() + poll));
            }
            Ok((events, next)) => {
                for event in events {
                    if tx.blocking_send(Ok(event)).is_err() {
                        return;
                    }
                }
                after = next;
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
    drop(watcher);
}

/// A recursive watcher on the store root that wakes `waker` on any change; `None` (polling)
/// if the platform or its limits refuse one.
fn watch(inner: &Inner, waker: &Arc<Mailbox<()>>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let weak = Arc::downgrade(waker);
    let handler = move |_event: notify::Result<notify::Event>| {
        if let Some(waker) = weak.upgrade() {
            waker.wake();
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(e) => {
            tracing::warn!(error = %e, "no file watcher; polling");
            return None;
        }
    };
    match watcher.watch(inner.layout.root(), notify::RecursiveMode::Recursive) {
        Ok(()) => Some(watcher),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the store; polling");
            None
        }
    }
}
