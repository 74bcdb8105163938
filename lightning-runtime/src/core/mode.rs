//! Whether a smaller or a larger monitored value is better: read by the checkpointing and
//! early-stopping callbacks and by `ReduceLrOnPlateau`.

/// Whether a smaller or a larger monitored value is better.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    #[default]
    Min,
    Max,
}

impl Mode {
    /// Lightning's `monitor_op` (`torch.lt` or `torch.gt`): false when either side is NaN.
    pub(crate) fn better(self, candidate: f64, best: f64) -> bool {
        match self {
            Mode::Min => candidate < best,
            Mode::Max => candidate > best,
        }
    }

    /// The worst possible score: what a NaN score counts as, and where a best score starts.
    pub(crate) fn worst(self) -> f64 {
        match self {
            Mode::Min => f64::INFINITY,
            Mode::Max => f64::NEG_INFINITY,
        }
    }

    /// Lightning's spelling, in state keys.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Min => "min",
            Mode::Max => "max",
        }
    }

    /// Lightning's `order_dict`, in messages.
    pub(crate) fn order(self) -> &'static str {
        match self {
            Mode::Min => "<",
            Mode::Max => ">",
        }
    }
}
