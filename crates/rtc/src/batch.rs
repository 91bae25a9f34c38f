//! Datagrams to many addresses, sent in few system calls.
//!
//! A forwarded packet becomes one datagram per listener, each to its own address. On Linux
//! they go out with `sendmmsg(2)`, up to [`DatagramBatch::capacity`] per call, which saves
//! each datagram a system call's entry and exit (about 0.9 µs of the 6 to 7 µs a loopback
//! `send_to` costs here); elsewhere one `send_to` each. The load benchmark's floor sends
//! with the same type, so the two are compared on one syscall strategy (issue 6).
//!
//! Hand-written over `libc` because the wrappers at hand do not fit: `nix`'s `sendmmsg`
//! reports how many went out only through an iterator that reads the (never written)
//! source-address slots, and `socket2` has no `sendmmsg`.

#![allow(unsafe_code)]

use std::net::SocketAddr;

use socket2::SockRef;

/// Datagrams per `sendmmsg` call in the mux's forwarding (and the load benchmark's floor).
pub const SEND_BATCH: usize = 64;

/// Datagrams waiting to go out, with buffers kept from one batch to the next.
pub struct DatagramBatch {
    /// One per datagram, and one more: what [`DatagramBatch::buffer`] hands out when full.
    bufs: Vec<Vec<u8>>,
    addrs: Vec<socket2::SockAddr>,
    len: usize,
}

/// What a [`DatagramBatch::send`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchSent {
    /// Datagrams the kernel took.
    pub sent: u64,
    /// Datagrams it refused (a full send buffer, an unreachable address): dropped.
    pub refused: u64,
}

impl DatagramBatch {
    /// A batch of up to `capacity` datagrams (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        DatagramBatch {
            bufs: (0..=capacity).map(|_| Vec::with_capacity(256)).collect(),
            addrs: Vec::with_capacity(capacity),
            len: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.bufs.len() - 1
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.capacity()
    }

    /// The next datagram's buffer, empty at first. It joins the batch when [`push`] names
    /// its address; until then every call hands out the same buffer, as it is. (A full batch
    /// hands out a spare, which [`push`] then refuses.)
    ///
    /// [`push`]: DatagramBatch::push
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.bufs[self.len]
    }

    /// Adds the datagram just written into [`DatagramBatch::buffer`], for `to`. Returns false
    /// (and drops it) if the batch was already full.
    pub fn push(&mut self, to: SocketAddr) -> bool {
        if self.is_full() {
            self.bufs[self.len].clear();
            return false;
        }
        self.addrs.push(socket2::SockAddr::from(to));
        self.len += 1;
        self.bufs[self.len].clear();
        true
    }

    /// Sends every datagram of the batch on `socket` (a UDP socket of any kind: std's,
    /// tokio's) without waiting, and empties it.
    pub fn send<'s>(&mut self, socket: impl Into<SockRef<'s>>) -> BatchSent {
        let socket = socket.into();
        let mut result = BatchSent::default();
        let mut from = 0;
        while from < self.len {
            match send_many(&socket, &self.bufs[from..self.len], &self.addrs[from..]) {
                Ok(0) => {
                    result.refused += (self.len - from) as u64;
                    break;
                }
                Ok(n) => {
                    result.sent += n as u64;
                    from += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // The send buffer is full: the rest would be refused as well.
                    result.refused += (self.len - from) as u64;
                    break;
                }
                Err(e) => {
                    // The first datagram's own error (its address, say): drop it, go on.
                    tracing::trace!(error = %e, "batched media send");
                    result.refused += 1;
                    from += 1;
                }
            }
        }
        self.len = 0;
        self.addrs.clear();
        self.bufs[0].clear();
        result
    }
}

