//! torchmetrics' classification metrics built on true/false positive and negative counts
//! (`StatScores`): [`Accuracy`], [`Precision`], [`Recall`], [`F1Score`], and the
//! [`ConfusionMatrix`]. The counts are computed on the device from each batch and summed; the
//! value is computed from them on the device, as torchmetrics' `_*_reduce` functions do.

use super::metric::{MetricConfig, Object, Preds, Target, loggable_metric, metric_module, prediction_metric};
use super::state::{StateSpec, StateTensor};
use crate::{Device, Tensor};
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Bool, DType, FloatDType, Int, TensorData};

/// The classification task (torchmetrics' `task`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// One probability (or logit, or 0/1 label) per element, thresholded.
    Binary,
    /// One of `num_classes` classes per sample: scores `[N, C]` (the highest wins, or the
    /// `top_k` highest) or class indices `[N]`; targets are class indices.
    Multiclass { num_classes: usize },
    /// `num_labels` independent 0/1 labels per sample: scores or labels `[N, L]`, thresholded.
    Multilabel { num_labels: usize },
}

impl Task {
    /// Counts kept per statistic: one for binary, one per class or label.
    fn size(self) -> usize {
        match self {
            Task::Binary => 1,
            Task::Multiclass { num_classes } => num_classes,
            Task::Multilabel { num_labels } => num_labels,
        }
    }

    fn describe(self) -> String {
        match self {
            Task::Binary => "binary".into(),
            Task::Multiclass { num_classes } => format!("multiclass, {num_classes} classes"),
            Task::Multilabel { num_labels } => format!("multilabel, {num_labels} labels"),
        }
    }

    /// Why the task cannot work, if it cannot.
    fn invalid(self) -> Option<String> {
        match self {
            Task::Multiclass { num_classes } if num_classes < 2 => Some(format!(
                "`num_classes` is {num_classes}; give at least 2 (or use the binary task)"
            )),
            Task::Multilabel { num_labels } if num_labels < 2 => Some(format!(
                "`num_labels` is {num_labels}; give at least 2 (or use the binary task)"
            )),
            _ => None,
        }
    }
}

/// How the values of the classes (or labels) are averaged (torchmetrics' `average`; the task
/// metrics' default is `Micro`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Average {
    /// From the counts summed over the classes.
    #[default]
    Micro,
    /// The mean of the classes' values (for multiclass, over the classes that occur in the
    /// targets or the predictions).
    Macro,
    /// The mean of the classes' values, weighted by their number of targets (support).
    Weighted,
}

/// Which score a [`StatScores`] configuration computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Score {
    Accuracy,
    Precision,
    Recall,
    F1,
}

impl Score {
    fn name(self) -> &'static str {
        match self {
            Score::Accuracy => "Accuracy",
            Score::Precision => "Precision",
            Score::Recall => "Recall",
            Score::F1 => "F1Score",
        }
    }
}

/// The scores as probabilities: their sigmoid (or softmax over the classes) when a value of the
/// batch is outside [0, 1] (torchmetrics' `normalize_logits_if_needed`, decided on the device);
/// half-precision scores are computed in `f32`.
pub(crate) fn probabilities(scores: Tensor<2>, over_classes: bool) -> Tensor<2> {
    let [n, c] = scores.dims();
    let scores = match scores.dtype() {
        DType::F16 | DType::BF16 => scores.cast(FloatDType::F32),
        _ => scores,
    };
    let outside = scores
        .clone()
        .lower_elem(0.0)
        .bool_or(scores.clone().greater_elem(1.0))
        .any()
        .reshape([1, 1])
        .expand([n, c]);
    let normalized = if over_classes {
        softmax(scores.clone(), 1)
    } else {
        sigmoid(scores.clone())
    };
    scores.mask_where(outside, normalized)
}

/// Positive and negative targets (`1` and `0`; anything else is neither).
pub(crate) fn positives(target: Target) -> (Tensor<2, Bool>, Tensor<2, Bool>) {
    match target {
        Target::Labels(t) => (t.clone().equal_elem(1), t.equal_elem(0)),
        Target::Values(t) => (t.clone().equal_elem(1.0), t.equal_elem(0.0)),
    }
}

