//! `cargo xtask pin [--check]`: resolve every `inputs.lock` request with apt in a private
//! apt state (the system's apt state is never touched) and write the pins back with
//! toml_edit, so hand-written comments and order survive.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use toml_edit::{value, Array, ArrayOfTables, DocumentMut, Item, Table};

use crate::lock::{self, Archive, Lock};
use crate::mirror::{Mirrors, RELEASE};
use crate::ui;

#[derive(clap::Args)]
pub struct Flags {
    /// Only report what has drifted on the mirror; change nothing.
    #[arg(long)]
    pub check: bool,
}

/// A resolved binary package.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pinned {
    name: String,
    arch: String,
    version: String,
    archive: Archive,
    path: String,
    size: u64,
    sha256: String,
}

pub fn run(root: &Path, flags: &Flags) -> Result<()> {
    let cache = crate::cache::Cache::open()?;
    let cache_root = cache.root();
    let lock_path = root.join(lock::FILE);
    let text = fs_err::read_to_string(&lock_path)
        .with_context(|| format!("reading {}", lock_path.display()))?;
    let lock = Lock::parse(&text)?;
    let mirrors = Mirrors::discover()?;
    let mut apts = Apts {
        root: cache_root.join("apt-pin"),
        mirrors: &mirrors,
        by_release: BTreeMap::new(),
    };

    // When this run pins, for entries whose pin moves (or that have no `snapshot` yet).
    let now = crate::mirror::snapshot_timestamp(std::time::SystemTime::now());

    let mut doc: DocumentMut = text.parse().context("inputs.lock is not valid TOML")?;
    let mut deps: BTreeMap<(String, String), (Pinned, Vec<String>)> = BTreeMap::new();
    let requests: Vec<_> = lock
        .debs
        .iter()
        .filter(|d| d.required_by.is_empty())
        .collect();
    let mut pinned_requests = Vec::new();
    for req in &requests {
        ui::step(&format!("resolve {}", req.id()));
        let apt = apts.for_suite(req.suite.as_deref())?;
        let mut set = apt.resolve(&req.name, &req.arch, req.suite.as_deref(), req.closure)?;
        if req.follow {
            for dep in apt.direct_depends(&req.name, &req.arch)? {
                set.extend(apt.resolve(&dep, &req.arch, req.suite.as_deref(), false)?);
            }
        }
        let Some(pos) = set.iter().position(|p| p.name == req.name) else {
            bail!("apt did not return `{}` itself", req.id());
        };
        let me = set.remove(pos);
        let mut needs: Vec<String> = set.iter().map(|p| p.name.clone()).collect();
        needs.sort();
        for p in set {
            let entry = deps
                .entry((p.name.clone(), p.arch.clone()))
                .or_insert_with(|| (p.clone(), Vec::new()));
            if entry.0 != p {
                bail!(
                    "`{}:{}` is needed in two versions ({} and {}): pin the requests from the same suite",
                    p.name,
                    p.arch,
                    entry.0.version,
                    p.version
                );
            }
            entry.1.push(req.name.clone());
        }
        pinned_requests.push((me, needs));
    }
    let mut envs = Vec::new();
    for env in &lock.envs {
        ui::step(&format!("resolve env {}", env.name));
        let targets: Vec<String> = env
            .packages
            .iter()
            .map(|p| format!("{p}:{}", env.arch))
            .collect();
        let apt = apts.for_suite(env.suite.as_deref())?;
        let mut set = apt.resolve_targets(&targets, &env.arch, env.suite.as_deref(), true)?;
        set.sort_by(|a, b| a.name.cmp(&b.name));
        set.dedup_by(|a, b| a.name == b.name && a.version == b.version);
        envs.push(set);
    }
    let mut sources = Vec::new();
    for src in &lock.sources {
        ui::step(&format!("resolve source {}", src.id()));
        let Some(binary) = &src.of else {
            let apt = apts.for_suite(src.suite.as_deref())?;
            sources.push(apt.source(&src.name, src.suite.as_deref(), None)?);
            continue;
        };
        // The corresponding source of a binary package: at the version the binary's new pin
        // was built from, from the binary's suite.
        let (p, suite) = match &src.env {
            Some(env) => {
                let at = lock
                    .envs
                    .iter()
                    .position(|e| &e.name == env)
                    .with_context(|| format!("source `{}`: no env `{env}`", src.id()))?;
                let p = envs[at].iter().find(|p| &p.name == binary);
                (p, lock.envs[at].suite.as_deref())
            }
            None => {
                let p = pinned_requests
                    .iter()
                    .map(|(p, _)| p)
                    .chain(deps.values().map(|(p, _)| p))
                    .find(|p| &p.name == binary && p.arch == "amd64");
                let suite = lock
                    .debs
                    .iter()
                    .find(|d| &d.name == binary && d.arch == "amd64")
                    .and_then(|d| d.suite.as_deref());
                (p, suite)
            }
        };
        let p = p.with_context(|| {
            format!(
                "source `{}`: the binary package `{binary}` is pinned nowhere {}",
                src.id(),
                src.env
                    .as_ref()
                    .map_or("as a [[deb]]".to_string(), |e| format!("in env `{e}`"))
            )
        })?;
        let apt = apts.for_suite(suite)?;
        let (name, version) = apt.built_from(&p.name, &p.arch, &p.version)?;
        if name != src.name {
            bail!(
                "source `{}`: {} {} is built from the source package `{name}`: name it so",
                src.id(),
                p.name,
                p.version
            );
        }
        sources.push(apt.source(&name, suite, Some(&version))?);
    }

    // Rewrite: requests in place, generated dependency entries after them.
    let tables = doc
        .entry("deb")
        .or_insert(Item::ArrayOfTables(ArrayOfTables::new()))
        .as_array_of_tables_mut()
        .context("inputs.lock: `deb` must be an array of tables ([[deb]])")?;
    tables.retain(|t| !t.contains_key("required-by"));
    for (table, (p, needs)) in tables.iter_mut().zip(&pinned_requests) {
        set_pin(table, p);
        table["snapshot"] = value(deb_snapshot(&lock, p, &now));
        if needs.is_empty() {
            table.remove("needs");
        } else {
            table["needs"] = value(multiline(needs));
        }
    }
    let request_ids: Vec<_> = requests
        .iter()
        .map(|r| (r.name.clone(), r.arch.clone()))
        .collect();
    for ((name, arch), (p, mut by)) in deps {
        if request_ids.contains(&(name.clone(), arch.clone())) {
            continue;
        }
        by.sort();
        by.dedup();
        let mut t = Table::new();
        t["name"] = value(name);
        t["arch"] = value(arch);
        t["required-by"] = value(by.into_iter().collect::<Array>());
        set_pin(&mut t, &p);
        t["snapshot"] = value(deb_snapshot(&lock, &p, &now));
        tables.push(t);
    }
    if let Some(tables) = doc
        .get_mut("source")
        .and_then(|s| s.as_array_of_tables_mut())
    {
        for ((table, s), src) in tables.iter_mut().zip(&sources).zip(&lock.sources) {
            table["version"] = value(&s.version);
            table["archive"] = value(s.archive.as_str());
            table["dir"] = value(&s.dir);
            let mut files = Array::new();
            for f in &s.files {
                let mut inline = toml_edit::InlineTable::new();
                inline.insert("name", f.name.as_str().into());
                inline.insert("size", (f.size as i64).into());
                inline.insert("sha256", f.sha256.as_str().into());
                files.push(inline);
            }
            multiline_array(&mut files);
            table["files"] = value(files);
            table["snapshot"] = value(source_snapshot(&lock, &src.id(), s, &now));
        }
    }
    if let Some(tables) = doc.get_mut("env").and_then(|s| s.as_array_of_tables_mut()) {
        for ((table, set), env) in tables.iter_mut().zip(&envs).zip(&lock.envs) {
            let mut debs = Array::new();
            for p in set {
                let kept = env.debs.iter().find(|d| {
                    d.name == p.name
                        && d.version == p.version
                        && d.archive == p.archive
                        && d.path == p.path
                        && d.sha256 == p.sha256
                });
                let mut inline = toml_edit::InlineTable::new();
                inline.insert("name", p.name.as_str().into());
                inline.insert("version", p.version.as_str().into());
                inline.insert("archive", p.archive.as_str().into());
                inline.insert("path", p.path.as_str().into());
                inline.insert("size", (p.size as i64).into());
                inline.insert("sha256", p.sha256.as_str().into());
                let when = kept.and_then(|d| d.snapshot.clone());
                inline.insert("snapshot", when.as_deref().unwrap_or(&now).into());
                debs.push(inline);
            }
            multiline_array(&mut debs);
            table["debs"] = value(debs);
        }
    }
    let new_text = doc.to_string();
    let new_lock = Lock::parse(&new_text).context("pin produced an invalid inputs.lock (a bug)")?;
    check_served(&mirrors, &new_lock)?;

    if flags.check {
        let drift = diff(&lock, &Lock::parse(&new_text)?);
        if drift.is_empty() {
            println!("inputs.lock is current: every pin resolves to the same file on the mirror");
            return Ok(());
        }
        println!("inputs.lock has drifted from the mirror:");
        for line in &drift {
            println!("  {line}");
        }
        bail!(
            "{} pin(s) drifted: run `cargo xtask pin` to move them",
            drift.len()
        );
    }
    if new_text == text {
        println!("inputs.lock is current");
    } else {
        crate::fsx::write_atomic(&lock_path, new_text.as_bytes())?;
        let old = Lock::parse(&text)?;
        let changes = diff(&old, &Lock::parse(&new_text)?);
        println!("inputs.lock updated ({} change(s))", changes.len());
        for line in changes {
            println!("  {line}");
        }
    }
    Ok(())
}

