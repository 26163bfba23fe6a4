//! The rules of a FETCH, driven with plain values: no socket, no provider,
//! no archive — each effect's answer is written down in the test.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;

use imap_next::imap_types::core::{AString, IString, Literal, NString, Vec1};
use imap_next::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section,
};
use imap_next::imap_types::flag::FlagFetch;
use imap_next::imap_types::response::Data;

use super::{Effect, FetchCommand, Known, LOOKUP_BATCH, MISSING_BATCH};
use crate::imap::detect::{self, Detection};

const PLAIN: &[u8] = b"Content-Type: text/plain\r\nFrom: bob@example.org\r\n\r\n";
const ENCRYPTED: &[u8] =
    b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n";
const WITH_AUTOCRYPT: &[u8] =
    b"Content-Type: text/plain\r\nFrom: bob@example.org\r\nAutocrypt: addr=bob@example.org; keydata=AAAA\r\n\r\n";

fn data(bytes: &[u8]) -> NString<'static> {
    NString(Some(IString::Literal(
        Literal::try_from(bytes.to_vec()).expect("test bytes"),
    )))
}

fn seq(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("sequence numbers start at 1")
}

fn start(
    requested: Vec<MessageDataItemName<'static>>,
    told_apart: bool,
) -> (FetchCommand, Vec<MessageDataItemName<'static>>) {
    let mut names = MacroOrMessageDataItemNames::MessageDataItemNames(requested);
    let known = if told_apart {
        Known::ToldApart
    } else {
        Known::Nothing
    };
    let fetch = FetchCommand::start(&mut names, true, || known);
    let MacroOrMessageDataItemNames::MessageDataItemNames(sent) = names else {
        panic!("the provider is always sent item names");
    };
    (fetch, sent)
}

fn whole() -> MessageDataItemName<'static> {
    MessageDataItemName::BodyExt {
        section: None,
        partial: None,
        peek: true,
    }
}

/// The provider's answer for one message: UID, FLAGS, the detection items
/// for `header` and `prefix`, and `more`.
fn answer(
    uid: u32,
    header: &[u8],
    prefix: &[u8],
    more: Vec<MessageDataItem<'static>>,
) -> Vec<MessageDataItem<'static>> {
    let mut items = vec![
        MessageDataItem::Uid(seq(uid)),
        MessageDataItem::Flags(vec![FlagFetch::Recent]),
    ];
    for name in detect::items() {
        if let MessageDataItemName::BodyExt {
            section, partial, ..
        } = name
        {
            let bytes = match section {
                Some(Section::HeaderFields(..)) => header,
                _ => prefix,
            };
            items.push(MessageDataItem::BodyExt {
                section,
                origin: partial.map(|(o, _)| o),
                data: data(bytes),
            });
        }
    }
    items.extend(more);
    items
}

/// Without the detection items (a deferred FETCH).
fn bare(uid: u32, size: u32) -> Vec<MessageDataItem<'static>> {
    vec![
        MessageDataItem::Uid(seq(uid)),
        MessageDataItem::Rfc822Size(size),
    ]
}

/// What detection finds for UID 3, plain mail with `header`, and UID 4,
/// encrypted.
fn plain_3_encrypted_4(header: &[u8]) -> Vec<Detection> {
    vec![
        Detection {
            uid: 3,
            header: header.to_vec(),
            prefix: b"hi".to_vec(),
        },
        Detection {
            uid: 4,
            header: ENCRYPTED.to_vec(),
            prefix: Vec::new(),
        },
    ]
}

fn effects(fetch: &mut FetchCommand) -> Vec<Effect> {
    std::iter::from_fn(|| fetch.poll()).collect()
}

fn sent_items(effect: &Effect) -> &[MessageDataItem<'static>] {
    match effect {
        Effect::Send(Data::Fetch { items, .. }) => items.as_ref(),
        other => panic!("expected an answer, got {other:?}"),
    }
}

