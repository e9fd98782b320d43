//! `keyhole run`: load everything, bind (the proxy, and the admin API with
//! `--admin`), serve until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::RunArgs;
use crate::admin::auth::{Token, TokenError};
use crate::admin::Admin;
use crate::audit::AuditLog;
use crate::logging;
use crate::model::Config;
use crate::placeholder::PlaceholderKey;
use crate::policy::Policy;
use crate::proxy::limits::Limits;
use crate::proxy::resolve::Resolver;
use crate::proxy::{Proxy, Snapshot};
use crate::reload;
use crate::state;
use crate::store::Store;
use crate::substitute::Substitutions;
use crate::tls::{upstream, CertificateAuthority, LeafCache};

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
            Err(message) => {
                eprintln!("keyhole run: {message}");
                return ExitCode::FAILURE;
            }
        };
        // Fixed lines on stdout, for scripts and tests that pass port 0.
        println!("keyhole listening on {}", bound.addr);
        if let Some(admin) = bound.admin_addr {
            println!("keyhole admin listening on {admin}");
        }
        bound.serve(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// The multi-threaded runtime both `run` and `exec` serve on.
pub(super) fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
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

/// A proxy (and admin API) whose listeners are bound, not yet serving.
///
/// Binding comes first so that a caller learns the real address (port 0
/// picks a free one) before anything is handed to a client.
pub(super) struct Bound {
    /// The proxy's address.
    pub addr: SocketAddr,
    /// The admin API's address, with `--admin`.
    pub admin_addr: Option<SocketAddr>,
    proxy: Proxy,
    store: Store,
    key: Arc<PlaceholderKey>,
    listener: TcpListener,
    admin: Option<(TcpListener, Token)>,
}

// === impl Bound ===

impl Bound {
    /// Loads the config, CA and token, and binds the listeners.
    pub async fn bind(args: &RunArgs, listen: &str) -> Result<Bound, String> {
        // Fail closed: the admin API never runs without a token.
        let token = match (&args.admin, &args.admin_token_file) {
            (None, None) => None,
            (None, Some(_)) => {
                tracing::warn!("--admin-token-file is ignored without --admin ADDR");
                None
            }
            (Some(_), None) => return Err(TokenError::Missing.to_string()),
            (Some(_), Some(file)) => Some(Token::load(file).map_err(|e| e.to_string())?),
        };
        let (mut proxy, store, key) = build(args)?;
        if let Some(path) = &args.audit_log {
            proxy.audit = Some(AuditLog::open(path).await.map_err(|e| e.to_string())?);
        }
        let listener = TcpListener::bind(listen).await.map_err(|e| {
            format!("cannot listen on {listen}: {e}; pick another --listen address")
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the address bound for {listen}: {e}"))?;
        proxy.set_listener(addr);
        let (admin, admin_addr) = match (&args.admin, token) {
            (Some(at), Some(token)) => {
                let l = TcpListener::bind(at).await.map_err(|e| {
                    format!(
                        "cannot listen on {at} for the admin API: {e}; pick another --admin address (never the proxy's)"
                    )
                })?;
                let a = l
                    .local_addr()
                    .map_err(|e| format!("cannot read the address bound for {at}: {e}"))?;
                // The sandbox must not reach the admin API through the proxy.
                proxy.set_listener(a);
                (Some((l, token)), Some(a))
            }
            _ => (None, None),
        };
        Ok(Bound {
            addr,
            admin_addr,
            proxy,
            store,
            key,
            listener,
            admin,
        })
    }

    /// Serves until `shutdown` completes, then drains (see [`Proxy::serve`]).
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        let Bound {
            addr,
            admin_addr,
            proxy,
            store,
            key,
            listener,
            admin,
        } = self;
        tracing::info!(%addr, "listening");
        if let Some(a) = admin_addr {
            tracing::info!(addr = %a, "admin API listening");
        }
        let proxy = Arc::new(proxy);
        let installer = proxy.clone();
        store.on_change(Box::new(move |config| {
            installer.install(snapshot(&config, &key)?);
            Ok(())
        }));
        let store = Arc::new(store);
        let watcher = tokio::spawn(reload::watch(store.clone(), proxy.clone()));
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

fn build(args: &RunArgs) -> Result<(Proxy, Store, Arc<PlaceholderKey>), String> {
    let (store, config) = Store::open(&args.config).map_err(|e| e.to_string())?;
    let dir = state::resolve_dir(args.state_dir.as_deref()).map_err(|e| e.to_string())?;
    let ca = CertificateAuthority::load_or_create(&dir).map_err(|e| e.to_string())?;
    let key = Arc::new(PlaceholderKey::load_or_create(&dir).map_err(|e| e.to_string())?);
    let leaves = LeafCache::new(Arc::new(ca), args.leaf_cache_size).map_err(|e| e.to_string())?;
    let tls = upstream::client_config(&args.upstream_ca).map_err(|e| e.to_string())?;
    let mut resolver = Resolver::from_args(&args.resolve).map_err(|e| e.to_string())?;
    resolver.guard.deny_private = args.deny_private;
    resolver.connect_timeout = seconds("--connect-timeout", args.connect_timeout)?;
    resolver.tls_timeout = seconds("--tls-timeout", args.tls_timeout)?;
    let mut proxy = Proxy::new(snapshot(&config, &key)?, leaves, tls, resolver);
    if args.max_connections == 0 {
        return Err("--max-connections must be at least 1".to_owned());
    }
    proxy.set_limits(Limits {
        max_connections: args.max_connections,
        max_header_bytes: args.max_header_bytes.max(8192),
        header_read_timeout: seconds("--header-read-timeout", args.header_read_timeout)?,
        idle_timeout: seconds("--idle-timeout", args.idle_timeout)?,
        http2_max_streams: args.http2_max_streams.max(1),
        response_header_timeout: seconds(
            "--response-header-timeout",
            args.response_header_timeout,
        )?,
    });
    Ok((proxy, store, key))
}

/// A positive number of seconds, or a message naming the flag.
fn seconds(flag: &str, value: f64) -> Result<std::time::Duration, String> {
    std::time::Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{flag} {value} is not a positive number of seconds"))
}

/// Compiles one policy generation.
fn snapshot(config: &Config, key: &PlaceholderKey) -> Result<Snapshot, String> {
    Ok(Snapshot {
        substitutions: Substitutions::new(config, key).map_err(|e| e.to_string())?,
        policy: Policy::new(config.clone()),
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
