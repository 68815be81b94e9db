//! An in-memory xenstored for tests (feature `test-utils`).
//!
//! [`MemXenstore`] keeps a tree of nodes with values and permissions. Each
//! [`MemConnection`] is one client connection, as a given domain, implementing
//! [`Transport`]: it decodes requests with this crate's wire code, applies them, and
//! queues replies and watch events for `recv`. Several connections may share one store,
//! so tests can play a guest and the toolstack at the same time.
//!
//! Behaviour follows `docs/misc/xenstore.txt` and C xenstored where it matters to
//! clients:
//!
//! - relative paths resolve against `/local/domain/<domid>`; bad paths get `EINVAL`;
//! - permissions: dom0 may do anything; otherwise the owner (first entry) has full
//!   access, listed domains get their entry, everyone else the first entry's access; a
//!   domain set up with [`MemXenstore::set_target`] also has its target's rights;
//!   nodes created by a domain other than dom0 are owned by it;
//! - `WRITE`/`MKDIR` create missing parents, `RM` removes a subtree;
//! - watches fire once when set, then for changes at or below the watched path (and
//!   for the watched path itself when an ancestor is removed); relative watches get
//!   relative event paths; events are not filtered by permissions;
//! - a transaction works on a snapshot and commits only if no other change was
//!   committed since it started, otherwise `EAGAIN` (the simple rule of the protocol
//!   document; real xenstored only fails on conflicting nodes);
//! - `DIRECTORY` answers `E2BIG` when the list does not fit, `DIRECTORY_PART` works;
//! - a header announcing more than 4096 bytes closes the connection, as xenstored does.
//!
//! There are no quotas, and guest-forbidden requests (`INTRODUCE`, `CONTROL`, ...) get
//! `ENOSYS`.

use alloc::borrow::Cow;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;

use crate::client::{is_subpath, Transport};
use crate::decode::{Decoder, MessageRef};
use crate::encode::{encode_raw, Request};
use crate::error::{DecodeError, XsError};
use crate::perm::{Access, DomId, Perm};
use crate::wire::{MsgType, ABS_PATH_MAX, PAYLOAD_MAX, REL_PATH_MAX, TX_NONE};

/// A shared in-memory xenstore. Cloning gives another handle to the same store.
#[derive(Clone)]
pub struct MemXenstore {
    state: Rc<RefCell<State>>,
}

/// One connection to a [`MemXenstore`], as a given domain.
pub struct MemConnection {
    state: Rc<RefCell<State>>,
    id: u64,
    domid: DomId,
    decoder: Decoder,
    chunk: usize,
}

