//! [`GradientNormMonitor`]: the callback behind the `track_grad_norm` flag of Lightning 1.x,
//! which logs [`grad_norm`](crate::optim::grad_norm()).

use crate::hooks::{Callback, LightningModule};
use crate::optim::{Gradients, Optimizer, grad_norm};
use crate::{Error, StepContext};

/// Logs [`grad_norm`](crate::optim::grad_norm()) of the module's gradients in `on_before_optimizer_step`, on the steps
/// whose values reach the loggers (every `log_every_n_steps`) and only then: other steps
/// compute nothing. Added by `Trainer::builder().track_grad_norm(p)` (the flag of Lightning
/// 1.x, which logged the same keys), or as a callback.
#[derive(Clone, Debug)]
pub struct GradientNormMonitor {
    norm_type: f64,
}

impl GradientNormMonitor {
    /// Logs the `norm_type`-norms (2.0 for the Euclidean norm, `f64::INFINITY` for the largest
    /// absolute value). A `norm_type` that is not positive is an error when the trainer is built.
    pub fn new(norm_type: f64) -> Self {
        Self { norm_type }
    }

    pub(crate) fn check(norm_type: f64) -> Result<(), Error> {
        if norm_type.is_nan() || norm_type <= 0.0 {
            return Err(Error::config(
                "track_grad_norm",
                format!(
                    "{norm_type} is not a norm: use a positive number (2.0 for the Euclidean norm) or f64::INFINITY"
                ),
            ));
        }
        Ok(())
    }
}

impl<M: LightningModule> Callback<M> for GradientNormMonitor {
    fn on_before_optimizer_step(
        &mut self,
        module: &mut M,
        _optimizer: &Optimizer,
        grads: &Gradients,
        cx: &mut StepContext<'_>,
    ) {
        if !cx.logs_this_step() || grads.is_empty() {
            return;
        }
        match grad_norm(module, grads, self.norm_type) {
            Ok(norms) => cx.log_dict(norms),
            Err(e) => cx.fail(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_norm_type_that_is_not_positive_is_an_error_naming_the_flag() {
        for p in [0.0, -2.0, f64::NAN] {
            let error = GradientNormMonitor::check(p).unwrap_err().to_string();
            assert!(
                error.contains("track_grad_norm") && error.contains("positive"),
                "{error}"
            );
        }
        assert!(GradientNormMonitor::check(2.0).is_ok());
    }
}
