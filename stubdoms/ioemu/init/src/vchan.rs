//! The vchan shared-memory byte stream (Xen's `io/libxenvchan.h`), server side.
//!
//! libxl's `vchan-socket-proxy` in dom0 is the client: for each QMP connection the
//! toolstack opens, it reads `ring-ref` and `event-channel` under our `qmp-vchan` path,
//! maps the granted page and binds the event channel. The server here uses the layout
//! `libxenvchan_server_init(.., 0, 0)` picks: both rings inside the one shared page, the
//! client-to-server ring (order 10) at offset 1024 and the server-to-client ring
//! (order 11) at offset 2048.
//!
//! [`Ring`] is the protocol on a page; [`Page`] is the memory, always accessed through
//! atomics because the other domain changes it at any time. The Linux devices that share
//! the page and signal the peer are in [`crate::sys`].

use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU16, AtomicU32, AtomicU8, Ordering};

/// Size of the shared page.
pub const PAGE_SIZE: usize = 4096;

// Offsets in `struct vchan_interface`.
const LEFT_CONS: usize = 0;
const LEFT_PROD: usize = 4;
const RIGHT_CONS: usize = 8;
const RIGHT_PROD: usize = 12;
const LEFT_ORDER: usize = 16;
const RIGHT_ORDER: usize = 18;
/// Offset of `cli_live`.
pub const CLI_LIVE: usize = 20;
/// Offset of `srv_live`: the server's unmap notification clears it.
pub const SRV_LIVE: usize = 21;
const CLI_NOTIFY: usize = 22;
const SRV_NOTIFY: usize = 23;

const SMALL_ORDER: u16 = 10;
const LARGE_ORDER: u16 = 11;
const SMALL_OFFSET: usize = 1024;
const LARGE_OFFSET: usize = 2048;

/// `VCHAN_NOTIFY_WRITE`: "tell me when you write".
pub const NOTIFY_WRITE: u8 = 1;
/// `VCHAN_NOTIFY_READ`: "tell me when you read".
pub const NOTIFY_READ: u8 = 2;

/// A page shared with another domain.
///
/// INVARIANT: `ptr` points to `PAGE_SIZE` bytes, aligned to 4096, that stay mapped and
/// writable for the life of the `Page`, and that Rust code touches only through atomic
/// operations (the other side writes concurrently).
pub struct Page {
    ptr: NonNull<u8>,
}

// SAFETY: the page is only accessed through atomics, which are safe to use from any thread.
unsafe impl Send for Page {}

impl Page {
    /// Wraps a mapped page.
    ///
    /// # Safety
    ///
    /// `ptr` must satisfy the type's invariant for as long as the `Page` lives.
    pub unsafe fn new(ptr: NonNull<u8>) -> Self {
        Page { ptr }
    }

    /// The page's address.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn u8(&self, off: usize) -> &AtomicU8 {
        assert!(off < PAGE_SIZE);
        // SAFETY: in bounds of the mapped page (invariant); any address is aligned for u8.
        unsafe { AtomicU8::from_ptr(self.ptr.as_ptr().add(off)) }
    }

    fn u16(&self, off: usize) -> &AtomicU16 {
        assert!(off % 2 == 0 && off + 2 <= PAGE_SIZE);
        // SAFETY: in bounds and 2-aligned, since the page is 4096-aligned (invariant).
        unsafe { AtomicU16::from_ptr(self.ptr.as_ptr().add(off).cast()) }
    }

    fn u32(&self, off: usize) -> &AtomicU32 {
        assert!(off % 4 == 0 && off + 4 <= PAGE_SIZE);
        // SAFETY: in bounds and 4-aligned, since the page is 4096-aligned (invariant).
        unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(off).cast()) }
    }
}

/// Which end of the channel this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Reads the left ring, writes the right one.
    Server,
    /// The opposite; used by the tests to play dom0's proxy.
    Client,
}

/// The peer's state as the shared page shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// The client has not connected yet (`cli_live == 2`).
    Waiting,
    /// Connected.
    Connected,
    /// Gone (or the page holds nonsense).
    Gone,
}

/// One end of a vchan over a shared page.
pub struct Ring {
    page: Page,
    role: Role,
}

