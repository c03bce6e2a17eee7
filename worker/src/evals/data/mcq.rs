//! Four-choice questions for the confidence and correctness-tracking evaluations
//! (docs/protocol.md §6.4): an MMLU loader (original CSV release or JSONL), a generated offline
//! set, and the prompt format.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::csv::parse_csv;
use super::error::{DataError, json_kind, parse_jsonl, read_text};
use crate::rng::{Stream, WaxRng};

/// The option letters, in order.
pub const LETTERS: [char; 4] = ['A', 'B', 'C', 'D'];

/// One four-choice question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mcq {
    /// Stable identifier: `<subject>-<index>` (0-based index within the subject's file), or the
    /// JSONL `"id"` field when present.
    pub id: String,
    /// MMLU subject, e.g. `high_school_biology`; `builtin_<kind>` for the built-in set.
    pub subject: String,
    /// The question text.
    pub question: String,
    /// The options A–D.
    pub choices: [String; 4],
    /// Index (0..4) of the correct option.
    pub answer: usize,
}

/// The subject of an MMLU file name: `<subject>_test.csv` (or `_dev`, `_val`) → `<subject>`.
fn subject_of(path: &Path) -> String {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("unknown");
    ["_test", "_dev", "_val"]
        .iter()
        .find_map(|suffix| stem.strip_suffix(suffix))
        .unwrap_or(stem)
        .to_string()
}

/// Parses an answer letter (`A`–`D`, any case, surrounding spaces ignored).
fn letter_index(s: &str) -> Option<usize> {
    let t = s.trim();
    let mut chars = t.chars();
    let c = chars.next()?.to_ascii_uppercase();
    if chars.next().is_some() {
        return None;
    }
    LETTERS.iter().position(|&l| l == c)
}

/// Reads one MMLU CSV of the original release: no header, six fields per row (question, the
/// four options, the answer letter).
fn load_mmlu_csv(path: &Path, subject: &str) -> Result<Vec<Mcq>, DataError> {
    let text = read_text(path)?;
    let records = parse_csv(&text).map_err(|e| e.in_file(path))?;
    let mut out = Vec::with_capacity(records.len());
    for (index, rec) in records.into_iter().enumerate() {
        let line = rec.line;
        let fields: Result<[String; 6], Vec<String>> = rec.fields.try_into();
        let [question, a, b, c, d, letter] = match fields {
            Ok(f) => f,
            Err(f) => {
                return Err(DataError::record(
                    path,
                    line,
                    format!(
                        "expected 6 fields (question, A, B, C, D, answer letter), found {}",
                        f.len()
                    ),
                ));
            }
        };
        if question.trim().is_empty() {
            return Err(DataError::field(path, line, "question", "empty"));
        }
        let answer = letter_index(&letter).ok_or_else(|| {
            DataError::field(
                path,
                line,
                "answer",
                format!("expected A, B, C or D, found {letter:?}"),
            )
        })?;
        out.push(Mcq {
            id: format!("{subject}-{index}"),
            subject: subject.to_string(),
            question,
            choices: [a, b, c, d],
            answer,
        });
    }
    Ok(out)
}

