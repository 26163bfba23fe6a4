//! Public certificates parsed once per process.
//!
//! Reading mail parses the same few certificates over and over: the
//! `keydata` of every message from one peer carries the same key, and the
//! keystore hands back the same stored key for every message that peer
//! sends. Parsing one (canonicalizing its packets) was about a tenth of the
//! CPU of a first read of a mailbox (BENCHMARKS.md), more than decrypting
//! the message. Parsing is a pure function of the bytes, so a parse is kept
//! by them and the next one of the same bytes is a copy.
//!
//! Only public certificates are kept: secret key material stays where its
//! owner put it. The cache is bounded ([`KEPT`]); when full it starts over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::Cert;

/// Most certificates kept at once (a few KB each).
pub const KEPT: usize = 512;

/// Certificate bytes longer than this are parsed every time (a key with
/// many signatures or a photo: rare, and not worth the memory).
const LONGEST_KEPT: usize = 64 * 1024;

type Parsed = HashMap<Box<[u8]>, Arc<Cert>>;

fn parsed() -> &'static Mutex<Parsed> {
    static PARSED: OnceLock<Mutex<Parsed>> = OnceLock::new();
    PARSED.get_or_init(|| Mutex::new(HashMap::new()))
}

/// [`Cert::from_bytes`], answered from an earlier parse of the same bytes
/// when there was one.
pub fn parse(bytes: &[u8]) -> sequoia_openpgp::Result<Cert> {
    let kept = parsed()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(bytes)
        .cloned();
    if let Some(cert) = kept {
        return Ok((*cert).clone());
    }
    let cert = Cert::from_bytes(bytes)?;
    if !cert.is_tsk() && bytes.len() <= LONGEST_KEPT {
        let mut parsed = parsed().lock().unwrap_or_else(PoisonError::into_inner);
        if parsed.len() >= KEPT {
            parsed.clear();
        }
        parsed.insert(bytes.into(), Arc::new(cert.clone()));
    }
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use sequoia_openpgp::serialize::{MarshalInto, SerializeInto};

    #[test]
    fn a_kept_parse_is_the_same_certificate_and_secrets_are_never_kept() {
        let key =
            crate::key::generate("bob@example.org", std::time::SystemTime::now()).expect("a key");
        let public = MarshalInto::to_vec(&key).expect("public bytes");
        let first = super::parse(&public).expect("parsed");
        let again = super::parse(&public).expect("parsed again");
        assert_eq!(first, again);
        assert_eq!(again.fingerprint(), key.fingerprint());
        assert!(!again.is_tsk());

        let secret = SerializeInto::to_vec(&key.as_tsk()).expect("secret bytes");
        let with_secret = super::parse(&secret).expect("parsed");
        assert!(with_secret.is_tsk());
        let kept = super::parsed()
            .lock()
            .expect("not poisoned")
            .contains_key(&secret[..]);
        assert!(!kept, "a certificate with secret keys is not kept");
    }

    #[test]
    fn garbage_is_an_error_every_time() {
        assert!(super::parse(b"not a certificate").is_err());
        assert!(super::parse(b"not a certificate").is_err());
    }
}
