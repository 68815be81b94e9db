//! What Debian policy asks a binary package to carry besides its files, written from the
//! set: `/usr/share/doc/<package>/copyright` (machine-readable, DEP-5), `changelog.gz` (one
//! entry, dated `SOURCE_DATE_EPOCH`), and the lintian overrides the set explains.

use std::collections::BTreeMap;

/// A DEP-5 `copyright` file: one stanza for the project, one per installed image with the
/// licence its contents combine to, and the licence paragraphs pointing at Debian's
/// `/usr/share/common-licenses`.
pub fn copyright(homepage: &str, images: &[(String, String)]) -> String {
    let mut out = format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: stubdoms\nSource: {homepage}\n\
         Comment: The images are built from pinned Debian source and binary packages; the\n \
         SBOM (<package>-<version>-<arch>.spdx.json) and manifest.json list each input with its licence.\n\n\
         Files: *\nCopyright: 2026 The stubdoms authors\nLicense: GPL-2.0-only\n\n"
    );
    let mut licences: BTreeMap<String, ()> = BTreeMap::new();
    licences.insert("GPL-2.0-only".into(), ());
    for (path, licence) in images {
        out += &format!(
            "Files: {path}\nCopyright: 2026 The stubdoms authors, and the authors of the packages it is built from\nLicense: {licence}\n\n"
        );
        for id in super::spdx_ids(licence) {
            licences.insert(id, ());
        }
    }
    for id in licences.keys() {
        out += &format!("License: {id}\n{}\n", licence_pointer(id));
        out += "\n";
    }
    out.trim_end().to_string() + "\n"
}

/// The paragraph of a licence stanza: where Debian keeps its text.
fn licence_pointer(id: &str) -> String {
    let common = match id {
        "GPL-2.0-only" | "GPL-2.0-or-later" | "GPL-2.0+" | "GPL-2.0" => Some("GPL-2"),
        "GPL-3.0-only" | "GPL-3.0-or-later" | "GPL-3.0+" | "GPL-3.0" => Some("GPL-3"),
        "LGPL-2.0-only" | "LGPL-2.0-or-later" => Some("LGPL-2"),
        "LGPL-2.1-only" | "LGPL-2.1-or-later" | "LGPL-2.1+" | "LGPL-2.1" => Some("LGPL-2.1"),
        "LGPL-3.0-only" | "LGPL-3.0-or-later" | "LGPL-3.0+" | "LGPL-3.0" => Some("LGPL-3"),
        "Apache-2.0" => Some("Apache-2.0"),
        "MPL-2.0" => Some("MPL-2.0"),
        _ => None,
    };
    match common {
        Some(f) => format!(
            " On Debian systems, the complete text of this licence is in\n /usr/share/common-licenses/{f}."
        ),
        None => format!(
            " The text of {id} is at https://spdx.org/licenses/{id}.html; the copyright files\n of the packages the images are built from hold the notices."
        ),
    }
}

/// `changelog.gz`'s text: one entry for this version, dated `epoch`.
pub fn changelog(package: &str, version: &str, maintainer: &str, epoch: u64) -> String {
    format!(
        "{package} ({version}) unstable; urgency=medium\n\n  * Built with `cargo xtask dist` from the stubdoms sources of this version.\n\n -- {maintainer}  {}\n",
        rfc2822(epoch)
    )
}

/// A Unix time as `Thu, 01 Jan 1970 00:00:00 +0000`.
pub fn rfc2822(epoch: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = epoch / 86_400;
    let secs = epoch % 86_400;
    let (y, m, d) = civil(days);
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A Unix time as ISO 8601 in UTC (`1970-01-01T00:00:00Z`), as SPDX wants it.
pub fn iso8601(epoch: u64) -> String {
    let (y, m, d) = civil(epoch / 86_400);
    let secs = epoch % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// (year, month, day) of a day count since 1970: the driver's one calendar conversion.
fn civil(days: u64) -> (u64, u64, u64) {
    let (y, m, d) = crate::mirror::civil_from_days(days as i64);
    (y as u64, u64::from(m), u64::from(d))
}

/// `/usr/share/lintian/overrides/<package>`: each override with its reason as the comment
/// above it, as lintian shows them.
pub fn lintian_overrides(package: &str, overrides: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (tag, why) in overrides {
        for line in why.lines() {
            out += &format!("# {}\n", line.trim());
        }
        out += &format!("{package}: {tag}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let cases = [
            (0, "Thu, 01 Jan 1970 00:00:00 +0000", "1970-01-01T00:00:00Z"),
            (
                1_735_689_600,
                "Wed, 01 Jan 2025 00:00:00 +0000",
                "2025-01-01T00:00:00Z",
            ),
            (
                951_827_696,
                "Tue, 29 Feb 2000 12:34:56 +0000",
                "2000-02-29T12:34:56Z",
            ),
        ];
        for (epoch, rfc, iso) in cases {
            assert_eq!(rfc2822(epoch), rfc, "{epoch}");
            assert_eq!(iso8601(epoch), iso, "{epoch}");
        }
    }

    #[test]
    fn copyright_names_each_licence_once_with_its_text() {
        let text = copyright(
            "https://example.org/stubdoms",
            &[
                ("usr/lib/xen/boot/a".into(), "GPL-3.0-or-later".into()),
                ("usr/lib/xen/boot/b".into(), "GPL-2.0-only AND MIT".into()),
            ],
        );
        assert!(text.starts_with(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        ));
        assert_eq!(
            text.matches("\nLicense: GPL-2.0-only\n On Debian").count(),
            1
        );
        assert!(text.contains("/usr/share/common-licenses/GPL-3."));
        assert!(text.contains("License: MIT\n The text of MIT is at"));
        assert!(text.ends_with(".\n") && !text.ends_with("\n\n"));
    }
}
