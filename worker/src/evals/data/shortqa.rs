//! Short factual questions for the confidence evaluation (docs/protocol.md §6.4): a
//! SimpleQA-Verified CSV loader, a generated offline set with unambiguous answers, and a lenient
//! answer matcher.

use crate::tokenizer::{DAYS, MONTHS};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::csv::CsvTable;
use super::error::{DataError, read_text};
use crate::rng::{Stream, WaxRng};

/// One short-answer question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShortQa {
    /// Stable identifier: the `original_index` column when present and non-empty, else the
    /// 0-based index of the data row; `builtin-sqa-<i>` for the built-in set.
    pub id: String,
    /// The question.
    pub question: String,
    /// The reference answer.
    pub answer: String,
    /// Topic (for topic-stratified subsampling); empty when the file has no `topic` column.
    pub topic: String,
}

/// Loads SimpleQA-Verified style CSV: a header row with columns `problem` and `answer`
/// (required), `topic` and `original_index` (optional); other columns are ignored; column names
/// are matched case-insensitively. A blank problem or answer is an error, as is a file without
/// data rows.
pub fn load_simpleqa(path: &Path) -> Result<Vec<ShortQa>, DataError> {
    let text = read_text(path)?;
    let table = CsvTable::parse(&text, path)?;
    let problem = table.require(path, "problem")?;
    let answer = table.require(path, "answer")?;
    let topic = table.column("topic");
    let original = table.column("original_index");
    let mut out = Vec::with_capacity(table.rows.len());
    for (index, row) in table.rows.iter().enumerate() {
        let get = |k: usize, name: &str| {
            let v = row.fields[k].trim();
            if v.is_empty() {
                Err(DataError::field(path, row.line, name, "empty"))
            } else {
                Ok(v.to_string())
            }
        };
        let question = get(problem, "problem")?;
        let answer = get(answer, "answer")?;
        let topic = topic.map(|k| row.fields[k].trim().to_string()).unwrap_or_default();
        let id = original
            .map(|k| row.fields[k].trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| index.to_string());
        out.push(ShortQa { id, question, answer, topic });
    }
    if out.is_empty() {
        return Err(DataError::file(path, "no questions (header only)"));
    }
    Ok(out)
}

const SHORT_UNITS: &[(&str, &str, u64)] = &[
    ("kilometres", "metres", 1000),
    ("metres", "centimetres", 100),
    ("hours", "minutes", 60),
    ("minutes", "seconds", 60),
    ("days", "hours", 24),
    ("weeks", "days", 7),
    ("kilograms", "grams", 1000),
    ("years", "months", 12),
    ("dozens", "items", 12),
];

/// English ordinal of `n` (1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, ...).
fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Roman numeral of `n` (1..4000).
fn roman(mut n: u64) -> String {
    const TABLE: [(u64, &str); 13] = [
        (1000, "M"),
        (900, "CM"),
        (500, "D"),
        (400, "CD"),
        (100, "C"),
        (90, "XC"),
        (50, "L"),
        (40, "XL"),
        (10, "X"),
        (9, "IX"),
        (5, "V"),
        (4, "IV"),
        (1, "I"),
    ];
    let mut s = String::new();
    for (value, glyphs) in TABLE {
        while n >= value {
            s.push_str(glyphs);
            n -= value;
        }
    }
    s
}

/// The number of kinds in [`generate_short`].
const SHORT_KINDS: usize = 8;

