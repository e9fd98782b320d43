//! The WHATWG URL standard's IPv4 parser.
//!
//! Browsers, curl and most HTTP libraries accept IPv4 addresses in forms
//! other than the dotted quad: `2130706433`, `0x7f.1`, `127.1`, `0177.0.0.1`
//! all name `127.0.0.1`. A policy that compared text would let such a
//! spelling past an IPv4 entry (or past a deny), so every host whose last
//! label "ends in a number" is parsed here and compared as an address.
//! See <https://url.spec.whatwg.org/#concept-ipv4-parser>.

use std::net::Ipv4Addr;

/// Whether a host "ends in a number" (WHATWG): its last label is all ASCII
/// digits or parses as an IPv4 number (`0x1f`, `0x`). Such a host is an
/// IPv4 address or invalid; it is never a domain name.
///
/// `host` has no trailing dot.
pub fn ends_in_number(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or(host);
    if last.is_empty() {
        return false;
    }
    last.bytes().all(|b| b.is_ascii_digit()) || parse_number(last).is_some()
}

/// Parses `host` (no trailing dot) as an IPv4 address in any WHATWG
/// spelling. `None` means the host is not a valid IPv4 address.
pub fn parse(host: &str) -> Option<Ipv4Addr> {
    let mut parts = [0u64; 4];
    let mut count = 0;
    for part in host.split('.') {
        if count == 4 {
            return None;
        }
        parts[count] = parse_number(part)?;
        count += 1;
    }
    if count == 0 {
        return None;
    }
    let (init, last) = (&parts[..count - 1], parts[count - 1]);
    if init.iter().any(|&p| p > 255) {
        return None;
    }
    // The last part fills the bytes the earlier parts did not.
    let free_bits = 8 * (5 - count as u32);
    if free_bits < 64 && last >= 1u64 << free_bits {
        return None;
    }
    let mut value = last;
    for (i, &p) in init.iter().enumerate() {
        value += p << (8 * (3 - i as u32));
    }
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

/// The WHATWG IPv4 number parser: decimal, `0x` hexadecimal or leading-`0`
/// octal. Values that overflow `u64` are refused (they exceed any part).
fn parse_number(input: &str) -> Option<u64> {
    if input.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(hex) = input
        .strip_prefix("0x")
        .or_else(|| input.strip_prefix("0X"))
    {
        (hex, 16)
    } else if input.len() > 1 && input.starts_with('0') {
        (&input[1..], 8)
    } else {
        (input, 10)
    };
    if digits.is_empty() {
        return Some(0);
    }
    if !digits.bytes().all(|b| (b as char).is_digit(radix)) {
        return None;
    }
    // Every digit is valid: the label is a number even when it overflows
    // (WHATWG), and a number too large is an invalid address, never a name.
    Some(u64::from_str_radix(digits, radix).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<String> {
        parse(s).map(|a| a.to_string())
    }

    #[test]
    fn every_whatwg_spelling_of_loopback() {
        for s in [
            "127.0.0.1",
            "2130706433",
            "0x7f.1",
            "127.1",
            "0177.0.0.1",
            "0x7F000001",
            "127.0.1",
            "0x7f.0.0.0x1",
            "017700000001",
        ] {
            assert_eq!(ip(s).as_deref(), Some("127.0.0.1"), "{s}");
        }
        assert_eq!(ip("010.0.0.1").as_deref(), Some("8.0.0.1"));
        assert_eq!(ip("0x").as_deref(), Some("0.0.0.0"));
        assert_eq!(ip("4294967295").as_deref(), Some("255.255.255.255"));
    }

    #[test]
    fn refuses_out_of_range_and_junk() {
        for s in [
            "256.0.0.1",
            "1.2.3.256",
            "4294967296",
            "1.2.65536",
            "1.2.3.4.5",
            "08.0.0.1",
            "0xg.1",
            "1..2",
            "",
            "1.2.3.",
            "99999999999999999999999",
        ] {
            assert_eq!(ip(s), None, "{s}");
        }
    }

    #[test]
    fn ends_in_number_follows_the_standard() {
        assert!(ends_in_number("127.1"));
        assert!(ends_in_number("foo.0x"));
        assert!(ends_in_number("foo.09"));
        assert!(ends_in_number("1.2.3.256"));
        assert!(!ends_in_number("example.com"));
        assert!(!ends_in_number("foo.0xg"));
        assert!(!ends_in_number("1.2.3.com"));
        // Found by fuzzing: a hex label beyond 64 bits is still a number.
        assert!(ends_in_number("0x10000000000000000"));
        assert!(ends_in_number("a.0x7444444444444444444444444444444444444f"));
        assert_eq!(parse("0x10000000000000000"), None);
    }
}
