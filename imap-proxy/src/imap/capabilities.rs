//! What the proxy tells clients it can do, and what it refuses to carry.

use imap_next::imap_types::auth::AuthMechanism;
use imap_next::imap_types::command::CommandBody;
use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::response::{Capability, Code};

/// Capabilities passed on after login: what the proxy carries end to end,
/// each checked command by command against Dovecot (`tests/capabilities.rs`).
/// Everything else (COMPRESS, BINARY, SORT/THREAD for now, ESEARCH
/// and SEARCHRES, NOTIFY, …) is removed. LIST-EXTENDED
/// and LIST-STATUS are among them: imap-codec does not parse a LIST with
/// selection or return options, and a client that was told it may send one
/// would get BAD (Thunderbird then shows only Inbox and Trash).
pub const KEPT: [&str; 14] = [
    "IMAP4REV1",
    "IDLE",
    "LITERAL+",
    "UIDPLUS",
    "MOVE",
    "SPECIAL-USE",
    "NAMESPACE",
    "ID",
    "UNSELECT",
    "CHILDREN",
    // Clients show how full the mailbox is (the provider's count: the
    // encrypted copies are what takes the space).
    "QUOTA",
    // Flags and mod-sequences are the provider's, for decrypted messages
    // too (`fetch::rewrite` passes MODSEQ on), so a client resynchronises a
    // large mailbox without fetching every flag.
    "ENABLE",
    "CONDSTORE",
    "QRESYNC",
];

/// Before login: what the proxy itself answers (LITERAL+ is its own; the
/// login goes to the provider as PLAIN).
pub fn before_login() -> Vec1<Capability<'static>> {
    let capabilities = vec![
        Capability::Imap4Rev1,
        Capability::LiteralPlus,
        Capability::Auth(AuthMechanism::Plain),
    ];
    Vec1::try_from(capabilities).unwrap_or_else(|_| Vec1::from(Capability::Imap4Rev1))
}

/// The provider's capabilities, cut down to [`KEPT`]; `None` if none is
/// left.
pub fn kept(
    provider: impl IntoIterator<Item = Capability<'static>>,
) -> Option<Vec1<Capability<'static>>> {
    let kept: Vec<_> = provider
        .into_iter()
        .filter(|c| KEPT.contains(&c.to_string().to_ascii_uppercase().as_str()))
        .collect();
    Vec1::try_from(kept).ok()
}

/// A status's response code as the client sees it: a capability list inside
/// it is cut down like CAPABILITY.
pub fn filter_code(code: Code<'static>) -> Option<Code<'static>> {
    match code {
        Code::Capability(caps) => kept(caps).map(Code::Capability),
        other => Some(other),
    }
}

/// Commands the proxy does not carry, with the reason the client is told.
pub fn refusal(body: &CommandBody<'_>) -> Option<&'static str> {
    match body {
        CommandBody::Compress { .. } => Some("COMPRESS is not offered"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_next::imap_types::core::Atom;

    #[test]
    fn only_what_is_carried_is_passed_on() {
        let provider = vec![
            Capability::Imap4Rev1,
            Capability::Idle,
            Capability::from(Atom::try_from("COMPRESS=DEFLATE").expect("an atom")),
            Capability::from(Atom::try_from("list-status").expect("an atom")),
        ];
        let kept = kept(provider).expect("some are kept");
        assert_eq!(
            kept.as_ref(),
            &[Capability::Imap4Rev1, Capability::Idle][..]
        );
        assert!(filter_code(Code::Capability(Vec1::from(Capability::from(
            Atom::try_from("SORT").expect("an atom")
        ))))
        .is_none());
    }
}
