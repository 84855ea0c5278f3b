//! The bins of a latency sketch, `(key, count)` in key order, for the rank
//! test. `sketches-ddsketch` keeps its stores private but writes them in
//! the documented cross-language format of Datadog's sketches-java
//! (`to_java_bytes`): this reads that back, the stores only. A format
//! this does not know gives None (the latency tests then say so) rather
//! than wrong counts: the bins must add up to the sketch's count.

use sketches_ddsketch::DDSketch;

/// Key of the zero bin (latencies under the sketch's 1 µs floor).
pub const ZERO_KEY: i32 = i32::MIN;

// Flag bytes: (subflag << 2) | type; type 0 sketch features, 1 positive
// store, 2 index mapping, 3 negative store.
const COUNT: u8 = 0xA0;
const SUM: u8 = 0x84;
const MIN: u8 = 0x88;
const MAX: u8 = 0x8C;
const ZERO_COUNT: u8 = 0x04;
const INDEX_MAPPING_LOG: u8 = 0x02;
/// Positive store, bins as index deltas and counts (the only mode written).
const POSITIVE_DELTAS_AND_COUNTS: u8 = (1 << 2) | 1;

fn byte(b: &mut &[u8]) -> Option<u8> {
    let (&x, rest) = b.split_first()?;
    *b = rest;
    Some(x)
}

fn skip(b: &mut &[u8], n: usize) -> Option<()> {
    *b = b.get(n..)?;
    Some(())
}

fn var_u64(b: &mut &[u8]) -> Option<u64> {
    let (mut v, mut shift) = (0u64, 0u32);
    loop {
        let next = byte(b)?;
        if next < 0x80 || shift == 56 {
            return Some(v | (u64::from(next) << shift));
        }
        v |= (u64::from(next) & 0x7F) << shift;
        shift += 7;
    }
}

fn var_i64(b: &mut &[u8]) -> Option<i64> {
    let e = var_u64(b)?;
    Some(((e >> 1) as i64) ^ -((e & 1) as i64))
}

/// sketches-java's VarEncodingHelper double: (bits of v+1 minus bits of 1)
/// rotated left by 6, written 7 bits at a time from the top.
fn var_f64(b: &mut &[u8]) -> Option<f64> {
    let (mut bits, mut shift) = (0u64, 57i32);
    loop {
        let next = byte(b)?;
        if shift == 1 {
            bits |= u64::from(next);
            break;
        }
        if next < 0x80 {
            bits |= u64::from(next) << shift;
            break;
        }
        bits |= (u64::from(next) & 0x7F) << shift;
        shift -= 7;
    }
    Some(f64::from_bits(bits.rotate_right(6).wrapping_add(1f64.to_bits())) - 1.0)
}

/// The sketch's bins in key order (the zero bin first, as [`ZERO_KEY`]);
/// None when the encoding is not the one expected or holds negative values.
pub fn bins(s: &DDSketch) -> Option<Vec<(i32, u64)>> {
    let bytes = s.to_java_bytes();
    let mut b = bytes.as_slice();
    let mut out = vec![];
    while let Some(flag) = byte(&mut b) {
        match flag {
            COUNT => {
                var_f64(&mut b)?;
            }
            SUM | MIN | MAX => skip(&mut b, 8)?,
            INDEX_MAPPING_LOG => skip(&mut b, 16)?,
            ZERO_COUNT => out.insert(0, (ZERO_KEY, var_f64(&mut b)? as u64)),
            POSITIVE_DELTAS_AND_COUNTS => {
                let n = var_u64(&mut b)?;
                let mut key = 0i64;
                for _ in 0..n {
                    key += var_i64(&mut b)?;
                    out.push((i32::try_from(key).ok()?, var_f64(&mut b)? as u64));
                }
            }
            _ => return None,
        }
    }
    let total: u64 = out.iter().map(|x| x.1).sum();
    (total == s.count() as u64 && out.windows(2).all(|w| w[0].0 < w[1].0)).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::business::kpi::{RELATIVE_ERROR, bin_value, sketch};

    #[test]
    fn bins_add_up_and_stand_for_their_values() {
        let mut s = sketch();
        let mut values = vec![];
        for i in 0..5000u64 {
            let v = 0.5 + (i * 7919 % 3001) as f64 * 0.37;
            s.add(v);
            values.push(v);
        }
        s.add(0.0);
        s.add_with_count(120.0, 1_000_000);
        let b = bins(&s).expect("the sketch's own encoding");
        assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), 5001 + 1_000_000);
        assert_eq!(b[0], (ZERO_KEY, 1));
        // Every value lands in a bin whose value is within the relative error.
        let big = b.iter().find(|x| x.1 >= 1_000_000).unwrap();
        assert!((bin_value(big.0) - 120.0).abs() <= 120.0 * RELATIVE_ERROR);
        for (k, _) in &b[1..] {
            let v = bin_value(*k);
            assert!(values.iter().chain([&120.0]).any(|x| (x - v).abs() <= x * RELATIVE_ERROR), "{k} {v}");
        }
        assert_eq!(bins(&sketch()), Some(vec![]));
    }
}