/// Errors of [`MemConnection`] as a transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemError {
    /// `recv` found nothing to deliver. A real transport would wait forever here, so the
    /// client is waiting for something this store will never send.
    NoData,
    /// `send` on a connection the store has closed (after a framing error).
    Closed,
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemError::NoData => f.write_str("in-memory xenstore has nothing to deliver"),
            MemError::Closed => f.write_str("in-memory xenstore closed the connection"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for MemError {}

#[derive(Clone)]
struct Node {
    value: Vec<u8>,
    perms: Vec<Perm>,
    /// Changes whenever the node's children change, for `DIRECTORY_PART`.
    generation: u64,
}

type Tree = BTreeMap<String, Node>;

struct Watch {
    /// As the client gave it: absolute, relative or `@special`.
    path: String,
    token: String,
}

struct Tx {
    /// The store's commit count when the transaction started.
    base: u64,
    nodes: Tree,
    changes: Vec<Change>,
}

struct Conn {
    domid: DomId,
    outbox: VecDeque<u8>,
    watches: Vec<Watch>,
    txs: BTreeMap<u32, Tx>,
    closed: bool,
}

/// A modification that fires watches.
#[derive(Clone)]
struct Change {
    path: String,
    /// A removal: watches below `path` fire too.
    recursive: bool,
}

/// Who sends a request: a connection, or the test itself acting as the toolstack.
#[derive(Clone, Copy)]
struct Caller {
    conn: Option<u64>,
    domid: DomId,
}

const TOOLSTACK: Caller = Caller {
    conn: None,
    domid: 0,
};

/// A successful request: reply type and payload, and for `WATCH` the initial event,
/// which xenstored sends after the reply.
struct Outcome {
    reply: (MsgType, Vec<u8>),
    initial_event: Option<(String, String)>,
}

struct State {
    nodes: Tree,
    /// Committed changes so far; a transaction that saw a different count fails.
    commits: u64,
    next_generation: u64,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    next_tx: u32,
    introduced: BTreeSet<DomId>,
    targets: BTreeMap<DomId, DomId>,
}

impl Default for MemXenstore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemXenstore {
    /// A store holding `/`, `/local`, `/local/domain` and `/local/domain/0`, all owned
    /// by dom0 with no access for others. Dom0 counts as introduced.
    pub fn new() -> Self {
        let mut nodes = Tree::new();
        for path in ["/", "/local", "/local/domain", "/local/domain/0"] {
            nodes.insert(
                String::from(path),
                Node {
                    value: Vec::new(),
                    perms: alloc::vec![Perm::new(0, Access::None)],
                    generation: 0,
                },
            );
        }
        let state = State {
            nodes,
            commits: 0,
            next_generation: 1,
            conns: BTreeMap::new(),
            next_conn: 0,
            next_tx: 1,
            introduced: BTreeSet::from([0]),
            targets: BTreeMap::new(),
        };
        MemXenstore {
            state: Rc::new(RefCell::new(state)),
        }
    }

    /// Opens a connection as `domid`.
    pub fn connect(&self, domid: DomId) -> MemConnection {
        let mut state = self.state.borrow_mut();
        let id = state.next_conn;
        state.next_conn += 1;
        state.conns.insert(
            id,
            Conn {
                domid,
                outbox: VecDeque::new(),
                watches: Vec::new(),
                txs: BTreeMap::new(),
                closed: false,
            },
        );
        MemConnection {
            state: Rc::clone(&self.state),
            id,
            domid,
            decoder: Decoder::new(),
            chunk: usize::MAX,
        }
    }

    /// Creates `/local/domain/<domid>` owned by `domid`, marks the domain introduced and
    /// fires `@introduceDomain`, as the toolstack does when it builds a domain.
    pub fn introduce_domain(&self, domid: DomId) -> Result<(), XsError> {
        let home = format!("/local/domain/{domid}");
        self.mkdir(&home)?;
        self.set_perms(&home, &[Perm::new(domid, Access::None)])?;
        let mut state = self.state.borrow_mut();
        state.introduced.insert(domid);
        state.fire(&Change {
            path: String::from("@introduceDomain"),
            recursive: false,
        });
        Ok(())
    }

    /// Marks `domid` gone and fires `@releaseDomain`.
    pub fn release_domain(&self, domid: DomId) {
        let mut state = self.state.borrow_mut();
        state.introduced.remove(&domid);
        state.fire(&Change {
            path: String::from("@releaseDomain"),
            recursive: false,
        });
    }

    /// Lets `domid` act with the rights of `target` (`XS_SET_TARGET`), as for a device
    /// model stub domain and its guest.
    pub fn set_target(&self, domid: DomId, target: DomId) {
        self.state.borrow_mut().targets.insert(domid, target);
    }

    /// Writes as the toolstack (no permission checks), firing watches.
    pub fn write(&self, path: &str, value: impl AsRef<[u8]>) -> Result<(), XsError> {
        let value = value.as_ref();
        self.toolstack(Request::Write { path, value }).map(drop)
    }

    /// Creates a node as the toolstack, firing watches.
    pub fn mkdir(&self, path: &str) -> Result<(), XsError> {
        self.toolstack(Request::Mkdir { path }).map(drop)
    }

    /// Removes a subtree as the toolstack, firing watches.
    pub fn rm(&self, path: &str) -> Result<(), XsError> {
        self.toolstack(Request::Rm { path }).map(drop)
    }

    /// Sets permissions as the toolstack, firing watches.
    pub fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), XsError> {
        let perms = Cow::Borrowed(perms);
        self.toolstack(Request::SetPerms { path, perms }).map(drop)
    }

    /// The value at an absolute `path`, if the node exists.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        state.nodes.get(path).map(|node| node.value.clone())
    }

    /// The permissions of an absolute `path`, if the node exists.
    pub fn get_perms(&self, path: &str) -> Option<Vec<Perm>> {
        let state = self.state.borrow();
        state.nodes.get(path).map(|node| node.perms.clone())
    }

    /// The child names of an absolute `path` (empty if it does not exist).
    pub fn directory(&self, path: &str) -> Vec<String> {
        let state = self.state.borrow();
        children(&state.nodes, path).map(String::from).collect()
    }

    /// Whether a node exists at an absolute `path`.
    pub fn exists(&self, path: &str) -> bool {
        self.state.borrow().nodes.contains_key(path)
    }

    fn toolstack(&self, request: Request<'_>) -> Result<Outcome, XsError> {
        self.state.borrow_mut().process(TOOLSTACK, TX_NONE, request)
    }
}

