//! The build key: a sha256 over everything that decides an artifact's bytes. Same key, same
//! bytes, so a stored build under that key can be reused without building.

use std::path::Path;

use crate::key::Key;
use anyhow::{Context, Result};

use crate::buildenv::Root;
use crate::lock::Blob;
use crate::recipe::{Kind, Recipe};
use crate::variant::Variant;
use crate::workspace::Workspace;

/// Bumped when the build driver changes how every artifact is made.
const FORMAT: &str = "stubdoms-build-2";

pub fn build_key(
    ws: &Workspace,
    recipe: &Recipe,
    variant: Variant,
    xen: Option<super::XenTarget>,
    inputs: &[Blob],
    root: &Root,
    epoch: u64,
) -> Result<String> {
    let mut k = Key::new(FORMAT);
    let mut field = |name: &str, bytes: &[u8]| {
        k.field(name, bytes);
    };
    // What the recipe says about building, not its boot tests: a changed expectation must
    // not rebuild a GRUB or a kernel.
    let outputs: Vec<String> = recipe
        .variants
        .iter()
        .map(|(v, o)| format!("{v}={o:?}"))
        .collect();
    let build_part = format!(
        "{}\n{}\n{}\n{:?}\n{:?}",
        recipe.name, recipe.kind, recipe.licence, recipe.inputs, outputs
    );
    field("recipe", build_part.as_bytes());
    field("variant", variant.as_str().as_bytes());
    field("epoch", epoch.to_string().as_bytes());
    let mut shas: Vec<&str> = inputs.iter().map(|b| b.sha256.as_str()).collect();
    shas.sort();
    field("inputs", shas.join(",").as_bytes());
    field("recipe-dir", recipe_dir_hash(&recipe.dir)?.as_bytes());
    for dir in shared_sources(recipe.kind) {
        field(dir, tree_hash(&ws.root.join(dir))?.as_bytes());
    }
    field("builder", builder_source(recipe.kind).as_bytes());
    field("steps", STEPS.as_bytes());
    // Steps see nothing but their root and what they declare, so the root's key stands for
    // every tool and library a build uses.
    field("root", root.key.as_bytes());
    if let Some(x) = xen {
        field("xen-release", x.release.as_bytes());
        field("xen-root", x.root.key.as_bytes());
    }
    Ok(k.finish())
}

/// How every step runs: the build driver's common code, the root assembly and the sandbox.
const STEPS: &str = concat!(
    include_str!("mod.rs"),
    include_str!("../buildenv.rs"),
    include_str!("../sandbox.rs"),
    include_str!("../crates.rs"),
);

/// The builder's own code: a change to how a kind is built rebuilds that kind only.
fn builder_source(kind: Kind) -> &'static str {
    match kind {
        Kind::Rust | Kind::C => include_str!("runtime.rs"),
        Kind::Pvgrub => concat!(include_str!("pvgrub.rs"), include_str!("../debsrc.rs")),
        Kind::Ioemu => concat!(
            include_str!("ioemu.rs"),
            include_str!("../elfdeps.rs"),
            include_str!("../debsrc.rs")
        ),
    }
}

/// Source folders outside the recipe folder that a kind compiles in.
fn shared_sources(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Rust | Kind::C => &["libs", "Cargo.lock", "Cargo.toml"],
        Kind::Ioemu => &["libs", "Cargo.lock", "Cargo.toml"],
        // The memdisk tar and the gzip'd image are written by the archive crate.
        Kind::Pvgrub => &["libs/archive"],
    }
}

/// The recipe folder's files that go into an image: all but `stubdom.toml` (its build part is
/// keyed above) and `tests/` (boot-test fixtures).
fn recipe_dir_hash(dir: &Path) -> Result<String> {
    let mut k = Key::new("recipe-dir");
    let mut entries: Vec<_> = fs_err::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        if name == "stubdom.toml" || name == "tests" || name == "target" {
            continue;
        }
        k.field(&name.to_string_lossy(), tree_hash(&e.path())?);
    }
    Ok(k.finish())
}

/// A hash of a file, or of a folder's files (paths, modes and contents, sorted), skipping
/// `target/` folders.
pub fn tree_hash(path: &Path) -> Result<String> {
    if path.is_file() {
        let bytes = fs_err::read(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(Key::new("file").field("content", bytes).finish());
    }
    let mut k = Key::new("tree");
    let mut files = Vec::new();
    walk(path, path, &mut files)?;
    files.sort();
    for rel in files {
        let full = path.join(&rel);
        let meta = fs_err::symlink_metadata(&full)?;
        if meta.file_type().is_symlink() {
            k.field(
                &format!("link {rel}"),
                fs_err::read_link(&full)?.as_os_str().as_encoded_bytes(),
            );
        } else {
            use std::os::unix::fs::PermissionsExt;
            let exec = meta.permissions().mode() & 0o111 != 0;
            let bytes =
                fs_err::read(&full).with_context(|| format!("reading {}", full.display()))?;
            k.field(
                &format!("{} {rel}", if exec { "exec" } else { "file" }),
                bytes,
            );
        }
    }
    Ok(k.finish())
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in fs_err::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        if entry.file_type()?.is_dir() {
            walk(base, &path, out)?;
        } else {
            let rel = path.strip_prefix(base).unwrap_or(&path);
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}
