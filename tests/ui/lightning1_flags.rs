use burn::nn::Linear;
use burn_lightning::prelude::*;

#[lightning_module]
#[derive(Module, Debug)]
pub struct Model {
    layer: Linear,
}

#[lightning_module]
impl Model {}

fn main() {
    // Lightning 1.x flags: each names its Lightning 2 replacement.
    let _ = Trainer::<Model>::builder().gpus(2);
    let _ = Trainer::<Model>::builder().auto_lr_find(true);
    let _ = Trainer::<Model>::builder().resume_from_checkpoint("last.ckpt");
    let _ = Trainer::<Model>::builder().progress_bar_refresh_rate(10);
    let _ = Trainer::<Model>::builder().weights_summary("full");
    let _ = Trainer::<Model>::builder().terminate_on_nan(true);
    let _ = Trainer::<Model>::builder().amp_backend("apex");
    let _ = Trainer::<Model>::builder().flush_logs_every_n_steps(100);
    let _ = Trainer::<Model>::builder().distributed_backend("ddp");
    let _ = TrainerConfig::default().tpu_cores(8);
}
