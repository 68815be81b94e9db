//! `cargo xtask fetch`: download pinned inputs into the verified cache. Each download goes to
//! a `.partial` file, is checked against its sha256 and size, then renamed into place; a
//! mismatch stores nothing. A file the mirror no longer has (404 or 410) is fetched from a
//! snapshot archive as of its pin's `snapshot` time, with the same checks.

use std::io::{IsTerminal, Read, Write};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::cache::{Cache, State};
use crate::fsx;
use crate::lock::Blob;
use crate::mirror::{self, Mirrors};
use crate::ui;

#[derive(clap::Args)]
pub struct Flags {
    /// Use only the cache; list exactly what is missing.
    #[arg(long)]
    pub offline: bool,
}

/// Where downloads come from.
pub struct Remote {
    pub mirrors: Mirrors,
    /// A snapshot archive's base URL (before `/archive/`), for files the mirrors dropped.
    pub snapshot: Option<String>,
}

/// `cargo xtask fetch`: the inputs of the named recipes (every pinned input by default),
/// downloaded and verified.
pub fn run(ws: &crate::workspace::Workspace, names: &[String], flags: &Flags) -> Result<()> {
    let blobs = ws.blobs_for(names)?;
    let cache = Cache::open()?;
    let n = ensure(&cache, &blobs, flags)?;
    println!(
        "{} input file(s) verified in {} ({n} downloaded)",
        blobs.len(),
        cache.root().display()
    );
    Ok(())
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
                fs_err::remove_file(cache.blob_path(&blob.sha256))?;
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
    let remote = Remote {
        mirrors: Mirrors::discover()?,
        snapshot: mirror::snapshot_base(),
    };
    download_all(cache, &remote, &missing)?;
    Ok(missing.len())
}

fn download_all(cache: &Cache, remote: &Remote, blobs: &[Blob]) -> Result<()> {
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
                    let result = download(&agent, cache, remote, blob, bar.as_ref());
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
    remote: &Remote,
    blob: &Blob,
    bar: Option<&ProgressBar>,
) -> Result<()> {
    let archive = blob.archive.archive();
    let url = remote.mirrors.url(archive, &blob.path);
    let code = match agent.get(&url).call() {
        Ok(response) => return store(cache, blob, &url, response.into_reader(), bar),
        Err(ureq::Error::Status(code @ (404 | 410), _)) => code,
        Err(e) => bail!(
            "{blob}: downloading {url}: {e} (check the network, or use --offline with a filled cache)"
        ),
    };
    let gone = format!("{blob}: the mirror no longer has it ({url} answered {code})");
    let Some(stamp) = &blob.snapshot else {
        bail!(
            "{gone}, and its pin records no `snapshot` time to fetch it from a snapshot archive: run `cargo xtask pin` to move the pin to a version the mirror serves"
        );
    };
    let Some(base) = &remote.snapshot else {
        bail!(
            "{gone}, and no snapshot archive is configured: set {}=<base URL of a Debian snapshot archive, the part before /archive/> to fetch it as of {stamp}, or run `cargo xtask pin` to move the pin to a version the mirror serves",
            mirror::SNAPSHOT_ENV
        );
    };
    let snap = mirror::snapshot_url(base, archive, stamp, &blob.path);
    match agent.get(&snap).call() {
        Ok(response) => store(cache, blob, &snap, response.into_reader(), bar),
        Err(ureq::Error::Status(code, _)) => bail!(
            "{gone}, and the snapshot archive answered {code} for {snap}: run `cargo xtask pin` to move the pin to a version the mirror serves, or set {} to another snapshot archive",
            mirror::SNAPSHOT_ENV
        ),
        Err(e) => bail!(
            "{gone}; downloading {snap} from the snapshot archive: {e} (check the network or {})",
            mirror::SNAPSHOT_ENV
        ),
    }
}

