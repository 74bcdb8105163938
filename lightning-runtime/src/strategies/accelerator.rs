//! Lightning's `accelerator` and `devices` flags mapped to burn devices, and what
//! `deterministic` can promise on each backend.
//!
//! burn 0.22 chooses the backend with a runtime [`Device`]; which backends exist is decided at
//! compile time by this crate's cargo features (`flex`, `wgpu`, `cuda`, `tch`). An accelerator
//! whose feature was not compiled in is an error of `build()` naming the feature to enable.
//! Several devices train data-parallel ([`crate::strategies::ddp`]); asking for more than exist is an
//! error saying how many exist.

use crate::{Device, Error};

/// The hardware to train on (Lightning's `accelerator`): `"auto"`, `"cpu"`, `"gpu"`, `"cuda"`,
/// `"wgpu"` or `"tch"`. Built from a string; an unknown name is an error of `build()` that lists
/// the valid ones.
#[derive(Clone, PartialEq, Eq, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Accelerator {
    /// burn's default device for the compiled-in backends (CUDA, then wgpu, then LibTorch, then
    /// Flex; the `BURN_DEVICE` environment variable overrides the choice).
    #[default]
    Auto,
    /// The CPU: burn's pure-Rust `flex` backend (`Device::flex()`).
    Cpu,
    /// A GPU: CUDA when the `cuda` feature is compiled in, else wgpu.
    Gpu,
    /// An NVIDIA GPU through CubeCL (`Device::cuda(i)`; feature `cuda`).
    Cuda,
    /// A GPU through wgpu (Vulkan, Metal, DirectX or WebGPU; `Device::wgpu(..)`; feature `wgpu`).
    Wgpu,
    /// LibTorch (feature `tch`): its CPU device, or its CUDA device `i` when `devices` names one.
    Tch,
    #[doc(hidden)]
    Unknown(String),
}

impl Accelerator {
    /// The names `accelerator` accepts.
    pub const NAMES: [&'static str; 6] = ["auto", "cpu", "gpu", "cuda", "wgpu", "tch"];

    /// The name this accelerator is given by.
    pub fn as_str(&self) -> &str {
        match self {
            Accelerator::Auto => "auto",
            Accelerator::Cpu => "cpu",
            Accelerator::Gpu => "gpu",
            Accelerator::Cuda => "cuda",
            Accelerator::Wgpu => "wgpu",
            Accelerator::Tch => "tch",
            Accelerator::Unknown(name) => name,
        }
    }
}

impl From<&str> for Accelerator {
    fn from(name: &str) -> Self {
        match name.trim().to_ascii_lowercase().as_str() {
            "auto" => Accelerator::Auto,
            "cpu" | "flex" => Accelerator::Cpu,
            "gpu" => Accelerator::Gpu,
            "cuda" => Accelerator::Cuda,
            "wgpu" => Accelerator::Wgpu,
            "tch" | "libtorch" => Accelerator::Tch,
            _ => Accelerator::Unknown(name.to_string()),
        }
    }
}

impl From<String> for Accelerator {
    fn from(name: String) -> Self {
        Accelerator::from(name.as_str())
    }
}

impl From<Accelerator> for String {
    fn from(accelerator: Accelerator) -> Self {
        accelerator.as_str().to_string()
    }
}

impl std::fmt::Display for Accelerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which devices of the accelerator to use (Lightning's `devices`): `"auto"`, a count (`1`; `-1`
/// for all), or indices (`[0]`, `vec![1]`, or the string `"1,"`; a plain `"2"` is a count, as in
/// Lightning). Several devices train data-parallel (see [`crate::strategies::ddp`]).
#[derive(Clone, PartialEq, Eq, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(from = "DevicesForm", into = "DevicesForm")]
pub enum Devices {
    /// One device: the accelerator's first (or burn's default).
    #[default]
    Auto,
    /// This many devices; `-1` means all of them.
    Count(i64),
    /// These device indices.
    Indices(Vec<usize>),
    #[doc(hidden)]
    Invalid(String),
}

impl From<usize> for Devices {
    fn from(count: usize) -> Self {
        Devices::Count(i64::try_from(count).unwrap_or(i64::MAX))
    }
}

impl From<i32> for Devices {
    fn from(count: i32) -> Self {
        Devices::Count(count.into())
    }
}

impl From<Vec<usize>> for Devices {
    fn from(indices: Vec<usize>) -> Self {
        Devices::Indices(indices)
    }
}

impl<const N: usize> From<[usize; N]> for Devices {
    fn from(indices: [usize; N]) -> Self {
        Devices::Indices(indices.to_vec())
    }
}

impl From<&str> for Devices {
    /// Lightning's parsing: `"auto"`, `"-1"` (all), `"2"` (a count), `"0,"` or `"0,1"` (indices).
    fn from(text: &str) -> Self {
        let text = text.trim();
        if text.eq_ignore_ascii_case("auto") {
            return Devices::Auto;
        }
        if !text.contains(',') {
            return text
                .parse::<i64>()
                .map_or_else(|_| Devices::Invalid(text.to_string()), Devices::Count);
        }
        let indices: Result<Vec<usize>, _> = text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(str::parse::<usize>)
            .collect();
        indices.map_or_else(|_| Devices::Invalid(text.to_string()), Devices::Indices)
    }
}

impl From<String> for Devices {
    fn from(text: String) -> Self {
        Devices::from(text.as_str())
    }
}

/// How `devices` is written in a config file: `1`, `[0]` or `"auto"` / `"0,"`.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum DevicesForm {
    Count(i64),
    Indices(Vec<usize>),
    Text(String),
}

impl From<DevicesForm> for Devices {
    fn from(form: DevicesForm) -> Self {
        match form {
            DevicesForm::Count(n) => Devices::Count(n),
            DevicesForm::Indices(indices) => Devices::Indices(indices),
            DevicesForm::Text(text) => Devices::from(text),
        }
    }
}

impl From<Devices> for DevicesForm {
    fn from(devices: Devices) -> Self {
        match devices {
            Devices::Auto => DevicesForm::Text("auto".into()),
            Devices::Count(n) => DevicesForm::Count(n),
            Devices::Indices(indices) => DevicesForm::Indices(indices),
            Devices::Invalid(text) => DevicesForm::Text(text),
        }
    }
}

/// What `devices` asks for, once checked.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum DeviceRequest {
    /// `"auto"`: one device, the accelerator's first.
    Auto,
    /// `-1`: every device of the accelerator.
    All,
    /// This many devices (at least 1): the accelerator's first ones.
    Count(usize),
    /// These device indices, none twice.
    Indices(Vec<usize>),
}

