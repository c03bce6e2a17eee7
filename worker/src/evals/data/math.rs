//! Grade-school maths problems for the backtracking and correctness-tracking evaluations
//! (docs/protocol.md §6.3): a GSM8K JSONL loader, a generated offline set, and answer checking.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{DataError, parse_jsonl, read_text};
use crate::rng::{Stream, WaxRng};

/// One maths word problem with a numeric answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MathProblem {
    /// Stable identifier: the file's `"id"` field if present, else `gsm8k-<index>` (0-based
    /// index of the record in the file); `math-<index>` for the built-in set.
    pub id: String,
    /// The problem statement.
    pub question: String,
    /// The final numeric answer.
    pub answer: f64,
    /// The reference solution as given: for GSM8K the rationale ending in `#### <number>`; for
    /// the built-in set the arithmetic expression and its value in the same layout
    /// (`"(12 + 8) / 4 = 5\n#### 5"`).
    pub answer_text: String,
}

/// Parses the number after the last `####` of a GSM8K answer (commas, `$` and spaces allowed).
fn parse_final_answer(answer: &str) -> Result<f64, String> {
    let Some(at) = answer.rfind("####") else {
        return Err("missing \"####\" final answer".to_string());
    };
    let raw = answer[at + 4..].trim();
    let cleaned: String = raw.chars().filter(|c| !matches!(c, ',' | '$' | ' ')).collect();
    let cleaned = cleaned.trim_end_matches('.');
    match cleaned.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ if raw.is_empty() => Err("empty final answer after \"####\"".to_string()),
        _ => Err(format!("final answer {raw:?} after \"####\" is not a number")),
    }
}

/// Loads GSM8K-style JSONL: one object per line with string fields `"question"` and `"answer"`,
/// the answer ending in `#### <number>`; an optional `"id"` (string or number) is kept. Blank
/// lines are skipped; an empty file is an error.
pub fn load_gsm8k(path: &Path) -> Result<Vec<MathProblem>, DataError> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (index, rec) in parse_jsonl(&text, path)?.into_iter().enumerate() {
        let question = rec.non_empty(path, "question")?;
        let answer_text = rec.string(path, "answer")?;
        let answer = parse_final_answer(&answer_text)
            .map_err(|m| DataError::field(path, rec.line, "answer", m))?;
        let id = rec.optional_id(path, "id")?.unwrap_or_else(|| format!("gsm8k-{index}"));
        out.push(MathProblem { id, question, answer, answer_text });
    }
    if out.is_empty() {
        return Err(DataError::file(path, "no problems in file"));
    }
    Ok(out)
}

const NAMES: &[&str] = &[
    "Amara", "Bruno", "Chen", "Dalia", "Emeka", "Farah", "Goran", "Hana", "Ines", "Jonas", "Keiko",
    "Luca", "Maya", "Nikhil", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tove",
];

/// A generated problem: the question, the expression that solves it (as text) and its value,
/// computed separately by the template.
struct Generated {
    question: String,
    expression: String,
    value: i64,
}

fn pick<'a>(rng: &mut WaxRng, items: &[&'a str]) -> &'a str {
    items[rng.index(items.len())]
}

fn int(rng: &mut WaxRng, lo: i64, hi: i64) -> i64 {
    rng.inclusive(lo as u64, hi as u64) as i64
}

/// The number of templates in [`generate`].
const TEMPLATES: usize = 12;

