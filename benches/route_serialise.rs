//! Benchmarks of the pure code every reading passes through after decoding: routing (sensor →
//! unit, and the rooms of the reading) and serialising the `sensor:reading` payload with
//! serde_json, as socketioxide does once per broadcast. Run with `cargo bench --bench
//! route_serialise`. The registry is the load generator's: sensors s{i} → unit u{i%U} → 10
//! sites → one organization.

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use sensorcast::core::reading::SensorReading;
use sensorcast::core::registry::Registry;
use sensorcast::core::rooms;

fn registry(sensors: usize, units: usize) -> Registry {
    let mut t = String::from("[[org]]\nid = \"o0\"\n");
    for s in 0..10 {
        t += &format!("[[site]]\nid = \"st{s}\"\norg = \"o0\"\n");
    }
    for u in 0..units {
        t += &format!("[[unit]]\nid = \"u{u}\"\nsite = \"st{}\"\n", u % 10);
    }
    for s in 0..sensors {
        t += &format!("[[sensor]]\nid = \"s{s}\"\nunit = \"u{}\"\n", s % units);
    }
    Registry::parse(&t, Path::new("bench-registry.toml")).expect("bench registry")
}

fn reading(extra: usize) -> SensorReading {
    let t = Utc.timestamp_millis_opt(1_764_000_000_123).unwrap();
    SensorReading {
        id: "19ab3f0c2d1-u42-1234".into(),
        seq: 1234,
        unit_id: Arc::from("u42"),
        site_id: Arc::from("st2"),
        organization_id: Arc::from("o0"),
        device_id: "s42".into(),
        temperature: 4.0000123,
        humidity: Some(50.0),
        battery: Some(90.0),
        signal_strength: None,
        recorded_at: t,
        received_at: t,
        source: "json",
        extra: (0..extra)
            .map(|i| (format!("m{i}"), i as f64 * 0.5))
            .collect(),
        retained: false,
        door: None,
    }
}

fn bench_route(c: &mut Criterion) {
    let reg = registry(1000, 100);
    let ids: Vec<String> = (0..1000).map(|i| format!("s{i}")).collect();
    let mut g = c.benchmark_group("route");
    let mut i = 0usize;
    g.bench_function("route (registry lookup)", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            black_box(reg.unit_for_sensor(black_box(&ids[i])).cloned())
        })
    });
    g.bench_function("route unknown sensor", |b| {
        b.iter(|| black_box(reg.unit_for_sensor(black_box("not-registered")).cloned()))
    });
    let unit = reg
        .unit_for_sensor("s42")
        .cloned()
        .expect("s42 is registered");
    g.bench_function("reading_rooms (3 room names)", |b| {
        b.iter(|| black_box(rooms::reading_rooms(black_box(&unit))))
    });
    g.bench_function("route + reading_rooms", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            let unit = reg.unit_for_sensor(black_box(&ids[i])).expect("registered");
            black_box(rooms::reading_rooms(unit))
        })
    });
    g.finish();
}

fn bench_serialise(c: &mut Criterion) {
    let mut g = c.benchmark_group("serialise");
    let r = reading(0);
    let bytes = serde_json::to_vec(&r).expect("serialise").len();
    g.throughput(criterion::Throughput::Bytes(bytes as u64));
    g.bench_function("sensor:reading to_vec", |b| {
        b.iter(|| black_box(serde_json::to_vec(black_box(&r)).expect("serialise")))
    });
    g.bench_function("sensor:reading to_writer (reused buffer)", |b| {
        let mut buf = Vec::with_capacity(512);
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(&r)).expect("serialise");
            black_box(buf.len())
        })
    });
    let r4 = reading(4);
    g.bench_function("sensor:reading with 4 extra to_vec", |b| {
        b.iter(|| black_box(serde_json::to_vec(black_box(&r4)).expect("serialise")))
    });
    g.bench_function("recordedAt as RFC 3339 (one timestamp)", |b| {
        b.iter(|| {
            black_box(black_box(r.recorded_at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        })
    });
    g.bench_function("build SensorReading (clone)", |b| {
        b.iter_batched(|| (), |_| black_box(r.clone()), BatchSize::SmallInput)
    });
    g.finish();
}

criterion_group!(benches, bench_route, bench_serialise);
criterion_main!(benches);
