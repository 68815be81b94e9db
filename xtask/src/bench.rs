//! `cargo xtask bench`: the figures that matter, measured in one run and written as a table
//! and as JSON (`target/bench.json`): cold and warm (no-op) build time per payload, image
//! sizes, boot-test times, and the smallest memory each example (recipes of kind `rust` and
//! `c`) boots in as an xl domU. Benchmarks live here, not in timed tests.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::boot;
use crate::builders as build;
use crate::fsx;
use crate::recipe::{self, BootMode, BootTest, GuestType, Kind};
use crate::workspace::Workspace;

#[derive(clap::Args)]
pub struct Flags {
    /// Skip the boot tests (build figures only; no memory probe either).
    #[arg(long)]
    pub no_boot: bool,
    /// Skip the memory probe (the smallest memory each example's xl domU boots in).
    #[arg(long)]
    pub no_memory_probe: bool,
    /// Boot-test on this test machine only (a file of ci/machines/, such as aarch64-xen4.17).
    #[arg(long)]
    pub machine: Option<String>,
    /// Only the boot figures: no cold and warm builds, no build environments (the images
    /// are built as usual if they are not).
    #[arg(long, conflicts_with = "no_boot")]
    pub boot_only: bool,
}

/// Memory sizes in MiB the probe tries, those below a scenario's own `memory` (which its
/// normal run shows to be enough).
const MEMORY_LADDER: &[u32] = &[1, 2, 3, 4, 6, 8, 12, 16, 24, 32];
/// The most a probe copy waits (a guest short of memory often hangs rather than crashes).
const PROBE_TIMEOUT_SECS: u64 = 45;

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Report {
    environments: Vec<EnvFigure>,
    everything: Option<AllFigure>,
    builds: Vec<BuildFigure>,
    images: Vec<ImageFigure>,
    references: Vec<Reference>,
    boot: Vec<BootFigure>,
    /// The whole boot-test run: every scenario on every selected machine, as `cargo xtask
    /// test` runs them (images already built), with the memory probe's copies in the same
    /// dom0 boots.
    boot_run_secs: Option<f64>,
    /// How many memory-probe copies that run included.
    memory_probe_copies: usize,
    smallest_memory: Vec<MemoryFigure>,
    comparisons: Vec<Comparison>,
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
    /// What the scenario's dom0 check measured (`figure NAME VALUE` lines).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    figures: BTreeMap<String, f64>,
}

/// A boot test next to its `baseline-for` reference on one machine: the same guest, served
/// the recipe's way and the reference way (for ioemu: device model in a stub domain, and in
/// dom0), as time to the last expected line and memory used outside the guest.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Comparison {
    scenario: String,
    baseline: String,
    machine: String,
    secs_to_last_line: Option<f64>,
    baseline_secs_to_last_line: Option<f64>,
    /// The `outside-guest-kib` figure of each.
    outside_guest_kib: Option<f64>,
    baseline_outside_guest_kib: Option<f64>,
}

/// The smallest memory an example's xl domU scenario boots in on one machine: copies of the
/// scenario with less `memory` run beside the normal boot tests; failures are expected.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct MemoryFigure {
    recipe: String,
    scenario: String,
    variant: String,
    machine: String,
    /// The scenario's own `memory`.
    memory_mib: u32,
    /// The sizes tried, smallest first.
    ladder_mib: Vec<u32>,
    /// Those that passed.
    passed_mib: Vec<u32>,
    /// The smallest size that passed; None if none below `memory_mib` did.
    smallest_memory_mib: Option<u32>,
}

/// One scenario's probe on one machine: (MiB, the copy's scenario id) per size tried.
struct Probe {
    recipe: String,
    scenario: String,
    variant: String,
    machine: String,
    memory: u32,
    copies: Vec<(u32, String)>,
}

