//! `keyhole check --config FILE`.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, ConfigError};
use crate::model::{Auth, Config, Egress};

/// Validates the file: prints a summary and exits 0, or prints one line per
/// problem on standard error and exits 1.
pub fn run(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(config) => {
            println!("{}: {}", path.display(), summary(&config));
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid(problems)) => {
            for p in problems.iter() {
                eprintln!("{p}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn summary(config: &Config) -> String {
    let count = |t: &str| {
        config
            .credentials
            .iter()
            .filter(|c| c.auth.type_name() == t)
            .count()
    };
    let archived = config
        .credentials
        .iter()
        .filter(|c| c.is_archived())
        .count();
    let egress = match &config.egress {
        Egress::Unrestricted => "egress unrestricted".to_owned(),
        Egress::Limited { allowed_hosts, .. } => {
            format!("egress limited to {} entries", allowed_hosts.len())
        }
    };
    let substitutable = config
        .credentials
        .iter()
        .filter(|c| matches!(c.auth, Auth::EnvironmentVariable(_)) && !c.is_archived())
        .count();
    format!(
        "valid: {} credentials ({} environment_variable, {} static_bearer, {} mcp_oauth; {archived} archived), {substitutable} substitutable, {egress}",
        config.credentials.len(),
        count("environment_variable"),
        count("static_bearer"),
        count("mcp_oauth"),
    )
}
