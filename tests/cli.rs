//! `LightningCli`: options from the Trainer's flags, the module's `#[hparam]` fields and the
//! datamodule's fields; config files, environment defaults and their precedence;
//! `--print_config` and the run's `config.yaml`; errors and exit codes.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::cli::{CliError, Command, ParsedCli};
use burn_lightning::prelude::*;
use common::Pair;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A linear regression with two hyperparameters.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Tiny {
    layer: Linear,
    /// SGD's learning rate.
    #[hparam(default = 0.01)]
    lr: f64,
    /// A label for the run.
    #[hparam(default = String::from("tiny"))]
    label: String,
}

impl Tiny {
    fn new(hparams: &TinyHparams, device: &Device) -> Self {
        Self {
            layer: LinearConfig::new(32, 2).init(device),
            lr: hparams.lr,
            label: hparams.label.clone(),
        }
    }

    fn loss(&self, batch: Pair) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }
}

#[lightning_module]
impl Tiny {
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize) -> Tensor<1> {
        self.loss(batch)
    }

    #[hook]
    fn validation_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log("val_loss", self.loss(batch));
    }

    #[hook]
    fn test_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log("test_loss", self.loss(batch));
    }

    #[hook]
    fn predict_step(&self, batch: Pair, _batch_idx: usize) -> Tensor<2> {
        self.layer.forward(batch.x)
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), self.lr)
    }
}

/// A datamodule configured by its serialized fields.
#[derive(Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PairData {
    items: usize,
    batch_size: usize,
}

impl Default for PairData {
    fn default() -> Self {
        Self {
            items: 16,
            batch_size: 4,
        }
    }
}

impl DataModule<Pair> for PairData {
    fn train_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(common::pair_loader(self.items, self.batch_size))
    }
    fn val_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(common::pair_loader(self.items, self.batch_size))
    }
    fn test_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(common::pair_loader(self.items, self.batch_size))
    }
    fn predict_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(common::pair_loader(self.items, self.batch_size))
    }
}

fn cli() -> LightningCli<Tiny, PairData> {
    LightningCli::new(Tiny::new)
        .trainer_defaults(
            TrainerConfig::default()
                .enable_progress_bar(false)
                .enable_model_summary(false)
                .exit_on_signal(false),
        )
        .without_subcommand([Command::Fit, Command::Test])
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(args: &[&str], env: impl Fn(&str) -> Option<String>) -> Result<ParsedCli<Tiny, PairData>, CliError> {
    cli().parse_from(std::iter::once("tiny").chain(args.iter().copied()), env)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn defaults_then_files_then_environment_then_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let first = write(
        dir.path(),
        "a.yaml",
        "trainer:\n  max_epochs: 2\n  limit_val_batches: 3\n  log_every_n_steps: 7\nmodel:\n  lr: 0.5\ndata:\n  items: 8\n",
    );
    let second = write(
        dir.path(),
        "b.yaml",
        "trainer:\n  max_epochs: 4\n  limit_val_batches: 5\n",
    );
    let env = |name: &str| match name {
        "PL_TRAINER_MAX_EPOCHS" => Some("5".to_string()),
        "PL_TRAINER_LIMIT_VAL_BATCHES" => Some("0.5".to_string()),
        _ => None,
    };
    let files = ["fit", "--config", &first, "--config", &second];

    let parsed = parse(&[&files[..], &["--trainer.max_epochs", "6"]].concat(), env).unwrap();
    assert_eq!(parsed.commands, [Command::Fit]);
    assert_eq!(
        parsed.trainer.max_epochs,
        Some(MaxCount::Count(6)),
        "arguments beat the environment"
    );
    assert_eq!(
        parsed.trainer.limit_val_batches,
        Limit::Fraction(0.5),
        "the environment beats files"
    );
    assert_eq!(parsed.trainer.log_every_n_steps, 7, "a file beats the defaults");
    assert_eq!(parsed.trainer.num_sanity_val_steps, 2, "Lightning's default");
    assert!(!parsed.trainer.enable_progress_bar, "the CLI's trainer_defaults");
    assert_eq!(parsed.hparams.lr, 0.5);
    assert_eq!(parsed.hparams.label, "tiny");
    assert_eq!(parsed.data.items, 8);
    assert_eq!(parsed.data.batch_size, 4);

    assert_eq!(parse(&files, env).unwrap().trainer.max_epochs, Some(MaxCount::Count(5)));
    let from_files = parse(&files, no_env).unwrap();
    assert_eq!(
        from_files.trainer.max_epochs,
        Some(MaxCount::Count(4)),
        "the later file wins"
    );
    assert_eq!(from_files.trainer.limit_val_batches, Limit::Batches(5));

    let no_subcommand = parse(&["--model.label", "123"], no_env).unwrap();
    assert_eq!(no_subcommand.commands, [Command::Fit, Command::Test]);
    assert_eq!(no_subcommand.hparams.label, "123", "a string option keeps its text");
}

#[test]
fn print_config_is_a_complete_config_that_reproduces_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "fit",
        "--trainer.max_time",
        "{minutes: 10}",
        "--trainer.accumulate_grad_batches",
        "4",
        "--model.lr",
        "0.2",
        "--data.batch_size",
        "2",
        "--ckpt_path",
        "last",
    ];
    let parsed = parse(&args, no_env).unwrap();
    let yaml = parsed.config_yaml();
    for line in [
        "trainer:",
        "  max_time: 00:00:10:00",
        "  accumulate_grad_batches: 4",
        "  lr: 0.2",
        "  batch_size: 2",
        "ckpt_path: last",
    ] {
        assert!(yaml.lines().any(|l| l == line), "no `{line}` in\n{yaml}");
    }
    let file = write(dir.path(), "printed.yaml", &yaml);
    let again = parse(&["fit", "--config", &file], no_env).unwrap();
    assert_eq!(again.config_yaml(), yaml);
    assert_eq!(again.trainer, parsed.trainer);
    assert_eq!(again.hparams, parsed.hparams);
    assert_eq!(again.ckpt_path, Some(CkptPath::Last));
}

