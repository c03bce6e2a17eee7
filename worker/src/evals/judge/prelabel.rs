//! Deterministic backtracking labels decided without a judge (docs/protocol.md §6.3).
//!
//! Applied to the compressed response (§6.6), in this order:
//! 1. at least 6 words, more than half of them from {wait, no, hmm, can't, cannot} →
//!    `nonsensical`;
//! 2. at most 10 words and a digit among them → `normal`.
//!
//! Words are whitespace-separated, compared case-insensitively after stripping punctuation
//! around them (`Wait,` `No!` `hmm?` `"can't"` all count; a typographic apostrophe is read as
//! `'`). The rules look at the response's own words after compression — the kept text and one
//! copy of a compressed loop — not at the count note, whose number is not the response's. A
//! response whose trailing loop was compressed is never pre-labelled `normal` (a looping short
//! number such as "42 42 42 …" goes to the judge).

use super::compress::Compressed;
use super::labels::BacktrackClass;

/// Words that make up degenerate "Wait / No / Hmm" loops.
pub const DOUBT_WORDS: [&str; 5] = ["wait", "no", "hmm", "can't", "cannot"];

/// A word lower-cased, with surrounding punctuation removed.
fn bare(word: &str) -> String {
    word.replace('\u{2019}', "'").trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase()
}

/// The pre-label of a compressed response and the reason, or `None` when a judge must decide.
pub fn prelabel_backtracking(c: &Compressed) -> Option<(BacktrackClass, String)> {
    let words: Vec<&str> = c.body().split_whitespace().collect();
    let n = words.len();
    let doubt = words.iter().filter(|w| DOUBT_WORDS.contains(&bare(w).as_str())).count();
    if n >= 6 && 2 * doubt > n {
        return Some((
            BacktrackClass::Nonsensical,
            format!("pre-label: {doubt} of {n} words are wait/no/hmm/can't/cannot"),
        ));
    }
    if n <= 10 && c.trailing_loop.is_none() && c.body().contains(|ch: char| ch.is_ascii_digit()) {
        return Some((BacktrackClass::Normal, format!("pre-label: {n} words including a digit")));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::compress::compress;
    use super::*;

    fn pre(t: &str) -> Option<BacktrackClass> {
        prelabel_backtracking(&compress(t)).map(|p| p.0)
    }

    #[test]
    fn doubt_word_majorities_are_nonsensical() {
        assert_eq!(pre("Wait, no. Hmm? Wait! No... cannot"), Some(BacktrackClass::Nonsensical));
        assert_eq!(
            pre("WAIT wait \u{201c}can\u{2019}t\u{201d} no hmm x"),
            Some(BacktrackClass::Nonsensical)
        );
        // Exactly half is not more than half.
        assert_eq!(pre("wait no hmm a b c"), None);
        // Fewer than six words never qualify.
        assert_eq!(pre("wait no hmm wait no"), None);
    }

    #[test]
    fn short_answers_with_a_digit_are_normal() {
        assert_eq!(pre("The answer is 42."), Some(BacktrackClass::Normal));
        assert_eq!(pre("18"), Some(BacktrackClass::Normal));
        assert_eq!(
            pre("one two three four five six seven eight nine 10"),
            Some(BacktrackClass::Normal)
        );
        assert_eq!(pre("one two three four five six seven eight nine ten 11"), None);
        assert_eq!(pre("The answer is forty-two."), None);
    }

    #[test]
    fn the_count_note_is_not_part_of_the_response() {
        // "Wait," ×40 compresses to one copy and a note with "40" in it: no digit rule, and a
        // one-word body is below the six-word threshold, so the judge decides.
        let t = format!("Hmm{}", " Wait,".repeat(40));
        assert!(compress(&t).trailing_loop.is_some());
        assert_eq!(pre(&t), None);
        // A looping number is not a terse answer.
        assert_eq!(pre(&"42 ".repeat(30)), None);
    }

    #[test]
    fn the_reason_names_the_rule() {
        let (_, why) = prelabel_backtracking(&compress("no no no no no no")).unwrap();
        assert!(why.contains("6 of 6"), "{why}");
    }
}