fn generate(template: usize, rng: &mut WaxRng) -> Generated {
    let name = pick(rng, NAMES);
    match template {
        // Shopping with change.
        0 => {
            let item = pick(rng, &["notebooks", "mangoes", "pens", "candles", "cups of tea"]);
            let count = int(rng, 2, 9);
            let price = int(rng, 2, 15);
            let cost = count * price;
            let bill = (cost / 20 + 1) * 20 + 20 * int(rng, 0, 2);
            Generated {
                question: format!(
                    "{name} buys {count} {item} at ${price} each and pays with ${bill}. How many \
                     dollars of change should {name} get back?"
                ),
                expression: format!("{bill} - {count} * {price}"),
                value: bill - cost,
            }
        }
        // Sharing equally after a purchase.
        1 => {
            let thing = pick(rng, &["stickers", "marbles", "biscuits", "postcards", "seeds"]);
            let friends = int(rng, 2, 8);
            let each = int(rng, 3, 20);
            let bought = int(rng, 1, friends * each - 1);
            let had = friends * each - bought;
            Generated {
                question: format!(
                    "{name} has {had} {thing} and buys {bought} more. {name} then shares all of \
                     them equally among {friends} friends. How many {thing} does each friend get?"
                ),
                expression: format!("({had} + {bought}) / {friends}"),
                value: each,
            }
        }
        // Rates over two shifts.
        2 => {
            let item = pick(rng, &["bottles", "bricks", "loaves", "parcels", "chairs"]);
            let rate = int(rng, 4, 60);
            let h1 = int(rng, 1, 6);
            let h2 = int(rng, 1, 6);
            Generated {
                question: format!(
                    "A workshop produces {rate} {item} per hour. It runs for {h1} hours in the \
                     morning and {h2} hours in the afternoon. How many {item} does it produce in \
                     total?"
                ),
                expression: format!("{rate} * ({h1} + {h2})"),
                value: rate * (h1 + h2),
            }
        }
        // Remaining items after giving and using.
        3 => {
            let item = pick(rng, &["eggs", "apples", "screws", "balloons", "tickets"]);
            let given = int(rng, 1, 30);
            let used = int(rng, 1, 30);
            let left = int(rng, 0, 40);
            let had = given + used + left;
            Generated {
                question: format!(
                    "{name} had {had} {item}. {name} gave {given} of them to a neighbour and used \
                     {used} more. How many {item} does {name} have left?"
                ),
                expression: format!("{had} - {given} - {used}"),
                value: left,
            }
        }
        // Weekly savings, then a purchase.
        4 => {
            let weekly = int(rng, 5, 40);
            let weeks = int(rng, 2, 12);
            let spent = int(rng, 1, weekly * weeks);
            Generated {
                question: format!(
                    "{name} saves ${weekly} every week for {weeks} weeks and then spends ${spent} \
                     on a pair of shoes. How many dollars does {name} have left?"
                ),
                expression: format!("{weekly} * {weeks} - {spent}"),
                value: weekly * weeks - spent,
            }
        }
        // Distance: ride then walk.
        5 => {
            let speed = int(rng, 8, 25);
            let hours = int(rng, 1, 5);
            let walk = int(rng, 1, 9);
            Generated {
                question: format!(
                    "{name} cycles at {speed} kilometres per hour for {hours} hours and then walks \
                     {walk} more kilometres. How many kilometres does {name} travel altogether?"
                ),
                expression: format!("{speed} * {hours} + {walk}"),
                value: speed * hours + walk,
            }
        }
        // Packs with losses.
        6 => {
            let boxes = int(rng, 2, 12);
            let per = int(rng, 6, 24);
            let broken = int(rng, 1, boxes * per - 1);
            Generated {
                question: format!(
                    "A teacher orders {boxes} boxes of crayons with {per} crayons in each box. \
                     {broken} crayons arrive broken and are thrown away. How many crayons are \
                     left?"
                ),
                expression: format!("{boxes} * {per} - {broken}"),
                value: boxes * per - broken,
            }
        }
        // Ages.
        7 => {
            let age = int(rng, 4, 40);
            let gap = int(rng, 1, 15);
            let years = int(rng, 1, 20);
            Generated {
                question: format!(
                    "{name} is {age} years old. {name}'s cousin is {gap} years older than {name}. \
                     How old will the cousin be in {years} years?"
                ),
                expression: format!("{age} + {gap} + {years}"),
                value: age + gap + years,
            }
        }
        // Recipe scaling.
        8 => {
            let grams = 10 * int(rng, 5, 40);
            let c1 = int(rng, 1, 6);
            let c2 = int(rng, 1, 6);
            Generated {
                question: format!(
                    "A baker uses {grams} grams of flour for each cake. She bakes {c1} cakes in the \
                     morning and {c2} cakes in the evening. How many grams of flour does she use?"
                ),
                expression: format!("{grams} * ({c1} + {c2})"),
                value: grams * (c1 + c2),
            }
        }
        // Tickets for two kinds of visitor.
        9 => {
            let adult = int(rng, 8, 30);
            let child = int(rng, 2, adult - 1);
            let na = int(rng, 1, 5);
            let nc = int(rng, 1, 6);
            Generated {
                question: format!(
                    "Museum tickets cost ${adult} for an adult and ${child} for a child. A group \
                     buys {na} adult tickets and {nc} child tickets. How many dollars do they pay \
                     in total?"
                ),
                expression: format!("{na} * {adult} + {nc} * {child}"),
                value: na * adult + nc * child,
            }
        }
        // Pages left in a book.
        10 => {
            let per_day = int(rng, 5, 40);
            let days = int(rng, 2, 10);
            let left = int(rng, 0, 200);
            let pages = per_day * days + left;
            Generated {
                question: format!(
                    "A book has {pages} pages. {name} reads {per_day} pages every day for {days} \
                     days. How many pages are still unread?"
                ),
                expression: format!("{pages} - {per_day} * {days}"),
                value: left,
            }
        }
        // Garden rows, split into beds.
        _ => {
            let beds = int(rng, 2, 6);
            let per_bed = int(rng, 2, 9);
            let rows = beds * per_bed;
            let plants = int(rng, 3, 12);
            Generated {
                question: format!(
                    "A gardener plants {rows} rows of tulips with {plants} tulips in each row. The \
                     rows are split evenly between {beds} flower beds. How many tulips are in each \
                     bed?"
                ),
                expression: format!("{rows} * {plants} / {beds}"),
                value: per_bed * plants,
            }
        }
    }
}

