//! SEARCH over decrypted text: encrypted messages are judged by what they
//! say ([`crate::imap::search`]), not by their ciphertext.
//!
//! A SEARCH with text criteria is answered here: the provider is asked
//! for each leaf criterion on its own (`UID SEARCH leaf`), a text leaf's
//! answer has the encrypted messages replaced by the gateway's judgement of
//! them, and the boolean structure is evaluated over those sets. Every set
//! travels as a response, which has no length limit. Sending the sets to
//! the provider instead (the rewrite, kept for CONDSTORE's MODSEQ) puts a
//! UID set as long as the mailbox is mixed on one command line, which
//! providers cap (Dovecot at 64 KiB: about 10,000 encrypted messages
//! between plain ones).

use std::collections::HashSet;
use std::num::NonZeroU32;

use archive::Archive;
use imap_next::imap_types::core::{Charset, Tag, Vec1};
use imap_next::imap_types::response::{Data, Status, StatusBody, StatusKind};
use imap_next::imap_types::search::SearchKey;
use tracing::warn;

use super::respond::{tagged, text};
use super::Forwarder;
use crate::imap::fetch_command::LOOKUP_BATCH;
use crate::imap::search::{
    evaluate, has_text, index_field, is_text, leaves, matches, needs_provider, rewrite, text_keys,
    uid_set,
};
use crate::plain::MailboxKey;

/// At most this many distinct criteria in one SEARCH: each is one search at
/// the provider and one set of UIDs held until the answer, and a command
/// may be megabytes long.
const MAX_LEAVES: usize = 64;

/// Whether a client's SEARCH is one [`Forwarder::answer_search`] answers.
pub(super) fn answered_here(criteria: &Vec1<SearchKey<'static>>) -> bool {
    criteria.as_ref().iter().any(has_text) && !criteria.as_ref().iter().any(needs_provider)
}

impl Forwarder {
    /// Answers a SEARCH with text criteria ([`answered_here`]): the matching
    /// UIDs (or, without `uid`, sequence numbers), or why not (the
    /// provider's refusal of a criterion).
    /// `None` with no mailbox selected: the provider says what is wrong.
    pub(super) async fn answer_search(
        &mut self,
        charset: Option<Charset<'static>>,
        criteria: &Vec1<SearchKey<'static>>,
        uid: bool,
    ) -> Option<Result<Vec<u32>, String>> {
        let key = self.mailbox_key()?;
        let mailbox = (key.account.as_str(), key.mailbox.as_str(), key.uidvalidity);
        let archived = match self.archived(&key).await {
            Ok(archived) => archived,
            Err(e) => return Some(Err(format!("the gateway's archive failed: {e}"))),
        };
        let encrypted = &archived.encrypted;
        let encrypted_set: HashSet<u32> = encrypted.iter().copied().collect();
        let mut keys = Vec::new();
        criteria.as_ref().iter().for_each(|k| leaves(k, &mut keys));
        if keys.len() > MAX_LEAVES {
            return Some(Err(format!(
                "This search has {} criteria; the gateway answers at most {MAX_LEAVES} at once \
                 (each is a search at your provider). Split it into smaller searches",
                keys.len()
            )));
        }
        let mut sets = Vec::with_capacity(keys.len());
        for leaf in &keys {
            let provider = match self.session.uid_search(charset.clone(), leaf.clone()).await {
                Ok(uids) => uids,
                Err(e) => return Some(Err(format!("Your provider refused the search: {e}"))),
            };
            if !is_text(leaf) {
                sets.push(provider);
                continue;
            }
            // The provider judged ciphertext; the gateway judges the text.
            let mut set: Vec<u32> = provider
                .into_iter()
                .filter(|u| !encrypted_set.contains(u))
                .collect();
            set.extend(matching(&self.shared.archive, mailbox, encrypted, leaf).await);
            set.sort_unstable();
            set.dedup();
            sets.push(set);
        }
        // The mailbox's UIDs last: an expunge the provider announced during
        // the searches above is in this list already, so the sequence
        // numbers of the answer are those the client has once it has read
        // the expunges, which `tell_unread` passes on before the answer.
        let all = match self.tell_unread(&archived.all).await {
            Ok(all) => all,
            Err(e) => return Some(Err(e)),
        };
        let key = match criteria.as_ref() {
            [one] => one.clone(),
            _ => SearchKey::And(criteria.clone()),
        };
        let found = evaluate(&key, &all, &mut |leaf| {
            keys.iter()
                .position(|k| k == leaf)
                .map(|i| sets[i].clone())
                .unwrap_or_default()
        });
        Some(Ok(if uid {
            found
        } else {
            // Sequence numbers: positions in the mailbox's UID order.
            found
                .iter()
                .filter_map(|u| all.binary_search(u).ok())
                .filter_map(|i| u32::try_from(i + 1).ok())
                .collect()
        }))
    }

