//! torchmetrics' `AUROC` without thresholds (the exact area): the scores and targets of every
//! batch are kept on the device (concatenated across devices and processes) and ranked when the
//! value is computed.

use super::classification::{Average, Task, count, out_of_range, positives, probabilities, safe_div};
use super::metric::{MetricConfig, Object, Preds, Target, loggable_metric, metric_module, prediction_metric};
use super::state::{Kind, StateSpec, StateTensor};
use crate::{Device, Tensor};
use burn::tensor::{Bool, FloatDType, IndexingUpdateOp, Int};

/// The configuration of [`AUROC`].
#[derive(Clone, Debug)]
pub(crate) struct Auroc {
    task: Task,
    average: Average,
}

/// The area under the ROC curve of each column of `scores` `[n, c]` against the 0/1 targets
/// `positive` `[n, c]`: the trapezoids between the curve's points at the distinct scores, as
/// torchmetrics' `_binary_clf_curve` and `trapz` compute it, here as the Mann-Whitney statistic
/// with tied scores counted half (the same area). 0 for a column without positive or without
/// negative targets (torchmetrics' zero curve).
fn auroc_columns(scores: Tensor<2>, positive: Tensor<2>) -> Tensor<2> {
    let [n, c] = scores.dims();
    let device = scores.device();
    let (sorted, order) = scores.sort_descending_with_indices(0);
    let positive = positive.gather(0, order);
    // A group of tied scores starts at the first row and where a score differs from the row's
    // above it.
    let first = Tensor::<2, Int>::ones([1, c], &device).bool();
    let starts: Tensor<2, Bool> = if n > 1 {
        let differs = sorted
            .clone()
            .slice([1..n, 0..c])
            .not_equal(sorted.slice([0..n - 1, 0..c]));
        Tensor::cat(vec![first, differs], 0)
    } else {
        first
    };
    let group = starts.int().cumsum(0).sub_scalar(1);
    let in_group = positive
        .zeros_like()
        .scatter(0, group.clone(), positive.clone(), IndexingUpdateOp::Add);
    let above = in_group.clone().cumsum(0) - in_group.clone();
    let above = above.gather(0, group.clone());
    let tied = in_group.gather(0, group);
    let negative = positive.clone().neg().add_scalar(1.0);
    let area = (negative * (above + tied.mul_scalar(0.5))).sum_dim(0);
    let positives = positive.sum_dim(0);
    let negatives = positives.clone().neg().add_scalar(n as f64);
    safe_div(area, positives * negatives)
}

impl Auroc {
    fn classes(&self) -> usize {
        match self.task {
            Task::Multiclass { num_classes } => num_classes,
            _ => 1,
        }
    }
}

impl MetricConfig for Auroc {
    type Input = (Preds, Target);

    fn specs(&self) -> Vec<StateSpec> {
        vec![
            StateSpec::rows("preds", Kind::Float),
            StateSpec::rows("target", Kind::Int),
            StateSpec::counts("invalid", 1),
        ]
    }

    fn describe(&self) -> String {
        match self.task {
            Task::Binary => "`AUROC` (binary)".into(),
            task => format!(
                "`AUROC` ({}, {} average)",
                match task {
                    Task::Multiclass { num_classes } => format!("multiclass, {num_classes} classes"),
                    _ => "multilabel".into(),
                },
                format!("{:?}", self.average).to_lowercase()
            ),
        }
    }

    fn invalid(&self) -> Option<String> {
        match self.task {
            Task::Multiclass { num_classes } if num_classes < 2 => Some(format!(
                "`num_classes` is {num_classes}; give at least 2 (or use the binary task)"
            )),
            Task::Multiclass { .. } if self.average == Average::Micro => {
                Some("multiclass AUROC averages by `Macro` or `Weighted` (torchmetrics' own choices)".into())
            }
            Task::Multilabel { .. } => Some("AUROC is built for the binary and multiclass tasks only".into()),
            _ => None,
        }
    }

    fn invalid_state(&self) -> Option<usize> {
        Some(2)
    }

    fn device(&self, input: &Self::Input) -> Device {
        input.0.device()
    }

