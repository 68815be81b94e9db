//! `cargo xtask boot-test`: boot images under a real Xen in QEMU and check their consoles.
//!
//! Scenarios come from each recipe's `[[boot-test]]` tables and from the machines' own
//! self-test (`ci/<arch>/selftest.toml`). Each runs on every test machine (`ci/machines/`)
//! that boots its variant (and, for a recipe bound to a Xen release, runs that release). Per machine, `xl` scenarios are
//! batched into at most two dom0 boots; `dom0` scenarios boot the image itself as dom0, one
//! QEMU each; at most two QEMUs run at once.

pub mod arch;
mod bundle;
mod check;
mod disk;
mod elf;
mod hypervisor;
pub mod machine;
pub mod machines;
mod marker;
mod qemu;
mod report;
mod sources;
pub mod tools;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use stubdoms_archive::Tree;

use self::check::{Checker, Verdict};
use self::machine::Machine;
use self::marker::{Event, Line};
use self::qemu::{Next, Qemu};
pub use self::report::Outcome;
use self::report::{finish, Tail};
use self::sources::{artifact_refs, default_kernel, source};
use crate::builders as build;
use crate::cache::Cache;
use crate::fetch;
use crate::fsx;
use crate::recipe::{self, BootMode, BootTest};
use crate::variant::Variant;
use crate::workspace::Workspace;

/// How long dom0 may take to come up under TCG before the run is declared stuck.
const DOM0_BOOT: Duration = Duration::from_secs(180);
/// Slack on top of a scenario's own timeout for dom0 to notice and report it.
const SLACK: Duration = Duration::from_secs(30);
/// At most this many QEMUs at once (two `-smp 1` QEMUs run as fast as one here).
const PARALLEL: usize = 2;

#[derive(clap::Args)]
pub struct Flags {
    /// Only scenarios of this variant.
    #[arg(long)]
    pub variant: Option<Variant>,
    /// Only this test machine (a file of ci/machines/, such as x86_64-xen4.20).
    #[arg(long)]
    pub machine: Option<String>,
    /// Keep the scenario bundles and disks under target/boot/ after the run.
    #[arg(long)]
    pub keep: bool,
    /// Use only the input cache.
    #[arg(long)]
    pub offline: bool,
    /// Also the bench's reference scenarios (`baseline-for`), which normally do not run.
    #[arg(long)]
    pub baselines: bool,
}

/// A boot test with its files resolved on the host.
pub struct Scenario {
    /// `recipe/test`.
    pub id: String,
    /// The machine it runs on.
    pub machine: String,
    pub test: BootTest,
    /// None for an HVM guest that boots its firmware.
    pub kernel: Option<PathBuf>,
    pub ramdisk: Option<PathBuf>,
    /// (vdev, image) pairs.
    pub disks: Vec<(String, PathBuf)>,
    /// (xl.cfg key, file) pairs.
    pub xl_files: Vec<(String, PathBuf)>,
    /// The dom0 check script.
    pub dom0_check: Option<PathBuf>,
    /// Files installed into dom0 first: (path relative to `/`, host file).
    pub installed: Vec<(String, PathBuf)>,
    /// mode = "efi": the ESP configuration and the files it names (name, host file).
    pub esp: Option<(PathBuf, Vec<(String, PathBuf)>)>,
}

impl Scenario {
    fn dir_name(&self) -> String {
        format!("{}.{}", self.test.recipe, self.test.name)
    }
    fn domain_name(&self) -> String {
        domain_name(&self.test)
    }
}

/// A scenario's id in outcomes and reports: `recipe/test`.
pub fn scenario_id(t: &BootTest) -> String {
    format!("{}/{}", t.recipe, t.name)
}

/// The name an xl scenario's guest gets (`recipe-test`), as its expected lines see it.
pub fn domain_name(t: &BootTest) -> String {
    format!("{}-{}", t.recipe, t.name)
}

