//! WASI for plugins that import it (built for `wasm32-wasip2`): the capability [`Grants`], a
//! deny-by-default and deterministic `WasiCtx` per instance, and [`Output`], the per-call capped
//! capture of guest output (stdout, stderr and the `log` import) into `tracing`.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx};

use crate::error::Call;

/// Prefix of a panic report (the SDK's hook logs `panicked at ...`; std's default hook writes
/// `thread '...' panicked at ...` to stderr).
pub(crate) const PANIC_PREFIX: &str = "panicked";
/// Longest panic message kept for the error.
const PANIC_MESSAGE_CAP: usize = 4096;
/// Most bytes one `check_write` lets a guest write at once.
const WRITE_PERMIT: usize = 64 << 10;
/// Seeds of the deterministic random generators (any fixed values do).
const SECURE_SEED: u64 = 0x6576_666f_6c64_0001;
const INSECURE_SEED: u64 = 0x6576_666f_6c64_0002;
const INSECURE_SEED_VALUE: u128 = 0x6576_666f_6c64_0003;
/// WASI packages a plugin may import (`wasi:<package>/<interface>@0.2.x`), all linked from
/// wasmtime-wasi (p2, sync) and each deny-by-default. Anything else (`wasi:http`, `wasi:keyvalue`,
/// a WASI 0.3 import) is refused at load as `ForbiddenImport`.
const WASI_PACKAGES: [&str; 6] = ["cli", "io", "clocks", "random", "filesystem", "sockets"];
/// WASI version line this host links.
const WASI_VERSION_PREFIX: &str = "0.2.";

/// WASI capabilities an engine grants to plugins that import WASI. The default grants nothing:
/// clocks read a fixed time (Unix epoch 0 and monotonic 0, never advancing), random sources are
/// fixed-seed generators (the same bytes in every instance and every run), the environment,
/// arguments and stdin are empty. Files (no preopened directory) and the network (sockets, name
/// lookup) are never granted; there is no switch for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// `wasi:clocks/wall-clock` (and std's `SystemTime::now`) reads the host's real clock.
    pub wall_clock: bool,
    /// `wasi:clocks/monotonic-clock` (std's `Instant`) reads the host's real monotonic clock.
    pub monotonic_clock: bool,
    /// `wasi:random/*` return real (host) randomness; std's `HashMap` seeds become random too.
    pub random: bool,
    /// Environment variables the guest sees (`std::env::vars`).
    pub env: Vec<(String, String)>,
}

impl Grants {
    /// Whether any grant makes a plugin's results depend on when or where it runs.
    pub fn is_deterministic(&self) -> bool {
        !(self.wall_clock || self.monotonic_clock || self.random)
    }
}

/// A wall clock stopped at the Unix epoch.
struct FixedWallClock;

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// A monotonic clock stopped at 0.
struct FixedMonotonicClock;

impl HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

/// splitmix64: a fixed-seed generator for the ungranted random interfaces.
struct SeededRandom(u64);

impl rand_core::TryRng for SeededRandom {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok((self.try_next_u64()? >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Ok(z ^ (z >> 31))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dest.chunks_mut(8) {
            let word = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        Ok(())
    }
}

/// The `WasiCtx` of one instance: deny-by-default, deterministic unless granted, output captured.
pub(crate) fn wasi_ctx(grants: &Grants, output: &Output) -> WasiCtx {
    let mut builder = WasiCtx::builder();
    builder
        .stdout(CaptureStream { output: output.clone(), stream: Stream::Stdout })
        .stderr(CaptureStream { output: output.clone(), stream: Stream::Stderr })
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .envs(&grants.env);
    if !grants.wall_clock {
        builder.wall_clock(FixedWallClock);
    }
    if !grants.monotonic_clock {
        builder.monotonic_clock(FixedMonotonicClock);
    }
    if !grants.random {
        builder
            .secure_random(SeededRandom(SECURE_SEED))
            .insecure_random(SeededRandom(INSECURE_SEED))
            .insecure_random_seed(INSECURE_SEED_VALUE);
    }
    builder.build()
}

/// Which guest output a byte came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    /// stdout: forwarded at `info`.
    Stdout,
    /// stderr: forwarded at `warn`.
    Stderr,
}

/// Severity of a line from the `log` import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Guest output of one instance under the per-call byte cap (`Limits::log_bytes`), shared by
/// the `log` import and the WASI stdout/stderr streams. Cheap to clone (one shared state). A call
/// that writes nothing costs two relaxed atomic loads (no lock).
#[derive(Clone)]
pub(crate) struct Output {
    shared: Arc<Shared>,
}

struct Shared {
    /// Something was written since the last `begin_call` (the state needs work).
    touched: AtomicBool,
    state: Mutex<OutputState>,
}

struct OutputState {
    plugin: Arc<str>,
    limit: usize,
    used: usize,
    dropped: usize,
    /// Admitted bytes of the unfinished stdout / stderr line.
    partial: [Vec<u8>; 2],
    /// The current stderr line, capped, kept even over the cap (to find a panic message).
    stderr_line: Vec<u8>,
    /// Set after a stderr `panicked at` line: the next line is the message.
    panic_pending: bool,
    last_panic: Option<String>,
}

impl Output {
    /// Output capture for `plugin`, `limit` bytes per call.
    pub(crate) fn new(plugin: Arc<str>, limit: usize) -> Self {
        let state = OutputState {
            plugin,
            limit,
            used: 0,
            dropped: 0,
            partial: [Vec::new(), Vec::new()],
            stderr_line: Vec::new(),
            panic_pending: false,
            last_panic: None,
        };
        Output { shared: Arc::new(Shared { touched: AtomicBool::new(false), state: Mutex::new(state) }) }
    }

