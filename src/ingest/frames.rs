//! The framing guard's parser for the broker → client byte stream: where each MQTT frame
//! starts and ends, and what to do with a frame over the framing limit. rumqttc refuses such a
//! frame by dropping the connection (upstream issue bytebeamio/rumqtt#614), so a QoS 1 message
//! of that size comes back on every reconnect and stops ingest for good. This parser lets every
//! frame within the limit through byte for byte, and replaces an oversize PUBLISH with a
//! *tombstone*: a small PUBLISH with the same flags, topic and packet id whose payload is this
//! process's [`Marker`] and the size of the discarded payload. rumqttc delivers the tombstone
//! in stream order, the ingest loop counts it as `too_large` and acknowledges it like any
//! message, so the broker forgets it and PUBACKs keep their order.
//!
//! Pure and incremental: [`Framer::feed`] takes whatever a read returned (frames may be split
//! anywhere) and says which bytes to forward and which tombstones to write between them. The
//! oversize payload is skipped as it streams, so memory stays bounded by the read buffer plus
//! at most one topic (64 KiB), whatever the message size.

use std::ops::Range;

/// MQTT control packet type 3.
const PUBLISH: u8 = 3;
/// A remaining length takes at most 4 bytes (MQTT 3.1.1 §2.2.3).
const MAX_LENGTH_BYTES: usize = 4;

/// What a tombstone's payload starts with: random per process, so no publisher can forge one.
/// (fastrand is seeded from std's `RandomState`, i.e. the OS; a forged tombstone could only
/// make a rejected message count as `too_large` instead of another reason.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker([u8; 16]);

impl Marker {
    pub fn random() -> Marker {
        let mut m = [0u8; 16];
        m.iter_mut().for_each(|b| *b = fastrand::u8(..));
        Marker(m)
    }

    /// The discarded payload's size if `payload` is one of our tombstones.
    pub fn oversize(&self, payload: &[u8]) -> Option<u64> {
        let rest = payload.strip_prefix(&self.0[..])?;
        Some(u64::from_be_bytes(rest.try_into().ok()?))
    }

    fn payload(&self, size: u64) -> [u8; 24] {
        let mut p = [0u8; 24];
        p[..16].copy_from_slice(&self.0);
        p[16..].copy_from_slice(&size.to_be_bytes());
        p
    }
}

/// One step of the output, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Forward these bytes of the input just fed.
    Input(Range<usize>),
    /// Forward header bytes held back from an earlier input (a header split across reads).
    Held([u8; 1 + MAX_LENGTH_BYTES], u8),
    /// Write this tombstone (the whole frame).
    Tombstone(Vec<u8>),
}

/// Why the stream cannot be passed on; the guard drops the connection and reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the broker sent a malformed remaining length")]
    BadLength,
    #[error("the broker sent a packet of type {kind} and {size} bytes, over mqtt.max_packet_size")]
    OversizeControl { kind: u8, size: usize },
    #[error("the broker sent a PUBLISH whose topic does not fit in it")]
    BadPublish,
}

#[derive(Debug)]
enum State {
    /// Reading a fixed header: the type byte and the remaining length, `len` bytes so far, of
    /// which `held` came from earlier inputs (not yet forwarded).
    Header {
        buf: [u8; 1 + MAX_LENGTH_BYTES],
        len: usize,
        held: usize,
    },
    /// Forwarding the rest of a frame within the limit.
    Forward { left: usize },
    /// An oversize PUBLISH: collecting its topic length, topic and packet id into `head`
    /// (`want` bytes in all, known once `sized`); `left` bytes of the frame follow `head`.
    Head {
        flags: u8,
        left: usize,
        head: Vec<u8>,
        want: usize,
        sized: bool,
    },
    /// Discarding the rest of an oversize PUBLISH, then writing its tombstone.
    Skip { left: usize, tombstone: Vec<u8> },
}

const HEADER: State = State::Header {
    buf: [0; 1 + MAX_LENGTH_BYTES],
    len: 0,
    held: 0,
};

/// The parser of one connection's broker → client direction.
pub struct Framer {
    limit: usize,
    marker: Marker,
    state: State,
}

impl Framer {
    /// `limit`: the largest remaining length let through (rumqttc's `max_incoming_packet_size`,
    /// checked the way rumqttc checks it).
    pub fn new(limit: usize, marker: Marker) -> Framer {
        Framer {
            limit,
            marker,
            state: HEADER,
        }
    }

