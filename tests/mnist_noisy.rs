//! The `mnist_noisy` example, run for two short epochs: validated and tested on a clean and a
//! noisy set at once (two dataloaders), then predicting the digits of unlabelled images into a
//! file with a `PredictionWriter`.

// The example's own `main` is not called here.
#[allow(dead_code)]
#[path = "../examples/mnist_noisy.rs"]
mod example;

#[test]
fn the_example_scores_each_set_and_predicts_unlabelled_digits() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = example::run(2, Some(40), 200, dir.path()).unwrap();
    let [clean, noisy] = outcome.test_acc;
    assert!(clean > 0.8, "clean test accuracy {clean}");
    // Each set is scored on its own: the noise costs accuracy.
    assert!(noisy < clean - 0.05, "noisy {noisy} against clean {clean}");
    assert_eq!(outcome.predicted.len(), 200, "one digit per unlabelled image");
    // They came from the writer's file, `position,digit` in the loader's order; `predict`
    // itself kept nothing.
    assert_eq!(outcome.returned, 0);
    let positions: Vec<usize> = std::fs::read_to_string(&outcome.predictions_file)
        .unwrap()
        .lines()
        .map(|line| line.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(positions, (0..200).collect::<Vec<_>>());
    let right = outcome
        .predicted
        .iter()
        .filter(|(digit, label)| *digit == i64::from(*label))
        .count();
    // The same clean images the test scored, without their labels.
    assert!(right as f64 / 200.0 > 0.8, "{right} of 200 predicted digits are right");
    // Both validation sets were reduced on their own, under their own names.
    let [clean, noisy] = outcome.val_acc;
    assert!(
        clean > 0.8 && noisy < clean - 0.05,
        "validation: clean {clean}, noisy {noisy}"
    );
}
