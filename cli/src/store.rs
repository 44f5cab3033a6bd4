//! Opening stores for the CLI: the default directory, a clear error for a missing store, and
//! writing vs read-only opens with the aggregate and projection code registered.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use evfold_core::{AggregateFactory, DynProcessManager, DynProjection};
use evfold_native::{AggregateStore, StoreLayout};

/// Default store directory when `--store` is not given.
pub const DEFAULT_STORE: &str = "evfold-data";

/// The store directory from `--store` (or the default).
pub fn dir(store: Option<PathBuf>) -> Result<PathBuf> {
    Ok(store.unwrap_or_else(|| PathBuf::from(DEFAULT_STORE)))
}

/// Fails with a clear message unless `dir` holds an evfold store.
pub fn require_existing(dir: &Path) -> Result<()> {
    let layout = StoreLayout::new(dir);
    if !dir.is_dir() {
        bail!(
            "no store at {}: the directory does not exist (pass --store DIR, or create one with `evfold exec`)",
            dir.display()
        );
    }
    if !layout.streams_dir().is_dir() && !layout.lock_file().exists() {
        bail!("{} is not an evfold store (no streams/ directory and no LOCK file)", dir.display());
    }
    Ok(())
}

/// What to register on an open.
#[derive(Default)]
pub struct Code {
    /// Aggregate factories.
    pub factories: Vec<Arc<dyn AggregateFactory>>,
    /// Projections.
    pub projections: Vec<Box<dyn DynProjection>>,
    /// Process managers.
    pub managers: Vec<Box<dyn DynProcessManager>>,
}

/// Opens the store for writing (takes its lock; creates it if `create`).
pub async fn open_writer(dir: &Path, code: Code, create: bool) -> Result<AggregateStore> {
    if !create {
        require_existing(dir)?;
    }
    let mut builder = AggregateStore::builder(dir);
    for factory in code.factories {
        builder = builder.aggregate_factory(factory);
    }
    for projection in code.projections {
        builder = builder.projection_dyn(projection);
    }
    for manager in code.managers {
        builder = builder.process_manager_dyn(manager);
    }
    builder.open().await.with_context(|| format!("opening store {}", dir.display()))
}

/// Opens an existing store read-only (no lock; works while another process writes).
pub async fn open_reader(dir: &Path, factories: Vec<Arc<dyn AggregateFactory>>) -> Result<AggregateStore> {
    require_existing(dir)?;
    let mut builder = AggregateStore::builder(dir).read_only();
    for factory in factories {
        builder = builder.aggregate_factory(factory);
    }
    builder.open().await.with_context(|| format!("opening store {} read-only", dir.display()))
}