/// How many elements of `mask` are true, as a one-element count.
pub(crate) fn count<const D: usize>(mask: Tensor<D, Bool>) -> Tensor<1, Int> {
    mask.int().sum()
}

/// Class indices outside `0..classes`.
pub(crate) fn out_of_range(labels: Tensor<1, Int>, classes: usize) -> Tensor<1, Bool> {
    labels
        .clone()
        .lower_elem(0)
        .bool_or(labels.greater_equal_elem(classes as i64))
}

/// `num / den`, and 0 where `den` is 0 (torchmetrics' `_safe_divide` with `zero_division=0`).
pub(crate) fn safe_div<const D: usize>(num: Tensor<D>, den: Tensor<D>) -> Tensor<D> {
    let zero = den.clone().equal_elem(0.0);
    num.div(den.mask_fill(zero.clone(), 1.0)).mask_fill(zero, 0.0)
}

/// The class indices of multiclass targets `[N, 1]`.
fn class_targets(target: Target, n: usize) -> Result<Tensor<1, Int>, String> {
    match target {
        Target::Labels(t) if t.dims() == [n, 1] => Ok(t.reshape([n])),
        Target::Labels(t) => Err(format!(
            "multiclass targets are class indices, one per sample ({n}), as a `Tensor<1, Int>`; these have shape {:?}",
            t.dims()
        )),
        Target::Values(_) => Err("multiclass targets are class indices: give a `Tensor<1, Int>`, not floats".into()),
    }
}

/// The one-hot `[N, C]` form of class indices `[N]`.
fn one_hot(labels: Tensor<1, Int>, classes: usize) -> Tensor<2, Bool> {
    let [n] = labels.dims();
    let device = labels.device();
    let all = Tensor::<1, Int>::arange(0..classes as i64, &device)
        .reshape([1, classes])
        .expand([n, classes]);
    labels.reshape([n, 1]).expand([n, classes]).equal(all)
}

/// The configuration of the metrics on true/false positive/negative counts (torchmetrics'
/// `StatScores` and the metrics derived from it).
#[derive(Clone, Debug)]
pub(crate) struct StatScores {
    score: Score,
    task: Task,
    average: Average,
    threshold: f64,
    top_k: usize,
}

/// The index of the count of invalid targets and predictions among the states of
/// [`StatScores`] (after tp, fp, tn and fn).
const INVALID: usize = 4;

impl StatScores {
    fn new(score: Score, task: Task) -> Self {
        Self {
            score,
            task,
            average: Average::Micro,
            threshold: 0.5,
            top_k: 1,
        }
    }

    fn multilabel(&self) -> bool {
        matches!(self.task, Task::Multilabel { .. })
    }

    /// The counts of a binary batch: every element is a sample.
    fn binary(&self, preds: Preds, target: Target) -> Result<[Tensor<1, Int>; 5], String> {
        let dims = preds.dims();
        if target.dims() != dims {
            return Err(format!(
                "binary predictions and targets must have the same shape; got {:?} and {:?}",
                dims,
                target.dims()
            ));
        }
        let (predicted, bad_preds) = self.thresholded(preds);
        let (pos, neg) = positives(target);
        Ok(stat_counts(predicted, pos, neg, bad_preds, None))
    }

    /// Predicted 0/1 labels: scores above the threshold (after a sigmoid when they are logits),
    /// or labels equal to 1; labels other than 0 and 1 are counted as invalid.
    fn thresholded(&self, preds: Preds) -> (Tensor<2, Bool>, Option<Tensor<1, Int>>) {
        match preds {
            Preds::Scores(scores) => (probabilities(scores, false).greater_elem(self.threshold), None),
            Preds::Labels(labels) => {
                let bad = labels
                    .clone()
                    .equal_elem(0)
                    .bool_or(labels.clone().equal_elem(1))
                    .bool_not();
                (labels.equal_elem(1), Some(count(bad)))
            }
        }
    }

