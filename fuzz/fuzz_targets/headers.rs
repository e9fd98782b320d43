//! Fuzz target `headers`: placeholder substitution in request headers,
//! `Authorization: Basic` included, through the path the proxy takes.
//!
//! A case describes a small config (credentials with pinned or derived
//! placeholders, secrets, limited or unrestricted networking, injection
//! locations, archived or not; an egress policy), a request host and a
//! header map whose values are built from text, placeholders, cut
//! placeholders and secrets, some of them as `Basic base64(user:pass)`.
//! The config goes through `keyhole::config::parse`, `Policy::new` and
//! `Substitutions::new`; the headers through `Substitutions::headers` with
//! the credentials the policy allows on the host, as `proxy::intercept`
//! does (nothing when egress denies the host).
//!
//! Properties checked (see docs/FUZZING.md):
//! - nothing panics;
//! - the new header map and the report equal an oracle written here
//!   (leftmost scan of the placeholders; Basic payloads decoded, substituted
//!   and re-encoded; names, `Host` and framing/hop-by-hop values untouched;
//!   an error leaves the map as it was);
//! - a credential not allowed on the host (or with header injection off)
//!   never adds an occurrence of its secret to any value, raw or inside a
//!   Basic payload;
//! - with no credential allowed (plain `http://`), nothing changes;
//! - substituted values are marked sensitive; `Debug` of the map and of the
//!   report, and error messages, never show a secret.

#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;
use std::rc::Rc;

use base64::alphabet;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use keyhole::config::{parse, Sources};
use keyhole::model::{Auth, Config};
use keyhole::placeholder::PlaceholderKey;
use keyhole::host::Host;
use keyhole::policy::Policy;
use keyhole::substitute::{HeaderReport, Substitutions};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

/// Entries credentials and egress draw from.
const ENTRIES: &[&str] = &[
    "api.example.com",
    "*.example.com",
    "10.0.0.1",
    "other.org",
    "*.other.org",
    "localhost",
    "a.c0m",
    "*.c0m",
];

/// Request hosts, in several spellings.
const HOSTS: &[&str] = &[
    "api.example.com",
    "API.Example.COM.",
    "x.api.example.com",
    "example.com",
    "10.0.0.1",
    "0xa.0.0.1",
    "167772161",
    "other.org",
    "www.other.org",
    "localhost",
    "[::1]",
    "a.c0m",
    "b.c0m",
    "evil.net",
];

