//! One test world: a test CA, recording upstreams for the names a test
//! uses, and the real keyhole binary in front of them, trusting the test
//! CA (`--upstream-ca`) and resolving every name to 127.0.0.1
//! (`--resolve`), so that nothing leaves the machine.
//!
//! ```ignore
//! let w = World::builder()
//!     .config(config)
//!     .names(&["api.example.test", "127.0.0.1"])
//!     .alpn(Alpn::H2)
//!     .start()
//!     .await;
//! let body = w.curl_ok(&[&w.url("api.example.test", "/")]).await;
//! let tls = w.tunnel("api.example.test").h2().open(&w).await?;
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::admin::Api;
use super::client::Tunnel;
use super::config::Config;
use super::proxy::Keyhole;
use super::upstream::{plain_upstream, tls_upstream, Alpn, Recorded, TestCa, Upstream};

/// `--resolve NAME:PORT:127.0.0.1` for each `(NAME, PORT)`.
pub fn resolve_flags(routes: &[(&str, u16)]) -> Vec<String> {
    routes
        .iter()
        .flat_map(|(name, port)| ["--resolve".to_owned(), format!("{name}:{port}:127.0.0.1")])
        .collect()
}

/// What a [`World`] is made of; [`WorldBuilder::start`] makes it.
pub struct WorldBuilder {
    config: Config,
    names: Vec<String>,
    alpn: Alpn,
    plain_names: Vec<String>,
    routes: Vec<(String, u16)>,
    ca: Option<TestCa>,
    trust_upstream_ca: bool,
    admin_token: Option<String>,
    audit_log: bool,
    args: Vec<String>,
    vars: Vec<(String, String)>,
}

