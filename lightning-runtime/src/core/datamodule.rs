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
///
/// The type parameters are the batch types of each stage's dataloaders: `T` training, `V`
/// validation, `Te` test and `P` predict, each the type of its step's `batch` parameter (the
/// module's `Batch`, `ValBatch`, `TestBatch` and `PredictBatch`). Each defaults to the one before
/// it, so a datamodule of one batch type implements `DataModule<MyBatch>`, and one whose predict
/// batches have no labels `DataModule<Labeled, Labeled, Labeled, Images>`. The trainer checks them
/// at compile time: a stage whose step takes another type than its dataloader yields does not
/// compile, at the `fit`/`validate`/`test`/`predict` call, with both types named.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not hand out the batch types the module's steps take",
    label = "the steps take `{T}` (training), `{V}` (validation), `{Te}` (test) and `{P}` (predict)",
    note = "each stage's dataloaders must yield its step's batch type: implement `DataModule<{T}, {V}, {Te}, {P}>` for `{Self}`, or change the `batch` parameter of the step whose type differs (a stage without its step takes the type of the stage before it)"
)]
pub trait DataModule<T, V = T, Te = V, P = Te> {
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

    fn train_dataloader(&mut self) -> Option<Loader<T>> {
        None
    }

    fn val_dataloader(&mut self) -> Option<Loader<V>> {
        None
    }

    fn test_dataloader(&mut self) -> Option<Loader<Te>> {
        None
    }

    fn predict_dataloader(&mut self) -> Option<Loader<P>> {
        None
    }

    /// The validation dataloaders, in `dataloader_idx` order; by default
    /// [`val_dataloader`](Self::val_dataloader)'s one. Empty: the module's hook provides them.
    fn val_dataloaders(&mut self) -> Vec<Loader<V>> {
        self.val_dataloader().into_iter().collect()
    }

    /// The test dataloaders, in `dataloader_idx` order; by default
    /// [`test_dataloader`](Self::test_dataloader)'s one.
    fn test_dataloaders(&mut self) -> Vec<Loader<Te>> {
        self.test_dataloader().into_iter().collect()
    }

    /// The prediction dataloaders, in `dataloader_idx` order; by default
    /// [`predict_dataloader`](Self::predict_dataloader)'s one.
    fn predict_dataloaders(&mut self) -> Vec<Loader<P>> {
        self.predict_dataloader().into_iter().collect()
    }

    /// Lightning's `LightningDataModule.on_before_batch_transfer`: alters a batch before it is
    /// moved to the device. Overridden here, it runs instead of the module's hook of the same
    /// name (as in Lightning, which warns when both override it; so does the trainer, once per
    /// run). It takes the training batch type `T` and runs on the batches of every stage of that
    /// type (all of them when the stages share one type); a stage of another type runs the
    /// stage's method ([`on_before_predict_batch_transfer`](Self::on_before_predict_batch_transfer)
    /// and its siblings), whose default is the module's hook.
    fn on_before_batch_transfer(&mut self, batch: T, dataloader_idx: usize) -> Result<T, Error> {
        let _ = dataloader_idx;
        Ok(default_transfer_hook(batch))
    }

    /// Lightning's `LightningDataModule.transfer_batch_to_device`: moves a batch to `device`,
    /// instead of the module's hook when overridden (see
    /// [`on_before_batch_transfer`](Self::on_before_batch_transfer) for which stages).
    fn transfer_batch_to_device(
        &mut self,
        batch: T,
        device: &crate::Device,
        dataloader_idx: usize,
    ) -> Result<T, Error> {
        let _ = (device, dataloader_idx);
        Ok(default_transfer_hook(batch))
    }

    /// Lightning's `LightningDataModule.on_after_batch_transfer`: alters a batch once it is on
    /// the device, instead of the module's hook when overridden (see
    /// [`on_before_batch_transfer`](Self::on_before_batch_transfer) for which stages).
    fn on_after_batch_transfer(&mut self, batch: T, dataloader_idx: usize) -> Result<T, Error> {
        let _ = dataloader_idx;
        Ok(default_transfer_hook(batch))
    }

    /// [`on_before_batch_transfer`](Self::on_before_batch_transfer) on the validation stage's
    /// batches: by default that hook when `V` is `T`, else the module's hook. Override it when
    /// the validation batches have a type of their own.
    fn on_before_val_batch_transfer(&mut self, batch: V, dataloader_idx: usize) -> Result<V, Error>
    where
        T: 'static,
        V: 'static,
    {
        through_training_type(batch, |batch| self.on_before_batch_transfer(batch, dataloader_idx))
    }

