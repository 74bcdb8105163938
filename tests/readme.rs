//! The README's "What it looks like" code is an excerpt of the compiled MNIST example: every line
//! of its `rust` block appears, in the same order, in `examples/common/lit_mnist.rs` followed by
//! `examples/mnist.rs`. Editing either side without the other fails here.
//!
//! Lines are compared without their indentation (the excerpt of `main` is not indented in the
//! README). Blank lines are skipped, and so are lines starting with `// ...`, which mark code the
//! excerpt leaves out.

/// The README and the files its excerpt comes from, in order.
const README: &str = include_str!("../README.md");
const SOURCES: [(&str, &str); 2] = [
    (
        "examples/common/lit_mnist.rs",
        include_str!("../examples/common/lit_mnist.rs"),
    ),
    ("examples/mnist.rs", include_str!("../examples/mnist.rs")),
];

/// The lines of the first ```` ```rust ```` block of the section `heading`, with their line
/// numbers in `markdown`.
fn rust_block<'a>(markdown: &'a str, heading: &str) -> Vec<(usize, &'a str)> {
    let mut lines = markdown.lines().enumerate().skip_while(|(_, l)| *l != heading);
    assert!(lines.next().is_some(), "the README has no section `{heading}`");
    let block: Vec<(usize, &str)> = lines
        .take_while(|(_, l)| !l.starts_with("## "))
        .skip_while(|(_, l)| *l != "```rust")
        .skip(1)
        .take_while(|(_, l)| *l != "```")
        .map(|(i, l)| (i + 1, l))
        .collect();
    assert!(!block.is_empty(), "the section `{heading}` has no ```rust block");
    block
}

/// Whether a README line is checked: not blank and not an elision mark.
fn checked(line: &str) -> bool {
    let line = line.trim();
    !line.is_empty() && !line.starts_with("// ...")
}

/// The first excerpt line (numbered) that does not appear in `source` after the lines before it.
fn first_missing<'a>(excerpt: &[(usize, &'a str)], source: &[&str]) -> Option<(usize, &'a str)> {
    let mut rest = source.iter();
    excerpt
        .iter()
        .filter(|(_, line)| checked(line))
        .find(|(_, line)| !rest.any(|s| s.trim() == line.trim()))
        .copied()
}

#[test]
fn the_readme_example_is_an_excerpt_of_the_mnist_example() {
    let excerpt = rust_block(README, "## What it looks like");
    let source: Vec<&str> = SOURCES.iter().flat_map(|(_, text)| text.lines()).collect();
    if let Some((number, line)) = first_missing(&excerpt, &source) {
        let files: Vec<&str> = SOURCES.iter().map(|(path, _)| *path).collect();
        panic!(
            "README.md line {number}, `{}`, is not in {} after the README's lines before it: \
             update the README's example or the example files",
            line.trim(),
            files.join(" + ")
        );
    }
    // The excerpt shows the module, its hooks and the trainer, not only elisions.
    let shown = excerpt.iter().filter(|(_, l)| checked(l)).count();
    assert!(shown >= 40, "only {shown} lines of the README's example are checked");
}

#[test]
fn the_check_rejects_a_line_out_of_order_a_changed_line_and_a_new_line() {
    let source = ["fn a() {", "    one();", "}", "fn b() {}"];
    let excerpt =
        |lines: &[&'static str]| -> Vec<(usize, &'static str)> { lines.iter().copied().enumerate().collect() };
    assert_eq!(
        first_missing(&excerpt(&["fn a() {", "// ... one", "}", "", "fn b() {}"]), &source),
        None
    );
    assert_eq!(
        first_missing(&excerpt(&["fn b() {}", "fn a() {"]), &source),
        Some((1, "fn a() {"))
    );
    assert_eq!(
        first_missing(&excerpt(&["fn a() {", "one(1);"]), &source),
        Some((1, "one(1);"))
    );
    assert_eq!(first_missing(&excerpt(&["fn c() {}"]), &source), Some((0, "fn c() {}")));
}
