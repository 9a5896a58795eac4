//! What the kernel says about a channel's TCP socket, for KIST's write
//! limit (C-tor `update_socket_info_impl`): `TCP_INFO` (congestion window,
//! unacked segments, MSS) and `SIOCOUTQNSD` (bytes not sent yet). Linux
//! only; elsewhere every call fails with [`std::io::ErrorKind::Unsupported`]
//! and KIST falls back to the writer's room.

use std::os::fd::BorrowedFd;

use braid_core::relay::kist::SocketInfo;

/// The kernel's figures for the TCP socket `fd`.
#[cfg(target_os = "linux")]
pub(crate) fn socket_info(fd: BorrowedFd<'_>) -> std::io::Result<SocketInfo> {
    use std::os::fd::AsRawFd as _;
    let raw = fd.as_raw_fd();
    // SAFETY: `tcp_info` is plain integers, for which all zeroes is a
    // value.
    #[allow(unsafe_code, reason = "tcp_info is a C struct of integers")]
    let mut tcp: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::tcp_info>())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `raw` is an open socket for the lifetime of `fd`; the kernel
    // writes at most `len` bytes into `tcp`, which is that long.
    #[allow(unsafe_code, reason = "getsockopt(2) is how TCP_INFO is read")]
    let r = unsafe {
        libc::getsockopt(
            raw,
            libc::SOL_TCP,
            libc::TCP_INFO,
            std::ptr::from_mut(&mut tcp).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut notsent: libc::c_int = 0;
    // SAFETY: SIOCOUTQNSD writes one int through the pointer.
    #[allow(unsafe_code, reason = "ioctl(2) is how SIOCOUTQNSD is read")]
    let r = unsafe {
        libc::ioctl(
            raw,
            libc::SIOCOUTQNSD as _,
            std::ptr::from_mut(&mut notsent),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(SocketInfo {
        cwnd: tcp.tcpi_snd_cwnd,
        unacked: tcp.tcpi_unacked,
        mss: tcp.tcpi_snd_mss,
        notsent: u32::try_from(notsent).unwrap_or(0),
    })
}

/// The kernel's figures for the TCP socket `fd`: not on this system.
#[cfg(not(target_os = "linux"))]
pub(crate) fn socket_info(_fd: BorrowedFd<'_>) -> std::io::Result<SocketInfo> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use std::io::{Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd as _;

    use braid_core::relay::kist::{KistParams, write_limit};

    use super::*;

    /// A loopback connection: the sender's window and MSS are the
    /// kernel's, its unsent bytes grow while the peer does not read and
    /// drop to 0 once it has read everything; KIST's limit follows.
    #[test]
    fn tcp_info_of_a_loopback_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tx = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut rx, _) = listener.accept().unwrap();
        let idle = socket_info(tx.as_fd()).unwrap();
        assert!(idle.cwnd >= 1, "{idle:?}");
        assert!(idle.mss >= 536, "{idle:?}");
        assert_eq!((idle.unacked, idle.notsent), (0, 0), "{idle:?}");
        let params = KistParams::default();
        let open = write_limit(Some(&idle), 0, &params, 0);
        assert_eq!(
            open,
            2 * idle.cwnd as usize * idle.mss as usize,
            "an idle socket may take two windows"
        );

        // Fill the socket until the kernel takes no more: a peer that does
        // not read leaves bytes unsent.
        tx.set_nonblocking(true).unwrap();
        let chunk = vec![7_u8; 64 * 1024];
        let mut sent = 0_usize;
        loop {
            match tx.write(&chunk) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let full = socket_info(tx.as_fd()).unwrap();
        assert!(full.notsent > 0, "{full:?} after {sent} bytes");
        assert!(
            write_limit(Some(&full), 0, &params, 0) < open,
            "{full:?}: a full socket gets a smaller limit"
        );

        // Read it all: nothing left unsent.
        tx.set_nonblocking(false).unwrap();
        let mut buf = vec![0_u8; 256 * 1024];
        let mut got = 0;
        while got < sent {
            got += rx.read(&mut buf).unwrap();
        }
        let mut drained = socket_info(tx.as_fd()).unwrap();
        for _ in 0..100 {
            if drained.notsent == 0 && drained.unacked == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            drained = socket_info(tx.as_fd()).unwrap();
        }
        assert_eq!((drained.notsent, drained.unacked), (0, 0), "{drained:?}");
    }

    #[test]
    fn a_socket_that_is_not_tcp_fails() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(socket_info(udp.as_fd()).is_err());
    }
}
