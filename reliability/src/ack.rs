//! The acknowledgement protocol between the kill-test child and its parent: one line per
//! command whose `execute` returned `Ok`, written (and flushed) only after that return.
//!
//! `ACK <aggregate-type> <instance-id> <version> <tag> <pos>[,<pos>...] .` (the final `.` marks
//! a complete line, on top of the newline the parent requires).

use std::fmt;

/// One acknowledged command: the stream, its version after the command, the unique tag the
/// command carried in its metadata (`meta.extra.tag`) and the positions of its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Aggregate type of the stream.
    pub aggregate_type: String,
    /// Instance id of the stream.
    pub instance_id: String,
    /// Stream version after the command.
    pub version: u64,
    /// Unique tag of the command.
    pub tag: String,
    /// Store positions of its events, in order.
    pub positions: Vec<u64>,
}

impl fmt::Display for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let positions: Vec<String> = self.positions.iter().map(u64::to_string).collect();
        write!(
            f,
            "ACK {} {} {} {} {} .",
            self.aggregate_type,
            self.instance_id,
            self.version,
            self.tag,
            positions.join(",")
        )
    }
}

impl Ack {
    /// Parses a complete `ACK ...` line; anything else (including a line cut by the kill) is
    /// `None`.
    pub fn parse(line: &str) -> Option<Ack> {
        let mut parts = line.split(' ');
        if parts.next()? != "ACK" {
            return None;
        }
        let aggregate_type = parts.next()?.to_owned();
        let instance_id = parts.next()?.to_owned();
        let version = parts.next()?.parse().ok()?;
        let tag = parts.next()?.to_owned();
        let positions = parts.next()?.split(',').map(str::parse).collect::<Result<Vec<u64>, _>>().ok()?;
        if parts.next() != Some(".") || parts.next().is_some() || positions.is_empty() {
            return None;
        }
        Some(Ack { aggregate_type, instance_id, version, tag, positions })
    }
}

#[cfg(test)]
mod tests {
    use super::Ack;

    #[test]
    fn round_trips_and_refuses_cut_lines() {
        let ack = Ack {
            aggregate_type: "bank-account".into(),
            instance_id: "a-3".into(),
            version: 12,
            tag: "r4w1n9".into(),
            positions: vec![77, 78],
        };
        let line = ack.to_string();
        assert_eq!(Ack::parse(&line), Some(ack));
        assert_eq!(Ack::parse(&line[..line.len() - 3]), None);
        assert_eq!(Ack::parse("ACK bank-account a-3 12 r4w1n9"), None);
        assert_eq!(Ack::parse("READY"), None);
    }
}
