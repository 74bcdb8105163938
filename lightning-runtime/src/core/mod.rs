//! The types everything else shares, at the bottom of the runtime: errors, the data traits
//! (`DataModule`, `Loader`, `Stage`), the trainer's state, every hook's name (`Hook`, generated
//! from the hook table), the metric store that `log` writes into, the checkpoint's data, the
//! values of the flags the loops read, the components a configuration names (`class_path` and
//! `init_args`), and the small handles a hook's context holds (where printed lines go, what other
//! ranks logged with `sync_dist`).
//!
//! Uses nothing else of the crate: every other folder may use it.

pub mod checkpoint_data;
pub mod component;
pub mod datamodule;
pub(crate) mod distributed;
pub mod error;
pub mod flags;
pub mod hook_list;
pub mod logging;
pub mod mode;
pub(crate) mod output;
pub mod state;