impl WorldBuilder {
    /// The config keyhole starts on (default: no egress limit, no
    /// credentials).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// A recording TLS upstream whose certificate covers `names` (DNS
    /// names or IP addresses), each name resolved to it.
    pub fn names(mut self, names: &[&str]) -> Self {
        self.names = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// A recording plain-HTTP upstream, each of `names` resolved to it.
    pub fn plain(mut self, names: &[&str]) -> Self {
        self.plain_names = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// What the TLS upstream offers by ALPN (default: both, h2 first).
    pub fn alpn(mut self, alpn: Alpn) -> Self {
        self.alpn = alpn;
        self
    }

    /// Resolves `name` on `port` to 127.0.0.1: for a server the test runs
    /// itself (with [`WorldBuilder::ca`]'s certificates), or a closed port.
    pub fn resolve(mut self, name: &str, port: u16) -> Self {
        self.routes.push((name.to_owned(), port));
        self
    }

    /// Uses `ca` as the test CA (made fresh otherwise): for servers the
    /// test starts before the world.
    pub fn ca(mut self, ca: TestCa) -> Self {
        self.ca = Some(ca);
        self
    }

    /// Leaves out `--upstream-ca`: keyhole does not trust the test CA.
    pub fn untrusted_upstream(mut self) -> Self {
        self.trust_upstream_ca = false;
        self
    }

    /// Starts the admin API (`--admin 127.0.0.1:0`) with `token`.
    pub fn admin(mut self, token: &str) -> Self {
        self.admin_token = Some(token.to_owned());
        self
    }

    /// Writes the audit log (`--audit-log`) to [`World::audit_log`].
    pub fn audit_log(mut self) -> Self {
        self.audit_log = true;
        self
    }

    /// More flags for `keyhole run`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// An environment variable for the keyhole process.
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Starts the upstreams and keyhole.
    pub async fn start(mut self) -> World {
        let ca = self.ca.take().unwrap_or_else(TestCa::new);
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let upstream = if names.is_empty() {
            None
        } else {
            Some(tls_upstream(&ca, &names, self.alpn).await)
        };
        let plain = if self.plain_names.is_empty() {
            None
        } else {
            Some(plain_upstream().await)
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let audit_log = self.audit_log.then(|| dir.path().join("audit.jsonl"));
        let mut args = self.upstream_flags(dir.path(), &ca, upstream.as_ref(), plain.as_ref());
        if let Some(token) = &self.admin_token {
            let path = dir.path().join("admin.token");
            std::fs::write(&path, format!("{token}\n")).expect("write admin.token");
            args.extend(["--admin", "127.0.0.1:0", "--admin-token-file"].map(String::from));
            args.push(path.display().to_string());
        }
        if let Some(path) = &audit_log {
            args.extend(["--audit-log".to_owned(), path.display().to_string()]);
        }
        args.extend(self.args);
        let keyhole = Keyhole::start_in(dir, &self.config.json(), &args, &str_pairs(&self.vars));
        // curl trusts keyhole's CA (intercepted hosts) and the test CA
        // (tunnelled ones).
        let bundle = keyhole.write(
            "curl-bundle.pem",
            &format!("{}{}", keyhole.ca_pem(), ca.cert_pem),
        );
        let api = self
            .admin_token
            .map(|token| Api::new(admin_addr(&keyhole), &token));
        World {
            ca,
            keyhole,
            upstream,
            plain,
            api,
            audit_log,
            bundle,
            env: OnceLock::new(),
            args,
            vars: self.vars,
        }
    }

    /// `--upstream-ca` (the test CA, written into `dir`) unless left out,
    /// and a `--resolve` for every name: those of the TLS upstream but IP
    /// addresses, those of the plain one, and [`WorldBuilder::resolve`]'s.
    fn upstream_flags(
        &self,
        dir: &Path,
        ca: &TestCa,
        upstream: Option<&Upstream>,
        plain: Option<&Upstream>,
    ) -> Vec<String> {
        let mut routes: Vec<(&str, u16)> = Vec::new();
        if let Some(upstream) = upstream {
            let named = self.names.iter().filter(|n| n.parse::<IpAddr>().is_err());
            routes.extend(named.map(|n| (n.as_str(), upstream.port())));
        }
        if let Some(plain) = plain {
            routes.extend(self.plain_names.iter().map(|n| (n.as_str(), plain.port())));
        }
        routes.extend(self.routes.iter().map(|(n, p)| (n.as_str(), *p)));
        let mut flags = Vec::new();
        if self.trust_upstream_ca {
            let path = dir.join("upstream-ca.pem");
            std::fs::write(&path, &ca.cert_pem).expect("write upstream-ca.pem");
            flags.extend(["--upstream-ca".to_owned(), path.display().to_string()]);
        }
        flags.extend(resolve_flags(&routes));
        flags
    }
}

/// `(name, value)` pairs as `&str`s, as [`Keyhole::start_in`] takes them.
fn str_pairs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn admin_addr(keyhole: &Keyhole) -> SocketAddr {
    keyhole.admin.expect("the admin API's address")
}

/// keyhole in front of recording upstreams, with what a client of it needs.
pub struct World {
    /// The test CA: the upstreams' certificates chain to it.
    pub ca: TestCa,
    /// The running proxy.
    pub keyhole: Keyhole,
    upstream: Option<Upstream>,
    plain: Option<Upstream>,
    api: Option<Api>,
    audit_log: Option<PathBuf>,
    bundle: PathBuf,
    env: OnceLock<HashMap<String, String>>,
    args: Vec<String>,
    vars: Vec<(String, String)>,
}

impl World {
    /// A world to build. By default: a fresh test CA, the empty config, no
    /// upstream (one for [`WorldBuilder::names`] offers h2 and HTTP/1.1),
    /// the test CA trusted upstream, no admin API and no audit log.
    pub fn builder() -> WorldBuilder {
        WorldBuilder {
            config: Config::new(),
            names: Vec::new(),
            alpn: Alpn::Both,
            plain_names: Vec::new(),
            routes: Vec::new(),
            ca: None,
            trust_upstream_ca: true,
            admin_token: None,
            audit_log: false,
            args: Vec::new(),
            vars: Vec::new(),
        }
    }

    /// Stops keyhole (SIGTERM) and starts it again with the same flags on
    /// the same config file (as it is now) and state; the upstreams stay.
    pub fn restart(self) -> World {
        let keyhole = self.keyhole.restart(&self.args, &str_pairs(&self.vars));
        let api = self
            .api
            .map(|api| Api::new(admin_addr(&keyhole), &api.token));
        World {
            keyhole,
            api,
            env: OnceLock::new(),
            ..self
        }
    }

    /// The TLS upstream of [`WorldBuilder::names`].
    pub fn upstream(&self) -> &Upstream {
        self.upstream
            .as_ref()
            .expect("a world started without names")
    }

    /// The plain-HTTP upstream of [`WorldBuilder::plain`].
    pub fn plain(&self) -> &Upstream {
        self.plain
            .as_ref()
            .expect("a world started without .plain()")
    }

    /// The admin API of [`WorldBuilder::admin`].
    pub fn api(&self) -> &Api {
        self.api.as_ref().expect("a world started without .admin()")
    }

    /// The audit log of [`WorldBuilder::audit_log`].
    pub fn audit_log(&self) -> &Path {
        self.audit_log
            .as_deref()
            .expect("a world started without .audit_log()")
    }

    /// What `keyhole env --format json` printed (read once, when first
    /// asked for).
    pub fn env(&self) -> &HashMap<String, String> {
        self.env.get_or_init(|| self.keyhole.env())
    }

    /// The placeholder `keyhole env` gives the variable `name`.
    pub fn placeholder(&self, name: &str) -> &str {
        self.env()
            .get(name)
            .unwrap_or_else(|| panic!("keyhole env printed no {name}"))
    }

    /// `host:PORT`, the TLS upstream's port.
    pub fn authority(&self, host: &str) -> String {
        format!("{host}:{}", self.upstream().port())
    }

    /// `https://host:PORT/path`, the TLS upstream's port.
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{}{path}", self.authority(host))
    }

    /// A [`Tunnel`] to `host` on the TLS upstream's port.
    pub fn tunnel(&self, host: &str) -> Tunnel {
        Tunnel::to(self.authority(host))
    }

    /// The last request the TLS upstream received.
    pub fn last(&self) -> Recorded {
        self.upstream()
            .received()
            .pop()
            .expect("the upstream received nothing")
    }

    /// `curl -sS --max-time 20 --proxy KEYHOLE --cacert BUNDLE ARGS...`,
    /// the bundle holding keyhole's CA and the test CA.
    pub fn curl_command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", "--proxy", &self.keyhole.url()])
            .arg("--cacert")
            .arg(&self.bundle)
            .args(args);
        cmd
    }

    /// Runs [`World::curl_command`], which must succeed; its stdout.
    pub async fn curl_ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.curl(args).await;
        assert!(ok, "curl {args:?}: {stderr}");
        stdout
    }

    /// Runs [`World::curl_command`]: (exit ok, stdout, stderr).
    pub async fn curl(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.curl_command(args).output().await.expect("run curl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl AsRef<Keyhole> for World {
    fn as_ref(&self) -> &Keyhole {
        &self.keyhole
    }
}