    fn multiclass(&self, classes: usize, preds: Preds, target: Target) -> Result<[Tensor<1, Int>; 5], String> {
        let [n, c] = preds.dims();
        let labels = class_targets(target, n)?;
        let (predicted, bad_preds) = match preds {
            Preds::Scores(scores) if c == classes => {
                let top1: Tensor<2, Int> = scores.clone().argmax(1);
                let predicted = if self.top_k == 1 {
                    top1
                } else {
                    // torchmetrics' `_refine_preds_oh`: the target when it is among the top k,
                    // else the top class.
                    let (_, top) = scores.topk_with_indices(self.top_k, 1);
                    let k = self.top_k;
                    let hit = top.equal(labels.clone().reshape([n, 1]).expand([n, k])).any_dim(1);
                    top1.mask_where(hit, labels.clone().reshape([n, 1]))
                };
                (predicted.reshape([n]), None)
            }
            Preds::Scores(_) => {
                return Err(format!(
                    "multiclass scores have one column per class; these have {c} columns for {classes} classes"
                ));
            }
            Preds::Labels(_) if self.top_k > 1 => {
                return Err(format!(
                    "`top_k` is {}, which needs scores (probabilities or logits) `[N, C]`, not class indices",
                    self.top_k
                ));
            }
            Preds::Labels(predicted) if c == 1 => {
                let predicted = predicted.reshape([n]);
                let bad = count(out_of_range(predicted.clone(), classes));
                (predicted, Some(bad))
            }
            Preds::Labels(_) => {
                return Err(format!(
                    "multiclass predictions are scores `[N, C]` or class indices `[N]`; these are labels of shape [{n}, {c}]"
                ));
            }
        };
        let bad_targets = count(out_of_range(labels.clone(), classes));
        let t = one_hot(labels, classes);
        let p = one_hot(predicted, classes);
        let per_class = |mask: Tensor<2, Bool>| mask.int().sum_dim(0).reshape([classes]);
        let tp = per_class(t.clone().bool_and(p.clone()));
        let fn_ = per_class(t.clone().bool_and(p.clone().bool_not()));
        let fp = per_class(p.clone().bool_and(t.clone().bool_not()));
        let tn = per_class(t.bool_not().bool_and(p.bool_not()));
        let invalid = match bad_preds {
            Some(bad) => bad_targets + bad,
            None => bad_targets,
        };
        Ok([tp, fp, tn, fn_, invalid])
    }

    fn multilabel_counts(&self, labels: usize, preds: Preds, target: Target) -> Result<[Tensor<1, Int>; 5], String> {
        let dims = preds.dims();
        if dims[1] != labels || target.dims() != dims {
            return Err(format!(
                "multilabel predictions and targets are `[N, {labels}]`; got {:?} and {:?}",
                dims,
                target.dims()
            ));
        }
        let (predicted, bad_preds) = self.thresholded(preds);
        let (pos, neg) = positives(target);
        Ok(stat_counts(predicted, pos, neg, bad_preds, Some(labels)))
    }

    /// The score of each entry of the counts (element-wise).
    fn score(&self, tp: Tensor<1>, fp: Tensor<1>, tn: Tensor<1>, fn_: Tensor<1>) -> Tensor<1> {
        match self.score {
            Score::Accuracy if self.multilabel() || self.task == Task::Binary => {
                safe_div(tp.clone() + tn.clone(), tp + tn + fp + fn_)
            }
            Score::Accuracy | Score::Recall => safe_div(tp.clone(), tp + fn_),
            Score::Precision => safe_div(tp.clone(), tp + fp),
            Score::F1 => safe_div(tp.clone().mul_scalar(2.0), tp.mul_scalar(2.0) + fn_ + fp),
        }
    }
}

