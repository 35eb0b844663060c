//! The encoding of a compacted chunk: a series' samples of one time window in one blob
//! (`metric_chunks.data`), after Facebook's Gorilla paper, as Prometheus stores its own.
//! Pure: no SQL.
//!
//! Layout (bits are written most significant first):
//! - byte 0: flags; bit 0 set when every timestamp is a whole millisecond, and then the
//!   timestamps below are in milliseconds (remote_write and most scrapes send whole
//!   milliseconds: the deltas of a 15 s scrape then fit the shortest code);
//! - the number of samples, an unsigned LEB128 varint (at least 1);
//! - the first timestamp, a zigzag LEB128 varint; the first value's 8 bytes, big-endian;
//! - a bit stream, per further sample: its timestamp's delta-of-delta (the first delta
//!   counts from 0), then its value's XOR with the previous value.
//!
//! Delta-of-delta codes: `0` (0); `10` + 14 bits; `110` + 17 bits; `1110` + 20 bits,
//! each a two's complement number; `1111` + 64 bits. Deltas wrap around, so any strictly
//! increasing `i64` timestamps, gaps of any size included, come back exactly.
//!
//! XOR codes: `0` (the same bits); `10` + the meaningful bits, inside the previous
//! window of leading and trailing zeros; `11` + 5 bits of leading zeros (at most 31) + 6
//! bits of meaningful length (0 for 64) + the meaningful bits. Values are their raw bits,
//! so NaN payloads (Prometheus' stale marker), -0.0 and ±Inf come back exactly.

use std::fmt;

/// A blob that does not decode: cut short, or inconsistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt(&'static str);

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "corrupt metric chunk: {}", self.0)
    }
}

impl std::error::Error for Corrupt {}

const MILLIS: u8 = 1;
/// Every header flag this release knows.
const KNOWN_FLAGS: u8 = MILLIS;

/// Encodes samples in strictly increasing time order (the caller's invariant; debug
/// builds check it). `samples` must not be empty.
pub fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
    debug_assert!(!samples.is_empty(), "a chunk holds at least one sample");
    debug_assert!(samples.windows(2).all(|w| w[0].0 < w[1].0), "samples in strictly increasing time order");
    let millis = samples.iter().all(|(ts, _)| ts.rem_euclid(1_000) == 0);
    let unit = if millis { 1_000 } else { 1 };
    let mut out = vec![if millis { MILLIS } else { 0 }];
    let Some(&(first_ts, first_value)) = samples.first() else { return out };
    put_varint(&mut out, samples.len() as u64);
    put_varint(&mut out, zigzag(first_ts / unit));
    out.extend_from_slice(&first_value.to_bits().to_be_bytes());
    let mut bits = BitWriter { out, free: 0 };
    let (mut prev_ts, mut prev_delta) = (first_ts / unit, 0i64);
    let mut prev_value = first_value.to_bits();
    let mut window: Option<(u32, u32)> = None;
    for &(ts, value) in &samples[1..] {
        let ts = ts / unit;
        let delta = ts.wrapping_sub(prev_ts);
        put_dod(&mut bits, delta.wrapping_sub(prev_delta));
        (prev_ts, prev_delta) = (ts, delta);
        let value = value.to_bits();
        put_xor(&mut bits, value ^ prev_value, &mut window);
        prev_value = value;
    }
    bits.out
}

/// Decodes a blob [`encode`] wrote.
pub fn decode(blob: &[u8]) -> Result<Vec<(i64, f64)>, Corrupt> {
    let (&flags, rest) = blob.split_first().ok_or(Corrupt("empty"))?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(Corrupt("unknown flags"));
    }
    let unit = if flags & MILLIS != 0 { 1_000 } else { 1 };
    let mut at = 0;
    let count = get_varint(rest, &mut at)?;
    let first_ts = unzigzag(get_varint(rest, &mut at)?);
    let first_value: [u8; 8] = rest.get(at..at + 8).and_then(|b| b.try_into().ok()).ok_or(Corrupt("cut short"))?;
    let mut bits = BitReader { data: &rest[at + 8..], at: 0 };
    // Every sample after the first takes at least two bits.
    if count == 0 || count - 1 > (bits.data.len() as u64 * 8) / 2 {
        return Err(Corrupt("sample count does not fit the blob"));
    }
    let scale = |ts: i64| ts.checked_mul(unit).ok_or(Corrupt("timestamp out of range"));
    let mut samples = Vec::with_capacity(count as usize);
    let mut prev_value = u64::from_be_bytes(first_value);
    samples.push((scale(first_ts)?, f64::from_bits(prev_value)));
    let (mut prev_ts, mut prev_delta) = (first_ts, 0i64);
    let mut window: Option<(u32, u32)> = None;
    for _ in 1..count {
        let delta = prev_delta.wrapping_add(get_dod(&mut bits)?);
        let ts = prev_ts.wrapping_add(delta);
        if ts <= prev_ts {
            return Err(Corrupt("timestamps out of order"));
        }
        (prev_ts, prev_delta) = (ts, delta);
        prev_value ^= get_xor(&mut bits, &mut window)?;
        samples.push((scale(ts)?, f64::from_bits(prev_value)));
    }
    Ok(samples)
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn get_varint(data: &[u8], at: &mut usize) -> Result<u64, Corrupt> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(*at).ok_or(Corrupt("cut short"))?;
        *at += 1;
        let part = u64::from(byte & 0x7f);
        if shift == 63 && part > 1 {
            return Err(Corrupt("varint over 64 bits"));
        }
        n |= part << shift;
        if byte & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err(Corrupt("varint over 64 bits"))
}

