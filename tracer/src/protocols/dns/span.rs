//! How a DNS exchange is described on a span: named `DNS <type>` (`DNS A`,
//! `DNS AAAA`), with the conventions' `dns.question.name` and `dns.answers`
//! (the addresses), and the agent's `dns.question.type` and
//! `dns.response_code` (mnemonics; the conventions have no key for them yet).
//! A response code other than NOERROR is the span's `error.type`
//! (`NXDOMAIN`, `SERVFAIL`); a query never answered is `timeout`.

use std::borrow::Cow;

use super::{
    DnsExchange,
    wire::{self, Answer},
};
use crate::span::{Attributes, Described, Key, Value};

pub fn describe(d: &DnsExchange) -> Described {
    let qtype = wire::type_name(d.qtype);
    let mut a: Attributes = Vec::with_capacity(6);
    a.push((Key::DnsQuestionName, Value::Str(d.name.clone().into())));
    a.push((Key::DnsQuestionType, Value::Str(qtype.clone())));
    if let Some(rcode) = d.rcode {
        a.push((Key::DnsResponseCode, Value::Str(wire::rcode_name(rcode))));
    }
    let addrs: Vec<String> = d
        .answers
        .iter()
        .filter_map(|x| match x {
            Answer::Addr(ip) => Some(ip.to_string()),
            Answer::Alias(_) => None,
        })
        .collect();
    if !addrs.is_empty() {
        a.push((Key::DnsAnswers, Value::StrArray(addrs)));
    }
    let aliases: Vec<String> = d
        .answers
        .iter()
        .filter_map(|x| match x {
            Answer::Alias(n) => Some(n.clone()),
            Answer::Addr(_) => None,
        })
        .collect();
    if !aliases.is_empty() {
        a.push((Key::DnsAnswerAliases, Value::StrArray(aliases)));
    }
    a.push((Key::NetworkProtocolName, "dns".into()));
    let error_type: Option<Cow<'static, str>> = match d.rcode {
        None => Some("timeout".into()),
        Some(0) => None,
        Some(r) => Some(wire::rcode_name(r)),
    };
    Described { name: format!("DNS {qtype}"), protocol: "dns", error_type, attributes: a, ..Default::default() }
}