/// What `devices` asks for, or an error naming what to change.
pub(crate) fn validate_devices(devices: &Devices) -> Result<DeviceRequest, Error> {
    match devices {
        Devices::Auto => Ok(DeviceRequest::Auto),
        Devices::Count(-1) => Ok(DeviceRequest::All),
        Devices::Count(n) if *n >= 1 => Ok(DeviceRequest::Count(usize::try_from(*n).unwrap_or(usize::MAX))),
        Devices::Count(n) => Err(Error::config(
            "devices",
            format!("{n} devices is not a number of devices; use 1 or more, -1 for all, \"auto\", or indices like [0]"),
        )),
        Devices::Indices(indices) => {
            if indices.is_empty() {
                return Err(Error::config(
                    "devices",
                    "an empty list of devices runs nowhere; name one index, like [0]",
                ));
            }
            if let Some((i, index)) = indices
                .iter()
                .enumerate()
                .find(|(i, index)| indices[..*i].contains(index))
            {
                return Err(Error::config(
                    "devices",
                    format!(
                        "{indices:?} names device {index} twice (at positions {} and {i}); name each device once",
                        indices.iter().position(|other| other == index).unwrap_or(0)
                    ),
                ));
            }
            Ok(DeviceRequest::Indices(indices.clone()))
        }
        Devices::Invalid(text) => Err(Error::config(
            "devices",
            format!(
                "`{text}` is not a device count or list; use \"auto\", a count (1, -1 for all), or indices (\"0,\" or [0])"
            ),
        )),
    }
}

/// The device `accelerator` and `devices` name (the first, with several devices); `None` when
/// both are left to `auto` (burn's default device).
#[cfg(test)]
pub(crate) fn resolve_device(accelerator: &Accelerator, devices: &Devices) -> Result<Option<Device>, Error> {
    resolve_devices(accelerator, devices).map(|devices| devices.and_then(|devices| devices.into_iter().next()))
}

