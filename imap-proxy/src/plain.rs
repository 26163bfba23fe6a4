//! Which messages of a mailbox are known to be plain mail, shared by the
//! sessions of one proxy.
//!
//! Telling whether the gateway serves a message costs the provider a read of
//! its header and first body bytes ([`crate::imap::detect`]). A client's
//! mailbox-wide FETCH of sizes (Thunderbird's sync; every session, again and
//! again) would repeat that for every message each time. Within one
//! UIDVALIDITY a UID always names the same bytes (RFC 3501, 2.3.1.1), so
//! what was found once holds: the messages the gateway serves are in the
//! archive under their location, and this registry remembers the others.
//!
//! Memory is bounded: at most [`MAX_UIDS`] UIDs over all mailboxes, the
//! least recently used mailboxes forgotten first (their next FETCH detects
//! again, as the first one did).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

/// How many UIDs the registry holds at most (about 8 bytes each), over all
/// accounts and mailboxes.
pub const MAX_UIDS: usize = 2_000_000;

/// One mailbox of one account, in one UIDVALIDITY.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MailboxKey {
    pub account: String,
    pub mailbox: String,
    pub uidvalidity: u32,
}

/// The registry; clones share it.
#[derive(Clone)]
pub struct PlainMessages {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    mailboxes: HashMap<MailboxKey, Known>,
    uids: usize,
    max_uids: usize,
    clock: u64,
    reused: u64,
}

struct Known {
    plain: HashSet<u32>,
    used: u64,
}

impl Default for PlainMessages {
    fn default() -> Self {
        Self::with_limit(MAX_UIDS)
    }
}

impl PlainMessages {
    /// A registry that holds at most `max_uids` UIDs.
    pub fn with_limit(max_uids: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                mailboxes: HashMap::new(),
                uids: 0,
                max_uids,
                clock: 0,
                reused: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the messages of this mailbox have been told apart before,
    /// so that a UID not among the plain ones is most likely served by the
    /// gateway or new.
    pub fn knows(&self, mailbox: &MailboxKey) -> bool {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        match inner.mailboxes.get_mut(mailbox) {
            Some(known) => {
                known.used = now;
                inner.reused += 1;
                true
            }
            None => false,
        }
    }

    /// How often [`PlainMessages::knows`] said yes: FETCHes sent without
    /// detection (tests, diagnostics).
    pub fn reused(&self) -> u64 {
        self.lock().reused
    }

    /// Which of these UIDs are known to be plain mail.
    pub fn plain_among(&self, mailbox: &MailboxKey, uids: &[u32]) -> HashSet<u32> {
        let inner = self.lock();
        match inner.mailboxes.get(mailbox) {
            Some(known) => uids
                .iter()
                .copied()
                .filter(|uid| known.plain.contains(uid))
                .collect(),
            None => HashSet::new(),
        }
    }

    /// Records that the mailbox's messages were told apart and these UIDs
    /// are plain mail (none is fine: a mailbox of encrypted mail only).
    pub fn record(&self, mailbox: &MailboxKey, plain: impl IntoIterator<Item = u32>) {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let known = inner
            .mailboxes
            .entry(mailbox.clone())
            .or_insert_with(|| Known {
                plain: HashSet::new(),
                used: now,
            });
        known.used = now;
        let before = known.plain.len();
        known.plain.extend(plain);
        let added = known.plain.len() - before;
        inner.uids += added;
        inner.evict(mailbox);
    }

    /// UIDs held over all mailboxes (tests, diagnostics).
    pub fn len(&self) -> usize {
        self.lock().uids
    }

    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.lock().mailboxes.is_empty()
    }
}

impl Inner {
    /// Forgets the least recently used mailboxes until the UIDs fit; the
    /// one just recorded goes last, and only if it alone is too big.
    fn evict(&mut self, keep: &MailboxKey) {
        if self
            .mailboxes
            .get(keep)
            .is_some_and(|known| known.plain.len() > self.max_uids)
        {
            if let Some(known) = self.mailboxes.remove(keep) {
                self.uids -= known.plain.len();
            }
        }
        while self.uids > self.max_uids {
            let oldest = self
                .mailboxes
                .iter()
                .filter(|(key, _)| *key != keep)
                .min_by_key(|(_, known)| known.used)
                .map(|(key, _)| key.clone())
                .unwrap_or_else(|| keep.clone());
            if let Some(known) = self.mailboxes.remove(&oldest) {
                self.uids -= known.plain.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(mailbox: &str, uidvalidity: u32) -> MailboxKey {
        MailboxKey {
            account: "bob@example.org".into(),
            mailbox: mailbox.into(),
            uidvalidity,
        }
    }

    #[test]
    fn remembers_plain_uids_per_mailbox_and_uidvalidity() {
        let plain = PlainMessages::default();
        let inbox = key("INBOX", 7);
        assert!(!plain.knows(&inbox));
        plain.record(&inbox, [1, 2, 5]);
        assert!(plain.knows(&inbox));
        assert_eq!(plain.plain_among(&inbox, &[1, 3, 5]), HashSet::from([1, 5]));
        // A new UIDVALIDITY is another mailbox: nothing carries over.
        assert!(!plain.knows(&key("INBOX", 8)));
        assert!(plain.plain_among(&key("INBOX", 8), &[1]).is_empty());
        // Encrypted mail only: known, with no plain UID.
        plain.record(&key("Sent", 1), []);
        assert!(plain.knows(&key("Sent", 1)));
        plain.record(&inbox, [2, 9]);
        assert_eq!(plain.len(), 4);
    }

    #[test]
    fn forgets_least_recently_used_mailboxes_beyond_the_limit() {
        let plain = PlainMessages::with_limit(10);
        plain.record(&key("a", 1), 0..4);
        plain.record(&key("b", 1), 0..4);
        assert!(plain.knows(&key("a", 1)));
        // "b" is now the least recently used.
        plain.record(&key("c", 1), 0..4);
        assert!(plain.knows(&key("a", 1)));
        assert!(!plain.knows(&key("b", 1)));
        assert!(plain.knows(&key("c", 1)));
        assert_eq!(plain.len(), 8);
        // One mailbox bigger than the limit is not kept at all, and costs
        // the others nothing.
        plain.record(&key("huge", 1), 0..11);
        assert!(!plain.knows(&key("huge", 1)));
        assert!(plain.knows(&key("a", 1)));
        assert_eq!(plain.len(), 8);
    }
}
