//! The command line: argument definitions and the commands' bodies.
//!
//! Each command returns the process exit status: 0 for success, 1 when the
//! input (config, target) is refused, 2 for usage errors.

mod ca;
mod check;
mod env;
mod exec;
mod explain;
mod run;
mod sandbox;
mod sandbox_init;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// keyhole: an egress proxy that swaps credential placeholders for real
/// secrets, only on the hosts each credential allows.
#[derive(Debug, Parser)]
#[command(name = "keyhole", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Run(RunArgs),
    /// Print the environment a sandbox needs to use the proxy.
    Env(EnvArgs),
    /// Validate a config file: exit 0, or exit 1 with one line per problem.
    Check(ConfigArg),
    /// Say what keyhole would do with a host or URL, and why.
    Explain(ExplainArgs),
    /// Print the CA certificate (PEM), creating the CA if there is none.
    Ca(CaArgs),
    /// Run a command with the proxy beside it: start keyhole on a free
    /// loopback port, run COMMAND with the environment of `keyhole env`,
    /// exit with its status.
    Exec(ExecArgs),
    /// Run a command in a network namespace whose only way out is keyhole.
    ///
    /// Transparent mode (Linux): programs that ignore HTTPS_PROXY still go
    /// through keyhole. Takes the flags of `run` but --listen, then COMMAND
    /// after `--`; exits with its status.
    Sandbox(ExecArgs),
    /// The sandbox's set-up process (internal: `keyhole sandbox` starts it).
    #[command(name = "sandbox-init", hide = true)]
    SandboxInit(SandboxInitArgs),
}

/// `--config FILE`.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The JSON config file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// Arguments of `keyhole run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The JSON config file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Address the proxy listens on [default: 127.0.0.1:8080 for `run`, a
    /// free loopback port for `exec`].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Folder for the CA and other state that must survive a restart.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Extra trusted roots (PEM) for upstream servers, on top of the system's.
    #[arg(long, value_name = "PEM")]
    pub upstream_ca: Vec<PathBuf>,
    /// Pin HOST:PORT to ADDR, as curl's --resolve does.
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    pub resolve: Vec<String>,
    /// Turn on the admin API on this address (its own listener; needs
    /// --admin-token-file).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// File holding the admin API token (one line; required with --admin).
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Append one JSON line per substitution and passed placeholder here.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Also refuse private, loopback and link-local destinations.
    #[arg(long)]
    pub deny_private: bool,
    /// Transparent mode: also accept, on this address, connections the
    /// kernel redirected here (an nftables or iptables REDIRECT), and
    /// handle each as a CONNECT to its original destination would be.
    #[arg(long, value_name = "ADDR")]
    pub transparent: Option<String>,
    /// In transparent mode, close connections that are neither TLS nor
    /// HTTP even where egress allows their address (default: tunnel them).
    #[arg(long)]
    pub transparent_refuse_raw: bool,
    /// Longest wait for an upstream's response headers, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
    pub response_header_timeout: f64,
    /// Longest wait for a TCP connection to an upstream, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Longest wait for an upstream TLS handshake, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub tls_timeout: f64,
    /// Longest wait for a client's request headers (and the next request on
    /// an idle HTTP/1.1 connection), in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub header_read_timeout: f64,
    /// Longest a tunnel or intercepted connection may stay silent, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
    pub idle_timeout: f64,
    /// Connections handled at once; beyond, 503 connection_limit_reached.
    #[arg(long, value_name = "N", default_value_t = crate::proxy::limits::MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Largest request line plus headers, in bytes (at least 8192).
    #[arg(long, value_name = "BYTES", default_value_t = crate::proxy::limits::MAX_HEADER_BYTES)]
    pub max_header_bytes: usize,
    /// HTTP/2 streams a client may open at once on one connection.
    #[arg(long, value_name = "N", default_value_t = crate::proxy::limits::HTTP2_MAX_STREAMS)]
    pub http2_max_streams: u32,
    /// Leaf certificates kept (one per intercepted host).
    #[arg(long, value_name = "N", default_value_t = crate::tls::leaf::DEFAULT_LEAF_CACHE_CAPACITY)]
    pub leaf_cache_size: usize,
    /// Log line format (the level comes from RUST_LOG, default info).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: crate::logging::LogFormat,
    /// Threads that serve connections, each running its own connections
    /// start to end [default: one per CPU].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}

/// Arguments of `keyhole exec` and `keyhole sandbox`: every flag of `run`,
/// then the command.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The proxy's flags, as for `keyhole run`.
    #[command(flatten)]
    pub run: RunArgs,
    /// The command and its arguments, after `--`.
    #[arg(value_name = "COMMAND", required = true, last = true)]
    pub command: Vec<std::ffi::OsString>,
}

