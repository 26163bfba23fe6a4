//! The commands the gateway issues itself on a provider connection (login,
//! listing, EXAMINE, its own UID FETCHes for sizes, detection and whole
//! messages, the UIDs of a mailbox), each with a typed result; and how the answers to its own
//! FETCH are told apart from what the provider says unasked meanwhile
//! ([`Unsolicited`], passed on to the client).

use std::collections::HashSet;

use imap_next::imap_types::command::CommandBody;
use imap_next::imap_types::core::{Charset, Vec1};
use imap_next::imap_types::fetch::{MessageDataItem, MessageDataItemName};
use imap_next::imap_types::flag::FlagNameAttribute;
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::{Code, Data, Status};
use imap_next::imap_types::search::SearchKey;
use imap_next::imap_types::sequence::SequenceSet;
use secrecy::{ExposeSecret, SecretString};

use super::{Completed, MailboxInfo, Selected, Session, Unsolicited, UpstreamError};
use crate::imap::sequence::uid_set;

impl Session {
    /// Logs in with LOGIN.
    pub async fn login(
        &mut self,
        username: &str,
        password: &SecretString,
    ) -> Result<(), UpstreamError> {
        let body = CommandBody::login(username.to_string(), password.expose_secret().to_string())
            .map_err(|_| {
            UpstreamError::Argument("the user name or password cannot be sent with LOGIN".into())
        })?;
        let done = match self.run(body, "LOGIN").await {
            Ok(done) => done,
            Err(UpstreamError::Rejected { text, .. }) => {
                return Err(UpstreamError::LoginRejected(text))
            }
            Err(e) => return Err(e),
        };
        // Capabilities change at login; most providers name them in the
        // OK, the others are asked.
        let mut capabilities = capability_names(&done);
        if capabilities.is_empty() {
            capabilities =
                capability_names(&self.run(CommandBody::Capability, "CAPABILITY").await?);
        }
        self.capabilities = capabilities;
        Ok(())
    }

    /// Whether a literal of `len` bytes may be sent without waiting for the
    /// provider's go-ahead (RFC 7888: any size with LITERAL+, up to 4096
    /// bytes with LITERAL- or IMAP4rev2). Such a literal is read whole by the
    /// provider before it answers, so a refusal (out of space, too big)
    /// comes as an ordinary completion.
    pub fn takes_non_sync_literal(&self, len: usize) -> bool {
        let has = |name: &str| self.capabilities.iter().any(|c| c == name);
        has("LITERAL+") || (len <= 4096 && (has("LITERAL-") || has("IMAP4REV2")))
    }

    /// Every mailbox (`LIST "" "*"`).
    pub async fn list(&mut self) -> Result<Vec<MailboxInfo>, UpstreamError> {
        let body = CommandBody::list("", "*")
            .map_err(|_| UpstreamError::Argument("LIST arguments".into()))?;
        let done = self.run(body, "LIST").await?;
        Ok(done
            .data
            .into_iter()
            .filter_map(|d| match d {
                Data::List { items, mailbox, .. } => Some(MailboxInfo {
                    name: mailbox_name(&mailbox),
                    // (RFC 5258's \NonExistent implies \Noselect.)
                    selectable: !items
                        .iter()
                        .any(|i| matches!(i, FlagNameAttribute::Noselect)),
                }),
                _ => None,
            })
            .collect())
    }

    /// Opens a mailbox read-only (EXAMINE changes no flags).
    pub async fn examine(&mut self, mailbox: &str) -> Result<Selected, UpstreamError> {
        let body = CommandBody::examine(mailbox_arg(mailbox)?)
            .map_err(|_| UpstreamError::Argument(format!("mailbox name {mailbox:?}")))?;
        let done = self.run(body, "EXAMINE").await?;
        let exists = done
            .data
            .iter()
            .find_map(|d| match d {
                Data::Exists(n) => Some(*n),
                _ => None,
            })
            .unwrap_or(0);
        let uidvalidity = done
            .untagged
            .iter()
            .find_map(|s| match s {
                Status::Untagged(body) => match body.code {
                    Some(Code::UidValidity(v)) => Some(v.get()),
                    _ => None,
                },
                _ => None,
            })
            .ok_or_else(|| {
                UpstreamError::Protocol(format!("EXAMINE {mailbox} did not report UIDVALIDITY"))
            })?;
        Ok(Selected {
            uidvalidity,
            exists,
        })
    }