/// The boot tests to run, per selected machine.
pub type Plan = Vec<(machines::Spec, Vec<BootTest>)>;

/// `cargo xtask boot-test`: every selected scenario; fails if any of them failed.
pub fn run(ws: &Workspace, names: &[String], flags: &Flags) -> Result<Vec<Outcome>> {
    let plan = plan(ws, names, flags)?;
    let outcomes = run_tests(ws, plan, flags)?;
    all_passed(&outcomes)?;
    Ok(outcomes)
}

/// The selected recipes' boot tests (see `collect`) on the machines `flags` selects.
pub fn plan(ws: &Workspace, names: &[String], flags: &Flags) -> Result<Plan> {
    let all = machines::load_all(ws)?;
    let specs = machines::select(all.clone(), flags.machine.as_deref())?;
    let plan = collect(ws, names, flags, &all, &specs)?;
    if plan.iter().all(|(_, tests)| tests.is_empty()) {
        bail!("no boot test matches");
    }
    Ok(plan)
}

/// Fails naming every failed outcome; else says how many passed.
pub fn all_passed(outcomes: &[Outcome]) -> Result<()> {
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.passed).collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} boot test(s) failed: {}",
            failed.len(),
            outcomes.len(),
            failed
                .iter()
                .map(|o| format!("{} on {}", o.id, o.machine))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("{} boot test(s) passed", outcomes.len());
    Ok(())
}

/// Builds what the plan's tests need, runs them (per machine: each dom0/dom0less scenario
/// alone, the xl scenarios in [`batches`]) and returns every outcome, passed or failed
/// (also written to `target/boot/results.json`). Errors only when a test cannot run at all.
pub fn run_tests(ws: &Workspace, plan: Plan, flags: &Flags) -> Result<Vec<Outcome>> {
    let mut needed: Vec<String> = Vec::new();
    for t in plan.iter().flat_map(|(_, tests)| tests) {
        let mut refs = artifact_refs(t);
        if let Some(i) = &t.installed {
            refs.extend(crate::dist::set_recipes(ws, &i.set)?);
        }
        for n in refs {
            if !needed.contains(&n) {
                needed.push(n);
            }
        }
    }
    if !needed.is_empty() {
        build::run(
            ws,
            &needed,
            &build::Flags {
                variant: None,
                xen_release: None,
                offline: flags.offline,
                fresh: false,
            },
        )?;
    }
    let cache = Cache::open()?;
    let epoch = build::source_date_epoch()?;
    let boot_dir = ws.target.join("boot");
    let work = boot_dir.join("work");
    fsx::remove_dir_if_exists(&work)?;
    let mut machines = Vec::new();
    let mut scenarios = Vec::new();
    for (spec, tests) in plan.into_iter().filter(|(_, t)| !t.is_empty()) {
        let fetch_flags = fetch::Flags {
            offline: flags.offline,
        };
        fetch::ensure(&cache, &machine::blobs(ws, &spec)?, &fetch_flags)?;
        let m = machine::get(ws, &cache, &spec, epoch, flags.offline)?;
        let mut these = Vec::new();
        for t in tests {
            these.push(resolve(ws, &cache, &m, t, &work.join(&spec.name))?);
        }
        machines.push(m);
        scenarios.push(these);
    }
    let mut jobs: Vec<Job> = Vec::new();
    for (m, these) in machines.iter().zip(scenarios) {
        let (dom0, domu): (Vec<Scenario>, Vec<Scenario>) = these
            .into_iter()
            .partition(|s| s.test.mode != BootMode::Domu);
        jobs.extend(dom0.into_iter().map(|s| Job::Dom0(m, Box::new(s))));
        for (i, batch) in batches(domu).into_iter().enumerate() {
            jobs.push(Job::Batch(m, i, batch));
        }
    }
    let outcomes = run_jobs(&boot_dir, jobs)?;
    if !flags.keep {
        fsx::remove_dir_if_exists(&work)?;
    }
    let text = serde_json::to_string_pretty(&outcomes)? + "\n";
    fsx::write_atomic(&boot_dir.join("results.json"), text.as_bytes())?;
    Ok(outcomes)
}

