//! Observability for embedders: the metrics snapshot (commands, appends, write and fsync
//! latency, reader lag), the W3C trace context carried from a command through its events into
//! the commands a process manager dispatches, and the fields of the `execute` span.

use std::sync::{Arc, Mutex};

use crate::common::{self, ctx};
use evfold_core::examples::{BankAccount, BankCommand};
use evfold_core::{CommandContext, TRACEPARENT};
use evfold_native::ReaderKind;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_commands_and_latencies_and_show_reader_lag() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::builder(dir.path()).process_managers_on_demand().open().await.unwrap();
    let a = store.get::<BankAccount>("a").await.unwrap();
    a.execute(BankCommand::Open { owner: "a".into() }, ctx()).await.unwrap();
    a.execute(BankCommand::Deposit { amount: 5 }, ctx()).await.unwrap();
    a.execute(BankCommand::Withdraw { amount: 50 }, ctx()).await.unwrap_err();
    store.projection::<evfold_core::examples::Balances>().await.unwrap();

    let metrics = store.metrics();
    assert_eq!((metrics.commands_accepted, metrics.commands_rejected), (2, 1));
    assert_eq!((metrics.appends, metrics.events_appended), (2, 2));
    assert_eq!(metrics.append_latency.count, 2);
    assert_eq!(metrics.fsync_latency.count, store.stats().syncs);
    assert!(metrics.fsync_latency.count >= 2);
    let fsync = metrics.fsync_latency;
    assert!(fsync.p50_micros <= fsync.p99_micros && fsync.max_micros <= fsync.p99_micros, "{fsync:?}");
    assert_eq!(metrics.durable_position, 2);
    let names: Vec<(&str, ReaderKind, u64)> =
        metrics.readers.iter().map(|r| (r.name.as_str(), r.kind, r.lag_events)).collect();
    // The projection has caught up; the on-demand process manager has not run yet.
    assert_eq!(names, [("balances", ReaderKind::Projection, 0), ("transfers", ReaderKind::ProcessManager, 2)]);
    assert!(metrics.events_folded >= 2);
    store.run_process_managers().await.unwrap();
    assert!(store.metrics().readers.iter().all(|r| r.lag_events == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_context_follows_a_command_through_a_process_manager() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path()).await;
    common::open_account(&store, "a", 9).await;
    common::open_account(&store, "b", 0).await;
    let a = store.get::<BankAccount>("a").await.unwrap();
    let traced = CommandContext::default().with_actor("ada").with_traceparent(TRACE);
    a.execute(BankCommand::TransferOut { to: "b".into(), amount: 4 }, traced).await.unwrap();
    store.run_process_managers().await.unwrap();
    let transfer = store.read_events("bank-account", "a").await.unwrap().pop().unwrap();
    assert_eq!(transfer.meta.traceparent(), Some(TRACE));
    let deposit = store.read_events("bank-account", "b").await.unwrap().pop().unwrap();
    assert_eq!(deposit.event_type, "Deposited");
    assert_eq!(deposit.meta.traceparent(), Some(TRACE), "the dispatched command continued the trace");
    assert_eq!(deposit.meta.extra[TRACEPARENT], serde_json::json!(TRACE));
    let untraced = store.read_events("bank-account", "b").await.unwrap()[0].clone();
    assert_eq!(untraced.meta.traceparent(), None);
}

/// Records every span's fields as `name.field=value`.
#[derive(Clone, Default)]
struct Fields(Arc<Mutex<Vec<String>>>);

struct Collect<'a>(&'a Fields, &'static str);

impl tracing::field::Visit for Collect<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0 .0.lock().unwrap().push(format!("{}.{}={value:?}", self.1, field.name()));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0 .0.lock().unwrap().push(format!("{}.{}={value}", self.1, field.name()));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Fields {
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, _: &tracing::span::Id, _: Context<'_, S>) {
        attrs.record(&mut Collect(self, attrs.metadata().name()));
    }
    fn on_record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>, _: Context<'_, S>) {
        values.record(&mut Collect(self, "recorded"));
    }
}

#[test]
fn the_execute_span_carries_stream_command_trace_and_version() {
    let fields = Fields::default();
    let subscriber = tracing_subscriber::registry().with(fields.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let store = common::open(dir.path()).await;
        let a = store.get::<BankAccount>("a").await.unwrap();
        let traced = CommandContext::default().with_traceparent(TRACE);
        a.execute(BankCommand::Open { owner: "a".into() }, traced).await.unwrap();
        store.close().await;
    });
    let seen = fields.0.lock().unwrap().clone();
    for expected in [
        "execute.stream=bank-account/a".to_owned(),
        "execute.command=Open".to_owned(),
        format!("execute.traceparent={TRACE}"),
        "recorded.version=1".to_owned(),
    ] {
        assert!(seen.contains(&expected), "{expected} not in {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_export_through_opentelemetry() {
    use opentelemetry::metrics::MeterProvider;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    let dir = tempfile::tempdir().unwrap();
    let store = common::builder(dir.path()).process_managers_on_demand().open().await.unwrap();
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder().with_reader(PeriodicReader::builder(exporter.clone()).build()).build();
    evfold_native::otel::register_metrics(&store, &provider.meter("evfold"));
    let a = store.get::<BankAccount>("a").await.unwrap();
    a.execute(BankCommand::Open { owner: "a".into() }, ctx()).await.unwrap();
    a.execute(BankCommand::Withdraw { amount: 1 }, ctx()).await.unwrap_err();
    store.projection::<evfold_core::examples::Balances>().await.unwrap();
    provider.force_flush().unwrap();

    let exported = exporter.get_finished_metrics().unwrap();
    let mut values: Vec<String> = Vec::new();
    for metric in exported.iter().flat_map(|r| r.scope_metrics()).flat_map(|s| s.metrics()) {
        match metric.data() {
            AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                values.extend(sum.data_points().map(|p| format!("{}={}", metric.name(), p.value())));
            }
            AggregatedMetrics::U64(MetricData::Gauge(gauge)) => {
                for point in gauge.data_points() {
                    let labels: Vec<String> = point.attributes().map(|kv| format!("{}", kv.value)).collect();
                    values.push(format!("{}{labels:?}={}", metric.name(), point.value()));
                }
            }
            _ => {}
        }
    }
    for expected in [
        "evfold.commands.accepted=1",
        "evfold.commands.rejected=1",
        "evfold.events.appended=1",
        "evfold.durable_position[]=1",
        "evfold.reader.lag[\"balances\"]=0",
        "evfold.reader.lag[\"transfers\"]=1",
    ] {
        assert!(values.iter().any(|v| v == expected), "{expected} not in {values:?}");
    }
    assert!(values.iter().any(|v| v.starts_with("evfold.fsync.latency[\"0.99\"]=")), "{values:?}");
    provider.shutdown().unwrap();
}
