//! Export glue for projections: runs a typed `evfold_core::Projection` behind the WIT
//! `projection` interface. One component instance holds one read model.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;

use evfold_core::{Projection, StoredEvent};

use crate::aggregate::for_each_event;
use crate::bindings::projection::exports::evfold::plugin::projection::{Guest, ProjectionInfo};
use crate::host::install_panic_hook;

/// Ties a typed projection to the plugin crate's name and version; `export_projection!`
/// implements it for you.
pub trait ProjectionPlugin: 'static {
    /// The typed projection this plugin runs.
    type Projection: Projection;
    /// Plugin (crate) name.
    const NAME: &'static str;
    /// Plugin (crate) version.
    const VERSION: &'static str;
}

/// The WIT export implementation for plugin `P`; used by `export_projection!`.
pub struct ProjectionExport<P>(PhantomData<P>);

thread_local! {
    /// The read model this instance holds (type-erased: statics can't be generic).
    static MODEL: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Runs `f` on the read model, creating the default one on first use.
fn with_model<M: Projection, R>(f: impl FnOnce(&mut M) -> R) -> R {
    MODEL.with(|cell| {
        let mut slot = cell.borrow_mut();
        let model = slot.get_or_insert_with(|| Box::new(M::default()));
        match model.downcast_mut::<M>() {
            Some(model) => f(model),
            None => panic!("evfold-plugin-sdk: one projection type per plugin"),
        }
    })
}

impl<P: ProjectionPlugin> Guest for ProjectionExport<P> {
    fn metadata() -> ProjectionInfo {
        install_panic_hook();
        ProjectionInfo {
            name: P::NAME.to_owned(),
            plugin_version: P::VERSION.to_owned(),
            sdk_version: crate::SDK_VERSION.to_owned(),
            projection_name: <P::Projection as Projection>::NAME.to_owned(),
        }
    }

    fn apply(events: String) -> Result<(), String> {
        install_panic_hook();
        with_model::<P::Projection, _>(|model| for_each_event(&events, |event: StoredEvent| model.apply(&event)))
    }

    fn snapshot() -> Result<String, String> {
        install_panic_hook();
        with_model::<P::Projection, _>(|model| serde_json::to_string(model).map_err(|e| e.to_string()))
    }

    fn restore(state: String) -> Result<(), String> {
        install_panic_hook();
        let restored: P::Projection = serde_json::from_str(&state).map_err(|e| format!("snapshot: {e}"))?;
        with_model::<P::Projection, _>(|model| *model = restored);
        Ok(())
    }

    fn reset() {
        install_panic_hook();
        with_model::<P::Projection, _>(|model| *model = P::Projection::default());
    }

    fn query(request: String) -> Result<String, String> {
        install_panic_hook();
        with_model::<P::Projection, _>(|model| {
            let value = serde_json::to_value(&*model).map_err(|e| e.to_string())?;
            let found = value.pointer(&request).unwrap_or(&serde_json::Value::Null);
            serde_json::to_string(found).map_err(|e| e.to_string())
        })
    }
}
