//! One client FETCH as a sans-I/O command object.
//!
//! [`FetchCommand::start`] turns the client's item names into the ones the
//! provider is asked for (the detection items added where needed). Each
//! message of the provider's answer goes to [`FetchCommand::message`]; the
//! provider's completion to [`FetchCommand::finish`]. In between, the
//! command says what it needs done as [`Effect`]s — answer the client,
//! learn a key, look up the archive, detect, view, download — which the
//! session performs and reports back through the method each effect names,
//! the way smtp-proxy's `Session` returns `Action`s. The command never waits
//! on anything itself, so the rules of a FETCH are unit-tested with plain
//! values, and a session reads as "perform what the command asks".
//!
//! The rules, in the order a message meets them:
//! - A message the gateway does not serve ([`detect`]) is answered with the
//!   provider's own items at once (minus the detection items), after its
//!   Autocrypt header, if any, was learned from.
//! - A message it serves waits, with up to [`LOOKUP_BATCH`] others, for one
//!   archive look-up: sizes only where the client asked for no content but
//!   `RFC822.SIZE`, the served bytes otherwise. One the provider sent whole
//!   is viewed at once; the rest waits, without its bytes, for the end of the
//!   FETCH and is then downloaded in batches of [`MISSING_BATCH`] (a
//!   mailbox-wide FETCH never piles up bodies).
//! - A FETCH of sizes only, or of sizes and top-level header fields (a mail
//!   client's header sync), in a mailbox whose messages were told apart
//!   before, goes without detection items ("deferred"): the known plain ones
//!   and the archived ones are answered from what is known, the rest is
//!   detected after the FETCH, in batches. The provider then answers from
//!   its cache instead of reading every message's first body part.
//! - A FETCH of content in such a mailbox (a client reading the whole
//!   mailbox) asks the provider for the metadata alone when nothing it asks
//!   for sets `\Seen` ([`metadata_names`]): the archived messages are
//!   answered from the archive, so their ciphertext is not downloaded again,
//!   and the known plain ones get the provider's own answer from a second
//!   FETCH after the first, in batches bounded by [`PLAIN_BATCH_BYTES`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;

use imap_next::imap_types::core::{NString, Vec1};
use imap_next::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName,
};
use imap_next::imap_types::flag::FlagFetch;
use imap_next::imap_types::response::Data;
use imap_next::imap_types::ToStatic;

use crate::imap::detect::{self, served_by_gateway, Detection};
use crate::imap::fetch::{
    answer_from_served, metadata_names, needs, rewrite, rewrite_from_header, rewrite_size,
    same_section, Needs,
};

/// Messages looked up in the archive with one query.
pub const LOOKUP_BATCH: usize = 100;

/// Messages detected or downloaded in one command to the provider after a
/// FETCH.
pub const MISSING_BATCH: usize = 100;

/// Most bytes (by the provider's sizes) of the plain messages fetched with
/// one command after a FETCH of metadata; at least one message each.
pub const PLAIN_BATCH_BYTES: u64 = 8 * 1024 * 1024;

