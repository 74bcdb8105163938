//! The module the CLI builds from its hyperparameters, checked before the run: a constructor
//! that panics, a module whose weights would not fit in this machine's memory (counted from the
//! parameters' shapes: burn initializes parameters lazily, so nothing is allocated yet), and
//! weights whose initialization panics (burn runs the initializers at the first use, which
//! would be inside the run) are bad input naming the hyperparameters given.

use crate::Tensor;
use crate::hooks::HasHparams;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use serde_json::{Map, Value as JsonValue};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

/// Runs `f`, returning the message of a panic instead of unwinding; the panic is not printed
/// (this thread's panics only: another thread's still reach the hook installed before).
pub(crate) fn catch_quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    type Hook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;
    let previous: Arc<Hook> = Arc::new(std::panic::take_hook());
    let this_thread = std::thread::current().id();
    let location = Arc::new(Mutex::new(None::<String>));
    {
        let previous = previous.clone();
        let location = location.clone();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() == this_thread {
                let at = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
                *location.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = at;
            } else {
                previous(info);
            }
        }));
    }
    let result = catch_unwind(AssertUnwindSafe(f));
    drop(std::panic::take_hook());
    std::panic::set_hook(Box::new(move |info| previous(info)));
    result.map_err(|payload| {
        let message = match crate::Error::panic(&*payload) {
            crate::Error::Panic { message } => message,
            other => other.to_string(),
        };
        match location
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            Some(at) => format!("{message} (at {at})"),
            None => message,
        }
    })
}

/// The bytes a module's float parameters take (4 per value when not initialized yet: burn's
/// default float type), counted without initializing them.
struct ParamBytes(u128);

impl ModuleVisitor for ParamBytes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let values = param
            .lazy_shape()
            .iter()
            .fold(1u128, |n, d| n.saturating_mul(*d as u128));
        let bytes = if param.is_initialized() {
            param.val().dtype().size()
        } else {
            4
        };
        self.0 = self.0.saturating_add(values.saturating_mul(bytes as u128));
    }
}

/// Runs each parameter's initializer and drops its value at once (one parameter's memory at a
/// time), leaving a stand-in: what a probe module is for.
struct InitializeEach;

impl ModuleMapper for InitializeEach {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, value, _) = param.consume();
        let device = value.device();
        drop(value);
        Param::initialized(id, Tensor::zeros([1; D], &device))
    }
}

/// This machine's physical memory in bytes, where it can be read.
fn physical_memory() -> Option<u128> {
    #[cfg(unix)]
    {
        // SAFETY: sysconf reads a system constant; it has no preconditions.
        let (pages, page_size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
        if pages > 0 && page_size > 0 {
            return Some(pages as u128 * page_size as u128);
        }
    }
    None
}

fn gib(bytes: u128) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u128 << 30) as f64)
}

/// Why `module` cannot run here: weights larger than this machine's memory.
pub(crate) fn too_large<M: Module>(module: &M) -> Option<String> {
    let mut counted = ParamBytes(0);
    module.visit(&mut counted);
    let memory = physical_memory()?;
    (counted.0 > memory).then(|| {
        format!(
            "the module's weights would take {} ({} parameters of 4 bytes), more than this machine's memory ({}); \
             use smaller values",
            gib(counted.0),
            counted.0 / 4,
            gib(memory)
        )
    })
}

/// Builds a module with `build` and checks it: its constructor and its initializers must not
/// panic, and its weights must fit in memory. `probe` also initializes a second module built
/// the same way, one parameter at a time (the one returned stays lazy, so its weights are drawn
/// when the run starts, after the trainer seeds the generator).
pub(crate) fn checked_module<M: Module>(build: impl Fn() -> M, probe: bool) -> Result<M, String> {
    let module = catch_quietly(&build).map_err(|message| format!("building the module panicked: {message}"))?;
    if let Some(why) = too_large(&module) {
        return Err(why);
    }
    if probe {
        catch_quietly(|| drop(build().map(&mut InitializeEach)))
            .map_err(|message| format!("initializing the module's weights panicked: {message}"))?;
    }
    Ok(module)
}

/// The hyperparameters of `hparams` that differ from their defaults (`--model.<name> <value>`),
/// narrowed to those that alone, over the defaults, make `fails` fail, when some do.
pub(crate) fn suspects<M: HasHparams>(
    hparams: &M::Hparams,
    defaults: &Map<String, JsonValue>,
    fails: impl Fn(&M::Hparams) -> bool,
) -> Vec<String> {
    let Ok(JsonValue::Object(given)) = serde_json::to_value(hparams) else {
        return Vec::new();
    };
    let changed: Vec<(&String, &JsonValue)> = given.iter().filter(|(k, v)| defaults.get(*k) != Some(*v)).collect();
    let alone: Vec<(&String, &JsonValue)> = changed
        .iter()
        .copied()
        .filter(|(name, value)| {
            let mut one = given.clone();
            for (key, default) in defaults {
                if key != *name {
                    one.insert(key.clone(), default.clone());
                }
            }
            one.insert((*name).clone(), (*value).clone());
            serde_json::from_value::<M::Hparams>(JsonValue::Object(one)).is_ok_and(|h| fails(&h))
        })
        .collect();
    let named = if alone.is_empty() { changed } else { alone };
    named
        .into_iter()
        .map(|(name, value)| format!("--model.{name} {value}"))
        .collect()
}
