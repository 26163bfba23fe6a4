//! Text folding applied to indexed text and to queries alike.
//!
//! FTS5's `unicode61` tokenizer folds case and removes diacritics
//! (`remove_diacritics 2`), but it leaves compatibility forms and `ß`
//! alone. NFKC turns ligatures and full-width letters into plain ones, and
//! `ß`/`ẞ` become `ss`, so "Grüße", "GRÜSSE" and "grusse" meet.

use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

pub(crate) fn fold(text: &str) -> String {
    // Composing NFKC char by char was a twentieth of a first mailbox read's
    // CPU; nearly all mail text is already in NFKC (ASCII, or precomposed
    // letters), which the quick check sees without composing anything.
    if text.is_ascii() {
        return text.to_string();
    }
    if is_nfkc_quick(text.chars()) == IsNormalized::Yes {
        return sharp_s_as_ss(text.chars(), text.len());
    }
    sharp_s_as_ss(text.nfkc(), text.len())
}

fn sharp_s_as_ss(chars: impl Iterator<Item = char>, len: usize) -> String {
    let mut out = String::with_capacity(len);
    for c in chars {
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
        assert_eq!(fold("GRÜẞE"), "GRÜssE");
        assert_eq!(fold("ﬁnal"), "final");
        assert_eq!(fold("ＡＢＣ"), "ABC");
        assert_eq!(fold("plain ascii"), "plain ascii");
        // Decomposed (what some clients send) meets precomposed.
        assert_eq!(fold("Gru\u{308}ße"), "Grüsse");
    }

    /// Full NFKC, then the sharp s: what [`fold`]'s shortcuts must equal.
    fn full(text: &str) -> String {
        use unicode_normalization::UnicodeNormalization;
        text.nfkc()
            .flat_map(|c| match c {
                'ß' | 'ẞ' => vec!['s', 's'],
                c => vec![c],
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn shortcuts_agree_with_full_normalization_on_any_text(text in "\\PC*") {
            proptest::prop_assert_eq!(fold(&text), full(&text));
        }
    }

    /// The shortcuts give what full NFKC gives, on text of every kind.
    #[test]
    fn shortcuts_agree_with_full_normalization() {
        for text in [
            "",
            "Subject: hello",
            "Viele Grüße aus Köln",
            "e\u{301}te\u{301}",
            "ﬀ ㎏ ①",
            "東京 ｶﾀｶﾅ",
            "Straße ẞ",
            "\u{1E9B}\u{323}",
        ] {
            assert_eq!(fold(text), full(text), "{text:?}");
        }
    }

    #[test]
    fn words_are_split_where_the_tokenizer_splits() {
        assert_eq!(words(" Grüße,  aus--Köln! "), "Grüsse aus Köln");
        assert_eq!(words("a\"b OR c*"), "a b OR c");
        assert_eq!(words(" -- "), "");
    }
}
