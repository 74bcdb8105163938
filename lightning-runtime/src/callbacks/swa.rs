//! [`StochasticWeightAveraging`]: Lightning's callback of that name.

use super::averaging::{self, Rule, Values, Which};
use crate::hooks::{Callback, LightningModule, Optimization};
use crate::optim::{Annealing, LrSchedulerConfig, SwaLr};
use crate::{Checkpoint, EpochContext, Error, HookContext, JsonValue, Stage, StepContext, Tensor};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use std::collections::HashMap;

/// When averaging starts (Lightning's `swa_epoch_start`): an epoch (1-based: `Epoch(8)` starts
/// with the 8th epoch), or a fraction of `max_epochs` (`0.8`, the default).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SwaStart {
    /// The `n`-th epoch, counted from 1.
    Epoch(usize),
    /// `int(fraction * max_epochs)`, as an epoch counted from 1 (0 is the first epoch too).
    Fraction(f64),
}

impl From<usize> for SwaStart {
    fn from(epoch: usize) -> Self {
        Self::Epoch(epoch)
    }
}

impl From<f64> for SwaStart {
    fn from(fraction: f64) -> Self {
        Self::Fraction(fraction)
    }
}

/// Stochastic Weight Averaging (Lightning's `StochasticWeightAveraging`, Izmailov et al. 2018):
/// from the epoch `swa_epoch_start` on, the optimizer's scheduler is replaced by torch's `SWALR`
/// (annealing each param group's rate to `swa_lrs` over `annealing_epochs` epochs), the module's
/// parameters are averaged in at the start of every epoch, and after the last epoch the module
/// gets the average. A module with `BatchNorm` layers gets one more epoch, which runs
/// `training_step` on the averaged weights without backward or optimizer steps to compute the
/// layers' statistics for them (torch's `update_bn`: the mean of the batches' statistics), then
/// validates and checkpoints as any epoch.
///
/// ```ignore
/// let trainer = Trainer::builder()
///     .max_epochs(20)
///     .callback(StochasticWeightAveraging::new(1e-2).swa_epoch_start(15))
///     .build()?;
/// ```
///
/// As in Lightning: one optimizer only, the average is updated at epoch starts (the weights the
/// previous epoch ended with), the average is saved in checkpoints (its own weights, under
/// `StochasticWeightAveraging`) with the counters, and a resume goes on averaging. The last
/// epoch's own training is not in the average (Lightning's order). Under manual optimization it
/// is refused: the trainer steps no scheduler there.
pub struct StochasticWeightAveraging<M> {
    swa_lrs: Vec<f64>,
    swa_epoch_start: SwaStart,
    annealing_epochs: usize,
    annealing_strategy: Annealing,
    bn_momentum: Option<f64>,
    /// The first averaged epoch (0-based), once the fit started.
    swa_start: usize,
    /// The last averaged epoch (0-based); `None` without `max_epochs`.
    swa_end: Option<usize>,
    average: Option<M>,
    n_averaged: usize,
    initialized: bool,
    latest_update_epoch: Option<usize>,
    /// The momentum of each `BatchNorm` running statistic, by id; empty without `BatchNorm`.
    momenta: HashMap<ParamId, f64>,
    /// The BatchNorm epoch's running means of the batches' statistics, and batches seen.
    bn_pass: Option<(Values, usize)>,
}

impl<M> StochasticWeightAveraging<M> {
    /// Averages from 80% of `max_epochs` on, annealing every param group's rate to `swa_lr`
    /// over 10 epochs along a cosine (Lightning's defaults).
    pub fn new(swa_lr: f64) -> Self {
        Self::per_group(vec![swa_lr])
    }

    /// One SWA rate per param group of the optimizer (Lightning's list `swa_lrs`).
    pub fn per_group(swa_lrs: Vec<f64>) -> Self {
        Self {
            swa_lrs,
            swa_epoch_start: SwaStart::Fraction(0.8),
            annealing_epochs: 10,
            annealing_strategy: Annealing::Cos,
            bn_momentum: None,
            swa_start: 0,
            swa_end: None,
            average: None,
            n_averaged: 0,
            initialized: false,
            latest_update_epoch: None,
            momenta: HashMap::new(),
            bn_pass: None,
        }
    }

    /// When averaging starts: an epoch counted from 1 (`8usize`), or a fraction of
    /// `max_epochs` (`0.8`).
    pub fn swa_epoch_start(mut self, start: impl Into<SwaStart>) -> Self {
        self.swa_epoch_start = start.into();
        self
    }

    /// Epochs of the annealing to the SWA rate (default 10).
    pub fn annealing_epochs(mut self, epochs: usize) -> Self {
        self.annealing_epochs = epochs;
        self
    }

