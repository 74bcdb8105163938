//! The MNIST IDX reader of the examples: the bundled files parse, and malformed files (bad
//! magic, truncated or extra data, wrong dimensions, garbage named `.gz`, labels that do not
//! match the images) are errors with a message, never panics. A batch size of 0 is an error
//! before any loader is built (burn's loader would never end).

#[path = "../examples/common/lit_mnist.rs"]
mod lit_mnist;
#[path = "../examples/common/mnist.rs"]
mod mnist;

use burn_lightning::prelude::*;
use flate2::Compression;
use flate2::write::GzEncoder;
use mnist::{IdxError, MnistData, MnistSplit, PIXELS, parse_idx, read_idx};
use std::io::Write;
use std::path::{Path, PathBuf};

/// IDX bytes of unsigned bytes with `dims` and `data`.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `n` images of 28x28 whose pixels are their index, gzipped.
fn images(n: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..n).flat_map(|i| std::iter::repeat_n(i as u8, PIXELS)).collect();
    gzip(&idx(&[n as u32, 28, 28], &data))
}

/// Writes a `split` of images and labels into `dir`.
fn write_split(dir: &Path, images: &[u8], labels: &[u8]) {
    write(dir, "split-images-idx3-ubyte.gz", images);
    write(dir, "split-labels-idx1-ubyte.gz", labels);
}

#[test]
fn the_bundled_files_parse() {
    let dir = MnistData::bundled_dir();
    let train = MnistSplit::read(&dir, "train").unwrap();
    let test = MnistSplit::read(&dir, "t10k").unwrap();
    assert_eq!((train.len(), test.len()), (8000, 2000));
    assert_eq!(train.images.len(), 8000 * PIXELS);
    assert_eq!(test.images.len(), 2000 * PIXELS);
    for split in [&train, &test] {
        let mut counts = [0usize; 10];
        for &label in split.labels.iter() {
            counts[usize::from(label)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 0), "every digit appears: {counts:?}");
        // Real digits: dark background, bright strokes.
        assert_eq!(split.images.iter().min(), Some(&0));
        assert!(split.images.iter().max().is_some_and(|&m| m > 200));
    }
    let images = read_idx(&dir.join("train-images-idx3-ubyte.gz")).unwrap();
    assert_eq!(images.dims, [8000, 28, 28]);
    let labels = read_idx(&dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(labels.dims, [2000]);
}

#[test]
fn the_datamodule_splits_and_batches_the_bundled_data() {
    let mut data = MnistData::new(MnistData::bundled_dir(), 500, 1000, 7);
    data.setup(Stage::Fit).unwrap();
    let train = data.train_dataloader().unwrap();
    let val = data.val_dataloader().unwrap();
    assert_eq!((train.num_items(), val.num_items()), (7000, 1000));
    let batch = val.iter().next().unwrap().unwrap();
    assert_eq!(batch.images.dims(), [500, PIXELS]);
    assert_eq!(batch.targets.dims(), [500]);
    data.setup(Stage::Test).unwrap();
    assert_eq!(data.test_dataloader().unwrap().num_items(), 2000);
}

/// The digits of the first training batch.
fn first_train_targets(data: &mut MnistData) -> Vec<i64> {
    data.setup(Stage::Fit).unwrap();
    let batch = data.train_dataloader().unwrap().iter().next().unwrap().unwrap();
    batch.targets.into_data().convert::<i64>().try_to_vec().unwrap()
}

#[test]
fn the_trainers_seed_replaces_the_constructors_in_the_shuffle() {
    let order = |seed: u64, trainer_seed: Option<u64>| {
        let mut data = MnistData::new(MnistData::bundled_dir(), 64, 1000, seed);
        if let Some(trainer_seed) = trainer_seed {
            data.set_seed(trainer_seed);
        }
        first_train_targets(&mut data)
    };
    assert_eq!(order(1, None), order(1, None), "the constructor's seed shuffles");
    assert_ne!(order(1, None), order(2, None));
    assert_eq!(order(1, Some(2)), order(2, None), "the trainer's seed replaces it");
}

#[test]
fn a_well_formed_small_split_reads_back() {
    // The control for the malformed cases below: the same writer, correct files.
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path(), &images(3), &gzip(&idx(&[3], &[0, 5, 9])));
    let split = MnistSplit::read(dir.path(), "split").unwrap();
    assert_eq!(split.labels.as_slice(), [0, 5, 9]);
    assert_eq!(split.images[PIXELS * 2], 2);
    // Uncompressed IDX under a `.gz` name is read too.
    let raw = write(dir.path(), "raw.gz", &idx(&[2, 2], &[1, 2, 3, 4]));
    assert_eq!(read_idx(&raw).unwrap().data, [1, 2, 3, 4]);
}