/// apt's indexes can name files a mirror does not serve (a partial mirror or proxy): ask for
/// each pinned file so a pin never names something `fetch` cannot get. A binary package's
/// corresponding source (a `[[source]]` with `of`) is only read by `dist --sources`: one
/// the mirror lacks is said, not refused (the index's sha256 pins it all the same, and
/// `fetch` falls back to the snapshot archive).
fn check_served(mirrors: &Mirrors, lock: &Lock) -> Result<()> {
    let agent = ureq::AgentBuilder::new()
        .timeout(std::time::Duration::from_secs(30))
        .build();
    let mut optional = std::collections::BTreeSet::new();
    for s in lock.sources.iter().filter(|s| s.of.is_some()) {
        optional.extend(s.blobs()?.into_iter().map(|b| b.sha256));
    }
    let mut missing = Vec::new();
    let mut lacking = Vec::new();
    for blob in lock.all_blobs()? {
        let url = mirrors.url(blob.archive.archive(), &blob.path);
        let problem = match agent.head(&url).call() {
            Ok(r)
                if r.header("content-length")
                    .and_then(|l| l.parse::<u64>().ok())
                    .is_none_or(|l| l == blob.size) =>
            {
                continue
            }
            Ok(_) => format!("  {blob}: {url} has a different size than apt's index says"),
            Err(e) => format!("  {blob}: {url}: {e}"),
        };
        if optional.contains(&blob.sha256) {
            lacking.push(problem);
        } else {
            missing.push(problem);
        }
    }
    if !lacking.is_empty() {
        ui::warn(&format!(
            "the mirror does not serve {} file(s) of binary packages' corresponding source (pinned from apt's index all the same; `dist --sources` needs them from a complete mirror or the snapshot archive):\n{}",
            lacking.len(),
            lacking.join("\n")
        ));
    }
    if !missing.is_empty() {
        bail!(
            "the mirror does not serve {} pinned file(s):\n{}\npin them from another suite (`suite = ...`) or use a complete mirror (STUBDOMS_DEBIAN_MIRROR)",
            missing.len(),
            missing.join("\n")
        );
    }
    Ok(())
}