/// The selected recipes' boot tests (and the self-test when no recipe is named, or when
/// `selftest` is), per selected machine (`specs`) that runs them. A test that none of `all`
/// the machines can run is an error.
fn collect(
    ws: &Workspace,
    names: &[String],
    flags: &Flags,
    all: &[machines::Spec],
    specs: &[machines::Spec],
) -> Result<Vec<(machines::Spec, Vec<BootTest>)>> {
    let want_selftest = names.is_empty() || names.iter().any(|n| n == "selftest");
    let recipe_names: Vec<String> = names.iter().filter(|n| *n != "selftest").cloned().collect();
    let mut tests = Vec::new();
    if want_selftest {
        let mut files: Vec<&Path> = specs.iter().filter_map(|m| m.selftest.as_deref()).collect();
        files.sort();
        files.dedup();
        for file in files {
            let path = ws.root.join(file);
            let src = fs_err::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            tests.extend(recipe::parse_scenarios(file, &src, "selftest")?);
        }
    }
    if names.is_empty() || !recipe_names.is_empty() {
        for r in recipe::select(&ws.recipes, &recipe_names)? {
            tests.extend(r.boot_tests.iter().cloned());
        }
    }
    tests.retain(|t| {
        flags.variant.is_none_or(|v| v == t.variant)
            && (flags.baselines || t.baseline_for.is_none())
    });
    for t in &tests {
        if !all.iter().any(|m| m.runs(t)) {
            bail!(
                "boot test {}/{} uses {}{}: no test machine runs it (see {}/)",
                t.recipe,
                t.name,
                t.variant,
                if t.xen_releases.is_empty() {
                    String::new()
                } else {
                    format!(" on Xen {}", t.xen_releases.join(" or "))
                },
                machines::DIR
            );
        }
    }
    Ok(specs
        .iter()
        .map(|m| {
            let mine = tests.iter().filter(|t| m.runs(t)).cloned().collect();
            (m.clone(), mine)
        })
        .collect())
}

fn resolve(
    ws: &Workspace,
    cache: &Cache,
    m: &Machine,
    test: BootTest,
    work: &Path,
) -> Result<Scenario> {
    let id = scenario_id(&test);
    let kernel = default_kernel(&test)
        .map(|k| source(ws, cache, m, &test, k))
        .transpose()?;
    let xl_files = test
        .xl_files
        .iter()
        .map(|(k, src)| Ok((k.clone(), source(ws, cache, m, &test, src)?)))
        .collect::<Result<_>>()?;
    let dom0_check = test
        .dom0_check
        .as_deref()
        .map(|c| source(ws, cache, m, &test, c))
        .transpose()?;
    let ramdisk = test
        .ramdisk
        .as_deref()
        .map(|r| source(ws, cache, m, &test, r))
        .transpose()?;
    let mut disks = Vec::new();
    for d in &test.disks {
        let mut files = Vec::new();
        for (dest, src) in &d.files {
            files.push((dest.clone(), source(ws, cache, m, &test, src)?));
        }
        let dir = work
            .join(format!("{}.{}", test.recipe, test.name))
            .join(&d.vdev);
        fs_err::create_dir_all(&dir)?;
        let boot_sector = d
            .boot_sector
            .as_deref()
            .map(|b| source(ws, cache, m, &test, b))
            .transpose()?;
        let img = dir.with_extension("img");
        disk::make(&m.tools, d, &files, boot_sector.as_deref(), &dir, &img)
            .with_context(|| format!("{id}: making disk {}", d.vdev))?;
        disks.push((d.vdev.clone(), img));
    }
    let esp = match &test.esp {
        Some(cfg) => Some((
            source(ws, cache, m, &test, cfg)?,
            test.esp_files
                .iter()
                .map(|(name, src)| Ok((name.clone(), source(ws, cache, m, &test, src)?)))
                .collect::<Result<_>>()?,
        )),
        None => None,
    };
    let installed = match &test.installed {
        Some(i) => {
            crate::dist::installed_images(ws, &i.set, i.layout, test.variant, &m.spec.xen)
                .with_context(|| format!("{id}: installing set {} ({} layout)", i.set, i.layout))?
        }
        None => Vec::new(),
    };
    Ok(Scenario {
        id,
        installed,
        machine: m.spec.name.clone(),
        test,
        kernel,
        ramdisk,
        disks,
        xl_files,
        dom0_check,
        esp,
    })
}

