//! /metrics content negotiation. In: the request's Accept header and the
//! OpenMetrics text prometheus-client renders. Out: the format asked for,
//! OpenMetrics 1.0.0 or the Prometheus text format 0.0.4 (the default, as
//! Prometheus' own client libraries answer a scraper that asks for nothing).
//!
//! The two differ where it matters to a parser: in OpenMetrics a counter
//! family is named without `_total` (`# TYPE x counter`, sample `x_total`),
//! in 0.0.4 the family carries the sample's name; 0.0.4 has no `# UNIT`,
//! no `# EOF`, and no info/stateset/unknown types.

use std::collections::HashMap;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS,
            Format::Text => TEXT_004,
        }
    }
}

/// The format an Accept header prefers: the media range with the highest
/// q among those we serve; on a tie the earlier one. `*/*`, `text/*` and no
/// header at all mean the 0.0.4 text.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else { return Format::Text };
    let mut best: Option<(f32, Format)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0f32;
        let mut version = None;
        for p in parts {
            let Some((k, v)) = p.split_once('=') else { continue };
            match k.trim().to_ascii_lowercase().as_str() {
                "q" => q = v.trim().parse().unwrap_or(0.0),
                "version" => version = Some(v.trim().trim_matches('"').to_string()),
                _ => {}
            }
        }
        let format = match (media.as_str(), version.as_deref()) {
            // 0.0.1 is the draft the final 1.0.0 grew from; we only write 1.0.0.
            ("application/openmetrics-text", None | Some("1.0.0" | "0.0.1")) => Format::OpenMetrics,
            ("text/plain", None | Some("0.0.4")) | ("text/*" | "*/*", _) => Format::Text,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, format));
        }
    }
    best.map_or(Format::Text, |(_, f)| f)
}

/// OpenMetrics text (as prometheus-client writes it) as Prometheus text 0.0.4.
pub fn to_text_004(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // Counter (and info) families, whose samples end in `_total` (`_info`):
    // their HELP and TYPE lines take that name. A HELP line comes before
    // its TYPE line, so the family's type is looked up ahead.
    let suffixed: HashMap<&str, &str> = openmetrics
        .lines()
        .filter_map(|l| {
            let (name, kind) = l.strip_prefix("# TYPE ")?.split_once(' ')?;
            Some((name, SUFFIXES.iter().find(|(k, _)| *k == kind)?.1))
        })
        .collect();
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let name = family_name(name, &suffixed);
            out.push_str(&format!("# HELP {name} {help}\n"));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let kind = match kind {
                "counter" | "gauge" | "histogram" | "summary" => kind,
                // An info metric is a gauge of value 1 in 0.0.4.
                "info" => "gauge",
                // 0.0.4 knows no stateset, gaugehistogram or unknown.
                _ => "untyped",
            };
            out.push_str(&format!("# TYPE {} {kind}\n", family_name(name, &suffixed)));
        } else {
            // Exemplars (` # {...}`) exist only in OpenMetrics.
            let sample = line.split_once(" # ").map_or(line, |(s, _)| s);
            out.push_str(sample);
            out.push('\n');
        }
    }
    out
}

/// OpenMetrics types whose sample name adds a suffix to the family name.
const SUFFIXES: [(&str, &str); 2] = [("counter", "_total"), ("info", "_info")];

fn family_name(name: &str, suffixed: &HashMap<&str, &str>) -> String {
    match suffixed.get(name) {
        Some(suffix) => format!("{name}{suffix}"),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_scraper_header_prefers_openmetrics() {
        // What Prometheus 2.x sends.
        let p = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(p)), Format::OpenMetrics);
    }

    #[test]
    fn plain_text_absent_and_wildcard_get_004() {
        assert_eq!(negotiate(Some("text/plain;version=0.0.4")), Format::Text);
        assert_eq!(negotiate(Some("text/plain; version=0.0.4; q=0.9, application/json")), Format::Text);
        assert_eq!(negotiate(None), Format::Text);
        assert_eq!(negotiate(Some("*/*")), Format::Text);
        assert_eq!(negotiate(Some("application/json")), Format::Text);
    }

    #[test]
    fn q_values_decide_and_zero_refuses() {
        assert_eq!(negotiate(Some("text/plain;q=0.2, application/openmetrics-text;q=0.8")), Format::OpenMetrics);
        assert_eq!(negotiate(Some("application/openmetrics-text;q=0, text/plain;q=0.1")), Format::Text);
        // An OpenMetrics version we do not write is not chosen.
        assert_eq!(negotiate(Some("application/openmetrics-text;version=2.0.0")), Format::Text);
    }

    #[test]
    fn counters_take_their_sample_name_in_004() {
        let om = "# HELP tracer_x Things.\n# TYPE tracer_x counter\ntracer_x_total{a=\"1\"} 3\n\
                  # HELP tracer_g Level.\n# TYPE tracer_g gauge\n# UNIT tracer_g bytes\ntracer_g 2\n\
                  # HELP h Dur.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1 # {id=\"x\"} 0.5\nh_sum 0.5\nh_count 1\n\
                  # HELP i Info.\n# TYPE i info\ni_info{v=\"1\"} 1\n# EOF\n";
        let want = "# HELP tracer_x_total Things.\n# TYPE tracer_x_total counter\ntracer_x_total{a=\"1\"} 3\n\
                    # HELP tracer_g Level.\n# TYPE tracer_g gauge\ntracer_g 2\n\
                    # HELP h Dur.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n\
                    # HELP i_info Info.\n# TYPE i_info gauge\ni_info{v=\"1\"} 1\n";
        assert_eq!(to_text_004(om), want);
    }
}
