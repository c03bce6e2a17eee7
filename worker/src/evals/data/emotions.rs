//! The stimulus corpus for emotion concept vectors (docs/protocol.md §5.3): short first-person
//! texts expressing one emotion each, plus emotionally neutral texts for the PCA denoising step.
//!
//! The built-in corpus (`worker/data/emotions.jsonl`, written for wax) is far smaller than the
//! paper's (171 emotions, many stories each); it spans valence and arousal and includes every
//! emotion named in the paper's Table 8 that is an adjective.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{DataError, parse_jsonl, read_text};

/// The emotion label that marks neutral texts in a corpus file.
pub const NEUTRAL: &str = "neutral";

/// One story expressing an emotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stimulus {
    /// The emotion (lower case).
    pub emotion: String,
    /// The text.
    pub text: String,
}

/// Emotion stories and neutral texts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EmotionCorpus {
    /// The stories, in file order.
    pub stories: Vec<Stimulus>,
    /// The neutral texts, in file order.
    pub neutral: Vec<String>,
}

impl EmotionCorpus {
    /// The distinct emotions of the stories, sorted.
    pub fn emotions(&self) -> Vec<String> {
        let mut out: Vec<String> = self.stories.iter().map(|s| s.emotion.clone()).collect();
        out.sort();
        out.dedup();
        out
    }

    /// Checks that the corpus can give emotion vectors: at least 2 emotions, at least 2 stories
    /// for each, at least 8 neutral texts, and no blank text or emotion name.
    pub fn validate(&self) -> Result<(), DataError> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (k, s) in self.stories.iter().enumerate() {
            if s.emotion.trim().is_empty() {
                return Err(DataError::Corpus(format!("story {k} has a blank emotion")));
            }
            if s.text.trim().is_empty() {
                return Err(DataError::Corpus(format!("story {k} ({}) is blank", s.emotion)));
            }
            *counts.entry(&s.emotion).or_default() += 1;
        }
        if counts.len() < 2 {
            return Err(DataError::Corpus(format!(
                "needs at least 2 emotions, found {}",
                counts.len()
            )));
        }
        if let Some((emotion, n)) = counts.iter().find(|(_, n)| **n < 2) {
            return Err(DataError::Corpus(format!(
                "emotion {emotion:?} has {n} story, needs at least 2"
            )));
        }
        if self.neutral.len() < 8 {
            return Err(DataError::Corpus(format!(
                "needs at least 8 neutral texts, found {}",
                self.neutral.len()
            )));
        }
        if let Some(k) = self.neutral.iter().position(|t| t.trim().is_empty()) {
            return Err(DataError::Corpus(format!("neutral text {k} is blank")));
        }
        Ok(())
    }
}

/// Parses corpus JSONL (`path` only labels errors): one `{"emotion", "text"}` object per line;
/// emotions are trimmed and lower-cased; lines whose emotion is `neutral` form the neutral set.
fn parse_corpus(text: &str, path: &Path) -> Result<EmotionCorpus, DataError> {
    let mut corpus = EmotionCorpus::default();
    for rec in parse_jsonl(text, path)? {
        let emotion = rec.non_empty(path, "emotion")?.trim().to_lowercase();
        let text = rec.non_empty(path, "text")?.trim().to_string();
        if emotion == NEUTRAL {
            corpus.neutral.push(text);
        } else {
            corpus.stories.push(Stimulus { emotion, text });
        }
    }
    Ok(corpus)
}

/// The embedded corpus file.
const BUILTIN: &str = include_str!("../../../data/emotions.jsonl");

/// The built-in corpus: 46 emotions spanning valence and arousal (happy, proud, grateful,
/// inspired, loving, calm, ... angry, annoyed, ashamed, humiliated, afraid, lonely, bored, ...)
/// with 6 first-person texts each, and 48 neutral texts, all written for wax.
pub fn builtin_emotion_corpus() -> EmotionCorpus {
    // The embedded file is checked by this module's tests, so parsing cannot fail at run time.
    parse_corpus(BUILTIN, Path::new("worker/data/emotions.jsonl"))
        .unwrap_or_else(|e| unreachable!("embedded emotion corpus: {e}"))
}

