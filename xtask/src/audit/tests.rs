//! Tests of the unsafe audit against fixture workspaces built in a temp dir,
//! and against the real workspace.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::{Rule, Violation, audit, has_forbid_unsafe};

const ROOT_MANIFEST: &str = r#"[workspace]
resolver = "3"
members = ["crates/*", "tool"]

[workspace.lints.rust]
unsafe_code = "forbid"
"#;

const FORBID: &str = "//! A crate.\n#![forbid(unsafe_code)]\n\nfn main() {}\n";

fn member_manifest(name: &str) -> String {
    format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lints]\nworkspace = true\n"
    )
}

/// A clean workspace: a library, a binary with an extra `src/bin` binary, and
/// a member outside the glob with a declared `[[bin]]` path.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn clean() -> Self {
        let fixture = Fixture {
            dir: tempfile::tempdir().expect("create temp dir"),
        };
        fixture.write("Cargo.toml", ROOT_MANIFEST);
        fixture.write("crates/lib/Cargo.toml", &member_manifest("lib"));
        fixture.write("crates/lib/src/lib.rs", FORBID);
        fixture.write("crates/app/Cargo.toml", &member_manifest("app"));
        fixture.write("crates/app/src/main.rs", FORBID);
        fixture.write("crates/app/src/bin/helper.rs", FORBID);
        fixture.write("crates/app/src/bin/multi/main.rs", FORBID);
        fixture.write(
            "tool/Cargo.toml",
            &format!(
                "{}\n[[bin]]\nname = \"tool\"\npath = \"cli/tool.rs\"\n",
                member_manifest("tool")
            ),
        );
        fixture.write("tool/cli/tool.rs", FORBID);
        fixture
    }

    fn write(&self, relative: &str, contents: &str) {
        let path = self.dir.path().join(relative);
        fs::create_dir_all(path.parent().expect("fixture paths have a parent"))
            .expect("create dirs");
        fs::write(path, contents).expect("write fixture file");
    }

    fn audit(&self) -> Vec<Violation> {
        audit(self.dir.path()).expect("audit runs")
    }
}

fn violation(path: &str, rule: Rule) -> Violation {
    Violation {
        path: PathBuf::from(path),
        rule,
    }
}

#[test]
fn clean_workspace_passes() {
    assert_eq!(Fixture::clean().audit(), []);
}

#[test]
fn workspace_without_forbid_fails_naming_root_manifest() {
    let fixture = Fixture::clean();
    fixture.write(
        "Cargo.toml",
        &ROOT_MANIFEST.replace("\"forbid\"", "\"deny\""),
    );
    assert_eq!(
        fixture.audit(),
        [violation("Cargo.toml", Rule::WorkspaceForbidsUnsafe)]
    );
}

#[test]
fn workspace_forbid_as_table_with_priority_passes() {
    let fixture = Fixture::clean();
    fixture.write(
        "Cargo.toml",
        &ROOT_MANIFEST.replace("\"forbid\"", "{ level = \"forbid\", priority = -1 }"),
    );
    assert_eq!(fixture.audit(), []);
}

#[test]
fn member_without_workspace_lints_fails_naming_its_manifest() {
    let fixture = Fixture::clean();
    fixture.write(
        "crates/lib/Cargo.toml",
        &member_manifest("lib").replace("[lints]\nworkspace = true\n", ""),
    );
    assert_eq!(
        fixture.audit(),
        [violation(
            "crates/lib/Cargo.toml",
            Rule::MemberInheritsLints
        )]
    );
}

#[test]
fn crate_root_without_attribute_fails_naming_it() {
    let fixture = Fixture::clean();
    fixture.write("crates/lib/src/lib.rs", "//! A crate.\n\npub fn f() {}\n");
    assert_eq!(
        fixture.audit(),
        [violation(
            "crates/lib/src/lib.rs",
            Rule::CrateRootForbidsUnsafe
        )]
    );
}

#[test]
fn bin_in_src_bin_without_attribute_is_caught() {
    let fixture = Fixture::clean();
    fixture.write("crates/app/src/bin/helper.rs", "fn main() {}\n");
    fixture.write("crates/app/src/bin/multi/main.rs", "fn main() {}\n");
    assert_eq!(
        fixture.audit(),
        [
            violation("crates/app/src/bin/helper.rs", Rule::CrateRootForbidsUnsafe),
            violation(
                "crates/app/src/bin/multi/main.rs",
                Rule::CrateRootForbidsUnsafe
            ),
        ]
    );
}

#[test]
fn declared_bin_path_without_attribute_is_caught() {
    let fixture = Fixture::clean();
    fixture.write("tool/cli/tool.rs", "fn main() {}\n");
    assert_eq!(
        fixture.audit(),
        [violation("tool/cli/tool.rs", Rule::CrateRootForbidsUnsafe)]
    );
}

