//! [`WeightAveraging`]: Lightning's `WeightAveraging` and `EMAWeightAveraging` callbacks.

use super::averaging::{self, Rule, Values, Which};
use crate::hooks::{Callback, LightningModule};
use crate::{Checkpoint, EpochContext, Error, HookContext, JsonValue, Stage, StepContext};
use std::borrow::Cow;

/// When the average is updated: Lightning's `should_update(step_idx, epoch_idx)`.
type ShouldUpdate = Box<dyn FnMut(Option<usize>, Option<usize>) -> bool + Send>;

/// Keeps an average of the module's weights during `fit` (Lightning's `WeightAveraging`, and
/// with [`ema`](Self::ema) its `EMAWeightAveraging`): updated after optimizer steps or epochs,
/// used for validation (the weights are swapped in at `on_validation_epoch_start` and back at
/// `on_validation_epoch_end`), saved in checkpoints as the module's weights (the trained ones
/// under `current_model_state`, as Lightning saves them), restored by a resume, and copied into
/// the module when training ends, so `fit` returns the averaged module.
///
/// ```ignore
/// let trainer = Trainer::builder().callback(WeightAveraging::ema(0.999)).build()?;
/// ```
///
/// The average holds parameters and, unless [`use_buffers(false)`](Self::use_buffers), buffers
/// (`BatchNorm` running statistics), as Lightning's default. It is a copy of the module on its
/// device, made at the first update (burn initializes parameters on first use; a copy made
/// earlier would draw its own).
pub struct WeightAveraging<M> {
    rule: Rule,
    use_buffers: bool,
    should_update: ShouldUpdate,
    /// EMA's `update_every_n_steps`, `update_starting_at_step` and `update_starting_at_epoch`.
    ema_settings: (usize, Option<usize>, Option<usize>),
    average: Option<M>,
    n_averaged: usize,
    /// Optimizer steps taken when the average was last updated.
    latest_update_step: usize,
    /// The epoch after which it was last updated (`None`: not yet).
    latest_update_epoch: Option<usize>,
    /// The module's own values while the average is swapped in for validation.
    swapped_out: Option<Values>,
    /// Whether the module has buffers.
    buffers: bool,
}

impl<M> WeightAveraging<M> {
    /// The plain mean of the weights after every optimizer step (Lightning's
    /// `WeightAveraging()`, whose default `avg_fn` is SWA's equal average).
    pub fn new() -> Self {
        Self::with_rule(Rule::Mean, Box::new(|step: Option<usize>, _epoch| step.is_some()))
    }

    /// An exponential moving average, `decay * average + (1 - decay) * weights`, after every
    /// optimizer step (Lightning's `EMAWeightAveraging(decay=..)`; its default decay is 0.999).
    /// A decay outside `[0, 1]` is an error when the fit starts.
    pub fn ema(decay: f64) -> Self {
        let mut ema = Self::with_rule(Rule::Ema(decay), Box::new(|_, _| false));
        ema.should_update = ema_schedule(1, None, None);
        ema
    }

    fn with_rule(rule: Rule, should_update: ShouldUpdate) -> Self {
        Self {
            rule,
            use_buffers: true,
            should_update,
            ema_settings: (1, None, None),
            average: None,
            n_averaged: 0,
            latest_update_step: 0,
            latest_update_epoch: None,
            swapped_out: None,
            buffers: false,
        }
    }

    /// EMA: updates after every `n`-th optimizer step (`step_idx % n == 0`, Lightning's
    /// `update_every_n_steps`; 0 never updates by step).
    pub fn update_every_n_steps(self, n: usize) -> Self {
        self.ema_setting(|every, _, _| *every = n)
    }

    /// EMA: updates by step from the zero-based optimizer step `step` on (Lightning's
    /// `update_starting_at_step`).
    pub fn update_starting_at_step(self, step: usize) -> Self {
        self.ema_setting(|_, start, _| *start = Some(step))
    }

