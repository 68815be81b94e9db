//! Arbitrary bytes from a "guest" into the in-memory xenstored: it must answer or close,
//! never panic, and everything it sends back must decode.

#![no_main]

use libfuzzer_sys::fuzz_target;
use xenstore_proto::testing::MemXenstore;
use xenstore_proto::{Decoder, Transport};

fuzz_target!(|data: &[u8]| {
    let store = MemXenstore::new();
    let _ = store.introduce_domain(5);
    let mut guest = store.connect(5);
    let mut dom0 = store.connect(0);
    let mut replies = Decoder::new();
    let mut buf = [0u8; 512];
    // Split the input at 0xfe bytes: pieces alternate between the guest and dom0.
    for (i, piece) in data.split(|&b| b == 0xfe).enumerate() {
        let conn = if i % 2 == 0 { &mut guest } else { &mut dom0 };
        if conn.send(piece).is_err() {
            continue;
        }
        if i % 2 == 0 {
            while let Ok(n) = guest.recv(&mut buf) {
                if n == 0 {
                    break;
                }
                replies.push(&buf[..n]);
                while let Some(msg) = replies.next_message().expect("store output decodes") {
                    assert!(msg.payload.len() <= xenstore_proto::PAYLOAD_MAX);
                }
            }
        }
    }
});
