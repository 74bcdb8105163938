//! The code `#[lightning_module]` generates compiles without warnings (each module denies them)
//! in the shapes that stress it: prelude names shadowed (only fully qualified paths work), a
//! renamed facade (`crate = path`), hooks returning `Result`, several optimizers under manual
//! optimization. These were trybuild `pass` cases; as ordinary tests they reuse the workspace's
//! builds, and trybuild only checks the compile-fail cases of `tests/ui.rs`.

#[path = "generated_code/crate_path.rs"]
mod crate_path;
#[path = "generated_code/hook_result.rs"]
mod hook_result;
#[path = "generated_code/hygiene.rs"]
mod hygiene;
#[path = "generated_code/several_optimizers.rs"]
mod several_optimizers;