/// One generated (question, answer, topic) of kind `kind`.
fn generate_short(kind: usize, rng: &mut WaxRng) -> (String, String, &'static str) {
    match kind {
        0 => {
            let (a, b) = (rng.inclusive(6, 40), rng.inclusive(3, 25));
            (format!("What is {a} multiplied by {b}?"), (a * b).to_string(), "arithmetic")
        }
        1 => {
            let day = rng.index(7);
            let k = rng.inclusive(2, 40) as usize;
            (
                format!("If today is {}, what day of the week will it be in {k} days?", DAYS[day]),
                DAYS[(day + k) % 7].to_string(),
                "calendar",
            )
        }
        2 => {
            let pos = rng.inclusive(1, 26);
            let letter = char::from(b'A' + (pos - 1) as u8);
            (
                format!("Which letter is the {} letter of the English alphabet?", ordinal(pos)),
                letter.to_string(),
                "alphabet",
            )
        }
        3 => {
            let pos = rng.inclusive(1, 26);
            let letter = char::from(b'A' + (pos - 1) as u8);
            (
                format!(
                    "At which position in the English alphabet does the letter {letter} come \
                     (counting A as 1)?"
                ),
                pos.to_string(),
                "alphabet",
            )
        }
        4 => {
            let (big, small, factor) = SHORT_UNITS[rng.index(SHORT_UNITS.len())];
            let k = rng.inclusive(2, 12);
            (format!("How many {small} are in {k} {big}?"), (k * factor).to_string(), "units")
        }
        5 => {
            let month = rng.index(12);
            let k = rng.inclusive(1, 11) as usize;
            (
                format!("Which month comes {k} months after {}?", MONTHS[month]),
                MONTHS[(month + k) % 12].to_string(),
                "calendar",
            )
        }
        6 => {
            let n = rng.inclusive(4, 3999);
            (
                format!("Which number does the Roman numeral {} stand for?", roman(n)),
                n.to_string(),
                "roman numerals",
            )
        }
        _ => {
            let k = rng.inclusive(11, 99);
            (format!("What is {k} squared?"), (k * k).to_string(), "arithmetic")
        }
    }
}

/// `n` generated short questions with single, unambiguous answers: multiplication facts and
/// squares (topic `arithmetic`), day-of-week and month arithmetic (`calendar`), alphabet
/// positions both ways (`alphabet`), unit conversions (`units`) and Roman numerals
/// (`roman numerals`). Question `i` is of kind `i mod 8`; draws come from
/// `WaxRng::new(seed, Stream::Split)`, so the set is a deterministic function of `(n, seed)` and a
/// shorter set is a prefix of a longer one.
pub fn builtin_short_qa(n: usize, seed: u64) -> Vec<ShortQa> {
    let mut rng = WaxRng::new(seed, Stream::Split);
    (0..n)
        .map(|i| {
            let (question, answer, topic) = generate_short(i % SHORT_KINDS, &mut rng);
            ShortQa { id: format!("builtin-sqa-{i}"), question, answer, topic: topic.to_string() }
        })
        .collect()
}

/// Folds common accented Latin letters to ASCII (after lower-casing).
fn fold(c: char) -> &'static str {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'ç' | 'ć' | 'č' => "c",
        'ď' | 'đ' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'ğ' => "g",
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'ı' => "i",
        'ł' => "l",
        'ñ' | 'ń' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
        'ř' => "r",
        'ś' | 'š' | 'ş' => "s",
        'ť' | 'ţ' => "t",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' => "u",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        'ß' => "ss",
        'æ' => "ae",
        'œ' => "oe",
        _ => "",
    }
}

