//! The one way the driver makes a key: a sha256 over named, length-prefixed fields, so two
//! different lists of fields never hash alike. Build keys, the keys of cached parts and
//! prepared sources, build environments, vendored crates and test machines are all made
//! with it.

use sha2::{Digest, Sha256};

pub struct Key(Sha256);

impl Key {
    /// A key for one kind of thing (its first field), e.g. `"stubdoms-build-2"`.
    pub fn new(kind: &str) -> Key {
        let mut k = Key(Sha256::new());
        k.field("kind", kind);
        k
    }

    pub fn field(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Key {
        let value = value.as_ref();
        for part in [name.as_bytes(), value] {
            self.0.update((part.len() as u64).to_le_bytes());
            self.0.update(part);
        }
        self
    }

    /// The key as 64 lowercase hex digits.
    pub fn finish(&self) -> String {
        format!("{:x}", self.0.clone().finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_do_not_run_into_each_other() {
        let key = |fields: &[(&str, &str)]| {
            let mut k = Key::new("t");
            for (n, v) in fields {
                k.field(n, v);
            }
            k.finish()
        };
        assert_eq!(key(&[("a", "bc")]), key(&[("a", "bc")]));
        assert_ne!(key(&[("a", "bc")]), key(&[("ab", "c")]));
        assert_ne!(key(&[("a", "b"), ("c", "")]), key(&[("a", "bc")]));
        assert_ne!(Key::new("x").finish(), Key::new("y").finish());
        assert_eq!(key(&[]).len(), 64);
    }
}
