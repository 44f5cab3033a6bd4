//! The `wasi-probe` test plugin, built for `wasm32-wasip2` (a component that imports WASI): every
//! command reads one capability the host may grant or deny (clocks, random bytes, environment,
//! network and files, which are never granted),
//! prints to stdout/stderr, panics through std's default hook (message on stderr), or recurses
//! through the shadow stack in linear memory (or reads out of bounds once, for contrast). The host's tests assert what the guest saw.

use std::hint::black_box;
use std::io::Write;

use evfold_core::Aggregate;
use serde::{Deserialize, Serialize};

/// State: how many probes were folded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WasiProbe {
    /// Folded `Probed` events.
    pub probes: u64,
    /// Folded `Printed` events.
    pub prints: u64,
}

/// What the host asks the probe to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ProbeCommand {
    /// Read clocks, random sources and the environment; report them in a `Probed` event.
    Probe,
    /// Print `lines` lines of `text` to stdout and to stderr (each line numbered), then report.
    Print {
        /// Line text.
        text: String,
        /// How many lines per stream.
        lines: u32,
    },
    /// Panic through std's default hook, which writes the message to stderr.
    Panic,
    /// Recurse with `frame_bytes` of frame data per call in the shadow stack (linear memory).
    Recurse {
        /// Bytes of addressable frame data per call.
        frame_bytes: u32,
    },
    /// Read linear memory out of bounds once, without recursion (a plain trap).
    WildRead,
    /// Try the network (TCP connect, name lookup) and the filesystem; report what failed.
    Reach,
}

/// What the probe saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ProbeEvent {
    /// Capability readings.
    Probed {
        /// `wasi:clocks/wall-clock.now` as (seconds, nanoseconds).
        wall: (u64, u32),
        /// `wasi:clocks/monotonic-clock.now`, twice (nanoseconds).
        monotonic: (u64, u64),
        /// 16 bytes of `wasi:random/random`, hex.
        random: String,
        /// 16 bytes of `wasi:random/insecure`, hex.
        insecure: String,
        /// `wasi:random/insecure-seed`.
        seed: (u64, u64),
        /// `std::time::SystemTime::now()` since the Unix epoch, in nanoseconds.
        std_time_nanos: u128,
        /// The environment as std sees it.
        env: Vec<(String, String)>,
        /// Hash of a fixed value with std's `RandomState` (seeded from WASI random).
        hash: u64,
    },
    /// Output was written; the guest saw these write results.
    Printed {
        /// Lines per stream.
        lines: u32,
        /// Write errors the guest saw (must stay 0: dropped output still reports success).
        errors: u32,
    },
    /// What `Reach` got back.
    Reached {
        /// TCP socket creation / connect outcome.
        tcp: String,
        /// Name lookup outcome.
        lookup: String,
        /// `std::fs::read_dir("/")` outcome.
        files: String,
        /// Preopened directories the guest sees.
        preopens: u32,
    },
    /// Never produced: the recursion does not return.
    Recursed {
        /// Depth reached.
        depth: u64,
    },
}

/// Refusals (none in practice).
#[derive(Debug, Clone, thiserror::Error)]
#[error("wasi-probe refused: {0}")]
pub struct ProbeError(String);

impl Aggregate for WasiProbe {
    const AGGREGATE_TYPE: &'static str = "wasi-probe";
    type Command = ProbeCommand;
    type Event = ProbeEvent;
    type Error = ProbeError;

    fn handle(&self, command: ProbeCommand) -> Result<Vec<ProbeEvent>, ProbeError> {
        Ok(vec![match command {
            ProbeCommand::Probe => probe(),
            ProbeCommand::Print { text, lines } => print(&text, lines),
            ProbeCommand::Panic => {
                // Back to std's default hook (the SDK's hook logs through the host import instead).
                drop(std::panic::take_hook());
                panic!("wasi-probe panics on purpose")
            }
            ProbeCommand::Recurse { frame_bytes } => {
                ProbeEvent::Recursed { depth: recurse(0, frame_bytes as usize) }
            }
            ProbeCommand::WildRead => ProbeEvent::Recursed { depth: wild_read() },
            ProbeCommand::Reach => reach(),
        }])
    }

