//! Arbitrary bytes from "xenstored": framing, then every reply parser on each message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use xenstore_proto::{reply, Decoder, MsgType, Request};

fuzz_target!(|data: &[u8]| {
    // The first byte picks how the stream is cut into pieces, as ring reads would.
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(cut).max(1);
    let mut decoder = Decoder::new();
    for chunk in stream.chunks(piece) {
        decoder.push(chunk);
        loop {
            match decoder.next_message() {
                Ok(Some(msg)) => {
                    let msg = msg.as_ref();
                    let _ = reply::read(msg);
                    let _ = reply::directory(msg);
                    let _ = reply::directory_part(msg);
                    let _ = reply::get_perms(msg);
                    let _ = reply::transaction_start(msg);
                    let _ = reply::get_domain_path(msg);
                    let _ = reply::is_domain_introduced(msg);
                    let _ = reply::ok(msg, MsgType::Write);
                    let _ = reply::watch_event(msg);
                    let _ = reply::error(msg.payload);
                    // A request that parses and passes the encoder's checks (paths
                    // that are not empty and not too long) must survive a round trip.
                    let parsed = Request::parse(msg);
                    let reencoded = parsed.as_ref().ok().and_then(|request| {
                        request.to_vec(msg.header.req_id, msg.header.tx_id).ok()
                    });
                    if let (Ok(request), Some(bytes)) = (parsed, reencoded) {
                        let (again, _) = xenstore_proto::parse_message(&bytes)
                            .expect("re-encoded request frames")
                            .expect("re-encoded request is complete");
                        assert_eq!(Request::parse(again).ok(), Some(request));
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    assert!(err.is_fatal());
                    return;
                }
            }
        }
    }
});
