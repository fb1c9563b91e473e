//! HTTP/2 frames written and read by hand, for clients that break the rules.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::limits::Served;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// HPACK for `POST /mutate` to localhost with a JSON content type, without Huffman coding
/// or indexing: every stream can reuse it.
pub fn post_mutate_block() -> Vec<u8> {
    let mut b = vec![0x83, 0x87]; // :method POST, :scheme https
    b.extend([0x04, 7]); // :path, literal
    b.extend(b"/mutate");
    b.extend([0x01, 9]); // :authority, literal
    b.extend(b"localhost");
    b.extend([0x0f, 0x10, 16]); // content-type (static index 31), literal
    b.extend(b"application/json");
    b
}

#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or a GOAWAY.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        let b = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Splits what a server sent into frames (a partial last frame is dropped).
pub fn frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while bytes.len() >= 9 {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        if bytes.len() < 9 + len {
            break;
        }
        out.push(Frame {
            kind: bytes[3],
            flags: bytes[4],
            stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
            payload: bytes[9..9 + len].to_vec(),
        });
        bytes = &bytes[9 + len..];
    }
    out
}

/// Connects with ALPN h2, sends the preface and empty SETTINGS, reads the server's
/// SETTINGS and acknowledges them, so that the server's limits are in force.
pub async fn handshake(served: &Served) -> TlsStream<TcpStream> {
    let mut tls = served.tls(b"h2").await;
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    tls.write_all(&hello).await.unwrap();
    let mut head = [0u8; 9];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            tls.read_exact(&mut head).await.unwrap();
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            tls.read_exact(&mut payload).await.unwrap();
            if head[3] == SETTINGS && head[4] & 1 == 0 {
                break;
            }
        }
    });
    read.await.expect("the server's SETTINGS");
    tls.write_all(&frame(SETTINGS, 1, 0, &[])).await.unwrap();
    tls
}