fn uid_of(items: &[MessageDataItem<'_>]) -> Option<u32> {
    items.iter().find_map(|i| match i {
        MessageDataItem::Uid(u) => Some(u.get()),
        _ => None,
    })
}

fn body_of(items: &[MessageDataItem<'_>]) -> Option<Vec<u8>> {
    items.iter().find_map(|i| match i {
        MessageDataItem::BodyExt {
            section: None,
            data,
            ..
        } => data.0.as_ref().map(|d| d.as_ref().to_vec()),
        _ => None,
    })
}

#[test]
fn plain_mail_is_answered_at_once_without_the_detection_items() {
    let (mut fetch, sent) = start(vec![MessageDataItemName::Flags, whole()], false);
    assert!(sent.len() > 3, "detection items are added: {sent:?}");
    fetch.message(
        seq(1),
        answer(
            7,
            PLAIN,
            b"hello",
            vec![MessageDataItem::BodyExt {
                section: None,
                origin: None,
                data: data(b"Subject: hi\r\n\r\nhello"),
            }],
        ),
    );
    let out = effects(&mut fetch);
    assert_eq!(out.len(), 1, "{out:?}");
    let items = sent_items(&out[0]);
    // UID FETCH: the UID stays; the detection items go; the body is the provider's.
    assert_eq!(uid_of(items), Some(7));
    assert_eq!(items.len(), 3, "UID, FLAGS and BODY[] only: {items:?}");
    assert_eq!(
        body_of(items).as_deref(),
        Some(&b"Subject: hi\r\n\r\nhello"[..])
    );
    fetch.finish();
    assert_eq!(effects(&mut fetch), vec![Effect::RecordPlain(vec![7])]);
    assert!(fetch.is_done());
}

#[test]
fn an_autocrypt_header_is_learned_from_before_the_message_is_answered() {
    let (mut fetch, _) = start(vec![MessageDataItemName::Flags, whole()], false);
    fetch.message(seq(1), answer(3, WITH_AUTOCRYPT, b"hi", vec![]));
    let out = effects(&mut fetch);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        out[0],
        Effect::Learn {
            uid: 3,
            header: WITH_AUTOCRYPT.to_vec()
        }
    );
    assert!(matches!(out[1], Effect::Send(_)));
}

#[test]
fn a_flags_refresh_asks_for_nothing_more_and_records_nothing() {
    let (mut fetch, sent) = start(vec![MessageDataItemName::Flags], false);
    assert_eq!(
        sent,
        vec![MessageDataItemName::Flags, MessageDataItemName::Uid]
    );
    fetch.message(
        seq(1),
        vec![MessageDataItem::Uid(seq(1)), MessageDataItem::Flags(vec![])],
    );
    assert!(matches!(effects(&mut fetch)[..], [Effect::Send(_)]));
    fetch.finish();
    assert_eq!(effects(&mut fetch), vec![]);
    assert!(fetch.is_done());
}

#[test]
fn served_messages_wait_for_one_archive_query_then_are_viewed_from_what_the_provider_sent() {
    let (mut fetch, _) = start(vec![whole()], false);
    for uid in 1..=3 {
        let body = format!("ciphertext {uid}");
        fetch.message(
            seq(uid),
            answer(
                uid,
                ENCRYPTED,
                b"This is OpenPGP",
                vec![MessageDataItem::BodyExt {
                    section: None,
                    origin: None,
                    data: data(body.as_bytes()),
                }],
            ),
        );
    }
    assert_eq!(
        effects(&mut fetch),
        vec![],
        "nothing is answered before the archive is asked"
    );
    fetch.finish();
    assert_eq!(effects(&mut fetch), vec![Effect::AskArchive(vec![1, 2, 3])]);
    assert!(!fetch.is_done());

    let archived = HashMap::from([(1, b"served 1".to_vec())]);
    fetch.archived_messages(&archived);
    let out = effects(&mut fetch);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        body_of(sent_items(&out[0])).as_deref(),
        Some(&b"served 1"[..])
    );
    assert_eq!(
        out[1],
        Effect::View(vec![
            (2, b"ciphertext 2".to_vec()),
            (3, b"ciphertext 3".to_vec())
        ]),
        "what the provider sent whole is viewed, not downloaded again"
    );
    // 3 could not be viewed: it is not answered at all (never its ciphertext).
    fetch.viewed(&[(2, b"served 2".to_vec())]);
    let out = effects(&mut fetch);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        body_of(sent_items(&out[0])).as_deref(),
        Some(&b"served 2"[..])
    );
    assert_eq!(out[1], Effect::RecordPlain(vec![]));
    assert!(fetch.is_done());
}

