//! Lightning's model summary: each layer's name, type, parameter count and mode, down to a
//! depth, and the totals: trainable and frozen parameters, their size, and how many modules are
//! in training and in evaluation mode. Read from the burn module with a `ModuleVisitor`, without
//! initializing lazy parameters.
//!
//! As Lightning 2.6 prints it, as far as burn can tell: every field that is a module gets a row,
//! also one without parameters (`act | Relu | 0 | train`). The mode comes from burn's module
//! flags (`Param<Flag>`, the training switch of dropout and batch norm): a module is in
//! evaluation mode when it holds training flags and all of them are off (`Module::valid()`,
//! `freeze()`), else in training mode (a module without flags has nothing that trains
//! differently; Lightning's `nn.Module.training` has no burn counterpart). Lightning's FLOPs
//! column needs a forward pass of `example_input_array` under torch's FLOP counter; burn has no
//! counter, so the column and its "Total Flops" line are left out. A layer's type is its field's
//! type (the field's Rust type, its path and generics left out); below the first level, a module
//! without parameters or children takes its type from burn's display of its parent.

use crate::hooks::{Callback, LightningModule};
use crate::{HookContext, Tensor};
use burn::module::{Content, DisplaySettings, Flag, Module, ModuleDisplay, ModuleVisitor, Param};
use burn::tensor::{Bool, Int};
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
    /// Whether it is in training mode (Lightning's `Mode` column: `train` or `eval`).
    pub training: bool,
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
    /// Submodules at every depth (the module itself left out) in training mode.
    pub modules_in_train_mode: usize,
    /// Submodules at every depth in evaluation mode.
    pub modules_in_eval_mode: usize,
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
pub fn summarize<M: Module + ModuleDisplay>(module: &M, max_depth: usize) -> Summary {
    let mut visitor = Summarizer {
        max_depth,
        path: Vec::new(),
        summary: Summary::default(),
        modules: Vec::new(),
    };
    module.visit(&mut visitor);
    let Summarizer {
        mut summary, modules, ..
    } = visitor;
    // A node without parameters or children is a module without parameters (`Relu`) or an
    // empty `Option` (a `Linear` without bias): burn visits both alike. burn's display of the
    // module tells them apart, and gives the first one's type (the only place it is told).
    let fields = ModuleDisplayFields::of(module);
    let mut dropped_rows = Vec::new();
    for found in &modules {
        let kind = if found.leaf {
            match fields.kind(&found.path) {
                Some(kind) if kind != "Option" && kind != "None" => Some(kind),
                _ => {
                    dropped_rows.extend(found.row);
                    continue;
                }
            }
        } else {
            None
        };
        if found.training {
            summary.modules_in_train_mode += 1;
        } else {
            summary.modules_in_eval_mode += 1;
        }
        if let Some(row) = found.row {
            let layer = &mut summary.layers[row];
            layer.training = found.training;
            if let Some(kind) = kind {
                layer.kind = kind;
            }
        }
    }
    let mut index = 0;
    summary.layers.retain(|_| {
        index += 1;
        !dropped_rows.contains(&(index - 1))
    });
    summary
}

/// A module the visitor found (every depth): where it is, whether it had nothing inside, and
/// its mode.
struct FoundModule {
    path: String,
    row: Option<usize>,
    leaf: bool,
    training: bool,
}

struct Summarizer {
    max_depth: usize,
    /// The nodes entered: submodules, and the parameters burn also enters by field name.
    path: Vec<Node>,
    summary: Summary,
    /// Every module found, in the order they end.
    modules: Vec<FoundModule>,
}

struct Node {
    name: String,
    /// Its row, when it is shallow enough.
    row: Option<usize>,
    /// Whether anything was entered inside it (it is a module, not a parameter).
    has_children: bool,
    /// Whether a parameter or a flag was visited directly at it (it is no module).
    is_param: bool,
    /// Training flags inside it: how many, and how many are on.
    flags: usize,
    flags_on: usize,
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

