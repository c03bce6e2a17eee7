//! A small RFC-4180 CSV reader: comma-separated fields, optional double quotes around a field,
//! `""` for a literal quote inside a quoted field, newlines inside quoted fields, and LF or CRLF
//! record separators.
//!
//! Leniencies, all deliberate: a quote in the middle of an unquoted field is kept as a literal
//! character; a bare CR also ends a record; empty physical lines are skipped; a CRLF inside a
//! quoted field becomes `\n`; a leading UTF-8 byte-order mark is ignored. Text after a closing
//! quote (`"ab"c`) and a quoted field that never closes are errors, located by line and column.

use std::path::Path;

use super::error::DataError;

/// One CSV record and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvRecord {
    /// 1-based line of the record's first character.
    pub line: usize,
    /// The fields, unquoted.
    pub fields: Vec<String>,
}

/// A syntax error, located by 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvSyntaxError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl CsvSyntaxError {
    /// The error as a [`DataError::Csv`] of the file `path`.
    pub fn in_file(self, path: &Path) -> DataError {
        DataError::Csv {
            path: path.to_path_buf(),
            line: self.line,
            column: self.column,
            message: self.message,
        }
    }
}

/// A character cursor that tracks line and column.
struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    column: usize,
}

impl Cursor<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    /// Consumes a record separator (LF, CRLF or a bare CR) if one is next; true if it did.
    fn eat_newline(&mut self) -> bool {
        match self.peek() {
            Some('\n') => {
                self.bump();
                true
            }
            Some('\r') => {
                self.chars.next();
                if self.peek() == Some('\n') {
                    self.bump();
                } else {
                    self.line += 1;
                    self.column = 1;
                }
                true
            }
            _ => false,
        }
    }
}

/// Parses CSV text into records (see the module documentation for the accepted dialect).
pub fn parse_csv(text: &str) -> Result<Vec<CsvRecord>, CsvSyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut cur = Cursor { chars: text.chars().peekable(), line: 1, column: 1 };
    let mut records = Vec::new();
    loop {
        // Skip empty physical lines between records.
        while cur.eat_newline() {}
        if cur.peek().is_none() {
            return Ok(records);
        }
        let line = cur.line;
        let mut fields = Vec::new();
        loop {
            let mut field = String::new();
            if cur.peek() == Some('"') {
                let (open_line, open_column) = (cur.line, cur.column);
                cur.bump();
                loop {
                    match cur.bump() {
                        None => {
                            return Err(CsvSyntaxError {
                                line: open_line,
                                column: open_column,
                                message: "quoted field is never closed".to_string(),
                            });
                        }
                        Some('"') => {
                            if cur.peek() == Some('"') {
                                cur.bump();
                                field.push('"');
                            } else {
                                break;
                            }
                        }
                        Some('\r') if cur.peek() == Some('\n') => {
                            cur.bump();
                            field.push('\n');
                        }
                        Some(c) => field.push(c),
                    }
                }
                match cur.peek() {
                    None | Some(',' | '\n' | '\r') => {}
                    Some(c) => {
                        return Err(CsvSyntaxError {
                            line: cur.line,
                            column: cur.column,
                            message: format!("unexpected {c:?} after the closing quote of a field"),
                        });
                    }
                }
            } else {
                while let Some(c) = cur.peek() {
                    if matches!(c, ',' | '\n' | '\r') {
                        break;
                    }
                    field.push(c);
                    cur.bump();
                }
            }
            fields.push(field);
            if cur.peek() == Some(',') {
                cur.bump();
                continue;
            }
            cur.eat_newline();
            break;
        }
        records.push(CsvRecord { line, fields });
    }
}

/// A CSV file with a header row.
pub(crate) struct CsvTable {
    header: Vec<String>,
    /// The data records (every one has exactly as many fields as the header).
    pub rows: Vec<CsvRecord>,
    /// 1-based line of the header.
    pub header_line: usize,
}

