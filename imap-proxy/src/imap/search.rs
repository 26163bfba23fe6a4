//! SEARCH over encrypted messages.
//!
//! The provider can evaluate every criterion except the ones that look at
//! text, and those only for messages it can read. The proxy asks it for
//! each leaf criterion on its own ([`leaves`]), replaces the encrypted
//! messages in a text leaf's answer by its own judgement, and [`evaluate`]s
//! the AND/OR/NOT structure over the sets. Only a SEARCH with CONDSTORE's
//! MODSEQ ([`needs_provider`]) goes to the provider whole, each text
//! criterion `T` (BODY, TEXT, SUBJECT, FROM, TO, CC, BCC, HEADER) rewritten:
//!
//! ```text
//! T  →  OR (UID <encrypted messages where T holds>) (T NOT UID <encrypted messages>)
//! ```
//!
//! where "T holds" is decided by the gateway on the decrypted messages. The
//! provider then evaluates the whole expression — flags, dates, sizes,
//! AND/OR/NOT — and its answer is the client's, unchanged.
//!
//! For SUBJECT, FROM, TO, CC, BODY and TEXT the archive's full-text index
//! answers ([`index_field`]): the search string's words in order, the last
//! one a prefix, case and diacritics folded — word semantics, as Dovecot's
//! and Gmail's full-text search have, rather than RFC 3501 §6.4.4's
//! substrings, because an index answers in time and memory that do not grow
//! with the mailbox (TO and CC both look at the recipients, which the index
//! keeps together). HEADER and BCC, which the index does not hold, and
//! strings without a word character are judged by [`matches`]:
//! case-insensitive substrings of the decoded text.

use imap_next::imap_types::core::{AString, Vec1};
use imap_next::imap_types::search::SearchKey;
use imap_next::imap_types::sequence::SequenceSet;

pub use crate::imap::sequence::uid_set;
use archive::Field;
use mail_parser::HeaderValue;

/// Whether a criterion (or one inside it) looks at message text.
pub fn has_text(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().any(has_text),
        SearchKey::Or(a, b) => has_text(a) || has_text(b),
        SearchKey::Not(k) => has_text(k),
        other => is_text(other),
    }
}

/// The text criteria in a criterion (each once), the ones [`rewrite`] asks
/// about.
pub fn text_keys(key: &SearchKey<'static>, out: &mut Vec<SearchKey<'static>>) {
    let mut all = Vec::new();
    leaves(key, &mut all);
    for leaf in all {
        if is_text(&leaf) && !out.contains(&leaf) {
            out.push(leaf);
        }
    }
}

/// Whether a criterion is one of the text criteria.
pub fn is_text(key: &SearchKey<'_>) -> bool {
    matches!(
        key,
        SearchKey::Body(_)
            | SearchKey::Text(_)
            | SearchKey::Subject(_)
            | SearchKey::From(_)
            | SearchKey::To(_)
            | SearchKey::Cc(_)
            | SearchKey::Bcc(_)
            | SearchKey::Header(..)
    )
}

/// Rewrites every text criterion as the module documentation shows.
/// `encrypted` is the UID set of the mailbox's encrypted messages; `local`
/// answers a text criterion with the UIDs of those where it holds.
pub fn rewrite(
    key: SearchKey<'static>,
    encrypted: &SequenceSet,
    local: &mut dyn FnMut(&SearchKey<'_>) -> Vec<u32>,
) -> SearchKey<'static> {
    match key {
        SearchKey::And(keys) => {
            let keys: Vec<SearchKey<'static>> = keys
                .into_iter()
                .map(|k| rewrite(k, encrypted, local))
                .collect();
            match Vec1::try_from(keys) {
                Ok(keys) => SearchKey::And(keys),
                Err(_) => SearchKey::All,
            }
        }
        SearchKey::Or(a, b) => SearchKey::Or(
            Box::new(rewrite(*a, encrypted, local)),
            Box::new(rewrite(*b, encrypted, local)),
        ),
        SearchKey::Not(k) => SearchKey::Not(Box::new(rewrite(*k, encrypted, local))),
        text if is_text(&text) => {
            let found = local(&text);
            let here = match uid_set(&found) {
                Some(set) => SearchKey::Uid(set),
                // Nothing: a key that matches no message.
                None => SearchKey::Not(Box::new(SearchKey::All)),
            };
            let elsewhere = SearchKey::And(
                Vec1::try_from(vec![
                    text,
                    SearchKey::Not(Box::new(SearchKey::Uid(encrypted.clone()))),
                ])
                .unwrap_or_else(|_| Vec1::from(SearchKey::All)),
            );
            SearchKey::Or(Box::new(here), Box::new(elsewhere))
        }
        other => other,
    }
}

