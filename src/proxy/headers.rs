//! Hop-by-hop headers: what belongs to one connection and must not be
//! relayed to the next (RFC 9110 section 7.6.1).

use http::header::{
    HeaderMap, HeaderName, CONNECTION, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};

/// Headers that are always hop-by-hop.
const HOP_BY_HOP: [&str; 2] = ["keep-alive", "proxy-connection"];

/// Removes hop-by-hop headers, including those the `Connection` header
/// names. `TE: trailers` is kept: HTTP/2 and gRPC need it end to end.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names, without the
    // hashing of a dozen removals.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let te_trailers = headers.get_all(TE).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
    });
    // Only the names present, and those Connection lists: a removal hashes
    // its name, and a client through a proxy typically sends one such
    // header (Proxy-Connection) of the nine.
    let mut doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n))
        .cloned()
        .collect();
    doomed.extend(
        headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok()),
    );
    for name in doomed {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(TE, http::HeaderValue::from_static("trailers"));
    }
}

/// Whether `name` is removed by [`strip_hop_by_hop`] whatever `Connection`
/// says (`TE` included: it is rewritten).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        CONNECTION,
        TRANSFER_ENCODING,
        UPGRADE,
        TRAILER,
        PROXY_AUTHORIZATION,
        PROXY_AUTHENTICATE,
        TE,
    ]
    .contains(name)
        || HOP_BY_HOP.contains(&name.as_str())
}

/// Removes `Host`: the upstream request's host comes from its URI, which
/// keyhole builds from the destination it checked.
pub fn strip_host(headers: &mut HeaderMap) {
    headers.remove(HOST);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_listed_and_fixed_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, X-Secret-Hop".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-authorization", "Basic x".parse().unwrap());
        h.insert("te", "trailers, deflate".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("authorization", "Bearer t".parse().unwrap());
        strip_hop_by_hop(&mut h);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["authorization", "te"]);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed() {
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
            "trailer",
            "proxy-authorization",
            "proxy-authenticate",
            "te",
        ] {
            let mut h = HeaderMap::new();
            h.insert("accept", "*/*".parse().unwrap());
            h.insert(HeaderName::from_static(name), "gzip".parse().unwrap());
            strip_hop_by_hop(&mut h);
            let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
            assert_eq!(names, ["accept"], "{name}");
        }
        let mut h = HeaderMap::new();
        h.insert("accept", "*/*".parse().unwrap());
        h.insert("authorization", "Bearer t".parse().unwrap());
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }
}