/// `n` generated arithmetic word problems with integer answers (12 templates: shopping with
/// change, sharing, production rates, remaining items, savings, distance, packs, ages, recipes,
/// tickets, pages, garden beds; 1–3 operations each). Problem `i` uses template `i mod 12` and
/// numbers drawn from `WaxRng::new(seed, Stream::Split)`, so the set is a deterministic function
/// of `(n, seed)` and a shorter set is a prefix of a longer one.
pub fn builtin_math(n: usize, seed: u64) -> Vec<MathProblem> {
    let mut rng = WaxRng::new(seed, Stream::Split);
    (0..n)
        .map(|i| {
            let g = generate(i % TEMPLATES, &mut rng);
            MathProblem {
                id: format!("math-{i}"),
                question: g.question,
                answer: g.value as f64,
                answer_text: format!("{} = {}\n#### {}", g.expression, g.value, g.value),
            }
        })
        .collect()
}

/// Scans a number whose first digit is at byte `i` of `s`: integer digits with optional
/// thousands groups (`1,234,567`, only after a first group of 1–3 digits) and an optional decimal
/// part. Returns the number's text (commas removed) and the byte after it.
fn scan_number(s: &[u8], mut i: usize) -> (String, usize) {
    let digit_at = |k: usize| s.get(k).is_some_and(|c| c.is_ascii_digit());
    let start = i;
    let mut text = String::new();
    while digit_at(i) {
        text.push(s[i] as char);
        i += 1;
    }
    if i - start <= 3 {
        while s.get(i) == Some(&b',')
            && digit_at(i + 1)
            && digit_at(i + 2)
            && digit_at(i + 3)
            && !digit_at(i + 4)
        {
            text.extend(s[i + 1..i + 4].iter().map(|&c| c as char));
            i += 4;
        }
    }
    if s.get(i) == Some(&b'.') && digit_at(i + 1) {
        text.push('.');
        i += 1;
        while digit_at(i) {
            text.push(s[i] as char);
            i += 1;
        }
    }
    (text, i)
}

/// The last number in `response`: thousands separators (`1,234`), decimals (`3.5`, `.5`), a
/// leading minus sign (`-`, or the Unicode minus `−`) and a dollar sign (`$12`, `-$12`, `$-12`)
/// are understood. A hyphen directly after a letter or digit (`10-5`, `x-2`) is not a sign. A
/// full stop that ends a sentence (`is 5.`) is not a decimal point. `None` if the text holds no
/// number.
pub fn extract_final_number(response: &str) -> Option<f64> {
    let normalised = response.replace('\u{2212}', "-");
    let s = normalised.as_bytes();
    let mut last = None;
    let mut i = 0;
    while i < s.len() {
        let leading_point = s[i] == b'.' && s.get(i + 1).is_some_and(|c| c.is_ascii_digit());
        if !s[i].is_ascii_digit() && !leading_point {
            i += 1;
            continue;
        }
        let (body, end) = if leading_point {
            let (t, e) = scan_number(s, i + 1);
            (format!("0.{t}"), e)
        } else {
            scan_number(s, i)
        };
        // A sign: "-12", "$-12" or "-$12". A hyphen glued to a preceding letter, digit or
        // point is an operator or a range ("10-5"), not a sign.
        let glued = |k: usize| k > 0 && (s[k - 1].is_ascii_alphanumeric() || s[k - 1] == b'.');
        let negative = if i > 0 && s[i - 1] == b'-' {
            (i >= 2 && s[i - 2] == b'$') || !glued(i - 1)
        } else {
            i >= 2 && s[i - 1] == b'$' && s[i - 2] == b'-' && !glued(i - 2)
        };
        if let Ok(v) = format!("{}{body}", if negative { "-" } else { "" }).parse::<f64>() {
            last = Some(v);
        }
        i = end.max(i + 1);
    }
    last
}

