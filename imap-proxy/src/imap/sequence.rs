//! UID sets as imap-types values: the compact form (`1:3,7,9:10`) the
//! proxy sends for a batch of messages.

use std::num::NonZeroU32;

use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

/// The UIDs as runs of consecutive values, sorted, without duplicates; `None`
/// if there is no valid UID (0 is not one).
pub fn uid_set(uids: &[u32]) -> Option<SequenceSet> {
    let mut sorted: Vec<NonZeroU32> = uids.iter().copied().filter_map(NonZeroU32::new).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<Sequence> = Vec::new();
    let mut values = sorted.into_iter();
    let first = values.next()?;
    let (mut start, mut end) = (first, first);
    for uid in values {
        if end.checked_add(1) == Some(uid) {
            end = uid;
        } else {
            runs.push(run(start, end));
            (start, end) = (uid, uid);
        }
    }
    runs.push(run(start, end));
    Vec1::try_from(runs).ok().map(SequenceSet)
}

/// The values a set names, if it names at most `limit` and no `*` (whose
/// value only the provider knows).
pub fn explicit_values(set: &SequenceSet, limit: usize) -> Option<Vec<u32>> {
    let mut values = Vec::new();
    for sequence in set.0.as_ref() {
        let (low, high) = match sequence {
            Sequence::Single(SeqOrUid::Value(v)) => (v.get(), v.get()),
            Sequence::Range(SeqOrUid::Value(a), SeqOrUid::Value(b)) => {
                (a.get().min(b.get()), a.get().max(b.get()))
            }
            _ => return None,
        };
        let count = usize::try_from(high - low).ok()?.checked_add(1)?;
        if values.len().saturating_add(count) > limit {
            return None;
        }
        values.extend(low..=high);
    }
    Some(values)
}

fn run(start: NonZeroU32, end: NonZeroU32) -> Sequence {
    if start == end {
        Sequence::Single(SeqOrUid::Value(start))
    } else {
        Sequence::Range(SeqOrUid::Value(start), SeqOrUid::Value(end))
    }
}

#[cfg(test)]
mod tests {
    use imap_next::imap_types::sequence::SequenceSet as Set;

    #[test]
    fn explicit_values_are_listed_up_to_a_limit_and_never_for_a_star() {
        let set = |text: &str| Set::try_from(text).expect("a set");
        assert_eq!(
            super::explicit_values(&set("3,7:5,9"), 10),
            Some(vec![3, 5, 6, 7, 9])
        );
        assert_eq!(super::explicit_values(&set("1:11"), 10), None);
        assert_eq!(super::explicit_values(&set("4:*"), 10), None);
        assert_eq!(super::explicit_values(&set("*"), 10), None);
    }

    use super::*;

    #[test]
    fn uid_sets_are_compact() {
        let expected = SequenceSet::try_from("1:3,7,9:10").expect("a set");
        assert_eq!(uid_set(&[3, 1, 2, 7, 9, 10, 10, 0]), Some(expected));
        assert_eq!(
            uid_set(&[5]),
            Some(SequenceSet::try_from("5").expect("a set"))
        );
        assert_eq!(
            uid_set(&[u32::MAX - 1, u32::MAX]),
            SequenceSet::try_from("4294967294:4294967295").ok()
        );
        assert_eq!(uid_set(&[0]), None);
        assert_eq!(uid_set(&[]), None);
    }
}
