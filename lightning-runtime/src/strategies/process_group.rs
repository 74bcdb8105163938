//! Data-parallel training across processes and machines (Lightning's `num_nodes`, launched by
//! `mpirun` or `srun`), with MPI as the collective layer: cargo feature `mpi`.
//!
//! # What runs
//!
//! Under a launcher that starts W > 1 processes (`mpirun -np W`, `srun --ntasks W`), every
//! process is one rank of MPI's world; [`TrainerBuilder::build`](crate::TrainerBuilder::build)
//! joins the world (MPI is initialized once per process, finalized when it exits):
//!
//! * W must equal `devices * num_nodes` (Lightning's rule: `devices` processes per node), with
//!   `devices("auto")` meaning `W / num_nodes`. Every rank checks, with an all-gather of a hash
//!   of `devices`, `num_nodes`, `strategy` and W, that all ranks were given the same flags: a
//!   mismatch is an error on every rank, naming the flags. Each process trains on one device:
//!   its accelerator's device number `local rank % devices` (the launcher's
//!   `OMPI_COMM_WORLD_LOCAL_RANK` / `SLURM_LOCALID`);
//! * rank r of W trains on the r-th of W equal, contiguous shards of the training dataloader
//!   (the arithmetic of [`strategy`](crate::strategies::ddp): `len % W` items dropped);
//! * at each optimizer step, the gradients (every parameter's, flattened into one host `f32`
//!   buffer) are summed across ranks with one `MPI_Allreduce` and divided by W, so every rank
//!   applies the same mean gradient and the weights stay identical without being sent;
//! * values logged with `sync_dist` in training are reduced across ranks (by their `reduce`);
//!   in validation, test and predict every rank already sees the whole dataloader, so they are
//!   not (a `Reduce::Sum` is not counted W times);
//! * at the end of each training batch, one scalar all-reduce says whether a checkpoint taken in
//!   it (on rank zero) waits for what the ranks accumulated of the epoch; if so, their metric
//!   objects' states and `cx.log` accumulators are all-gathered into it, so that each rank of a
//!   resume goes on from its own;
//! * loggers, checkpoints, the progress bar, the model summary, `report.html` and the run
//!   directory exist on rank zero only: the other ranks write nothing. `fit_from(path)` reads
//!   the same checkpoint file on every rank (it must be visible to every node);
//! * validation, test and predict run on every rank over the whole dataloader (the weights are
//!   identical, so are the values, and with them `EarlyStopping`'s and `ModelCheckpoint`'s
//!   decisions).
//!
//! # A rank that dies or hangs
//!
//! A collective waits for every rank. Each one here is guarded by a watchdog thread: a rank
//! that waits longer than `BURN_LIGHTNING_MPI_TIMEOUT` seconds (default 300) prints which rank
//! timed out in which collective and aborts the whole job (`MPI_Abort`). A rank that exits
//! (crashes, or returns an error) is also noticed by `mpirun`, which then ends the others.
//! Every rank must run the same collectives in the same order: a `sync_dist` log call that only
//! some ranks make, or a `max_time` that ends one rank's fit earlier than another's, stalls the
//! others until the watchdog fires.
//!
//! # Differences from Lightning
//!
//! * `on_after_backward` sees the rank's own gradients; `on_before_optimizer_step`, clipping and
//!   the optimizer see the mean across ranks (DDP's all-reduce runs during backward).
//! * Gradients travel through host memory (`f32`), not NCCL; fine for the CPU and for tests,
//!   slow for large models on GPUs.
//! * Manual optimization and `overfit_batches` are errors under several processes, as with
//!   several devices in one process.
//! * Only tried on one machine with 2 processes (Open MPI 4.1 from Debian).

use crate::Error;

/// The environment variables by which launchers give the number of processes (Open MPI, MPICH
/// and Intel MPI's PMI, SLURM's `srun`).
const WORLD_SIZE_VARIABLES: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"];

/// The number of processes a launcher started this one among, and the variable that says so;
/// `None` outside a launcher or with a single process.
pub fn launcher_world_size() -> Option<(usize, &'static str)> {
    world_size_in(|name| std::env::var(name).ok())
}

