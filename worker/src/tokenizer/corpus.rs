//! The English pretraining corpus: the reStructuredText sources of Python's documentation as
//! Debian ships them (package `python3-doc`, installed by `scripts/bootstrap.sh`; PSF License
//! Agreement), about 12 MB in ~500 files under `/usr/share/doc/python3.X/html/_sources`.
//!
//! Each source file is one [`Document`]: its prose paragraphs with reST markup removed (code
//! blocks, directives, tables and heading rules are dropped; inline roles keep their text).
//! Files go to the train or validation [`Split`] by a hash of their path, so the split is the
//! same on every machine and does not move when files are added.

use super::TokenizerError;
use std::path::{Path, PathBuf};

/// Where `python3-doc` puts the documentation sources (`{}` is the Python version directory).
pub const DEFAULT_ROOT_PARENT: &str = "/usr/share/doc";
/// Environment variable that overrides the corpus directory.
pub const CORPUS_ENV: &str = "WAX_TOKENIZER_CORPUS";

/// Which part of the corpus to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Validation,
    All,
}

/// One document: a source file's prose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Path relative to the corpus root, with `/` separators.
    pub source: String,
    pub text: String,
}

/// A located corpus: a directory of `*.rst.txt` / `*.txt` files.
#[derive(Debug, Clone)]
pub struct Corpus {
    root: PathBuf,
    files: Vec<String>,
    /// Files (per thousand) that go to the validation split.
    validation_permille: u32,
}

impl Corpus {
    /// Finds the corpus: `path` if given, else `$WAX_TOKENIZER_CORPUS`, else the newest
    /// `/usr/share/doc/python3.*/html/_sources`.
    pub fn locate(path: Option<&Path>) -> Result<Corpus, TokenizerError> {
        if let Some(p) = path {
            return Corpus::open(p);
        }
        if let Some(p) = std::env::var_os(CORPUS_ENV) {
            return Corpus::open(Path::new(&p));
        }
        let parent = Path::new(DEFAULT_ROOT_PARENT);
        let mut candidates: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(parent)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let version = name.strip_prefix("python3.")?;
                let key: Vec<u32> =
                    version.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
                let dir = e.path().join("html/_sources");
                dir.is_dir().then_some((key, dir))
            })
            .collect();
        candidates.sort();
        match candidates.pop() {
            Some((_, dir)) => Corpus::open(&dir),
            None => Err(TokenizerError::Corpus(format!(
                "no English corpus found: looked for {DEFAULT_ROOT_PARENT}/python3.*/html/_sources \
                 (Debian package python3-doc; run `make bootstrap`), or pass a directory / set \
                 ${CORPUS_ENV}"
            ))),
        }
    }

    /// Opens a directory of text files (searched recursively for `*.txt`).
    pub fn open(root: &Path) -> Result<Corpus, TokenizerError> {
        if !root.is_dir() {
            return Err(TokenizerError::Corpus(format!(
                "{}: not a directory (the English corpus comes from the Debian package \
                 python3-doc; run `make bootstrap`)",
                root.display()
            )));
        }
        let mut files = Vec::new();
        collect(root, root, &mut files)?;
        files.sort();
        if files.is_empty() {
            return Err(TokenizerError::Corpus(format!("{}: no *.txt files", root.display())));
        }
        Ok(Corpus { root: root.to_path_buf(), files, validation_permille: 50 })
    }

    /// Sets the validation share (per thousand files; default 50 = 5%).
    pub fn with_validation_permille(mut self, permille: u32) -> Self {
        self.validation_permille = permille.min(1000);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Number of files in the corpus.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Which split a file belongs to.
    pub fn split_of(&self, source: &str) -> Split {
        if fnv1a(source.as_bytes()) % 1000 < u64::from(self.validation_permille) {
            Split::Validation
        } else {
            Split::Train
        }
    }

    /// The documents of `split` in path order; files whose prose is empty are skipped.
    pub fn documents(
        &self,
        split: Split,
    ) -> impl Iterator<Item = Result<Document, TokenizerError>> + '_ {
        self.files
            .iter()
            .filter(move |f| split == Split::All || self.split_of(f) == split)
            .filter_map(move |f| {
                let path = self.root.join(f);
                match std::fs::read(&path) {
                    Err(e) => Some(Err(TokenizerError::io(&path, e))),
                    Ok(bytes) => {
                        let text = prose(&String::from_utf8_lossy(&bytes));
                        (!text.is_empty()).then(|| Ok(Document { source: f.clone(), text }))
                    }
                }
            })
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), TokenizerError> {
    let entries = std::fs::read_dir(dir).map_err(|e| TokenizerError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| TokenizerError::io(dir, e))?;
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "txt") {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let parts: Vec<String> =
                rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            out.push(parts.join("/"));
        }
    }
    Ok(())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// A line of one punctuation character repeated (a reST heading rule or table border).