    /// Rewrites the text criteria of a SEARCH that must go to the provider
    /// whole (CONDSTORE's MODSEQ; everything else is [`answered_here`]) so
    /// that encrypted messages are judged by their decrypted text
    /// ([`crate::imap::search`]). Messages count once the gateway has
    /// archived them (read through the proxy, or `gateway archive sync`).
    /// The UID sets it writes grow with the mailbox and can pass the
    /// provider's line cap; the provider's BAD then reaches the client.
    pub(super) async fn search_encrypted(&mut self, criteria: &mut Vec1<SearchKey<'static>>) {
        if !criteria.as_ref().iter().any(has_text) {
            return;
        }
        let Some(key) = self.mailbox_key() else {
            return;
        };
        let archived = match self.archived(&key).await {
            Ok(archived) => archived,
            Err(e) => {
                warn!(error = %e, "archive lookup for SEARCH failed");
                return;
            }
        };
        // Failing to count is logged there; the rewrite still goes out.
        let _ = self.tell_unread(&archived.all).await;
        let mailbox = (key.account.as_str(), key.mailbox.as_str(), key.uidvalidity);
        let archive = &self.shared.archive;
        let uids = archived.encrypted;
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

    /// Sends what [`Forwarder::answer_search`] found, as the provider would.
    pub(super) fn send_search_answer(
        &mut self,
        client_tag: Tag<'static>,
        answer: Result<Vec<u32>, String>,
    ) {
        match answer {
            Ok(uids) => {
                let uids = uids.into_iter().filter_map(NonZeroU32::new).collect();
                self.send_data(Data::Search(uids, None));
                self.send_status(tagged(client_tag, StatusKind::Ok, None, "Search completed"));
            }
            Err(why) => {
                self.send_status(tagged(client_tag, StatusKind::No, None, &why));
            }
        }
    }

    /// Says, before the answer, how many messages of the selected mailbox
    /// the gateway has not read yet: it does not know whether they are
    /// encrypted, and if they are, the provider's search of them (all it
    /// has is ciphertext) cannot match. Reading every one first would make
    /// a SEARCH in a large unread mailbox take minutes; an answer that
    /// silently misses mail would be worse. Clients keep untagged OK text
    /// in their logs; `gateway archive sync` reads them all.
    ///
    /// `archived`: the mailbox's archived UIDs ([`Forwarder::archived`]).
    /// Returns the UIDs of the mailbox, as the provider listed them.
    async fn tell_unread(&mut self, archived: &HashSet<u32>) -> Result<Vec<u32>, String> {
        let Some(key) = self.mailbox_key() else {
            return Ok(Vec::new());
        };
        let all = match self.session.all_uids().await {
            Ok(all) => all,
            Err(e) => {
                warn!(error = %e, "the provider's UID list for SEARCH failed");
                return Err(format!("Your provider did not list the folder: {e}"));
            }
        };
        // What the provider said meanwhile (an expunge, new mail) goes to
        // the client before the answer to its SEARCH, which reflects it.
        self.pass_on_unsolicited();
        let unread: Vec<u32> = all
            .iter()
            .copied()
            .filter(|u| !archived.contains(u))
            .collect();
        let plain = self.shared.plain.plain_among(&key, &unread);
        let unknown = unread.len() - plain.len();
        if unknown > 0 {
            self.send_status(Status::Untagged(StatusBody {
                kind: StatusKind::Ok,
                code: None,
                text: text(&unread_notice(unknown)),
            }));
        }
        Ok(all)
    }
}

/// The selected mailbox as the archive holds it ([`Forwarder::archived`]).
struct Archived {
    all: HashSet<u32>,
    /// The encrypted ones, ascending.
    encrypted: Vec<u32>,
}

impl Forwarder {
    /// What the archive holds of a mailbox, from one query: what
    /// [`Forwarder::tell_unread`] counts and what the gateway searches.
    async fn archived(&self, key: &MailboxKey) -> Result<Archived, archive::ArchiveError> {
        let uids = self
            .shared
            .archive
            .uids_and_encryption(&key.account, &key.mailbox, key.uidvalidity)
            .await?;
        Ok(Archived {
            all: uids.iter().map(|(uid, _)| *uid).collect(),
            encrypted: uids
                .into_iter()
                .filter_map(|(uid, encrypted)| encrypted.then_some(uid))
                .collect(),
        })
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
    let whole_messages = match index_field(text) {
        // Every text holds the empty string.
        Some((_, needle)) if needle.is_empty() => return uids.to_vec(),
        Some((field, needle)) => match archive.encrypted_uids_with(mailbox, field, &needle).await {
            Ok(Some(found)) => return found,
            // No word to ask the index for: the messages are read.
            Ok(None) => true,
            Err(e) => {
                warn!(error = %e, "index search for SEARCH failed");
                return Vec::new();
            }
        },
        // HEADER, BCC: the header sections are enough.
        None => false,
    };
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