/// tp, fp, tn, fn (summed over the samples, per label when `per_label` is given) and the count
/// of invalid targets and predictions.
fn stat_counts(
    predicted: Tensor<2, Bool>,
    pos: Tensor<2, Bool>,
    neg: Tensor<2, Bool>,
    bad_preds: Option<Tensor<1, Int>>,
    per_label: Option<usize>,
) -> [Tensor<1, Int>; 5] {
    let sum = |mask: Tensor<2, Bool>| match per_label {
        Some(labels) => mask.int().sum_dim(0).reshape([labels]),
        None => count(mask),
    };
    let tp = sum(predicted.clone().bool_and(pos.clone()));
    let fn_ = sum(predicted.clone().bool_not().bool_and(pos.clone()));
    let fp = sum(predicted.clone().bool_and(neg.clone()));
    let tn = sum(predicted.bool_not().bool_and(neg.clone()));
    let bad_targets = count(pos.bool_or(neg).bool_not());
    let invalid = match bad_preds {
        Some(bad) => bad_targets + bad,
        None => bad_targets,
    };
    [tp, fp, tn, fn_, invalid]
}

impl MetricConfig for StatScores {
    type Input = (Preds, Target);

    fn specs(&self) -> Vec<StateSpec> {
        let size = self.task.size();
        vec![
            StateSpec::counts("tp", size),
            StateSpec::counts("fp", size),
            StateSpec::counts("tn", size),
            StateSpec::counts("fn", size),
            StateSpec::counts("invalid", 1),
        ]
    }

    fn describe(&self) -> String {
        let mut text = format!("`{}` ({}", self.score.name(), self.task.describe());
        if self.task != Task::Binary {
            text.push_str(&format!(", {:?} average", self.average).to_lowercase());
        }
        if self.top_k > 1 {
            text.push_str(&format!(", top {}", self.top_k));
        }
        text.push(')');
        text
    }

    fn invalid(&self) -> Option<String> {
        if let Some(why) = self.task.invalid() {
            return Some(why);
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return Some(format!(
                "`threshold` is {}; give a probability in [0, 1]",
                self.threshold
            ));
        }
        match self.task {
            Task::Multiclass { num_classes } if self.top_k == 0 || self.top_k > num_classes => Some(format!(
                "`top_k` is {}; give a number from 1 to `num_classes` ({num_classes})",
                self.top_k
            )),
            Task::Binary | Task::Multilabel { .. } if self.top_k != 1 => {
                Some("`top_k` applies to the multiclass task only".into())
            }
            _ => None,
        }
    }

    fn invalid_state(&self) -> Option<usize> {
        Some(INVALID)
    }

    fn device(&self, input: &Self::Input) -> Device {
        input.0.device()
    }

    fn batch(&self, (preds, target): Self::Input) -> Result<Option<Vec<StateTensor>>, String> {
        if preds.dims()[0] == 0 {
            return Ok(None);
        }
        let counts = match self.task {
            Task::Binary => self.binary(preds, target)?,
            Task::Multiclass { num_classes } => self.multiclass(num_classes, preds, target)?,
            Task::Multilabel { num_labels } => self.multilabel_counts(num_labels, preds, target)?,
        };
        Ok(Some(counts.into_iter().map(StateTensor::Int).collect()))
    }

    fn value(&self, states: Vec<StateTensor>, dtype: FloatDType) -> Result<Tensor<1>, String> {
        let mut floats = states.into_iter().map(|s| s.float(dtype));
        let (Some(tp), Some(fp), Some(tn), Some(fn_)) = (floats.next(), floats.next(), floats.next(), floats.next())
        else {
            return Err("its state is incomplete".into());
        };
        if self.task == Task::Binary {
            return Ok(self.score(tp, fp, tn, fn_));
        }
        Ok(match self.average {
            Average::Micro => self.score(tp.sum(), fp.sum(), tn.sum(), fn_.sum()),
            average => {
                let score = self.score(tp.clone(), fp.clone(), tn, fn_.clone());
                let weights = match average {
                    Average::Weighted => tp + fn_,
                    _ if self.multilabel() => score.ones_like(),
                    _ => {
                        // torchmetrics' `_adjust_weights_safe_divide`: classes absent from the
                        // targets and the predictions do not count (F1 passes no `top_k`).
                        let top_k = if self.score == Score::F1 { 1 } else { self.top_k };
                        let absent = if top_k == 1 {
                            (tp + fp + fn_).equal_elem(0.0)
                        } else {
                            (tp + fn_).equal_elem(0.0)
                        };
                        score.ones_like().mask_fill(absent, 0.0)
                    }
                };
                safe_div((weights.clone() * score).sum(), weights.sum())
            }
        })
    }
}

