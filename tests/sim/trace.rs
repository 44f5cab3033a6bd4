//! The run trace: one short line per step, folded into a hash (two runs of a seed must hash the
//! same) and kept as a tail for failure reports, or in full when asked.

use std::collections::VecDeque;

use evfold_core::{Io, IoResult, Output};

const TAIL_LINES: usize = 60;

/// Hash + tail (+ optionally every line).
pub struct Trace {
    hash: u64,
    lines: u64,
    tail: VecDeque<String>,
    print: bool,
}

impl Trace {
    /// A trace; `print` writes every line to stderr as it happens.
    pub fn new(print: bool) -> Self {
        Trace { hash: 0xcbf2_9ce4_8422_2325, lines: 0, tail: VecDeque::new(), print }
    }

    /// Adds one line.
    pub fn line(&mut self, line: String) {
        for b in line.bytes().chain(std::iter::once(b'\n')) {
            self.hash = (self.hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.lines += 1;
        if self.print {
            eprintln!("{line}");
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    /// FNV-1a over every line so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Number of lines so far.
    pub fn len(&self) -> u64 {
        self.lines
    }

    /// The last lines.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}

/// A one-line summary of a request.
pub fn io(io: &Io) -> String {
    match io {
        Io::ReadSnapshot { stream } => format!("read-snapshot {stream}"),
        Io::ReadStream { stream, after_seq } => format!("read-stream {stream} after {after_seq}"),
        Io::Append { stream, expected_seq, events } => {
            let types: Vec<&str> = events.iter().map(|e| e.payload.type_name.as_str()).collect();
            format!("append {stream} at {expected_seq} {types:?}")
        }
        Io::Sync { stream } => format!("sync {stream}"),
        Io::WriteSnapshot { stream, snapshot } => format!("write-snapshot {stream} seq {}", snapshot.seq),
        Io::ReadCheckpoint { reader } => format!("read-checkpoint {reader}"),
        Io::ReadAll { after, max_events } => format!("read-all {reader_pos} max {max_events}", reader_pos = after.0),
        Io::WriteCheckpoint { reader, checkpoint } => format!("write-checkpoint {reader} at {}", checkpoint.position.0),
        Io::Dispatch { dispatch_id, command } => format!("dispatch {dispatch_id} to {}", command.target),
        Io::WriteDeadLetter { reader, letter } => format!("dead-letter {reader} cause {}", letter.cause),
    }
}

/// A one-line summary of a result.
pub fn result(result: &IoResult) -> String {
    let pos = |r: Option<u64>, s: Option<u64>| format!("{}..{}", r.unwrap_or(0), s.unwrap_or(0));
    match result {
        IoResult::Done => "done".into(),
        IoResult::Snapshot(s) => format!("snapshot {:?}", s.as_ref().map(|s| s.seq)),
        IoResult::Stream(r) => format!("{} events", r.len()),
        IoResult::Appended(r) => format!("appended pos {}", pos(r.first().map(|r| r.pos), r.last().map(|r| r.pos))),
        IoResult::Checkpoint(c) => format!("checkpoint {:?}", c.as_ref().map(|c| c.position.0.clone())),
        IoResult::Batch { events, next } => {
            let p: Vec<u64> = events.iter().map(|e| e.record.pos).collect();
            format!("batch {p:?} next {}", next.0)
        }
        IoResult::Failed(e) => format!("failed {:?}", e.kind),
    }
}

/// A one-line summary of a non-IO output.
pub fn output(output: &Output) -> String {
    match output {
        Output::Io { io: id, request } => format!("io#{} {}", id.0, io(request)),
        Output::Reply { id, result: Ok(c) } => format!("reply #{} ok v{} {:?}", id.0, c.version, c.positions),
        Output::Reply { id, result: Err(e) } => format!("reply #{} err {e}", id.0),
        Output::State { id, result } => format!("state #{} {}", id.0, result.is_ok()),
        Output::Notify(n) => format!("{n:?}"),
    }
}
