//! The SPDX 2.3 SBOM of a package (`<package>-<version>-<arch>.spdx.json`): the package and its
//! files (SHA1 and SHA256, as the .deb installs them), one SPDX package per image, and one
//! per pinned input that went into an image (each Debian binary package and each file of a
//! Debian source package, with version, sha256, download location and licence). Relations:
//! the document DESCRIBES the package, the package CONTAINS its files, each image file is
//! GENERATED_FROM its image, each image GENERATED_FROM its inputs.
//!
//! An image is GENERATED_FROM the inputs it is built from (the set file's `from`) and
//! CONTAINS the packages whose files it holds as they are (a rootfs's libraries and ROMs,
//! found from its bytes: [`super::held`]).
//!
//! Licences come from the machine-readable `copyright` files ([`copyright_licences`]): a
//! binary package's, a source package's `debian/copyright` from its debian tarball; an
//! input whose file is not machine-readable carries the licence its pin records. An image's
//! concluded licence is the AND of its recipe's licence and what its inputs and the
//! packages it holds say, not one recipe-wide value.

use std::collections::{BTreeMap, BTreeSet};

use std::io::Read;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use stubdoms_archive::{EntryKind, Tree};

use sha2::Digest;

use super::debian;
use crate::cache::Cache;
use crate::lock::Blob;

/// One image of the package, with the inputs it was built from.
pub struct Image {
    /// Installed path, relative to `/`.
    pub path: String,
    pub sha256: String,
    pub recipe_licence: String,
    /// The pinned inputs it is generated from.
    pub inputs: Vec<Blob>,
    /// The pinned packages whose files it holds as they are (a rootfs's libraries).
    pub held: Vec<Blob>,
    /// Copyright files of `held` packages found elsewhere than in their own tree, by sha256.
    pub copyrights: BTreeMap<String, std::path::PathBuf>,
    /// The pinned files of the source package each binary package of `inputs` and `held`
    /// was built from, by the binary's sha256 (where the lock pins it: `[[source]]` `of`).
    pub sources: BTreeMap<String, Vec<Blob>>,
}

/// [`Image::sources`] for `binaries`: each one's source package, where `lock` pins it.
pub fn corresponding_sources<'a>(
    cache: &Cache,
    lock: &crate::lock::Lock,
    binaries: impl IntoIterator<Item = &'a Blob>,
) -> Result<BTreeMap<String, Vec<Blob>>> {
    let mut out = BTreeMap::new();
    for blob in binaries {
        if let Some((name, version)) = built_from(cache, blob)? {
            if let Some(source) = lock.source_at(&name, &version) {
                out.insert(blob.sha256.clone(), source.blobs()?);
            }
        }
    }
    Ok(out)
}