/// Splits xl scenarios into at most [`PARALLEL`] batches of similar total timeout.
fn batches(mut scenarios: Vec<Scenario>) -> Vec<Vec<Scenario>> {
    scenarios.sort_by(|a, b| b.test.timeout.cmp(&a.test.timeout).then(a.id.cmp(&b.id)));
    let n = scenarios.len().min(PARALLEL);
    let mut out: Vec<(u64, Vec<Scenario>)> = (0..n).map(|_| (0, Vec::new())).collect();
    for s in scenarios {
        if let Some(b) = out.iter_mut().min_by_key(|b| b.0) {
            b.0 += s.test.timeout;
            b.1.push(s);
        }
    }
    out.into_iter()
        .map(|b| b.1)
        .filter(|b| !b.is_empty())
        .collect()
}

enum Job<'m> {
    Dom0(&'m Machine, Box<Scenario>),
    Batch(&'m Machine, usize, Vec<Scenario>),
}

fn run_jobs(dir: &Path, jobs: Vec<Job>) -> Result<Vec<Outcome>> {
    let queue = std::sync::Mutex::new(jobs.into_iter());
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| {
                while let Some(job) = queue.lock().ok().and_then(|mut q| q.next()) {
                    let r = match job {
                        Job::Dom0(m, sc) => run_dom0(m, dir, &sc).map(|o| vec![o]),
                        Job::Batch(m, i, scs) => run_batch(m, dir, i, &scs),
                    };
                    if let Ok(mut all) = results.lock() {
                        all.push(r);
                    }
                }
            });
        }
    });
    let mut out = Vec::new();
    for r in results.into_inner().unwrap_or_default() {
        out.extend(r?);
    }
    out.sort_by(|a, b| (&a.id, &a.machine).cmp(&(&b.id, &b.machine)));
    Ok(out)
}

/// QEMU for machine `m`: its machine type and CPU, one vCPU, the serial port on stdio.
pub(crate) fn qemu_base(m: &Machine, memory_mib: u32) -> Result<Command> {
    let mut c = m.tools.command(m.spec.qemu())?;
    c.args(["-machine", &m.spec.qemu_machine])
        .args(["-accel", "tcg,thread=multi"])
        .args(["-cpu", &m.spec.qemu_cpu])
        .args(["-m", &memory_mib.to_string(), "-smp", "1"])
        .args([
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
        ]);
    Ok(c)
}

/// A host file as QEMU in its sandbox sees it. QEMU's `-initrd` separates modules with
/// commas: paths must not contain one.
fn no_comma(tools: &tools::Tools, p: &Path) -> Result<String> {
    let s = tools.inside(p)?;
    arch::no_comma(&s)?;
    Ok(s)
}