#[test]
fn a_mailbox_wide_fetch_is_looked_up_in_batches_while_it_arrives() {
    let (mut fetch, _) = start(vec![MessageDataItemName::BodyStructure], false);
    for uid in 1..=(LOOKUP_BATCH as u32 + 1) {
        fetch.message(seq(uid), answer(uid, ENCRYPTED, b"", vec![]));
    }
    let out = effects(&mut fetch);
    assert_eq!(
        out,
        vec![Effect::AskArchive((1..=LOOKUP_BATCH as u32).collect())]
    );
    // The 101st waits behind the unanswered query.
    assert_eq!(fetch.held(), LOOKUP_BATCH + 1);
    fetch.archived_messages(&HashMap::new());
    assert_eq!(
        effects(&mut fetch),
        vec![],
        "not archived, not sent whole: downloaded after the FETCH"
    );
    fetch.finish();
    assert_eq!(
        effects(&mut fetch),
        vec![Effect::AskArchive(vec![LOOKUP_BATCH as u32 + 1])]
    );
    fetch.archived_messages(&HashMap::new());
    let out = effects(&mut fetch);
    assert_eq!(out[0], Effect::RecordPlain(vec![]));
    assert_eq!(
        out[1],
        Effect::Download((1..=MISSING_BATCH as u32).collect())
    );
    assert_eq!(out.len(), 2);
}

#[test]
fn downloads_are_answered_as_they_become_ready_and_in_bounded_batches() {
    let count = MISSING_BATCH as u32 + 20;
    let (mut fetch, _) = start(vec![MessageDataItemName::BodyStructure], false);
    for uid in 1..=count {
        fetch.message(seq(uid), answer(uid, ENCRYPTED, b"", vec![]));
        if fetch.held() == LOOKUP_BATCH {
            effects(&mut fetch);
            fetch.archived_messages(&HashMap::new());
        }
    }
    fetch.finish();
    effects(&mut fetch);
    fetch.archived_messages(&HashMap::new());
    let out = effects(&mut fetch);
    assert_eq!(
        out.last(),
        Some(&Effect::Download((1..=MISSING_BATCH as u32).collect()))
    );
    let message = b"Content-Type: text/plain\r\n\r\nserved".to_vec();
    // Mine first, another session's later: each answered when ready.
    fetch.served(&[(1, message.clone())]);
    assert_eq!(effects(&mut fetch).len(), 1);
    fetch.served(&[(2, message.clone())]);
    assert_eq!(effects(&mut fetch).len(), 1);
    fetch.downloaded();
    let out = effects(&mut fetch);
    assert_eq!(
        out,
        vec![
            Effect::Drain,
            Effect::Download(((MISSING_BATCH as u32 + 1)..=count).collect())
        ]
    );
    fetch.downloaded();
    assert_eq!(effects(&mut fetch), vec![Effect::Drain]);
    assert!(fetch.is_done());
}