/// Sends `bufs[i]` to `addrs[i]`, as many as the kernel takes in one call; how many it took.
#[cfg(target_os = "linux")]
fn send_many(
    socket: &SockRef<'_>,
    bufs: &[Vec<u8>],
    addrs: &[socket2::SockAddr],
) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut iovecs: Vec<libc::iovec> = bufs
        .iter()
        .map(|b| libc::iovec {
            iov_base: b.as_ptr().cast_mut().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .zip(addrs)
        .map(|(iov, addr)| {
            // SAFETY: `msghdr` is plain data (pointers, lengths, flags; on some targets
            // padding fields), for which all zeroes is a valid value: no name, no control
            // data, no flags.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_name = addr.as_ptr().cast_mut().cast();
            h.msg_namelen = addr.len();
            h.msg_iov = iov;
            h.msg_iovlen = 1;
            libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            }
        })
        .collect();
    let count = u32::try_from(headers.len()).unwrap_or(u32::MAX);
    // SAFETY: `headers` holds `count` initialised entries, each pointing at one `iovec` of
    // `iovecs` and one address of `addrs`, which all outlive the call; each `iovec` points at
    // the bytes of a buffer of `bufs`, borrowed for the call. The kernel only reads them
    // (and writes each entry's `msg_len`). The descriptor is the socket's, open while
    // `socket` is borrowed.
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            count,
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

/// Elsewhere, one `send_to` each (on a non-blocking socket).
#[cfg(not(target_os = "linux"))]
fn send_many(
    socket: &SockRef<'_>,
    bufs: &[Vec<u8>],
    addrs: &[socket2::SockAddr],
) -> std::io::Result<usize> {
    let mut sent = 0;
    for (buf, addr) in bufs.iter().zip(addrs) {
        match socket.send_to(buf, addr) {
            Ok(_) => sent += 1,
            Err(e) if sent == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    /// Every datagram of a batch arrives at its own address with its own bytes; a batch
    /// longer than one call's worth and a push past capacity are handled; an address nobody
    /// can send to costs only its own datagram.
    #[test]
    fn a_batch_reaches_each_address_with_its_own_bytes() {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.set_nonblocking(true).unwrap();
        let receivers: Vec<UdpSocket> = (0..5)
            .map(|_| {
                let r = UdpSocket::bind("127.0.0.1:0").unwrap();
                r.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                r
            })
            .collect();
        let mut batch = DatagramBatch::new(4);
        assert_eq!(batch.capacity(), 4);
        for (i, r) in receivers.iter().take(4).enumerate() {
            batch.buffer().extend_from_slice(&[i as u8; 10]);
            batch.buffer().extend_from_slice(&[i as u8 + 100; 3]); // same buffer, appended
            assert!(batch.push(r.local_addr().unwrap()));
        }
        assert!(batch.is_full());
        batch.buffer().push(9);
        assert!(
            !batch.push(receivers[4].local_addr().unwrap()),
            "full: dropped"
        );
        assert_eq!(
            batch.send(&sender),
            BatchSent {
                sent: 4,
                refused: 0
            }
        );
        assert!(batch.is_empty());
        let mut buf = [0u8; 64];
        for (i, r) in receivers.iter().take(4).enumerate() {
            let (n, from) = r.recv_from(&mut buf).unwrap();
            assert_eq!(from, sender.local_addr().unwrap());
            let mut want = vec![i as u8; 10];
            want.extend_from_slice(&[i as u8 + 100; 3]);
            assert_eq!(&buf[..n], &want[..]);
        }
        // An IPv6 address on an IPv4 socket is refused by the kernel: only that datagram is
        // lost, the ones after it go.
        let mut batch = DatagramBatch::new(3);
        batch.buffer().push(1);
        batch.push("[::1]:9".parse().unwrap());
        batch.buffer().push(2);
        batch.push(receivers[4].local_addr().unwrap());
        assert_eq!(
            batch.send(&sender),
            BatchSent {
                sent: 1,
                refused: 1
            }
        );
        let (n, _) = receivers[4].recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[2]);
    }
}
