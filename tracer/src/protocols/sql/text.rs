//! The literal-free text of a statement from its tokens: literals as `?`,
//! value-only lists as `(?)` (a run of them as one), comments and
//! whitespace runs as one space, names kept only when printable.

use std::fmt::Write;

use sqlparser::tokenizer::{Token, Whitespace};

use super::{MAX_TEXT, is_printable};

/// What the last token written was, for the rules that look back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    Nothing,
    /// A literal, placeholder or collapsed list: `?`, `$1`, `(?)`.
    Value,
    /// A name or keyword.
    Word,
    /// `)` or `]` of a list that stayed.
    Close,
    /// An operator, comma, opening bracket or other punctuation.
    Punct,
}

/// An open `(` or `[`: where it was written and whether only values
/// (and commas, signs) came since.
struct Group {
    at: usize,
    close: char,
    values_only: bool,
    any_value: bool,
}

struct Writer {
    out: String,
    last: Last,
    space: bool,
    /// Where the last collapsed `(?)` ends: a list collapsed right after
    /// it and a comma (`(?), (?)`, VALUES rows) joins it.
    row_end: Option<usize>,
    groups: Vec<Group>,
    /// The previous token was a literal and no whitespace followed: a word
    /// or number glued to it is the literal's (`0x1F`, `1e5x`).
    glued: bool,
}

/// Deepest bracket nesting tracked for collapsing; deeper ones are written
/// as they are (their values are `?` all the same).
const MAX_GROUPS: usize = 64;

/// The text and whether it was cut at [`MAX_TEXT`].
pub(super) fn literal_free(tokens: &[Token]) -> (String, bool) {
    let mut w = Writer {
        out: String::with_capacity(tokens.len() * 4),
        last: Last::Nothing,
        space: false,
        row_end: None,
        groups: Vec::new(),
        glued: false,
    };
    for (i, tok) in tokens.iter().enumerate() {
        let glued = std::mem::take(&mut w.glued);
        match tok {
            Token::Whitespace(Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_))
            | Token::Whitespace(_) => w.space = true,
            Token::EOF => {}
            Token::Word(_) | Token::Number(..) if glued => w.glued = true,
            t if is_literal(t) => {
                w.value();
                w.glued = true;
            }
            Token::Placeholder(p) => {
                if is_numbered_placeholder(p) {
                    w.value_text(p);
                } else {
                    w.value();
                }
            }
            Token::Minus | Token::Plus
                if matches!(tokens.get(i + 1), Some(Token::Number(..)))
                    && !matches!(w.last, Last::Value | Last::Word | Last::Close) =>
            {
                // A signed number: the sign is the literal's.
                w.glued = true;
                w.value();
            }
            Token::Word(word) => {
                let name = &word.value;
                if name.is_empty() || !is_printable(name) || not_a_name(word) {
                    // Not a name anyone can read, or MySQL's `1e5x`-like
                    // names that may well be a mistyped number: not kept.
                    w.value();
                    continue;
                }
                w.before(Last::Word);
                match word.quote_style {
                    // Unescaping is off: the value keeps its doubled quotes.
                    Some(q) => {
                        w.out.push(q);
                        w.out.push_str(name);
                        w.out.push(if q == '[' { ']' } else { q });
                    }
                    None => w.out.push_str(name),
                }
                w.after(Last::Word);
            }
            Token::LParen | Token::LBracket => {
                // Whether the list around this one holds only values is
                // decided when this one closes (collapsed or not).
                w.pending_space();
                let close = if matches!(tok, Token::LParen) { ')' } else { ']' };
                if w.groups.len() < MAX_GROUPS {
                    let at = w.out.len();
                    w.groups.push(Group { at, close, values_only: true, any_value: false });
                }
                w.out.push(if close == ')' { '(' } else { '[' });
                w.last = Last::Punct;
            }
            Token::RParen | Token::RBracket => w.close(if matches!(tok, Token::RParen) { ')' } else { ']' }),
            Token::Comma => {
                w.space = false;
                w.out.push(',');
                w.last = Last::Punct;
            }
            Token::Char(c) => {
                if c.is_ascii_graphic() {
                    w.before(Last::Punct);
                    w.out.push(*c);
                    w.after(Last::Punct);
                }
            }
            other => {
                w.before(Last::Punct);
                let _ = write!(w.out, "{other}");
                w.after(Last::Punct);
            }
        }
        if w.out.len() > MAX_TEXT {
            cut_at(&mut w.out, MAX_TEXT);
            return (w.out, true);
        }
    }
    (w.out, false)
}

