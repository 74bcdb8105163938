//! Lightning's model summary: each layer's name, type and parameter count, down to a depth, and
//! the totals: trainable and frozen parameters and their size. Read from the burn module with a
//! `ModuleVisitor`, without initializing lazy parameters.

use crate::hooks::{Callback, LightningModule};
use crate::{HookContext, Tensor};
use burn::module::{Module, ModuleVisitor, Param};
use std::fmt;

/// One row of a [`Summary`]: a submodule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSummary {
    /// Its path from the module (`l1`, `blocks.0.attention`).
    pub name: String,
    /// Its type (`Linear`), or the container's kind (`Vec`, `Tuple`, `Array`).
    pub kind: String,
    /// Parameters inside it.
    pub params: usize,
}

/// What [`summarize`] reads from a module, printed as Lightning prints its model summary.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Summary {
    /// The submodules down to the depth asked for, in the module's order.
    pub layers: Vec<LayerSummary>,
    /// Parameters that receive gradients.
    pub trainable_params: usize,
    /// Parameters that do not (frozen with `set_require_grad(false)`, or on a device without
    /// autodiff).
    pub non_trainable_params: usize,
    /// Bytes the parameters take.
    pub size_bytes: usize,
}

impl Summary {
    pub fn total_params(&self) -> usize {
        self.trainable_params + self.non_trainable_params
    }

    /// The parameters' size in MB (10^6 bytes), as Lightning's "Total estimated model params
    /// size (MB)".
    pub fn size_mb(&self) -> f64 {
        self.size_bytes as f64 / 1e6
    }
}

/// The summary of `module`'s submodules down to `max_depth` (1: its direct fields; 0: totals
/// only; `usize::MAX`: every level). Lazy parameters are counted from their shapes, without
/// being initialized.
pub fn summarize<M: Module>(module: &M, max_depth: usize) -> Summary {
    let mut visitor = Summarizer {
        max_depth,
        path: Vec::new(),
        summary: Summary::default(),
    };
    module.visit(&mut visitor);
    visitor.summary
}

struct Summarizer {
    max_depth: usize,
    /// The nodes entered: submodules, and the parameters burn also enters by field name.
    path: Vec<Node>,
    summary: Summary,
}

struct Node {
    name: String,
    /// Its row, when it is shallow enough.
    row: Option<usize>,
    /// Whether anything was entered inside it (it is a module, not a parameter).
    has_children: bool,
    /// Whether a parameter was visited directly at it (it is a parameter).
    is_param: bool,
}

impl Summarizer {
    fn count(&mut self, params: usize, bytes: usize, trainable: bool) {
        for row in self.path.iter().filter_map(|node| node.row) {
            self.summary.layers[row].params += params;
        }
        if trainable {
            self.summary.trainable_params += params;
        } else {
            self.summary.non_trainable_params += params;
        }
        self.summary.size_bytes += bytes;
    }
}

impl ModuleVisitor for Summarizer {
    /// `container_type` is the type of the module being entered *from*: the parent's.
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if let Some(parent) = self.path.last_mut() {
            parent.has_children = true;
            if let Some(row) = parent.row {
                let kind = container_type.split_once(':').map_or(container_type, |(_, ty)| ty);
                self.summary.layers[row].kind = kind.to_string();
            }
        }
        let depth = self.path.len() + 1;
        let row = (depth <= self.max_depth).then(|| {
            let mut full: Vec<&str> = self.path.iter().map(|n| n.name.as_str()).collect();
            full.push(name);
            self.summary.layers.push(LayerSummary {
                name: full.join("."),
                kind: String::new(),
                params: 0,
            });
            self.summary.layers.len() - 1
        });
        self.path.push(Node {
            name: name.to_string(),
            row,
            has_children: false,
            is_param: false,
        });
    }

    /// A parameter (`weight`) or a module without parameters and fields (`Relu`) gets no row,
    /// as Lightning lists modules that hold parameters.
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        if let Some(node) = self.path.pop()
            && (node.is_param || !node.has_children)
            && node.row == Some(self.summary.layers.len().wrapping_sub(1))
        {
            self.summary.layers.pop();
        }
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(node) = self.path.last_mut() {
            node.is_param = !node.has_children;
        }
        let params = param.lazy_shape().num_elements();
        // A parameter not initialized yet counts as trainable (burn keeps whether it was frozen
        // with its lazy state, out of reach): initializing it here would draw from the random
        // generator in another order than training does.
        let (trainable, bytes_per_value) = if param.is_initialized() {
            let value = param.val();
            (value.is_require_grad(), value.dtype().size())
        } else {
            (true, 4)
        };
        self.count(params, params * bytes_per_value, trainable);
    }
}