    fn batch(&self, (preds, target): Self::Input) -> Result<Option<Vec<StateTensor>>, String> {
        let [n, c] = preds.dims();
        if n == 0 {
            return Ok(None);
        }
        match self.task {
            Task::Binary => {
                if target.dims() != [n, c] {
                    return Err(format!(
                        "binary predictions and targets must have the same shape; got {:?} and {:?}",
                        [n, c],
                        target.dims()
                    ));
                }
                let scores = match preds {
                    Preds::Scores(scores) => scores,
                    Preds::Labels(labels) => labels.float(),
                };
                let scores = probabilities(scores, false).reshape([n * c]);
                let (pos, neg) = positives(target);
                let invalid = count(pos.clone().bool_or(neg).bool_not());
                let target = pos.int().reshape([n * c]);
                Ok(Some(vec![
                    StateTensor::Float(scores.cast(FloatDType::F32)),
                    StateTensor::Int(target),
                    StateTensor::Int(invalid),
                ]))
            }
            _ => {
                let classes = self.classes();
                let Preds::Scores(scores) = preds else {
                    return Err(format!(
                        "multiclass AUROC ranks scores `[N, {classes}]`, not class indices"
                    ));
                };
                if c != classes {
                    return Err(format!(
                        "multiclass scores have one column per class; these have {c} columns for {classes} classes"
                    ));
                }
                let labels = match target {
                    Target::Labels(t) if t.dims() == [n, 1] => t.reshape([n]),
                    other => {
                        return Err(format!(
                            "multiclass targets are class indices, one per sample ({n}), as a `Tensor<1, Int>`; got shape {:?}",
                            other.dims()
                        ));
                    }
                };
                let scores = probabilities(scores, true).reshape([n * classes]);
                let invalid = count(out_of_range(labels.clone(), classes));
                Ok(Some(vec![
                    StateTensor::Float(scores.cast(FloatDType::F32)),
                    StateTensor::Int(labels),
                    StateTensor::Int(invalid),
                ]))
            }
        }
    }

    fn value(&self, states: Vec<StateTensor>, dtype: FloatDType) -> Result<Tensor<1>, String> {
        let mut states = states.into_iter();
        let (Some(scores), Some(target)) = (states.next(), states.next()) else {
            return Err("its state is incomplete".into());
        };
        let classes = self.classes();
        let rows = scores.len() / classes;
        if rows == 0 {
            return Err("it was given no samples (`compute` before any `update`?)".into());
        }
        let scores = scores.float(dtype).reshape([rows, classes]);
        let target = target.int();
        let positive = match self.task {
            Task::Binary => target.cast(dtype).reshape([rows, 1]),
            _ => {
                let all = Tensor::<1, Int>::arange(0..classes as i64, &target.device())
                    .reshape([1, classes])
                    .expand([rows, classes]);
                target
                    .reshape([rows, 1])
                    .expand([rows, classes])
                    .equal(all)
                    .int()
                    .cast(dtype)
            }
        };
        let support = positive.clone().sum_dim(0);
        let areas = auroc_columns(scores, positive).reshape([classes]);
        Ok(match (self.task, self.average) {
            (Task::Binary, _) => areas,
            (_, Average::Weighted) => {
                let support = support.reshape([classes]);
                safe_div((areas * support.clone()).sum(), support.sum())
            }
            _ => areas.mean(),
        })
    }
}

/// torchmetrics' `AUROC` (exact, without `thresholds`): the area under the ROC curve, from every
/// score and target since the last reset. Binary: one score per element (a sigmoid is applied
/// when a score is outside [0, 1]). Multiclass: scores `[N, C]` (a softmax is applied when a
/// score is outside [0, 1]), one-vs-rest per class, averaged `Macro` (torchmetrics' default) or
/// `Weighted` by support. Its state grows with the samples (concatenated across devices and
/// processes: torchmetrics' `dist_reduce_fx="cat"`).
#[derive(Clone, Debug)]
#[allow(clippy::upper_case_acronyms)] // torchmetrics' name.
pub struct AUROC(pub(crate) Object<Auroc>);

impl AUROC {
    /// The binary task.
    pub fn binary() -> Self {
        Self::new(Task::Binary)
    }

    /// The multiclass task with `num_classes` classes, averaged `Macro`.
    pub fn multiclass(num_classes: usize) -> Self {
        Self::new(Task::Multiclass { num_classes })
    }

    /// The task's metric (binary or multiclass).
    pub fn new(task: Task) -> Self {
        Self(Object::new(Auroc {
            task,
            average: Average::Macro,
        }))
    }

    /// Multiclass: `Macro` (default) or `Weighted` by the classes' support.
    #[must_use]
    pub fn average(self, average: Average) -> Self {
        Self(Object::new(Auroc {
            average,
            ..self.0.config
        }))
    }
}

metric_module!(AUROC);
loggable_metric!(AUROC);
prediction_metric!(AUROC);
