//! The IMAP side's answers computed from served bytes: every kind of
//! section and partial, ENVELOPE and BODYSTRUCTURE, and the FETCH item
//! rewriting, over arbitrary messages.
#![no_main]
use std::num::NonZeroU32;

use imap_next::imap_types::core::{AString, Vec1};
use imap_next::imap_types::fetch::{MessageDataItem, MessageDataItemName, Part, Section};
use imap_proxy::imap::fetch::rewrite;
use imap_proxy::imap::section::{partial, section, Spec};
use imap_proxy::imap::structure::{body_structure, envelope};
use libfuzzer_sys::fuzz_target;

fn n(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN)
}

fuzz_target!(|data: &[u8]| letterlock_fuzz::run(|| {
    let paths: [&[NonZeroU32]; 4] = [&[], &[n(1)], &[n(2), n(1)], &[n(1), n(1), n(1)]];
    let fields: [&[u8]; 2] = [b"Subject", b"Content-Type"];
    for path in paths {
        for spec in [
            Spec::Whole,
            Spec::Part(path),
            Spec::Header(path),
            Spec::HeaderFields(path, &fields),
            Spec::HeaderFieldsNot(path, &fields),
            Spec::Text(path),
            Spec::Mime(path),
        ] {
            let bytes = section(data, &spec);
            let _ = partial(&bytes, 3, 40);
            let _ = partial(&bytes, u32::MAX, u32::MAX);
        }
    }
    let _ = envelope(data);
    let _ = body_structure(data, true);
    let _ = body_structure(data, false);

    let part = Part(Vec1::from(n(1)));
    let names: Vec<AString<'static>> = vec![AString::try_from("Subject").expect("atom")];
    let requested = vec![
        MessageDataItemName::Rfc822Size,
        MessageDataItemName::BodyStructure,
        MessageDataItemName::Envelope,
        MessageDataItemName::BodyExt {
            section: None,
            partial: Some((0, n(100))),
            peek: true,
        },
        MessageDataItemName::BodyExt {
            section: Some(Section::Mime(part.clone())),
            partial: None,
            peek: true,
        },
        MessageDataItemName::BodyExt {
            section: Some(Section::HeaderFieldsNot(
                Some(part),
                Vec1::try_from(names).expect("one"),
            )),
            partial: None,
            peek: true,
        },
    ];
    let provider = vec![
        MessageDataItem::Uid(n(7)),
        MessageDataItem::Rfc822Size(u32::try_from(data.len()).unwrap_or(u32::MAX)),
    ];
    let _ = rewrite(provider, &requested, data);
}));
