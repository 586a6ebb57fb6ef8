//! The unsafe audit: proves that no workspace crate can contain `unsafe` code.
//!
//! Three rules, layered so that removing any one of them is still caught:
//! 1. the root manifest forbids `unsafe_code` in `[workspace.lints.rust]`;
//! 2. every member manifest inherits those lints with `[lints] workspace = true`;
//! 3. every crate root (the lib, `src/main.rs`, each `src/bin/` binary and any
//!    `[lib]`/`[[bin]]` path the manifest declares) carries the inner attribute
//!    `#![forbid(unsafe_code)]`, so the file says so itself even when it is
//!    compiled outside the workspace.
//!
//! The packages of [`OUTSIDE_PACKAGES`] (the fuzz targets, a workspace of
//! their own so the stable gate never builds them) cannot inherit the
//! workspace's lints: their manifest forbids `unsafe_code` in `[lints.rust]`
//! itself, and rule 3 holds for their crate roots.
//!
//! [`audit`] is a pure function over a directory: it reads files and returns
//! the violations; it prints nothing and runs no process, so tests can point it
//! at fixture workspaces.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use toml::{Table, Value};

#[cfg(test)]
mod tests;

/// A rule of the unsafe audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The root manifest must set `[workspace.lints.rust] unsafe_code = "forbid"`.
    WorkspaceForbidsUnsafe,
    /// A member manifest must inherit the workspace lints with `[lints] workspace = true`.
    MemberInheritsLints,
    /// A crate root must start with the inner attribute `#![forbid(unsafe_code)]`.
    CrateRootForbidsUnsafe,
    /// A package outside the workspace must set `[lints.rust] unsafe_code = "forbid"`.
    OutsidePackageForbidsUnsafe,
}

/// Packages in the tree that are not workspace members, audited all the
/// same when they exist: cargo-fuzz's `fuzz/`.
pub const OUTSIDE_PACKAGES: [&str; 1] = ["fuzz"];

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::WorkspaceForbidsUnsafe => {
                "missing `unsafe_code = \"forbid\"` in `[workspace.lints.rust]`"
            }
            Rule::MemberInheritsLints => "missing `[lints] workspace = true`",
            Rule::CrateRootForbidsUnsafe => {
                "crate root lacks the inner attribute `#![forbid(unsafe_code)]`"
            }
            Rule::OutsidePackageForbidsUnsafe => {
                "missing `unsafe_code = \"forbid\"` in `[lints.rust]`"
            }
        })
    }
}

/// One file that breaks one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The offending file, relative to the workspace root.
    pub path: PathBuf,
    /// The rule it breaks.
    pub rule: Rule,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.rule)
    }
}

/// Audits the workspace whose root manifest is `root/Cargo.toml`.
///
/// Returns every violation found (empty when the workspace is clean). An error
/// means the audit could not be carried out: an unreadable or malformed
/// manifest, a member that does not exist, a declared crate root that is missing.
pub fn audit(root: &Path) -> Result<Vec<Violation>> {
    let root_manifest = read_manifest(&root.join("Cargo.toml"))?;
    let Some(workspace) = root_manifest.get("workspace").and_then(Value::as_table) else {
        bail!(
            "{} has no [workspace] table",
            root.join("Cargo.toml").display()
        );
    };

    let mut violations = Vec::new();
    if !lints_forbid_unsafe(workspace) {
        violations.push(Violation {
            path: PathBuf::from("Cargo.toml"),
            rule: Rule::WorkspaceForbidsUnsafe,
        });
    }

    for member in members(root, &root_manifest, workspace)? {
        let manifest_path = root.join(&member).join("Cargo.toml");
        let manifest = read_manifest(&manifest_path)?;
        if !inherits_workspace_lints(&manifest) {
            violations.push(Violation {
                path: member.join("Cargo.toml"),
                rule: Rule::MemberInheritsLints,
            });
        }
        check_crate_roots(root, &member, &manifest, &mut violations)?;
    }
    for outside in OUTSIDE_PACKAGES.map(PathBuf::from) {
        let manifest_path = root.join(&outside).join("Cargo.toml");
        if !manifest_path.is_file() {
            continue;
        }
        let manifest = read_manifest(&manifest_path)?;
        if !lints_forbid_unsafe(&manifest) {
            violations.push(Violation {
                path: outside.join("Cargo.toml"),
                rule: Rule::OutsidePackageForbidsUnsafe,
            });
        }
        check_crate_roots(root, &outside, &manifest, &mut violations)?;
    }
    Ok(violations)
}

