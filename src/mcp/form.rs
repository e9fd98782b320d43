//! `application/x-www-form-urlencoded`, as RFC 6749 appendix B uses it.
//!
//! Written here rather than taken from a crate: it is a dozen lines, and
//! its exact output matters twice (the token request body, and the
//! client id and secret inside `Authorization: Basic`, RFC 6749 2.3.1).
//! The rule: UTF-8 bytes; the unreserved characters of RFC 3986 (`A-Z`,
//! `a-z`, `0-9`, `-`, `.`, `_`, `~`) stay; a space becomes `+`; every
//! other byte becomes `%XX` with upper-case hex.

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `value`, encoded, to `out`.
pub fn encode_into(out: &mut Vec<u8>, value: &str) {
    for &b in value.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b),
            b' ' => out.push(b'+'),
            _ => {
                out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]])
            }
        }
    }
}

/// Appends `name=value` to a form body, with `&` before it when the body
/// is not empty. `name` is encoded too.
pub fn push_pair(out: &mut Vec<u8>, name: &str, value: &str) {
    if !out.is_empty() {
        out.push(b'&');
    }
    encode_into(out, name);
    out.push(b'=');
    encode_into(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(value: &str) -> String {
        let mut out = Vec::new();
        encode_into(&mut out, value);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc_6749_appendix_b_example() {
        // The appendix's own example: " %&+£€" encodes as below.
        assert_eq!(encode(" %&+£€"), "+%25%26%2B%C2%A3%E2%82%AC");
    }

    #[test]
    fn unreserved_stay_and_everything_else_is_escaped() {
        assert_eq!(encode("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(encode("a:b/c?d=e&f"), "a%3Ab%2Fc%3Fd%3De%26f");
        assert_eq!(encode("*'()!\"\n\0"), "%2A%27%28%29%21%22%0A%00");
        assert_eq!(encode(""), "");
    }

    #[test]
    fn pairs_are_joined_with_ampersands() {
        let mut body = Vec::new();
        push_pair(&mut body, "grant_type", "refresh_token");
        push_pair(&mut body, "scope", "read write");
        assert_eq!(body, b"grant_type=refresh_token&scope=read+write");
    }
}
