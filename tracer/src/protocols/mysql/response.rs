//! Reading one command's answer, packet by packet: OK, ERR, EOF, a prepare's
//! answer (statement id, then its parameter and column definitions), and
//! result sets (column count, definitions, an EOF unless deprecated, rows,
//! then an EOF or OK), several when the server says more results follow.
//!
//! Whether the client asked for OK instead of EOF (CLIENT_DEPRECATE_EOF) is
//! known from the handshake; on a connection seen mid-stream it is told
//! from the packets: the EOF after column definitions is 5 bytes, and an OK
//! that ends rows is at least 7, while no row starts with 0xFE below 16 MiB
//! (that byte prefixes an 8-byte length).

use super::wire::{SERVER_MORE_RESULTS_EXISTS, err, lenenc, prepare_ok, status};

/// What kind of answer a command gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// OK, ERR, EOF or result sets (queries, executes, most commands).
    Results,
    /// A COM_STMT_PREPARE_OK and its definitions, or ERR.
    Prepare,
    /// Rows of an open cursor (COM_STMT_FETCH).
    Rows,
    /// Column definitions up to an EOF (COM_FIELD_LIST).
    Columns,
    /// One packet of any shape (COM_STATISTICS).
    Single,
    /// Authentication exchanges up to an OK or ERR (COM_CHANGE_USER).
    Auth,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    First,
    Columns(u64),
    AfterColumns,
    Rows,
    PrepareDefs(u64),
    PrepareEof,
    FieldList,
    Single,
    Auth,
}

pub enum Outcome {
    More,
    Done,
}

#[derive(Clone, Copy, Debug)]
pub struct Reading {
    expect: Expect,
    state: State,
    deprecate_eof: Option<bool>,
    rows: u64,
    result_sets: u32,
    error: Option<(u16, Option<[u8; 5]>)>,
    statement_id: Option<u32>,
}

/// An EOF packet (not an OK with the 0xFE header).
fn is_eof(first: u8, len: u64) -> bool {
    first == 0xfe && len == 5
}

impl Reading {
    pub fn new(expect: Expect, deprecate_eof: Option<bool>) -> Self {
        let state = match expect {
            Expect::Results | Expect::Prepare => State::First,
            Expect::Rows => State::Rows,
            Expect::Columns => State::FieldList,
            Expect::Single => State::Single,
            Expect::Auth => State::Auth,
        };
        Reading { expect, state, deprecate_eof, rows: 0, result_sets: 0, error: None, statement_id: None }
    }

    /// Rows the result sets held (None: the answer had none).
    pub fn rows(&self) -> Option<u64> {
        (self.result_sets > 0 || self.expect == Expect::Rows).then_some(self.rows)
    }

    pub fn error(&self) -> Option<(u16, Option<[u8; 5]>)> {
        self.error
    }

    pub fn statement_id(&self) -> Option<u32> {
        self.statement_id
    }

    /// One packet of the answer (`b`: its kept bytes, at least one unless
    /// it is empty; `len`: its length).
    pub fn packet(&mut self, b: &[u8], len: u64) -> Outcome {
        let Some(&first) = b.first() else { return Outcome::More };
        match self.state {
            State::Single => Outcome::Done,
            State::Auth => match first {
                0x00 => Outcome::Done,
                0xff => self.err(b),
                _ => Outcome::More, // auth switch, more data
            },
            State::First => match first {
                0x00 if self.expect == Expect::Prepare => {
                    let Some((id, cols, params)) = prepare_ok(b) else { return Outcome::Done };
                    self.statement_id = Some(id);
                    self.defs(u64::from(cols) + u64::from(params))
                }
                0x00 => self.end_of_result(b, len),
                0xff => self.err(b),
                0xfe if len < 9 => self.end_of_result(b, len),
                0xfb => Outcome::More, // LOCAL INFILE: the client sends the file, then OK or ERR
                _ => match lenenc(b) {
                    Some((n, _)) if n > 0 => {
                        self.result_sets += 1;
                        self.state = State::Columns(n);
                        Outcome::More
                    }
                    _ => Outcome::Done,
                },
            },
            State::Columns(n) => {
                self.state = match (n - 1, self.deprecate_eof) {
                    (0, Some(true)) => State::Rows,
                    (0, _) => State::AfterColumns,
                    (left, _) => State::Columns(left),
                };
                Outcome::More
            }
            State::AfterColumns => {
                self.state = State::Rows;
                if is_eof(first, len) { Outcome::More } else { self.row(b, len) }
            }
            State::Rows => self.row(b, len),
            State::PrepareDefs(n) => {
                if is_eof(first, len) {
                    return Outcome::More; // between parameter and column definitions
                }
                self.defs(n - 1)
            }
            State::PrepareEof => Outcome::Done,
            State::FieldList => match first {
                0xfe if len < 9 => Outcome::Done,
                0xff => self.err(b),
                _ => Outcome::More,
            },
        }
    }

    /// `n` definitions of a prepare's answer still to come.
    fn defs(&mut self, n: u64) -> Outcome {
        if n > 0 {
            self.state = State::PrepareDefs(n);
            return Outcome::More;
        }
        // The definitions end with an EOF unless deprecated; when that is
        // not known, the answer ends here (a late EOF is let go).
        if self.deprecate_eof == Some(false) && self.state != State::First {
            self.state = State::PrepareEof;
            return Outcome::More;
        }
        Outcome::Done
    }

    fn row(&mut self, b: &[u8], len: u64) -> Outcome {
        match b[0] {
            0xfe if len < 0xff_ffff => self.end_of_result(b, len),
            0xff => self.err(b),
            _ => {
                self.rows += 1;
                Outcome::More
            }
        }
    }

    /// An OK or EOF: the answer ends unless the server says more follow.
    fn end_of_result(&mut self, b: &[u8], len: u64) -> Outcome {
        match status(b, len) {
            Some(s) if s & SERVER_MORE_RESULTS_EXISTS != 0 => {
                self.state = State::First;
                Outcome::More
            }
            _ => Outcome::Done,
        }
    }

    fn err(&mut self, b: &[u8]) -> Outcome {
        self.error = err(b).or(Some((0, None)));
        Outcome::Done
    }
}