/// Rule 3 for the package in `root/dir`.
fn check_crate_roots(
    root: &Path,
    dir: &Path,
    manifest: &Table,
    violations: &mut Vec<Violation>,
) -> Result<()> {
    for crate_root in crate_roots(&root.join(dir), manifest)? {
        let source = fs::read_to_string(&crate_root)
            .with_context(|| format!("reading crate root {}", crate_root.display()))?;
        if !has_forbid_unsafe(&source) {
            let path = crate_root.strip_prefix(root).unwrap_or(&crate_root);
            violations.push(Violation {
                path: path.to_path_buf(),
                rule: Rule::CrateRootForbidsUnsafe,
            });
        }
    }
    Ok(())
}

fn read_manifest(path: &Path) -> Result<Table> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.parse::<Table>()
        .with_context(|| format!("parsing {}", path.display()))
}

/// `[lints.rust] unsafe_code` of `table` (the `[workspace]` table or a
/// package's manifest) is `"forbid"` or `{ level = "forbid", .. }`.
fn lints_forbid_unsafe(table: &Table) -> bool {
    let level = table
        .get("lints")
        .and_then(|lints| lints.get("rust"))
        .and_then(|rust| rust.get("unsafe_code"));
    let level = match level {
        Some(Value::Table(table)) => table.get("level"),
        other => other,
    };
    level.and_then(Value::as_str) == Some("forbid")
}

fn inherits_workspace_lints(manifest: &Table) -> bool {
    manifest
        .get("lints")
        .and_then(|lints| lints.get("workspace"))
        .and_then(Value::as_bool)
        == Some(true)
}

/// Member directories relative to `root`, sorted. Supports plain paths and a
/// `*` as a whole path component (`crates/*`), which is all this project uses;
/// any other glob is an error rather than a silently skipped member.
fn members(root: &Path, root_manifest: &Table, workspace: &Table) -> Result<Vec<PathBuf>> {
    let patterns = string_list(workspace, "members")?;
    let excluded: BTreeSet<PathBuf> = string_list(workspace, "exclude")?
        .iter()
        .map(|path| normalize(Path::new(path)))
        .collect();

    let mut members = BTreeSet::new();
    if root_manifest.contains_key("package") {
        members.insert(PathBuf::new());
    }
    for pattern in &patterns {
        for member in expand(root, pattern)? {
            if !excluded.contains(&member) {
                members.insert(member);
            }
        }
    }
    Ok(members.into_iter().collect())
}

fn string_list(table: &Table, key: &str) -> Result<Vec<String>> {
    let Some(value) = table.get(key) else {
        return Ok(Vec::new());
    };
    let Some(array) = value.as_array() else {
        bail!("`workspace.{key}` is not an array");
    };
    array
        .iter()
        .map(|item| match item.as_str() {
            Some(s) => Ok(s.to_owned()),
            None => bail!("`workspace.{key}` holds a non-string entry: {item}"),
        })
        .collect()
}

fn expand(root: &Path, pattern: &str) -> Result<Vec<PathBuf>> {
    if !pattern.contains(['*', '?', '[']) {
        return Ok(vec![normalize(Path::new(pattern))]);
    }
    let mut dirs = vec![PathBuf::new()];
    for component in Path::new(pattern).components() {
        let component = component.as_os_str().to_string_lossy();
        let mut next = Vec::new();
        for dir in dirs {
            if component == "*" {
                for entry in fs::read_dir(root.join(&dir))
                    .with_context(|| format!("expanding member glob `{pattern}`"))?
                {
                    let entry = entry?;
                    if entry.file_type()?.is_dir() {
                        next.push(dir.join(entry.file_name()));
                    }
                }
            } else if component.contains(['*', '?', '[']) {
                bail!("unsupported member glob `{pattern}`: only `*` as a whole path component");
            } else {
                next.push(dir.join(component.as_ref()));
            }
        }
        dirs = next;
    }
    Ok(dirs
        .into_iter()
        .filter(|dir| root.join(dir).join("Cargo.toml").is_file())
        .map(|dir| normalize(&dir))
        .collect())
}

/// Drops `.` components so `./src/main.rs` and `src/main.rs` compare equal.
fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// The crate roots of the package in `dir`: declared `[lib]`/`[[bin]]` paths
/// plus the conventional `src/lib.rs`, `src/main.rs`, `src/bin/*.rs` and
/// `src/bin/*/main.rs`. A declared path that does not exist is an error.
fn crate_roots(dir: &Path, manifest: &Table) -> Result<Vec<PathBuf>> {
    let mut roots = BTreeSet::new();

    let declared_lib = manifest
        .get("lib")
        .and_then(|lib| lib.get("path"))
        .and_then(Value::as_str);
    let declared_bins = manifest
        .get("bin")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|bin| bin.get("path").and_then(Value::as_str));
    for declared in declared_lib.into_iter().chain(declared_bins) {
        let path = normalize(&dir.join(declared));
        if !path.is_file() {
            bail!(
                "crate root {} declared in {} does not exist",
                path.display(),
                dir.join("Cargo.toml").display()
            );
        }
        roots.insert(path);
    }

    for conventional in ["src/lib.rs", "src/main.rs"] {
        let path = normalize(&dir.join(conventional));
        if path.is_file() {
            roots.insert(path);
        }
    }

    let bin_dir = dir.join("src").join("bin");
    if bin_dir.is_dir() {
        for entry in
            fs::read_dir(&bin_dir).with_context(|| format!("listing {}", bin_dir.display()))?
        {
            let path = entry?.path();
            if path.is_file() && path.extension().is_some_and(|ext| ext == "rs") {
                roots.insert(normalize(&path));
            } else if path.join("main.rs").is_file() {
                roots.insert(normalize(&path.join("main.rs")));
            }
        }
    }
    Ok(roots.into_iter().collect())
}