    /// Consumes `input`, appending to `out` what to write, in order. `out` is not cleared.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<Piece>) -> Result<(), FrameError> {
        let (limit, marker) = (self.limit, self.marker);
        let mut pos = 0;
        // Start of the forward run in `input` not yet pushed to `out`.
        let mut run: Option<usize> = None;
        while pos < input.len() {
            match &mut self.state {
                State::Header { buf, len, held } => {
                    if *len == 0 {
                        run.get_or_insert(pos);
                    }
                    buf[*len] = input[pos];
                    *len += 1;
                    pos += 1;
                    let Some(remaining) = remaining_length(&buf[1..*len])? else {
                        continue;
                    };
                    let (buf, len, held) = (*buf, *len, *held);
                    // Where this header's bytes in `input` begin (0 if it began earlier).
                    let start = pos - (len - held);
                    if remaining <= limit {
                        if held > 0 {
                            out.push(Piece::Held(buf, held as u8));
                            run = Some(start);
                        }
                        self.state = State::Forward { left: remaining };
                    } else if buf[0] >> 4 == PUBLISH {
                        flush(&mut run, start, out);
                        self.state = State::Head {
                            flags: buf[0],
                            left: remaining,
                            head: Vec::new(),
                            want: 2,
                            sized: false,
                        };
                    } else {
                        return Err(FrameError::OversizeControl {
                            kind: buf[0] >> 4,
                            size: remaining,
                        });
                    }
                }
                State::Forward { left } => {
                    run.get_or_insert(pos);
                    let n = (*left).min(input.len() - pos);
                    *left -= n;
                    pos += n;
                }
                State::Head {
                    flags,
                    left,
                    head,
                    want,
                    sized,
                } => {
                    let n = (*want - head.len()).min(input.len() - pos).min(*left);
                    head.extend_from_slice(&input[pos..pos + n]);
                    *left -= n;
                    pos += n;
                    if !*sized && head.len() == 2 {
                        // The topic length is known; the packet id follows it at QoS 1 and 2.
                        *sized = true;
                        let pkid_len = if (*flags >> 1) & 3 > 0 { 2 } else { 0 };
                        *want += u16::from_be_bytes([head[0], head[1]]) as usize + pkid_len;
                        if *want - head.len() > *left {
                            return Err(FrameError::BadPublish);
                        }
                    }
                    if head.len() < *want {
                        if *left == 0 {
                            return Err(FrameError::BadPublish);
                        }
                        continue;
                    }
                    let tombstone = tombstone(limit, &marker, *flags, head, *left);
                    self.state = State::Skip {
                        left: *left,
                        tombstone,
                    };
                }
                State::Skip { left, .. } => {
                    let n = (*left).min(input.len() - pos);
                    *left -= n;
                    pos += n;
                }
            }
            self.settle(out);
        }
        match &mut self.state {
            State::Header { len, held, .. } if *len > 0 => {
                // A header split by the end of this input: hold its bytes back.
                flush(&mut run, pos - (*len - *held), out);
                *held = *len;
            }
            _ => flush(&mut run, pos, out),
        }
        Ok(())
    }

    /// Ends a frame whose last byte was consumed (a tombstone is written then).
    fn settle(&mut self, out: &mut Vec<Piece>) {
        match &mut self.state {
            State::Forward { left: 0 } => self.state = HEADER,
            State::Skip { left: 0, tombstone } => {
                out.push(Piece::Tombstone(std::mem::take(tombstone)));
                self.state = HEADER;
            }
            _ => {}
        }
    }
}

/// The small PUBLISH that stands for an oversize one: `head` is its topic length, topic and
/// packet id; `left` the payload bytes that will be skipped. The topic is cut (at a character
/// boundary) if the tombstone would otherwise exceed the limit itself.
fn tombstone(limit: usize, marker: &Marker, flags: u8, head: &[u8], left: usize) -> Vec<u8> {
    let pkid_len = if (flags >> 1) & 3 > 0 { 2 } else { 0 };
    let topic_end = head.len() - pkid_len;
    // rumqttc refuses a topic that is not UTF-8: never hand it one.
    let topic = String::from_utf8_lossy(&head[2..topic_end]);
    let room = limit.saturating_sub(2 + pkid_len + 24);
    let mut cut = topic.len().min(room).min(u16::MAX as usize);
    while !topic.is_char_boundary(cut) {
        cut -= 1;
    }
    let topic = &topic.as_bytes()[..cut];
    let remaining = 2 + topic.len() + pkid_len + 24;
    let mut frame = Vec::with_capacity(1 + MAX_LENGTH_BYTES + remaining);
    frame.push(flags);
    let mut n = remaining;
    loop {
        let byte = (n % 128) as u8;
        n /= 128;
        frame.push(if n > 0 { byte | 0x80 } else { byte });
        if n == 0 {
            break;
        }
    }
    frame.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    frame.extend_from_slice(topic);
    frame.extend_from_slice(&head[topic_end..]);
    frame.extend_from_slice(&marker.payload(left as u64));
    frame
}

fn flush(run: &mut Option<usize>, end: usize, out: &mut Vec<Piece>) {
    if let Some(start) = run.take() {
        if end > start {
            out.push(Piece::Input(start..end));
        }
    }
}

/// The remaining length encoded in `bytes` if they hold all of it, `None` if more are needed.
fn remaining_length(bytes: &[u8]) -> Result<Option<usize>, FrameError> {
    let mut value = 0usize;
    for (i, b) in bytes.iter().enumerate() {
        value += ((b & 0x7f) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    if bytes.len() >= MAX_LENGTH_BYTES {
        return Err(FrameError::BadLength);
    }
    Ok(None)
}

#[cfg(test)]
#[path = "frames_tests.rs"]
mod tests;