/// The SBOM document of package `name` `version` whose files are `data`.
pub fn document(
    cache: &Cache,
    name: &str,
    version: &str,
    supplier: &str,
    data: &Tree,
    images: &[Image],
    epoch: u64,
) -> Result<Value> {
    let pkg_id = format!("SPDXRef-Package-{}", spdx_id_part(name));
    let mut extracted: BTreeMap<String, String> = BTreeMap::new();
    let mut packages = Vec::new();
    let mut files = Vec::new();
    let mut relations = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": pkg_id,
    })];
    // Inputs once each, by sha256, with their licences.
    let mut inputs: BTreeMap<String, (Blob, String)> = BTreeMap::new();
    let all: Vec<&Blob> = images
        .iter()
        .flat_map(|i| i.inputs.iter().chain(&i.held))
        .collect();
    let copyrights: BTreeMap<_, _> = images.iter().flat_map(|i| &i.copyrights).collect();
    for blob in &all {
        if !inputs.contains_key(&blob.sha256) {
            let found = copyrights.get(&blob.sha256).copied();
            let licence = input_licence(cache, blob, found, &all, &mut extracted)?;
            inputs.insert(blob.sha256.clone(), ((*blob).clone(), licence));
        }
    }
    // A binary package's source files, with the binary's licence (its copyright file is
    // the source's `debian/copyright`), unless they are inputs themselves.
    let mut built_from_sources = BTreeSet::new();
    let mut sources: BTreeMap<String, (Blob, String)> = BTreeMap::new();
    for image in images {
        for (binary, files) in &image.sources {
            let Some((bin, licence)) = inputs.get(binary) else {
                continue;
            };
            for f in files {
                built_from_sources.insert((input_id(bin), input_id(f)));
                if !inputs.contains_key(&f.sha256) {
                    sources
                        .entry(f.sha256.clone())
                        .or_insert_with(|| (f.clone(), licence.clone()));
                }
            }
        }
    }
    let mut file_sha1s = Vec::new();
    let mut all_licences = BTreeSet::new();
    for (n, (path, entry)) in data.iter().enumerate() {
        // An image stored as a link to an identical one is listed with the bytes it names.
        let f = match &entry.kind {
            EntryKind::File(f) => f,
            EntryKind::Symlink { target } => {
                let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                match data.get(&format!("{dir}/{target}")).map(|e| &e.kind) {
                    Some(EntryKind::File(f)) => f,
                    _ => continue,
                }
            }
            _ => continue,
        };
        let bytes = f.read()?;
        let sha1 = format!("{:x}", sha1::Sha1::digest(&bytes));
        let sha256 = sha256_hex(&bytes);
        file_sha1s.push(sha1.clone());
        let file_id = format!("SPDXRef-File-{n}");
        let image = images.iter().find(|i| i.path == path);
        let concluded = match image {
            Some(i) => {
                let mut ids = BTreeSet::new();
                ids.insert(paren(&i.recipe_licence));
                for b in i.inputs.iter().chain(&i.held) {
                    if let Some((_, l)) = inputs.get(&b.sha256) {
                        if l != "NOASSERTION" {
                            ids.insert(paren(l));
                        }
                    }
                }
                ids.into_iter().collect::<Vec<_>>().join(" AND ")
            }
            None => "NOASSERTION".to_string(),
        };
        if concluded != "NOASSERTION" {
            all_licences.insert(paren(&concluded));
        }
        files.push(json!({
            "SPDXID": file_id,
            "fileName": format!("./{path}"),
            "checksums": [
                {"algorithm": "SHA1", "checksumValue": sha1},
                {"algorithm": "SHA256", "checksumValue": sha256},
            ],
            "licenseConcluded": concluded,
            "licenseInfoInFiles": ["NOASSERTION"],
            "copyrightText": "NOASSERTION",
        }));
        relations.push(json!({
            "spdxElementId": pkg_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": file_id,
        }));
        if let Some(i) = image {
            let image_id = format!("SPDXRef-Image-{}", spdx_id_part(&i.path));
            packages.push(json!({
                "SPDXID": image_id,
                "name": i.path.rsplit('/').next().unwrap_or(&i.path),
                "versionInfo": version,
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": false,
                "checksums": [{"algorithm": "SHA256", "checksumValue": i.sha256}],
                "licenseConcluded": concluded,
                "licenseDeclared": i.recipe_licence,
                "copyrightText": "NOASSERTION",
                "primaryPackagePurpose": "FIRMWARE",
            }));
            relations.push(json!({
                "spdxElementId": file_id,
                "relationshipType": "GENERATED_FROM",
                "relatedSpdxElement": image_id,
            }));
            for b in &i.inputs {
                relations.push(json!({
                    "spdxElementId": image_id,
                    "relationshipType": "GENERATED_FROM",
                    "relatedSpdxElement": input_id(b),
                }));
            }
            for b in &i.held {
                relations.push(json!({
                    "spdxElementId": image_id,
                    "relationshipType": "CONTAINS",
                    "relatedSpdxElement": input_id(b),
                }));
            }
        }
    }
    for (blob, licence) in inputs.values() {
        packages.push(input_package(
            blob,
            licence,
            built_from(cache, blob)?.as_ref(),
        ));
    }
    for (blob, licence) in sources.values() {
        packages.push(input_package(blob, licence, None));
    }
    for (binary, source) in built_from_sources {
        relations.push(json!({
            "spdxElementId": binary,
            "relationshipType": "GENERATED_FROM",
            "relatedSpdxElement": source,
        }));
    }
    // The package verification code: SHA1 over the sorted SHA1s of its files.
    file_sha1s.sort();
    let code = format!("{:x}", sha1::Sha1::digest(file_sha1s.concat().as_bytes()));
    let concluded = if all_licences.is_empty() {
        "NOASSERTION".to_string()
    } else {
        all_licences.into_iter().collect::<Vec<_>>().join(" AND ")
    };
    packages.insert(
        0,
        json!({
            "SPDXID": pkg_id,
            "name": name,
            "versionInfo": version,
            "supplier": format!("Organization: {supplier}"),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": true,
            "packageVerificationCode": {"packageVerificationCodeValue": code},
            "licenseConcluded": concluded,
            "licenseDeclared": "NOASSERTION",
            "licenseInfoFromFiles": ["NOASSERTION"],
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "OPERATING-SYSTEM",
        }),
    );
    let namespace_key = sha256_hex(format!("{name} {version} {code}").as_bytes());
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{name}-{version}"),
        "documentNamespace": format!(
            "https://stubdoms.invalid/spdx/{name}-{version}-{}",
            &namespace_key[..16]
        ),
        "creationInfo": {
            "created": debian::iso8601(epoch),
            "creators": ["Tool: stubdoms-xtask-dist"],
        },
        "packages": packages,
        "files": files,
        "relationships": relations,
    });
    if !extracted.is_empty() {
        doc["hasExtractedLicensingInfos"] = extracted
            .into_iter()
            .map(|(id, text)| json!({"licenseId": id, "extractedText": text}))
            .collect();
    }
    Ok(doc)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

