//! Reading the fixtures `scripts/optim_fixtures.py` writes: weights as torch holds them, data,
//! and comparisons with what the Rust side computed.

use burn::module::Param;
use burn::nn::{BatchNorm, BatchNormConfig, LayerNorm, LayerNormConfig, Linear};
use burn_lightning::JsonValue;
use burn_lightning::prelude::*;

/// `tests/fixtures/{name}`, parsed.
pub fn load(name: &str) -> JsonValue {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A JSON list of numbers.
pub fn vector(value: &JsonValue) -> Vec<f32> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

/// A JSON list of rows: the values row after row, and `[rows, columns]`.
pub fn matrix(value: &JsonValue) -> (Vec<f32>, [usize; 2]) {
    let rows = value.as_array().unwrap();
    let columns = rows[0].as_array().unwrap().len();
    (rows.iter().flat_map(vector).collect(), [rows.len(), columns])
}

/// A JSON list of rows as a tensor.
pub fn tensor2(value: &JsonValue, device: &Device) -> Tensor<2> {
    let (values, shape) = matrix(value);
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn param1(value: &JsonValue, device: &Device) -> Param<Tensor<1>> {
    let values = vector(value);
    let n = values.len();
    Param::from_tensor(Tensor::from_data(TensorData::new(values, [n]), device))
}

/// torch's `[out, in]` matrix as burn's `[in, out]`.
pub fn transposed(value: &JsonValue) -> Vec<f32> {
    let (values, [rows, columns]) = matrix(value);
    (0..columns)
        .flat_map(|c| (0..rows).map(move |r| (r, c)))
        .map(|(r, c)| values[r * columns + c])
        .collect()
}

/// torch's `nn.Linear` `{prefix}weight` and `{prefix}bias` in `state` as burn's `Linear`.
pub fn linear(state: &JsonValue, prefix: &str, device: &Device) -> Linear {
    let weight = &state[format!("{prefix}weight")];
    let (_, [out, inp]) = matrix(weight);
    Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(transposed(weight), [inp, out]),
            device,
        )),
        bias: Some(param1(&state[format!("{prefix}bias")], device)),
    }
}

/// torch's `nn.LayerNorm` `{prefix}weight` and `{prefix}bias` as burn's `LayerNorm`.
pub fn layer_norm(state: &JsonValue, prefix: &str, device: &Device) -> LayerNorm {
    let gamma = param1(&state[format!("{prefix}weight")], device);
    let mut norm = LayerNormConfig::new(gamma.dims()[0]).init(device);
    norm.gamma = gamma;
    norm.beta = Some(param1(&state[format!("{prefix}bias")], device));
    norm
}

/// torch's `nn.BatchNorm1d` `{prefix}weight` and `{prefix}bias` as burn's `BatchNorm` (fresh
/// running statistics, as torch's).
pub fn batch_norm(state: &JsonValue, prefix: &str, device: &Device) -> BatchNorm {
    let gamma = param1(&state[format!("{prefix}weight")], device);
    let mut norm = BatchNormConfig::new(gamma.dims()[0]).init(device);
    norm.gamma = gamma;
    norm.beta = param1(&state[format!("{prefix}bias")], device);
    norm
}

/// The values of a tensor.
pub fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().try_to_vec().unwrap()
}

/// A burn `Linear`'s weight and bias, laid out as torch's (`[out, in]`), for comparisons.
pub fn torch_linear(layer: &Linear) -> (Vec<f32>, Vec<f32>) {
    let weight = layer.weight.val();
    let [inp, out] = weight.dims();
    let values = values(weight);
    let torch = (0..out)
        .flat_map(|o| (0..inp).map(move |i| (i, o)))
        .map(|(i, o)| values[i * out + o])
        .collect();
    (torch, values_of_bias(layer))
}

fn values_of_bias(layer: &Linear) -> Vec<f32> {
    layer.bias.as_ref().map(|b| values(b.val())).unwrap_or_default()
}

/// Fails unless `actual` and `expected` differ by at most `tolerance` everywhere.
pub fn assert_close(actual: &[f32], expected: &[f32], tolerance: f32, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    let worst = actual
        .iter()
        .zip(expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= tolerance,
        "{what}: off by {worst} (tolerance {tolerance})\n  actual   {actual:?}\n  expected {expected:?}"
    );
}

/// The `TensorBatch` loader of a fixture's inputs and targets, in order, `batch_size` at a time.
pub fn loader(fixture: &JsonValue, inputs: &str, targets: &str, batch_size: usize) -> Loader<TensorBatch> {
    let device = Device::default();
    let x = tensor2(&fixture[inputs], &device);
    let y = tensor2(&fixture[targets], &device);
    TensorDataset::new(x, y).unwrap().loader(batch_size).build().unwrap()
}
