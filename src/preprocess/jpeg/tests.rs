//! Unit tests of the bit reader and skip table, and comparisons with jpeg-decoder's 1/8-scale
//! decode and libjpeg-turbo's (Pillow `draft`, saved as PPM) on the fixtures in
//! `tests/fixtures/jpeg`, written by `scripts/make-jpeg-fixtures.py`.

use std::path::{Path, PathBuf};

use super::bits::BitReader;
use super::huffman::{symbol, Huffman};
use super::*;
use image::RgbImage;

/// 16x8 grayscale baseline JPEG, two blocks: DC diffs +3 and -3 (q0 = 2), one AC coefficient in block 1.
fn tiny_jpeg() -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x43, 0x00, 2];
    b.extend([1; 63]);
    b.extend([0xFF, 0xC0, 0x00, 0x0B, 8, 0x00, 0x08, 0x00, 0x10, 1, 1, 0x11, 0]);
    b.extend([0xFF, 0xC4, 0x00, 0x15, 0x00, 2].iter().chain(&[0; 15]).chain(&[0, 2]));
    b.extend([0xFF, 0xC4, 0x00, 0x15, 0x10, 1, 1].iter().chain(&[0; 14]).chain(&[0x00, 0x01]));
    b.extend([0xFF, 0xDA, 0x00, 0x08, 1, 1, 0x00, 0, 63, 0]);
    b.extend([0b1111_0101, 0b0001_1111, 0xFF, 0xD9]);
    b
}

#[test]
fn decodes_hand_made_jpeg() {
    let img = decode_dc(&tiny_jpeg()).unwrap().unwrap();
    assert_eq!(img.dimensions(), (2, 1));
    assert_eq!(img.as_raw(), &[129, 129, 129, 128, 128, 128]);
}

#[test]
fn rejects_corrupt_headers() {
    let jpeg = tiny_jpeg();
    assert!(decode_dc(b"GIF89a").unwrap_err().contains("SOI"));
    assert!(decode_dc(&jpeg[..100]).is_err());
    let mut bad_dht = jpeg.clone();
    bad_dht[jpeg.len() - 8] = 0x02; // SOS names AC table 2, which is not defined: left to a full decoder
    assert!(decode_dc(&bad_dht).unwrap().is_none());
    assert!(Huffman::new(&[3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[0, 1, 2], false).is_err());
    let mut bad_code = jpeg.clone();
    bad_code[jpeg.len() - 4] = 0b0110_0000; // block 1: DC "0", then AC "11", which is not a code
    assert!(decode_dc(&bad_code).unwrap_err().contains("invalid Huffman code"));
    let mut progressive = jpeg.clone();
    progressive[72] = 0xC2;
    assert!(decode_dc(&progressive).unwrap().is_none());
}

#[test]
fn unstuffs_bytes_and_feeds_zeros_after_marker() {
    let data = [0xAB, 0xFF, 0x00, 0xCD, 0xFF, 0xFF, 0xD0, 0x12];
    let mut rd = BitReader::new(&data, 0);
    let (bits, nbits) = rd.refill(0, 0);
    assert_eq!(bits >> 40, 0xAB_FFCD);
    assert!(nbits >= 32);
    (rd.bits, rd.nbits) = (bits << 24, nbits - 24);
    assert!(!rd.overran());
    (rd.bits, rd.nbits) = (0, nbits - 25); // one zero bit past the data consumed
    assert!(rd.overran());
    rd.overrun = false;
    rd.restart().unwrap_err();
    (rd.fake, rd.overrun) = (0, false);
    rd.restart().unwrap();
    assert_eq!((rd.pos, rd.at_marker), (7, false));
    assert_eq!(rd.refill(0, 0).0 >> 56, 0x12);
}

/// Decodes one block a symbol at a time, without the skip table.
fn naive_block(rd: &mut BitReader, dc: &Huffman, ac: &Huffman) -> Result<i32, &'static str> {
    let (mut bits, mut nbits) = rd.refill(rd.bits, rd.nbits);
    let (s, len) = symbol(dc, bits)?;
    let v = (bits << len >> 1 >> (63 - s)) as i32;
    let diff = if s > 0 && v < 1 << (s - 1) { v - (1 << s) + 1 } else { v };
    (bits, nbits) = (bits << (len + s), nbits - len - s);
    let mut k = 1;
    while k < 64 {
        (bits, nbits) = rd.refill(bits, nbits);
        let (sym, len) = symbol(ac, bits)?;
        (bits, nbits) = (bits << (len + (sym & 15)), nbits - len - (sym & 15));
        match sym {
            0xF0 => k += 16,
            s if s & 15 == 0 => break,
            s => k += (s >> 4) + 1,
        }
    }
    (rd.bits, rd.nbits) = (bits, nbits);
    Ok(diff)
}

