//! Protocol detection from a connection's first bytes: an HTTP/2 connection
//! preface, an HTTP/1 request line, or anything else (TLS ClientHello,
//! server-speaks-first protocols, binary) treated as opaque TCP. The bytes read
//! are handed back for replay through [`super::rewind::Rewind`].
//!
//! A complete first line counts as HTTP/1 only when it ends in `HTTP/1.0` or
//! `HTTP/1.1`: text protocols that start with a word and a space (Redis inline
//! commands, an invalid HTTP/2 preface such as h2spec's `INVALID CONNECTION
//! PREFACE`) are forwarded opaquely to the upstream, which answers them as it would
//! without the proxy, instead of getting an HTTP/1 `400` from the proxy.

use bytes::BytesMut;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The HTTP/2 client connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Longest HTTP/1 method token considered.
const MAX_METHOD: usize = 20;
/// Bytes read at most while detecting.
const DETECT_BUF: usize = 1024;

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Http1,
    Http2,
    Opaque,
    /// Not enough bytes to decide yet.
    NeedMore,
}

/// Classifies a buffer prefix.
pub fn classify(buf: &[u8]) -> Detected {
    if buf.is_empty() {
        return Detected::NeedMore;
    }
    if buf.len() >= H2_PREFACE.len() && buf.starts_with(H2_PREFACE) {
        return Detected::Http2;
    }
    if H2_PREFACE.starts_with(buf) {
        return Detected::NeedMore;
    }
    let method_len = buf
        .iter()
        .take_while(|b| b.is_ascii_uppercase() || **b == b'-')
        .count();
    if method_len == 0 || method_len > MAX_METHOD {
        return Detected::Opaque;
    }
    match buf.get(method_len) {
        None => Detected::NeedMore,
        Some(b' ') => match buf.get(method_len + 1) {
            None => Detected::NeedMore,
            Some(b'/' | b'*') => Detected::Http1,
            Some(c) if c.is_ascii_alphanumeric() => Detected::Http1,
            Some(_) => Detected::Opaque,
        },
        Some(_) => Detected::Opaque,
    }
}

/// Whether the first line of `buf` ends in an HTTP/1 version (`None`: no whole
/// line yet).
fn http1_version(buf: &[u8]) -> Option<bool> {
    let end = buf.iter().position(|b| *b == b'\n')?;
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    let version = line.rsplit(|b| *b == b' ').next().unwrap_or_default();
    Some(line.contains(&b' ') && (version == b"HTTP/1.1" || version == b"HTTP/1.0"))
}

/// [`classify`], plus the check of the request line's version once the whole
/// line is in `buf`. A line longer than the detection buffer is taken as HTTP/1
/// on its method and target alone (long URLs).
pub fn classify_request(buf: &[u8]) -> Detected {
    match classify(buf) {
        Detected::Http1 => match http1_version(buf) {
            Some(true) => Detected::Http1,
            Some(false) => Detected::Opaque,
            None if buf.len() >= DETECT_BUF => Detected::Http1,
            None => Detected::NeedMore,
        },
        d => d,
    }
}

/// The verdict when no more bytes come (timeout or EOF): a started HTTP/1
/// request line is HTTP/1, as before the version check, anything else opaque.
fn settle(buf: &[u8]) -> Detected {
    match classify(buf) {
        Detected::Http1 => Detected::Http1,
        _ => Detected::Opaque,
    }
}

