//! Property tests for protocol detection and the inbound TLS sniff (issue 14,
//! fuzz and property tests): arbitrary first bytes never panic; generated HTTP/1
//! request lines, HTTP/2 prefaces and TLS ClientHellos are classified right; a
//! partial input is never given a wrong verdict. A generated ClientHello with a
//! random SNI and ALPN list parses back exactly through the rustls acceptor the
//! inbound layer hands the sniffed bytes to, and its truncations are "need more".

use proptest::prelude::*;
use std::time::Duration;
use weft_proxy::net::detect::{Detected, H2_PREFACE, classify, detect};
use weft_proxy::tls::server::is_tls_hello;

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET".to_string()),
        Just("POST".to_string()),
        Just("OPTIONS".to_string()),
        Just("CONNECT".to_string()),
        Just("PRI".to_string()),
        Just("M-SEARCH".to_string()),
        "[A-Z][A-Z-]{0,19}",
    ]
}

fn request_line() -> impl Strategy<Value = Vec<u8>> {
    (
        method(),
        prop_oneof![Just("*".to_string()), "/[ -~]{0,30}", "[a-z0-9][a-z0-9.:]{0,20}"],
    )
        .prop_map(|(m, target)| format!("{m} {target} HTTP/1.1\r\nhost: x\r\n\r\n").into_bytes())
}

fn u16_len(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes()
}

/// A TLS 1.2-framed ClientHello record (what rustls and OpenSSL clients send) with
/// a server_name and an ALPN extension.
fn client_hello(sni: &str, alpn: &[Vec<u8>], minor: u8) -> Vec<u8> {
    let mut ext = Vec::new();
    // server_name (0): list of one host_name entry.
    let mut sn = vec![0u8];
    sn.extend(u16_len(sni.len()));
    sn.extend(sni.as_bytes());
    ext.extend([0, 0]);
    ext.extend(u16_len(sn.len() + 2));
    ext.extend(u16_len(sn.len()));
    ext.extend(&sn);
    // signature_algorithms (13): rsa_pss_rsae_sha256, ecdsa_secp256r1_sha256.
    ext.extend([0, 13, 0, 6, 0, 4, 0x08, 0x04, 0x04, 0x03]);
    if !alpn.is_empty() {
        let mut list = Vec::new();
        for p in alpn {
            list.push(u8::try_from(p.len()).unwrap_or(u8::MAX));
            list.extend(p);
        }
        ext.extend([0, 16]);
        ext.extend(u16_len(list.len() + 2));
        ext.extend(u16_len(list.len()));
        ext.extend(&list);
    }
    let mut body = vec![0x03, 0x03];
    body.extend([7u8; 32]); // random
    body.push(0); // session id
    body.extend([0, 4, 0x13, 0x01, 0xc0, 0x2f]); // cipher suites
    body.extend([1, 0]); // compression: null
    body.extend(u16_len(ext.len()));
    body.extend(&ext);
    let mut hs = vec![1u8];
    hs.extend(&u32::try_from(body.len()).unwrap_or(0).to_be_bytes()[1..]);
    hs.extend(&body);
    let mut rec = vec![0x16, 0x03, minor];
    rec.extend(u16_len(hs.len()));
    rec.extend(&hs);
    rec
}

fn sni() -> impl Strategy<Value = String> {
    // The last label starts with a letter: an all-digit name is not a DNS name.
    (
        prop::collection::vec("[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", 0..3),
        "[a-z][a-z0-9]{0,5}",
    )
        .prop_map(|(mut labels, tld)| {
            labels.push(tld);
            labels.join(".")
        })
}

fn alpn() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 1..12), 0..4)
}

/// What the rustls acceptor reads from `bytes`: `Ok(None)` needs more bytes.
type Hello = Option<(Option<String>, Option<Vec<Vec<u8>>>)>;

fn accept(bytes: &[u8]) -> Result<Hello, String> {
    let mut acc = rustls::server::Acceptor::default();
    let mut rd = bytes;
    while !rd.is_empty() {
        acc.read_tls(&mut rd).map_err(|e| e.to_string())?;
    }
    match acc.accept() {
        Ok(None) => Ok(None),
        Ok(Some(accepted)) => {
            let hello = accepted.client_hello();
            Ok(Some((
                hello.server_name().map(str::to_string),
                hello.alpn().map(|it| it.map(<[u8]>::to_vec).collect()),
            )))
        }
        Err((e, _)) => Err(e.to_string()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, TestCaseError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let verdict = classify(&bytes);
        // NeedMore only while the input is still a prefix of something decidable.
        if verdict == Detected::NeedMore {
            prop_assert!(bytes.len() < H2_PREFACE.len(), "undecided after {} bytes", bytes.len());
        }
        let _ = is_tls_hello(&bytes);
        let _ = accept(&bytes);
    }

    #[test]
    fn request_lines_are_http1_and_prefixes_never_misdetected(line in request_line()) {
        prop_assert_eq!(classify(&line), Detected::Http1);
        for n in 0..line.len() {
            let v = classify(&line[..n]);
            prop_assert!(matches!(v, Detected::Http1 | Detected::NeedMore), "prefix {n}: {v:?}");
        }
        prop_assert_eq!(is_tls_hello(&line), Some(false));
    }

    #[test]
    fn h2_preface_is_http2_and_prefixes_wait(rest in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut buf = H2_PREFACE.to_vec();
        buf.extend(&rest);
        prop_assert_eq!(classify(&buf), Detected::Http2);
        for n in 0..H2_PREFACE.len() {
            // "PRI " + "*" looks like HTTP/1 only before the preface diverges; it never does.
            prop_assert_eq!(classify(&H2_PREFACE[..n]), Detected::NeedMore, "prefix {}", n);
        }
    }

    #[test]
    fn client_hello_is_tls_opaque_and_parses_back(host in sni(), protos in alpn(), minor in 1u8..=4) {
        let rec = client_hello(&host, &protos, minor);
        prop_assert_eq!(is_tls_hello(&rec), Some(true));
        prop_assert_eq!(classify(&rec), Detected::Opaque);
        let want_alpn = if protos.is_empty() { None } else { Some(protos.clone()) };
        prop_assert_eq!(accept(&rec), Ok(Some((Some(host.clone()), want_alpn))));
        for n in 0..rec.len() {
            let sniff = is_tls_hello(&rec[..n]);
            prop_assert!(sniff != Some(false), "prefix {n} sniffed as plaintext");
            prop_assert_eq!(accept(&rec[..n]), Ok(None), "prefix {} not need-more", n);
        }
    }

    #[test]
    fn detect_agrees_with_classify_across_split_reads(
        line in prop_oneof![request_line(), Just(H2_PREFACE.to_vec()), prop::collection::vec(any::<u8>(), 1..64)],
        cut in any::<prop::sample::Index>(),
    ) {
        let at = cut.index(line.len());
        let mut io = tokio_test_io(&line, at);
        let (verdict, read) = runtime()?.block_on(detect(&mut io, Duration::from_millis(200)))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(line.starts_with(&read));
        let want = match classify(&line) {
            // The peer closed while undecided: opaque.
            Detected::NeedMore => Detected::Opaque,
            d => d,
        };
        prop_assert_eq!(verdict, want);
    }
}

/// An in-memory reader yielding `data` in two chunks split at `at`, then EOF.
fn tokio_test_io(data: &[u8], at: usize) -> impl tokio::io::AsyncRead + Unpin {
    let (a, b) = data.split_at(at);
    tokio::io::AsyncReadExt::chain(std::io::Cursor::new(a.to_vec()), std::io::Cursor::new(b.to_vec()))
}
