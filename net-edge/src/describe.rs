//! An error with its causes as one line: what both proxies tell a client
//! (an SMTP reply's sentence) or write to the log when a session ends.

/// `error: cause: cause of the cause …`; a refused provider certificate
/// as its own sentence (which says what to do), wherever it is in the chain.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    if let Some(rejected) = crate::certificate_rejection(error) {
        return rejected.to_string();
    }
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_cause_is_named_in_order() {
        let io = std::io::Error::other("disk full");
        let outer = crate::BindError {
            address: "127.0.0.1:1143".parse().expect("an address"),
            source: io,
        };
        assert_eq!(super::describe(&outer), format!("{outer}: disk full"));
    }
}
