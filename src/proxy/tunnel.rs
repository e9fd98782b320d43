//! Tunnels: bytes relayed both ways, untouched, until either side is done
//! or both have been silent for the idle timeout.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::idle::Idle;
use crate::host::Host;

/// Copies between `client` and `upstream` until both directions end.
///
/// Both sides carry the idle timer: after one side's EOF,
/// `copy_bidirectional` polls only the other, which must still time out.
pub async fn splice<C, U>(client: C, upstream: U, idle: Duration, host: &Host)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut client = Idle::new(client, idle);
    let mut upstream = Idle::new(upstream, idle);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => tracing::debug!(%host, up, down, "tunnel closed"),
        Err(e) => tracing::debug!(%host, error = %e, "tunnel ended with an error"),
    }
}