/// Reads MMLU as JSONL: `{"question", "subject", "choices": [4 strings], "answer": 0..3 or
/// "A".."D"}`, optional `"id"`. A missing subject falls back to the file name's.
fn load_mmlu_jsonl(path: &Path) -> Result<Vec<Mcq>, DataError> {
    let text = read_text(path)?;
    let fallback = subject_of(path);
    let mut counters = std::collections::BTreeMap::<String, usize>::new();
    let mut out = Vec::new();
    for rec in parse_jsonl(&text, path)? {
        let line = rec.line;
        let question = rec.non_empty(path, "question")?;
        let subject = match rec.object.get("subject") {
            None | Some(Value::Null) => fallback.clone(),
            Some(_) => rec.non_empty(path, "subject")?.trim().to_string(),
        };
        let choices = match rec.object.get("choices") {
            Some(Value::Array(items)) if items.len() == 4 => {
                let mut texts = Vec::with_capacity(4);
                for (k, item) in items.iter().enumerate() {
                    texts.push(match item {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        other => {
                            return Err(DataError::field(
                                path,
                                line,
                                "choices",
                                format!("option {k} is {}, expected a string", json_kind(other)),
                            ));
                        }
                    });
                }
                let mut texts = texts.into_iter();
                std::array::from_fn(|_| texts.next().unwrap_or_default())
            }
            Some(Value::Array(items)) => {
                return Err(DataError::field(
                    path,
                    line,
                    "choices",
                    format!("expected 4 options, found {}", items.len()),
                ));
            }
            Some(other) => {
                return Err(DataError::field(
                    path,
                    line,
                    "choices",
                    format!("expected an array of 4 options, found {}", json_kind(other)),
                ));
            }
            None => return Err(DataError::field(path, line, "choices", "missing")),
        };
        let answer = match rec.object.get("answer") {
            Some(Value::Number(n)) => n.as_u64().filter(|&k| k < 4).map(|k| k as usize),
            Some(Value::String(s)) => {
                letter_index(s).or_else(|| s.trim().parse::<usize>().ok().filter(|&k| k < 4))
            }
            Some(_) => None,
            None => return Err(DataError::field(path, line, "answer", "missing")),
        }
        .ok_or_else(|| {
            let found = rec.object.get("answer").map(|v| v.to_string()).unwrap_or_default();
            DataError::field(
                path,
                line,
                "answer",
                format!("expected 0-3 or a letter A-D, found {found}"),
            )
        })?;
        let counter = counters.entry(subject.clone()).or_default();
        let id = rec.optional_id(path, "id")?.unwrap_or_else(|| format!("{subject}-{counter}"));
        *counter += 1;
        out.push(Mcq { id, subject, question, choices, answer });
    }
    Ok(out)
}

/// The `<subject>_test.csv` files of a directory (or of its `test/` subdirectory, as in the
/// original release's `data/` folder), sorted by name.
fn mmlu_test_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let list = |d: &Path| -> Result<Vec<PathBuf>, DataError> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(d).map_err(|e| DataError::io(d, e))? {
            let p = entry.map_err(|e| DataError::io(d, e))?.path();
            let is_test_csv =
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("_test.csv"));
            if is_test_csv && p.is_file() {
                files.push(p);
            }
        }
        files.sort();
        Ok(files)
    };
    let files = list(dir)?;
    if files.is_empty() && dir.join("test").is_dir() {
        return list(&dir.join("test"));
    }
    Ok(files)
}

/// Loads MMLU questions from
/// - a `.csv` file of the original release (no header; question, A, B, C, D, answer letter; the
///   subject comes from the file name `<subject>_test.csv`),
/// - a directory of such `<subject>_test.csv` files (or one whose `test/` subdirectory holds
///   them), read in file-name order, or
/// - a `.jsonl` file of `{"question", "subject", "choices": [4], "answer": 0..3 or "A".."D"}`.
///
/// With `subject_prefix` (the paper uses `"high_school_"`), only subjects starting with it are
/// kept; files of other subjects are not even read. Finding no question is an error.
pub fn load_mmlu(path: &Path, subject_prefix: Option<&str>) -> Result<Vec<Mcq>, DataError> {
    let keep = |subject: &str| subject_prefix.is_none_or(|p| subject.starts_with(p));
    let mut out = Vec::new();
    if path.is_dir() {
        let files = mmlu_test_files(path)?;
        if files.is_empty() {
            return Err(DataError::file(path, "no <subject>_test.csv files in directory"));
        }
        for file in files {
            let subject = subject_of(&file);
            if keep(&subject) {
                out.extend(load_mmlu_csv(&file, &subject)?);
            }
        }
    } else {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => {
                let subject = subject_of(path);
                if keep(&subject) {
                    out = load_mmlu_csv(path, &subject)?;
                }
            }
            Some("jsonl") => {
                out = load_mmlu_jsonl(path)?;
                out.retain(|q| keep(&q.subject));
            }
            _ if !path.exists() => {
                return Err(DataError::io(path, std::io::ErrorKind::NotFound.into()));
            }
            _ => {
                return Err(DataError::file(
                    path,
                    "unsupported MMLU file (expected .csv, .jsonl or a directory)",
                ));
            }
        }
    }
    if out.is_empty() {
        let why = match subject_prefix {
            Some(p) => format!("no questions with a subject starting with {p:?}"),
            None => "no questions".to_string(),
        };
        return Err(DataError::file(path, why));
    }
    Ok(out)
}

