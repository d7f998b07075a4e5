//! Huffman tables: a 12-bit lookup for symbols and a skip table that consumes several whole AC
//! codes with their magnitude bits per lookup.

/// Bits looked up at once in the Huffman tables.
pub(super) const LUT_BITS: u32 = 12;
pub(super) const LUT_SIZE: usize = 1 << LUT_BITS;
/// Flag in a skip-table entry: the entry ends with an end-of-block code (its advance then includes 64).
pub(super) const EOB: u16 = 1 << 15;
/// Skip-table entry whose first code is longer than `LUT_BITS`: advance 127, so the fast path never takes it.
pub(super) const SLOW: u32 = 127 << 5;

/// A Huffman table with a fast lookup for codes of up to `LUT_BITS` bits and a canonical slow path.
pub(super) struct Huffman {
    /// Indexed by the next `LUT_BITS` bits: code length | symbol << 8, or 0 for a longer code.
    pub(super) lut: Box<[u16; LUT_SIZE]>,
    /// AC only, indexed like `lut`: bits consumed | coefficients advanced << 5 | `EOB`, covering whole
    /// codes plus magnitude bits; `SLOW` when the first code is longer than `LUT_BITS`.
    pub(super) skip: Box<[u16; LUT_SIZE]>,
    /// Largest code of each length (index 1..=16), -1 when none.
    pub(super) maxcode: [i32; 17],
    /// Index into `vals` of code 0 of each length (may be negative).
    pub(super) valptr: [i32; 17],
    pub(super) vals: Vec<u8>,
}

impl Huffman {
    /// Builds a table from the DHT code-length counts and symbols; rejects over-subscribed code sets.
    pub(super) fn new(counts: &[u8], vals: &[u8], is_ac: bool) -> Result<Huffman, String> {
        let mut lut = Box::new([0u16; LUT_SIZE]);
        let (mut maxcode, mut valptr) = ([-1i32; 17], [0i32; 17]);
        let (mut code, mut k) = (0i32, 0usize);
        for len in 1..=16u32 {
            let n = counts[len as usize - 1] as usize;
            valptr[len as usize] = k as i32 - code;
            for &sym in &vals[k..k + n] {
                if code >= 1 << len {
                    return Err("bad Huffman table (over-subscribed code lengths)".into());
                }
                if len <= LUT_BITS {
                    let shift = LUT_BITS - len;
                    let start = (code as usize) << shift;
                    lut[start..start + (1 << shift)].fill(len as u16 | (sym as u16) << 8);
                }
                code += 1;
            }
            k += n;
            maxcode[len as usize] = if n > 0 { code - 1 } else { -1 };
            code <<= 1;
        }
        let mut skip = Box::new([0u16; LUT_SIZE]);
        if is_ac {
            for (i, e) in skip.iter_mut().enumerate() {
                *e = skip_entry(&lut, i as u32);
            }
        }
        Ok(Huffman { lut, skip, maxcode, valptr, vals: vals.to_vec() })
    }
}

/// Packs as many whole AC codes (with magnitude bits) as fit in the `LUT_BITS` bits `window`, stopping at EOB.
pub(super) fn skip_entry(lut: &[u16; LUT_SIZE], window: u32) -> u16 {
    let (mut used, mut adv, mut entry) = (0u32, 0u32, SLOW);
    while used < LUT_BITS && adv < 64 {
        let e = lut[((window << used) as usize) & (LUT_SIZE - 1)] as u32;
        let (len, r, s) = (e & 0xff, e >> 12, (e >> 8) & 15);
        if len == 0 || used + len > LUT_BITS {
            break;
        }
        if s == 0 && r != 15 {
            return ((used + len) | (adv + 64) << 5) as u16 | EOB;
        }
        let step = if s == 0 { 16 } else { r + 1 };
        if used + len + s > LUT_BITS {
            if used == 0 {
                entry = (len + s) | step << 5;
            }
            break;
        }
        used += len + s;
        adv += step;
        entry = used | adv << 5;
    }
    entry as u16
}

/// Decodes one Huffman symbol from the top of `bits` (at least 16 valid): returns (symbol, code length).
#[inline(always)]
pub(super) fn symbol(h: &Huffman, bits: u64) -> Result<(u32, u32), &'static str> {
    let e = h.lut[(bits >> (64 - LUT_BITS)) as usize] as u32;
    if e != 0 {
        return Ok((e >> 8, e & 0xff));
    }
    symbol_slow(h, bits)
}

#[cold]
pub(super) fn symbol_slow(h: &Huffman, bits: u64) -> Result<(u32, u32), &'static str> {
    for len in LUT_BITS + 1..=16 {
        let code = (bits >> (64 - len)) as i32;
        if code <= h.maxcode[len as usize] {
            let sym = h.vals.get((h.valptr[len as usize] + code) as usize).ok_or("corrupt Huffman table")?;
            return Ok((*sym as u32, len));
        }
    }
    Err("invalid Huffman code in entropy-coded data")
}