impl Writer {
    /// Before writing a token of kind `kind`: the pending space, and what
    /// it does to the open list and the row run.
    fn before(&mut self, kind: Last) {
        self.pending_space();
        if kind != Last::Value
            && let Some(g) = self.groups.last_mut()
        {
            g.values_only = false;
        }
    }

    fn pending_space(&mut self) {
        if self.space && !self.out.is_empty() && !self.out.ends_with(['(', '[']) {
            self.out.push(' ');
        }
        self.space = false;
    }

    fn after(&mut self, kind: Last) {
        self.last = kind;
    }

    /// A literal (or what stands for one) as `?`.
    fn value(&mut self) {
        self.value_text("?");
    }

    fn value_text(&mut self, s: &str) {
        if self.last == Last::Value && self.glued_value() {
            return; // `? ?` from one literal the tokenizer split
        }
        self.before(Last::Value);
        if let Some(g) = self.groups.last_mut() {
            g.any_value = true;
        }
        self.out.push_str(s);
        self.last = Last::Value;
    }

    /// The last thing written is a value and nothing separates it.
    fn glued_value(&self) -> bool {
        !self.space && self.out.ends_with('?')
    }

    fn close(&mut self, close: char) {
        self.space = false;
        let group = match self.groups.last() {
            Some(g) if g.close == close => self.groups.pop(),
            _ => None,
        };
        match group {
            Some(g) if g.values_only && g.any_value => {
                self.out.truncate(g.at);
                // `(?), (?)`: the rows of a VALUES list, or a list of lists.
                let joins = self.row_end.is_some_and(|end| {
                    let between = self.out.get(end..).unwrap_or("x");
                    between.contains(',') && between.bytes().all(|b| b == b',' || b == b' ')
                });
                match self.row_end.filter(|_| joins) {
                    Some(end) => self.out.truncate(end),
                    None => {
                        self.out.push(if close == ')' { '(' } else { '[' });
                        self.out.push('?');
                        self.out.push(close);
                    }
                }
                self.row_end = Some(self.out.len());
                // A collapsed list is a value of the list around it.
                if let Some(p) = self.groups.last_mut() {
                    p.any_value = true;
                }
                self.last = Last::Value;
            }
            _ => {
                if let Some(p) = self.groups.last_mut() {
                    p.values_only = false;
                }
                self.out.push(close);
                self.last = Last::Close;
            }
        }
    }
}

/// An unquoted word that is not a plain name: one that starts with a
/// digit (MySQL allows such names, and `@0` variables) or holds characters
/// names do not (a dialect's lenient identifier rules); quoted names are
/// names whatever they hold.
pub(super) fn not_a_name(w: &sqlparser::tokenizer::Word) -> bool {
    if w.quote_style.is_some() {
        return false;
    }
    let v = w.value.trim_start_matches('@');
    !v.starts_with(|c: char| c.is_alphabetic() || c == '_')
        || !v.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '$' | '@' | '#'))
}

/// Every kind of literal the tokenizer knows (strings in any quoting,
/// numbers, byte/bit/hex strings, COPY data).
fn is_literal(t: &Token) -> bool {
    matches!(
        t,
        Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::CopyData { .. }
            | Token::CustomBinaryOperator(_)
    )
}

/// `$1`..`$99999`: PostgreSQL's parameter references, kept (they say where
/// a bound value goes, not what it is). Anything else the tokenizer calls a
/// placeholder (`:name`, `$tag` of a cut dollar quote) becomes `?`.
fn is_numbered_placeholder(p: &str) -> bool {
    p.strip_prefix('$').is_some_and(|n| (1..=5).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Cut `s` to at most `max` bytes at a character boundary.
pub(super) fn cut_at(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}