#[test]
fn fit_saves_config_yaml_in_the_run_directory_and_test_reads_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let argv = [
        "tiny",
        "fit",
        "--trainer.max_epochs",
        "2",
        "--trainer.default_root_dir",
        &root,
        "--model.lr",
        "0.05",
    ];
    let run = cli().run_from(argv).unwrap().unwrap();
    assert_eq!(run.trainer.current_epoch(), 2);
    let log_dir = run.trainer.log_dir().unwrap().to_path_buf();
    let saved = std::fs::read_to_string(log_dir.join("config.yaml")).unwrap();
    assert!(
        saved.contains("  max_epochs: 2\n") && saved.contains("  lr: 0.05\n"),
        "{saved}"
    );
    // The saved file reproduces the run's configuration.
    let again = parse(
        &["fit", "--config", &log_dir.join("config.yaml").display().to_string()],
        no_env,
    )
    .unwrap();
    assert_eq!(again.config_yaml(), saved);

    let argv = [
        "tiny",
        "test",
        "--ckpt_path",
        "last",
        "--trainer.default_root_dir",
        &root,
    ];
    let tested = cli().run_from(argv).unwrap().unwrap();
    let loss = tested.test_metrics.unwrap().get("test_loss").unwrap();
    assert!(loss.is_finite());
    assert_eq!(
        tested.model.layer.weight.val().into_data(),
        run.model.layer.weight.val().into_data()
    );
}

#[test]
fn unknown_keys_are_errors_with_the_nearest_key() {
    let dir = tempfile::tempdir().unwrap();
    let typo = write(dir.path(), "typo.yaml", "trainer:\n  max_epoch: 3\n");
    let error = parse(&["fit", "--config", &typo], no_env).err().unwrap();
    assert_eq!(error.exit_code(), 2);
    assert!(error.message().contains("did you mean `trainer.max_epochs`"), "{error}");
    let section = write(dir.path(), "section.yaml", "modle:\n  lr: 3\n");
    let error = parse(&["fit", "--config", &section], no_env).err().unwrap();
    assert!(error.message().contains("did you mean `model`"), "{error}");
    let error = parse(&["fit", "--model.l", "0.1"], no_env).err().unwrap();
    assert_eq!(error.exit_code(), 2);
    assert!(error.message().contains("--model.lr"), "{error}");
}