/// What the session does for a FETCH. Effects that ask a question are
/// answered through the method they name; until then the command waits.
#[derive(Debug, PartialEq)]
pub enum Effect {
    /// Answer the client with this FETCH response.
    Send(Data<'static>),
    /// Learn from the Autocrypt header of this cleartext message (trust on
    /// first use). Only for headers that carry one.
    Learn { uid: u32, header: Vec<u8> },
    /// Which of these the selected mailbox knows as plain mail:
    /// [`FetchCommand::known_plain`].
    AskPlain(Vec<u32>),
    /// The served sizes of those of these the archive holds:
    /// [`FetchCommand::archived_sizes`].
    AskSizes(Vec<u32>),
    /// The served bytes of those of these the archive holds:
    /// [`FetchCommand::archived_messages`].
    AskArchive(Vec<u32>),
    /// The header sections and served sizes of those of these the archive
    /// holds (the FETCH needs no more): [`FetchCommand::archived_headers`].
    AskHeaders(Vec<u32>),
    /// View and archive these whole messages the provider sent:
    /// [`FetchCommand::viewed`].
    View(Vec<(u32, Vec<u8>)>),
    /// Fetch the detection items of these from the provider:
    /// [`FetchCommand::detected`].
    Detect(Vec<u32>),
    /// Download, view and archive these: [`FetchCommand::served`] for what is
    /// ready (as often as needed), then [`FetchCommand::downloaded`].
    Download(Vec<u32>),
    /// Fetch `names` (the client's) of these plain messages from the
    /// provider, which was asked only for their metadata:
    /// [`FetchCommand::plain_fetched`].
    FetchPlain {
        uids: Vec<u32>,
        names: Vec<MessageDataItemName<'static>>,
    },
    /// These UIDs of the selected mailbox are plain mail.
    RecordPlain(Vec<u32>),
    /// Let the client take the answers queued so far before more come.
    Drain,
}

/// What the session knows of the messages a FETCH names, asked by
/// [`FetchCommand::start`] only for a FETCH of content, sizes or headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// The mailbox's messages were never told apart.
    Nothing,
    /// They were ([`crate::plain::PlainMessages::knows`]): a UID not known
    /// as plain is most likely archived, or new.
    ToldApart,
    /// Told apart, and every UID the FETCH names is known plain mail.
    AllPlain,
}

/// One message of the provider's answer, held until the command knows what
/// to answer for it.
#[derive(Debug)]
struct Held {
    /// Its sequence number in the client's view of the mailbox.
    seq: NonZeroU32,
    uid: u32,
    /// The provider's items for it.
    items: Vec<MessageDataItem<'static>>,
}

/// A held message that waits for its served bytes ([`Held::lightened`]),
/// kept small: a mailbox-wide header sync holds every encrypted message not
/// yet archived until the provider's FETCH ends.
#[derive(Debug)]
struct Waiting {
    seq: NonZeroU32,
    uid: u32,
    /// The items the client asked for, without data.
    kept: Box<[Kept]>,
    /// The requested body sections the provider answered, by their index in
    /// the requested names and their origin.
    sections: Box<[(usize, Option<u32>)]>,
}

/// One item of a [`Waiting`] message. A `MessageDataItem` takes 368 bytes
/// whatever it holds, and a waiting message's items are nearly always a
/// UID, a size and flags: held as they were, they were about 1 KB for every
/// encrypted message of a cold header sync (over 50 MiB at 100,000).
#[derive(Debug)]
enum Kept {
    Uid(NonZeroU32),
    Rfc822Size(u32),
    Flags(Vec<FlagFetch<'static>>),
    Other(Box<MessageDataItem<'static>>),
}

impl From<MessageDataItem<'static>> for Kept {
    fn from(item: MessageDataItem<'static>) -> Kept {
        match item {
            MessageDataItem::Uid(uid) => Kept::Uid(uid),
            MessageDataItem::Rfc822Size(size) => Kept::Rfc822Size(size),
            MessageDataItem::Flags(flags) => Kept::Flags(flags),
            other => Kept::Other(Box::new(other)),
        }
    }
}

impl From<Kept> for MessageDataItem<'static> {
    fn from(kept: Kept) -> MessageDataItem<'static> {
        match kept {
            Kept::Uid(uid) => MessageDataItem::Uid(uid),
            Kept::Rfc822Size(size) => MessageDataItem::Rfc822Size(size),
            Kept::Flags(flags) => MessageDataItem::Flags(flags),
            Kept::Other(item) => *item,
        }
    }
}

/// A plain message whose content the provider is asked for after a FETCH
/// of metadata.
#[derive(Debug)]
struct PlainContent {
    seq: NonZeroU32,
    uid: u32,
    /// The provider's size, to portion out the second fetch.
    size: u32,
}

