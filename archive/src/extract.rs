//! What of a message goes into the index, with bounds on effort.
//!
//! mail-parser decodes transfer encodings and charsets and turns HTML into
//! text. Hostile input is bounded here: at most [`MAX_TEXT`] bytes of text
//! per message, [`MAX_HTML`] bytes of any one HTML part converted, nested
//! messages followed [`MAX_DEPTH`] levels deep, [`MAX_PARTS`] parts looked at.

use mail_parser::{Address, Message, MimeHeaders, PartType};

use crate::fold::fold;

pub(crate) const MAX_TEXT: usize = 1024 * 1024;
pub(crate) const MAX_HTML: usize = 4 * 1024 * 1024;
pub(crate) const MAX_DEPTH: usize = 8;
pub(crate) const MAX_PARTS: usize = 2000;

/// The indexed fields of one message, already folded.
#[derive(Debug, Default, Clone)]
pub(crate) struct IndexText {
    pub subject: String,
    pub sender: String,
    pub recipients: String,
    pub body: String,
    pub attachments: String,
    /// For the result list (not folded).
    pub subject_display: String,
    pub from_display: String,
    pub date: Option<i64>,
    pub has_attachment: bool,
    /// Why something was left out, for the log.
    pub truncated: Option<&'static str>,
}

pub(crate) fn extract(raw: &[u8]) -> Option<IndexText> {
    // Not indexed when nested too deeply to take apart (letterlock_mime).
    let message = letterlock_mime::parse(raw)?;
    let mut out = IndexText {
        subject_display: message.subject().unwrap_or_default().to_string(),
        date: message.date().map(|d| d.to_timestamp()),
        ..IndexText::default()
    };
    out.from_display = message.from().map(display).unwrap_or_default();
    out.subject = fold(&out.subject_display);
    out.sender = fold(&out.from_display);
    let recipients: Vec<String> = [message.to(), message.cc()]
        .into_iter()
        .flatten()
        .map(display)
        .collect();
    out.recipients = fold(&recipients.join(", "));
    let mut parts_seen = 0;
    walk(&message, 0, &mut parts_seen, &mut out);
    out.body = fold(&out.body);
    out.attachments = fold(&out.attachments);
    Some(out)
}

fn walk(message: &Message<'_>, depth: usize, parts_seen: &mut usize, out: &mut IndexText) {
    if depth > MAX_DEPTH {
        out.truncated = Some("messages nested too deeply");
        return;
    }
    for part in &message.parts {
        *parts_seen += 1;
        if *parts_seen > MAX_PARTS {
            out.truncated = Some("too many MIME parts");
            return;
        }
        if let Some(name) = part.attachment_name() {
            out.has_attachment = true;
            push(&mut out.attachments, name, usize::MAX, &mut None);
        }
        let room = MAX_TEXT.saturating_sub(out.body.len());
        match &part.body {
            PartType::Text(text) => push(&mut out.body, text, room, &mut out.truncated),
            PartType::Html(html) => {
                let cut = cut_at_char(html, MAX_HTML);
                if cut.len() < html.len() {
                    out.truncated = Some("an HTML part over 4 MiB was indexed in part");
                }
                let text = mail_parser::decoders::html::html_to_text(cut);
                push(&mut out.body, &text, room, &mut out.truncated);
            }
            PartType::Message(inner) => {
                if let Some(s) = inner.subject() {
                    push(&mut out.body, s, room, &mut out.truncated);
                }
                walk(inner, depth + 1, parts_seen, out);
            }
            _ => {}
        }
    }
}

fn push(into: &mut String, text: &str, room: usize, truncated: &mut Option<&'static str>) {
    if room == 0 {
        if !text.is_empty() {
            *truncated = Some("text over 1 MiB was indexed in part");
        }
        return;
    }
    let cut = cut_at_char(text, room);
    if cut.len() < text.len() {
        *truncated = Some("text over 1 MiB was indexed in part");
    }
    if !into.is_empty() {
        into.push('\n');
    }
    into.push_str(cut);
}

fn cut_at_char(text: &str, max: usize) -> &str {
    &text[..text.floor_char_boundary(max)]
}

fn display(address: &Address<'_>) -> String {
    let mut out = Vec::new();
    for a in address.iter() {
        match (a.name(), a.address()) {
            (Some(n), Some(e)) => out.push(format!("{n} <{e}>")),
            (None, Some(e)) => out.push(e.to_string()),
            (Some(n), None) => out.push(n.to_string()),
            (None, None) => {}
        }
    }
    out.join(", ")
}