fn paren(expr: &str) -> String {
    if expr.contains(' ') && !(expr.starts_with('(') && expr.ends_with(')')) {
        format!("({expr})")
    } else {
        expr.to_string()
    }
}

/// Letters, digits, `.` and `-` only, as SPDX identifiers allow.
fn spdx_id_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn input_id(blob: &Blob) -> String {
    format!("SPDXRef-Input-{}", &blob.sha256[..16])
}

/// The Debian source package (name, version) a binary package input was built from, from
/// its control file's `Source` field (the package's own name and version without one).
pub(super) fn built_from(cache: &Cache, blob: &Blob) -> Result<Option<(String, String)>> {
    let words: Vec<&str> = blob.label.split_whitespace().collect();
    let ["deb", name, version, ..] = words[..] else {
        return Ok(None);
    };
    let control = stubdoms_archive::deb::read_control(&cache.get(blob)?)
        .with_context(|| format!("reading the control file of {blob}"))?;
    Ok(Some(crate::lock::source_of(
        control.get("Source"),
        name,
        version,
    )))
}

/// An input as an SPDX package: `deb NAME VERSION ARCH` or `source NAME VERSION FILE`;
/// a binary package says in `sourceInfo` which source package it was built from.
fn input_package(blob: &Blob, licence: &str, built_from: Option<&(String, String)>) -> Value {
    let words: Vec<&str> = blob.label.split_whitespace().collect();
    let (name, version) = (
        words.get(1).copied().unwrap_or(&blob.label),
        words.get(2).copied().unwrap_or("NOASSERTION"),
    );
    let archive = blob.archive.archive().as_str();
    // No download URL: the project names no mirror host, and the document must not depend
    // on the machine's mirror configuration. The purl names the package, `sourceInfo` where
    // every Debian mirror (and, from the pin's time, the snapshot archive) keeps the file.
    let mut source_info = match &blob.snapshot {
        Some(stamp) => format!(
            "{} in the Debian archive `{archive}`, pinned at snapshot time {stamp}",
            blob.path
        ),
        None => format!("{} in the Debian archive `{archive}`", blob.path),
    };
    if let Some((src, version)) = built_from {
        source_info += &format!("; built from the Debian source package {src} {version}");
    }
    // purl versions are percent-encoded (`+` and the epoch's `:`).
    let version_enc = version
        .replace('%', "%25")
        .replace('+', "%2B")
        .replace(':', "%3A");
    let purl = match words.first() {
        Some(&"deb") => format!(
            "pkg:deb/debian/{name}@{version_enc}?arch={}",
            words.get(3).copied().unwrap_or("amd64")
        ),
        _ => format!("pkg:deb/debian/{name}@{version_enc}?arch=source"),
    };
    json!({
        "SPDXID": input_id(blob),
        "name": name,
        "versionInfo": version,
        "packageFileName": blob.path.rsplit('/').next().unwrap_or(&blob.path),
        "downloadLocation": "NOASSERTION",
        "sourceInfo": source_info,
        "filesAnalyzed": false,
        "checksums": [{"algorithm": "SHA256", "checksumValue": blob.sha256}],
        "licenseConcluded": licence,
        "licenseDeclared": licence,
        "copyrightText": "NOASSERTION",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl,
        }],
    })
}