    /// The shape of the annealing (default `Annealing::Cos`).
    pub fn annealing_strategy(mut self, strategy: Annealing) -> Self {
        self.annealing_strategy = strategy;
        self
    }

    /// The momentum of the module's `BatchNorm` layers, which the statistics pass needs to
    /// take the mean of the batches' statistics (burn's layer keeps its momentum where torch's
    /// pass sets it to `None`). By default it is read from the layers themselves (their `Debug`
    /// output); give it when that fails.
    pub fn bn_momentum(mut self, momentum: f64) -> Self {
        self.bn_momentum = Some(momentum);
        self
    }

    /// The averaged module, once the first averaged epoch started (without autodiff).
    pub fn average(&self) -> Option<&M> {
        self.average.as_ref()
    }

    /// How many epochs' weights the average holds.
    pub fn n_averaged(&self) -> usize {
        self.n_averaged
    }

    /// Whether the epoch `epoch` (0-based) is averaged.
    fn averages(&self, epoch: usize) -> bool {
        self.swa_start <= epoch && self.swa_end.is_none_or(|end| epoch <= end)
    }

    /// Lightning's `__init__` checks.
    fn check(&self) -> Result<(), String> {
        match self.swa_epoch_start {
            SwaStart::Epoch(0) => return Err("`swa_epoch_start` is 0; epochs count from 1".into()),
            SwaStart::Fraction(f) if !(0.0..=1.0).contains(&f) => {
                return Err(format!(
                    "`swa_epoch_start` is {f}; a fraction of `max_epochs` is in [0, 1]"
                ));
            }
            _ => {}
        }
        if self.swa_lrs.is_empty() || self.swa_lrs.iter().any(|lr| !(*lr > 0.0 && lr.is_finite())) {
            return Err(format!(
                "`swa_lrs` is {:?}; give a positive rate, or one per param group",
                self.swa_lrs
            ));
        }
        Ok(())
    }
}

impl<M: LightningModule> StochasticWeightAveraging<M> {
    /// Lightning's `update_parameters`: the parameters (not the buffers) averaged in.
    fn update(&mut self, module: &M) {
        let current = Values::of(module, Which::Parameters);
        let average = self.average.take().unwrap_or_else(|| averaging::detached_copy(module));
        self.average = Some(averaging::update(average, &current, Rule::Mean, self.n_averaged));
        self.n_averaged += 1;
    }

    /// Lightning's `transfer_weights`: the average's parameters into `module`.
    fn transfer(&self, module: &mut M) {
        if let Some(average) = &self.average {
            *module = averaging::write(module.clone(), &Values::of(average, Which::Parameters));
        }
    }
}

impl<M: LightningModule> Callback<M> for StochasticWeightAveraging<M> {
    fn setup(&mut self, _module: &mut M, stage: Stage, cx: &mut HookContext<'_>) {
        if stage != Stage::Fit {
            return;
        }
        if let Err(why) = self.check() {
            cx.fail(Error::config("StochasticWeightAveraging", why));
        }
    }

    fn on_fit_start(&mut self, module: &mut M, cx: &mut HookContext<'_>) {
        let refuse = |why: String| Error::config("StochasticWeightAveraging", why);
        if M::OPTIMIZATION == Optimization::Manual {
            return cx.fail(refuse(
                "it needs automatic optimization (the trainer steps no scheduler under manual optimization)".into(),
            ));
        }
        let optimizers = cx
            .learning_rates()
            .iter()
            .map(|rate| rate.optimizer)
            .max()
            .map_or(0, |i| i + 1);
        if optimizers != 1 {
            return cx.fail(refuse(format!(
                "it works with one optimizer (as Lightning's); `configure_optimizers` returns {optimizers}"
            )));
        }
        let max_epochs = cx.max_epochs;
        let start = match (self.swa_epoch_start, max_epochs) {
            (SwaStart::Epoch(epoch), _) => epoch,
            (SwaStart::Fraction(fraction), Some(max)) => (max as f64 * fraction) as usize,
            (SwaStart::Fraction(_), None) => {
                return cx.fail(refuse(
                    "a fractional `swa_epoch_start` needs `max_epochs`; give the epoch to start at instead".into(),
                ));
            }
        };
        self.swa_start = start.saturating_sub(1);
        self.swa_end = max_epochs.map(|max| max.saturating_sub(1));
        match batch_norm_momenta(module, self.bn_momentum) {
            Ok(momenta) => self.momenta = momenta,
            Err(why) => return cx.fail(refuse(why)),
        }
        // One more epoch for the BatchNorm statistics of the averaged weights.
        if !self.momenta.is_empty() && max_epochs.is_some() {
            cx.extend_fit(1);
        }
    }

