//! Fuzz target `config`: the config loader and validator.
//!
//! An input whose first byte is `0xff` is a seed for a structured
//! generator that builds config-shaped JSON (every field of the file
//! format, each sometimes missing, of the wrong type or joined by an
//! unknown key); any other input is the config text itself (lossy UTF-8),
//! so plain JSON files serve as seeds.
//!
//! Secrets by reference are sandboxed: `secret_value_env` reads a fixed fake
//! environment, and `secret_value_file` is allowed only for short
//! lower-case names, which resolve in a private temporary folder of fixed
//! files (any other path skips the input: a fuzzer must not read
//! `/dev/zero`).
//!
//! Properties checked (see docs/FUZZING.md):
//! - nothing panics, in `parse`, `Policy::new`, `Substitutions::new`,
//!   `explain` or `Display`/`Debug` of the results;
//! - the rendered problems (and `Debug` of a loaded config) never show a
//!   secret: a string under `secret_value`, `token`, `access_token`,
//!   `refresh_token` or `client_secret` of at least 8 characters that occurs
//!   once in the document, unless the same text shows up when that value is
//!   changed (then it came from elsewhere); nor any value read from the fake
//!   environment or files (they all contain `SECRET-`);
//! - a loaded config written back with `config::write` (as the admin API
//!   does) loads again, to the same credentials and vaults.

#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::Unstructured;
use keyhole::config::{parse, write, Sources};
use keyhole::model::{Config, Problems};
use keyhole::placeholder::PlaceholderKey;
use keyhole::policy::{explain, Policy};
use keyhole::substitute::Substitutions;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

/// Fields whose string values are secrets.
const SECRET_KEYS: &[&str] = &[
    "secret_value",
    "token",
    "access_token",
    "refresh_token",
    "client_secret",
];

/// Every value the fake environment and files hold contains this.
const MARK: &str = "SECRET-";

fn env(name: &str) -> Option<OsString> {
    match name {
        "KH_A" => Some("ENVSECRET-7f3a9c".into()),
        "KH_CRLF" => Some("ENVSECRET-crlf\r\n".into()),
        "KH_EMPTY" => Some(OsString::new()),
        "KH_BAD" => Some(OsString::from_vec(b"ENVSECRET-\xff\xfe".to_vec())),
        _ => None,
    }
}

/// The folder `secret_value_file` names resolve in: `a` to `e`.
fn files() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("keyhole-fuzz-config-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let contents: [(&str, &[u8]); 5] = [
            ("a", b"FILESECRET-91bd2e\n"),
            ("b", b"FILESECRET-b\r\n"),
            ("c", b""),
            ("d", b"FILESECRET-\xff\n"),
            ("e", b"FILESECRET-\nmore\n"),
        ];
        for (name, bytes) in contents {
            let _ = std::fs::write(dir.join(name), bytes);
        }
        dir
    })
}

fn is_safe_file_name(v: &Value) -> bool {
    matches!(v, Value::String(s) if (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase()))
}

/// Whether every `secret_value_file` in the document is a safe name.
fn files_safe(v: &Value) -> bool {
    match v {
        Value::Object(o) => o
            .iter()
            .all(|(k, v)| (k != "secret_value_file" || is_safe_file_name(v)) && files_safe(v)),
        Value::Array(a) => a.iter().all(files_safe),
        _ => true,
    }
}

fn all_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|v| all_strings(v, out)),
        Value::Object(o) => {
            for (k, v) in o {
                out.push(k);
                all_strings(v, out);
            }
        }
        _ => {}
    }
}

fn secret_values<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Array(a) => a.iter().for_each(|v| secret_values(v, out)),
        Value::Object(o) => {
            for (k, v) in o {
                match v {
                    Value::String(s) if SECRET_KEYS.contains(&k.as_str()) => out.push(s),
                    _ => secret_values(v, out),
                }
            }
        }
        _ => {}
    }
}

fn occurrences(hay: &str, needle: &str) -> usize {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() || h.len() < n.len() {
        return 0;
    }
    h.windows(n.len()).filter(|w| *w == n).count()
}

