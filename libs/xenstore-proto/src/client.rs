//! A small blocking client, generic over how bytes move.
//!
//! The client sends one request at a time and reads until the reply with the same
//! `req_id` arrives. Watch events that arrive meanwhile are queued and handed out by
//! [`Client::next_event`]. How to wait for bytes is the transport's business: a guest
//! runtime polls its event channel, a Linux program blocks in `read(2)` on
//! `/dev/xen/xenbus`, a test double answers at once.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::decode::{Decoder, Message};
use crate::encode::Request;
use crate::error::{DecodeError, EncodeError, XsError};
use crate::perm::{DomId, Perm};
use crate::reply::{self, ReplyError, WatchEvent};
use crate::wire::{MsgType, MESSAGE_MAX, TX_NONE};

/// Moves message bytes to and from xenstored.
pub trait Transport {
    /// What can go wrong while moving bytes.
    type Error;

    /// Sends one complete message (header and payload), waiting for room as needed.
    fn send(&mut self, message: &[u8]) -> Result<(), Self::Error>;

    /// Receives at least one byte into `buf`, waiting until some is available, and
    /// returns how many. `Ok(0)` means the connection is closed. Reads may end anywhere,
    /// also in the middle of a message.
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error>;
}

impl<T: Transport + ?Sized> Transport for &mut T {
    type Error = T::Error;

    fn send(&mut self, message: &[u8]) -> Result<(), Self::Error> {
        (**self).send(message)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        (**self).recv(buf)
    }
}

/// How often [`Client::transaction`] runs its body before giving up on `EAGAIN`.
///
/// `EAGAIN` at commit means another writer got in between; a few retries resolve
/// ordinary contention, while an unbounded loop could spin forever against a busy
/// writer. After the last attempt the `EAGAIN` is returned to the caller.
pub const MAX_TRANSACTION_ATTEMPTS: usize = 8;

/// How often a `DIRECTORY_PART` listing restarts because the node changed under it.
const MAX_DIRECTORY_RESTARTS: usize = 8;

/// What went wrong in a client call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error<E> {
    /// The transport failed.
    Transport(E),
    /// The transport reported end of stream.
    Closed,
    /// xenstored answered with an error.
    Xs(XsError),
    /// xenstored sent something this crate cannot understand. If
    /// [`DecodeError::is_fatal`], the connection is unusable.
    Protocol(DecodeError),
    /// The request could not be encoded; nothing was sent.
    Encode(EncodeError),
}

impl<E> Error<E> {
    /// The error xenstored reported, if that is what happened.
    pub fn xs(&self) -> Option<&XsError> {
        match self {
            Error::Xs(err) => Some(err),
            _ => None,
        }
    }

    /// Whether xenstored said `ENOENT`.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Xs(XsError::NotFound))
    }
}

impl<E> From<DecodeError> for Error<E> {
    fn from(err: DecodeError) -> Self {
        Error::Protocol(err)
    }
}

impl<E> From<ReplyError> for Error<E> {
    fn from(err: ReplyError) -> Self {
        match err {
            ReplyError::Xs(err) => Error::Xs(err),
            ReplyError::Malformed(err) => Error::Protocol(err),
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Transport(err) => write!(f, "xenstore transport failed: {err}"),
            Error::Closed => f.write_str("xenstore connection closed"),
            Error::Xs(err) => err.fmt(f),
            Error::Protocol(err) => write!(f, "xenstore protocol error: {err}"),
            Error::Encode(err) => write!(f, "cannot encode xenstore request: {err}"),
        }
    }
}

#[cfg(feature = "std")]
impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Transport(err) => Some(err),
            Error::Closed => None,
            Error::Xs(err) => Some(err),
            Error::Protocol(err) => Some(err),
            Error::Encode(err) => Some(err),
        }
    }
}

/// A xenstore connection over a [`Transport`].
#[derive(Debug)]
pub struct Client<T: Transport> {
    transport: T,
    decoder: Decoder,
    next_req_id: u32,
    events: VecDeque<WatchEvent>,
    /// Transactions dropped without commit or abort; discarded before the next request
    /// so they do not hold xenstored resources.
    abandoned: Vec<u32>,
    send_buf: Vec<u8>,
    recv_buf: Vec<u8>,
}

type CallResult<T, E> = Result<T, Error<E>>;

impl<T: Transport> Client<T> {
    /// Wraps a connected transport.
    pub fn new(transport: T) -> Self {
        Client {
            transport,
            decoder: Decoder::new(),
            next_req_id: 1,
            events: VecDeque::new(),
            abandoned: Vec::new(),
            send_buf: Vec::with_capacity(MESSAGE_MAX),
            recv_buf: vec![0; MESSAGE_MAX],
        }
    }

