//! The store's metrics for embedders: write and fsync latency, commands and events counted, and
//! how far each projection and process manager trails the durable log. Lock-free counters the
//! actor and reader threads bump; [`crate::AggregateStore::metrics`] takes a snapshot that a
//! program exports however it likes (Prometheus, OpenTelemetry, logs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Log-scale latency histogram: bucket `i` counts durations in `[2^i, 2^(i+1))` microseconds
/// (bucket 0 also holds sub-microsecond ones). Recording is two relaxed atomic adds.
#[derive(Debug, Default)]
pub(crate) struct LatencyHistogram {
    buckets: [AtomicU64; 32],
    total_micros: AtomicU64,
    max_micros: AtomicU64,
}

impl LatencyHistogram {
    pub(crate) fn record(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = (64 - micros.leading_zeros()).saturating_sub(1).min(31) as usize;
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.total_micros.fetch_add(micros, Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
    }

    pub(crate) fn summary(&self) -> Latency {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let count: u64 = counts.iter().sum();
        // The upper bound of the bucket holding the q-th sample: never under-reports.
        let quantile = |q: f64| -> u64 {
            if count == 0 {
                return 0;
            }
            let rank = ((count as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return (1u64 << (i + 1)) - 1;
                }
            }
            u64::MAX
        };
        let total = self.total_micros.load(Ordering::Relaxed);
        Latency {
            count,
            mean_micros: total.checked_div(count).unwrap_or(0),
            p50_micros: quantile(0.50),
            p99_micros: quantile(0.99),
            max_micros: self.max_micros.load(Ordering::Relaxed),
        }
    }
}

/// A latency distribution. Quantiles are the upper bound of a power-of-two bucket (so at most 2x
/// over the true value, never under it); mean and max are exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    /// Samples recorded.
    pub count: u64,
    /// Mean, in microseconds.
    pub mean_micros: u64,
    /// Median, in microseconds (bucket upper bound).
    pub p50_micros: u64,
    /// 99th percentile, in microseconds (bucket upper bound).
    pub p99_micros: u64,
    /// Largest sample, in microseconds.
    pub max_micros: u64,
}

/// How far one projection or process manager trails the durable log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderLag {
    /// Reader name.
    pub name: String,
    /// Projection or process manager.
    pub kind: crate::ReaderKind,
    /// Last store position it has read (and folded or dispatched) through; 0 before its first.
    pub position: u64,
    /// Durable events it has not read yet (`durable_position - position`).
    pub lag_events: u64,
}

/// A snapshot of [`crate::AggregateStore::metrics`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreMetrics {
    /// Commands that committed events (or were accepted with none).
    pub commands_accepted: u64,
    /// Commands the domain refused.
    pub commands_rejected: u64,
    /// Log writes (one per group commit or inject).
    pub appends: u64,
    /// Events appended.
    pub events_appended: u64,
    /// Time of each log write (`write(2)` of one group commit).
    pub append_latency: Latency,
    /// Time of each `fdatasync`.
    pub fsync_latency: Latency,
    /// Events read by projections and process managers (the fold rate's numerator).
    pub events_folded: u64,
    /// Highest durable store position.
    pub durable_position: u64,
    /// Every projection and process manager, by name.
    pub readers: Vec<ReaderLag>,
}

/// The counters behind [`StoreMetrics`] that are not [`crate::StoreStats`]'s.
#[derive(Debug, Default)]
pub(crate) struct Meters {
    pub(crate) commands_accepted: AtomicU64,
    pub(crate) commands_rejected: AtomicU64,
    pub(crate) append_latency: LatencyHistogram,
    pub(crate) fsync_latency: LatencyHistogram,
    pub(crate) events_folded: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_upper_bounds_and_never_under_report() {
        let histogram = LatencyHistogram::default();
        for micros in [3u64, 5, 6, 7, 1000] {
            histogram.record(Duration::from_micros(micros));
        }
        let summary = histogram.summary();
        assert_eq!(summary.count, 5);
        assert_eq!(summary.p50_micros, 7, "6 is in [4, 8)");
        assert_eq!(summary.p99_micros, 1023, "1000 is in [512, 1024)");
        assert_eq!(summary.max_micros, 1000);
        assert_eq!(summary.mean_micros, 204);
        assert_eq!(LatencyHistogram::default().summary(), Latency::default());
    }
}
