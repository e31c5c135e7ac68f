//! Consistent Overhead Byte Stuffing: removes every 0x00 from a byte string so 0x00 can
//! delimit frames. Written here (not a dependency) so the exact byte layout is ours to pin.

/// Worst-case encoded length of `len` input bytes (one overhead byte per 254, plus one).
pub const fn max_encoded_len(len: usize) -> usize {
    len + len / 254 + 1
}

/// Encodes the concatenation of `parts` into `dst`; returns the encoded length, or `None`
/// when `dst` is too small. The output contains no 0x00 and no trailing delimiter.
pub fn encode_parts(parts: &[&[u8]], dst: &mut [u8]) -> Option<usize> {
    // `code_at` is where the current block's length byte goes; `out` the next free byte.
    let mut code_at = 0usize;
    let mut out = 1usize;
    let mut code = 1u8;
    if dst.is_empty() {
        return None;
    }
    for &byte in parts.iter().flat_map(|p| p.iter()) {
        if byte == 0 {
            *dst.get_mut(code_at)? = code;
            code_at = out;
            out += 1;
            code = 1;
            continue;
        }
        *dst.get_mut(out)? = byte;
        out += 1;
        code += 1;
        if code == 0xFF {
            *dst.get_mut(code_at)? = code;
            code_at = out;
            out += 1;
            code = 1;
        }
    }
    *dst.get_mut(code_at)? = code;
    Some(out)
}

/// Encodes `src` into `dst` (see [`encode_parts`]).
pub fn encode(src: &[u8], dst: &mut [u8]) -> Option<usize> {
    encode_parts(&[src], dst)
}

/// Decodes a COBS block (without its delimiter) in place; returns the decoded length, or
/// `None` if the block is not valid COBS (a 0x00 inside, or a length byte past the end).
pub fn decode_in_place(buf: &mut [u8]) -> Option<usize> {
    let mut read = 0usize;
    let mut write = 0usize;
    while read < buf.len() {
        let code = buf[read] as usize;
        if code == 0 {
            return None;
        }
        let end = read.checked_add(code)?;
        if end > buf.len() {
            return None;
        }
        for i in read + 1..end {
            let byte = buf[i];
            if byte == 0 {
                return None;
            }
            buf[write] = byte;
            write += 1;
        }
        read = end;
        // A block shorter than 255 implies a zero, except at the very end of the data.
        if code != 0xFF && read < buf.len() {
            buf[write] = 0;
            write += 1;
        }
    }
    Some(write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(data: &[u8]) {
        let mut enc = [0u8; 1200];
        let n = encode(data, &mut enc).unwrap();
        assert!(n <= max_encoded_len(data.len()));
        assert!(!enc[..n].contains(&0));
        let mut buf = enc[..n].to_vec();
        let m = decode_in_place(&mut buf).unwrap();
        assert_eq!(&buf[..m], data);
    }

    #[test]
    fn known_vectors() {
        // Examples from the COBS paper (Cheshire & Baker).
        let mut out = [0u8; 16];
        let n = encode(&[0x00], &mut out).unwrap();
        assert_eq!(&out[..n], &[0x01, 0x01]);
        let n = encode(&[0x11, 0x22, 0x00, 0x33], &mut out).unwrap();
        assert_eq!(&out[..n], &[0x03, 0x11, 0x22, 0x02, 0x33]);
        let n = encode(&[], &mut out).unwrap();
        assert_eq!(&out[..n], &[0x01]);
    }

    #[test]
    fn roundtrips_across_block_boundaries() {
        for len in [0usize, 1, 253, 254, 255, 256, 508, 509, 1000] {
            let all_nonzero: std::vec::Vec<u8> = (0..len).map(|i| (i % 255 + 1) as u8).collect();
            roundtrip(&all_nonzero);
            let with_zeros: std::vec::Vec<u8> = (0..len).map(|i| (i % 7) as u8).collect();
            roundtrip(&with_zeros);
        }
    }

    #[test]
    fn rejects_invalid() {
        assert_eq!(decode_in_place(&mut [0x05, 1, 2]), None);
        assert_eq!(decode_in_place(&mut [0x02, 0]), None);
        assert_eq!(decode_in_place(&mut [0x00]), None);
    }

    #[test]
    fn too_small_destination() {
        let mut out = [0u8; 3];
        assert_eq!(encode(&[1, 2, 3], &mut out), None);
    }
}