/// The devices `accelerator` and `devices` name, one per rank of data-parallel training (see
/// [`crate::strategies::ddp`]); `None` when both are left to `auto` (burn's default device). Asking
/// for more devices than exist is an error saying how many exist; nothing waits on a device.
pub(crate) fn resolve_devices(accelerator: &Accelerator, devices: &Devices) -> Result<Option<Vec<Device>>, Error> {
    let request = validate_devices(devices)?;
    // `-1` without a GPU backend is the one default device.
    let one_default = matches!(request, DeviceRequest::Auto | DeviceRequest::Count(1))
        || (request == DeviceRequest::All && !cfg!(any(feature = "cuda", feature = "wgpu")));
    match accelerator {
        Accelerator::Auto if one_default => Ok(None),
        Accelerator::Auto | Accelerator::Gpu => {
            if cfg!(feature = "cuda") {
                resolve_devices(&Accelerator::Cuda, devices)
            } else if cfg!(feature = "wgpu") {
                resolve_devices(&Accelerator::Wgpu, devices)
            } else if *accelerator == Accelerator::Auto {
                // Lightning's `auto` with no GPU: the CPU.
                resolve_devices(&Accelerator::Cpu, devices)
            } else {
                Err(missing_feature(accelerator, "cuda` or `wgpu"))
            }
        }
        Accelerator::Cpu => cpu_devices(&request).map(Some),
        Accelerator::Cuda => cuda_devices(&request).map(Some),
        Accelerator::Wgpu => wgpu_devices(&request).map(Some),
        Accelerator::Tch => tch_devices(&request).map(Some),
        Accelerator::Unknown(name) => Err(Error::config(
            "accelerator",
            format!(
                "`{name}` is not an accelerator; use one of: {}",
                Accelerator::NAMES.join(", ")
            ),
        )),
    }
}

fn missing_feature(accelerator: &Accelerator, feature: &str) -> Error {
    Error::config(
        "accelerator",
        format!(
            "`{accelerator}` needs a backend that was not compiled in; enable the cargo feature `{feature}` of \
             burn-lightning (for example `cargo run --features {}`)",
            feature.split('`').next().unwrap_or(feature)
        ),
    )
}

/// The indices `request` names among `count` devices of `kind` (`count` is asked for only when
/// needed: more than one device, or `-1`), or an error saying how many exist.
#[cfg_attr(not(any(feature = "cuda", feature = "wgpu")), allow(dead_code))]
fn device_indices(request: &DeviceRequest, kind: &str, count: impl FnOnce() -> usize) -> Result<Vec<usize>, Error> {
    let (wanted, highest) = match request {
        DeviceRequest::Auto | DeviceRequest::Count(1) => return Ok(vec![0]),
        DeviceRequest::Indices(indices) if indices.len() == 1 => return Ok(indices.clone()),
        DeviceRequest::All => {
            let count = count();
            return if count == 0 {
                Err(Error::config(
                    "devices",
                    format!("-1 asks for every {kind} device, and none was found"),
                ))
            } else {
                Ok((0..count).collect())
            };
        }
        DeviceRequest::Count(n) => ((0..*n).collect::<Vec<_>>(), n - 1),
        DeviceRequest::Indices(indices) => (indices.clone(), indices.iter().copied().max().unwrap_or(0)),
    };
    let count = count();
    if highest >= count {
        return Err(Error::config(
            "devices",
            format!(
                "{} asks for {kind} device{} up to index {highest}, but {count} exist{}; use at most `devices({count})`",
                match request {
                    DeviceRequest::Count(n) => format!("{n} devices"),
                    _ => format!("{wanted:?}"),
                },
                if wanted.len() > 1 { "s" } else { "" },
                if count == 1 { "s" } else { "" },
            ),
        ));
    }
    Ok(wanted)
}

/// The CPU is one flex device; `devices(N)` trains N replicas on it (data parallelism whose
/// arithmetic is that of N devices; see [`crate::strategies::ddp`]).
fn cpu_devices(request: &DeviceRequest) -> Result<Vec<Device>, Error> {
    let replicas = match request {
        DeviceRequest::Auto | DeviceRequest::All => 1,
        DeviceRequest::Count(n) => *n,
        DeviceRequest::Indices(indices) => {
            if let Some(index) = indices.iter().find(|&&i| i > 0) {
                return Err(Error::config(
                    "devices",
                    format!(
                        "the CPU has one device, index 0, not {index}; use `devices(1)`, or `devices(N)` for N \
                         data-parallel replicas on it"
                    ),
                ));
            }
            1
        }
    };
    #[cfg(feature = "flex")]
    {
        Ok(vec![Device::flex(); replicas])
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = replicas;
        Err(missing_feature(&Accelerator::Cpu, "flex"))
    }
}

