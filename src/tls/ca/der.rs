//! Just enough DER to check keyhole's own CA certificate on load.
//!
//! rcgen is built without an X.509 parser, and rustls' verifier does not
//! look at a trust anchor's extensions, so the few facts that decide
//! whether `ca.pem` may sign leaves are read here: the public key, the
//! basic constraints, the key usage and the end of validity. Anything this
//! reader does not understand is an error (fail closed), never a default.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

const BOOLEAN: u8 = 0x01;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xa0;
const EXTENSIONS: u8 = 0xa3;
/// id-ce-basicConstraints (2.5.29.19).
const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
/// id-ce-keyUsage (2.5.29.15).
const KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
/// keyCertSign is bit 5 of the key usage bit string.
const KEY_CERT_SIGN: u8 = 0x04;

/// What keyhole checks in its CA certificate.
pub(super) struct CaFacts<'a> {
    /// The DER SubjectPublicKeyInfo.
    pub spki: &'a [u8],
    /// basicConstraints says CA:TRUE.
    pub is_ca: bool,
    /// No key usage extension, or one that allows keyCertSign.
    pub can_sign_certs: bool,
    /// The end of validity.
    pub not_after: OffsetDateTime,
}

struct Tlv<'a> {
    tag: u8,
    value: &'a [u8],
    whole: &'a [u8],
}

/// Reads the facts out of a DER certificate.
pub(super) fn inspect(cert: &[u8]) -> Result<CaFacts<'_>, String> {
    let mut input = cert;
    let mut certificate = take(&mut input, SEQUENCE)?.value;
    let mut tbs = take(&mut certificate, SEQUENCE)?.value;
    let mut item = next(&mut tbs)?;
    if item.tag == VERSION {
        item = next(&mut tbs)?;
    }
    let _serial = item;
    take(&mut tbs, SEQUENCE)?; // signature algorithm
    take(&mut tbs, SEQUENCE)?; // issuer
    let mut validity = take(&mut tbs, SEQUENCE)?.value;
    next(&mut validity)?; // not before
    let not_after = parse_time(&next(&mut validity)?)?;
    take(&mut tbs, SEQUENCE)?; // subject
    let spki = take(&mut tbs, SEQUENCE)?.whole;
    let mut facts = CaFacts {
        spki,
        is_ca: false,
        can_sign_certs: true,
        not_after,
    };
    while !tbs.is_empty() {
        let item = next(&mut tbs)?;
        if item.tag != EXTENSIONS {
            continue;
        }
        let mut outer = item.value;
        let mut extensions = take(&mut outer, SEQUENCE)?.value;
        while !extensions.is_empty() {
            let mut extension = take(&mut extensions, SEQUENCE)?.value;
            let oid = take(&mut extension, OID)?.value;
            let mut value = next(&mut extension)?;
            if value.tag == BOOLEAN {
                value = next(&mut extension)?;
            }
            if value.tag != OCTET_STRING {
                return Err("an extension has no OCTET STRING value".into());
            }
            let mut inner = value.value;
            if oid == BASIC_CONSTRAINTS {
                let mut constraints = take(&mut inner, SEQUENCE)?.value;
                facts.is_ca = match constraints.is_empty() {
                    true => false,
                    false => {
                        let first = next(&mut constraints)?;
                        first.tag == BOOLEAN && first.value == [0xff]
                    }
                };
            } else if oid == KEY_USAGE {
                let bits = take(&mut inner, BIT_STRING)?.value;
                facts.can_sign_certs = bits.get(1).is_some_and(|b| b & KEY_CERT_SIGN != 0);
            }
        }
    }
    Ok(facts)
}

fn take<'a>(input: &mut &'a [u8], tag: u8) -> Result<Tlv<'a>, String> {
    let tlv = next(input)?;
    if tlv.tag != tag {
        return Err(format!(
            "unexpected DER tag {:#04x} where {tag:#04x} belongs",
            tlv.tag
        ));
    }
    Ok(tlv)
}

fn next<'a>(input: &mut &'a [u8]) -> Result<Tlv<'a>, String> {
    let truncated = || "the certificate is truncated or not DER".to_owned();
    let data = *input;
    let (&tag, rest) = data.split_first().ok_or_else(truncated)?;
    if tag & 0x1f == 0x1f {
        return Err("the certificate uses a multi-byte DER tag".into());
    }
    let (&first, rest) = rest.split_first().ok_or_else(truncated)?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err("the certificate has an unsupported DER length".into());
        }
        let (len_bytes, rest) = rest.split_at_checked(n).ok_or_else(truncated)?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    let (value, after) = rest.split_at_checked(len).ok_or_else(truncated)?;
    let header = data.len() - rest.len();
    let whole = data.get(..header + len).ok_or_else(truncated)?;
    *input = after;
    Ok(Tlv { tag, value, whole })
}

/// UTCTime `YYMMDDHHMMSSZ` or GeneralizedTime `YYYYMMDDHHMMSSZ`.
fn parse_time(tlv: &Tlv<'_>) -> Result<OffsetDateTime, String> {
    let bad = || "the certificate's validity is not a UTC time".to_owned();
    let text = std::str::from_utf8(tlv.value).map_err(|_| bad())?;
    let digits = text.strip_suffix('Z').ok_or_else(bad)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (year, rest) = match (tlv.tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy: i32 = digits[..2].parse().map_err(|_| bad())?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (digits[..4].parse().map_err(|_| bad())?, &digits[4..]),
        _ => return Err(bad()),
    };
    let field = |i: usize| {
        rest.get(i..i + 2)
            .and_then(|s| s.parse::<u8>().ok())
            .ok_or_else(bad)
    };
    let month = Month::try_from(field(0)?).map_err(|_| bad())?;
    let date = Date::from_calendar_date(year, month, field(2)?).map_err(|_| bad())?;
    let time = Time::from_hms(field(4)?, field(6)?, field(8)?).map_err(|_| bad())?;
    Ok(PrimitiveDateTime::new(date, time).assume_utc())
}
