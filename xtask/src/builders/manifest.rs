//! `target/images/manifest.json`: per artifact its sha256, size, variant, recipe, build key
//! and the sha256 of every input used. What `dist`, `repro` and packagers read.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::variant::Variant;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Artifact {
    pub recipe: String,
    pub variant: Variant,
    pub file: String,
    pub sha256: String,
    pub size: u64,
    pub build_key: String,
    /// The build environment it was built in: a key of [`Manifest::environments`].
    pub build_env: String,
    /// Input label -> sha256.
    pub inputs: BTreeMap<String, String>,
}

/// A build environment as the manifest records it: enough to assemble the same root again
/// (every package with version and sha256) and get the same bytes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Environment {
    pub key: String,
    pub packages: Vec<crate::buildenv::Package>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Manifest {
    pub format: u32,
    pub source_date_epoch: u64,
    pub artifacts: Vec<Artifact>,
    /// Every build environment an artifact names, by name.
    #[serde(default)]
    pub environments: BTreeMap<String, Environment>,
}

/// Bumped when the manifest's fields change.
const FORMAT: u32 = 2;

impl Manifest {
    pub fn load(images: &Path) -> Result<Manifest> {
        let path = images.join("manifest.json");
        let text = fs_err::read_to_string(&path).ok();
        // A manifest an older driver wrote describes builds this one will redo.
        let current = text.as_deref().is_some_and(|t| {
            serde_json::from_str::<serde_json::Value>(t)
                .is_ok_and(|v| v.get("format") == Some(&FORMAT.into()))
        });
        match text {
            Some(text) if current => serde_json::from_str(&text).with_context(|| {
                format!("{} is damaged: delete it and build again", path.display())
            }),
            _ => Ok(Manifest {
                format: FORMAT,
                source_date_epoch: super::DEFAULT_SOURCE_DATE_EPOCH,
                artifacts: Vec::new(),
                environments: BTreeMap::new(),
            }),
        }
    }

    /// Replaces every artifact of one recipe and variant (a build may install several
    /// files, and a file the recipe no longer lists must not linger).
    pub fn replace(&mut self, recipe: &str, variant: Variant, artifacts: Vec<Artifact>) {
        self.artifacts
            .retain(|o| !(o.recipe == recipe && o.variant == variant));
        self.artifacts.extend(artifacts);
        self.artifacts
            .sort_by(|x, y| (x.variant, &x.file).cmp(&(y.variant, &y.file)));
    }

    /// Records `root` as the environment its artifacts name, and drops environments no
    /// artifact names any more.
    pub fn record_environment(&mut self, root: &crate::buildenv::Root) {
        self.environments.insert(
            root.name.clone(),
            Environment {
                key: root.key.clone(),
                packages: root.packages.clone(),
            },
        );
        let used: std::collections::BTreeSet<&str> = self
            .artifacts
            .iter()
            .map(|a| a.build_env.as_str())
            .collect();
        self.environments
            .retain(|name, _| used.contains(name.as_str()));
    }

    pub fn save(&self, images: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        crate::fsx::write_atomic(&images.join("manifest.json"), text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn art(recipe: &str, variant: Variant, file: &str) -> Artifact {
        Artifact {
            recipe: recipe.into(),
            variant,
            file: file.into(),
            sha256: "0".repeat(64),
            size: 1,
            build_key: "k".into(),
            build_env: "bookworm-build".into(),
            inputs: BTreeMap::new(),
        }
    }

    #[test]
    fn replace_swaps_all_files_of_one_build() {
        let mut m = Manifest {
            format: FORMAT,
            source_date_epoch: 0,
            environments: BTreeMap::new(),
            artifacts: vec![
                art("ioemu", Variant::X86_64Pv, "rootfs"),
                art("ioemu", Variant::X86_64Pv, "old-kernel"),
                art("pvgrub", Variant::X86_64Pv, "pv-grub-x86_64.gz"),
                art("ioemu", Variant::X86_64Pvh, "other"),
            ],
        };
        m.replace(
            "ioemu",
            Variant::X86_64Pv,
            vec![
                art("ioemu", Variant::X86_64Pv, "rootfs"),
                art("ioemu", Variant::X86_64Pv, "kernel"),
            ],
        );
        let got: Vec<(&str, Variant, &str)> = m
            .artifacts
            .iter()
            .map(|a| (a.recipe.as_str(), a.variant, a.file.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("ioemu", Variant::X86_64Pv, "kernel"),
                ("pvgrub", Variant::X86_64Pv, "pv-grub-x86_64.gz"),
                ("ioemu", Variant::X86_64Pv, "rootfs"),
                ("ioemu", Variant::X86_64Pvh, "other"),
            ]
        );
    }
}
