//! `cargo xtask bench`: the figures that matter, measured in one run and written as a table
//! and as JSON (`target/bench.json`): cold and warm (no-op) build time per payload, image
//! sizes, and boot-test times. Benchmarks live here, not in timed tests.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::boot;
use crate::build;
use crate::fsx;
use crate::recipe;
use crate::workspace::Workspace;

pub struct Flags {
    /// Skip the boot tests (build figures only).
    pub no_boot: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Report {
    builds: Vec<BuildFigure>,
    images: Vec<ImageFigure>,
    references: Vec<Reference>,
    boot: Vec<BootFigure>,
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
    file: String,
    bytes: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct BootFigure {
    scenario: String,
    variant: String,
    /// Guest creation (`xl create`) or QEMU start (dom0 scenarios) to the last expected line.
    secs_to_last_line: Option<f64>,
    /// QEMU start to dom0 ready, for the dom0 boot that ran the scenario.
    dom0_ready_secs: Option<f64>,
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
            file: a.file,
            bytes: a.size,
        }));
    }
    let references = references(ws, &images)?;
    let mut boot_figures = Vec::new();
    if !flags.no_boot {
        let outcomes = boot::run(
            ws,
            names,
            &boot::Flags {
                variant: None,
                keep: false,
                offline: false,
            },
        )?;
        boot_figures = outcomes
            .into_iter()
            .map(|o| BootFigure {
                scenario: o.id,
                variant: o.variant.as_str().into(),
                secs_to_last_line: o.secs_to_last_line,
                dom0_ready_secs: o.dom0_ready_secs,
            })
            .collect();
    }
    let report = Report {
        builds,
        images,
        references,
        boot: boot_figures,
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
            reference_bytes: std::fs::metadata(&reference)?.len(),
        });
    }
    Ok(out)
}

fn print_table(r: &Report) {
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
            "\n{:<36} {:<11} {:>14} {:>12}",
            "boot test", "variant", "to last line s", "dom0 ready s"
        );
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.1}"));
        let mut by: BTreeMap<&str, &BootFigure> = BTreeMap::new();
        for b in &r.boot {
            by.insert(&b.scenario, b);
        }
        for b in by.values() {
            println!(
                "{:<36} {:<11} {:>14} {:>12}",
                b.scenario,
                b.variant,
                fmt(b.secs_to_last_line),
                fmt(b.dom0_ready_secs)
            );
        }
    }
}
