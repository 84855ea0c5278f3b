//! Span attributes: well-known keys as an enum (compared as integers, named
//! as strings only at export), values typed (addresses stay `IpAddr` until
//! a line or an OTLP request is written).

use std::{borrow::Cow, fmt, net::IpAddr, sync::Arc};

use serde::{Serialize, Serializer};

macro_rules! keys {
    ($($(#[$doc:meta])* $v:ident = $s:literal,)*) => {
        /// An attribute key. The well-known ones of the OpenTelemetry
        /// semantic conventions (and the agent's own `tracer.*`) are
        /// variants; anything else (recorded headers) is `Other`.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum Key {
            $($(#[$doc])* $v,)*
            Other(Box<str>),
        }

        impl Key {
            pub fn as_str(&self) -> &str {
                match self {
                    $(Key::$v => $s,)*
                    Key::Other(s) => s,
                }
            }

            /// The key of a name: a variant when it is well known.
            pub fn named(name: &str) -> Key {
                match name {
                    $($s => Key::$v,)*
                    other => Key::Other(other.into()),
                }
            }
        }
    };
}

keys! {
    HttpRequestMethod = "http.request.method",
    HttpRequestMethodOriginal = "http.request.method_original",
    HttpRoute = "http.route",
    HttpResponseStatusCode = "http.response.status_code",
    HttpRequestBodySize = "http.request.body.size",
    HttpResponseBodySize = "http.response.body.size",
    UrlPath = "url.path",
    UrlQuery = "url.query",
    UrlScheme = "url.scheme",
    UserAgentOriginal = "user_agent.original",
    ServerAddress = "server.address",
    ServerPort = "server.port",
    ClientAddress = "client.address",
    NetworkPeerAddress = "network.peer.address",
    NetworkPeerPort = "network.peer.port",
    NetworkTransport = "network.transport",
    NetworkProtocolName = "network.protocol.name",
    NetworkProtocolVersion = "network.protocol.version",
    ErrorType = "error.type",
    PeerService = "peer.service",
    DbSystemName = "db.system.name",
    DbNamespace = "db.namespace",
    DbOperationName = "db.operation.name",
    DbCollectionName = "db.collection.name",
    DbQuerySummary = "db.query.summary",
    DbQueryText = "db.query.text",
    DbResponseStatusCode = "db.response.status_code",
    DbOperationBatchSize = "db.operation.batch.size",
    DbResponseReturnedRows = "db.response.returned_rows",
    RpcSystem = "rpc.system",
    RpcService = "rpc.service",
    RpcMethod = "rpc.method",
    RpcGrpcStatusCode = "rpc.grpc.status_code",
    DnsQuestionName = "dns.question.name",
    DnsAnswers = "dns.answers",
    /// The record type asked (`A`, `AAAA`); not (yet) a convention's key.
    DnsQuestionType = "dns.question.type",
    /// The response code (`NOERROR`, `NXDOMAIN`); not (yet) a convention's key.
    DnsResponseCode = "dns.response_code",
    /// CNAME targets in the answer.
    DnsAnswerAliases = "tracer.dns.aliases",
    /// The name a DNS answer gave the remote address (`crate::chain::names`).
    TracerPeerName = "tracer.peer.name",
    /// The response's end was not seen (framing lost, connection closed).
    TracerResponseIncomplete = "tracer.response_incomplete",
    /// The request's head was longer than the captured bytes.
    TracerRequestHeadTruncated = "tracer.http.request_head_truncated",
    /// The business transaction of the span's trace (`crate::business`).
    BusinessTransactionName = "business.transaction.name",
}

impl From<&'static str> for Key {
    fn from(name: &'static str) -> Key {
        Key::named(name)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// Borrowed for the constants most attributes are ("GET", "http",
    /// "tcp", "1.1"): no allocation per span for them.
    Str(Cow<'static, str>),
    /// Text shared by many spans (a business transaction's name): a
    /// reference count per span, not a copy.
    Shared(#[serde(serialize_with = "shared_str")] Arc<str>),
    Int(i64),
    /// An address, formatted when written out.
    Ip(IpAddr),
    StrArray(Vec<String>),
}

impl Value {
    /// The value as text, when it is text or an address.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            Value::Str(s) => Some(Cow::Borrowed(s)),
            Value::Shared(s) => Some(Cow::Borrowed(s)),
            Value::Ip(ip) => Some(Cow::Owned(ip.to_string())),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Equal to the text `v` (an address compares by its text form).
    pub fn is_text(&self, v: &str) -> bool {
        match self {
            Value::Str(s) => s == v,
            Value::Shared(s) => &**s == v,
            Value::Ip(ip) => v.parse::<IpAddr>().is_ok_and(|x| x == *ip),
            _ => false,
        }
    }
}

fn shared_str<S: Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v)
}

impl From<&'static str> for Value {
    fn from(s: &'static str) -> Value {
        Value::Str(Cow::Borrowed(s))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(Cow::Owned(s))
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<IpAddr> for Value {
    fn from(ip: IpAddr) -> Value {
        Value::Ip(ip)
    }
}

pub type Attributes = Vec<(Key, Value)>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_by_name() {
        for k in [Key::HttpRoute, Key::DbSystemName, Key::NetworkPeerAddress, Key::TracerResponseIncomplete] {
            assert_eq!(Key::named(k.as_str()), k);
        }
        assert_eq!(Key::named("http.request.header.x-id"), Key::Other("http.request.header.x-id".into()));
    }

    #[test]
    fn addresses_compare_as_text() {
        let v = Value::Ip("::1".parse().unwrap());
        assert!(v.is_text("::1") && v.is_text("0:0::1") && !v.is_text("127.0.0.1"));
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"::1\"");
        let shared = Value::Shared("checkout".into());
        assert!(shared.is_text("checkout") && shared.text().is_some_and(|t| t == "checkout"));
        assert_eq!(serde_json::to_string(&shared).unwrap(), "\"checkout\"");
    }
}
