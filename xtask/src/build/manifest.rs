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
    /// Input label -> sha256.
    pub inputs: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Manifest {
    pub format: u32,
    pub source_date_epoch: u64,
    pub artifacts: Vec<Artifact>,
}

impl Manifest {
    pub fn load(images: &Path) -> Result<Manifest> {
        let path = images.join("manifest.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!("{} is damaged: delete it and build again", path.display())
            }),
            Err(_) => Ok(Manifest {
                format: 1,
                source_date_epoch: super::DEFAULT_SOURCE_DATE_EPOCH,
                artifacts: Vec::new(),
            }),
        }
    }

    pub fn insert(&mut self, a: Artifact) {
        self.artifacts
            .retain(|o| !(o.recipe == a.recipe && o.variant == a.variant));
        self.artifacts.push(a);
        self.artifacts
            .sort_by(|x, y| (x.variant, &x.file).cmp(&(y.variant, &y.file)));
    }

    pub fn save(&self, images: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        crate::fsx::write_atomic(&images.join("manifest.json"), text.as_bytes())
    }
}
