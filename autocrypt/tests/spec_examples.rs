//! The example messages of the Autocrypt Level 1 specification
//! (`../shared/testdata/autocrypt-spec/`, CC0).

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use autocrypt::setup::{self, SetupCode};
use autocrypt::{select_sender_header, AutocryptHeader, PreferEncrypt};
use sequoia_openpgp::parse::Parse as _;
use sequoia_openpgp::Cert;

fn testdata(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/autocrypt-spec")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The unfolded values of every header called `name` (test-only: the real
/// MIME parsing lives in mailcrypt).
fn header_values(message: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(message);
    let head = text.split("\n\n").next().unwrap_or_default();
    let mut values = Vec::new();
    let mut current: Option<String> = None;
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(v) = current.as_mut() {
                v.push_str(line.trim_end());
            }
            continue;
        }
        if let Some(v) = current.take() {
            values.push(v);
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case(name) {
                current = Some(v.trim().to_string());
            }
        }
    }
    values.extend(current);
    values
}

#[test]
fn simple_example_header_parses_and_matches_alices_key() {
    let msg = testdata("example-simple-autocrypt.eml");
    let values = header_values(&msg, "Autocrypt");
    let (header, problems) = select_sender_header(&values, "alice@autocrypt.example");
    assert!(problems.is_empty(), "{problems:?}");
    let header = header.expect("one valid header");
    assert_eq!(header.prefer_encrypt, PreferEncrypt::Mutual);
    let alice = Cert::from_bytes(&testdata("alice@autocrypt.example.pub.asc")).unwrap();
    assert_eq!(header.cert.fingerprint(), alice.fingerprint());
    // Five packets: primary, user ID, its self-signature, subkey, binding.
    assert_eq!(header.cert.clone().into_packets().count(), 5);

    // The same header claimed for another sender is refused.
    let (other, problems) = select_sender_header(&values, "mallory@autocrypt.example");
    assert!(other.is_none());
    assert_eq!(problems.len(), 1);
}

#[test]
fn our_rendering_of_the_example_key_parses_back() {
    let alice = Cert::from_bytes(&testdata("alice@autocrypt.example.pub.asc")).unwrap();
    // The example keys expired in January 2021; minimize at the message date.
    let when = UNIX_EPOCH + Duration::from_secs(1_548_158_185);
    let min = autocrypt::key::minimize(&alice, "alice@autocrypt.example", when).unwrap();
    let h = AutocryptHeader::new("alice@autocrypt.example", PreferEncrypt::Mutual, min);
    let back = AutocryptHeader::parse(&h.render("\r\n"), Some("alice@autocrypt.example")).unwrap();
    assert_eq!(back.cert.fingerprint(), alice.fingerprint());
}

#[test]
fn setup_message_imports_with_its_code() {
    let msg = testdata("example-setup-message.eml");
    let code = SetupCode::parse("1742-0185-6197-1303-7016-8412-3581-4441-0597").unwrap();
    let imported = setup::import(&msg, &code).expect("the spec's setup message imports");
    let alice = Cert::from_bytes(&testdata("alice@autocrypt.example.sec.asc")).unwrap();
    assert_eq!(imported.cert.fingerprint(), alice.fingerprint());
    assert!(imported.cert.is_tsk());
    assert_eq!(imported.prefer_encrypt, PreferEncrypt::Mutual);

    let wrong = SetupCode::parse("1742-0185-6197-1303-7016-8412-3581-4441-0598").unwrap();
    assert!(matches!(
        setup::import(&msg, &wrong),
        Err(autocrypt::SetupError::WrongCode)
    ));
}

#[test]
fn gossip_example_headers_outside_are_only_alices() {
    let msg = testdata("example-gossip.eml");
    assert!(header_values(&msg, "Autocrypt-Gossip").is_empty());
    let (header, _) =
        select_sender_header(&header_values(&msg, "Autocrypt"), "alice@autocrypt.example");
    assert!(header.is_some());
}
