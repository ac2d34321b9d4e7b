//! How a metric history chunk (see `history.rs`) holds its points.
//!
//! A chunk's value is the smallest and largest step in it, 8 bytes each, big-endian (so reads
//! of a step window skip whole chunks), the number of points as a varint, then the points, each as
//! deltas from the point before it (the first from step 0, timestamp 0 and value bits 0):
//! - the step and the timestamp, each as the zigzag varint of its wrapping difference;
//! - the value as the XOR of its bits with the previous value's: a byte holding how many
//!   whole bytes of that XOR lead and trail as zeros (4 bits each), then the bytes between.
//!
//! A training curve's point then takes about 10 bytes instead of 24: steps that count up and
//! timestamps that barely move take a byte each, a repeated value one byte, a value exact in
//! `f32` about five, and any other value at most nine. Schema-2 stores kept the points at 24
//! bytes each (step, timestamp, value bits); opening one rewrites its chunks (schema 3).

use drover_proto::execution::MetricPoint;

pub(super) const HEADER_LEN: usize = 16;
/// A schema-2 point: step, timestamp and value bits, big-endian.
const SCHEMA2_POINT_LEN: usize = 24;

pub(super) fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a varint at `*at`, moving past it.
pub(super) fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        n |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(n);
        }
    }
    None
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// Encodes `points` (all of one key) as a chunk value.
pub(super) fn encode_chunk(points: &[MetricPoint]) -> Vec<u8> {
    let mut value = Vec::with_capacity(HEADER_LEN + 10 + points.len() * 12);
    let min = points.iter().map(|point| point.step).min().unwrap_or(0);
    let max = points.iter().map(|point| point.step).max().unwrap_or(0);
    value.extend_from_slice(&min.to_be_bytes());
    value.extend_from_slice(&max.to_be_bytes());
    put_varint(&mut value, points.len() as u64);
    let (mut step, mut timestamp, mut bits) = (0i64, 0i64, 0u64);
    for point in points {
        put_varint(&mut value, zigzag(point.step.wrapping_sub(step)));
        put_varint(&mut value, zigzag(point.timestamp_ms.wrapping_sub(timestamp)));
        let xor = point.value.to_bits() ^ bits;
        let (leading, trailing) =
            if xor == 0 { (8, 0) } else { (xor.leading_zeros() / 8, xor.trailing_zeros() / 8) };
        value.push((leading << 4 | trailing) as u8);
        value.extend_from_slice(&xor.to_be_bytes()[leading as usize..8 - trailing as usize]);
        (step, timestamp, bits) = (point.step, point.timestamp_ms, point.value.to_bits());
    }
    value
}

pub(super) fn number(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// The step range of a chunk, from its header.
pub(super) fn chunk_steps(value: &[u8]) -> Option<(i64, i64)> {
    Some((number(value, 0)? as i64, number(value, 8)? as i64))
}

/// Calls `each` with the index, step, timestamp and value of every point of a chunk, in
/// arrival order; `None` if the chunk is malformed.
pub(super) fn each_point(value: &[u8], mut each: impl FnMut(u32, i64, i64, f64)) -> Option<()> {
    let mut at = HEADER_LEN;
    let count = varint(value, &mut at)?;
    let (mut step, mut timestamp, mut bits) = (0i64, 0i64, 0u64);
    for index in 0..u32::try_from(count).ok()? {
        step = step.wrapping_add(unzigzag(varint(value, &mut at)?));
        timestamp = timestamp.wrapping_add(unzigzag(varint(value, &mut at)?));
        let tag = *value.get(at)?;
        at += 1;
        let (leading, trailing) = (usize::from(tag >> 4), usize::from(tag & 0x0f));
        let width = 8usize.checked_sub(leading + trailing)?;
        let mut xor = [0u8; 8];
        xor[leading..leading + width].copy_from_slice(value.get(at..at + width)?);
        at += width;
        bits ^= u64::from_be_bytes(xor);
        each(index, step, timestamp, f64::from_bits(bits));
    }
    (at == value.len()).then_some(())
}

/// The points of a schema-2 chunk: the same header, then 24 bytes per point.
pub(super) fn decode_schema2_chunk(value: &[u8]) -> Option<Vec<MetricPoint>> {
    let body = value.get(HEADER_LEN..)?;
    if body.len() % SCHEMA2_POINT_LEN != 0 {
        return None;
    }
    body.chunks_exact(SCHEMA2_POINT_LEN)
        .map(|point| {
            Some(MetricPoint {
                step: number(point, 0)? as i64,
                timestamp_ms: number(point, 8)? as i64,
                value: f64::from_bits(number(point, 16)?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bit_of_extreme_points_survives_the_encoding() {
        let values = [
            0.0,
            -0.0,
            f64::MIN,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::from_bits(1),
            f64::NEG_INFINITY,
            f64::from_bits(0x7ff8_0000_0000_0001),
            0.1f32 as f64,
            std::f64::consts::PI,
            std::f64::consts::PI,
        ];
        let steps = [i64::MIN, i64::MAX, 0, -1, 1, i64::MAX, i64::MIN];
        let timestamps = [i64::MAX, i64::MIN, 1_700_000_000_000, 0, -5];
        let points: Vec<MetricPoint> = (0..200)
            .map(|i| MetricPoint {
                step: steps[i % steps.len()],
                timestamp_ms: timestamps[i % timestamps.len()],
                value: values[i % values.len()],
            })
            .collect();
        let mut decoded = Vec::new();
        each_point(&encode_chunk(&points), |index, step, timestamp, value| {
            decoded.push((index, step, timestamp, value.to_bits()));
        })
        .unwrap();
        let expected: Vec<_> = (0..)
            .zip(&points)
            .map(|(index, point)| (index, point.step, point.timestamp_ms, point.value.to_bits()))
            .collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn a_training_curve_takes_about_ten_bytes_a_point() {
        // Steps counting up, a timestamp every few points, values of a noisy loss in f64.
        let points: Vec<MetricPoint> = (0..1_000i64)
            .map(|step| MetricPoint {
                step,
                timestamp_ms: 1_764_000_000_000 + step / 4,
                value: 1.0 / (step as f64 + 1.0) + (step as f64 * 0.37).sin() * 1e-3,
            })
            .collect();
        let per_point = encode_chunk(&points).len() as f64 / points.len() as f64;
        assert!(per_point <= 11.0, "{per_point} bytes per point");
        let repeated = vec![MetricPoint { step: 7, timestamp_ms: 7, value: 0.25 }; 1_000];
        // Three bytes a point: two zero deltas and a tag saying the value did not change.
        assert!(encode_chunk(&repeated).len() <= HEADER_LEN + 16 + 1_000 * 3);
    }
}
