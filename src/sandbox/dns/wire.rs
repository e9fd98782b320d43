//! DNS messages (RFC 1035): reading a query, writing an answer.
//!
//! Only what a stub resolver sends is read: a header and one question.
//! Anything after the question (an EDNS OPT record, say) is ignored, and
//! the answer carries no EDNS, so it stays within the classic 512 bytes.
//! Pure functions: no I/O, no panics on any input.

use std::net::Ipv4Addr;

/// Bytes in a message header.
pub const HEADER_LEN: usize = 12;
/// Longest label (RFC 1035 2.3.4); the two top bits of a length byte are
/// then free, and a query using them (compression) is refused.
pub const MAX_LABEL_LEN: usize = 63;
/// Longest name on the wire, length bytes and the final zero included
/// (RFC 1035 2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// Longest question: the name, then type and class.
pub const MAX_QUESTION_LEN: usize = MAX_NAME_LEN + 4;
/// Largest UDP message without EDNS (RFC 1035 4.2.1). Answers never
/// exceed it.
pub const MAX_UDP_MESSAGE: usize = 512;
/// Bytes of one A record: a pointer to the question's name, type, class,
/// TTL, length and the address.
pub const A_RECORD_LEN: usize = 16;
/// Addresses given per answer. Eight always fit beside the longest
/// question, so an answer is never truncated: a truncated answer (TC) makes
/// clients retry over TCP port 53, which in the sandbox reaches the
/// transparent proxy, not a DNS server, and the lookup would fail where a
/// few addresses serve every client.
pub const MAX_ANSWERS: u16 = 8;
/// Time to live of an answer, in seconds: short, so that a config change
/// (a host leaving egress) reaches clients' caches quickly.
pub const TTL_SECONDS: u32 = 30;

const _: () =
    assert!(HEADER_LEN + MAX_QUESTION_LEN + MAX_ANSWERS as usize * A_RECORD_LEN <= MAX_UDP_MESSAGE);

/// Query type A (an IPv4 address).
pub const TYPE_A: u16 = 1;
/// Query type AAAA (an IPv6 address).
pub const TYPE_AAAA: u16 = 28;
/// Class IN (the Internet).
pub const CLASS_IN: u16 = 1;
/// The standard query opcode; the only one answered.
const OPCODE_QUERY: u8 = 0;
/// A compression pointer to offset 12: the question's name.
const NAME_POINTER: [u8; 2] = [0xc0, 0x0c];

/// Response codes keyhole uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    /// The answer (possibly no records).
    NoError,
    /// The query cannot be read.
    FormErr,
    /// The lookup failed or took too long.
    ServFail,
    /// The name does not exist (or keyhole's policy does not allow it).
    NxDomain,
    /// The kind of query is not supported.
    NotImp,
}

// === impl Rcode ===

impl Rcode {
    /// The 4-bit code.
    pub fn code(self) -> u8 {
        match self {
            Rcode::NoError => 0,
            Rcode::FormErr => 1,
            Rcode::ServFail => 2,
            Rcode::NxDomain => 3,
            Rcode::NotImp => 4,
        }
    }
}

/// The parts of a query's header that its answer repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The query's id.
    pub id: u16,
    /// The query's opcode.
    pub opcode: u8,
    /// The RD (recursion desired) bit.
    pub recursion_desired: bool,
}

/// A readable query with one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query<'a> {
    /// Its header.
    pub header: Header,
    /// The name, lower-cased, labels joined by dots, no final dot; `None`
    /// when it is the root or a label holds a byte other than an ASCII
    /// letter, digit, `-` or `_` (no host keyhole could reach is named so).
    pub name: Option<String>,
    /// The question's type.
    pub qtype: u16,
    /// The question's class.
    pub qclass: u16,
    /// The question as sent, echoed in the answer byte for byte: resolvers
    /// that randomise the letter case of names check that it comes back.
    question: &'a [u8],
}

/// What a packet is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not a query: shorter than a header, or a response. No reply, so
    /// that two answerers never bounce messages between them.
    Ignore,
    /// A query keyhole cannot read or does not support: answer with this
    /// code and no question.
    Refuse(Header, Rcode),
    /// A query to answer.
    Query(Query<'a>),
}

