//! The flake's evaluation check, run by `cargo xtask test`. Nixpkgs cannot be fetched on the
//! project's CI machines, so the pinned Nix (`nix-bin` of the `trixie-check` environment)
//! evaluates `flake.nix` against `nix/check/nixpkgs`, a stand-in for the few nixpkgs
//! functions it calls (`nix/check/eval.nix` reduces each package to what matters), and this
//! compares what the flake decides with what the driver does: the package set, each
//! package's fixed-output fetches (names, sha256, archive paths) against the files its
//! recipe's build reads (`Workspace::build_blobs`), its command and install layout. It also
//! runs the fetch script against local mirrors. The Nix build itself is not run here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::buildenv::{self, Root};
use crate::cache::Cache;
use crate::lock::Blob;
use crate::workspace::Workspace;

/// The environment with `nix-bin` (and curl, for the fetch script).
pub const ENV: &str = "trixie-check";

/// Where NixOS's libxl looks for stub-domain images, under the package.
const INSTALL_DIR: &str = "libexec/xen/boot";

/// The stand-in's Xen version, and so the release `ioemu-stubdom` and `default` build for.
const STANDIN_XEN_RELEASE: &str = "4.20";

/// The variables the fetches read from the builder's environment (`impureEnvVars`).
const MIRROR_VARS: [&str; 3] = [
    "STUBDOMS_DEBIAN_MIRROR",
    "STUBDOMS_DEBIAN_SECURITY_MIRROR",
    "STUBDOMS_DEBIAN_SNAPSHOT",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Evaluated {
    nixpkgs_url: String,
    packages: BTreeMap<String, Package>,
    checks: BTreeMap<String, Package>,
    shell: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Package {
    pname: String,
    standin_kind: String,
    build_phase: String,
    install_phase: String,
    dont_fixup: bool,
    do_check: bool,
    stubdoms_inputs: Vec<String>,
    tools: Vec<String>,
    vendored: String,
    install_dir: String,
    fetches: Vec<Fetch>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fetch {
    name: String,
    archive: String,
    path: String,
    snapshot: String,
    output_hash: String,
    output_hash_mode: String,
    output_hash_algo: String,
    impure_env_vars: Vec<String>,
    debian_mirrors: Vec<String>,
    standin_kind: String,
    store_path: String,
}

/// One file as the flake should fetch it. The same file can be pinned at several times (in
/// several environments): any of its snapshot times will do, so they are not compared here.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Want {
    name: String,
    sha256: String,
    archive: String,
    path: String,
}

impl Want {
    fn of(b: &Blob) -> Want {
        Want {
            name: store_name(b.path.rsplit('/').next().unwrap_or(&b.path)),
            sha256: b.sha256.clone(),
            archive: b.archive.archive().as_str().to_string(),
            path: b.path.clone(),
        }
    }
}

/// What one package or check must be: its command and the files it fetches.
struct Expected {
    command: String,
    files: BTreeSet<Want>,
    /// When each file (by sha256) was pinned: where the snapshot archive has it.
    snapshots: BTreeMap<String, BTreeSet<String>>,
    /// Whether it installs images (a package) or only runs (a check).
    installs: bool,
}

/// Runs the check; returns how many checks passed.
pub fn check(ws: &Workspace, cache: &Cache) -> Result<usize> {
    let root = buildenv::fetched_root(ws, cache, ENV, false)?;
    let json = evaluate(ws, &root, "import /src/nix/check/eval.nix {}")?;
    let got: Evaluated = serde_json::from_str(&json)
        .context("nix/check/eval.nix gave JSON of another shape than the check reads")?;
    let mut problems = compare(&got, &expected(ws)?);
    problems.extend(check_nixpkgs_pin(&ws.root, &got.nixpkgs_url)?);
    if !got.shell.iter().any(|t| t == "cargo") {
        problems.push("the development shell has no cargo".into());
    }
    problems.extend(check_xen_mismatch(ws, &root)?);
    problems.extend(check_fetch_script(ws, &root)?);
    if !problems.is_empty() {
        bail!(
            "the flake's evaluation check failed:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(got.packages.len() + got.checks.len() + 3)
}

/// `nix-instantiate --eval --strict --json` of `expr` in the check environment, with a
/// throw-away store in its `/tmp` (evaluation copies the fetch script there).
fn evaluate(ws: &Workspace, root: &Root, expr: &str) -> Result<String> {
    let out = root
        .step()
        .ro(&ws.root, "/src")
        .cwd("/src")
        .command("nix-instantiate")?
        .args(["--eval", "--strict", "--json", "--store", "/tmp/nix-store"])
        .args(["--option", "experimental-features", ""])
        .args(["--option", "build-users-group", ""])
        .args(["--expr", expr])
        .output()
        .context("running nix-instantiate in the check environment")?;
    if !out.status.success() {
        bail!(
            "evaluating the flake (`{expr}`) failed:\n{}",
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    String::from_utf8(out.stdout).context("nix-instantiate printed something that is not UTF-8")
}

/// What the driver does for each package and check of the flake.
fn expected(ws: &Workspace) -> Result<BTreeMap<String, Expected>> {
    let mut out = BTreeMap::new();
    let build = |names: &[&str], release: Option<&str>| -> Result<Expected> {
        let mut blobs = Vec::new();
        for name in names {
            let r = ws
                .recipes
                .iter()
                .find(|r| r.name == *name)
                .with_context(|| format!("no recipe {name}"))?;
            blobs.extend(ws.build_blobs(r, release)?);
        }
        let mut command = format!("cargo xtask build --offline {}", names.join(" "));
        if let Some(r) = release {
            command.push_str(&format!(" --xen-release {r}"));
        }
        Ok(Expected::new(command, &blobs, true))
    };
    let mut names: Vec<&str> = ws.recipes.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    for r in &ws.recipes {
        if r.xen_releases.is_empty() {
            out.insert(r.name.clone(), build(&[&r.name], None)?);
        }
        for release in r.xen_releases.keys() {
            let attr = format!("{}-xen{}", r.name, release.replace('.', "_"));
            out.insert(attr, build(&[&r.name], Some(release))?);
        }
    }
    out.insert(
        "ioemu-stubdom".into(),
        build(&["ioemu"], Some(STANDIN_XEN_RELEASE))?,
    );
    out.insert("default".into(), build(&names, Some(STANDIN_XEN_RELEASE))?);
    let lint = ws.lock.env(buildenv::BUILD)?.blobs()?;
    out.insert(
        "check lint".into(),
        Expected::new("cargo xtask lint".into(), &lint, false),
    );
    out.insert(
        "check test".into(),
        Expected::new("cargo xtask test".into(), &ws.lock.all_blobs()?, false),
    );
    Ok(out)
}

impl Expected {
    fn new(command: String, blobs: &[Blob], installs: bool) -> Expected {
        let mut snapshots: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for b in blobs {
            snapshots
                .entry(b.sha256.clone())
                .or_default()
                .insert(b.snapshot.clone().unwrap_or_default());
        }
        Expected {
            command,
            files: blobs.iter().map(Want::of).collect(),
            snapshots,
            installs,
        }
    }
}

/// Every difference between what the flake decides and what the driver does.
fn compare(got: &Evaluated, want: &BTreeMap<String, Expected>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = BTreeMap::new();
    for (attr, p) in &got.packages {
        seen.insert(attr.clone(), p);
    }
    for (attr, p) in &got.checks {
        if got.packages.contains_key(attr) {
            if got.packages[attr].pname != p.pname {
                problems.push(format!("check `{attr}` is not the package `{attr}`"));
            }
        } else {
            seen.insert(format!("check {attr}"), p);
        }
    }
    for attr in want.keys().filter(|a| !seen.contains_key(*a)) {
        problems.push(format!("the flake has no `{attr}`"));
    }
    for (attr, p) in &seen {
        let Some(w) = want.get(attr) else {
            problems.push(format!(
                "the flake has `{attr}`, which the driver does not build"
            ));
            continue;
        };
        problems.extend(
            compare_one(attr, p, w)
                .into_iter()
                .map(|m| format!("`{attr}`: {m}")),
        );
    }
    // An alias (`ioemu-stubdom`) is the package its name says, with that package's manifest.
    let manifests: Vec<&str> = got
        .packages
        .iter()
        .filter(|(attr, p)| p.pname == **attr || !got.packages.contains_key(&p.pname))
        .map(|(_, p)| p.pname.as_str())
        .collect();
    let unique: BTreeSet<&&str> = manifests.iter().collect();
    if unique.len() != manifests.len() {
        problems.push("two packages share a name, and so a manifest name".into());
    }
    problems
}

fn compare_one(attr: &str, p: &Package, w: &Expected) -> Vec<String> {
    let mut problems = Vec::new();
    let mut files = BTreeSet::new();
    for f in &p.fetches {
        files.insert(Want {
            name: f.name.clone(),
            sha256: f.output_hash.clone(),
            archive: f.archive.clone(),
            path: f.path.clone(),
        });
        let pinned = w.snapshots.get(&f.output_hash);
        if pinned.is_some_and(|p| !p.contains(&f.snapshot)) {
            problems.push(format!(
                "the fetch of {} falls back to snapshot {:?}, not a time it was pinned",
                f.path, f.snapshot
            ));
        }
        if f.standin_kind != "mkDerivation"
            || f.output_hash_mode != "flat"
            || f.output_hash_algo != "sha256"
        {
            problems.push(format!(
                "{} is not a flat sha256 fixed-output fetch",
                f.path
            ));
        }
        if let Some(v) = MIRROR_VARS
            .iter()
            .find(|v| !f.impure_env_vars.iter().any(|i| i == *v))
        {
            problems.push(format!("the fetch of {} does not read {v}", f.path));
        }
        if !f
            .debian_mirrors
            .iter()
            .any(|m| m.contains("debian-mirror-one.invalid"))
        {
            problems.push(format!(
                "the fetch of {} does not use nixpkgs' Debian mirrors",
                f.path
            ));
        }
        if !f.store_path.ends_with(&format!("-{}", f.name)) {
            problems.push(format!("the fetch of {} is not named {}", f.path, f.name));
        }
    }
    let extra: Vec<&Want> = files.difference(&w.files).collect();
    let missing: Vec<&Want> = w.files.difference(&files).collect();
    let list = |v: &[&Want]| {
        v.iter()
            .map(|f| format!("{} ({})", f.path, &f.sha256[..f.sha256.len().min(12)]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !extra.is_empty() {
        problems.push(format!(
            "fetches {} file(s) its build does not read: {}",
            extra.len(),
            list(&extra)
        ));
    }
    if !missing.is_empty() {
        problems.push(format!(
            "lacks {} file(s) its build reads: {}",
            missing.len(),
            list(&missing)
        ));
    }
    let copied: BTreeSet<String> = p.stubdoms_inputs.iter().cloned().collect();
    let fetched: BTreeSet<String> = p
        .fetches
        .iter()
        .map(|f| format!("{}={}", f.output_hash, f.store_path))
        .collect();
    if copied != fetched {
        problems.push("the build does not copy exactly its fetches into the cache".into());
    }
    if p.standin_kind != "buildRustPackage" {
        problems.push("is not built with buildRustPackage (the driver's toolchain)".into());
    }
    if !p.build_phase.lines().any(|l| l.trim() == w.command) {
        problems.push(format!("its build does not run `{}`", w.command));
    }
    if !p.build_phase.contains("unset SOURCE_DATE_EPOCH") {
        problems.push("keeps stdenv's SOURCE_DATE_EPOCH, not the driver's".into());
    }
    if !p.vendored.ends_with("/Cargo.lock") {
        problems.push("takes its crates from something else than Cargo.lock".into());
    }
    if !p.dont_fixup || p.do_check {
        problems.push("lets the fixup phase (or cargo's check phase) run".into());
    }
    if w.installs {
        if p.install_dir != INSTALL_DIR || !p.install_phase.contains(&format!("$out/{INSTALL_DIR}"))
        {
            problems.push(format!("does not install into {INSTALL_DIR}"));
        }
        let manifest = format!("share/stubdoms/{}.manifest.json", p.pname);
        if !p.install_phase.contains(&manifest) {
            problems.push(format!("does not install its manifest as {manifest}"));
        }
    } else if !(p.tools.iter().any(|t| t == "clippy") && p.tools.iter().any(|t| t == "rustfmt")) {
        problems.push(format!("{attr} lacks clippy or rustfmt"));
    }
    problems
}

/// `flake.nix` follows a supported NixOS branch (25.11 or newer) and `flake.lock` pins it.
fn check_nixpkgs_pin(root: &Path, url: &str) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let Some(branch) = url.strip_prefix("github:NixOS/nixpkgs/") else {
        return Ok(vec![format!(
            "flake.nix: nixpkgs is `{url}`, not a NixOS branch on GitHub"
        )]);
    };
    let release = branch.strip_prefix("nixos-").and_then(|v| {
        let (y, m) = v.split_once('.')?;
        Some((y.parse::<u32>().ok()?, m.parse::<u32>().ok()?))
    });
    match release {
        Some(r) if r >= (25, 11) => {}
        _ => problems.push(format!(
            "flake.nix: nixpkgs branch `{branch}` is not a NixOS release of 25.11 or newer"
        )),
    }
    let path = root.join("flake.lock");
    let text = fs_err::read_to_string(&path)
        .with_context(|| format!("{}: the flake needs its lock", path.display()))?;
    let lock: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let node = &lock["nodes"]["nixpkgs"];
    if node["original"]["ref"].as_str() != Some(branch) {
        problems.push(format!(
            "flake.lock: nixpkgs is locked for `{}`, flake.nix follows `{branch}`: run `nix flake lock`",
            node["original"]["ref"]
        ));
    }
    let rev = node["locked"]["rev"].as_str().unwrap_or("");
    let hex = rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit());
    let nar = node["locked"]["narHash"].as_str().unwrap_or("");
    if !hex
        || !nar.starts_with("sha256-")
        || lock["nodes"]["root"]["inputs"]["nixpkgs"] != "nixpkgs"
    {
        problems.push("flake.lock: nixpkgs has no locked revision and NAR hash".into());
    }
    Ok(problems)
}

/// With a nixpkgs whose Xen release no ioemu image is built for, `ioemu-stubdom` must refuse
/// with a message naming the packages there are, not pick a wrong image.
fn check_xen_mismatch(ws: &Workspace, root: &Root) -> Result<Vec<String>> {
    let expr =
        "(import /src/nix/check/eval.nix { xenVersion = \"4.1.0\"; }).packages.ioemu-stubdom.pname";
    match evaluate(ws, root, expr) {
        Ok(got) => Ok(vec![format!(
            "with nixpkgs' Xen 4.1, ioemu-stubdom is {got} instead of an error"
        )]),
        Err(e) if format!("{e:#}").contains("use one of the ioemu-xen* packages") => Ok(vec![]),
        Err(e) => Ok(vec![format!(
            "with nixpkgs' Xen 4.1, ioemu-stubdom fails for another reason: {e:#}"
        )]),
    }
}

/// `nix/fetch-debian.sh` against local mirrors (`file://` URLs, with the check
/// environment's curl): a file from the mirror, a file only the snapshot archive still has,
/// and a security file with no mirror configured, which must fail saying what to set.
fn check_fetch_script(ws: &Workspace, root: &Root) -> Result<Vec<String>> {
    let dir = ws.target.join("nix-fetch-check");
    crate::fsx::remove_dir_if_exists(&dir)?;
    let put = |rel: &str, body: &str| -> Result<()> {
        let p = dir.join(rel);
        fs_err::create_dir_all(p.parent().context("path")?)?;
        fs_err::write(&p, body)?;
        Ok(())
    };
    put("mirror/pool/main/a/a.deb", "on the mirror")?;
    put(
        "snapshot/archive/debian/20260101T000000Z/pool/main/b/b.deb",
        "only in the snapshot archive",
    )?;
    let run = |archive: &str, path: &str, out: &str| -> Result<std::process::Output> {
        root.step()
            .ro(&ws.root, "/src")
            .rw(&dir, "/build")
            .env("archive", archive)
            .env("path", path)
            .env("snapshot", "20260101T000000Z")
            .env(
                "debianMirrors",
                "file:///build/absent/ file:///build/mirror/",
            )
            .env("STUBDOMS_DEBIAN_SNAPSHOT", "file:///build/snapshot")
            .env("out", format!("/build/{out}"))
            .command("bash")?
            .arg("/src/nix/fetch-debian.sh")
            .output()
            .context("running nix/fetch-debian.sh in the check environment")
    };
    let mut problems = Vec::new();
    for (path, out, body) in [
        ("pool/main/a/a.deb", "a", "on the mirror"),
        ("pool/main/b/b.deb", "b", "only in the snapshot archive"),
    ] {
        let o = run("debian", path, out)?;
        let got = fs_err::read_to_string(dir.join(out)).unwrap_or_default();
        if !o.status.success() || got != body {
            problems.push(format!(
                "nix/fetch-debian.sh did not fetch {path}: {}",
                String::from_utf8_lossy(&o.stderr).trim_end()
            ));
        }
    }
    let o = run("debian-security", "pool/updates/main/c/c.deb", "c")?;
    let said = String::from_utf8_lossy(&o.stderr);
    if o.status.success()
        || !said.contains("STUBDOMS_DEBIAN_SECURITY_MIRROR")
        || dir.join("c").exists()
    {
        problems.push(format!(
            "nix/fetch-debian.sh with no security mirror did not fail saying what to set: {}",
            said.trim_end()
        ));
    }
    crate::fsx::remove_dir_if_exists(&dir)?;
    Ok(problems)
}

/// A Nix store name from a file name (`nix/inputs.nix`'s `storeName`): the store allows
/// letters, digits and `+-._?=`; anything else becomes `_`.
fn store_name(file: &str) -> String {
    file.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+-._?=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(path: &str, sha: &str) -> Want {
        Want {
            name: store_name(path.rsplit('/').next().unwrap()),
            sha256: sha.into(),
            archive: "debian".into(),
            path: path.into(),
        }
    }

    fn fetch(w: &Want) -> Fetch {
        Fetch {
            name: w.name.clone(),
            archive: w.archive.clone(),
            path: w.path.clone(),
            snapshot: "20260101T000000Z".into(),
            output_hash: w.sha256.clone(),
            output_hash_mode: "flat".into(),
            output_hash_algo: "sha256".into(),
            impure_env_vars: MIRROR_VARS.iter().map(|v| v.to_string()).collect(),
            debian_mirrors: vec!["https://debian-mirror-one.invalid/debian/".into()],
            standin_kind: "mkDerivation".into(),
            store_path: format!("/nix/store/0-{}", w.name),
        }
    }

    fn package(name: &str, files: &[Want]) -> Package {
        let fetches: Vec<Fetch> = files.iter().map(fetch).collect();
        Package {
            pname: name.into(),
            standin_kind: "buildRustPackage".into(),
            build_phase: format!("unset SOURCE_DATE_EPOCH\ncargo xtask build --offline {name}\n"),
            install_phase: format!(
                "cp $f $out/libexec/xen/boot\ncp m $out/share/stubdoms/{name}.manifest.json"
            ),
            dont_fixup: true,
            do_check: false,
            stubdoms_inputs: fetches
                .iter()
                .map(|f| format!("{}={}", f.output_hash, f.store_path))
                .collect(),
            tools: vec![],
            vendored: "/src/Cargo.lock".into(),
            install_dir: INSTALL_DIR.into(),
            fetches,
        }
    }

    fn one(name: &str, got: &[Want], wanted: &[Want]) -> Vec<String> {
        let evaluated = Evaluated {
            nixpkgs_url: String::new(),
            packages: BTreeMap::from([(name.to_string(), package(name, got))]),
            checks: BTreeMap::new(),
            shell: vec![],
        };
        let expected = BTreeMap::from([(
            name.to_string(),
            Expected {
                command: format!("cargo xtask build --offline {name}"),
                files: wanted.iter().cloned().collect(),
                snapshots: BTreeMap::new(),
                installs: true,
            },
        )]);
        compare(&evaluated, &expected)
    }

    #[test]
    fn the_same_fetches_pass() {
        let a = [want("pool/main/a/a_1_amd64.deb", "aa")];
        assert_eq!(one("rust-stubdom", &a, &a), Vec::<String>::new());
    }

    #[test]
    fn a_package_with_an_input_its_recipe_does_not_use_fails() {
        let both = [want("pool/a.deb", "aa"), want("pool/b.deb", "bb")];
        let p = one("pvgrub", &both, &both[..1]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("fetches 1 file(s) its build does not read: pool/b.deb"));
    }

    #[test]
    fn a_package_missing_an_input_its_recipe_uses_fails() {
        let both = [want("pool/a.deb", "aa"), want("pool/b.deb", "bb")];
        let p = one("pvgrub", &both[..1], &both);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("lacks 1 file(s) its build reads: pool/b.deb"));
    }

    #[test]
    fn a_wrong_hash_is_both_missing_and_extra() {
        let p = one(
            "pvgrub",
            &[want("pool/a.deb", "aa")],
            &[want("pool/a.deb", "ab")],
        );
        assert_eq!(p.len(), 2, "{p:?}");
    }

    #[test]
    fn fixup_and_layout_are_checked() {
        let a = want("pool/a.deb", "aa");
        let mut evaluated = Evaluated {
            nixpkgs_url: String::new(),
            packages: BTreeMap::from([("x".to_string(), package("x", std::slice::from_ref(&a)))]),
            checks: BTreeMap::new(),
            shell: vec![],
        };
        let p = evaluated.packages.get_mut("x").unwrap();
        p.dont_fixup = false;
        p.install_dir = "lib/xen/boot".into();
        let expected = BTreeMap::from([(
            "x".to_string(),
            Expected {
                command: "cargo xtask build --offline x".into(),
                files: [a].into(),
                snapshots: BTreeMap::new(),
                installs: true,
            },
        )]);
        let p = compare(&evaluated, &expected);
        assert!(p.iter().any(|m| m.contains("fixup")), "{p:?}");
        assert!(
            p.iter().any(|m| m.contains("does not install into")),
            "{p:?}"
        );
    }

    #[test]
    fn store_names_keep_what_the_store_allows() {
        assert_eq!(
            store_name("libc6_2.36-9+deb12u10_amd64.deb"),
            "libc6_2.36-9+deb12u10_amd64.deb"
        );
        assert_eq!(
            store_name("zlib_1%3a1.3~rc.orig.tar.xz"),
            "zlib_1_3a1.3_rc.orig.tar.xz"
        );
    }

    #[test]
    fn the_nixpkgs_pin_must_be_supported_and_locked() {
        let dir = std::env::temp_dir().join(format!("xtask-nixpin-{}", std::process::id()));
        fs_err::create_dir_all(&dir).unwrap();
        let lock = |r: &str| {
            format!(
                r#"{{"nodes":{{"nixpkgs":{{"locked":{{"narHash":"sha256-x","rev":"{}"}},"original":{{"ref":"{r}"}}}},"root":{{"inputs":{{"nixpkgs":"nixpkgs"}}}}}}}}"#,
                "a".repeat(40)
            )
        };
        fs_err::write(dir.join("flake.lock"), lock("nixos-25.11")).unwrap();
        let ok = check_nixpkgs_pin(&dir, "github:NixOS/nixpkgs/nixos-25.11").unwrap();
        assert_eq!(ok, Vec::<String>::new());
        let old = check_nixpkgs_pin(&dir, "github:NixOS/nixpkgs/nixos-24.11").unwrap();
        assert!(
            old.iter()
                .any(|m| m.contains("not a NixOS release of 25.11")),
            "{old:?}"
        );
        assert!(
            old.iter().any(|m| m.contains("run `nix flake lock`")),
            "{old:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