/// Whether the last number of `response` (see [`extract_final_number`]) equals `answer`, up to
/// a relative tolerance of 1e-6.
pub fn math_correct(response: &str, answer: f64) -> bool {
    extract_final_number(response)
        .is_some_and(|x| (x - answer).abs() <= 1e-6 * answer.abs().max(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An independent evaluator for `+ - * /` with parentheses over integers (recursive
    /// descent); a division must be exact.
    struct Eval {
        tokens: Vec<String>,
        at: usize,
    }

    impl Eval {
        fn run(text: &str) -> Option<i64> {
            let mut tokens = Vec::new();
            let mut num = String::new();
            for c in text.chars() {
                if c.is_ascii_digit() {
                    num.push(c);
                    continue;
                }
                if !num.is_empty() {
                    tokens.push(std::mem::take(&mut num));
                }
                if !c.is_whitespace() {
                    tokens.push(c.to_string());
                }
            }
            if !num.is_empty() {
                tokens.push(num);
            }
            let mut e = Eval { tokens, at: 0 };
            let v = e.sum()?;
            (e.at == e.tokens.len()).then_some(v)
        }
        fn peek(&self) -> Option<&str> {
            self.tokens.get(self.at).map(String::as_str)
        }
        fn sum(&mut self) -> Option<i64> {
            let mut v = self.product()?;
            while let Some(op @ ("+" | "-")) = self.peek() {
                let plus = op == "+";
                self.at += 1;
                let r = self.product()?;
                v = if plus { v + r } else { v - r };
            }
            Some(v)
        }
        fn product(&mut self) -> Option<i64> {
            let mut v = self.atom()?;
            while let Some(op @ ("*" | "/")) = self.peek() {
                let times = op == "*";
                self.at += 1;
                let r = self.atom()?;
                if times {
                    v *= r;
                } else {
                    if r == 0 || v % r != 0 {
                        return None;
                    }
                    v /= r;
                }
            }
            Some(v)
        }
        fn atom(&mut self) -> Option<i64> {
            let tok = self.peek()?.to_string();
            self.at += 1;
            if tok == "(" {
                let v = self.sum()?;
                if self.peek()? != ")" {
                    return None;
                }
                self.at += 1;
                Some(v)
            } else {
                tok.parse().ok()
            }
        }
    }

    #[test]
    fn evaluator_sanity() {
        assert_eq!(Eval::run("2 + 3 * 4"), Some(14));
        assert_eq!(Eval::run("(12 + 8) / 4"), Some(5));
        assert_eq!(Eval::run("10 - 3 - 2"), Some(5));
        assert_eq!(Eval::run("7 / 2"), None);
    }

    #[test]
    fn builtin_answers_re_evaluate() {
        let set = builtin_math(240, 11);
        assert_eq!(set.len(), 240);
        for p in &set {
            let (expr, rest) = p.answer_text.split_once(" = ").unwrap();
            let value = Eval::run(expr).unwrap_or_else(|| panic!("{}: bad {expr}", p.id));
            assert_eq!(value as f64, p.answer, "{}: {expr}", p.id);
            assert!(value >= 0, "{}: negative answer", p.id);
            assert_eq!(rest, format!("{value}\n#### {value}"));
            // The answer_text is in GSM8K layout, so the GSM8K parser reads it back.
            assert_eq!(parse_final_answer(&p.answer_text), Ok(p.answer));
            // Every operand of the expression appears in the question.
            for operand in expr.split(|c: char| !c.is_ascii_digit()).filter(|t| !t.is_empty()) {
                assert!(p.question.contains(operand), "{}: {operand} not in {}", p.id, p.question);
            }
            let ops = expr.chars().filter(|c| "+-*/".contains(*c)).count();
            assert!((1..=3).contains(&ops), "{}: {ops} operations", p.id);
            assert!(p.question.ends_with('?'));
        }
        // Ids are unique and the questions are varied.
        let ids: std::collections::HashSet<_> = set.iter().map(|p| &p.id).collect();
        assert_eq!(ids.len(), set.len());
        let questions: std::collections::HashSet<_> = set.iter().map(|p| &p.question).collect();
        assert!(questions.len() > 230);
        const { assert!(TEMPLATES >= 8) };
    }

    #[test]
    fn builtin_is_deterministic_and_prefix_stable() {
        assert_eq!(builtin_math(30, 5), builtin_math(30, 5));
        assert_eq!(builtin_math(10, 5)[..], builtin_math(30, 5)[..10]);
        assert_ne!(builtin_math(30, 5), builtin_math(30, 6));
        assert!(builtin_math(0, 1).is_empty());
    }

    #[test]
    fn extract_final_number_cases() {
        let cases: &[(&str, Option<f64>)] = &[
            ("The answer is 42.", Some(42.0)),
            ("So 3 + 4 = 7, then 7 * 2 = 14", Some(14.0)),
            ("Total: $1,234,567", Some(1_234_567.0)),
            ("It costs $12.50 in all", Some(12.5)),
            ("The temperature fell to -5 degrees", Some(-5.0)),
            ("a loss of -$30", Some(-30.0)),
            ("a loss of $-30", Some(-30.0)),
            ("with the unicode minus \u{2212}7", Some(-7.0)),
            ("10-5", Some(5.0)),
            ("value x-2", Some(2.0)),
            ("it is .5 of it", Some(0.5)),
            ("lists 1,2,3", Some(3.0)),
            ("1234,567", Some(567.0)),
            ("**#### 18**", Some(18.0)),
            ("\\boxed{72}", Some(72.0)),
            ("no digits here", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(extract_final_number(text), *want, "{text:?}");
        }
    }

    #[test]
    fn math_correct_cases() {
        assert!(math_correct("so she has 18 left", 18.0));
        assert!(math_correct("$1,000.00", 1000.0));
        assert!(!math_correct("18 ... no wait, 19", 18.0));
        assert!(!math_correct("I am not sure", 18.0));
    }

    #[test]
    fn load_gsm8k_reads_and_locates_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("gsm8k.jsonl");
        std::fs::write(
            &good,
            concat!(
                "{\"question\": \"Q1?\", \"answer\": \"2 + 2 = 4\\n#### 4\"}\n",
                "\n",
                "{\"question\": \"Q2?\", \"answer\": \"big\\n#### 1,250\", \"id\": 9}\r\n",
                "{\"question\": \"Q3?\", \"answer\": \"#### -3.5\"}\n",
            ),
        )
        .unwrap();
        let set = load_gsm8k(&good).unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!((set[0].id.as_str(), set[0].answer), ("gsm8k-0", 4.0));
        assert_eq!(set[0].answer_text, "2 + 2 = 4\n#### 4");
        assert_eq!((set[1].id.as_str(), set[1].answer), ("9", 1250.0));
        assert_eq!((set[2].id.as_str(), set[2].answer), ("gsm8k-2", -3.5));

        let bad = |body: &str| {
            let f = dir.path().join("bad.jsonl");
            std::fs::write(&f, body).unwrap();
            let e = load_gsm8k(&f).unwrap_err().to_string();
            e.strip_prefix(&f.display().to_string()).unwrap().to_string()
        };
        let ok = "{\"question\": \"Q\", \"answer\": \"#### 1\"}\n";
        assert_eq!(
            bad(&format!("{ok}{ok}{{\"question\": \"Q\", \"answer\": \"forty\"}}\n")),
            ":3: field \"answer\": missing \"####\" final answer"
        );
        assert_eq!(
            bad(&format!("{ok}{{\"question\": \"Q\", \"answer\": \"#### forty\"}}\n")),
            ":2: field \"answer\": final answer \"forty\" after \"####\" is not a number"
        );
        assert_eq!(
            bad("{\"question\": \"Q\", \"answer\": \"#### \"}"),
            ":1: field \"answer\": empty final answer after \"####\""
        );
        assert_eq!(bad("{\"answer\": \"#### 1\"}"), ":1: field \"question\": missing");
        assert_eq!(
            bad("{\"question\": \"Q\", \"answer\": 4}"),
            ":1: field \"answer\": expected a string, found a number"
        );
        assert!(bad(&format!("{ok}{{\"question\": ")).starts_with(":2:"));
        assert_eq!(bad("\n\n"), ": no problems in file");
        assert!(load_gsm8k(&dir.path().join("absent.jsonl")).is_err());
    }
}