    /// The state, marked as touched (a write or a reset follows).
    fn lock(&self) -> MutexGuard<'_, OutputState> {
        self.shared.touched.store(true, Ordering::Relaxed);
        self.shared.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Resets the per-call budget and the panic message (nothing to do after a silent call).
    pub(crate) fn begin_call(&self) {
        if !self.shared.touched.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.lock();
        self.shared.touched.store(false, Ordering::Relaxed);
        state.used = 0;
        state.dropped = 0;
        state.last_panic = None;
        state.panic_pending = false;
    }

    /// Forwards unfinished lines and reports what the cap dropped during the call (nothing to do
    /// after a silent call). The panic message stays readable until the next `begin_call`.
    pub(crate) fn end_call(&self, call: &Call) {
        if !self.shared.touched.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.lock();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let line = std::mem::take(&mut state.partial[stream as usize]);
            if !line.is_empty() {
                state.emit(stream, &line);
            }
        }
        if state.dropped > 0 {
            tracing::warn!(target: "evfold_plugin", plugin = %state.plugin, %call, dropped_bytes = state.dropped,
                "plugin output over the per-call cap was dropped");
        }
    }

    /// The guest's panic message, if it reported one during this call.
    pub(crate) fn last_panic(&self) -> Option<String> {
        if !self.shared.touched.load(Ordering::Relaxed) {
            return None;
        }
        self.lock().last_panic.clone()
    }

    /// One line from the `log` import.
    pub(crate) fn log(&self, level: LogLevel, message: &str) {
        let mut state = self.lock();
        if matches!(level, LogLevel::Error) && message.starts_with(PANIC_PREFIX) {
            state.last_panic = Some(truncate(message, PANIC_MESSAGE_CAP).to_owned());
        }
        if state.used + message.len() > state.limit {
            state.dropped += message.len();
            return;
        }
        state.used += message.len();
        let plugin = &*state.plugin;
        match level {
            LogLevel::Trace => tracing::trace!(target: "evfold_plugin", plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "evfold_plugin", plugin, "{message}"),
            LogLevel::Info => tracing::info!(target: "evfold_plugin", plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "evfold_plugin", plugin, "{message}"),
            LogLevel::Error => tracing::error!(target: "evfold_plugin", plugin, "{message}"),
        }
    }

    /// Bytes the guest wrote to stdout or stderr. Always accepted: bytes over the cap are
    /// counted and dropped, never reported to the guest as an error.
    pub(crate) fn write(&self, stream: Stream, bytes: &[u8]) {
        let mut state = self.lock();
        if stream == Stream::Stderr {
            state.sniff_panic(bytes);
        }
        let room = state.limit.saturating_sub(state.used);
        let (admitted, over) = bytes.split_at(bytes.len().min(room));
        state.used += admitted.len();
        state.dropped += over.len();
        let mut rest = admitted;
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut state.partial[stream as usize]);
            line.extend_from_slice(&rest[..newline]);
            state.emit(stream, &line);
            rest = &rest[newline + 1..];
        }
        state.partial[stream as usize].extend_from_slice(rest);
    }
}

impl OutputState {
    /// Forwards one line to `tracing`.
    fn emit(&self, stream: Stream, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        let plugin = &*self.plugin;
        match stream {
            Stream::Stdout => tracing::info!(target: "evfold_plugin", plugin, stream = "stdout", "{text}"),
            Stream::Stderr => tracing::warn!(target: "evfold_plugin", plugin, stream = "stderr", "{text}"),
        }
    }