/// Reads a packet.
pub fn parse(packet: &[u8]) -> Parsed<'_> {
    let Some(head) = packet.get(..HEADER_LEN) else {
        return Parsed::Ignore;
    };
    let byte = |i: usize| head.get(i).copied().unwrap_or(0);
    let flags = byte(2);
    if flags & 0x80 != 0 {
        return Parsed::Ignore;
    }
    let header = Header {
        id: u16::from_be_bytes([byte(0), byte(1)]),
        opcode: (flags >> 3) & 0x0f,
        recursion_desired: flags & 0x01 != 0,
    };
    if header.opcode != OPCODE_QUERY {
        return Parsed::Refuse(header, Rcode::NotImp);
    }
    if u16::from_be_bytes([byte(4), byte(5)]) != 1 {
        return Parsed::Refuse(header, Rcode::FormErr);
    }
    match question(packet, header) {
        Some(query) => Parsed::Query(query),
        None => Parsed::Refuse(header, Rcode::FormErr),
    }
}

/// The query whose question follows the header; `None` when the question
/// is cut short, too long or compressed.
fn question(packet: &[u8], header: Header) -> Option<Query<'_>> {
    let mut labels = Vec::new();
    let mut pos = HEADER_LEN;
    loop {
        let len = usize::from(*packet.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        if len > MAX_LABEL_LEN {
            return None;
        }
        labels.push(packet.get(pos..pos + len)?);
        pos += len;
        if pos - HEADER_LEN >= MAX_NAME_LEN {
            return None;
        }
    }
    let tail = packet.get(pos..pos + 4)?;
    let qtype = u16::from_be_bytes([*tail.first()?, *tail.get(1)?]);
    let qclass = u16::from_be_bytes([*tail.get(2)?, *tail.get(3)?]);
    Some(Query {
        header,
        name: name(&labels),
        qtype,
        qclass,
        question: packet.get(HEADER_LEN..pos + 4)?,
    })
}

/// The dotted, lower-cased name, when every byte may be in a host name.
fn name(labels: &[&[u8]]) -> Option<String> {
    if labels.is_empty() {
        return None;
    }
    let mut name = String::new();
    for label in labels {
        if !name.is_empty() {
            name.push('.');
        }
        for &b in *label {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return None;
            }
            name.push(char::from(b.to_ascii_lowercase()));
        }
    }
    Some(name)
}

/// A header-only answer: the code, no question, no records.
pub fn refusal(header: Header, rcode: Rcode) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    write_header(&mut out, header, rcode, 0, 0);
    out
}

/// The answer to `query`: its question, then up to [`MAX_ANSWERS`] A
/// records (only with [`Rcode::NoError`]).
pub fn answer(query: &Query<'_>, rcode: Rcode, addresses: &[Ipv4Addr]) -> Vec<u8> {
    let records: &[Ipv4Addr] = match rcode {
        Rcode::NoError => addresses
            .get(..usize::from(MAX_ANSWERS))
            .unwrap_or(addresses),
        _ => &[],
    };
    let count = u16::try_from(records.len()).unwrap_or(0);
    let mut out = Vec::with_capacity(MAX_UDP_MESSAGE);
    write_header(&mut out, query.header, rcode, 1, count);
    out.extend_from_slice(query.question);
    for address in records.iter().take(usize::from(count)) {
        out.extend_from_slice(&NAME_POINTER);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL_SECONDS.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&address.octets());
    }
    out
}