#[test]
fn malformed_idx_files_are_errors_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let good = idx(&[2, 3], &[1, 2, 3, 4, 5, 6]);
    let truncated_gzip = {
        let full = gzip(&idx(&[100, 100], &[7; 10_000]));
        full[..full.len() / 2].to_vec()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "magic"),
        ("shorter than the magic", vec![0, 0], "magic"),
        ("bad magic", [&[0x12, 0x34][..], &good[2..]].concat(), "magic"),
        ("floats, not bytes", [&[0, 0, 0x0D][..], &good[3..]].concat(), "0x0d"),
        ("zero dimensions", vec![0, 0, 0x08, 0], "zero dimensions"),
        ("truncated header", good[..9].to_vec(), "truncated header"),
        ("truncated data", good[..good.len() - 1].to_vec(), "found 5"),
        ("extra data", [&good[..], &[0]].concat(), "found 7"),
        (
            "dimensions overflow",
            idx(&[u32::MAX, u32::MAX, u32::MAX, u32::MAX], &[]),
            "overflow",
        ),
        (
            "huge dimensions, no data",
            idx(&[60_000, 28, 28], &[1, 2, 3]),
            "found 3",
        ),
        ("garbage named .gz", b"certainly not a gzip stream".to_vec(), "magic"),
        (
            "gzip header, garbage body",
            [&[0x1f, 0x8b][..], &[0x55; 64]].concat(),
            "gzip",
        ),
        ("truncated gzip", truncated_gzip, "gzip"),
        ("gzip of garbage", gzip(b"not an idx file inside"), "magic"),
    ];
    for (name, bytes, expected) in cases {
        let path = write(dir.path(), &format!("{}.gz", name.replace(' ', "_")), &bytes);
        let error = read_idx(&path).expect_err(name);
        assert!(matches!(error, IdxError::Malformed { .. }), "{name}: {error:?}");
        let message = error.to_string();
        assert!(
            message.contains(&*path.to_string_lossy()),
            "{name}: the message names the file: {message}"
        );
        assert!(
            message.to_lowercase().contains(expected),
            "{name}: the message says why ({expected}): {message}"
        );
    }
    assert!(matches!(
        read_idx(&dir.path().join("absent.gz")),
        Err(IdxError::Io { .. })
    ));
    assert!(parse_idx(&good).is_ok());
}

#[test]
fn images_and_labels_that_do_not_fit_each_other_are_errors() {
    let labels3 = gzip(&idx(&[3], &[1, 2, 3]));
    let cases: Vec<(&str, Vec<u8>, Vec<u8>, &str)> = vec![
        (
            "images of 28x27",
            gzip(&idx(&[3, 28, 27], &vec![0; 3 * 28 * 27])),
            labels3.clone(),
            "28 x 28",
        ),
        (
            "flat images",
            gzip(&idx(&[3, PIXELS as u32], &vec![0; 3 * PIXELS])),
            labels3.clone(),
            "28 x 28",
        ),
        (
            "fewer labels than images",
            images(4),
            labels3.clone(),
            "expected 4 labels",
        ),
        (
            "more labels than images",
            images(2),
            labels3.clone(),
            "expected 2 labels",
        ),
        (
            "labels in two dimensions",
            images(3),
            gzip(&idx(&[3, 1], &[1, 2, 3])),
            "expected 3 labels",
        ),
        (
            "a label that is not a digit",
            images(3),
            gzip(&idx(&[3], &[1, 10, 3])),
            "label 10",
        ),
        (
            "truncated images",
            {
                let gz = images(3);
                gz[..gz.len() / 2].to_vec()
            },
            labels3.clone(),
            "gzip",
        ),
    ];
    for (name, images, labels, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_split(dir.path(), &images, &labels);
        let error = MnistSplit::read(dir.path(), "split").expect_err(name);
        let message = error.to_string();
        assert!(message.contains(expected), "{name}: {message}");
    }
}