    /// Finds std's panic report (`thread '..' panicked at file:line:col:` then the message) in
    /// stderr, whatever the cap: it becomes `PluginError::Trap { panic }`.
    fn sniff_panic(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte != b'\n' {
                if self.stderr_line.len() < PANIC_MESSAGE_CAP {
                    self.stderr_line.push(byte);
                }
                continue;
            }
            let line = String::from_utf8_lossy(&self.stderr_line).into_owned();
            self.stderr_line.clear();
            if self.panic_pending {
                self.panic_pending = false;
                if let Some(at) = self.last_panic.as_mut() {
                    at.push(' ');
                    at.push_str(truncate(&line, PANIC_MESSAGE_CAP));
                }
            } else if let Some(start) = line.find(" panicked at ").map(|i| i + 1) {
                self.last_panic = Some(line[start..].to_owned());
                self.panic_pending = true;
            }
        }
    }
}

/// Whether `import` is a WASI 0.2 interface of a package the WASI linker provides.
pub(crate) fn is_linked_wasi(import: &str) -> bool {
    let Some((path, version)) = import.strip_prefix("wasi:").and_then(|rest| rest.split_once('@')) else {
        return false;
    };
    let package = path.split('/').next().unwrap_or_default();
    WASI_PACKAGES.contains(&package) && version.starts_with(WASI_VERSION_PREFIX)
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A guest stdout or stderr that writes into [`Output`].
struct CaptureStream {
    output: Output,
    stream: Stream,
}

impl IsTerminal for CaptureStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CaptureStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(CaptureStream { output: self.output.clone(), stream: self.stream })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(CaptureStream { output: self.output.clone(), stream: self.stream })
    }
}

impl OutputStream for CaptureStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.output.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CaptureStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CaptureStream {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.output.write(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wasi_0_2_interfaces_of_the_linked_packages_are_accepted() {
        for import in [
            "wasi:cli/stdout@0.2.12",
            "wasi:io/streams@0.2.0",
            "wasi:random/insecure-seed@0.2.4",
            "wasi:clocks/wall-clock@0.2.3",
            "wasi:filesystem/preopens@0.2.1",
            "wasi:sockets/tcp@0.2.0",
        ] {
            assert!(is_linked_wasi(import), "{import}");
        }
        for import in [
            "wasi:http/outgoing-handler@0.2.0",
            "wasi:cli/stdout@0.3.0",
            "wasi:cli/stdout",
            "wasi:keyvalue/store@0.2.0",
            "evil:cli/stdout@0.2.0",
            "wasix:cli/stdout@0.2.0",
        ] {
            assert!(!is_linked_wasi(import), "{import}");
        }
    }

    #[test]
    fn output_forwards_whole_lines_under_the_cap_and_finds_a_stderr_panic() {
        let output = Output::new("p".into(), 20);
        output.begin_call();
        let (stdout, stderr): (&[u8], &[u8]) =
            (b"0123456789\nabcdefghijKLMN", b"thread '<unnamed>' panicked at src/lib.rs:1:2:\nboom\nnote: ...\n");
        output.write(Stream::Stdout, stdout);
        output.write(Stream::Stderr, stderr);
        {
            let state = output.lock();
            assert_eq!((state.used, state.dropped), (20, stdout.len() + stderr.len() - 20));
            assert_eq!(state.partial[Stream::Stdout as usize], b"abcdefghi");
        }
        output.end_call(&Call::Fold);
        assert_eq!(output.last_panic().as_deref(), Some("panicked at src/lib.rs:1:2: boom"));
        assert!(output.lock().partial.iter().all(Vec::is_empty), "flushed at the end of the call");
        // The next call starts with a fresh budget and no panic.
        output.begin_call();
        assert_eq!(output.last_panic(), None);
        output.write(Stream::Stdout, b"x\n");
        let state = output.lock();
        assert_eq!((state.used, state.dropped), (2, 0));
    }

    #[test]
    fn the_seeded_generator_is_deterministic() {
        use rand_core::TryRng;
        let (mut a, mut b) = (SeededRandom(SECURE_SEED), SeededRandom(SECURE_SEED));
        let (mut x, mut y) = ([0u8; 13], [0u8; 13]);
        a.try_fill_bytes(&mut x).unwrap();
        b.try_fill_bytes(&mut y).unwrap();
        assert_eq!(x, y);
        assert_ne!(x, [0u8; 13]);
    }
}