#[test]
fn sizes_only_are_answered_from_the_archived_sizes() {
    let (mut fetch, sent) = start(vec![MessageDataItemName::Rfc822Size], false);
    assert!(
        sent.len() > 2,
        "not told apart yet: detection items are added"
    );
    fetch.message(
        seq(1),
        answer(5, ENCRYPTED, b"", vec![MessageDataItem::Rfc822Size(4000)]),
    );
    fetch.message(
        seq(2),
        answer(6, ENCRYPTED, b"", vec![MessageDataItem::Rfc822Size(4100)]),
    );
    fetch.message(
        seq(3),
        answer(7, PLAIN, b"hi", vec![MessageDataItem::Rfc822Size(10)]),
    );
    let out = effects(&mut fetch);
    assert_eq!(out.len(), 1, "the plain one at once: {out:?}");
    assert!(sent_items(&out[0]).contains(&MessageDataItem::Rfc822Size(10)));
    fetch.finish();
    assert_eq!(effects(&mut fetch), vec![Effect::AskSizes(vec![5, 6])]);
    fetch.archived_sizes(&HashMap::from([(5, 1234)]));
    let out = effects(&mut fetch);
    assert!(
        sent_items(&out[0]).contains(&MessageDataItem::Rfc822Size(1234)),
        "the served size, not the provider's"
    );
    assert_eq!(out[1], Effect::AskArchive(vec![6]));
    fetch.archived_messages(&HashMap::new());
    assert_eq!(
        effects(&mut fetch),
        vec![Effect::RecordPlain(vec![7]), Effect::Download(vec![6])]
    );
}

#[test]
fn a_sizes_fetch_in_a_mailbox_told_apart_detects_only_what_is_new_after_it() {
    let (mut fetch, sent) = start(vec![MessageDataItemName::Rfc822Size], true);
    assert_eq!(
        sent,
        vec![MessageDataItemName::Rfc822Size, MessageDataItemName::Uid]
    );
    for uid in 1..=4 {
        fetch.message(seq(uid), bare(uid, 100 + uid));
    }
    fetch.finish();
    assert_eq!(
        effects(&mut fetch),
        vec![Effect::AskPlain(vec![1, 2, 3, 4])]
    );
    fetch.known_plain(&HashSet::from([1]));
    let out = effects(&mut fetch);
    assert!(sent_items(&out[0]).contains(&MessageDataItem::Rfc822Size(101)));
    assert_eq!(out[1], Effect::AskSizes(vec![2, 3, 4]));
    fetch.archived_sizes(&HashMap::from([(2, 999)]));
    let out = effects(&mut fetch);
    assert!(sent_items(&out[0]).contains(&MessageDataItem::Rfc822Size(999)));
    assert_eq!(
        out[1],
        Effect::Detect(vec![3, 4]),
        "no RecordPlain: nothing was detected yet"
    );
    // 3 is plain; 4 is encrypted and is downloaded like any other not archived.
    fetch.detected(plain_3_encrypted_4(WITH_AUTOCRYPT));
    let out = effects(&mut fetch);
    assert!(matches!(out[0], Effect::Learn { uid: 3, .. }));
    assert!(sent_items(&out[1]).contains(&MessageDataItem::Rfc822Size(103)));
    assert_eq!(
        out[2..],
        [
            Effect::RecordPlain(vec![3]),
            Effect::Drain,
            Effect::Download(vec![4])
        ]
    );
}

