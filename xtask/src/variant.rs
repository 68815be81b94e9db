//! The one place that knows what a variant is. Spelling is the same everywhere: CLI flags,
//! folder names, manifests, recipe keys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variant {
    X86_64Pv,
    X86_64Pvh,
    X86_32Pv,
    Aarch64,
}

impl Variant {
    pub const ALL: [Variant; 4] = [
        Variant::X86_64Pv,
        Variant::X86_64Pvh,
        Variant::X86_32Pv,
        Variant::Aarch64,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Variant::X86_64Pv => "x86_64-pv",
            Variant::X86_64Pvh => "x86_64-pvh",
            Variant::X86_32Pv => "x86_32-pv",
            Variant::Aarch64 => "aarch64",
        }
    }

    /// The xl `type` a domU of this variant is created with.
    pub fn xl_type(self) -> &'static str {
        match self {
            Variant::X86_64Pv | Variant::X86_32Pv => "pv",
            Variant::X86_64Pvh => "pvh",
            Variant::Aarch64 => "pvh",
        }
    }

    /// The Rust target a stub domain of this variant is compiled for (made freestanding by
    /// the runtime's flags and linker script).
    pub fn rust_target(self) -> &'static str {
        match self {
            Variant::X86_64Pv | Variant::X86_64Pvh => "x86_64-unknown-linux-gnu",
            Variant::X86_32Pv => "i686-unknown-linux-gnu",
            Variant::Aarch64 => "aarch64-unknown-none",
        }
    }

    /// The architecture of the machines that can boot this variant.
    pub fn arch(self) -> &'static str {
        match self {
            Variant::X86_64Pv | Variant::X86_64Pvh => "x86_64",
            Variant::X86_32Pv => "x86_32",
            Variant::Aarch64 => "aarch64",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Variant {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Variant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Variant {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Variant::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<_> = Variant::ALL.iter().map(|v| v.as_str()).collect();
                format!("unknown variant `{s}`, expected one of: {}", all.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_round_trips() {
        for v in Variant::ALL {
            assert_eq!(v.as_str().parse::<Variant>(), Ok(v));
        }
        let err = "x86-64-pv".parse::<Variant>().unwrap_err();
        assert!(
            err.contains("x86_64-pv, x86_64-pvh, x86_32-pv, aarch64"),
            "{err}"
        );
    }
}
