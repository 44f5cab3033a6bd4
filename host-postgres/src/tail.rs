//! Live tail across processes: after a commit, a coalesced `NOTIFY evfold_events` (sent outside the
//! append transaction, so it never serialises commits); a `LISTEN` connection to the primary turns
//! notifications into reader wake-ups. Hints only: readers also poll, and correctness comes from
//! the fenced read alone.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, Config, NoTls};

use crate::shared::Shared;

/// The channel name.
pub const CHANNEL: &str = "evfold_events";

/// Shortest gap between two NOTIFYs of one store (coalescing).
const NOTIFY_GAP: Duration = Duration::from_millis(5);

/// Sends one NOTIFY per burst of local commits, until the store is dropped.
pub async fn notifier(shared: Weak<Shared>) {
    loop {
        let Some(strong) = shared.upgrade() else { return };
        // Wait for a poke, checking now and then whether the store still exists.
        if tokio::time::timeout(Duration::from_secs(1), strong.notify_peers.notified()).await.is_err() {
            continue;
        }
        match strong.backend.write.get().await {
            Ok(client) => {
                if let Err(e) = client.batch_execute(&format!("NOTIFY {CHANNEL}")).await {
                    tracing::debug!(error = %e, "NOTIFY failed; readers elsewhere fall back to polling");
                }
            }
            Err(e) => tracing::debug!(error = %e, "NOTIFY skipped: no connection"),
        }
        drop(strong);
        tokio::time::sleep(NOTIFY_GAP).await;
    }
}

/// Holds a `LISTEN` connection to the primary and wakes local readers on every notification;
/// reconnects with a pause when the connection drops, until the store is dropped.
pub async fn listener(config: Config, shared: Weak<Shared>) {
    while shared.strong_count() > 0 {
        if let Err(e) = listen_once(&config, &shared).await {
            tracing::debug!(error = %e, "LISTEN connection lost; retrying (readers keep polling)");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn listen_once(config: &Config, shared: &Weak<Shared>) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let pump = tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    if tx.send(()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "LISTEN connection error");
                    return;
                }
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            Ok(Some(())) => {
                while rx.try_recv().is_ok() {} // coalesce a burst
                let Some(strong) = shared.upgrade() else { break };
                strong.wake_readers();
            }
            Ok(None) => break, // connection gone
            Err(_) if shared.strong_count() == 0 => break,
            Err(_) => {}
        }
    }
    pump.abort();
    Ok(())
}
