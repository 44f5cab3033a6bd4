//! Compiled-plugin cache: a plugin is compiled by Cranelift once per (content, engine
//! configuration), kept in memory for the engine's life and, when a cache directory is
//! configured, on disk as `<sha256 of the .wasm>-<engine hash>.cwasm` for later processes.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::error::PluginError;

/// Content hash of a plugin file, hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Hash of everything in the engine's configuration that makes compiled code incompatible.
fn engine_hash(engine: &Engine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Memory + optional disk cache of compiled components.
pub(crate) struct ArtifactCache {
    dir: Option<PathBuf>,
    engine_hash: String,
    compiled: Mutex<HashMap<String, Component>>,
}

impl ArtifactCache {
    /// A cache for `engine`, persisting into `dir` if given (created if missing).
    pub(crate) fn new(engine: &Engine, dir: Option<PathBuf>) -> Result<Self, PluginError> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| PluginError::Cache { path: dir.clone(), message: format!("cannot create: {e}") })?;
        }
        Ok(ArtifactCache { dir, engine_hash: engine_hash(engine), compiled: Mutex::new(HashMap::new()) })
    }

    /// The compiled component for `bytes` (whose content hash is `sha`), compiling at most once.
    pub(crate) fn component(&self, engine: &Engine, sha: &str, bytes: &[u8]) -> wasmtime::Result<Component> {
        if let Some(component) = self.lock().get(sha) {
            return Ok(component.clone());
        }
        let component = match &self.dir {
            Some(dir) => self.load_or_compile(engine, &dir.join(format!("{sha}-{}.cwasm", self.engine_hash)), bytes)?,
            None => Component::new(engine, bytes)?,
        };
        self.lock().insert(sha.to_owned(), component.clone());
        Ok(component)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Component>> {
        self.compiled.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Deserializes the cached artifact at `path`, or compiles and stores it there.
    fn load_or_compile(&self, engine: &Engine, path: &Path, bytes: &[u8]) -> wasmtime::Result<Component> {
        if path.exists() {
            match deserialize(engine, path) {
                Ok(component) => return Ok(component),
                Err(error) => tracing::warn!(path = %path.display(), %error, "unusable cached plugin; recompiling"),
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(error) = store_artifact(path, &component) {
            tracing::warn!(path = %path.display(), %error, "could not write the compiled-plugin cache");
        }
        Ok(component)
    }
}

/// Loads a compiled artifact this cache wrote.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize` trusts the file to be native code wasmtime produced. The file is
    // named by the content hash of the plugin and the engine's compatibility hash, and was written
    // by `store_artifact` (temp file + rename) into the host's private cache directory; wasmtime
    // itself still checks the header, version and engine compatibility and refuses a mismatch.
    // The cache directory must not be writable by anyone the host does not trust (documented on
    // `EngineOptions::cache_dir`).
    // The file is read into memory rather than mapped: a mapped file truncated by someone else
    // while in use would crash the process with SIGBUS.
    let bytes = std::fs::read(path)?;
    unsafe { Component::deserialize(engine, bytes) }
}

/// Writes a compiled artifact atomically (temp file + rename).
fn store_artifact(path: &Path, component: &Component) -> Result<(), Box<dyn std::error::Error>> {
    let serialized = component.serialize().map_err(|e| e.to_string())?;
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temp, serialized)?;
    std::fs::rename(&temp, path)?;
    Ok(())
}
