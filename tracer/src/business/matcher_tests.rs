use super::*;
use crate::business::config::TransactionRule;

fn entry(service: &str, method: &'static str, route: &str, path: &str, extra: Vec<(Key, Value)>) -> Span {
    let mut s = crate::business::test_span::span(service, method, route);
    s.attributes.retain(|(k, _)| *k != Key::UrlPath);
    s.attributes.push((Key::UrlPath, path.to_string().into()));
    s.attributes.extend(extra);
    s
}

fn name(m: &mut Matcher, s: &Span) -> Option<String> {
    m.classify(s).map(|t| t.name.to_string())
}

fn rule(name: &str, service: Option<&str>, method: Option<&str>, route: Option<&str>) -> TransactionRule {
    TransactionRule {
        name: name.into(),
        service: service.map(Into::into),
        method: method.map(Into::into),
        route: route.map(Into::into),
        ..Default::default()
    }
}

#[test]
fn without_rules_each_entry_route_is_a_transaction_within_the_cap() {
    let mut m = Matcher::new(&BusinessConfig { max_transactions: 2, ..Default::default() });
    let a = entry("shop", "GET", "/users/{id}", "/users/7", vec![]);
    assert_eq!(name(&mut m, &a).as_deref(), Some("shop GET /users/{id}"));
    let first = m.classify(&a).unwrap();
    assert!(Arc::ptr_eq(&first, &m.classify(&a).unwrap()), "interned, not rebuilt");
    assert_eq!(name(&mut m, &entry("shop", "POST", "/cart", "/cart", vec![])).as_deref(), Some("shop POST /cart"));
    assert_eq!(name(&mut m, &entry("shop", "GET", "/x", "/x", vec![])), None, "past the cap");
    assert_eq!(m.overflow.load(Ordering::Relaxed), 1);
    let mut client = a.clone();
    client.kind = SpanKind::Client;
    assert_eq!(name(&mut m, &client), None, "only SERVER spans start one");
}

#[test]
fn rules_match_in_order_by_service_method_and_route() {
    let cfg = BusinessConfig {
        transactions: vec![
            rule("checkout", Some("shop"), Some("post"), Some("/checkout")),
            rule("user", None, None, Some("/users/{id}")),
            rule("api", Some("shop"), None, Some("/api/*/items")),
            rule("deep", None, None, Some("/static/**")),
        ],
        ..Default::default()
    };
    let mut m = Matcher::new(&cfg);
    let n = |m: &mut Matcher, svc, method, route, path| name(m, &entry(svc, method, route, path, vec![]));
    assert_eq!(n(&mut m, "shop", "POST", "/checkout", "/checkout").as_deref(), Some("checkout"));
    assert_eq!(n(&mut m, "shop", "GET", "/checkout", "/checkout"), None, "method differs");
    assert_eq!(n(&mut m, "other", "POST", "/checkout", "/checkout"), None, "service differs");
    assert_eq!(n(&mut m, "any", "GET", "/users/{id}", "/users/12").as_deref(), Some("user"));
    assert_eq!(n(&mut m, "shop", "GET", "/api/{id}/items", "/api/v2/items").as_deref(), Some("api"));
    assert_eq!(n(&mut m, "shop", "GET", "/api/a/b/items", "/api/a/b/items"), None, "* stays in a segment");
    assert_eq!(n(&mut m, "x", "GET", "/static/{id}", "/static/a/b.css").as_deref(), Some("deep"));
}

#[test]
fn split_by_header_and_query_with_a_cap_on_values() {
    let mut r = rule("checkout", None, None, Some("/checkout"));
    r.split_by = Some("header:X-Tenant".into());
    let mut q = rule("search", None, None, Some("/search"));
    q.split_by = Some("query:region".into());
    let mut m = Matcher::new(&BusinessConfig { transactions: vec![r, q], max_split_values: 2, ..Default::default() });
    let tenant = |v: &str| {
        let h = (Key::Other("http.request.header.x-tenant".into()), Value::StrArray(vec![v.into()]));
        entry("shop", "GET", "/checkout", "/checkout", vec![h])
    };
    assert_eq!(name(&mut m, &tenant("a")).as_deref(), Some("checkout x-tenant=a"));
    assert_eq!(name(&mut m, &tenant("b")).as_deref(), Some("checkout x-tenant=b"));
    assert_eq!(name(&mut m, &tenant("a")).as_deref(), Some("checkout x-tenant=a"));
    assert_eq!(name(&mut m, &tenant("c")).as_deref(), Some("checkout x-tenant=__overflow__"));
    assert_eq!(name(&mut m, &entry("shop", "GET", "/checkout", "/checkout", vec![])).as_deref(), Some("checkout"));
    let query = (Key::UrlQuery, Value::from("q=shoes&region=eu".to_string()));
    assert_eq!(
        name(&mut m, &entry("shop", "GET", "/search", "/search", vec![query])).as_deref(),
        Some("search region=eu")
    );
}

#[test]
fn glob_segments() {
    assert!(glob(b"/a/*", b"/a/b"));
    assert!(glob(b"/a/*", b"/a/"));
    assert!(!glob(b"/a/*", b"/a/b/c"));
    assert!(glob(b"/a/**", b"/a/b/c"));
    assert!(glob(b"**.css", b"/x/y.css"));
    assert!(!glob(b"/a", b"/ab"));
}
