//! Data without a DataModule of your own: the short path from tensors to loaders
//! ([`TensorDataset`], [`random_split`], [`InMemoryDataModule`]), and Lightning's
//! [`CombinedLoader`] (several training loaders read side by side). The `DataModule` and `Loader`
//! traits themselves are in `core`.
//!
//! Uses only `core`.

pub mod combined;
pub mod tensor_data;

pub use combined::{Combination, CombinedLoader, CombinedMode, IntoCombined};

pub use tensor_data::{
    Example, InMemoryDataModule, LoaderOptions, SplitDataset, SplitLengths, TensorBatch, TensorBatcher, TensorDataset,
    check_batch_size, random_split,
};
