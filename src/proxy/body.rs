//! The body type keyhole's services use in both directions.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;

/// Errors a body may carry.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed body: requests and responses are relayed as streams.
pub type ProxyBody = BoxBody<Bytes, BodyError>;