    /// EMA: also updates at the end of every epoch from `epoch` on (Lightning's
    /// `update_starting_at_epoch`).
    pub fn update_starting_at_epoch(self, epoch: usize) -> Self {
        self.ema_setting(|_, _, start| *start = Some(epoch))
    }

    fn ema_setting(mut self, set: impl FnOnce(&mut usize, &mut Option<usize>, &mut Option<usize>)) -> Self {
        let (mut every, mut step, mut epoch) = self.ema_settings;
        set(&mut every, &mut step, &mut epoch);
        self.ema_settings = (every, step, epoch);
        self.should_update = ema_schedule(every, step, epoch);
        self
    }

    /// When to update (Lightning's overridable `should_update(step_idx, epoch_idx)`): called
    /// after every optimizer step with `(Some(step_idx), None)` (the zero-based index of the step
    /// just taken) and at every epoch's end with `(None, Some(epoch_idx))`.
    pub fn should_update(
        mut self,
        should_update: impl FnMut(Option<usize>, Option<usize>) -> bool + Send + 'static,
    ) -> Self {
        self.should_update = Box::new(should_update);
        self
    }

    /// Whether buffers (`BatchNorm` running statistics) are averaged too (default, as
    /// Lightning's `use_buffers=True`); without, the average keeps the module's own.
    pub fn use_buffers(mut self, use_buffers: bool) -> Self {
        self.use_buffers = use_buffers;
        self
    }

    /// The averaged module, once the first update made it (without autodiff).
    pub fn average(&self) -> Option<&M> {
        self.average.as_ref()
    }

    /// How many models the average holds (torch's `n_averaged`).
    pub fn n_averaged(&self) -> usize {
        self.n_averaged
    }
}

impl<M> Default for WeightAveraging<M> {
    fn default() -> Self {
        Self::new()
    }
}

/// Lightning's `EMAWeightAveraging.should_update`.
fn ema_schedule(every: usize, start_step: Option<usize>, start_epoch: Option<usize>) -> ShouldUpdate {
    Box::new(move |step: Option<usize>, epoch: Option<usize>| {
        let by_step = step.is_some_and(|step| {
            start_step.is_none_or(|start| step >= start) && every > 0 && step.is_multiple_of(every)
        });
        let by_epoch = epoch.is_some_and(|epoch| start_epoch.is_some_and(|start| epoch >= start));
        by_step || by_epoch
    })
}

impl<M: LightningModule> WeightAveraging<M> {
    fn which(&self) -> Which {
        match self.use_buffers {
            true => Which::All,
            false => Which::Parameters,
        }
    }

    /// torch's `AveragedModel.update_parameters(module)`.
    fn update(&mut self, module: &M) {
        let which = self.which();
        let current = averaging::current_values(module, which, self.buffers);
        let average = self.average.take().unwrap_or_else(|| averaging::detached_copy(module));
        let mut average = averaging::update(average, &current, self.rule, self.n_averaged);
        if !self.use_buffers && self.buffers {
            // torch keeps the average's buffers in step with the model's.
            average = averaging::write(average, &averaging::current_values(module, Which::Buffers, true));
        }
        self.average = Some(average);
        self.n_averaged += 1;
    }

    /// The values the average holds (parameters and buffers, as Lightning swaps them).
    fn average_values(&self) -> Option<Values> {
        self.average.as_ref().map(|average| Values::of(average, Which::All))
    }
}

