//! The protocols the agent speaks, in one place: how each is detected from
//! a connection's first bytes (with its well-known ports as a hint), the
//! parser that frames and pairs it, the exchange it yields ([`Info`]) and
//! how that exchange is described on a span. Adding a protocol: its folder
//! under `protocols/`, a line in [`PROTOCOLS`], a variant of [`Info`] and
//! its arm in [`Describer::describe`].

use super::{ConnHints, ProtocolConfig, ProtocolParser, Side, dns, http1, http2, mysql, postgres, redis};
use crate::span::{Described, SpanKind};

/// One protocol the agent can parse.
pub struct Protocol {
    pub name: &'static str,
    /// Server ports the protocol is usually served on. A connection to one
    /// of them is tried with this protocol first, and its detection may
    /// accept weaker evidence (`port_hint`).
    pub ports: &'static [u16],
    /// Which side the first captured bytes of a direction are, if they are
    /// this protocol. `port_hint`: the server port is one of `ports`.
    pub detect: fn(payload: &[u8], port_hint: bool) -> Option<Side>,
    pub parser: fn(cfg: &ProtocolConfig, hints: ConnHints) -> Box<dyn ProtocolParser>,
}

/// Every protocol, in detection order (distinctive signatures first).
pub const PROTOCOLS: &[Protocol] = &[
    Protocol { name: "http2", ports: &[], detect: http2::detect, parser: http2::parser },
    Protocol { name: "http", ports: &[80, 8080], detect: http1::detect, parser: http1::parser },
    Protocol { name: "postgresql", ports: &[5432], detect: postgres::detect, parser: postgres::parser },
    Protocol { name: "redis", ports: &[6379], detect: redis::detect, parser: redis::parser },
    Protocol { name: "mysql", ports: &[3306], detect: mysql::detect, parser: mysql::parser },
    Protocol { name: "dns", ports: &[53], detect: dns::detect, parser: dns::parser },
];

/// The protocol of a connection from the first captured bytes of one of its
/// directions: the parser, and which side those bytes are.
pub fn detect(payload: &[u8], cfg: &ProtocolConfig, hints: ConnHints) -> Option<(Side, Box<dyn ProtocolParser>)> {
    // The kernel ships UDP only for DNS flows (remote port 53), and a
    // datagram has no length prefix: no other protocol is tried on one.
    if hints.udp {
        return dns::detect_datagram(payload).map(|side| (side, dns::parser(cfg, hints)));
    }
    let hinted = |p: &Protocol| hints.server_port.is_some_and(|port| p.ports.contains(&port));
    let by_port = PROTOCOLS.iter().filter(|p| hinted(p)).find_map(|p| Some((p, (p.detect)(payload, true)?)));
    let found = by_port
        .or_else(|| PROTOCOLS.iter().filter(|p| !hinted(p)).find_map(|p| Some((p, (p.detect)(payload, false)?))));
    found.map(|(p, side)| (side, (p.parser)(cfg, hints)))
}

/// What one exchange carried, by protocol.
// HTTP's and HTTP/2's are the large variants (a request head each); an
// exchange moves a few times per call, and boxing them would add an
// allocation per call.
#[derive(Clone, Debug, PartialEq)]
pub enum Info {
    Http(http1::HttpExchange),
    Redis(redis::RedisExchange),
    Postgres(postgres::PgExchange),
    Mysql(mysql::MysqlExchange),
    Http2(http2::H2Exchange),
    Dns(dns::DnsExchange),
}

/// Settings of how each protocol describes its spans.
#[derive(Clone, Debug, Default)]
pub struct DescribeConfig {
    pub http: http1::span::HttpSpanConfig,
    /// Put the statement, reduced to a literal-free form, in db.query.text.
    pub db_query_text: bool,
}

/// What describing spans keeps between spans, per protocol (HTTP routes).
pub struct Describer {
    http: http1::span::HttpSpans,
    db_query_text: bool,
}

impl Describer {
    pub fn new(cfg: &DescribeConfig) -> anyhow::Result<Self> {
        Ok(Describer { http: http1::span::HttpSpans::new(&cfg.http)?, db_query_text: cfg.db_query_text })
    }

    /// The protocol's part of the span of one exchange of `service`, seen
    /// from the end `kind` (SERVER: the request came in).
    pub fn describe(&mut self, info: &Info, kind: SpanKind, service: &str) -> Described {
        match info {
            Info::Http(h) => self.http.describe(h, kind, service),
            Info::Postgres(p) => postgres::span::describe(p, self.db_query_text),
            Info::Redis(r) => redis::span::describe(r),
            Info::Mysql(m) => mysql::span::describe(m, self.db_query_text),
            Info::Http2(h) => http2::span::describe(h, &mut self.http, kind, service),
            Info::Dns(d) => dns::span::describe(d),
        }
    }

    /// HTTP routes replaced by the overflow route since the last call.
    pub fn take_route_overflow(&mut self) -> u64 {
        std::mem::take(&mut self.http.route_overflow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_have_distinct_names() {
        let mut names: Vec<_> = PROTOCOLS.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PROTOCOLS.len());
    }

    #[test]
    fn detection_says_which_side() {
        let cfg = ProtocolConfig::default();
        let (side, p) = detect(b"GET / HTTP/1.1\r\n", &cfg, ConnHints::default()).unwrap();
        assert_eq!((side, p.name()), (Side::Request, "http"));
        let (side, _) = detect(b"HTTP/1.1 200 OK\r\n", &cfg, ConnHints::default()).unwrap();
        assert_eq!(side, Side::Response);
        assert!(detect(b"\x00\x01garbage", &cfg, ConnHints::default()).is_none());
        // HTTP/2: the preface, and an HTTP/1 request asking for h2c.
        let (side, p) = detect(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &cfg, ConnHints::default()).unwrap();
        assert_eq!((side, p.name()), (Side::Request, "http2"));
        let h2c = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n";
        let (_, p) = detect(h2c, &cfg, ConnHints::default()).unwrap();
        assert_eq!(p.name(), "http2", "the HTTP/2 parser, reading HTTP/1 until the server switches");
        let ws = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(detect(ws, &cfg, ConnHints::default()).unwrap().1.name(), "http");
    }
}