impl PlainContent {
    fn of(held: &Held) -> PlainContent {
        let size = held.items.iter().find_map(|item| match item {
            MessageDataItem::Rfc822Size(size) => Some(*size),
            _ => None,
        });
        PlainContent {
            seq: held.seq,
            uid: held.uid,
            size: size.unwrap_or(0),
        }
    }
}

/// What a batch of held messages waits for.
#[derive(Debug)]
enum Awaiting {
    Nothing,
    Plain(Vec<Held>),
    Sizes {
        batch: Vec<Held>,
        /// Deferred: what is not archived is detected after the FETCH;
        /// otherwise it is looked up in the archive next.
        then_detect: bool,
    },
    Archive {
        batch: Vec<Held>,
        /// Deferred: what the archive lacks is detected after the FETCH;
        /// otherwise it is viewed or downloaded.
        then_detect: bool,
    },
    View(Vec<Waiting>),
    Detect(Vec<Held>),
    Content(Vec<PlainContent>),
    Download(Vec<Waiting>),
}

/// The work left after the provider's completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Receiving,
    RecordPlain,
    Detect,
    PlainContent,
    Download,
    Done,
}

/// One FETCH, from the client's item names to the last answer.
#[derive(Debug)]
pub struct FetchCommand {
    /// What the client asked for (`UID` added for a UID FETCH).
    requested: Vec<MessageDataItemName<'static>>,
    need: Needs,
    /// Sent without detection items ([`FetchCommand::start`]).
    deferred: bool,
    /// Deferred, and the provider asked only for metadata: every content
    /// item is answered from served bytes or by a second fetch.
    metadata_only: bool,
    /// Served (or, deferred, unknown) messages for the next archive query.
    lookup: Vec<Held>,
    /// Served messages not archived yet: downloaded after the FETCH.
    missing: Vec<Waiting>,
    /// Deferred: messages neither known plain nor archived.
    undetected: Vec<Held>,
    /// Not deferred: the UIDs the detection items showed plain.
    plain_seen: Vec<u32>,
    /// Metadata only: plain messages whose content is fetched after.
    plain_content: Vec<PlainContent>,
    awaiting: Awaiting,
    stage: Stage,
    effects: VecDeque<Effect>,
}