    /// [`transfer_batch_to_device`](Self::transfer_batch_to_device) on the validation stage's
    /// batches (see [`on_before_val_batch_transfer`](Self::on_before_val_batch_transfer)).
    fn transfer_val_batch_to_device(
        &mut self,
        batch: V,
        device: &crate::Device,
        dataloader_idx: usize,
    ) -> Result<V, Error>
    where
        T: 'static,
        V: 'static,
    {
        through_training_type(batch, |batch| {
            self.transfer_batch_to_device(batch, device, dataloader_idx)
        })
    }

    /// [`on_after_batch_transfer`](Self::on_after_batch_transfer) on the validation stage's
    /// batches (see [`on_before_val_batch_transfer`](Self::on_before_val_batch_transfer)).
    fn on_after_val_batch_transfer(&mut self, batch: V, dataloader_idx: usize) -> Result<V, Error>
    where
        T: 'static,
        V: 'static,
    {
        through_training_type(batch, |batch| self.on_after_batch_transfer(batch, dataloader_idx))
    }

    /// [`on_before_batch_transfer`](Self::on_before_batch_transfer) on the test stage's
    /// batches: by default that hook when `Te` is `T`, else the module's hook. Override it when
    /// the test batches have a type of their own.
    fn on_before_test_batch_transfer(&mut self, batch: Te, dataloader_idx: usize) -> Result<Te, Error>
    where
        T: 'static,
        Te: 'static,
    {
        through_training_type(batch, |batch| self.on_before_batch_transfer(batch, dataloader_idx))
    }

    /// [`transfer_batch_to_device`](Self::transfer_batch_to_device) on the test stage's
    /// batches (see [`on_before_test_batch_transfer`](Self::on_before_test_batch_transfer)).
    fn transfer_test_batch_to_device(
        &mut self,
        batch: Te,
        device: &crate::Device,
        dataloader_idx: usize,
    ) -> Result<Te, Error>
    where
        T: 'static,
        Te: 'static,
    {
        through_training_type(batch, |batch| {
            self.transfer_batch_to_device(batch, device, dataloader_idx)
        })
    }

    /// [`on_after_batch_transfer`](Self::on_after_batch_transfer) on the test stage's
    /// batches (see [`on_before_test_batch_transfer`](Self::on_before_test_batch_transfer)).
    fn on_after_test_batch_transfer(&mut self, batch: Te, dataloader_idx: usize) -> Result<Te, Error>
    where
        T: 'static,
        Te: 'static,
    {
        through_training_type(batch, |batch| self.on_after_batch_transfer(batch, dataloader_idx))
    }

    /// [`on_before_batch_transfer`](Self::on_before_batch_transfer) on the predict stage's
    /// batches: by default that hook when `P` is `T`, else the module's hook. Override it when
    /// the predict batches have a type of their own.
    fn on_before_predict_batch_transfer(&mut self, batch: P, dataloader_idx: usize) -> Result<P, Error>
    where
        T: 'static,
        P: 'static,
    {
        through_training_type(batch, |batch| self.on_before_batch_transfer(batch, dataloader_idx))
    }

    /// [`transfer_batch_to_device`](Self::transfer_batch_to_device) on the predict stage's
    /// batches (see [`on_before_predict_batch_transfer`](Self::on_before_predict_batch_transfer)).
    fn transfer_predict_batch_to_device(
        &mut self,
        batch: P,
        device: &crate::Device,
        dataloader_idx: usize,
    ) -> Result<P, Error>
    where
        T: 'static,
        P: 'static,
    {
        through_training_type(batch, |batch| {
            self.transfer_batch_to_device(batch, device, dataloader_idx)
        })
    }