const NAMES: &[&str] = &[
    "authorization",
    "x-api-key",
    "cookie",
    "x-a",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Characters of pinned placeholders (all that the rules allow).
const TOKEN: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// Characters of secret tails: no upper case, so that `SEC<i>x` (every
/// secret's head) occurs only where a secret or the input put it. Includes
/// `:` (Basic's separator), space, a control character and non-ASCII.
const SECRET_CHARS: &[char] = &[
    'a', 'b', 'c', 'k', 'h', '_', 'p', '0', '1', ':', ' ', '.', '-', '+', '/', '=', '\u{1}',
    '\u{7f}', '\t', 'é', '~',
];

#[derive(Debug)]
enum PlaceholderChoice {
    Derived,
    /// A pinned placeholder: `PH`, then these bytes as token characters.
    Pinned(Vec<u8>),
    /// Pinned: the first credential's pinned placeholder with a suffix
    /// (overlaps are refused by the config or `Substitutions::new`).
    Extends(Vec<u8>),
}

#[derive(Debug)]
enum Kind {
    EnvironmentVariable,
    StaticBearer,
}

#[derive(Debug)]
struct Cred {
    kind: Kind,
    placeholder: PlaceholderChoice,
    secret: Vec<u8>,
    /// `None`: unrestricted; else a bit mask over `ENTRIES`.
    hosts: Option<u8>,
    header: Option<bool>,
    body: Option<bool>,
    archived: bool,
}

#[derive(Debug)]
enum Piece {
    Text(Vec<u8>),
    Placeholder(u8),
    /// The first `n` bytes of a placeholder, or the last ones.
    Cut(u8, u8, bool),
    Secret(u8),
}

#[derive(Debug)]
enum Form {
    Plain(Vec<Piece>),
    /// `<scheme> <base64(user ":" pass)>` with a choice of scheme spelling,
    /// separator, padding and trailing white space.
    Basic {
        scheme: u8,
        user: Vec<Piece>,
        pass: Vec<Piece>,
        padded: bool,
        trailing: bool,
    },
}

#[derive(Debug)]
enum NameChoice {
    Known(u8),
    /// `x-` and a placeholder (names are matched but never changed).
    WithPlaceholder(u8),
}

#[derive(Debug)]
struct Header {
    name: NameChoice,
    form: Form,
}

#[derive(Debug)]
struct Case {
    creds: Vec<Cred>,
    /// `None`: unrestricted; else a bit mask over `ENTRIES`.
    egress: Option<u8>,
    host: u8,
    headers: Vec<Header>,
}

/// Reads the input byte by byte (zeros once it runs out). A hand-written
/// decoder rather than `derive(Arbitrary)`: every byte picks something
/// that matters, so short inputs already make placeholders, Basic values
/// and allowed hosts.
struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, max: u8) -> Vec<u8> {
        let n = usize::from(self.byte() % max).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head.to_vec()
    }

    fn option_bool(&mut self, b: u8) -> Option<bool> {
        match b % 4 {
            0 | 1 => None,
            2 => Some(true),
            _ => Some(false),
        }
    }

    fn cred(&mut self) -> Cred {
        let f = self.byte();
        let g = self.byte();
        let h = self.byte();
        let kind = if f % 8 == 7 {
            Kind::StaticBearer
        } else {
            Kind::EnvironmentVariable
        };
        let placeholder = match (f >> 3) % 8 {
            5 | 6 => PlaceholderChoice::Pinned(self.bytes(32)),
            7 => PlaceholderChoice::Extends(self.bytes(8)),
            _ => PlaceholderChoice::Derived,
        };
        let header = self.option_bool(g);
        // Both off is refused by the config; keep it rare.
        let body = match header {
            Some(false) if g & 0xe0 != 0xe0 => Some(true),
            _ => self.option_bool(g / 4),
        };
        Cred {
            kind,
            placeholder,
            secret: self.bytes(16),
            hosts: if h.is_multiple_of(4) {
                None
            } else {
                Some(self.byte())
            },
            header,
            body,
            archived: (g / 16).is_multiple_of(8),
        }
    }

    fn pieces(&mut self) -> Vec<Piece> {
        let n = 1 + self.byte() % 4;
        (0..n)
            .map(|_| match self.byte() % 8 {
                0 | 1 => Piece::Text(self.bytes(12)),
                2..=4 => Piece::Placeholder(self.byte()),
                5 => {
                    let (i, n, tail) = (self.byte(), self.byte(), self.byte() % 2 == 1);
                    Piece::Cut(i, n, tail)
                }
                6 => Piece::Secret(self.byte()),
                _ => Piece::Text(
                    pick(&[" ", ",", ":", "Bearer ", "=", "\t"], self.byte())
                        .as_bytes()
                        .to_vec(),
                ),
            })
            .collect()
    }

    fn header(&mut self) -> Header {
        let n = self.byte();
        let name = if n % 8 == 7 {
            NameChoice::WithPlaceholder(self.byte())
        } else {
            NameChoice::Known(n)
        };
        let f = self.byte();
        let form = if f.is_multiple_of(3) {
            Form::Basic {
                scheme: self.byte(),
                user: self.pieces(),
                pass: self.pieces(),
                padded: f & 4 != 0,
                trailing: f & 8 != 0,
            }
        } else {
            Form::Plain(self.pieces())
        };
        Header { name, form }
    }

    fn case(&mut self) -> Case {
        let n = 1 + self.byte() % 4;
        let creds: Vec<Cred> = (0..n).map(|_| self.cred()).collect();
        let e = self.byte();
        let egress = if e.is_multiple_of(2) {
            None
        } else {
            // Often wide enough for every credential's hosts.
            let cover = if e % 16 != 1 {
                creds.iter().filter_map(|c| c.hosts).fold(0, |a, m| a | m)
            } else {
                0
            };
            Some(self.byte() | cover)
        };
        let host = self.byte();
        let n = 1 + self.byte() % 6;
        let headers = (0..n).map(|_| self.header()).collect();
        Case {
            creds,
            egress,
            host,
            headers,
        }
    }
}