#[test]
fn bad_values_name_the_key_and_where_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let malformed = write(
        dir.path(),
        "bad.yaml",
        "trainer:\n  max_epochs: 3\n  limit_val_batches: [1\n",
    );
    let error = parse(&["fit", "--config", &malformed], no_env).err().unwrap();
    assert!(error.message().contains("line 3 column 22"), "{error}");

    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["--trainer.max_time", "{minutes: -10}"],
            &["trainer.max_time", "negative"],
        ),
        (
            &["--trainer.max_time", "-00:00:10:00"],
            &["trainer.max_time", "DD:HH:MM:SS"],
        ),
        (&["--model.lr", "fast"], &["model.lr", "--model.lr"]),
        (&["--trainer.max_epochs", "0"], &["trainer.max_epochs", "at least 1"]),
        (
            &["--trainer.limit_val_batches", "1.5"],
            &["trainer.limit_val_batches", "[0, 1]"],
        ),
    ];
    for (args, expected) in cases {
        let error = parse(&[&["fit"], args].concat(), no_env).err().unwrap();
        assert_eq!(error.exit_code(), 2, "{error}");
        for text in expected {
            assert!(error.message().contains(text), "`{args:?}`: no `{text}` in {error}");
        }
    }
    let from_env = parse(&["fit"], |name: &str| {
        (name == "PL_TRAINER_LOG_EVERY_N_STEPS").then(|| "x".into())
    })
    .err()
    .unwrap();
    assert!(
        from_env.message().contains("PL_TRAINER_LOG_EVERY_N_STEPS"),
        "{from_env}"
    );
}

#[test]
fn the_model_options_come_from_its_hparams() {
    let infos = Tiny::hparam_infos();
    assert_eq!(infos.iter().map(|i| i.name).collect::<Vec<_>>(), ["lr", "label"]);
    assert_eq!(infos[0].doc, "SGD's learning rate.");
    assert_eq!(infos[0].default, Some(serde_json::json!(0.01)));
    assert_eq!(infos[1].ty, "String");
    let help = cli().command().render_long_help().to_string();
    for text in [
        "--model.lr",
        "SGD's learning rate.",
        "[default: 0.01]",
        "--trainer.max_epochs",
        "--data.batch_size",
    ] {
        assert!(help.contains(text), "no `{text}` in\n{help}");
    }
}

/// Re-runs this test binary as a child that runs the CLI with `args` and exits with its
/// status.
fn child_status(args: &[&str]) -> (i32, String) {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "cli_child", "--nocapture", "--test-threads", "1"])
        .env("CLI_CHILD_ARGS", args.join("\u{1f}"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap_or(-1), stderr)
}

/// The child of [`child_status`]; does nothing in a normal test run.
#[test]
fn cli_child() {
    if let Ok(args) = std::env::var("CLI_CHILD_ARGS") {
        let argv: Vec<&str> = std::iter::once("tiny").chain(args.split('\u{1f}')).collect();
        let status = match cli().run_from(argv) {
            Ok(_) => 0,
            Err(error) => {
                eprintln!("{error}");
                i32::from(error.exit_code())
            }
        };
        std::process::exit(status);
    }
}

#[test]
fn bad_input_exits_with_status_2_and_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let malformed = write(dir.path(), "bad.yaml", "trainer: [\n");
    let (status, stderr) = child_status(&["fit", "--config", &malformed]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("not valid YAML"), "{stderr}");
    let (status, stderr) = child_status(&["fit", "--trainer.max_epoch", "3"]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("--trainer.max_epochs"), "{stderr}");
    let (status, stderr) = child_status(&["fit", "--print_config"]);
    assert_eq!(status, 0, "{stderr}");
}

#[test]
fn tune_lr_runs_lr_find_and_trains_with_its_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let argv = [
        "tiny",
        "fit",
        "--tune",
        "lr",
        "--trainer.max_epochs",
        "1",
        "--trainer.default_root_dir",
        &root,
        "--data.items",
        "64",
    ];
    let run = cli().run_from(argv).unwrap().unwrap();
    // The search wrote its plot into its own run directory; the fit then used the suggestion.
    let search_dir = dir.path().join("lightning_logs/version_0");
    assert!(search_dir.join("lr_find.svg").is_file());
    assert_ne!(run.model.lr, 0.01, "the module's lr is still the default");
    assert!(
        run.model.lr > 0.0 && run.model.lr < 1.0,
        "suggested lr {}",
        run.model.lr
    );
    let saved = std::fs::read_to_string(run.trainer.log_dir().unwrap().join("hparams.yaml")).unwrap();
    let saved_lr: f64 = saved
        .lines()
        .find_map(|line| line.strip_prefix("lr: "))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no lr in {saved}"));
    assert_eq!(saved_lr, run.model.lr);
}

#[test]
fn tune_batch_size_needs_a_datamodule_that_can_set_it() {
    let error = match cli().run_from(["tiny", "fit", "--tune", "batch_size"]) {
        Err(error) => error,
        Ok(_) => panic!("`--tune batch_size` ran without `tunable_batch_size()`"),
    };
    assert_eq!(error.exit_code(), 2);
    assert!(error.to_string().contains("BatchSizeTunable"), "{error}");
}
