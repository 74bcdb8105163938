//! Where batches come from: a [`DataModule`], plain dataloaders ([`Loaders`]), or the module's
//! own dataloader hooks. Dataloaders are burn's (`DataLoaderBuilder::build` returns a [`Loader`]).

use crate::Error;
use burn::data::dataloader::DataLoader;
use std::borrow::Cow;
use std::sync::Arc;

/// A burn dataloader yielding batches of `B`.
pub type Loader<B> = Arc<dyn DataLoader<B>>;

/// What the run is for (Lightning's `stage` argument of `setup` and `teardown`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Stage {
    Fit,
    Validate,
    Test,
    Predict,
}

impl Stage {
    /// `"fit"`, `"validate"`, `"test"` or `"predict"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Fit => "fit",
            Stage::Validate => "validate",
            Stage::Test => "test",
            Stage::Predict => "predict",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a module's dataloader hook may return: a loader, or `Option` of one.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a dataloader of `{B}`",
    label = "return a `Loader<{B}>` (what burn's `DataLoaderBuilder::build` returns)"
)]
pub trait IntoLoader<B> {
    fn into_loader(self) -> Option<Loader<B>>;
}

impl<B> IntoLoader<B> for Loader<B> {
    fn into_loader(self) -> Option<Loader<B>> {
        Some(self)
    }
}

impl<B> IntoLoader<B> for Option<Loader<B>> {
    fn into_loader(self) -> Option<Loader<B>> {
        self
    }
}

/// What may be given where a stage takes several dataloaders (validation, test and predict, as
/// Lightning's `val_dataloader` may return a list): one loader, `Option` of one, or several
/// (`Vec` or array), in the order of their `dataloader_idx`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not one or several dataloaders of `{B}`",
    label = "give a `Loader<{B}>`, an `Option` of one, or several as a `Vec` or an array"
)]
pub trait IntoLoaders<B> {
    fn into_loaders(self) -> Vec<Loader<B>>;
}

impl<B> IntoLoaders<B> for Loader<B> {
    fn into_loaders(self) -> Vec<Loader<B>> {
        vec![self]
    }
}

impl<B> IntoLoaders<B> for Option<Loader<B>> {
    fn into_loaders(self) -> Vec<Loader<B>> {
        self.into_iter().collect()
    }
}

impl<B> IntoLoaders<B> for Vec<Loader<B>> {
    fn into_loaders(self) -> Vec<Loader<B>> {
        self
    }
}

impl<B, const N: usize> IntoLoaders<B> for [Loader<B>; N] {
    fn into_loaders(self) -> Vec<Loader<B>> {
        self.into()
    }
}

