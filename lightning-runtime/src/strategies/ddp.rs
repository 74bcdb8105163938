//! Lightning's `strategy` flag, and data-parallel training on several devices in one process
//! (`devices(2)`, `strategy("ddp")`).
//!
//! # What runs
//!
//! One global training step with N devices (N ranks):
//!
//! 1. every rank gets its own batch: the training dataloader is cut into N equal, contiguous
//!    shards, one per rank, each building its batches on its rank's device (burn's
//!    `split_dataloader`, with equal shards: the `len % N` items left over are dropped, as
//!    torch's `DistributedSampler(drop_last=True)` does, so every rank has as many batches and
//!    none waits). A shuffled loader shuffles within each shard;
//! 2. ranks 1..N run `training_step` on a fork of the module on their device (the weights are
//!    rank zero's, so every replica is identical), then backward; rank zero runs Lightning's
//!    whole closure (`training_step`, the zero-grad and backward hooks);
//! 3. the gradients are averaged: each rank's gradients are moved to rank zero's device, summed
//!    and divided by N. With each rank's loss the mean over its batch, that is the gradient of
//!    the mean over the global batch, what `DistributedDataParallel`'s all-reduce gives;
//! 4. ONE optimizer step, on rank zero's module; the next step forks the replicas from it
//!    again, so they stay identical (burn-train's `MultiDevice` strategy does the same).
//!
//! Hooks and callbacks run once, on rank zero, as Lightning's rank-zero-only loggers,
//! checkpoints and progress bar do: one metrics row per step, one checkpoint file. The other
//! ranks' `training_step` logs only what it logs with
//! [`LogOptions::sync_dist`](crate::LogOptions::sync_dist()): those values are reduced with rank
//! zero's (by the key's `reduce`, the mean by default, as Lightning's `sync_dist` with its
//! `reduce_fx`); every other value is rank zero's. `global_step` counts the global step once.
//!
//! The replicas run one after another on the loop's thread. On CUDA and wgpu, burn queues the
//! kernels asynchronously, so the devices still compute at the same time; on the CPU (flex,
//! which has a single device) the replicas share it, which checks the arithmetic of data
//! parallelism rather than speeding anything up.
//!
//! # Differences from Lightning, on purpose or not built yet
//!
//! * One process drives every device; Lightning's `ddp` starts one process per device. Several
//!   processes (`mpirun`, `srun`, `num_nodes`) train with the `mpi` feature: see
//!   [`process_group`](crate::strategies::process_group).
//! * Gradients are averaged by copying them to rank zero's device (burn's
//!   `GradientsParams::to_device`), not with NCCL's all-reduce (burn 0.22.1's `all_reduce` is
//!   implemented for CUDA only and could not be tested here).
//! * Validation, test and predict run on rank zero's device over the whole dataloader: the
//!   same values as Lightning's sharded evaluation logged with `sync_dist=True`, without the
//!   items its `DistributedSampler` repeats to pad the last shard.
//! * Manual optimization (and so several optimizers) with several devices is an error of
//!   `build()`, as is `overfit_batches`.

use crate::core::datamodule::Loader;
use crate::{Device, Error};

/// Lightning's `strategy`, parsed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Strategy {
    /// Data-parallel when several devices are asked for, else one device.
    Auto,
    /// Data-parallel on the devices `devices` names (one device is allowed: one replica).
    Ddp,
    /// One device; several is an error.
    SingleDevice,
}

impl Strategy {
    /// The names `strategy` accepts.
    pub(crate) const NAMES: [&'static str; 3] = ["auto", "ddp", "single_device"];

    /// The strategy `name` names, or an error listing the supported ones.
    pub(crate) fn parse(name: &str) -> Result<Self, Error> {
        match name.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Strategy::Auto),
            "ddp" => Ok(Strategy::Ddp),
            "single_device" => Ok(Strategy::SingleDevice),
            other => {
                let why = match other {
                    "ddp_spawn" | "ddp_fork" | "ddp_notebook" | "ddp_find_unused_parameters_true" | "dp" => {
                        "it is a Lightning strategy that is not built here (data parallelism runs every device from one process, as `ddp` here)"
                    }
                    "fsdp" | "deepspeed" | "xla" => "sharded and TPU strategies are not built",
                    _ => "it is not a strategy",
                };
                Err(Error::config(
                    "strategy",
                    format!("`{name}`: {why}; use one of: {}", Strategy::NAMES.join(", ")),
                ))
            }
        }
    }
}

/// Checks `strategy` against the number of devices `ranks`.
pub(crate) fn check_strategy(name: &str, ranks: usize) -> Result<Strategy, Error> {
    let strategy = Strategy::parse(name)?;
    if strategy == Strategy::SingleDevice && ranks > 1 {
        return Err(Error::config(
            "strategy",
            format!(
                "\"single_device\" runs on one device, but `devices` names {ranks}; use `strategy(\"ddp\")` (or \
                 \"auto\") to train on all of them, or `devices(1)`"
            ),
        ));
    }
    Ok(strategy)
}

/// The training dataloader of every rank: `loader` cut into `devices.len()` equal, contiguous
/// shards (`len % N` items dropped), each building its batches on its rank's device.
pub(crate) fn shard_loader<B>(loader: &Loader<B>, devices: &[Device]) -> Result<Vec<Loader<B>>, Error> {
    let ranks = devices.len();
    let items = loader.num_items();
    let per_rank = items / ranks;
    if per_rank == 0 {
        return Err(Error::config(
            "devices",
            format!(
                "the training dataloader holds {items} items, fewer than the {ranks} devices it is shared among; \
                 give it at least {ranks} items or use fewer devices"
            ),
        ));
    }
    Ok(devices
        .iter()
        .enumerate()
        .map(|(rank, device)| loader.slice(rank * per_rank, (rank + 1) * per_rank).to_device(device))
        .collect())
}

/// Rank `rank`'s shard of `loader` when `world_size` processes share it (the arithmetic of
/// [`shard_loader`]: equal, contiguous shards, `len % world_size` items dropped).
pub(crate) fn process_shard<B>(loader: &Loader<B>, rank: usize, world_size: usize) -> Result<Loader<B>, Error> {
    let items = loader.num_items();
    let per_rank = items / world_size;
    if per_rank == 0 {
        return Err(Error::config(
            "num_nodes",
            format!(
                "the training dataloader holds {items} items, fewer than the {world_size} processes it is shared                  among; give it at least {world_size} items or start fewer processes"
            ),
        ));
    }
    Ok(loader.slice(rank * per_rank, (rank + 1) * per_rank))
}

/// The batches of ranks 1.. for one training step (each already on its rank's device), handed
/// to the optimizer closure.
pub(crate) struct ReplicaBatches<B> {
    /// Each rank's batch with its rank's device (with autodiff), rank 1 first.
    pub(crate) batches: Vec<(B, Device)>,
    /// Rank zero's device without autodiff: where the gradients are averaged.
    pub(crate) main_device: Device,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_or_unbuilt_strategy_lists_the_supported_ones() {
        for name in ["ddp_spawn", "fsdp", "bogus"] {
            let message = Strategy::parse(name).unwrap_err().to_string();
            assert!(message.contains("`strategy`") && message.contains(name), "{message}");
            for supported in Strategy::NAMES {
                assert!(message.contains(supported), "{message}");
            }
        }
        assert_eq!(Strategy::parse("DDP").unwrap(), Strategy::Ddp);
        let message = check_strategy("single_device", 2).unwrap_err().to_string();
        assert!(message.contains("`strategy`"), "{message}");
    }
}