/// Delta-of-delta codes: (prefix, prefix length, payload bits), shortest first.
const DOD_CODES: [(u64, u32, u32); 3] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)];

fn put_dod(bits: &mut BitWriter, dod: i64) {
    if dod == 0 {
        bits.put(0, 1);
        return;
    }
    for (prefix, len, width) in DOD_CODES {
        let half = 1i64 << (width - 1);
        if (-half..half).contains(&dod) {
            bits.put(prefix, len);
            bits.put(dod as u64 & ((1 << width) - 1), width);
            return;
        }
    }
    bits.put(0b1111, 4);
    bits.put(dod as u64, 64);
}

fn get_dod(bits: &mut BitReader) -> Result<i64, Corrupt> {
    let mut ones = 0;
    while ones < 4 && bits.get(1)? == 1 {
        ones += 1;
    }
    let width = match ones {
        0 => return Ok(0),
        4 => return Ok(bits.get(64)? as i64),
        n => DOD_CODES[n - 1].2,
    };
    // Sign-extends the two's complement payload.
    let raw = bits.get(width)?;
    Ok(((raw << (64 - width)) as i64) >> (64 - width))
}

fn put_xor(bits: &mut BitWriter, xor: u64, window: &mut Option<(u32, u32)>) {
    if xor == 0 {
        bits.put(0, 1);
        return;
    }
    let (leading, trailing) = (xor.leading_zeros().min(31), xor.trailing_zeros());
    if let Some((prev_leading, prev_trailing)) = *window
        && leading >= prev_leading
        && trailing >= prev_trailing
    {
        bits.put(0b10, 2);
        bits.put(xor >> prev_trailing, 64 - prev_leading - prev_trailing);
        return;
    }
    let meaningful = 64 - leading - trailing;
    bits.put(0b11, 2);
    bits.put(u64::from(leading), 5);
    bits.put(u64::from(meaningful % 64), 6);
    bits.put(xor >> trailing, meaningful);
    *window = Some((leading, trailing));
}

fn get_xor(bits: &mut BitReader, window: &mut Option<(u32, u32)>) -> Result<u64, Corrupt> {
    if bits.get(1)? == 0 {
        return Ok(0);
    }
    if bits.get(1)? == 0 {
        let (leading, trailing) = window.ok_or(Corrupt("value reuses a window before any"))?;
        return Ok(bits.get(64 - leading - trailing)? << trailing);
    }
    let leading = bits.get(5)? as u32;
    let meaningful = match bits.get(6)? as u32 {
        0 => 64,
        n => n,
    };
    let trailing = 64u32.checked_sub(leading + meaningful).ok_or(Corrupt("value window over 64 bits"))?;
    *window = Some((leading, trailing));
    Ok(bits.get(meaningful)? << trailing)
}

struct BitWriter {
    out: Vec<u8>,
    /// Bits still free in the last byte of `out`.
    free: u32,
}