#[test]
fn skip_table_agrees_with_symbol_by_symbol_decoding() {
    let ac_counts = [0, 2, 2, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
    let ac_vals = [1, 0, 2, 0x11, 3, 0x21, 0x12, 0x31, 0xF0, 0x41, 5, 0x51, 0x61, 0x13, 0x22, 0x71, 10, 0x91, 0xA1];
    let ac = Huffman::new(&ac_counts, &ac_vals, true).unwrap();
    let dc = Huffman::new(&[0, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], false)
        .unwrap();
    let mut seed = 12345u64;
    for stream in 0..400 {
        let data: Vec<u8> = (0..4000)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                // Sparse one bits favour short codes and long blocks; no 0xFF, so no markers.
                (0..stream % 4).fold((seed >> 24) as u8, |b, i| b & (seed >> (32 + 8 * i)) as u8).min(0xFE)
            })
            .collect();
        let (mut fast, mut slow) = (BitReader::new(&data, 0), BitReader::new(&data, 0));
        for blk in 0..300 {
            let (a, b) = (fast.block(&dc, &ac), naive_block(&mut slow, &dc, &ac));
            assert_eq!(a, b, "stream {stream} block {blk}");
            if a.is_err() {
                break;
            }
            let (fast_pos, slow_pos) = (fast.pos * 8 - fast.nbits as usize, slow.pos * 8 - slow.nbits as usize);
            assert_eq!(fast_pos, slow_pos, "stream {stream} block {blk}");
        }
    }
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jpeg").join(name)
}

/// jpeg-decoder at 1/8 scale, as RGB.
fn reference(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut d = jpeg_decoder::Decoder::new(bytes);
    d.read_info().unwrap();
    let info = d.info().unwrap();
    d.scale(info.width.div_ceil(8), info.height.div_ceil(8)).unwrap();
    let px = d.decode().unwrap();
    let info = d.info().unwrap();
    let rgb = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => px.iter().flat_map(|&v| [v, v, v]).collect(),
        jpeg_decoder::PixelFormat::RGB24 => px,
        f => panic!("unexpected pixel format {f:?}"),
    };
    (info.width as u32, info.height as u32, rgb)
}

fn read_ppm(path: &Path) -> (u32, u32, Vec<u8>) {
    let b = std::fs::read(path).unwrap();
    let mut fields = Vec::new();
    let mut pos = 0;
    while fields.len() < 4 {
        while b[pos].is_ascii_whitespace() {
            pos += 1;
        }
        let start = pos;
        while !b[pos].is_ascii_whitespace() {
            pos += 1;
        }
        fields.push(String::from_utf8_lossy(&b[start..pos]).to_string());
    }
    assert_eq!(fields[0], "P6");
    (fields[1].parse().unwrap(), fields[2].parse().unwrap(), b[pos + 1..].to_vec())
}

/// Mean absolute difference per channel, in 0..255 units.
fn mad(a: &[u8], b: &[u8]) -> [f64; 3] {
    assert_eq!(a.len(), b.len());
    let mut sum = [0u64; 3];
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        sum[i % 3] += x.abs_diff(y) as u64;
    }
    sum.map(|s| s as f64 / (a.len() / 3) as f64)
}

fn decode(name: &str) -> RgbImage {
    let bytes = std::fs::read(data(name)).unwrap();
    decode_dc(&bytes).unwrap().unwrap_or_else(|| panic!("{name}: unexpectedly unsupported"))
}

/// Checks a fixture against jpeg-decoder (`tol_jd`) and Pillow draft (`tol_pil`), both as max channel MAD.
/// jpeg-decoder rounds the 1x1 IDCT and colour conversion differently from libjpeg, hence its looser bound.
fn check(name: &str, tol_jd: f64, tol_pil: Option<f64>) {
    let img = decode(name);
    let bytes = std::fs::read(data(name)).unwrap();
    let (w, h, rgb) = reference(&bytes);
    assert_eq!(img.dimensions(), (w, h), "{name}: size differs from jpeg-decoder");
    assert_eq!(img.as_raw().len(), (w * h * 3) as usize);
    let d = mad(img.as_raw(), &rgb);
    assert!(d.iter().all(|&x| x <= tol_jd), "{name}: MAD vs jpeg-decoder {d:?} > {tol_jd}");
    let Some(tol_pil) = tol_pil else { return };
    let ppm = data(&name.replace(".jpg", ".draft.ppm"));
    let (pw, ph, prgb) = read_ppm(&ppm);
    assert_eq!(img.dimensions(), (pw, ph), "{name}: size differs from Pillow draft");
    let p = mad(img.as_raw(), &prgb);
    assert!(p.iter().all(|&x| x <= tol_pil), "{name}: MAD vs Pillow draft {p:?} > {tol_pil}");
    eprintln!("{name}: {w}x{h} MAD vs jpeg-decoder {d:.3?}, vs Pillow draft {p:.3?}");
}