pub fn run(ws: &Workspace, names: &[String], flags: &Flags) -> Result<()> {
    let recipes = recipe::select(&ws.recipes, names)?;
    let mut builds = Vec::new();
    let mut images = Vec::new();
    for r in recipes.iter().filter(|_| !flags.boot_only) {
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
    let (environments, everything) = if flags.boot_only {
        (Vec::new(), None)
    } else {
        let cold_sum = builds.iter().map(|b| b.cold_secs).sum();
        (environments(ws)?, Some(everything(ws, &recipes, cold_sum)?))
    };
    let mut boot_figures = Vec::new();
    let mut boot_run_secs = None;
    let mut smallest_memory = Vec::new();
    let mut memory_probe_copies = 0;
    let mut comparisons = Vec::new();
    // The normal boot tests' verdict, returned once the figures are written.
    let mut boot_verdict = Ok(());
    if !flags.no_boot {
        let boot_flags = boot::Flags {
            variant: None,
            machine: flags.machine.clone(),
            keep: false,
            offline: false,
            baselines: true,
        };
        let mut plan = boot::plan(ws, names, &boot_flags)?;
        let probes = if flags.no_memory_probe {
            Vec::new()
        } else {
            add_memory_probe(ws, &mut plan)?
        };
        memory_probe_copies = probes.iter().map(|p| p.copies.len()).sum();
        let pairs = baseline_pairs(&plan);
        let started = Instant::now();
        let outcomes = boot::run_tests(ws, plan, &boot_flags)?;
        boot_run_secs = Some(started.elapsed().as_secs_f64());
        let (copies, own): (Vec<boot::Outcome>, Vec<boot::Outcome>) =
            outcomes.into_iter().partition(|o| {
                probes
                    .iter()
                    .any(|p| p.machine == o.machine && p.copies.iter().any(|(_, id)| *id == o.id))
            });
        smallest_memory = memory_figures(&probes, &copies);
        boot_verdict = boot::all_passed(&own);
        comparisons = compare(&pairs, &own);
        boot_figures = own
            .into_iter()
            .map(|o| BootFigure {
                scenario: o.id,
                variant: o.variant.as_str().into(),
                machine: o.machine,
                secs_to_last_line: o.secs_to_last_line,
                dom0_ready_secs: o.dom0_ready_secs,
                esp_build_secs: o.esp_build_secs,
                domain_secs: o.domain_secs.clone(),
                figures: o.figures.clone(),
            })
            .collect();
    }
    let report = Report {
        environments,
        everything,
        builds,
        images,
        references,
        boot: boot_figures,
        boot_run_secs,
        memory_probe_copies,
        smallest_memory,
        comparisons,
    };
    print_table(&report);
    let path = ws.target.join("bench.json");
    fsx::write_atomic(
        &path,
        (serde_json::to_string_pretty(&report)? + "\n").as_bytes(),
    )?;
    println!("\nwritten to {}", path.display());
    boot_verdict
}

/// Whether the memory probe runs copies of a scenario: an xl domU (no HVM, no dom0 QEMU)
/// that is meant to pass.
fn probed(t: &BootTest) -> bool {
    t.mode == BootMode::Domu
        && t.guest_type != Some(GuestType::Hvm)
        && !t.dom0_hvm
        && t.must_fail.is_none()
}

/// The scenario with `memory` = `mib`: its own name (`NAME-memMIB`) and so its own domain
/// name, which replaces the old one in the expected lines; at most [`PROBE_TIMEOUT_SECS`].
fn memory_copy(t: &BootTest, mib: u32) -> Result<BootTest> {
    let mut c = t.clone();
    c.name = format!("{}-mem{mib}", t.name);
    c.memory = mib;
    c.timeout = t.timeout.min(PROBE_TIMEOUT_SECS);
    let (old, new) = (boot::domain_name(t), boot::domain_name(&c));
    let renamed = |r: &regex::Regex| regex::Regex::new(&r.as_str().replace(&old, &new));
    let all = |rs: &[regex::Regex]| rs.iter().map(renamed).collect::<Result<Vec<_>, _>>();
    c.expect = all(&t.expect)?;
    c.forbid = all(&t.forbid)?;
    c.dom0_expect = all(&t.dom0_expect)?;
    for r in c.xenstore.values_mut() {
        *r = renamed(r)?;
    }
    Ok(c)
}

/// Adds to every machine's tests the memory copies of each probed scenario of a `rust` or
/// `c` recipe (one per ladder size below its own `memory`), so they run in that machine's
/// normal batches.
fn add_memory_probe(ws: &Workspace, plan: &mut boot::Plan) -> Result<Vec<Probe>> {
    let mut probes = Vec::new();
    for (spec, tests) in plan.iter_mut() {
        let mut copies = Vec::new();
        for t in tests.iter() {
            let example = ws
                .recipes
                .iter()
                .any(|r| r.name == t.recipe && matches!(r.kind, Kind::Rust | Kind::C));
            if !example || !probed(t) {
                continue;
            }
            let mut p = Probe {
                recipe: t.recipe.clone(),
                scenario: t.name.clone(),
                variant: t.variant.as_str().into(),
                machine: spec.name.clone(),
                memory: t.memory,
                copies: Vec::new(),
            };
            for &mib in MEMORY_LADDER.iter().filter(|&&m| m < t.memory) {
                let c = memory_copy(t, mib)?;
                p.copies.push((mib, boot::scenario_id(&c)));
                copies.push(c);
            }
            probes.push(p);
        }
        tests.extend(copies);
    }
    Ok(probes)
}

/// Each probe's sizes that passed, from the copies' outcomes.
fn memory_figures(probes: &[Probe], copies: &[boot::Outcome]) -> Vec<MemoryFigure> {
    probes
        .iter()
        .map(|p| {
            let passed: Vec<u32> = p
                .copies
                .iter()
                .filter(|(_, id)| {
                    copies
                        .iter()
                        .any(|o| o.id == *id && o.machine == p.machine && o.passed)
                })
                .map(|(mib, _)| *mib)
                .collect();
            MemoryFigure {
                recipe: p.recipe.clone(),
                scenario: p.scenario.clone(),
                variant: p.variant.clone(),
                machine: p.machine.clone(),
                memory_mib: p.memory,
                ladder_mib: p.copies.iter().map(|(mib, _)| *mib).collect(),
                smallest_memory_mib: passed.iter().min().copied(),
                passed_mib: passed,
            }
        })
        .collect()
}

/// (machine, scenario id, its baseline's id) for every `baseline-for` test in the plan.
fn baseline_pairs(plan: &boot::Plan) -> Vec<(String, String, String)> {
    let mut pairs = Vec::new();
    for (spec, tests) in plan {
        for t in tests {
            let Some(of) = &t.baseline_for else { continue };
            if let Some(target) = tests.iter().find(|o| o.recipe == t.recipe && &o.name == of) {
                pairs.push((
                    spec.name.clone(),
                    boot::scenario_id(target),
                    boot::scenario_id(t),
                ));
            }
        }
    }
    pairs
}

/// The figures of each pair from the outcomes (a failed run gives no figures).
fn compare(pairs: &[(String, String, String)], outcomes: &[boot::Outcome]) -> Vec<Comparison> {
    let find = |machine: &str, id: &str| {
        outcomes
            .iter()
            .find(|o| o.machine == machine && o.id == id && o.passed)
    };
    let outside =
        |o: Option<&boot::Outcome>| o.and_then(|o| o.figures.get("outside-guest-kib").copied());
    pairs
        .iter()
        .map(|(machine, id, base)| {
            let (ours, theirs) = (find(machine, id), find(machine, base));
            Comparison {
                scenario: id.clone(),
                baseline: base.clone(),
                machine: machine.clone(),
                secs_to_last_line: ours.and_then(|o| o.secs_to_last_line),
                baseline_secs_to_last_line: theirs.and_then(|o| o.secs_to_last_line),
                outside_guest_kib: outside(ours),
                baseline_outside_guest_kib: outside(theirs),
            }
        })
        .collect()
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
    if !r.smallest_memory.is_empty() {
        println!(
            "\n{:<36} {:<11} {:<15} {:>7} {:>12}  tried (* passed)",
            "smallest memory", "variant", "machine", "own MiB", "smallest MiB"
        );
        for m in &r.smallest_memory {
            let tried: Vec<String> = m
                .ladder_mib
                .iter()
                .map(|mib| {
                    let mark = if m.passed_mib.contains(mib) { "*" } else { "" };
                    format!("{mib}{mark}")
                })
                .collect();
            println!(
                "{:<36} {:<11} {:<15} {:>7} {:>12}  {}",
                format!("{}/{}", m.recipe, m.scenario),
                m.variant,
                m.machine,
                m.memory_mib,
                m.smallest_memory_mib
                    .map_or("-".to_string(), |v| v.to_string()),
                if tried.is_empty() {
                    "-".to_string()
                } else {
                    tried.join(" ")
                }
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
    if !r.comparisons.is_empty() {
        println!(
            "\n{:<44} {:<15} {:>24} {:>26}",
            "compared with its baseline",
            "machine",
            "to last line s (ratio)",
            "outside guest MiB (ratio)"
        );
        let pair = |a: Option<f64>, b: Option<f64>, unit: f64| match (a, b) {
            (Some(a), Some(b)) => format!(
                "{:.1} / {:.1} ({:.2}x)",
                a / unit,
                b / unit,
                a / b.max(1e-9)
            ),
            _ => "-".to_string(),
        };
        for c in &r.comparisons {
            println!(
                "{:<44} {:<15} {:>24} {:>26}",
                format!(
                    "{} / {}",
                    c.scenario,
                    c.baseline.rsplit('/').next().unwrap_or("")
                ),
                c.machine,
                pair(c.secs_to_last_line, c.baseline_secs_to_last_line, 1.0),
                pair(c.outside_guest_kib, c.baseline_outside_guest_kib, 1024.0)
            );
        }
    }
    let figures: Vec<&BootFigure> = r.boot.iter().filter(|b| !b.figures.is_empty()).collect();
    if !figures.is_empty() {
        println!(
            "\n{:<36} {:<15}  dom0 check's figures",
            "boot test", "machine"
        );
        for b in figures {
            let all: Vec<String> = b.figures.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("{:<36} {:<15}  {}", b.scenario, b.machine, all.join(", "));
        }
    }
    if let Some(secs) = r.boot_run_secs {
        let probe = if r.memory_probe_copies > 0 {
            format!(" (with {} memory-probe copies)", r.memory_probe_copies)
        } else {
            String::new()
        };
        println!("\nboot-test run, every selected machine: {secs:.1} s{probe}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(extra: &str) -> BootTest {
        let src = format!(
            r#"
[[boot-test]]
name = "domu-aarch64"
variant = "aarch64"
kernel = "artifact"
memory = 16
expect = ['^Hello$', '^domid [1-9][0-9]*, name rust-stubdom-domu-aarch64$']
timeout = 90
{extra}
"#
        );
        let mut tests =
            recipe::parse_scenarios(std::path::Path::new("t.toml"), &src, "rust-stubdom").unwrap();
        tests.remove(0)
    }

    #[test]
    fn a_memory_copy_has_its_own_name_memory_and_timeout() {
        let t = scenario(r#"xenstore = { "data/name" = "^rust-stubdom-domu-aarch64$" }"#);
        let c = memory_copy(&t, 4).unwrap();
        assert_eq!(c.name, "domu-aarch64-mem4");
        assert_eq!(c.memory, 4);
        assert_eq!(c.timeout, PROBE_TIMEOUT_SECS);
        assert_eq!(boot::scenario_id(&c), "rust-stubdom/domu-aarch64-mem4");
        assert!(c.expect[0].is_match("Hello"));
        assert!(c.expect[1].is_match("domid 3, name rust-stubdom-domu-aarch64-mem4"));
        assert!(!c.expect[1].is_match("domid 3, name rust-stubdom-domu-aarch64"));
        assert!(c.xenstore["data/name"].is_match("rust-stubdom-domu-aarch64-mem4"));
        // The original is untouched.
        assert!(t.expect[1].is_match("domid 3, name rust-stubdom-domu-aarch64"));
        assert_eq!(t.memory, 16);
    }

    #[test]
    fn only_xl_domus_meant_to_pass_are_probed() {
        assert!(probed(&scenario("")));
        assert!(!probed(&scenario("mode = \"dom0less\"")));
        assert!(!probed(&scenario("must-fail = \"x\"")));
    }

    fn outcome(id: &str, machine: &str, passed: bool) -> boot::Outcome {
        boot::Outcome {
            id: id.into(),
            variant: crate::variant::Variant::Aarch64,
            machine: machine.into(),
            passed,
            secs_to_last_line: None,
            dom0_ready_secs: None,
            log: "x.log".into(),
            failure: None,
            esp_build_secs: None,
            domain_secs: Default::default(),
            figures: Default::default(),
        }
    }

    #[test]
    fn a_comparison_takes_each_side_from_its_own_passed_outcome() {
        let with = |id: &str, machine: &str, passed: bool, secs: f64, kib: f64| boot::Outcome {
            secs_to_last_line: Some(secs),
            figures: [("outside-guest-kib".to_string(), kib)].into(),
            ..outcome(id, machine, passed)
        };
        let outcomes = [
            with("r/stub", "m", true, 30.0, 60_000.0),
            with("r/dom0", "m", true, 20.0, 40_000.0),
            with("r/dom0", "n", true, 1.0, 1.0),
            with("r/stub", "n", false, 1.0, 1.0),
        ];
        let pairs = [
            ("m".to_string(), "r/stub".to_string(), "r/dom0".to_string()),
            ("n".to_string(), "r/stub".to_string(), "r/dom0".to_string()),
        ];
        let c = compare(&pairs, &outcomes);
        assert_eq!(
            (c[0].secs_to_last_line, c[0].baseline_secs_to_last_line),
            (Some(30.0), Some(20.0))
        );
        assert_eq!(
            (c[0].outside_guest_kib, c[0].baseline_outside_guest_kib),
            (Some(60_000.0), Some(40_000.0))
        );
        // A failed run gives no figures.
        assert_eq!(
            (c[1].secs_to_last_line, c[1].baseline_secs_to_last_line),
            (None, Some(1.0))
        );
    }

    #[test]
    fn the_figure_is_the_smallest_size_that_passed() {
        let probe = |copies: &[u32]| Probe {
            recipe: "r".into(),
            scenario: "s".into(),
            variant: "aarch64".into(),
            machine: "m".into(),
            memory: 16,
            copies: copies.iter().map(|m| (*m, format!("r/s-mem{m}"))).collect(),
        };
        let outcomes = [
            outcome("r/s-mem1", "m", false),
            outcome("r/s-mem2", "m", false),
            outcome("r/s-mem2", "other", true),
            outcome("r/s-mem4", "m", true),
            outcome("r/s-mem8", "m", true),
        ];
        let f = memory_figures(&[probe(&[1, 2, 4, 8]), probe(&[1])], &outcomes);
        assert_eq!(f[0].ladder_mib, [1, 2, 4, 8]);
        assert_eq!(f[0].passed_mib, [4, 8]);
        assert_eq!(f[0].smallest_memory_mib, Some(4));
        assert_eq!(f[1].smallest_memory_mib, None);
    }
}