#[test]
fn a_datamodule_over_missing_files_fails_its_setup() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = MnistData::new(dir.path(), 64, 10, 0);
    let error = data.setup(Stage::Fit).unwrap_err();
    assert!(matches!(error, Error::User(_)), "{error:?}");
    assert!(error.to_string().contains("train-images-idx3-ubyte.gz"), "{error}");
    let error = data.setup(Stage::Test).unwrap_err();
    assert!(error.to_string().contains("t10k-images-idx3-ubyte.gz"), "{error}");
}

/// A binary run away from its source tree (the GPU checks' pack) finds the bundled files under
/// `BURN_LIGHTNING_DATA_DIR`; a directory without them is an error naming the file.
#[test]
fn the_data_directory_variable_moves_the_bundled_data() {
    let moved = tempfile::tempdir().unwrap();
    let dir = MnistData::bundled_dir_in(Some(moved.path().into()));
    assert_eq!(dir, moved.path().join("mnist"));
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(MnistData::bundled_dir_in(None)).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "gz") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    let mut data = MnistData::new(&dir, 500, 1000, 7);
    data.setup(Stage::Fit).unwrap();
    assert_eq!(data.train_dataloader().unwrap().num_items(), 7000);

    let empty = tempfile::tempdir().unwrap();
    let mut data = MnistData::new(MnistData::bundled_dir_in(Some(empty.path().into())), 64, 10, 0);
    let error = data.setup(Stage::Fit).unwrap_err();
    let expected = empty.path().join("mnist/train-images-idx3-ubyte.gz");
    assert!(error.to_string().contains(&expected.display().to_string()), "{error}");
}

/// `--data.batch_size 0` is bad input (status 2) naming the option, before any loader is built:
/// burn's batch iterator never advances with batches of 0, so the run used to hang. The CLI runs
/// on a thread: a hang fails the test instead of stalling it.
#[test]
fn a_batch_size_of_zero_is_an_error_before_any_loader() {
    let mut data = MnistData::new(MnistData::bundled_dir(), 0, 10, 0);
    let error = data.setup(Stage::Fit).unwrap_err();
    assert!(error.to_string().contains("batch_size"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let cli = LightningCli::<lit_mnist::LitMnist, MnistData>::new(lit_mnist::LitMnist::new);
        let args = [
            "mnist",
            "fit",
            "--data.batch_size",
            "0",
            "--trainer.max_epochs",
            "1",
            "--trainer.default_root_dir",
            &root,
        ];
        let result = cli
            .run_from(args)
            .map(|_| ())
            .map_err(|e| (e.exit_code(), e.message().to_string()));
        let _ = done.send(result);
    });
    let result = outcome
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("`fit --data.batch_size 0` still ran after two minutes");
    let (code, message) = result.expect_err("a batch size of 0 is an error");
    assert_eq!(code, 2, "{message}");
    assert!(
        message.contains("invalid `--data.batch_size`") && message.contains("1 or more"),
        "{message}"
    );

    // The data helpers: no more silent batches of 1.
    let x = Tensor::<2>::zeros([4, 2], &Device::default());
    let dataset = TensorDataset::inputs(x).unwrap();
    let error = dataset
        .loader(0)
        .build()
        .err()
        .expect("a loader of batches of 0 is an error");
    assert!(error.to_string().contains("batch_size"), "{error}");
    let mut in_memory = InMemoryDataModule::new(dataset, None, None).batch_size(0);
    assert!(in_memory.setup(Stage::Fit).is_err());
}