impl FetchCommand {
    /// Starts a FETCH: rewrites the client's item names into those sent to
    /// the provider. `uid` is whether it is a UID FETCH; `known` what the
    /// session knows of the messages named ([`Known`]), asked only for a
    /// FETCH of content, sizes or header fields.
    pub fn start(
        names: &mut MacroOrMessageDataItemNames<'static>,
        uid: bool,
        known: impl FnOnce() -> Known,
    ) -> FetchCommand {
        let mut requested: Vec<MessageDataItemName<'static>> = match names {
            MacroOrMessageDataItemNames::Macro(m) => {
                m.expand().into_iter().map(|n| n.to_static()).collect()
            }
            MacroOrMessageDataItemNames::MessageDataItemNames(names) => names.clone(),
        };
        if uid {
            requested.push(MessageDataItemName::Uid);
        }
        let mut sent = requested.clone();
        // UID, FLAGS, INTERNALDATE and MODSEQ are the provider's for every message:
        // nothing to detect or look up (a client's flag refresh of a whole
        // mailbox stays cheap). Sizes and header fields in a mailbox told
        // apart before come from what is known; only new messages are
        // detected, afterwards.
        let need = needs(&requested);
        let metadata = match need {
            Needs::Bytes => metadata_names(&requested),
            _ => None,
        };
        let known = match need {
            Needs::Nothing => Known::Nothing,
            _ => known(),
        };
        // Content of plain mail only: the provider's answers are the
        // client's, and one command gets them. Otherwise the archive's
        // content is not downloaded again, where what the client asks for
        // allows it; where not, the provider's whole answer is viewed as
        // it comes, as in a mailbox never told apart.
        let metadata_only = match metadata {
            Some(names) if known == Known::ToldApart => {
                sent = names;
                true
            }
            _ => false,
        };
        let deferred = match known {
            Known::Nothing => false,
            Known::ToldApart => need != Needs::Bytes || metadata_only,
            Known::AllPlain => true,
        };
        if need != Needs::Nothing && !deferred {
            sent.extend(detect::items());
        }
        // The UID files the message in the archive; the client sees it only
        // if it asked (or used UID FETCH).
        if !sent.contains(&MessageDataItemName::Uid) {
            sent.push(MessageDataItemName::Uid);
        }
        *names = MacroOrMessageDataItemNames::MessageDataItemNames(sent);
        FetchCommand {
            requested,
            need,
            deferred,
            metadata_only,
            lookup: Vec::new(),
            missing: Vec::new(),
            undetected: Vec::new(),
            plain_seen: Vec::new(),
            plain_content: Vec::new(),
            awaiting: Awaiting::Nothing,
            stage: Stage::Receiving,
            effects: VecDeque::new(),
        }
    }

    /// The next thing to do, if any. `None` while an answer is awaited, and
    /// once all is done.
    pub fn poll(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Whether the last answer for this FETCH is out (after
    /// [`FetchCommand::finish`]): the client's completion may follow.
    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done && self.effects.is_empty()
    }

    /// The UIDs the command holds back, waiting for a look-up or download
    /// (tests, diagnostics).
    pub fn held(&self) -> usize {
        let waiting = match &self.awaiting {
            Awaiting::Nothing => 0,
            Awaiting::Plain(b)
            | Awaiting::Sizes { batch: b, .. }
            | Awaiting::Archive { batch: b, .. }
            | Awaiting::Detect(b) => b.len(),
            Awaiting::View(b) | Awaiting::Download(b) => b.len(),
            Awaiting::Content(b) => b.len(),
        };
        waiting
            + self.lookup.len()
            + self.missing.len()
            + self.undetected.len()
            + self.plain_content.len()
    }

    /// One message of the provider's answer.
    pub fn message(&mut self, seq: NonZeroU32, items: Vec<MessageDataItem<'static>>) {
        // Every answer to a FETCH of metadata carries the size asked for;
        // flags without one are a change another client made, told now.
        let unsolicited = self.metadata_only
            && !items
                .iter()
                .any(|item| matches!(item, MessageDataItem::Rfc822Size(_)));
        if unsolicited {
            if let Ok(items) = Vec1::try_from(items) {
                self.effects
                    .push_back(Effect::Send(Data::Fetch { seq, items }));
            }
            return;
        }
        let uid = items.iter().find_map(|i| match i {
            MessageDataItem::Uid(u) => Some(u.get()),
            _ => None,
        });
        let (header, prefix) = detect::found_in(&items);
        let gateway = match (&header, &prefix) {
            (Some(h), Some(p)) => served_by_gateway(h, p),
            _ => false,
        } || detect::carries_status_header(&items);
        if !gateway && !self.deferred {
            if let (Some(header), Some(uid)) = (header, uid) {
                if prefix.is_some() {
                    self.plain_seen.push(uid);
                }
                self.learn(uid, header);
            }
            self.send_plain(seq, items);
            return;
        }
        // Without a UID it cannot be filed; a provider always sends it.
        let Some(uid) = uid else {
            return;
        };
        self.lookup.push(Held { seq, uid, items });
        self.advance();
    }

    /// The provider completed the FETCH: what is held is answered next.
    pub fn finish(&mut self) {
        if self.stage == Stage::Receiving {
            self.stage = Stage::RecordPlain;
        }
        self.advance();
    }

    /// Answer to [`Effect::AskPlain`].
    pub fn known_plain(&mut self, plain: &HashSet<u32>) {
        let Awaiting::Plain(batch) = self.take_awaiting() else {
            return;
        };
        let mut rest = Vec::new();
        for held in batch {
            if !plain.contains(&held.uid) {
                rest.push(held);
            } else if self.metadata_only {
                self.plain_content.push(PlainContent::of(&held));
            } else {
                self.send_plain(held.seq, held.items);
            }
        }
        if rest.is_empty() {
        } else if self.need == Needs::Bytes {
            self.ask(
                Effect::AskArchive(uids(&rest)),
                Awaiting::Archive {
                    batch: rest,
                    then_detect: true,
                },
            );
        } else if self.need == Needs::Header {
            self.ask(
                Effect::AskHeaders(uids(&rest)),
                Awaiting::Archive {
                    batch: rest,
                    then_detect: true,
                },
            );
        } else {
            self.ask(
                Effect::AskSizes(uids(&rest)),
                Awaiting::Sizes {
                    batch: rest,
                    then_detect: true,
                },
            );
        }
        self.advance();
    }

    /// Answer to [`Effect::AskSizes`]: served sizes by UID.
    pub fn archived_sizes(&mut self, sizes: &HashMap<u32, u32>) {
        let Awaiting::Sizes { batch, then_detect } = self.take_awaiting() else {
            return;
        };
        let mut rest = Vec::new();
        for held in batch {
            match sizes.get(&held.uid) {
                Some(&size) => {
                    let items = rewrite_size(held.items, &self.requested, size);
                    self.send(held.seq, items);
                }
                None => rest.push(held),
            }
        }
        if then_detect {
            self.undetected.extend(rest);
        } else if !rest.is_empty() {
            self.ask(
                Effect::AskArchive(uids(&rest)),
                Awaiting::Archive {
                    batch: rest,
                    then_detect: false,
                },
            );
        }
        self.advance();
    }

    /// Answer to [`Effect::AskArchive`]: served bytes by UID.
    pub fn archived_messages(&mut self, found: &HashMap<u32, Vec<u8>>) {
        self.answer_archived(|fetch, held| match found.get(&held.uid) {
            Some(served) => {
                fetch.send_served(held.seq, held.items, served);
                None
            }
            None => Some(held),
        });
    }

    /// Answer to [`Effect::AskHeaders`]: header section and served size by
    /// UID.
    pub fn archived_headers(&mut self, found: &HashMap<u32, (Vec<u8>, u32)>) {
        self.answer_archived(|fetch, held| match found.get(&held.uid) {
            Some((header, size)) => {
                let items = rewrite_from_header(held.items, &fetch.requested, header, *size);
                fetch.send(held.seq, items);
                None
            }
            None => Some(held),
        });
    }

    /// Answers the awaited archive batch with `answer`, which gives back
    /// what the archive did not hold: detected after the FETCH (deferred),
    /// viewed from what the provider sent, or downloaded.
    fn answer_archived(&mut self, mut answer: impl FnMut(&mut Self, Held) -> Option<Held>) {
        let Awaiting::Archive { batch, then_detect } = self.take_awaiting() else {
            return;
        };
        let mut to_view = Vec::new();
        let mut viewing = Vec::new();
        for held in batch {
            let Some(held) = answer(self, held) else {
                continue;
            };
            if then_detect {
                self.undetected.push(held);
            } else if let Some(whole) = whole_message(&held.items) {
                // The provider sent it whole: viewed now, no second trip.
                to_view.push((held.uid, whole));
                viewing.push(held.lightened(&self.requested));
            } else {
                self.missing.push(held.lightened(&self.requested));
            }
        }
        if !to_view.is_empty() {
            self.ask(Effect::View(to_view), Awaiting::View(viewing));
        }
        self.advance();
    }

    /// Answer to [`Effect::View`]: the served bytes of those viewed (one
    /// that could not be viewed is not answered).
    pub fn viewed(&mut self, served: &[(u32, Vec<u8>)]) {
        if matches!(self.awaiting, Awaiting::View(_)) {
            self.answer_from(served);
            self.awaiting = Awaiting::Nothing;
        }
        self.advance();
    }

    /// Answer to [`Effect::Detect`]: the detection items of those still in
    /// the mailbox (an expunged one is not answered).
    pub fn detected(&mut self, found: Vec<Detection>) {
        let Awaiting::Detect(batch) = self.take_awaiting() else {
            return;
        };
        let mut found: HashMap<u32, (Vec<u8>, Vec<u8>)> = found
            .into_iter()
            .map(|d| (d.uid, (d.header, d.prefix)))
            .collect();
        let mut plain = Vec::new();
        for held in batch {
            let Some((header, prefix)) = found.remove(&held.uid) else {
                continue;
            };
            if served_by_gateway(&header, &prefix) {
                self.missing.push(held.lightened(&self.requested));
            } else {
                self.learn(held.uid, header);
                plain.push(held.uid);
                if self.metadata_only {
                    self.plain_content.push(PlainContent::of(&held));
                } else {
                    self.send_plain(held.seq, held.items);
                }
            }
        }
        self.effects.push_back(Effect::RecordPlain(plain));
        self.effects.push_back(Effect::Drain);
        self.advance();
    }

    /// Answer to [`Effect::FetchPlain`]: the provider's answers (each with
    /// its UID) for those still in the mailbox.
    pub fn plain_fetched(&mut self, answers: Vec<Vec<MessageDataItem<'static>>>) {
        let Awaiting::Content(batch) = self.take_awaiting() else {
            return;
        };
        let seqs: HashMap<u32, NonZeroU32> = batch.iter().map(|p| (p.uid, p.seq)).collect();
        for items in answers {
            let uid = items.iter().find_map(|item| match item {
                MessageDataItem::Uid(uid) => Some(uid.get()),
                _ => None,
            });
            if let Some(&seq) = uid.and_then(|uid| seqs.get(&uid)) {
                self.send_plain(seq, items);
            }
        }
        self.effects.push_back(Effect::Drain);
        self.advance();
    }

    /// Part of the answer to [`Effect::Download`]: these are ready.
    pub fn served(&mut self, served: &[(u32, Vec<u8>)]) {
        if matches!(self.awaiting, Awaiting::Download(_)) {
            self.answer_from(served);
        }
    }

    /// The end of the answer to [`Effect::Download`]: what was not served
    /// is not answered (expunged meanwhile, or not viewable).
    pub fn downloaded(&mut self) {
        if matches!(self.awaiting, Awaiting::Download(_)) {
            self.awaiting = Awaiting::Nothing;
            self.effects.push_back(Effect::Drain);
        }
        self.advance();
    }

    /// Moves on as far as possible without an answer.
    fn advance(&mut self) {
        while matches!(self.awaiting, Awaiting::Nothing) {
            let receiving = self.stage == Stage::Receiving;
            if self.lookup.len() >= LOOKUP_BATCH || (!receiving && !self.lookup.is_empty()) {
                self.look_up();
                continue;
            }
            match self.stage {
                Stage::Receiving | Stage::Done => return,
                Stage::RecordPlain => {
                    if !self.deferred && self.need != Needs::Nothing {
                        let seen = std::mem::take(&mut self.plain_seen);
                        self.effects.push_back(Effect::RecordPlain(seen));
                    }
                    self.stage = Stage::Detect;
                }
                Stage::Detect if self.undetected.is_empty() => self.stage = Stage::PlainContent,
                Stage::Detect => {
                    let batch = take_batch(&mut self.undetected);
                    self.ask(Effect::Detect(uids(&batch)), Awaiting::Detect(batch));
                }
                Stage::PlainContent if self.plain_content.is_empty() => {
                    self.stage = Stage::Download
                }
                Stage::PlainContent => {
                    let batch = take_plain_batch(&mut self.plain_content);
                    let uids = batch.iter().map(|p| p.uid).collect();
                    let names = self.requested.clone();
                    self.ask(Effect::FetchPlain { uids, names }, Awaiting::Content(batch));
                }
                Stage::Download if self.missing.is_empty() => self.stage = Stage::Done,
                Stage::Download => {
                    let batch = take_batch(&mut self.missing);
                    let uids = batch.iter().map(|w| w.uid).collect();
                    self.ask(Effect::Download(uids), Awaiting::Download(batch));
                }
            }
        }
    }

    /// Asks about the messages waiting for the archive, all in one query.
    fn look_up(&mut self) {
        let batch = std::mem::take(&mut self.lookup);
        let ids = uids(&batch);
        if self.deferred {
            self.ask(Effect::AskPlain(ids), Awaiting::Plain(batch));
        } else if self.need == Needs::Size {
            self.ask(
                Effect::AskSizes(ids),
                Awaiting::Sizes {
                    batch,
                    then_detect: false,
                },
            );
        } else if self.need == Needs::Header {
            self.ask(
                Effect::AskHeaders(ids),
                Awaiting::Archive {
                    batch,
                    then_detect: false,
                },
            );
        } else {
            self.ask(
                Effect::AskArchive(ids),
                Awaiting::Archive {
                    batch,
                    then_detect: false,
                },
            );
        }
    }

    fn ask(&mut self, effect: Effect, awaiting: Awaiting) {
        self.effects.push_back(effect);
        self.awaiting = awaiting;
    }

    fn take_awaiting(&mut self) -> Awaiting {
        std::mem::replace(&mut self.awaiting, Awaiting::Nothing)
    }

    /// Answers the held messages of the awaited batch that `served` holds.
    fn answer_from(&mut self, served: &[(u32, Vec<u8>)]) {
        let batch = match &mut self.awaiting {
            Awaiting::View(batch) | Awaiting::Download(batch) => std::mem::take(batch),
            _ => return,
        };
        let mut rest = Vec::new();
        for waiting in batch {
            match served.iter().find(|(uid, _)| *uid == waiting.uid) {
                Some((_, bytes)) => {
                    let seq = waiting.seq;
                    let items = waiting.restored(&self.requested);
                    self.send_served(seq, items, bytes);
                }
                None => rest.push(waiting),
            }
        }
        match &mut self.awaiting {
            Awaiting::View(batch) | Awaiting::Download(batch) => *batch = rest,
            _ => {}
        }
    }

    fn learn(&mut self, uid: u32, header: Vec<u8>) {
        let has_autocrypt = letterlock_mime::header::fields(&header)
            .iter()
            .any(|f| f.is("Autocrypt"));
        if has_autocrypt {
            self.effects.push_back(Effect::Learn { uid, header });
        }
    }

    /// Answers with the provider's own items for a message passed through.
    fn send_plain(&mut self, seq: NonZeroU32, items: Vec<MessageDataItem<'static>>) {
        let kept = items
            .into_iter()
            .filter(|i| keep_plain(i, &self.requested))
            .collect();
        self.send(seq, kept);
    }

    /// Answers from the served bytes.
    fn send_served(
        &mut self,
        seq: NonZeroU32,
        items: Vec<MessageDataItem<'static>>,
        served: &[u8],
    ) {
        let items = if self.metadata_only {
            answer_from_served(items, &self.requested, served)
        } else {
            rewrite(items, &self.requested, served)
        };
        self.send(seq, items);
    }

    fn send(&mut self, seq: NonZeroU32, items: Vec<MessageDataItem<'static>>) {
        if let Ok(items) = Vec1::try_from(items) {
            self.effects
                .push_back(Effect::Send(Data::Fetch { seq, items }));
        }
    }
}

