//! What the fuzz targets share: the upstream panics that are known,
//! harmless in the gateway's builds, and so not findings.
//!
//! libfuzzer-sys aborts on any panic, even one the code under test catches.
//! [`run`] lets exactly these through and aborts on every other panic:
//!
//! - sequoia-openpgp 2.4.2 `parse.rs:6367`: an `unwrap` after a short read
//!   in a SEIPv1 packet cut off before its MDC. mailcrypt catches it
//!   (`openpgp::guarded`) and refuses the message; mailcrypt's test
//!   `seip_shorter_than_prefix_and_mdc_is_refused_not_a_crash` keeps it so.
//! - mail-parser 0.11.9 `parsers/message.rs:485`: a `debug_assert!` on a
//!   multipart whose parent it lost track of. Release builds (the gateway's)
//!   carry on; the workspace turns debug assertions off for mail-parser in
//!   dev builds too. cargo-fuzz builds everything with debug assertions.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

const KNOWN: &[(&str, u32)] = &[
    ("sequoia-openpgp-2.4.2/src/parse.rs", 6367),
    ("mail-parser-0.11.9/src/parsers/message.rs", 485),
];

thread_local! {
    static KNOWN_PANIC: Cell<bool> = const { Cell::new(false) };
}

/// Runs one fuzz input; a known upstream panic ends it quietly.
pub fn run(f: impl FnOnce()) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let fuzzer_hook = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let known = info.location().is_some_and(|l| {
                KNOWN
                    .iter()
                    .any(|(file, line)| l.file().ends_with(file) && l.line() == *line)
            });
            if known {
                KNOWN_PANIC.with(|k| k.set(true));
            } else {
                fuzzer_hook(info);
            }
        }));
    });
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(f)) {
        if !KNOWN_PANIC.with(|k| k.replace(false)) {
            panic::resume_unwind(payload);
        }
    }
    KNOWN_PANIC.with(|k| k.set(false));
}