/// Normalised word tokens: lower case, accents folded, punctuation dropped, apostrophes joined
/// (`don't` → `dont`), thousands separators removed and decimals canonical (`1,000.50` →
/// `1000.5`, `007` → `7`). Articles are kept here; see [`drop_articles`].
fn tokens(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
    let digit = |k: usize| chars.get(k).is_some_and(|c| c.is_ascii_digit());
    let mut out = Vec::new();
    let mut word = String::new();
    for (k, &c) in chars.iter().enumerate() {
        let kept = if c.is_alphanumeric() {
            let folded = fold(c);
            if folded.is_empty() {
                word.push(c);
            } else {
                word.push_str(folded);
            }
            true
        } else if c == ',' && k > 0 && digit(k - 1) && digit(k + 1) {
            true // a thousands separator
        } else if c == '.' && k > 0 && digit(k - 1) && digit(k + 1) {
            word.push('.');
            true
        } else {
            matches!(c, '\'' | '\u{2019}') && !word.is_empty()
        };
        if !kept && !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out.into_iter().map(canonical_number).collect()
}

/// A numeric token in canonical form (`1000.50` → `1000.5`, `007` → `7`); others unchanged.
fn canonical_number(t: String) -> String {
    if !t.chars().all(|c| c.is_ascii_digit() || c == '.') || t.matches('.').count() > 1 {
        return t;
    }
    let t = match t.split_once('.') {
        Some((int, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() { int.to_string() } else { format!("{int}.{frac}") }
        }
        None => t,
    };
    let trimmed = t.trim_start_matches('0');
    if trimmed.is_empty() || trimmed.starts_with('.') {
        format!("0{trimmed}")
    } else {
        trimmed.to_string()
    }
}

/// The tokens without the articles `a`, `an`, `the`.
fn drop_articles(tokens: &[String]) -> Vec<String> {
    tokens.iter().filter(|t| !matches!(t.as_str(), "a" | "an" | "the")).cloned().collect()
}

/// Whether `response` contains `answer` after normalising both (case, accents, punctuation,
/// articles, number formatting): the answer's tokens must appear as a contiguous run of the
/// response's tokens, so `"14"` does not match `"140"`. Articles are ignored on both sides unless
/// the answer consists of nothing else (the letter `"A"`). An answer with no tokens never matches.
pub fn short_answer_matches(response: &str, answer: &str) -> bool {
    let (want, have) = (tokens(answer), tokens(response));
    let (want, have) = match drop_articles(&want) {
        w if w.is_empty() => (want, have),
        w => (w, drop_articles(&have)),
    };
    !want.is_empty() && have.windows(want.len()).any(|w| w == want.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_roman(s: &str) -> u64 {
        let v = |c| match c {
            'I' => 1,
            'V' => 5,
            'X' => 10,
            'L' => 50,
            'C' => 100,
            'D' => 500,
            'M' => 1000,
            _ => panic!("{c}"),
        };
        let vals: Vec<u64> = s.chars().map(v).collect();
        let mut total = 0i64;
        for (k, &x) in vals.iter().enumerate() {
            if vals.get(k + 1).is_some_and(|&y| y > x) {
                total -= x as i64;
            } else {
                total += x as i64;
            }
        }
        total as u64
    }

    fn nums(text: &str) -> Vec<u64> {
        text.split(|c: char| !c.is_ascii_digit()).filter_map(|t| t.parse().ok()).collect()
    }

    /// Re-derives the answer from the question text alone.
    fn solve(q: &ShortQa) -> String {
        let n = nums(&q.question);
        let words: Vec<&str> =
            q.question.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
        let week = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
        let year = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        if q.question.contains("multiplied by") {
            (n[0] * n[1]).to_string()
        } else if q.question.contains("squared") {
            (n[0] * n[0]).to_string()
        } else if q.question.contains("day of the week") {
            let d = week.iter().position(|d| words.contains(d)).unwrap();
            week[(d + n[0] as usize) % 7].to_string()
        } else if q.question.contains("months after") {
            let m = year.iter().position(|m| words.contains(m)).unwrap();
            year[(m + n[0] as usize) % 12].to_string()
        } else if q.question.contains("letter of the English alphabet") {
            ((b'A' + n[0] as u8 - 1) as char).to_string()
        } else if q.question.contains("does the letter") {
            let at = words.iter().position(|w| *w == "letter").unwrap();
            (words[at + 1].as_bytes()[0] - b'A' + 1).to_string()
        } else if q.question.contains("Roman numeral") {
            from_roman(words[words.len() - 3]).to_string()
        } else if q.question.starts_with("How many") {
            let per = match (words[2], words[words.len() - 1]) {
                ("metres", "kilometres") => 1000,
                ("centimetres", "metres") => 100,
                ("minutes", "hours") => 60,
                ("seconds", "minutes") => 60,
                ("hours", "days") => 24,
                ("days", "weeks") => 7,
                ("grams", "kilograms") => 1000,
                ("months", "years") => 12,
                ("items", "dozens") => 12,
                other => panic!("{other:?}"),
            };
            (n[0] * per).to_string()
        } else {
            panic!("unknown question {}", q.question)
        }
    }

    #[test]
    fn builtin_answers_are_right() {
        let set = builtin_short_qa(400, 21);
        assert_eq!(set.len(), 400);
        let mut topics = std::collections::BTreeSet::new();
        for q in &set {
            assert_eq!(solve(q), q.answer, "{}", q.question);
            assert!(short_answer_matches(&format!("I believe it is {}.", q.answer), &q.answer));
            topics.insert(q.topic.clone());
        }
        assert_eq!(topics.len(), 5);
        assert_eq!(builtin_short_qa(40, 21), builtin_short_qa(40, 21));
        assert_eq!(builtin_short_qa(10, 21)[..], builtin_short_qa(40, 21)[..10]);
        assert_ne!(builtin_short_qa(40, 21), builtin_short_qa(40, 22));
    }

    #[test]
    fn helpers() {
        assert_eq!(
            [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 26].map(ordinal),
            ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "26th"]
        );
        assert_eq!(roman(1994), "MCMXCIV");
        assert_eq!(roman(3999), "MMMCMXCIX");
        for n in 1..4000 {
            assert_eq!(from_roman(&roman(n)), n);
        }
    }

    #[test]
    fn answer_matching() {
        let yes = [
            ("The surgeon was ordered to pay 120,000 euros.", "120,000 euros"),
            ("About 120000 euros", "120,000 euros"),
            ("It cost $1,000.00", "1000"),
            ("In the year 1998", "1998"),
            ("It was THE BEATLES!", "The Beatles"),
            ("Zurich, I think", "Zürich"),
            ("It's Ólafur Arnalds", "olafur arnalds"),
            ("He was born in São Paulo.", "Sao Paulo"),
            ("a value of 3.50", "3.5"),
            ("The answer is E.", "E"),
            ("Dont know... actually don't worry: Friday", "Friday"),
            ("Agent 007", "7"),
            ("The first letter is A.", "A"),
            ("The first letter is A.", "the letter a"),
        ];
        for (response, answer) in yes {
            assert!(short_answer_matches(response, answer), "{response:?} / {answer:?}");
        }
        let no = [
            ("It was 140 years", "14"),
            ("Paulo Coelho", "Sao Paulo"),
            ("I am not sure", "1998"),
            ("anything", ""),
            ("anything", "the"),
            ("The letter is B", "A"),
            ("2.5", "25"),
        ];
        for (response, answer) in no {
            assert!(!short_answer_matches(response, answer), "{response:?} / {answer:?}");
        }
    }

    fn write(body: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("simpleqa.csv");
        std::fs::write(&p, body).unwrap();
        (dir, p)
    }

    #[test]
    fn loads_simpleqa_csv() {
        let (_d, p) = write(concat!(
            "original_index,problem,answer,topic,urls\r\n",
            "5,\"Who wrote \"\"X\"\", the play?\",Jane Roe,Art,\"['http://a', 'http://b']\"\r\n",
            ",\"Which year,\nexactly?\",1901,History,[]\r\n",
        ));
        let qs = load_simpleqa(&p).unwrap();
        assert_eq!(qs.len(), 2);
        assert_eq!(qs[0].id, "5");
        assert_eq!(qs[0].question, "Who wrote \"X\", the play?");
        assert_eq!((qs[0].answer.as_str(), qs[0].topic.as_str()), ("Jane Roe", "Art"));
        assert_eq!(qs[1].id, "1");
        assert_eq!(qs[1].question, "Which year,\nexactly?");

        let (_d, p) = write("Problem,Answer\nQ?,A\n");
        let qs = load_simpleqa(&p).unwrap();
        assert_eq!((qs[0].id.as_str(), qs[0].topic.as_str()), ("0", ""));
    }

    #[test]
    fn simpleqa_errors_are_located() {
        let err = |body: &str| {
            let (_d, p) = write(body);
            let e = load_simpleqa(&p).unwrap_err().to_string();
            e.strip_prefix(&p.display().to_string()).unwrap().to_string()
        };
        assert_eq!(
            err("question,answer\nQ,A\n"),
            ":1: header has no \"problem\" column (found: question, answer)"
        );
        assert_eq!(err("problem,answer\nQ,A\n\"Q\n2\", \n"), ":3: field \"answer\": empty");
        assert_eq!(
            err("problem,answer\nQ,A\nQ2\n"),
            ":3: expected 2 fields (as in the header), found 1"
        );
        assert_eq!(
            err("problem,answer\nQ,\"A\n"),
            ":2:3: CSV syntax: quoted field is never closed"
        );
        assert_eq!(err("problem,answer\n"), ": no questions (header only)");
    }
}
