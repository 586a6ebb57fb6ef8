//! Hygiene checks that hold the documentation to the code, run as ordinary
//! tests.

use std::path::Path;

/// The first ```` ```rust ```` block of a Markdown file.
fn first_rust_block(path: &Path) -> String {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let start = text
        .find("```rust\n")
        .unwrap_or_else(|| panic!("no rust block in {}", path.display()));
    let body = &text[start + "```rust\n".len()..];
    let end = body.find("```").expect("a closed block");
    body[..end].to_owned()
}

/// The README's tour is the crate README's, which the gate runs as a doctest:
/// the code a new user copies first is code that runs.
#[test]
fn the_readme_tour_is_the_doctested_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    assert_eq!(
        first_rust_block(&root.join("README.md")),
        first_rust_block(&root.join("crates/eventbus/README.md")),
        "README.md's tour differs from crates/eventbus/README.md's (the doctested one)"
    );
}