    /// UID and size of every message in the selected mailbox, by UID.
    pub async fn uids_and_sizes(&mut self) -> Result<Vec<(u32, u32)>, UpstreamError> {
        let set = SequenceSet::try_from("1:*")
            .map_err(|_| UpstreamError::Argument("sequence set".into()))?;
        let body = CommandBody::fetch(
            set,
            vec![MessageDataItemName::Uid, MessageDataItemName::Rfc822Size],
            true,
        )
        .map_err(|_| UpstreamError::Argument("FETCH".into()))?;
        // Read as it arrives: one entry per message, not its parsed response.
        let mut out: Vec<(u32, u32)> = Vec::new();
        self.run_each(body, "UID FETCH", |data| {
            let Data::Fetch { items, .. } = data else {
                return Ok(());
            };
            let mut uid = None;
            let mut size = None;
            for item in items.as_ref() {
                match item {
                    MessageDataItem::Uid(u) => uid = Some(u.get()),
                    MessageDataItem::Rfc822Size(s) => size = Some(*s),
                    _ => {}
                }
            }
            if let Some(uid) = uid {
                out.push((uid, size.unwrap_or(0)));
            }
            Ok(())
        })
        .await?;
        out.sort_unstable();
        out.dedup_by_key(|(uid, _)| *uid);
        Ok(out)
    }

    /// The UIDs of every message in the selected mailbox (`UID SEARCH ALL`,
    /// which the provider answers from its index), ascending.
    pub async fn all_uids(&mut self) -> Result<Vec<u32>, UpstreamError> {
        self.uid_search(None, SearchKey::All).await
    }