    fn on_train_epoch_start(&mut self, module: &mut M, cx: &mut EpochContext<'_>) {
        let epoch = cx.current_epoch;
        if !self.initialized && self.averages(epoch) {
            self.initialized = true;
            if let Some(rate) = cx.learning_rates().first()
                && rate.interval.is_some_and(|i| i != crate::Interval::Epoch)
            {
                tracing::warn!(target: "burn_lightning",
                    "SWA is stepped every epoch; the configured scheduler stepped by {:?} is replaced by SWALR", rate.interval);
            }
            let swa = SwaLr::per_group(self.swa_lrs.clone())
                .anneal_epochs(self.annealing_epochs)
                .anneal_strategy(self.annealing_strategy);
            cx.replace_lr_scheduler(0, LrSchedulerConfig::swa(swa));
        }
        if self.averages(epoch) && self.latest_update_epoch.is_none_or(|latest| epoch > latest) {
            self.update(module);
            self.latest_update_epoch = Some(epoch);
        }
        if self.swa_end.is_some_and(|end| epoch == end + 1) {
            self.transfer(module);
            if !self.momenta.is_empty() {
                // Lightning's BatchNorm epoch: fresh statistics, then forward passes only.
                let reset = reset_statistics(module);
                *module = averaging::write(module.clone(), &reset);
                self.bn_pass = Some((reset, 0));
                cx.set_forward_only(true);
            }
        }
    }

    fn on_train_batch_end(
        &mut self,
        module: &mut M,
        _outputs: Option<&crate::StepOutput<M::TrainExtra>>,
        _batch: &M::Batch,
        _batch_idx: usize,
        _cx: &mut StepContext<'_>,
    ) {
        let Some((means, batches)) = &mut self.bn_pass else {
            return;
        };
        // burn's layer moved each statistic from the mean so far by `momentum` times the
        // batch's deviation from it; the mean of `k` batches moves by 1/k of it instead.
        *batches += 1;
        let k = *batches as f64;
        let moved = averaging::current_values(module, Which::Buffers, true);
        let mut next = Values::default();
        for (id, momentum) in &self.momenta {
            if let (Some(mean), Some(now)) = (means.get::<1>(*id), moved.get::<1>(*id)) {
                let step = now.clone().sub(mean.clone()).div_scalar(momentum * k);
                next.insert(*id, mean.clone().add(step));
            }
        }
        *module = averaging::write(module.clone(), &next);
        *means = next;
    }

    fn on_train_epoch_end(&mut self, _module: &mut M, cx: &mut EpochContext<'_>) {
        cx.set_forward_only(false);
        self.bn_pass = None;
    }

    fn on_train_end(&mut self, module: &mut M, cx: &mut HookContext<'_>) {
        // `current_epoch` counts the epochs done: the last one is `current_epoch - 1`.
        let last = cx.current_epoch.checked_sub(1);
        let bn_epoch_done = !self.momenta.is_empty() && last.is_some() && last == self.swa_end.map(|end| end + 1);
        if bn_epoch_done {
            return;
        }
        if last.is_some() && (last == self.swa_end || self.swa_end.is_none()) {
            self.transfer(module);
        }
    }

    fn on_save_checkpoint(&mut self, _module: &mut M, checkpoint: &mut Checkpoint, _cx: &mut HookContext<'_>) {
        if let Some(average) = &self.average {
            checkpoint.insert_weights(AVERAGE_MODEL, average.clone());
        }
    }

    fn on_load_checkpoint(&mut self, module: &mut M, checkpoint: &Checkpoint, cx: &mut HookContext<'_>) {
        if checkpoint.has_weights(AVERAGE_MODEL) {
            match checkpoint.load_weights(AVERAGE_MODEL, averaging::detached_copy(module)) {
                Ok(average) => self.average = Some(average),
                Err(e) => cx.fail(e),
            }
        }
    }

    fn state_dict(&mut self) -> Option<JsonValue> {
        Some(serde_json::json!({
            "n_averaged": self.n_averaged,
            "latest_update_epoch": self.latest_update_epoch.map_or(-1, |epoch| epoch as i64),
            "initialized": self.initialized,
        }))
    }

    fn load_state_dict(&mut self, state: JsonValue) -> Result<(), Error> {
        let missing = |key: &str| Error::Checkpoint(format!("the SWA state has no `{key}`"));
        self.n_averaged = state
            .get("n_averaged")
            .and_then(JsonValue::as_u64)
            .ok_or_else(|| missing("n_averaged"))? as usize;
        let latest = state
            .get("latest_update_epoch")
            .and_then(JsonValue::as_i64)
            .ok_or_else(|| missing("latest_update_epoch"))?;
        self.latest_update_epoch = usize::try_from(latest).ok();
        // A checkpoint saved once SWALR took over: the optimizer's restored scheduler is it.
        self.initialized = state.get("initialized").and_then(JsonValue::as_bool).unwrap_or(false);
        Ok(())
    }
}

