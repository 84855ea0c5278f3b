//! What a statement is, from its tokens: its operation (first keyword, or
//! the main statement's after a WITH clause), its main table, and how many
//! statements the text holds.

use sqlparser::{
    keywords::Keyword,
    tokenizer::{Token, Word},
};

use super::{MAX_COLLECTION, MAX_OPERATION, is_printable};

/// Tokens looked at for the operation and table; a table named after
/// thousands of tokens is not the one a summary wants anyway.
const MAX_SCAN: usize = 4096;

/// Words between INSERT/DELETE and the INTO/FROM before the table
/// (`INSERT LOW_PRIORITY IGNORE INTO`).
const MAX_MODIFIERS: usize = 3;

/// The tokens of the first statement that are not whitespace or comments.
struct Cursor<'t> {
    tokens: &'t [Token],
    pos: usize,
}

impl<'t> Cursor<'t> {
    fn new(tokens: &'t [Token]) -> Self {
        let mut c = Cursor { tokens: &tokens[..tokens.len().min(MAX_SCAN)], pos: 0 };
        c.skip_space();
        c
    }

    fn skip_space(&mut self) {
        while matches!(self.tokens.get(self.pos), Some(Token::Whitespace(_))) {
            self.pos += 1;
        }
    }

    /// The next significant token of the first statement.
    fn peek(&self) -> Option<&'t Token> {
        self.tokens.get(self.pos).filter(|t| !matches!(t, Token::SemiColon | Token::EOF))
    }

    fn next(&mut self) -> Option<&'t Token> {
        let t = self.peek()?;
        self.pos += 1;
        self.skip_space();
        Some(t)
    }

    fn keyword(&self) -> Option<Keyword> {
        match self.peek() {
            Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.keyword),
            _ => None,
        }
    }

    /// Consume the keyword `k` if it is next.
    fn eat(&mut self, k: Keyword) -> bool {
        let yes = self.keyword() == Some(k);
        if yes {
            self.next();
        }
        yes
    }

    /// Advance to the keyword `k` at this bracket depth; false at the end
    /// of the statement or when the depth closes.
    fn find_at_depth(&mut self, k: &[Keyword]) -> Option<Keyword> {
        let mut depth = 0usize;
        while let Some(t) = self.peek() {
            match t {
                Token::LParen => depth += 1,
                Token::RParen if depth == 0 => return None,
                Token::RParen => depth -= 1,
                Token::Word(w) if depth == 0 && w.quote_style.is_none() && k.contains(&w.keyword) => {
                    self.next();
                    return Some(w.keyword);
                }
                _ => {}
            }
            self.next();
        }
        None
    }

    /// A (qualified) name: `t`, `s.t`, `"S"."T"`; None when the next tokens
    /// are not one, or it is too long or not printable.
    fn name(&mut self) -> Option<String> {
        let mut name = String::new();
        while let Some(Token::Word(w)) = self.peek().filter(|t| matches!(t, Token::Word(w) if is_name(w))) {
            self.pos += 1; // no whitespace inside a qualified name
            name.push_str(&w.value);
            if matches!(self.tokens.get(self.pos), Some(Token::Period)) && self.pos + 1 == self.tokens.len() {
                // `s.` and then the end of what was read: the name goes on.
                self.pos = self.tokens.len();
                return None;
            }
            if !(matches!(self.tokens.get(self.pos), Some(Token::Period))
                && matches!(self.tokens.get(self.pos + 1), Some(Token::Word(_))))
            {
                break;
            }
            self.pos += 1;
            name.push('.');
        }
        self.skip_space();
        let ok = !name.is_empty() && !name.ends_with('.') && name.len() <= MAX_COLLECTION && is_printable(&name);
        ok.then_some(name)
    }
}

/// A word that can be a table's name: quoted, or not a reserved word that
/// starts a clause.
fn is_name(w: &Word) -> bool {
    !w.value.is_empty()
        && !super::text::not_a_name(w)
        && (w.quote_style.is_some()
            || !matches!(
                w.keyword,
                Keyword::SELECT
                    | Keyword::WITH
                    | Keyword::VALUES
                    | Keyword::WHERE
                    | Keyword::SET
                    | Keyword::LATERAL
                    | Keyword::DEFAULT
                    | Keyword::ON
            ))
}

