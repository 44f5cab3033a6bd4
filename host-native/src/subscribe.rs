//! Live subscriptions: a thread per subscriber that sends past events, then new ones as the
//! durable watermark moves, into a bounded channel (backpressure: a slow subscriber slows only
//! its own thread).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use evfold_core::StoredEvent;
use tokio::sync::mpsc;

use crate::error::StoreError;
use crate::ledger::Wake;
use crate::mailbox::Mailbox;
use crate::readers::read_positions;
use crate::store::Inner;

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
        .spawn(move || pump(&inner, &waker, &tx, from_pos.saturating_sub(1)))
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