    /// The node being visited holds a value, not a module.
    fn mark_param(&mut self) {
        if let Some(node) = self.path.last_mut() {
            node.is_param = !node.has_children;
        }
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
                training: true,
            });
            self.summary.layers.len() - 1
        });
        self.path.push(Node {
            name: name.to_string(),
            row,
            has_children: false,
            is_param: false,
            flags: 0,
            flags_on: 0,
        });
    }

    /// A parameter (`weight`) or a flag gets no row; a module (with or without parameters, as
    /// Lightning lists `ReLU`) keeps its row and counts in the train/eval totals.
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        let Some(node) = self.path.pop() else { return };
        if let Some(parent) = self.path.last_mut() {
            parent.flags += node.flags;
            parent.flags_on += node.flags_on;
        }
        if node.is_param {
            if node.row == Some(self.summary.layers.len().wrapping_sub(1)) {
                self.summary.layers.pop();
            }
            return;
        }
        let mut path: Vec<&str> = self.path.iter().map(|n| n.name.as_str()).collect();
        path.push(&node.name);
        self.modules.push(FoundModule {
            path: path.join("."),
            row: node.row,
            leaf: !node.has_children,
            training: node.flags == 0 || node.flags_on > 0,
        });
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.mark_param();
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

    fn visit_int<const D: usize>(&mut self, _param: &Param<Tensor<D, Int>>) {
        self.mark_param();
    }

    fn visit_bool<const D: usize>(&mut self, _param: &Param<Tensor<D, Bool>>) {
        self.mark_param();
    }

    fn visit_flag(&mut self, flag: &Param<Flag>) {
        self.mark_param();
        if let Some(node) = self.path.last_mut() {
            node.flags += 1;
            node.flags_on += usize::from(flag.val().is_enabled());
        }
    }
}

/// The fields of a module as burn displays them: each field's type (exact at the first level,
/// from `std::any::type_name`) and its display, which names the types of the fields below.
struct ModuleDisplayFields {
    /// Field name, type, displayed value.
    fields: Vec<(String, String, String)>,
}

impl ModuleDisplayFields {
    fn of<M: ModuleDisplay>(module: &M) -> Self {
        let fields = module
            .content(Content::new(DisplaySettings::default()))
            .map(|content| {
                content
                    .attributes
                    .into_iter()
                    .map(|a| (a.name, short_type_name(&a.ty), a.value))
                    .collect()
            })
            .unwrap_or_default();
        Self { fields }
    }

    /// The type of the module at `path` (`act`, `block.act`).
    fn kind(&self, path: &str) -> Option<String> {
        let mut parts = path.split('.');
        let first = parts.next()?;
        let (_, ty, value) = self.fields.iter().find(|(name, _, _)| name == first)?;
        let rest: Vec<&str> = parts.collect();
        if rest.is_empty() {
            return Some(ty.clone());
        }
        let mut text = value.as_str();
        for part in rest {
            text = displayed_fields(text)
                .into_iter()
                .find(|(name, _)| *name == part)
                .map(|(_, value)| value)?;
        }
        let ty = text.lines().next()?.split([' ', '{']).next()?.trim();
        (!ty.is_empty()).then(|| ty.to_string())
    }
}

/// `my_crate::nn::Block<T>` -> `Block`.
fn short_type_name(full: &str) -> String {
    let outer = full.split('<').next().unwrap_or(full);
    outer.rsplit("::").next().unwrap_or(outer).to_string()
}