/// A file that is not from a Debian archive (a tool the checks need, pinned by sha256 and
/// size elsewhere) in the verified cache: downloaded from `url` unless it is there already,
/// with the same checks as every pinned input. Returns its path in the cache.
pub fn ensure_url(
    cache: &Cache,
    label: &str,
    url: &str,
    size: u64,
    sha256: &str,
    flags: &Flags,
) -> Result<std::path::PathBuf> {
    let blob = Blob {
        label: label.to_string(),
        archive: crate::lock::Archive::Debian.into(),
        path: url.to_string(),
        size,
        sha256: sha256.to_string(),
        licence: "NOASSERTION".into(),
        snapshot: None,
    };
    if let State::Good(path) = cache.state(&blob)? {
        return Ok(path);
    }
    if flags.offline {
        bail!("{label} is not in the input cache and --offline was given: run once online to fetch {url}");
    }
    ui::step(&format!("fetch {label} ({} KiB)", size.div_ceil(1024)));
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(120))
        .build();
    let response = agent
        .get(url)
        .call()
        .with_context(|| format!("{label}: downloading {url} (check the network)"))?;
    store(cache, &blob, url, response.into_reader(), None)?;
    Ok(cache.blob_path(sha256))
}

/// Streams a download into a per-process partial file, checks its sha256 and size, and only
/// then renames it into the cache; on any error the partial file is removed.
fn store(
    cache: &Cache,
    blob: &Blob,
    url: &str,
    reader: impl Read,
    bar: Option<&ProgressBar>,
) -> Result<()> {
    let dest = cache.blob_path(&blob.sha256);
    let tmp = fsx::partial_path(&cache.tmp()?.join(&blob.sha256));
    let result = (|| -> Result<()> {
        let mut reader = reader.take(blob.size + 1);
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
            out.write_all(&buf[..n])
                .with_context(|| format!("writing {}{}", tmp.display(), fsx::disk_hint(&tmp)))?;
            size += n as u64;
            if let Some(bar) = bar {
                bar.set_position(size);
            }
        }
        out.sync_all()
            .with_context(|| format!("writing {}{}", tmp.display(), fsx::disk_hint(&tmp)))?;
        let actual = format!("{:x}", hasher.finalize());
        if actual != blob.sha256 || size != blob.size {
            bail!(
                "{blob}: hash mismatch for {url}: expected sha256 {} ({} bytes), got {actual} ({size}{} bytes); nothing was stored. If the pin is wrong, run `cargo xtask pin`",
                blob.sha256,
                blob.size,
                if size > blob.size { "+" } else { "" },
            );
        }
        let dir = dest.parent().context("cache path has no parent")?;
        fs_err::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        fs_err::rename(&tmp, &dest)
            .with_context(|| format!("storing {} as {}", tmp.display(), dest.display()))?;
        cache.mark_verified(&blob.sha256);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs_err::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::path::{Path, PathBuf};

    use sha2::Digest;

    use super::*;
    use crate::lock::Archive;

    const STAMP: &str = "20261201T093000Z";
    const POOL: &str = "pool/main/h/hello/hello_1_amd64.deb";

    /// A tiny HTTP server on 127.0.0.1: answers GET for the paths in `files`, 404 otherwise.
    /// It runs until the test process ends.
    fn serve(files: BTreeMap<String, Vec<u8>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = std::io::BufReader::new(&stream);
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("");
                let (status, body) = match files.get(path) {
                    Some(body) => ("200 OK", body.as_slice()),
                    None => ("404 Not Found", b"not here".as_slice()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body);
            }
        });
        format!("http://{addr}")
    }

    fn blob_of(bytes: &[u8], snapshot: Option<&str>) -> Blob {
        Blob {
            label: "deb hello 1 amd64".into(),
            archive: Archive::Debian.into(),
            path: POOL.into(),
            size: bytes.len() as u64,
            sha256: format!("{:x}", Sha256::digest(bytes)),
            licence: "NOASSERTION".into(),
            snapshot: snapshot.map(str::to_string),
        }
    }

    fn files_in(dir: &Path) -> Vec<PathBuf> {
        fs_err::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }

    /// Fetches `blob` into a fresh cache from a mirror that lacks it and a snapshot archive
    /// serving `snapshot_bytes` at the snapshot path; returns the result and the cache.
    fn fetch_dropped(
        case: &str,
        blob: &Blob,
        snapshot_bytes: &[u8],
        snapshot_configured: bool,
    ) -> (Result<()>, Cache) {
        let base = serve(BTreeMap::from([(
            format!("/snap/archive/debian/{STAMP}/{POOL}"),
            snapshot_bytes.to_vec(),
        )]));
        let root =
            std::env::temp_dir().join(format!("stubdoms-fetch-{case}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cache = Cache::at(root).unwrap();
        let remote = Remote {
            mirrors: Mirrors {
                debian: format!("{base}/debian"),
                security: format!("{base}/debian-security"),
            },
            snapshot: snapshot_configured.then(|| format!("{base}/snap")),
        };
        (
            download_all(&cache, &remote, std::slice::from_ref(blob)),
            cache,
        )
    }

    #[test]
    fn dropped_files_come_from_the_snapshot_archive_verified() {
        let bytes = b"hello deb bytes";
        let blob = blob_of(bytes, Some(STAMP));
        let (result, cache) = fetch_dropped("good", &blob, bytes, true);
        result.unwrap();
        let path = cache.get(&blob).unwrap();
        assert_eq!(fs_err::read(&path).unwrap(), bytes);
        assert!(files_in(&cache.tmp().unwrap()).is_empty());
        std::fs::remove_dir_all(cache.root()).unwrap();
    }

    #[test]
    fn dropped_files_that_cannot_be_had_say_why() {
        let bytes = b"hello deb bytes".as_slice();
        let snap_path = format!("/snap/archive/debian/{STAMP}/{POOL}");
        // (case, the pin's snapshot, what the snapshot archive serves, snapshot configured,
        // what the error says)
        let cases = [
            (
                "wrong",
                Some(STAMP),
                b"hello DEB bytes".as_slice(),
                true,
                vec![
                    "deb hello 1 amd64: hash mismatch for http://127.0.0.1:".to_string(),
                    format!("{snap_path}: expected sha256"),
                    "nothing was stored".into(),
                ],
            ),
            (
                "unconfigured",
                Some(STAMP),
                bytes,
                false,
                vec![
                    "deb hello 1 amd64: the mirror no longer has it (http://127.0.0.1:".into(),
                    format!("/debian/{POOL} answered 404)"),
                    "no snapshot archive is configured: set STUBDOMS_DEBIAN_SNAPSHOT=".into(),
                    format!("to fetch it as of {STAMP}"),
                ],
            ),
            (
                "unstamped",
                None,
                bytes,
                true,
                vec![
                    "its pin records no `snapshot` time".into(),
                    "run `cargo xtask pin`".into(),
                ],
            ),
            (
                // The snapshot archive has the file at another time only.
                "absent",
                Some("20250101T000000Z"),
                bytes,
                true,
                vec![
                    "the snapshot archive answered 404 for http://127.0.0.1:".into(),
                    "/snap/archive/debian/20250101T000000Z/pool/".into(),
                ],
            ),
        ];
        for (case, snapshot, served, configured, want) in cases {
            let blob = blob_of(bytes, snapshot);
            let (result, cache) = fetch_dropped(case, &blob, served, configured);
            let err = format!("{:#}", result.unwrap_err());
            for w in want {
                assert!(err.contains(&w), "{case}: want {w:?}\n got {err:?}");
            }
            assert!(
                matches!(cache.state(&blob).unwrap(), State::Missing),
                "{case}"
            );
            assert!(files_in(&cache.tmp().unwrap()).is_empty(), "{case}");
            std::fs::remove_dir_all(cache.root()).unwrap();
        }
    }
}