impl Ring {
    /// Sets up a fresh server page: zeroed, in-page rings, client not yet connected.
    pub fn init_server(page: Page) -> Self {
        for off in 0..PAGE_SIZE {
            page.u8(off).store(0, Ordering::Relaxed);
        }
        page.u16(LEFT_ORDER).store(SMALL_ORDER, Ordering::Relaxed);
        page.u16(RIGHT_ORDER).store(LARGE_ORDER, Ordering::Relaxed);
        page.u8(CLI_LIVE).store(2, Ordering::Relaxed);
        page.u8(SRV_LIVE).store(1, Ordering::Relaxed);
        // Ask the client to signal its first write, as libxenvchan does.
        page.u8(CLI_NOTIFY).store(NOTIFY_WRITE, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        Ring {
            page,
            role: Role::Server,
        }
    }

    /// Attaches to a page a server set up (tests play the client with this).
    pub fn attach_client(page: Page) -> Self {
        page.u8(CLI_LIVE).store(1, Ordering::SeqCst);
        // Like libxenvchan's client: ask the server to signal its first write.
        page.u8(SRV_NOTIFY).store(NOTIFY_WRITE, Ordering::SeqCst);
        Ring {
            page,
            role: Role::Client,
        }
    }

    /// The peer's state.
    pub fn peer(&self) -> Peer {
        let live = match self.role {
            Role::Server => self.page.u8(CLI_LIVE).load(Ordering::SeqCst),
            Role::Client => self.page.u8(SRV_LIVE).load(Ordering::SeqCst),
        };
        match live {
            1 => Peer::Connected,
            2 => Peer::Waiting,
            _ => Peer::Gone,
        }
    }

    /// Marks this end closed (`srv_live`/`cli_live` = 0); the caller then notifies.
    pub fn close(&self) {
        let off = if self.role == Role::Server {
            SRV_LIVE
        } else {
            CLI_LIVE
        };
        self.page.u8(off).store(0, Ordering::SeqCst);
    }

    /// The ring this end reads: (cons, prod, data offset, size).
    fn read_ring(&self) -> (usize, usize, usize, u32) {
        match self.role {
            Role::Server => (LEFT_CONS, LEFT_PROD, SMALL_OFFSET, 1 << SMALL_ORDER),
            Role::Client => (RIGHT_CONS, RIGHT_PROD, LARGE_OFFSET, 1 << LARGE_ORDER),
        }
    }

    fn write_ring(&self) -> (usize, usize, usize, u32) {
        match self.role {
            Role::Server => (RIGHT_CONS, RIGHT_PROD, LARGE_OFFSET, 1 << LARGE_ORDER),
            Role::Client => (LEFT_CONS, LEFT_PROD, SMALL_OFFSET, 1 << SMALL_ORDER),
        }
    }

    /// Our requests to the peer live in the peer's notify byte, its requests in ours.
    fn notify_bytes(&self) -> (usize, usize) {
        match self.role {
            Role::Server => (CLI_NOTIFY, SRV_NOTIFY),
            Role::Client => (SRV_NOTIFY, CLI_NOTIFY),
        }
    }

    fn request(&self, bit: u8) {
        self.page
            .u8(self.notify_bytes().0)
            .fetch_or(bit, Ordering::SeqCst);
    }

    /// Whether the peer asked to hear about `bit`; clears the request.
    fn peer_wants(&self, bit: u8) -> bool {
        fence(Ordering::SeqCst);
        self.page
            .u8(self.notify_bytes().1)
            .fetch_and(!bit, Ordering::SeqCst)
            & bit
            != 0
    }

    /// Bytes waiting to be read. A peer that claims more than the ring holds is treated
    /// as having sent nothing: the channel stalls instead of reading out of bounds.
    pub fn readable(&self) -> usize {
        let (cons, prod, _, size) = self.read_ring();
        let ready = self
            .page
            .u32(prod)
            .load(Ordering::SeqCst)
            .wrapping_sub(self.page.u32(cons).load(Ordering::SeqCst));
        if ready > size {
            0
        } else {
            ready as usize
        }
    }

    /// Bytes that can be written now.
    pub fn writable(&self) -> usize {
        let (cons, prod, _, size) = self.write_ring();
        let used = self
            .page
            .u32(prod)
            .load(Ordering::SeqCst)
            .wrapping_sub(self.page.u32(cons).load(Ordering::SeqCst));
        size.checked_sub(used).map_or(0, |free| free as usize)
    }

    /// Reads up to `buf.len()` bytes. Returns how many, and whether the peer must be
    /// notified. When nothing is there, asks the peer to notify us on its next write.
    pub fn read(&self, buf: &mut [u8]) -> (usize, bool) {
        let mut ready = self.readable();
        if ready == 0 {
            self.request(NOTIFY_WRITE);
            ready = self.readable();
        }
        let n = ready.min(buf.len());
        if n == 0 {
            return (0, false);
        }
        let (cons_off, _, data, size) = self.read_ring();
        let cons = self.page.u32(cons_off).load(Ordering::SeqCst);
        fence(Ordering::SeqCst);
        for (i, b) in buf.iter_mut().take(n).enumerate() {
            let idx = (cons.wrapping_add(i as u32) & (size - 1)) as usize;
            *b = self.page.u8(data + idx).load(Ordering::Relaxed);
        }
        fence(Ordering::SeqCst);
        self.page
            .u32(cons_off)
            .store(cons.wrapping_add(n as u32), Ordering::SeqCst);
        (n, self.peer_wants(NOTIFY_READ))
    }

    /// Writes as much of `data` as fits. Returns how many bytes, and whether the peer must
    /// be notified. When the ring is full, asks the peer to notify us when it reads.
    pub fn write(&self, data: &[u8]) -> (usize, bool) {
        let mut space = self.writable();
        if space < data.len() {
            self.request(NOTIFY_READ);
            space = self.writable();
        }
        let n = space.min(data.len());
        if n == 0 {
            return (0, false);
        }
        let (_, prod_off, ring, size) = self.write_ring();
        let prod = self.page.u32(prod_off).load(Ordering::SeqCst);
        fence(Ordering::SeqCst);
        for (i, &b) in data.iter().take(n).enumerate() {
            let idx = (prod.wrapping_add(i as u32) & (size - 1)) as usize;
            self.page.u8(ring + idx).store(b, Ordering::Relaxed);
        }
        fence(Ordering::SeqCst);
        self.page
            .u32(prod_off)
            .store(prod.wrapping_add(n as u32), Ordering::SeqCst);
        (n, self.peer_wants(NOTIFY_WRITE))
    }

    /// The page, e.g. to unmap it.
    pub fn page(&self) -> &Page {
        &self.page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(4096))]
    struct Mem([u8; PAGE_SIZE]);