/// Reads until the protocol is known, `timeout` passes (→ opaque) or the peer
/// closes. Returns the verdict and every byte read.
pub async fn detect<R: AsyncRead + Unpin>(
    io: &mut R,
    timeout: Duration,
) -> std::io::Result<(Detected, BytesMut)> {
    let mut buf = BytesMut::with_capacity(DETECT_BUF);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match classify_request(&buf) {
            Detected::NeedMore if buf.len() < DETECT_BUF => {}
            Detected::NeedMore => return Ok((Detected::Opaque, buf)),
            d => return Ok((d, buf)),
        }
        match tokio::time::timeout_at(deadline, io.read_buf(&mut buf)).await {
            Err(_) => return Ok((settle(&buf), buf)),
            Ok(Ok(0)) => {
                return Ok((
                    if buf.is_empty() {
                        Detected::NeedMore
                    } else {
                        settle(&buf)
                    },
                    buf,
                ));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_prefixes() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Detected::Http1);
        assert_eq!(classify(b"OPTIONS * HTTP/1.1"), Detected::Http1);
        assert_eq!(classify(b"CONNECT example:443 HTTP/1.1"), Detected::Http1);
        assert_eq!(classify(b"POS"), Detected::NeedMore);
        assert_eq!(classify(b"GET "), Detected::NeedMore);
        assert_eq!(classify(H2_PREFACE), Detected::Http2);
        assert_eq!(classify(&H2_PREFACE[..10]), Detected::NeedMore);
        assert_eq!(classify(b"PRI /x HTTP/1.1"), Detected::Http1);
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x02]), Detected::Opaque);
        assert_eq!(classify(b"get / HTTP/1.1"), Detected::Opaque);
        assert_eq!(classify(b"GET\t/"), Detected::Opaque);
        assert_eq!(classify(b""), Detected::NeedMore);
    }

    #[test]
    fn request_lines_need_an_http1_version() {
        assert_eq!(
            classify_request(b"GET / HTTP/1.1\r\nhost: a\r\n"),
            Detected::Http1
        );
        assert_eq!(classify_request(b"GET / HTTP/1.0\n"), Detected::Http1);
        assert_eq!(
            classify_request(b"CONNECT example:443 HTTP/1.1\r\n"),
            Detected::Http1
        );
        assert_eq!(classify_request(b"GET /long/path?q"), Detected::NeedMore);
        // h2spec 3.5 #2, a Redis inline command, a mangled h2 preface, HTTP/0.9.
        assert_eq!(
            classify_request(b"INVALID CONNECTION PREFACE\r\n\r\n"),
            Detected::Opaque
        );
        assert_eq!(classify_request(b"SET key value\r\n"), Detected::Opaque);
        assert_eq!(
            classify_request(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"),
            Detected::Opaque
        );
        assert_eq!(classify_request(b"GET /\r\n"), Detected::Opaque);
        assert_eq!(classify_request(b"GET\r\n"), Detected::Opaque);
        assert_eq!(classify_request(H2_PREFACE), Detected::Http2);
        // A request line longer than the detection buffer is judged on its start.
        let mut long = b"GET /".to_vec();
        long.resize(DETECT_BUF, b'a');
        assert_eq!(classify_request(&long), Detected::Http1);
    }

    #[tokio::test]
    async fn a_request_line_cut_short_settles_on_its_start() {
        let (mut a, mut b) = tokio::io::duplex(64);
        use tokio::io::AsyncWriteExt;
        a.write_all(b"GET /slow").await.unwrap();
        let (d, _) = detect(&mut b, Duration::from_millis(30)).await.unwrap();
        assert_eq!(d, Detected::Http1);
    }

    #[tokio::test]
    async fn detects_across_reads_and_times_out_to_opaque() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            a.write_all(b"PRI * HTTP/2").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            a.write_all(b".0\r\n\r\nSM\r\n\r\nrest").await.unwrap();
            a
        });
        let (d, buf) = detect(&mut b, Duration::from_secs(2)).await.unwrap();
        assert_eq!(d, Detected::Http2);
        assert!(buf.starts_with(H2_PREFACE));
        let _a = writer.await.unwrap();

        // A server-speaks-first client sends nothing: opaque after the timeout.
        let (_c, mut d2) = tokio::io::duplex(64);
        let (d, buf) = detect(&mut d2, Duration::from_millis(30)).await.unwrap();
        assert_eq!(d, Detected::Opaque);
        assert!(buf.is_empty());
    }
}
