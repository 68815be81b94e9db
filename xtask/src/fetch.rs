//! `cargo xtask fetch`: download pinned inputs into the verified cache. Each download goes to
//! a `.partial` file, is checked against its sha256 and size, then renamed into place; a
//! mismatch stores nothing.

use std::io::{IsTerminal, Read, Write};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::cache::{Cache, State};
use crate::lock::Blob;
use crate::mirror::Mirrors;
use crate::ui;

pub struct Flags {
    pub offline: bool,
}

/// Makes sure every blob is in the cache and verified. Returns how many were downloaded.
pub fn ensure(cache: &Cache, blobs: &[Blob], flags: &Flags) -> Result<usize> {
    let mut blobs = blobs.to_vec();
    blobs.sort();
    blobs.dedup();
    let mut missing = Vec::new();
    for blob in &blobs {
        match cache.state(blob)? {
            State::Good(_) => {}
            State::Missing => missing.push(blob.clone()),
            State::Altered { actual, size } => {
                if flags.offline {
                    bail!(
                        "cached {blob} was altered: expected sha256 {} ({} bytes), found {actual} ({size} bytes) at {}; run `cargo xtask fetch` without --offline to fetch it again",
                        blob.sha256,
                        blob.size,
                        cache.blob_path(&blob.sha256).display()
                    );
                }
                ui::warn(&format!(
                    "cached {blob} was altered (expected sha256 {}, found {actual}): fetching it again",
                    blob.sha256
                ));
                std::fs::remove_file(cache.blob_path(&blob.sha256))?;
                missing.push(blob.clone());
            }
        }
    }
    if missing.is_empty() {
        return Ok(0);
    }
    if flags.offline {
        let list: Vec<String> = missing
            .iter()
            .map(|b| format!("  {b} (sha256 {})", b.sha256))
            .collect();
        bail!(
            "--offline: {} input(s) missing from the cache {}:\n{}\nrun `cargo xtask fetch` with network access",
            missing.len(),
            cache.root().display(),
            list.join("\n")
        );
    }
    let mirrors = Mirrors::discover()?;
    download_all(cache, &mirrors, &missing)?;
    Ok(missing.len())
}

fn download_all(cache: &Cache, mirrors: &Mirrors, blobs: &[Blob]) -> Result<()> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(120))
        .build();
    let multi = MultiProgress::new();
    let fancy = std::io::stderr().is_terminal() && !ui::quiet();
    let queue = Mutex::new(blobs.iter());
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..blobs.len().min(4) {
            // The guard is moved into the closure and dropped there: downloads run unlocked.
            s.spawn(|| {
                while let Some(blob) = queue.lock().ok().and_then(|mut q| q.next()) {
                    let bar = fancy.then(|| {
                        let bar = multi.add(ProgressBar::new(blob.size));
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{bar:30} {bytes:>10}/{total_bytes:<10} {wide_msg}",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                        );
                        bar.set_message(blob.label.clone());
                        bar
                    });
                    if !fancy {
                        ui::step(&format!("fetch {blob} ({} KiB)", blob.size.div_ceil(1024)));
                    }
                    let result = download(&agent, cache, mirrors, blob, bar.as_ref());
                    if let Some(bar) = bar {
                        bar.finish_and_clear();
                    }
                    if let Err(e) = result {
                        if let Ok(mut errs) = errors.lock() {
                            errs.push(format!("{e:#}"));
                        }
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap_or_default();
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(())
}

fn download(
    agent: &ureq::Agent,
    cache: &Cache,
    mirrors: &Mirrors,
    blob: &Blob,
    bar: Option<&ProgressBar>,
) -> Result<()> {
    let url = mirrors.url(blob.archive.archive(), &blob.path);
    let dest = cache.blob_path(&blob.sha256);
    let tmp = cache.tmp()?.join(format!("{}.partial", blob.sha256));
    let result = (|| -> Result<()> {
        let response = agent.get(&url).call().map_err(|e| match e {
            ureq::Error::Status(404, _) => anyhow::anyhow!(
                "{blob}: not found at {url} (the mirror no longer has this version: run `cargo xtask pin` to move the pin, or point STUBDOMS_DEBIAN_MIRROR at a snapshot archive)"
            ),
            other => anyhow::anyhow!("{blob}: downloading {url}: {other} (check the network, or use --offline with a filled cache)"),
        })?;
        let mut reader = response.into_reader().take(blob.size + 1);
        let mut out =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .with_context(|| format!("{blob}: reading {url}"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).with_context(|| {
                format!("writing {}{}", tmp.display(), crate::fsx::disk_hint(&tmp))
            })?;
            size += n as u64;
            if let Some(bar) = bar {
                bar.set_position(size);
            }
        }
        out.sync_all()?;
        let actual = format!("{:x}", hasher.finalize());
        if actual != blob.sha256 || size != blob.size {
            bail!(
                "{blob}: hash mismatch for {url}: expected sha256 {} ({} bytes), got {actual} ({size}{} bytes); nothing was stored. If the pin is wrong, run `cargo xtask pin`",
                blob.sha256,
                blob.size,
                if size > blob.size { "+" } else { "" },
            );
        }
        std::fs::create_dir_all(dest.parent().context("cache path")?)?;
        std::fs::rename(&tmp, &dest)?;
        cache.mark_verified(&blob.sha256);
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
