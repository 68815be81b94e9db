//! Index arithmetic of the rings shared with another domain. Producer and consumer indexes
//! run freely over `u32` (they wrap, they are never reduced); an entry lives at the index
//! modulo the ring size, a power of two. The byte rings (console, xenstore) move bytes with
//! [`produce`] and [`consume`], which only compute slots: the callers do the volatile
//! accesses to the shared page.

/// Entries written but not yet read. Indexes that claim more than the ring holds (a confused
/// or hostile peer) count as a full ring, never as more.
pub const fn used(prod: u32, cons: u32, size: u32) -> u32 {
    let n = prod.wrapping_sub(cons);
    if n > size {
        size
    } else {
        n
    }
}

/// Entries the producer may still write.
pub const fn free(prod: u32, cons: u32, size: u32) -> u32 {
    size - used(prod, cons, size)
}

/// The slot of free-running index `idx` in a ring of `size` (a power of two) entries.
pub const fn slot(idx: u32, size: u32) -> usize {
    (idx & (size - 1)) as usize
}

/// Writes as much of `data` as fits after `prod` through `put(slot, byte)`; returns how many
/// bytes were written (the caller then publishes `prod + n`).
pub fn produce(
    prod: u32,
    cons: u32,
    size: u32,
    data: &[u8],
    mut put: impl FnMut(usize, u8),
) -> u32 {
    let n = data.len().min(free(prod, cons, size) as usize);
    for (i, &b) in data[..n].iter().enumerate() {
        put(slot(prod.wrapping_add(i as u32), size), b);
    }
    n as u32
}

/// Reads as many bytes as are available after `cons` (at most `out.len()`) through
/// `get(slot)`; returns how many were read (the caller then publishes `cons + n`).
pub fn consume(
    prod: u32,
    cons: u32,
    size: u32,
    out: &mut [u8],
    mut get: impl FnMut(usize) -> u8,
) -> u32 {
    let n = out.len().min(used(prod, cons, size) as usize);
    for (i, b) in out[..n].iter_mut().enumerate() {
        *b = get(slot(cons.wrapping_add(i as u32), size));
    }
    n as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_and_free_follow_the_indexes() {
        // (prod, cons, size, used)
        for (prod, cons, size, want) in [
            (0u32, 0u32, 1024u32, 0u32),
            (10, 0, 1024, 10),
            (1024, 0, 1024, 1024),
            // Wrapped producer: 5 past the top of u32, consumer 3 below it.
            (4, u32::MAX - 3, 1024, 8),
            (u32::MAX, u32::MAX, 2048, 0),
            // More than the ring holds, or a consumer ahead of the producer: full.
            (2000, 0, 1024, 1024),
            (0, 1, 1024, 1024),
        ] {
            assert_eq!(used(prod, cons, size), want, "used({prod}, {cons}, {size})");
            assert_eq!(
                free(prod, cons, size),
                size - want,
                "free({prod}, {cons}, {size})"
            );
        }
    }

    #[test]
    fn slots_wrap_at_the_ring_size() {
        for (idx, size, want) in [
            (0u32, 1024u32, 0usize),
            (1023, 1024, 1023),
            (1024, 1024, 0),
            (2049, 2048, 1),
            (u32::MAX, 32, 31),
        ] {
            assert_eq!(slot(idx, size), want, "slot({idx}, {size})");
        }
    }

    /// A producer and a consumer over one ring, as two domains would use it.
    struct Pair {
        mem: Vec<u8>,
        prod: u32,
        cons: u32,
    }

    impl Pair {
        fn new(size: usize, start: u32) -> Self {
            Pair {
                mem: vec![0; size],
                prod: start,
                cons: start,
            }
        }
        fn size(&self) -> u32 {
            self.mem.len() as u32
        }
        fn write(&mut self, data: &[u8]) -> u32 {
            let (prod, cons, size) = (self.prod, self.cons, self.size());
            let mem = &mut self.mem;
            let n = produce(prod, cons, size, data, |i, b| mem[i] = b);
            self.prod = prod.wrapping_add(n);
            n
        }
        fn read(&mut self, max: usize) -> Vec<u8> {
            let mut out = vec![0; max];
            let n = consume(self.prod, self.cons, self.size(), &mut out, |i| self.mem[i]);
            self.cons = self.cons.wrapping_add(n);
            out.truncate(n as usize);
            out
        }
    }

    #[test]
    fn bytes_survive_wrapping_slots_and_indexes() {
        // (ring size, starting index, chunk written per step, chunk read per step)
        for (size, start, write, read) in [
            (16usize, 0u32, 5usize, 3usize),
            (16, 14, 16, 16),
            (16, u32::MAX - 6, 7, 4),
            (1024, u32::MAX - 100, 300, 250),
            (2048, 1 << 31, 2048, 2000),
        ] {
            let mut ring = Pair::new(size, start);
            let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
            let (mut sent, mut got) = (0usize, Vec::new());
            while got.len() < data.len() {
                let end = (sent + write).min(data.len());
                let n = ring.write(&data[sent..end]) as usize;
                assert!(
                    n <= size && used(ring.prod, ring.cons, size as u32) <= size as u32,
                    "ring {size} from {start}: overfilled"
                );
                sent += n;
                got.extend(ring.read(read));
            }
            assert_eq!(got, data, "ring {size} from {start}, {write}/{read}");
        }
    }

    #[test]
    fn a_full_ring_takes_nothing_and_an_empty_one_gives_nothing() {
        let mut ring = Pair::new(8, 3);
        assert_eq!(ring.write(b"0123456789"), 8);
        assert_eq!(ring.write(b"x"), 0);
        assert_eq!(ring.read(100), b"01234567");
        assert_eq!(ring.read(100), b"");
    }
}
