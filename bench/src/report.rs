//! The result table: one row per figure, evfold against the peer (or the disk floor), the ratio
//! oriented so that > 1 means evfold is better, and the target it is held to.

use std::fmt::Write;

use crate::util::Sizes;

/// What a figure is held to.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// Informational.
    None,
    /// At least this many times better than the peer.
    Peer(f64),
    /// At least this fraction of the raw fdatasync rate.
    Floor(f64),
}

/// One figure.
#[derive(Debug, Clone)]
pub struct Row {
    label: String,
    evfold: f64,
    peer: Option<f64>,
    higher_is_better: bool,
    target: Target,
}

impl Row {
    /// A rate (higher is better).
    pub fn rate(label: &str, evfold: f64, peer: Option<f64>, target: Target) -> Row {
        Row { label: label.into(), evfold, peer, higher_is_better: true, target }
    }

    /// A plugin rate against the native rate (shown in the peer column, ratio plugin/native).
    pub fn versus(label: &str, plugin: f64, native: f64) -> Row {
        Row { label: label.into(), evfold: plugin, peer: Some(native), higher_is_better: true, target: Target::None }
    }

    /// A duration (lower is better).
    pub fn time(label: &str, evfold: f64, peer: f64, target: Target) -> Row {
        Row { label: label.into(), evfold, peer: Some(peer), higher_is_better: false, target }
    }

    /// A size (lower is better, no target).
    pub fn size(label: &str, evfold: f64, peer: f64) -> Row {
        Row { label: label.into(), evfold, peer: Some(peer), higher_is_better: false, target: Target::None }
    }

    fn ratio(&self) -> Option<f64> {
        let peer = self.peer?;
        Some(if self.higher_is_better { self.evfold / peer } else { peer / self.evfold })
    }
}

/// Every figure of one run.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
    /// The raw fdatasync rate of this run.
    pub floor: Option<f64>,
    /// Free-text notes printed under the table.
    pub notes: Vec<String>,
}

impl Report {
    /// Adds a figure and echoes it to stderr as it lands.
    pub fn push(&mut self, row: Row) {
        eprintln!("    {} = {} (peer {:?})", row.label, fmt(row.evfold), row.peer.map(fmt));
        self.rows.push(row);
    }

    /// The markdown table.
    pub fn markdown(&self, sizes: Sizes) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "sizes: {sizes:?}\n");
        let _ = writeln!(out, "| figure | evfold | eventfold-es 0.2 (plugin rows: native evfold) | ratio (>1 = evfold better) | target | met |");
        let _ = writeln!(out, "|---|---:|---:|---:|---|---|");
        for row in &self.rows {
            let (target, met) = self.judge(row);
            let peer = row.peer.map(fmt).unwrap_or_else(|| "–".into());
            let ratio = row.ratio().map(|r| format!("{r:.2}×")).unwrap_or_else(|| "–".into());
            let _ = writeln!(out, "| {} | {} | {peer} | {ratio} | {target} | {met} |", row.label, fmt(row.evfold));
        }
        for note in &self.notes {
            let _ = writeln!(out, "\n{note}");
        }
        out
    }

    fn judge(&self, row: &Row) -> (String, &'static str) {
        let yes_no = |ok: bool| if ok { "yes" } else { "**no**" };
        match row.target {
            Target::None => (String::new(), ""),
            Target::Peer(x) => (format!("≥ {x}× peer"), yes_no(row.ratio().is_some_and(|r| r >= x))),
            Target::Floor(x) => match self.floor {
                Some(floor) => {
                    (format!("≥ {x}× fdatasync ({:.2}×)", row.evfold / floor), yes_no(row.evfold >= x * floor))
                }
                None => (format!("≥ {x}× fdatasync"), "?"),
            },
        }
    }
}

/// A number with a sensible precision.
fn fmt(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}
