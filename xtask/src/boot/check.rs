//! Console checking: feed console lines of one scenario, in order, and learn whether every
//! expected line came (in order), whether a forbidden line appeared, and when.

use std::time::Duration;

use regex::Regex;

/// The verdict on one scenario's console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Waiting for `expect[index]` when the console ended.
    Missing {
        index: usize,
        pattern: String,
    },
    Forbidden {
        pattern: String,
        line: String,
    },
}

pub struct Checker<'a> {
    expect: &'a [Regex],
    forbid: &'a [Regex],
    next: usize,
    forbidden: Option<(String, String)>,
    /// Time of the last expected line, from the scenario's start.
    pub last_expected_at: Option<Duration>,
    /// Each expected line as it came, with its time.
    pub matched: Vec<(String, Duration)>,
}

impl<'a> Checker<'a> {
    pub fn new(expect: &'a [Regex], forbid: &'a [Regex]) -> Self {
        Checker {
            expect,
            forbid,
            next: 0,
            forbidden: None,
            last_expected_at: None,
            matched: Vec::new(),
        }
    }

    /// Feeds one console line, as a person would read it (terminal escapes removed).
    pub fn feed(&mut self, line: &str, at: Duration) {
        let line = &strip_escapes(line);
        if self.forbidden.is_none() {
            if let Some(re) = self.forbid.iter().find(|re| re.is_match(line)) {
                self.forbidden = Some((re.as_str().to_string(), line.to_string()));
            }
        }
        if let Some(re) = self.expect.get(self.next) {
            if re.is_match(line) {
                self.next += 1;
                self.matched.push((line.to_string(), at));
                if self.next == self.expect.len() {
                    self.last_expected_at = Some(at);
                }
            }
        }
    }

    /// All expected lines seen (a forbidden one may still spoil it).
    pub fn complete(&self) -> bool {
        self.next == self.expect.len()
    }

    pub fn verdict(&self) -> Verdict {
        if let Some((pattern, line)) = &self.forbidden {
            return Verdict::Forbidden {
                pattern: pattern.clone(),
                line: line.clone(),
            };
        }
        match self.expect.get(self.next) {
            None => Verdict::Pass,
            Some(re) => Verdict::Missing {
                index: self.next,
                pattern: re.as_str().to_string(),
            },
        }
    }
}

/// Removes terminal control sequences (ESC [ ... final byte, ESC and one character) that
/// firmware such as GRUB mixes into its console text.
pub fn strip_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        // CSI: parameters and intermediates up to a final byte in @..~; any other escape
        // takes one character.
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(p: &[&str]) -> Vec<Regex> {
        p.iter().map(|s| Regex::new(s).unwrap()).collect()
    }

    /// (expected, forbidden, console, verdict)
    type Case = (
        Vec<&'static str>,
        Vec<&'static str>,
        Vec<&'static str>,
        Verdict,
    );

    #[test]
    fn verdicts() {
        let ms = Duration::from_millis;
        let cases: Vec<Case> = vec![
            (vec!["^a", "^b"], vec![], vec!["a", "x", "b"], Verdict::Pass),
            (
                vec!["^a", "^b"],
                vec![],
                vec!["b", "a"],
                Verdict::Missing {
                    index: 1,
                    pattern: "^b".into(),
                },
            ),
            (
                vec!["^a"],
                vec!["panic"],
                vec!["a", "Kernel panic - not syncing"],
                Verdict::Forbidden {
                    pattern: "panic".into(),
                    line: "Kernel panic - not syncing".into(),
                },
            ),
            (
                vec!["^a"],
                vec![],
                vec![],
                Verdict::Missing {
                    index: 0,
                    pattern: "^a".into(),
                },
            ),
        ];
        for (expect, forbid, console, want) in cases {
            let (e, f) = (res(&expect), res(&forbid));
            let mut c = Checker::new(&e, &f);
            for (i, line) in console.iter().enumerate() {
                c.feed(line, ms(i as u64));
            }
            assert_eq!(c.verdict(), want, "{console:?}");
        }
    }

    #[test]
    fn strips_terminal_escapes() {
        let cases = [
            (
                "\x1b[37m\x1b[40mPV-GRUB (x86_64-xen)",
                "PV-GRUB (x86_64-xen)",
            ),
            ("\x1b[H\x1b[J\x1b[1;1H\x1b[?25lGNU GRUB", "GNU GRUB"),
            ("plain", "plain"),
            ("cut \x1b[", "cut "),
        ];
        for (raw, want) in cases {
            assert_eq!(strip_escapes(raw), want);
        }
        let e = res(&["^PV-GRUB"]);
        let mut c = Checker::new(&e, &[]);
        c.feed("\x1b[37m\x1b[40mPV-GRUB (x86_64-xen)", Duration::ZERO);
        assert!(c.complete());
    }

    #[test]
    fn records_time_of_last_expected_line() {
        let e = res(&["one", "two"]);
        let mut c = Checker::new(&e, &[]);
        c.feed("one", Duration::from_secs(1));
        assert!(!c.complete());
        c.feed("two", Duration::from_secs(3));
        c.feed("two", Duration::from_secs(5));
        assert!(c.complete());
        assert_eq!(c.last_expected_at, Some(Duration::from_secs(3)));
    }
}
