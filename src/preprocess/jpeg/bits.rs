//! The entropy-coded data reader: bits MSB first, byte unstuffing, restart markers, and the
//! per-block decode that keeps the DC difference and skips the AC coefficients.

use super::huffman::{symbol, Huffman, EOB, LUT_BITS};
use super::TRUNCATED;

/// MSB-first entropy-coded-data reader with byte unstuffing; feeds zeros once a marker or the end is reached.
pub(super) struct BitReader<'a> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
    /// Valid bits are the top `nbits`; bits below them are zero or the correct following bits.
    pub(super) bits: u64,
    pub(super) nbits: u32,
    pub(super) at_marker: bool,
    /// Zero bits fed after the data ended, at the bottom of the valid bits.
    pub(super) fake: u32,
    pub(super) overrun: bool,
}

impl<'a> BitReader<'a> {
    pub(super) fn new(data: &'a [u8], pos: usize) -> Self {
        BitReader { data, pos, bits: 0, nbits: 0, at_marker: false, fake: 0, overrun: false }
    }

    /// Returns `(bits, nbits)` with at least 32 valid bits; the hot loop keeps them in registers.
    #[inline(always)]
    pub(super) fn refill(&mut self, bits: u64, nbits: u32) -> (u64, u32) {
        if let Some(chunk) = self.data.get(self.pos..self.pos + 8) {
            let w = u64::from_be_bytes(chunk.try_into().unwrap_or([0; 8]));
            if (!w).wrapping_sub(0x0101_0101_0101_0101) & w & 0x8080_8080_8080_8080 == 0 {
                let n = (63 - nbits) >> 3;
                self.pos += n as usize;
                return (bits | w >> nbits, nbits + n * 8);
            }
        }
        self.refill_slow(bits, nbits)
    }

    #[cold]
    pub(super) fn refill_slow(&mut self, mut bits: u64, mut nbits: u32) -> (u64, u32) {
        if self.fake > nbits {
            self.overrun = true;
            self.fake = nbits;
        }
        while nbits <= 56 {
            bits |= u64::from(self.next_byte()) << (56 - nbits);
            nbits += 8;
        }
        (bits, nbits)
    }

    pub(super) fn next_byte(&mut self) -> u8 {
        if !self.at_marker {
            if let Some(&b) = self.data.get(self.pos) {
                if b != 0xFF {
                    self.pos += 1;
                    return b;
                }
                let mut p = self.pos + 1;
                while self.data.get(p) == Some(&0xFF) {
                    p += 1;
                }
                if self.data.get(p) == Some(&0) {
                    self.pos = p + 1;
                    return 0xFF;
                }
            }
            self.at_marker = true;
        }
        self.fake += 8;
        0
    }

    /// True once bits past the end of the entropy-coded data have been consumed.
    pub(super) fn overran(&self) -> bool {
        self.overrun || self.fake > self.nbits
    }

    /// Decodes one block: returns the DC difference and skips the AC coefficients.
    #[inline(always)]
    pub(super) fn block(&mut self, dc: &Huffman, ac: &Huffman) -> Result<i32, &'static str> {
        let (mut bits, mut nbits, skip) = (self.bits, self.nbits, &*ac.skip);
        if nbits < 32 {
            (bits, nbits) = self.refill(bits, nbits);
        }
        let (s, len) = symbol(dc, bits)?;
        let s = s & 15;
        let field = bits << len;
        let v = (field >> 1 >> (63 - s)) as i32;
        // A field starting with 0 is negative: subtract 2^s - 1, branch-free (the sign is unpredictable).
        let diff = v + (!((field as i64 >> 63) as i32) & (1 - (1 << s)));
        (bits, nbits) = (bits << (len + s), nbits - len - s);
        let mut k = 1u32;
        loop {
            if nbits < 32 {
                (bits, nbits) = self.refill(bits, nbits);
            }
            let e = skip[(bits >> (64 - LUT_BITS)) as usize] as u32;
            let (n, next) = (e & 31, k + ((e >> 5) & 127));
            if next < 64 {
                (bits, nbits, k) = (bits << n, nbits - n, next);
                continue;
            }
            if e & EOB as u32 != 0 && next < 128 {
                (bits, nbits) = (bits << n, nbits - n);
                break;
            }
            {
                let (sym, len) = symbol(ac, bits)?;
                let (r, s) = (sym >> 4, sym & 15);
                (bits, nbits) = (bits << (len + s), nbits - len - s);
                k += if s == 0 { 16 } else { r + 1 };
                if (s == 0 && r != 15) || k >= 64 {
                    break;
                }
            }
        }
        (self.bits, self.nbits) = (bits, nbits);
        Ok(diff)
    }

    /// Handles a restart marker: discards buffered bits and moves past the next RSTn marker.
    pub(super) fn restart(&mut self) -> Result<(), String> {
        if self.overran() {
            return Err(TRUNCATED.into());
        }
        (self.bits, self.nbits, self.fake) = (0, 0, 0);
        while let Some(&b) = self.data.get(self.pos) {
            match (b, self.data.get(self.pos + 1)) {
                (0xFF, Some(0)) => self.pos += 2,
                (0xFF, _) if self.data.get(self.pos + 1) != Some(&0xFF) => break,
                _ => self.pos += 1,
            }
        }
        self.at_marker = !matches!(self.data.get(self.pos + 1), Some(0xD0..=0xD7));
        if !self.at_marker {
            self.pos += 2;
        }
        Ok(())
    }
}