    fn apply(mut self, event: &ProbeEvent) -> Self {
        match event {
            ProbeEvent::Probed { .. } => self.probes += 1,
            ProbeEvent::Printed { .. } => self.prints += 1,
            ProbeEvent::Recursed { .. } | ProbeEvent::Reached { .. } => {}
        }
        self
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn probe() -> ProbeEvent {
    use std::hash::BuildHasher;
    let wall = wasip2::clocks::wall_clock::now();
    let first = wasip2::clocks::monotonic_clock::now();
    let second = wasip2::clocks::monotonic_clock::now();
    let std_time_nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    ProbeEvent::Probed {
        wall: (wall.seconds, wall.nanoseconds),
        monotonic: (first, second),
        random: hex(&wasip2::random::random::get_random_bytes(16)),
        insecure: hex(&wasip2::random::insecure::get_insecure_random_bytes(16)),
        seed: wasip2::random::insecure_seed::insecure_seed(),
        std_time_nanos,
        env: std::env::vars().collect(),
        hash: std::collections::hash_map::RandomState::new().hash_one(42u64),
    }
}

fn print(text: &str, lines: u32) -> ProbeEvent {
    let mut errors = 0;
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    for i in 0..lines {
        errors += u32::from(writeln!(out, "{text} out {i}").is_err());
        errors += u32::from(writeln!(err, "{text} err {i}").is_err());
    }
    errors += u32::from(out.flush().is_err()) + u32::from(err.flush().is_err());
    // A partial last line (no newline) must reach the host too, at the end of the call.
    errors += u32::from(write!(out, "{text} tail").and_then(|()| out.flush()).is_err());
    ProbeEvent::Printed { lines, errors }
}

/// Unbounded recursion whose frames hold `frame_bytes` of data the compiler must keep in linear
/// memory (its address escapes), so it exhausts the 1 MiB shadow stack long before the engine's
/// native wasm stack.
#[allow(unconditional_recursion)]
fn recurse(depth: u64, frame_bytes: usize) -> u64 {
    let mut frame = [0u8; 4096];
    let used = frame_bytes.clamp(1, frame.len());
    frame[used - 1] = depth as u8;
    black_box(&mut frame[..used]);
    black_box(recurse(black_box(depth + 1), frame_bytes)) + u64::from(frame[0])
}

fn reach() -> ProbeEvent {
    use wasip2::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
    use wasip2::sockets::{instance_network, ip_name_lookup, tcp_create_socket};
    let network = instance_network::instance_network();
    let tcp = match tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4) {
        Err(error) => format!("create: {error:?}"),
        Ok(socket) => {
            let address = IpSocketAddress::Ipv4(Ipv4SocketAddress { port: 80, address: (127, 0, 0, 1) });
            match socket.start_connect(&network, address) {
                Err(error) => format!("connect: {error:?}"),
                Ok(()) => "connect started".into(),
            }
        }
    };
    let lookup = match ip_name_lookup::resolve_addresses(&network, "localhost") {
        Err(error) => format!("{error:?}"),
        Ok(_) => "resolving".into(),
    };
    let files = match std::fs::read_dir("/") {
        Err(error) => error.to_string(),
        Ok(_) => "listed /".into(),
    };
    let preopens = wasip2::filesystem::preopens::get_directories().len() as u32;
    ProbeEvent::Reached { tcp, lookup, files, preopens }
}

/// Reads 4 bytes below the top of the 32-bit address space: out of bounds of any linear memory.
#[allow(unsafe_code)]
fn wild_read() -> u64 {
    let address = black_box(0xffff_fff0usize) as *const u32;
    // SAFETY: not safe at all, on purpose: the access traps (wasm bounds check), nothing is read.
    u64::from(unsafe { address.read_volatile() })
}

evfold_plugin_sdk::export_aggregate!(WasiProbe);
