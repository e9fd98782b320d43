//! The control socket between keyhole and the sandbox's set-up process.
//!
//! One exchange on a Unix stream socket: the set-up process sends one byte
//! ([`HELLO`]) carrying the three sockets as `SCM_RIGHTS`, in the order
//! transparent, proxy, DNS; keyhole answers one byte ([`GO`]) when it
//! serves them. The socket lives in a fresh 0700 folder, so only keyhole's
//! user (and root) can connect, and keyhole also checks that the peer is
//! the process it started (`SO_PEERCRED`).

use std::io::{IoSlice, IoSliceMut, Read};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{UnixListener, UnixStream};

use super::SandboxError;

/// The set-up process's one byte, carrying the sockets.
pub const HELLO: u8 = b'k';
/// keyhole's one byte: the sockets are served, run the command.
pub const GO: u8 = b'g';
/// Sockets handed over: transparent, proxy, DNS.
pub const HANDED_FDS: usize = 3;

/// Longest wait, on the set-up side, for keyhole's [`GO`]. keyhole says
/// it as soon as the sockets are served, so this bounds only a keyhole
/// that hangs; the command must not start without its proxy.
pub const GO_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a write on the control socket may take (one byte each way).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at a fresh, unused folder name before giving up.
const TEMP_DIR_ATTEMPTS: usize = 8;
/// Random bytes in the folder name (hex-encoded).
const TEMP_NAME_BYTES: usize = 8;

// --- keyhole's side ---

/// The private folder holding the control socket; removed when dropped.
#[derive(Debug)]
pub struct ControlDir {
    dir: PathBuf,
    socket: PathBuf,
}

// === impl ControlDir ===

impl ControlDir {
    /// A fresh 0700 folder under the temp dir, with a listening socket.
    pub fn create() -> Result<(ControlDir, UnixListener), SandboxError> {
        let parent = std::env::temp_dir();
        let failed = |source| SandboxError::TempDir {
            parent: parent.clone(),
            source,
        };
        let mut last = None;
        for _ in 0..TEMP_DIR_ATTEMPTS {
            let dir = parent.join(format!("keyhole-sandbox-{}", random_hex()?));
            // create, not create_all: an existing folder (someone else's)
            // is never used.
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    let socket = dir.join("control");
                    let control = ControlDir { dir, socket };
                    let listener = UnixListener::bind(&control.socket).map_err(|source| {
                        SandboxError::Control {
                            step: "listen",
                            source,
                        }
                    })?;
                    return Ok((control, listener));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(failed(e)),
            }
        }
        Err(failed(last.unwrap_or_else(|| {
            std::io::Error::other("no free folder name")
        })))
    }

    /// The socket's path, for the set-up process.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for ControlDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn random_hex() -> Result<String, SandboxError> {
    let mut bytes = [0u8; TEMP_NAME_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(|_| {
        SandboxError::Process {
            step: "read random bytes for the control folder's name",
            source: std::io::Error::other("the system's random source failed"),
        }
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks that the peer is process `pid`.
pub fn check_peer(stream: &UnixStream, pid: Option<u32>) -> Result<(), SandboxError> {
    let cred =
        rustix::net::sockopt::socket_peercred(stream).map_err(|e| SandboxError::Control {
            step: "read the peer's credentials",
            source: e.into(),
        })?;
    let peer = u32::try_from(cred.pid.as_raw_nonzero().get()).ok();
    if peer.is_none() || peer != pid {
        return Err(SandboxError::Protocol {
            problem: format!(
                "a connection from process {}, not the set-up process {}",
                cred.pid.as_raw_nonzero(),
                pid.map_or_else(|| "(gone)".to_owned(), |p| p.to_string())
            ),
        });
    }
    Ok(())
}

/// Receives the [`HELLO`] byte and its sockets (unbounded: the caller
/// puts a timeout around it).
pub async fn receive(stream: &UnixStream) -> Result<[OwnedFd; HANDED_FDS], SandboxError> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(HANDED_FDS))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    let msg = stream
        .async_io(Interest::READABLE, || {
            rustix::net::recvmsg(
                stream,
                &mut [IoSliceMut::new(&mut byte)],
                &mut cmsg,
                RecvFlags::CMSG_CLOEXEC,
            )
            .map_err(std::io::Error::from)
        })
        .await
        .map_err(|source| SandboxError::Control {
            step: "receive the sockets",
            source,
        })?;
    // Every descriptor that arrived is owned here, and closed on return
    // unless it is one of the three.
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    let protocol = |problem: String| Err(SandboxError::Protocol { problem });
    if msg.bytes == 0 {
        return Err(SandboxError::Control {
            step: "receive the sockets",
            source: std::io::ErrorKind::UnexpectedEof.into(),
        });
    }
    if byte[0] != HELLO {
        return protocol(format!("the byte {:#04x} instead of its greeting", byte[0]));
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        return protocol("more descriptors than keyhole expects".to_owned());
    }
    match <[OwnedFd; HANDED_FDS]>::try_from(fds) {
        Ok(fds) => Ok(fds),
        Err(fds) => protocol(format!("{} descriptors instead of {HANDED_FDS}", fds.len())),
    }
}

/// Sends [`GO`].
pub async fn go(stream: &mut UnixStream) -> Result<(), SandboxError> {
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&[GO])).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(SandboxError::Control {
            step: "say go",
            source,
        }),
        Err(_) => Err(SandboxError::ControlTimeout {
            step: "take the go",
            timeout: WRITE_TIMEOUT,
        }),
    }
}

