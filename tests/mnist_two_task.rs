//! The `mnist_two_task` example, run for two short epochs: both heads learn from one combined
//! loader, whose epoch is the larger set's number of batches; then the prediction writer writes
//! both heads' answers for the held-out digits to a file, and `predict` keeps none.

// The example's own `main` is not called here.
#[allow(dead_code)]
#[path = "../examples/mnist_two_task.rs"]
mod example;

#[test]
fn both_tasks_learn_from_one_combined_loader() {
    let dir = tempfile::tempdir().unwrap();
    // 10 batches of digits and 20 of the second task: `max_size_cycle` runs 20 per epoch.
    let data = example::TwoTaskData::new(32, 320, 640, 200);
    let outcome = example::run(2, None, data, dir.path()).unwrap();
    println!(
        "validation accuracy: digit {:.3}, at least 5 {:.3}",
        outcome.val_digit_acc, outcome.val_high_acc
    );
    assert_eq!(outcome.global_step, 2 * 20);
    // Chance is 10% for the digit and about 50% for `digit >= 5`.
    assert!(outcome.val_digit_acc > 0.5, "digit accuracy {}", outcome.val_digit_acc);
    assert!(
        outcome.val_high_acc > 0.7,
        "`at least 5` accuracy {}",
        outcome.val_high_acc
    );

    // One line per held-out digit image (200), in the loader's order (not shuffled), with
    // `position,digit,at_least_5,true_digit`, and nothing returned.
    assert_eq!(outcome.returned, 0, "return_predictions(false) returns nothing");
    let text = std::fs::read_to_string(&outcome.predictions_file).unwrap();
    let rows: Vec<Vec<i64>> = text
        .lines()
        .map(|line| line.split(',').map(|field| field.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 200, "one line per predicted image:\n{text}");
    let (mut digits_right, mut highs_right) = (0, 0);
    for (position, row) in rows.iter().enumerate() {
        let &[at, digit, high, truth] = row.as_slice() else {
            panic!("line {position} has {} columns, not 4: {row:?}", row.len());
        };
        assert_eq!(at, position as i64, "positions in the loader's order");
        assert!(
            (0..10).contains(&digit) && (0..10).contains(&truth),
            "digits 0-9: {row:?}"
        );
        assert!(high == 0 || high == 1, "at_least_5 is 0 or 1: {row:?}");
        digits_right += usize::from(digit == truth);
        highs_right += usize::from((high == 1) == (truth >= 5));
    }
    // The file holds the trained heads' answers: as good as validation on these same images.
    let (digit_acc, high_acc) = (digits_right as f64 / 200.0, highs_right as f64 / 200.0);
    assert!(digit_acc > 0.5, "written digits right for {digit_acc} of the images");
    assert!(
        high_acc > 0.7,
        "written `at least 5` right for {high_acc} of the images"
    );
    let truths: std::collections::BTreeSet<i64> = rows.iter().map(|row| row[3]).collect();
    assert!(truths.len() > 5, "the true digits vary: {truths:?}");
}
