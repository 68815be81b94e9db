//! The client against the in-memory xenstored, and against scripted byte streams.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};

use xenstore_proto::testing::{MemConnection, MemError, MemXenstore};
use xenstore_proto::{
    Access, Client, DecodeError, Error, IoTransport, Perm, Request, Transport, WatchEvent, XsError,
    MAX_TRANSACTION_ATTEMPTS, TX_NONE,
};

type MemClient = Client<MemConnection>;

fn event(path: &str, token: &str) -> WatchEvent {
    WatchEvent {
        path: path.to_string(),
        token: token.to_string(),
    }
}

/// A store with domain 5 introduced, a client for dom0 and one for domain 5.
fn setup() -> (MemXenstore, MemClient, MemClient) {
    let store = MemXenstore::new();
    store.introduce_domain(5).unwrap();
    let dom0 = Client::new(store.connect(0));
    let dom5 = Client::new(store.connect(5));
    (store, dom0, dom5)
}

#[test]
fn read_write_directory_mkdir_rm() {
    let (store, mut dom0, _) = setup();
    dom0.write("/vm/a/name", "guest").unwrap();
    dom0.write("/vm/a/empty", b"").unwrap();
    dom0.mkdir("/vm/b").unwrap();
    assert_eq!(dom0.read("/vm/a/name").unwrap(), b"guest");
    assert_eq!(dom0.read_string("/vm/a/name").unwrap(), "guest");
    assert_eq!(dom0.read("/vm/a/empty").unwrap(), b"");
    assert_eq!(
        dom0.read("/vm/a").unwrap(),
        b"",
        "parents are created empty"
    );
    assert_eq!(dom0.directory("/vm").unwrap(), ["a", "b"]);
    assert_eq!(dom0.directory("/vm/a").unwrap(), ["empty", "name"]);
    assert_eq!(dom0.directory("/vm/b").unwrap(), Vec::<String>::new());

    dom0.rm("/vm/a").unwrap();
    assert!(!store.exists("/vm/a/name"));
    assert_eq!(dom0.read("/vm/a/name"), Err(Error::Xs(XsError::NotFound)));
    assert!(dom0.read("/vm/a").unwrap_err().is_not_found());
    // Removing a missing node is fine while its parent exists.
    dom0.rm("/vm/a").unwrap();
    assert_eq!(dom0.rm("/nope/x"), Err(Error::Xs(XsError::NotFound)));

    dom0.write("/bin", b"\x00\x01\xff").unwrap();
    assert_eq!(dom0.read("/bin").unwrap(), b"\x00\x01\xff");
    assert_eq!(
        dom0.read_string("/bin"),
        Err(Error::Protocol(DecodeError::InvalidUtf8))
    );
}

#[test]
fn xenstored_errors_become_typed_errors() {
    let (_, mut dom0, _) = setup();
    type ReadResult = Result<Vec<u8>, Error<MemError>>;
    let cases: Vec<(&str, ReadResult)> = vec![
        ("/missing", Err(Error::Xs(XsError::NotFound))),
        ("/a//b", Err(Error::Xs(XsError::Invalid))),
        ("/a/", Err(Error::Xs(XsError::Invalid))),
        ("/a b", Err(Error::Xs(XsError::Invalid))),
        (
            "",
            Err(Error::Encode(xenstore_proto::EncodeError::EmptyPath)),
        ),
        ("/local", Ok(Vec::new())),
    ];
    for (path, expected) in cases {
        assert_eq!(dom0.read(path), expected, "{path:?}");
    }
}

