use burn_lightning::prelude::*;

/// `#[derive(DataOptions)]` describes a struct's fields.
#[derive(DataOptions)]
pub enum Data {
    Small,
    Large,
}

fn main() {}