/// Arguments of the hidden `keyhole sandbox-init`, as
/// [`crate::sandbox::init_args`] writes them.
#[derive(Debug, clap::Args)]
pub struct SandboxInitArgs {
    /// keyhole's control socket.
    #[arg(long, value_name = "PATH")]
    pub control: PathBuf,
    /// Port of the transparent listener inside the namespace.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub transparent_port: u16,
    /// Port of the proxy inside the namespace.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub proxy_port: u16,
    /// Port of the DNS answerer inside the namespace.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub dns_port: u16,
    /// The command and its arguments, after `--`.
    #[arg(value_name = "COMMAND", required = true, last = true)]
    pub command: Vec<std::ffi::OsString>,
}

/// Arguments of `keyhole env`.
#[derive(Debug, clap::Args)]
pub struct EnvArgs {
    /// The JSON config file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Address the proxy listens on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Folder holding the CA.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "sh")]
    pub format: EnvFormat,
}

/// Formats of `keyhole env`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EnvFormat {
    /// `export NAME='value'` lines for `eval`.
    Sh,
    /// `NAME=value` lines.
    Dotenv,
    /// One flat JSON object.
    Json,
}

/// Arguments of `keyhole explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The JSON config file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// A host, host:port, or an http(s):// URL.
    pub target: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ExplainFormat,
}

/// Formats of `keyhole explain`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExplainFormat {
    /// Lines for people.
    Text,
    /// One JSON object.
    Json,
}

/// Arguments of `keyhole ca`.
#[derive(Debug, clap::Args)]
pub struct CaArgs {
    /// Folder holding the CA.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Runs a parsed command line and returns the exit status.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check(args) => check::run(&args.config),
        Command::Explain(args) => explain::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Env(args) => env::run(&args),
        Command::Ca(args) => ca::run(&args),
        Command::Exec(args) => exec::run(&args),
        Command::Sandbox(args) => sandbox::run(&args),
        Command::SandboxInit(args) => sandbox_init::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exec_takes_the_flags_of_run_and_a_command_after_the_separator() {
        let cli = Cli::try_parse_from([
            "keyhole",
            "exec",
            "--config",
            "c.json",
            "--deny-private",
            "--",
            "curl",
            "-s",
            "--",
            "x",
        ])
        .unwrap();
        let Command::Exec(args) = cli.command else {
            panic!("not exec");
        };
        assert!(args.run.deny_private);
        assert_eq!(args.run.listen, None);
        assert_eq!(args.command, ["curl", "-s", "--", "x"]);
        // The command must come after `--`: a word before it is refused.
        assert!(Cli::try_parse_from(["keyhole", "exec", "--config", "c.json", "curl"]).is_err());
        assert!(Cli::try_parse_from(["keyhole", "exec", "--config", "c.json"]).is_err());
    }

    #[test]
    fn sandbox_init_reads_what_the_sandbox_writes() {
        let ports = crate::sandbox::Ports {
            transparent: 1,
            proxy: 2,
            dns: 3,
        };
        let command: Vec<std::ffi::OsString> = vec!["sh".into(), "--".into(), "-c".into()];
        let args = crate::sandbox::init_args(std::path::Path::new("/t/c"), ports, &command);
        let cli = Cli::try_parse_from(std::iter::once("keyhole".into()).chain(args)).unwrap();
        let Command::SandboxInit(init) = cli.command else {
            panic!("not sandbox-init");
        };
        assert_eq!(init.control, std::path::Path::new("/t/c"));
        assert_eq!(
            (init.transparent_port, init.proxy_port, init.dns_port),
            (1, 2, 3)
        );
        assert_eq!(init.command, command);
        // Port 0 is refused before any namespace exists.
        let zero = crate::sandbox::Ports { dns: 0, ..ports };
        let args = crate::sandbox::init_args(std::path::Path::new("/t/c"), zero, &command);
        assert!(Cli::try_parse_from(std::iter::once("keyhole".into()).chain(args)).is_err());
    }

    #[test]
    fn sandbox_init_is_hidden_and_sandbox_is_not() {
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.contains("sandbox-init"), "{help}");
        assert!(help.contains("sandbox"), "{help}");
        let cli =
            Cli::try_parse_from(["keyhole", "sandbox", "--config", "c.json", "--", "id"]).unwrap();
        assert!(matches!(cli.command, Command::Sandbox(_)));
    }
}
