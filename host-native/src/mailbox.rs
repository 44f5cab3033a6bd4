//! A small blocking mailbox for actor and reader threads: send fails (returning the message)
//! once closed, so a closed mailbox never swallows a message; receivers wait with a deadline
//! and can be woken without a message (watermark moved).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::ledger::Wake;

struct Inner<T> {
    queue: VecDeque<T>,
    closed: bool,
    woken: bool,
}

/// See the module doc.
pub struct Mailbox<T> {
    inner: Mutex<Inner<T>>,
    ready: Condvar,
}

/// What a wait produced.
pub enum Received<T> {
    /// A message.
    Message(T),
    /// A wake-up without a message.
    Woken,
    /// The deadline passed.
    Timeout,
    /// Closed and empty.
    Closed,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Mailbox {
            inner: Mutex::new(Inner { queue: VecDeque::new(), closed: false, woken: false }),
            ready: Condvar::new(),
        }
    }
}

impl<T> Mailbox<T> {
    /// Queues a message, or hands it back if the mailbox is closed.
    pub fn send(&self, message: T) -> Result<(), T> {
        let mut inner = self.inner.lock().expect("mailbox lock");
        if inner.closed {
            return Err(message);
        }
        inner.queue.push_back(message);
        drop(inner);
        self.ready.notify_one();
        Ok(())
    }

    /// Takes a queued message without waiting.
    pub fn try_recv(&self) -> Option<T> {
        self.inner.lock().expect("mailbox lock").queue.pop_front()
    }

    /// Waits for a message, a wake-up, the deadline (if any), or close-and-empty.
    pub fn recv(&self, deadline: Option<Instant>) -> Received<T> {
        let mut inner = self.inner.lock().expect("mailbox lock");
        loop {
            if let Some(message) = inner.queue.pop_front() {
                return Received::Message(message);
            }
            if std::mem::take(&mut inner.woken) {
                return Received::Woken;
            }
            if inner.closed {
                return Received::Closed;
            }
            match deadline {
                None => inner = self.ready.wait(inner).expect("mailbox lock"),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Received::Timeout;
                    }
                    let wait = (deadline - now).max(Duration::from_micros(100));
                    inner = self.ready.wait_timeout(inner, wait).expect("mailbox lock").0;
                }
            }
        }
    }

    /// Closes the mailbox if nothing is queued; returns whether it did. Used for idle eviction:
    /// a message either arrived before (and the mailbox stays open) or its send fails after.
    pub fn close_if_empty(&self) -> bool {
        let mut inner = self.inner.lock().expect("mailbox lock");
        if inner.queue.is_empty() {
            inner.closed = true;
        }
        inner.closed
    }

    /// Closes the mailbox; queued messages stay receivable until `recv` reports `Closed`.
    pub fn close(&self) {
        self.inner.lock().expect("mailbox lock").closed = true;
        self.ready.notify_all();
    }

    /// Closes the mailbox and takes every queued message.
    pub fn close_and_take(&self) -> Vec<T> {
        let mut inner = self.inner.lock().expect("mailbox lock");
        inner.closed = true;
        inner.queue.drain(..).collect()
    }
}

impl<T: Send> Wake for Mailbox<T> {
    fn wake(&self) {
        self.inner.lock().expect("mailbox lock").woken = true;
        self.ready.notify_all();
    }
}
