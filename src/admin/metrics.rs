//! `/metrics`: the proxy's [`Counters`] in the Prometheus text format
//! (version 0.0.4), every name prefixed `keyhole_`, with HELP and TYPE.
//!
//! Labels hold credential ids, status classes and RFC 9209 error types,
//! never a value from a request.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::proxy::{Counters, Proxy};

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition text.
pub fn render(proxy: &Proxy) -> String {
    let c: &Counters = &proxy.counters;
    let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
    let mut out = String::new();
    let mut plain = |name: &str, help: &str, value: u64| {
        family(&mut out, name, help);
        let _ = writeln!(out, "keyhole_{name} {value}");
    };
    plain(
        "requests_total",
        "Requests relayed to upstreams (intercepted or plain HTTP).",
        load(&c.requests),
    );
    plain(
        "header_substitutions_total",
        "Placeholders in request headers replaced by their secret.",
        load(&c.substituted),
    );
    plain(
        "placeholders_passed_total",
        "Placeholders in request headers passed on unsubstituted (wrong host, location or plain HTTP).",
        load(&c.passed),
    );
    plain(
        "body_substitutions_total",
        "Placeholders in request bodies replaced by their secret.",
        load(&c.body.substituted),
    );
    plain(
        "body_placeholders_passed_total",
        "Placeholders in request bodies passed on unsubstituted.",
        load(&c.body.passed),
    );
    plain(
        "encoded_bodies_total",
        "Request bodies left alone because of their Content-Encoding.",
        load(&c.encoded_bodies),
    );
    plain(
        "scrubbed_total",
        "Secret values replaced by their placeholder in responses.",
        load(&c.scrubbed),
    );
    plain(
        "tunnels_total",
        "CONNECTs relayed byte for byte, without interception.",
        load(&c.tunnels),
    );
    plain(
        "intercepts_total",
        "CONNECTs intercepted (TLS terminated with a leaf from keyhole's CA).",
        load(&c.intercepts),
    );
    plain(
        "denied_total",
        "CONNECTs and requests refused by the egress policy.",
        load(&c.denied),
    );
    plain(
        "leaf_cache_hits_total",
        "Leaf certificates served from the cache.",
        proxy.leaves().hits(),
    );
    plain(
        "leaf_cache_misses_total",
        "Leaf certificates issued.",
        proxy.leaves().misses(),
    );
    if let Some(audit) = &proxy.audit {
        plain(
            "audit_dropped_total",
            "Audit records dropped because the writer fell behind (--audit-log).",
            audit.dropped(),
        );
    }
    family(
        &mut out,
        "reloads_total",
        "Config reloads (SIGHUP or file change), by outcome.",
    );
    let _ = writeln!(
        out,
        "keyhole_reloads_total{{outcome=\"ok\"}} {}",
        load(&c.reloads_ok)
    );
    let _ = writeln!(
        out,
        "keyhole_reloads_total{{outcome=\"failed\"}} {}",
        load(&c.reloads_failed)
    );
    family(
        &mut out,
        "responses_total",
        "Responses to relayed requests, by status class.",
    );
    for (class, n) in crate::proxy::STATUS_CLASSES.iter().zip(&c.by_status) {
        let n = load(n);
        if n > 0 {
            let _ = writeln!(out, "keyhole_responses_total{{class=\"{class}\"}} {n}");
        }
    }
    family(
        &mut out,
        "errors_total",
        "Responses keyhole made itself to relayed requests, by RFC 9209 Proxy-Status error type.",
    );
    for (error, n) in c.errors() {
        let _ = writeln!(
            out,
            "keyhole_errors_total{{type=\"{}\"}} {n}",
            error.as_str()
        );
    }
    mcp_tokens(&mut out, proxy);
    labelled(
        &mut out,
        "substitutions_by_credential_total",
        "Placeholders substituted (in headers: once per request; in bodies: each), by credential id.",
        "credential_id",
        &c.by_credential,
    );
    out
}

/// The MCP token book: refreshes by outcome, saves that failed, and which
/// credentials need the user to authorise them again.
fn mcp_tokens(out: &mut String, proxy: &Proxy) {
    let stats = proxy.tokens().stats();
    family(
        out,
        "mcp_refreshes_total",
        "OAuth token refreshes of mcp_oauth credentials, by credential id and outcome.",
    );
    for s in &stats {
        let id = escape(&s.id);
        let _ = writeln!(
            out,
            "keyhole_mcp_refreshes_total{{credential_id=\"{id}\",outcome=\"ok\"}} {}",
            s.refreshes_ok
        );
        let _ = writeln!(
            out,
            "keyhole_mcp_refreshes_total{{credential_id=\"{id}\",outcome=\"failed\"}} {}",
            s.refreshes_failed
        );
    }
    family(
        out,
        "mcp_token_save_failures_total",
        "Refreshed tokens that could not be written to the config file, by credential id.",
    );
    for s in &stats {
        let _ = writeln!(
            out,
            "keyhole_mcp_token_save_failures_total{{credential_id=\"{}\"}} {}",
            escape(&s.id),
            s.persist_failures
        );
    }
    let _ = writeln!(out, "# HELP keyhole_mcp_needs_reauthorisation 1 when the credential's last refresh failed and requests get 502 (until its tokens are updated, or, for a transient failure, the next attempt succeeds).");
    let _ = writeln!(out, "# TYPE keyhole_mcp_needs_reauthorisation gauge");
    for s in &stats {
        let (value, reason) = match &s.failing {
            Some(e) => (1, e.kind()),
            None => (0, "none"),
        };
        let _ = writeln!(
            out,
            "keyhole_mcp_needs_reauthorisation{{credential_id=\"{}\",reason=\"{reason}\"}} {value}",
            escape(&s.id)
        );
    }
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP keyhole_{name} {help}");
    let _ = writeln!(out, "# TYPE keyhole_{name} counter");
}

fn labelled(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: &Mutex<BTreeMap<String, u64>>,
) {
    family(out, name, help);
    let Ok(values) = values.lock() else {
        return;
    };
    for (key, value) in values.iter() {
        let _ = writeln!(out, "keyhole_{name}{{{label}=\"{}\"}} {value}", escape(key));
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let values = Mutex::new(BTreeMap::from([("vcrd_a".to_owned(), 3)]));
        let mut out = String::new();
        labelled(&mut out, "x_total", "X.", "credential_id", &values);
        assert_eq!(
            out,
            "# HELP keyhole_x_total X.\n# TYPE keyhole_x_total counter\nkeyhole_x_total{credential_id=\"vcrd_a\"} 3\n"
        );
    }
}
