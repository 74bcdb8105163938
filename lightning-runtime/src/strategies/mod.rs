//! Where and how many: the accelerator and devices ([`accelerator`]), data-parallel training in
//! one process ([`ddp`]: the `strategy` flag, shards, replicas) and across processes
//! ([`process_group`]: MPI, feature `mpi`); SLURM's auto-requeue ([`slurm`]).
//!
//! Uses `core` and `optim` (gradients are averaged across ranks); the trainer and the loops use
//! it.

pub mod accelerator;
pub mod ddp;
pub mod process_group;
pub mod slurm;
