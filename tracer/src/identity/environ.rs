//! OpenTelemetry's own naming inputs: OTEL_SERVICE_NAME and
//! OTEL_RESOURCE_ATTRIBUTES (from an exec record or /proc/<pid>/environ),
//! and the service they and the command line give, by the rules of
//! `rules` (precedence in [`derive`]).

use super::{
    Service,
    rules::{self, clean},
};

/// Attributes kept from OTEL_RESOURCE_ATTRIBUTES.
const MAX_ATTRS: usize = 64;
/// Longest attribute value kept.
const MAX_VALUE: usize = 256;

/// What a process was started as.
pub struct Inputs<'a> {
    pub argv: &'a [String],
    /// The path executed (exec's filename: a symlink keeps its own name).
    pub invoked: Option<&'a str>,
    pub otel_service_name: Option<&'a str>,
    pub otel_resource_attributes: Option<&'a str>,
    /// The name when nothing else gives one (the comm).
    pub fallback: &'a str,
}

/// The service, and whether the process named itself (OpenTelemetry
/// variables or Java properties: then Kubernetes metadata does not rename
/// it). Precedence: `-Dotel.service.name` (Java: a system property beats
/// the environment), OTEL_SERVICE_NAME, service.name of the resource
/// attributes (`-Dotel.resource.attributes` replaces the variable), the
/// application an interpreter runs, the executed file's name, the comm.
pub fn derive(i: &Inputs<'_>) -> (Service, bool) {
    let java = rules::java_props(i.argv);
    let attrs_src = java.resource_attributes.as_deref().or(i.otel_resource_attributes);
    let mut svc = Service::default();
    let mut attr_name = None;
    for (k, v) in attrs_src.map(parse_resource_attributes).unwrap_or_default() {
        match k.as_str() {
            "service.name" => attr_name = clean(&v),
            "service.version" => svc.version = clean(&v),
            _ => svc.attributes.push((k, v)),
        }
    }
    let explicit = java.service_name.or_else(|| i.otel_service_name.and_then(clean)).or(attr_name);
    let named = explicit.is_some();
    svc.name = explicit
        .or_else(|| rules::app_name(i.argv))
        .or_else(|| i.invoked.map(rules::basename).and_then(clean))
        .or_else(|| clean(i.fallback))
        .unwrap_or_else(|| "unknown".into());
    (svc, named)
}

/// The two variables of a NUL-separated environment block; the rest is
/// never copied.
pub fn otel_vars(env: &[u8]) -> (Option<String>, Option<String>) {
    let (mut name, mut attrs) = (None, None);
    for var in env.split(|b| *b == 0) {
        if let Some(v) = var.strip_prefix(b"OTEL_SERVICE_NAME=") {
            name = Some(String::from_utf8_lossy(v).into_owned());
        } else if let Some(v) = var.strip_prefix(b"OTEL_RESOURCE_ATTRIBUTES=") {
            attrs = Some(String::from_utf8_lossy(v).into_owned());
        }
    }
    (name, attrs)
}

/// Service identity from a NUL-separated environment block.
pub fn from_environ(env: &[u8], fallback: &str) -> Service {
    let (name, attrs) = otel_vars(env);
    derive(&Inputs {
        argv: &[],
        invoked: None,
        otel_service_name: name.as_deref(),
        otel_resource_attributes: attrs.as_deref(),
        fallback,
    })
    .0
}

/// `key1=value1,key2=value2` with percent-encoded values (OTel spec).
pub fn parse_resource_attributes(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let k = clean(k)?;
            let v: String = percent_decode(v.trim()).chars().filter(|c| !c.is_control()).take(MAX_VALUE).collect();
            Some((k, v))
        })
        .take(MAX_ATTRS)
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_from_environment() {
        let env = b"PATH=/bin\0OTEL_RESOURCE_ATTRIBUTES=service.name=ignored,service.version=1.2,deployment.environment=prod%20eu\0OTEL_SERVICE_NAME=checkout\0";
        let s = from_environ(env, "python3");
        assert_eq!(s.name, "checkout");
        assert_eq!(s.version.as_deref(), Some("1.2"));
        assert_eq!(s.attributes, vec![("deployment.environment".into(), "prod eu".into())]);
        let s = from_environ(b"OTEL_RESOURCE_ATTRIBUTES=service.name=cart\0", "x");
        assert_eq!(s.name, "cart");
        assert_eq!(from_environ(b"HOME=/\0", "nginx").name, "nginx");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("a%41"), "aA");
    }

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn precedence() {
        let argv = args("java -Dotel.service.name=fromprop -jar app.jar");
        let i = |argv, env| Inputs {
            argv,
            invoked: Some("/usr/bin/java"),
            otel_service_name: env,
            otel_resource_attributes: Some("service.name=fromattr"),
            fallback: "java",
        };
        assert_eq!(derive(&i(&argv, Some("fromenv"))).0.name, "fromprop", "a Java property beats the environment");
        let argv = args("java -jar app.jar");
        assert_eq!(derive(&i(&argv, Some("fromenv"))).0.name, "fromenv");
        assert_eq!(derive(&i(&argv, None)).0.name, "fromattr");
        let plain = Inputs {
            argv: &args("redis-server *:6379"),
            invoked: Some("/usr/bin/redis-server"),
            otel_service_name: Some("\u{1}\n"),
            otel_resource_attributes: None,
            fallback: "redis-check-rdb",
        };
        let (s, named) = derive(&plain);
        assert_eq!((s.name.as_str(), named), ("redis-server", false), "a control-only name is no name");
    }
}