#[test]
fn full_chroma_and_gray_match_closely() {
    for name in ["c444_301x203.jpg", "c444_17x9.jpg", "c444_64x48.jpg", "gray_301x203.jpg", "gray_17x9.jpg"] {
        check(name, 2.0, Some(0.0));
    }
    for name in ["gray_64x48.jpg", "rst_rows_444.jpg", "rst_gray.jpg", "jd_grayscale_16x24_sampling2x2.jpg"] {
        check(name, 2.0, Some(0.0));
    }
}

#[test]
/// libjpeg-turbo decodes 4:2:0 chroma with a 2x2 IDCT at 1/8 scale, so it keeps more chroma detail than DC-only.
fn subsampled_chroma_matches() {
    for name in ["c420_301x203.jpg", "c420_17x9.jpg", "c420_64x48.jpg", "c422_301x203.jpg", "c422_17x9.jpg"] {
        check(name, 2.0, Some(4.0));
    }
    for name in ["c422_64x48.jpg", "rst_blocks_420.jpg", "q100_420.jpg", "optimized_420.jpg", "jd_restarts.jpg"] {
        check(name, 2.0, Some(4.0));
    }
}

#[test]
fn other_files_match() {
    for name in ["q16bit.jpg", "jd_16bit-qtables.jpg", "rgb_space.jpg", "jd_jpg-size-1x1.jpg"] {
        check(name, 2.0, Some(4.0));
    }
    // Tiny 4:2:0 images of flat quadrants: DC-only chroma has one sample per 16x16 pixels, where libjpeg's 2x2
    // chroma IDCT resolves the quadrants, so only jpeg-decoder (also DC-only) is a fair reference.
    for name in ["jd_extraneous-data.jpg", "jd_jpg-size-15x15.jpg", "jd_jpg-size-33x33.jpg"] {
        check(name, 3.0, None);
    }
}

#[test]
fn unsupported_files_give_none() {
    for name in ["progressive.jpg", "jd_jpg-progressive.jpg", "cmyk.jpg", "jd_jpg-cmyk-1.jpg"] {
        let bytes = std::fs::read(data(name)).unwrap();
        assert!(decode_dc(&bytes).unwrap().is_none(), "{name} should be unsupported");
    }
    // Motion-JPEG frames leave out their Huffman tables (the standard ones are implied).
    let bytes = std::fs::read(data("c420_64x48.jpg")).unwrap();
    let mut no_dht = bytes[..2].to_vec();
    let mut pos = 2;
    while bytes[pos + 1] != 0xDA {
        let len = u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]) as usize;
        if bytes[pos + 1] != 0xC4 {
            no_dht.extend_from_slice(&bytes[pos..pos + 2 + len]);
        }
        pos += 2 + len;
    }
    no_dht.extend_from_slice(&bytes[pos..]);
    assert!(decode_dc(&no_dht).unwrap().is_none(), "no Huffman tables: left to the full decoder");
}

#[test]
fn truncated_scan_is_an_error() {
    let bytes = std::fs::read(data("c420_301x203.jpg")).unwrap();
    let err = decode_dc(&bytes[..bytes.len() * 2 / 3]).expect_err("truncated file must fail");
    assert!(err.contains("truncated"), "{err}");
    assert!(decode_dc(&bytes[..300]).is_err());
}

#[test]
fn random_corruption_never_panics() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for name in ["c420_17x9.jpg", "rst_blocks_420.jpg", "gray_64x48.jpg", "c422_64x48.jpg"] {
        let orig = std::fs::read(data(name)).unwrap();
        for _ in 0..3000 {
            let mut b = orig.clone();
            for _ in 0..1 + rand() % 4 {
                let i = (rand() as usize) % b.len();
                b[i] ^= 1 << (rand() % 8);
            }
            let cut = if rand() % 4 == 0 { (rand() as usize) % b.len() } else { b.len() };
            let _ = decode_dc(&b[..cut]);
        }
    }
}