/// Header of an answer: QR set, the query's opcode and RD, RA set (keyhole
/// looks names up for the client), the code and the counts.
fn write_header(out: &mut Vec<u8>, header: Header, rcode: Rcode, questions: u16, answers: u16) {
    out.extend_from_slice(&header.id.to_be_bytes());
    out.push(0x80 | ((header.opcode & 0x0f) << 3) | u8::from(header.recursion_desired));
    out.push(0x80 | rcode.code());
    out.extend_from_slice(&questions.to_be_bytes());
    out.extend_from_slice(&answers.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dig +norecurse`-like query bytes for `name` and `qtype`, id 0x1234,
    /// RD set, with an EDNS OPT record after the question.
    fn query(name: &[&[u8]], qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        for label in name {
            q.push(label.len() as u8);
            q.extend_from_slice(label);
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        // OPT: root name, type 41, payload 1232, no flags, no data.
        q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        q
    }

    fn parsed(packet: &[u8]) -> Query<'_> {
        match parse(packet) {
            Parsed::Query(q) => q,
            other => panic!("not a query: {other:?}"),
        }
    }

    #[test]
    fn an_a_query_is_read_and_its_name_lower_cased() {
        let packet = query(&[b"Api", b"GitHub", b"com"], TYPE_A);
        let q = parsed(&packet);
        assert_eq!(q.name.as_deref(), Some("api.github.com"));
        assert_eq!((q.qtype, q.qclass), (TYPE_A, CLASS_IN));
        assert_eq!(
            q.header,
            Header {
                id: 0x1234,
                opcode: 0,
                recursion_desired: true
            }
        );
    }

    #[test]
    fn the_answer_byte_for_byte() {
        let packet = query(&[b"Ab", b"c"], TYPE_A);
        let q = parsed(&packet);
        let out = answer(
            &q,
            Rcode::NoError,
            &[Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 7)],
        );
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0,
            // The question as sent (case kept).
            2, b'A', b'b', 1, b'c', 0, 0, 1, 0, 1,
            0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 1,
            0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 198, 51, 100, 7,
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn nxdomain_and_empty_answers_carry_the_question_only() {
        let packet = query(&[b"evil", b"test"], TYPE_A);
        let q = parsed(&packet);
        let out = answer(&q, Rcode::NxDomain, &[Ipv4Addr::LOCALHOST]);
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            0x12, 0x34, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0,
            4, b'e', b'v', b'i', b'l', 4, b't', b'e', b's', b't', 0, 0, 1, 0, 1,
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn at_most_eight_addresses_and_never_more_than_512_bytes() {
        let long: Vec<u8> = vec![b'a'; 63];
        let packet = query(&[&long, &long, &long, &long[..61]], TYPE_A);
        let q = parsed(&packet);
        let many: Vec<Ipv4Addr> = (0..100).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let out = answer(&q, Rcode::NoError, &many);
        assert_eq!(&out[6..8], &[0, 8]);
        assert_eq!(out[2] & 0x02, 0, "never truncated");
        assert!(out.len() <= MAX_UDP_MESSAGE, "{}", out.len());
    }

    #[test]
    fn names_too_long_or_compressed_or_cut_are_format_errors() {
        let long: Vec<u8> = vec![b'a'; 63];
        // 4 * 64 + 1 = 257 bytes on the wire: over 255.
        let packet = query(&[&long, &long, &long, &long], TYPE_A);
        assert!(matches!(parse(&packet), Parsed::Refuse(_, Rcode::FormErr)));
        let mut pointer = query(&[b"a"], TYPE_A);
        pointer[12] = 0xc0;
        assert!(matches!(parse(&pointer), Parsed::Refuse(_, Rcode::FormErr)));
        let cut = &query(&[b"abc"], TYPE_A)[..18];
        assert!(matches!(parse(cut), Parsed::Refuse(_, Rcode::FormErr)));
        let mut two = query(&[b"a"], TYPE_A);
        two[5] = 2;
        assert!(matches!(parse(&two), Parsed::Refuse(_, Rcode::FormErr)));
    }

    #[test]
    fn responses_and_scraps_are_ignored_other_opcodes_not_implemented() {
        assert_eq!(parse(&[0; 11]), Parsed::Ignore);
        let mut response = query(&[b"a"], TYPE_A);
        response[2] |= 0x80;
        assert_eq!(parse(&response), Parsed::Ignore);
        let mut notify = query(&[b"a"], TYPE_A);
        notify[2] = 4 << 3;
        let Parsed::Refuse(header, Rcode::NotImp) = parse(&notify) else {
            panic!("not refused");
        };
        assert_eq!(
            refusal(header, Rcode::NotImp),
            [0x12, 0x34, 0x80 | (4 << 3), 0x84, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn names_with_bytes_no_host_has_are_unusable() {
        let packet = query(&[b"a b", b"test"], TYPE_A);
        assert_eq!(parsed(&packet).name, None);
        let root = query(&[], TYPE_A);
        assert_eq!(parsed(&root).name, None);
        let service = query(&[b"_srv", b"x-1"], TYPE_A);
        assert_eq!(parsed(&service).name.as_deref(), Some("_srv.x-1"));
    }
}
