//! `cargo xtask`: the stubdoms build driver. This file only parses the command line and
//! dispatches; each command lives in its own module.

mod bench;
mod boot;
mod buildenv;
mod builders;
mod cache;
mod crates;
mod debsrc;
mod dist;
mod doctor;
mod elfdeps;
mod esp;
mod fetch;
mod fsx;
mod key;
mod list;
mod lock;
mod mirror;
mod new_stubdom;
mod nixeval;
mod pin;
mod recipe;
mod repro;
mod sandbox;
mod test;
#[cfg(test)]
mod tidy;
mod ui;
mod variant;
mod workspace;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, test and package Xen stub-domain images"
)]
struct Cli {
    /// Print only errors and results, no progress.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every recipe with its kind, variants and outputs.
    List,
    /// Download pinned inputs into the verified cache.
    Fetch {
        /// Recipes whose inputs to fetch (default: every input in inputs.lock).
        names: Vec<String>,
        #[command(flatten)]
        flags: fetch::Flags,
    },
    /// Resolve inputs.lock against the Debian mirror and rewrite the pins.
    Pin(pin::Flags),
    /// Check what the host must give (Linux with namespaces or root, the Rust toolchain).
    Doctor,
    /// Build images into target/images/<variant>/ and write target/images/manifest.json.
    Build {
        /// Recipes to build (default: all).
        names: Vec<String>,
        #[command(flatten)]
        flags: builders::Flags,
    },
    /// Assemble a build environment (default: the builders') and print where it is, or run a
    /// command in it with the checkout mounted read-only at /work.
    Env(buildenv::Args),
    /// Assemble a boot-test machine (Xen, dom0 kernel and initramfs) into a folder.
    Machine {
        /// The machine: a file of ci/machines/, such as x86_64-xen4.17.
        name: String,
        #[arg(long)]
        out: std::path::PathBuf,
        /// Rebuild the parts built from source (the hypervisor) instead of reusing the cache.
        #[arg(long)]
        fresh: bool,
    },
    /// Write an EFI system partition image that Xen boots as a dom0less system, from a
    /// configuration with domu<N>_* lines.
    Esp(esp::Args),
    /// Build twice in different places and conditions and compare every artifact.
    Repro {
        /// Recipes to check (default: all).
        names: Vec<String>,
    },
    /// Boot images under Xen in QEMU and check their consoles.
    BootTest {
        /// Recipes whose boot tests to run (default: all, and the machine's self-test;
        /// `selftest` names the self-test).
        names: Vec<String>,
        #[command(flatten)]
        flags: boot::Flags,
    },
    /// Check formatting and run clippy on the host code and, in the build environment, on
    /// the runtime's image configuration for every image target.
    Lint,
    /// Run the formatter check, clippy, every workspace test and the boot tests.
    Test,
    /// Evaluate the Nix flake with the pinned Nix against a stand-in for nixpkgs and compare
    /// its packages' fetches, commands and install layout with the driver's (part of `test`).
    FlakeCheck,
    /// Package distribution sets (images/*.toml) as tarballs with manifests and SHA256SUMS.
    Dist {
        /// Distribution sets to package (default: all).
        sets: Vec<String>,
        #[command(flatten)]
        flags: dist::Flags,
    },
    /// Make a new stub domain from the Rust or C example.
    NewStubdom {
        name: String,
        #[arg(long, value_enum, default_value = "rust")]
        lang: new_stubdom::Lang,
    },
    /// Measure cold and warm build times, image sizes, boot-test times and the smallest memory
    /// the runtime examples boot in (also as JSON).
    Bench {
        /// Recipes to measure (default: all).
        names: Vec<String>,
        #[command(flatten)]
        flags: bench::Flags,
    },
    /// Check the build sandbox in a tiny busybox root (part of `test`).
    #[command(hide = true)]
    SandboxSelftest {
        /// Work folder (default: a folder in the temporary folder).
        #[arg(long)]
        work: Option<std::path::PathBuf>,
        /// Use this busybox-static .deb instead of the pinned one (no workspace needed, so
        /// another user can run a copy of the binary).
        #[arg(long, requires = "work")]
        busybox_deb: Option<std::path::PathBuf>,
    },
}

fn main() {
    // The sandbox's hidden modes run before anything else, while the process is still
    // single-threaded (unshare needs that); they exec or exit.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match args.get(1).and_then(|a| a.to_str()) {
        Some(sandbox::ENTER) => sandbox::enter(&args[2..]),
        Some(sandbox::PROBE) => sandbox::probe_main(),
        _ => {}
    }
    if let Some(code) = test::tool_shim(&args) {
        std::process::exit(code);
    }
    let cli = Cli::parse();
    ui::set_quiet(cli.quiet);
    if let Err(e) = run(cli.command) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(command: Command) -> Result<()> {
    if let Command::NewStubdom { name, lang } = &command {
        // Works on the files alone, so a recipe under construction cannot block it.
        let root = workspace::root()?;
        return new_stubdom::run(&root, name, *lang).map(|_| ());
    }
    if let Command::SandboxSelftest {
        work: Some(work),
        busybox_deb: Some(deb),
    } = &command
    {
        ui::step(&format!(
            "sandbox: this host makes sandboxes as {}",
            sandbox::probe()?
        ));
        sandbox::print_report(&sandbox::self_test(work, deb)?);
        return Ok(());
    }
    let ws = workspace::Workspace::load()?;
    match command {
        Command::List => list::run(&ws),
        Command::Fetch { names, flags } => fetch::run(&ws, &names, &flags),
        Command::Pin(flags) => pin::run(&ws.root, &flags),
        Command::Doctor => doctor::run(),
        Command::Build { names, flags } => {
            if let Some(release) = &flags.xen_release {
                recipe::check_xen_release(&ws.recipes, release).context("--xen-release")?;
            }
            builders::run(&ws, &names, &flags).map(|_| ())
        }
        Command::Env(args) => buildenv::run(&ws, &args),
        Command::Machine { name, out, fresh } => boot::machine::run(&ws, &name, &out, fresh),
        Command::Esp(args) => esp::run(&ws, &args),
        Command::Repro { names } => repro::run(&ws, &names, repro::Machines::All).map(|_| ()),
        Command::BootTest { names, flags } => boot::run(&ws, &names, &flags).map(|_| ()),
        Command::Lint => {
            let cache = cache::Cache::open()?;
            let root = buildenv::fetched_root(&ws, &cache, buildenv::BUILD, false)?;
            let n = test::lint(&ws, &cache, &root)?;
            println!("lint: {n} checks passed");
            Ok(())
        }
        Command::Test => test::run(&ws),
        Command::FlakeCheck => {
            let n = nixeval::check(&ws, &cache::Cache::open()?)?;
            println!("flake-check: {n} checks passed");
            Ok(())
        }
        Command::NewStubdom { .. } => Ok(()),
        Command::Dist { sets, flags } => dist::command(&ws, &sets, &flags),
        Command::Bench { names, flags } => bench::run(&ws, &names, &flags),
        Command::SandboxSelftest { work, .. } => {
            let work = work.unwrap_or_else(|| std::env::temp_dir().join("stubdoms-sandbox-check"));
            ui::step(&format!(
                "sandbox: this host makes sandboxes as {}",
                sandbox::probe()?
            ));
            let deb = sandbox::test_busybox(&ws)?;
            sandbox::print_report(&sandbox::self_test(&work, &deb)?);
            Ok(())
        }
    }
}
