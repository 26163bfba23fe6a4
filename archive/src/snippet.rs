//! Snippets computed here rather than by FTS5's `snippet()`, whose cost grows
//! with the square of the hits in a document: one hostile message repeating a
//! common word 200,000 times made every search for that word take minutes.
//! This walks the text once, up to the first hit, and marks it with `[ ]`.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// A word the user searched for (already folded), and whether it is a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Needle {
    pub word: String,
    pub prefix: bool,
}

impl Needle {
    pub fn new(folded: &str, prefix: bool) -> Self {
        Needle {
            word: comparable(folded),
            prefix,
        }
    }

    fn matches(&self, word: &str) -> bool {
        if self.prefix {
            word.starts_with(&self.word)
        } else {
            word == self.word
        }
    }
}

const BEFORE: usize = 6;
const AFTER: usize = 12;
/// Texts are bounded when indexed; this bounds the scan again for safety.
const MAX_SCAN: usize = 2 * 1024 * 1024;

/// Lower case without diacritics, as FTS5's unicode61 compares words.
fn comparable(word: &str) -> String {
    word.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// A window of words around the first hit, or the opening words.
pub(crate) fn snippet(text: &str, needles: &[Needle]) -> String {
    let text = &text[..floor_boundary(text, MAX_SCAN)];
    let words: Vec<(usize, usize)> = word_spans(text);
    let hit = words.iter().position(|&(s, e)| {
        let w = comparable(&text[s..e]);
        needles.iter().any(|n| n.matches(&w))
    });
    let (from, to) = match hit {
        Some(i) => (i.saturating_sub(BEFORE), (i + AFTER).min(words.len())),
        None => (0, AFTER.min(words.len())),
    };
    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    for (k, &(s, e)) in words[from..to].iter().enumerate() {
        if k > 0 {
            out.push(' ');
        }
        let marked = hit == Some(from + k);
        if marked {
            out.push('[');
        }
        out.push_str(&text[s..e]);
        if marked {
            out.push(']');
        }
    }
    if to < words.len() {
        out.push('…');
    }
    out
}

fn word_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    spans
}

fn floor_boundary(text: &str, max: usize) -> usize {
    text.floor_char_boundary(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_the_first_hit() {
        let n = [Needle::new("lighthouse", false)];
        assert_eq!(
            snippet("We meet at the old Lighthouse at midnight.", &n),
            "We meet at the old [Lighthouse] at midnight"
        );
        let p = [Needle::new("encr", true)];
        assert_eq!(
            snippet("one two three four five six seven eight Encryption", &p),
            "…three four five six seven eight [Encryption]"
        );
        let u = [Needle::new("grusse", false)];
        assert_eq!(snippet("Viele Grüsse", &u), "Viele [Grüsse]");
        assert_eq!(snippet("no hit here", &u), "no hit here");
    }
}
