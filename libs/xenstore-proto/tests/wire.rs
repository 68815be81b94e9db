//! The protocol on real wire bytes: hand-written messages, pieces, and bad input.

use std::borrow::Cow;

use xenstore_proto::{
    parse_message, reply, Access, DecodeError, Decoder, DirectoryPart, EncodeError, MessageRef,
    MsgType, Perm, ReplyError, Request, WatchEvent, XsError, PAYLOAD_MAX, TX_NONE,
};

/// Joins a hand-written header and payload.
fn bytes(header: [u8; 16], payload: &[u8]) -> Vec<u8> {
    [&header[..], payload].concat()
}

/// A READ request for `/local/domain/1/name`, req_id 7, outside a transaction.
const READ_REQUEST: &[u8] = &[
    0x02, 0, 0, 0, // type: XS_READ
    0x07, 0, 0, 0, // req_id
    0x00, 0, 0, 0, // tx_id
    0x15, 0, 0, 0, // len: 21
    b'/', b'l', b'o', b'c', b'a', b'l', b'/', b'd', b'o', b'm', b'a', b'i', b'n', b'/', b'1', b'/',
    b'n', b'a', b'm', b'e', 0,
];

/// Its reply: the value `qemu-dm-3`, without a NUL.
const READ_REPLY: &[u8] = &[
    0x02, 0, 0, 0, 0x07, 0, 0, 0, 0x00, 0, 0, 0, 0x09, 0, 0, 0, b'q', b'e', b'm', b'u', b'-', b'd',
    b'm', b'-', b'3',
];

/// An error reply to the same request: `ENOENT\0`.
const ENOENT_REPLY: &[u8] = &[
    0x10, 0, 0, 0, 0x07, 0, 0, 0, 0x00, 0, 0, 0, 0x07, 0, 0, 0, b'E', b'N', b'O', b'E', b'N', b'T',
    0,
];

/// A watch event for `/local/domain/0/backend/vbd`, token `be`.
const WATCH_EVENT: &[u8] = &[
    0x0f, 0, 0, 0, 0x00, 0, 0, 0, 0x00, 0, 0, 0, 0x1f, 0, 0, 0, b'/', b'l', b'o', b'c', b'a', b'l',
    b'/', b'd', b'o', b'm', b'a', b'i', b'n', b'/', b'0', b'/', b'b', b'a', b'c', b'k', b'e', b'n',
    b'd', b'/', b'v', b'b', b'd', 0, b'b', b'e', 0,
];

/// A directory reply listing `backend` and `device`.
const DIRECTORY_REPLY: &[u8] = &[
    0x01, 0, 0, 0, 0x07, 0, 0, 0, 0x00, 0, 0, 0, 0x0f, 0, 0, 0, b'b', b'a', b'c', b'k', b'e', b'n',
    b'd', 0, b'd', b'e', b'v', b'i', b'c', b'e', 0,
];

