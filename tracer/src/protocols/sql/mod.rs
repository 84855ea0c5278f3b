//! SQL statements reduced to what may leave the node: from a statement's
//! text (often cut at the capture limit) to a [`Statement`] with its
//! operation, main table, an OpenTelemetry `db.query.summary` and a
//! literal-free text. Shared by the database protocols (PostgreSQL, MySQL).
//!
//! The text is split by `sqlparser`'s tokenizer in the server's dialect,
//! never by patterns over raw SQL, so a quote inside a comment or an
//! escaped quote inside a string cannot shift what counts as a literal.
//! Every literal (string of any quoting, number, dollar-quoted body, COPY
//! payload) becomes `?`, a parenthesised list of values only (IN-lists,
//! VALUES rows, function arguments) becomes `(?)` and a run of such rows one
//! `(?)`; comments are dropped. When the tokenizer stops (the statement was
//! cut inside a literal, or is not SQL) only the tokens before that point
//! are used: the bytes of an unterminated literal are never read into any
//! output.
//!
//! The API: [`sanitize`] (everything, text included: for `db.query.text`),
//! [`summarize`] (operation, table and summary only, reading as little of
//! the text as they need: about half the work on typical statements),
//! [`Statement`], [`Dialect`] and [`is_printable`]. Both take bytes as
//! captured (`cut`: the caller knows more followed) and never panic; each
//! costs a few microseconds per statement (the tokenizer allocates per
//! token), so a parser keeps what it read for texts it sees again.
//!
//! ```
//! use tracer::protocols::sql::{Dialect, sanitize};
//! let s = sanitize(b"SELECT * FROM users WHERE email = 'a@b.c' AND id IN (1, 2)", Dialect::Postgres, false);
//! assert_eq!(s.summary, "SELECT users");
//! assert_eq!(s.text, "SELECT * FROM users WHERE email = ? AND id IN (?)");
//! ```

mod shape;
mod text;

use sqlparser::{
    dialect::{MySqlDialect, PostgreSqlDialect},
    tokenizer::{Token, TokenWithSpan, Tokenizer},
};

/// Longest `text` kept (characters past it are cut, `truncated` set).
pub const MAX_TEXT: usize = 2048;
/// Longest `collection` kept; a longer name is not kept at all.
pub const MAX_COLLECTION: usize = 128;
/// Longest `operation` kept; a longer first word is not an operation.
pub const MAX_OPERATION: usize = 32;
/// Longest `summary`.
pub const MAX_SUMMARY: usize = 255;
/// Longest input read: the capture limit is far below; this bounds the
/// tokenizer's work whatever a caller passes.
pub const MAX_INPUT: usize = 64 * 1024;

/// Which server's lexical rules apply (quotes, comments, escapes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `"ident"`, `$tag$...$tag$`, `E'...'`, `--` and `/* */` comments.
    Postgres,
    /// `` `ident` ``, `"..."` and `'...'` strings with backslash escapes, `#` comments.
    MySql,
}

/// A statement as it may be exported: nothing in it comes from a literal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Statement {
    /// The statement's first keyword, upper-case (`SELECT`, `INSERT`,
    /// `BEGIN`); for `WITH ...` the main statement's. None: not SQL.
    pub operation: Option<String>,
    /// The main table (`schema.table` as written, quotes removed): the first
    /// one after FROM for SELECT, the target of INSERT/UPDATE/DELETE/MERGE,
    /// the table of TABLE DDL, TRUNCATE, COPY, LOCK. Printable, at most
    /// [`MAX_COLLECTION`] bytes.
    pub collection: Option<String>,
    /// `db.query.summary`: operation and collection (`SELECT users`), the
    /// operation alone, or empty when there is none.
    pub summary: String,
    /// The statement with literals collapsed and comments dropped,
    /// whitespace runs as one space; at most [`MAX_TEXT`] bytes, printable.
    pub text: String,
    /// Statements in the text (`;`-separated, empty ones not counted); the
    /// other fields describe the first.
    pub statements: u32,
    /// Not the whole statement: cut by the caller (`cut`), at an invalid
    /// UTF-8 byte, where the tokenizer stopped, or at [`MAX_TEXT`].
    pub truncated: bool,
}

