//! Arbitrary input never panics the header parser or the setup importer.

use autocrypt::setup::{self, SetupCode};
use autocrypt::AutocryptHeader;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn header_parse_never_panics(s in ".{0,400}") {
        let _ = AutocryptHeader::parse(&s, Some("alice@example.org"));
        let _ = AutocryptHeader::parse(&s, None);
    }

    #[test]
    fn structured_header_parse_never_panics(
        addr in "[a-zA-Z@.]{0,20}",
        pref in "[a-z]{0,10}",
        extra in "(_?[a-z-]{1,8}=[^;]{0,10}; ){0,3}",
        keydata in "[A-Za-z0-9+/= \t\r\n]{0,200}",
    ) {
        let value = format!("addr={addr}; prefer-encrypt={pref}; {extra}keydata={keydata}");
        let _ = AutocryptHeader::parse(&value, Some(&addr));
    }

    #[test]
    fn setup_import_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut msg = b"-----BEGIN PGP MESSAGE-----\n\n".to_vec();
        msg.extend_from_slice(&body);
        msg.extend_from_slice(b"\n-----END PGP MESSAGE-----\n");
        let code = SetupCode::parse(&"1".repeat(36)).unwrap();
        let _ = setup::import(&msg, &code);
        let _ = setup::import(&body, &code);
    }
}