/// A different value of the same shape: letters rotated by 13, digits by 5.
fn rotate(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' => char::from(b'a' + (c as u8 - b'a' + 13) % 26),
            'A'..='Z' => char::from(b'A' + (c as u8 - b'A' + 13) % 26),
            '0'..='9' => char::from(b'0' + (c as u8 - b'0' + 5) % 10),
            c => c,
        })
        .collect()
}

fn sources() -> Sources<'static> {
    Sources {
        base_dir: files(),
        env: &env,
    }
}

/// What a user or a log could see of a parse: the problems, or the
/// config's `Debug`.
fn shown(result: &Result<Config, Problems>) -> String {
    match result {
        Ok(config) => format!("{config:?}"),
        Err(problems) => {
            let lines: Vec<String> = problems.iter().map(|p| format!("{p} {p:?}")).collect();
            format!("{problems}\n{problems:?}\n{}", lines.join("\n"))
        }
    }
}

fn check(text: &str) {
    let doc: Option<Value> = serde_json::from_str(text).ok();
    if let Some(doc) = &doc {
        if !files_safe(doc) {
            return;
        }
    } else if text.contains("_file") {
        // Not JSON to serde_json::Value, so not to the loader either; but
        // never risk a file read we did not vet.
        return;
    }
    let result = parse(text, &sources());
    let visible = shown(&result);

    // Values from the fake environment and files never show, unless the
    // input itself holds the mark.
    let mut strings = Vec::new();
    if let Some(doc) = &doc {
        all_strings(doc, &mut strings);
    }
    if !text.contains(MARK) && !strings.iter().any(|s| s.contains(MARK)) {
        assert!(
            !visible.contains(MARK),
            "a secret read by reference is shown:\n{visible}"
        );
    }

    // Inline secrets never show.
    if let Some(doc) = &doc {
        let mut secrets = Vec::new();
        secret_values(doc, &mut secrets);
        for secret in secrets {
            if secret.chars().count() < 8
                || strings
                    .iter()
                    .map(|s| occurrences(s, secret))
                    .sum::<usize>()
                    != 1
                || !visible.contains(secret)
            {
                continue;
            }
            // Shown: is it the secret, or text that comes from elsewhere?
            let Ok(quoted) = serde_json::to_string(secret) else {
                continue;
            };
            let other = rotate(secret);
            let Ok(other_quoted) = serde_json::to_string(&other) else {
                continue;
            };
            if other == secret || text.matches(quoted.as_str()).count() != 1 {
                continue;
            }
            let changed = text.replacen(quoted.as_str(), &other_quoted, 1);
            let again = parse(&changed, &sources());
            if again.is_ok() != result.is_ok() {
                continue;
            }
            assert!(
                shown(&again).contains(secret),
                "a secret value is shown (input {text:?}):\n{visible}"
            );
        }
    }

    let Ok(config) = result else { return };
    // Everything downstream of a loaded config.
    let key = PlaceholderKey::from_bytes([3; 32]);
    if let Err(e) = Substitutions::new(&config, &key) {
        let message = format!("{e} {e:?}");
        let mut secrets = Vec::new();
        if let Some(doc) = &doc {
            secret_values(doc, &mut secrets);
        }
        for s in secrets.iter().filter(|s| s.chars().count() >= 8) {
            assert!(!message.contains(*s), "a substitution error shows a secret");
        }
    }
    let policy = Policy::new(config.clone());
    for target in [
        "api.github.com",
        "https://x.example.com:8443/p",
        "http://10.0.0.1/",
        "[::1]:443",
        "localhost",
    ] {
        if let Ok(e) = explain(&policy, target) {
            let _ = format!("{e:?}");
        }
    }
    if let Some(doc) = &doc {
        round_trip(doc, &config);
    }
}

