//! Parquet's DELTA_BINARY_PACKED encoding of 64-bit integers, for one page at a time.
//!
//! Blocks of 128 values in 4 miniblocks of 32: each block stores its smallest delta,
//! and each miniblock the deltas above it bit-packed at the miniblock's width. Mostly
//! ordered columns (timestamps, row numbers) pack into a few bits per value.

const BLOCK: usize = 128;
const MINIBLOCKS: usize = 4;
const MINI: usize = BLOCK / MINIBLOCKS;

/// Appends `values` encoded as one DELTA_BINARY_PACKED stream to `out`.
pub fn encode(values: &[i64], out: &mut Vec<u8>) {
    out.reserve(values.len() * 9 + 64);
    uleb(out, BLOCK as u64);
    uleb(out, MINIBLOCKS as u64);
    uleb(out, values.len() as u64);
    let Some(&first) = values.first() else {
        uleb(out, 0);
        return;
    };
    uleb(out, zigzag(first));
    let mut deltas = [0u64; BLOCK];
    let mut signed = [0i64; BLOCK];
    for start in (1..values.len()).step_by(BLOCK) {
        let block = &values[start - 1..(start + BLOCK).min(values.len())];
        let n = block.len() - 1;
        // Deltas wrap, so any i64 values round-trip. A short last block is padded
        // with zeros; the bodies of its unused miniblocks are left out (width 0).
        let mut min = i64::MAX;
        for (d, w) in signed.iter_mut().zip(block.windows(2)) {
            *d = w[1].wrapping_sub(w[0]);
            min = min.min(*d);
        }
        for (d, &s) in deltas.iter_mut().zip(&signed[..n]) {
            *d = s.wrapping_sub(min) as u64;
        }
        deltas[n..].fill(0);
        uleb(out, zigzag(min));
        let used = n.div_ceil(MINI);
        let minis: [&[u64; MINI]; MINIBLOCKS] =
            std::array::from_fn(|m| deltas[m * MINI..(m + 1) * MINI].try_into().expect("32 deltas"));
        let widths = minis.map(|mini| 64 - mini.iter().fold(0, |acc, &d| acc | d).leading_zeros());
        out.extend(widths.iter().enumerate().map(|(m, &w)| if m < used { w as u8 } else { 0 }));
        for (mini, &w) in minis.iter().zip(&widths).take(used) {
            pack(mini, w, out);
        }
    }
}

/// Packs 32 values at `w` bits each, least significant bit first: 4·w bytes.
fn pack(values: &[u64; MINI], w: u32, out: &mut Vec<u8>) {
    // One copy of the loop per width, so the shifts are constants and it unrolls.
    macro_rules! widths {
        ($($w:literal)*) => {
            match w {
                0 => {}
                $($w => pack_width::<$w>(values, out),)*
                _ => unreachable!("a width of at most 64 bits"),
            }
        };
    }
    widths!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32
        33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64);
}

fn pack_width<const W: u32>(values: &[u64; MINI], out: &mut Vec<u8>) {
    let mut packed = [0u8; 4 * 64 + 8];
    let (mut acc, mut bits, mut at) = (0u64, 0u32, 0usize);
    for &v in values {
        acc |= v << bits;
        if bits + W >= 64 {
            packed[at..at + 8].copy_from_slice(&acc.to_le_bytes());
            at += 8;
            // The bits of v that did not fit (none when it ended the word exactly).
            acc = if bits == 0 { 0 } else { v >> (64 - bits) };
            bits = bits + W - 64;
        } else {
            bits += W;
        }
    }
    packed[at..at + 8].copy_from_slice(&acc.to_le_bytes());
    out.extend_from_slice(&packed[..4 * W as usize]);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn uleb(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a stream as the format describes it, independently of `encode`.
    fn decode(mut bytes: &[u8]) -> Vec<i64> {
        fn uleb(bytes: &mut &[u8]) -> u64 {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let b = bytes[0];
                *bytes = &bytes[1..];
                v |= u64::from(b & 0x7f) << shift;
                if b < 0x80 {
                    return v;
                }
                shift += 7;
            }
        }
        let unzigzag = |v: u64| (v >> 1) as i64 ^ -((v & 1) as i64);
        let (block, minis, count) = (uleb(&mut bytes), uleb(&mut bytes), uleb(&mut bytes) as usize);
        assert_eq!((block, minis), (BLOCK as u64, MINIBLOCKS as u64));
        let first = unzigzag(uleb(&mut bytes));
        let mut out = if count == 0 { vec![] } else { vec![first] };
        while out.len() < count {
            let min = unzigzag(uleb(&mut bytes));
            let widths: Vec<usize> = bytes[..MINIBLOCKS].iter().map(|&w| w as usize).collect();
            bytes = &bytes[MINIBLOCKS..];
            for w in widths {
                if out.len() == count {
                    break;
                }
                for i in 0..MINI {
                    let mut v = 0u64;
                    for bit in 0..w {
                        let at = i * w + bit;
                        v |= u64::from(bytes[at / 8] >> (at % 8) & 1) << bit;
                    }
                    if out.len() < count {
                        out.push(out.last().unwrap().wrapping_add(min).wrapping_add(v as i64));
                    }
                }
                bytes = &bytes[4 * w..];
            }
        }
        assert!(bytes.is_empty(), "{} bytes left over", bytes.len());
        out
    }

    #[test]
    fn every_length_and_width_round_trips() {
        let mut x = 7u64;
        let mut random = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let cases: Vec<Vec<i64>> = vec![
            vec![],
            vec![42],
            vec![i64::MIN, i64::MAX, i64::MIN, 0, -1],
            (0..1000).map(|i| 1_700_000_000 + i / 3).collect(),
            (0..129).map(|i| -i * i).collect(),
            (0..300).map(|_| random() as i64).collect(),
            (0..257).map(|_| (random() % 200_000) as i64).collect(),
            (0..MINI as i64 * 5 + 3).map(|i| i << 40).collect(),
        ];
        for values in cases {
            let mut out = Vec::new();
            encode(&values, &mut out);
            assert_eq!(decode(&out), values);
        }
    }

    #[test]
    fn ordered_values_pack_into_few_bits() {
        let values: Vec<i64> = (0..1280).map(|i| 1_700_000_000 + i * 3).collect();
        let mut out = Vec::new();
        encode(&values, &mut out);
        // Constant deltas: every miniblock has width 0, so a block is its min delta
        // and four width bytes.
        assert!(out.len() < 12 + 10 * 6, "{} bytes", out.len());
    }
}
