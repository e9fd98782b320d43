//! `keyhole run`: load everything, bind (the proxy, and the admin API with
//! `--admin`), serve until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::RunArgs;
use crate::admin::auth::{Token, TokenError};
use crate::admin::Admin;
use crate::audit::{AuditError, AuditLog};
use crate::logging;
use crate::placeholder::{PlaceholderError, PlaceholderKey};
use crate::proxy::destination::Guard;
use crate::proxy::limits::Limits;
use crate::proxy::resolve::{Pins, ResolveArgError};
use crate::proxy::upstream::Dialer;
use crate::proxy::workers::Workers;
use crate::proxy::{Proxy, Snapshot};
use crate::reload;
use crate::state::{self, StateError};
use crate::store::{Store, StoreError, TokenSaver};
use crate::substitute::SubstituteError;
use crate::tls::{roots, CertificateAuthority, LeafCache, TlsError};

/// Where `keyhole run` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Runs the proxy; exit 0 after a clean shutdown, 1 when it cannot start.
pub fn run(args: &RunArgs) -> ExitCode {
    let _log = logging::init(args.log_format, "info");
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        let listen = args.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let bound = match Bound::bind(args, listen).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("keyhole run: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Fixed lines on stdout, for scripts and tests that pass port 0.
        println!("keyhole listening on {}", bound.addr);
        if let Some(admin) = bound.admin_addr {
            println!("keyhole admin listening on {admin}");
        }
        if let Some(transparent) = bound.transparent_addr {
            println!("keyhole transparent listening on {transparent}");
        }
        bound.serve(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// The runtime `run`, `exec` and `sandbox` start on: it accepts
/// connections (and hands each to a worker, see [`Workers`]), serves the
/// admin API, reloads, signals and the sandbox's DNS. One thread is enough
/// for that; the requests are the workers'.
pub(super) fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("keyhole: cannot start the async runtime: {e}");
            None
        }
    }
}

