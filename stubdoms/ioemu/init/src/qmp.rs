//! A minimal QMP client: one command at a time, optionally passing file descriptors.
//!
//! QEMU sends one JSON object per line: a greeting, replies carrying the `id` of their
//! command (`return` or `error`), and asynchronous events. The client skips the greeting
//! and events (handing events to a callback for the log) until its reply arrives.

use std::io::{self, Read};
use std::os::fd::RawFd;

use serde_json::{json, Map, Value};

use crate::Error;

/// A byte stream to QEMU that can carry file descriptors with a write.
pub trait Channel: Read {
    /// Writes all of `data`, passing `fds` along with the first byte.
    fn send(&mut self, data: &[u8], fds: &[RawFd]) -> io::Result<()>;
}

/// One message from QEMU.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// The banner sent on connect.
    Greeting,
    /// An asynchronous event, by name.
    Event(String),
    /// A successful reply.
    Return {
        /// The command's id.
        id: Option<u64>,
        /// The `return` value.
        value: Value,
    },
    /// A failed command.
    Failure {
        /// The command's id.
        id: Option<u64>,
        /// QEMU's description of the error.
        desc: String,
    },
}

/// Classifies one line from QEMU.
pub fn parse_line(line: &[u8]) -> Result<Incoming, Error> {
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| Error::Qmp(format!("QEMU sent something that is not JSON ({e})")))?;
    let Value::Object(mut map) = value else {
        return Err(Error::Qmp(
            "QEMU sent a JSON value that is not an object".into(),
        ));
    };
    let id = map.get("id").and_then(Value::as_u64);
    if map.contains_key("QMP") {
        Ok(Incoming::Greeting)
    } else if let Some(event) = map.get("event") {
        Ok(Incoming::Event(event.as_str().unwrap_or("?").to_owned()))
    } else if let Some(value) = map.remove("return") {
        Ok(Incoming::Return { id, value })
    } else if let Some(err) = map.get("error") {
        let desc = err
            .get("desc")
            .and_then(Value::as_str)
            .unwrap_or("no description");
        Ok(Incoming::Failure {
            id,
            desc: desc.to_owned(),
        })
    } else {
        Err(Error::Qmp(
            "QEMU sent an object that is no greeting, event or reply".into(),
        ))
    }
}

/// A QMP connection.
pub struct Qmp<C> {
    chan: C,
    buf: Vec<u8>,
    next_id: u64,
    on_event: Box<dyn FnMut(&str) + Send>,
}

impl<C: Channel> Qmp<C> {
    /// Negotiates capabilities on a fresh connection. `on_event` sees every event name.
    pub fn handshake(chan: C, on_event: Box<dyn FnMut(&str) + Send>) -> Result<Self, Error> {
        let mut qmp = Qmp {
            chan,
            buf: Vec::new(),
            next_id: 1,
            on_event,
        };
        qmp.execute("qmp_capabilities", Value::Object(Map::new()), &[])?;
        Ok(qmp)
    }

    /// Runs `command` with `arguments`, passing `fds`, and returns its `return` value.
    pub fn execute(
        &mut self,
        command: &str,
        arguments: Value,
        fds: &[RawFd],
    ) -> Result<Value, Error> {
        let id = self.next_id;
        self.next_id += 1;
        let mut text = json!({ "execute": command, "arguments": arguments, "id": id }).to_string();
        text.push('\n');
        self.chan
            .send(text.as_bytes(), fds)
            .map_err(|e| Error::io(format!("sending QMP {command}"), e))?;
        loop {
            match parse_line(&self.next_line()?)? {
                Incoming::Greeting => {}
                Incoming::Event(name) => (self.on_event)(&name),
                Incoming::Return {
                    id: Some(got),
                    value,
                } if got == id => return Ok(value),
                Incoming::Failure {
                    id: Some(got),
                    desc,
                } if got == id => return Err(Error::Qmp(format!("{command} failed: {desc}"))),
                other => {
                    return Err(Error::Qmp(format!(
                        "unexpected reply to {command}: {other:?}"
                    )))
                }
            }
        }
    }

    /// `add-fd`: puts `fd` into a new fdset (or `fdset_id`) and returns the fdset's id.
    pub fn add_fd(
        &mut self,
        fd: RawFd,
        fdset_id: Option<i64>,
        opaque: Option<&str>,
    ) -> Result<i64, Error> {
        let mut args = Map::new();
        if let Some(id) = fdset_id {
            args.insert("fdset-id".into(), id.into());
        }
        if let Some(opaque) = opaque {
            args.insert("opaque".into(), opaque.into());
        }
        let ret = self.execute("add-fd", Value::Object(args), &[fd])?;
        ret.get("fdset-id")
            .and_then(Value::as_i64)
            .ok_or_else(|| Error::Qmp(format!("add-fd returned no fdset-id: {ret}")))
    }

    /// `remove-fd`: removes a whole fdset.
    pub fn remove_fdset(&mut self, fdset_id: i64) -> Result<(), Error> {
        self.execute("remove-fd", json!({ "fdset-id": fdset_id }), &[])
            .map(drop)
    }

    /// Reads further messages without sending anything (events while idle); returns
    /// `Ok(false)` when QEMU closed the connection.
    pub fn drain_one(&mut self) -> Result<bool, Error> {
        match self.read_line()? {
            None => Ok(false),
            Some(line) => {
                if let Incoming::Event(name) = parse_line(&line)? {
                    (self.on_event)(&name);
                }
                Ok(true)
            }
        }
    }