#[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
fn cuda_devices(request: &DeviceRequest) -> Result<Vec<Device>, Error> {
    #[cfg(feature = "cuda")]
    {
        let count = || Device::enumerate(burn::tensor::DeviceType::Cuda).into_vec().len();
        Ok(device_indices(request, "CUDA", count)?
            .into_iter()
            .map(Device::cuda)
            .collect())
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err(missing_feature(&Accelerator::Cuda, "cuda"))
    }
}

#[cfg_attr(not(feature = "wgpu"), allow(unused_variables))]
fn wgpu_devices(request: &DeviceRequest) -> Result<Vec<Device>, Error> {
    #[cfg(feature = "wgpu")]
    {
        use burn::tensor::DeviceKind;
        if matches!(request, DeviceRequest::Auto | DeviceRequest::Count(1)) {
            return Ok(vec![Device::wgpu(DeviceKind::DefaultDevice)]);
        }
        let count = || Device::enumerate(burn::tensor::DeviceType::Wgpu).into_vec().len();
        Ok(device_indices(request, "wgpu", count)?
            .into_iter()
            .map(|i| Device::wgpu(DeviceKind::DiscreteGpu(i)))
            .collect())
    }
    #[cfg(not(feature = "wgpu"))]
    {
        Err(missing_feature(&Accelerator::Wgpu, "wgpu"))
    }
}

#[cfg_attr(not(feature = "tch"), allow(unused_variables))]
fn tch_devices(request: &DeviceRequest) -> Result<Vec<Device>, Error> {
    #[cfg(feature = "tch")]
    #[allow(deprecated)] // burn deprecates LibTorch but still ships it; the feature is opt-in.
    {
        match request {
            DeviceRequest::Auto | DeviceRequest::Count(1) | DeviceRequest::All => Ok(vec![Device::libtorch()]),
            DeviceRequest::Indices(indices) if indices.len() == 1 => Ok(vec![Device::libtorch_cuda(indices[0])]),
            _ => Err(Error::config(
                "devices",
                "several LibTorch devices are not built (burn cannot count LibTorch's GPUs); use \
                 `accelerator(\"cuda\")` for data-parallel training on several GPUs, or one device",
            )),
        }
    }
    #[cfg(not(feature = "tch"))]
    {
        Err(missing_feature(&Accelerator::Tch, "tch"))
    }
}

/// The backend a device runs on, as burn names it (`Flex`, `Cube(Cuda(..))`, `LibTorch(Cpu)`).
fn backend_name(device: &Device) -> String {
    format!("{:?}", device.clone().without_autodiff().as_dispatch())
}

