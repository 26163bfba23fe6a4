//! SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 3463).

use std::borrow::Cow;
use std::fmt::Write as _;

/// One reply: a code, an enhanced status code and one or more text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// `x.y.z`, or empty for replies that carry none (greeting, EHLO).
    pub enhanced: Cow<'static, str>,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, enhanced: impl Into<Cow<'static, str>>, text: impl Into<String>) -> Self {
        Reply {
            code,
            enhanced: enhanced.into(),
            lines: vec![text.into()],
        }
    }

    /// A reply whose text a provider (or a person) wrote; control characters
    /// are replaced so it cannot break the reply syntax towards the client.
    pub fn relayed(code: u16, enhanced: impl Into<Cow<'static, str>>, text: &str) -> Self {
        let clean: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Reply::new(code, enhanced, clean.trim().to_string())
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The reply on the wire: `250-…` continuation lines, `250 …` last.
    /// Control characters in the text (a CR or LF inside an error message
    /// from a library or the provider) become spaces: they would end the
    /// reply early and leave the client reading garbage.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::new();
        let count = self.lines.len().max(1);
        for i in 0..count {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            let sep = if i + 1 == count { ' ' } else { '-' };
            let _ = write!(out, "{}{sep}", self.code);
            if !self.enhanced.is_empty() {
                let _ = write!(out, "{} ", self.enhanced);
            }
            out.extend(text.chars().map(|c| if c.is_control() { ' ' } else { c }));
            out.push_str("\r\n");
        }
        out.into_bytes()
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.code,
            self.enhanced,
            self.lines.join(" / ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_inside_a_text_cannot_break_the_reply() {
        let r = Reply::new(454, "4.7.0", "Cannot reach it: Error\r\n250 fake\n");
        assert_eq!(
            r.to_bytes(),
            b"454 4.7.0 Cannot reach it: Error  250 fake \r\n"
        );
    }

    #[test]
    fn multiline_replies_use_continuations() {
        let r = Reply {
            code: 250,
            enhanced: "".into(),
            lines: vec!["localhost".into(), "PIPELINING".into(), "8BITMIME".into()],
        };
        assert_eq!(
            r.to_bytes(),
            b"250-localhost\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        );
        assert_eq!(
            Reply::new(550, "5.7.1", "no").to_bytes(),
            b"550 5.7.1 no\r\n"
        );
    }

    #[test]
    fn relayed_text_cannot_inject_lines() {
        let r = Reply::relayed(554, "5.0.0", "bad\r\n250 2.0.0 ok");
        assert_eq!(r.to_bytes(), b"554 5.0.0 bad  250 2.0.0 ok\r\n");
    }
}