impl Held {
    /// What it needs while it waits for its served bytes, which replace
    /// every content item anyway: the items the client asked for, without
    /// data ([`Kept`]), and its body sections as indexes into the requested
    /// names ([`Waiting::restored`]). A mailbox-wide header sync holds every
    /// encrypted message not yet archived until the provider's FETCH ends;
    /// each one's own copy of the section's field names (and of the
    /// detection items) made that the gateway's largest memory at 100,000
    /// messages.
    fn lightened(self, requested: &[MessageDataItemName<'static>]) -> Waiting {
        let mut sections = Vec::new();
        let mut kept: Vec<Kept> = Vec::new();
        for item in self.items {
            match item {
                MessageDataItem::BodyExt {
                    section, origin, ..
                } => {
                    let index = requested.iter().position(|n| {
                        matches!(n, MessageDataItemName::BodyExt { section: s, partial: p, .. }
                            if same_section(s, &section) && p.map(|(o, _)| o) == origin)
                    });
                    // Not asked for: a detection item, never answered.
                    if let Some(index) = index {
                        sections.push((index, origin));
                    }
                }
                MessageDataItem::Rfc822(_) => {
                    kept.push(MessageDataItem::Rfc822(NString::NIL).into())
                }
                MessageDataItem::Rfc822Header(_) => {
                    kept.push(MessageDataItem::Rfc822Header(NString::NIL).into())
                }
                MessageDataItem::Rfc822Text(_) => {
                    kept.push(MessageDataItem::Rfc822Text(NString::NIL).into())
                }
                other => kept.push(other.into()),
            }
        }
        Waiting {
            seq: self.seq,
            uid: self.uid,
            kept: kept.into_boxed_slice(),
            sections: sections.into_boxed_slice(),
        }
    }
}

impl Waiting {
    /// Its items again, the body sections as the client named them.
    fn restored(self, requested: &[MessageDataItemName<'static>]) -> Vec<MessageDataItem<'static>> {
        let mut items: Vec<MessageDataItem<'static>> =
            self.kept.into_vec().into_iter().map(Into::into).collect();
        for (index, origin) in self.sections.into_vec() {
            if let Some(MessageDataItemName::BodyExt { section, .. }) = requested.get(index) {
                items.push(MessageDataItem::BodyExt {
                    section: section.clone(),
                    origin,
                    data: NString::NIL,
                });
            }
        }
        items
    }
}

fn uids(batch: &[Held]) -> Vec<u32> {
    batch.iter().map(|m| m.uid).collect()
}

/// The next plain messages to fetch: up to [`MISSING_BATCH`] of them and
/// [`PLAIN_BATCH_BYTES`] by the provider's sizes, at least one.
fn take_plain_batch(from: &mut Vec<PlainContent>) -> Vec<PlainContent> {
    let mut bytes = 0u64;
    let mut count = 0;
    for plain in from.iter() {
        bytes += u64::from(plain.size);
        if count > 0 && (count == MISSING_BATCH || bytes > PLAIN_BATCH_BYTES) {
            break;
        }
        count += 1;
    }
    let rest = from.split_off(count);
    std::mem::replace(from, rest)
}

fn take_batch<T>(from: &mut Vec<T>) -> Vec<T> {
    let rest = from.split_off(from.len().min(MISSING_BATCH));
    std::mem::replace(from, rest)
}

/// The whole message, if the provider's answer carries it (`BODY[]`,
/// `RFC822`).
fn whole_message(items: &[MessageDataItem<'_>]) -> Option<Vec<u8>> {
    items.iter().find_map(|item| match item {
        MessageDataItem::BodyExt {
            section: None,
            origin: None,
            data,
        }
        | MessageDataItem::Rfc822(data) => {
            data.0.as_ref().map(|d| d.clone().into_inner().into_owned())
        }
        _ => None,
    })
}

/// For a message passed through: the provider's items, minus the proxy's
/// detection items unless the client asked for the same ones.
fn keep_plain(item: &MessageDataItem<'_>, requested: &[MessageDataItemName<'_>]) -> bool {
    match item {
        MessageDataItem::BodyExt {
            section, origin, ..
        } => requested.iter().any(|n| {
            matches!(n, MessageDataItemName::BodyExt { section: s, partial: p, .. }
                if same_section(s, section) && p.map(|(o, _)| o) == *origin)
        }),
        MessageDataItem::Uid(_) => requested.contains(&MessageDataItemName::Uid),
        _ => true,
    }
}

#[cfg(test)]
mod tests;
