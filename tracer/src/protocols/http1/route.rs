//! `http.route` for spans built from captured traffic. In: a service name and
//! a request path (no query). Out: a route template such as `/users/{id}`,
//! and whether the per-service cap replaced it with [`OVERFLOW_ROUTE`].
//!
//! We never see the application's router, so the template is inferred. User
//! rules come first because only the operator knows the real routes; the
//! heuristic then templates what looks like ids and dates; the cap bounds what
//! the heuristic misses (slugs, search terms in paths), because an unbounded
//! `http.route` breaks every metric backend that groups by it.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use serde::Deserialize;

/// Reported in place of a new route once a service holds its cap of routes.
pub const OVERFLOW_ROUTE: &str = "/{overflow}";

/// Bytes of a path looked at; the rest is cut at a segment boundary and the
/// template ends in `/{truncated}`, so a huge path costs bounded work.
const MAX_PATH_BYTES: usize = 2048;
/// Longest route: it is a label (span name, metric attribute), and no real
/// route template is this long. A longer one is cut at a segment boundary
/// and ends in `/{truncated}`.
pub const MAX_ROUTE_BYTES: usize = 256;
/// Segments templated; more become `/{truncated}` as well.
const MAX_SEGMENTS: usize = 64;
const TRUNCATED: &str = "/{truncated}";
const ID: &str = "{id}";
const DATE: &str = "{date}";

/// Config section `[http.routes]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// User rules, tried in order before the heuristic. Default: none. A rule
    /// is a path template: literal segments match themselves, `{name}` matches
    /// exactly one non-empty segment, a trailing `*` segment matches any rest
    /// (zero or more segments). The route reported is the rule text itself.
    /// e.g. `["/api/v1/users/{user}/cart", "/static/*"]`
    pub rules: Vec<String>,
    /// Distinct routes kept per service; past it every new route of that
    /// service becomes `OVERFLOW_ROUTE`. Default 500.
    pub max_routes_per_service: usize,
    /// Services tracked at most, so memory stays bounded. Default `10_000`.
    /// Routes of services beyond it are still templated but not counted, and
    /// never overflow: the heuristic already keeps them low-cardinality, and
    /// turning every route of a late service into `/{overflow}` would hide it.
    pub max_services: usize,
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig { rules: Vec::new(), max_routes_per_service: 500, max_services: 10_000 }
    }
}

/// A rule that `Router::new` refused; the text of the rule comes first.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("route rule {0:?} must start with '/'")]
    NotAbsolute(String),
    #[error("route rule {0:?} has an empty `{{}}`; name the placeholder, e.g. `{{id}}`")]
    EmptyParam(String),
    #[error("route rule {0:?}: `*` must be the last segment; use `{{name}}` in the middle")]
    WildcardNotLast(String),
    #[error("route rule {0:?}: in {1:?}, a placeholder or `*` must be a whole segment")]
    BadSegment(String, String),
}

#[derive(Debug)]
enum Part {
    Literal(String),
    Param,
    Rest,
}

#[derive(Debug)]
struct Rule {
    text: String,
    parts: Vec<Part>,
}

impl Rule {
    fn parse(rule: &str) -> Result<Rule, RouteError> {
        let err = |make: fn(String) -> RouteError| Err(make(rule.to_owned()));
        if !rule.starts_with('/') {
            return err(RouteError::NotAbsolute);
        }
        let mut parts = Vec::new();
        let mut segs = rule.split('/').peekable();
        while let Some(seg) = segs.next() {
            let param = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
            parts.push(match param {
                _ if seg == "*" && segs.peek().is_some() => {
                    return err(RouteError::WildcardNotLast);
                }
                _ if seg == "*" => Part::Rest,
                Some("") => return err(RouteError::EmptyParam),
                Some(name) if !name.contains(['{', '}']) => Part::Param,
                _ if seg.contains(['{', '}', '*']) => {
                    return Err(RouteError::BadSegment(rule.to_owned(), seg.to_owned()));
                }
                _ => Part::Literal(seg.to_owned()),
            });
        }
        let text = rule.to_owned();
        Ok(Rule { text, parts })
    }