    /// The transport, e.g. to reach its event channel.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The transport, mutably.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Gives the transport back. Queued events and buffered bytes are lost.
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Sends `request` (in transaction `tx_id`, or [`TX_NONE`]) and returns the reply
    /// message as it came, `XS_ERROR` included. The typed methods are built on this; use
    /// it for requests they do not cover.
    pub fn call(&mut self, request: &Request<'_>, tx_id: u32) -> CallResult<Message, T::Error> {
        while let Some(id) = self.abandoned.pop() {
            // The reply does not matter: whether xenstored discards the transaction now
            // or already dropped it (ENOENT), it is gone afterwards.
            self.round_trip(&Request::TransactionEnd { commit: false }, id)?;
        }
        self.round_trip(request, tx_id)
    }

    fn round_trip(&mut self, request: &Request<'_>, tx_id: u32) -> CallResult<Message, T::Error> {
        let req_id = self.next_req_id;
        // Watch events use req_id 0, so replies never do.
        self.next_req_id = self.next_req_id.checked_add(1).unwrap_or(1);
        self.send_buf.clear();
        request
            .encode(req_id, tx_id, &mut self.send_buf)
            .map_err(Error::Encode)?;
        self.transport
            .send(&self.send_buf)
            .map_err(Error::Transport)?;
        loop {
            let msg = self.next_message()?;
            if msg.header.msg_type == MsgType::WatchEvent {
                self.events.push_back(reply::watch_event(msg.as_ref())?);
            } else if msg.header.req_id == req_id {
                return Ok(msg);
            }
            // Anything else answers a request whose caller already got an error
            // (e.g. a malformed watch event arrived first); nobody waits for it.
        }
    }

    /// Blocks until the transport delivers a complete message.
    fn next_message(&mut self) -> CallResult<Message, T::Error> {
        loop {
            if let Some(msg) = self.decoder.next_message().map_err(Error::Protocol)? {
                return Ok(msg);
            }
            let n = self
                .transport
                .recv(&mut self.recv_buf)
                .map_err(Error::Transport)?;
            if n == 0 {
                return Err(Error::Closed);
            }
            let got = self.recv_buf.get(..n).unwrap_or(&self.recv_buf);
            self.decoder.push(got);
        }
    }

    /// Reads the value of `path`.
    pub fn read(&mut self, path: &str) -> CallResult<Vec<u8>, T::Error> {
        self.read_in(TX_NONE, path)
    }

    /// Reads the value of `path` as UTF-8 text.
    pub fn read_string(&mut self, path: &str) -> CallResult<String, T::Error> {
        into_string(self.read(path)?)
    }

    /// Writes `value` to `path`, creating missing parents.
    pub fn write(&mut self, path: &str, value: impl AsRef<[u8]>) -> CallResult<(), T::Error> {
        self.write_in(TX_NONE, path, value.as_ref())
    }

    /// Lists the children of `path` (switching to `DIRECTORY_PART` for long lists).
    pub fn directory(&mut self, path: &str) -> CallResult<Vec<String>, T::Error> {
        self.directory_in(TX_NONE, path)
    }

    /// Creates `path` and missing parents.
    pub fn mkdir(&mut self, path: &str) -> CallResult<(), T::Error> {
        self.ok_in(TX_NONE, &Request::Mkdir { path })
    }

    /// Removes `path` and everything below it.
    pub fn rm(&mut self, path: &str) -> CallResult<(), T::Error> {
        self.ok_in(TX_NONE, &Request::Rm { path })
    }

    /// Reads the permissions of `path`, owner first.
    pub fn get_perms(&mut self, path: &str) -> CallResult<Vec<Perm>, T::Error> {
        self.get_perms_in(TX_NONE, path)
    }

    /// Replaces the permissions of `path`; `perms[0]` names the owner.
    pub fn set_perms(&mut self, path: &str, perms: &[Perm]) -> CallResult<(), T::Error> {
        self.set_perms_in(TX_NONE, path, perms)
    }

    /// The home path of `domid`, `/local/domain/<domid>`.
    pub fn get_domain_path(&mut self, domid: DomId) -> CallResult<String, T::Error> {
        let msg = self.call(&Request::GetDomainPath { domid }, TX_NONE)?;
        Ok(reply::get_domain_path(msg.as_ref())?)
    }

    /// Whether xenstored talks to `domid`.
    pub fn is_domain_introduced(&mut self, domid: DomId) -> CallResult<bool, T::Error> {
        let msg = self.call(&Request::IsDomainIntroduced { domid }, TX_NONE)?;
        Ok(reply::is_domain_introduced(msg.as_ref())?)
    }

    /// Watches `path` and everything below it. xenstored fires one event for `path`
    /// straight away.
    pub fn watch(&mut self, path: &str, token: &str) -> CallResult<(), T::Error> {
        self.ok_in(TX_NONE, &Request::Watch { path, token })
    }