macro_rules! stat_metric {
    ($(#[$doc:meta])* $ty:ident, $score:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $ty(pub(crate) Object<StatScores>);

        impl $ty {
            /// The binary task: one probability or logit per element (a sigmoid is applied when
            /// a value is outside [0, 1]), above `threshold` (0.5) is positive.
            pub fn binary() -> Self {
                Self(Object::new(StatScores::new($score, Task::Binary)))
            }

            /// The multiclass task with `num_classes` classes: scores `[N, C]` (or class indices
            /// `[N]`) against class indices `[N]`.
            pub fn multiclass(num_classes: usize) -> Self {
                Self(Object::new(StatScores::new($score, Task::Multiclass { num_classes })))
            }

            /// The multilabel task with `num_labels` labels: scores (or 0/1 labels) `[N, L]`
            /// against 0/1 labels `[N, L]`.
            pub fn multilabel(num_labels: usize) -> Self {
                Self(Object::new(StatScores::new($score, Task::Multilabel { num_labels })))
            }

            /// The task's metric (torchmetrics' `task=` constructor).
            pub fn new(task: Task) -> Self {
                Self(Object::new(StatScores::new($score, task)))
            }

            /// How the classes' values are averaged (multiclass and multilabel; `Micro` by
            /// default, as torchmetrics' task metrics).
            #[must_use]
            pub fn average(self, average: Average) -> Self {
                Self(Object::new(StatScores { average, ..self.0.config }))
            }

            /// The probability above which a binary or multilabel prediction is positive (0.5).
            #[must_use]
            pub fn threshold(self, threshold: f64) -> Self {
                Self(Object::new(StatScores { threshold, ..self.0.config }))
            }

            /// Multiclass: a sample counts as right when its target is among its `k` highest
            /// scores (torchmetrics' `top_k`; 1 by default).
            #[must_use]
            pub fn top_k(self, k: usize) -> Self {
                Self(Object::new(StatScores { top_k: k, ..self.0.config }))
            }
        }

        metric_module!($ty);
        loggable_metric!($ty);
        prediction_metric!($ty);
    };
}

stat_metric!(
    /// torchmetrics' `Accuracy`: the share of right predictions (binary: of all elements;
    /// multiclass: `tp / (tp + fn)`; multilabel: of all labels), averaged over the classes as
    /// [`Average`] says.
    ///
    /// ```ignore
    /// let acc = Accuracy::multiclass(10);               // a field of the module
    /// acc.update(&logits, &targets);                     // in validation_step: device work only
    /// cx.log_with("val_acc", &acc, LogOptions::new().prog_bar(true)); // computed at the epoch's end
    /// ```
    Accuracy,
    Score::Accuracy
);

stat_metric!(
    /// torchmetrics' `Precision`: `tp / (tp + fp)`, averaged over the classes as [`Average`]
    /// says (0 where nothing was predicted positive).
    Precision,
    Score::Precision
);

stat_metric!(
    /// torchmetrics' `Recall`: `tp / (tp + fn)`, averaged over the classes as [`Average`] says
    /// (0 where no target is positive).
    Recall,
    Score::Recall
);

stat_metric!(
    /// torchmetrics' `F1Score`: `2 tp / (2 tp + fn + fp)`, averaged over the classes as
    /// [`Average`] says.
    F1Score,
    Score::F1
);

/// How a confusion matrix is normalized (torchmetrics' `normalize`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Normalize {
    /// Counts.
    #[default]
    None,
    /// Each row (a target class) sums to 1.
    True,
    /// Each column (a predicted class) sums to 1.
    Pred,
    /// The whole matrix sums to 1.
    All,
}