/// A header sync of a mailbox told apart before asks the provider for
/// nothing more (it answers from its cache, without opening messages):
/// known plain mail gets the provider's fields, archived mail the archived
/// ones, and only what is new is detected, after the FETCH, and downloaded
/// if the gateway serves it.
#[test]
fn a_header_sync_in_a_mailbox_told_apart_detects_only_what_is_new_after_it() {
    let subject = || Vec1::from(AString::try_from("Subject").expect("name"));
    let fields = MessageDataItemName::BodyExt {
        section: Some(Section::HeaderFields(None, subject())),
        partial: None,
        peek: true,
    };
    let (mut fetch, sent) = start(vec![MessageDataItemName::Rfc822Size, fields.clone()], true);
    assert_eq!(
        sent,
        vec![
            MessageDataItemName::Rfc822Size,
            fields,
            MessageDataItemName::Uid
        ],
        "no detection items"
    );
    let provider_subject = |text: &[u8]| MessageDataItem::BodyExt {
        section: Some(Section::HeaderFields(None, subject())),
        origin: None,
        data: data(text),
    };
    for uid in 1..=4 {
        let mut items = bare(uid, 100 + uid);
        items.push(provider_subject(b"Subject: as stored\r\n\r\n"));
        fetch.message(seq(uid), items);
    }
    fetch.finish();
    assert_eq!(
        effects(&mut fetch),
        vec![Effect::AskPlain(vec![1, 2, 3, 4])]
    );
    fetch.known_plain(&HashSet::from([1]));
    let out = effects(&mut fetch);
    assert!(sent_items(&out[0]).contains(&provider_subject(b"Subject: as stored\r\n\r\n")));
    assert_eq!(out[1], Effect::AskHeaders(vec![2, 3, 4]));
    let header = b"From: bob@example.org\r\nSubject: decrypted\r\n\r\n".to_vec();
    fetch.archived_headers(&HashMap::from([(2, (header, 999))]));
    let out = effects(&mut fetch);
    let items = sent_items(&out[0]);
    assert!(items.contains(&MessageDataItem::Rfc822Size(999)));
    assert!(items.contains(&provider_subject(b"Subject: decrypted\r\n\r\n")));
    assert_eq!(
        out[1],
        Effect::Detect(vec![3, 4]),
        "no RecordPlain: nothing was detected yet"
    );
    fetch.detected(plain_3_encrypted_4(PLAIN));
    let out = effects(&mut fetch);
    assert!(sent_items(&out[0]).contains(&provider_subject(b"Subject: as stored\r\n\r\n")));
    assert_eq!(
        out[1..],
        [
            Effect::RecordPlain(vec![3]),
            Effect::Drain,
            Effect::Download(vec![4])
        ]
    );
    let served = b"From: bob@example.org\r\nSubject: new and encrypted\r\n\r\nbody\r\n";
    fetch.served(&[(4, served.to_vec())]);
    fetch.downloaded();
    let out = effects(&mut fetch);
    let items = sent_items(&out[0]);
    assert!(items.contains(&provider_subject(b"Subject: new and encrypted\r\n\r\n")));
    assert!(items.contains(&MessageDataItem::Rfc822Size(served.len() as u32)));
    assert!(fetch.is_done());
}

#[test]
fn expunged_meanwhile_is_not_answered() {
    let (mut fetch, _) = start(vec![MessageDataItemName::Rfc822Size], true);
    fetch.message(seq(1), bare(9, 10));
    fetch.finish();
    effects(&mut fetch);
    fetch.known_plain(&HashSet::new());
    effects(&mut fetch);
    fetch.archived_sizes(&HashMap::new());
    assert_eq!(effects(&mut fetch), vec![Effect::Detect(vec![9])]);
    fetch.detected(vec![]);
    assert_eq!(
        effects(&mut fetch),
        vec![Effect::RecordPlain(vec![]), Effect::Drain]
    );
    assert!(fetch.is_done());
}

#[test]
fn a_status_header_in_data_the_client_asked_for_makes_the_gateway_serve_it() {
    let header = MessageDataItemName::BodyExt {
        section: Some(Section::Header(None)),
        partial: None,
        peek: true,
    };
    let (mut fetch, _) = start(vec![header], false);
    fetch.message(
        seq(1),
        answer(
            2,
            PLAIN,
            b"hi",
            vec![MessageDataItem::BodyExt {
                section: Some(Section::Header(None)),
                origin: None,
                data: data(b"X-Any: a\rLetterlock-Security: encrypted; signature=valid\r\n\r\n"),
            }],
        ),
    );
    assert_eq!(
        effects(&mut fetch),
        vec![],
        "held for the gateway to serve, not passed on"
    );
    fetch.finish();
    assert_eq!(effects(&mut fetch), vec![Effect::AskHeaders(vec![2])]);
}