/// Why `keyhole run` (or `exec`) cannot start. Each message says what is
/// wrong and what to change.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The admin token is missing or unusable.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The config file cannot be loaded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state directory cannot be used.
    #[error(transparent)]
    State(#[from] StateError),
    /// The CA, a leaf or the upstream trust store is not usable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The placeholder key is not usable.
    #[error(transparent)]
    Placeholder(#[from] PlaceholderError),
    /// The config's placeholders and secrets cannot work together.
    #[error(transparent)]
    Substitute(#[from] SubstituteError),
    /// A `--resolve` entry is refused.
    #[error(transparent)]
    Resolve(#[from] ResolveArgError),
    /// The audit log cannot be opened.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A listener cannot be bound.
    #[error("cannot listen on {addr} for {what}: {source}; pick another address")]
    Bind {
        /// The address asked for.
        addr: String,
        /// "the proxy" or "the admin API (never the proxy's address)".
        what: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The worker threads cannot be started.
    #[error("cannot start {count} worker threads: {source}; lower --workers")]
    Workers {
        /// How many were asked for.
        count: usize,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A flag's value is out of range.
    #[error("{flag} {value} {problem}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Its value, as given.
        value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// A loaded proxy (and admin API) whose listeners are bound, not yet
/// serving.
///
/// Binding comes first so that a caller learns the real address (port 0
/// picks a free one) before anything is handed to a client.
pub(super) struct Bound {
    /// The proxy's address.
    pub addr: SocketAddr,
    /// The admin API's address, with `--admin`.
    pub admin_addr: Option<SocketAddr>,
    /// The transparent listener's address, with `--transparent`.
    pub transparent_addr: Option<SocketAddr>,
    proxy: Proxy,
    store: Arc<Store>,
    key: Arc<PlaceholderKey>,
    listener: TcpListener,
    admin: Option<(TcpListener, Token)>,
    transparent: Option<TcpListener>,
    /// The sandbox's DNS socket (`keyhole sandbox`).
    dns: Option<tokio::net::UdpSocket>,
    /// SIGHUP, listened for from the moment the proxy is bound, so that a
    /// SIGHUP right after the address is printed reloads instead of ending
    /// the process.
    hangup: Option<tokio::signal::unix::Signal>,
}

/// A proxy (and admin API) loaded and ready for its listeners: what
/// `keyhole sandbox` prepares before it creates them inside the sandbox.
pub(super) struct Loaded {
    proxy: Proxy,
    store: Arc<Store>,
    key: Arc<PlaceholderKey>,
    admin: Option<(TcpListener, Token)>,
    admin_addr: Option<SocketAddr>,
}

// === impl Bound ===

impl Bound {
    /// Loads everything and binds the listeners `args` name (`listen` for
    /// the proxy).
    pub async fn bind(args: &RunArgs, listen: &str) -> Result<Bound, StartError> {
        let loaded = Loaded::load(args).await?;
        let proxy = bind(listen, "the proxy").await?;
        let transparent = match &args.transparent {
            Some(at) => Some(bind(at, "transparent mode").await?),
            None => None,
        };
        Ok(loaded.with_listeners(proxy, transparent))
    }

    /// Also answers DNS questions on `socket` (the sandbox's).
    pub fn with_dns(mut self, socket: tokio::net::UdpSocket) -> Bound {
        self.dns = Some(socket);
        self
    }

    /// Serves until `shutdown` completes, then drains (see [`Proxy::serve`]).
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        let Bound {
            addr,
            admin_addr,
            transparent_addr,
            proxy,
            store,
            key,
            listener,
            admin,
            transparent,
            dns,
            hangup,
        } = self;
        tracing::info!(%addr, "listening");
        if let Some(a) = admin_addr {
            tracing::info!(addr = %a, "admin API listening");
        }
        let proxy = Arc::new(proxy);
        if let (Some(l), Some(a)) = (transparent, transparent_addr) {
            tracing::info!(addr = %a, "transparent listener");
            proxy.serve_transparent(l);
        }
        if let Some(socket) = dns {
            proxy.serve_dns(socket);
        }
        let installer = proxy.clone();
        store.on_change(Box::new(move |config| {
            installer.install(Snapshot::compile(&config, &key)?);
            Ok(())
        }));
        let watcher = tokio::spawn(reload::watch(store.clone(), proxy.clone(), hangup));
        let (stop, stopped) = watch::channel(false);
        let admin = admin.map(|(l, token)| {
            let admin = Arc::new(Admin::new(store.clone(), proxy.clone(), token));
            tokio::spawn(admin.serve(l, stopped))
        });
        proxy
            .serve(listener, async move {
                shutdown.await;
                stop.send_replace(true);
            })
            .await;
        watcher.abort();
        if let Some(admin) = admin {
            admin.abort();
        }
        tracing::info!("stopped");
    }
}

// === impl Loaded ===

impl Loaded {
    /// Loads the config, CA, token and audit log, and binds the admin API
    /// (with `--admin`).
    pub async fn load(args: &RunArgs) -> Result<Loaded, StartError> {
        // Fail closed: the admin API never runs without a token.
        let token = match (&args.admin, &args.admin_token_file) {
            (None, None) => None,
            (None, Some(_)) => {
                tracing::warn!("--admin-token-file is ignored without --admin ADDR");
                None
            }
            (Some(_), None) => return Err(TokenError::Missing.into()),
            (Some(_), Some(file)) => Some(Token::load(file)?),
        };
        let (mut proxy, store, key) = build(args)?;
        if let Some(path) = &args.audit_log {
            proxy.audit = Some(AuditLog::open(path).await?);
        }
        let (admin, admin_addr) = match (&args.admin, token) {
            (Some(at), Some(token)) => {
                let (l, a) = bind(at, "the admin API (never the proxy's address)").await?;
                // The sandbox must not reach the admin API through the proxy.
                proxy.set_listener(a);
                (Some((l, token)), Some(a))
            }
            _ => (None, None),
        };
        proxy.transparent_raw = !args.transparent_refuse_raw;
        Ok(Loaded {
            proxy,
            store,
            key,
            admin,
            admin_addr,
        })
    }

    /// Hands the proxy its listeners: `proxy` for proxy-aware clients and,
    /// in transparent mode, `transparent` for redirected connections, each
    /// with its bound address.
    pub fn with_listeners(
        self,
        proxy: (TcpListener, SocketAddr),
        transparent: Option<(TcpListener, SocketAddr)>,
    ) -> Bound {
        let Loaded {
            proxy: core,
            store,
            key,
            admin,
            admin_addr,
        } = self;
        core.set_listener(proxy.1);
        if let Some((_, a)) = &transparent {
            core.set_listener(*a);
        }
        let (transparent, transparent_addr) = match transparent {
            Some((l, a)) => (Some(l), Some(a)),
            None => (None, None),
        };
        Bound {
            addr: proxy.1,
            admin_addr,
            transparent_addr,
            proxy: core,
            store,
            key,
            listener: proxy.0,
            admin,
            transparent,
            dns: None,
            hangup: reload::listen_for_hangup(),
        }
    }
}

/// Binds `addr`; returns the listener and the address it got.
async fn bind(addr: &str, what: &'static str) -> Result<(TcpListener, SocketAddr), StartError> {
    let failed = |source| StartError::Bind {
        addr: addr.to_owned(),
        what,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(failed)?;
    let bound = listener.local_addr().map_err(failed)?;
    Ok((listener, bound))
}

fn build(args: &RunArgs) -> Result<(Proxy, Arc<Store>, Arc<PlaceholderKey>), StartError> {
    if args.max_connections == 0 {
        return Err(StartError::Flag {
            flag: "--max-connections",
            value: "0".to_owned(),
            problem: "must be at least 1",
        });
    }
    let workers = worker_count(args.workers)?;
    let (store, config) = Store::open(&args.config)?;
    let store = Arc::new(store);
    let dir = state::resolve_dir(args.state_dir.as_deref())?;
    let ca = CertificateAuthority::load_or_create(&dir)?;
    let key = Arc::new(PlaceholderKey::load_or_create(&dir)?);
    let leaves = LeafCache::new(Arc::new(ca), args.leaf_cache_size)?;
    let tls = roots::client_config(&args.upstream_ca)?;
    let guard = Guard {
        deny_private: args.deny_private,
        ..Guard::default()
    };
    let dialer = Dialer::new(Pins::from_args(&args.resolve)?, guard);
    let limits = Limits {
        max_connections: args.max_connections,
        max_header_bytes: args.max_header_bytes.max(8192),
        header_read_timeout: seconds("--header-read-timeout", args.header_read_timeout)?,
        idle_timeout: seconds("--idle-timeout", args.idle_timeout)?,
        http2_max_streams: args.http2_max_streams.max(1),
        response_header_timeout: seconds(
            "--response-header-timeout",
            args.response_header_timeout,
        )?,
        connect_timeout: seconds("--connect-timeout", args.connect_timeout)?,
        tls_timeout: seconds("--tls-timeout", args.tls_timeout)?,
    };
    let snapshot = Snapshot::compile(&config, &key)?;
    let saver = Arc::new(TokenSaver::new(&store));
    let mut proxy = Proxy::new(snapshot, leaves, tls, dialer, limits, saver);
    let workers = Workers::start(workers).map_err(|source| StartError::Workers {
        count: workers.get(),
        source,
    })?;
    proxy.set_workers(workers);
    Ok((proxy, store, key))
}

/// `--workers`, or one worker per CPU the process may run on.
fn worker_count(flag: Option<usize>) -> Result<NonZeroUsize, StartError> {
    match flag {
        Some(n) => NonZeroUsize::new(n).ok_or(StartError::Flag {
            flag: "--workers",
            value: "0".to_owned(),
            problem: "must be at least 1",
        }),
        None => Ok(std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)),
    }
}

/// A positive number of seconds, or the flag's refusal.
fn seconds(flag: &'static str, value: f64) -> Result<std::time::Duration, StartError> {
    std::time::Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| StartError::Flag {
            flag,
            value: value.to_string(),
            problem: "is not a positive number of seconds",
        })
}

/// Completes on SIGTERM or SIGINT.
pub(super) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