// --- the set-up process's side (blocking: no runtime runs there) ---

/// Connects to keyhole and sends [`HELLO`] with the three sockets.
pub fn hand_over(
    path: &Path,
    fds: [BorrowedFd<'_>; HANDED_FDS],
) -> Result<StdUnixStream, SandboxError> {
    let failed = |step| move |source| SandboxError::Control { step, source };
    let stream = StdUnixStream::connect(path).map_err(failed("connect"))?;
    stream
        .set_write_timeout(Some(WRITE_TIMEOUT))
        .map_err(failed("set a timeout"))?;
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(HANDED_FDS))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !cmsg.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(SandboxError::Protocol {
            problem: "no room for the descriptors (a bug in keyhole)".to_owned(),
        });
    }
    let sent = rustix::net::sendmsg(
        stream.as_fd(),
        &[IoSlice::new(&[HELLO])],
        &mut cmsg,
        SendFlags::NOSIGNAL,
    )
    .map_err(|e| failed("send the sockets")(e.into()))?;
    if sent != 1 {
        return Err(SandboxError::Protocol {
            problem: format!("a short send ({sent} bytes)"),
        });
    }
    Ok(stream)
}

/// Waits, at most [`GO_TIMEOUT`], for keyhole's [`GO`].
pub fn wait_for_go(mut stream: &StdUnixStream) -> Result<(), SandboxError> {
    stream
        .set_read_timeout(Some(GO_TIMEOUT))
        .map_err(|source| SandboxError::Control {
            step: "set a timeout",
            source,
        })?;
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => Err(SandboxError::ParentGone),
        Ok(_) if byte[0] == GO => Ok(()),
        Ok(_) => Err(SandboxError::Protocol {
            problem: format!("the byte {:#04x} instead of go", byte[0]),
        }),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(SandboxError::ControlTimeout {
                step: "hear go from keyhole",
                timeout: GO_TIMEOUT,
            })
        }
        Err(source) => Err(SandboxError::Control {
            step: "wait for go",
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[tokio::test]
    async fn sockets_cross_the_control_socket_in_order() {
        let (dir, listener) = ControlDir::create().unwrap();
        let path = dir.socket().to_owned();
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let want = [
            a.local_addr().unwrap(),
            b.local_addr().unwrap(),
            c.local_addr().unwrap(),
        ];
        let inner = std::thread::spawn(move || {
            let stream = hand_over(&path, [a.as_fd(), b.as_fd(), c.as_fd()]).unwrap();
            wait_for_go(&stream).unwrap();
        });
        let (mut stream, _) = listener.accept().await.unwrap();
        check_peer(&stream, Some(std::process::id())).unwrap();
        let [ta, tb, tc] = receive(&stream).await.unwrap();
        assert_ne!(ta.as_raw_fd(), tb.as_raw_fd());
        let got = [
            std::net::TcpListener::from(ta).local_addr().unwrap(),
            std::net::TcpListener::from(tb).local_addr().unwrap(),
            std::net::UdpSocket::from(tc).local_addr().unwrap(),
        ];
        assert_eq!(got, want);
        go(&mut stream).await.unwrap();
        inner.join().unwrap();
        let folder = dir.socket().parent().unwrap().to_owned();
        drop(dir);
        assert!(!folder.exists());
    }

    #[tokio::test]
    async fn a_peer_that_is_not_the_child_is_refused() {
        let (dir, listener) = ControlDir::create().unwrap();
        let _client = StdUnixStream::connect(dir.socket()).unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let message = check_peer(&stream, Some(1)).unwrap_err().to_string();
        assert!(message.contains("not the set-up process 1"), "{message}");
    }

    #[tokio::test]
    async fn a_hello_without_sockets_is_refused() {
        let (dir, listener) = ControlDir::create().unwrap();
        let mut client = StdUnixStream::connect(dir.socket()).unwrap();
        std::io::Write::write_all(&mut client, &[HELLO]).unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let message = receive(&stream).await.unwrap_err().to_string();
        assert!(message.contains("0 descriptors instead of 3"), "{message}");
    }

    #[test]
    fn the_folder_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, _listener) = {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _guard = rt.enter();
            ControlDir::create().unwrap()
        };
        let folder = dir.socket().parent().unwrap();
        let mode = std::fs::metadata(folder).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
