//! Size buckets for the plaintext inside the ciphertext.
//!
//! Sequoia does not pad OpenPGP messages, and the padding packet of RFC 9580
//! is not understood by GnuPG 2.2, so padding is done at the MIME level: a
//! `Letterlock-Padding` field in the protected header section brings the
//! inner entity to an exact bucket size. Receivers that do not know the field
//! ignore it; ours removes it when it restores the message.
//!
//! Buckets: at least 4 KiB, powers of two up to 64 KiB, then Padmé
//! (Nikitin et al., PETS 2019), which leaks O(log log n) bits of the size with
//! at most 12 % overhead.

/// The field that carries the padding.
pub(crate) const FIELD: &str = "Letterlock-Padding";

const MIN_BUCKET: usize = 4096;
const POWER_OF_TWO_LIMIT: usize = 64 * 1024;
const FIRST_LINE_X: usize = 58; // "Letterlock-Padding: " + 58 = 78 characters
const CONTINUATION_X: usize = 77; // " " + 77 = 78 characters

/// The bucket a plaintext of `len` bytes is padded to.
pub fn bucket(len: usize) -> usize {
    if len <= MIN_BUCKET {
        return MIN_BUCKET;
    }
    if len <= POWER_OF_TWO_LIMIT {
        return len.next_power_of_two();
    }
    padme(len)
}

fn padme(len: usize) -> usize {
    let e = usize::BITS - 1 - len.leading_zeros(); // floor(log2 len)
    let s = u32::BITS - e.leading_zeros(); // floor(log2 e) + 1
    let last_bits = e - s;
    let mask = (1usize << last_bits) - 1;
    (len + mask) & !mask
}

/// A padding field that brings an entity of `len` bytes (which will gain the
/// field) to the size of a bucket.
pub(crate) fn field_for(len: usize, eol: &str) -> Vec<u8> {
    let mut target = bucket(len);
    loop {
        if let Some(field) = field_of_size(target - len, eol) {
            return field;
        }
        // Too little room for even the smallest field: use the next bucket.
        target = bucket(target + 1);
    }
}

/// A folded padding field of exactly `size` bytes, if one fits.
fn field_of_size(size: usize, eol: &str) -> Option<Vec<u8>> {
    let e = eol.len();
    let first_fixed = FIELD.len() + 2 + e; // "Name: " + eol
    let mut left = size.checked_sub(first_fixed + 1)?; // at least one 'x'
                                                       // Continuation lines cost 1 + k + e with 1 <= k <= 77; plan them first,
                                                       // so the first line takes whatever remainder is left.
    let mut lines = Vec::new();
    while left > FIRST_LINE_X - 1 {
        let max_line = 1 + CONTINUATION_X + e;
        let min_line = 2 + e;
        let take = if left - (FIRST_LINE_X - 1) >= max_line {
            max_line
        } else {
            (left - (FIRST_LINE_X - 1)).max(min_line)
        };
        lines.push(take - 1 - e);
        left = left.checked_sub(take)?;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(FIELD.as_bytes());
    out.extend_from_slice(b": ");
    out.resize(out.len() + 1 + left, b'x');
    out.extend_from_slice(eol.as_bytes());
    for k in lines {
        out.push(b' ');
        out.resize(out.len() + k, b'x');
        out.extend_from_slice(eol.as_bytes());
    }
    debug_assert_eq!(out.len(), size);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_grow_as_documented() {
        assert_eq!(bucket(1), 4096);
        assert_eq!(bucket(4097), 8192);
        assert_eq!(bucket(65536), 65536);
        assert_eq!(bucket(65537), 67584);
        assert_eq!(bucket(25_000_000), 25_165_824);
    }

    proptest! {
        #[test]
        fn padded_size_is_a_bucket(len in 0usize..300_000, crlf in any::<bool>()) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let field = field_for(len, eol);
            let total = len + field.len();
            prop_assert_eq!(bucket(total), total);
            // Power-of-two buckets may double a small message; Padmé adds at most 12 %.
            let bound = if total > 65536 { total / 8 } else { total / 2 + 4096 };
            prop_assert!(field.len() <= bound);
            for line in field.split(|&b| b == b'\n') {
                prop_assert!(line.len() <= 79);
            }
        }
    }
}
