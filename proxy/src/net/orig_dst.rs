//! The original destination of a connection redirected by iptables `REDIRECT`
//! (`SO_ORIGINAL_DST` for IPv4, `IP6T_SO_ORIGINAL_DST` for IPv6). The
//! getsockopt call goes through socket2's safe wrapper, so this crate needs no
//! `unsafe` of its own.

use socket2::SockRef;
use std::io;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// The pre-NAT destination of `stream`. Errors when the connection was not
/// redirected (no conntrack entry), e.g. on loopback tests without iptables.
pub fn original_dst(stream: &TcpStream) -> io::Result<SocketAddr> {
    let sock = SockRef::from(stream);
    let local = stream.local_addr()?;
    let addr = if local.is_ipv4() {
        sock.original_dst_v4()?
    } else {
        sock.original_dst_v6()?
    };
    addr.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "original destination is not IP"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_without_redirect_is_local_or_error() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let c = TcpStream::connect(addr).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        // Without NAT the kernel either has no entry or reports the address dialled.
        match original_dst(&s) {
            Ok(dst) => assert_eq!(dst, addr),
            Err(e) => assert!(e.raw_os_error().is_some(), "{e}"),
        }
        drop(c);
    }
}
