//! Compiled only under #[cfg(test)], from the parent module.

use std::sync::Arc;

use tokio::io::AsyncReadExt;

use super::*;

/// Reads `input` through a guard, `step` bytes per inner read; returns what
/// hyper would see and the refusal recorded for each request in turn.
async fn through(input: &[u8], step: usize) -> (Vec<u8>, Vec<Option<u16>>) {
    let inner = Trickle {
        data: input.to_vec(),
        at: 0,
        step,
    };
    let checks = Arc::new(HeadChecks::default());
    let mut guard = HeadGuard::new(inner, checks.clone(), 1024);
    let mut out = Vec::new();
    let mut buf = [0u8; 7];
    loop {
        // A guard that stops reading (after a stand-in) pends: bound it.
        let read =
            tokio::time::timeout(std::time::Duration::from_millis(50), guard.read(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("{e}"),
        }
    }
    let verdicts = (0..guard.heads)
        .map(|_| {
            checks
                .refusal_for_next_request()
                .map(|r| r.status().as_u16())
        })
        .collect();
    (out, verdicts)
}

/// An inner stream that returns at most `step` bytes per read.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    step: usize,
}

impl AsyncRead for Trickle {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = this
            .step
            .min(buf.remaining())
            .min(this.data.len() - this.at);
        buf.put_slice(&this.data[this.at..this.at + n]);
        this.at += n;
        Poll::Ready(Ok(()))
    }
}

const GOOD: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: x\r\n\r\nPOST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn well_formed_pipelines_pass_unchanged_at_every_split() {
    for step in [1, 2, 3, 7, 64, 4096] {
        let (out, verdicts) = through(GOOD, step).await;
        assert_eq!(out, GOOD, "step {step}");
        assert_eq!(verdicts, [None, None, None, None], "step {step}");
    }
}

#[tokio::test]
async fn a_bad_head_becomes_the_stand_in_and_nothing_after_it_is_read() {
    let bad: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n";
    for step in [1, 5, 4096] {
        let (out, verdicts) = through(bad, step).await;
        let mut want = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        want.extend_from_slice(STAND_IN);
        assert_eq!(out, want, "step {step}");
        assert_eq!(verdicts, [None, Some(400)], "step {step}");
    }
}

#[tokio::test]
async fn each_refused_shape_gets_its_status() {
    let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(2000));
    let many: String = (0..MAX_HEADERS + 1)
        .map(|i| format!("X-{i}: 1\r\n"))
        .collect();
    let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
    let cases: [(&[u8], u16); 10] = [
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\nX-Folded: a\r\n b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX-Bad: a\x01b\r\n\r\n", 400),
        (b"GET /\x7f HTTP/1.1\r\n\r\n", 400),
        // Over the guard's 1024-byte limit.
        (long_target.as_bytes(), 431),
        (many.as_bytes(), 431),
    ];
    for (input, status) in cases {
        let (out, verdicts) = through(input, 4096).await;
        assert_eq!(out, STAND_IN, "{}", String::from_utf8_lossy(input));
        assert_eq!(
            verdicts,
            [Some(status)],
            "{}",
            String::from_utf8_lossy(input)
        );
    }
}

#[tokio::test]
async fn equal_content_lengths_are_one() {
    let input: &[u8] = b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nokGET / HTTP/1.1\r\n\r\n";
    let (out, verdicts) = through(input, 3).await;
    assert_eq!(out, input);
    assert_eq!(verdicts, [None, None]);
}

#[tokio::test]
async fn after_connect_or_upgrade_bytes_pass_unchecked() {
    let input: &[u8] =
        b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n\x16\x03\x01not http at all\r\n\r\n";
    let (out, verdicts) = through(input, 4).await;
    assert_eq!(out, input);
    assert_eq!(verdicts, [None]);
    let input: &[u8] =
        b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello";
    let (out, _) = through(input, 4).await;
    assert_eq!(out, input);
}

#[tokio::test]
async fn an_unreadable_chunk_stops_checking_without_changing_bytes() {
    // "zz" is not a chunk size: the guard hands everything on as it was and
    // leaves the verdict to hyper, which fails the body.
    let input: &[u8] = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /x HTTP/1.1\r\nX: \x01\r\n\r\n";
    let (out, verdicts) = through(input, 5).await;
    assert_eq!(out, input);
    assert_eq!(verdicts, [None]);
}

#[tokio::test]
async fn end_of_stream_inside_a_head_hands_on_what_came() {
    let input: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n";
    let (out, verdicts) = through(input, 2).await;
    assert_eq!(out, input);
    assert!(verdicts.is_empty());
}

#[test]
fn chunk_scan_finds_the_end_and_nothing_more() {
    let body = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\nNEXT";
    let (used, state) = scan_chunked(Chunk::Size { size: 0, digits: 0 }, body);
    assert_eq!(used, body.len() - 4);
    assert_eq!(state, Some(Chunk::Done));
    // Too many digits is not read: checking stops.
    let (_, state) = scan_chunked(Chunk::Size { size: 0, digits: 0 }, b"1234567890abcdef0\r\n");
    assert_eq!(state, None);
}
