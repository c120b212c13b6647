//! One message with file descriptors over a Unix stream socket (SCM_RIGHTS).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use anyhow::Context;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// Most descriptors one message carries.
pub const MAX_FDS: usize = 64;
/// Largest message accepted.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Sends `bytes` with `fds` attached (the receiver gets its own copies).
pub fn send(stream: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> anyhow::Result<()> {
    anyhow::ensure!(
        fds.len() <= MAX_FDS,
        "{} descriptors: at most {MAX_FDS}",
        fds.len()
    );
    anyhow::ensure!(
        bytes.len() <= MAX_MESSAGE,
        "message of {} bytes",
        bytes.len()
    );
    let iov = [IoSlice::new(bytes)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let sent = sendmsg::<()>(stream.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .context("sending descriptors")?;
    anyhow::ensure!(
        sent == bytes.len(),
        "short send ({sent} of {})",
        bytes.len()
    );
    Ok(())
}

/// Receives one message and the descriptors that came with it.
pub fn receive(stream: &UnixStream) -> anyhow::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("receiving descriptors")?;
    let mut fds = Vec::new();
    for c in msg.cmsgs().context("reading the control messages")? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for fd in raw {
                // SAFETY: the kernel just installed `fd` in this process for us; nothing
                // else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    anyhow::ensure!(
        !msg.flags.contains(MsgFlags::MSG_CTRUNC),
        "descriptors were cut off (more than {MAX_FDS})"
    );
    let len = msg.bytes;
    buf.truncate(len);
    Ok((buf, fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    #[test]
    fn a_descriptor_crosses_with_its_message() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"shared").unwrap();
        send(&a, b"hello", &[file.as_raw_fd()]).unwrap();
        let (bytes, fds) = receive(&b).unwrap();
        assert_eq!(bytes, b"hello");
        assert_eq!(fds.len(), 1);
        let mut received = std::fs::File::from(fds.into_iter().next().unwrap());
        received.rewind().unwrap();
        let mut text = String::new();
        received.read_to_string(&mut text).unwrap();
        assert_eq!(text, "shared");
    }
}