fn set_pin(t: &mut Table, p: &Pinned) {
    t["version"] = value(&p.version);
    t["archive"] = value(p.archive.as_str());
    t["path"] = value(&p.path);
    t["size"] = value(p.size as i64);
    t["sha256"] = value(&p.sha256);
}

/// The old entry's `snapshot` if its pin did not move (the earliest time the file was known
/// on the mirror), else `now`.
fn deb_snapshot(old: &Lock, p: &Pinned, now: &str) -> String {
    let same = |d: &&lock::Deb| {
        d.name == p.name
            && d.arch == p.arch
            && d.pin().ok()
                == Some(lock::DebPin {
                    version: p.version.clone(),
                    archive: p.archive,
                    path: p.path.clone(),
                    size: p.size,
                    sha256: p.sha256.clone(),
                })
    };
    old.debs
        .iter()
        .find(same)
        .and_then(|d| d.snapshot.clone())
        .unwrap_or_else(|| now.to_string())
}

/// As [`deb_snapshot`], for the source entry `id` ([`lock::Source::id`]).
fn source_snapshot(old: &Lock, id: &str, p: &PinnedSource, now: &str) -> String {
    let new = lock::SourcePin {
        version: p.version.clone(),
        archive: p.archive,
        dir: p.dir.clone(),
        files: p.files.clone(),
    };
    old.sources
        .iter()
        .find(|s| s.id() == id && s.pinned().ok().as_ref() == Some(&new))
        .and_then(|s| s.snapshot.clone())
        .unwrap_or_else(|| now.to_string())
}

