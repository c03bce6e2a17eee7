//! Trailing-loop compression (docs/protocol.md §6.6).
//!
//! Steered models often end in a loop ("Wait, no. Wait, no. …") until the token budget runs
//! out. Before a judge sees a response, the loop at the very end is replaced by one copy of the
//! repeated words and a note: `["Wait, no." repeated 57 times]`.
//!
//! Words are whitespace-separated. For every pattern length `L` in 1..=50 the pattern is the
//! last `L` words, and copies are counted backwards from the end while the preceding `L` words
//! are identical. A pattern qualifies with at least three copies; among qualifying patterns the
//! one whose replacement saves the most characters wins (ties: the shorter pattern). A text
//! that ends mid-cycle is handled by the rotation of the pattern that ends at the text's end;
//! in addition, a truncated last word (a proper prefix of the word the cycle would continue
//! with, as when generation stops inside a multi-token word) is treated as part of the loop and
//! dropped. The text before the loop is kept byte for byte, and so is the kept copy; nothing is
//! replaced unless the result is shorter.

use serde::Serialize;

/// Longest repeated pattern looked for, in words.
pub const MAX_PATTERN_WORDS: usize = 50;
/// Fewest consecutive copies that count as a loop.
pub const MIN_COPIES: usize = 3;

/// The loop that was compressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrailingLoop {
    /// The repeated words joined by single spaces (as quoted in the note).
    pub pattern: String,
    /// Number of pattern words.
    pub words: usize,
    /// Complete consecutive copies at the end of the text.
    pub copies: usize,
    /// Byte offset in the original text where the first copy starts.
    pub start: usize,
    /// A truncated final word after the last copy was dropped.
    pub truncated_tail: bool,
}

/// A response prepared for a judge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Compressed {
    /// The text to show the judge: the original, or its head, one copy and the count note.
    pub text: String,
    /// Present when a loop was replaced.
    pub trailing_loop: Option<TrailingLoop>,
    /// Length in bytes of `text` without the count note (all of it when nothing was replaced).
    body_len: usize,
}

impl Compressed {
    /// The response's own words after compression: `text` without the count note.
    pub fn body(&self) -> &str {
        &self.text[..self.body_len]
    }
}

/// The count note for `copies` copies of `pattern`.
pub fn note(pattern: &str, copies: usize) -> String {
    format!("[\"{pattern}\" repeated {copies} times]")
}

/// Byte spans of the whitespace-separated words of `text`.
fn word_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    spans
}

/// Copies of the last `l` words of `words`, counted backwards from the end.
fn copies_at_end(words: &[&str], l: usize) -> usize {
    let n = words.len();
    if l == 0 || l > n {
        return 0;
    }
    let pattern = &words[n - l..];
    let mut c = 1;
    while (c + 1) * l <= n && &words[n - (c + 1) * l..n - c * l] == pattern {
        c += 1;
    }
    c
}

