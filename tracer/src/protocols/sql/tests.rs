//! Statements in, exportable forms out; distinctive literals must appear in
//! no output field.

use super::{Dialect, MAX_TEXT, Statement, sanitize};

fn pg(sql: &str) -> Statement {
    sanitize(sql.as_bytes(), Dialect::Postgres, false)
}

fn my(sql: &str) -> Statement {
    sanitize(sql.as_bytes(), Dialect::MySql, false)
}

/// Literals that must never leave the node, whatever the statement.
const SECRETS: &[&str] = &["secret-literal-4711", "987654321", "alice@example.com", "hunter2", "0xDEADBEEF", "4711"];

fn assert_clean(s: &Statement) {
    let fields = [s.operation.as_deref().unwrap_or(""), s.collection.as_deref().unwrap_or(""), &s.summary, &s.text];
    for f in fields {
        for secret in SECRETS {
            assert!(!f.to_ascii_lowercase().contains(&secret.to_ascii_lowercase()), "{secret:?} in {f:?} of {s:?}");
        }
        assert!(super::is_printable(f), "{f:?}");
    }
}

#[test]
fn select_with_literals() {
    let s = pg("SELECT id, name FROM users WHERE email = 'alice@example.com' AND id = 987654321");
    assert_eq!(s.operation.as_deref(), Some("SELECT"));
    assert_eq!(s.collection.as_deref(), Some("users"));
    assert_eq!(s.summary, "SELECT users");
    assert_eq!(s.text, "SELECT id, name FROM users WHERE email = ? AND id = ?");
    assert!(!s.truncated);
    assert_eq!(s.statements, 1);
    assert_clean(&s);
}

#[test]
fn in_lists_and_values_rows_collapse() {
    let s = pg("select * from orders where id in (1, 2, 987654321) and tag IN ('a','secret-literal-4711')");
    assert_eq!(s.text, "select * from orders where id in (?) and tag IN (?)");
    assert_eq!(s.summary, "SELECT orders");
    let s = pg("INSERT INTO public.orders (id, who) VALUES (1, 'hunter2'), (2, 'alice@example.com'), (-3, E'x\\'y')");
    assert_eq!(s.text, "INSERT INTO public.orders (id, who) VALUES (?)");
    assert_eq!(s.collection.as_deref(), Some("public.orders"));
    assert_eq!(s.summary, "INSERT public.orders");
    assert_clean(&s);
    // Lists of lists, arrays, signed numbers, casts.
    let s =
        pg("SELECT ARRAY[1,2,3], '{4711}'::int[], x - 4711 FROM t WHERE (a, b) IN ((1, 2), (3, 4)) AND c = -987654321");
    assert_eq!(s.text, "SELECT ARRAY[?], ?::int[], x - ? FROM t WHERE (a, b) IN (?) AND c = ?");
    assert_clean(&s);
}

#[test]
fn function_calls_with_names_stay() {
    let s = pg("SELECT count(*), coalesce(name, 'secret-literal-4711') FROM users GROUP BY 1");
    assert_eq!(s.text, "SELECT count(*), coalesce(name, ?) FROM users GROUP BY ?");
}

#[test]
fn comments_are_dropped() {
    let s = pg("/* user=alice@example.com */ SELECT 1 -- hunter2\n FROM t");
    assert_eq!(s.text, "SELECT ? FROM t");
    assert_eq!(s.summary, "SELECT t");
    assert_clean(&s);
    let s = my("SELECT 1 # hunter2\nFROM t");
    assert_eq!(s.text, "SELECT ? FROM t");
}

#[test]
fn every_postgres_literal_kind() {
    for lit in [
        "'secret-literal-4711'",
        "E'secret-literal-4711\\n'",
        "$$secret-literal-4711$$",
        "$tag$secret-literal-4711 ' \" $tag$",
        "U&'secret-literal-4711'",
        "B'0101'",
        "X'DEADBEEF'",
        "987654321",
        "987654321.4711e10",
        "'it''s secret-literal-4711'",
    ] {
        let s = pg(&format!("SELECT {lit} FROM t"));
        assert_eq!(s.text, "SELECT ? FROM t", "{lit}");
        assert_clean(&s);
    }
}

