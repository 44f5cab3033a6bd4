//! `plugin info | new | build | componentize`: inspect a plugin file, create a plugin crate,
//! build one into a component, or componentize a module built by hand.

mod build;
mod new;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use evfold_wasi::PluginInfo;
use serde_json::{json, Value};

use crate::args::PluginCommand;
use crate::output::Out;

/// `evfold plugin ...`.
pub fn run(command: PluginCommand, out: &Out) -> Result<ExitCode> {
    match command {
        PluginCommand::Info { file } => {
            let info = read_info(&file)?;
            out.emit(|| info_text(&file, &info), || info_json(&file, &info));
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::New { name, dir, evfold_path } => new::run(&name, dir, evfold_path, out),
        PluginCommand::Build { dir, out: file, target_dir } => {
            build::run(dir.as_deref().unwrap_or(Path::new(".")), file, target_dir, out)
        }
        PluginCommand::Componentize { module, out: file } => {
            let file = file.unwrap_or_else(|| module.with_extension("component.wasm"));
            evfold_componentize::componentize_file(&module, &file)
                .with_context(|| format!("componentizing {}", module.display()))?;
            let info = read_info(&file)?;
            out.emit(|| info_text(&file, &info), || info_json(&file, &info));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read_info(file: &Path) -> Result<PluginInfo> {
    evfold_wasi::plugin_info(file).with_context(|| format!("bad plugin {}", file.display()))
}

/// `plugin info`'s text: what the plugin is, and the SHA-256 to record next to its data.
fn info_text(file: &Path, info: &PluginInfo) -> String {
    let mut text = format!(
        "{}\n  kind:           {:?}\n  name:           {}\n  plugin version: {}\n  sdk version:    {}\n  abi version:    {}\n  sha256:         {}",
        file.display(),
        info.kind,
        info.name,
        info.plugin_version,
        info.sdk_version,
        info.abi_version,
        info.sha256
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
}

fn info_json(file: &Path, info: &PluginInfo) -> Value {
    json!({
        "file": file, "kind": format!("{:?}", info.kind), "name": info.name,
        "plugin_version": info.plugin_version, "sdk_version": info.sdk_version,
        "abi_version": info.abi_version, "sha256": info.sha256, "aggregate_type": info.aggregate_type,
        "projection_name": info.projection_name, "command_types": info.command_types,
        "event_types": info.event_types,
    })
}
