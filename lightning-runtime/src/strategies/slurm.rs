//! SLURM's auto-requeue, as Lightning's `SLURMEnvironment(auto_requeue=True)`: under a SLURM
//! batch job, SIGUSR1 (which SLURM sends before the time limit with `--signal=SIGUSR1@90`)
//! saves `<default_root_dir>/hpc_ckpt_<N>.ckpt` at the next batch boundary (`N` one more than
//! the highest there) and requeues the job with `scontrol requeue $SLURM_JOB_ID`
//! (`$SLURM_ARRAY_JOB_ID_$SLURM_ARRAY_TASK_ID` in a job array); training goes on until SLURM
//! stops the job (its SIGTERM ends the run as usual). The requeued job resumes from the newest
//! `hpc_ckpt_<N>.ckpt` with `ckpt_path = "hpc"`, or `"last"`, or with no `ckpt_path` at all
//! under SLURM, as Lightning does.

use std::path::{Path, PathBuf};

/// Whether the process runs in a SLURM job that is not interactive (Lightning's
/// `SLURMEnvironment.detect()`: `SLURM_NTASKS` is set, and `SLURM_JOB_NAME` is not `bash` or
/// `interactive`).
pub fn detected() -> bool {
    std::env::var_os("SLURM_NTASKS").is_some()
        && !matches!(
            std::env::var("SLURM_JOB_NAME").as_deref(),
            Ok("bash") | Ok("interactive")
        )
}

/// The job to requeue: `$SLURM_ARRAY_JOB_ID_$SLURM_ARRAY_TASK_ID` in a job array, else
/// `$SLURM_JOB_ID`; `None` when it is missing or not made of digits, `_` and `-`.
pub fn job_id() -> Option<String> {
    let id = match std::env::var("SLURM_ARRAY_JOB_ID") {
        Ok(array) => format!("{array}_{}", std::env::var("SLURM_ARRAY_TASK_ID").ok()?),
        Err(_) => std::env::var("SLURM_JOB_ID").ok()?,
    };
    let valid = !id.is_empty() && id.chars().all(|c| c.is_ascii_digit() || c == '_' || c == '-');
    valid.then_some(id)
}

/// Runs `scontrol requeue <job>`: the job's id, or why it was not requeued.
pub fn requeue() -> Result<String, String> {
    let id = job_id().ok_or("`SLURM_JOB_ID` is missing or not a job id")?;
    let status = std::process::Command::new("scontrol")
        .args(["requeue", &id])
        .status()
        .map_err(|e| format!("cannot run `scontrol requeue {id}`: {e}"))?;
    match status.success() {
        true => Ok(id),
        false => Err(format!("`scontrol requeue {id}` failed ({status})")),
    }
}

/// The highest `N` of the `hpc_ckpt_<N>.ckpt` files in `dir`.
fn highest_hpc_number(dir: &Path) -> Option<usize> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let number = name.to_str()?.strip_prefix("hpc_ckpt_")?.strip_suffix(".ckpt")?;
            number.parse().ok()
        })
        .max()
}

/// Where the next HPC checkpoint goes (Lightning's `hpc_save_path`): `hpc_ckpt_<N>.ckpt` in
/// `dir`, `N` one more than the highest there (1 for the first).
pub fn hpc_save_path(dir: &Path) -> PathBuf {
    let number = highest_hpc_number(dir).map_or(1, |n| n + 1);
    dir.join(format!("hpc_ckpt_{number}.ckpt"))
}

/// The newest HPC checkpoint in `dir` (Lightning's `_hpc_resume_path`: the highest `N`).
pub fn hpc_resume_path(dir: &Path) -> Option<PathBuf> {
    highest_hpc_number(dir).map(|n| dir.join(format!("hpc_ckpt_{n}.ckpt")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpc_checkpoints_are_numbered_after_the_highest() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(hpc_resume_path(dir.path()), None);
        assert_eq!(hpc_save_path(dir.path()), dir.path().join("hpc_ckpt_1.ckpt"));
        for name in ["hpc_ckpt_2.ckpt", "hpc_ckpt_10.ckpt", "hpc_ckpt_x.ckpt", "last.ckpt"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(hpc_resume_path(dir.path()), Some(dir.path().join("hpc_ckpt_10.ckpt")));
        assert_eq!(hpc_save_path(dir.path()), dir.path().join("hpc_ckpt_11.ckpt"));
    }
}
