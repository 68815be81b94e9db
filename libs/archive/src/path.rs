//! Path rules shared by the tree builder and the extractor.

use crate::error::{Error, PathProblem, Result, UnsafeReason};

/// Normalises a tree path: a leading `/`, repeated and trailing slashes are dropped; `.` and
/// `..` components, NUL bytes and empty paths are refused.
pub(crate) fn normalize(path: &str) -> Result<String> {
    let invalid = |problem| Error::InvalidPath {
        path: path.to_owned(),
        problem,
    };
    if path.contains('\0') {
        return Err(invalid(PathProblem::Nul));
    }
    let mut out = String::with_capacity(path.len());
    for component in path.split('/').filter(|c| !c.is_empty()) {
        match component {
            "." => return Err(invalid(PathProblem::CurDir)),
            ".." => return Err(invalid(PathProblem::ParentDir)),
            _ => {}
        }
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(component);
    }
    if out.is_empty() {
        return Err(invalid(PathProblem::Empty));
    }
    Ok(out)
}

/// Splits an archive entry name into its components, dropping empty and `.` components
/// (`./usr/bin` is the usual spelling in `.deb` data). Absolute names and `..` are refused.
pub(crate) fn entry_components(name: &[u8]) -> Result<Vec<&[u8]>, UnsafeReason> {
    if name.first() == Some(&b'/') {
        return Err(UnsafeReason::AbsolutePath);
    }
    let mut components = Vec::new();
    for component in name.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err(UnsafeReason::ParentDir),
            _ => components.push(component),
        }
    }
    Ok(components)
}

/// Whether a symlink at depth `link_depth` (the number of directories between the
/// destination root and the link) pointing at `target` resolves, lexically, above the root.
///
/// Absolute targets are read as they will be inside the image, relative to its root, so
/// they never escape; extraction never follows any symlink, so their meaning on the host
/// does not matter.
pub(crate) fn symlink_escapes(link_depth: usize, target: &[u8]) -> bool {
    if target.first() == Some(&b'/') {
        return false;
    }
    let mut depth = link_depth;
    for component in target.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return true,
            },
            _ => depth += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_table() {
        let cases: &[(&str, Result<&str, PathProblem>)] = &[
            ("dev/console", Ok("dev/console")),
            ("/dev/console", Ok("dev/console")),
            ("//a///b/", Ok("a/b")),
            ("init", Ok("init")),
            ("", Err(PathProblem::Empty)),
            ("/", Err(PathProblem::Empty)),
            ("./a", Err(PathProblem::CurDir)),
            ("a/./b", Err(PathProblem::CurDir)),
            ("a/../b", Err(PathProblem::ParentDir)),
            ("..", Err(PathProblem::ParentDir)),
            ("a\0b", Err(PathProblem::Nul)),
            ("a..b/.c", Ok("a..b/.c")),
        ];
        for (input, expected) in cases {
            let got = normalize(input).map_err(|e| match e {
                Error::InvalidPath { problem, .. } => problem,
                other => panic!("unexpected error {other}"),
            });
            assert_eq!(got.as_deref(), expected.as_deref(), "input {input:?}");
        }
    }

    #[test]
    fn entry_components_table() {
        type Case<'a> = (&'a [u8], Result<&'a [&'a [u8]], UnsafeReason>);
        let cases: &[Case] = &[
            (b"./usr/bin/x", Ok(&[b"usr", b"bin", b"x"])),
            (b"usr//bin/", Ok(&[b"usr", b"bin"])),
            (b"./", Ok(&[])),
            (b"/etc/passwd", Err(UnsafeReason::AbsolutePath)),
            (b"../x", Err(UnsafeReason::ParentDir)),
            (b"a/../../x", Err(UnsafeReason::ParentDir)),
            (b"a/..b", Ok(&[b"a", b"..b"])),
        ];
        for (input, expected) in cases {
            let got = entry_components(input);
            let expected = expected.clone().map(|v| v.to_vec());
            assert_eq!(got, expected, "input {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn symlink_escape_table() {
        let cases: &[(usize, &str, bool)] = &[
            (0, "x", false),
            (0, "../x", true),
            (1, "../x", false),
            (1, "../../x", true),
            (2, "../../x", false),
            (0, "a/../b", false),
            (0, "a/../../b", true),
            (0, "/etc/passwd", false),
            (0, "./../x", true),
            (3, "../.././x", false),
            (0, ".", false),
        ];
        for &(depth, target, escapes) in cases {
            assert_eq!(
                symlink_escapes(depth, target.as_bytes()),
                escapes,
                "depth {depth} target {target:?}"
            );
        }
    }
}