/// The index field a text criterion looks at, and its search string; `None`
/// for the criteria the index cannot answer (HEADER, BCC).
pub fn index_field(key: &SearchKey<'_>) -> Option<(Field, String)> {
    let (field, text) = match key {
        SearchKey::Subject(s) => (Field::Subject, s),
        SearchKey::From(s) => (Field::Sender, s),
        SearchKey::To(s) | SearchKey::Cc(s) => (Field::Recipients, s),
        SearchKey::Body(s) => (Field::Body, s),
        SearchKey::Text(s) => (Field::Any, s),
        _ => return None,
    };
    Some((field, String::from_utf8_lossy(text.as_ref()).into_owned()))
}

/// The leaves of a criterion (everything but AND, OR, NOT and ALL, which
/// [`evaluate`] answers itself), each once: what it needs a set of UIDs for.
pub fn leaves(key: &SearchKey<'static>, out: &mut Vec<SearchKey<'static>>) {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().for_each(|k| leaves(k, out)),
        SearchKey::Or(a, b) => {
            leaves(a, out);
            leaves(b, out);
        }
        SearchKey::Not(k) => leaves(k, out),
        SearchKey::All => {}
        leaf if !out.contains(leaf) => out.push(leaf.clone()),
        _ => {}
    }
}

/// Whether a criterion must go to the provider as it is: CONDSTORE's
/// MODSEQ, whose answer carries the highest mod-sequence of the matches,
/// which only the provider's own SEARCH of the whole expression reports.
pub fn needs_provider(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().any(needs_provider),
        SearchKey::Or(a, b) => needs_provider(a) || needs_provider(b),
        SearchKey::Not(k) => needs_provider(k),
        other => matches!(other, SearchKey::ModSequence { .. }),
    }
}

/// Evaluates the boolean structure of a criterion over sets of UIDs:
/// `all` is every UID of the mailbox (sorted), `leaf` the sorted UIDs where
/// a leaf holds. The answer is sorted.
pub fn evaluate(
    key: &SearchKey<'_>,
    all: &[u32],
    leaf: &mut dyn FnMut(&SearchKey<'_>) -> Vec<u32>,
) -> Vec<u32> {
    match key {
        SearchKey::And(keys) => {
            let mut keys = keys.as_ref().iter();
            let first = keys
                .next()
                .map(|k| evaluate(k, all, leaf))
                .unwrap_or_default();
            keys.fold(first, |acc, k| intersect(&acc, &evaluate(k, all, leaf)))
        }
        SearchKey::Or(a, b) => union(&evaluate(a, all, leaf), &evaluate(b, all, leaf)),
        SearchKey::Not(k) => difference(all, &evaluate(k, all, leaf)),
        SearchKey::All => all.to_vec(),
        other => intersect(all, &leaf(other)),
    }
}

fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let keep: std::collections::HashSet<u32> = b.iter().copied().collect();
    a.iter().copied().filter(|u| keep.contains(u)).collect()
}

fn difference(a: &[u32], b: &[u32]) -> Vec<u32> {
    let drop: std::collections::HashSet<u32> = b.iter().copied().collect();
    a.iter().copied().filter(|u| !drop.contains(u)).collect()
}

