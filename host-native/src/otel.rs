//! OpenTelemetry export of [`crate::StoreMetrics`] (cargo feature `otel`): observable
//! instruments on a meter the program owns, read from the store's metrics snapshot whenever the
//! program's metric reader collects. Nothing is exported unless the program installs a reader
//! (OTLP, Prometheus, stdout...).

use std::sync::Weak;

use opentelemetry::metrics::Meter;
use opentelemetry::KeyValue;

use crate::store::Inner;
use crate::{AggregateStore, StoreMetrics};

/// Reads one counter's value from a snapshot.
type CounterOf = fn(&StoreMetrics) -> u64;
/// Reads one latency from a snapshot.
type LatencyOf = fn(&StoreMetrics) -> crate::Latency;

/// Registers the store's metrics on `meter`:
/// - counters `evfold.commands.accepted`, `evfold.commands.rejected`, `evfold.appends`,
///   `evfold.events.appended`, `evfold.events.folded`, `evfold.fsyncs`;
/// - gauges `evfold.fsync.latency` and `evfold.append.latency` (microseconds, with a
///   `quantile` attribute of `0.5`, `0.99` or `max`), `evfold.durable_position`, and
///   `evfold.reader.lag` (events, one series per `reader`).
///
/// The instruments hold the store weakly: once the store is closed they report nothing.
pub fn register_metrics(store: &AggregateStore, meter: &Meter) {
    let counters: [(&'static str, &'static str, CounterOf); 6] = [
        ("evfold.commands.accepted", "Commands that committed", |m| m.commands_accepted),
        ("evfold.commands.rejected", "Commands the domain refused", |m| m.commands_rejected),
        ("evfold.appends", "Log writes (one per group commit or inject)", |m| m.appends),
        ("evfold.events.appended", "Events appended", |m| m.events_appended),
        ("evfold.events.folded", "Events read by projections and process managers", |m| m.events_folded),
        ("evfold.fsyncs", "Log fdatasyncs", |m| m.fsync_latency.count),
    ];
    for (name, description, read) in counters {
        let inner = store.weak_inner();
        meter
            .u64_observable_counter(name)
            .with_description(description)
            .with_callback(move |observer| {
                if let Some(metrics) = snapshot(&inner) {
                    observer.observe(read(&metrics), &[]);
                }
            })
            .build();
    }
    let latencies: [(&'static str, LatencyOf); 2] =
        [("evfold.fsync.latency", |m| m.fsync_latency), ("evfold.append.latency", |m| m.append_latency)];
    for (name, read) in latencies {
        let inner = store.weak_inner();
        meter
            .u64_observable_gauge(name)
            .with_unit("us")
            .with_callback(move |observer| {
                if let Some(metrics) = snapshot(&inner) {
                    let latency = read(&metrics);
                    observer.observe(latency.p50_micros, &[KeyValue::new("quantile", "0.5")]);
                    observer.observe(latency.p99_micros, &[KeyValue::new("quantile", "0.99")]);
                    observer.observe(latency.max_micros, &[KeyValue::new("quantile", "max")]);
                }
            })
            .build();
    }
    let inner = store.weak_inner();
    meter
        .u64_observable_gauge("evfold.durable_position")
        .with_callback(move |observer| {
            if let Some(metrics) = snapshot(&inner) {
                observer.observe(metrics.durable_position, &[]);
            }
        })
        .build();
    let inner = store.weak_inner();
    meter
        .u64_observable_gauge("evfold.reader.lag")
        .with_description("Durable events a projection or process manager has not read yet")
        .with_callback(move |observer| {
            if let Some(metrics) = snapshot(&inner) {
                for reader in metrics.readers {
                    observer.observe(reader.lag_events, &[KeyValue::new("reader", reader.name)]);
                }
            }
        })
        .build();
}

fn snapshot(inner: &Weak<Inner>) -> Option<StoreMetrics> {
    let inner = inner.upgrade()?;
    (!inner.is_closed()).then(|| crate::store::metrics_of(&inner))
}