#[test]
fn domain_paths_and_relative_paths() {
    let (store, mut dom0, mut dom5) = setup();
    assert_eq!(dom5.get_domain_path(5).unwrap(), "/local/domain/5");
    assert_eq!(dom0.get_domain_path(12).unwrap(), "/local/domain/12");
    assert!(dom5.is_domain_introduced(5).unwrap());
    assert!(!dom5.is_domain_introduced(6).unwrap());

    dom5.write("device/vbd/768/state", "1").unwrap();
    assert_eq!(
        store
            .read("/local/domain/5/device/vbd/768/state")
            .as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(dom5.read("device/vbd/768/state").unwrap(), b"1");
    assert_eq!(dom5.directory("device/vbd").unwrap(), ["768"]);
}

#[test]
fn permissions_are_enforced() {
    let (store, mut dom0, mut dom5) = setup();
    dom0.write("/tool/secret", "x").unwrap();
    assert_eq!(dom5.read("/tool/secret"), Err(Error::Xs(XsError::Access)));
    assert_eq!(
        dom5.write("/tool/secret", "y"),
        Err(Error::Xs(XsError::Access))
    );
    assert_eq!(
        dom5.write("/tool/new", "y"),
        Err(Error::Xs(XsError::Access))
    );
    assert_eq!(dom5.mkdir("/tool/secret"), Err(Error::Xs(XsError::Access)));
    assert_eq!(dom5.rm("/tool/secret"), Err(Error::Xs(XsError::Access)));
    assert_eq!(
        dom5.get_perms("/tool/secret"),
        Err(Error::Xs(XsError::Access))
    );

    let perms = [Perm::new(0, Access::None), Perm::new(5, Access::Read)];
    dom0.set_perms("/tool/secret", &perms).unwrap();
    assert_eq!(dom0.get_perms("/tool/secret").unwrap(), perms);
    assert_eq!(dom5.read("/tool/secret").unwrap(), b"x");
    assert_eq!(
        dom5.write("/tool/secret", "y"),
        Err(Error::Xs(XsError::Access))
    );

    // A domain owns what it creates in its home and can hand out access, but not
    // ownership.
    dom5.write("data/out", "1").unwrap();
    assert_eq!(dom5.get_perms("data/out").unwrap()[0].domid, 5);
    let shared = [Perm::new(5, Access::None), Perm::new(7, Access::Read)];
    dom5.set_perms("data/out", &shared).unwrap();
    assert_eq!(store.get_perms("/local/domain/5/data/out").unwrap(), shared);
    let give_away = [Perm::new(7, Access::None)];
    assert_eq!(
        dom5.set_perms("data/out", &give_away),
        Err(Error::Xs(XsError::NotPermitted))
    );
    assert_eq!(
        dom5.set_perms("/tool/secret", &perms),
        Err(Error::Xs(XsError::Access))
    );
}

#[test]
fn a_stub_domain_acts_for_its_target() {
    let store = MemXenstore::new();
    store.introduce_domain(3).unwrap();
    store.introduce_domain(4).unwrap();
    store.set_target(4, 3);
    let mut stubdom = Client::new(store.connect(4));
    stubdom
        .write("/local/domain/3/device-model", "running")
        .unwrap();
    assert_eq!(
        stubdom.read("/local/domain/3/device-model").unwrap(),
        b"running"
    );
    let mut other = Client::new(store.connect(6));
    assert_eq!(
        other.read("/local/domain/3/device-model"),
        Err(Error::Xs(XsError::Access))
    );
}

#[test]
fn watch_events_arriving_during_requests_are_queued() {
    let (store, mut dom0, mut dom5) = setup();
    dom5.watch("/local/domain/5/control", "ctl").unwrap();
    assert_eq!(
        dom5.watch("/local/domain/5/control", "ctl"),
        Err(Error::Xs(XsError::Exists))
    );
    dom0.write("/local/domain/5/control/shutdown", "poweroff")
        .unwrap();
    store.write("/local/domain/5/other", "x").unwrap();
    store.write("/local/domain/5/control/sysrq", "b").unwrap();

    // The initial event and both changes arrive while this read waits for its reply.
    assert_eq!(dom5.read("control/shutdown").unwrap(), b"poweroff");
    assert_eq!(dom5.pending_events(), 3);
    assert_eq!(
        dom5.try_next_event(),
        Some(event("/local/domain/5/control", "ctl"))
    );
    assert_eq!(
        dom5.next_event().unwrap(),
        event("/local/domain/5/control/shutdown", "ctl")
    );
    assert_eq!(
        dom5.next_event().unwrap(),
        event("/local/domain/5/control/sysrq", "ctl")
    );
    assert_eq!(dom5.try_next_event(), None);
    // With nothing queued, next_event reads from the transport; the double has
    // nothing, which a real transport would wait for.
    assert_eq!(dom5.next_event(), Err(Error::Transport(MemError::NoData)));

    store.write("/local/domain/5/control/x", "1").unwrap();
    assert_eq!(
        dom5.next_event().unwrap(),
        event("/local/domain/5/control/x", "ctl")
    );
}

#[test]
fn relative_watches_get_relative_paths_and_removals_reach_watched_paths() {
    let (store, _, mut dom5) = setup();
    store
        .write("/local/domain/5/device/vif/0/state", "1")
        .unwrap();
    dom5.watch("device", "dev").unwrap();
    dom5.watch("/local/domain/5/device/vif/0/state", "st")
        .unwrap();
    assert_eq!(dom5.next_event().unwrap(), event("device", "dev"));
    assert_eq!(
        dom5.next_event().unwrap(),
        event("/local/domain/5/device/vif/0/state", "st")
    );

    store.write("/local/domain/5/device/vbd/768", "x").unwrap();
    assert_eq!(dom5.next_event().unwrap(), event("device/vbd/768", "dev"));

    // Removing an ancestor fires the watch below it with the watched path.
    store.rm("/local/domain/5/device").unwrap();
    let mut got = vec![dom5.next_event().unwrap(), dom5.next_event().unwrap()];
    got.sort_by(|a, b| a.token.cmp(&b.token));
    assert_eq!(
        got,
        [
            event("device", "dev"),
            event("/local/domain/5/device/vif/0/state", "st")
        ]
    );
}

#[test]
fn special_watches_fire_on_domain_events() {
    let store = MemXenstore::new();
    let mut dom0 = Client::new(store.connect(0));
    dom0.watch("@introduceDomain", "in").unwrap();
    dom0.watch("@releaseDomain", "out").unwrap();
    store.introduce_domain(9).unwrap();
    store.release_domain(9);
    let events: Vec<WatchEvent> = (0..4).map(|_| dom0.next_event().unwrap()).collect();
    assert_eq!(
        events,
        [
            event("@introduceDomain", "in"),
            event("@releaseDomain", "out"),
            event("@introduceDomain", "in"),
            event("@releaseDomain", "out"),
        ]
    );
    assert!(!dom0.is_domain_introduced(9).unwrap());
}

#[test]
fn unwatch_stops_events_and_drops_queued_ones() {
    let (store, _, mut dom5) = setup();
    dom5.watch("/local/domain/5/a", "a").unwrap();
    dom5.watch("/local/domain/5/b", "b").unwrap();
    store.write("/local/domain/5/a/x", "1").unwrap();
    store.write("/local/domain/5/b/x", "1").unwrap();
    dom5.unwatch("/local/domain/5/a", "a").unwrap();
    assert_eq!(dom5.transport().watch_count(), 1);
    let queued: Vec<WatchEvent> = std::iter::from_fn(|| dom5.try_next_event()).collect();
    assert_eq!(
        queued,
        [
            event("/local/domain/5/b", "b"),
            event("/local/domain/5/b/x", "b")
        ]
    );
    store.write("/local/domain/5/a/y", "1").unwrap();
    assert_eq!(dom5.transport().pending(), 0);
    assert_eq!(
        dom5.unwatch("/local/domain/5/a", "a"),
        Err(Error::Xs(XsError::NotFound))
    );
    dom5.reset_watches().unwrap();
    assert_eq!(dom5.transport().watch_count(), 0);
}

#[test]
fn transaction_commits_and_fires_watches_at_commit() {
    let (store, mut dom0, mut watcher) = setup();
    watcher.watch("/local/domain/5/device", "dev").unwrap();
    assert_eq!(
        watcher.next_event().unwrap(),
        event("/local/domain/5/device", "dev")
    );
    let result = dom0
        .transaction(|tx| {
            tx.write("/local/domain/5/device/vbd/768/state", "1")?;
            tx.mkdir("/local/domain/5/device/vif")?;
            // Inside, the transaction sees its own writes; outside nobody does yet.
            assert_eq!(tx.read("/local/domain/5/device/vbd/768/state")?, b"1");
            assert!(!store.exists("/local/domain/5/device/vbd"));
            assert_eq!(tx.directory("/local/domain/5/device")?, ["vbd", "vif"]);
            Ok(42)
        })
        .unwrap();
    assert_eq!(result, 42);
    assert_eq!(
        store
            .read("/local/domain/5/device/vbd/768/state")
            .as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        watcher.next_event().unwrap(),
        event("/local/domain/5/device/vbd/768/state", "dev")
    );
    assert_eq!(
        watcher.next_event().unwrap(),
        event("/local/domain/5/device/vif", "dev")
    );
}

#[test]
fn transaction_retries_on_eagain() {
    let (store, mut dom0, _) = setup();
    store.write("/counter", "0").unwrap();
    let attempts = Cell::new(0);
    let value = dom0
        .transaction(|tx| {
            attempts.set(attempts.get() + 1);
            let current: u32 = tx.read_string("/counter")?.parse().unwrap_or(0);
            if attempts.get() == 1 {
                // Someone else commits in between: this attempt must fail at commit.
                store.write("/counter", "10").unwrap();
            }
            tx.write("/counter", (current + 1).to_string())?;
            Ok(current + 1)
        })
        .unwrap();
    assert_eq!(attempts.get(), 2);
    assert_eq!(value, 11);
    assert_eq!(store.read("/counter").as_deref(), Some(&b"11"[..]));
    assert_eq!(dom0.transport().open_transactions(), 0);
}

#[test]
fn transaction_gives_up_after_bounded_retries() {
    let (store, mut dom0, _) = setup();
    let attempts = Cell::new(0);
    let result = dom0.transaction(|tx| {
        attempts.set(attempts.get() + 1);
        store.write("/busy", attempts.get().to_string()).unwrap();
        tx.write("/mine", "x")
    });
    assert_eq!(result, Err(Error::Xs(XsError::Again)));
    assert_eq!(attempts.get(), MAX_TRANSACTION_ATTEMPTS);
    assert!(!store.exists("/mine"));
    assert_eq!(dom0.transport().open_transactions(), 0);
}

#[test]
fn failing_transaction_body_discards_its_changes() {
    let (store, mut dom0, _) = setup();
    let result: Result<(), _> = dom0.transaction(|tx| {
        tx.write("/half", "done")?;
        tx.read("/missing")?;
        Ok(())
    });
    assert_eq!(result, Err(Error::Xs(XsError::NotFound)));
    assert!(!store.exists("/half"));
    assert_eq!(dom0.transport().open_transactions(), 0);
}

#[test]
fn manual_transactions_and_abandoned_ones() {
    let (store, mut dom0, _) = setup();
    let mut tx = dom0.begin().unwrap();
    assert_ne!(tx.id(), TX_NONE);
    tx.write("/manual", "1").unwrap();
    tx.commit().unwrap();
    assert!(store.exists("/manual"));

    let mut tx = dom0.begin().unwrap();
    tx.write("/dropped", "1").unwrap();
    drop(tx);
    assert_eq!(dom0.transport().open_transactions(), 1);
    // The client discards the abandoned transaction before its next request.
    assert_eq!(dom0.read("/manual").unwrap(), b"1");
    assert_eq!(dom0.transport().open_transactions(), 0);
    assert!(!store.exists("/dropped"));

    let mut tx = dom0.begin().unwrap();
    tx.rm("/manual").unwrap();
    tx.abort().unwrap();
    assert!(store.exists("/manual"));
}

#[test]
fn long_directories_are_read_in_parts() {
    let (store, mut dom0, _) = setup();
    let expected: Vec<String> = (0..700).map(|i| format!("backend-{i:04}")).collect();
    for name in &expected {
        store.write(&format!("/big/{name}"), "").unwrap();
    }
    // 700 names of 12 bytes plus NULs exceed one 4096-byte payload.
    let raw = dom0
        .call(&Request::Directory { path: "/big" }, TX_NONE)
        .unwrap();
    assert_eq!(
        xenstore_proto::reply::directory(raw.as_ref()),
        Err(xenstore_proto::ReplyError::Xs(XsError::TooBig))
    );
    assert_eq!(dom0.directory("/big").unwrap(), expected);
    let in_tx = dom0.transaction(|tx| tx.directory("/big")).unwrap();
    assert_eq!(in_tx, expected);
}

#[test]
fn replies_delivered_one_byte_at_a_time() {
    let (store, _, _) = setup();
    let mut connection = store.connect(0);
    connection.set_recv_chunk(1);
    let mut client = Client::new(connection);
    client.watch("/w", "t").unwrap();
    client.write("/w/x", "value").unwrap();
    assert_eq!(client.read("/w/x").unwrap(), b"value");
    assert_eq!(client.directory("/w").unwrap(), ["x"]);
    assert_eq!(client.next_event().unwrap(), event("/w", "t"));
    assert_eq!(client.next_event().unwrap(), event("/w/x", "t"));
}

#[test]
fn broken_framing_closes_the_connection() {
    let store = MemXenstore::new();
    let mut connection = store.connect(0);
    let oversize = [2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x10, 0, 0];
    connection.send(&oversize).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(connection.recv(&mut buf), Ok(0));
    let read = Request::Read { path: "/" }.to_vec(2, 0).unwrap();
    assert_eq!(connection.send(&read), Err(MemError::Closed));
    let mut client = Client::new(connection);
    assert_eq!(client.read("/"), Err(Error::Transport(MemError::Closed)));
}

#[test]
fn malformed_requests_get_error_replies() {
    let store = MemXenstore::new();
    let mut connection = store.connect(0);
    let mut client_side = xenstore_proto::Decoder::new();
    let cases: Vec<(u32, &[u8], &[u8])> = vec![
        (2, b"/no-nul", b"EINVAL\0"),
        (8, b"1\0", b"ENOSYS\0"),
        (7, b"T\0", b"ENOENT\0"), // TRANSACTION_END outside a transaction
        (99, b"", b"ENOSYS\0"),
    ];
    for (i, (msg_type, payload, expected)) in cases.into_iter().enumerate() {
        let req_id = i as u32 + 1;
        let mut wire = Vec::new();
        xenstore_proto::encode_raw(msg_type.into(), req_id, 0, payload, &mut wire).unwrap();
        connection.send(&wire).unwrap();
        let mut buf = [0u8; 256];
        let n = connection.recv(&mut buf).unwrap();
        client_side.push(&buf[..n]);
        let reply = client_side.next_message().unwrap().unwrap();
        assert_eq!(reply.header.req_id, req_id);
        assert_eq!(reply.payload, expected, "type {msg_type}");
    }
}

/// A transport that records what is sent and replays scripted bytes.
struct Scripted {
    sent: Vec<u8>,
    replies: VecDeque<Vec<u8>>,
}

impl Transport for Scripted {
    type Error = &'static str;

    fn send(&mut self, message: &[u8]) -> Result<(), Self::Error> {
        self.sent.extend_from_slice(message);
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let Some(mut next) = self.replies.pop_front() else {
            return Ok(0);
        };
        let n = next.len().min(buf.len());
        buf[..n].copy_from_slice(&next[..n]);
        if n < next.len() {
            self.replies.push_front(next.split_off(n));
        }
        Ok(n)
    }
}

fn scripted(replies: Vec<Vec<u8>>) -> Client<Scripted> {
    Client::new(Scripted {
        sent: Vec::new(),
        replies: replies.into(),
    })
}

fn reply_bytes(msg_type: u32, req_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    xenstore_proto::encode_raw(msg_type.into(), req_id, 0, payload, &mut out).unwrap();
    out
}

#[test]
fn replies_are_matched_by_req_id() {
    // A stale reply (req_id 99) and a watch event come before the real reply.
    let mut client = scripted(vec![
        reply_bytes(2, 99, b"stale"),
        reply_bytes(15, 0, b"/w\0t\0"),
        reply_bytes(2, 1, b"fresh"),
    ]);
    assert_eq!(client.read("/x").unwrap(), b"fresh");
    assert_eq!(client.try_next_event(), Some(event("/w", "t")));
    let sent = &client.transport().sent;
    assert_eq!(&sent[..8], &[2, 0, 0, 0, 1, 0, 0, 0], "READ with req_id 1");
}

#[test]
fn bad_replies_are_errors() {
    let oversize_header = vec![2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x10, 0, 0];
    let cases: Vec<(Vec<Vec<u8>>, Error<&'static str>)> = vec![
        (
            vec![oversize_header],
            Error::Protocol(DecodeError::PayloadTooLarge { len: 4097 }),
        ),
        (
            vec![reply_bytes(15, 0, b"/w\0")],
            Error::Protocol(DecodeError::MissingNul),
        ),
        (
            vec![reply_bytes(16, 1, b"ENOENT")],
            Error::Protocol(DecodeError::MissingNul),
        ),
        (
            vec![reply_bytes(11, 1, b"OK\0")],
            Error::Protocol(DecodeError::UnexpectedType {
                expected: xenstore_proto::MsgType::Read,
                found: xenstore_proto::MsgType::Write,
            }),
        ),
        (vec![reply_bytes(2, 1, b"")[..10].to_vec()], Error::Closed),
        (vec![], Error::Closed),
    ];
    for (replies, expected) in cases {
        let mut client = scripted(replies);
        assert_eq!(client.read("/x"), Err(expected.clone()), "{expected:?}");
    }
}

#[test]
fn transaction_start_reply_must_be_a_number() {
    let mut client = scripted(vec![reply_bytes(6, 1, b"soon\0")]);
    assert_eq!(
        client.begin().err(),
        Some(Error::Protocol(DecodeError::InvalidNumber))
    );
}

/// A byte stream like `/dev/xen/xenbus`: writes are recorded, reads replay a script.
struct FakeDevice {
    written: Vec<u8>,
    to_read: io::Cursor<Vec<u8>>,
    interrupted_once: bool,
}

impl Read for FakeDevice {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.interrupted_once {
            self.interrupted_once = true;
            return Err(io::ErrorKind::Interrupted.into());
        }
        self.to_read.read(buf)
    }
}

impl Write for FakeDevice {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn io_transport_speaks_over_a_byte_stream() {
    let device = FakeDevice {
        written: Vec::new(),
        to_read: io::Cursor::new(reply_bytes(10, 1, b"/local/domain/3\0")),
        interrupted_once: false,
    };
    let mut client = Client::new(IoTransport::new(device));
    assert_eq!(client.get_domain_path(3).unwrap(), "/local/domain/3");
    let device = client.into_transport().into_inner();
    assert_eq!(
        device.written,
        Request::GetDomainPath { domid: 3 }
            .to_vec(1, TX_NONE)
            .unwrap()
    );
}