    /// Segment by segment, no allocation. A trailing slash is a segment of its
    /// own (empty), so `/a/{x}` does not match `/a/1/`: routers differ there.
    fn matches(&self, path: &str) -> bool {
        let mut segs = path.split('/');
        for part in &self.parts {
            match part {
                Part::Rest => return true,
                Part::Literal(lit) if segs.next() != Some(lit.as_str()) => return false,
                Part::Param if segs.next().is_none_or(str::is_empty) => return false,
                Part::Literal(_) | Part::Param => {}
            }
        }
        segs.next().is_none()
    }
}

/// Rules, then the heuristic, then the per-service cap.
#[derive(Debug)]
pub struct Router {
    rules: Vec<Rule>,
    max_routes_per_service: usize,
    max_services: usize,
    /// Routes seen per service; at most `max_services` entries, each holding at
    /// most `max_routes_per_service` routes.
    seen: HashMap<String, HashSet<String>>,
}

impl Router {
    /// Fails on the first invalid rule, so a typo in the config stops startup.
    pub fn new(cfg: &RouteConfig) -> Result<Router, RouteError> {
        let rules: Result<_, _> = cfg.rules.iter().map(|r| Rule::parse(r)).collect();
        Ok(Router {
            rules: rules?,
            max_routes_per_service: cfg.max_routes_per_service,
            max_services: cfg.max_services,
            seen: HashMap::new(),
        })
    }

    /// The route of `path` (path only, no query string; may be "" or "*" for
    /// OPTIONS *), for `service`. Returns the route and whether the
    /// per-service cap turned it into `OVERFLOW_ROUTE` (the caller counts those).
    pub fn route(&mut self, service: &str, path: &str) -> (String, bool) {
        let path = strip_query(path);
        let path = if path.is_empty() { "/" } else { path };
        let rule = self.rules.iter().find(|r| r.matches(path));
        let route = rule.map_or_else(|| template(path), |r| r.text.clone());
        if !self.seen.contains_key(service) {
            if self.seen.len() >= self.max_services {
                return (route, false);
            }
            self.seen.insert(service.to_owned(), HashSet::new());
        }
        let seen = self.seen.get_mut(service).expect("inserted above");
        if seen.contains(&route) {
            (route, false)
        } else if seen.len() >= self.max_routes_per_service {
            (OVERFLOW_ROUTE.to_owned(), true)
        } else {
            seen.insert(route.clone());
            (route, false)
        }
    }
}

/// The heuristic alone (no rules, no cap). Segments (split on '/', the empty
/// leading one and a trailing slash kept, `//` kept as is) become `{id}` or
/// `{date}` or stay verbatim; see `placeholder` and `is_id`. Percent escapes
/// are not decoded: they are part of the segment. "" becomes "/"; a `?query`,
/// which the caller should already have removed, is dropped. Past 2048 bytes
/// the path is cut at the last '/' before the limit, past 64 segments the rest
/// is dropped, and a template longer than 256 bytes is cut at a '/'; either
/// way the template ends in `/{truncated}`.
pub fn template(path: &str) -> String {
    let path = strip_query(path);
    if path.is_empty() {
        return "/".to_owned();
    }
    let (kept, mut truncated) = clip(path);
    let mut out = String::with_capacity(kept.len() + TRUNCATED.len());
    // Index 0 is what precedes the first '/': "" for absolute paths, "*" for OPTIONS *.
    for (i, seg) in kept.split('/').enumerate() {
        if i > MAX_SEGMENTS {
            truncated = true;
            break;
        }
        if i > 0 {
            out.push('/');
        }
        push_segment(&mut out, seg);
    }
    if out.len() + if truncated { TRUNCATED.len() } else { 0 } > MAX_ROUTE_BYTES {
        // '/' is ASCII: its index is a char boundary.
        let room = MAX_ROUTE_BYTES - TRUNCATED.len();
        let cut = out.as_bytes()[..=room].iter().rposition(|&b| b == b'/').unwrap_or(0);
        out.truncate(cut);
        truncated = true;
    }
    if truncated {
        out.push_str(TRUNCATED);
    }
    out
}

fn strip_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

