//! Decoder cost on the shared fixtures: bytes in, readings out, one benchmark per fixture file
//! (so per format), through the same `decode::decode` call the pipeline makes. Results are
//! recorded in docs/performance.md. Run: `cargo bench --bench decode`.
//!
//! The fixtures are read from `../shared/fixtures/payloads/` (or `$SENSORCAST_FIXTURES`);
//! rejected payloads are measured too, since a hostile publisher makes those the common case.

use std::hint::black_box;
use std::path::PathBuf;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion};
use sensorcast::decode::Subscription;
use sensorcast::decode::{self, Format};

struct Fixture {
    name: String,
    format: Format,
    topic: String,
    payload: Vec<u8>,
}

fn fixtures() -> Vec<Fixture> {
    let dir = std::env::var_os("SENSORCAST_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/payloads")
        });
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixtures folder {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("read_dir entry").path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("fixture readable");
        let v: serde_json::Value = serde_json::from_str(&text).expect("fixture is json");
        out.push(Fixture {
            name: path.file_stem().unwrap().to_string_lossy().into_owned(),
            format: v["format"].as_str().unwrap().parse().unwrap(),
            topic: v["topic"].as_str().unwrap().to_owned(),
            payload: v["payload"].as_str().unwrap().as_bytes().to_vec(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(!out.is_empty(), "no fixtures in {}", dir.display());
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
                    black_box(&f.topic),
                    black_box(&f.payload),
                    now,
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
