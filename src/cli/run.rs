//! `keyhole run`: load everything, bind (the proxy, and the admin API with
//! `--admin`), serve until SIGTERM or SIGINT.

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

/// Runs the proxy; exit 0 after a clean shutdown, 1 when it cannot start.
pub fn run(args: &RunArgs) -> ExitCode {
    logging::init(args.log_format);
    // Fail closed: the admin API never runs without a token.
    let token = match (&args.admin, &args.admin_token_file) {
        (None, None) => None,
        (None, Some(_)) => {
            tracing::warn!("--admin-token-file is ignored without --admin ADDR");
            None
        }
        (Some(_), None) => {
            eprintln!("keyhole run: {}", TokenError::Missing);
            return ExitCode::FAILURE;
        }
        (Some(_), Some(file)) => match Token::load(file) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("keyhole run: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let (mut proxy, store, key) = match build(args) {
        Ok(p) => p,
        Err(message) => {
            eprintln!("keyhole run: {message}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("keyhole run: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        if let Some(path) = &args.audit_log {
            match AuditLog::open(path).await {
                Ok(log) => proxy.audit = Some(log),
                Err(e) => {
                    eprintln!("keyhole run: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        let listener = match TcpListener::bind(&args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "keyhole run: cannot listen on {}: {e}; pick another --listen address",
                    args.listen
                );
                return ExitCode::FAILURE;
            }
        };
        let admin_listener = match (&args.admin, &token) {
            (Some(admin), Some(_)) => match TcpListener::bind(admin).await {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!(
                        "keyhole run: cannot listen on {admin} for the admin API: {e}; pick another --admin address (never the proxy's)"
                    );
                    return ExitCode::FAILURE;
                }
            },
            _ => None,
        };
        if let Ok(a) = listener.local_addr() {
            proxy.set_listener(a);
        }
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| args.listen.clone());
        // One fixed line on stdout, for scripts and tests that pass port 0.
        println!("keyhole listening on {addr}");
        tracing::info!(%addr, "listening");
        if let Some(l) = &admin_listener {
            // The sandbox must not reach the admin API through the proxy.
            if let Ok(a) = l.local_addr() {
                proxy.set_listener(a);
            }
            let admin_addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
            // A second fixed line, only with --admin.
            println!("keyhole admin listening on {admin_addr}");
            tracing::info!(addr = %admin_addr, "admin API listening");
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
        let admin = match (admin_listener, token) {
            (Some(l), Some(token)) => {
                let admin = Arc::new(Admin::new(store.clone(), proxy.clone(), token));
                Some(tokio::spawn(admin.serve(l, stopped)))
            }
            _ => None,
        };
        proxy
            .serve(listener, async move {
                shutdown_signal().await;
                stop.send_replace(true);
            })
            .await;
        watcher.abort();
        if let Some(admin) = admin {
            admin.abort();
        }
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
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
async fn shutdown_signal() {
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
