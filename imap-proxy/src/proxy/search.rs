//! SEARCH over decrypted text: the text criteria of a client's SEARCH are
//! rewritten so that encrypted messages are judged by what they say
//! ([`crate::imap::search`]), not by their ciphertext.

use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::search::SearchKey;
use tracing::warn;

use super::Forwarder;
use crate::imap::fetch_command::LOOKUP_BATCH;
use crate::imap::search::{has_text, matches, rewrite, text_keys, uid_set};

impl Forwarder {
    /// Rewrites the text criteria of a SEARCH so that encrypted messages are
    /// judged by their decrypted text ([`crate::imap::search`]). Messages count
    /// once the gateway has archived them (read through the proxy, or
    /// `gateway archive sync`).
    pub(super) async fn search_encrypted(&mut self, criteria: &mut Vec1<SearchKey<'static>>) {
        if !criteria.as_ref().iter().any(has_text) {
            return;
        }
        let Some(selected) = self.selected.clone() else {
            return;
        };
        let Some(uidvalidity) = selected.uidvalidity else {
            return;
        };
        let archive = &self.shared.archive;
        let uids = match archive
            .encrypted_uids(&self.account.address, &selected.mailbox, uidvalidity)
            .await
        {
            Ok(uids) => uids,
            Err(e) => {
                warn!(error = %e, "archive lookup for SEARCH failed");
                return;
            }
        };
        let Some(encrypted) = uid_set(&uids) else {
            return;
        };
        // Batch by batch, so memory stays flat however large the mailbox:
        // each text criterion's matches are collected, the messages dropped.
        let mut texts = Vec::new();
        criteria
            .as_ref()
            .iter()
            .for_each(|key| text_keys(key, &mut texts));
        let mut found: Vec<Vec<u32>> = vec![Vec::new(); texts.len()];
        for chunk in uids.chunks(LOOKUP_BATCH) {
            let served = match archive
                .messages_at(&self.account.address, &selected.mailbox, uidvalidity, chunk)
                .await
            {
                Ok(served) => served,
                Err(e) => {
                    warn!(error = %e, "archive lookup for SEARCH failed");
                    continue;
                }
            };
            for (uid, bytes) in &served {
                for (text, found) in texts.iter().zip(found.iter_mut()) {
                    if matches(text, bytes) {
                        found.push(*uid);
                    }
                }
            }
        }
        let keys = std::mem::replace(criteria, Vec1::from(SearchKey::All));
        let rewritten: Vec<SearchKey<'static>> = keys
            .into_iter()
            .map(|key| {
                rewrite(key, &encrypted, &mut |text| {
                    texts
                        .iter()
                        .position(|t| t == text)
                        .map(|i| found[i].clone())
                        .unwrap_or_default()
                })
            })
            .collect();
        if let Ok(rewritten) = Vec1::try_from(rewritten) {
            *criteria = rewritten;
        }
    }
}
