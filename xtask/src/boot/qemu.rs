//! One QEMU run: start it, read its serial console line by line with a deadline, keep the
//! whole log, and make sure no process outlives the run.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A running QEMU. Dropping it kills the process (and reaps it), so an early return or a
/// failed check never leaves QEMU behind.
pub struct Qemu {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: std::fs::File,
    untangle: Untangle,
    pub started: Instant,
}

pub enum Next {
    Line(String),
    /// QEMU closed its console (it exited).
    Closed,
    TimedOut,
}

impl Qemu {
    pub fn start(mut cmd: Command, log_path: &Path) -> Result<Qemu> {
        if let Some(dir) = log_path.parent() {
            fs_err::create_dir_all(dir)?;
        }
        let log = std::fs::File::create(log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd.spawn().with_context(|| {
            format!("starting {program} (is it installed? `cargo xtask doctor`)")
        })?;
        let (tx, rx) = mpsc::channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut buf = Vec::new();
                while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\r', '\n'])
                        .replace('\r', "");
                    if tx.send(line).is_err() {
                        break;
                    }
                    buf.clear();
                }
            });
        }
        Ok(Qemu {
            child,
            lines: rx,
            log,
            untangle: Untangle::default(),
            started: Instant::now(),
        })
    }

    /// The next console line, waiting until `deadline` at the latest.
    pub fn next_line(&mut self, deadline: Instant) -> Next {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(line) => {
                let _ = writeln!(self.log, "{line}");
                Next::Line(self.untangle.push(line))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Next::TimedOut,
            Err(mpsc::RecvTimeoutError::Disconnected) => Next::Closed,
        }
    }

    /// Waits for QEMU to exit by itself (after dom0's `reboot -f`), killing it at `deadline`.
    pub fn finish(mut self, deadline: Instant) -> Result<std::process::ExitStatus> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                while let Ok(line) = self.lines.try_recv() {
                    let _ = writeln!(self.log, "{line}");
                }
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                anyhow::bail!("QEMU did not exit in time and was killed");
            }
            // Keep draining so the log is complete and the pipes never fill.
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                let _ = writeln!(self.log, "{line}");
            }
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Xen writes its own lines (`(XEN) ...`) and guests' debug-port lines (`(dN) ...`) to the
/// serial port whole, but dom0's console reaches it in pieces, so a Xen line can land in
/// the middle of a dom0 line. Such a Xen line is passed on by itself, and the dom0 piece
/// before it is joined to the dom0 text that follows (the rest of that line).
#[derive(Default)]
struct Untangle {
    partial: String,
}

impl Untangle {
    fn push(&mut self, line: String) -> String {
        match xen_line_at(&line) {
            Some(0) => line,
            Some(at) => {
                self.partial.push_str(&line[..at]);
                line[at..].to_string()
            }
            None => std::mem::take(&mut self.partial) + &line,
        }
    }
}

/// Where a Xen line (`(XEN) ` or `(d<digits>) `) starts in `line`, if one does.
fn xen_line_at(line: &str) -> Option<usize> {
    line.match_indices('(').map(|(i, _)| i).find(|&i| {
        let rest = &line[i + 1..];
        if rest.starts_with("XEN) ") {
            return true;
        }
        let digits = rest
            .strip_prefix('d')
            .map_or(0, |r| r.bytes().take_while(u8::is_ascii_digit).count());
        digits > 0 && rest[1 + digits..].starts_with(") ")
    })
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dom0 line cut by a guest's debug line comes out whole after it; Xen lines and
    /// plain dom0 lines pass unchanged.
    #[test]
    fn xen_lines_inside_dom0_lines_are_taken_apart() {
        let raw = [
            "@@G STUBDOMS-OK(d1) enter handle_18:",
            "(d1) Booting from ROM...",
            "",
            "@@C half(XEN) d2v0 something",
            " and the rest",
            "(XEN) whole",
            "@@G text with (d1)x and (dx) y",
        ];
        let want = [
            "(d1) enter handle_18:",
            "(d1) Booting from ROM...",
            "@@G STUBDOMS-OK",
            "(XEN) d2v0 something",
            "@@C half and the rest",
            "(XEN) whole",
            "@@G text with (d1)x and (dx) y",
        ];
        let mut u = Untangle::default();
        let got: Vec<String> = raw.iter().map(|l| u.push(l.to_string())).collect();
        assert_eq!(got, want);
    }
}
