//! Plain, line-based messages for humans and CI logs.

use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

pub fn set_quiet(q: bool) {
    QUIET.store(q, Ordering::Relaxed);
}

pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A step that is starting or done, e.g. `build rust-stubdom x86_64-pv`.
pub fn step(msg: &str) {
    if !quiet() {
        eprintln!("  {msg}");
    }
}

pub fn warn(msg: &str) {
    eprintln!("warning: {msg}");
}

/// How often a long step says it is still running when the output is not a terminal.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(30);

/// Shows that a long step is alive until dropped: on a terminal a spinner with the time
/// and the last line of its log, elsewhere a plain line every 30 s (so a CI log never sits
/// on a silent `building` line for minutes).
pub struct Heartbeat {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn heartbeat(what: &str, log: Option<std::path::PathBuf>) -> Heartbeat {
    use std::io::IsTerminal;
    if quiet() {
        return Heartbeat {
            stop: None,
            thread: None,
        };
    }
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let what = what.to_string();
    let terminal = std::io::stderr().is_terminal();
    let thread = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let last_line = || {
            log.as_ref()
                .and_then(|p| fs_err::read(p).ok())
                .and_then(|b| {
                    let text = String::from_utf8_lossy(&b).into_owned();
                    text.lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map(|l| l.chars().take(100).collect::<String>())
                })
                .unwrap_or_default()
        };
        if terminal {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(std::time::Duration::from_secs(1))
            {
                bar.set_message(format!(
                    "{what} ({} s) {}",
                    started.elapsed().as_secs(),
                    last_line()
                ));
            }
            bar.finish_and_clear();
        } else {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(HEARTBEAT) {
                let line = last_line();
                eprintln!(
                    "  {what}: still running after {} s{}",
                    started.elapsed().as_secs(),
                    if line.is_empty() {
                        String::new()
                    } else {
                        format!(" ({line})")
                    }
                );
            }
        }
    });
    Heartbeat {
        stop: Some(tx),
        thread: Some(thread),
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
