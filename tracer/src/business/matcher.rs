//! Which business transaction an entry SERVER span starts: the
//! `[[business.transactions]]` rules compiled once, tried in order; with
//! none, the entry route itself (`{service} {method} {route}`). In: a span
//! (borrowed). Out: an interned [`Transaction`] (an `Arc` clone: nothing is
//! allocated per span once a name was seen), or None (no rule matched, or
//! the cap was hit: counted).

use foldhash::{HashMap, HashMapExt};
use std::{
    hash::BuildHasher,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use super::config::{BusinessConfig, SplitBy};
use crate::span::{Key, Span, SpanKind, Value};

/// A business transaction, as spans carry it.
#[derive(Debug, PartialEq, Eq)]
pub struct Transaction {
    pub name: Arc<str>,
    /// Index of its rule in `[[business.transactions]]`; None: named by default.
    pub rule: Option<usize>,
}

/// The split value put on requests past `max_split_values`.
pub const OVERFLOW: &str = "__overflow__";

enum Route {
    Any,
    /// Equal to http.route (a template such as /users/{id}).
    Template(String),
    /// `*` within a segment, `**` across: against url.path, then http.route.
    Glob(Vec<u8>),
    /// Equal to url.path or http.route.
    Path(String),
}

impl Route {
    fn of(r: Option<&str>) -> Route {
        match r {
            None => Route::Any,
            Some(r) if r.contains('{') => Route::Template(r.to_string()),
            Some(r) if r.contains('*') => Route::Glob(r.as_bytes().to_vec()),
            Some(r) => Route::Path(r.to_string()),
        }
    }

    fn matches(&self, path: Option<&str>, route: Option<&str>) -> bool {
        match self {
            Route::Any => true,
            Route::Template(t) => route == Some(t.as_str()),
            Route::Glob(g) => [path, route].into_iter().flatten().any(|p| glob(g, p.as_bytes())),
            Route::Path(p) => path == Some(p.as_str()) || route == Some(p.as_str()),
        }
    }
}

/// Glob match without allocation: `*` is any run of bytes but '/', `**`
/// any run at all. Backtracking is bounded by pattern × text (routes are
/// at most 256 bytes, paths 2048).
fn glob(p: &[u8], t: &[u8]) -> bool {
    match p {
        [] => t.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=t.len()).any(|i| glob(rest, &t[i..])),
        [b'*', rest @ ..] => {
            let seg = t.iter().position(|&c| c == b'/').unwrap_or(t.len());
            (0..=seg).any(|i| glob(rest, &t[i..]))
        }
        [c, rest @ ..] => t.first() == Some(c) && glob(rest, &t[1..]),
    }
}

struct Rule {
    service: Option<String>,
    method: Option<String>,
    route: Route,
    /// How to read the split value, and the span attribute it is in.
    split: Option<(SplitBy, Key)>,
    plain: Arc<Transaction>,
    splits: usize,
}

/// (rule, parts, name): see `Matcher::intern`.
type Interned = (Option<usize>, Box<[Box<str>]>, Arc<Transaction>);

pub struct Matcher {
    rules: Vec<Rule>,
    /// Split and default names seen, by a hash of their parts; each entry
    /// keeps its parts so a hash collision never merges two names.
    interned: HashMap<u64, Vec<Interned>>,
    hasher: foldhash::fast::RandomState,
    tracked: usize,
    max_transactions: usize,
    max_split_values: usize,
    /// Entry spans left without a transaction because the cap was hit.
    pub overflow: Arc<AtomicU64>,
}