#[test]
fn every_mysql_literal_kind() {
    for lit in [
        "'secret-literal-4711'",
        "\"secret-literal-4711\"",
        "'esc\\'aped secret-literal-4711'",
        "0xDEADBEEF",
        "x'DEADBEEF'",
        "987654321",
    ] {
        let s = my(&format!("SELECT {lit} FROM `db`.`t`"));
        assert_eq!(s.text, "SELECT ? FROM `db`.`t`", "{lit}");
        assert_eq!(s.collection.as_deref(), Some("db.t"));
        assert_clean(&s);
    }
    // A character set introducer stays (it is a name).
    assert_eq!(my("SELECT _utf8mb4'secret-literal-4711'").text, "SELECT _utf8mb4?");
}

#[test]
fn placeholders() {
    let s = pg("UPDATE accounts SET balance = $1 WHERE id = $2");
    assert_eq!(s.text, "UPDATE accounts SET balance = $1 WHERE id = $2");
    assert_eq!(s.summary, "UPDATE accounts");
    let s = my("DELETE FROM sessions WHERE id = ? AND t IN (?, ?, ?)");
    assert_eq!(s.text, "DELETE FROM sessions WHERE id = ? AND t IN (?)");
    assert_eq!(s.summary, "DELETE sessions");
}

#[test]
fn cut_statements_keep_only_whole_tokens() {
    // Cut inside a string: nothing of it is read.
    let s = sanitize(b"SELECT * FROM users WHERE email = 'alice@exam", Dialect::Postgres, true);
    assert_eq!(s.text, "SELECT * FROM users WHERE email =");
    assert_eq!(s.summary, "SELECT users");
    assert!(s.truncated);
    assert_clean(&s);
    // Unterminated, not cut by the caller: the tokenizer's error says so.
    let s = pg("INSERT INTO t VALUES ('hunter2");
    assert!(s.truncated);
    assert_eq!(s.text, "INSERT INTO t VALUES (");
    assert_clean(&s);
    // Cut inside a dollar quote, a quoted name, a comment.
    for cut in ["SELECT $$hunter2", "SELECT $q$hunter2", "SELECT \"hunter2", "SELECT 1 /* hunter2"] {
        let s = sanitize(cut.as_bytes(), Dialect::Postgres, true);
        assert_clean(&s);
        assert!(s.text.starts_with("SELECT"), "{cut}: {s:?}");
    }
    // Cut inside a name: the partial word is not a table.
    let s = sanitize(b"SELECT a FROM user_acc", Dialect::Postgres, true);
    assert_eq!(s.collection, None);
    assert_eq!(s.text, "SELECT a FROM");
    // Cut inside a UTF-8 character.
    let mut b = "SELECT 'é' FROM t WHERE x = 'é".as_bytes().to_vec();
    b.pop();
    let s = sanitize(&b, Dialect::Postgres, false);
    assert!(s.truncated);
    assert_eq!(s.text, "SELECT ? FROM t WHERE x =");
}