/// Whether `source` opens with the inner attribute `#![forbid(unsafe_code)]`
/// (possibly among other lints, e.g. `#![forbid(unsafe_code, missing_docs)]`).
///
/// Only real inner attributes count: the ones at the head of the file, before
/// the first item, outside comments. `#![deny(unsafe_code)]` (which code can
/// override) and `#![cfg_attr(.., forbid(unsafe_code))]` (conditional) do not.
pub fn has_forbid_unsafe(source: &str) -> bool {
    inner_attributes(source).into_iter().any(is_forbid_unsafe)
}

fn is_forbid_unsafe(attribute: &str) -> bool {
    let compact: String = attribute.chars().filter(|c| !c.is_whitespace()).collect();
    compact
        .strip_prefix("forbid(")
        .and_then(|rest| rest.strip_suffix(')'))
        .is_some_and(|lints| lints.split(',').any(|lint| lint == "unsafe_code"))
}

/// The bodies (text between the brackets) of the inner attributes that open a
/// crate root. Stops at the first token that is not whitespace, a comment or
/// an inner attribute: Rust accepts inner attributes only there.
fn inner_attributes(source: &str) -> Vec<&str> {
    let mut rest = source.strip_prefix('\u{feff}').unwrap_or(source);
    // A shebang line is `#!` not followed by `[`.
    if let Some(after) = rest.strip_prefix("#!")
        && !skip_trivia(after).starts_with('[')
    {
        rest = after.split_once('\n').map_or("", |(_, tail)| tail);
    }

    let mut attributes = Vec::new();
    loop {
        rest = skip_trivia(rest);
        let Some(after_bang) = rest.strip_prefix("#!") else {
            break;
        };
        let Some(body) = skip_trivia(after_bang).strip_prefix('[') else {
            break;
        };
        let Some(end) = closing_bracket(body) else {
            break;
        };
        attributes.push(&body[..end]);
        rest = &body[end + 1..];
    }
    attributes
}

/// Skips whitespace, line comments (doc comments included) and nested block comments.
fn skip_trivia(mut rest: &str) -> &str {
    loop {
        rest = rest.trim_start();
        if rest.starts_with("//") {
            rest = rest.split_once('\n').map_or("", |(_, tail)| tail);
        } else if rest.starts_with("/*") {
            rest = &rest[block_comment_len(rest.as_bytes())..];
        } else {
            return rest;
        }
    }
}

/// Length of the (possibly nested) block comment at the start of `bytes`;
/// the whole input when it is unterminated.
fn block_comment_len(bytes: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if bytes[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// Index of the `]` closing an attribute whose body starts at `body`, skipping
/// brackets inside string literals and comments. `None` when unbalanced.
fn closing_bracket(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut depth = 1usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            b'"' => i += string_len(&bytes[i..]) - 1,
            b'r' if raw_string_len(&bytes[i..]).is_some() => {
                i += raw_string_len(&bytes[i..]).unwrap_or(1) - 1;
            }
            b'/' if bytes[i..].starts_with(b"//") => {
                i += bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .unwrap_or(bytes.len() - i);
            }
            b'/' if bytes[i..].starts_with(b"/*") => i += block_comment_len(&bytes[i..]) - 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Length of the `"..."` literal at the start of `bytes`, escapes included.
fn string_len(bytes: &[u8]) -> usize {
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Length of the raw string literal (`r"..."`, `r#"..."#`, ...) at the start
/// of `bytes`, or `None` when `bytes` does not start with one.
fn raw_string_len(bytes: &[u8]) -> Option<usize> {
    let hashes = bytes[1..].iter().take_while(|&&b| b == b'#').count();
    if bytes.get(1 + hashes) != Some(&b'"') {
        return None;
    }
    let start = 2 + hashes;
    let closing: Vec<u8> = std::iter::once(b'"')
        .chain(std::iter::repeat_n(b'#', hashes))
        .collect();
    let end = bytes[start..]
        .windows(closing.len())
        .position(|window| window == closing.as_slice())
        .map_or(bytes.len(), |pos| start + pos + closing.len());
    Some(end)
}
