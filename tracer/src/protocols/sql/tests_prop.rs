//! Property tests: SQL-like text built from fragments, cut anywhere, never
//! shows a literal's content or a number; any bytes never panic and give
//! bounded, printable output with no number of the input in it.

use proptest::{collection::vec, prelude::*};

use super::{Dialect, MAX_COLLECTION, MAX_OPERATION, MAX_SUMMARY, MAX_TEXT, Statement, sanitize, summarize};

/// Names use a-y and `_` only: a `z` or a digit in any output came from a
/// literal or a comment.
fn name() -> impl Strategy<Value = String> {
    "[a-y_]{1,8}"
}

/// What a literal or a comment holds: the marker `z`, digits, quotes of the
/// other kind, spaces and punctuation.
fn content() -> impl Strategy<Value = String> {
    "[z0-9@ ~.,()\"`-]{0,12}"
}

fn fragment(dialect: Dialect) -> impl Strategy<Value = String> {
    let keyword = prop::sample::select(vec![
        "SELECT", "FROM", "WHERE", "INSERT", "INTO", "VALUES", "UPDATE", "SET", "DELETE", "IN", "AND", "OR", "WITH",
        "AS", "JOIN", "ON", "NULL", "TRUE", "COPY", "STDIN", "LIMIT",
    ])
    .prop_map(str::to_string);
    let punct = prop::sample::select(vec!["(", ")", ",", ";", "=", "*", ".", "-", "+", "<", ">=", "::", "[", "]"])
        .prop_map(str::to_string);
    let number = "[0-9]{1,12}(\\.[0-9]{1,4})?(e[0-9]{1,2})?";
    let common = prop_oneof![
        4 => keyword,
        4 => name(),
        4 => punct,
        3 => number.prop_map(|n| n.to_string()),
        3 => content().prop_map(|c| format!("'{}'", c.replace('\'', "''"))),
        1 => content().prop_map(|c| format!("/*{}*/", c.replace("*/", ""))),
        1 => content().prop_map(|c| format!("-- {}\n", c.replace('\n', ""))),
        4 => Just(" ".to_string()),
    ];
    let own = match dialect {
        Dialect::Postgres => prop_oneof![
            content().prop_map(|c| format!("$${}$$", c.replace('$', ""))),
            content().prop_map(|c| format!("E'{}'", c.replace(['\'', '\\'], ""))),
            name().prop_map(|n| format!("\"{n}\"")),
        ]
        .boxed(),
        Dialect::MySql => prop_oneof![
            content().prop_map(|c| format!("\"{}\"", c.replace(['"', '\\'], ""))),
            content().prop_map(|c| format!("# {}\n", c.replace('\n', ""))),
            name().prop_map(|n| format!("`{n}`")),
        ]
        .boxed(),
    };
    prop_oneof![8 => common, 1 => own]
}

fn statement(dialect: Dialect) -> impl Strategy<Value = String> {
    vec(fragment(dialect), 0..40).prop_map(|f| f.join(" "))
}

fn fields(s: &Statement) -> [&str; 4] {
    [s.operation.as_deref().unwrap_or(""), s.collection.as_deref().unwrap_or(""), &s.summary, &s.text]
}

fn assert_bounded(s: &Statement) {
    assert!(s.text.len() <= MAX_TEXT, "{s:?}");
    assert!(s.summary.len() <= MAX_SUMMARY, "{s:?}");
    assert!(s.collection.as_ref().is_none_or(|c| c.len() <= MAX_COLLECTION), "{s:?}");
    assert!(s.operation.as_ref().is_none_or(|o| o.len() <= MAX_OPERATION), "{s:?}");
    for f in fields(s) {
        assert!(super::is_printable(f), "{f:?}");
    }
}

/// Every digit in `s` continues a name (`a1`), is inside a quoted name
/// (`"2024"`) or a parameter (`$1`): no number of the input stands on its own.
fn no_free_number(s: &str) -> bool {
    let mut in_word = false;
    let mut quote = None;
    for c in s.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        if c == '"' || c == '`' {
            quote = Some(c);
            continue;
        }
        if c.is_ascii_digit() && !in_word {
            return false;
        }
        in_word = c.is_alphanumeric() || matches!(c, '_' | '$' | '@' | '#');
    }
    true
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn literals_never_show(sql in statement(Dialect::Postgres), my in statement(Dialect::MySql), cut in any::<prop::sample::Index>()) {
        for (sql, dialect) in [(sql, Dialect::Postgres), (my, Dialect::MySql)] {
            for (text, is_cut) in [(sql.as_str(), false), (&sql[..cut.index(sql.len() + 1)], true)] {
                let s = sanitize(text.as_bytes(), dialect, is_cut);
                assert_bounded(&s);
                for f in fields(&s) {
                    prop_assert!(!f.contains('z'), "literal content in {f:?} from {text:?}");
                    prop_assert!(!f.bytes().any(|b| b.is_ascii_digit()), "digit in {f:?} from {text:?}");
                    prop_assert!(!f.contains('\''), "quote in {f:?} from {text:?}");
                }
            }
        }
    }

    #[test]
    fn summarize_reads_the_same_shape(sql in statement(Dialect::Postgres), my in statement(Dialect::MySql), cut in any::<prop::sample::Index>()) {
        for (sql, dialect) in [(sql, Dialect::Postgres), (my, Dialect::MySql)] {
            for (text, is_cut) in [(sql.as_str(), false), (&sql[..cut.index(sql.len() + 1)], true)] {
                let full = sanitize(text.as_bytes(), dialect, is_cut);
                let short = summarize(text.as_bytes(), dialect, is_cut);
                prop_assert_eq!((&full.operation, &full.collection, &full.summary), (&short.operation, &short.collection, &short.summary), "{:?}", text);
                prop_assert!(short.text.is_empty());
                assert_bounded(&short);
            }
        }
    }

    #[test]
    fn any_bytes_never_panic(bytes in vec(any::<u8>(), 0..600), dialect in prop_oneof![Just(Dialect::Postgres), Just(Dialect::MySql)]) {
        let s = sanitize(&bytes, dialect, false);
        assert_bounded(&s);
        assert_bounded(&summarize(&bytes, dialect, false));
        prop_assert!(no_free_number(&s.text), "{:?} from {bytes:?}", s.text);
    }

    #[test]
    fn sql_ish_text_never_shows_a_number(text in "[a-z0-9 '\"$(),;:.@#=_\\-\\\\é]{0,200}", dialect in prop_oneof![Just(Dialect::Postgres), Just(Dialect::MySql)]) {
        let s = sanitize(text.as_bytes(), dialect, false);
        assert_bounded(&s);
        for f in fields(&s) {
            prop_assert!(no_free_number(f), "{f:?} from {text:?}");
        }
    }
}
