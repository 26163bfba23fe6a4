//! SEARCH over decrypted text: the text criteria of a client's SEARCH are
//! rewritten so that encrypted messages are judged by what they say
//! ([`crate::imap::search`]), not by their ciphertext.

use archive::Archive;
use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::search::SearchKey;
use tracing::warn;

use super::Forwarder;
use crate::imap::fetch_command::LOOKUP_BATCH;
use crate::imap::search::{has_text, index_field, matches, rewrite, text_keys, uid_set};

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
        let mailbox = (
            self.account.address.as_str(),
            selected.mailbox.as_str(),
            uidvalidity,
        );
        let archive = &self.shared.archive;
        let uids = match archive
            .encrypted_uids(mailbox.0, mailbox.1, mailbox.2)
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
        let mut texts = Vec::new();
        criteria
            .as_ref()
            .iter()
            .for_each(|key| text_keys(key, &mut texts));
        let mut found = Vec::with_capacity(texts.len());
        for text in &texts {
            found.push(matching(archive, mailbox, &uids, text).await);
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

/// The encrypted messages (`uids`, archived) of one mailbox where a text
/// criterion holds. The index answers what it holds (subject, sender,
/// recipients, body; word semantics, see `Archive::encrypted_uids_with`);
/// HEADER and BCC are judged on the archived header sections, and a
/// search string without a word character on the messages themselves —
/// batch by batch, so memory stays flat however large the mailbox.
async fn matching(
    archive: &Archive,
    mailbox: (&str, &str, u32),
    uids: &[u32],
    text: &SearchKey<'static>,
) -> Vec<u32> {
    let mut whole_messages = true;
    if let Some((field, needle)) = index_field(text) {
        if needle.is_empty() {
            // Every text holds the empty string.
            return uids.to_vec();
        }
        match archive.encrypted_uids_with(mailbox, field, &needle).await {
            Ok(Some(found)) => return found,
            Ok(None) => {}
            Err(e) => {
                warn!(error = %e, "index search for SEARCH failed");
                return Vec::new();
            }
        }
    } else {
        whole_messages = false;
    }
    let mut found = Vec::new();
    for chunk in uids.chunks(LOOKUP_BATCH) {
        let read = if whole_messages {
            archive
                .messages_at(mailbox.0, mailbox.1, mailbox.2, chunk)
                .await
        } else {
            archive
                .headers_at(mailbox.0, mailbox.1, mailbox.2, chunk)
                .await
                .map(|headers| headers.into_iter().map(|(uid, h, _)| (uid, h)).collect())
        };
        match read {
            Ok(read) => found.extend(
                read.iter()
                    .filter(|(_, bytes)| matches(text, bytes))
                    .map(|(uid, _)| *uid),
            ),
            Err(e) => warn!(error = %e, "archive lookup for SEARCH failed"),
        }
    }
    found
}