/// Thunderbird's header sync (sizes and some header fields) of archived
/// mail is answered from the archived header sections and sizes, without
/// the messages; what the archive lacks is downloaded as always.
#[test]
fn a_header_sync_is_answered_from_archived_header_sections() {
    let fields = MessageDataItemName::BodyExt {
        section: Some(Section::HeaderFields(
            None,
            Vec1::from(AString::try_from("Subject").expect("name")),
        )),
        partial: None,
        peek: true,
    };
    let (mut fetch, _) = start(vec![MessageDataItemName::Rfc822Size, fields], false);
    for (n, uid) in [(1, 5), (2, 6)] {
        let provider_subject = MessageDataItem::BodyExt {
            section: Some(Section::HeaderFields(
                None,
                Vec1::from(AString::try_from("Subject").expect("name")),
            )),
            origin: None,
            data: data(b"Subject: ...\r\n\r\n"),
        };
        fetch.message(
            seq(n),
            answer(
                uid,
                ENCRYPTED,
                b"",
                vec![MessageDataItem::Rfc822Size(4000), provider_subject],
            ),
        );
    }
    fetch.finish();
    assert_eq!(effects(&mut fetch), vec![Effect::AskHeaders(vec![5, 6])]);
    let header = b"From: bob@example.org\r\nSubject: the real one\r\n\r\n".to_vec();
    fetch.archived_headers(&HashMap::from([(5, (header, 1234))]));
    let out = effects(&mut fetch);
    let items = sent_items(&out[0]);
    assert!(
        items.contains(&MessageDataItem::Rfc822Size(1234)),
        "{items:?}"
    );
    assert!(
        items
            .iter()
            .any(|i| matches!(i, MessageDataItem::BodyExt { data, .. }
            if data.0.as_ref().is_some_and(|d| d.as_ref() == b"Subject: the real one\r\n\r\n"))),
        "{items:?}"
    );
    assert_eq!(
        out[1..],
        [Effect::RecordPlain(vec![]), Effect::Download(vec![6])]
    );
    // Held without its bytes meanwhile, it is answered as asked: the
    // provider's UID and FLAGS, the served size and fields, nothing of the
    // detection items.
    let served = b"From: bob@example.org\r\nSubject: downloaded\r\n\r\nbody\r\n";
    fetch.served(&[(6, served.to_vec())]);
    fetch.downloaded();
    let out = effects(&mut fetch);
    let Effect::Send(Data::Fetch { seq: n, items }) = &out[0] else {
        panic!("expected an answer, got {out:?}");
    };
    assert_eq!(n.get(), 2);
    let mut items = items.as_ref().to_vec();
    items.sort_by_key(|i| format!("{i:?}"));
    let subject = Vec1::from(AString::try_from("Subject").expect("name"));
    assert_eq!(
        items,
        [
            MessageDataItem::BodyExt {
                section: Some(Section::HeaderFields(None, subject)),
                origin: None,
                data: data(b"Subject: downloaded\r\n\r\n"),
            },
            MessageDataItem::Flags(vec![FlagFetch::Recent]),
            MessageDataItem::Rfc822Size(served.len() as u32),
            MessageDataItem::Uid(seq(6)),
        ]
    );
    assert_eq!(out[1..], [Effect::Drain]);
    assert!(fetch.is_done());
}

#[test]
fn answers_to_questions_not_asked_change_nothing() {
    let (mut fetch, _) = start(vec![whole()], false);
    fetch.archived_messages(&HashMap::from([(1, b"x".to_vec())]));
    fetch.viewed(&[(1, b"x".to_vec())]);
    fetch.served(&[(1, b"x".to_vec())]);
    fetch.detected(vec![Detection {
        uid: 1,
        header: PLAIN.to_vec(),
        prefix: Vec::new(),
    }]);
    assert_eq!(effects(&mut fetch), vec![]);
    fetch.finish();
    assert_eq!(effects(&mut fetch), vec![Effect::RecordPlain(vec![])]);
    assert!(fetch.is_done());
}

