//! Repository hygiene, checked as ordinary tests: ARCHITECTURE.md's code map and the tree
//! agree, so someone new can trust the map.

use std::collections::BTreeSet;
use std::path::Path;

const MAP: &str = include_str!("../../ARCHITECTURE.md");

/// The text of the code map section headed `### `name``.
fn section(name: &str) -> &'static str {
    let head = format!("### `{name}`");
    let start = MAP
        .find(&head)
        .unwrap_or_else(|| panic!("ARCHITECTURE.md has no {head}"));
    let rest = &MAP[start + head.len()..];
    &rest[..rest
        .find("\n### ")
        .or_else(|| rest.find("\n## "))
        .unwrap_or(rest.len())]
}

/// Every `` `word.rs` `` the text names.
fn named_files(text: &str) -> BTreeSet<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|w| w.rsplit('/').next())
        .filter(|w| w.ends_with(".rs") && !w.contains(' '))
        .map(str::to_string)
        .collect()
}

fn rust_files(dir: &Path, out: &mut BTreeSet<String>) {
    for e in fs_err::read_dir(dir).expect("read xtask/src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.insert(p.file_name().expect("name").to_string_lossy().into_owned());
        }
    }
}

#[test]
fn every_xtask_module_is_in_the_code_map_and_every_named_one_exists() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeSet::new();
    rust_files(&src, &mut files);
    files.remove("mod.rs"); // a folder's module: the folder is named
    let named = named_files(section("xtask/"));
    let unnamed: Vec<_> = files.difference(&named).collect();
    let missing: Vec<_> = named
        .difference(&files)
        .filter(|f| *f != "mod.rs")
        .collect();
    assert!(
        unnamed.is_empty(),
        "modules not in ARCHITECTURE.md's code map: {unnamed:?}"
    );
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names modules that do not exist: {missing:?}"
    );
}

#[test]
fn every_library_is_in_the_code_map() {
    let libs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../libs");
    let text = section("libs/");
    for e in fs_err::read_dir(libs).expect("read libs") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(
            text.contains(&format!("`{name}`")),
            "libs/{name} is not in ARCHITECTURE.md's code map"
        );
    }
}

#[test]
fn named_files_reads_backticked_rust_files() {
    let got = named_files("- `a.rs`, `boot/b.rs`: x; `c` and `d.rs e` and `Key::new`");
    assert_eq!(got, ["a.rs", "b.rs"].map(String::from).into());
}