/// The prompt for a question: the question, the options on lettered lines and an instruction to
/// answer with a letter.
pub fn format_mcq(q: &Mcq) -> String {
    let mut s = q.question.trim_end().to_string();
    for (letter, choice) in LETTERS.iter().zip(&q.choices) {
        s.push_str(&format!("\n{letter}. {}", choice.trim()));
    }
    s.push_str("\nAnswer with the letter of the correct option (A, B, C or D).");
    s
}

/// Unit conversions of the built-in set: (larger unit, smaller unit, smaller per larger).
const UNITS: &[(&str, &str, u64)] = &[
    ("kilometres", "metres", 1000),
    ("metres", "centimetres", 100),
    ("hours", "minutes", 60),
    ("minutes", "seconds", 60),
    ("days", "hours", 24),
    ("weeks", "days", 7),
    ("kilograms", "grams", 1000),
    ("litres", "millilitres", 1000),
    ("years", "months", 12),
];

const PRIMES: &[u64] =
    &[11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97];
const ODD_COMPOSITES: &[u64] =
    &[15, 21, 25, 27, 33, 35, 39, 45, 49, 51, 55, 57, 63, 65, 69, 75, 77, 81, 85, 87, 91, 93, 95];

/// Formats thousandths as a short decimal (`450` → `0.45`, `2000` → `2`).
fn thousandths(v: u64) -> String {
    let s = format!("{}.{:03}", v / 1000, v % 1000);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Builds a question: the correct option goes to a random position, the first three usable
/// distractors (distinct, different from the answer) fill the rest; `None` if fewer than three.
fn assemble(
    rng: &mut WaxRng,
    subject: &str,
    question: String,
    correct: String,
    candidates: Vec<String>,
) -> Option<(String, String, [String; 4], usize)> {
    let mut wrong: Vec<String> = Vec::new();
    for c in candidates {
        if c != correct && !wrong.contains(&c) {
            wrong.push(c);
        }
    }
    if wrong.len() < 3 {
        return None;
    }
    let answer = rng.index(4);
    let mut others = wrong.into_iter().take(3);
    let choices: [String; 4] = std::array::from_fn(|k| {
        if k == answer { correct.clone() } else { others.next().unwrap_or_default() }
    });
    Some((subject.to_string(), question, choices, answer))
}

/// One generated question of kind `kind` (0..7).
fn generate_mcq(kind: usize, rng: &mut WaxRng) -> Option<(String, String, [String; 4], usize)> {
    let num = |rng: &mut WaxRng, lo: u64, hi: u64| rng.inclusive(lo, hi);
    match kind {
        0 => {
            let (a, b) = (num(rng, 12, 99), num(rng, 3, 60));
            let op = rng.index(3);
            let (symbol, value) = match op {
                0 => ("+", a + b),
                1 => ("-", a.max(b) - a.min(b)),
                _ => ("×", a * b),
            };
            let (x, y) = if op == 1 { (a.max(b), a.min(b)) } else { (a, b) };
            let mut cands = vec![value + 1, value + 10, value.saturating_sub(1), value + 2];
            if op == 2 {
                cands.insert(0, x * (y + 1));
                cands.insert(1, x * y.saturating_sub(1));
            } else {
                cands.insert(0, value.saturating_sub(10));
            }
            let cands = cands.into_iter().map(|v| v.to_string()).collect();
            assemble(
                rng,
                "builtin_arithmetic",
                format!("What is {x} {symbol} {y}?"),
                value.to_string(),
                cands,
            )
        }
        1 | 2 => {
            let largest = kind == 1;
            let mut values: Vec<u64> = Vec::new();
            while values.len() < 4 {
                let digits = num(rng, 1, 3);
                let v = match digits {
                    1 => 100 * num(rng, 1, 9),
                    2 => 10 * num(rng, 1, 99),
                    _ => num(rng, 1, 999),
                };
                if !values.contains(&v) {
                    values.push(v);
                }
            }
            let best = if largest { *values.iter().max()? } else { *values.iter().min()? };
            let cands = values.iter().filter(|&&v| v != best).map(|&v| thousandths(v)).collect();
            let word = if largest { "largest" } else { "smallest" };
            assemble(
                rng,
                "builtin_comparison",
                format!("Which of the following numbers is the {word}?"),
                thousandths(best),
                cands,
            )
        }
        3 => {
            let prime = PRIMES[rng.index(PRIMES.len())];
            let mut pool = ODD_COMPOSITES.to_vec();
            rng.shuffle(&mut pool);
            let cands = pool.iter().map(|v| v.to_string()).collect();
            assemble(
                rng,
                "builtin_primes",
                "Which of the following numbers is prime?".to_string(),
                prime.to_string(),
                cands,
            )
        }
        4 => {
            let k = num(rng, 3, 9);
            let multiple = k * num(rng, 3, 15);
            let mut cands = Vec::new();
            for delta in [1u64, 2, 3, 4, 5, 6, 7] {
                for v in [multiple + delta, multiple.saturating_sub(delta)] {
                    if !v.is_multiple_of(k) && v > 0 {
                        cands.push(v);
                    }
                }
            }
            rng.shuffle(&mut cands);
            let cands = cands.into_iter().map(|v| v.to_string()).collect();
            assemble(
                rng,
                "builtin_divisibility",
                format!("Which of the following numbers is divisible by {k}?"),
                multiple.to_string(),
                cands,
            )
        }
        5 => {
            let (big, small, factor) = UNITS[rng.index(UNITS.len())];
            let k = num(rng, 2, 9);
            let value = k * factor;
            let other = UNITS.iter().map(|u| u.2).find(|&f| f != factor).unwrap_or(10);
            let cands = [value * 10, (k + 1) * factor, (k - 1) * factor, k * other, value + k]
                .iter()
                .map(|v| v.to_string())
                .collect();
            assemble(
                rng,
                "builtin_units",
                format!("How many {small} are there in {k} {big}?"),
                value.to_string(),
                cands,
            )
        }
        6 => {
            let h = num(rng, 0, 23);
            let k = num(rng, 2, 20);
            let at = |v: u64| format!("{:02}:00", v % 24);
            let value = h + k;
            let cands = vec![at(value + 1), at(value + 23), at(value + 12), at(value + 2)];
            assemble(
                rng,
                "builtin_clock",
                format!(
                    "On a 24-hour clock it is {} now. What time will it be in {k} hours?",
                    at(h)
                ),
                at(value),
                cands,
            )
        }
        _ => {
            let w = num(rng, 2, 20);
            let l = num(rng, w + 1, 30);
            let area = w * l;
            let cands = [2 * (w + l), area + w, area - w, w + l, area + l]
                .iter()
                .map(|v| v.to_string())
                .collect();
            assemble(
                rng,
                "builtin_geometry",
                format!(
                    "A rectangle is {w} cm wide and {l} cm long. What is its area in square \
                     centimetres?"
                ),
                area.to_string(),
                cands,
            )
        }
    }
}

/// The number of question kinds in [`generate_mcq`].
const MCQ_KINDS: usize = 8;

/// `n` generated four-choice questions with exactly one correct option at a random position:
/// arithmetic, decimal comparisons (largest/smallest), primes, divisibility, unit conversions,
/// 24-hour clock arithmetic and rectangle areas. Question `i` is of kind `i mod 8`; all draws come
/// from `WaxRng::new(seed, Stream::Split)`, so the set is a deterministic function of
/// `(n, seed)` and a shorter set is a prefix of a longer one. Ids are `builtin-mcq-<i>`.
pub fn builtin_mcq(n: usize, seed: u64) -> Vec<Mcq> {
    let mut rng = WaxRng::new(seed, Stream::Split);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let i = out.len();
        // Every kind yields three distractors by construction; retrying is only a safeguard.
        if let Some((subject, question, choices, answer)) = generate_mcq(i % MCQ_KINDS, &mut rng) {
            out.push(Mcq { id: format!("builtin-mcq-{i}"), subject, question, choices, answer });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_prime(n: u64) -> bool {
        n >= 2 && (2..n).take_while(|d| d * d <= n).all(|d| !n.is_multiple_of(d))
    }

    fn numbers(text: &str) -> Vec<u64> {
        text.split(|c: char| !c.is_ascii_digit()).filter_map(|t| t.parse().ok()).collect()
    }

    /// Indices of the options that are correct, judged independently from the question text.
    fn correct_options(q: &Mcq) -> Vec<usize> {
        let nums = numbers(&q.question);
        let ok: Box<dyn Fn(&str) -> bool> = match q.subject.as_str() {
            "builtin_arithmetic" => {
                let (a, b) = (nums[0], nums[1]);
                let v = if q.question.contains('+') {
                    a + b
                } else if q.question.contains('×') {
                    a * b
                } else {
                    a - b
                };
                Box::new(move |c| c == v.to_string())
            }
            "builtin_comparison" => {
                let vals: Vec<f64> = q.choices.iter().map(|c| c.parse().unwrap()).collect();
                let best = if q.question.contains("largest") {
                    vals.iter().cloned().fold(f64::MIN, f64::max)
                } else {
                    vals.iter().cloned().fold(f64::MAX, f64::min)
                };
                Box::new(move |c| c.parse::<f64>().unwrap() == best)
            }
            "builtin_primes" => Box::new(|c| is_prime(c.parse().unwrap())),
            "builtin_divisibility" => {
                let k = nums[0];
                Box::new(move |c| c.parse::<u64>().unwrap().is_multiple_of(k))
            }
            "builtin_units" => {
                let table = [
                    ("metres are there in", "kilometres", 1000),
                    ("centimetres are there in", "metres", 100),
                    ("minutes are there in", "hours", 60),
                    ("seconds are there in", "minutes", 60),
                    ("hours are there in", "days", 24),
                    ("days are there in", "weeks", 7),
                    ("grams are there in", "kilograms", 1000),
                    ("millilitres are there in", "litres", 1000),
                    ("months are there in", "years", 12),
                ];
                let f = table
                    .iter()
                    .find(|(small, big, _)| {
                        q.question.contains(&format!("many {small}"))
                            && q.question.ends_with(&format!(" {big}?"))
                    })
                    .unwrap()
                    .2;
                let v = nums[0] * f;
                Box::new(move |c| c == v.to_string())
            }
            "builtin_clock" => {
                let (h, k) = (nums[1], nums[3]);
                Box::new(move |c| c == format!("{:02}:00", (h + k) % 24))
            }
            "builtin_geometry" => {
                let v = nums[0] * nums[1];
                Box::new(move |c| c == v.to_string())
            }
            other => panic!("unknown subject {other}"),
        };
        (0..4).filter(|&k| ok(&q.choices[k])).collect()
    }

    #[test]
    fn builtin_has_exactly_one_correct_option() {
        let set = builtin_mcq(400, 3);
        assert_eq!(set.len(), 400);
        let mut positions = [0usize; 4];
        let mut subjects = std::collections::BTreeSet::new();
        for q in &set {
            assert_eq!(correct_options(q), vec![q.answer], "{q:?}");
            let distinct: std::collections::HashSet<_> = q.choices.iter().collect();
            assert_eq!(distinct.len(), 4, "{q:?}");
            assert!(q.choices.iter().all(|c| !c.is_empty()));
            positions[q.answer] += 1;
            subjects.insert(q.subject.clone());
        }
        assert_eq!(subjects.len(), 7);
        assert!(positions.iter().all(|&p| p > 60), "{positions:?}");
    }

    #[test]
    fn builtin_is_deterministic() {
        assert_eq!(builtin_mcq(50, 9), builtin_mcq(50, 9));
        assert_eq!(builtin_mcq(20, 9)[..], builtin_mcq(50, 9)[..20]);
        assert_ne!(builtin_mcq(50, 9), builtin_mcq(50, 10));
    }

    #[test]
    fn format_lists_options() {
        let q = Mcq {
            id: "x".into(),
            subject: "s".into(),
            question: "Which is blue?".into(),
            choices: ["sky".into(), "grass".into(), "snow".into(), "coal".into()],
            answer: 0,
        };
        assert_eq!(
            format_mcq(&q),
            "Which is blue?\nA. sky\nB. grass\nC. snow\nD. coal\n\
             Answer with the letter of the correct option (A, B, C or D)."
        );
    }

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn loads_original_csv_layout_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let bio = write(
            dir.path(),
            "high_school_biology_test.csv",
            "\"What is a cell, \"\"really\"\"?\",unit,\"multi\nline\",c,d,B\r\nQ2,a,b,c,d,d\r\n",
        );
        write(dir.path(), "anatomy_test.csv", "Q,a,b,c,d,A\n");
        write(dir.path(), "anatomy_dev.csv", "not,read\n");
        let qs = load_mmlu(&bio, None).unwrap();
        assert_eq!(qs.len(), 2);
        assert_eq!(qs[0].id, "high_school_biology-0");
        assert_eq!(qs[0].subject, "high_school_biology");
        assert_eq!(qs[0].question, "What is a cell, \"really\"?");
        assert_eq!(qs[0].choices[1], "multi\nline");
        assert_eq!((qs[0].answer, qs[1].answer), (1, 3));

        let all = load_mmlu(dir.path(), None).unwrap();
        assert_eq!(
            all.iter().map(|q| q.subject.as_str()).collect::<Vec<_>>(),
            vec!["anatomy", "high_school_biology", "high_school_biology"]
        );
        let hs = load_mmlu(dir.path(), Some("high_school_")).unwrap();
        assert_eq!(hs.len(), 2);
        // A release root whose test/ folder holds the files.
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("test")).unwrap();
        write(&root.path().join("test"), "high_school_physics_test.csv", "Q,a,b,c,d,C\n");
        assert_eq!(load_mmlu(root.path(), Some("high_school_")).unwrap()[0].answer, 2);
        // Filtering everything out is an error.
        let e = load_mmlu(dir.path(), Some("college_")).unwrap_err().to_string();
        assert!(e.ends_with("no questions with a subject starting with \"college_\""), "{e}");
    }

    #[test]
    fn csv_errors_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "x_test.csv", "Q,a,b,c,d,A\nQ,a,b,c,d,E\n");
        let e = load_mmlu(&f, None).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("{}:2: field \"answer\": expected A, B, C or D, found \"E\"", f.display())
        );
        let f = write(dir.path(), "y_test.csv", "Q,a,b,c,d,A\n\n\"Q\nx\",a,b,c,A\n");
        let e = load_mmlu(&f, None).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:3: expected 6 fields (question, A, B, C, D, answer letter), found 5",
                f.display()
            )
        );
        let f = write(dir.path(), "z_test.csv", "Q,a,b,c,d,A\n\"Q,a,b,c,d,A\n");
        let e = load_mmlu(&f, None).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:2:1: CSV syntax:", f.display())), "{e}");
        let f = write(dir.path(), "w.txt", "");
        assert!(load_mmlu(&f, None).unwrap_err().to_string().contains("unsupported"));
        let empty = tempfile::tempdir().unwrap();
        assert!(load_mmlu(empty.path(), None).is_err());
    }

    #[test]
    fn loads_jsonl_with_int_or_letter_answers() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "mmlu.jsonl",
            concat!(
                "{\"question\":\"Q0\",\"subject\":\"high_school_chemistry\",\"choices\":[\"a\",\"b\",\"c\",\"d\"],\"answer\":2}\n",
                "{\"question\":\"Q1\",\"subject\":\"astronomy\",\"choices\":[\"a\",\"b\",\"c\",\"d\"],\"answer\":\"d\"}\n",
                "{\"question\":\"Q2\",\"subject\":\"high_school_chemistry\",\"choices\":[1,2,3,4],\"answer\":\"A\",\"id\":\"q-2\"}\n",
            ),
        );
        let qs = load_mmlu(&f, None).unwrap();
        assert_eq!(qs.iter().map(|q| q.answer).collect::<Vec<_>>(), vec![2, 3, 0]);
        assert_eq!(
            qs.iter().map(|q| q.id.as_str()).collect::<Vec<_>>(),
            vec!["high_school_chemistry-0", "astronomy-0", "q-2"]
        );
        assert_eq!(qs[2].choices[3], "4");
        assert_eq!(load_mmlu(&f, Some("high_school_")).unwrap().len(), 2);

        let bad = |line: &str| {
            let f = write(dir.path(), "bad.jsonl", &format!("\n{line}\n"));
            let e = load_mmlu(&f, None).unwrap_err().to_string();
            e.strip_prefix(&f.display().to_string()).unwrap().to_string()
        };
        assert_eq!(
            bad(
                "{\"question\":\"Q\",\"subject\":\"s\",\"choices\":[\"a\",\"b\",\"c\"],\"answer\":0}"
            ),
            ":2: field \"choices\": expected 4 options, found 3"
        );
        assert_eq!(
            bad(
                "{\"question\":\"Q\",\"subject\":\"s\",\"choices\":[\"a\",\"b\",\"c\",\"d\"],\"answer\":4}"
            ),
            ":2: field \"answer\": expected 0-3 or a letter A-D, found 4"
        );
        assert_eq!(
            bad(
                "{\"question\":\"Q\",\"subject\":\"s\",\"choices\":[\"a\",\"b\",\"c\",null],\"answer\":1}"
            ),
            ":2: field \"choices\": option 3 is null, expected a string"
        );
        assert_eq!(
            bad("{\"question\":\"Q\",\"subject\":\"s\",\"answer\":1}"),
            ":2: field \"choices\": missing"
        );
    }
}
