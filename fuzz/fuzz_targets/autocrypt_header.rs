//! `Autocrypt:` header values (and the same as gossip) from anyone's mail.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| letterlock_fuzz::run(|| {
    let value = String::from_utf8_lossy(data);
    let _ = autocrypt::AutocryptHeader::parse(&value, Some("alice@example.org"));
    let _ = autocrypt::AutocryptHeader::parse(&value, None);
}));