/// [`launcher_world_size`] from the variables `lookup` gives.
fn world_size_in(lookup: impl Fn(&str) -> Option<String>) -> Option<(usize, &'static str)> {
    WORLD_SIZE_VARIABLES.iter().find_map(|&name| {
        let size: usize = lookup(name)?.trim().parse().ok()?;
        (size > 1).then_some((size, name))
    })
}

#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
/// The flags every rank must agree on, hashed (FNV-1a, stable across processes and builds).
fn config_hash(devices: &crate::Devices, num_nodes: usize, strategy: &str, world_size: usize) -> u64 {
    let text = format!(
        "{devices:?}|{num_nodes}|{}|{world_size}",
        strategy.trim().to_ascii_lowercase()
    );
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
/// How many processes per node `devices` asks for under a launcher of `world_size` processes
/// on `num_nodes` nodes, or an error naming the flags to change.
fn processes_per_node(devices: &crate::Devices, num_nodes: usize, world_size: usize) -> Result<usize, Error> {
    let per_node = match devices {
        crate::Devices::Auto | crate::Devices::Count(-1) => world_size / num_nodes,
        crate::Devices::Count(count) => usize::try_from(*count).unwrap_or(0),
        crate::Devices::Indices(indices) => indices.len(),
        crate::Devices::Invalid(_) => 0,
    };
    if per_node == 0 || per_node * num_nodes != world_size {
        let devices = match devices {
            crate::Devices::Auto => "\"auto\"".to_string(),
            crate::Devices::Count(count) => count.to_string(),
            crate::Devices::Indices(indices) => format!("{indices:?}"),
            crate::Devices::Invalid(text) => format!("{text:?}"),
        };
        return Err(Error::config(
            "num_nodes",
            format!(
                "the launcher started {world_size} processes, but `devices` ({devices}) times `num_nodes` \
                 ({num_nodes}) is {}; start `devices * num_nodes` processes (`mpirun -np {}`) or set `devices` and \
                 `num_nodes` so that their product is {world_size}",
                per_node * num_nodes,
                per_node.max(1) * num_nodes,
            ),
        ));
    }
    Ok(per_node)
}

/// This process's place in a multi-process run: its rank, the number of ranks, and the MPI
/// world the collectives run in. Only built with the `mpi` feature under a launcher.
pub struct ProcessGroup {
    /// Rank of this process (Lightning's `global_rank`).
    pub rank: usize,
    /// Number of processes (Lightning's `world_size`).
    pub world_size: usize,
    /// Rank of this process on its node (Lightning's `local_rank`).
    pub local_rank: usize,
    #[cfg(feature = "mpi")]
    inner: mpi_world::World,
    #[cfg(not(feature = "mpi"))]
    _never: std::convert::Infallible,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .finish()
    }
}

/// The process group of this process, when a launcher started several; checks that W equals
/// `devices * num_nodes` and that every rank has the same flags. Returns the group and the
/// index of this process's device among `devices`' (its local rank modulo the processes per
/// node). Without the `mpi` feature, a launch of several processes is an error.
pub(crate) fn join(
    devices: &crate::Devices,
    num_nodes: usize,
    strategy: &str,
) -> Result<Option<(std::sync::Arc<ProcessGroup>, usize)>, Error> {
    join_launched(launcher_world_size(), devices, num_nodes, strategy)
}

