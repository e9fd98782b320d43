//! `keyhole check` and `keyhole explain`, through the real binary.

mod support;

use support::{keyhole, keyhole_env, one_credential, Workspace};

const SECRET: &str = "ghp_realsecret_9f8e7d";

fn limited_auth(hosts: &str) -> String {
    format!(
        r#""secret_name": "GITHUB_TOKEN", "secret_value": "{SECRET}", "networking": {{"type": "limited", "allowed_hosts": {hosts}}}"#
    )
}

fn check(ws: &Workspace, text: &str) -> support::Run {
    let path = ws.file("config.json", text);
    keyhole(&["check", "--config", path.to_str().unwrap()])
}

#[test]
fn check_accepts_the_example() {
    let run = keyhole(&[
        "check",
        "--config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/credentials.json"),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("valid: 3 credentials"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("realsecret"));
}

/// Every invalid case of the foundation issue, each alone in a file:
/// exit 1 and the expected message.
#[test]
fn check_refuses_each_invalid_case() {
    let ws = Workspace::new();
    let host_cases: &[(&str, &str)] = &[
        (
            r#"["https://api.x.com"]"#,
            r#"allowed_hosts[0]: "https://api.x.com" is a URL; write the bare host "api.x.com""#,
        ),
        (r#"["ftp:api.x.com"]"#, "has a port"),
        (
            r#"["api.x.com:443"]"#,
            r#"has a port; entries match every port, write "api.x.com""#,
        ),
        (r#"["api.x.com/v1"]"#, "has a path"),
        (r#"["api.x.com?q=1"]"#, "has a query"),
        (r#"["user@api.x.com"]"#, "has userinfo"),
        (r#"["2001:db8::1"]"#, "is an IPv6 address"),
        (r#"["[2001:db8::1]"]"#, "is an IPv6 address"),
        (r#"["*"]"#, r#""*" alone would match every host"#),
        (r#"["api.*.com"]"#, "not a leading"),
        (r#"["*.*.x.com"]"#, "not a leading"),
        (
            r#"["*example.com"]"#,
            r#"write "*.example.com" for its subdomains"#,
        ),
        (r#"[""]"#, "the entry is empty"),
        (r#"[" api.x.com"]"#, "contains white space"),
        (
            r#"["api.x.com", "API.X.COM"]"#,
            "allowed_hosts[1]: \"API.X.COM\" repeats entry [0]",
        ),
        (r#"[]"#, "allowed_hosts: has no entries"),
        (r#"["a_b.x.com"]"#, "contains '_'"),
        (r#"["-a.x.com"]"#, "hyphen"),
        (
            r#"["bücher.de"]"#,
            r#"write its IDNA form "xn--bcher-kva.de""#,
        ),
        (r#"["127.1"]"#, r#"write "127.0.0.1""#),
        (r#"["1.2.3.256"]"#, "not a valid IPv4 address"),
        (r#"["api.x.com."]"#, r#"ends with a dot; write "api.x.com""#),
    ];
    for (hosts, want) in host_cases {
        let run = check(&ws, &one_credential(&limited_auth(hosts)));
        assert_eq!(run.code, 1, "{hosts} was accepted: {}", run.stdout);
        assert!(run.stderr.contains(want), "{hosts}: {}", run.stderr);
        assert!(
            run.stderr
                .starts_with("credentials[0].auth.networking.allowed_hosts"),
            "{}",
            run.stderr
        );
    }

    let seventeen: Vec<String> = (0..17).map(|i| format!("\"h{i}.x.com\"")).collect();
    let long_label = format!("[\"{}.com\"]", "a".repeat(64));
    let long_name = format!("[\"{}\"]", vec!["abcdefghi"; 26].join("."));
    let other: Vec<(String, &str)> = vec![
        (one_credential(&limited_auth(&format!("[{}]", seventeen.join(",")))), "has 17 entries; at most 16"),
        (one_credential(&limited_auth(&long_label)), "label longer than 63"),
        (one_credential(&limited_auth(&long_name)), "longer than 253"),
        (one_credential(r#""secret_name": "1X", "secret_value": "v", "networking": {"type": "unrestricted"}"#), "not an environment variable name"),
        (one_credential(r#""secret_name": "X", "secret_value": "", "networking": {"type": "unrestricted"}"#), "secret_value: is empty"),
        (one_credential(r#""secret_name": "X", "secret_value": "a\r\nb", "networking": {"type": "unrestricted"}"#), "CR, LF or NUL"),
        (one_credential(r#""secret_name": "X", "secret_value": "a\u0000b", "networking": {"type": "unrestricted"}"#), "CR, LF or NUL"),
        (one_credential(r#""secret_name": "X", "secret_value_env": "KEYHOLE_TEST_UNSET", "networking": {"type": "unrestricted"}"#), "no variable \"KEYHOLE_TEST_UNSET\""),
        (one_credential(r#""secret_name": "X", "secret_value_file": "missing.txt", "networking": {"type": "unrestricted"}"#), "secret_value_file: cannot read"),
        (one_credential(r#""secret_name": "X", "secret_value": "v", "networking": {"type": "unrestricted"}, "injection_location": {"header": false, "body": false}"#), "set at least one to true"),
        (one_credential(r#""secret_name": "X", "secret_value": "v", "networking": {"type": "sometimes"}"#), "unknown variant `sometimes`"),
        (format!(r#"{{"credentials": [{{"display_name": "{}", "auth": {{"type": "environment_variable", "secret_name": "X", "secret_value": "v", "networking": {{"type": "unrestricted"}}}}}}]}}"#, "n".repeat(256)), "display_name: has 256 characters"),
        (format!(r#"{{"credentials": [{{"metadata": {{{}}}, "auth": {{"type": "environment_variable", "secret_name": "X", "secret_value": "v", "networking": {{"type": "unrestricted"}}}}}}]}}"#, (0..17).map(|i| format!("\"k{i}\": \"v\"")).collect::<Vec<_>>().join(",")), "metadata: has 17 pairs"),
        (format!(r#"{{"credentials": [{{"metadata": {{"{}": "v"}}, "auth": {{"type": "environment_variable", "secret_name": "X", "secret_value": "v", "networking": {{"type": "unrestricted"}}}}}}]}}"#, "k".repeat(65)), "the key has 65 characters"),
        (format!(r#"{{"credentials": [{{"metadata": {{"k": "{}"}}, "auth": {{"type": "environment_variable", "secret_name": "X", "secret_value": "v", "networking": {{"type": "unrestricted"}}}}}}]}}"#, "v".repeat(513)), "the value has 513 characters"),
        (r#"{"egress": {"type": "limited", "allowed_hosts": ["http://x.com"]}}"#.to_owned(), "egress.allowed_hosts[0]: \"http://x.com\" is a URL"),
        (r#"{"credentials": [
            {"auth": {"type": "environment_variable", "secret_name": "X", "secret_value": "v", "networking": {"type": "unrestricted"}}},
            {"auth": {"type": "environment_variable", "secret_name": "X", "secret_value": "w", "networking": {"type": "unrestricted"}}}]}"#.to_owned(),
            "credentials[1].auth.secret_name: \"X\" is already used by credentials[0]"),
        ("{\"credentials\": [".to_owned(), "the file is not valid JSON"),
    ];
    for (text, want) in &other {
        let run = check(&ws, text);
        assert_eq!(run.code, 1, "accepted: {text}");
        assert!(
            run.stderr.contains(want),
            "want {want:?} in:\n{}",
            run.stderr
        );
    }
}

/// All problems of one file come out in one run, one line each, and no
/// line shows a secret.
#[test]
fn check_reports_every_problem_in_one_run() {
    let ws = Workspace::new();
    let text = format!(
        r#"{{
  "egress": {{"type": "limited", "allowed_hosts": ["api.x.com", "api.x.com:443"]}},
  "credentials": [
    {{"auth": {{"type": "environment_variable", "secret_name": "A", "secret_value": "{SECRET}\n",
      "networking": {{"type": "limited", "allowed_hosts": ["api.x.com", "https://api.x.com", "*", "[::1]"]}}}}}},
    {{"display_name": "", "auth": {{"type": "environment_variable", "secret_name": "A B", "secret_value": "{SECRET}",
      "networking": {{"type": "unrestricted"}}, "injection_location": {{"header": false}}}}}},
    {{"auth": {{"type": "static_bearer", "mcp_server_url": "not a url", "token": "{SECRET}"}}}}
  ]
}}"#
    );
    let run = check(&ws, &text);
    assert_eq!(run.code, 1);
    let lines: Vec<&str> = run.stderr.lines().collect();
    let want = [
        "egress.allowed_hosts[1]: ",
        "credentials[0].auth.secret_value: ",
        "credentials[0].auth.networking.allowed_hosts[1]: ",
        "credentials[0].auth.networking.allowed_hosts[2]: ",
        "credentials[0].auth.networking.allowed_hosts[3]: ",
        "credentials[1].auth.secret_name: ",
        "credentials[1].auth.injection_location: ",
        "credentials[2].auth.mcp_server_url: ",
    ];
    assert_eq!(lines.len(), want.len(), "{}", run.stderr);
    for (line, prefix) in lines.iter().zip(want) {
        assert!(line.starts_with(prefix), "{line}");
    }
    assert!(!run.stderr.contains("realsecret"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
}

#[test]
fn check_reads_secrets_from_env_and_files() {
    let ws = Workspace::new();
    ws.file("token.txt", "from-file\n");
    let text = r#"{"credentials": [
        {"auth": {"type": "environment_variable", "secret_name": "A", "secret_value_env": "KEYHOLE_TEST_A", "networking": {"type": "unrestricted"}}},
        {"auth": {"type": "environment_variable", "secret_name": "B", "secret_value_file": "token.txt", "networking": {"type": "unrestricted"}}}]}"#;
    let path = ws.file("config.json", text);
    let run = keyhole_env(
        &["check", "--config", path.to_str().unwrap()],
        &[("KEYHOLE_TEST_A", "from-env")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = keyhole(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("KEYHOLE_TEST_A"));
}

#[test]
fn check_refuses_a_missing_file() {
    let run = keyhole(&["check", "--config", "/nonexistent/keyhole.json"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("cannot read the config file /nonexistent/keyhole.json"),
        "{}",
        run.stderr
    );
}

#[test]
fn explain_text_and_json() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/credentials.json");
    let run = keyhole(&[
        "explain",
        "--config",
        config,
        "https://objects.githubusercontent.com/x",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("egress  allowed by \"*.githubusercontent.com\""),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("action  intercept"), "{}", run.stdout);
    assert!(run.stdout.contains("vcrd_github GITHUB_TOKEN (environment_variable): substituted: objects.githubusercontent.com matches \"*.githubusercontent.com\""), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("vcrd_anthropic ANTHROPIC_API_KEY (environment_variable): not substituted"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("realsecret"));

    let run = keyhole(&[
        "explain",
        "--config",
        config,
        "githubusercontent.com",
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["action"], "deny");
    assert_eq!(v["egress"]["allowed"], false);
    assert_eq!(v["credentials"][0]["substituted"], false);

    let run = keyhole(&[
        "explain",
        "--config",
        config,
        "http://api.github.com/user",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["action"], "forward");
    assert!(v["credentials"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("plaintext"));

    let run = keyhole(&["explain", "--config", config, "2130706433"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("host    127.0.0.1"), "{}", run.stdout);
    assert!(run.stdout.contains("vcrd_local LOCAL_TOKEN (environment_variable): substituted: 127.0.0.1 matches \"127.0.0.1\""), "{}", run.stdout);

    let run = keyhole(&["explain", "--config", config, "api%2egithub.com"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("the host is refused"), "{}", run.stderr);
}

#[test]
fn ca_is_created_once_and_printed() {
    let ws = Workspace::new();
    let dir = ws.path().join("state");
    let dir = dir.to_str().unwrap();
    let first = keyhole(&["ca", "--state-dir", dir]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.stdout.starts_with("-----BEGIN CERTIFICATE-----"),
        "{}",
        first.stdout
    );
    let second = keyhole(&["ca", "--state-dir", dir]);
    assert_eq!(first.stdout, second.stdout, "the CA is reused");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ws.path().join("state/ca-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn env_prints_sh_dotenv_and_json() {
    let ws = Workspace::new();
    let dir = ws.path().join("state");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/credentials.json");
    let args = |format: &'static str| {
        vec![
            "env",
            "--config",
            config,
            "--state-dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:9999",
            "--format",
            format,
        ]
    };
    let sh = keyhole(&args("sh"));
    assert_eq!(sh.code, 0, "{}", sh.stderr);
    assert!(
        sh.stdout
            .contains("export HTTPS_PROXY='http://127.0.0.1:9999'\n"),
        "{}",
        sh.stdout
    );
    assert!(sh
        .stdout
        .contains("export https_proxy='http://127.0.0.1:9999'\n"));
    assert!(sh.stdout.contains("export NO_PROXY=''\n"));
    assert!(sh.stdout.contains("export NODE_USE_ENV_PROXY='1'\n"));
    for var in [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "GIT_SSL_CAINFO",
        "CARGO_HTTP_CAINFO",
        "PIP_CERT",
        "AWS_CA_BUNDLE",
        "DENO_CERT",
    ] {
        assert!(sh.stdout.contains(&format!("export {var}='")), "{var}");
    }
    assert!(
        sh.stdout.contains("export GITHUB_TOKEN='kh_ph_"),
        "{}",
        sh.stdout
    );
    assert!(!sh.stdout.contains("realsecret"));
    let dotenv = keyhole(&args("dotenv"));
    assert!(
        dotenv
            .stdout
            .contains("HTTPS_PROXY=http://127.0.0.1:9999\n"),
        "{}",
        dotenv.stdout
    );
    let json = keyhole(&args("json"));
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let bundle = std::fs::read_to_string(v["SSL_CERT_FILE"].as_str().unwrap()).unwrap();
    let ca = keyhole(&["ca", "--state-dir", dir.to_str().unwrap()]).stdout;
    assert!(
        bundle.starts_with(&ca),
        "the bundle starts with keyhole's CA"
    );
    assert!(
        bundle.matches("BEGIN CERTIFICATE").count() > 1,
        "and holds the system roots"
    );
    // The sh output is safe to eval and yields the same values.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{}\nprintf %s \"$GITHUB_TOKEN\"", sh.stdout))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        v["GITHUB_TOKEN"].as_str().unwrap()
    );
}