fn clip(path: &str) -> (&str, bool) {
    if path.len() <= MAX_PATH_BYTES {
        return (path, false);
    }
    // '/' is ASCII, so its index is a char boundary. A slash at exactly
    // MAX_PATH_BYTES still leaves MAX_PATH_BYTES bytes before it.
    let window = &path.as_bytes()[..=MAX_PATH_BYTES];
    let cut = window.iter().rposition(|&b| b == b'/').unwrap_or(0);
    (&path[..cut], true)
}

/// `12345.png` -> `{id}.png`: an id-like stem with a short extension keeps the
/// extension, which tells images from JSON. Otherwise the whole segment.
fn push_segment(out: &mut String, seg: &str) {
    if let Some((stem, ext)) = seg.rsplit_once('.')
        && is_extension(ext)
        && let Some(p) = placeholder(stem)
    {
        out.extend([p, ".", ext]);
    } else {
        out.push_str(placeholder(seg).unwrap_or(seg));
    }
}

fn is_extension(ext: &str) -> bool {
    let b = ext.as_bytes();
    (1..=5).contains(&b.len()) && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
}

/// `{date}` for `2024-01-31` and `2024-01-31T10:00:00Z`. Compact `20240131`
/// is `{id}`, not `{date}`: an 8-digit numeric id would otherwise split one
/// endpoint into `/orders/{id}` and `/orders/{date}` depending on its value.
fn placeholder(seg: &str) -> Option<&'static str> {
    is_date(seg.as_bytes()).then_some(DATE).or_else(|| is_id(seg).then_some(ID))
}

fn is_date(b: &[u8]) -> bool {
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let two = |i: usize| (b[i] - b'0') * 10 + (b[i + 1] - b'0');
    // A time: two digits, then digits, ':', fraction, 'Z' or an offset; '%'
    // and hex letters let percent-encoded ':' and '+' (`%3A`, `%2B`) through.
    let time = |t: &[u8]| {
        t.len() >= 2
            && t[..2].iter().all(u8::is_ascii_digit)
            && t.iter().all(|c| c.is_ascii_hexdigit() || b":.+-Zz%".contains(c))
    };
    // The digit checks come first: `two` assumes digits.
    b.len() >= 10
        && (digits(0..4) && digits(5..7) && digits(8..10) && b[4] == b'-' && b[7] == b'-')
        && (1..=12).contains(&two(5))
        && (1..=31).contains(&two(8))
        && (b.len() == 10 || (matches!(b[10], b'T' | b't') && time(&b[11..])))
}

/// An identifier specific enough to tell one request from another (the
/// content rule of the linker): an `{id}` value other than a short number
/// or a date.
pub(crate) fn is_identifier(seg: &str) -> bool {
    let b = seg.as_bytes();
    let short_number = b.len() < 6 && b.iter().all(u8::is_ascii_digit);
    !short_number && !is_date(b) && is_id(seg)
}

