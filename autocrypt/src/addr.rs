//! E-mail address comparison as Autocrypt does it.

/// Normalizes an address for comparison and as a map key.
///
/// Autocrypt compares addresses case-insensitively. We lower-case the whole
/// address (local parts are case-sensitive in theory, never in practice) and
/// trim surrounding white space and angle brackets.
pub fn normalize_addr(addr: &str) -> String {
    addr.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_lowercase()
}

/// Whether two addresses name the same mailbox (case-insensitive).
pub fn addr_eq(a: &str, b: &str) -> bool {
    normalize_addr(a) == normalize_addr(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_case_insensitively() {
        assert!(addr_eq("Alice@Example.ORG", "alice@example.org"));
        assert!(addr_eq("<alice@example.org>", " alice@example.org "));
        assert!(!addr_eq("alice@example.org", "bob@example.org"));
    }
}
