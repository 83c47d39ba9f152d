//! The framer against rumqttc's own encoder and decoder: frames within the limit come out byte
//! for byte, an oversize PUBLISH comes out as a tombstone rumqttc accepts, whatever the reads.

use super::*;
use bytes::BytesMut;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use rumqttc::{Packet, PingResp, PubAck, Publish, QoS};

const LIMIT: usize = 1024;

fn publish(topic: &str, qos: QoS, pkid: u16, payload_len: usize) -> Vec<u8> {
    let mut p = Publish::new(topic, qos, vec![b'x'; payload_len]);
    p.pkid = pkid;
    let mut buf = BytesMut::new();
    p.write(&mut buf).unwrap();
    buf.to_vec()
}

fn small_frames() -> Vec<u8> {
    let mut buf = BytesMut::new();
    PubAck::new(7).write(&mut buf).unwrap();
    PingResp.write(&mut buf).unwrap();
    buf.to_vec()
}

/// Feeds `chunks` and returns the bytes the guard would write.
fn run(framer: &mut Framer, chunks: &[&[u8]]) -> Result<Vec<u8>, FrameError> {
    let mut written = Vec::new();
    let mut pieces = Vec::new();
    for chunk in chunks {
        pieces.clear();
        framer.feed(chunk, &mut pieces)?;
        for p in &pieces {
            match p {
                Piece::Input(r) => written.extend_from_slice(&chunk[r.clone()]),
                Piece::Held(buf, n) => written.extend_from_slice(&buf[..*n as usize]),
                Piece::Tombstone(t) => written.extend_from_slice(t),
            }
        }
    }
    Ok(written)
}

/// Every packet rumqttc reads from `bytes` with the same limit (it must read them all).
fn packets(bytes: &[u8]) -> Vec<Packet> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while !buf.is_empty() {
        out.push(Packet::read(&mut buf, LIMIT).expect("rumqttc reads what the guard wrote"));
    }
    out
}

