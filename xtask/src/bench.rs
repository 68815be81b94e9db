//! `cargo xtask bench`: the figures that matter, measured in one run and written as a table
//! and as JSON (`target/bench.json`): cold and warm (no-op) build time per payload, image
//! sizes, and boot-test times. Benchmarks live here, not in timed tests.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::boot;
use crate::builders as build;
use crate::fsx;
use crate::recipe;
use crate::workspace::Workspace;

#[derive(clap::Args)]
pub struct Flags {
    /// Skip the boot tests (build figures only).
    #[arg(long)]
    pub no_boot: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Report {
    environments: Vec<EnvFigure>,
    everything: Option<AllFigure>,
    builds: Vec<BuildFigure>,
    images: Vec<ImageFigure>,
    references: Vec<Reference>,
    boot: Vec<BootFigure>,
    /// The whole boot-test run: every scenario on every machine, as `cargo xtask test`
    /// runs them (images already built).
    boot_run_secs: Option<f64>,
}

/// Images measured next to what a distribution ships for the same job.
const REFERENCES: &[(&str, &str, &str, &str)] = &[
    (
        "pvgrub",
        "x86_64-pv",
        "grub-xen-bin",
        "usr/lib/grub-xen/grub-x86_64-xen.bin",
    ),
    (
        "pvgrub",
        "x86_32-pv",
        "grub-xen-bin",
        "usr/lib/grub-xen/grub-i386-xen.bin",
    ),
    (
        "pvgrub",
        "x86_64-pvh",
        "grub-xen-bin",
        "usr/lib/grub-xen/grub-i386-xen_pvh.bin",
    ),
];

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Reference {
    recipe: String,
    variant: String,
    /// Our image, uncompressed (the gzip'd size is in `images`).
    bytes_uncompressed: u64,
    reference: String,
    reference_bytes: u64,
}

/// A build environment assembled from packages already in the cache (unpacked or not).
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct EnvFigure {
    name: String,
    packages: usize,
    assemble_secs: f64,
}

/// Every selected recipe: from scratch (the sum of the recipes' cold builds), then at once
/// with nothing changed, next to the time it takes to hash every input of those builds once.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct AllFigure {
    cold_secs: f64,
    noop_secs: f64,
    hash_inputs_once_secs: f64,
    input_bytes: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct BuildFigure {
    recipe: String,
    /// Every variant from scratch: no stored build, no incremental state.
    cold_secs: f64,
    /// The same again with nothing changed: hashing inputs and sources only.
    warm_secs: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ImageFigure {
    recipe: String,
    variant: String,
    /// The Xen release it is built for, if its recipe builds one per release.
    xen_release: Option<String>,
    file: String,
    bytes: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct BootFigure {
    scenario: String,
    variant: String,
    machine: String,
    /// Guest creation (`xl create`) or QEMU start (dom0 scenarios) to the last expected line.
    secs_to_last_line: Option<f64>,
    /// QEMU start to dom0 ready, for the dom0 boot that ran the scenario.
    dom0_ready_secs: Option<f64>,
    /// EFI scenarios: the ESP's build time, and firmware start to each domain's last line.
    #[serde(skip_serializing_if = "Option::is_none")]
    esp_build_secs: Option<f64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    domain_secs: BTreeMap<String, f64>,
}

pub fn run(ws: &Workspace, names: &[String], flags: &Flags) -> Result<()> {
    let recipes = recipe::select(&ws.recipes, names)?;
    let mut builds = Vec::new();
    let mut images = Vec::new();
    for r in &recipes {
        let one = [r.name.clone()];
        let timed = |fresh| -> Result<(f64, Vec<build::Artifact>)> {
            let t = Instant::now();
            let arts = build::run(
                ws,
                &one,
                &build::Flags {
                    variant: None,
                    xen_release: None,
                    offline: false,
                    fresh,
                },
            )?;
            Ok((t.elapsed().as_secs_f64(), arts))
        };
        let (cold, _) = timed(true)?;
        let (warm, arts) = timed(false)?;
        builds.push(BuildFigure {
            recipe: r.name.clone(),
            cold_secs: cold,
            warm_secs: warm,
        });
        images.extend(arts.into_iter().map(|a| ImageFigure {
            recipe: a.recipe,
            variant: a.variant.as_str().into(),
            xen_release: a.xen_release,
            file: a.file,
            bytes: a.size,
        }));
    }
    let references = references(ws, &images)?;
    let environments = environments(ws)?;
    let cold_sum = builds.iter().map(|b| b.cold_secs).sum();
    let everything = everything(ws, &recipes, cold_sum)?;
    let mut boot_figures = Vec::new();
    let mut boot_run_secs = None;
    if !flags.no_boot {
        let started = std::time::Instant::now();
        let outcomes = boot::run(
            ws,
            names,
            &boot::Flags {
                variant: None,
                machine: None,
                keep: false,
                offline: false,
            },
        )?;
        boot_run_secs = Some(started.elapsed().as_secs_f64());
        boot_figures = outcomes
            .into_iter()
            .map(|o| BootFigure {
                scenario: o.id,
                variant: o.variant.as_str().into(),
                machine: o.machine,
                secs_to_last_line: o.secs_to_last_line,
                dom0_ready_secs: o.dom0_ready_secs,
                esp_build_secs: o.esp_build_secs,
                domain_secs: o.domain_secs.clone(),
            })
            .collect();
    }
    let report = Report {
        environments,
        everything: Some(everything),
        builds,
        images,
        references,
        boot: boot_figures,
        boot_run_secs,
    };
    print_table(&report);
    let path = ws.target.join("bench.json");
    fsx::write_atomic(
        &path,
        (serde_json::to_string_pretty(&report)? + "\n").as_bytes(),
    )?;
    println!("\nwritten to {}", path.display());
    Ok(())
}

/// Each environment assembled afresh into a scratch folder, from the cached packages.
fn environments(ws: &Workspace) -> Result<Vec<EnvFigure>> {
    let cache = crate::cache::Cache::open()?;
    let mut out = Vec::new();
    for env in &ws.lock.envs {
        crate::fetch::ensure(
            &cache,
            &env.blobs()?,
            &crate::fetch::Flags { offline: false },
        )?;
        let scratch = cache
            .tmp()?
            .join(format!("bench-root-{}", std::process::id()));
        fsx::remove_dir_if_exists(&scratch)?;
        let t = Instant::now();
        crate::buildenv::assemble_into(&cache, env, &scratch)?;
        let secs = t.elapsed().as_secs_f64();
        fsx::remove_dir_if_exists(&scratch)?;
        out.push(EnvFigure {
            name: env.name.clone(),
            packages: env.debs.len(),
            assemble_secs: secs,
        });
    }
    Ok(out)
}

/// The selected recipes as a no-op build, next to their cold builds (the sum of each
/// recipe's from scratch) and the time to hash every file those builds read as inputs
/// (recipe inputs and the build environment) once.
fn everything(
    ws: &Workspace,
    recipes: &[&crate::recipe::Recipe],
    cold_secs: f64,
) -> Result<AllFigure> {
    let names: Vec<String> = recipes.iter().map(|r| r.name.clone()).collect();
    let build = |fresh| -> Result<f64> {
        let t = Instant::now();
        build::run(
            ws,
            &names,
            &build::Flags {
                variant: None,
                xen_release: None,
                offline: false,
                fresh,
            },
        )?;
        Ok(t.elapsed().as_secs_f64())
    };
    let noop_secs = build(false)?;
    let cache = crate::cache::Cache::open()?;
    let mut blobs = ws.lock.env(crate::buildenv::BUILD)?.blobs()?;
    for r in recipes {
        blobs.extend(ws.recipe_blobs(r)?);
    }
    blobs.sort();
    blobs.dedup();
    let t = Instant::now();
    let mut input_bytes = 0;
    for b in &blobs {
        input_bytes += fsx::sha256_file(&cache.blob_path(&b.sha256))?.1;
    }
    Ok(AllFigure {
        cold_secs,
        noop_secs,
        hash_inputs_once_secs: t.elapsed().as_secs_f64(),
        input_bytes,
    })
}

fn references(ws: &Workspace, images: &[ImageFigure]) -> Result<Vec<Reference>> {
    let cache = crate::cache::Cache::open()?;
    let mut out = Vec::new();
    for (recipe, variant, deb, path) in REFERENCES {
        let Some(img) = images
            .iter()
            .find(|i| i.recipe == *recipe && i.variant == *variant)
        else {
            continue;
        };
        let blobs = ws.lock.resolve(deb)?.blobs()?;
        crate::fetch::ensure(&cache, &blobs, &crate::fetch::Flags { offline: false })?;
        let reference = cache.unpacked_deb(&blobs[0])?.join(path);
        let ours = ws.target.join("images").join(variant).join(&img.file);
        let mut raw = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(&ours)?),
            &mut raw,
        )?;
        out.push(Reference {
            recipe: recipe.to_string(),
            variant: variant.to_string(),
            bytes_uncompressed: raw.len() as u64,
            reference: format!("{deb}:/{path}"),
            reference_bytes: fs_err::metadata(&reference)?.len(),
        });
    }
    Ok(out)
}

fn print_table(r: &Report) {
    println!(
        "\n{:<24} {:>10} {:>12}",
        "environment", "packages", "assemble s"
    );
    for e in &r.environments {
        println!(
            "{:<24} {:>10} {:>12.2}",
            e.name, e.packages, e.assemble_secs
        );
    }
    if let Some(a) = &r.everything {
        println!(
            "\nall selected recipes: cold {:.1} s, no-op {:.2} s; hashing their {} MB of inputs once {:.2} s ({:.2}x)",
            a.cold_secs,
            a.noop_secs,
            a.input_bytes / 1_000_000,
            a.hash_inputs_once_secs,
            a.noop_secs / a.hash_inputs_once_secs.max(1e-9)
        );
    }
    println!("\n{:<24} {:>10} {:>10}", "build", "cold s", "warm s");
    for b in &r.builds {
        println!(
            "{:<24} {:>10.2} {:>10.3}",
            b.recipe, b.cold_secs, b.warm_secs
        );
    }
    println!("\n{:<24} {:<11} {:>10}  file", "image", "variant", "bytes");
    for i in &r.images {
        println!(
            "{:<24} {:<11} {:>10}  {}",
            i.recipe, i.variant, i.bytes, i.file
        );
    }
    if !r.references.is_empty() {
        println!(
            "\n{:<24} {:<11} {:>12} {:>12}  reference",
            "image", "variant", "ours (raw)", "reference"
        );
        for x in &r.references {
            println!(
                "{:<24} {:<11} {:>12} {:>12}  {}",
                x.recipe, x.variant, x.bytes_uncompressed, x.reference_bytes, x.reference
            );
        }
    }
    if !r.boot.is_empty() {
        println!(
            "\n{:<36} {:<11} {:<15} {:>14} {:>12}",
            "boot test", "variant", "machine", "to last line s", "dom0 ready s"
        );
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.1}"));
        let mut by: BTreeMap<(&str, &str), &BootFigure> = BTreeMap::new();
        for b in &r.boot {
            by.insert((&b.scenario, &b.machine), b);
        }
        for b in by.values() {
            println!(
                "{:<36} {:<11} {:<15} {:>14} {:>12}",
                b.scenario,
                b.variant,
                b.machine,
                fmt(b.secs_to_last_line),
                fmt(b.dom0_ready_secs)
            );
        }
    }
    let efi: Vec<&BootFigure> = r
        .boot
        .iter()
        .filter(|b| b.esp_build_secs.is_some())
        .collect();
    if !efi.is_empty() {
        println!(
            "\n{:<36} {:<15} {:>12}  firmware start to each domain's last line",
            "EFI boot test", "machine", "ESP build s"
        );
        for b in efi {
            let domains: Vec<String> = b
                .domain_secs
                .iter()
                .map(|(d, s)| format!("{d} {s:.1} s"))
                .collect();
            println!(
                "{:<36} {:<15} {:>12.2}  {}",
                b.scenario,
                b.machine,
                b.esp_build_secs.unwrap_or(0.0),
                domains.join(", ")
            );
        }
    }
    if let Some(secs) = r.boot_run_secs {
        println!("\nboot-test run, every machine: {secs:.1} s");
    }
}
