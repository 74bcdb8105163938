//! The `mnist_two_task` example, run for two short epochs: both heads learn from one combined
//! loader, whose epoch is the larger set's number of batches.

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
}