impl<M: LightningModule> Callback<M> for WeightAveraging<M> {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self.rule {
            Rule::Ema(_) => "EMAWeightAveraging",
            Rule::Mean => "WeightAveraging",
        })
    }

    fn setup(&mut self, module: &mut M, stage: Stage, cx: &mut HookContext<'_>) {
        if stage != Stage::Fit {
            return;
        }
        if let Rule::Ema(decay) = self.rule
            && !(0.0..=1.0).contains(&decay)
        {
            cx.fail(Error::config(
                "EMAWeightAveraging",
                format!("its decay is {decay}; give a value in [0, 1] (0.999 is Lightning's default)"),
            ));
            return;
        }
        self.buffers = averaging::has_buffers(module);
    }

    fn on_train_batch_end(
        &mut self,
        module: &mut M,
        _outputs: Option<&crate::StepOutput<M::TrainExtra>>,
        _batch: &M::Batch,
        _batch_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        // `global_step` counts the steps taken; the index of the last one is one less.
        let global_step = cx.global_step;
        if global_step > self.latest_update_step && (self.should_update)(Some(global_step - 1), None) {
            self.update(module);
            self.latest_update_step = global_step;
        }
    }

    fn on_train_epoch_end(&mut self, module: &mut M, cx: &mut EpochContext<'_>) {
        let epoch = cx.current_epoch;
        if self.latest_update_epoch.is_none_or(|latest| epoch > latest) && (self.should_update)(None, Some(epoch)) {
            self.update(module);
            self.latest_update_epoch = Some(epoch);
        }
    }

    fn on_validation_epoch_start(&mut self, module: &mut M, _cx: &mut EpochContext<'_>) {
        if let Some(average) = self.average_values() {
            self.swapped_out = Some(Values::of(module, Which::All));
            *module = averaging::write(module.clone(), &average);
        }
    }

    fn on_validation_epoch_end(&mut self, module: &mut M, _cx: &mut EpochContext<'_>) {
        if let Some(own) = self.swapped_out.take() {
            *module = averaging::write(module.clone(), &own);
        }
    }

    fn on_train_end(&mut self, module: &mut M, _cx: &mut HookContext<'_>) {
        if let Some(average) = self.average_values() {
            *module = averaging::write(module.clone(), &average);
        }
    }

    fn on_save_checkpoint(&mut self, module: &mut M, checkpoint: &mut Checkpoint, _cx: &mut HookContext<'_>) {
        // Lightning: the average is the checkpoint's `state_dict`, the trained weights its
        // `current_model_state`, the averaging's own state its `averaging_state`.
        let Some(average) = &self.average else {
            return;
        };
        checkpoint.insert_weights(CURRENT_MODEL_STATE, module.clone());
        checkpoint.replace_weights(average.clone());
        checkpoint.extra.insert(
            AVERAGING_STATE.to_string(),
            serde_json::json!({ "n_averaged": self.n_averaged }),
        );
    }

    fn on_load_checkpoint(&mut self, module: &mut M, checkpoint: &Checkpoint, cx: &mut HookContext<'_>) {
        // The module holds the checkpoint's weights: the average, when this callback saved it.
        if checkpoint.has_weights(CURRENT_MODEL_STATE) {
            self.average = Some(averaging::detached_copy(module));
            self.n_averaged = checkpoint
                .extra
                .get(AVERAGING_STATE)
                .and_then(|state| state.get("n_averaged"))
                .and_then(JsonValue::as_u64)
                .map_or(1, |n| n as usize);
            match checkpoint.load_weights(CURRENT_MODEL_STATE, module.clone()) {
                Ok(current) => *module = current,
                Err(e) => cx.fail(e),
            }
        } else {
            tracing::warn!(target: "burn_lightning",
                "the checkpoint was not saved with weight averaging: the average starts again at the next update");
            self.average = Some(averaging::detached_copy(module));
            self.n_averaged = 0;
        }
    }

    fn state_dict(&mut self) -> Option<JsonValue> {
        Some(serde_json::json!({ "latest_update_step": self.latest_update_step }))
    }

    fn load_state_dict(&mut self, state: JsonValue) -> Result<(), Error> {
        self.latest_update_step = state
            .get("latest_update_step")
            .and_then(JsonValue::as_u64)
            .ok_or_else(|| Error::Checkpoint("the weight averaging's state has no `latest_update_step`".into()))?
            as usize;
        Ok(())
    }
}

/// The checkpoint entry of the trained weights (Lightning's key).
pub const CURRENT_MODEL_STATE: &str = "current_model_state";
/// The checkpoint entry of the averaging's own state (Lightning's key).
const AVERAGING_STATE: &str = "averaging_state";
