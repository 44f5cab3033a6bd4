//! Opening stores for the CLI: the default directory, a clear error for a missing store, writing
//! opens (waiting for another writer's lock under `--wait`) vs read-only opens, and the check
//! that turns an untyped failure on a corrupt store into exit code 3.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use evfold_core::{AggregateFactory, DynProcessManager, DynProjection};
use evfold_native::{AggregateStore, StoreError, StoreLayout, StreamStatus};

use crate::exit::CliError;

/// Default store directory when `--store` is not given.
pub const DEFAULT_STORE: &str = "evfold-data";
/// How often a writer under `--wait` retries the lock.
const LOCK_RETRY: Duration = Duration::from_millis(20);

/// `--wait` in seconds (`None`: fail at once with exit 4).
static WAIT: OnceLock<Option<f64>> = OnceLock::new();

/// Records `--wait` for every writing open of this process.
pub fn set_wait(secs: Option<f64>) {
    let _ = WAIT.set(secs.filter(|s| s.is_finite() && *s >= 0.0));
}

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

/// Opens the store for writing (takes its lock, waiting for it under `--wait`; creates the
/// store if `create`). `make_code` is called again for every retry.
pub async fn open_writer_with(
    dir: &Path,
    create: bool,
    make_code: impl Fn() -> Result<Code>,
) -> Result<AggregateStore> {
    if !create {
        require_existing(dir)?;
    }
    let wait = WAIT.get().copied().flatten();
    let started = Instant::now();
    loop {
        let mut builder = AggregateStore::builder(dir);
        let code = make_code()?;
        for factory in code.factories {
            builder = builder.aggregate_factory(factory);
        }
        for projection in code.projections {
            builder = builder.projection_dyn(projection);
        }
        for manager in code.managers {
            builder = builder.process_manager_dyn(manager);
        }
        match builder.open().await {
            Err(StoreError::LockHeld { .. }) if wait.is_some_and(|w| started.elapsed().as_secs_f64() < w) => {
                tokio::time::sleep(LOCK_RETRY).await;
            }
            Err(e @ StoreError::LockHeld { .. }) if wait.is_some() => {
                let secs = wait.unwrap_or_default();
                return Err(anyhow::Error::new(e).context(CliError::WaitedTooLong { secs }));
            }
            other => return other.with_context(|| format!("opening store {}", dir.display())),
        }
    }
}

/// [`open_writer_with`] for code that is built once (no retry rebuilds it: plugin factories are
/// shared `Arc`s, projections and managers cannot be, so those callers use `open_writer_with`).
pub async fn open_writer(
    dir: &Path,
    factories: Vec<Arc<dyn AggregateFactory>>,
    create: bool,
) -> Result<AggregateStore> {
    open_writer_with(dir, create, || Ok(Code { factories: factories.clone(), ..Code::default() })).await
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

/// After a failure the store reported without a type (a poisoned stream, a failed reader),
/// checks every log: a corrupt one becomes [`CliError::Corrupt`] (exit 3) with what to run.
pub fn explain_failure(dir: &Path, error: anyhow::Error) -> anyhow::Error {
    let Ok(report) = evfold_native::verify_store(dir) else { return error };
    for stream in &report.streams {
        if let StreamStatus::Corrupt { line, reason, .. } = &stream.status {
            return anyhow::Error::new(CliError::Corrupt {
                stream: format!("{} {}", stream.stream.aggregate_type(), stream.stream.instance_id()),
                path: stream.path.display().to_string(),
                line: *line,
                reason: reason.clone(),
            });
        }
    }
    error
}
