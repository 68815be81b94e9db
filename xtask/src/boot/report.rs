//! What a scenario's run came to: the checks' verdicts turned into one outcome, printed as
//! a PASS/FAIL line (a failure with the line it waited for, the last console lines and the
//! log path) and written to `target/boot/results.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::check::{self, Checker, Verdict};
use super::Scenario;
use crate::variant::Variant;

/// The result of one scenario, as printed and as written to target/boot/results.json.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Outcome {
    pub id: String,
    pub variant: Variant,
    /// The test machine it ran on, such as `x86_64-xen4.17`.
    pub machine: String,
    pub passed: bool,
    /// Seconds from the guest's creation (or QEMU's start, for dom0 scenarios) to the last
    /// expected console line.
    pub secs_to_last_line: Option<f64>,
    /// Seconds from QEMU's start to dom0 ready (xl scenarios).
    pub dom0_ready_secs: Option<f64>,
    pub log: PathBuf,
    pub failure: Option<String>,
    /// mode = "efi": seconds to build the ESP, and from firmware start (QEMU's) to each
    /// domain's last expected line (`DOM1`, ... as Xen prints their consoles; `dom0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub esp_build_secs: Option<f64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub domain_secs: BTreeMap<String, f64>,
    /// What the dom0 check measured: its `figure NAME VALUE` lines.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub figures: BTreeMap<String, f64>,
}

/// The last 30 console lines.
#[derive(Default)]
pub struct Tail(std::collections::VecDeque<String>);

impl Tail {
    pub fn push(&mut self, line: &str) {
        if self.0.len() == 30 {
            self.0.pop_front();
        }
        self.0.push_back(check::strip_escapes(line));
    }
}

pub fn finish(
    s: &Scenario,
    c: &Checker,
    dom0_ready: Option<f64>,
    tail: &Tail,
    log: &Path,
    ended: &str,
    extra: Option<String>,
) -> Outcome {
    let verdict = c.verdict();
    let mut failure = match &verdict {
        Verdict::Pass => None,
        Verdict::Missing { pattern, .. } => Some(format!(
            "waiting for /{pattern}/{}",
            if ended.is_empty() {
                String::new()
            } else {
                format!(" when {ended}")
            }
        )),
        Verdict::Forbidden { pattern, line } => {
            Some(format!("forbidden /{pattern}/ appeared: {line}"))
        }
    };
    if let Some(e) = extra {
        failure = Some(match failure {
            Some(f) => format!("{f}; {e}"),
            None => e,
        });
    }
    let secs = c.last_expected_at.map(|d| d.as_secs_f64());
    let passed = match (&s.test.must_fail, &failure) {
        (None, f) => f.is_none(),
        (Some(re), Some(f)) => re.is_match(f),
        (Some(_), None) => false,
    };
    if passed && s.test.must_fail.is_some() {
        println!(
            "PASS {:<36} {:<11} {:<15} failed as it must: {}",
            s.id,
            s.test.variant.as_str(),
            s.machine,
            failure.as_deref().unwrap_or("")
        );
    } else if passed {
        println!(
            "PASS {:<36} {:<11} {:<15} {:>6.1}s to last line",
            s.id,
            s.test.variant.as_str(),
            s.machine,
            secs.unwrap_or(0.0)
        );
    } else {
        println!(
            "FAIL {:<36} {:<11} {}",
            s.id,
            s.test.variant.as_str(),
            s.machine
        );
        match (&s.test.must_fail, &failure) {
            (Some(re), None) => println!("     passed, but must fail with /{}/", re.as_str()),
            (Some(re), Some(f)) => println!("     {f}\n     (must fail with /{}/)", re.as_str()),
            (None, f) => println!("     {}", f.as_deref().unwrap_or("")),
        }
        println!("     last console lines:");
        for l in &tail.0 {
            println!("     | {l}");
        }
        println!("     full log: {}", log.display());
    }
    Outcome {
        id: s.id.clone(),
        variant: s.test.variant,
        machine: s.machine.clone(),
        passed,
        secs_to_last_line: secs,
        dom0_ready_secs: dom0_ready,
        log: log.to_path_buf(),
        failure,
        esp_build_secs: None,
        domain_secs: BTreeMap::new(),
        figures: BTreeMap::new(),
    }
}

/// A dom0 check's measurement, `figure NAME VALUE`: the name and the value.
pub fn figure(line: &str) -> Option<(&str, f64)> {
    let mut words = line.strip_prefix("figure ")?.split_whitespace();
    let (name, value) = (words.next()?, words.next()?.parse().ok()?);
    words.next().is_none().then_some((name, value))
}

/// Each domain's last expected line's time: `(XEN) DOM<n>: ...` lines are domain n's,
/// others dom0's.
pub fn domain_secs(c: &Checker) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (line, at) in &c.matched {
        let domain = line
            .strip_prefix("(XEN) ")
            .and_then(|l| l.split_once(": "))
            .map(|(d, _)| d)
            .filter(|d| {
                d.strip_prefix("DOM")
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            })
            .unwrap_or("dom0");
        out.insert(domain.to_string(), at.as_secs_f64());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::figure;

    #[test]
    fn a_figure_line_is_a_name_and_a_number() {
        assert_eq!(
            figure("figure stub-free-kib 12345"),
            Some(("stub-free-kib", 12345.0))
        );
        assert_eq!(figure("figure secs 1.5"), Some(("secs", 1.5)));
        assert_eq!(figure("figure secs"), None);
        assert_eq!(figure("figure secs many"), None);
        assert_eq!(figure("figure secs 1 2"), None);
        assert_eq!(figure("stub domain memory 48 MiB"), None);
    }
}