    /// Removes a watch, and drops its queued events.
    pub fn unwatch(&mut self, path: &str, token: &str) -> CallResult<(), T::Error> {
        self.ok_in(TX_NONE, &Request::Unwatch { path, token })?;
        self.events
            .retain(|event| !(event.token == token && is_subpath(path, &event.path)));
        Ok(())
    }

    /// Drops all watches and transactions of this connection, and the queued events.
    pub fn reset_watches(&mut self) -> CallResult<(), T::Error> {
        self.ok_in(TX_NONE, &Request::ResetWatches)?;
        self.events.clear();
        Ok(())
    }

    /// The next watch event, waiting for one if none is queued.
    pub fn next_event(&mut self) -> CallResult<WatchEvent, T::Error> {
        if let Some(event) = self.events.pop_front() {
            return Ok(event);
        }
        loop {
            let msg = self.next_message()?;
            if msg.header.msg_type == MsgType::WatchEvent {
                return Ok(reply::watch_event(msg.as_ref())?);
            }
            // A late reply to an abandoned request; nobody waits for it.
        }
    }

    /// The next queued watch event, without waiting.
    pub fn try_next_event(&mut self) -> Option<WatchEvent> {
        self.events.pop_front()
    }

    /// How many watch events are queued.
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    /// Opens a transaction. Prefer [`Client::transaction`], which retries on conflicts.
    pub fn begin(&mut self) -> CallResult<Transaction<'_, T>, T::Error> {
        let msg = self.call(&Request::TransactionStart, TX_NONE)?;
        let id = reply::transaction_start(msg.as_ref())?;
        Ok(Transaction {
            client: self,
            id,
            finished: false,
        })
    }

    /// Runs `body` in a transaction and commits it, retrying the whole body when
    /// xenstored reports a conflict (`EAGAIN` at commit, or from a request inside).
    ///
    /// `body` may run up to [`MAX_TRANSACTION_ATTEMPTS`] times, so it must not have side
    /// effects outside the transaction that cannot be repeated. If it fails, the
    /// transaction is discarded and its error returned.
    pub fn transaction<R, F>(&mut self, mut body: F) -> CallResult<R, T::Error>
    where
        F: FnMut(&mut Transaction<'_, T>) -> CallResult<R, T::Error>,
    {
        for _ in 0..MAX_TRANSACTION_ATTEMPTS {
            let mut tx = self.begin()?;
            match body(&mut tx) {
                Ok(value) => match tx.commit() {
                    Ok(()) => return Ok(value),
                    Err(Error::Xs(XsError::Again)) => continue,
                    Err(err) => return Err(err),
                },
                Err(Error::Xs(XsError::Again)) => match tx.abort() {
                    // xenstored may already have dropped the transaction (ENOENT).
                    Ok(()) | Err(Error::Xs(_)) => {}
                    Err(err) => return Err(err),
                },
                Err(err) => {
                    // The body's error says what went wrong; a failing abort adds
                    // nothing, and an unfinished transaction is cleaned up later.
                    let _ = tx.abort();
                    return Err(err);
                }
            }
        }
        Err(Error::Xs(XsError::Again))
    }

    fn ok_in(&mut self, tx_id: u32, request: &Request<'_>) -> CallResult<(), T::Error> {
        let msg = self.call(request, tx_id)?;
        Ok(reply::ok(msg.as_ref(), request.msg_type())?)
    }

    fn read_in(&mut self, tx_id: u32, path: &str) -> CallResult<Vec<u8>, T::Error> {
        let msg = self.call(&Request::Read { path }, tx_id)?;
        Ok(reply::read(msg.as_ref())?)
    }

    fn write_in(&mut self, tx_id: u32, path: &str, value: &[u8]) -> CallResult<(), T::Error> {
        self.ok_in(tx_id, &Request::Write { path, value })
    }

    fn get_perms_in(&mut self, tx_id: u32, path: &str) -> CallResult<Vec<Perm>, T::Error> {
        let msg = self.call(&Request::GetPerms { path }, tx_id)?;
        Ok(reply::get_perms(msg.as_ref())?)
    }

    fn set_perms_in(&mut self, tx_id: u32, path: &str, perms: &[Perm]) -> CallResult<(), T::Error> {
        let perms = perms.into();
        self.ok_in(tx_id, &Request::SetPerms { path, perms })
    }

    fn directory_in(&mut self, tx_id: u32, path: &str) -> CallResult<Vec<String>, T::Error> {
        let msg = self.call(&Request::Directory { path }, tx_id)?;
        match reply::directory(msg.as_ref()) {
            Err(ReplyError::Xs(XsError::TooBig)) => self.directory_parts(tx_id, path),
            other => Ok(other?),
        }
    }

    /// Collects a listing too long for one message, restarting when the node's
    /// generation changes between pieces.
    fn directory_parts(&mut self, tx_id: u32, path: &str) -> CallResult<Vec<String>, T::Error> {
        'restart: for _ in 0..MAX_DIRECTORY_RESTARTS {
            let mut names = Vec::new();
            let mut offset = 0u32;
            let mut generation = None;
            loop {
                let msg = self.call(&Request::DirectoryPart { path, offset }, tx_id)?;
                let part = reply::directory_part(msg.as_ref())?;
                if *generation.get_or_insert(part.generation) != part.generation {
                    continue 'restart;
                }
                names.extend(part.names);
                if part.complete {
                    return Ok(names);
                }
                // A piece without names and without the end marker would loop forever.
                offset = match offset.checked_add(part.consumed) {
                    Some(next) if part.consumed > 0 => next,
                    _ => return Err(Error::Protocol(DecodeError::UnexpectedPayload)),
                };
            }
        }
        Err(Error::Xs(XsError::Again))
    }
}

