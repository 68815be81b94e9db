//! The marker protocol between the test dom0 and the runner, on the serial console: the
//! dom0 scripts (`dom0/init`, each scenario's generated `run`) print `@@STUBDOMS <event>`
//! lines, guest console lines behind `@@G `, and dom0-check lines behind `@@C `. One
//! parser for the runner, one writer for the generated scripts.

/// Before an event (`@@STUBDOMS dom0-ready`); it may follow other text on the same line.
pub const EVENT: &str = "@@STUBDOMS ";
/// Before each line of the guest's console.
pub const GUEST: &str = "@@G ";
/// Before each line of a scenario's dom0 check.
pub const CHECK: &str = "@@C ";

/// What dom0 reports.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Dom0Ready,
    /// A scenario starts: its folder name.
    Begin(&'a str),
    /// The guest's domain id.
    Domid(&'a str),
    /// `xl list`'s state flags when the guest stopped (none when xl did not answer).
    State(Option<&'a str>),
    /// A xenstore key under the guest's domain path and what it read.
    Xenstore {
        key: &'a str,
        value: &'a str,
    },
    /// dom0 killed the scenario at its timeout.
    Timeout,
    CreateFailed,
    End,
    /// Every scenario ran.
    RunEnd,
    Unknown(&'a str),
}

/// One console line, taken apart.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    Event(Event<'a>),
    Guest(&'a str),
    Check(&'a str),
    /// Anything else: Xen's and dom0's own lines.
    Other(&'a str),
}

pub fn parse(line: &str) -> Line<'_> {
    if let Some((_, event)) = line.split_once(EVENT) {
        return Line::Event(parse_event(event));
    }
    if let Some(g) = line.strip_prefix(GUEST) {
        return Line::Guest(g);
    }
    if let Some(c) = line.strip_prefix(CHECK) {
        return Line::Check(c);
    }
    Line::Other(line)
}

fn parse_event(text: &str) -> Event<'_> {
    let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
    let arg = rest.split_whitespace().next();
    match (word.trim(), arg) {
        ("dom0-ready", _) => Event::Dom0Ready,
        ("scenario-begin", Some(name)) => Event::Begin(name),
        ("domid", Some(id)) => Event::Domid(id),
        ("state", st) => Event::State(st),
        ("xenstore", Some(_)) => match rest.split_once('=') {
            Some((key, value)) => Event::Xenstore {
                key: key.trim(),
                value,
            },
            None => Event::Unknown(text),
        },
        ("scenario-timeout", _) => Event::Timeout,
        ("create-failed", _) => Event::CreateFailed,
        ("scenario-end", _) => Event::End,
        ("run-end", _) => Event::RunEnd,
        _ => Event::Unknown(text),
    }
}

/// The shell command a generated script reports `event` with (its words may use shell
/// expansions, e.g. `domid $domid`).
pub fn echo(event: &str) -> String {
    format!("echo \"{EVENT}{event}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_into_events_and_console_text() {
        let cases: &[(&str, Line)] = &[
            ("@@STUBDOMS dom0-ready", Line::Event(Event::Dom0Ready)),
            (
                "[   3.1] x @@STUBDOMS scenario-begin rust-stubdom.domu-pv",
                Line::Event(Event::Begin("rust-stubdom.domu-pv")),
            ),
            ("@@STUBDOMS domid 3", Line::Event(Event::Domid("3"))),
            (
                "@@STUBDOMS state --ps--",
                Line::Event(Event::State(Some("--ps--"))),
            ),
            ("@@STUBDOMS state ", Line::Event(Event::State(None))),
            (
                "@@STUBDOMS xenstore data/result=ok 1 disk = yes",
                Line::Event(Event::Xenstore {
                    key: "data/result",
                    value: "ok 1 disk = yes",
                }),
            ),
            ("@@STUBDOMS scenario-timeout", Line::Event(Event::Timeout)),
            ("@@STUBDOMS create-failed", Line::Event(Event::CreateFailed)),
            ("@@STUBDOMS scenario-end", Line::Event(Event::End)),
            ("@@STUBDOMS run-end", Line::Event(Event::RunEnd)),
            (
                "@@STUBDOMS xenstore nokey",
                Line::Event(Event::Unknown("xenstore nokey")),
            ),
            ("@@STUBDOMS what", Line::Event(Event::Unknown("what"))),
            (
                "@@G Hello from rust-stubdom",
                Line::Guest("Hello from rust-stubdom"),
            ),
            (
                "@@C stub domain 2 for guest 1",
                Line::Check("stub domain 2 for guest 1"),
            ),
            ("(XEN) d1v0 hello", Line::Other("(XEN) d1v0 hello")),
        ];
        for (line, want) in cases {
            assert_eq!(&parse(line), want, "{line}");
        }
    }

    /// The events dom0's init prints are ones the parser knows.
    #[test]
    fn dom0_init_speaks_the_protocol() {
        let init = include_str!("dom0/init");
        for word in [
            "dom0-ready",
            "scenario-begin",
            "scenario-end",
            "run-end",
            "scenario-timeout",
        ] {
            assert!(init.contains(word), "dom0/init never says {word}");
            let with_arg = format!("{word} x");
            assert!(
                !matches!(parse_event(&with_arg), Event::Unknown(_)),
                "{word}"
            );
        }
        assert_eq!(echo("domid $domid"), "echo \"@@STUBDOMS domid $domid\"");
    }
}