/// Writes the credentials and listed vaults back as the admin API does and
/// loads the result: it must load, to the same objects.
fn round_trip(doc: &Value, config: &Config) {
    let Value::Object(top) = doc else { return };
    let mut top = top.clone();
    let creds: Vec<Value> = config.credentials.iter().map(write::credential).collect();
    let vaults: Vec<Value> = config
        .vaults
        .iter()
        .filter(|v| v.listed)
        .map(write::vault)
        .collect();
    top.insert("credentials".into(), Value::Array(creds.clone()));
    top.insert("vaults".into(), Value::Array(vaults.clone()));
    let text = Value::Object(top).to_string();
    match parse(&text, &sources()) {
        Ok(again) => {
            let creds2: Vec<Value> = again.credentials.iter().map(write::credential).collect();
            let vaults2: Vec<Value> = again
                .vaults
                .iter()
                .filter(|v| v.listed)
                .map(write::vault)
                .collect();
            assert!(creds2 == creds, "credentials changed on a write and reload");
            assert!(vaults2 == vaults, "vaults changed on a write and reload");
            assert_eq!(again.egress, config.egress);
            assert_eq!(again.vault_id, config.vault_id);
        }
        Err(problems) => panic!("a loaded config, written back, does not load:\n{problems}"),
    }
}

// === the structured generator ===

const IDS: &[&str] = &[
    "vlt_local",
    "vlt_other",
    "vcrd_a",
    "vcrd_b",
    "",
    "a/b",
    "vcrd_011CZkZEMt8gZan2iYOQfSkw",
];
const HOSTS: &[&str] = &[
    "api.github.com",
    "*.githubusercontent.com",
    "*.example.com",
    "x.example.com",
    "example.com",
    "10.0.0.1",
    "localhost",
    "API.Example.COM",
    "mcp.example.com",
    "a.b1",
    "*.b1",
];
const BAD_HOSTS: &[&str] = &[
    "127.1",
    "https://api.x.com",
    "api.x.com:443",
    "*",
    "bücher.de",
    "a..b",
    "",
];
const URLS: &[&str] = &[
    "https://mcp.example.com/sse",
    "http://10.0.0.1:8080/",
    "mcp.example.com",
    "ftp://x.com/",
    "https://",
];
const TIMES: &[&str] = &[
    "2026-03-15T10:00:00Z",
    "2026-03-15T10:00:00.123+02:00",
    "yesterday",
    "",
];
const NAMES: &[&str] = &["GITHUB_TOKEN", "A", "_x", "1BAD", "has space", ""];
const SECRETS: &[&str] = &[
    "ghp_realsecret12345",
    "sk-live-abcdefgh",
    "line\r\nbreak-secret",
    "",
    "nul\u{0}secret-value",
];
const PLACEHOLDERS: &[&str] = &[
    "PH_AAAAAAAAAAAAAAAA",
    "PH_AAAAAAAAAAAAAAAAB",
    "short",
    "kh_ph_abcdefghijklmnop",
];
const JUNK_KEYS: &[&str] = &["secret_value", "typo", "allowed_host", "type", "token"];

struct Gen<'a, 'b> {
    u: &'b mut Unstructured<'a>,
    depth: usize,
}

impl Gen<'_, '_> {
    fn byte(&mut self) -> u8 {
        self.u.arbitrary::<u8>().unwrap_or(0)
    }

    fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    fn pick(&mut self, list: &[&str]) -> String {
        let i = usize::from(self.byte()) % list.len();
        list[i].to_owned()
    }

