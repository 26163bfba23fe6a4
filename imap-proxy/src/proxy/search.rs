//! SEARCH over decrypted text: the text criteria of a client's SEARCH are
//! rewritten so that encrypted messages are judged by what they say
//! ([`crate::imap::search`]), not by their ciphertext.

use std::collections::HashSet;

use archive::Archive;
use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::response::{Status, StatusBody, StatusKind};
use imap_next::imap_types::search::SearchKey;
use tracing::warn;

use super::respond::text;
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
        self.tell_unread().await;
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

impl Forwarder {
    /// Says, before the answer, how many messages of the selected mailbox
    /// the gateway has not read yet: it does not know whether they are
    /// encrypted, and if they are, the provider's search of them (all it
    /// has is ciphertext) cannot match. Reading every one first would make
    /// a SEARCH in a large unread mailbox take minutes; an answer that
    /// silently misses mail would be worse. Clients keep untagged OK text
    /// in their logs; `gateway archive sync` reads them all.
    async fn tell_unread(&mut self) {
        let Some(key) = self.mailbox_key() else {
            return;
        };
        let all = match self.session.all_uids().await {
            Ok(all) => all,
            Err(e) => {
                warn!(error = %e, "the provider's UID list for SEARCH failed");
                return;
            }
        };
        // What the provider said meanwhile (an expunge, new mail) goes to
        // the client before the answer to its SEARCH, which reflects it.
        self.pass_on_unsolicited();
        let archived: HashSet<u32> = match self
            .shared
            .archive
            .uids(&key.account, &key.mailbox, key.uidvalidity)
            .await
        {
            Ok(uids) => uids.into_iter().collect(),
            Err(e) => {
                warn!(error = %e, "archive lookup for SEARCH failed");
                return;
            }
        };
        let unread: Vec<u32> = all.into_iter().filter(|u| !archived.contains(u)).collect();
        let plain = self.shared.plain.plain_among(&key, &unread);
        let unknown = unread.len() - plain.len();
        if unknown > 0 {
            self.send_status(Status::Untagged(StatusBody {
                kind: StatusKind::Ok,
                code: None,
                text: text(&unread_notice(unknown)),
            }));
        }
    }
}

/// What a SEARCH's client is told about messages the gateway has not read.
fn unread_notice(unknown: usize) -> String {
    let (messages, have) = if unknown == 1 {
        ("message", "has")
    } else {
        ("messages", "have")
    };
    format!(
        "Letterlock: {unknown} {messages} in this folder {have} not been read through the \
         gateway yet; if any is encrypted, this search could not look inside it. Open them, \
         or run `gateway archive sync`, and search again"
    )
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