#[test]
fn requests_encode_to_wire_bytes_and_parse_back() {
    let perms = [Perm::new(0, Access::None), Perm::new(5, Access::Read)];
    let cases: Vec<(Request<'_>, u32, u32, Vec<u8>)> = vec![
        (
            Request::Read {
                path: "/local/domain/1/name",
            },
            7,
            TX_NONE,
            READ_REQUEST.to_vec(),
        ),
        (
            Request::Write {
                path: "/a",
                value: b"1",
            },
            9,
            5,
            bytes(
                [11, 0, 0, 0, 9, 0, 0, 0, 5, 0, 0, 0, 4, 0, 0, 0],
                b"/a\x001",
            ),
        ),
        (
            Request::Write {
                path: "/a",
                value: b"",
            },
            9,
            0,
            bytes([11, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0], b"/a\0"),
        ),
        (
            Request::Directory { path: "/a" },
            1,
            0,
            bytes([1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0], b"/a\0"),
        ),
        (
            Request::GetPerms { path: "/a" },
            1,
            0,
            bytes([3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0], b"/a\0"),
        ),
        (
            Request::Mkdir { path: "/a" },
            1,
            2,
            bytes([12, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0], b"/a\0"),
        ),
        (
            Request::Rm { path: "/a" },
            1,
            0,
            bytes([13, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0], b"/a\0"),
        ),
        (
            Request::SetPerms {
                path: "/a",
                perms: Cow::Borrowed(&perms),
            },
            1,
            0,
            bytes(
                [14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0],
                b"/a\0n0\0r5\0",
            ),
        ),
        (
            Request::Watch {
                path: "/a",
                token: "t",
            },
            1,
            0,
            bytes([4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0], b"/a\0t\0"),
        ),
        (
            Request::Unwatch {
                path: "/a",
                token: "t",
            },
            1,
            0,
            bytes([5, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0], b"/a\0t\0"),
        ),
        (
            Request::TransactionStart,
            3,
            0,
            bytes([6, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], b"\0"),
        ),
        (
            Request::TransactionEnd { commit: true },
            4,
            0x11,
            bytes([7, 0, 0, 0, 4, 0, 0, 0, 0x11, 0, 0, 0, 2, 0, 0, 0], b"T\0"),
        ),
        (
            Request::TransactionEnd { commit: false },
            4,
            0x11,
            bytes([7, 0, 0, 0, 4, 0, 0, 0, 0x11, 0, 0, 0, 2, 0, 0, 0], b"F\0"),
        ),
        (
            Request::GetDomainPath { domid: 5 },
            1,
            0,
            bytes([10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0], b"5\0"),
        ),
        (
            Request::IsDomainIntroduced { domid: 65535 },
            1,
            0,
            bytes(
                [17, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0],
                b"65535\0",
            ),
        ),
        (
            Request::DirectoryPart {
                path: "/a",
                offset: 12,
            },
            1,
            0,
            bytes(
                [22, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0],
                b"/a\x0012\0",
            ),
        ),
        (
            Request::ResetWatches,
            0x0102_0304,
            0,
            bytes([21, 0, 0, 0, 4, 3, 2, 1, 0, 0, 0, 0, 1, 0, 0, 0], b"\0"),
        ),
    ];
    for (request, req_id, tx_id, expected) in cases {
        let encoded = request.to_vec(req_id, tx_id).unwrap();
        assert_eq!(encoded, expected, "{request:?}");
        let (msg, used) = parse_message(&encoded).unwrap().unwrap();
        assert_eq!(used, encoded.len());
        assert_eq!((msg.header.req_id, msg.header.tx_id), (req_id, tx_id));
        assert_eq!(Request::parse(msg).unwrap(), request);
    }
}

/// What a reply parser produced, so one table can cover all of them.
#[derive(Debug, PartialEq)]
enum Parsed {
    Value(Vec<u8>),
    Names(Vec<String>),
    Part(DirectoryPart),
    Perms(Vec<Perm>),
    TxId(u32),
    Path(String),
    Flag(bool),
    Ok,
    Event(WatchEvent),
}

#[derive(Clone, Copy, Debug)]
enum Parser {
    Read,
    Directory,
    DirectoryPart,
    GetPerms,
    TransactionStart,
    GetDomainPath,
    IsDomainIntroduced,
    WriteOk,
    WatchEvent,
}

fn run(parser: Parser, msg: MessageRef<'_>) -> Result<Parsed, ReplyError> {
    Ok(match parser {
        Parser::Read => Parsed::Value(reply::read(msg)?),
        Parser::Directory => Parsed::Names(reply::directory(msg)?),
        Parser::DirectoryPart => Parsed::Part(reply::directory_part(msg)?),
        Parser::GetPerms => Parsed::Perms(reply::get_perms(msg)?),
        Parser::TransactionStart => Parsed::TxId(reply::transaction_start(msg)?),
        Parser::GetDomainPath => Parsed::Path(reply::get_domain_path(msg)?),
        Parser::IsDomainIntroduced => Parsed::Flag(reply::is_domain_introduced(msg)?),
        Parser::WriteOk => {
            reply::ok(msg, MsgType::Write)?;
            Parsed::Ok
        }
        Parser::WatchEvent => Parsed::Event(reply::watch_event(msg)?),
    })
}

fn frame(msg_type: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for field in [msg_type, 7, 0, payload.len() as u32] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    out.extend_from_slice(payload);
    out
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|name| name.to_string()).collect()
}

fn malformed(err: DecodeError) -> Result<Parsed, ReplyError> {
    Err(ReplyError::Malformed(err))
}