fn union(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out: Vec<u32> = a.iter().chain(b).copied().collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether a text criterion holds for a message (decoded, case-insensitive).
pub fn matches(key: &SearchKey<'_>, message: &[u8]) -> bool {
    let Some(parsed) = letterlock_mime::parse(message) else {
        return false;
    };
    let wanted = |s: &AString<'_>| String::from_utf8_lossy(s.as_ref()).to_lowercase();
    let header = |name: &str| -> String {
        parsed
            .header_values(name)
            .map(value_text)
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    let body = || -> String {
        // Every text part (plain and HTML, nested ones included), decoded.
        let mut text = String::new();
        for part in parsed.parts.iter().skip(1) {
            if let Some(t) = part.text_contents() {
                text.push_str(t);
                text.push('\n');
            }
        }
        if parsed.parts.len() == 1 {
            if let Some(t) = parsed.parts[0].text_contents() {
                text.push_str(t);
            }
        }
        text.to_lowercase()
    };
    match key {
        SearchKey::Subject(s) => header("Subject").contains(&wanted(s)),
        SearchKey::From(s) => header("From").contains(&wanted(s)),
        SearchKey::To(s) => header("To").contains(&wanted(s)),
        SearchKey::Cc(s) => header("Cc").contains(&wanted(s)),
        SearchKey::Bcc(s) => header("Bcc").contains(&wanted(s)),
        SearchKey::Header(name, s) => {
            let name = String::from_utf8_lossy(name.as_ref()).into_owned();
            let present = parsed.header_values(name.as_str()).next().is_some();
            present && header(&name).contains(&wanted(s))
        }
        SearchKey::Body(s) => body().contains(&wanted(s)),
        SearchKey::Text(s) => {
            let s = wanted(s);
            let raw_header =
                String::from_utf8_lossy(&message[..parsed.root_part().offset_body as usize])
                    .to_lowercase();
            raw_header.contains(&s)
                || ["Subject", "From", "To", "Cc"]
                    .iter()
                    .any(|h| header(h).contains(&s))
                || body().contains(&s)
        }
        _ => false,
    }
}

/// A header value as text: decoded words, addresses with their names.
fn value_text(value: &HeaderValue<'_>) -> String {
    match value {
        HeaderValue::Text(t) => t.to_string(),
        HeaderValue::TextList(list) => list.join(" "),
        HeaderValue::Address(address) => address
            .iter()
            .map(|a| {
                format!(
                    "{} <{}>",
                    a.name.as_deref().unwrap_or(""),
                    a.address.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        HeaderValue::DateTime(d) => d.to_rfc822(),
        HeaderValue::ContentType(c) => c.ctype().to_string(),
        HeaderValue::Received(_) | HeaderValue::Empty => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] =
        b"From: =?utf-8?q?J=C3=BCrgen?= <juergen@example.de>\r\nTo: alice@example.org\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\nX-Project: lighthouse\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
The plan is set for Midnight =E2=80=94 bring the quarterly report.\r\n";

    fn a(s: &str) -> AString<'static> {
        AString::try_from(s.to_string()).expect("astring")
    }

    #[test]
    fn text_criteria_match_decoded_text() {
        assert!(matches(&SearchKey::Subject(a("grüße")), MESSAGE));
        assert!(matches(&SearchKey::Subject(a("KÖLN")), MESSAGE));
        assert!(matches(&SearchKey::From(a("jürgen")), MESSAGE));
        assert!(matches(&SearchKey::From(a("example.de")), MESSAGE));
        assert!(matches(&SearchKey::To(a("alice@")), MESSAGE));
        assert!(matches(&SearchKey::Body(a("midnight — bring")), MESSAGE));
        assert!(!matches(&SearchKey::Body(a("lighthouse")), MESSAGE));
        assert!(matches(&SearchKey::Text(a("lighthouse")), MESSAGE));
        assert!(matches(
            &SearchKey::Header(a("X-Project"), a("light")),
            MESSAGE
        ));
        assert!(matches(&SearchKey::Header(a("x-project"), a("")), MESSAGE));
        assert!(!matches(&SearchKey::Header(a("X-Other"), a("")), MESSAGE));
        assert!(!matches(&SearchKey::Cc(a("x")), MESSAGE));
        assert!(!matches(&SearchKey::Subject(a("x")), b""));
    }

    /// `UNSEEN (OR BODY plan SUBJECT none)`, then `more`.
    fn unseen_plan_or_none(more: Vec<SearchKey<'static>>) -> SearchKey<'static> {
        let mut keys = vec![
            SearchKey::Unseen,
            SearchKey::Or(
                Box::new(SearchKey::Body(a("plan"))),
                Box::new(SearchKey::Subject(a("none"))),
            ),
        ];
        keys.extend(more);
        SearchKey::And(Vec1::try_from(keys).expect("keys"))
    }

    #[test]
    fn text_criteria_are_rewritten_around_the_encrypted_set() {
        let encrypted = uid_set(&[3, 4, 5, 9]).expect("set");
        let key = unseen_plan_or_none(Vec::new());
        let mut asked = Vec::new();
        let rewritten = rewrite(key, &encrypted, &mut |k| {
            asked.push(format!("{k:?}"));
            if matches!(k, SearchKey::Body(_)) {
                vec![4, 9]
            } else {
                Vec::new()
            }
        });
        assert_eq!(asked.len(), 2);
        let SearchKey::And(parts) = rewritten else {
            panic!("And expected");
        };
        let parts = parts.into_inner();
        assert_eq!(parts[0], SearchKey::Unseen);
        let SearchKey::Or(body, subject) = &parts[1] else {
            panic!("Or expected");
        };
        let SearchKey::Or(here, elsewhere) = body.as_ref() else {
            panic!("rewritten body");
        };
        assert_eq!(**here, SearchKey::Uid(uid_set(&[4, 9]).expect("set")));
        let SearchKey::And(inner) = elsewhere.as_ref() else {
            panic!("And expected");
        };
        assert_eq!(inner.as_ref()[0], SearchKey::Body(a("plan")));
        assert_eq!(
            inner.as_ref()[1],
            SearchKey::Not(Box::new(SearchKey::Uid(encrypted.clone())))
        );
        let SearchKey::Or(nothing, _) = subject.as_ref() else {
            panic!("rewritten subject");
        };
        assert_eq!(**nothing, SearchKey::Not(Box::new(SearchKey::All)));
        assert!(has_text(&SearchKey::Not(Box::new(SearchKey::Text(a("x"))))));
        assert!(!has_text(&SearchKey::Seen));
    }

    #[test]
    fn boolean_structure_is_evaluated_over_leaf_sets() {
        let all = [1, 2, 3, 4, 5, 6];
        // UNSEEN (OR BODY plan SUBJECT none) NOT TEXT draft
        let key = unseen_plan_or_none(vec![SearchKey::Not(Box::new(SearchKey::Text(a("draft"))))]);
        let mut found = Vec::new();
        leaves(&key, &mut found);
        assert_eq!(found.len(), 4);
        let mut leaf = |k: &SearchKey<'_>| match k {
            SearchKey::Unseen => vec![1, 2, 3, 4, 9],
            SearchKey::Body(_) => vec![2, 3, 5],
            SearchKey::Subject(_) => vec![4],
            SearchKey::Text(_) => vec![3],
            _ => Vec::new(),
        };
        assert_eq!(evaluate(&key, &all, &mut leaf), vec![2, 4]);
        assert_eq!(
            evaluate(&SearchKey::Not(Box::new(SearchKey::All)), &all, &mut leaf),
            Vec::<u32>::new()
        );
        // A UID the provider no longer lists is not in any answer.
        assert_eq!(
            evaluate(&SearchKey::Unseen, &all, &mut leaf),
            vec![1, 2, 3, 4]
        );
        assert!(!needs_provider(&key));
    }

    #[test]
    fn uid_sets() {
        assert_eq!(
            uid_set(&[9, 1, 4, 5, 6, 5]).map(|s| format!("{s:?}")),
            SequenceSet::try_from("1,4:6,9")
                .ok()
                .map(|s| format!("{s:?}"))
        );
        assert!(uid_set(&[]).is_none());
    }
}