    /// The UIDs where one criterion holds in the selected mailbox, ascending
    /// (`UID SEARCH [CHARSET c] key`). The answer comes as a response, which
    /// has no length limit; a command line has one at every provider.
    pub async fn uid_search(
        &mut self,
        charset: Option<Charset<'static>>,
        key: SearchKey<'static>,
    ) -> Result<Vec<u32>, UpstreamError> {
        let body = CommandBody::search(charset, Vec1::from(key), true);
        let done = self.run(body, "UID SEARCH").await?;
        let mut uids = Vec::new();
        for data in done.data {
            match data {
                Data::Search(found, ..) => uids.extend(found.iter().map(|u| u.get())),
                // New mail, expunges, flag changes: the client's.
                other => self.unsolicited.push(Unsolicited::Data(other)),
            }
        }
        self.keep_statuses(done.untagged);
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// The full messages with these UIDs (`UID FETCH … BODY.PEEK[]`, which
    /// leaves `\Seen` alone). Messages expunged meanwhile are simply absent.
    pub async fn fetch_messages(
        &mut self,
        uids: &[u32],
    ) -> Result<Vec<(u32, Vec<u8>)>, UpstreamError> {
        let mut messages = Vec::with_capacity(uids.len());
        self.fetch_messages_each(uids, |uid, bytes| messages.push((uid, bytes)))
            .await?;
        Ok(messages)
    }

    /// As [`Session::fetch_messages`], handing each message to `each` as it
    /// arrives, so that work on the first can start while the rest are on
    /// the wire.
    pub async fn fetch_messages_each(
        &mut self,
        uids: &[u32],
        mut each: impl FnMut(u32, Vec<u8>) + Send,
    ) -> Result<(), UpstreamError> {
        let Some(set) = uid_set(uids) else {
            return Ok(());
        };
        let body = CommandBody::fetch(
            set,
            vec![
                MessageDataItemName::Uid,
                MessageDataItemName::BodyExt {
                    section: None,
                    partial: None,
                    peek: true,
                },
            ],
            true,
        )
        .map_err(|_| UpstreamError::Argument("FETCH".into()))?;
        let asked: HashSet<u32> = uids.iter().copied().collect();
        let mut unsolicited = Vec::new();
        let mut weight = 0usize;
        let done = self
            .run_each(body, "UID FETCH", |datum| {
                // As Session::run: no more than the asked messages' worth.
                weight += super::data_weight(&datum);
                if weight > super::MAX_COMMAND_BYTES {
                    return Err(UpstreamError::Protocol(
                        "the provider sent more data for UID FETCH than was asked for".into(),
                    ));
                }
                let Some(items) = split_own_datum(datum, &asked, &mut unsolicited) else {
                    return Ok(());
                };
                let mut uid = None;
                let mut bytes = None;
                for item in items {
                    match item {
                        MessageDataItem::Uid(u) => uid = Some(u.get()),
                        MessageDataItem::BodyExt {
                            section: None,
                            data,
                            ..
                        } => bytes = data.into_option().map(|c| c.into_owned()),
                        _ => {}
                    }
                }
                if let (Some(uid), Some(bytes)) = (uid, bytes) {
                    each(uid, bytes);
                }
                Ok(())
            })
            .await?;
        self.unsolicited.extend(unsolicited);
        self.keep_statuses(done.untagged);
        Ok(())
    }

    /// What tells who serves each of these messages ([`crate::imap::detect`]):
    /// (UID, header fields, text prefix). Messages expunged meanwhile are
    /// simply absent.
    pub async fn fetch_detection(
        &mut self,
        uids: &[u32],
    ) -> Result<Vec<crate::imap::detect::Detection>, UpstreamError> {
        let Some(set) = uid_set(uids) else {
            return Ok(Vec::new());
        };
        let mut names = vec![MessageDataItemName::Uid];
        names.extend(crate::imap::detect::items());
        let body = CommandBody::fetch(set, names, true)
            .map_err(|_| UpstreamError::Argument("FETCH".into()))?;
        let done = self.run(body, "UID FETCH").await?;
        Ok(self
            .answers_to_own_fetch(done, uids)
            .into_iter()
            .filter_map(|items| {
                let uid = items.iter().find_map(|item| match item {
                    MessageDataItem::Uid(u) => Some(u.get()),
                    _ => None,
                })?;
                let (header, prefix) = crate::imap::detect::found_in(&items);
                Some(crate::imap::detect::Detection {
                    uid,
                    header: header?,
                    prefix: prefix?,
                })
            })
            .collect())
    }

    /// The provider's own answers to `names` for plain messages with these
    /// UIDs (a FETCH asked it only for their metadata, the content of the
    /// others being the archive's): every item of each answer, as it would
    /// have answered the client. Messages expunged meanwhile are simply
    /// absent.
    pub async fn fetch_items(
        &mut self,
        uids: &[u32],
        mut names: Vec<MessageDataItemName<'static>>,
    ) -> Result<Vec<Vec<MessageDataItem<'static>>>, UpstreamError> {
        let Some(set) = uid_set(uids) else {
            return Ok(Vec::new());
        };
        if !names.contains(&MessageDataItemName::Uid) {
            names.push(MessageDataItemName::Uid);
        }
        let body = CommandBody::fetch(set, names, true)
            .map_err(|_| UpstreamError::Argument("FETCH".into()))?;
        let done = self.run(body, "UID FETCH").await?;
        let asked: HashSet<u32> = uids.iter().copied().collect();
        let mut answers = Vec::new();
        for datum in done.data {
            match datum {
                Data::Fetch { seq, items } => {
                    let uid = items.as_ref().iter().find_map(|item| match item {
                        MessageDataItem::Uid(uid) => Some(uid.get()),
                        _ => None,
                    });
                    // An answer carries content; flags alone (or with a
                    // mod-sequence) are a change another client made.
                    let content = items.as_ref().iter().any(|item| {
                        !matches!(
                            item,
                            MessageDataItem::Uid(_)
                                | MessageDataItem::Flags(_)
                                | MessageDataItem::ModSeq(_)
                        )
                    });
                    if uid.is_some_and(|uid| asked.contains(&uid)) && content {
                        answers.push(items.into_inner());
                    } else {
                        self.unsolicited
                            .push(Unsolicited::Data(Data::Fetch { seq, items }));
                    }
                }
                other => self.unsolicited.push(Unsolicited::Data(other)),
            }
        }
        self.keep_statuses(done.untagged);
        Ok(answers)
    }

    /// What the provider said unasked during the gateway's own commands
    /// since the last call, in the order it came: for the client.
    pub fn take_unsolicited(&mut self) -> Vec<Unsolicited> {
        std::mem::take(&mut self.unsolicited)
    }