    /// [`on_after_batch_transfer`](Self::on_after_batch_transfer) on the predict stage's
    /// batches (see [`on_before_predict_batch_transfer`](Self::on_before_predict_batch_transfer)).
    fn on_after_predict_batch_transfer(&mut self, batch: P, dataloader_idx: usize) -> Result<P, Error>
    where
        T: 'static,
        P: 'static,
    {
        through_training_type(batch, |batch| self.on_after_batch_transfer(batch, dataloader_idx))
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
impl<T, V, Te, P> DataModule<T, V, Te, P> for () {
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

impl<T, V, Te, P, D: DataModule<T, V, Te, P> + ?Sized> DataModule<T, V, Te, P> for &mut D {
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
    fn train_dataloader(&mut self) -> Option<Loader<T>> {
        (**self).train_dataloader()
    }
    fn val_dataloader(&mut self) -> Option<Loader<V>> {
        (**self).val_dataloader()
    }
    fn test_dataloader(&mut self) -> Option<Loader<Te>> {
        (**self).test_dataloader()
    }
    fn predict_dataloader(&mut self) -> Option<Loader<P>> {
        (**self).predict_dataloader()
    }
    fn val_dataloaders(&mut self) -> Vec<Loader<V>> {
        (**self).val_dataloaders()
    }
    fn test_dataloaders(&mut self) -> Vec<Loader<Te>> {
        (**self).test_dataloaders()
    }
    fn predict_dataloaders(&mut self) -> Vec<Loader<P>> {
        (**self).predict_dataloaders()
    }
    fn on_before_batch_transfer(&mut self, batch: T, dataloader_idx: usize) -> Result<T, Error> {
        (**self).on_before_batch_transfer(batch, dataloader_idx)
    }
    fn transfer_batch_to_device(
        &mut self,
        batch: T,
        device: &crate::Device,
        dataloader_idx: usize,
    ) -> Result<T, Error> {
        (**self).transfer_batch_to_device(batch, device, dataloader_idx)
    }
    fn on_after_batch_transfer(&mut self, batch: T, dataloader_idx: usize) -> Result<T, Error> {
        (**self).on_after_batch_transfer(batch, dataloader_idx)
    }
    fn on_before_val_batch_transfer(&mut self, batch: V, dataloader_idx: usize) -> Result<V, Error>
    where
        T: 'static,
        V: 'static,
    {
        (**self).on_before_val_batch_transfer(batch, dataloader_idx)
    }
    fn transfer_val_batch_to_device(
        &mut self,
        batch: V,
        device: &crate::Device,
        dataloader_idx: usize,
    ) -> Result<V, Error>
    where
        T: 'static,
        V: 'static,
    {
        (**self).transfer_val_batch_to_device(batch, device, dataloader_idx)
    }
    fn on_after_val_batch_transfer(&mut self, batch: V, dataloader_idx: usize) -> Result<V, Error>
    where
        T: 'static,
        V: 'static,
    {
        (**self).on_after_val_batch_transfer(batch, dataloader_idx)
    }
    fn on_before_test_batch_transfer(&mut self, batch: Te, dataloader_idx: usize) -> Result<Te, Error>
    where
        T: 'static,
        Te: 'static,
    {
        (**self).on_before_test_batch_transfer(batch, dataloader_idx)
    }
    fn transfer_test_batch_to_device(
        &mut self,
        batch: Te,
        device: &crate::Device,
        dataloader_idx: usize,
    ) -> Result<Te, Error>
    where
        T: 'static,
        Te: 'static,
    {
        (**self).transfer_test_batch_to_device(batch, device, dataloader_idx)
    }
    fn on_after_test_batch_transfer(&mut self, batch: Te, dataloader_idx: usize) -> Result<Te, Error>
    where
        T: 'static,
        Te: 'static,
    {
        (**self).on_after_test_batch_transfer(batch, dataloader_idx)
    }
    fn on_before_predict_batch_transfer(&mut self, batch: P, dataloader_idx: usize) -> Result<P, Error>
    where
        T: 'static,
        P: 'static,
    {
        (**self).on_before_predict_batch_transfer(batch, dataloader_idx)
    }
    fn transfer_predict_batch_to_device(
        &mut self,
        batch: P,
        device: &crate::Device,
        dataloader_idx: usize,
    ) -> Result<P, Error>
    where
        T: 'static,
        P: 'static,
    {
        (**self).transfer_predict_batch_to_device(batch, device, dataloader_idx)
    }
    fn on_after_predict_batch_transfer(&mut self, batch: P, dataloader_idx: usize) -> Result<P, Error>
    where
        T: 'static,
        P: 'static,
    {
        (**self).on_after_predict_batch_transfer(batch, dataloader_idx)
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

thread_local! {
    /// Set by the default of a datamodule's batch-transfer hook: the datamodule did not override
    /// the hook just called, so the module's runs (Rust cannot ask whether a method is overridden).
    static DEFAULT_TRANSFER_HOOK_RAN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The default of the datamodule's batch-transfer hooks: the batch as it is, noting that the
/// default ran.
fn default_transfer_hook<T>(batch: T) -> T {
    DEFAULT_TRANSFER_HOOK_RAN.set(true);
    batch
}

/// A stage's batch through `hook`, the datamodule's hook of the training type `T`, when the
/// stage's type `B` is `T` (the common case: one type everywhere, the hook written once); else
/// as the default (the datamodule has no hook for `B`, so the module's runs).
fn through_training_type<T: 'static, B: 'static>(
    batch: B,
    hook: impl FnOnce(T) -> Result<T, Error>,
) -> Result<B, Error> {
    match cast::<B, T>(batch) {
        Ok(batch) => hook(batch).map(|batch| cast::<T, B>(batch).unwrap_or_else(|_| unreachable!("`B` is `T` here"))),
        Err(batch) => Ok(default_transfer_hook(batch)),
    }
}

/// `value` as a `To`, when `From` is `To`.
fn cast<From: 'static, To: 'static>(value: From) -> Result<To, From> {
    let mut slot = Some(value);
    match (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<To>>() {
        Some(to) => Ok(to.take().expect("the slot was just filled")),
        None => Err(slot.expect("the slot is left full when the types differ")),
    }
}

/// Calls one of the datamodule's batch-transfer hooks; the output, and whether the datamodule
/// overrides the hook (its own code ran rather than the default).
pub(crate) fn call_transfer_hook<T>(call: impl FnOnce() -> T) -> (T, bool) {
    DEFAULT_TRANSFER_HOOK_RAN.set(false);
    let output = call();
    (output, !DEFAULT_TRANSFER_HOOK_RAN.replace(false))
}

/// Dataloaders passed directly (Lightning's `trainer.fit(model, train_loader, val_loader)`).
/// Validation, test and predict take several (`[clean, noisy]`, a `Vec`), one, or `Option` of
/// one. The type parameters are each stage's batch type, as [`DataModule`]'s; the trainer infers
/// them from the module (`Loaders::predict(images)` for a `predict_step` taking images).
pub struct Loaders<T, V = T, Te = V, P = Te> {
    pub train: Option<Loader<T>>,
    pub val: Vec<Loader<V>>,
    pub test: Vec<Loader<Te>>,
    pub predict: Vec<Loader<P>>,
}

impl<T, V, Te, P> Default for Loaders<T, V, Te, P> {
    fn default() -> Self {
        Self {
            train: None,
            val: Vec::new(),
            test: Vec::new(),
            predict: Vec::new(),
        }
    }
}

impl<T, V, Te, P> Loaders<T, V, Te, P> {
    /// Training data, and validation data if any (one loader, `Option` of one, or several).
    pub fn fit(train: Loader<T>, val: impl IntoLoaders<V>) -> Self {
        Self {
            train: Some(train),
            val: val.into_loaders(),
            ..Self::default()
        }
    }

    /// Validation data only (for `Trainer::validate`).
    pub fn val(val: impl IntoLoaders<V>) -> Self {
        Self {
            val: val.into_loaders(),
            ..Self::default()
        }
    }

    /// Test data only.
    pub fn test(test: impl IntoLoaders<Te>) -> Self {
        Self {
            test: test.into_loaders(),
            ..Self::default()
        }
    }

    /// Prediction data only.
    pub fn predict(predict: impl IntoLoaders<P>) -> Self {
        Self {
            predict: predict.into_loaders(),
            ..Self::default()
        }
    }
}

impl<T, V, Te, P> DataModule<T, V, Te, P> for Loaders<T, V, Te, P> {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("Loaders")
    }
    fn is_datamodule(&self) -> bool {
        false
    }
    fn provides_val_dataloader(&self) -> bool {
        !self.val.is_empty()
    }
    fn train_dataloader(&mut self) -> Option<Loader<T>> {
        self.train.clone()
    }
    fn val_dataloader(&mut self) -> Option<Loader<V>> {
        self.val.first().cloned()
    }
    fn test_dataloader(&mut self) -> Option<Loader<Te>> {
        self.test.first().cloned()
    }
    fn predict_dataloader(&mut self) -> Option<Loader<P>> {
        self.predict.first().cloned()
    }
    fn val_dataloaders(&mut self) -> Vec<Loader<V>> {
        self.val.clone()
    }
    fn test_dataloaders(&mut self) -> Vec<Loader<Te>> {
        self.test.clone()
    }
    fn predict_dataloaders(&mut self) -> Vec<Loader<P>> {
        self.predict.clone()
    }
}
