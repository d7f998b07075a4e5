//! DC-only ("1/8 scale") decoding of baseline JPEGs.
//!
//! Each 8x8 block becomes one pixel, `DESCALE(dc * q0, 3) + 128` (libjpeg's `jpeg_idct_1x1`). AC coefficients
//! are entropy-decoded only to be skipped, using a table that consumes several short codes plus their
//! magnitude bits per lookup.
//!
//! Large photos are decoded this way when the model's input is at most an eighth of their size
//! (see [`super::image`]); anything it does not handle goes to the full decoder.

mod bits;
mod color;
mod huffman;
#[cfg(test)]
mod tests;

use bits::BitReader;
use color::to_rgb;
use huffman::Huffman;
use image::RgbImage;

const TRUNCATED: &str = "truncated or corrupt entropy-coded data";

struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
}

/// Header state collected before the first scan.
#[derive(Default)]
struct Header {
    /// DC quantizer of each table.
    q0: [Option<i32>; 4],
    dc: [Option<Huffman>; 4],
    ac: [Option<Huffman>; 4],
    frame: Option<(usize, usize, Vec<Component>)>,
    restart: usize,
    adobe_transform: Option<u8>,
}

/// A component of the scan being decoded, with its 1/8-scale sample plane.
struct ScanComp<'h> {
    frame_idx: usize,
    dc: &'h Huffman,
    ac: &'h Huffman,
    q0: i32,
    h: usize,
    v: usize,
    stride: usize,
    pred: i32,
    plane: Vec<u8>,
}

/// Decodes a baseline JPEG at 1/8 scale: ceil(w/8) x ceil(h/8) pixels, one per 8x8 block of the
/// full-resolution image (pixels of the luma grid). Returns Ok(None) for JPEGs this decoder does not
/// handle (progressive, arithmetic-coded, 12-bit, lossless, not 1 or 3 components (e.g. CMYK), components
/// in separate scans, sampling factors it does not support), so the caller falls back to a full decoder.
/// Returns Err(String) with a clear reason for a corrupt file (bad marker, truncated before the first scan,
/// Huffman code that does not exist, ...). Grayscale (1 component) gives R=G=B.
pub fn decode_dc(bytes: &[u8]) -> Result<Option<RgbImage>, String> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err("not a JPEG file (no SOI marker)".into());
    }
    let mut hdr = Header::default();
    let mut pos = 2;
    loop {
        if bytes.get(pos) != Some(&0xFF) {
            return Err(format!("expected a marker at offset {pos}"));
        }
        while bytes.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let marker = *bytes.get(pos).ok_or("truncated before the first scan")?;
        pos += 1;
        if matches!(marker, 0x01 | 0xD0..=0xD7) {
            continue;
        }
        let len = match bytes.get(pos..pos + 2) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]) as usize,
            None => return Err("truncated before the first scan".into()),
        };
        let seg = bytes.get(pos + 2..pos + len.max(2)).ok_or("truncated marker segment")?;
        pos += len.max(2);
        let err = |what: &str| format!("corrupt {what} segment");
        match marker {
            0xC0 | 0xC1 if hdr.frame.is_some() => return Err("more than one SOF marker".into()),
            0xC0 | 0xC1 => match parse_sof(seg).ok_or_else(|| err("SOF"))? {
                Some(frame) => hdr.frame = Some(frame),
                None => return Ok(None),
            },
            0xC2..=0xCF if marker != 0xC4 && marker != 0xC8 => return Ok(None),
            0xC4 => parse_dht(seg, &mut hdr)?,
            0xDB => parse_dqt(seg, &mut hdr.q0).ok_or_else(|| err("DQT"))?,
            0xDD => {
                hdr.restart =
                    seg.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize).ok_or_else(|| err("DRI"))?
            }
            0xEE if seg.starts_with(b"Adobe") && seg.len() >= 12 => hdr.adobe_transform = Some(seg[11]),
            0xE0..=0xEF | 0xFE => {}
            0xDA => return decode_scan(&hdr, seg, bytes, pos),
            0xD8 | 0xD9 => return Err("no scan before EOI".into()),
            _ => return Err(format!("unexpected marker 0xFF{marker:02X}")),
        }
    }
}

type Frame = (usize, usize, Vec<Component>);

/// Parses SOF0/SOF1; `Some(None)` for frames this decoder does not handle, `None` when corrupt.
fn parse_sof(seg: &[u8]) -> Option<Option<Frame>> {
    let (&prec, rest) = seg.split_first()?;
    let height = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]) as usize;
    let width = u16::from_be_bytes([*rest.get(2)?, *rest.get(3)?]) as usize;
    let n = *rest.get(4)? as usize;
    let specs = rest.get(5..5 + 3 * n)?;
    let comps: Vec<Component> = specs
        .chunks_exact(3)
        .map(|c| Component { id: c[0], h: (c[1] >> 4) as usize, v: (c[1] & 15) as usize, tq: c[2] as usize })
        .collect();
    let bad = |c: &Component| !(1..=4).contains(&c.h) || !(1..=4).contains(&c.v) || c.tq > 3;
    if width == 0 || height == 0 || n == 0 || comps.iter().any(bad) {
        return None;
    }
    let hmax = comps.iter().map(|c| c.h).max()?;
    let vmax = comps.iter().map(|c| c.v).max()?;
    let uneven = comps.iter().any(|c| hmax % c.h != 0 || vmax % c.v != 0);
    if prec != 8 || !(n == 1 || n == 3) || uneven || comps.iter().map(|c| c.h * c.v).sum::<usize>() > 10 {
        return Some(None);
    }
    Some(Some((width, height, comps)))
}

