//! Text folding applied to indexed text and to queries alike.
//!
//! FTS5's `unicode61` tokenizer folds case and removes diacritics
//! (`remove_diacritics 2`), but it leaves compatibility forms and `ß`
//! alone. NFKC turns ligatures and full-width letters into plain ones, and
//! `ß`/`ẞ` become `ss`, so "Grüße", "GRÜSSE" and "grusse" meet.

use unicode_normalization::UnicodeNormalization;

pub(crate) fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.nfkc() {
        match c {
            'ß' | 'ẞ' => out.push_str("ss"),
            c => out.push(c),
        }
    }
    out
}

/// The words of `text` as the index holds them: folded, and split where
/// FTS5's tokenizer splits (anything not a letter or digit), joined by
/// single spaces. Empty when `text` has no word characters. Every term a
/// query sends to FTS5 is made of these, quoted, so punctuation inside a
/// word is a phrase boundary there as in the index, and no input is ever
/// read as FTS5 syntax.
pub(crate) fn words(text: &str) -> String {
    fold(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::{fold, words};

    #[test]
    fn folds_sharp_s_and_ligatures() {
        assert_eq!(fold("Grüße"), "Grüsse");
        assert_eq!(fold("ﬁnal"), "final");
        assert_eq!(fold("ＡＢＣ"), "ABC");
    }

    #[test]
    fn words_are_split_where_the_tokenizer_splits() {
        assert_eq!(words(" Grüße,  aus--Köln! "), "Grüsse aus Köln");
        assert_eq!(words("a\"b OR c*"), "a b OR c");
        assert_eq!(words(" -- "), "");
    }
}