fn multiline(items: &[String]) -> Array {
    let mut a: Array = items.iter().map(String::as_str).collect();
    multiline_array(&mut a);
    a
}

fn multiline_array(a: &mut Array) {
    for v in a.iter_mut() {
        v.decor_mut().set_prefix("\n    ");
    }
    a.set_trailing("\n");
    a.set_trailing_comma(true);
}

/// What changed between two locks, one line per input.
fn diff(old: &Lock, new: &Lock) -> Vec<String> {
    let describe = |d: &lock::Deb| {
        d.pin()
            .map(|p| format!("{} ({})", p.version, &p.sha256[..12]))
            .unwrap_or_else(|_| "unpinned".into())
    };
    let mut out = Vec::new();
    for n in &new.debs {
        match old.debs.iter().find(|o| o.id() == n.id()) {
            None => out.push(format!("+ {} {}", n.id(), describe(n))),
            Some(o) if o.pin().ok() != n.pin().ok() => {
                out.push(format!("~ {} {} -> {}", n.id(), describe(o), describe(n)))
            }
            Some(_) => {}
        }
    }
    for o in &old.debs {
        if !new.debs.iter().any(|n| n.id() == o.id()) {
            out.push(format!("- {}", o.id()));
        }
    }
    for n in &new.sources {
        let o = old.sources.iter().find(|o| o.id() == n.id());
        if o.and_then(|o| o.pinned().ok()) != n.pinned().ok() {
            let v = |s: Option<&lock::Source>| {
                s.and_then(|s| s.version.clone())
                    .unwrap_or_else(|| "unpinned".into())
            };
            out.push(format!("~ src:{} {} -> {}", n.id(), v(o), v(Some(n))));
        }
    }
    for n in &new.envs {
        let old_debs = old
            .envs
            .iter()
            .find(|o| o.name == n.name)
            .map_or(&[][..], |o| &o.debs[..]);
        for d in &n.debs {
            match old_debs.iter().find(|o| o.name == d.name) {
                None => out.push(format!("+ env:{} {} {}", n.name, d.name, d.version)),
                Some(o) if (&o.version, &o.sha256) != (&d.version, &d.sha256) => out.push(format!(
                    "~ env:{} {} {} -> {}",
                    n.name, d.name, o.version, d.version
                )),
                Some(_) => {}
            }
        }
        for o in old_debs {
            if !n.debs.iter().any(|d| d.name == o.name) {
                out.push(format!("- env:{} {}", n.name, o.name));
            }
        }
    }
    out
}

/// The Debian release a suite belongs to (`bookworm-backports` -> `bookworm`); no suite
/// means the project's default release.
fn release_of(suite: Option<&str>) -> &str {
    suite.map_or(RELEASE, |s| s.split('-').next().unwrap_or(s))
}

/// One private apt state per Debian release that pins come from, made and updated on first
/// use: resolving a trixie set against bookworm's lists (or both at once) would mix them.
struct Apts<'m> {
    root: PathBuf,
    mirrors: &'m Mirrors,
    by_release: BTreeMap<String, Apt>,
}

impl Apts<'_> {
    fn for_suite(&mut self, suite: Option<&str>) -> Result<&Apt> {
        let release = release_of(suite).to_string();
        if !self.by_release.contains_key(&release) {
            let apt = Apt::new(self.root.join(&release), self.mirrors, &release)?;
            ui::step(&format!("apt update ({release}, private state)"));
            apt.update()?;
            self.by_release.insert(release.clone(), apt);
        }
        self.by_release
            .get(&release)
            .context("the apt state just made is missing")
    }
}

