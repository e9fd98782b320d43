//! Leaf certificates: issuing one for a host seen for the first time (a
//! cache miss: one ECDSA P-256 signature plus a `ServerConfig`) against
//! finding the cached one.
//!
//! The miss benchmark asks for a new host name on every iteration, so every
//! iteration issues; the cache evicts the oldest host when full, as it does
//! in a long-running proxy. Both go through the same `block_on` of a
//! current-thread runtime, whose cost is in both figures.
//!
//! Run with `cargo bench --bench leaf`; see docs/PERFORMANCE.md.

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use keyhole::host::Host;
use keyhole::tls::leaf::DEFAULT_LEAF_CACHE_CAPACITY;
use keyhole::tls::{CertificateAuthority, LeafCache};

fn leaf(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(dir.path()).expect("ca");
    let cache = LeafCache::new(Arc::new(ca), DEFAULT_LEAF_CACHE_CAPACITY).expect("cache");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");

    let mut group = c.benchmark_group("leaf");
    let mut n: u64 = 0;
    group.bench_function("issue (miss)", |b| {
        b.iter(|| {
            n += 1;
            let host = Host::parse(&format!("h{n}.bench.test")).expect("host");
            let config = rt.block_on(cache.server_config(&host)).expect("issue");
            black_box(config)
        })
    });
    let misses = cache.misses();
    assert!(misses >= n, "every miss iteration must issue");

    let cached = Host::parse("cached.bench.test").expect("host");
    rt.block_on(cache.server_config(&cached)).expect("issue");
    group.bench_function("cached (hit)", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(cache.server_config(black_box(&cached)))
                    .expect("hit"),
            )
        })
    });
    assert_eq!(cache.misses(), misses + 1, "hits must not issue");
    group.finish();
}

criterion_group!(benches, leaf);
criterion_main!(benches);