/// The first statement's operation and main table, and whether they were
/// looked for up to the last token (more tokens might have said more).
pub(super) fn operation_and_collection(tokens: &[Token]) -> (Option<String>, Option<String>, bool) {
    let mut c = Cursor::new(tokens);
    let (op, collection) = shape(&mut c);
    (op, collection, c.pos >= c.tokens.len())
}

fn shape(c: &mut Cursor<'_>) -> (Option<String>, Option<String>) {
    while matches!(c.peek(), Some(Token::LParen)) {
        c.next(); // `(SELECT ...) UNION ...`
    }
    let Some(Token::Word(first)) = c.peek() else { return (None, None) };
    let op_word = first.value.as_str();
    if first.quote_style.is_some()
        || op_word.len() > MAX_OPERATION
        || !op_word.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
    {
        return (None, None);
    }
    let mut keyword = first.keyword;
    let mut operation = op_word.to_ascii_uppercase();
    c.next();
    if keyword == Keyword::WITH {
        // The main statement follows the common table expressions.
        const MAIN: &[Keyword] = &[Keyword::SELECT, Keyword::INSERT, Keyword::UPDATE, Keyword::DELETE, Keyword::MERGE];
        match c.find_at_depth(MAIN) {
            Some(k) => {
                keyword = k;
                operation = format!("{k:?}");
            }
            None => return (Some(operation), None),
        }
    }
    let collection = collection(c, keyword);
    (Some(operation), collection)
}

fn collection(c: &mut Cursor<'_>, op: Keyword) -> Option<String> {
    match op {
        Keyword::SELECT => {
            c.find_at_depth(&[Keyword::FROM])?;
            c.eat(Keyword::ONLY);
            // `FROM generate_series(1, 9)`: a function, not a table.
            c.name().filter(|_| !matches!(c.peek(), Some(Token::LParen)))
        }
        Keyword::INSERT | Keyword::REPLACE => {
            skip_to(c, Keyword::INTO);
            c.name()
        }
        Keyword::DELETE => {
            skip_to(c, Keyword::FROM);
            c.eat(Keyword::ONLY);
            c.name()
        }
        Keyword::UPDATE => {
            for k in [Keyword::LOW_PRIORITY, Keyword::IGNORE, Keyword::ONLY] {
                c.eat(k);
            }
            c.name()
        }
        Keyword::MERGE => {
            c.eat(Keyword::INTO);
            c.name()
        }
        Keyword::TRUNCATE | Keyword::LOCK => {
            c.eat(Keyword::TABLE);
            c.eat(Keyword::ONLY);
            c.name()
        }
        Keyword::COPY => c.name(),
        Keyword::CREATE | Keyword::DROP | Keyword::ALTER => {
            // CREATE [OR REPLACE] [TEMP|TEMPORARY|UNLOGGED] TABLE [IF [NOT] EXISTS] name
            for _ in 0..MAX_MODIFIERS + 1 {
                if c.eat(Keyword::TABLE) {
                    for k in [Keyword::IF, Keyword::NOT, Keyword::EXISTS, Keyword::ONLY] {
                        c.eat(k);
                    }
                    return c.name();
                }
                if !matches!(
                    c.keyword(),
                    Some(Keyword::OR | Keyword::REPLACE | Keyword::TEMP | Keyword::TEMPORARY | Keyword::UNLOGGED)
                ) {
                    return None;
                }
                c.next();
            }
            None
        }
        _ => None,
    }
}

/// Skip up to [`MAX_MODIFIERS`] words before the keyword `k`, and it.
fn skip_to(c: &mut Cursor<'_>, k: Keyword) {
    let start = c.pos;
    for _ in 0..=MAX_MODIFIERS {
        if c.eat(k) {
            return;
        }
        match c.peek() {
            Some(Token::Word(w)) if w.quote_style.is_none() && w.keyword != Keyword::NoKeyword => {
                c.next();
            }
            _ => break,
        }
    }
    c.pos = start; // `INSERT t ...` (MySQL allows no INTO): the name is next
}

/// `;`-separated statements with at least one token that is not whitespace.
pub(super) fn statements(tokens: &[Token]) -> u32 {
    let mut n = 0u32;
    let mut any = false;
    for t in tokens {
        match t {
            Token::SemiColon => {
                n += u32::from(any);
                any = false;
            }
            Token::Whitespace(_) | Token::EOF => {}
            _ => any = true,
        }
    }
    n + u32::from(any)
}
