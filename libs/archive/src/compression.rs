//! Compression formats accepted on the extraction side, and their decoders.

use std::io::{self, Read};

/// How a tarball (or a `.deb` member) is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
    Bzip2,
}

impl Compression {
    /// Recognises a compressed stream by its first bytes; anything else is taken as
    /// uncompressed (a plain tar then fails on its own checks if it is garbage).
    pub fn from_magic(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }

    /// The compression named by a file name's extension: `.gz`/`.tgz`, `.xz`/`.txz`,
    /// `.zst`/`.tzst`, `.bz2`/`.tbz2`, `.tar`. `None` for anything else (e.g. `.lzma`).
    pub fn from_file_name(name: &str) -> Option<Compression> {
        let (_, ext) = name.rsplit_once('.')?;
        Some(match ext {
            "gz" | "tgz" => Compression::Gzip,
            "xz" | "txz" => Compression::Xz,
            "zst" | "tzst" => Compression::Zstd,
            "bz2" | "tbz2" => Compression::Bzip2,
            "tar" => Compression::None,
            _ => return None,
        })
    }

    /// A reader that decompresses `input`. Concatenated streams (multi-member gzip, multi-
    /// stream xz and bzip2, multi-frame zstd) are read to their end.
    pub(crate) fn decoder<'a>(self, input: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(input),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
            Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(input)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(input)?),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(input)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn every_format_is_recognised_and_decoded() {
        let data = b"compressed payload ".repeat(50);
        let gz = crate::gzip::compress(&data).unwrap();
        let xz = {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let zst = zstd::stream::encode_all(&data[..], 3).unwrap();
        let bz2 = {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let cases = [
            (data.clone(), Compression::None),
            (gz, Compression::Gzip),
            (xz, Compression::Xz),
            (zst, Compression::Zstd),
            (bz2, Compression::Bzip2),
        ];
        for (bytes, kind) in cases {
            assert_eq!(Compression::from_magic(&bytes), kind);
            let mut out = Vec::new();
            kind.decoder(&bytes[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data, "{kind:?}");
        }
    }

    #[test]
    fn file_names() {
        let cases = [
            ("grub2_2.06.orig.tar.xz", Some(Compression::Xz)),
            ("x.debian.tar.gz", Some(Compression::Gzip)),
            ("data.tar.zst", Some(Compression::Zstd)),
            ("a.tbz2", Some(Compression::Bzip2)),
            ("data.tar", Some(Compression::None)),
            ("data.tar.lzma", None),
            ("noext", None),
        ];
        for (name, want) in cases {
            assert_eq!(Compression::from_file_name(name), want, "{name}");
        }
    }
}