/// [`join`], with what the launcher said.
fn join_launched(
    launched: Option<(usize, &'static str)>,
    devices: &crate::Devices,
    num_nodes: usize,
    strategy: &str,
) -> Result<Option<(std::sync::Arc<ProcessGroup>, usize)>, Error> {
    if num_nodes == 0 {
        return Err(Error::config("num_nodes", "it must be at least 1"));
    }
    let Some((launched, variable)) = launched else {
        if num_nodes > 1 {
            return Err(Error::config(
                "num_nodes",
                format!(
                    "it is {num_nodes}, but this process was not started by an MPI launcher; run it under \
                     `mpirun -np N` or `srun` (built with the `mpi` feature), or use `num_nodes(1)`"
                ),
            ));
        }
        return Ok(None);
    };
    #[cfg(not(feature = "mpi"))]
    {
        let _ = (devices, strategy);
        Err(Error::config(
            "num_nodes",
            format!(
                "the launcher started {launched} processes ({variable}), but burn-lightning was built without its \
                 `mpi` feature: every process would train alone; build with `--features mpi`, or run one process"
            ),
        ))
    }
    #[cfg(feature = "mpi")]
    {
        let _ = (launched, variable);
        let world = mpi_world::World::join()?;
        let (rank, world_size, local_rank) = (world.rank(), world.size(), world.local_rank());
        if world_size == 1 {
            return Ok(None);
        }
        // Every rank reaches the same verdict: the hashes are compared on all of them.
        let hashes = world.all_gather(config_hash(devices, num_nodes, strategy, world_size))?;
        if let Some(other) = hashes.iter().position(|&hash| hash != hashes[0]) {
            return Err(Error::config(
                "num_nodes",
                format!(
                    "the ranks of this MPI job were given different `devices`, `num_nodes` or `strategy` flags \
                     (rank {other}'s differ from rank 0's; this is rank {rank}); give every process the same flags"
                ),
            ));
        }
        let per_node = processes_per_node(devices, num_nodes, world_size)?;
        let group = ProcessGroup {
            rank,
            world_size,
            local_rank,
            inner: world,
        };
        Ok(Some((std::sync::Arc::new(group), local_rank % per_node)))
    }
}

/// Which collective a rank waits in (named by the watchdog).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
pub(crate) enum Collective {
    CheckFlags,
    Gradients,
    SyncDist,
    Finalize,
    Barrier,
    MetricStates,
    CheckpointStates,
}

impl Collective {
    /// Every collective, in the order of their discriminants (what the watchdog reads back).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    const ALL: [Collective; 7] = [
        Collective::CheckFlags,
        Collective::Gradients,
        Collective::SyncDist,
        Collective::Finalize,
        Collective::Barrier,
        Collective::MetricStates,
        Collective::CheckpointStates,
    ];

    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    fn describe(self) -> &'static str {
        match self {
            Collective::CheckFlags => "the check of the flags",
            Collective::Gradients => "the all-reduce of the gradients",
            Collective::SyncDist => "the reduction of a `sync_dist` value",
            Collective::Finalize => "MPI_Finalize at exit (this rank ended while others still run)",
            Collective::Barrier => "the barrier at the end of a run",
            Collective::MetricStates => "the merge of a metric object's state at the end of a training epoch",
            Collective::CheckpointStates => {
                "the gathering, at the end of a training batch, of the ranks' metric states and logged values for a \
                 checkpoint"
            }
        }
    }
}

impl ProcessGroup {
    /// Replaces `grads` by their mean across ranks: one all-reduce of every parameter's
    /// gradient (zeros where this rank has none) as host `f32`. Returns whether any rank had a
    /// gradient.
    pub(crate) fn average_gradients<M: burn::module::Module>(
        &self,
        module: &M,
        grads: &mut crate::optim::Gradients,
    ) -> Result<bool, Error> {
        #[cfg(feature = "mpi")]
        {
            mpi_world::average_gradients(self, module, grads)
        }
        #[cfg(not(feature = "mpi"))]
        {
            let _ = (module, grads);
            match self._never {}
        }
    }

    /// Waits until every rank gets here.
    pub(crate) fn barrier(&self) {
        #[cfg(feature = "mpi")]
        {
            self.inner.barrier();
        }
        #[cfg(not(feature = "mpi"))]
        {
            match self._never {}
        }
    }

    /// `value` reduced across ranks by `reduce` (every rank gets the result).
    pub(crate) fn reduce_scalar(&self, value: f64, reduce: crate::core::logging::Reduce) -> Result<f64, Error> {
        #[cfg(feature = "mpi")]
        {
            self.inner.reduce_scalar(Collective::SyncDist, value, reduce)
        }
        #[cfg(not(feature = "mpi"))]
        {
            let _ = (value, reduce);
            match self._never {}
        }
    }
}