fn split_everywhere(stream: &[u8], check: impl Fn(Vec<u8>)) {
    for at in 0..=stream.len() {
        let (a, b) = stream.split_at(at);
        check(run(&mut Framer::new(LIMIT, Marker([1; 16])), &[a, b]).unwrap());
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    check(run(&mut Framer::new(LIMIT, Marker([1; 16])), &bytes).unwrap());
}

#[test]
fn frames_within_the_limit_pass_unchanged_however_they_are_split() {
    let mut stream = small_frames();
    stream.extend(publish("sensors/a", QoS::AtLeastOnce, 3, LIMIT - 20));
    stream.extend(small_frames());
    split_everywhere(&stream, |out| assert_eq!(out, stream));
    // One read of whole frames is one piece: the hot path writes what it read.
    let mut pieces = Vec::new();
    let mut f = Framer::new(LIMIT, Marker([1; 16]));
    f.feed(&stream, &mut pieces).unwrap();
    assert_eq!(pieces, vec![Piece::Input(0..stream.len())]);
}

#[test]
fn an_oversize_publish_becomes_a_tombstone_in_its_place() {
    let marker = Marker([9; 16]);
    for (qos, pkid) in [(QoS::AtLeastOnce, 41), (QoS::AtMostOnce, 0)] {
        let mut stream = small_frames();
        stream.extend(publish("sensors/big", qos, pkid, 5 * LIMIT));
        stream.extend(publish("sensors/next", qos, pkid + 1, 10));
        split_everywhere(&stream, |out| {
            let got = packets(&out);
            assert_eq!(got.len(), 4, "{got:?}");
            assert_eq!(got[0], Packet::PubAck(PubAck::new(7)));
            let Packet::Publish(t) = &got[2] else {
                panic!("{got:?}")
            };
            assert_eq!(
                (t.topic.as_str(), t.qos, t.pkid),
                ("sensors/big", qos, pkid)
            );
            assert_eq!(
                marker.oversize(&t.payload),
                None,
                "another process's marker"
            );
            let Packet::Publish(next) = &got[3] else {
                panic!("{got:?}")
            };
            assert_eq!(
                (next.topic.as_str(), next.payload.len()),
                ("sensors/next", 10)
            );
        });
        let out = run(&mut Framer::new(LIMIT, marker), &[&stream]).unwrap();
        let Packet::Publish(t) = &packets(&out)[2] else {
            panic!()
        };
        assert_eq!(marker.oversize(&t.payload), Some(5 * LIMIT as u64));
    }
}

#[test]
fn a_tombstone_never_exceeds_the_limit_and_its_topic_stays_utf8() {
    // A 3-byte character straddles the cut.
    let topic = format!("{}€tail", "t".repeat(LIMIT - 30));
    let stream = publish(&topic, QoS::AtLeastOnce, 5, 2 * LIMIT);
    let out = run(&mut Framer::new(LIMIT, Marker([1; 16])), &[&stream]).unwrap();
    assert!(out.len() <= LIMIT + 3, "{}", out.len());
    let Packet::Publish(t) = &packets(&out)[0] else {
        panic!()
    };
    assert!(topic.starts_with(&t.topic) && t.topic.len() < topic.len());
    assert_eq!(t.pkid, 5);
}

#[test]
fn an_oversize_control_packet_or_a_broken_header_is_an_error() {
    // SUBACK (type 9) of 2000 bytes.
    let mut f = Framer::new(LIMIT, Marker([1; 16]));
    let err = run(&mut f, &[&[0x90, 0xd0, 0x0f, 0, 1]]).unwrap_err();
    assert_eq!(
        err,
        FrameError::OversizeControl {
            kind: 9,
            size: 2000
        }
    );
    let mut f = Framer::new(LIMIT, Marker([1; 16]));
    let err = run(&mut f, &[&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]]).unwrap_err();
    assert_eq!(err, FrameError::BadLength);
    // A topic length beyond the frame.
    let mut f = Framer::new(LIMIT, Marker([1; 16]));
    let err = run(&mut f, &[&[0x32, 0xd0, 0x0f, 0xff, 0xff]]).unwrap_err();
    assert_eq!(err, FrameError::BadPublish);
}

#[test]
fn only_this_marker_with_a_size_is_a_tombstone() {
    let m = Marker::random();
    assert_eq!(m.oversize(&m.payload(77)), Some(77));
    assert_eq!(m.oversize(&m.payload(77)[..23]), None);
    assert_eq!(m.oversize(b"{\"temperature\": 4}"), None);
    assert_ne!(m, Marker::random());
}

/// Failures are kept beside this file, as the decoders' property tests keep theirs.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Any mix of frames, any split: the small ones come through whole and in order, each
    /// oversize PUBLISH becomes one tombstone in its place.
    #[test]
    fn any_stream_any_split(
        sizes in prop::collection::vec(0usize..3 * LIMIT, 1..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let marker = Marker([3; 16]);
        let mut stream = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            stream.extend(publish(&format!("s/{i}"), QoS::AtLeastOnce, i as u16 + 1, *size));
        }
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        at.sort();
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut from = 0;
        for a in at.into_iter().chain([stream.len()]) {
            chunks.push(&stream[from..a]);
            from = a;
        }
        let out = run(&mut Framer::new(LIMIT, marker), &chunks).unwrap();
        let got = packets(&out);
        prop_assert_eq!(got.len(), sizes.len());
        for (i, (p, size)) in got.iter().zip(&sizes).enumerate() {
            let Packet::Publish(p) = p else { panic!("{p:?}") };
            prop_assert_eq!(&p.topic, &format!("s/{i}"));
            prop_assert_eq!(p.pkid, i as u16 + 1);
            // rumqttc's limit is on the remaining length: topic (2 + 3) + pkid (2) + payload.
            if size + 7 > LIMIT {
                prop_assert_eq!(marker.oversize(&p.payload), Some(*size as u64));
            } else {
                prop_assert_eq!(p.payload.len(), *size);
            }
        }
    }
}
