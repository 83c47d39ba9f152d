//! Decoder cost on the payload fixtures: bytes in, readings out, one benchmark per fixture file
//! (so per format), through the same `decode::decode` call the pipeline makes. Results are
//! recorded in docs/performance.md. Run: `cargo bench --bench decode`.
//!
//! The fixtures are the project's (`tests/fixtures/payloads/`) and, when there is one, the extra
//! folder the fixture test reads too (`$SENSORCAST_FIXTURES`, else `../shared/fixtures/payloads/`);
//! rejected payloads are measured too, since a hostile publisher makes those the common case.

use std::collections::BTreeSet;
use std::hint::black_box;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion};
use sensorcast::decode::Subscription;
use sensorcast::decode::{self, Format, Message};

#[path = "../tests/common/fixtures.rs"]
mod fixtures;

struct Fixture {
    name: String,
    format: Format,
    topic: String,
    payload: Vec<u8>,
}

fn fixtures() -> Vec<Fixture> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for dir in fixtures::dirs() {
        for path in fixtures::files(&dir) {
            let text = std::fs::read_to_string(&path).expect("fixture readable");
            let v: serde_json::Value = serde_json::from_str(&text).expect("fixture is json");
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            assert!(
                names.insert(name.clone()),
                "two fixtures named {name}: benchmark names must differ"
            );
            out.push(Fixture {
                name,
                format: v["format"].as_str().unwrap().parse().unwrap(),
                topic: v["topic"].as_str().unwrap().to_owned(),
                payload: v["payload"].as_str().unwrap().as_bytes().to_vec(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn bench_fixtures(c: &mut Criterion) {
    let now = Utc::now();
    let mut group = c.benchmark_group("decode");
    for f in fixtures() {
        let sub = Subscription::new("#", f.format);
        let mut state = decode::DecodeState::new();
        group.bench_function(&f.name, |b| {
            b.iter(|| {
                let out = decode::decode(
                    &sub,
                    &mut state,
                    Message {
                        topic: black_box(&f.topic),
                        payload: black_box(&f.payload),
                        received_at: now,
                    },
                    64 * 1024,
                );
                black_box(out)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_fixtures);
criterion_main!(benches);