/// Loads a corpus from JSONL `{"emotion", "text"}` lines (see [`builtin_emotion_corpus`] for
/// the layout) and validates it.
pub fn load_emotion_corpus(path: &Path) -> Result<EmotionCorpus, DataError> {
    let corpus = parse_corpus(&read_text(path)?, path)?;
    corpus.validate().map_err(|e| match e {
        DataError::Corpus(m) => DataError::file(path, m),
        other => other,
    })?;
    Ok(corpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_corpus_is_rich_and_valid() {
        let c = builtin_emotion_corpus();
        c.validate().unwrap();
        let emotions = c.emotions();
        assert!(emotions.len() >= 32, "{}", emotions.len());
        for e in &emotions {
            let n = c.stories.iter().filter(|s| &s.emotion == e).count();
            assert_eq!(n, 6, "{e}");
        }
        assert!(c.neutral.len() >= 40);
        // Both ends of valence and arousal, and the paper's Table 8 adjectives.
        for e in [
            "happy",
            "proud",
            "grateful",
            "inspired",
            "loving",
            "calm",
            "content",
            "hopeful",
            "relieved",
            "excited",
            "amused",
            "blissful",
            "fulfilled",
            "thankful",
            "angry",
            "annoyed",
            "irritated",
            "exasperated",
            "offended",
            "insulted",
            "ashamed",
            "embarrassed",
            "humiliated",
            "afraid",
            "anxious",
            "sad",
            "lonely",
            "bored",
            "frustrated",
            "disgusted",
            "bitter",
            "guilty",
            "jealous",
        ] {
            assert!(emotions.iter().any(|x| x == e), "missing {e}");
        }
        let mut texts: Vec<&str> = c.stories.iter().map(|s| s.text.as_str()).collect();
        texts.extend(c.neutral.iter().map(String::as_str));
        let unique: std::collections::HashSet<_> = texts.iter().collect();
        assert_eq!(unique.len(), texts.len(), "duplicate texts");
        for t in texts {
            let sentences = t.matches(['.', '!', '?']).count();
            assert!((1..=6).contains(&sentences) && t.len() <= 240, "{t}");
            let first_person = t.split(|c: char| !c.is_alphabetic()).any(|w| {
                matches!(w, "I" | "me" | "my" | "My" | "we" | "We" | "us" | "our" | "Our")
            });
            assert!(first_person, "not first person: {t}");
        }
        // Not every story names its emotion.
        let naming =
            c.stories.iter().filter(|s| s.text.to_lowercase().contains(&s.emotion)).count();
        assert!(naming < c.stories.len() / 4, "{naming}");
        assert_eq!(builtin_emotion_corpus(), c);
    }

    #[test]
    fn emotions_are_sorted_unique() {
        let c = EmotionCorpus {
            stories: ["sad", "calm", "sad", "angry"]
                .iter()
                .map(|e| Stimulus { emotion: e.to_string(), text: "t".into() })
                .collect(),
            neutral: vec![],
        };
        assert_eq!(c.emotions(), vec!["angry", "calm", "sad"]);
    }

    #[test]
    fn validate_rejects_thin_corpora() {
        let story = |e: &str| Stimulus { emotion: e.into(), text: format!("I feel {e}.") };
        let neutral: Vec<String> = (0..8).map(|k| format!("I did task {k}.")).collect();
        let ok = EmotionCorpus {
            stories: vec![story("sad"), story("sad"), story("calm"), story("calm")],
            neutral: neutral.clone(),
        };
        ok.validate().unwrap();
        let one = EmotionCorpus { stories: vec![story("sad"), story("sad")], ..ok.clone() };
        assert_eq!(
            one.validate().unwrap_err().to_string(),
            "emotion corpus: needs at least 2 emotions, found 1"
        );
        let mut thin = ok.clone();
        thin.stories.pop();
        assert_eq!(
            thin.validate().unwrap_err().to_string(),
            "emotion corpus: emotion \"calm\" has 1 story, needs at least 2"
        );
        let few = EmotionCorpus { neutral: neutral[..7].to_vec(), ..ok.clone() };
        assert!(few.validate().unwrap_err().to_string().contains("at least 8 neutral"));
        let mut blank = ok.clone();
        blank.stories[1].text = "  ".into();
        assert!(blank.validate().is_err());
    }

    #[test]
    fn loads_corpus_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("emo.jsonl");
        let mut body = String::new();
        for e in ["Sad", "calm"] {
            for k in 0..2 {
                body.push_str(&format!("{{\"emotion\": \" {e} \", \"text\": \"story {k}\"}}\n"));
            }
        }
        for k in 0..8 {
            body.push_str(&format!("{{\"emotion\": \"NEUTRAL\", \"text\": \"note {k}\"}}\r\n"));
        }
        std::fs::write(&p, &body).unwrap();
        let c = load_emotion_corpus(&p).unwrap();
        assert_eq!(c.emotions(), vec!["calm", "sad"]);
        assert_eq!(c.neutral.len(), 8);
        assert_eq!(c.neutral[0], "note 0");

        let err = |body: &str| {
            std::fs::write(&p, body).unwrap();
            let e = load_emotion_corpus(&p).unwrap_err().to_string();
            e.strip_prefix(&p.display().to_string()).unwrap().to_string()
        };
        assert_eq!(
            err(&format!("{body}{{\"emotion\": \"sad\"}}\n")),
            ":13: field \"text\": missing"
        );
        assert_eq!(
            err(&format!("{body}\n{{\"emotion\": \"\", \"text\": \"x\"}}\n")),
            ":14: field \"emotion\": empty"
        );
        assert!(
            err("{\"emotion\": \"sad\", \"text\": \"x\"}\n")
                .starts_with(": needs at least 2 emotions")
        );
        let e = err("not json\n");
        assert!(e.starts_with(":1:") && e.contains(": invalid JSON: "), "{e}");
    }
}