impl crate::core::distributed::Collectives for ProcessGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn reduce_scalar(&self, value: f64, reduce: crate::core::logging::Reduce) -> Result<f64, Error> {
        ProcessGroup::reduce_scalar(self, value, reduce)
    }

    fn all_gather(&self, values: &[f64]) -> Result<Vec<Vec<f64>>, Error> {
        #[cfg(feature = "mpi")]
        {
            self.inner.all_gather_values(Collective::MetricStates, values)
        }
        #[cfg(not(feature = "mpi"))]
        {
            let _ = values;
            match self._never {}
        }
    }

    fn checkpoint_waits(&self, waiting: bool) -> Result<bool, Error> {
        #[cfg(feature = "mpi")]
        {
            let any = self.inner.reduce_scalar(
                Collective::CheckpointStates,
                f64::from(u8::from(waiting)),
                crate::core::logging::Reduce::Max,
            )?;
            Ok(any > 0.0)
        }
        #[cfg(not(feature = "mpi"))]
        {
            let _ = waiting;
            match self._never {}
        }
    }

    fn all_gather_for_checkpoint(&self, values: &[f64]) -> Result<Vec<Vec<f64>>, Error> {
        #[cfg(feature = "mpi")]
        {
            self.inner.all_gather_values(Collective::CheckpointStates, values)
        }
        #[cfg(not(feature = "mpi"))]
        {
            let _ = values;
            match self._never {}
        }
    }
}

