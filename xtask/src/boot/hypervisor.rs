//! A test machine's Xen built from source: the pinned Debian `xen` source package (upstream
//! tarball plus Debian's patch series), only the hypervisor (`xen/`), with Debian's Kconfig
//! plus the machine's fragment (for instance `CONFIG_PV32=y`, which Debian leaves off). Built
//! in the `bookworm-build` environment, with the build date, host and user fixed, and kept in
//! the cache under a key of everything that went in.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::buildenv::{self, Root};
use crate::cache::Cache;
use crate::workspace::Workspace;

/// Bumped when [`build_into`] changes what it makes.
const VERSION: &str = "stubdoms-hypervisor-1";

/// The hypervisor (`xen`, the multiboot ELF QEMU's `-kernel` boots) built with the Kconfig
/// fragment `config`, from the cache when it was built before (unless `fresh`).
pub fn get(
    ws: &Workspace,
    cache: &Cache,
    config: &Path,
    epoch: u64,
    offline: bool,
    fresh: bool,
) -> Result<PathBuf> {
    let fragment = fs_err::read_to_string(config).with_context(|| {
        format!(
            "reading the machine's Kconfig fragment {}",
            config.display()
        )
    })?;
    let blobs = ws.lock.resolve("src:xen")?.blobs()?;
    crate::fetch::ensure(cache, &blobs, &crate::fetch::Flags { offline })?;
    let root = buildenv::fetched_root(ws, cache, buildenv::BUILD, offline)?;
    let mut k = crate::key::Key::new(VERSION);
    k.field("hypervisor.rs", include_str!("hypervisor.rs"))
        .field("debsrc.rs", include_str!("../debsrc.rs"))
        .field("fragment", &fragment)
        .field("root", &root.key)
        .field("epoch", epoch.to_string());
    for b in &blobs {
        k.field("input", &b.sha256);
    }
    let folder = format!("xen-{}", &k.finish()[..16]);
    if fresh || !cache.root().join("hypervisors").join(&folder).is_dir() {
        crate::ui::step(&format!(
            "hypervisor: building Xen from the pinned source with {} (a few minutes)",
            config.strip_prefix(&ws.root).unwrap_or(config).display()
        ));
    }
    let find = |suffix: &str| {
        blobs
            .iter()
            .find(|b| b.path.ends_with(suffix))
            .with_context(|| format!("the xen source pin has no *{suffix}"))
    };
    let (orig, debian) = (find(".orig.tar.xz")?, find(".debian.tar.xz")?);
    // Debian's patches print the package version and maintainer in Xen's banner.
    let version = find(".dsc")?
        .path
        .rsplit('/')
        .next()
        .and_then(|f| f.strip_prefix("xen_"))
        .and_then(|f| f.strip_suffix(".dsc"))
        .context("the xen source pin's .dsc is not named xen_VERSION.dsc")?
        .to_string();
    let dir = cache.stored("hypervisors", &folder, fresh, |tmp| {
        let sources = (cache.get(orig)?, cache.get(debian)?);
        build_into(&root, &sources, &version, &fragment, epoch, tmp)
    })?;
    Ok(dir.join("xen"))
}

fn build_into(
    root: &Root,
    (orig, debian): &(PathBuf, PathBuf),
    version: &str,
    fragment: &str,
    epoch: u64,
    out: &Path,
) -> Result<()> {
    let src = out.join("src");
    crate::debsrc::unpack_patched(root, orig, debian, None, &src, out)?;
    let step = || root.step().rw(&src, "/src").cwd("/src").shifted_clock();
    let debian_config = fs_err::read_to_string(src.join("debian/xen-kconfig"))?;
    fs_err::write(
        src.join("xen/.config"),
        format!("{debian_config}\n# stubdoms machine fragment\n{fragment}"),
    )?;
    // Xen stamps its build date, time, user, host and domain into the binary: fix them.
    let date = build_date(root, epoch)?;
    let fixed = [
        "XEN_TARGET_ARCH=x86_64".to_string(),
        format!("XEN_BUILD_DATE={}", date.0),
        format!("XEN_BUILD_TIME={}", date.1),
        format!("DEB_VERSION={version}+stubdoms"),
        "DEB_MAINTAINER=stubdoms <machines@stubdoms.invalid>".into(),
        "XEN_WHOAMI=stubdoms".into(),
        "XEN_DOMAIN=stubdoms.invalid".into(),
        "XEN_BUILD_HOST=stubdoms".into(),
        "EXTRA_CFLAGS_XEN_CORE=-ffile-prefix-map=/src=.".into(),
    ];
    let jobs = format!(
        "-j{}",
        std::thread::available_parallelism().map_or(2, |n| n.get())
    );
    for (what, args) in [
        ("olddefconfig", vec!["-C", "xen", "olddefconfig"]),
        ("make xen", vec![jobs.as_str(), "-C", "xen"]),
    ] {
        let mut c = step()
            .env("SOURCE_DATE_EPOCH", epoch.to_string())
            .command("make")?;
        c.args(&args).args(&fixed);
        crate::builders::run_logged(&mut c, out, what)?;
    }
    let config = fs_err::read_to_string(src.join("xen/.config"))?;
    for line in fragment
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_"))
    {
        let want = match line.split_once('=') {
            Some((name, "n")) => format!("# {name} is not set"),
            _ => line.to_string(),
        };
        if !config.lines().any(|l| l.trim() == want) {
            anyhow::bail!(
                "Xen's configuration lost `{line}` of the machine's fragment (a dependency is off): see {}",
                src.join("xen/.config").display()
            );
        }
    }
    fs_err::rename(src.join("xen/xen"), out.join("xen"))?;
    fs_err::write(out.join("config"), config)?;
    crate::fsx::remove_dir_if_exists(&src)?;
    Ok(())
}

/// `SOURCE_DATE_EPOCH` as Xen's build date and time, as Debian's rules spell them: the
/// environment's `date -u`.
fn build_date(root: &Root, epoch: u64) -> Result<(String, String)> {
    let run = |format: Option<&str>| -> Result<String> {
        let mut c = root.step().env("LC_ALL", "C").command("date")?;
        c.args(["-u", "-d", &format!("@{epoch}")]).args(format);
        let o = c
            .output()
            .context("running date in the build environment")?;
        if !o.status.success() {
            anyhow::bail!("date failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    Ok((run(None)?, run(Some("+%T"))?))
}
