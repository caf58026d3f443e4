//! TCP bulk throughput: a sink that counts and discards bytes, and a sender that streams a
//! bounded number of bytes (bounded in time too) through a topology into it. Throughput is what
//! the sink received divided by the time from the first write to the sink's last byte, so bytes
//! still buffered inside a proxy when the sender stops are not counted.

pub mod suite;

use anyhow::Context;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

/// Size of each write and each read.
const CHUNK: usize = 64 * 1024;
/// A sink connection with no bytes for this long counts as finished (a proxy that does not
/// propagate the sender's EOF cannot stall the run).
const SINK_IDLE: Duration = Duration::from_secs(2);

/// What the sink saw on one connection.
#[derive(Debug, Clone, Copy)]
struct Received {
    bytes: u64,
    last_byte: Option<Instant>,
}

/// A loopback TCP sink running on background threads for the life of the process.
#[derive(Debug)]
pub struct Sink {
    addr: SocketAddr,
    done: Receiver<Received>,
}

fn drain(mut s: TcpStream, tx: &Sender<Received>) {
    let _ = s.set_read_timeout(Some(SINK_IDLE));
    let mut buf = vec![0u8; CHUNK];
    let mut got = Received {
        bytes: 0,
        last_byte: None,
    };
    while let Ok(n @ 1..) = s.read(&mut buf) {
        got.bytes += n as u64;
        got.last_byte = Some(Instant::now());
    }
    let _ = tx.send(got);
}

impl Sink {
    /// Binds 127.0.0.1:0 and starts accepting.
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (tx, done) = channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let tx = tx.clone();
                std::thread::spawn(move || drain(stream, &tx));
            }
        });
        Ok(Self { addr, done })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Bounds of one bulk run.
#[derive(Debug, Clone, Copy)]
pub struct Bulk {
    /// Total bytes over all connections.
    pub bytes: u64,
    /// The senders stop writing after this long even if bytes remain.
    pub duration: Duration,
    pub connections: usize,
}

/// What one bulk run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BulkStats {
    pub sent: u64,
    pub received: u64,
    pub elapsed: Duration,
}

impl BulkStats {
    /// Received throughput in MB/s (10^6 bytes per second).
    pub fn mb_per_s(&self) -> f64 {
        mb_per_s(self.received, self.elapsed)
    }
}

/// `bytes` over `elapsed` in MB/s (10^6 bytes per second); 0 for an empty interval.
pub fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 { bytes as f64 / 1e6 / s } else { 0.0 }
}

/// How many bytes the next write may carry.
fn next_write(sent: u64, quota: u64) -> usize {
    quota.saturating_sub(sent).min(CHUNK as u64) as usize
}

fn send(target: SocketAddr, quota: u64, deadline: Instant) -> anyhow::Result<u64> {
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))
        .with_context(|| format!("connecting to {target}"))?;
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    while Instant::now() < deadline {
        let n = next_write(sent, quota);
        if n == 0 {
            break;
        }
        sent += s.write(&buf[..n]).context("bulk write")? as u64;
    }
    s.shutdown(Shutdown::Write)?;
    Ok(sent)
}

/// Streams `bulk` through `target` into `sink` and waits (bounded) for the sink's account.
pub fn run(sink: &Sink, target: SocketAddr, bulk: Bulk) -> anyhow::Result<BulkStats> {
    while sink.done.try_recv().is_ok() {}
    let conns = bulk.connections.max(1);
    let quota = bulk.bytes / conns as u64;
    let start = Instant::now();
    let deadline = start + bulk.duration;
    let senders: Vec<_> = (0..conns)
        .map(|_| std::thread::spawn(move || send(target, quota, deadline)))
        .collect();
    let mut sent = 0;
    for t in senders {
        sent += t
            .join()
            .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
    }
    let mut received = 0;
    let mut last = start;
    for _ in 0..conns {
        let r = sink
            .done
            .recv_timeout(SINK_IDLE + Duration::from_secs(5))
            .context("sink did not finish")?;
        received += r.bytes;
        last = last.max(r.last_byte.unwrap_or(start));
    }
    Ok(BulkStats {
        sent,
        received,
        elapsed: last.saturating_duration_since(start),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_units() {
        assert!((mb_per_s(3_000_000, Duration::from_secs(2)) - 1.5).abs() < 1e-9);
        assert_eq!(mb_per_s(10, Duration::ZERO), 0.0);
    }

    #[test]
    fn writes_stop_at_quota() {
        assert_eq!(next_write(0, 10), 10);
        assert_eq!(next_write(0, 1 << 30), CHUNK);
        assert_eq!(next_write(10, 10), 0);
        assert_eq!(next_write(11, 10), 0);
    }

    #[test]
    fn direct_bulk_counts_every_byte() {
        let sink = Sink::start().unwrap();
        let bulk = Bulk {
            bytes: 8 << 20,
            duration: Duration::from_secs(10),
            connections: 2,
        };
        let s = run(&sink, sink.addr(), bulk).unwrap();
        assert_eq!((s.sent, s.received), (8 << 20, 8 << 20));
        assert!(s.elapsed > Duration::ZERO && s.mb_per_s() > 0.0, "{s:?}");
    }

    #[test]
    fn time_bound_stops_the_sender() {
        let sink = Sink::start().unwrap();
        let bulk = Bulk {
            bytes: u64::MAX / 2,
            duration: Duration::from_millis(200),
            connections: 1,
        };
        let t = Instant::now();
        let s = run(&sink, sink.addr(), bulk).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(s.sent, s.received);
        assert!(s.sent > 0);
    }
}