#[cfg(feature = "mpi")]
mod mpi_world {
    use super::{Collective, ProcessGroup};
    use crate::Error;
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::tensor::{Tensor, TensorData};
    use mpi::collective::{CommunicatorCollectives, SystemOperation};
    use mpi::topology::{Communicator, SimpleCommunicator};
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, OnceLock};
    use std::time::{Duration, Instant};

    /// What the watchdog thread reads: when the collective in progress must end, and which one.
    struct Watch {
        started: Instant,
        /// Milliseconds since `started` by which the collective must end; 0 when none runs.
        deadline_ms: AtomicU64,
        collective: AtomicUsize,
        timeout: Duration,
        rank: usize,
    }

    /// `MPI_COMM_WORLD` (a handle, made where needed: it is neither `Send` nor `Sync`).
    fn world() -> SimpleCommunicator {
        SimpleCommunicator::world()
    }

    /// MPI's world, joined once per process.
    pub(super) struct World {
        watch: Arc<Watch>,
        local_rank: usize,
    }

    static JOINED: OnceLock<Result<(), String>> = OnceLock::new();

    unsafe extern "C" {
        /// libc's `atexit`: MPI is finalized when the process exits, not when a trainer drops
        /// (MPI cannot be initialized twice in a process).
        fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
    }

    /// The watchdog's state, for `finalize_mpi`.
    static WATCH: OnceLock<Arc<Watch>> = OnceLock::new();

    /// Finalizes MPI at exit, under the watchdog: Open MPI's `MPI_Finalize` waits for every
    /// rank, so a rank that exits (an error, `process::exit`) while the others still train
    /// would wait for them forever; after the timeout it aborts the job instead.
    extern "C" fn finalize_mpi() {
        if mpi::environment::is_finalized() {
            return;
        }
        if let Some(watch) = WATCH.get() {
            watch.arm(Collective::Finalize);
        }
        // SAFETY: MPI was initialized by `World::join`; this runs once, at exit.
        unsafe {
            mpi::ffi::MPI_Finalize();
        }
        if let Some(watch) = WATCH.get() {
            watch.disarm();
        }
    }

    impl Watch {
        /// Starts the clock of `which`.
        fn arm(&self, which: Collective) {
            let deadline = self.started.elapsed() + self.timeout;
            self.collective.store(which as usize, Ordering::Relaxed);
            self.deadline_ms.store(
                u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX).max(1),
                Ordering::Release,
            );
        }

        fn disarm(&self) {
            self.deadline_ms.store(0, Ordering::Release);
        }
    }

    fn timeout() -> Result<Duration, Error> {
        match std::env::var("BURN_LIGHTNING_MPI_TIMEOUT") {
            Err(_) => Ok(Duration::from_secs(300)),
            Ok(text) => match text.trim().parse::<f64>() {
                Ok(seconds) if seconds > 0.0 && seconds.is_finite() => Ok(Duration::from_secs_f64(seconds)),
                _ => Err(Error::config(
                    "num_nodes",
                    format!("BURN_LIGHTNING_MPI_TIMEOUT is `{text}`; give a positive number of seconds (default 300)"),
                )),
            },
        }
    }

    impl World {
        pub(super) fn join() -> Result<Self, Error> {
            let timeout = timeout()?;
            JOINED
                .get_or_init(|| {
                    // The watchdog aborts from its own thread while the loop waits in a collective.
                    let Some((universe, _threading)) = mpi::initialize_with_threading(mpi::Threading::Multiple) else {
                        return Err("MPI was already initialized by someone else".to_string());
                    };
                    // Finalized at exit instead (see `atexit`).
                    std::mem::forget(universe);
                    // SAFETY: registers a plain `extern "C" fn` with libc.
                    if unsafe { atexit(finalize_mpi) } != 0 {
                        return Err("cannot register MPI_Finalize to run at exit".to_string());
                    }
                    Ok(())
                })
                .clone()
                .map_err(|why| Error::config("num_nodes", format!("cannot join the MPI job: {why}")))?;
            let rank = usize::try_from(SimpleCommunicator::world().rank()).unwrap_or(0);
            let local_rank = ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"]
                .iter()
                .find_map(|name| std::env::var(name).ok()?.trim().parse().ok())
                .unwrap_or(rank);
            // One watchdog per process (the first trainer's timeout).
            let mut started = Ok(());
            let watch = WATCH.get_or_init(|| {
                let watch = Arc::new(Watch {
                    started: Instant::now(),
                    deadline_ms: AtomicU64::new(0),
                    collective: AtomicUsize::new(0),
                    timeout,
                    rank,
                });
                let watched = Arc::clone(&watch);
                if let Err(e) = std::thread::Builder::new()
                    .name("mpi-watchdog".into())
                    .spawn(move || watchdog(&watched))
                {
                    started = Err(Error::config(
                        "num_nodes",
                        format!("cannot start the MPI watchdog thread: {e}"),
                    ));
                }
                watch
            });
            started?;
            let watch = Arc::clone(watch);
            Ok(Self { watch, local_rank })
        }

        pub(super) fn rank(&self) -> usize {
            usize::try_from(world().rank()).unwrap_or(0)
        }

        pub(super) fn size(&self) -> usize {
            usize::try_from(world().size()).unwrap_or(1)
        }

        pub(super) fn local_rank(&self) -> usize {
            self.local_rank
        }

        /// Runs `collective` under the watchdog.
        fn guarded<T>(&self, which: Collective, collective: impl FnOnce() -> T) -> T {
            self.watch.arm(which);
            let output = collective();
            self.watch.disarm();
            output
        }

        pub(super) fn barrier(&self) {
            self.guarded(Collective::Barrier, || world().barrier());
        }

        pub(super) fn all_gather(&self, value: u64) -> Result<Vec<u64>, Error> {
            let mut all = vec![0u64; self.size()];
            self.guarded(Collective::CheckFlags, || world().all_gather_into(&value, &mut all[..]));
            Ok(all)
        }

        /// Every rank's `values`, in rank order: their lengths with one all-gather, then the
        /// values with one `MPI_Allgatherv`.
        pub(super) fn all_gather_values(&self, which: Collective, values: &[f64]) -> Result<Vec<Vec<f64>>, Error> {
            use mpi::datatype::PartitionMut;
            let too_long = || Error::Data(format!("{} values are too many for one MPI message", values.len()));
            let count = mpi::Count::try_from(values.len()).map_err(|_| too_long())?;
            let mut counts = vec![0 as mpi::Count; self.size()];
            self.guarded(which, || world().all_gather_into(&count, &mut counts[..]));
            let mut displacements = Vec::with_capacity(counts.len());
            let mut total: mpi::Count = 0;
            for &count in &counts {
                displacements.push(total);
                total = total.checked_add(count).ok_or_else(too_long)?;
            }
            let mut all = vec![0.0f64; usize::try_from(total).unwrap_or(0)];
            {
                let mut partition = PartitionMut::new(&mut all[..], counts.clone(), &displacements[..]);
                self.guarded(which, || world().all_gather_varcount_into(values, &mut partition));
            }
            Ok(counts
                .iter()
                .zip(&displacements)
                .map(|(&count, &start)| {
                    let start = usize::try_from(start).unwrap_or(0);
                    all[start..start + usize::try_from(count).unwrap_or(0)].to_vec()
                })
                .collect())
        }

        pub(super) fn all_reduce_sum(&self, which: Collective, values: &mut [f32]) {
            let send = values.to_vec();
            self.guarded(which, || {
                world().all_reduce_into(&send[..], values, SystemOperation::sum())
            });
        }

        pub(super) fn reduce_scalar(
            &self,
            which: Collective,
            value: f64,
            reduce: crate::core::logging::Reduce,
        ) -> Result<f64, Error> {
            use crate::core::logging::Reduce;
            let operation = match reduce {
                Reduce::Mean | Reduce::Sum => SystemOperation::sum(),
                Reduce::Min => SystemOperation::min(),
                Reduce::Max => SystemOperation::max(),
            };
            let mut reduced = 0.0f64;
            self.guarded(which, || world().all_reduce_into(&value, &mut reduced, operation));
            Ok(match reduce {
                Reduce::Mean => reduced / self.size() as f64,
                _ => reduced,
            })
        }
    }

    /// Aborts the job when a collective outlives its deadline (a rank died or hangs).
    fn watchdog(watch: &Watch) {
        let tick = (watch.timeout / 20).clamp(Duration::from_millis(10), Duration::from_millis(500));
        loop {
            std::thread::sleep(tick);
            let deadline = watch.deadline_ms.load(Ordering::Acquire);
            let now = u64::try_from(watch.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            if deadline != 0 && now > deadline {
                let collective = Collective::ALL
                    .get(watch.collective.load(Ordering::Relaxed))
                    .map_or("a collective", |collective| collective.describe());
                eprintln!(
                    "burn-lightning: rank {} timed out after {:.1} s waiting for the other ranks in {collective}: \
                     a rank died or hangs (or ranks run different collectives); aborting the MPI job \
                     (BURN_LIGHTNING_MPI_TIMEOUT sets the timeout)",
                    watch.rank,
                    watch.timeout.as_secs_f64()
                );
                SimpleCommunicator::world().abort(124);
            }
        }
    }

    /// The gradients of every float parameter, in the module's order, flattened into one
    /// buffer (zeros where this rank has none).
    struct Flatten<'a> {
        grads: &'a burn::optim::GradientsParams,
        buffer: Vec<f32>,
        /// Per parameter: whether this rank had a gradient.
        present: Vec<bool>,
    }

    impl ModuleVisitor for Flatten<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            match self.grads.get::<D>(param.id) {
                Some(grad) => {
                    let data = grad.into_data().convert::<f32>();
                    self.buffer.extend_from_slice(data.as_slice::<f32>().unwrap_or(&[]));
                    self.present.push(true);
                }
                None => {
                    let count = param.val().shape().num_elements();
                    self.buffer.resize(self.buffer.len() + count, 0.0);
                    self.present.push(false);
                }
            }
        }
    }

    /// Puts the reduced buffer back, divided by the number of ranks.
    struct Unflatten<'a> {
        grads: &'a mut burn::optim::GradientsParams,
        buffer: &'a [f32],
        offset: usize,
        /// Per parameter: whether any rank had a gradient (the sum of `present` flags).
        any: &'a [f32],
        index: usize,
        scale: f32,
    }

    impl ModuleVisitor for Unflatten<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val();
            let shape = value.shape();
            let count = shape.num_elements();
            let slice = &self.buffer[self.offset..self.offset + count];
            self.offset += count;
            let any = self.any[self.index] > 0.0;
            self.index += 1;
            if !any {
                return;
            }
            let local = self.grads.remove::<D>(param.id);
            let (device, dtype) = match &local {
                Some(grad) => (grad.device(), grad.dtype()),
                None => (value.device(), value.dtype()),
            };
            let mean: Vec<f32> = slice.iter().map(|sum| sum * self.scale).collect();
            let grad = Tensor::<D>::from_data(TensorData::new(mean, shape), &device.without_autodiff());
            self.grads.register::<D>(param.id, grad.cast(dtype));
        }
    }

    pub(super) fn average_gradients<M: Module>(
        group: &ProcessGroup,
        module: &M,
        grads: &mut crate::optim::Gradients,
    ) -> Result<bool, Error> {
        let mut flatten = Flatten {
            grads: grads.params(),
            buffer: Vec::new(),
            present: Vec::new(),
        };
        module.visit(&mut flatten);
        let Flatten {
            mut buffer, present, ..
        } = flatten;
        // Which parameters any rank has a gradient of travels in the same buffer.
        let parameters = present.len();
        buffer.extend(present.iter().map(|&present| if present { 1.0f32 } else { 0.0 }));
        group.inner.all_reduce_sum(Collective::Gradients, &mut buffer);
        let (values, any) = buffer.split_at(buffer.len() - parameters);
        let mut unflatten = Unflatten {
            grads: grads.params_mut(),
            buffer: values,
            offset: 0,
            any,
            index: 0,
            scale: 1.0 / group.world_size as f32,
        };
        module.visit(&mut unflatten);
        Ok(any.iter().any(|&count| count > 0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_number_of_processes_must_be_devices_times_num_nodes() {
        assert_eq!(processes_per_node(&crate::Devices::Auto, 2, 4).unwrap(), 2);
        assert_eq!(processes_per_node(&crate::Devices::Count(2), 1, 2).unwrap(), 2);
        let message = processes_per_node(&crate::Devices::Count(1), 1, 2)
            .unwrap_err()
            .to_string();
        assert!(message.contains("`num_nodes`") && message.contains("`devices`") && message.contains("2 processes"));
        assert!(processes_per_node(&crate::Devices::Auto, 3, 4).is_err());
    }

    #[test]
    fn launchers_are_recognized_by_their_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| value.to_string())
            }
        };
        assert_eq!(world_size_in(env(&[])), None);
        assert_eq!(
            world_size_in(env(&[("OMPI_COMM_WORLD_SIZE", "1")])),
            None,
            "one process is no group"
        );
        assert_eq!(
            world_size_in(env(&[("SLURM_STEP_NUM_TASKS", "4")])),
            Some((4, "SLURM_STEP_NUM_TASKS"))
        );
        assert_eq!(world_size_in(env(&[("PMI_SIZE", "2")])), Some((2, "PMI_SIZE")));
    }

    #[test]
    fn several_nodes_outside_a_launcher_is_an_error() {
        let message = join_launched(None, &crate::Devices::Auto, 2, "auto")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("`num_nodes`") && message.contains("mpirun"),
            "{message}"
        );
        assert!(join_launched(None, &crate::Devices::Auto, 1, "auto").unwrap().is_none());
    }

    #[cfg(not(feature = "mpi"))]
    #[test]
    fn a_launch_of_several_processes_needs_the_mpi_feature() {
        let launched = Some((2, "OMPI_COMM_WORLD_SIZE"));
        let message = join_launched(launched, &crate::Devices::Auto, 1, "auto")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("--features mpi") && message.contains("2 processes"),
            "{message}"
        );
    }

    #[test]
    fn flags_that_differ_hash_differently() {
        let hash = config_hash(&crate::Devices::Auto, 1, "auto", 2);
        assert_eq!(hash, config_hash(&crate::Devices::Auto, 1, "AUTO", 2));
        assert_ne!(hash, config_hash(&crate::Devices::Auto, 2, "auto", 2));
        assert_ne!(hash, config_hash(&crate::Devices::Count(2), 1, "auto", 2));
    }
}