/// A waiting message keeps its items small and gives them back as they
/// were, in their order, other items (RFC822.HEADER, without its data, as
/// it waits) included.
#[test]
fn a_waiting_message_is_small_and_restored_whole() {
    use super::{Held, Kept};
    assert!(
        std::mem::size_of::<Kept>() <= 32,
        "{} bytes",
        std::mem::size_of::<Kept>()
    );
    let items = vec![
        MessageDataItem::Uid(NonZeroU32::new(9).expect("nonzero")),
        MessageDataItem::Flags(vec![FlagFetch::Recent]),
        MessageDataItem::Rfc822Header(NString::NIL),
        MessageDataItem::Rfc822Size(1234),
    ];
    let held = Held {
        seq: seq(3),
        uid: 9,
        items: items.clone(),
    };
    let waiting = held.lightened(&[]);
    assert_eq!(waiting.restored(&[]), items);
}

/// The provider's answer to a FETCH of metadata: UID, size and flags.
fn metadata(uid: u32, size: u32) -> Vec<MessageDataItem<'static>> {
    let mut items = bare(uid, size);
    items.push(MessageDataItem::Flags(vec![FlagFetch::Recent]));
    items
}

#[test]
fn a_whole_mailbox_read_in_a_mailbox_told_apart_downloads_no_archived_message() {
    let (mut fetch, sent) = start(vec![MessageDataItemName::Flags, whole()], true);
    assert_eq!(
        sent,
        vec![
            MessageDataItemName::Flags,
            MessageDataItemName::Uid,
            MessageDataItemName::Rfc822Size
        ],
        "only metadata, and sizes to portion out the plain messages"
    );
    for uid in 1..=4 {
        fetch.message(seq(uid), metadata(uid, 100 + uid));
    }
    fetch.finish();
    assert_eq!(
        effects(&mut fetch),
        vec![Effect::AskPlain(vec![1, 2, 3, 4])]
    );
    fetch.known_plain(&HashSet::from([1]));
    assert_eq!(
        effects(&mut fetch),
        vec![Effect::AskArchive(vec![2, 3, 4])],
        "the known plain message waits for its content"
    );
    let archived = b"From: bob@example.org\r\nSubject: decrypted\r\n\r\nsecret\r\n".to_vec();
    fetch.archived_messages(&HashMap::from([(2, archived.clone())]));
    let out = effects(&mut fetch);
    let items = sent_items(&out[0]);
    assert_eq!(uid_of(items), Some(2));
    assert_eq!(body_of(items), Some(archived), "answered from the archive");
    assert!(items.contains(&MessageDataItem::Flags(vec![FlagFetch::Recent])));
    assert!(
        !items
            .iter()
            .any(|i| matches!(i, MessageDataItem::Rfc822Size(_))),
        "the size the gateway asked for itself is not passed on"
    );
    assert_eq!(out[1], Effect::Detect(vec![3, 4]));
    fetch.detected(plain_3_encrypted_4(PLAIN));
    let out = effects(&mut fetch);
    assert_eq!(
        out,
        vec![
            Effect::RecordPlain(vec![3]),
            Effect::Drain,
            Effect::FetchPlain {
                uids: vec![1, 3],
                names: vec![
                    MessageDataItemName::Flags,
                    whole(),
                    MessageDataItemName::Uid
                ],
            }
        ],
        "the plain messages' content is the provider's, asked for after"
    );
    let provider_body = |uid: u32| {
        vec![
            MessageDataItem::Uid(seq(uid)),
            MessageDataItem::Flags(vec![]),
            MessageDataItem::BodyExt {
                section: None,
                origin: None,
                data: data(PLAIN),
            },
        ]
    };
    // UID 3 was expunged meanwhile: the provider does not answer it.
    fetch.plain_fetched(vec![provider_body(1)]);
    let out = effects(&mut fetch);
    let items = sent_items(&out[0]);
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(uid_of(items), Some(1));
    assert_eq!(body_of(items), Some(PLAIN.to_vec()));
    assert_eq!(out[1..], [Effect::Drain, Effect::Download(vec![4])]);
    let served = b"From: bob@example.org\r\nSubject: new\r\n\r\nbody\r\n";
    fetch.served(&[(4, served.to_vec())]);
    fetch.downloaded();
    let out = effects(&mut fetch);
    let items = sent_items(&out[0]);
    assert_eq!(body_of(items), Some(served.to_vec()));
    assert!(items.contains(&MessageDataItem::Flags(vec![FlagFetch::Recent])));
    assert!(fetch.is_done());
}