#[test]
fn replies_parse_to_typed_results() {
    use Parser as P;
    let event = |path: &str, token: &str| {
        Ok(Parsed::Event(WatchEvent {
            path: path.to_string(),
            token: token.to_string(),
        }))
    };
    let part = |generation, list: &[&str], complete, consumed| {
        Ok(Parsed::Part(DirectoryPart {
            generation,
            names: names(list),
            complete,
            consumed,
        }))
    };
    type Case = (&'static str, Parser, Vec<u8>, Result<Parsed, ReplyError>);
    let cases: Vec<Case> = vec![
        (
            "read value",
            P::Read,
            READ_REPLY.to_vec(),
            Ok(Parsed::Value(b"qemu-dm-3".to_vec())),
        ),
        (
            "read empty",
            P::Read,
            frame(2, b""),
            Ok(Parsed::Value(Vec::new())),
        ),
        (
            "read binary",
            P::Read,
            frame(2, b"a\0b"),
            Ok(Parsed::Value(b"a\0b".to_vec())),
        ),
        (
            "read ENOENT",
            P::Read,
            ENOENT_REPLY.to_vec(),
            Err(ReplyError::Xs(XsError::NotFound)),
        ),
        (
            "read EACCES",
            P::Read,
            frame(16, b"EACCES\0"),
            Err(ReplyError::Xs(XsError::Access)),
        ),
        (
            "EQUOTA",
            P::Read,
            frame(16, b"EQUOTA\0"),
            Err(ReplyError::Xs(XsError::Quota)),
        ),
        (
            "unknown errno",
            P::Read,
            frame(16, b"ENOTNOW\0"),
            Err(ReplyError::Xs(XsError::Unknown("ENOTNOW".to_string()))),
        ),
        (
            "error without NUL",
            P::Read,
            frame(16, b"ENOENT"),
            malformed(DecodeError::MissingNul),
        ),
        (
            "error with extra field",
            P::Read,
            frame(16, b"EIO\0x\0"),
            malformed(DecodeError::UnexpectedPayload),
        ),
        (
            "error not UTF-8",
            P::Read,
            frame(16, b"E\xff\0"),
            malformed(DecodeError::InvalidUtf8),
        ),
        (
            "wrong reply type",
            P::Read,
            frame(11, b"OK\0"),
            malformed(DecodeError::UnexpectedType {
                expected: MsgType::Read,
                found: MsgType::Write,
            }),
        ),
        (
            "directory",
            P::Directory,
            DIRECTORY_REPLY.to_vec(),
            Ok(Parsed::Names(names(&["backend", "device"]))),
        ),
        (
            "directory empty",
            P::Directory,
            frame(1, b""),
            Ok(Parsed::Names(Vec::new())),
        ),
        (
            "directory unterminated",
            P::Directory,
            frame(1, b"a\0b"),
            malformed(DecodeError::MissingNul),
        ),
        (
            "directory not UTF-8",
            P::Directory,
            frame(1, b"\xff\0"),
            malformed(DecodeError::InvalidUtf8),
        ),
        (
            "directory empty name",
            P::Directory,
            frame(1, b"a\0\0"),
            malformed(DecodeError::UnexpectedPayload),
        ),
        (
            "part complete",
            P::DirectoryPart,
            frame(22, b"12\0a\0bc\0\0"),
            part(12, &["a", "bc"], true, 5),
        ),
        (
            "part continues",
            P::DirectoryPart,
            frame(22, b"12\0a\0"),
            part(12, &["a"], false, 2),
        ),
        (
            "part empty list",
            P::DirectoryPart,
            frame(22, b"3\0\0"),
            part(3, &[], true, 0),
        ),
        (
            "part data after end",
            P::DirectoryPart,
            frame(22, b"3\0\0a\0"),
            malformed(DecodeError::UnexpectedPayload),
        ),
        (
            "part bad generation",
            P::DirectoryPart,
            frame(22, b"x\0a\0"),
            malformed(DecodeError::InvalidNumber),
        ),
        (
            "perms",
            P::GetPerms,
            frame(3, b"n0\0r5\0b7\0"),
            Ok(Parsed::Perms(vec![
                Perm::new(0, Access::None),
                Perm::new(5, Access::Read),
                Perm::new(7, Access::Both),
            ])),
        ),
        (
            "perms none",
            P::GetPerms,
            frame(3, b""),
            malformed(DecodeError::UnexpectedPayload),
        ),
        (
            "perms bad letter",
            P::GetPerms,
            frame(3, b"x0\0"),
            malformed(DecodeError::InvalidPerm),
        ),
        (
            "perms domid too big",
            P::GetPerms,
            frame(3, b"r65536\0"),
            malformed(DecodeError::InvalidPerm),
        ),
        (
            "tx id",
            P::TransactionStart,
            frame(6, b"17\0"),
            Ok(Parsed::TxId(17)),
        ),
        (
            "tx id max",
            P::TransactionStart,
            frame(6, b"4294967295\0"),
            Ok(Parsed::TxId(u32::MAX)),
        ),
        (
            "tx id overflow",
            P::TransactionStart,
            frame(6, b"4294967296\0"),
            malformed(DecodeError::InvalidNumber),
        ),
        (
            "tx id zero",
            P::TransactionStart,
            frame(6, b"0\0"),
            malformed(DecodeError::InvalidNumber),
        ),
        (
            "tx id not a number",
            P::TransactionStart,
            frame(6, b"abc\0"),
            malformed(DecodeError::InvalidNumber),
        ),
        (
            "tx id negative",
            P::TransactionStart,
            frame(6, b"-1\0"),
            malformed(DecodeError::InvalidNumber),
        ),
        (
            "tx id unterminated",
            P::TransactionStart,
            frame(6, b"17"),
            malformed(DecodeError::MissingNul),
        ),
        (
            "domain path",
            P::GetDomainPath,
            frame(10, b"/local/domain/3\0"),
            Ok(Parsed::Path("/local/domain/3".to_string())),
        ),
        (
            "introduced",
            P::IsDomainIntroduced,
            frame(17, b"T\0"),
            Ok(Parsed::Flag(true)),
        ),
        (
            "not introduced",
            P::IsDomainIntroduced,
            frame(17, b"F\0"),
            Ok(Parsed::Flag(false)),
        ),
        (
            "introduced garbage",
            P::IsDomainIntroduced,
            frame(17, b"Y\0"),
            malformed(DecodeError::UnexpectedPayload),
        ),
        ("ok", P::WriteOk, frame(11, b"OK\0"), Ok(Parsed::Ok)),
        (
            "ok garbage",
            P::WriteOk,
            frame(11, b"KO\0"),
            malformed(DecodeError::UnexpectedPayload),
        ),
        (
            "ok error",
            P::WriteOk,
            frame(16, b"EROFS\0"),
            Err(ReplyError::Xs(XsError::ReadOnly)),
        ),
        (
            "watch event",
            P::WatchEvent,
            WATCH_EVENT.to_vec(),
            event("/local/domain/0/backend/vbd", "be"),
        ),
        (
            "watch event empty token",
            P::WatchEvent,
            frame(15, b"/a\0\0"),
            event("/a", ""),
        ),
        (
            "watch event no token",
            P::WatchEvent,
            frame(15, b"/a\0"),
            malformed(DecodeError::MissingNul),
        ),
        (
            "watch event extra field",
            P::WatchEvent,
            frame(15, b"/a\0t\0x\0"),
            malformed(DecodeError::UnexpectedPayload),
        ),
        (
            "watch event not UTF-8",
            P::WatchEvent,
            frame(15, b"/\xc3\0t\0"),
            malformed(DecodeError::InvalidUtf8),
        ),
    ];
    for (name, parser, wire, expected) in cases {
        let (msg, used) = parse_message(&wire).unwrap().unwrap();
        assert_eq!(used, wire.len(), "{name}");
        assert_eq!(run(parser, msg), expected, "{name}");
    }
}

#[test]
fn messages_delivered_byte_by_byte() {
    let stream = [WATCH_EVENT, READ_REPLY, ENOENT_REPLY, DIRECTORY_REPLY].concat();
    let boundaries: Vec<usize> = [WATCH_EVENT, READ_REPLY, ENOENT_REPLY, DIRECTORY_REPLY]
        .iter()
        .scan(0, |end, msg| {
            *end += msg.len();
            Some(*end)
        })
        .collect();
    let mut decoder = Decoder::new();
    let mut seen = Vec::new();
    for (i, byte) in stream.iter().enumerate() {
        decoder.push(std::slice::from_ref(byte));
        match decoder.next_message().unwrap() {
            Some(msg) => {
                assert!(boundaries.contains(&(i + 1)), "message ended at {}", i + 1);
                seen.push(msg);
            }
            None => assert!(!boundaries.contains(&(i + 1)), "no message at {}", i + 1),
        }
    }
    assert_eq!(decoder.buffered(), 0);
    let types: Vec<MsgType> = seen.iter().map(|msg| msg.msg_type()).collect();
    assert_eq!(
        types,
        [
            MsgType::WatchEvent,
            MsgType::Read,
            MsgType::Error,
            MsgType::Directory
        ]
    );
    assert_eq!(reply::read(seen[1].as_ref()).unwrap(), b"qemu-dm-3");
}

#[test]
fn every_prefix_is_incomplete_not_an_error() {
    for len in 0..READ_REQUEST.len() {
        assert_eq!(
            parse_message(&READ_REQUEST[..len]),
            Ok(None),
            "prefix {len}"
        );
    }
}

#[test]
fn several_messages_in_one_piece() {
    let mut decoder = Decoder::new();
    decoder.push(&[READ_REPLY, WATCH_EVENT, &READ_REPLY[..5]].concat());
    assert_eq!(
        decoder.next_message().unwrap().unwrap().msg_type(),
        MsgType::Read
    );
    assert_eq!(
        decoder.next_message().unwrap().unwrap().msg_type(),
        MsgType::WatchEvent
    );
    assert_eq!(decoder.next_message(), Ok(None));
    assert_eq!(decoder.buffered(), 5);
    decoder.push(&READ_REPLY[5..]);
    assert_eq!(
        decoder.next_message().unwrap().unwrap().msg_type(),
        MsgType::Read
    );
}

#[test]
fn oversize_header_is_fatal_before_the_payload_arrives() {
    let header = [2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x10, 0, 0]; // len 4097
    let err = DecodeError::PayloadTooLarge { len: 4097 };
    assert_eq!(parse_message(&header), Err(err));
    assert!(err.is_fatal());

    let mut decoder = Decoder::new();
    decoder.push(&header[..15]);
    assert_eq!(decoder.next_message(), Ok(None));
    decoder.push(&header[15..]);
    assert_eq!(decoder.next_message(), Err(err));
    // The framing is lost: valid bytes afterwards do not help.
    decoder.push(READ_REPLY);
    assert_eq!(decoder.next_message(), Err(err));
    decoder.reset();
    decoder.push(READ_REPLY);
    assert!(decoder.next_message().unwrap().is_some());

    let huge = [2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(
        parse_message(&huge),
        Err(DecodeError::PayloadTooLarge { len: u32::MAX })
    );
}

#[test]
fn largest_payload_is_accepted() {
    let wire = frame(2, &vec![b'x'; PAYLOAD_MAX]);
    let (msg, used) = parse_message(&wire).unwrap().unwrap();
    assert_eq!((msg.payload.len(), used), (PAYLOAD_MAX, wire.len()));
}

#[test]
fn bad_requests_are_rejected_before_sending() {
    let near_max = vec![b'v'; PAYLOAD_MAX - 3]; // "/a\0" + value = PAYLOAD_MAX
    let too_big = vec![b'v'; PAYLOAD_MAX - 2];
    let long_path = format!("/{}", "p".repeat(3072));
    let cases: Vec<(Request<'_>, Result<usize, EncodeError>)> = vec![
        (
            Request::Write {
                path: "/a",
                value: &near_max,
            },
            Ok(PAYLOAD_MAX),
        ),
        (
            Request::Write {
                path: "/a",
                value: &too_big,
            },
            Err(EncodeError::PayloadTooLarge {
                len: PAYLOAD_MAX + 1,
            }),
        ),
        (Request::Read { path: "/a\0b" }, Err(EncodeError::NulInPath)),
        (Request::Read { path: "" }, Err(EncodeError::EmptyPath)),
        (
            Request::Watch {
                path: "/a",
                token: "t\0",
            },
            Err(EncodeError::NulInToken),
        ),
        (
            Request::Rm { path: &long_path },
            Err(EncodeError::PathTooLong {
                len: 3073,
                max: 3072,
            }),
        ),
        (
            Request::Write {
                path: "/a",
                value: b"binary\0is\0fine",
            },
            Ok(17),
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(request.payload_len(), expected, "{request:?}");
        let mut out = vec![0xaa];
        let result = request.encode(1, 0, &mut out);
        match expected {
            Ok(len) => assert_eq!(result, Ok(16 + len)),
            Err(err) => {
                assert_eq!(result, Err(err));
                assert_eq!(out, [0xaa], "nothing appended on error");
            }
        }
    }
}

#[test]
fn malformed_requests_do_not_parse() {
    let cases: Vec<(u32, &[u8], DecodeError)> = vec![
        (2, b"/a", DecodeError::MissingNul),
        (2, b"/a\0/b\0", DecodeError::UnexpectedPayload),
        (4, b"/a\0", DecodeError::MissingNul),
        (7, b"X\0", DecodeError::UnexpectedPayload),
        (6, b"x\0", DecodeError::UnexpectedPayload),
        (10, b"65536\0", DecodeError::InvalidNumber),
        (14, b"/a\0", DecodeError::UnexpectedPayload),
        (14, b"/a\0q1\0", DecodeError::InvalidPerm),
        (22, b"/a\0-1\0", DecodeError::InvalidNumber),
        (8, b"1\0", DecodeError::UnsupportedType(MsgType::Introduce)),
        (16, b"EIO\0", DecodeError::UnsupportedType(MsgType::Error)),
        (99, b"", DecodeError::UnsupportedType(MsgType::Unknown(99))),
    ];
    for (msg_type, payload, expected) in cases {
        let wire = frame(msg_type, payload);
        let (msg, _) = parse_message(&wire).unwrap().unwrap();
        assert_eq!(Request::parse(msg), Err(expected), "{msg_type} {payload:?}");
    }
}
