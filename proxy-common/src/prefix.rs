//! Address prefixes as the XDP program needs them: cutting an address to a prefix
//! length (to name the exact LPM entry to delete once it has expired).

/// `addr` (network byte order) with every bit after the first `prefix_len` cleared.
#[inline(always)]
pub fn masked<const N: usize>(mut addr: [u8; N], prefix_len: u32) -> [u8; N] {
    let mut i = 0;
    while i < N {
        let bit = i as u32 * 8;
        if bit >= prefix_len {
            addr[i] = 0;
        } else if prefix_len - bit < 8 {
            addr[i] &= 0xffu8 << (8 - (prefix_len - bit));
        }
        i += 1;
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_integer_masking_for_every_length() {
        let v4 = [198, 51, 100, 255];
        for len in 0..=32u32 {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let want = (u32::from_be_bytes(v4) & mask).to_be_bytes();
            assert_eq!(masked(v4, len), want, "/{len}");
        }
        let v6 = [0xff; 16];
        for len in 0..=128u32 {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            assert_eq!(masked(v6, len), mask.to_be_bytes(), "/{len}");
        }
        // Lengths past the address keep it whole.
        assert_eq!(masked(v4, 40), v4);
    }
}