/// The fields of a module's display, burn's `Type {\n  name: value\n  ...\n}` (one level): each
/// field's name and displayed value.
fn displayed_fields(text: &str) -> Vec<(&str, &str)> {
    let mut lines = text.split_inclusive('\n');
    if lines.next().is_none_or(|first| !first.trim_end().ends_with('{')) {
        return Vec::new();
    }
    let body: Vec<&str> = lines.collect();
    let Some(indent) = body
        .first()
        .map(|line| line.len() - line.trim_start().len())
        .filter(|indent| *indent > 0)
    else {
        return Vec::new();
    };
    let mut fields = Vec::new();
    let mut offset = text.find('\n').map_or(text.len(), |at| at + 1);
    let mut current: Option<(&str, usize)> = None;
    for line in body {
        let start = offset;
        offset += line.len();
        let own_indent = line.len() - line.trim_start().len();
        let is_field = own_indent == indent && line.trim_start().contains(": ");
        if (is_field || own_indent < indent)
            && let Some((name, from)) = current.take()
        {
            fields.push((name, text[from..start].trim_end()));
        }
        if is_field {
            let trimmed = line.trim_start();
            let (name, _) = trimmed.split_once(": ").unwrap_or((trimmed, ""));
            current = Some((name, start + own_indent + name.len() + 2));
        }
    }
    if let Some((name, from)) = current {
        fields.push((name, text[from..].trim_end()));
    }
    fields
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
    /// The table and totals Lightning prints at the start of `fit` (`_format_summary_table`,
    /// without the FLOPs column).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.layers.is_empty() {
            let rows: Vec<[String; 5]> = self
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let mode = if l.training { "train" } else { "eval" };
                    [
                        i.to_string(),
                        l.name.clone(),
                        l.kind.clone(),
                        human_count(l.params),
                        mode.to_string(),
                    ]
                })
                .collect();
            let header = [" ", "Name", "Type", "Params", "Mode"];
            let widths: Vec<usize> = (0..header.len())
                .map(|c| {
                    rows.iter()
                        .map(|r| r[c].chars().count())
                        .chain([header[c].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: [&str; 5]| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(cell, width)| format!("{cell:<width$}"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            };
            // Lightning's rule: the columns' widths and 3 per column, plus one more 3.
            let rule = "-".repeat(widths.iter().sum::<usize>() + 3 * (header.len() + 1));
            writeln!(f, "{}", line(header))?;
            writeln!(f, "{rule}")?;
            for row in &rows {
                writeln!(f, "{}", line([&row[0], &row[1], &row[2], &row[3], &row[4]]))?;
            }
            writeln!(f, "{rule}")?;
        }
        writeln!(f, "{:<10}Trainable params", human_count(self.trainable_params))?;
        writeln!(f, "{:<10}Non-trainable params", human_count(self.non_trainable_params))?;
        writeln!(f, "{:<10}Total params", human_count(self.total_params()))?;
        writeln!(
            f,
            "{:<10}Total estimated model params size (MB)",
            format!("{:.3}", self.size_mb())
        )?;
        writeln!(f, "{:<10}Modules in train mode", self.modules_in_train_mode)?;
        write!(f, "{:<10}Modules in eval mode", self.modules_in_eval_mode)
    }
}

/// Prints the module's summary at the start of `fit` (Lightning's `ModelSummary` callback): its
/// layers down to `max_depth` (default 1), their types, parameter counts and modes, and the
/// totals. Added by default; `enable_model_summary(false)` turns it off.
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

    #[test]
    fn burns_display_names_the_types_of_nested_fields() {
        let text = "Block {\n    inner: Linear {d_input: 1, d_output: 2, bias: true, params: 4}\n    act: Relu\n    deep: Deep {\n      drop: Dropout {prob: 0.5}\n    }\n    params: 4\n  }";
        let fields = displayed_fields(text);
        let names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["inner", "act", "deep", "params"]);
        assert_eq!(fields[1].1, "Relu");
        assert!(
            fields[2].1.starts_with("Deep {\n      drop: Dropout"),
            "{:?}",
            fields[2].1
        );
        assert_eq!(displayed_fields(fields[2].1)[0], ("drop", "Dropout {prob: 0.5}"));
        assert!(displayed_fields("Relu").is_empty());
        assert_eq!(short_type_name("burn_nn::activation::relu::Relu"), "Relu");
        assert_eq!(short_type_name("alloc::vec::Vec<my::Block>"), "Vec");
    }
}
