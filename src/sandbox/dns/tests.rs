use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;

use super::wire::{Header, MAX_UDP_MESSAGE};
use super::*;

/// A query for `name` (dotted) and `qtype`, class `qclass`, id 7.
fn query(name: &str, qtype: u16, qclass: u16) -> Vec<u8> {
    let mut q = vec![0, 7, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&qclass.to_be_bytes());
    q
}

/// A resolver that knows `allowed.test` and counts its calls.
fn resolver(calls: Arc<AtomicUsize>) -> Resolver {
    Arc::new(move |name: String| {
        calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            match name.as_str() {
                "allowed.test" => Lookup::Found(vec![Ipv4Addr::new(203, 0, 113, 7)]),
                "slow.test" => std::future::pending().await,
                "broken.test" => Lookup::Failed,
                _ => Lookup::NoSuchName,
            }
        })
    })
}

fn rcode(reply: &[u8]) -> u8 {
    reply[3] & 0x0f
}

fn answers(reply: &[u8]) -> u16 {
    u16::from_be_bytes([reply[6], reply[7]])
}

#[tokio::test]
async fn a_questions_go_to_the_resolver() {
    let calls = Arc::new(AtomicUsize::new(0));
    let r = resolver(calls.clone());
    let reply = answer(&query("Allowed.Test", TYPE_A, CLASS_IN), &r)
        .await
        .unwrap();
    assert_eq!((rcode(&reply), answers(&reply)), (0, 1));
    assert_eq!(&reply[reply.len() - 4..], &[203, 0, 113, 7]);
    let reply = answer(&query("denied.test", TYPE_A, CLASS_IN), &r)
        .await
        .unwrap();
    assert_eq!((rcode(&reply), answers(&reply)), (3, 0));
    let reply = answer(&query("broken.test", TYPE_A, CLASS_IN), &r)
        .await
        .unwrap();
    assert_eq!(rcode(&reply), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn other_questions_are_answered_without_a_lookup() {
    let calls = Arc::new(AtomicUsize::new(0));
    let r = resolver(calls.clone());
    let aaaa = answer(&query("allowed.test", TYPE_AAAA, CLASS_IN), &r)
        .await
        .unwrap();
    assert_eq!((rcode(&aaaa), answers(&aaaa)), (0, 0));
    let txt = answer(&query("allowed.test", 16, CLASS_IN), &r)
        .await
        .unwrap();
    assert_eq!(rcode(&txt), 4);
    let chaos = answer(&query("version.bind", 16, 3), &r).await.unwrap();
    assert_eq!(rcode(&chaos), 4);
    let odd = answer(&query("a\u{1}b.test", TYPE_A, CLASS_IN), &r)
        .await
        .unwrap();
    assert_eq!(rcode(&odd), 3);
    assert_eq!(answer(&[0; 5], &r).await, None);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_lookup_that_hangs_is_a_server_failure() {
    let r = resolver(Arc::new(AtomicUsize::new(0)));
    let reply = answer(&query("slow.test", TYPE_A, CLASS_IN), &r)
        .await
        .unwrap();
    assert_eq!(rcode(&reply), 2);
}

#[tokio::test]
async fn serve_answers_on_its_socket_until_shutdown() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        socket,
        resolver(Arc::new(AtomicUsize::new(0))),
        async move {
            let _ = stopped.await;
        },
    ));
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client
        .send_to(&query("allowed.test", TYPE_A, CLASS_IN), addr)
        .await
        .unwrap();
    let mut buf = [0u8; 600];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..2], &[0, 7]);
    assert_eq!(&buf[n - 4..n], &[203, 0, 113, 7]);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn plans() {
    let q = query("allowed.test", TYPE_A, CLASS_IN);
    let Parsed::Query(parsed) = wire::parse(&q) else {
        panic!("not a query")
    };
    assert_eq!(plan(&parsed), Plan::Lookup("allowed.test".to_owned()));
    let header = Header {
        id: 7,
        opcode: 0,
        recursion_desired: true,
    };
    assert_eq!(parsed.header, header);
}

proptest! {
    #[test]
    fn any_bytes_get_a_bounded_reply_or_none(
        packet in proptest::collection::vec(any::<u8>(), 0..600),
        addresses in proptest::collection::vec(any::<u32>(), 0..40),
        outcome in 0u8..3,
    ) {
        let lookup = match outcome {
            0 => Lookup::Found(addresses.into_iter().map(Ipv4Addr::from).collect()),
            1 => Lookup::NoSuchName,
            _ => Lookup::Failed,
        };
        let out = match wire::parse(&packet) {
            Parsed::Ignore => None,
            Parsed::Refuse(header, code) => Some(wire::refusal(header, code)),
            Parsed::Query(query) => Some(match plan(&query) {
                Plan::Reply(code) => wire::answer(&query, code, &[]),
                Plan::Lookup(_) => reply(&query, &lookup),
            }),
        };
        if let Some(out) = out {
            prop_assert!(out.len() <= MAX_UDP_MESSAGE);
            prop_assert_eq!(&out[..2], packet.get(..2).unwrap());
        }
    }

    #[test]
    fn queries_with_a_valid_prefix_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut packet = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        packet.extend(tail);
        let _ = wire::parse(&packet);
    }
}
