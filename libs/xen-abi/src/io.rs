//! Shared-memory device interfaces (`xen/io/*.h`).

/// The PV console ring (`xen/io/console.h`).
pub mod console {
    /// `struct xencons_interface`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct XenconsInterface {
        pub r#in: [u8; 1024],
        pub out: [u8; 2048],
        pub in_cons: u32,
        pub in_prod: u32,
        pub out_cons: u32,
        pub out_prod: u32,
    }
}

/// The xenstore ring (`xen/io/xs_wire.h`).
pub mod xenstore {
    pub const XENSTORE_RING_SIZE: usize = 1024;
    pub const XENSTORE_PAYLOAD_MAX: usize = 4096;

    /// `struct xenstore_domain_interface`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct XenstoreDomainInterface {
        pub req: [u8; XENSTORE_RING_SIZE],
        pub rsp: [u8; XENSTORE_RING_SIZE],
        pub req_cons: u32,
        pub req_prod: u32,
        pub rsp_cons: u32,
        pub rsp_prod: u32,
        pub server_features: u32,
        pub connection: u32,
        pub error: u32,
    }

    /// `struct xsd_sockmsg`: the header in front of every xenstore message.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, Default)]
    pub struct XsdSockmsg {
        pub kind: u32,
        pub req_id: u32,
        pub tx_id: u32,
        pub len: u32,
    }
}

/// The generic shared ring (`xen/io/ring.h`, `DEFINE_RING_TYPES`).
pub mod ring {
    /// The header of a `*_sring`, followed by the ring's entries.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct SringHeader {
        pub req_prod: u32,
        pub req_event: u32,
        pub rsp_prod: u32,
        pub rsp_event: u32,
        pub pvt: [u8; 4],
        pub pad: [u8; 44],
    }

    /// Number of entries of a one-page ring whose entries (the union of request and response)
    /// are `entry_size` bytes: the largest power of two that fits (`__RING_SIZE`).
    pub const fn ring_size(page_size: usize, entry_size: usize) -> usize {
        let n = (page_size - core::mem::size_of::<SringHeader>()) / entry_size;
        if n == 0 {
            0
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        }
    }
}

/// The block device interface (`xen/io/blkif.h`).
pub mod blkif {
    use core::mem::size_of;

    use crate::GrantRef;

    pub const BLKIF_OP_READ: u8 = 0;
    pub const BLKIF_OP_WRITE: u8 = 1;
    pub const BLKIF_OP_WRITE_BARRIER: u8 = 2;
    pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
    pub const BLKIF_OP_DISCARD: u8 = 5;

    pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;

    pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;
    pub const BLKIF_RSP_ERROR: i16 = -1;
    pub const BLKIF_RSP_OKAY: i16 = 0;

    /// `info` bits in the backend's `info` node (`VDISK_*`).
    pub const VDISK_CDROM: u32 = 1;
    pub const VDISK_REMOVABLE: u32 = 2;
    pub const VDISK_READONLY: u32 = 4;

    /// `struct blkif_request_segment`: sectors `first_sect..=last_sect` (512-byte units) of
    /// the granted page.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, Default)]
    pub struct BlkifRequestSegment {
        pub gref: GrantRef,
        pub first_sect: u8,
        pub last_sect: u8,
    }

    /// `struct blkif_request`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, Default)]
    pub struct BlkifRequest {
        pub operation: u8,
        pub nr_segments: u8,
        pub handle: u16,
        pub id: u64,
        pub sector_number: u64,
        pub seg: [BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
    }

    /// `struct blkif_response`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, Default)]
    pub struct BlkifResponse {
        pub id: u64,
        pub operation: u8,
        pub status: i16,
    }

    /// `XEN_IO_PROTO_ABI_NATIVE` (`xen/io/protocols.h`): the layout of the ring's entries,
    /// which the front end names in its `protocol` node (they differ between x86_32 and
    /// x86_64, and a backend assumes its own layout otherwise).
    #[cfg(target_arch = "x86_64")]
    pub const PROTOCOL_NATIVE: &str = "x86_64-abi";
    #[cfg(target_arch = "x86")]
    pub const PROTOCOL_NATIVE: &str = "x86_32-abi";
    #[cfg(target_arch = "aarch64")]
    pub const PROTOCOL_NATIVE: &str = "arm-abi";

    /// The size of one entry of the shared ring, a union of a request and a response.
    pub const RING_ENTRY_SIZE: usize = {
        let (req, rsp) = (size_of::<BlkifRequest>(), size_of::<BlkifResponse>());
        if req > rsp {
            req
        } else {
            rsp
        }
    };
}

/// Xenbus states (`xen/io/xenbus.h`, `enum xenbus_state`).
pub mod xenbus {
    pub const UNKNOWN: u32 = 0;
    pub const INITIALISING: u32 = 1;
    pub const INIT_WAIT: u32 = 2;
    pub const INITIALISED: u32 = 3;
    pub const CONNECTED: u32 = 4;
    pub const CLOSING: u32 = 5;
    pub const CLOSED: u32 = 6;
    pub const RECONFIGURING: u32 = 7;
    pub const RECONFIGURED: u32 = 8;
}
