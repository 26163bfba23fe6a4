//! MIME entities as byte slices: content type and multipart bodies.
//!
//! Signatures cover exact bytes (RFC 3156 §5), so the parts of a multipart
//! body are cut out of the input by hand instead of being re-serialized.
//! Parameter parsing (quoting, RFC 2231) is left to mail-parser.

use mail_parser::{MessageParser, MimeHeaders};

use crate::header::{self as mime, split_header};

/// One MIME entity: its header section and its (still encoded) body.
#[derive(Debug, Clone, Copy)]
pub struct Entity<'a> {
    /// The whole entity, header and body.
    pub bytes: &'a [u8],
    pub header: &'a [u8],
    pub body: &'a [u8],
}

impl<'a> Entity<'a> {
    pub fn parse(bytes: &'a [u8]) -> Self {
        let (header, body) = split_header(bytes);
        Entity {
            bytes,
            header,
            body,
        }
    }

    pub fn content_type(&self) -> ContentType {
        ContentType::of(self.header)
    }

    /// The parts of a multipart body, or `None` if the delimiter never appears.
    pub fn parts(&self, boundary: &str) -> Option<Vec<&'a [u8]>> {
        split_multipart(self.body, boundary)
    }
}

/// A parsed `Content-Type` field (text/plain; charset=us-ascii when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    /// Lower-case `type/subtype`.
    pub mime: String,
    /// Parameters with lower-case names.
    pub params: Vec<(String, String)>,
}

impl ContentType {
    pub fn of(header: &[u8]) -> Self {
        let field = mime::fields(header)
            .into_iter()
            .find(|f| f.is("Content-Type"));
        let Some(field) = field else {
            return ContentType::default();
        };
        // mail-parser understands quoting, comments and RFC 2231 parameters.
        let mut snippet = field.raw_without_eol().to_vec();
        snippet.extend_from_slice(b"\r\n\r\n");
        let parsed = MessageParser::default().parse_headers(&snippet[..]);
        let Some(ct) = parsed.as_ref().and_then(|m| m.content_type()) else {
            return ContentType::default();
        };
        let mime = match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_string(),
        }
        .to_ascii_lowercase();
        let params = ct
            .attributes()
            .unwrap_or_default()
            .iter()
            .map(|a| (a.name.to_ascii_lowercase(), a.value.to_string()))
            .collect();
        ContentType { mime, params }
    }

    pub fn is(&self, mime: &str) -> bool {
        self.mime.eq_ignore_ascii_case(mime)
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Default for ContentType {
    fn default() -> Self {
        ContentType {
            mime: "text/plain".into(),
            params: vec![("charset".into(), "us-ascii".into())],
        }
    }
}

/// Cuts a multipart body into its parts (RFC 2046 §5.1.1).
///
/// A part runs from after its delimiter line to before the line ending that
/// precedes the next delimiter; that line ending belongs to the delimiter.
/// A missing close delimiter ends the last part at the end of input.
pub fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Option<Vec<&'a [u8]>> {
    let dash = format!("--{boundary}");
    let dash = dash.as_bytes();
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    let mut pos = 0;
    while pos < body.len() {
        let end = match body[pos..].iter().position(|&b| b == b'\n') {
            Some(i) => pos + i + 1,
            None => body.len(),
        };
        let line = &body[pos..end];
        if let Some(rest) = line.strip_prefix(dash) {
            let rest = trim_line(rest);
            let close = rest == b"--";
            if rest.is_empty() || close {
                if let Some(start) = current.take() {
                    parts.push(&body[start..strip_eol_before(body, start, pos)]);
                }
                if close {
                    return Some(parts);
                }
                current = Some(end);
            }
        }
        pos = end;
    }
    let start = current?;
    parts.push(&body[start..]);
    Some(parts)
}

fn trim_line(rest: &[u8]) -> &[u8] {
    let mut end = rest.len();
    while end > 0 && matches!(rest[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &rest[..end]
}

/// The end of a part's content: `pos` minus the line ending before the delimiter.
fn strip_eol_before(body: &[u8], start: usize, pos: usize) -> usize {
    let mut end = pos;
    if end > start && body[end - 1] == b'\n' {
        end -= 1;
        if end > start && body[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_parts_exactly() {
        let body = b"preamble\r\n--b\r\nA: 1\r\n\r\none\r\n--b\r\n\r\ntwo\r\n\r\n--b--\r\nepilogue";
        let parts = split_multipart(body, "b").unwrap();
        assert_eq!(parts, vec![&b"A: 1\r\n\r\none"[..], &b"\r\ntwo\r\n"[..]]);
        assert!(split_multipart(b"no delimiter", "b").is_none());
    }

    #[test]
    fn parses_content_type() {
        let ct = ContentType::of(b"Content-Type: Multipart/Encrypted;\r\n protocol=\"application/pgp-encrypted\"; boundary=\"x y\"\r\n");
        assert!(ct.is("multipart/encrypted"));
        assert_eq!(ct.param("boundary"), Some("x y"));
        assert_eq!(ct.param("Protocol"), Some("application/pgp-encrypted"));
        assert!(ContentType::of(b"Subject: x\r\n").is("text/plain"));
    }
}
