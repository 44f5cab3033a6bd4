//! `plugin info`: what a plugin file is.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;

use crate::args::PluginCommand;
use crate::output::Out;

/// `evfold plugin info FILE`.
pub fn run(command: PluginCommand, out: &Out) -> Result<ExitCode> {
    let PluginCommand::Info { file } = command;
    let info = evfold_wasi::plugin_info(&file).with_context(|| format!("bad plugin {}", file.display()))?;
    out.emit(
        || {
            let mut text = format!(
                "{}\n  kind:           {:?}\n  name:           {}\n  plugin version: {}\n  sdk version:    {}\n  abi version:    {}",
                file.display(),
                info.kind,
                info.name,
                info.plugin_version,
                info.sdk_version,
                info.abi_version
            );
            if let Some(t) = &info.aggregate_type {
                text.push_str(&format!("\n  aggregate type: {t}"));
            }
            if let Some(p) = &info.projection_name {
                text.push_str(&format!("\n  projection:     {p}"));
            }
            if !info.command_types.is_empty() {
                text.push_str(&format!("\n  commands:       {}", info.command_types.join(", ")));
            }
            if !info.event_types.is_empty() {
                text.push_str(&format!("\n  events:         {}", info.event_types.join(", ")));
            }
            text
        },
        || {
            json!({
                "file": file, "kind": format!("{:?}", info.kind), "name": info.name,
                "plugin_version": info.plugin_version, "sdk_version": info.sdk_version,
                "abi_version": info.abi_version, "aggregate_type": info.aggregate_type,
                "projection_name": info.projection_name, "command_types": info.command_types,
                "event_types": info.event_types,
            })
        },
    );
    Ok(ExitCode::SUCCESS)
}