#[test]
fn attribute_only_inside_comments_is_caught() {
    let fixture = Fixture::clean();
    fixture.write(
        "crates/lib/src/lib.rs",
        "// #![forbid(unsafe_code)]\npub fn f() {}\n",
    );
    fixture.write(
        "crates/app/src/main.rs",
        "/* outer /* nested */\n#![forbid(unsafe_code)]\n*/\nfn main() {}\n",
    );
    assert_eq!(
        fixture.audit(),
        [
            violation("crates/app/src/main.rs", Rule::CrateRootForbidsUnsafe),
            violation("crates/lib/src/lib.rs", Rule::CrateRootForbidsUnsafe),
        ]
    );
}

#[test]
fn excluded_member_is_not_audited() {
    let fixture = Fixture::clean();
    fixture.write(
        "Cargo.toml",
        &ROOT_MANIFEST.replace("members = [", "exclude = [\"crates/app\"]\nmembers = ["),
    );
    fixture.write("crates/app/src/main.rs", "fn main() {}\n");
    assert_eq!(fixture.audit(), []);
}

#[test]
fn missing_declared_crate_root_is_an_error() {
    let fixture = Fixture::clean();
    fs::remove_file(fixture.dir.path().join("tool/cli/tool.rs")).expect("remove fixture file");
    let error = audit(fixture.dir.path()).expect_err("a declared crate root is missing");
    assert!(format!("{error:#}").contains("tool.rs"), "{error:#}");
}

#[test]
fn attribute_forms_accepted() {
    for source in [
        "#![forbid(unsafe_code)]",
        "\u{feff}#![forbid(unsafe_code)]",
        "#!/usr/bin/env run-cargo-script\n#![forbid(unsafe_code)]",
        "//! Docs.\n//!\n//! More docs.\n#![forbid(unsafe_code)]\n",
        "/*! Block docs. */\n#![warn(missing_docs)]\n#![forbid(unsafe_code)]\n",
        "#![doc = \"a ] bracket\"]\n#![forbid(unsafe_code)]\n",
        "#![doc = r#\"a \"] bracket\"#]\n#![forbid(unsafe_code)]\n",
        "#![forbid(missing_docs, unsafe_code)]\n",
        "#! [ forbid ( unsafe_code ) ]\n",
    ] {
        assert!(has_forbid_unsafe(source), "should accept: {source:?}");
    }
}

#[test]
fn attribute_forms_rejected() {
    for source in [
        "",
        "// #![forbid(unsafe_code)]\n",
        "/// #![forbid(unsafe_code)]\nfn f() {}\n",
        "/* #![forbid(unsafe_code)] */\n",
        "#![deny(unsafe_code)]\n",
        "#![cfg_attr(test, forbid(unsafe_code))]\n",
        "#[forbid(unsafe_code)]\nfn f() {}\n",
        "#![forbid(unsafe_op_in_unsafe_fn)]\n",
        "fn f() {}\n#![forbid(unsafe_code)]\n",
        "const S: &str = \"#![forbid(unsafe_code)]\";\n",
    ] {
        assert!(!has_forbid_unsafe(source), "should reject: {source:?}");
    }
}

/// A `fuzz/` package as cargo-fuzz lays it out, a workspace of its own.
fn fuzz_manifest(lints: &str) -> String {
    format!(
        "[package]\nname = \"fuzz\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\n[workspace]\n\n{lints}\n[[bin]]\nname = \"t\"\npath = \"fuzz_targets/t.rs\"\n"
    )
}

#[test]
fn the_fuzz_package_outside_the_workspace_is_audited() {
    let fixture = Fixture::clean();
    fixture.write(
        "fuzz/Cargo.toml",
        &fuzz_manifest("[lints.rust]\nunsafe_code = \"forbid\"\n"),
    );
    fixture.write("fuzz/src/lib.rs", FORBID);
    fixture.write("fuzz/fuzz_targets/t.rs", FORBID);
    assert_eq!(fixture.audit(), []);

    fixture.write("fuzz/Cargo.toml", &fuzz_manifest(""));
    fixture.write("fuzz/fuzz_targets/t.rs", "#![no_main]\n");
    assert_eq!(
        fixture.audit(),
        [
            violation("fuzz/Cargo.toml", Rule::OutsidePackageForbidsUnsafe),
            violation("fuzz/fuzz_targets/t.rs", Rule::CrateRootForbidsUnsafe),
        ]
    );
}

#[test]
fn real_workspace_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root");
    let violations = audit(root).expect("audit runs on the real workspace");
    assert!(
        violations.is_empty(),
        "unsafe audit violations in the real workspace:\n{}",
        violations
            .iter()
            .map(|v| format!("  {v}\n"))
            .collect::<String>()
    );
}