fn pick<'a>(list: &'a [&'a str], i: u8) -> &'a str {
    list[usize::from(i) % list.len()]
}

fn token(prefix: &str, bytes: &[u8]) -> String {
    let mut s = prefix.to_owned();
    s.extend(
        bytes
            .iter()
            .take(40)
            .map(|&b| char::from(TOKEN[usize::from(b) % TOKEN.len()])),
    );
    while s.len() < 16 {
        s.push('Q');
    }
    s
}

fn secret(i: usize, bytes: &[u8]) -> String {
    let mut s = format!("SEC{i}x");
    s.extend(
        bytes
            .iter()
            .take(24)
            .map(|&b| SECRET_CHARS[usize::from(b) % SECRET_CHARS.len()]),
    );
    s
}

fn hosts(mask: u8) -> Value {
    let names: Vec<&str> = ENTRIES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, e)| *e)
        .collect();
    json!({"type": "limited", "allowed_hosts": names})
}

/// The config text of a case.
fn config_text(case: &Case) -> String {
    let mut creds = Vec::new();
    let mut first_pinned: Option<String> = None;
    for (i, c) in case.creds.iter().take(4).enumerate() {
        let value = secret(i, &c.secret);
        let mut cred = json!({"id": format!("vcrd_{i}")});
        if c.archived {
            cred["archived_at"] = json!("2026-01-01T00:00:00Z");
        }
        let auth = match c.kind {
            Kind::StaticBearer => json!({
                "type": "static_bearer",
                "mcp_server_url": "https://mcp.example.com/sse",
                "token": value,
            }),
            Kind::EnvironmentVariable => {
                let mut auth = json!({
                    "type": "environment_variable",
                    "secret_name": format!("S{i}"),
                    "secret_value": value,
                    "networking": c.hosts.map_or_else(|| json!({"type": "unrestricted"}), hosts),
                });
                let pinned = match &c.placeholder {
                    PlaceholderChoice::Derived => None,
                    PlaceholderChoice::Pinned(b) => Some(token("PH", b)),
                    PlaceholderChoice::Extends(b) => Some(match &first_pinned {
                        Some(first) => format!("{first}{}", token("", b)),
                        None => token("PH", b),
                    }),
                };
                if let Some(p) = pinned {
                    first_pinned.get_or_insert_with(|| p.clone());
                    auth["placeholder"] = json!(p);
                }
                let mut location = serde_json::Map::new();
                if let Some(h) = c.header {
                    location.insert("header".into(), json!(h));
                }
                if let Some(b) = c.body {
                    location.insert("body".into(), json!(b));
                }
                if !location.is_empty() {
                    auth["injection_location"] = Value::Object(location);
                }
                auth
            }
        };
        cred["auth"] = auth;
        creds.push(cred);
    }
    let mut doc = json!({"credentials": creds});
    if let Some(e) = case.egress {
        doc["egress"] = hosts(e);
    }
    doc.to_string()
}

/// One substitutable credential, as the oracle sees it.
struct Model {
    credential: u32,
    placeholder: Vec<u8>,
    secret: Vec<u8>,
    header: bool,
}

