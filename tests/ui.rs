//! Compile-time diagnostics of `#[lightning_module]` and `#[hook]`, checked with trybuild.
//!
//! Each `tests/ui/<case>.rs` must fail to compile with exactly the errors in `<case>.stderr`;
//! `tests/ui/pass/*.rs` must compile (with `#![deny(warnings)]`) and run. The `.stderr` files are
//! rustc's output on the pinned toolchain (`rust-toolchain.toml`), so the test only runs there.
//! Regenerate them with `TRYBUILD=overwrite cargo test --test ui` and review the diff.

#[rustversion::attr(not(stable(1.95)), ignore = "the .stderr files are written by rustc 1.95")] // STABLE
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