/// What `deterministic(true)` can promise on `device`, or an error naming the backend.
///
/// * Flex (the CPU): every kernel is deterministic for a given number of rayon threads: matrix
///   products split the output, never the sum over the inner dimension, and element-wise ops
///   are independent. The one exception in burn-flex 0.22.1 is the sum of a whole contiguous f32
///   tensor of 4M elements or more, which rayon reduces in an order that depends on scheduling;
///   with `RAYON_NUM_THREADS=1` that too is fixed.
/// * CUDA and wgpu (CubeCL): kernels are picked by autotuning (timing the candidates) and some
///   reductions accumulate with atomics, so two runs may differ in the last bits: an error.
/// * LibTorch: torch's `use_deterministic_algorithms` is not reachable through burn-tch, so
///   only its CPU device is accepted (torch's CPU kernels are deterministic but for a few
///   scatter/index operations burn does not use in training); CUDA is an error.
pub(crate) fn check_deterministic(device: &Device) -> Result<(), Error> {
    let backend = backend_name(device);
    let refuse = |why: &str| {
        Err(Error::config(
            "deterministic",
            format!(
                "the device `{backend}` cannot promise bit-identical runs: {why}; use the CPU (`accelerator(\"cpu\")`) \
                 or set `deterministic(false)`"
            ),
        ))
    };
    if backend.starts_with("Flex") {
        Ok(())
    } else if backend.starts_with("LibTorch") {
        if backend.contains("Cpu") {
            Ok(())
        } else {
            refuse("torch's `use_deterministic_algorithms` is not reachable through burn-tch")
        }
    } else if backend.starts_with("Cube") {
        refuse("burn's CubeCL kernels are chosen by autotuning and some reductions use atomics")
    } else {
        refuse("its backend's determinism is not known")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_as_lightning_does() {
        assert_eq!(Devices::from("auto"), Devices::Auto);
        assert_eq!(Devices::from("2"), Devices::Count(2));
        assert_eq!(Devices::from("-1"), Devices::Count(-1));
        assert_eq!(Devices::from("1,"), Devices::Indices(vec![1]));
        assert_eq!(Devices::from("0, 1"), Devices::Indices(vec![0, 1]));
        assert!(matches!(Devices::from("zero"), Devices::Invalid(_)));
    }

    #[test]
    fn both_read_and_write_as_lightning_configs_do() {
        let devices: Vec<Devices> = serde_json::from_str(r#"[1, [0], "auto", "1,", -1]"#).unwrap();
        assert_eq!(
            devices,
            [
                Devices::Count(1),
                Devices::Indices(vec![0]),
                Devices::Auto,
                Devices::Indices(vec![1]),
                Devices::Count(-1)
            ]
        );
        assert_eq!(serde_json::to_string(&devices).unwrap(), r#"[1,[0],"auto",[1],-1]"#);
        let accelerator: Accelerator = serde_json::from_str(r#""CUDA""#).unwrap();
        assert_eq!(accelerator, Accelerator::Cuda);
        assert_eq!(serde_json::to_string(&accelerator).unwrap(), r#""cuda""#);
    }

    #[test]
    fn several_devices_are_data_parallel_replicas_and_bad_counts_name_the_flag() {
        assert_eq!(validate_devices(&Devices::Count(2)).unwrap(), DeviceRequest::Count(2));
        assert_eq!(
            validate_devices(&Devices::Indices(vec![0, 1])).unwrap(),
            DeviceRequest::Indices(vec![0, 1])
        );
        for devices in [
            Devices::Count(0),
            Devices::Count(-2),
            Devices::Indices(vec![]),
            Devices::Indices(vec![1, 1]),
        ] {
            let message = validate_devices(&devices).unwrap_err().to_string();
            assert!(message.contains("`devices`"), "{devices:?}: {message}");
        }
        // More devices than exist: an error saying how many exist.
        let message = device_indices(&DeviceRequest::Count(3), "CUDA", || 2)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("`devices`") && message.contains("2 exist") && message.contains("devices(2)"),
            "{message}"
        );
        let message = device_indices(&DeviceRequest::Indices(vec![0, 4]), "CUDA", || 2)
            .unwrap_err()
            .to_string();
        assert!(message.contains("index 4") && message.contains("2 exist"), "{message}");
        assert_eq!(device_indices(&DeviceRequest::All, "CUDA", || 3).unwrap(), [0, 1, 2]);
        assert_eq!(
            device_indices(&DeviceRequest::Indices(vec![1, 0]), "CUDA", || 2).unwrap(),
            [1, 0]
        );
    }

    #[cfg(feature = "flex")]
    #[test]
    fn the_cpu_runs_n_replicas_on_its_one_device() {
        let devices = resolve_devices(&Accelerator::Cpu, &Devices::Count(3)).unwrap().unwrap();
        assert_eq!(devices, vec![Device::flex(); 3]);
        let message = resolve_devices(&Accelerator::Cpu, &Devices::Indices(vec![0, 1]))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("`devices`") && message.contains("one device"),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_accelerator_lists_the_valid_ones() {
        let message = resolve_device(&Accelerator::from("tpu"), &Devices::Auto)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("`accelerator`") && message.contains("tpu"),
            "{message}"
        );
        for name in Accelerator::NAMES {
            assert!(message.contains(name), "{message}");
        }
    }

    #[cfg(feature = "flex")]
    #[test]
    fn cpu_is_flex_and_deterministic() {
        let device = resolve_device(&Accelerator::Cpu, &Devices::from("0,"))
            .unwrap()
            .unwrap();
        assert_eq!(device, Device::flex());
        check_deterministic(&device).unwrap();
        check_deterministic(&device.autodiff()).unwrap();
        let message = resolve_device(&Accelerator::Cpu, &Devices::Indices(vec![1]))
            .unwrap_err()
            .to_string();
        assert!(message.contains("`devices`"), "{message}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_backend_not_compiled_in_names_its_feature() {
        let message = resolve_device(&Accelerator::Cuda, &Devices::Auto)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("`accelerator`") && message.contains("feature `cuda`"),
            "{message}"
        );
    }
}