impl Matcher {
    pub fn new(cfg: &BusinessConfig) -> Matcher {
        let rules: Vec<Rule> = cfg
            .transactions
            .iter()
            .enumerate()
            .map(|(i, r)| Rule {
                service: r.service.clone(),
                method: r.method.as_ref().map(|m| m.to_ascii_uppercase()),
                route: Route::of(r.route.as_deref()),
                split: r.split_by.as_deref().and_then(SplitBy::parse).map(|s| {
                    let key = match &s {
                        SplitBy::Header(h) => Key::Other(format!("http.request.header.{h}").into()),
                        SplitBy::Query(_) => Key::UrlQuery,
                    };
                    (s, key)
                }),
                plain: Arc::new(Transaction { name: r.name.as_str().into(), rule: Some(i) }),
                splits: 0,
            })
            .collect();
        Matcher {
            tracked: rules.len(),
            rules,
            interned: HashMap::new(),
            hasher: foldhash::fast::RandomState::default(),
            max_transactions: cfg.max_transactions.max(1),
            max_split_values: cfg.max_split_values,
            overflow: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The transaction `entry` starts. Only SERVER spans start one.
    pub fn classify(&mut self, entry: &Span) -> Option<Arc<Transaction>> {
        if entry.kind != SpanKind::Server {
            return None;
        }
        let method = text(entry, &Key::HttpRequestMethod);
        let route = text(entry, &Key::HttpRoute);
        let path = text(entry, &Key::UrlPath);
        if self.rules.is_empty() {
            let (method, route) = (method?, route?);
            let service = entry.service.name.as_str();
            return self.intern(&[service, method, route], None, |_| format!("{service} {method} {route}"));
        }
        let i = self.rules.iter().position(|r| {
            r.service.as_deref().is_none_or(|s| s == entry.service.name)
                && r.method.as_deref().is_none_or(|m| method.is_some_and(|x| x.eq_ignore_ascii_case(m)))
                && r.route.matches(path, route)
        })?;
        let rule = &self.rules[i];
        let Some((split, key)) = &rule.split else { return Some(rule.plain.clone()) };
        let Some(value) = split_value(entry, split, key) else { return Some(rule.plain.clone()) };
        if let Some(t) = self.find(Some(i), &[value]) {
            return Some(t);
        }
        let (name, k) = (rule.plain.name.clone(), split.key().to_string());
        if rule.splits >= self.max_split_values {
            return self.intern(&[OVERFLOW], Some(i), |_| format!("{name} {k}={OVERFLOW}"));
        }
        let t = self.intern(&[value], Some(i), |p| format!("{name} {k}={}", p[0]));
        if t.is_some() {
            self.rules[i].splits += 1;
        }
        t
    }

    fn find(&self, rule: Option<usize>, parts: &[&str]) -> Option<Arc<Transaction>> {
        let list = self.interned.get(&self.hasher.hash_one((rule, parts)))?;
        list.iter()
            .find(|(r, p, _)| *r == rule && p.iter().map(|x| &**x).eq(parts.iter().copied()))
            .map(|(_, _, t)| t.clone())
    }

    /// The interned name of `parts` (under `rule`; None: default names),
    /// made by `name` the first time, unless the cap is hit (counted).
    fn intern(
        &mut self,
        parts: &[&str],
        rule: Option<usize>,
        name: impl FnOnce(&[&str]) -> String,
    ) -> Option<Arc<Transaction>> {
        if let Some(t) = self.find(rule, parts) {
            return Some(t);
        }
        if self.tracked >= self.max_transactions {
            self.overflow.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.tracked += 1;
        let t = Arc::new(Transaction { name: name(parts).into(), rule });
        let key: Box<[Box<str>]> = parts.iter().map(|p| Box::from(*p)).collect();
        let h = self.hasher.hash_one((rule, parts));
        self.interned.entry(h).or_default().push((rule, key, t.clone()));
        Some(t)
    }
}

impl crate::chain::link::Classify for Matcher {
    fn classify(&mut self, entry: &Span) -> Option<Arc<Transaction>> {
        Matcher::classify(self, entry)
    }
}

fn text<'a>(span: &'a Span, key: &Key) -> Option<&'a str> {
    match span.attr(key)? {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

fn split_value<'a>(span: &'a Span, split: &SplitBy, key: &Key) -> Option<&'a str> {
    match (split, span.attr(key)?) {
        (SplitBy::Header(_), Value::StrArray(v)) => v.first().map(String::as_str),
        (SplitBy::Header(_), Value::Str(s)) => Some(&**s),
        (SplitBy::Query(k), Value::Str(q)) => {
            q.split('&').find_map(|kv| kv.split_once('=').filter(|(key, _)| key == k).map(|(_, v)| v))
        }
        _ => None,
    }
    .filter(|v| !v.is_empty())
}

#[cfg(test)]
#[path = "matcher_tests.rs"]
mod tests;