    /// The channel, e.g. to poll it.
    pub fn channel(&self) -> &C {
        &self.chan
    }

    fn next_line(&mut self) -> Result<Vec<u8>, Error> {
        self.read_line()?
            .ok_or_else(|| Error::Qmp("QEMU closed the monitor connection".into()))
    }

    fn read_line(&mut self) -> Result<Option<Vec<u8>>, Error> {
        const MAX_LINE: usize = 1 << 20;
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(line));
            }
            if self.buf.len() > MAX_LINE {
                return Err(Error::Qmp("QEMU sent a line longer than 1 MiB".into()));
            }
            let mut chunk = [0u8; 4096];
            let n = loop {
                match self.chan.read(&mut chunk) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other.map_err(|e| Error::io("reading from QMP", e))?,
                }
            };
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    /// A scripted QEMU: answers each command with the next canned reply (with the id
    /// substituted), dribbling bytes a few at a time.
    struct FakeQemu {
        out: VecDeque<u8>,
        replies: VecDeque<String>,
        sent: Vec<(Value, Vec<RawFd>)>,
    }

    impl Read for FakeQemu {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(7).min(self.out.len());
            for b in buf.iter_mut().take(n) {
                *b = self.out.pop_front().unwrap_or(0);
            }
            Ok(n)
        }
    }

    impl Channel for FakeQemu {
        fn send(&mut self, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
            let cmd: Value = serde_json::from_slice(data).map_err(io::Error::other)?;
            let id = cmd["id"].as_u64().unwrap_or(0);
            self.sent.push((cmd, fds.to_vec()));
            if let Some(reply) = self.replies.pop_front() {
                self.out
                    .extend(reply.replace("ID", &id.to_string()).bytes());
            }
            Ok(())
        }
    }

    fn fake(replies: &[&str]) -> FakeQemu {
        let greeting = "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n";
        FakeQemu {
            out: greeting.bytes().collect(),
            replies: replies.iter().map(|s| s.to_string()).collect(),
            sent: Vec::new(),
        }
    }

    type EventSink = Box<dyn FnMut(&str) + Send>;

    fn events() -> (Arc<Mutex<Vec<String>>>, EventSink) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        (
            seen,
            Box::new(move |name: &str| sink.lock().unwrap().push(name.to_owned())),
        )
    }

    #[test]
    fn add_fd_passes_the_descriptor_and_returns_the_fdset() {
        let q = fake(&[
            "{\"return\": {}, \"id\": ID}\r\n",
            "{\"timestamp\": {}, \"event\": \"RESUME\"}\r\n{\"return\": {\"fdset-id\": 1, \"fd\": 25}, \"id\": ID}\r\n",
        ]);
        let (seen, on_event) = events();
        let mut qmp = Qmp::handshake(q, on_event).unwrap();
        assert_eq!(qmp.add_fd(9, Some(1), None).unwrap(), 1);
        let (cmd, fds) = &qmp.chan.sent[1];
        assert_eq!(cmd["execute"], "add-fd");
        assert_eq!(cmd["arguments"], json!({ "fdset-id": 1 }));
        assert_eq!(fds, &[9]);
        assert_eq!(*seen.lock().unwrap(), ["RESUME"]);
    }

    #[test]
    fn add_fd_with_opaque() {
        let q = fake(&[
            "{\"return\": {}, \"id\": ID}\n",
            "{\"return\": {\"fdset-id\": 4, \"fd\": 30}, \"id\": ID}\n",
        ]);
        let mut qmp = Qmp::handshake(q, events().1).unwrap();
        assert_eq!(qmp.add_fd(11, None, Some("stub-devid:5632")).unwrap(), 4);
        assert_eq!(
            qmp.chan.sent[1].0["arguments"],
            json!({ "opaque": "stub-devid:5632" })
        );
    }

    #[test]
    fn errors_carry_qemus_description() {
        let q = fake(&[
            "{\"return\": {}, \"id\": ID}\n",
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"File descriptor named 'x' not found\"}, \"id\": ID}\n",
        ]);
        let mut qmp = Qmp::handshake(q, events().1).unwrap();
        let err = qmp.remove_fdset(3).unwrap_err().to_string();
        assert!(
            err.contains("remove-fd failed: File descriptor named"),
            "{err}"
        );
    }

    #[test]
    fn closed_connection_and_garbage_are_errors() {
        let q = fake(&[]);
        assert!(matches!(Qmp::handshake(q, events().1), Err(Error::Qmp(_))));
        let q = fake(&["not json\n"]);
        assert!(matches!(Qmp::handshake(q, events().1), Err(Error::Qmp(_))));
        let q = fake(&["{\"return\": {}, \"id\": 999}\n"]);
        assert!(matches!(Qmp::handshake(q, events().1), Err(Error::Qmp(_))));
    }

    #[test]
    fn classifies_lines() {
        let cases: &[(&str, Incoming)] = &[
            ("{\"QMP\": {}}", Incoming::Greeting),
            (
                "{\"event\": \"STOP\", \"timestamp\": {}}",
                Incoming::Event("STOP".into()),
            ),
            (
                "{\"return\": [], \"id\": 3}",
                Incoming::Return {
                    id: Some(3),
                    value: json!([]),
                },
            ),
            (
                "{\"error\": {\"desc\": \"no\"}}",
                Incoming::Failure {
                    id: None,
                    desc: "no".into(),
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(&parse_line(line.as_bytes()).unwrap(), want, "{line}");
        }
        for bad in ["[]", "{}", "{\"x\": 1}", "{"] {
            assert!(parse_line(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
