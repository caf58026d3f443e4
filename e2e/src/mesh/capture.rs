//! Reading a packet capture (`tcpdump -w`, classic pcap, Ethernet, IPv4/TCP) to tell TLS
//! records from plaintext HTTP in TCP payloads — the mTLS-on-the-wire check.

/// What the TCP payloads of a capture contain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WireSummary {
    /// Packets with a TCP payload.
    pub payloads: usize,
    /// Payloads starting with a TLS record header (content type 20–23, version 3.x).
    pub tls_records: usize,
    /// Payloads that look like HTTP/1 (a request line or a status line).
    pub plaintext_http: usize,
}

fn u16be(b: &[u8], i: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?])))
}

/// The TCP payload of one Ethernet frame, if it is IPv4/TCP.
pub fn tcp_payload(frame: &[u8]) -> Option<&[u8]> {
    if u16be(frame, 12)? != 0x0800 {
        return None;
    }
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if *ip.get(9)? != 6 {
        return None;
    }
    let total = u16be(ip, 2)?.min(ip.len());
    let tcp = ip.get(ihl..total)?;
    let off = usize::from(tcp.get(12)? >> 4) * 4;
    tcp.get(off..)
}

/// Whether a payload starts like a TLS record.
pub fn is_tls_record(p: &[u8]) -> bool {
    p.len() >= 5 && (20..=23).contains(&p[0]) && p[1] == 3 && p[2] <= 4
}

/// Whether a payload looks like plaintext HTTP/1.
pub fn is_plaintext_http(p: &[u8]) -> bool {
    const STARTS: [&[u8]; 6] = [b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"HTTP/1."];
    STARTS.iter().any(|s| p.starts_with(s)) || p.windows(9).any(|w| w == b" HTTP/1.1")
}

/// Summarizes a classic pcap file (little- or big-endian, Ethernet link type).
pub fn summarize_pcap(data: &[u8]) -> Result<WireSummary, String> {
    let magic = data.get(0..4).ok_or("pcap shorter than its header")?;
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err("not a classic pcap file".into()),
    };
    let u32_at = |i: usize| -> Option<usize> {
        let b: [u8; 4] = data.get(i..i + 4)?.try_into().ok()?;
        Some(
            (if le {
                u32::from_le_bytes(b)
            } else {
                u32::from_be_bytes(b)
            }) as usize,
        )
    };
    if u32_at(20) != Some(1) {
        return Err("pcap link type is not Ethernet".into());
    }
    let mut summary = WireSummary::default();
    let mut at = 24;
    while let Some(caplen) = u32_at(at + 8) {
        let Some(frame) = data.get(at + 16..at + 16 + caplen) else {
            break; // a truncated last packet (capture stopped mid-write)
        };
        if let Some(p) = tcp_payload(frame).filter(|p| !p.is_empty()) {
            summary.payloads += 1;
            summary.tls_records += usize::from(is_tls_record(p));
            summary.plaintext_http += usize::from(is_plaintext_http(p));
        }
        at += 16 + caplen;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend([0x08, 0x00]);
        let total = (20 + 20 + payload.len()) as u16;
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0, 198, 18, 0, 2, 198, 18, 0, 3,
        ];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        f.extend(ip);
        let mut tcp = vec![0u8; 20];
        tcp[12] = 5 << 4;
        f.extend(tcp);
        f.extend(payload);
        f
    }

    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut d = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        d.extend([0u8; 8]);
        d.extend(65535u32.to_le_bytes());
        d.extend(1u32.to_le_bytes());
        for f in frames {
            d.extend([0u8; 8]);
            d.extend((f.len() as u32).to_le_bytes());
            d.extend((f.len() as u32).to_le_bytes());
            d.extend(f);
        }
        d
    }

    #[test]
    fn counts_tls_and_plaintext_payloads() {
        let d = pcap(&[
            frame(&[0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5]),
            frame(&[0x17, 3, 3, 0, 2, 9, 9]),
            frame(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            frame(b""),
        ]);
        let s = summarize_pcap(&d).unwrap();
        assert_eq!(
            s,
            WireSummary {
                payloads: 3,
                tls_records: 2,
                plaintext_http: 1
            }
        );
        let mut truncated = pcap(&[frame(&[0x17, 3, 3, 0, 2, 9, 9]), frame(b"GET / HTTP/1.1")]);
        truncated.truncate(truncated.len() - 3);
        assert_eq!(summarize_pcap(&truncated).unwrap().payloads, 1);
        assert!(summarize_pcap(b"nope").is_err());
    }

    #[test]
    fn non_tcp_frames_are_skipped() {
        let mut f = frame(b"GET / HTTP/1.1");
        f[14 + 9] = 17; // UDP
        assert_eq!(tcp_payload(&f), None);
        assert!(!is_tls_record(b"HTTP/1.1 200 OK"));
        assert!(is_plaintext_http(b"HTTP/1.1 200 OK\r\n"));
    }
}

/// A `tcpdump` this process started on one interface (the host end of a pod's veth),
/// capturing pod-to-pod TCP (not the node's probes or a pod's API server traffic: the
/// bridge address 198.18.0.1 is left out) into a temporary pcap.
#[derive(Debug)]
pub struct Tcpdump {
    child: tokio::process::Child,
    pcap: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Tcpdump {
    /// Starts the capture on `iface` and returns once tcpdump says it is listening.
    pub async fn start(iface: &str) -> Result<Self, String> {
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let pcap = dir.path().join("capture.pcap");
        let mut child = tokio::process::Command::new("tcpdump")
            // -Z root: tcpdump would otherwise drop to its own user before opening the file.
            // --immediate-mode: without it packets wait in the kernel ring for a buffer
            // timeout and a SIGTERM in the meantime discards them (0 packets captured).
            .args([
                "-i",
                iface,
                "-Z",
                "root",
                "--immediate-mode",
                "-U",
                "-n",
                "-s",
                "0",
                "-w",
            ])
            .arg(&pcap)
            .arg("tcp and not host 198.18.0.1")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("tcpdump (make deps installs it): {e}"))?;
        let mut stderr = child.stderr.take().ok_or("tcpdump has no stderr")?;
        let mut seen = Vec::new();
        let listening = async {
            let mut buf = [0u8; 512];
            while !String::from_utf8_lossy(&seen).contains("listening on") {
                let n = stderr.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err(format!("tcpdump exited: {}", String::from_utf8_lossy(&seen)));
                }
                seen.extend_from_slice(&buf[..n]);
            }
            Ok(())
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), listening)
            .await
            .map_err(|_| "tcpdump did not start listening within 10 s".to_string())??;
        Ok(Self {
            child,
            pcap,
            _dir: dir,
        })
    }

    /// Stops the capture (SIGTERM to our tcpdump, by PID, so it flushes) and summarizes it.
    pub async fn finish(mut self) -> Result<WireSummary, String> {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.child.wait()).await;
        let data = std::fs::read(&self.pcap).map_err(|e| format!("reading the capture: {e}"))?;
        summarize_pcap(&data)
    }
}
