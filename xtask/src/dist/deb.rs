//! Writes Debian binary packages (`.deb`) from a [`Tree`], deterministically: the same tree,
//! control data and `mtime` give the same bytes. A .deb is an `ar` archive of
//! `debian-binary` ("2.0\n"), `control.tar.gz` (`control`, `md5sums`) and `data.tar.gz`
//! (the tree, owner 0:0, every timestamp `mtime`); the ar headers carry `mtime`, owner 0:0
//! and mode 0644, as `dpkg-deb --build` writes them under `SOURCE_DATE_EPOCH`.

use anyhow::{bail, Context, Result};
use stubdoms_archive::{EntryKind, Format, Tree};

use sha2::Digest;

/// The fields of a binary package's `control` file that `dist` sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Control {
    pub package: String,
    pub version: String,
    /// Debian's name of the architecture (`amd64`, `arm64`, `all`).
    pub architecture: String,
    pub maintainer: String,
    pub section: String,
    pub priority: String,
    pub homepage: Option<String>,
    /// Relationship fields in the order written: (`Recommends`, `xen-utils-4.17`).
    pub relations: Vec<(String, String)>,
    /// The synopsis: the first line of `Description`.
    pub summary: String,
    /// The extended description, paragraphs separated by blank lines.
    pub description: String,
}

