//! `target/images/manifest.json`: per artifact its sha256, size, variant, recipe, build key
//! and the sha256 of every input used, and the Xen releases it is boot-tested with. What
//! `dist`, `repro` and packagers read.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::boot::machines::Spec;
use crate::recipe::Recipe;
use crate::variant::Variant;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Artifact {
    pub recipe: String,
    pub variant: Variant,
    /// The Xen release it is built for, when its recipe builds one image per release.
    pub xen_release: Option<String>,
    pub file: String,
    pub sha256: String,
    pub size: u64,
    pub build_key: String,
    /// The build environments it was built in (the first, then the one with its Xen
    /// release's libraries, if any): keys of [`Manifest::environments`].
    pub build_envs: Vec<String>,
    /// Input label -> sha256.
    pub inputs: BTreeMap<String, String>,
    /// The Xen releases it is boot-tested with: those of the test machines that run a boot
    /// test of its recipe and variant (empty: built and checked, not boot-tested).
    pub xen: Vec<String>,
}

impl Artifact {
    /// Its path under `target/images/`.
    pub fn rel_path(&self) -> String {
        image_path(self.variant, self.xen_release.as_deref(), &self.file)
    }
}

/// Where a built file lands under `target/images/`: `<variant>/<file>`, or
/// `<variant>/xen-<release>/<file>` for an image bound to a Xen release.
pub fn image_path(variant: Variant, xen: Option<&str>, file: &str) -> String {
    match xen {
        Some(r) => format!("{variant}/xen-{r}/{file}"),
        None => format!("{variant}/{file}"),
    }
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
const FORMAT: u32 = 4;

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

    /// The artifact `file` of `recipe` built for `variant` (and Xen release `xen`).
    pub fn artifact(
        &self,
        recipe: &str,
        variant: Variant,
        xen: Option<&str>,
        file: &str,
    ) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| {
            a.recipe == recipe
                && a.variant == variant
                && a.xen_release.as_deref() == xen
                && a.file == file
        })
    }

    /// Sets every artifact's [`Artifact::xen`] from the machines and the recipes' tests (an
    /// image built for one release is tested on that release's machines only).
    pub fn record_tested_with(&mut self, machines: &[Spec], recipes: &[Recipe]) {
        for a in &mut self.artifacts {
            let tests = recipes
                .iter()
                .filter(|r| r.name == a.recipe)
                .flat_map(|r| &r.boot_tests)
                .filter(|t| t.variant == a.variant);
            let mut xen: Vec<String> = Vec::new();
            for t in tests {
                let mine = |m: &&Spec| a.xen_release.as_ref().is_none_or(|r| *r == m.xen);
                for m in machines.iter().filter(|m| m.runs(t)).filter(mine) {
                    if !xen.contains(&m.xen) {
                        xen.push(m.xen.clone());
                    }
                }
            }
            xen.sort();
            a.xen = xen;
        }
    }

    /// Replaces every artifact of one build (a build may install several files, and a file
    /// the recipe no longer lists must not linger).
    pub fn replace(
        &mut self,
        recipe: &str,
        variant: Variant,
        xen: Option<&str>,
        artifacts: Vec<Artifact>,
    ) {
        self.artifacts.retain(|o| {
            !(o.recipe == recipe && o.variant == variant && o.xen_release.as_deref() == xen)
        });
        self.artifacts.extend(artifacts);
        self.artifacts.sort_by(|x, y| {
            (x.variant, &x.xen_release, &x.file).cmp(&(y.variant, &y.xen_release, &y.file))
        });
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
            .flat_map(|a| a.build_envs.iter().map(String::as_str))
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
            xen_release: None,
            file: file.into(),
            sha256: "0".repeat(64),
            size: 1,
            build_key: "k".into(),
            build_envs: vec!["bookworm-build".into()],
            inputs: BTreeMap::new(),
            xen: Vec::new(),
        }
    }

    /// An image built for a Xen release records that release; an unbound one every release
    /// that runs its variant; a variant without tests none.
    #[test]
    fn artifacts_record_the_xen_releases_their_tests_run_on() {
        let machine = |xen: &str| {
            let src = format!(
                "summary = \"s\"\narch = \"x86_64\"\nxen = \"{xen}\"\npackages = \"p\"\nvariants = [\"x86_64-pv\"]\nqemu-machine = \"q35\"\nqemu-cpu = \"max\"\nxen-cmdline = \"\"\n"
            );
            let path = format!("ci/machines/x86_64-xen{xen}.toml");
            crate::boot::machines::parse(Path::new(&path), &src, &|_| true, &|_| true).unwrap()
        };
        let machines = [machine("4.17"), machine("4.20")];
        let recipe = |name: &str, bound: &str| {
            let src = format!(
                "name = \"{name}\"\nsummary = \"s\"\nkind = \"rust\"\nlicence = \"MIT\"\ninputs = []\n{bound}[variants.x86_64-pv]\nfile = \"a\"\n[variants.x86_64-pvh]\nfile = \"b\"\n[[boot-test]]\nname = \"t\"\nvariant = \"x86_64-pv\"\nexpect = [\"x\"]\ntimeout = 9\n"
            );
            let path = format!("stubdoms/{name}/stubdom.toml");
            crate::recipe::parse(Path::new(&path), &src).unwrap()
        };
        let recipes = [
            recipe("free", ""),
            recipe(
                "bound",
                "xen-releases = { \"4.17\" = \"bookworm-build\", \"4.20\" = \"trixie-build\" }\n",
            ),
        ];
        let for_release = |r: &str| Artifact {
            xen_release: Some(r.into()),
            ..art("bound", Variant::X86_64Pv, "a")
        };
        let mut m = Manifest {
            format: FORMAT,
            source_date_epoch: 0,
            artifacts: vec![
                art("free", Variant::X86_64Pv, "a"),
                for_release("4.17"),
                for_release("4.20"),
                art("free", Variant::X86_64Pvh, "b"),
            ],
            environments: BTreeMap::new(),
        };
        m.record_tested_with(&machines, &recipes);
        let xen: Vec<Vec<String>> = m.artifacts.iter().map(|a| a.xen.clone()).collect();
        assert_eq!(
            xen,
            [
                vec!["4.17".to_string(), "4.20".into()],
                vec!["4.17".into()],
                vec!["4.20".into()],
                vec![]
            ]
        );
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
                Artifact {
                    xen_release: Some("4.20".into()),
                    ..art("ioemu", Variant::X86_64Pv, "rootfs")
                },
            ],
        };
        m.replace(
            "ioemu",
            Variant::X86_64Pv,
            None,
            vec![
                art("ioemu", Variant::X86_64Pv, "rootfs"),
                art("ioemu", Variant::X86_64Pv, "kernel"),
            ],
        );
        let got: Vec<String> = m.artifacts.iter().map(|a| a.rel_path()).collect();
        assert_eq!(
            got,
            [
                "x86_64-pv/kernel",
                "x86_64-pv/pv-grub-x86_64.gz",
                "x86_64-pv/rootfs",
                "x86_64-pv/xen-4.20/rootfs",
                "x86_64-pvh/other",
            ],
            "the other release's build stays"
        );
    }
}
