//! `keyhole env`: the environment a sandbox needs.
//!
//! Proxy variables (upper and lower case, since clients disagree), the CA
//! bundle for every client family that reads its own variable, and one
//! variable per active `environment_variable` credential holding its
//! placeholder. The bundle holds keyhole's CA and the system roots, since
//! tunnelled hosts show their real certificates.

use std::path::Path;
use std::process::ExitCode;

use super::EnvArgs;
use super::EnvFormat;
use crate::config;
use crate::placeholder::{placeholders, PlaceholderKey};
use crate::state;
use crate::tls::{bundle, CertificateAuthority};

/// Variables that name a CA bundle, one per client family.
pub const CA_BUNDLE_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    "CARGO_HTTP_CAINFO",
    "PIP_CERT",
    "AWS_CA_BUNDLE",
    "DENO_CERT",
];

/// Prints the environment; exit 0, or 1 with the reason.
pub fn run(args: &EnvArgs) -> ExitCode {
    match environment(args) {
        Ok(vars) => {
            print!("{}", render(&vars, args.format));
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// The variables of `keyhole env`, in output order.
pub fn environment(args: &EnvArgs) -> Result<Vec<(String, String)>, String> {
    environment_for(&args.config, &args.listen, args.state_dir.as_deref())
}

/// The variables for a proxy on `listen` with this config and state dir:
/// what `env` prints and what `exec` hands its command.
pub fn environment_for(
    config: &Path,
    listen: &str,
    state_dir: Option<&Path>,
) -> Result<Vec<(String, String)>, String> {
    let config = config::load(config).map_err(|e| e.to_string())?;
    let dir = state::resolve_dir(state_dir).map_err(|e| e.to_string())?;
    // Absolute, so that the bundle is found from any working directory.
    let dir = std::path::absolute(&dir)
        .map_err(|e| format!("cannot make the state dir {} absolute: {e}", dir.display()))?;
    let ca = CertificateAuthority::load_or_create(&dir).map_err(|e| e.to_string())?;
    let bundle = bundle::write_bundle(&dir, &ca).map_err(|e| e.to_string())?;
    let key = PlaceholderKey::load_or_create(&dir).map_err(|e| e.to_string())?;
    let proxy = format!("http://{listen}");
    let mut vars: Vec<(String, String)> = Vec::new();
    for name in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        vars.push((name.to_owned(), proxy.clone()));
    }
    // Empty on purpose: every destination goes through keyhole, and an
    // inherited NO_PROXY must not let traffic around it.
    vars.push(("NO_PROXY".to_owned(), String::new()));
    vars.push(("no_proxy".to_owned(), String::new()));
    let bundle = bundle.display().to_string();
    for name in CA_BUNDLE_VARS {
        vars.push(((*name).to_owned(), bundle.clone()));
    }
    vars.push(("NODE_USE_ENV_PROXY".to_owned(), "1".to_owned()));
    for (credential, placeholder) in config.credentials.iter().zip(placeholders(&config, &key)) {
        if let (Some(auth), Some(p)) = (credential.environment_variable(), placeholder) {
            if !credential.is_archived() {
                vars.push((auth.secret_name.clone(), p));
            }
        }
    }
    Ok(vars)
}

/// Formats the variables.
pub fn render(vars: &[(String, String)], format: EnvFormat) -> String {
    match format {
        EnvFormat::Sh => vars
            .iter()
            .map(|(k, v)| format!("export {k}={}\n", sh_quote(v)))
            .collect(),
        EnvFormat::Dotenv => vars
            .iter()
            .map(|(k, v)| format!("{k}={}\n", dotenv_quote(v)))
            .collect(),
        EnvFormat::Json => {
            let map: serde_json::Map<String, serde_json::Value> = vars
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            format!("{}\n", serde_json::Value::Object(map))
        }
    }
}

/// Single-quotes for POSIX sh: safe for `eval` whatever the value holds.
fn sh_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

/// Double-quotes for dotenv files when needed, escaping `\`, `"` and `$`.
fn dotenv_quote(v: &str) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:,@+".contains(&b))
    {
        return v.to_owned();
    }
    let mut out = String::from("\"");
    for c in v.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a'b c"), r"'a'\''b c'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(
            dotenv_quote("/var/lib/keyhole/ca-bundle.pem"),
            "/var/lib/keyhole/ca-bundle.pem"
        );
        assert_eq!(dotenv_quote(""), "\"\"");
        assert_eq!(dotenv_quote("a b$c"), "\"a b\\$c\"");
    }

    #[test]
    fn formats() {
        let vars = vec![
            ("A".to_owned(), "x y".to_owned()),
            ("B".to_owned(), "1".to_owned()),
        ];
        assert_eq!(
            render(&vars, EnvFormat::Sh),
            "export A='x y'\nexport B='1'\n"
        );
        assert_eq!(render(&vars, EnvFormat::Dotenv), "A=\"x y\"\nB=1\n");
        assert_eq!(
            render(&vars, EnvFormat::Json),
            "{\"A\":\"x y\",\"B\":\"1\"}\n"
        );
    }
}