impl Control {
    /// The `control` file, with `Installed-Size` (KiB) as given.
    pub fn render(&self, installed_kib: u64) -> Result<String> {
        for (what, v) in [
            ("package", &self.package),
            ("version", &self.version),
            ("architecture", &self.architecture),
        ] {
            if v.is_empty() || v.contains(char::is_whitespace) {
                bail!("the {what} `{v}` of a .deb must be one word");
            }
        }
        if !self
            .package
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
        {
            bail!(
                "`{}` is not a Debian package name (lowercase letters, digits, + - .)",
                self.package
            );
        }
        let mut out = format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: {}\nInstalled-Size: {installed_kib}\n",
            self.package, self.version, self.architecture, self.maintainer
        );
        for (field, value) in &self.relations {
            out += &format!("{field}: {value}\n");
        }
        out += &format!("Section: {}\nPriority: {}\n", self.section, self.priority);
        if let Some(h) = &self.homepage {
            out += &format!("Homepage: {h}\n");
        }
        out += &format!("Description: {}\n", one_line(&self.summary));
        // Blank lines between paragraphs are ` .`.
        for line in super::refill(&self.description) {
            out += &if line.is_empty() {
                " .\n".to_string()
            } else {
                format!(" {line}\n")
            };
        }
        Ok(out)
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `Installed-Size` as dpkg-gencontrol counts it: each file's size in KiB rounded up, and
/// one KiB per other entry.
pub fn installed_kib(data: &Tree) -> Result<u64> {
    let mut kib = 0;
    for (_, entry) in data.iter() {
        kib += match &entry.kind {
            EntryKind::File(f) => (f.read()?.len() as u64).div_ceil(1024),
            _ => 1,
        };
    }
    Ok(kib)
}

/// The `md5sums` control file: every regular file of `data`, in path order.
fn md5sums(data: &Tree) -> Result<String> {
    let mut out = String::new();
    for (path, entry) in data.iter() {
        if let EntryKind::File(f) = &entry.kind {
            out += &format!("{:x}  {path}\n", md5::Md5::digest(f.read()?));
        }
    }
    Ok(out)
}

/// The whole `.deb` of `data` with `control`.
pub fn write(control: &Control, data: &Tree, mtime: u64) -> Result<Vec<u8>> {
    let mut ctl = Tree::new();
    ctl.add_file(
        "control",
        control.render(installed_kib(data)?)?.into_bytes(),
        0o644,
    )?;
    ctl.add_file("md5sums", md5sums(data)?.into_bytes(), 0o644)?;
    let control_tar = ctl
        .to_bytes(Format::TarGz, mtime)
        .context("writing control.tar.gz")?;
    let data_tar = data
        .to_bytes(Format::TarGz, mtime)
        .context("writing data.tar.gz")?;
    let mut out = b"!<arch>\n".to_vec();
    for (name, bytes) in [
        ("debian-binary", &b"2.0\n"[..]),
        ("control.tar.gz", &control_tar),
        ("data.tar.gz", &data_tar),
    ] {
        ar_member(&mut out, name, bytes, mtime)?;
    }
    Ok(out)
}

/// Appends one member in the common `ar` format: a 60-byte header of space-padded decimal
/// fields (octal for the mode), the data, and a newline to an even offset.
fn ar_member(out: &mut Vec<u8>, name: &str, data: &[u8], mtime: u64) -> Result<()> {
    if name.len() > 16 {
        bail!("ar member name `{name}` is longer than 16 bytes");
    }
    let header = format!(
        "{name:<16}{mtime:<12}{:<6}{:<6}{:<8}{:<10}`\n",
        0,
        0,
        "100644",
        data.len()
    );
    if header.len() != 60 {
        bail!(
            "ar header of `{name}` does not fit (mtime {mtime}, size {})",
            data.len()
        );
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(b'\n');
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control() -> Control {
        Control {
            package: "xen-pvgrub".into(),
            version: "0.1.0".into(),
            architecture: "amd64".into(),
            maintainer: "Someone <someone@example.org>".into(),
            section: "admin".into(),
            priority: "optional".into(),
            homepage: None,
            relations: vec![("Recommends".into(), "xen-utils-4.17".into())],
            summary: "PV-GRUB  images".into(),
            description: "First paragraph,\ntwo lines.\n\nSecond.\n".into(),
        }
    }

    fn tree() -> Tree {
        let mut t = Tree::new();
        t.add_file("usr/lib/xen/boot/a.gz", vec![7u8; 1500], 0o644)
            .unwrap();
        t.add_file("usr/share/doc/xen-pvgrub/copyright", "c\n", 0o644)
            .unwrap();
        t
    }

    #[test]
    fn control_fields_in_debian_form() {
        let text = control().render(3).unwrap();
        assert_eq!(
            text,
            "Package: xen-pvgrub\nVersion: 0.1.0\nArchitecture: amd64\n\
             Maintainer: Someone <someone@example.org>\nInstalled-Size: 3\n\
             Recommends: xen-utils-4.17\nSection: admin\nPriority: optional\n\
             Description: PV-GRUB images\n First paragraph, two lines.\n .\n Second.\n"
        );
        // What dpkg reads back.
        let parsed = stubdoms_archive::deb::Control::parse(&text).unwrap();
        assert_eq!(parsed.package, "xen-pvgrub");
        assert_eq!(parsed.get("Recommends"), Some("xen-utils-4.17"));
        let bad = Control {
            package: "Xen_PVGRUB".into(),
            ..control()
        };
        assert!(bad.render(1).is_err());
    }

    /// usr, usr/lib, usr/lib/xen, usr/lib/xen/boot, usr/share, .../doc, .../xen-pvgrub: 7
    /// folders, then 2 KiB and 1 KiB of files.
    #[test]
    fn installed_size_counts_like_dpkg() {
        assert_eq!(installed_kib(&tree()).unwrap(), 7 + 2 + 1);
    }

    /// The same input gives the same bytes, another mtime other bytes, and the package reads
    /// back with the project's own .deb reader.
    #[test]
    fn packages_are_byte_for_byte_reproducible_and_readable() {
        let a = write(&control(), &tree(), 1_700_000_000).unwrap();
        let b = write(&control(), &tree(), 1_700_000_000).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, write(&control(), &tree(), 1_700_000_001).unwrap());
        assert!(a.starts_with(
            b"!<arch>\ndebian-binary   1700000000  0     0     100644  4         `\n2.0\n"
        ));
        let dir = std::env::temp_dir().join(format!("xtask-deb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        fs_err::create_dir_all(&dir).unwrap();
        let deb = dir.join("p.deb");
        fs_err::write(&deb, &a).unwrap();
        let c = stubdoms_archive::deb::read_control(&deb).unwrap();
        assert_eq!(c.version, "0.1.0");
        assert_eq!(c.get("Installed-Size"), Some("10"));
        let out = dir.join("root");
        stubdoms_archive::deb::extract_data(&deb, &out).unwrap();
        assert_eq!(
            fs_err::read(out.join("usr/lib/xen/boot/a.gz")).unwrap(),
            vec![7u8; 1500]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