    fn free_string(&mut self) -> String {
        let len = usize::from(self.byte() % 24);
        let bytes = self.u.bytes(len).unwrap_or(&[]);
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// A string from `list`, sometimes a free one.
    fn string(&mut self, list: &[&str]) -> Value {
        if self.byte().is_multiple_of(8) {
            Value::String(self.free_string())
        } else {
            Value::String(self.pick(list))
        }
    }

    fn secret(&mut self) -> Value {
        match self.byte() % 4 {
            0 => Value::String(self.pick(SECRETS)),
            1 => Value::String(self.free_string()),
            _ => Value::String(format!("sk-{}", self.free_string())),
        }
    }

    /// A value of any JSON type, shallow.
    fn wrong(&mut self) -> Value {
        match self.byte() % 7 {
            0 => Value::Null,
            1 => json!(self.flag()),
            2 => json!(i64::from(self.byte()) - 100),
            3 => json!(f64::from(self.byte()) / 7.0),
            4 => Value::String(self.free_string()),
            5 => Value::Array(vec![]),
            _ => json!({}),
        }
    }

    /// Sets `key` to `make()` most of the time; sometimes leaves it out or
    /// gives a value of the wrong type.
    fn field(
        &mut self,
        o: &mut Map<String, Value>,
        key: &str,
        make: impl FnOnce(&mut Self) -> Value,
    ) {
        match self.byte() % 32 {
            0 => {}
            1 => {
                let v = self.wrong();
                o.insert(key.into(), v);
            }
            _ => {
                let v = make(self);
                o.insert(key.into(), v);
            }
        }
    }

    /// Like `field`, but absent most of the time.
    fn optional(
        &mut self,
        o: &mut Map<String, Value>,
        key: &str,
        make: impl FnOnce(&mut Self) -> Value,
    ) {
        if self.byte().is_multiple_of(3) {
            self.field(o, key, make);
        }
    }

    fn junk(&mut self, o: &mut Map<String, Value>) {
        if self.byte().is_multiple_of(12) {
            let k = self.pick(JUNK_KEYS);
            let v = self.wrong();
            o.insert(k, v);
        }
    }

    fn list(&mut self, max: u8, mut make: impl FnMut(&mut Self) -> Value) -> Value {
        let n = self.byte() % (max + 1);
        Value::Array((0..n).map(|_| make(self)).collect())
    }

    fn hosts(&mut self) -> Value {
        self.list(5, |g| {
            if g.byte().is_multiple_of(8) {
                g.string(BAD_HOSTS)
            } else {
                g.string(HOSTS)
            }
        })
    }

    fn metadata(&mut self) -> Value {
        let mut o = Map::new();
        for _ in 0..self.byte() % 4 {
            let k = self.free_string();
            let v = self.free_string();
            o.insert(k, Value::String(v));
        }
        Value::Object(o)
    }

    fn timestamps(&mut self, o: &mut Map<String, Value>) {
        for key in ["created_at", "updated_at", "archived_at"] {
            self.optional(o, key, |g| g.string(TIMES));
        }
    }

    fn egress(&mut self) -> Value {
        let mut o = Map::new();
        if self.flag() {
            o.insert("type".into(), json!("unrestricted"));
        } else {
            self.field(&mut o, "type", |_| json!("limited"));
            self.field(&mut o, "allowed_hosts", Self::hosts);
            self.optional(&mut o, "allow_package_managers", |g| json!(g.flag()));
            self.optional(&mut o, "allow_mcp_servers", |g| json!(g.flag()));
        }
        self.junk(&mut o);
        Value::Object(o)
    }

    fn vault(&mut self) -> Value {
        let mut o = Map::new();
        self.field(&mut o, "id", |g| g.string(IDS));
        self.optional(&mut o, "type", |g| g.string(&["vault", "vault_credential"]));
        self.optional(&mut o, "display_name", |g| Value::String(g.free_string()));
        self.optional(&mut o, "metadata", Self::metadata);
        self.timestamps(&mut o);
        self.junk(&mut o);
        Value::Object(o)
    }

    fn networking(&mut self) -> Value {
        let mut o = Map::new();
        if self.byte().is_multiple_of(3) {
            o.insert("type".into(), json!("unrestricted"));
        } else {
            self.field(&mut o, "type", |_| json!("limited"));
            self.field(&mut o, "allowed_hosts", Self::hosts);
        }
        self.junk(&mut o);
        Value::Object(o)
    }

    fn environment_variable(&mut self, o: &mut Map<String, Value>) {
        o.insert("type".into(), json!("environment_variable"));
        self.field(o, "secret_name", |g| g.string(NAMES));
        // Usually exactly one source; sometimes none or two.
        let sources = self.byte();
        if !sources.is_multiple_of(8) {
            match (sources >> 3) % 4 {
                0 => self.field(o, "secret_value_env", |g| {
                    g.string(&["KH_A", "KH_CRLF", "KH_EMPTY", "KH_BAD", "KH_NONE"])
                }),
                1 => self.field(o, "secret_value_file", |g| {
                    g.string(&["a", "b", "c", "d", "e", "zz"])
                }),
                _ => self.field(o, "secret_value", Self::secret),
            }
        }
        if sources % 8 == 1 {
            self.field(o, "secret_value", Self::secret);
        }
        self.optional(o, "placeholder", |g| g.string(PLACEHOLDERS));
        self.field(o, "networking", Self::networking);
        self.optional(o, "injection_location", |g| {
            let mut l = Map::new();
            g.optional(&mut l, "header", |g| json!(g.flag()));
            g.optional(&mut l, "body", |g| json!(g.flag()));
            Value::Object(l)
        });
    }

    fn refresh(&mut self) -> Value {
        let mut o = Map::new();
        self.field(&mut o, "client_id", |g| g.string(&["client-1", ""]));
        self.field(&mut o, "refresh_token", Self::secret);
        self.field(&mut o, "token_endpoint", |g| g.string(URLS));
        self.field(&mut o, "token_endpoint_auth", |g| {
            let mut a = Map::new();
            let kind = g.pick(&["none", "client_secret_basic", "client_secret_post", "other"]);
            if kind != "none" {
                g.field(&mut a, "client_secret", Self::secret);
            }
            a.insert("type".into(), Value::String(kind));
            Value::Object(a)
        });
        self.optional(&mut o, "scope", |g| Value::String(g.free_string()));
        self.optional(&mut o, "resource", |g| g.string(URLS));
        Value::Object(o)
    }

    fn auth(&mut self) -> Value {
        let mut o = Map::new();
        match self.byte() % 6 {
            0 => {
                o.insert("type".into(), json!("static_bearer"));
                self.field(&mut o, "mcp_server_url", |g| g.string(URLS));
                self.field(&mut o, "token", Self::secret);
            }
            1 => {
                o.insert("type".into(), json!("mcp_oauth"));
                self.field(&mut o, "mcp_server_url", |g| g.string(URLS));
                self.field(&mut o, "access_token", Self::secret);
                self.optional(&mut o, "expires_at", |g| g.string(TIMES));
                self.optional(&mut o, "refresh", Self::refresh);
            }
            2 if self.depth == 0 => {
                self.depth += 1;
                let v = self.wrong();
                self.depth -= 1;
                return v;
            }
            _ => self.environment_variable(&mut o),
        }
        self.junk(&mut o);
        Value::Object(o)
    }

    fn credential(&mut self) -> Value {
        let mut o = Map::new();
        self.optional(&mut o, "id", |g| g.string(IDS));
        self.optional(&mut o, "type", |g| g.string(&["vault_credential", "vault"]));
        self.optional(&mut o, "vault_id", |g| g.string(IDS));
        self.optional(&mut o, "display_name", |g| Value::String(g.free_string()));
        self.optional(&mut o, "metadata", Self::metadata);
        self.timestamps(&mut o);
        self.field(&mut o, "auth", Self::auth);
        self.junk(&mut o);
        Value::Object(o)
    }

    fn config(&mut self) -> Value {
        let mut o = Map::new();
        self.optional(&mut o, "vault_id", |g| g.string(IDS));
        self.optional(&mut o, "egress", Self::egress);
        self.optional(&mut o, "vaults", |g| g.list(2, Self::vault));
        self.field(&mut o, "credentials", |g| g.list(4, Self::credential));
        self.junk(&mut o);
        Value::Object(o)
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0xff, rest)) => {
            let mut u = Unstructured::new(rest);
            let doc = Gen {
                u: &mut u,
                depth: 0,
            }
            .config();
            check(&doc.to_string());
        }
        _ => check(&String::from_utf8_lossy(data)),
    }
});