/// An input's licence, from its copyright file: a binary package's
/// `/usr/share/doc/NAME/copyright` (or `copyright`, where [`super::held`] found it in
/// another package), a source package's `debian/copyright` in its debian tarball (found
/// among `all`). A machine-readable file gives SPDX expressions; one in prose becomes a
/// `LicenseRef-` whose extracted text is the file itself. With no file, the pin's licence.
fn input_licence(
    cache: &Cache,
    blob: &Blob,
    copyright: Option<&std::path::PathBuf>,
    all: &[&Blob],
    extracted: &mut BTreeMap<String, String>,
) -> Result<String> {
    let words: Vec<&str> = blob.label.split_whitespace().collect();
    let text = match words[..] {
        ["deb", name, ..] => {
            let own = cache
                .unpacked_deb(blob)?
                .join("usr/share/doc")
                .join(name)
                .join("copyright");
            fs_err::read_to_string(copyright.unwrap_or(&own)).ok()
        }
        ["source", name, version, ..] => {
            let debian = all.iter().find(|b| {
                let w: Vec<&str> = b.label.split_whitespace().collect();
                w.len() == 4 && w[..3] == ["source", name, version] && w[3].contains(".debian.tar.")
            });
            match debian {
                Some(d) => debian_copyright(&cache.get(d)?)
                    .with_context(|| format!("reading debian/copyright from {d}"))?,
                None => None,
            }
        }
        _ => None,
    };
    if let (Some(text), Some(name)) = (text, words.get(1)) {
        let ids = copyright_licences(&text, extracted, name);
        if !ids.is_empty() {
            return Ok(ids.join(" AND "));
        }
        if !text.trim().is_empty() {
            let id = format!("LicenseRef-{}-copyright", spdx_id_part(name));
            extracted.entry(id.clone()).or_insert(text);
            return Ok(id);
        }
    }
    Ok(if blob.licence.is_empty() {
        "NOASSERTION".into()
    } else {
        blob.licence.clone()
    })
}

/// `debian/copyright` from a source package's debian tarball, if it has one.
fn debian_copyright(tarball: &std::path::Path) -> Result<Option<String>> {
    let file = std::io::BufReader::new(fs_err::File::open(tarball)?);
    let Some(reader) = super::held::decompressing(file)? else {
        bail!(
            "{}: only xz, gzip or plain debian tarballs are read",
            tarball.display()
        );
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if path.trim_start_matches("./") == "debian/copyright" {
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            return Ok(Some(text));
        }
    }
    Ok(None)
}

/// The licences a machine-readable (DEP-5) `copyright` file names for its files, as SPDX
/// expressions, sorted and each once (empty if the file is not machine-readable). Names
/// SPDX does not know become `LicenseRef-` identifiers, recorded in `extracted`.
pub fn copyright_licences(
    text: &str,
    extracted: &mut BTreeMap<String, String>,
    package: &str,
) -> Vec<String> {
    if !text.lines().next().unwrap_or("").starts_with("Format:") {
        return Vec::new();
    }
    let mut out = BTreeSet::new();
    for stanza in text.split("\n\n") {
        let has_files = stanza.lines().any(|l| l.starts_with("Files:"));
        let Some(line) = stanza.lines().find(|l| l.starts_with("License:")) else {
            continue;
        };
        if !has_files {
            continue;
        }
        let expr = line.trim_start_matches("License:").trim();
        if expr.is_empty() {
            continue;
        }
        out.insert(paren(&debian_expression(expr, extracted, package)));
    }
    out.into_iter().collect()
}

/// A Debian licence expression (`GPL-2+ or Artistic`, `LGPL-2.1+ with OpenSSL exception`)
/// in SPDX terms.
fn debian_expression(
    expr: &str,
    extracted: &mut BTreeMap<String, String>,
    package: &str,
) -> String {
    let expr = expr.replace(',', " ");
    let mut out = Vec::new();
    let mut words = expr.split_whitespace().peekable();
    while let Some(w) = words.next() {
        match w.to_ascii_lowercase().as_str() {
            "or" => out.push("OR".to_string()),
            "and" => out.push("AND".to_string()),
            "with" => {
                // An exception: keep the licence, note the exception in a LicenseRef.
                let rest: Vec<&str> = words
                    .by_ref()
                    .take_while(|w| !w.eq_ignore_ascii_case("or") && !w.eq_ignore_ascii_case("and"))
                    .collect();
                let id = format!("LicenseRef-exception-{}", spdx_id_part(&rest.join("-")));
                extracted.entry(id.clone()).or_insert_with(|| {
                    format!(
                        "The exception \"{}\" of the Debian package {package}'s copyright file.",
                        rest.join(" ")
                    )
                });
                out.push("AND".to_string());
                out.push(id);
            }
            _ => out.push(spdx_licence(w, extracted, package)),
        }
    }
    // A dangling operator (from an odd field) would make the expression invalid.
    while out.last().is_some_and(|w| w == "OR" || w == "AND") {
        out.pop();
    }
    out.join(" ")
}

