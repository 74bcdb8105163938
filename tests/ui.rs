//! Compile-time diagnostics of `#[lightning_module]` and `#[hook]`, checked with trybuild.
//!
//! Each `tests/ui/<case>.rs` must fail to compile with exactly the errors in `<case>.stderr`. The
//! `.stderr` files are rustc's output on the pinned toolchain (`rust-toolchain.toml`), so the
//! test only runs there. Regenerate them with `TRYBUILD=overwrite cargo test --test ui` and
//! review the diff.
//!
//! Only compile-fail cases live here: with no `pass` case, trybuild runs `cargo check` (no code
//! generation for its own copy of burn) and checks the cases in one batch. Code that must
//! compile is in `tests/generated_code.rs`, which reuses the workspace's builds.

#[rustversion::attr(not(stable(1.95)), ignore = "the .stderr files are written by rustc 1.95")] // STABLE
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