/// The configuration of [`ConfusionMatrix`].
#[derive(Clone, Debug)]
pub(crate) struct Confusion {
    task: Task,
    threshold: f64,
    normalize: Normalize,
}

impl Confusion {
    /// The matrices `[M, K, K]` it keeps: one of 2 x 2 (binary), one of C x C (multiclass), one
    /// 2 x 2 per label (multilabel).
    fn layout(&self) -> (usize, usize) {
        match self.task {
            Task::Binary => (1, 2),
            Task::Multiclass { num_classes } => (1, num_classes),
            Task::Multilabel { num_labels } => (num_labels, 2),
        }
    }

    /// Per 2 x 2 matrix: tn, fp, fn, tp (torchmetrics' `2 * target + pred` order).
    fn two_by_two(
        predicted: Tensor<2, Bool>,
        pos: Tensor<2, Bool>,
        neg: Tensor<2, Bool>,
        labels: Option<usize>,
    ) -> Tensor<1, Int> {
        let [tp, fp, tn, fn_, _] = stat_counts(predicted, pos, neg, None, labels);
        match labels {
            None => Tensor::cat(vec![tn, fp, fn_, tp], 0),
            Some(labels) => Tensor::stack::<2>(vec![tn, fp, fn_, tp], 1).reshape([labels * 4]),
        }
    }
}

impl MetricConfig for Confusion {
    type Input = (Preds, Target);

    fn specs(&self) -> Vec<StateSpec> {
        let (m, k) = self.layout();
        vec![StateSpec::counts("confmat", m * k * k), StateSpec::counts("invalid", 1)]
    }

    fn describe(&self) -> String {
        format!("`ConfusionMatrix` ({})", self.task.describe())
    }

    fn invalid(&self) -> Option<String> {
        self.task.invalid().or_else(|| {
            (!(0.0..=1.0).contains(&self.threshold))
                .then(|| format!("`threshold` is {}; give a probability in [0, 1]", self.threshold))
        })
    }

    fn invalid_state(&self) -> Option<usize> {
        Some(1)
    }

    fn device(&self, input: &Self::Input) -> Device {
        input.0.device()
    }

    fn batch(&self, (preds, target): Self::Input) -> Result<Option<Vec<StateTensor>>, String> {
        let [n, c] = preds.dims();
        if n == 0 {
            return Ok(None);
        }
        let stats = StatScores {
            threshold: self.threshold,
            ..StatScores::new(Score::Accuracy, self.task)
        };
        let (confmat, invalid) = match self.task {
            Task::Binary | Task::Multilabel { .. } => {
                let labels = match self.task {
                    Task::Multilabel { num_labels } => {
                        if c != num_labels || target.dims() != [n, c] {
                            return Err(format!(
                                "multilabel predictions and targets are `[N, {num_labels}]`; got {:?} and {:?}",
                                [n, c],
                                target.dims()
                            ));
                        }
                        Some(num_labels)
                    }
                    _ if target.dims() != [n, c] => {
                        return Err(format!(
                            "binary predictions and targets must have the same shape; got {:?} and {:?}",
                            [n, c],
                            target.dims()
                        ));
                    }
                    _ => None,
                };
                let (predicted, bad_preds) = stats.thresholded(preds);
                let (pos, neg) = positives(target);
                let bad_targets = count(pos.clone().bool_or(neg.clone()).bool_not());
                let invalid = match bad_preds {
                    Some(bad) => bad_targets + bad,
                    None => bad_targets,
                };
                (Self::two_by_two(predicted, pos, neg, labels), invalid)
            }
            Task::Multiclass { num_classes } => {
                let labels = class_targets(target, n)?;
                let predicted = match preds {
                    Preds::Scores(scores) if c == num_classes => scores.argmax(1).reshape([n]),
                    Preds::Labels(predicted) if c == 1 => predicted.reshape([n]),
                    _ => {
                        return Err(format!(
                            "multiclass predictions are scores `[N, {num_classes}]` or class indices `[N]`; these have shape [{n}, {c}]"
                        ));
                    }
                };
                let bad =
                    out_of_range(labels.clone(), num_classes).bool_or(out_of_range(predicted.clone(), num_classes));
                // Bad pairs add nothing (their index is clamped and their count is 0); they are
                // counted as invalid instead.
                let index = (labels.mul_scalar(num_classes as i64) + predicted).mask_fill(bad.clone(), 0);
                let ones = bad.clone().bool_not().int();
                let device = index.device();
                let confmat = Tensor::<1, Int>::zeros([num_classes * num_classes], &device).scatter(
                    0,
                    index,
                    ones,
                    burn::tensor::IndexingUpdateOp::Add,
                );
                (confmat, count(bad))
            }
        };
        Ok(Some(vec![StateTensor::Int(confmat), StateTensor::Int(invalid)]))
    }