impl MemConnection {
    /// The domain this connection speaks for.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// Makes `recv` hand out at most `max` bytes per call (at least 1), to exercise
    /// reassembly of messages that arrive in pieces.
    pub fn set_recv_chunk(&mut self, max: usize) {
        self.chunk = max.max(1);
    }

    /// Transactions this connection has open.
    pub fn open_transactions(&self) -> usize {
        let state = self.state.borrow();
        state.conns.get(&self.id).map_or(0, |conn| conn.txs.len())
    }

    /// Watches this connection has registered.
    pub fn watch_count(&self) -> usize {
        let state = self.state.borrow();
        state
            .conns
            .get(&self.id)
            .map_or(0, |conn| conn.watches.len())
    }

    /// Bytes queued for `recv` (replies and watch events).
    pub fn pending(&self) -> usize {
        let state = self.state.borrow();
        state
            .conns
            .get(&self.id)
            .map_or(0, |conn| conn.outbox.len())
    }
}

impl Transport for MemConnection {
    type Error = MemError;

    fn send(&mut self, message: &[u8]) -> Result<(), MemError> {
        let mut state = self.state.borrow_mut();
        if state.conns.get(&self.id).is_none_or(|conn| conn.closed) {
            return Err(MemError::Closed);
        }
        self.decoder.push(message);
        loop {
            match self.decoder.next_message() {
                Ok(Some(msg)) => state.handle(self.id, msg.as_ref()),
                Ok(None) => return Ok(()),
                Err(_) => {
                    // xenstored drops a connection whose framing is broken.
                    state.close(self.id);
                    return Ok(());
                }
            }
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, MemError> {
        let mut state = self.state.borrow_mut();
        let Some(conn) = state.conns.get_mut(&self.id) else {
            return Ok(0);
        };
        if conn.outbox.is_empty() {
            return if conn.closed {
                Ok(0)
            } else {
                Err(MemError::NoData)
            };
        }
        let n = buf.len().min(self.chunk).min(conn.outbox.len());
        for (dst, src) in buf.iter_mut().zip(conn.outbox.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }
}

impl Drop for MemConnection {
    fn drop(&mut self) {
        // Watches and transactions die with the connection, as in xenstored.
        if let Ok(mut state) = self.state.try_borrow_mut() {
            state.conns.remove(&self.id);
        }
    }
}

impl State {
    /// Answers one request from connection `conn_id`.
    fn handle(&mut self, conn_id: u64, msg: MessageRef<'_>) {
        let Some(domid) = self.conns.get(&conn_id).map(|conn| conn.domid) else {
            return;
        };
        let caller = Caller {
            conn: Some(conn_id),
            domid,
        };
        let outcome = match Request::parse(msg) {
            Ok(request) => self.process(caller, msg.header.tx_id, request),
            Err(DecodeError::UnsupportedType(_)) => Err(XsError::NotImplemented),
            Err(_) => Err(XsError::Invalid),
        };
        let (reply, initial_event) = match outcome {
            Ok(outcome) => (outcome.reply, outcome.initial_event),
            Err(err) => {
                let mut payload = Vec::from(err.name().as_bytes());
                payload.push(0);
                ((MsgType::Error, payload), None)
            }
        };
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let (msg_type, payload) = reply;
        push_message(
            conn,
            msg_type,
            msg.header.req_id,
            msg.header.tx_id,
            &payload,
        );
        if let Some((path, token)) = initial_event {
            push_event(conn, &path, &token);
        }
    }

    fn process(
        &mut self,
        caller: Caller,
        tx: u32,
        request: Request<'_>,
    ) -> Result<Outcome, XsError> {
        let msg_type = request.msg_type();
        let reply = |payload: Vec<u8>| Outcome {
            reply: (msg_type, payload),
            initial_event: None,
        };
        let ok = || reply(Vec::from(&b"OK\0"[..]));
        let domid = caller.domid;
        match request {
            Request::Read { path } => {
                let path = resolve(domid, path)?;
                let node = self.check(caller, tx, &path, Access::Read)?;
                Ok(reply(node.value.clone()))
            }
            Request::GetPerms { path } => {
                let path = resolve(domid, path)?;
                let node = self.check(caller, tx, &path, Access::Read)?;
                let mut payload = Vec::new();
                for perm in &node.perms {
                    payload.extend_from_slice(format!("{perm}\0").as_bytes());
                }
                Ok(reply(payload))
            }
            Request::Directory { path } => {
                let path = resolve(domid, path)?;
                self.check(caller, tx, &path, Access::Read)?;
                let payload = child_list(self.tree(caller, tx)?, &path);
                if payload.len() > PAYLOAD_MAX {
                    return Err(XsError::TooBig);
                }
                Ok(reply(payload))
            }
            Request::DirectoryPart { path, offset } => {
                let path = resolve(domid, path)?;
                let generation = self.check(caller, tx, &path, Access::Read)?.generation;
                let list = child_list(self.tree(caller, tx)?, &path);
                let offset = usize::try_from(offset).map_err(|_| XsError::Invalid)?;
                Ok(reply(directory_part(&list, offset, generation)?))
            }
            Request::Write { path, value } => {
                let path = resolve(domid, path)?;
                if self.tree(caller, tx)?.contains_key(&path) {
                    self.check(caller, tx, &path, Access::Write)?;
                    let (tree, _) = self.tree_mut(caller, tx)?;
                    if let Some(node) = tree.get_mut(&path) {
                        node.value = Vec::from(value);
                    }
                } else {
                    self.create(caller, tx, &path, value)?;
                }
                self.record(caller, tx, path, false)?;
                Ok(ok())
            }
            Request::Mkdir { path } => {
                let path = resolve(domid, path)?;
                if self.tree(caller, tx)?.contains_key(&path) {
                    // Nothing changes, but xenstored still wants write access.
                    self.check(caller, tx, &path, Access::Write)?;
                } else {
                    self.create(caller, tx, &path, &[])?;
                    self.record(caller, tx, path, false)?;
                }
                Ok(ok())
            }
            Request::Rm { path } => {
                let path = resolve(domid, path)?;
                let parent = parent(&path).ok_or(XsError::Invalid)?;
                let tree = self.tree(caller, tx)?;
                if !tree.contains_key(&path) {
                    // Removing a missing node is fine, unless its parent is missing too.
                    return if tree.contains_key(parent) {
                        Ok(ok())
                    } else {
                        Err(XsError::NotFound)
                    };
                }
                self.check(caller, tx, &path, Access::Write)?;
                let (tree, next_generation) = self.tree_mut(caller, tx)?;
                let below = child_prefix(&path);
                tree.retain(|key, _| key != &path && !key.starts_with(&below));
                touch(tree, next_generation, parent);
                self.record(caller, tx, path, true)?;
                Ok(ok())
            }
            Request::SetPerms { path, perms } => {
                let path = resolve(domid, path)?;
                let new_owner = perms.first().ok_or(XsError::Invalid)?.domid;
                let node = self.check(caller, tx, &path, Access::Write)?;
                let owner = node.perms.first().map_or(0, |perm| perm.domid);
                if domid != 0 && !self.acts_for(domid, owner) {
                    return Err(XsError::Access);
                }
                if domid != 0 && new_owner != owner {
                    // Only dom0 may give a node away.
                    return Err(XsError::NotPermitted);
                }
                let (tree, _) = self.tree_mut(caller, tx)?;
                if let Some(node) = tree.get_mut(&path) {
                    node.perms = perms.into_owned();
                }
                self.record(caller, tx, path, false)?;
                Ok(ok())
            }
            Request::Watch { path, token } => {
                let conn = self.conn(caller)?;
                watch_path(conn.domid, path)?;
                if conn
                    .watches
                    .iter()
                    .any(|w| w.path == path && w.token == token)
                {
                    return Err(XsError::Exists);
                }
                conn.watches.push(Watch {
                    path: String::from(path),
                    token: String::from(token),
                });
                let mut outcome = ok();
                outcome.initial_event = Some((String::from(path), String::from(token)));
                Ok(outcome)
            }
            Request::Unwatch { path, token } => {
                let conn = self.conn(caller)?;
                let before = conn.watches.len();
                conn.watches
                    .retain(|w| !(w.path == path && w.token == token));
                if conn.watches.len() == before {
                    return Err(XsError::NotFound);
                }
                Ok(ok())
            }
            Request::TransactionStart => {
                if tx != TX_NONE {
                    return Err(XsError::Invalid);
                }
                let id = self.next_tx;
                self.next_tx = self.next_tx.checked_add(1).unwrap_or(1);
                let snapshot = Tx {
                    base: self.commits,
                    nodes: self.nodes.clone(),
                    changes: Vec::new(),
                };
                self.conn(caller)?.txs.insert(id, snapshot);
                Ok(reply(format!("{id}\0").into_bytes()))
            }
            Request::TransactionEnd { commit } => {
                let finished = self
                    .conn(caller)?
                    .txs
                    .remove(&tx)
                    .ok_or(XsError::NotFound)?;
                if commit {
                    if finished.base != self.commits {
                        return Err(XsError::Again);
                    }
                    self.nodes = finished.nodes;
                    self.commits += 1;
                    for change in &finished.changes {
                        self.fire(change);
                    }
                }
                Ok(ok())
            }
            Request::GetDomainPath { domid } => {
                Ok(reply(format!("/local/domain/{domid}\0").into_bytes()))
            }
            Request::IsDomainIntroduced { domid } => {
                let answer = if self.introduced.contains(&domid) {
                    b"T\0"
                } else {
                    b"F\0"
                };
                Ok(reply(Vec::from(&answer[..])))
            }
            Request::ResetWatches => {
                let conn = self.conn(caller)?;
                conn.watches.clear();
                conn.txs.clear();
                Ok(ok())
            }
        }
    }

    fn conn(&mut self, caller: Caller) -> Result<&mut Conn, XsError> {
        caller
            .conn
            .and_then(|id| self.conns.get_mut(&id))
            .ok_or(XsError::Invalid)
    }

    /// The tree a request works on: the store, or its transaction's snapshot.
    fn tree(&self, caller: Caller, tx: u32) -> Result<&Tree, XsError> {
        if tx == TX_NONE {
            return Ok(&self.nodes);
        }
        caller
            .conn
            .and_then(|id| self.conns.get(&id))
            .and_then(|conn| conn.txs.get(&tx))
            .map(|tx| &tx.nodes)
            .ok_or(XsError::NotFound)
    }

    fn tree_mut(&mut self, caller: Caller, tx: u32) -> Result<(&mut Tree, &mut u64), XsError> {
        let State {
            nodes,
            conns,
            next_generation,
            ..
        } = self;
        if tx == TX_NONE {
            return Ok((nodes, next_generation));
        }
        let snapshot = caller
            .conn
            .and_then(|id| conns.get_mut(&id))
            .and_then(|conn| conn.txs.get_mut(&tx))
            .ok_or(XsError::NotFound)?;
        Ok((&mut snapshot.nodes, next_generation))
    }

    /// Looks up `path` and checks that the caller has `need` on it.
    fn check(&self, caller: Caller, tx: u32, path: &str, need: Access) -> Result<&Node, XsError> {
        let node = self.tree(caller, tx)?.get(path).ok_or(XsError::NotFound)?;
        let have = self.access(caller.domid, node);
        let allowed = match need {
            Access::Read => have.can_read(),
            Access::Write => have.can_write(),
            Access::Both => have.can_read() && have.can_write(),
            Access::None => true,
        };
        if allowed {
            Ok(node)
        } else {
            Err(XsError::Access)
        }
    }

    fn acts_for(&self, domid: DomId, other: DomId) -> bool {
        domid == other || self.targets.get(&domid) == Some(&other)
    }

    fn access(&self, domid: DomId, node: &Node) -> Access {
        let Some((owner, others)) = node.perms.split_first() else {
            return Access::None;
        };
        if domid == 0 || self.acts_for(domid, owner.domid) {
            return Access::Both;
        }
        let entry = |who: DomId| {
            others
                .iter()
                .find(|perm| perm.domid == who)
                .map_or(owner.access, |perm| perm.access)
        };
        let mine = entry(domid);
        match self.targets.get(&domid) {
            Some(&target) => union(mine, entry(target)),
            None => mine,
        }
    }

    /// Creates `path` with `value`, and missing parents with empty values. The caller
    /// needs write access to the nearest existing ancestor.
    fn create(&mut self, caller: Caller, tx: u32, path: &str, value: &[u8]) -> Result<(), XsError> {
        let mut missing = Vec::new();
        let mut existing = path;
        let tree = self.tree(caller, tx)?;
        while !tree.contains_key(existing) {
            missing.push(existing);
            existing = parent(existing).ok_or(XsError::Invalid)?;
        }
        self.check(caller, tx, existing, Access::Write)?;
        let (tree, next_generation) = self.tree_mut(caller, tx)?;
        for &new in missing.iter().rev() {
            let parent_path = parent(new).ok_or(XsError::Invalid)?;
            let mut perms = tree
                .get(parent_path)
                .map(|node| node.perms.clone())
                .ok_or(XsError::NotFound)?;
            if let Some(owner) = perms.first_mut().filter(|_| caller.domid != 0) {
                // A domain owns what it creates.
                owner.domid = caller.domid;
            }
            let value = if new == path { value } else { &[] };
            *next_generation += 1;
            tree.insert(
                String::from(new),
                Node {
                    value: Vec::from(value),
                    perms,
                    generation: *next_generation,
                },
            );
            touch(tree, next_generation, parent_path);
        }
        Ok(())
    }

    /// Notes a change: fires watches now, or at commit for a transaction.
    fn record(
        &mut self,
        caller: Caller,
        tx: u32,
        path: String,
        recursive: bool,
    ) -> Result<(), XsError> {
        let change = Change { path, recursive };
        if tx == TX_NONE {
            self.commits += 1;
            self.fire(&change);
            return Ok(());
        }
        let snapshot = caller
            .conn
            .and_then(|id| self.conns.get_mut(&id))
            .and_then(|conn| conn.txs.get_mut(&tx))
            .ok_or(XsError::NotFound)?;
        snapshot.changes.push(change);
        Ok(())
    }

    /// Queues events for every watch that `change` matches.
    fn fire(&mut self, change: &Change) {
        for conn in self.conns.values_mut() {
            if conn.closed {
                continue;
            }
            let home = format!("/local/domain/{}/", conn.domid);
            let mut events = Vec::new();
            for watch in &conn.watches {
                let relative = !(watch.path.starts_with('/') || watch.path.starts_with('@'));
                let watched = if relative {
                    format!("{home}{}", watch.path)
                } else {
                    watch.path.clone()
                };
                let event_path = if is_subpath(&watched, &change.path) {
                    change.path.as_str()
                } else if change.recursive && is_subpath(&change.path, &watched) {
                    watched.as_str()
                } else {
                    continue;
                };
                let shown = if relative {
                    event_path.strip_prefix(home.as_str()).unwrap_or(event_path)
                } else {
                    event_path
                };
                events.push((String::from(shown), watch.token.clone()));
            }
            for (path, token) in events {
                push_event(conn, &path, &token);
            }
        }
    }

    fn close(&mut self, conn_id: u64) {
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            conn.closed = true;
            conn.outbox.clear();
            conn.watches.clear();
            conn.txs.clear();
        }
    }
}

fn push_message(conn: &mut Conn, msg_type: MsgType, req_id: u32, tx_id: u32, payload: &[u8]) {
    let mut bytes = Vec::new();
    // Payloads built here stay within PAYLOAD_MAX: values and lists are checked on the
    // way in, and error names are short.
    if encode_raw(msg_type, req_id, tx_id, payload, &mut bytes).is_ok() {
        conn.outbox.extend(bytes);
    }
}

fn push_event(conn: &mut Conn, path: &str, token: &str) {
    let payload = format!("{path}\0{token}\0");
    push_message(conn, MsgType::WatchEvent, 0, 0, payload.as_bytes());
}

fn union(a: Access, b: Access) -> Access {
    match (a.can_read() || b.can_read(), a.can_write() || b.can_write()) {
        (true, true) => Access::Both,
        (true, false) => Access::Read,
        (false, true) => Access::Write,
        (false, false) => Access::None,
    }
}

/// Bumps the generation of `path` because its children changed.
fn touch(tree: &mut Tree, next_generation: &mut u64, path: &str) {
    if let Some(node) = tree.get_mut(path) {
        *next_generation += 1;
        node.generation = *next_generation;
    }
}

/// Resolves a request path to an absolute one and checks xenstore's path rules.
fn resolve(domid: DomId, path: &str) -> Result<String, XsError> {
    let absolute = if path.starts_with('/') {
        String::from(path)
    } else {
        if path.is_empty() || path.len() > REL_PATH_MAX {
            return Err(XsError::Invalid);
        }
        format!("/local/domain/{domid}/{path}")
    };
    let valid_chars = absolute
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-/_@".contains(&b));
    let valid_shape = absolute == "/" || !(absolute.ends_with('/') || absolute.contains("//"));
    if !valid_chars || !valid_shape || absolute.len() > ABS_PATH_MAX {
        return Err(XsError::Invalid);
    }
    Ok(absolute)
}

/// Checks a watch path: a node path or an `@special` event name.
fn watch_path(domid: DomId, path: &str) -> Result<(), XsError> {
    if let Some(name) = path.strip_prefix('@') {
        let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric());
        return if valid { Ok(()) } else { Err(XsError::Invalid) };
    }
    resolve(domid, path).map(drop)
}

fn parent(path: &str) -> Option<&str> {
    match path.rfind('/') {
        _ if path == "/" => None,
        Some(0) => Some("/"),
        Some(slash) => Some(&path[..slash]),
        None => None,
    }
}

fn child_prefix(path: &str) -> String {
    if path == "/" {
        String::from("/")
    } else {
        format!("{path}/")
    }
}

/// The names of the immediate children of `path`, in order.
fn children<'t>(tree: &'t Tree, path: &str) -> impl Iterator<Item = &'t str> + 't {
    let prefix = child_prefix(path);
    let skip = prefix.len();
    tree.range(prefix.clone()..)
        .map(|(key, _)| key.as_str())
        .take_while(move |key| key.starts_with(prefix.as_str()))
        .filter_map(move |key| key.get(skip..))
        .filter(|name| !name.is_empty() && !name.contains('/'))
}