impl BitWriter {
    /// Appends the low `n` bits of `value` (n <= 64), most significant first.
    fn put(&mut self, value: u64, n: u32) {
        let mut left = n;
        while left > 0 {
            if self.free == 0 {
                self.out.push(0);
                self.free = 8;
            }
            let take = left.min(self.free);
            let part = ((value >> (left - take)) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.out.last_mut() {
                *last |= part << (self.free - take);
            }
            self.free -= take;
            left -= take;
        }
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    /// The next bit's index.
    at: usize,
}

impl BitReader<'_> {
    /// Reads `n` bits (n <= 64), most significant first.
    fn get(&mut self, n: u32) -> Result<u64, Corrupt> {
        if self.at + n as usize > self.data.len() * 8 {
            return Err(Corrupt("cut short"));
        }
        let mut value = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = self.data[self.at / 8];
            let offset = (self.at % 8) as u32;
            let take = left.min(8 - offset);
            let part = (byte >> (8 - offset - take)) & ((1u16 << take) - 1) as u8;
            value = (value << take) | u64::from(part);
            self.at += take as usize;
            left -= take;
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALE: u64 = 0x7ff0_0000_0000_0002;

    fn round_trip(samples: &[(i64, f64)]) -> usize {
        let blob = encode(samples);
        let back = decode(&blob).unwrap();
        assert_eq!(back.len(), samples.len());
        for (got, want) in back.iter().zip(samples) {
            assert_eq!((got.0, got.1.to_bits()), (want.0, want.1.to_bits()));
        }
        blob.len()
    }

    /// A small deterministic generator (xorshift), so failures reproduce.
    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn edge_series_round_trip_exactly() {
        let specials = [
            0.0,
            -0.0,
            f64::NAN,
            f64::from_bits(STALE),
            f64::from_bits(0xfff8_0000_dead_beef),
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            5e-324,
            1.0,
        ];
        round_trip(&[(0, 1.0)]);
        round_trip(&[(i64::MIN, f64::NAN)]);
        round_trip(&[(i64::MAX, -0.0)]);
        round_trip(&[(i64::MIN, 1.0), (i64::MAX, 2.0)]);
        round_trip(&[(i64::MIN, 1.0), (0, 2.0), (i64::MAX, 3.0)]);
        round_trip(&[(-5_000_000, 1.0), (-1, 2.0), (0, 3.0), (1, 4.0)]);
        // Every special value after every other.
        let mut samples = Vec::new();
        for (i, a) in specials.iter().enumerate() {
            for (j, b) in specials.iter().enumerate() {
                let ts = ((i * specials.len() + j) as i64) * 2 * 15_000_000 - 1_000_000_000;
                samples.push((ts, *a));
                samples.push((ts + 15_000_000, *b));
            }
        }
        round_trip(&samples);
        // Microsecond jitter, and gaps of every delta-of-delta size.
        let mut ts = 1_767_225_600_000_123;
        let mut jittered = Vec::new();
        for (i, gap) in
            [1, 15_000_000, 15_000_001, 8_191, 8_192, 65_536, 1 << 19, 1 << 40, 3, 1 << 62].iter().enumerate()
        {
            ts += gap;
            jittered.push((ts, i as f64));
        }
        round_trip(&jittered);
    }

    #[test]
    fn random_series_round_trip_exactly() {
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200 {
            let len = (rng(&mut seed) % 300 + 1) as usize;
            let millis = rng(&mut seed).is_multiple_of(2);
            let mut ts = (rng(&mut seed) as i64) >> 8;
            if millis {
                ts -= ts.rem_euclid(1_000);
            }
            let mut samples = Vec::new();
            for _ in 0..len {
                let value = match rng(&mut seed) % 4 {
                    0 => f64::from_bits(rng(&mut seed)),
                    1 => (rng(&mut seed) % 1_000) as f64,
                    2 => samples.last().map_or(0.0, |(_, v): &(i64, f64)| *v),
                    _ => rng(&mut seed) as f64 / 7.0,
                };
                samples.push((ts, value));
                let step = 1 + (rng(&mut seed) % 30_000_000) as i64;
                ts = ts.saturating_add(if millis { step * 1_000 } else { step });
                if samples.last().is_some_and(|(last, _)| *last >= ts) {
                    break;
                }
            }
            round_trip(&samples);
        }
    }

    #[test]
    fn a_regular_scrape_packs_into_a_few_bytes_a_sample() {
        let start = 1_767_225_600_000_000;
        let counter: Vec<_> = (0..120).map(|i| (start + i * 15_000_000, (1_000 + 37 * i) as f64)).collect();
        let gauge: Vec<_> = (0..120).map(|i| (start + i * 15_000_000, 0.25 * (i % 7) as f64)).collect();
        let bytes = round_trip(&counter);
        assert!(bytes < 120 * 4, "{bytes} bytes");
        let bytes = round_trip(&gauge);
        assert!(bytes < 120 * 3, "{bytes} bytes");
    }

    #[test]
    fn a_cut_or_corrupt_blob_is_an_error_not_a_panic() {
        let samples: Vec<_> =
            (0..50).map(|i| (i * 15_000_000 + (i % 3), f64::from_bits(i as u64 * 0x0123_4567))).collect();
        let blob = encode(&samples);
        for cut in 0..blob.len() {
            assert!(decode(&blob[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(&[]).is_err());
        assert!(decode(&[0x80]).is_err(), "unknown flags");
        assert!(decode(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err(), "no samples");
        assert!(decode(&[0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err(), "count over the blob");
        // Every byte flipped: decodes or fails, never panics.
        let mut seed = 42;
        for i in 0..blob.len() {
            for _ in 0..8 {
                let mut bad = blob.clone();
                bad[i] ^= (rng(&mut seed) % 255 + 1) as u8;
                let _ = decode(&bad);
            }
        }
        // Time going backwards is refused.
        let mut bits = BitWriter { out: vec![0, 2, 0], free: 0 };
        bits.out.extend_from_slice(&[0; 8]);
        bits.put(0b1111, 4);
        bits.put(-1i64 as u64, 64);
        bits.put(0, 1);
        assert_eq!(decode(&bits.out), Err(Corrupt("timestamps out of order")));
    }
}