/// The checkpoint entry of the averaged weights.
const AVERAGE_MODEL: &str = "StochasticWeightAveraging";

/// Each `BatchNorm` running statistic's id and whether it is the variance, in the module's order.
fn batch_norm_statistics<M: Module>(module: &M) -> Vec<(ParamId, bool, Tensor<1>)> {
    struct Find {
        path: Vec<String>,
        types: Vec<String>,
        found: Vec<(ParamId, bool, Tensor<1>)>,
    }
    impl ModuleVisitor for Find {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.push(name.to_string());
            self.types.push(container_type.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
            self.types.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let in_batch_norm = self.types.last().is_some_and(|t| t == "Struct:BatchNorm");
            let field = self.path.last().map_or("", String::as_str);
            if D == 1 && in_batch_norm && matches!(field, "running_mean" | "running_var") {
                let value: Tensor<1> = param.val().reshape([-1]);
                self.found.push((param.id, field == "running_var", value));
            }
        }
    }
    let mut find = Find {
        path: Vec::new(),
        types: Vec::new(),
        found: Vec::new(),
    };
    module.visit(&mut find);
    find.found
}

/// torch's `reset_running_stats`: means 0, variances 1.
fn reset_statistics<M: Module>(module: &M) -> Values {
    let mut values = Values::default();
    for (id, variance, value) in batch_norm_statistics(module) {
        let reset = match variance {
            true => value.ones_like(),
            false => value.zeros_like(),
        };
        values.insert(id, reset);
    }
    values
}

/// The momentum of each `BatchNorm` running statistic: `given`, else each layer's own, read from
/// the module's `Debug` output (burn's layer exposes it to no visitor; its derived `Debug` prints
/// `BatchNorm { .., momentum: 0.1, .. }`, in the order the visitor sees the layers).
fn batch_norm_momenta<M: Module>(module: &M, given: Option<f64>) -> Result<HashMap<ParamId, f64>, String> {
    let statistics = batch_norm_statistics(module);
    if statistics.is_empty() {
        return Ok(HashMap::new());
    }
    let layers = statistics.len() / 2;
    let momenta = match given {
        Some(momentum) => vec![momentum; layers],
        None => debug_momenta(&format!("{module:?}")),
    };
    if momenta.len() != layers {
        return Err(format!(
            "it found {layers} BatchNorm layers but could read the momentum of {}; give it with `.bn_momentum(m)`",
            momenta.len()
        ));
    }
    if let Some(bad) = momenta.iter().find(|m| !(**m > 0.0 && **m <= 1.0)) {
        return Err(format!(
            "a BatchNorm layer's momentum is {bad}: its statistics cannot be computed again (it must be in (0, 1])"
        ));
    }
    Ok(statistics
        .iter()
        .enumerate()
        .map(|(i, (id, _, _))| (*id, momenta[i / 2]))
        .collect())
}

/// The `momentum` of every `BatchNorm { .. }` in a derived `Debug` output, in order.
fn debug_momenta(debug: &str) -> Vec<f64> {
    const LAYER: &str = "BatchNorm {";
    const FIELD: &str = "momentum: ";
    let mut momenta = Vec::new();
    let mut rest = debug;
    while let Some(at) = rest.find(LAYER) {
        let boundary = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        rest = &rest[at + LAYER.len()..];
        if !boundary {
            continue;
        }
        let Some(field) = rest.find(FIELD) else { break };
        let value = &rest[field + FIELD.len()..];
        let end = value.find([',', ' ', '}']).unwrap_or(value.len());
        if let Ok(momentum) = value[..end].parse() {
            momenta.push(momentum);
        }
    }
    momenta
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};

    #[derive(Module, Debug)]
    struct Net {
        fc: Linear,
        norms: Vec<BatchNorm>,
    }

    #[test]
    fn the_momentum_of_each_batch_norm_is_read_from_burns_layers() {
        let device = crate::Device::default();
        let net = Net {
            fc: LinearConfig::new(2, 3).init(&device),
            norms: vec![
                BatchNormConfig::new(3).init(&device),
                BatchNormConfig::new(3).with_momentum(0.25).init(&device),
            ],
        };
        let momenta = batch_norm_momenta(&net, None).unwrap();
        let mut found: Vec<f64> = momenta.values().copied().collect();
        found.sort_by(f64::total_cmp);
        assert_eq!(found, [0.1, 0.1, 0.25, 0.25], "two statistics per layer");
        assert_eq!(debug_momenta("MyBatchNorm { momentum: 0.5 }"), Vec::<f64>::new());
        assert!(batch_norm_momenta(&net.fc, None).unwrap().is_empty());
        assert_eq!(batch_norm_momenta(&net, Some(0.3)).unwrap().len(), 4);
    }
}