/// Lightning's `LightningDataModule`: prepares data and hands out the dataloaders of each stage.
///
/// The trainer calls, in order: `set_seed` (when it has a seed), `prepare_data`, `setup(stage)`,
/// the dataloaders the stage needs, and `teardown(stage)`. A dataloader method returning `None`
/// falls back to the module's dataloader hook of the same name.
///
/// Validation, test and predict may have several dataloaders (a clean and a noisy validation
/// set): implement `val_dataloaders` (`test_dataloaders`, `predict_dataloaders`) instead of
/// `val_dataloader`; the steps then see each loader's batches in turn, with its
/// `dataloader_idx`, and logged names get `/dataloader_idx_N` (see `LogOptions::add_dataloader_idx`).
pub trait DataModule<B> {
    /// The name shown in traces and used as checkpoint key.
    fn name(&self) -> Cow<'static, str> {
        let full = std::any::type_name::<Self>();
        let base = full.split('<').next().unwrap_or(full);
        Cow::Borrowed(base.rsplit("::").next().unwrap_or(base))
    }

    /// The trainer's `seed`, given before `prepare_data`/`setup` of every run: seed your
    /// dataloaders' shuffle with it so that a rerun sees the batches in the same order.
    ///
    /// Called only when the trainer has a seed (`Trainer::builder().seed(s)`). The default does
    /// nothing, as do [`Loaders`] (dataloaders passed directly keep the seed they were built with).
    fn set_seed(&mut self, seed: u64) {
        let _ = seed;
    }

    /// The device the run computes on (Lightning's `self.trainer.strategy.root_device`), given
    /// before `prepare_data`/`setup` of every run: a datamodule that builds tensors in `setup`
    /// builds them there. The default ignores it.
    fn set_device(&mut self, device: &crate::Device) {
        let _ = device;
    }

    /// The datamodule's hyperparameters, a JSON object (Lightning's `datamodule.hparams`): they
    /// join the module's in `hparams.yaml` and every logger's (TensorBoard's HParams tab). A name
    /// both give with different values is an error, as in Lightning. `None` (the default): none.
    /// A datamodule that derives `serde::Serialize` returns `serde_json::to_value(self).ok()`.
    fn hparams(&self) -> Option<serde_json::Value> {
        None
    }

    /// Downloads or writes data to disk, once, before `setup`.
    fn prepare_data(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// Loads and splits data for `stage`.
    fn setup(&mut self, stage: Stage) -> Result<(), Error> {
        let _ = stage;
        Ok(())
    }

    fn train_dataloader(&mut self) -> Option<Loader<B>> {
        None
    }

    fn val_dataloader(&mut self) -> Option<Loader<B>> {
        None
    }

    fn test_dataloader(&mut self) -> Option<Loader<B>> {
        None
    }

    fn predict_dataloader(&mut self) -> Option<Loader<B>> {
        None
    }

    /// The validation dataloaders, in `dataloader_idx` order; by default
    /// [`val_dataloader`](Self::val_dataloader)'s one. Empty: the module's hook provides them.
    fn val_dataloaders(&mut self) -> Vec<Loader<B>> {
        self.val_dataloader().into_iter().collect()
    }

    /// The test dataloaders, in `dataloader_idx` order; by default
    /// [`test_dataloader`](Self::test_dataloader)'s one.
    fn test_dataloaders(&mut self) -> Vec<Loader<B>> {
        self.test_dataloader().into_iter().collect()
    }

    /// The prediction dataloaders, in `dataloader_idx` order; by default
    /// [`predict_dataloader`](Self::predict_dataloader)'s one.
    fn predict_dataloaders(&mut self) -> Vec<Loader<B>> {
        self.predict_dataloader().into_iter().collect()
    }

    /// Releases what `setup` made.
    fn teardown(&mut self, stage: Stage) {
        let _ = stage;
    }

    /// State to save in checkpoints.
    fn state_dict(&mut self) -> Option<serde_json::Value> {
        None
    }

    /// Restores what [`state_dict`](Self::state_dict) saved, when a fit resumes from a
    /// checkpoint. The default ignores it.
    fn load_state_dict(&mut self, state: serde_json::Value) -> Result<(), Error> {
        let _ = state;
        Ok(())
    }

    /// Whether this is a user's datamodule (its calls are traced as `DataModule` hooks), rather
    /// than plain dataloaders or none.
    #[doc(hidden)]
    fn is_datamodule(&self) -> bool {
        true
    }

    /// Whether it may provide a validation dataloader (Lightning's "is the val dataloader
    /// defined"): without one, and without the module's `val_dataloader` hook, `fit` does not
    /// validate and runs no sanity check. A datamodule is asked for it.
    #[doc(hidden)]
    fn provides_val_dataloader(&self) -> bool {
        true
    }
}

/// No datamodule: the module's own dataloader hooks provide the data.
impl<B> DataModule<B> for () {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("()")
    }
    fn is_datamodule(&self) -> bool {
        false
    }
    fn provides_val_dataloader(&self) -> bool {
        false
    }
}

