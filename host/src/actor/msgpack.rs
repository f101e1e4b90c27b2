//! Checks that a guest's event payload is exactly one well-formed
//! MessagePack value, before the host stores it.
//!
//! Every accepted command's events pass here. Walking the markers in place
//! allocates nothing, where a serde deserializer over a reader allocated a
//! buffer per payload, a few percent of a command on the memory store.

/// `Ok` if `bytes` hold one MessagePack value and nothing after it.
pub(crate) fn check_one_value(bytes: &[u8]) -> Result<(), Malformed> {
    let mut rest = bytes;
    // Values still to read: a map or an array adds its items. Each value
    // takes at least a byte, so the walk ends within `bytes.len()` steps
    // whatever the counts claim, and nesting costs no stack.
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let marker = take(&mut rest, 1)?[0];
        let (skip, items) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => {
                utf8(take(&mut rest, usize::from(marker & 0x1f))?)?;
                continue;
            }
            0xc1 => return Err(Malformed::Reserved),
            0xc4 => (length(&mut rest, 1)?, 0),
            0xc5 => (length(&mut rest, 2)?, 0),
            0xc6 => (length(&mut rest, 4)?, 0),
            // Extensions: a type byte, then the data.
            0xc7 => (length(&mut rest, 1)? + 1, 0),
            0xc8 => (length(&mut rest, 2)? + 1, 0),
            0xc9 => (length(&mut rest, 4)? + 1, 0),
            0xca => (4, 0),
            0xcb => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 => (4, 0),
            0xcf | 0xd3 => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xd9..=0xdb => {
                let len = length(&mut rest, 1 << (marker - 0xd9))?;
                utf8(take(&mut rest, len)?)?;
                continue;
            }
            0xdc => (0, length(&mut rest, 2)? as u64),
            0xdd => (0, length(&mut rest, 4)? as u64),
            0xde => (0, 2 * length(&mut rest, 2)? as u64),
            0xdf => (0, 2 * length(&mut rest, 4)? as u64),
        };
        take(&mut rest, skip)?;
        pending += items;
    }
    if rest.is_empty() { Ok(()) } else { Err(Malformed::Trailing(rest.len())) }
}

/// Why a payload is not one MessagePack value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// It ends inside a value.
    Truncated,
    /// It uses the marker 0xc1, which MessagePack never assigned.
    Reserved,
    /// A string that is not UTF-8.
    NotUtf8,
    /// This many bytes follow the value.
    Trailing(usize),
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated => f.write_str("it ends inside a value"),
            Self::Reserved => f.write_str("it uses the reserved marker 0xc1"),
            Self::NotUtf8 => f.write_str("a string is not UTF-8"),
            Self::Trailing(n) => write!(f, "{n} bytes follow the value"),
        }
    }
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], Malformed> {
    let (taken, after) = rest.split_at_checked(n).ok_or(Malformed::Truncated)?;
    *rest = after;
    Ok(taken)
}

/// A big-endian length of `width` bytes.
fn length(rest: &mut &[u8], width: usize) -> Result<usize, Malformed> {
    Ok(take(rest, width)?.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b)))
}

fn utf8(bytes: &[u8]) -> Result<(), Malformed> {
    std::str::from_utf8(bytes).map(drop).map_err(|_| Malformed::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    enum Event {
        Opened { owner: String },
        Deposited { amount: u64 },
        Tagged(Vec<i64>, Option<f64>, bool, (), f32),
        Blob(#[serde(with = "serde_bytes_like")] Vec<u8>),
    }

    mod serde_bytes_like {
        pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(b)
        }
    }

    fn encoded<T: Serialize>(value: &T) -> Vec<u8> {
        rmp_serde::to_vec_named(value).expect("encodes")
    }

    /// Values of every kind and size class the markers distinguish.
    fn samples() -> Vec<Vec<u8>> {
        let long = "é".repeat(200); // str16
        let longer = "x".repeat(70_000); // str32
        let map: BTreeMap<String, i64> = (0..20).map(|i| (format!("k{i}"), -(1 << (i * 3)))).collect(); // map16
        vec![
            encoded(&Event::Opened { owner: "ada".into() }),
            encoded(&Event::Deposited { amount: u64::MAX }),
            encoded(&Event::Tagged(vec![-1, -33, 200, -40_000, i64::MIN, 1 << 40], Some(1.5), true, (), 2.5)),
            encoded(&Event::Blob(vec![7; 300])),
            encoded(&long),
            encoded(&longer),
            encoded(&map),
            encoded(&(0..40).collect::<Vec<u32>>()), // array16
            vec![0xd4, 1, 2],                        // fixext1
            vec![0xd8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // fixext16
            vec![0xc7, 2, 9, 1, 2],                  // ext8
            vec![0xc0],
        ]
    }

    #[test]
    fn every_kind_of_value_passes() {
        for bytes in samples() {
            assert_eq!(check_one_value(&bytes), Ok(()), "{bytes:02x?}");
        }
    }

    #[test]
    fn every_truncation_is_caught_and_trailing_bytes_are_counted() {
        for bytes in samples() {
            for end in 0..bytes.len() {
                assert_eq!(check_one_value(&bytes[..end]), Err(Malformed::Truncated), "{:02x?}", &bytes[..end]);
            }
            let mut longer = bytes.clone();
            longer.extend([0xc0, 0x01]);
            assert_eq!(check_one_value(&longer), Err(Malformed::Trailing(2)));
        }
    }

    #[test]
    fn reserved_markers_bad_strings_and_lying_counts_are_errors() {
        assert_eq!(check_one_value(&[0xc1]), Err(Malformed::Reserved));
        assert_eq!(check_one_value(&[0x91, 0xc1]), Err(Malformed::Reserved));
        assert_eq!(check_one_value(&[0xa2, 0xff, 0xfe]), Err(Malformed::NotUtf8));
        assert_eq!(check_one_value(&[0xd9, 1, 0x80]), Err(Malformed::NotUtf8));
        // A map claiming four billion entries, an array claiming 65,535.
        assert_eq!(check_one_value(&[0xdf, 0xff, 0xff, 0xff, 0xff, 0x01]), Err(Malformed::Truncated));
        assert_eq!(check_one_value(&[0xdc, 0xff, 0xff]), Err(Malformed::Truncated));
        // A bin32 claiming 4 GiB.
        assert_eq!(check_one_value(&[0xc6, 0xff, 0xff, 0xff, 0xff]), Err(Malformed::Truncated));
        assert_eq!(check_one_value(&[]), Err(Malformed::Truncated));
    }

    #[test]
    fn deep_nesting_needs_no_stack() {
        let mut deep = vec![0x91; 1_000_000];
        deep.push(0xc0);
        assert_eq!(check_one_value(&deep), Ok(()));
        deep.pop();
        assert_eq!(check_one_value(&deep), Err(Malformed::Truncated));
    }
}
