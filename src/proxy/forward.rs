//! Absolute-form `http://` requests: forwarded, never substituted.
//!
//! Plaintext can be read and altered by anything on the path, so no secret
//! is ever put into it. The destination is the URL's host; the request is
//! an [`exchange`] with [`Scheme::Http`], in which every
//! placeholder passes unchanged and the event is logged and audited.

use std::sync::{Arc, Mutex};

use http::uri::Authority as UriAuthority;
use http::{Request, Response};
use hyper::body::Incoming;

use super::body::ProxyBody;
use super::exchange::{self, Destination, Scheme};
use super::respond::ProxyError;
use super::Proxy;
use crate::host::Authority;

/// The destination of a client connection's last plain request, by the
/// authority it was written as. A keep-alive client sends request after
/// request to one host; each then skips the parse and the destination's
/// set-up (about 3,000 instructions of a plain request's 70,000).
#[derive(Debug, Default, Clone)]
pub struct LastDestination(Arc<Mutex<Option<Seen>>>);

/// An authority as written, and the destination it names.
type Seen = (UriAuthority, Arc<Destination>);

/// Forwards one plaintext request.
pub async fn handle(
    proxy: Arc<Proxy>,
    req: Request<Incoming>,
    last: &LastDestination,
) -> Response<ProxyBody> {
    let Some(written) = req.uri().authority() else {
        return ProxyError::UrlWithoutHost.into_response();
    };
    let Some(dest) = last.get_or_parse(written) else {
        return ProxyError::UrlWithoutHost.into_response();
    };
    exchange::run(proxy, dest, req).await
}

// === impl LastDestination ===

impl LastDestination {
    /// The destination `written` names: the last one when it was written
    /// the same, byte for byte; else parsed (and kept). `None`: no host.
    fn get_or_parse(&self, written: &UriAuthority) -> Option<Arc<Destination>> {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, dest)) = &*last {
            if seen.as_str() == written.as_str() {
                return Some(dest.clone());
            }
        }
        let target = Authority::parse(written.as_str()).ok()?;
        let port = target.port.unwrap_or(80);
        let dest = Arc::new(Destination::new(target.host, port, Scheme::Http, None));
        *last = Some((written.clone(), dest.clone()));
        Some(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_destination_is_reused_only_when_written_the_same() {
        let last = LastDestination::default();
        let a: UriAuthority = "Example.com:8080".parse().unwrap();
        let first = last.get_or_parse(&a).unwrap();
        assert_eq!((first.host.as_str(), first.port), ("example.com", 8080));
        assert!(Arc::ptr_eq(&first, &last.get_or_parse(&a).unwrap()));
        // Another spelling, another port, another host: parsed anew.
        for other in ["example.com:8080", "Example.com:8081", "Example.com"] {
            let dest = last.get_or_parse(&other.parse().unwrap()).unwrap();
            assert!(!Arc::ptr_eq(&first, &dest), "{other}");
        }
        let bare = last.get_or_parse(&"Example.com".parse().unwrap()).unwrap();
        assert_eq!(bare.port, 80);
        assert!(last
            .get_or_parse(&"bad_host!:80".parse().unwrap())
            .is_none());
    }
}