#[test]
fn operations_and_tables() {
    let cases: &[(&str, Option<&str>, Option<&str>, &str)] = &[
        ("BEGIN", Some("BEGIN"), None, "BEGIN"),
        ("commit", Some("COMMIT"), None, "COMMIT"),
        ("SET search_path TO 'x'", Some("SET"), None, "SET"),
        ("WITH a AS (SELECT * FROM x) SELECT * FROM a JOIN b ON true", Some("SELECT"), Some("a"), "SELECT a"),
        ("WITH a AS (SELECT 1) INSERT INTO log SELECT * FROM a", Some("INSERT"), Some("log"), "INSERT log"),
        ("(SELECT 1 FROM x) UNION (SELECT 2 FROM y)", Some("SELECT"), Some("x"), "SELECT x"),
        ("SELECT (SELECT max(id) FROM inner_t) FROM outer_t", Some("SELECT"), Some("outer_t"), "SELECT outer_t"),
        ("SELECT * FROM (SELECT 1) AS s", Some("SELECT"), None, "SELECT"),
        ("SELECT now()", Some("SELECT"), None, "SELECT"),
        ("SELECT * FROM generate_series(1, 9) AS g", Some("SELECT"), None, "SELECT"),
        ("DELETE FROM ONLY \"Quoted Name\" WHERE a = 1", Some("DELETE"), Some("Quoted Name"), "DELETE Quoted Name"),
        ("UPDATE ONLY s.t SET a = 1", Some("UPDATE"), Some("s.t"), "UPDATE s.t"),
        ("TRUNCATE TABLE big", Some("TRUNCATE"), Some("big"), "TRUNCATE big"),
        ("CREATE TEMP TABLE IF NOT EXISTS tmp (id int)", Some("CREATE"), Some("tmp"), "CREATE tmp"),
        ("DROP TABLE IF EXISTS tmp", Some("DROP"), Some("tmp"), "DROP tmp"),
        ("CREATE INDEX ON t (a)", Some("CREATE"), None, "CREATE"),
        ("COPY items (a, b) FROM STDIN", Some("COPY"), Some("items"), "COPY items"),
        ("COPY (SELECT 1) TO STDOUT", Some("COPY"), None, "COPY"),
        (
            "MERGE INTO tgt USING src ON tgt.id = src.id WHEN MATCHED THEN DELETE",
            Some("MERGE"),
            Some("tgt"),
            "MERGE tgt",
        ),
        ("LOCK TABLE accounts IN SHARE MODE", Some("LOCK"), Some("accounts"), "LOCK accounts"),
        ("", None, None, ""),
        ("  ;  ", None, None, ""),
        ("'just a string'", None, None, ""),
        ("\"quoted\" x", None, None, ""),
    ];
    for (sql, op, coll, summary) in cases {
        let s = pg(sql);
        assert_eq!(
            (s.operation.as_deref(), s.collection.as_deref(), s.summary.as_str()),
            (*op, *coll, *summary),
            "{sql}"
        );
    }
    let s = my("INSERT LOW_PRIORITY IGNORE INTO `shop`.`orders` SET a = 1");
    assert_eq!(s.summary, "INSERT shop.orders");
    let s = my("REPLACE INTO kv VALUES ('k', 'hunter2')");
    assert_eq!((s.summary.as_str(), s.text.as_str()), ("REPLACE kv", "REPLACE INTO kv VALUES (?)"));
}

#[test]
fn several_statements() {
    let s = pg("BEGIN; UPDATE t SET a = 'hunter2'; COMMIT;");
    assert_eq!(s.statements, 3);
    assert_eq!(s.summary, "BEGIN");
    assert_eq!(s.text, "BEGIN; UPDATE t SET a = ?; COMMIT;");
    assert_clean(&s);
}

#[test]
fn copy_data_is_a_literal() {
    let s = pg("COPY t FROM STDIN;\nalice@example.com\thunter2\n\\.\n");
    assert_clean(&s);
    assert_eq!(s.summary, "COPY t");
}

#[test]
fn outputs_are_bounded_and_printable() {
    let long_name = "n".repeat(500);
    let s = pg(&format!("SELECT * FROM {long_name}"));
    assert_eq!(s.collection, None);
    assert_eq!(s.summary, "SELECT");
    let many = vec!["col_a"; 2000].join(", ");
    let s = pg(&format!("SELECT {many} FROM t"));
    assert!(s.text.len() <= MAX_TEXT && s.truncated);
    let s = pg("SELECT \"a\u{1b}[2Jb\" FROM \"x\u{7}\"");
    assert_eq!(s.text, "SELECT ? FROM ?");
    assert_eq!(s.collection, None);
    let s = pg("SELECT \"we\"\"ird\" FROM t");
    assert_eq!(s.text, "SELECT \"we\"\"ird\" FROM t");
    let s = pg("SELECT\u{0}1\u{1}FROM\tt\r\n");
    assert!(super::is_printable(&s.text), "{s:?}");
}