/// The children of `path` as the wire list: each name followed by a NUL.
fn child_list(tree: &Tree, path: &str) -> Vec<u8> {
    let mut list = Vec::new();
    for name in children(tree, path) {
        list.extend_from_slice(name.as_bytes());
        list.push(0);
    }
    list
}

/// One `DIRECTORY_PART` reply: the generation, whole names from `offset` while they fit,
/// and an empty name when the list ends in this piece.
fn directory_part(list: &[u8], offset: usize, generation: u64) -> Result<Vec<u8>, XsError> {
    let on_boundary = offset == 0 || list.get(offset - 1) == Some(&0);
    if offset > list.len() || !on_boundary {
        return Err(XsError::Invalid);
    }
    let mut payload = format!("{generation}\0").into_bytes();
    let mut pos = offset;
    while pos < list.len() {
        let end = list[pos..]
            .iter()
            .position(|&b| b == 0)
            .map_or(list.len(), |nul| pos + nul + 1);
        if payload.len() + (end - pos) > PAYLOAD_MAX {
            break;
        }
        payload.extend_from_slice(&list[pos..end]);
        pos = end;
    }
    if pos == list.len() && payload.len() < PAYLOAD_MAX {
        payload.push(0);
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_resolution() {
        let long_name = "a".repeat(ABS_PATH_MAX);
        let table: &[(&str, Option<&str>)] = &[
            ("/", Some("/")),
            ("/local/domain/7", Some("/local/domain/7")),
            ("device/vbd", Some("/local/domain/5/device/vbd")),
            ("", None),
            ("/a/", None),
            ("/a//b", None),
            ("/a b", None),
            ("/a\u{e9}", None),
            (&long_name, None),
        ];
        for &(path, expected) in table {
            assert_eq!(resolve(5, path).ok().as_deref(), expected, "{path:?}");
        }
    }

    #[test]
    fn parents() {
        assert_eq!(parent("/"), None);
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/a/b"), Some("/a"));
    }

    #[test]
    fn children_are_immediate_only() {
        let store = MemXenstore::new();
        for path in ["/x/a", "/x/b/c", "/xy", "/x/b/d"] {
            store.write(path, "v").unwrap();
        }
        assert_eq!(store.directory("/x"), ["a", "b"]);
        assert_eq!(store.directory("/"), ["local", "x", "xy"]);
        assert!(store.directory("/x/a").is_empty());
    }
}
