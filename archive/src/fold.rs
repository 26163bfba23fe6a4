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

#[cfg(test)]
mod tests {
    use super::fold;

    #[test]
    fn folds_sharp_s_and_ligatures() {
        assert_eq!(fold("Grüße"), "Grüsse");
        assert_eq!(fold("ﬁnal"), "final");
        assert_eq!(fold("ＡＢＣ"), "ABC");
    }
}
