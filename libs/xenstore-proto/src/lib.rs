//! The xenstore wire protocol, independent of how bytes travel.
//!
//! Used over a PV guest's shared-memory xenstore ring by the freestanding runtime, over
//! Linux's `/dev/xen/xenbus` by the ioemu stub domain's init, and against the in-memory
//! double of the `test-utils` feature in tests.
//!
//! Layers, bottom up:
//!
//! - [`wire`]: the 16-byte header and the message types of `io/xs_wire.h`, and the
//!   limits ([`PAYLOAD_MAX`], [`ABS_PATH_MAX`], [`REL_PATH_MAX`]);
//! - [`Request`]: typed requests that encode to complete messages (into a `Vec` or a
//!   caller's buffer) and parse back from them;
//! - [`parse_message`] and [`Decoder`]: framing of a byte stream that arrives in pieces;
//!   an incomplete message is a state (`Ok(None)`), not an error;
//! - [`reply`]: typed parsing of replies and watch events, `XS_ERROR` as [`XsError`];
//! - [`Client`]: a blocking client over any [`Transport`], with watch event queueing and
//!   retried transactions;
//! - `testing` (feature `test-utils`): an in-memory xenstored implementing [`Transport`];
//! - `IoTransport` (feature `std`): a [`Transport`] over any `Read + Write` stream.
//!
//! Nothing here panics on input from the other side; malformed input is an error.
//!
//! ```
//! use xenstore_proto::{parse_message, reply, Request, TX_NONE};
//!
//! let bytes = Request::Read { path: "domid" }.to_vec(1, TX_NONE).unwrap();
//! let (msg, used) = parse_message(&bytes).unwrap().unwrap();
//! assert_eq!(used, bytes.len());
//! assert_eq!(Request::parse(msg).unwrap(), Request::Read { path: "domid" });
//!
//! // A reply: type READ, req_id 1, tx_id 0, four bytes of value.
//! let reply_bytes = [2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, b'1', b'2', b'3', b'4'];
//! let (msg, _) = parse_message(&reply_bytes).unwrap().unwrap();
//! assert_eq!(reply::read(msg).unwrap(), b"1234");
//! ```

#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod client;
mod decode;
mod encode;
mod error;
#[cfg(feature = "std")]
mod io;
mod perm;
pub mod reply;
#[cfg(feature = "test-utils")]
pub mod testing;
pub mod wire;

pub use client::{Client, Error, Transaction, Transport, MAX_TRANSACTION_ATTEMPTS};
pub use decode::{parse_message, Decoder, Message, MessageRef};
pub use encode::{encode_raw, Request};
pub use error::{DecodeError, EncodeError, XsError};
#[cfg(feature = "std")]
pub use io::IoTransport;
pub use perm::{Access, DomId, Perm};
pub use reply::{DirectoryPart, ReplyError, WatchEvent};
pub use wire::{
    Header, MsgType, ABS_PATH_MAX, HEADER_LEN, MESSAGE_MAX, PAYLOAD_MAX, REL_PATH_MAX, TX_NONE,
};
