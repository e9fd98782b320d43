//! `keyhole ca [--state-dir DIR]`: prints the CA certificate (PEM), creating
//! the CA on first use.

use std::io::Write;
use std::process::ExitCode;

use crate::tls::CertificateAuthority;

/// Prints the CA certificate to stdout: exit 0, or exit 1 with the reason on
/// stderr.
pub fn run(args: &super::CaArgs) -> ExitCode {
    let result = crate::state::resolve_dir(args.state_dir.as_deref())
        .map_err(|e| e.to_string())
        .and_then(|dir| CertificateAuthority::load_or_create(&dir).map_err(|e| e.to_string()));
    match result {
        Ok(ca) => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(ca.cert_pem().as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("keyhole ca: cannot write the certificate: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Err(message) => {
            eprintln!("keyhole ca: {message}");
            ExitCode::from(1)
        }
    }
}