    fn pair(mem: &mut Mem) -> (Ring, Ring) {
        let ptr = NonNull::new(mem.0.as_mut_ptr()).unwrap();
        // SAFETY: `mem` is a page-aligned page that outlives both rings in each test; all
        // access goes through atomics.
        let server = Ring::init_server(unsafe { Page::new(ptr) });
        assert_eq!(server.peer(), Peer::Waiting);
        // SAFETY: as above.
        let client = Ring::attach_client(unsafe { Page::new(ptr) });
        (server, client)
    }

    /// The offsets and constants this module uses, against `struct vchan_interface` of the
    /// libxenvchan header QEMU's Xen libraries are built with, compiled as C (the compiler
    /// and include folder `cargo xtask test` names: the build environment's).
    #[test]
    fn offsets_match_the_c_header() {
        let include = std::env::var("XEN_INCLUDE_DIR").expect(
            "XEN_INCLUDE_DIR is not set: run `cargo xtask test`, or set it to the folder with xen/io/libxenvchan.h",
        );
        let cc = std::env::var("XEN_ABI_CC")
            .or_else(|_| std::env::var("CC"))
            .unwrap_or_else(|_| "cc".into());
        let fields = [
            ("offsetof(struct vchan_interface, left.cons)", LEFT_CONS),
            ("offsetof(struct vchan_interface, left.prod)", LEFT_PROD),
            ("offsetof(struct vchan_interface, right.cons)", RIGHT_CONS),
            ("offsetof(struct vchan_interface, right.prod)", RIGHT_PROD),
            ("offsetof(struct vchan_interface, left_order)", LEFT_ORDER),
            ("offsetof(struct vchan_interface, right_order)", RIGHT_ORDER),
            ("offsetof(struct vchan_interface, cli_live)", CLI_LIVE),
            ("offsetof(struct vchan_interface, srv_live)", SRV_LIVE),
            ("offsetof(struct vchan_interface, cli_notify)", CLI_NOTIFY),
            ("offsetof(struct vchan_interface, srv_notify)", SRV_NOTIFY),
            ("VCHAN_NOTIFY_WRITE", usize::from(NOTIFY_WRITE)),
            ("VCHAN_NOTIFY_READ", usize::from(NOTIFY_READ)),
        ];
        let mut src = String::from(
            "#include <stddef.h>\n#include <stdint.h>\n#include <stdio.h>\n#include <xen/io/libxenvchan.h>\nint main(void) {\n",
        );
        for (c, _) in &fields {
            src += &format!("  printf(\"%zu\\n\", (size_t)({c}));\n");
        }
        src += "  return 0;\n}\n";
        let dir = std::env::temp_dir().join(format!("vchan-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("layout.c"), src).unwrap();
        let out = std::process::Command::new(&cc)
            .args(["-static", "-I", &include, "-o"])
            .arg(dir.join("layout"))
            .arg(dir.join("layout.c"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
        assert!(
            out.status.success(),
            "compiling against {include} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = std::process::Command::new(dir.join("layout"))
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let c: Vec<usize> = String::from_utf8_lossy(&run.stdout)
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        let rust: Vec<usize> = fields.iter().map(|(_, v)| *v).collect();
        assert_eq!(c, rust, "{:?}", fields.map(|(n, _)| n));
    }

    #[test]
    fn layout_matches_libxenvchan() {
        let mut mem = Mem([0xaa; PAGE_SIZE]);
        let (_server, _client) = pair(&mut mem);
        assert_eq!(&mem.0[16..20], &[10, 0, 11, 0], "orders");
        assert_eq!(mem.0[SRV_LIVE], 1);
        assert_eq!(mem.0[CLI_LIVE], 1, "client attached");
        assert_eq!(mem.0[CLI_NOTIFY], NOTIFY_WRITE);
        assert!(mem.0[24..].iter().all(|&b| b == 0), "zeroed");
    }

    #[test]
    fn bytes_flow_both_ways_across_the_wrap() {
        let mut mem = Mem([0; PAGE_SIZE]);
        let (server, client) = pair(&mut mem);
        assert_eq!(server.peer(), Peer::Connected);
        let mut total = Vec::new();
        let mut got = Vec::new();
        // 3000 bytes through the 1024-byte ring in odd-sized pieces.
        for round in 0u32..20 {
            let msg: Vec<u8> = (0..150).map(|i| (round * 7 + i) as u8).collect();
            assert_eq!(client.write(&msg).0, 150);
            total.extend_from_slice(&msg);
            let mut buf = [0u8; 97];
            loop {
                let (n, _) = server.read(&mut buf);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
        assert_eq!(got, total);
        let reply = b"{\"return\": {}}\r\n".repeat(200);
        let mut sent = 0;
        let mut back = Vec::new();
        while sent < reply.len() {
            sent += server.write(&reply[sent..]).0;
            let mut buf = [0u8; 500];
            let (n, _) = client.read(&mut buf);
            back.extend_from_slice(&buf[..n]);
        }
        let mut buf = [0u8; 4096];
        let (n, _) = client.read(&mut buf);
        back.extend_from_slice(&buf[..n]);
        assert_eq!(back, reply);
    }

    #[test]
    fn full_ring_takes_what_fits_and_asks_for_a_read_notification() {
        let mut mem = Mem([0; PAGE_SIZE]);
        let (server, client) = pair(&mut mem);
        assert_eq!(
            server.write(&[1; 3000]),
            (2048, true),
            "first write is signalled"
        );
        assert_eq!(server.write(&[2; 10]), (0, false));
        // The client reads: the server asked to hear about it.
        let mut buf = [0u8; 100];
        assert_eq!(client.read(&mut buf), (100, true));
        assert_eq!(client.read(&mut buf), (100, false), "request was cleared");
        assert_eq!(server.writable(), 200);
    }

    #[test]
    fn reader_asks_for_write_notifications_when_empty() {
        let mut mem = Mem([0; PAGE_SIZE]);
        let (server, client) = pair(&mut mem);
        // The initial request from init_server makes the client's first write notify.
        assert_eq!(client.write(b"a"), (1, true));
        assert_eq!(client.write(b"b"), (1, false));
        let mut buf = [0u8; 8];
        assert_eq!(server.read(&mut buf).0, 2);
        assert_eq!(server.read(&mut buf), (0, false));
        assert_eq!(
            client.write(b"c"),
            (1, true),
            "empty read re-armed the request"
        );
    }

    #[test]
    fn lying_peer_cannot_make_us_read_out_of_bounds() {
        let mut mem = Mem([0; PAGE_SIZE]);
        let (server, _client) = pair(&mut mem);
        let base = server.page().as_ptr();
        // SAFETY: the test owns the page; the store stands in for a hostile peer and is
        // made through the same atomic type the ring uses.
        unsafe { AtomicU32::from_ptr(base.add(LEFT_PROD).cast()) }.store(5000, Ordering::SeqCst);
        assert_eq!(server.readable(), 0);
        let mut buf = [0u8; 16];
        assert_eq!(server.read(&mut buf).0, 0);
        // SAFETY: as above.
        unsafe { AtomicU32::from_ptr(base.add(RIGHT_CONS).cast()) }.store(9999, Ordering::SeqCst);
        assert_eq!(server.writable(), 0);
    }

    #[test]
    fn close_and_peer_states() {
        let mut mem = Mem([0; PAGE_SIZE]);
        let (server, client) = pair(&mut mem);
        assert_eq!(client.peer(), Peer::Connected);
        client.close();
        assert_eq!(server.peer(), Peer::Gone);
        server.close();
        assert_eq!(client.peer(), Peer::Gone);
    }
}