/// Identifier-like: values a router would have captured as a parameter.
/// Normal words (`users`, `v1`, `h2`, `index.html`, `style-2.css`, `en-US`,
/// `jquery-3.6.0.min.js`) must stay, so every rule wants digits in the value.
fn is_id(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() {
        return false;
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let letters = b.iter().filter(|c| c.is_ascii_alphabetic()).count();
    // Numbers of any length; UUIDs; hex of 8+ (hashes, ObjectIds) with a digit
    // so `deadbeef`-like words stay.
    digits == b.len()
        || is_uuid(b)
        || (b.len() >= 8 && digits > 0 && b.iter().all(u8::is_ascii_hexdigit))
        || is_token(b)
        // Short mixed codes such as `x7k9p2m4`: half digits or more, 6+ long,
        // alphanumeric only (so `x86_64` and `1080p` stay).
        || (b.len() >= 6 && letters > 0 && digits * 2 >= b.len() && digits + letters == b.len())
        || is_email(seg)
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// base64/base64url ids, JWTs, ULIDs: 16+ bytes of the token alphabet with an
/// alphanumeric run of 8+ that mixes letters and digits. The run test is what
/// keeps versioned file names (`jquery-3.6.0.min.js`) and slugs
/// (`2023-annual-report`), where digits sit apart from letters, verbatim.
fn is_token(b: &[u8]) -> bool {
    let alphabet = |c: &u8| c.is_ascii_alphanumeric() || b"_-=.~+".contains(c);
    let mixed_run =
        |run: &[u8]| run.len() >= 8 && run.iter().any(u8::is_ascii_digit) && run.iter().any(u8::is_ascii_alphabetic);
    b.len() >= 16 && b.iter().all(alphabet) && b.split(|c| !c.is_ascii_alphanumeric()).any(mixed_run)
}

/// `a@b.com` or percent-encoded `a%40b.com`: per-user values.
fn is_email(seg: &str) -> bool {
    let Some((local, domain)) = seg.split_once('@').or_else(|| seg.split_once("%40")) else {
        return false;
    };
    !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// One segment each, all `{id}`: numbers, a UUID, hex, SHA-1, an ObjectId,
    /// ULID, base64url, a short mixed code, emails, a compact date, a JWT.
    const IDS: &str = "0 42 123456789012345678901234 550e8400-E29B-41d4-a716-446655440000
        3f2a1b9c da39a3ee5e6b4b0d3255bfef95601890afd80709 507f1f77bcf86cd799439011
        01ARZ3NDEKTSV4RRFFQ69G5FAV dGhpcy1pcy1hLXRva2VuMQ x7k9p2m4 20240131
        alice%40example.com bob@example.org
        eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_Xg";
    /// Paths kept as they are: words, versions, file names, slugs, odd dates.
    const VERBATIM: &str = "/ * /api/v1/users /v2/h2/healthz /index.html /css/style-2.css
        /js/jquery-3.6.0.min.js /blog/2023-annual-report-final /en-US/docs /deadbeef/oauth2
        /dl/linux/x86_64/1080p /a//b /search/hello%20world /r/2024-13-01 /{id}/{date}.png";

    #[test]
    fn heuristic_table() {
        for seg in IDS.split_whitespace() {
            assert_eq!(template(&format!("/x/{seg}/y")), "/x/{id}/y", "{seg:?}");
        }
        for path in VERBATIM.split_whitespace() {
            assert_eq!(template(path), path);
        }
        let seg = "a".repeat(100);
        let long = format!("/x/{}", [seg.as_str(); 30].join("/")); // 3033 bytes
        // Cut to MAX_ROUTE_BYTES: "/x" and two 100-byte segments fit.
        let long_want = format!("/x/{}{TRUNCATED}", [seg.as_str(); 2].join("/"));
        let (many, many_want) = ("/s".repeat(70), format!("{}{TRUNCATED}", "/s".repeat(64)));
        let cases: &[(&str, &str)] = &[
            ("", "/"),
            ("/users/42/", "/users/{id}/"),
            ("/r/2024-01-31", "/r/{date}"),
            ("/r/2024-01-31T10:00:00Z", "/r/{date}"),
            ("/r/2024-01-31T10%3A00%3A00.5%2B02%3A00", "/r/{date}"),
            ("/img/12345.png", "/img/{id}.png"),
            ("/img/2024-01-31.pdf", "/img/{date}.pdf"),
            ("/users/42?page=2", "/users/{id}"),
            ("/café/123", "/café/{id}"),
            (&long, &long_want),
            (&many, &many_want),
            (&"/".repeat(5000), &format!("{}{TRUNCATED}", "/".repeat(64))),
            // 64 one-digit segments become 64 `/{id}`: 320 bytes, cut to 256.
            (&"/1".repeat(64), &format!("{}{TRUNCATED}", "/{id}".repeat(48))),
            (&format!("/{}", "9".repeat(5000)), TRUNCATED),
        ];
        for (path, want) in cases {
            assert_eq!(template(path), *want, "path {path:?}");
        }
    }

    fn router(rules: &[&str], max_routes_per_service: usize, max_services: usize) -> Router {
        let rules = rules.iter().map(|r| (*r).to_owned()).collect();
        let cfg = RouteConfig { rules, max_routes_per_service, max_services };
        Router::new(&cfg).expect("valid rules")
    }

    #[test]
    fn rules_before_heuristic() {
        let mut r = router(&["/api/v1/u/{u}/cart", "/static/*", "/api/*", "/x/{a}"], 9, 9);
        let cases = [
            ("/api/v1/u/alice/cart", "/api/v1/u/{u}/cart"),
            ("/api/v1/u/42/cart", "/api/v1/u/{u}/cart"),
            // `{name}` takes exactly one non-empty segment; the next rule then wins.
            ("/api/v1/u//cart", "/api/*"),
            ("/api/v1/u/a/b/cart", "/api/*"),
            // `*` takes zero or more whole segments.
            ("/static", "/static/*"),
            ("/static/", "/static/*"),
            ("/static/js/app.js", "/static/*"),
            ("/staticx/1", "/staticx/{id}"),
            // A trailing slash is one more segment.
            ("/x/hello", "/x/{a}"),
            ("/x/hello/", "/x/hello/"),
            ("/other/7", "/other/{id}"),
            ("", "/"),
            ("*", "*"),
        ];
        for (path, want) in cases {
            assert_eq!(r.route("svc", path).0, want, "path {path:?}");
        }
        let mut all = router(&["/*"], 9, 9);
        assert_eq!(all.route("svc", "").0, "/*");
        assert_eq!(all.route("svc", "*").0, "*");
    }

    #[test]
    fn invalid_rules_rejected() {
        let cases = [
            ("users/{id}", "must start with '/'"),
            ("", "must start with '/'"),
            ("/users/{}", "empty `{}`"),
            ("/a/*/b", "`*` must be the last segment"),
            ("/u-{id}", "whole segment"),
            ("/a/{x", "whole segment"),
            ("/a*", "whole segment"),
            ("/{{x}}", "whole segment"),
        ];
        for (rule, want) in cases {
            let mut cfg = RouteConfig::default();
            cfg.rules.push(rule.to_owned());
            let err = Router::new(&cfg).expect_err(rule);
            assert!(err.to_string().contains(want), "{rule:?}: {err}");
        }
    }

    #[test]
    fn cap_per_service() {
        let mut r = router(&["/fixed/*"], 3, 2);
        let ok = |route: &str| (route.to_owned(), false);
        assert_eq!(r.route("A", "/a"), ok("/a"));
        assert_eq!(r.route("A", "/b/1"), ok("/b/{id}"));
        assert_eq!(r.route("A", "/fixed/1"), ok("/fixed/*")); // rule routes count too
        assert_eq!(r.route("A", "/d"), (OVERFLOW_ROUTE.to_owned(), true));
        assert_eq!(r.route("A", "/a"), ok("/a"));
        assert_eq!(r.route("A", "/b/2"), ok("/b/{id}"));
        assert_eq!(r.route("A", "/fixed/2/3"), ok("/fixed/*"));
        assert_eq!(r.route("B", "/d"), ok("/d"));
        // Past max_services: templated, never counted, never overflowing.
        for i in 0..10 {
            assert_eq!(r.route("C", &format!("/p{i}")), ok(&format!("/p{i}")));
        }
        assert_eq!(r.seen.len(), 2);
        assert!(!r.seen.contains_key("C"));
    }

    proptest! {
        #[test]
        fn template_total_and_bounded(path in any::<String>()) {
            let out = template(&path);
            prop_assert!(out.len() <= MAX_ROUTE_BYTES);
        }

        #[test]
        fn template_idempotent(segs in prop::collection::vec("[a-zA-Z0-9._~%@-]{0,24}", 0..12)) {
            let once = template(&format!("/{}", segs.join("/")));
            prop_assert_eq!(template(&once), once);
        }

        #[test]
        fn cap_holds(reqs in prop::collection::vec((0..6usize, "(/[a-z0-9]{1,3}){0,3}"), 0..200)) {
            let mut r = router(&["/r/{x}"], 4, 3);
            for (svc, path) in &reqs {
                let (route, overflow) = r.route(&format!("s{svc}"), path);
                prop_assert_eq!(overflow, route == OVERFLOW_ROUTE);
            }
            prop_assert!(r.seen.len() <= 3);
            prop_assert!(r.seen.values().all(|s| s.len() <= 4));
        }
    }
}
