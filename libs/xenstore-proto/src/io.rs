//! A [`Transport`] over any byte stream, such as Linux's `/dev/xen/xenbus` (needs `std`).

use std::io::{ErrorKind, Read, Write};

use crate::client::Transport;

/// Speaks the protocol over a `Read + Write` stream.
///
/// For `/dev/xen/xenbus` open the device read-write and wrap the file: the kernel
/// accepts whole messages per `write(2)`, echoes `req_id` in replies and delivers watch
/// events for watches set through the same file descriptor.
#[derive(Debug)]
pub struct IoTransport<S> {
    stream: S,
}

impl<S> IoTransport<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Self {
        IoTransport { stream }
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Gives the stream back.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S: Read + Write> Transport for IoTransport<S> {
    type Error = std::io::Error;

    fn send(&mut self, message: &[u8]) -> std::io::Result<()> {
        // One write_all, so a whole message normally goes down in one system call.
        self.stream.write_all(message)?;
        self.stream.flush()
    }

    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.stream.read(buf) {
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}