/// A private apt state: its own sources, lists, cache and an empty dpkg status, so
/// resolution is the same on any Debian machine and never touches the system's state.
struct Apt {
    dir: PathBuf,
    mirrors: Mirrors,
}

struct PinnedSource {
    version: String,
    archive: Archive,
    dir: String,
    files: Vec<lock::SourceFile>,
}

impl Apt {
    fn new(dir: PathBuf, mirrors: &Mirrors, release: &str) -> Result<Apt> {
        for sub in ["lists/partial", "cache/archives/partial", "sources"] {
            fs_err::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        fs_err::write(dir.join("status"), "")?;
        let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
        if !Path::new(keyring).exists() {
            bail!("{keyring} is missing: `pin` needs apt and Debian's archive keyring (apt-get install debian-archive-keyring)");
        }
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Types: deb deb-src\nURIs: {}\nSuites: {release} {release}-updates {release}-backports\nComponents: main\nArchitectures: amd64 arm64\nSigned-By: {keyring}\n",
            mirrors.debian
        );
        let _ = writeln!(
            s,
            "Types: deb deb-src\nURIs: {}\nSuites: {release}-security\nComponents: main\nArchitectures: amd64 arm64\nSigned-By: {keyring}",
            mirrors.security
        );
        fs_err::write(dir.join("sources/stubdoms.sources"), s)?;
        Ok(Apt {
            dir,
            mirrors: mirrors.clone(),
        })
    }

    fn cmd(&self, args: &[&str]) -> Result<String> {
        self.run("apt-get", args, "amd64")
    }

    /// apt-get for a set of packages of architecture `arch`: their dependencies are
    /// resolved for it too (as for a system of that architecture).
    fn cmd_for(&self, args: &[&str], arch: &str) -> Result<String> {
        self.run("apt-get", args, arch)
    }

    fn cache_cmd(&self, args: &[&str]) -> Result<String> {
        self.run("apt-cache", args, "amd64")
    }

