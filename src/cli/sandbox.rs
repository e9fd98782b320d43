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
//! The seam with the proxy: [`sandbox`] takes what serves the three
//! sockets as a parameter, so that the proxy side plugs in at one place
//! ([`closed`], marked `TODO(merge)`) and tests can plug in a fake.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::env::environment_for;
use super::exec::{exit_code, supervise, Failure, Signals, EXIT_KEYHOLE_FAILED, REMOVED_VARS};
use super::run::runtime;
use super::ExecArgs;
use crate::logging;
use crate::sandbox::dns::{self, BoxFuture, Lookup, Resolver};
use crate::sandbox::{Launch, Namespace, Ports, Sockets};

/// Longest wait, after the command exited, for the sockets' server to
/// stop; it then is dropped with the runtime.
pub const SERVE_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Pause after a failed `accept` in [`closed`], so that it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

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
        match sandbox(args, closed).await {
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

/// TODO(merge): the proxy side of issue 14 replaces this with keyhole
/// itself, loaded as `keyhole run` loads it: the transparent listener
/// (`SO_ORIGINAL_DST`, then SNI or `Host`), the proxy on `sockets.proxy`
/// and [`dns::serve`] with a resolver that honours `--resolve` and egress.
///
/// Until then the sandbox has no way out at all, which fails closed:
/// every connection is closed as it is accepted and every name is
/// NXDOMAIN.
fn closed(sockets: Sockets, shutdown: Shutdown) -> impl Future<Output = ()> + Send + 'static {
    tracing::warn!("the transparent proxy is not built yet: the sandbox has no network");
    let Sockets {
        transparent,
        proxy,
        dns,
    } = sockets;
    let nxdomain: Resolver = Arc::new(|_| Box::pin(async { Lookup::NoSuchName }));
    async move {
        tokio::select! {
            () = close_all(transparent) => {}
            () = close_all(proxy) => {}
            () = dns::serve(dns, nxdomain, shutdown) => {}
        }
    }
}

/// Accepts and at once closes every connection.
async fn close_all(listener: TcpListener) {
    loop {
        if listener.accept().await.is_err() {
            tokio::time::sleep(ACCEPT_BACKOFF).await;
        }
    }
}