impl<B, D: DataModule<B> + ?Sized> DataModule<B> for &mut D {
    fn name(&self) -> Cow<'static, str> {
        (**self).name()
    }
    fn set_seed(&mut self, seed: u64) {
        (**self).set_seed(seed)
    }
    fn set_device(&mut self, device: &crate::Device) {
        (**self).set_device(device)
    }
    fn hparams(&self) -> Option<serde_json::Value> {
        (**self).hparams()
    }
    fn prepare_data(&mut self) -> Result<(), Error> {
        (**self).prepare_data()
    }
    fn setup(&mut self, stage: Stage) -> Result<(), Error> {
        (**self).setup(stage)
    }
    fn train_dataloader(&mut self) -> Option<Loader<B>> {
        (**self).train_dataloader()
    }
    fn val_dataloader(&mut self) -> Option<Loader<B>> {
        (**self).val_dataloader()
    }
    fn test_dataloader(&mut self) -> Option<Loader<B>> {
        (**self).test_dataloader()
    }
    fn predict_dataloader(&mut self) -> Option<Loader<B>> {
        (**self).predict_dataloader()
    }
    fn val_dataloaders(&mut self) -> Vec<Loader<B>> {
        (**self).val_dataloaders()
    }
    fn test_dataloaders(&mut self) -> Vec<Loader<B>> {
        (**self).test_dataloaders()
    }
    fn predict_dataloaders(&mut self) -> Vec<Loader<B>> {
        (**self).predict_dataloaders()
    }
    fn teardown(&mut self, stage: Stage) {
        (**self).teardown(stage)
    }
    fn state_dict(&mut self) -> Option<serde_json::Value> {
        (**self).state_dict()
    }
    fn load_state_dict(&mut self, state: serde_json::Value) -> Result<(), Error> {
        (**self).load_state_dict(state)
    }
    fn is_datamodule(&self) -> bool {
        (**self).is_datamodule()
    }
    fn provides_val_dataloader(&self) -> bool {
        (**self).provides_val_dataloader()
    }
}

/// Dataloaders passed directly (Lightning's `trainer.fit(model, train_loader, val_loader)`).
/// Validation, test and predict take several (`[clean, noisy]`, a `Vec`), one, or `Option` of
/// one.
pub struct Loaders<B> {
    pub train: Option<Loader<B>>,
    pub val: Vec<Loader<B>>,
    pub test: Vec<Loader<B>>,
    pub predict: Vec<Loader<B>>,
}

impl<B> Default for Loaders<B> {
    fn default() -> Self {
        Self {
            train: None,
            val: Vec::new(),
            test: Vec::new(),
            predict: Vec::new(),
        }
    }
}

impl<B> Loaders<B> {
    /// Training data, and validation data if any (one loader, `Option` of one, or several).
    pub fn fit(train: Loader<B>, val: impl IntoLoaders<B>) -> Self {
        Self {
            train: Some(train),
            val: val.into_loaders(),
            ..Self::default()
        }
    }

    /// Validation data only (for `Trainer::validate`).
    pub fn val(val: impl IntoLoaders<B>) -> Self {
        Self {
            val: val.into_loaders(),
            ..Self::default()
        }
    }

    /// Test data only.
    pub fn test(test: impl IntoLoaders<B>) -> Self {
        Self {
            test: test.into_loaders(),
            ..Self::default()
        }
    }

    /// Prediction data only.
    pub fn predict(predict: impl IntoLoaders<B>) -> Self {
        Self {
            predict: predict.into_loaders(),
            ..Self::default()
        }
    }
}

impl<B> DataModule<B> for Loaders<B> {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("Loaders")
    }
    fn is_datamodule(&self) -> bool {
        false
    }
    fn provides_val_dataloader(&self) -> bool {
        !self.val.is_empty()
    }
    fn train_dataloader(&mut self) -> Option<Loader<B>> {
        self.train.clone()
    }
    fn val_dataloader(&mut self) -> Option<Loader<B>> {
        self.val.first().cloned()
    }
    fn test_dataloader(&mut self) -> Option<Loader<B>> {
        self.test.first().cloned()
    }
    fn predict_dataloader(&mut self) -> Option<Loader<B>> {
        self.predict.first().cloned()
    }
    fn val_dataloaders(&mut self) -> Vec<Loader<B>> {
        self.val.clone()
    }
    fn test_dataloaders(&mut self) -> Vec<Loader<B>> {
        self.test.clone()
    }
    fn predict_dataloaders(&mut self) -> Vec<Loader<B>> {
        self.predict.clone()
    }
}