/// Boots the image without a dom0 userland: as dom0 itself (x86), or as a domain Xen
/// starts from the device tree (dom0less, aarch64). A second of boot.
fn run_dom0(m: &Machine, dir: &Path, s: &Scenario) -> Result<Outcome> {
    let (cmd, esp_build_secs) = match s.test.mode {
        BootMode::Dom0less => (dom0less_command(m, dir, s)?, None),
        BootMode::Efi => {
            let (cmd, secs) = crate::esp::scenario_command(m, dir, s)?;
            (cmd, Some(secs))
        }
        _ => (dom0_command(m, s)?, None),
    };
    let log = dir.join(format!("{}.{}.log", m.spec.name, s.dir_name()));
    let mut q = Qemu::start(cmd, &log)?;
    let deadline = q.started + Duration::from_secs(s.test.timeout);
    let mut c = Checker::new(&s.test.expect, &s.test.forbid);
    let mut tail = Tail::default();
    let mut ended = "QEMU exited";
    loop {
        match q.next_line(deadline) {
            Next::Line(l) => {
                // A dom0less domain's console reaches the serial port through Xen.
                let l = match s.test.mode {
                    BootMode::Dom0less => arch::aarch64::dom0less_console(&l).unwrap_or(&l),
                    _ => &l,
                };
                c.feed(l, q.started.elapsed());
                tail.push(l);
                if c.complete() {
                    ended = "";
                    break;
                }
            }
            Next::Closed => break,
            Next::TimedOut => {
                ended = "timed out";
                break;
            }
        }
    }
    q.kill();
    let mut outcome = finish(s, &c, None, &tail, &log, ended, None);
    if esp_build_secs.is_some() {
        outcome.esp_build_secs = esp_build_secs;
        outcome.domain_secs = report::domain_secs(&c);
    }
    Ok(outcome)
}

/// Xen with the image as its dom0 kernel.
fn dom0_command(m: &Machine, s: &Scenario) -> Result<std::process::Command> {
    let pvh = s.test.variant == Variant::X86_64Pvh;
    let mut cmd = qemu_base(m, 256)?;
    if pvh {
        cmd.args(["-device", "intel-iommu,intremap=on"]);
    }
    cmd.arg("-kernel")
        .arg(m.tools.inside(&m.xen)?)
        .arg("-append")
        .arg(format!(
            "{} dom0_mem={}M {}{}",
            arch::of(&m.spec.arch).xen_console,
            s.test.memory,
            m.spec.xen_cmdline,
            if pvh { " dom0=pvh" } else { "" }
        ));
    let kernel = s
        .kernel
        .as_ref()
        .context("a dom0 scenario needs a kernel")?;
    cmd.arg("-initrd").arg(no_comma(&m.tools, kernel)?);
    Ok(cmd)
}

/// Xen with no dom0 and the image as a domain it starts itself: QEMU's own device tree
/// (`dumpdtb`) with the domain added under `/chosen` (dtc from the boot environment), and
/// the image and ramdisk placed in RAM by QEMU's generic loader.
fn dom0less_command(m: &Machine, dir: &Path, s: &Scenario) -> Result<std::process::Command> {
    let kernel = s
        .kernel
        .as_ref()
        .context("a dom0less scenario needs a kernel")?;
    let size = |p: &Path| -> Result<u64> { Ok(fs_err::metadata(p)?.len()) };
    let inside = |p: &Path| m.tools.inside(p);
    let (kernel_in, ramdisk_in) = (
        inside(kernel)?,
        s.ramdisk.as_deref().map(inside).transpose()?,
    );
    let domain = arch::aarch64::Dom0lessDomain {
        kernel: (&kernel_in, size(kernel)?),
        ramdisk: match (&ramdisk_in, &s.ramdisk) {
            (Some(r), Some(host)) => Some((r.as_str(), size(host)?)),
            _ => None,
        },
        bootargs: s.test.extra.as_deref().unwrap_or(""),
        memory_mib: s.test.memory,
    };
    let a = arch::of(&m.spec.arch);
    let xen = [
        "-kernel".to_string(),
        inside(&m.xen)?,
        "-append".into(),
        format!("{} {}", a.xen_console, m.spec.xen_cmdline),
    ];
    fs_err::create_dir_all(dir)?;
    let file = |ext: &str| dir.join(format!("{}.{}.{ext}", m.spec.name, s.dir_name()));
    let (board, edited, dts_path) = (file("board.dtb"), file("dtb"), file("dts"));
    let dts = board_dts(m, &xen, &board)?;
    fsx::write_atomic(
        &dts_path,
        arch::aarch64::with_dom0less_domain(&dts, &domain)?.as_bytes(),
    )?;
    compile_dts(m, &dts_path, &edited)?;
    let mut cmd = qemu_base(m, 1024)?;
    cmd.args(&xen)
        .args(["-dtb", &inside(&edited)?])
        .args(arch::aarch64::dom0less_loaders(&domain)?);
    Ok(cmd)
}

