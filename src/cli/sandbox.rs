//! `keyhole sandbox`: run one command in a network namespace whose only
//! way out is keyhole (transparent mode; [`crate::sandbox`] has the
//! design).
//!
//! Conventions of `keyhole exec`: the command gets the environment of
//! `keyhole env` (for the proxy inside the namespace, `127.0.0.1:15080`),
//! SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 are passed on (SIGINT and SIGQUIT
//! are the command's own), and keyhole exits with the command's status:
//! its code, 128 + N for signal N, 125 when keyhole fails before the
//! command runs, 126 when it cannot run, 127 when it is not found.
//!
//! keyhole is loaded (config, CA, keys) before the namespace exists, so a
//! bad config never starts the command; [`sandbox`] takes what serves the
//! three sockets as a parameter ([`serve`]: keyhole itself).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use super::env::environment_for;
use super::exec::{exit_code, supervise, Failure, Signals, EXIT_KEYHOLE_FAILED, REMOVED_VARS};
use super::run::{runtime, Loaded};
use super::ExecArgs;
use crate::logging;
use crate::sandbox::dns::BoxFuture;
use crate::sandbox::{Launch, Namespace, Ports, Sockets};

/// Longest wait, after the command exited, for the sockets' server to
/// stop; it then is dropped with the runtime.
pub const SERVE_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Completes when the sockets' server should stop.
pub type Shutdown = BoxFuture<()>;

/// Runs the command in the sandbox; returns its exit status.
pub fn run(args: &ExecArgs) -> ExitCode {
    // The command owns the terminal: keyhole says only what goes wrong,
    // unless RUST_LOG asks for more.
    let _log = logging::init(args.run.log_format, "warn");
    let Some(runtime) = runtime() else {
        return ExitCode::from(EXIT_KEYHOLE_FAILED);
    };
    runtime.block_on(async {
        let loaded = match Loaded::load(&args.run).await {
            Ok(loaded) => loaded,
            Err(e) => {
                eprintln!("keyhole sandbox: {e}");
                return ExitCode::from(EXIT_KEYHOLE_FAILED);
            }
        };
        match sandbox(args, |sockets, shutdown| serve(loaded, sockets, shutdown)).await {
            Ok(code) => ExitCode::from(code),
            Err(Failure { message, code }) => {
                eprintln!("keyhole sandbox: {message}");
                ExitCode::from(code)
            }
        }
    })
}

/// Starts the namespace, serves its sockets with `serve` until the command
/// exits, and returns the command's exit status.
pub(super) async fn sandbox<S, F>(args: &ExecArgs, serve: S) -> Result<u8, Failure>
where
    S: FnOnce(Sockets, Shutdown) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    if let Some(listen) = &args.run.listen {
        return Err(Failure::keyhole(format!(
            "--listen {listen} does not apply to `keyhole sandbox`: the proxy listens on \
             127.0.0.1:{} inside the sandbox; leave --listen out",
            Ports::DEFAULT.proxy
        )));
    }
    let ports = Ports::DEFAULT;
    let exe = std::env::current_exe()
        .map_err(|e| Failure::keyhole(format!("cannot find keyhole's own executable: {e}")))?;
    let env = command_env(args, ports)?;
    // Installed before the set-up process starts, so that no signal in
    // between takes the default action of ending keyhole under it.
    let signals = Signals::new().map_err(Failure::keyhole)?;
    let Namespace { sockets, process } = Namespace::start(Launch {
        exe,
        command: args.command.clone(),
        env,
        ports,
    })
    .await
    .map_err(Failure::keyhole)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(serve(
        sockets,
        Box::pin(async move {
            let _ = stopped.await;
        }),
    ));
    let child = match process.go().await {
        Ok(child) => child,
        Err(e) => {
            serving.abort();
            return Err(Failure::keyhole(e));
        }
    };
    tracing::info!(?ports, "sandbox ready; command started");
    let status = supervise(child, signals).await;
    let _ = stop.send(());
    if tokio::time::timeout(SERVE_STOP_TIMEOUT, serving)
        .await
        .is_err()
    {
        tracing::warn!("the sandbox's proxy did not stop within {SERVE_STOP_TIMEOUT:?}");
    }
    status
        .map(exit_code)
        .map_err(|e| Failure::keyhole(format!("lost track of the command: {e}")))
}

/// keyhole's environment, less [`REMOVED_VARS`], plus that of `keyhole env`
/// for the proxy inside the namespace.
fn command_env(args: &ExecArgs, ports: Ports) -> Result<Vec<(OsString, OsString)>, Failure> {
    let proxy = format!("127.0.0.1:{}", ports.proxy);
    let vars = environment_for(&args.run.config, &proxy, args.run.state_dir.as_deref())
        .map_err(Failure::keyhole)?;
    let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    for name in REMOVED_VARS {
        env.remove(OsStr::new(name));
    }
    env.extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
    Ok(env.into_iter().collect())
}

/// keyhole itself on the sandbox's sockets: the proxy for proxy-aware
/// clients, the transparent listener for everything redirected, and the
/// DNS answerer, until `shutdown`.
fn serve(
    loaded: Loaded,
    sockets: Sockets,
    shutdown: Shutdown,
) -> impl Future<Output = ()> + Send + 'static {
    let Sockets {
        transparent,
        proxy,
        dns,
    } = sockets;
    async move {
        let (proxy_addr, transparent_addr) = match (proxy.local_addr(), transparent.local_addr()) {
            (Ok(p), Ok(t)) => (p, t),
            _ => {
                tracing::error!(
                    "cannot read the sandbox listeners' addresses; the sandbox has no network"
                );
                return;
            }
        };
        let bound = loaded
            .with_listeners((proxy, proxy_addr), Some((transparent, transparent_addr)))
            .with_dns(dns);
        bound.serve(shutdown).await;
    }
}