fn is_rule(line: &str) -> bool {
    let t = line.trim();
    let mut chars = t.chars();
    match chars.next() {
        Some(c) if c.is_ascii_punctuation() => {
            t.len() >= 3 && chars.all(|d| d == c || d == ' ' || d == '+')
        }
        _ => false,
    }
}

/// The prose paragraphs of a reST source, one per line pair, markup removed.
pub fn prose(source: &str) -> String {
    let mut paragraphs = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let flush = |current: &mut Vec<&str>, out: &mut Vec<String>| {
        if let Some(p) = paragraph(current) {
            out.push(p);
        }
        current.clear();
    };
    for line in source.lines() {
        if line.trim().is_empty() {
            flush(&mut current, &mut paragraphs);
        } else if !is_rule(line) {
            current.push(line);
        }
    }
    flush(&mut current, &mut paragraphs);
    paragraphs.join("\n\n")
}

fn paragraph(lines: &[&str]) -> Option<String> {
    let first = lines.first()?;
    // Indented blocks are code, directive bodies or quotes; `..` starts a directive, comment or
    // target; `|`, `+`, `>>>` and `*`-bullets of tables, doctests and option lists are not prose.
    if first.starts_with([' ', '\t'])
        || first.starts_with("..")
        || first.starts_with(['|', '+', ':'])
        || first.starts_with(">>>")
    {
        return None;
    }
    let joined = lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
    let text = strip_inline(&joined);
    let text = text.strip_suffix("::").map(|t| format!("{t}:")).unwrap_or(text);
    let letters = text.chars().filter(|c| c.is_alphabetic() || *c == ' ').count();
    let words = text.split_whitespace().count();
    (words >= 4 && letters * 10 >= text.chars().count() * 8).then_some(text)
}

/// Removes inline markup: ``:role:`text <target>` `` → `text`, ``` ``code`` ``` → `code`,
/// `` `link <url>`_ `` → `link`, `**strong**` → `strong`.
fn strip_inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('`') {
        let (before, after) = rest.split_at(i);
        // Drop a `:role:` directly before the backquote.
        let before = match before.strip_suffix(':').and_then(|b| b.rfind(':').map(|j| (b, j))) {
            Some((b, j))
                if b[j + 1..]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '-')
                    && j + 1 < b.len() =>
            {
                &b[..j]
            }
            _ => before,
        };
        out.push_str(before);
        let ticks = if after.starts_with("``") { 2 } else { 1 };
        let body = &after[ticks..];
        let close = "`".repeat(ticks);
        match body.find(&close) {
            Some(end) => {
                let mut inner = &body[..end];
                if ticks == 1 {
                    if let Some(lt) = inner.rfind(" <")
                        && inner.ends_with('>')
                    {
                        inner = &inner[..lt];
                    }
                    inner = inner.trim_start_matches(['~', '!']);
                }
                out.push_str(inner);
                rest = &body[end + ticks..];
                rest = rest.strip_prefix("__").or_else(|| rest.strip_prefix('_')).unwrap_or(rest);
            }
            None => {
                out.push_str(after);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.replace("**", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prose_keeps_paragraphs_and_drops_markup() {
        let src = ".. _tut-intro:\n\n*****\nTitle\n*****\n\nIf you use :func:`open` or ``len(x)``, see\n\
                   `the docs <https://x>`_ for **more** details::\n\n    code = 1\n\n\
                   .. note::\n\n   Indented note.\n\n>>> 1 + 1\n2\n\nShort one.\n";
        assert_eq!(prose(src), "If you use open or len(x), see the docs for more details:");
    }

    #[test]
    fn split_is_deterministic_and_partitions() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..200 {
            std::fs::write(
                dir.path().join(format!("f{i}.txt")),
                format!("Document number {i} has some words in it."),
            )
            .unwrap();
        }
        let c = Corpus::open(dir.path()).unwrap().with_validation_permille(100);
        let train: Vec<_> = c.documents(Split::Train).map(|d| d.unwrap().source).collect();
        let val: Vec<_> = c.documents(Split::Validation).map(|d| d.unwrap().source).collect();
        assert_eq!(train.len() + val.len(), 200);
        assert!(!val.is_empty() && val.len() < 50, "{}", val.len());
        assert!(val.iter().all(|v| !train.contains(v)));
        let again: Vec<_> = c.documents(Split::Validation).map(|d| d.unwrap().source).collect();
        assert_eq!(val, again);
    }

    #[test]
    fn missing_corpus_is_a_clear_error() {
        let err = Corpus::open(Path::new("/nonexistent/corpus")).unwrap_err();
        assert!(err.to_string().contains("python3-doc"), "{err}");
    }
}