/// An open transaction. Finish it with [`Transaction::commit`] or
/// [`Transaction::abort`]; one that is dropped unfinished is discarded by the client
/// before its next request.
#[derive(Debug)]
pub struct Transaction<'c, T: Transport> {
    client: &'c mut Client<T>,
    id: u32,
    finished: bool,
}

impl<T: Transport> Transaction<'_, T> {
    /// The id xenstored gave the transaction.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Reads the value of `path` as seen inside the transaction.
    pub fn read(&mut self, path: &str) -> CallResult<Vec<u8>, T::Error> {
        self.client.read_in(self.id, path)
    }

    /// Reads the value of `path` as UTF-8 text.
    pub fn read_string(&mut self, path: &str) -> CallResult<String, T::Error> {
        into_string(self.read(path)?)
    }

    /// Writes `value` to `path`.
    pub fn write(&mut self, path: &str, value: impl AsRef<[u8]>) -> CallResult<(), T::Error> {
        self.client.write_in(self.id, path, value.as_ref())
    }

    /// Lists the children of `path`.
    pub fn directory(&mut self, path: &str) -> CallResult<Vec<String>, T::Error> {
        self.client.directory_in(self.id, path)
    }

    /// Creates `path` and missing parents.
    pub fn mkdir(&mut self, path: &str) -> CallResult<(), T::Error> {
        self.client.ok_in(self.id, &Request::Mkdir { path })
    }

    /// Removes `path` and everything below it.
    pub fn rm(&mut self, path: &str) -> CallResult<(), T::Error> {
        self.client.ok_in(self.id, &Request::Rm { path })
    }

    /// Reads the permissions of `path`.
    pub fn get_perms(&mut self, path: &str) -> CallResult<Vec<Perm>, T::Error> {
        self.client.get_perms_in(self.id, path)
    }

    /// Replaces the permissions of `path`.
    pub fn set_perms(&mut self, path: &str, perms: &[Perm]) -> CallResult<(), T::Error> {
        self.client.set_perms_in(self.id, path, perms)
    }

    /// Commits. `Err(Error::Xs(XsError::Again))` means another writer got in between
    /// and nothing was applied.
    pub fn commit(mut self) -> CallResult<(), T::Error> {
        self.end(true)
    }

    /// Discards all changes.
    pub fn abort(mut self) -> CallResult<(), T::Error> {
        self.end(false)
    }

    fn end(&mut self, commit: bool) -> CallResult<(), T::Error> {
        // Whatever the outcome, xenstored forgets the transaction once it sees the end.
        self.finished = true;
        self.client
            .ok_in(self.id, &Request::TransactionEnd { commit })
    }
}

impl<T: Transport> Drop for Transaction<'_, T> {
    fn drop(&mut self) {
        if !self.finished {
            self.client.abandoned.push(self.id);
        }
    }
}

fn into_string<E>(value: Vec<u8>) -> CallResult<String, E> {
    String::from_utf8(value).map_err(|_| Error::Protocol(DecodeError::InvalidUtf8))
}

/// Whether `child` is `parent` or below it, by xenstore's rules.
pub(crate) fn is_subpath(parent: &str, child: &str) -> bool {
    match child.strip_prefix(parent) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || parent == "/",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_subpath;

    #[test]
    fn subpaths() {
        let table = [
            ("/a", "/a", true),
            ("/a", "/a/b", true),
            ("/a", "/ab", false),
            ("/a/b", "/a", false),
            ("/", "/a", true),
            ("@releaseDomain", "@releaseDomain", true),
            ("dev", "dev/vbd", true),
        ];
        for (parent, child, expected) in table {
            assert_eq!(is_subpath(parent, child), expected, "{parent} {child}");
        }
    }
}
