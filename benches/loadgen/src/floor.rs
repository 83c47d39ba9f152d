//! The kernel floor: what one `send` of one websocket frame costs on this machine, with no
//! server around it. A writer thread pinned to the server core writes a frame of the size the
//! servers send to `sockets` loopback connections in turn, at the fan-out rate; readers on the
//! harness core drain them. The writer's own CPU time per write is the floor any server with one
//! write per frame pays (on loopback it includes the receive work the kernel charges to the
//! sender, as it does for the servers).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

use crate::procstat;

#[derive(Debug, Clone, Copy)]
pub struct Floor {
    pub writes: u64,
    pub frame_bytes: usize,
    pub us_per_write: f64,
}

pub async fn measure(
    sockets: usize,
    frame_bytes: usize,
    rate: f64,
    secs: f64,
    cpu: usize,
) -> anyhow::Result<Floor> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut readers = Vec::with_capacity(sockets);
    let mut writers = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let c = TcpStream::connect(addr)?;
        let (s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        c.set_nonblocking(true)?;
        readers.push(tokio::net::TcpStream::from_std(c)?);
        writers.push(s);
    }
    let drains: Vec<_> = readers
        .into_iter()
        .map(|mut r| {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            })
        })
        .collect();
    // An unmasked server → client text frame: 0x81, 126, 16-bit length, payload.
    let payload = frame_bytes.saturating_sub(4).max(126);
    let mut frame = vec![0x81u8, 126, (payload >> 8) as u8, payload as u8];
    frame.extend(std::iter::repeat_n(b'x', payload));
    let count = (rate * secs) as u64;
    let frame_len = frame.len();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        procstat::pin_current_thread(cpu);
        let interval = Duration::from_secs_f64(1.0 / rate);
        let start = Instant::now();
        let cpu0 = procstat::thread_cpu_s();
        let mut sleeping = 0.0;
        for k in 0..count {
            let due = start + interval.mul_f64(k as f64);
            let now = Instant::now();
            if due > now + Duration::from_micros(500) {
                // Sleep in ~1 ms steps, like a server woken by the next MQTT batch.
                let c = procstat::thread_cpu_s();
                std::thread::sleep(due - now);
                sleeping += procstat::thread_cpu_s() - c;
            }
            let n = writers.len();
            let w = &mut writers[(k as usize) % n];
            if w.write_all(&frame).is_err() {
                break;
            }
        }
        let used = procstat::thread_cpu_s() - cpu0 - sleeping;
        let _ = tx.send((used, writers));
    });
    let (used, writers) = rx.await?;
    drop(writers);
    for d in drains {
        let _ = d.await;
    }
    Ok(Floor {
        writes: count,
        frame_bytes: frame_len,
        us_per_write: used * 1e6 / count as f64,
    })
}