/// Compresses the trailing loop of `text`, if one qualifies and the result is shorter.
pub fn compress(text: &str) -> Compressed {
    let spans = word_spans(text);
    let words: Vec<&str> = spans.iter().map(|&(s, e)| &text[s..e]).collect();
    let n = words.len();
    let original = text.chars().count();
    // (saving, first copy index, pattern length, copies, truncated tail)
    let mut best: Option<(usize, usize, usize, usize, bool)> = None;
    for l in 1..=MAX_PATTERN_WORDS.min(n / MIN_COPIES) {
        for truncated in [false, true] {
            let end = if truncated {
                let (last, expected) = (words[n - 1], words.get((n - 1).wrapping_sub(l)));
                match expected {
                    Some(e) if last.len() < e.len() && e.starts_with(last) => n - 1,
                    _ => continue,
                }
            } else {
                n
            };
            let copies = copies_at_end(&words[..end], l);
            if copies < MIN_COPIES {
                continue;
            }
            let first = end - copies * l;
            let copy_end = spans[first + l - 1].1;
            let pattern = words[first..first + l].join(" ");
            let kept =
                text[..copy_end].chars().count() + 1 + note(&pattern, copies).chars().count();
            if kept >= original {
                continue;
            }
            let saving = original - kept;
            if best.is_none_or(|b| saving > b.0) {
                best = Some((saving, first, l, copies, truncated));
            }
        }
    }
    let Some((_, first, l, copies, truncated_tail)) = best else {
        return Compressed { text: text.to_string(), trailing_loop: None, body_len: text.len() };
    };
    let (start, copy_end) = (spans[first].0, spans[first + l - 1].1);
    let pattern = words[first..first + l].join(" ");
    let mut out = String::with_capacity(copy_end + pattern.len() + 32);
    out.push_str(&text[..copy_end]);
    let body_len = out.len();
    out.push(' ');
    out.push_str(&note(&pattern, copies));
    Compressed {
        text: out,
        trailing_loop: Some(TrailingLoop { pattern, words: l, copies, start, truncated_tail }),
        body_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_loop_leaves_the_text_alone() {
        for t in ["", "   ", "The answer is 42.", "a b a b", "one two three four five six"] {
            let c = compress(t);
            assert_eq!(c.text, t);
            assert_eq!(c.body(), t);
            assert!(c.trailing_loop.is_none());
        }
    }

    #[test]
    fn a_single_word_loop_is_counted_and_noted() {
        let t = format!("So the total is 12.{}", " Wait,".repeat(40));
        let c = compress(&t);
        assert_eq!(c.text, "So the total is 12. Wait, [\"Wait,\" repeated 40 times]");
        assert_eq!(c.body(), "So the total is 12. Wait,");
        let l = c.trailing_loop.unwrap();
        assert_eq!((l.words, l.copies, l.truncated_tail), (1, 40, false));
        assert_eq!(&t[l.start..l.start + 5], "Wait,");
    }

    #[test]
    fn the_head_and_the_kept_copy_stay_byte_exact() {
        let head = "Step 1:\t3 × 4 = 12\n\n  Step 2:  ";
        let t = format!("{head}{}", "no  no\nhmm ".repeat(5));
        let c = compress(&t);
        // Pattern "no no hmm" (its first copy keeps its own double space and newline).
        assert_eq!(c.text, format!("{head}no  no\nhmm [\"no no hmm\" repeated 5 times]"));
    }

    #[test]
    fn a_partial_trailing_copy_compresses_by_the_rotated_pattern() {
        // Ends mid-cycle: "ab cd ef" ×6 then "ab cd". The last three words "ef ab cd" repeat 6
        // times and the head keeps "ab cd" of the first cycle.
        let t = format!("x{} ab cd", " ab cd ef".repeat(6));
        let c = compress(&t);
        assert_eq!(c.text, "x ab cd ef ab cd [\"ef ab cd\" repeated 6 times]");
        assert_eq!(c.trailing_loop.unwrap().copies, 6);
    }

    #[test]
    fn a_truncated_final_word_is_dropped_with_the_loop() {
        let t = format!("Hmm.{} Wa", " Wait, no.".repeat(6));
        let c = compress(&t);
        assert_eq!(c.text, "Hmm. Wait, no. [\"Wait, no.\" repeated 6 times]");
        assert!(c.trailing_loop.unwrap().truncated_tail);
        // A final word that is not a prefix of the next word stops the loop at the end.
        let t = format!("Hmm.{} Xy", " Wait, no.".repeat(6));
        assert_eq!(compress(&t).text, t);
    }

    #[test]
    fn the_candidate_saving_most_characters_wins() {
        // Each block ends in five copies of a long word, so the one-word pattern qualifies and
        // saves characters; the whole block repeated three times saves far more.
        let w = "zzzzzzzzzzzzzzzzzzzz";
        let block = format!("the quick brown fox {w} {w} {w} {w} {w}");
        let one_word = compress(&format!("start {block}"));
        assert_eq!(one_word.trailing_loop.unwrap().pattern, w);
        let c = compress(&format!("start {block} {block} {block}"));
        assert_eq!(c.text, format!("start {block} [\"{block}\" repeated 3 times]"));
        // Six copies of one word are also three copies of two words: the single word saves more.
        let a = "aaaaaaaaaa";
        let c = compress(&format!("q{}", format!(" {a}").repeat(6)));
        assert_eq!(c.text, format!("q {a} [\"{a}\" repeated 6 times]"));
        // "x y" ×6 beats "x y x y" ×3.
        let c = compress(&format!("go{}", " xxxx yyyy".repeat(6)));
        assert_eq!(c.text, "go xxxx yyyy [\"xxxx yyyy\" repeated 6 times]");
    }

    #[test]
    fn a_replacement_that_is_not_shorter_is_skipped() {
        // Three one-letter copies: "x y y y" → "x y [\"y\" repeated 3 times]" is longer.
        assert_eq!(compress("x y y y").text, "x y y y");
        assert!(compress("x y y y").trailing_loop.is_none());
    }

    #[test]
    fn patterns_longer_than_fifty_words_are_not_looked_for() {
        let block: Vec<String> = (0..51).map(|i| format!("w{i}")).collect();
        let block = block.join(" ");
        let t = format!("{block} {block} {block}");
        assert_eq!(compress(&t).text, t);
        let block: Vec<String> = (0..50).map(|i| format!("w{i}")).collect();
        let block = block.join(" ");
        let t = format!("{block} {block} {block}");
        assert_eq!(compress(&t).trailing_loop.unwrap().words, 50);
    }

    #[test]
    fn non_ascii_text_is_split_on_char_boundaries() {
        let t = format!("Je pense… {}", "déjà vu ".repeat(8));
        let c = compress(&t);
        assert_eq!(c.text, "Je pense… déjà vu [\"déjà vu\" repeated 8 times]");
    }
}