    fn value(&self, states: Vec<StateTensor>, dtype: FloatDType) -> Result<Tensor<1>, String> {
        let (m, k) = self.layout();
        let confmat = states.into_iter().next().ok_or("its state is incomplete")?.float(dtype);
        let matrices: Tensor<3> = confmat.reshape([m, k, k]);
        let normalized = match self.normalize {
            Normalize::None => return Ok(matrices.reshape([m * k * k])),
            Normalize::True => matrices.clone() / matrices.sum_dim(2).expand([m, k, k]),
            Normalize::Pred => matrices.clone() / matrices.sum_dim(1).expand([m, k, k]),
            Normalize::All => matrices.clone() / matrices.sum_dim(1).sum_dim(2).expand([m, k, k]),
        };
        let nan = normalized.clone().is_nan();
        Ok(normalized.mask_fill(nan, 0.0).reshape([m * k * k]))
    }
}

/// torchmetrics' `ConfusionMatrix`: counts of (target, prediction) pairs, `[C, C]` (rows are
/// targets; binary is `[2, 2]`), or `[L, 2, 2]` for multilabel, optionally normalized. Its value
/// is a matrix, so it is computed, not logged.
#[derive(Clone, Debug)]
pub struct ConfusionMatrix(pub(crate) Object<Confusion>);

impl ConfusionMatrix {
    /// The binary task: `[[tn, fp], [fn, tp]]`.
    pub fn binary() -> Self {
        Self::new(Task::Binary)
    }

    /// The multiclass task: `[C, C]`, rows are target classes, columns predicted ones.
    pub fn multiclass(num_classes: usize) -> Self {
        Self::new(Task::Multiclass { num_classes })
    }

    /// The multilabel task: one `[[tn, fp], [fn, tp]]` per label.
    pub fn multilabel(num_labels: usize) -> Self {
        Self::new(Task::Multilabel { num_labels })
    }

    /// The task's confusion matrix (torchmetrics' `task=` constructor).
    pub fn new(task: Task) -> Self {
        Self(Object::new(Confusion {
            task,
            threshold: 0.5,
            normalize: Normalize::None,
        }))
    }

    /// How the matrix is normalized (counts by default).
    #[must_use]
    pub fn normalize(self, normalize: Normalize) -> Self {
        Self(Object::new(Confusion {
            normalize,
            ..self.0.config
        }))
    }

    /// The probability above which a binary or multilabel prediction is positive (0.5).
    #[must_use]
    pub fn threshold(self, threshold: f64) -> Self {
        Self(Object::new(Confusion {
            threshold,
            ..self.0.config
        }))
    }

    /// torchmetrics' `update` (device work only).
    pub fn update(&self, preds: impl Into<Preds>, target: impl Into<Target>) {
        self.0.update((preds.into(), target.into()));
    }

    /// The matrix of everything updated since the last reset, read from the device once:
    /// `f64` values of shape `[C, C]` (`[2, 2]` for binary, `[L, 2, 2]` for multilabel).
    pub fn compute(&self) -> Result<TensorData, crate::Error> {
        let values = self.0.compute_values(None)?;
        let (m, k) = self.0.config.layout();
        let shape = match self.0.config.task {
            Task::Multilabel { .. } => vec![m, k, k],
            _ => vec![k, k],
        };
        Ok(TensorData::new(values, shape))
    }
}

metric_module!(ConfusionMatrix);