/// Lightning's `get_human_readable_count`: `123`, `1.2 K`, `100 K`, `1.3 M`.
pub(crate) fn human_count(number: usize) -> String {
    const LABELS: [&str; 5] = [" ", "K", "M", "B", "T"];
    let digits = if number == 0 { 1 } else { number.ilog10() as usize + 1 };
    let groups = digits.div_ceil(3).clamp(1, LABELS.len());
    let scaled = number as f64 / 10f64.powi(3 * (groups as i32 - 1));
    let index = groups - 1;
    if index < 1 || scaled >= 100.0 {
        format!("{} {}", scaled.trunc() as u64, LABELS[index])
    } else {
        format!("{scaled:.1} {}", LABELS[index])
    }
}

impl fmt::Display for Summary {
    /// The table and totals Lightning prints at the start of `fit`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.layers.is_empty() {
            let rows: Vec<[String; 4]> = self
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| [i.to_string(), l.name.clone(), l.kind.clone(), human_count(l.params)])
                .collect();
            let header = ["", "Name", "Type", "Params"];
            let widths: Vec<usize> = (0..4)
                .map(|c| {
                    rows.iter()
                        .map(|r| r[c].len())
                        .chain([header[c].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: [&str; 4]| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(cell, width)| format!("{cell:<width$}"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            };
            let head = line(header);
            writeln!(f, "{head}")?;
            writeln!(f, "{}", "-".repeat(head.len()))?;
            for row in &rows {
                writeln!(f, "{}", line([&row[0], &row[1], &row[2], &row[3]]))?;
            }
            writeln!(f, "{}", "-".repeat(head.len()))?;
        }
        writeln!(f, "{:<10}Trainable params", human_count(self.trainable_params))?;
        writeln!(f, "{:<10}Non-trainable params", human_count(self.non_trainable_params))?;
        writeln!(f, "{:<10}Total params", human_count(self.total_params()))?;
        write!(f, "{:<10.3}Total estimated model params size (MB)", self.size_mb())
    }
}

/// Prints the module's summary at the start of `fit` (Lightning's `ModelSummary` callback): its
/// layers down to `max_depth` (default 1), their types and parameter counts, and the totals.
/// Added by default; `enable_model_summary(false)` turns it off.
#[derive(Debug, Clone)]
pub struct ModelSummary {
    max_depth: usize,
}

impl Default for ModelSummary {
    fn default() -> Self {
        Self { max_depth: 1 }
    }
}

impl ModelSummary {
    /// Layers down to `max_depth` (0: totals only; `usize::MAX`: every level).
    pub fn new(max_depth: usize) -> Self {
        Self { max_depth }
    }
}

impl<M: LightningModule> Callback<M> for ModelSummary {
    fn on_fit_start(&mut self, module: &mut M, cx: &mut HookContext<'_>) {
        cx.print(summarize(module, self.max_depth).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_lightning_prints_them() {
        assert_eq!(human_count(0), "0  ");
        assert_eq!(human_count(123), "123  ");
        assert_eq!(human_count(1_290), "1.3 K");
        assert_eq!(human_count(100_480), "100 K");
        assert_eq!(human_count(101_770), "101 K");
        assert_eq!(human_count(12_345_678), "12.3 M");
        assert_eq!(human_count(2_000_000_000), "2.0 B");
    }
}