/// Debian's short licence names in SPDX terms.
fn spdx_licence(name: &str, extracted: &mut BTreeMap<String, String>, package: &str) -> String {
    let known = match name.to_ascii_lowercase().trim_end_matches('.') {
        "gpl-1" => "GPL-1.0-only",
        "gpl-1+" | "gpl" => "GPL-1.0-or-later",
        "gpl-2" | "gpl-2.0" | "gpl-2.0-only" => "GPL-2.0-only",
        "gpl-2+" | "gpl-2.0+" | "gpl-2.0-or-later" => "GPL-2.0-or-later",
        "gpl-3" | "gpl-3.0" | "gpl-3.0-only" => "GPL-3.0-only",
        "gpl-3+" | "gpl-3.0+" | "gpl-3.0-or-later" => "GPL-3.0-or-later",
        "lgpl-2" | "lgpl-2.0" => "LGPL-2.0-only",
        "lgpl-2+" | "lgpl-2.0+" | "lgpl" => "LGPL-2.0-or-later",
        "lgpl-2.1" | "lgpl-2.1-only" => "LGPL-2.1-only",
        "lgpl-2.1+" | "lgpl-2.1-or-later" => "LGPL-2.1-or-later",
        "lgpl-3" | "lgpl-3.0" => "LGPL-3.0-only",
        "lgpl-3+" | "lgpl-3.0+" | "lgpl-3.0-or-later" => "LGPL-3.0-or-later",
        "bsd-2-clause" | "bsd-2" => "BSD-2-Clause",
        "bsd-3-clause" | "bsd-3" => "BSD-3-Clause",
        "bsd-4-clause" => "BSD-4-Clause",
        "expat" | "mit" => "MIT",
        "zlib" => "Zlib",
        "isc" => "ISC",
        "apache-2.0" | "apache-2" => "Apache-2.0",
        "mpl-2.0" => "MPL-2.0",
        "artistic" | "artistic-1.0" => "Artistic-1.0",
        "artistic-2.0" => "Artistic-2.0",
        "cc0-1.0" | "cc0" => "CC0-1.0",
        "bsl-1.0" => "BSL-1.0",
        "x11" => "X11",
        "unicode-dfs-2016" => "Unicode-DFS-2016",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    let id = format!("LicenseRef-{}", spdx_id_part(name));
    extracted.entry(id.clone()).or_insert_with(|| {
        format!("The licence named \"{name}\" in the copyright file of the Debian package {package} (/usr/share/doc/{package}/copyright), which holds its text.")
    });
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licences_from_a_machine_readable_copyright_file() {
        let text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
            Upstream-Name: x\n\n\
            Files: *\nCopyright: a\nLicense: LGPL-2.1+\n\n\
            Files: src/z/*\nCopyright: b\nLicense: Zlib\n\n\
            Files: tools/*\nCopyright: c\nLicense: GPL-2+ or Artistic\n\n\
            Files: odd/*\nCopyright: d\nLicense: public-domain\n\n\
            License: LGPL-2.1+\n On Debian systems ...\n";
        let mut extracted = BTreeMap::new();
        let ids = copyright_licences(text, &mut extracted, "x");
        assert_eq!(
            ids,
            [
                "(GPL-2.0-or-later OR Artistic-1.0)",
                "LGPL-2.1-or-later",
                "LicenseRef-public-domain",
                "Zlib"
            ]
        );
        assert!(extracted.contains_key("LicenseRef-public-domain"));
        let mut none = BTreeMap::new();
        assert!(copyright_licences("This is x, GPL.\n", &mut none, "x").is_empty());
    }

    #[test]
    fn a_source_packages_copyright_comes_from_its_debian_tarball() {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, text) in [
            ("debian/control", "Source: x\n"),
            (
                "debian/copyright",
                "Format: x\n\nFiles: *\nLicense: GPL-2\n",
            ),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(text.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, path, text.as_bytes()).unwrap();
        }
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        std::io::Write::write_all(&mut xz, &tar.into_inner().unwrap()).unwrap();
        let path =
            std::env::temp_dir().join(format!("stubdoms-sbom-{}.tar.xz", std::process::id()));
        fs_err::write(&path, xz.finish().unwrap()).unwrap();
        let text = debian_copyright(&path).unwrap().unwrap();
        let _ = fs_err::remove_file(&path);
        let mut extracted = BTreeMap::new();
        assert_eq!(
            copyright_licences(&text, &mut extracted, "x"),
            ["GPL-2.0-only"]
        );
    }

    #[test]
    fn exceptions_become_licence_refs() {
        let mut extracted = BTreeMap::new();
        assert_eq!(
            debian_expression("GPL-2+ with OpenSSL exception", &mut extracted, "p"),
            "GPL-2.0-or-later AND LicenseRef-exception-OpenSSL-exception"
        );
    }
}