impl CsvTable {
    /// Parses `text` (the contents of `path`, which only labels errors): the first record is the
    /// header; every other record must have as many fields as it.
    pub fn parse(text: &str, path: &Path) -> Result<Self, DataError> {
        let mut records = parse_csv(text).map_err(|e| e.in_file(path))?;
        if records.is_empty() {
            return Err(DataError::file(path, "empty CSV file (no header row)"));
        }
        let head = records.remove(0);
        let header: Vec<String> = head.fields.iter().map(|h| h.trim().to_string()).collect();
        for row in &records {
            if row.fields.len() != header.len() {
                return Err(DataError::record(
                    path,
                    row.line,
                    format!(
                        "expected {} fields (as in the header), found {}",
                        header.len(),
                        row.fields.len()
                    ),
                ));
            }
        }
        Ok(CsvTable { header, rows: records, header_line: head.line })
    }

    /// The index of a column by name (case-insensitive), if present.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h.eq_ignore_ascii_case(name))
    }

    /// The index of a required column, or an error naming the header line.
    pub fn require(&self, path: &Path, name: &str) -> Result<usize, DataError> {
        self.column(name).ok_or_else(|| {
            DataError::record(
                path,
                self.header_line,
                format!("header has no \"{name}\" column (found: {})", self.header.join(", ")),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<Vec<String>> {
        parse_csv(text).unwrap().into_iter().map(|r| r.fields).collect()
    }

    fn owned(rows: &[&[&str]]) -> Vec<Vec<String>> {
        rows.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect()
    }

    #[test]
    fn plain_and_quoted_fields() {
        assert_eq!(fields("a,b,c\n1,2,3\n"), owned(&[&["a", "b", "c"], &["1", "2", "3"]]));
        assert_eq!(fields("a,,c"), owned(&[&["a", "", "c"]]));
        assert_eq!(fields("a,b,\n"), owned(&[&["a", "b", ""]]));
        assert_eq!(
            fields("\"x, y\",\"say \"\"hi\"\"\",\"\"\n"),
            owned(&[&["x, y", "say \"hi\"", ""]])
        );
        // A quote in the middle of an unquoted field is literal.
        assert_eq!(fields("5\" screen,ok"), owned(&[&["5\" screen", "ok"]]));
    }

    #[test]
    fn embedded_newlines_crlf_and_line_numbers() {
        let text = "h1,h2\r\n\"multi\r\nline\",x\r\n\r\nlast,\"a\nb\nc\"\r\nend,1";
        let recs = parse_csv(text).unwrap();
        assert_eq!(recs.iter().map(|r| r.line).collect::<Vec<_>>(), vec![1, 2, 5, 8]);
        assert_eq!(recs[1].fields, vec!["multi\nline", "x"]);
        assert_eq!(recs[2].fields, vec!["last", "a\nb\nc"]);
        assert_eq!(recs[3].fields, vec!["end", "1"]);
        // Bare CR separators and a byte-order mark.
        assert_eq!(fields("\u{feff}a\rb\r"), owned(&[&["a"], &["b"]]));
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = parse_csv("a,b\nc,\"open\nstill open").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
        assert!(e.message.contains("never closed"));
        let e = parse_csv("a,b\n\"x\"y,z").unwrap_err();
        assert_eq!((e.line, e.column), (2, 4));
        let d = e.in_file(Path::new("t.csv"));
        assert_eq!(
            d.to_string(),
            "t.csv:2:4: CSV syntax: unexpected 'y' after the closing quote of a field"
        );
    }

    #[test]
    fn table_checks_widths_and_columns() {
        let p = Path::new("q.csv");
        let t = CsvTable::parse(" Problem ,answer\n\"x\",1\n", p).unwrap();
        assert_eq!(t.column("problem"), Some(0));
        assert_eq!(t.require(p, "answer").unwrap(), 1);
        assert_eq!(
            t.require(p, "topic").unwrap_err().to_string(),
            "q.csv:1: header has no \"topic\" column (found: Problem, answer)"
        );
        let e = CsvTable::parse("a,b\n1,2\n3\n", p).err().unwrap();
        assert_eq!(e.to_string(), "q.csv:3: expected 2 fields (as in the header), found 1");
        assert!(CsvTable::parse("\n\n", p).is_err());
    }
}