#[test]
fn a_read_that_sets_seen_or_asks_for_binary_is_not_answered_from_metadata() {
    let not_peek = MessageDataItemName::BodyExt {
        section: None,
        partial: None,
        peek: false,
    };
    for requested in [
        vec![not_peek],
        vec![MessageDataItemName::Rfc822],
        vec![MessageDataItemName::Rfc822Text],
        vec![MessageDataItemName::Binary {
            section: vec![],
            partial: None,
            peek: true,
        }],
    ] {
        let (_, sent) = start(requested.clone(), true);
        for name in detect::items() {
            assert!(sent.contains(&name), "{requested:?}: {sent:?}");
        }
    }
}

#[test]
fn plain_messages_are_fetched_in_batches_bounded_by_size() {
    let (mut fetch, _) = start(vec![MessageDataItemName::BodyStructure], true);
    let big = u32::try_from(super::PLAIN_BATCH_BYTES / 2).expect("fits") + 1;
    for uid in 1..=3 {
        fetch.message(seq(uid), metadata(uid, big));
    }
    fetch.finish();
    assert_eq!(effects(&mut fetch), vec![Effect::AskPlain(vec![1, 2, 3])]);
    fetch.known_plain(&HashSet::from([1, 2, 3]));
    let batches = |effects: Vec<Effect>| -> Vec<Vec<u32>> {
        effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::FetchPlain { uids, .. } => Some(uids),
                _ => None,
            })
            .collect()
    };
    assert_eq!(batches(effects(&mut fetch)), vec![vec![1]]);
    fetch.plain_fetched(vec![]);
    assert_eq!(batches(effects(&mut fetch)), vec![vec![2]]);
    fetch.plain_fetched(vec![]);
    assert_eq!(batches(effects(&mut fetch)), vec![vec![3]]);
    fetch.plain_fetched(vec![]);
    assert_eq!(effects(&mut fetch), vec![Effect::Drain]);
    assert!(fetch.is_done());
}

#[test]
fn a_read_of_known_plain_mail_is_one_command_without_detection() {
    let mut names = MacroOrMessageDataItemNames::MessageDataItemNames(vec![
        MessageDataItemName::Flags,
        whole(),
    ]);
    let mut fetch = FetchCommand::start(&mut names, true, || Known::AllPlain);
    assert_eq!(
        names,
        MacroOrMessageDataItemNames::MessageDataItemNames(vec![
            MessageDataItemName::Flags,
            whole(),
            MessageDataItemName::Uid
        ]),
        "the client's items, nothing added"
    );
    let mut items = metadata(7, 5);
    items.push(MessageDataItem::BodyExt {
        section: None,
        origin: None,
        data: data(PLAIN),
    });
    fetch.message(seq(1), items);
    fetch.finish();
    assert_eq!(effects(&mut fetch), vec![Effect::AskPlain(vec![7])]);
    fetch.known_plain(&HashSet::from([7]));
    let out = effects(&mut fetch);
    assert_eq!(body_of(sent_items(&out[0])), Some(PLAIN.to_vec()));
    assert!(fetch.is_done(), "{out:?}");
}

#[test]
fn flags_another_client_changed_pass_a_fetch_of_metadata_as_they_came() {
    let (mut fetch, _) = start(vec![whole()], true);
    let changed = vec![
        MessageDataItem::Uid(seq(9)),
        MessageDataItem::Flags(vec![FlagFetch::Recent]),
    ];
    fetch.message(seq(9), changed.clone());
    let out = effects(&mut fetch);
    assert_eq!(sent_items(&out[0]), &changed[..]);
    assert_eq!(out.len(), 1, "nothing fetched for it: {out:?}");
    fetch.finish();
    assert!(effects(&mut fetch).is_empty());
    assert!(fetch.is_done());
}
