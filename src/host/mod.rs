//! The host vocabulary: how keyhole spells a destination, and how it
//! matches one against a list of entries.
//!
//! Everything here is pure (no sockets, no config) and imports nothing
//! else of the crate, so that the model, the policy, the certificate code
//! and the proxy can all speak of hosts without depending on one another:
//! - [`name`]: [`Host`] and [`Authority`], the normalised names a client
//!   asks for (CONNECT authority, URI host, SNI, `Host` header);
//! - [`pattern`]: [`HostPattern`], one entry of an `allowed_hosts` list;
//! - [`matcher`]: [`HostSet`], the compiled matcher over many patterns;
//! - `ipv4`: the WHATWG IPv4 parser both of the first two rely on.

mod ipv4;
pub mod matcher;
pub mod name;
pub mod pattern;

pub use matcher::{HostSet, HostSetBuilder};
pub use name::{Authority, Host, HostError, HostKind};
pub use pattern::{HostPattern, PatternError};