/// Runs a boot tool to its end; its standard output.
pub(crate) fn run_tool(mut c: Command, what: &str) -> Result<Vec<u8>> {
    let out = c.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// QEMU's own device tree of machine `m` (its board, memory and CPU; `extra`: more QEMU
/// arguments), dumped to `board` and decompiled by the boot environment's dtc.
pub(crate) fn board_dts(m: &Machine, extra: &[String], board: &Path) -> Result<String> {
    let mut dump = qemu_base(m, 1024)?;
    dump.args(extra)
        .args(["-machine", &format!("dumpdtb={}", m.tools.inside(board)?)]);
    run_tool(dump, "QEMU's dumpdtb")?;
    decompile_dtb(m, board)
}

/// A device tree blob as dts text (the boot environment's dtc).
pub(crate) fn decompile_dtb(m: &Machine, dtb: &Path) -> Result<String> {
    let mut dtc = m.tools.command("dtc")?;
    dtc.args(["-q", "-I", "dtb", "-O", "dts", &m.tools.inside(dtb)?]);
    String::from_utf8(run_tool(dtc, "dtc (decompiling a device tree)")?)
        .context("dtc printed a device tree that is not UTF-8")
}

/// Compiles dts text to a blob (the boot environment's dtc).
pub(crate) fn compile_dts(m: &Machine, dts: &Path, dtb: &Path) -> Result<()> {
    let mut dtc = m.tools.command("dtc")?;
    dtc.args(["-q", "-I", "dts", "-O", "dtb", "-o"])
        .args([m.tools.inside(dtb)?, m.tools.inside(dts)?]);
    run_tool(dtc, "dtc (compiling a device tree)").map(drop)
}

/// Boots dom0 with a bundle of xl scenarios and checks each guest's console.
fn run_batch(
    m: &Machine,
    dir: &Path,
    index: usize,
    scenarios: &[Scenario],
) -> Result<Vec<Outcome>> {
    let mut tree = Tree::new();
    let mut list = String::new();
    for s in scenarios {
        list += &bundle::add(&mut tree, s)?;
        list.push('\n');
    }
    tree.add_file("scenarios/list", list, 0o644)?;
    // Distribution sets the scenarios install, unpacked over dom0's root.
    for (dest, host) in scenarios.iter().flat_map(|s| &s.installed) {
        if tree.get(dest).is_none() {
            tree.add_host_file(dest, host, 0o644)?;
        }
    }
    let initrd = dir.join(format!("{}.batch{index}.initrd.gz", m.spec.name));
    {
        // Linux unpacks concatenated archives; each must start 4-byte aligned (zero padding
        // between them is skipped). Uncompressed: gunzip under emulation costs dom0 more
        // boot time than it saves.
        let mut bytes = fs_err::read(&m.dom0_initrd)?;
        // Only batches with an HVM scenario carry the dom0 QEMU and SeaBIOS.
        if scenarios.iter().any(|s| s.test.dom0_hvm) {
            bytes.resize(bytes.len().next_multiple_of(512), 0);
            bytes.extend(fs_err::read(&m.dom0_hvm)?);
        }
        bytes.resize(bytes.len().next_multiple_of(512), 0);
        bytes.extend(tree.to_bytes(stubdoms_archive::Format::Cpio, 0)?);
        fsx::write_atomic(&initrd, &bytes)?;
    }
    let mut cmd = qemu_base(m, 1024)?;
    let a = arch::of(&m.spec.arch);
    cmd.args((a.load)(&arch::Load {
        xen: &m.tools.inside(&m.xen)?,
        xen_cmdline: &format!(
            "{} dom0_mem=512M,max:512M {}",
            a.xen_console, m.spec.xen_cmdline
        ),
        kernel: &m.tools.inside(&m.dom0_kernel)?,
        kernel_cmdline: a.dom0_cmdline,
        initrd: &m.tools.inside(&initrd)?,
    })?);
    let log = dir.join(format!("{}.batch{index}.log", m.spec.name));
    let mut q = Qemu::start(cmd, &log)?;
    let by_dir: BTreeMap<String, &Scenario> = scenarios.iter().map(|s| (s.dir_name(), s)).collect();
    let mut outcomes = Vec::new();
    let mut dom0_ready = None;
    let mut current: Option<Running> = None;
    let total: u64 = scenarios
        .iter()
        .map(|s| s.test.timeout + SLACK.as_secs())
        .sum();
    let end_by = Instant::now() + DOM0_BOOT + Duration::from_secs(total);
    let mut deadline = q.started + DOM0_BOOT;
    let mut tail = Tail::default();
    let mut stuck = None;
    loop {
        let line = match q.next_line(deadline.min(end_by)) {
            Next::Line(l) => l,
            Next::Closed => break,
            Next::TimedOut => {
                stuck = Some(match &current {
                    Some(r) => format!(
                        "dom0 did not end scenario {} in time: QEMU was killed",
                        r.s.id
                    ),
                    None if dom0_ready.is_none() => {
                        "dom0 did not come up: QEMU was killed".to_string()
                    }
                    None => "dom0 stopped answering between scenarios: QEMU was killed".to_string(),
                });
                break;
            }
        };
        tail.push(&line);
        let event = match marker::parse(&line) {
            Line::Event(e) => e,
            Line::Guest(g) => {
                if let Some(r) = current.as_mut() {
                    r.checker.feed(g, r.started.elapsed());
                    r.tail.push(g);
                }
                continue;
            }
            Line::Check(c) => {
                if let Some(r) = current.as_mut() {
                    if let Some((name, value)) = report::figure(c) {
                        r.figures.insert(name.to_string(), value);
                    }
                    r.dom0.feed(c, r.started.elapsed());
                    if r.check_failed.is_none() {
                        r.check_failed = c.strip_prefix("FAILED: ").map(str::to_string);
                    }
                    r.tail.push(&format!("dom0-check: {c}"));
                }
                continue;
            }
            Line::Other(other) => {
                if let Some(r) = current.as_mut() {
                    // Xen prints what the guest writes to its debug port (hvmloader,
                    // SeaBIOS) as `(dN) text` on its own console: part of the guest's.
                    match r
                        .debug_prefix
                        .as_deref()
                        .and_then(|p| other.strip_prefix(p))
                    {
                        Some(g) => {
                            r.checker.feed(g, r.started.elapsed());
                            r.tail.push(g);
                        }
                        None => r.tail.push(other),
                    }
                }
                continue;
            }
        };
        match event {
            Event::Dom0Ready => dom0_ready = Some(q.started.elapsed().as_secs_f64()),
            Event::Begin(name) => {
                let s = *by_dir
                    .get(name)
                    .with_context(|| format!("dom0 ran an unknown scenario {name}"))?;
                current = Some(Running {
                    s,
                    checker: Checker::new(&s.test.expect, &s.test.forbid),
                    dom0: Checker::new(&s.test.dom0_expect, &[]),
                    debug_prefix: None,
                    started: Instant::now(),
                    tail: Tail::default(),
                    state: None,
                    keys: BTreeMap::new(),
                    figures: BTreeMap::new(),
                    timed_out: false,
                    create_failed: false,
                    check_failed: None,
                });
                deadline = Instant::now() + Duration::from_secs(s.test.timeout) + SLACK;
            }
            Event::Domid(id) => {
                if let Some(r) = current.as_mut() {
                    r.debug_prefix = Some(format!("(d{id}) "));
                }
            }
            Event::State(st) => {
                if let Some(r) = current.as_mut() {
                    r.state = st.map(str::to_string);
                }
            }
            Event::Xenstore { key, value } => {
                if let Some(r) = current.as_mut() {
                    r.keys.insert(key.to_string(), value.to_string());
                }
            }
            Event::Timeout => {
                if let Some(r) = current.as_mut() {
                    r.timed_out = true;
                }
            }
            Event::CreateFailed => {
                if let Some(r) = current.as_mut() {
                    r.create_failed = true;
                }
            }
            Event::End => {
                if let Some(r) = current.take() {
                    outcomes.push(r.outcome(&log, dom0_ready));
                }
                deadline = Instant::now() + SLACK;
            }
            Event::RunEnd => deadline = Instant::now() + SLACK,
            Event::Unknown(_) => {}
        }
    }
    let _ = q.finish(Instant::now() + Duration::from_secs(10));
    // Whatever did not report: the one running when the machine stopped, and those after it.
    for s in scenarios {
        if outcomes.iter().any(|o: &Outcome| o.id == s.id) {
            continue;
        }
        let why = stuck
            .clone()
            .unwrap_or_else(|| "dom0 ended before this scenario reported".into());
        let c = match &current {
            Some(r) if r.s.id == s.id => {
                let mut o = finish(s, &r.checker, dom0_ready, &r.tail, &log, "", Some(why));
                o.secs_to_last_line = None;
                outcomes.push(o);
                continue;
            }
            _ => Checker::new(&s.test.expect, &s.test.forbid),
        };
        outcomes.push(finish(s, &c, dom0_ready, &tail, &log, "", Some(why)));
    }
    Ok(outcomes)
}

struct Running<'a> {
    s: &'a Scenario,
    checker: Checker<'a>,
    /// The dom0 check script's lines against `dom0-expect`.
    dom0: Checker<'a>,
    /// `(dN) `: how Xen's console prefixes the guest's debug-port output.
    debug_prefix: Option<String>,
    started: Instant,
    tail: Tail,
    state: Option<String>,
    keys: BTreeMap<String, String>,
    figures: BTreeMap<String, f64>,
    timed_out: bool,
    create_failed: bool,
    /// What the dom0 check gave up on (its `FAILED: ` line): the reason, which the last
    /// console lines (its logs) have usually scrolled past.
    check_failed: Option<String>,
}

