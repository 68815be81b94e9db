//! Which files of a set of unpacked Debian packages a program needs at run time: the
//! program, the symlinks on the way, its interpreter and its `DT_NEEDED` libraries,
//! recursively. Used for the boot machine's dom0 and for the ioemu stub domain's rootfs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use stubdoms_archive::Tree;

/// The top-level folders that merged-/usr systems keep under /usr.
pub const MERGED: &[&str] = &["bin", "sbin", "lib", "lib64"];

/// Where the dynamic linker looks, in order: the multiarch folders of the machines' and
/// builds' architectures (one set of packages holds one architecture's).
const LIB_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/lib",
    "/usr/lib",
];

/// The program interpreter and the `DT_NEEDED` sonames of an ELF file, or `None` when the
/// file is not ELF (a script).
pub fn needs(bytes: &[u8]) -> Result<Option<(Option<String>, Vec<String>)>> {
    if !bytes.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let elf = goblin::elf::Elf::parse(bytes).context("parsing ELF")?;
    Ok(Some((
        elf.interpreter.map(str::to_string),
        elf.libraries.iter().map(|s| s.to_string()).collect(),
    )))
}

/// The unpacked packages seen as one file system, without copying them together.
pub struct Union {
    /// Package name -> unpacked tree.
    roots: BTreeMap<String, PathBuf>,
}

impl Union {
    pub fn new(roots: BTreeMap<String, PathBuf>) -> Union {
        Union { roots }
    }

    /// Package name -> unpacked tree.
    pub fn roots(&self) -> &BTreeMap<String, PathBuf> {
        &self.roots
    }

    pub fn file(&self, package: &str, path: &str) -> Result<PathBuf> {
        let root = self
            .roots
            .get(package)
            .with_context(|| format!("package {package} is not in this set"))?;
        let p = root.join(path.trim_start_matches('/'));
        if !p.is_file() {
            bail!("{package} has no {path}: is the pin right?");
        }
        Ok(p)
    }

    /// The package that holds `path` (as a file or a symlink), and that host path.
    pub fn find(&self, path: &str) -> Option<(&str, PathBuf)> {
        let rel = path.trim_start_matches('/');
        self.roots.iter().find_map(|(name, root)| {
            let p = root.join(rel);
            fs_err::symlink_metadata(&p)
                .ok()
                .filter(|m| !m.is_dir())
                .map(|_| (name.as_str(), p))
        })
    }

    /// Where `path` is in the union: itself, or on a merged-/usr system (Debian 13 ships
    /// /bin, /sbin, /lib and /lib64 as links into /usr) the same path under /usr.
    pub fn locate(&self, path: &str) -> Option<String> {
        if self.find(path).is_some() {
            return Some(path.to_string());
        }
        let merged = MERGED.iter().any(|d| path.starts_with(&format!("/{d}/")));
        let usr = format!("/usr{path}");
        (merged && self.find(&usr).is_some()).then_some(usr)
    }

    /// `path`, the symlinks it goes through and the libraries it needs, recursively.
    pub fn closure(&self, path: &str, out: &mut BTreeSet<String>) -> Result<()> {
        let mut seen = BTreeSet::new();
        let mut queue = vec![path.to_string()];
        while let Some(p) = queue.pop() {
            let real = self.follow(&p, out)?;
            if !seen.insert(real.clone()) {
                continue;
            }
            let (_, host) = self
                .find(&real)
                .with_context(|| format!("{real} vanished"))?;
            let bytes = fs_err::read(&host)?;
            let Some((interp, needed)) = needs(&bytes).with_context(|| real.clone())? else {
                continue;
            };
            queue.extend(interp);
            for so in needed {
                let found = LIB_DIRS
                    .iter()
                    .find_map(|d| self.locate(&format!("{d}/{so}")))
                    .with_context(|| format!("{so} (needed by {real}) is in none of the packages: add its package to inputs.lock and to the list of packages that uses it"))?;
                queue.push(found);
            }
        }
        Ok(())
    }

    /// Adds `path` and every symlink hop to `out`; returns the real file's path.
    pub fn follow(&self, path: &str, out: &mut BTreeSet<String>) -> Result<String> {
        let mut p = path.to_string();
        for _ in 0..16 {
            p = self
                .locate(&p)
                .with_context(|| format!("{p} is in none of the packages"))?;
            let (_, host) = self
                .find(&p)
                .with_context(|| format!("{p} is in none of the packages"))?;
            out.insert(p.clone());
            match fs_err::read_link(&host) {
                Ok(target) => {
                    let t = target.to_string_lossy();
                    p = if t.starts_with('/') {
                        t.into_owned()
                    } else {
                        normalize(&format!("{}/{t}", parent(&p)))
                    };
                }
                Err(_) => return Ok(p),
            }
        }
        bail!("symlink loop at {path}")
    }

    /// Adds one union path (file or symlink) to a tree.
    pub fn add_to(&self, tree: &mut Tree, path: &str) -> Result<()> {
        let (_, host) = self
            .find(path)
            .with_context(|| format!("{path} is in none of the packages"))?;
        let rel = path.trim_start_matches('/');
        match fs_err::read_link(&host) {
            Ok(target) => tree.add_symlink(rel, &target.to_string_lossy())?,
            Err(_) => {
                use std::os::unix::fs::PermissionsExt;
                let mode = fs_err::metadata(&host)?.permissions().mode();
                tree.add_host_file(rel, &host, stubdoms_archive::normalize_file_mode(mode))?
            }
        }
        Ok(())
    }
}

fn parent(p: &str) -> &str {
    p.rsplit_once('/').map_or("", |(d, _)| d)
}

/// Lexical `.`/`..` folding of an absolute path (never touches the host's file system).
fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn normalizes_lexically() {
        assert_eq!(
            super::normalize("/lib/x86_64-linux-gnu/../../usr/lib/a.so"),
            "/usr/lib/a.so"
        );
        assert_eq!(super::normalize("/a/./b//c"), "/a/b/c");
    }
}
