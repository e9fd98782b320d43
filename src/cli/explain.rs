//! `keyhole explain --config FILE TARGET [--format text|json]`.

use std::fmt::Write as _;
use std::process::ExitCode;

use super::{ExplainArgs, ExplainFormat};
use crate::config;
use crate::policy::{explain, Explanation, Policy};

/// Explains the target: exit 0 with the report, or 1 when the config or
/// the target is refused.
pub fn run(args: &ExplainArgs) -> ExitCode {
    let config = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let policy = Policy::new(config);
    let report = match explain(&policy, &args.target) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match args.format {
        ExplainFormat::Text => print!("{}", text(&report)),
        ExplainFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("cannot write the report as JSON: {e}");
                return ExitCode::FAILURE;
            }
        },
    }
    ExitCode::SUCCESS
}

/// The report for people.
pub fn text(r: &Explanation) -> String {
    let mut out = String::new();
    let port = r.port.map(|p| format!(", port {p}")).unwrap_or_default();
    let _ = writeln!(out, "target  {}", r.target);
    let path = r.path.as_deref().unwrap_or("");
    let _ = writeln!(out, "host    {} ({}{port}){path}", r.host, r.scheme);
    let egress = match (&r.egress.allowed, &r.egress.matched) {
        (true, Some(m)) if m == "unrestricted" => "allowed (unrestricted)".to_owned(),
        (true, Some(m)) => format!("allowed by \"{m}\""),
        _ => "denied: no egress entry matches; the proxy answers 403".to_owned(),
    };
    let _ = writeln!(out, "egress  {egress}");
    let action = match r.action {
        "deny" => "deny (403 Forbidden)",
        "forward" => "forward as plaintext HTTP; no substitution",
        "tunnel" => "tunnel byte for byte; no credential can apply, so no interception",
        _ => "intercept: terminate TLS, substitute placeholders and inject MCP tokens where they apply",
    };
    let _ = writeln!(out, "action  {action}");
    if r.credentials.is_empty() {
        let _ = writeln!(out, "credentials  none");
    }
    for c in &r.credentials {
        let mcp = c.auth_type != "environment_variable";
        let name = match (
            &c.secret_name,
            mcp.then_some(c.matched.as_deref()).flatten(),
        ) {
            (Some(n), _) => n.clone(),
            (None, Some(url)) => url.to_owned(),
            (None, None) => "-".to_owned(),
        };
        let verdict = match (c.substituted, mcp) {
            (true, false) => "substituted",
            (false, false) => "not substituted",
            (true, true) => "token injected",
            (false, true) => "not injected",
        };
        let _ = writeln!(
            out,
            "  {} {name} ({}): {verdict}: {}",
            c.id, c.auth_type, c.reason
        );
    }
    out
}
