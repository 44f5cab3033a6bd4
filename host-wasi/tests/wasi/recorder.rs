//! A `tracing` layer that records every event of the test process, so tests can assert which
//! guest output lines reached `tracing` (and which drop reports).

use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// One recorded event.
#[derive(Debug, Clone)]
pub struct Event {
    pub target: String,
    pub level: tracing::Level,
    pub message: String,
    pub plugin: Option<String>,
    pub stream: Option<String>,
    pub dropped_bytes: Option<u64>,
}

static EVENTS: Mutex<Vec<Event>> = Mutex::new(Vec::new());

struct Recorder;

#[derive(Default)]
struct Fields {
    message: String,
    plugin: Option<String>,
    stream: Option<String>,
    dropped_bytes: Option<u64>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "plugin" => self.plugin = Some(value.to_owned()),
            "stream" => self.stream = Some(value.to_owned()),
            "message" => self.message = value.to_owned(),
            _ => {}
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "dropped_bytes" {
            self.dropped_bytes = Some(value);
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, value as u64);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "plugin" => self.plugin = Some(format!("{value:?}").trim_matches('"').to_owned()),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        EVENTS.lock().unwrap().push(Event {
            target: meta.target().to_owned(),
            level: *meta.level(),
            message: fields.message,
            plugin: fields.plugin,
            stream: fields.stream,
            dropped_bytes: fields.dropped_bytes,
        });
    }
}

/// Installs the recorder as the process-wide subscriber (once).
pub fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Recorder))
            .expect("no other global subscriber");
    });
}

/// Recorded events whose message contains `needle`.
pub fn events_containing(needle: &str) -> Vec<Event> {
    EVENTS.lock().unwrap().iter().filter(|e| e.message.contains(needle)).cloned().collect()
}

/// Every `dropped_bytes` figure reported for `plugin`.
pub fn dropped_reports(plugin: &str) -> Vec<usize> {
    EVENTS
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.plugin.as_deref() == Some(plugin))
        .filter_map(|e| e.dropped_bytes.map(|d| d as usize))
        .collect()
}
