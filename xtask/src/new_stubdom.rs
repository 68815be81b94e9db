//! `cargo xtask new-stubdom NAME [--lang rust|c]`: a working stub domain in one command. The
//! examples are the templates (so the template is built and boot-tested on every run and
//! never rots): copy one, rename what carries its name, register a Rust crate in the
//! workspace `Cargo.toml` with toml_edit (comments and layout kept), print the next steps.
//! A refusal changes nothing.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use toml_edit::DocumentMut;

use crate::fsx;
use crate::recipe;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    C,
}

impl Lang {
    fn template(self) -> &'static str {
        match self {
            Lang::Rust => "rust-stubdom",
            Lang::C => "c-stubdom",
        }
    }
}

/// Names a new stub domain may not take: they would shadow something else.
const RESERVED: &[&str] = &[
    "selftest",
    "xtask",
    "stubrt",
    "stubrt-c",
    "xen-abi",
    "xenstore-proto",
];

pub fn run(root: &Path, name: &str, lang: Lang) -> Result<PathBuf> {
    if !recipe::is_valid_name(name) || RESERVED.contains(&name) {
        bail!(
            "`{name}` is not a usable stub-domain name: use lowercase letters, digits and `-`, starting with a letter (at most 48), and none of: {}",
            RESERVED.join(", ")
        );
    }
    let template = root.join("stubdoms").join(lang.template());
    let dest = root.join("stubdoms").join(name);
    if dest.exists() {
        bail!(
            "{} already exists: pick another name or remove it",
            dest.display()
        );
    }
    if !template.join("stubdom.toml").is_file() {
        bail!("the template {} is missing", template.display());
    }
    let manifest = root.join("Cargo.toml");
    let old_manifest = fs_err::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let new_manifest = match lang {
        Lang::Rust => {
            refuse_if_dirty(root)?;
            Some(register(&old_manifest, &format!("stubdoms/{name}"))?)
        }
        Lang::C => None,
    };

    // Copy into a hidden partial folder first; only a complete copy gets the real name.
    let partial = root.join("stubdoms").join(format!(".{name}.partial"));
    fsx::remove_dir_if_exists(&partial)?;
    let result = (|| -> Result<()> {
        copy_renamed(&template, &partial, lang.template(), name)?;
        set_summary(&partial.join("stubdom.toml"), name, lang)?;
        if let Some(text) = &new_manifest {
            fsx::write_atomic(&manifest, text.as_bytes())?;
        }
        if let Err(e) = fs_err::rename(&partial, &dest) {
            if new_manifest.is_some() {
                fsx::write_atomic(&manifest, old_manifest.as_bytes())?;
            }
            return Err(e).with_context(|| format!("renaming into {}", dest.display()));
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fsx::remove_dir_if_exists(&partial);
    }
    result?;
    println!(
        "created stubdoms/{name} from the {} template",
        lang.template()
    );
    if new_manifest.is_some() {
        println!("registered stubdoms/{name} in the workspace Cargo.toml");
        lock_workspace(root);
    }
    println!("next:");
    println!("  cargo xtask build {name}        # target/images/x86_64-pv/{name}-x86_64-pv.elf");
    println!("  cargo xtask boot-test {name}    # boots it under Xen in QEMU");
    println!("  edit stubdoms/{name}/stubdom.toml to change what its boot tests expect");
    Ok(dest)
}

/// Adds the new member to `Cargo.lock` (it uses only crates the lock has): image builds run
/// cargo offline with `--locked` in the build environment, where the lock cannot change.
/// The stub domain is made either way; a lock that could not be updated is said, with what
/// to run.
fn lock_workspace(root: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = std::process::Command::new(&cargo)
        .args(["update", "--workspace", "--offline", "--quiet"])
        .current_dir(root)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        println!("added it to Cargo.lock");
    } else {
        crate::ui::warn("`cargo update --workspace --offline` failed: Cargo.lock does not list the new stub domain yet; run `cargo update --workspace` before building it");
    }
}

/// A `Cargo.toml` with uncommitted changes is not edited: the user's work comes first.
fn refuse_if_dirty(root: &Path) -> Result<()> {
    let out = std::process::Command::new("git")
        .args(["status", "--porcelain", "--", "Cargo.toml"])
        .current_dir(root)
        .output();
    match out {
        Ok(o) if o.status.success() && !o.stdout.is_empty() => bail!(
            "Cargo.toml has uncommitted changes: commit or stash them first, so the new member is the only edit"
        ),
        _ => Ok(()),
    }
}

/// Adds `member` to `[workspace] members`, keeping comments and layout.
pub fn register(manifest: &str, member: &str) -> Result<String> {
    let mut doc: DocumentMut = manifest
        .parse()
        .context("the workspace Cargo.toml is not valid TOML: fix it first")?;
    let members = doc
        .get_mut("workspace")
        .and_then(|w| w.get_mut("members"))
        .and_then(|m| m.as_array_mut())
        .context("the workspace Cargo.toml has no `[workspace] members = [...]` array to add to: add the member by hand")?;
    if members.iter().any(|m| m.as_str() == Some(member)) {
        bail!("`{member}` is already a workspace member");
    }
    // Follow the layout of the last element (one per line, or inline), without copying a
    // comment that belongs to the line before it.
    let decor = members.iter().last().map(|v| {
        let prefix = v.decor().prefix().and_then(|p| p.as_str()).unwrap_or(" ");
        match prefix.rsplit_once('\n') {
            Some((_, indent)) => format!("\n{indent}"),
            None => " ".to_string(),
        }
    });
    members.push(member);
    if let (Some(prefix), Some(last)) = (decor, members.iter_mut().last()) {
        last.decor_mut().set_prefix(prefix);
    }
    Ok(doc.to_string())
}

/// Copies `from` to `to`, replacing the template's name (with `-` and with `_`) in file
/// names and contents. `target/` folders are not copied.
fn copy_renamed(from: &Path, to: &Path, old: &str, new: &str) -> Result<()> {
    fs_err::create_dir_all(to)?;
    let mut entries: Vec<_> = fs_err::read_dir(from)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    let (old_u, new_u) = (old.replace('-', "_"), new.replace('-', "_"));
    for e in entries {
        let name = e
            .file_name()
            .to_string_lossy()
            .replace(old, new)
            .replace(&old_u, &new_u);
        if name == "target" {
            continue;
        }
        let src = e.path();
        let dst = to.join(&name);
        if e.file_type()?.is_dir() {
            copy_renamed(&src, &dst, old, new)?;
        } else {
            let bytes = fs_err::read(&src)?;
            let out = match String::from_utf8(bytes) {
                Ok(text) => text.replace(old, new).replace(&old_u, &new_u).into_bytes(),
                Err(e) => e.into_bytes(),
            };
            fs_err::write(&dst, out)?;
            fs_err::set_permissions(&dst, fs_err::metadata(&src)?.permissions())?;
        }
    }
    Ok(())
}

fn set_summary(path: &Path, name: &str, lang: Lang) -> Result<()> {
    let text = fs_err::read_to_string(path)?;
    let mut doc: DocumentMut = text.parse().context("template stubdom.toml")?;
    doc["summary"] = toml_edit::value(format!(
        "{name}: a stub domain made from the {} template",
        match lang {
            Lang::Rust => "Rust",
            Lang::C => "C",
        }
    ));
    fs_err::write(path, doc.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "[workspace]\n# members, kept sorted by hand\nmembers = [\n    \"xtask\", # the driver\n    \"stubdoms/rust-stubdom\",\n]\n\n[profile.image]\nlto = true\n";

    #[test]
    fn registers_and_keeps_comments() {
        let out = register(MANIFEST, "stubdoms/demo").unwrap();
        assert_eq!(
            out,
            "[workspace]\n# members, kept sorted by hand\nmembers = [\n    \"xtask\", # the driver\n    \"stubdoms/rust-stubdom\",\n    \"stubdoms/demo\",\n]\n\n[profile.image]\nlto = true\n"
        );
        let err = register(&out, "stubdoms/demo").unwrap_err();
        assert!(format!("{err}").contains("already a workspace member"));
        let err = register("[workspace]\nmembers = \"x\"\n", "a").unwrap_err();
        assert!(format!("{err}").contains("no `[workspace] members = [...]` array"));
    }

    fn fake_workspace() -> PathBuf {
        let root = std::env::temp_dir().join(format!(
            "stubdoms-new-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        let t = root.join("stubdoms/rust-stubdom");
        fs_err::create_dir_all(t.join("src")).unwrap();
        fs_err::create_dir_all(t.join("target/junk")).unwrap();
        fs_err::write(root.join("Cargo.toml"), MANIFEST).unwrap();
        fs_err::write(
            t.join("stubdom.toml"),
            "name = \"rust-stubdom\"\nsummary = \"x\"\nkind = \"rust\"\n\n[variants.x86_64-pv]\nfile = \"rust-stubdom-x86_64-pv.elf\"\n",
        )
        .unwrap();
        fs_err::write(t.join("Cargo.toml"), "[package]\nname = \"rust-stubdom\"\n").unwrap();
        fs_err::write(
            t.join("src/main.rs"),
            "// rust_stubdom says: Hello from rust-stubdom\n",
        )
        .unwrap();
        root
    }

    #[test]
    fn copies_renames_and_registers() {
        let root = fake_workspace();
        let dest = run(&root, "my-dom", Lang::Rust).unwrap();
        let main = fs_err::read_to_string(dest.join("src/main.rs")).unwrap();
        assert_eq!(main, "// my_dom says: Hello from my-dom\n");
        let recipe = fs_err::read_to_string(dest.join("stubdom.toml")).unwrap();
        assert!(recipe.contains("name = \"my-dom\""), "{recipe}");
        assert!(
            recipe.contains("file = \"my-dom-x86_64-pv.elf\""),
            "{recipe}"
        );
        assert!(recipe.contains("summary = \"my-dom: a stub domain made from the Rust template\""));
        assert!(!dest.join("target").exists());
        let ws = fs_err::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(ws.contains("\"stubdoms/my-dom\""));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn refusals_change_nothing() {
        let root = fake_workspace();
        let before = fs_err::read_to_string(root.join("Cargo.toml")).unwrap();
        let cases: &[(&str, &str)] = &[
            ("Bad_Name", "is not a usable stub-domain name"),
            ("selftest", "is not a usable stub-domain name"),
            ("rust-stubdom", "already exists"),
        ];
        for (name, want) in cases {
            let err = format!("{:#}", run(&root, name, Lang::Rust).unwrap_err());
            assert!(err.contains(want), "{name}: {err}");
        }
        fs_err::write(root.join("Cargo.toml"), "[workspace]\nmembers = \"bad\"\n").unwrap();
        let err = format!("{:#}", run(&root, "fine", Lang::Rust).unwrap_err());
        assert!(err.contains("no `[workspace] members"), "{err}");
        assert!(!root.join("stubdoms/fine").exists());
        assert!(!root.join("stubdoms/.fine.partial").exists());
        fs_err::write(root.join("Cargo.toml"), &before).unwrap();
        let mut dirs: Vec<_> = fs_err::read_dir(root.join("stubdoms"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        dirs.sort();
        assert_eq!(dirs, ["rust-stubdom"]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
