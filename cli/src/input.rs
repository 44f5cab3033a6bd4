//! Input that is too big for argv: a command given as `@FILE` or `-` (stdin), and JSONL files
//! (`exec --batch`, `import`) read from a path or stdin.

use std::io::{BufRead, BufReader, Read};

use anyhow::{Context, Result};

/// The command text: the argument itself, the contents of `@FILE`, or stdin for `-`.
pub fn command_text(arg: &str) -> Result<String> {
    if arg == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading the command from stdin")?;
        return Ok(text);
    }
    if let Some(path) = arg.strip_prefix('@') {
        return std::fs::read_to_string(path).with_context(|| format!("reading the command from {path}"));
    }
    Ok(arg.to_owned())
}

/// A line reader over a file, or stdin for `-`, and the input's size in bytes when known.
pub fn lines(source: &str) -> Result<(Box<dyn BufRead>, Option<u64>)> {
    if source == "-" {
        return Ok((Box::new(BufReader::new(std::io::stdin())), None));
    }
    let file = std::fs::File::open(source).with_context(|| format!("opening {source}"))?;
    let len = file.metadata().ok().map(|m| m.len());
    Ok((Box::new(BufReader::new(file)), len))
}