    fn run(&self, program: &str, args: &[&str], native: &str) -> Result<String> {
        let d = self.dir.display();
        let opts = [
            "-o".to_string(),
            "Dir::Etc::SourceList=/dev/null".into(),
            "-o".into(),
            format!("Dir::Etc::SourceParts={d}/sources"),
            "-o".into(),
            format!("Dir::State::Lists={d}/lists"),
            "-o".into(),
            format!("Dir::Cache={d}/cache"),
            "-o".into(),
            format!("Dir::State::status={d}/status"),
            "-o".into(),
            "Dir::Etc::Preferences=/dev/null".into(),
            "-o".into(),
            "Dir::Etc::PreferencesParts=/dev/null".into(),
            "-o".into(),
            format!("APT::Architecture={native}"),
            "-o".into(),
            "APT::Architectures::=amd64".into(),
            "-o".into(),
            "APT::Architectures::=arm64".into(),
            "-o".into(),
            "Debug::NoLocking=1".into(),
            "-o".into(),
            "APT::Install-Recommends=false".into(),
            // `install --print-uris` names MD5 sums unless told otherwise.
            "-o".into(),
            "Acquire::ForceHash=SHA256".into(),
        ];
        let out = std::process::Command::new(program)
            .args(&opts)
            .args(args)
            .env("LC_ALL", "C")
            .output()
            .with_context(|| {
                format!("running {program}: `pin` needs apt (Debian or Ubuntu host)")
            })?;
        if !out.status.success() {
            bail!(
                "{program} {} failed:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn update(&self) -> Result<()> {
        self.cmd(&["-qq", "update"]).map(|_| ())
    }

    /// One package, or it and everything it needs.
    fn resolve(
        &self,
        name: &str,
        arch: &str,
        suite: Option<&str>,
        closure: bool,
    ) -> Result<Vec<Pinned>> {
        self.resolve_targets(&[format!("{name}:{arch}")], arch, suite, closure)
    }

    /// Packages (`NAME:ARCH` each), or they and everything they need, resolved together.
    fn resolve_targets(
        &self,
        targets: &[String],
        arch: &str,
        suite: Option<&str>,
        closure: bool,
    ) -> Result<Vec<Pinned>> {
        let target = targets.join(" ");
        let mut args = vec!["--print-uris", "-y"];
        if let Some(suite) = suite {
            args.extend(["-t", suite]);
        }
        args.push(if closure { "install" } else { "download" });
        args.extend(targets.iter().map(String::as_str));
        let out = self.cmd_for(&args, arch).with_context(|| {
            format!("resolving `{target}` (are the names right? `apt-cache policy NAME` tells)")
        })?;
        let mut set = Vec::new();
        for line in out.lines().filter(|l| l.starts_with('\'')) {
            let uri = parse_uri_line(line)
                .with_context(|| format!("unexpected apt output line: {line}"))?;
            let (archive, path) = self
                .mirrors
                .archive_of(&uri.url)
                .with_context(|| format!("{} is on no configured mirror", uri.url))?;
            let stem = uri.file.strip_suffix(".deb").unwrap_or(&uri.file);
            let parts: Vec<&str> = stem.split('_').collect();
            let [pname, version, parch] = parts[..] else {
                bail!("unexpected package file name {}", uri.file);
            };
            set.push(Pinned {
                name: pname.to_string(),
                arch: if parch == "all" {
                    arch.to_string()
                } else {
                    parch.to_string()
                },
                version: percent_decode(version),
                archive,
                path: percent_decode(path),
                size: uri.size,
                sha256: uri.sha256,
            });
        }
        if set.is_empty() {
            bail!("apt resolved nothing for `{target}`");
        }
        Ok(set)
    }

    /// The first alternative of each `Depends:` of a package (for metapackages).
    fn direct_depends(&self, name: &str, arch: &str) -> Result<Vec<String>> {
        let out = self.cache_cmd(&[
            "depends",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            &format!("{name}:{arch}"),
        ])?;
        let mut deps = Vec::new();
        let mut alternative = false;
        for line in out.lines().skip(1) {
            let t = line.trim_start();
            let is_alt = t.starts_with('|');
            if let Some(dep) = t.trim_start_matches('|').strip_prefix("Depends: ") {
                if !alternative {
                    let dep = dep.trim().trim_start_matches('<').trim_end_matches('>');
                    deps.push(dep.split(':').next().unwrap_or(dep).to_string());
                }
            }
            alternative = is_alt;
        }
        if deps.is_empty() {
            bail!("`{name}:{arch}` has `follow = true` but depends on nothing");
        }
        Ok(deps)
    }

    /// (name, version) of the source package the binary package NAME:ARCH at VERSION was
    /// built from, as apt's index says.
    fn built_from(&self, name: &str, arch: &str, version: &str) -> Result<(String, String)> {
        let out = self.cache_cmd(&["show", &format!("{name}:{arch}={version}")])?;
        // The first record (the same package may be listed by more than one suite).
        let record = out.split("\n\n").next().unwrap_or("");
        let source = record
            .lines()
            .find_map(|l| l.strip_prefix("Source:"))
            .map(str::trim);
        Ok(lock::source_of(source, name, version))
    }

    /// The source package NAME: the suite's candidate, or exactly `version`.
    fn source(
        &self,
        name: &str,
        suite: Option<&str>,
        version: Option<&str>,
    ) -> Result<PinnedSource> {
        let mut args = vec!["--print-uris", "--only-source"];
        if let Some(suite) = suite {
            args.extend(["-t", suite]);
        }
        let wanted = match version {
            Some(v) => format!("{name}={v}"),
            None => name.to_string(),
        };
        args.extend(["source", &wanted]);
        let out = self.cmd(&args)?;
        let mut files = Vec::new();
        let mut place: Option<(Archive, String)> = None;
        let mut version = None;
        for line in out.lines().filter(|l| l.starts_with('\'')) {
            let uri = parse_uri_line(line)
                .with_context(|| format!("unexpected apt output line: {line}"))?;
            let (archive, path) = self
                .mirrors
                .archive_of(&uri.url)
                .with_context(|| format!("{} is on no configured mirror", uri.url))?;
            let path = percent_decode(path);
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
            if let Some(stem) = uri.file.strip_suffix(".dsc") {
                version = stem.split_once('_').map(|(_, v)| percent_decode(v));
            }
            match &place {
                Some(p) if p != &(archive, dir.clone()) => {
                    bail!("source `{name}` is split over two pool folders")
                }
                _ => place = Some((archive, dir)),
            }
            files.push(lock::SourceFile {
                name: percent_decode(&uri.file),
                size: uri.size,
                sha256: uri.sha256,
            });
        }
        let (archive, dir) = place.with_context(|| format!("apt found no source `{name}`"))?;
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(PinnedSource {
            version: version.with_context(|| format!("source `{name}` has no .dsc"))?,
            archive,
            dir,
            files,
        })
    }
}

struct UriLine {
    url: String,
    file: String,
    size: u64,
    sha256: String,
}

/// `'URL' FILE SIZE SHA256:HEX` as printed by `apt-get --print-uris`.
fn parse_uri_line(line: &str) -> Option<UriLine> {
    let rest = line.strip_prefix('\'')?;
    let (url, rest) = rest.split_once('\'')?;
    let mut words = rest.split_whitespace();
    let file = words.next()?.to_string();
    let size = words.next()?.parse().ok()?;
    let sha256 = words.next()?.strip_prefix("SHA256:")?.to_string();
    Some(UriLine {
        url: url.to_string(),
        file,
        size,
        sha256,
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_print_uris_lines() {
        let line = "'http://m.example/debian-security/pool/updates/main/x/xen/xen-hypervisor-4.17-amd64_4.17.7%2b13-g2445b30a44-0%2bdeb12u1_amd64.deb' xen-hypervisor-4.17-amd64_4.17.7+13-g2445b30a44-0+deb12u1_amd64.deb 2273932 SHA256:fc074298a677325306662eea382cc4503339b8e1f4db54b24702b0b07cf6741d";
        let u = parse_uri_line(line).unwrap();
        assert_eq!(u.size, 2273932);
        assert_eq!(
            u.file,
            "xen-hypervisor-4.17-amd64_4.17.7+13-g2445b30a44-0+deb12u1_amd64.deb"
        );
        assert!(u.sha256.starts_with("fc0742"));
        assert_eq!(
            percent_decode("1%3a1.35.0-4%2bdeb12u1"),
            "1:1.35.0-4+deb12u1"
        );
        assert_eq!(percent_decode("50%"), "50%");
        assert!(parse_uri_line("'x' f 12 MD5Sum:abc").is_none());
    }

    /// A pin that did not move keeps its snapshot time; a moved or new one gets this run's.
    #[test]
    fn snapshots_stay_while_pins_do_not_move() {
        let old = Lock::parse(
            r#"
[[deb]]
name = "libc6"
arch = "amd64"
version = "2.36"
archive = "debian"
path = "pool/main/g/glibc/libc6_2.36_amd64.deb"
size = 20
sha256 = "0000000000000000000000000000000000000000000000000000000000000002"
snapshot = "20250101T000000Z"

[[source]]
name = "grub2"
version = "2.06-13"
archive = "debian"
dir = "pool/main/g/grub2"
files = [{ name = "grub2_2.06.orig.tar.xz", size = 5, sha256 = "0000000000000000000000000000000000000000000000000000000000000003" }]
snapshot = "20250101T000000Z"
"#,
        )
        .unwrap();
        let now = "20261201T093000Z";
        let libc = Pinned {
            name: "libc6".into(),
            arch: "amd64".into(),
            version: "2.36".into(),
            archive: Archive::Debian,
            path: "pool/main/g/glibc/libc6_2.36_amd64.deb".into(),
            size: 20,
            sha256: "0000000000000000000000000000000000000000000000000000000000000002".into(),
        };
        assert_eq!(deb_snapshot(&old, &libc, now), "20250101T000000Z");
        let moved = Pinned {
            version: "2.36-9".into(),
            ..libc.clone()
        };
        assert_eq!(deb_snapshot(&old, &moved, now), now);
        let other = Pinned {
            name: "zlib1g".into(),
            ..libc
        };
        assert_eq!(deb_snapshot(&old, &other, now), now);

        let grub = PinnedSource {
            version: "2.06-13".into(),
            archive: Archive::Debian,
            dir: "pool/main/g/grub2".into(),
            files: old.sources[0].files.clone().unwrap(),
        };
        assert_eq!(
            source_snapshot(&old, "grub2", &grub, now),
            "20250101T000000Z"
        );
        let moved = PinnedSource {
            version: "2.12-1".into(),
            ..grub
        };
        assert_eq!(source_snapshot(&old, "grub2", &moved, now), now);
        let same = PinnedSource {
            version: "2.06-13".into(),
            ..moved
        };
        assert_eq!(source_snapshot(&old, "grub2 (of grub-pc)", &same, now), now);
    }
}