    /// The answers to one of the gateway's own UID FETCHes for `asked`;
    /// the rest of what came with them is kept for the client.
    fn answers_to_own_fetch(
        &mut self,
        done: Completed,
        asked: &[u32],
    ) -> Vec<Vec<MessageDataItem<'static>>> {
        let (answers, unsolicited) = split_own_fetch(done.data, asked);
        self.unsolicited.extend(unsolicited);
        self.keep_statuses(done.untagged);
        answers
    }

    /// Keeps the untagged statuses that came with one of the gateway's own
    /// commands for the client.
    fn keep_statuses(&mut self, untagged: Vec<Status<'static>>) {
        self.unsolicited
            .extend(untagged.into_iter().filter_map(|status| match status {
                Status::Untagged(body) => Some(Unsolicited::Status(body)),
                _ => None,
            }));
    }
}

/// Splits the untagged data of the gateway's own UID FETCH for `asked` into
/// the answers (UID and body sections of each asked message) and what the
/// provider added unasked: other responses, FETCHes of flags only, and the
/// flags or mod-sequence a server put beside an answer (passed on with the
/// UID, which a QRESYNC client needs).
pub(super) fn split_own_fetch(
    data: Vec<Data<'static>>,
    asked: &[u32],
) -> (Vec<Vec<MessageDataItem<'static>>>, Vec<Unsolicited>) {
    let asked: HashSet<u32> = asked.iter().copied().collect();
    let mut unsolicited = Vec::new();
    let answers = data
        .into_iter()
        .filter_map(|datum| split_own_datum(datum, &asked, &mut unsolicited))
        .collect();
    (answers, unsolicited)
}

/// [`split_own_fetch`] for one response as it arrives: the answer's items,
/// if it is one, with what the provider added unasked put on `unsolicited`.
fn split_own_datum(
    datum: Data<'static>,
    asked: &HashSet<u32>,
    unsolicited: &mut Vec<Unsolicited>,
) -> Option<Vec<MessageDataItem<'static>>> {
    let Data::Fetch { seq, items } = datum else {
        unsolicited.push(Unsolicited::Data(datum));
        return None;
    };
    let uid = items.as_ref().iter().find_map(|item| match item {
        MessageDataItem::Uid(uid) => Some(*uid),
        _ => None,
    });
    let answers_ours = |item: &MessageDataItem| matches!(item, MessageDataItem::BodyExt { .. });
    let ours = uid.is_some_and(|uid| asked.contains(&uid.get()))
        && items.as_ref().iter().any(answers_ours);
    if !ours {
        unsolicited.push(Unsolicited::Data(Data::Fetch { seq, items }));
        return None;
    }
    let (answer, extra): (Vec<_>, Vec<_>) = items
        .into_inner()
        .into_iter()
        .partition(|item| answers_ours(item) || matches!(item, MessageDataItem::Uid(_)));
    if let (false, Some(uid)) = (extra.is_empty(), uid) {
        let mut told = vec![MessageDataItem::Uid(uid)];
        told.extend(extra);
        if let Ok(items) = Vec1::try_from(told) {
            unsolicited.push(Unsolicited::Data(Data::Fetch { seq, items }));
        }
    }
    Some(answer)
}

/// The wire name of a mailbox as text (names are 7-bit on the wire:
/// modified UTF-7 unless UTF8=ACCEPT was enabled).
fn mailbox_name(mailbox: &Mailbox<'_>) -> String {
    match mailbox {
        Mailbox::Inbox => "INBOX".to_string(),
        Mailbox::Other(other) => String::from_utf8_lossy(other.as_ref()).into_owned(),
    }
}

fn mailbox_arg(name: &str) -> Result<Mailbox<'static>, UpstreamError> {
    Mailbox::try_from(name.to_string())
        .map_err(|_| UpstreamError::Argument(format!("mailbox name {name:?}")))
}

fn capability_names(done: &Completed) -> Vec<String> {
    let from_code = match &done.code {
        Some(Code::Capability(caps)) => caps.as_ref().iter().map(|c| c.to_string()).collect(),
        _ => Vec::new(),
    };
    let from_data = done.data.iter().flat_map(|d| match d {
        Data::Capability(caps) => caps.as_ref().iter().map(|c| c.to_string()).collect(),
        _ => Vec::new(),
    });
    from_code
        .into_iter()
        .chain(from_data)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}
