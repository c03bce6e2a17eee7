//! Evaluation datasets: loaders for local files and built-in offline sets.
//!
//! - [`math`]: GSM8K problems (backtracking, correctness tracking; docs/protocol.md §6.3).
//! - [`mcq`]: MMLU four-choice questions (confidence; §6.4).
//! - [`shortqa`]: SimpleQA-Verified short factual questions (confidence; §6.4).
//! - [`refusal`]: OR-Bench prompts in three splits (over-refusal; §6.5).
//! - [`sentiment`]: the paper's 40 sentiment prompts, verbatim (§6.2).
//! - [`emotions`]: the emotion stimulus corpus for emotion vectors (§5.3).
//! - [`sample`]: stratified subsampling (layer sweep, judge cross-check; §6.8–§6.9).
//!
//! Every loader reads a local file and reports bad input as a [`DataError`] naming the file and
//! line; every built-in set is generated or embedded, needs no network and is deterministic.

pub mod csv;
pub mod emotions;
pub mod error;
pub mod math;
pub mod mcq;
pub mod refusal;
pub mod sample;
pub mod sentiment;
pub mod shortqa;

pub use csv::{CsvRecord, CsvSyntaxError, parse_csv};
pub use emotions::{EmotionCorpus, Stimulus, builtin_emotion_corpus, load_emotion_corpus};
pub use error::DataError;
pub use math::{MathProblem, builtin_math, extract_final_number, load_gsm8k, math_correct};
pub use mcq::{Mcq, builtin_mcq, format_mcq, load_mmlu};
pub use refusal::{OrSplit, RefusalPrompt, builtin_refusal, load_orbench};
pub use sample::stratified_sample;
pub use sentiment::{PromptCategory, SentimentPrompt, TileWords, sentiment_prompts};
pub use shortqa::{ShortQa, builtin_short_qa, load_simpleqa, short_answer_matches};
