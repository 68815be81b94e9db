//! Deterministic gzip: no file name, header mtime 0, best compression, OS byte 255
//! ("unknown") set explicitly rather than left to the library's default.
//!
//! The compressed bytes depend on the deflate implementation (`flate2`'s default, the
//! pure-Rust `miniz_oxide`), which `Cargo.lock` pins.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

use crate::error::{Error, Result};

/// The gzip header's OS byte written by [`encoder`]: 255, "unknown".
pub const OS_UNKNOWN: u8 = 255;

/// A gzip encoder with a fixed header; call [`finish`] (or `GzEncoder::finish`) at the end.
pub fn encoder<W: Write>(out: W) -> GzEncoder<W> {
    GzBuilder::new()
        .mtime(0)
        .operating_system(OS_UNKNOWN)
        .write(out, Compression::best())
}

/// Finishes a gzip stream started with [`encoder`] and returns the inner writer.
pub fn finish<W: Write>(encoder: GzEncoder<W>) -> Result<W> {
    let write_err = |source| Error::Write {
        format: "gzip",
        source,
    };
    let mut out = encoder.finish().map_err(write_err)?;
    out.flush().map_err(write_err)?;
    Ok(out)
}

/// Compresses `data` in memory (e.g. a kernel or a ready-made image).
pub fn compress(data: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = encoder(Vec::new());
    encoder.write_all(data).map_err(|source| Error::Write {
        format: "gzip",
        source,
    })?;
    finish(encoder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn header_is_fixed_and_data_round_trips() {
        let data = b"stub domain ".repeat(100);
        let gz = compress(&data).unwrap();
        // magic, CM=deflate, FLG=0 (no name, comment or extra), MTIME=0, XFL=2 (best), OS.
        assert_eq!(gz[..10], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, OS_UNKNOWN]);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert_eq!(compress(&data).unwrap(), gz);
    }
}