fn models(config: &Config, subs: &Substitutions) -> Vec<Model> {
    let mut out = Vec::new();
    for (i, c) in config.credentials.iter().enumerate() {
        let Some(auth) = c.environment_variable() else {
            assert!(subs.placeholder(i as u32).is_none());
            continue;
        };
        let placeholder = subs
            .placeholder(i as u32)
            .unwrap_or_else(|| panic!("credential {i} has no placeholder"));
        if let Some(pinned) = &auth.placeholder {
            assert_eq!(pinned, placeholder);
        }
        out.push(Model {
            credential: i as u32,
            placeholder: placeholder.as_bytes().to_vec(),
            secret: auth.secret_value.expose().as_bytes().to_vec(),
            header: auth.injection_location.header,
        });
    }
    out
}

fn header_safe(secret: &[u8]) -> bool {
    secret
        .iter()
        .all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

/// The oracle's scan: leftmost placeholder (none contains another), each
/// replaced when `substitute` and its credential is allowed with header
/// injection on. `Err` when such a secret cannot stand in a header.
fn scan(
    input: &[u8],
    models: &[Model],
    allowed: &[u32],
    substitute: bool,
    report: &mut HeaderReport,
) -> Result<Option<Vec<u8>>, ()> {
    let mut out = Vec::new();
    let mut changed = false;
    let mut at = 0;
    while at < input.len() {
        let rest = &input[at..];
        let hit = models
            .iter()
            .filter(|m| rest.starts_with(&m.placeholder))
            .max_by_key(|m| m.placeholder.len());
        match hit {
            Some(m) => {
                if substitute && m.header && allowed.contains(&m.credential) {
                    if !header_safe(&m.secret) {
                        return Err(());
                    }
                    out.extend_from_slice(&m.secret);
                    report.substituted.push(m.credential);
                    changed = true;
                } else {
                    out.extend_from_slice(&m.placeholder);
                    report.passed.push(m.credential);
                }
                at += m.placeholder.len();
            }
            None => {
                out.push(input[at]);
                at += 1;
            }
        }
    }
    Ok(changed.then_some(out))
}

const UNTOUCHABLE: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

fn basic_payload(value: &[u8]) -> Option<(usize, usize)> {
    if value.len() < 6 || !value[..5].eq_ignore_ascii_case(b"basic") {
        return None;
    }
    if !matches!(value[5], b' ' | b'\t') {
        return None;
    }
    let mut start = 5;
    while start < value.len() && matches!(value[start], b' ' | b'\t') {
        start += 1;
    }
    let mut end = value.len();
    while end > start && matches!(value[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    (start < end).then_some((start, end))
}

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The decoded Basic payload of an `authorization` value, if any.
fn basic_decoded(name: &str, value: &[u8]) -> Option<Vec<u8>> {
    if name != "authorization" {
        return None;
    }
    let (start, end) = basic_payload(value)?;
    LENIENT.decode(&value[start..end]).ok()
}

/// What `Substitutions::headers` must do to `pairs`: the new values and the
/// report, or `Err` when it must refuse (changing nothing).
fn oracle(
    pairs: &[(String, Vec<u8>)],
    models: &[Model],
    allowed: &[u32],
) -> Result<(Vec<Vec<u8>>, HeaderReport), ()> {
    let mut report = HeaderReport::default();
    let mut values = Vec::new();
    for (name, value) in pairs {
        scan(name.as_bytes(), models, allowed, false, &mut report)?;
        if UNTOUCHABLE.contains(&name.as_str()) {
            scan(value, models, allowed, false, &mut report)?;
            values.push(value.clone());
            continue;
        }
        let decoded = basic_decoded(name, value)
            .filter(|d| models.iter().any(|m| contains(d, &m.placeholder) > 0));
        let new = match decoded {
            Some(plain) => match scan(&plain, models, allowed, true, &mut report)? {
                Some(new_plain) => {
                    let (start, end) = basic_payload(value).ok_or(())?;
                    let mut v = value[..start].to_vec();
                    v.extend_from_slice(STANDARD.encode(new_plain).as_bytes());
                    v.extend_from_slice(&value[end..]);
                    v
                }
                None => value.clone(),
            },
            None => {
                scan(value, models, allowed, true, &mut report)?.unwrap_or_else(|| value.clone())
            }
        };
        values.push(new);
    }
    for list in [&mut report.substituted, &mut report.passed] {
        list.sort_unstable();
        list.dedup();
    }
    Ok((values, report))
}

/// Occurrences of `needle` in `hay` (overlapping ones counted).
fn contains(hay: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() || hay.len() < needle.len() {
        return 0;
    }
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fn render(pieces: &[Piece], models: &[Model]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in pieces.iter().take(8) {
        match piece {
            Piece::Text(t) => out.extend(t.iter().take(24)),
            Piece::Placeholder(i) if !models.is_empty() => {
                out.extend_from_slice(&models[usize::from(*i) % models.len()].placeholder)
            }
            Piece::Cut(i, n, tail) if !models.is_empty() => {
                let p = &models[usize::from(*i) % models.len()].placeholder;
                let n = usize::from(*n) % p.len();
                out.extend_from_slice(if *tail { &p[p.len() - n..] } else { &p[..n] });
            }
            Piece::Secret(i) if !models.is_empty() => {
                out.extend_from_slice(&models[usize::from(*i) % models.len()].secret)
            }
            _ => {}
        }
    }
    out
}

fn build_headers(case: &Case, models: &[Model]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for h in case.headers.iter().take(12) {
        let name = match &h.name {
            NameChoice::Known(i) => pick(NAMES, *i).to_owned(),
            NameChoice::WithPlaceholder(i) if !models.is_empty() => {
                let p = &models[usize::from(*i) % models.len()].placeholder;
                format!("x-{}", String::from_utf8_lossy(p))
            }
            NameChoice::WithPlaceholder(_) => "x-none".to_owned(),
        };
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        let value = match &h.form {
            Form::Plain(pieces) => render(pieces, models),
            Form::Basic {
                scheme,
                user,
                pass,
                padded,
                trailing,
            } => {
                let mut plain = render(user, models);
                plain.push(b':');
                plain.extend(render(pass, models));
                let payload = if *padded {
                    STANDARD.encode(&plain)
                } else {
                    STANDARD_NO_PAD.encode(&plain)
                };
                let head =
                    ["Basic ", "basic ", "BASIC\t", "Basic  ", "Bearer "][usize::from(*scheme) % 5];
                let mut v = head.as_bytes().to_vec();
                v.extend_from_slice(payload.as_bytes());
                if *trailing {
                    v.extend_from_slice(b" \t");
                }
                v
            }
        };
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            map.append(name, value);
        }
    }
    map
}

fn pairs(map: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    map.iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// What the proxy holds per config: compiled once per config text.
struct Prepared {
    subs: Substitutions,
    policy: Policy,
    models: Vec<Model>,
    /// Secrets the proxy never sends: static bearer tokens.
    never: Vec<Vec<u8>>,
}

/// Loads and compiles a config; `None` when it is refused (checking that
/// a refusal by `Substitutions::new` shows no secret).
fn prepare(text: &str) -> Option<Prepared> {
    let env = |_: &str| None::<OsString>;
    let sources = Sources {
        base_dir: Path::new("/nonexistent"),
        env: &env,
    };
    let config = parse(text, &sources).ok()?;
    let key = PlaceholderKey::from_bytes([7; 32]);
    let subs = match Substitutions::new(&config, &key) {
        Ok(s) => s,
        Err(e) => {
            let shown = format!("{e} {e:?}");
            for c in &config.credentials {
                if let Some(a) = c.environment_variable() {
                    assert!(
                        !shown.contains(a.secret_value.expose()),
                        "error shows a secret"
                    );
                }
            }
            return None;
        }
    };
    let models = models(&config, &subs);
    let never = config
        .credentials
        .iter()
        .filter_map(|c| match &c.auth {
            Auth::StaticBearer(s) => Some(s.token.expose().as_bytes().to_vec()),
            _ => None,
        })
        .collect();
    Some(Prepared {
        subs,
        policy: Policy::new(config),
        models,
        never,
    })
}

/// Compiled configs by text. Building the matchers (scrub forms included)
/// dominates a run, and many inputs share a config, so this cache makes
/// the target several times faster. Everything cached is immutable.
fn prepared(text: &str) -> Option<Rc<Prepared>> {
    thread_local! {
        static CACHE: RefCell<HashMap<String, Option<Rc<Prepared>>>> = RefCell::new(HashMap::new());
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(p) = cache.get(text) {
            return p.clone();
        }
        if cache.len() >= 1024 {
            cache.clear();
        }
        let p = prepare(text).map(Rc::new);
        cache.insert(text.to_owned(), p.clone());
        p
    })
}

fuzz_target!(|data: &[u8]| {
    let case = Reader { data }.case();
    let Some(prepared) = prepared(&config_text(&case)) else {
        return;
    };
    let Prepared {
        subs,
        policy,
        models,
        never,
    } = &*prepared;
    let Ok(host) = Host::parse(pick(HOSTS, case.host)) else {
        return;
    };
    let input = build_headers(&case, models);
    let before = pairs(&input);

    // Plain http:// (and a denied host): nothing may be substituted.
    let mut plain = input.clone();
    match subs.headers(&mut plain, &[]) {
        Ok(report) => assert!(report.substituted.is_empty()),
        Err(e) => panic!("nothing to substitute, yet an error: {e}"),
    }
    assert_eq!(
        pairs(&plain),
        before,
        "a value changed with no credential allowed"
    );
    if !policy.egress_allows(&host) {
        return;
    }

    let allowed = policy.credentials_for(&host).to_vec();
    let expected = oracle(&before, models, &allowed);
    let mut map = input.clone();
    let result = subs.headers(&mut map, &allowed);
    let after = pairs(&map);
    match (result, expected) {
        (Ok(report), Ok((values, want))) => {
            assert_eq!(report, want, "report differs from the oracle");
            assert_eq!(after.len(), before.len());
            for (i, ((name, value), want)) in after.iter().zip(&values).enumerate() {
                assert_eq!(name, &before[i].0, "header order changed");
                assert!(value == want, "value of {name} differs from the oracle");
            }
            for ((_, old), (_, new)) in map.iter().zip(input.iter()) {
                if old != new {
                    assert!(old.is_sensitive(), "a substituted value is not sensitive");
                }
            }
            let shown = format!("{map:?} {report:?}");
            for m in models {
                assert!(
                    contains(shown.as_bytes(), &m.secret)
                        <= contains(format!("{input:?}").as_bytes(), &m.secret),
                    "Debug shows a secret"
                );
            }
        }
        (Err(e), Err(())) => {
            assert_eq!(after, before, "an error left the map changed");
            let shown = format!("{e} {e:?}");
            for m in models {
                assert_eq!(
                    contains(shown.as_bytes(), &m.secret),
                    0,
                    "error shows a secret"
                );
            }
        }
        (Ok(_), Err(())) => panic!("substituted a secret a header cannot carry"),
        (Err(e), Ok(_)) => panic!("refused where the oracle substitutes: {e}"),
    }

    // The security property, stated without the oracle: a credential that
    // does not apply adds no occurrence of its secret anywhere.
    let not_applying = models
        .iter()
        .filter(|m| !(m.header && allowed.contains(&m.credential)))
        .map(|m| &m.secret)
        .chain(never);
    for secret in not_applying {
        for ((name, old), (_, new)) in before.iter().zip(&after) {
            assert!(
                contains(new, secret) <= contains(old, secret),
                "a secret that does not apply was added to {name} on {host}"
            );
            if let (Some(o), Some(n)) = (basic_decoded(name, old), basic_decoded(name, new)) {
                assert!(
                    contains(&n, secret) <= contains(&o, secret),
                    "a secret that does not apply was added inside Basic on {host}"
                );
            }
        }
    }
});