impl Running<'_> {
    fn outcome(&self, log: &Path, dom0_ready: Option<f64>) -> Outcome {
        let mut problems = Vec::new();
        if self.create_failed {
            problems.push("xl create failed".to_string());
        }
        if self.timed_out {
            problems.push(format!("timed out after {} s", self.s.test.timeout));
        }
        if self.state.as_deref().is_some_and(|s| s.contains('c')) {
            problems.push("the guest crashed".to_string());
        }
        if let Verdict::Missing { pattern, .. } = self.dom0.verdict() {
            problems.push(format!("dom0 check: waiting for /{pattern}/"));
        }
        if let Some(why) = &self.check_failed {
            problems.push(format!("dom0 check failed: {why}"));
        }
        for (key, re) in &self.s.test.xenstore {
            match self.keys.get(key) {
                Some(v) if re.is_match(v) => {}
                Some(v) => problems.push(format!(
                    "xenstore {key} = `{v}`, expected /{}/",
                    re.as_str()
                )),
                None => problems.push(format!("xenstore {key} was not read")),
            }
        }
        let extra = (!problems.is_empty()).then(|| problems.join("; "));
        let mut o = finish(
            self.s,
            &self.checker,
            dom0_ready,
            &self.tail,
            log,
            "",
            extra,
        );
        o.figures = self.figures.clone();
        o
    }
}
