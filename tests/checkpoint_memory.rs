//! Loading a checkpoint holds one copy of the file besides the module's weights (format 1 held
//! about three). Alone in its test binary: it reads the process's peak memory.

use burn::nn::{Linear, LinearConfig};
use burn_lightning::prelude::*;

#[lightning_module]
#[derive(Module, Debug)]
pub struct Big {
    layer: Linear,
}

#[lightning_module]
impl Big {}

/// Resident and peak resident memory of this process, in bytes (Linux).
fn memory() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[test]
fn loading_a_checkpoint_holds_one_copy_of_the_file_besides_the_weights() {
    let device = Device::default();
    let inputs = 2048;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.ckpt");
    {
        let big = Big {
            layer: LinearConfig::new(inputs, inputs).init(&device),
        };
        Checkpoint::of_module(&big).unwrap().save(&path).unwrap();
    }
    let file = std::fs::metadata(&path).unwrap().len();
    let weights = (inputs * inputs + inputs) as u64 * 4;
    assert!(file >= weights, "{file} bytes for {weights} bytes of weights");

    // Resets the peak to the current resident size (Linux >= 4.0).
    if std::fs::write("/proc/self/clear_refs", "5").is_err() {
        eprintln!("cannot reset the peak resident size here: not measured");
        return;
    }
    let Some((before, _)) = memory() else {
        eprintln!("no /proc/self/status here: not measured");
        return;
    };
    let target = Big {
        layer: LinearConfig::new(inputs, inputs).init(&device),
    };
    let loaded = Checkpoint::load(&path).unwrap().restore_module(target).unwrap();
    let (_, peak) = memory().unwrap();
    let extra = peak.saturating_sub(before).saturating_sub(weights);
    eprintln!(
        "file {:.1} MB, weights {:.1} MB, peak above them while loading {:.1} MB ({:.2} files)",
        file as f64 / 1e6,
        weights as f64 / 1e6,
        extra as f64 / 1e6,
        extra as f64 / file as f64
    );
    assert!(
        (extra as f64) < 1.3 * file as f64,
        "loading took {extra} bytes besides the {weights} bytes of weights: more than one copy of the {file}-byte file"
    );
    drop(loaded);
}