fn parse_dht(mut seg: &[u8], hdr: &mut Header) -> Result<(), String> {
    while let Some((&tc_th, rest)) = seg.split_first() {
        let (class, id) = ((tc_th >> 4) as usize, (tc_th & 15) as usize);
        let counts = rest.get(..16).ok_or("corrupt DHT segment")?;
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let vals = rest.get(16..16 + total).ok_or("corrupt DHT segment")?;
        if class > 1 || id > 3 || total > 256 || (class == 0 && vals.iter().any(|&v| v > 15)) {
            return Err("corrupt DHT segment".into());
        }
        let table = Some(Huffman::new(counts, vals, class == 1)?);
        if class == 0 {
            hdr.dc[id] = table;
        } else {
            hdr.ac[id] = table;
        }
        seg = &rest[16 + total..];
    }
    Ok(())
}

fn parse_dqt(mut seg: &[u8], q0: &mut [Option<i32>; 4]) -> Option<()> {
    while let Some((&pq_tq, rest)) = seg.split_first() {
        let (wide, id) = (pq_tq >> 4, (pq_tq & 15) as usize);
        let size = [64, 128].get(wide as usize)?;
        let table = rest.get(..*size)?;
        *q0.get_mut(id)? =
            Some(if wide == 1 { u16::from_be_bytes([table[0], table[1]]) as i32 } else { table[0] as i32 });
        seg = &rest[*size..];
    }
    Some(())
}

/// Decodes the first scan (which must contain every component) and converts it to RGB.
fn decode_scan(hdr: &Header, seg: &[u8], bytes: &[u8], pos: usize) -> Result<Option<RgbImage>, String> {
    let (width, height, frame) = hdr.frame.as_ref().ok_or("scan before SOF marker")?;
    let (width, height) = (*width, *height);
    let n = *seg.first().ok_or("corrupt SOS segment")? as usize;
    let specs = seg.get(1..1 + 2 * n).ok_or("corrupt SOS segment")?;
    if seg.get(1 + 2 * n..4 + 2 * n) != Some(&[0, 63, 0]) {
        return Ok(None);
    }
    if n != frame.len() {
        return Ok(None);
    }
    let hmax = frame.iter().map(|c| c.h).max().unwrap_or(1);
    let vmax = frame.iter().map(|c| c.v).max().unwrap_or(1);
    let (mcus_x, mcus_y) = if n == 1 {
        (width.div_ceil(8), height.div_ceil(8))
    } else {
        (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax))
    };
    let mut comps = Vec::with_capacity(n);
    for spec in specs.chunks_exact(2) {
        let frame_idx = frame.iter().position(|c| c.id == spec[0]).ok_or("SOS names an unknown component")?;
        if comps.iter().any(|c: &ScanComp| c.frame_idx == frame_idx) {
            return Err("SOS names a component twice".into());
        }
        let fc = &frame[frame_idx];
        let (h, v) = if n == 1 { (1, 1) } else { (fc.h, fc.v) };
        let (Some(dc), Some(ac)) = (&hdr.dc[(spec[1] >> 4) as usize & 3], &hdr.ac[(spec[1] & 15) as usize & 3]) else {
            return Ok(None); // e.g. Motion-JPEG relying on the default tables
        };
        let q0 = hdr.q0[fc.tq].ok_or("missing quantization table")?;
        let stride = mcus_x * h;
        let plane = vec![0u8; stride * mcus_y * v];
        comps.push(ScanComp { frame_idx, dc, ac, q0, h, v, stride, pred: 0, plane });
    }
    let blocks: usize = mcus_x * mcus_y * comps.iter().map(|c| c.h * c.v).sum::<usize>();
    if (bytes.len() - pos).saturating_mul(4) < blocks {
        return Err(TRUNCATED.into());
    }
    decode_mcus(&mut comps, BitReader::new(bytes, pos), mcus_x, mcus_y, hdr.restart)?;
    comps.sort_by_key(|c| c.frame_idx);
    let ids: Vec<u8> = frame.iter().map(|c| c.id).collect();
    let rgb_space = hdr.adobe_transform == Some(0) || (hdr.adobe_transform.is_none() && ids == b"RGB");
    Ok(Some(to_rgb(&comps, frame, width, height, rgb_space)))
}

/// Entropy-decodes all MCUs, storing each block's 1x1 IDCT value in its component plane.
fn decode_mcus(
    comps: &mut [ScanComp],
    mut rd: BitReader,
    mcus_x: usize,
    mcus_y: usize,
    ri: usize,
) -> Result<(), String> {
    let mut todo = ri;
    for my in 0..mcus_y {
        for mx in 0..mcus_x {
            if ri > 0 {
                if todo == 0 {
                    rd.restart()?;
                    comps.iter_mut().for_each(|c| c.pred = 0);
                    todo = ri;
                }
                todo -= 1;
            }
            for c in comps.iter_mut() {
                for by in 0..c.v {
                    let row = (my * c.v + by) * c.stride + mx * c.h;
                    for bx in 0..c.h {
                        c.pred = c.pred.wrapping_add(rd.block(c.dc, c.ac)?);
                        let x = ((c.pred as i16 as i32 * c.q0 + 4) >> 3) + 128;
                        c.plane[row + bx] = x.clamp(0, 255) as u8;
                    }
                }
            }
        }
        if rd.overran() {
            return Err(TRUNCATED.into());
        }
    }
    Ok(())
}