impl Dialect {
    fn tokenizer_dialect(self) -> &'static dyn sqlparser::dialect::Dialect {
        match self {
            Dialect::Postgres => &PostgreSqlDialect {},
            Dialect::MySql => &MySqlDialect {},
        }
    }
}

/// The exportable form of a statement's text. `cut`: the caller knows the
/// text is only a prefix (the capture limit, or a length field saying more
/// followed); a literal or name the cut runs through is then dropped.
pub fn sanitize(sql: &[u8], dialect: Dialect, cut: bool) -> Statement {
    let (sql, mut truncated) = valid_utf8(sql, cut);
    let (tokens, stopped) = tokenize(sql, dialect, truncated);
    truncated |= stopped;
    let (operation, collection, _) = shape::operation_and_collection(&tokens);
    let (text, text_cut) = text::literal_free(&tokens);
    let summary = summary(operation.as_deref(), collection.as_deref());
    Statement {
        operation,
        collection,
        summary,
        text,
        statements: shape::statements(&tokens),
        truncated: truncated || text_cut,
    }
}

/// The statement's operation, collection and summary without its text
/// (`text` is empty): what a span needs when `db.query.text` is off, for a
/// fraction of [`sanitize`]'s work, since only the tokens up to the table
/// name are read (a growing prefix of the text, until they are in it).
/// `statements` counts those in the part read; `truncated` says only what
/// the caller and the text's encoding said.
pub fn summarize(sql: &[u8], dialect: Dialect, cut: bool) -> Statement {
    let (sql, truncated) = valid_utf8(sql, cut);
    let mut len = SUMMARY_PREFIX;
    loop {
        let whole = len >= sql.len();
        let mut end = len.min(sql.len());
        while !sql.is_char_boundary(end) {
            end -= 1;
        }
        let (tokens, _) = tokenize(&sql[..end], dialect, truncated || !whole);
        let (operation, collection, ran_out) = shape::operation_and_collection(&tokens);
        if whole || !ran_out {
            let summary = summary(operation.as_deref(), collection.as_deref());
            let statements = shape::statements(&tokens);
            return Statement { operation, collection, summary, text: String::new(), statements, truncated };
        }
        len *= 4;
    }
}

/// First prefix [`summarize`] reads.
const SUMMARY_PREFIX: usize = 48;

/// The valid UTF-8 start of `sql` (at most [`MAX_INPUT`] bytes), and
/// whether it is not all of the statement.
fn valid_utf8(sql: &[u8], cut: bool) -> (&str, bool) {
    let truncated = cut || sql.len() > MAX_INPUT;
    let sql = &sql[..sql.len().min(MAX_INPUT)];
    match std::str::from_utf8(sql) {
        Ok(s) => (s, truncated),
        // Valid by construction; the fallback is never taken.
        Err(e) => (std::str::from_utf8(&sql[..e.valid_up_to()]).unwrap_or(""), true),
    }
}

/// The tokens of `sql`, up to where the tokenizer stopped (true: it did,
/// before the end). `cut`: the last token may be one the cut ran through.
fn tokenize(sql: &str, dialect: Dialect, cut: bool) -> (Vec<Token>, bool) {
    let mut tokens: Vec<TokenWithSpan> = Vec::new();
    let complete = Tokenizer::new(dialect.tokenizer_dialect(), sql)
        .with_unescape(false)
        .tokenize_with_location_into_buf(&mut tokens)
        .is_ok();
    let mut tokens: Vec<Token> = tokens.into_iter().map(|t| t.token).collect();
    if cut || !complete {
        // The last token may be a word or number the cut ran through: it
        // is not what the statement said.
        drop_cut_tail(&mut tokens);
    }
    (tokens, !complete)
}

/// Drop a trailing word (a cut name, or a keyword it makes look like one);
/// a trailing number becomes `?` anyway.
fn drop_cut_tail(tokens: &mut Vec<Token>) {
    if matches!(tokens.last(), Some(Token::Word(_))) {
        tokens.pop();
    }
}

fn summary(operation: Option<&str>, collection: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(op) = operation {
        s.push_str(op);
        if let Some(c) = collection {
            s.push(' ');
            s.push_str(c);
        }
    }
    text::cut_at(&mut s, MAX_SUMMARY);
    s
}

/// Printable: no control characters (a terminal or a log line shows it as it is).
pub fn is_printable(s: &str) -> bool {
    s.chars().all(|c| !c.is_control())
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_prop;
