//! The sandbox's DNS answerer: every UDP query to port 53 inside the
//! namespace arrives here.
//!
//! A questions are answered by a [`Resolver`] that keyhole's proxy side
//! supplies: it honours `--resolve` pins and egress, and answers a name
//! egress does not allow with [`Lookup::NoSuchName`] *without* any
//! upstream lookup, so that DNS cannot carry data to an attacker's name
//! server. AAAA questions get no records (IPv6 is blocked in the
//! namespace), other types "not implemented", unreadable queries a format
//! error, and anything that is not a query no reply at all.
//!
//! The trade-off: no TCP, no EDNS, no DNSSEC; a stub resolver asking for
//! a host's address is all a sandboxed program needs.

pub mod wire;

use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use wire::{Parsed, Query, Rcode, CLASS_IN, TYPE_A, TYPE_AAAA};

/// Longest wait for the resolver; beyond it the client gets SERVFAIL (and
/// retries on its own schedule).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Queries answered at once. Beyond, a query is dropped and the client
/// retries: a burst from one sandbox stays far below, and a flood costs
/// keyhole at most this many lookups.
pub const MAX_IN_FLIGHT: usize = 64;
/// Bytes read of a datagram. A header and the longest question take 271;
/// anything beyond (EDNS options) is not read.
pub const MAX_QUERY_BYTES: usize = wire::MAX_UDP_MESSAGE;
/// Pause after a failed receive, so that a persistent error does not spin.
pub const RECEIVE_BACKOFF: Duration = Duration::from_millis(50);

/// What the resolver says about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Its IPv4 addresses (none: the name exists without any).
    Found(Vec<Ipv4Addr>),
    /// No such name, or one keyhole's policy does not allow.
    NoSuchName,
    /// The lookup failed.
    Failed,
}

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Looks a name (lower-case, no final dot) up.
pub type Resolver = Arc<dyn Fn(String) -> BoxFuture<Lookup> + Send + Sync>;

/// Answers queries on `socket` until `shutdown` completes; queries still
/// being looked up then are abandoned.
pub async fn serve(socket: UdpSocket, resolver: Resolver, shutdown: impl Future<Output = ()>) {
    let socket = Arc::new(socket);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let mut buf = [0u8; MAX_QUERY_BYTES];
    tokio::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let (len, peer) = tokio::select! {
            () = &mut shutdown => break,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS receive failed");
                    tokio::time::sleep(RECEIVE_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "DNS query dropped: {MAX_IN_FLIGHT} already in flight");
            continue;
        };
        let packet = buf.get(..len).unwrap_or_default().to_vec();
        let (socket, resolver) = (socket.clone(), resolver.clone());
        tasks.spawn(async move {
            if let Some(reply) = answer(&packet, &resolver).await {
                if let Err(e) = socket.send_to(&reply, peer).await {
                    tracing::debug!(%peer, error = %e, "DNS answer not sent");
                }
            }
            drop(slot);
        });
    }
}

/// The reply to one datagram, if any. The resolver is asked only for an
/// A question about a usable name, at most [`LOOKUP_TIMEOUT`].
pub async fn answer(packet: &[u8], resolver: &Resolver) -> Option<Vec<u8>> {
    let query = match wire::parse(packet) {
        Parsed::Ignore => return None,
        Parsed::Refuse(header, rcode) => return Some(wire::refusal(header, rcode)),
        Parsed::Query(query) => query,
    };
    let lookup = match plan(&query) {
        Plan::Reply(rcode) => return Some(wire::answer(&query, rcode, &[])),
        Plan::Lookup(name) => tokio::time::timeout(LOOKUP_TIMEOUT, resolver(name))
            .await
            .unwrap_or(Lookup::Failed),
    };
    Some(reply(&query, &lookup))
}

/// What a readable query needs.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// An answer with this code and no records, without a lookup.
    Reply(Rcode),
    /// A lookup of this name.
    Lookup(String),
}

fn plan(query: &Query<'_>) -> Plan {
    if query.qclass != CLASS_IN {
        return Plan::Reply(Rcode::NotImp);
    }
    match (query.qtype, &query.name) {
        (TYPE_A | TYPE_AAAA, None) => Plan::Reply(Rcode::NxDomain),
        (TYPE_A, Some(name)) => Plan::Lookup(name.clone()),
        (TYPE_AAAA, Some(_)) => Plan::Reply(Rcode::NoError),
        _ => Plan::Reply(Rcode::NotImp),
    }
}

fn reply(query: &Query<'_>, lookup: &Lookup) -> Vec<u8> {
    match lookup {
        Lookup::Found(addresses) => wire::answer(query, Rcode::NoError, addresses),
        Lookup::NoSuchName => wire::answer(query, Rcode::NxDomain, &[]),
        Lookup::Failed => wire::answer(query, Rcode::ServFail, &[]),
    }
}

#[cfg(test)]
mod tests;
