//!
//! The writer turns AMQP byte streams into pcapng files that Wireshark dissects; the
//! reader, the TCP reassembler, the WebSocket unframer and the decoder find the AMQP
//! connections in pcap and pcapng files and decode them.
//!
//! ```text
//!   writing   plaintext bytes per connection and direction
//!               ──► PcapWriter ──► pcapng: SHB, IDB (Ethernet), EPBs of synthetic
//!                                  Ethernet/IP/TCP packets (handshake, data, FIN)
//!
//!   reading   pcap / pcapng bytes ──► CaptureReader ──► Packet (number, time, link type)
//!               ──► net::parse_tcp ──► TcpSegment
//!               ──► tcp::Reassembler ──► in-order bytes per direction, gaps, FIN, RST
//!               ──► CaptureDecoder: AMQP header? HTTP upgrade to AMQPWSB10? TLS?
//!                     ──► websocket::Unframer (WebSocket frames to bytes)
//!                     ──► inspect::Inspector, one per direction ──► CaptureEvent
//! ```
//!
//! Nothing here reads a file, a socket or a clock: the writer writes to any
//! [`std::io::Write`] with the times it is given, the reader works on bytes in memory, and
//! the decoder is fed packets and hands back events. Everything that reads input is bounded
//! (see each part) and never panics; the `capture` fuzz target checks the whole path.
//!
//! The layout of the files the writer makes and the limits of the decoder are described
//! in `docs/capture.md`.

mod decode;
pub mod net;
mod reader;
mod render;
pub mod tcp;
#[cfg(feature = "keylog")]
pub mod tls;
pub mod websocket;
mod writer;

pub use decode::{
    CaptureDecoder, CaptureEvent, ConnectionSummary, DecodeStats, EventKind, Transport, WsEvent,
};
pub use reader::{Block, CaptureError, CaptureReader, CaptureStream, Format, Packet, Section};
#[cfg(feature = "json")]
pub use render::event_json;
pub use render::{event_text, rfc3339};
pub use writer::{ConnectionInfo, PcapWriter, WriterOptions};

/// Which way bytes flow on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// From the side that opened the connection to the side that accepted it.
    ClientToServer,
    /// From the side that accepted the connection to the side that opened it.
    ServerToClient,
}

impl Direction {
    /// `c2s` or `s2c`, as in the JSON trace.
    pub fn label(self) -> &'static str {
        match self {
            Self::ClientToServer => "c2s",
            Self::ServerToClient => "s2c",
        }
    }

    /// `->` or `<-`, as in the text trace.
    pub fn arrow(self) -> &'static str {
        match self {
            Self::ClientToServer => "->",
            Self::ServerToClient => "<-",
        }
    }

    /// The other direction.
    pub fn reverse(self) -> Self {
        match self {
            Self::ClientToServer => Self::ServerToClient,
            Self::ServerToClient => Self::ClientToServer,
        }
    }

    /// 0 for client to server, 1 for server to client (an index into per-direction pairs).
    pub fn index(self) -> usize {
        match self {
            Self::ClientToServer => 0,
            Self::ServerToClient => 1,
        }
    }
}

/// The AMQP port, Wireshark's default for its AMQP dissector; the writer's default server
/// port.
pub const AMQP_PORT: u16 = 5672;

/// Whether `data` starts like a capture file: the magic number of pcap (either byte order,
/// microsecond or nanosecond timestamps, or the modified format of old Red Hat patches)
/// or of pcapng (a section header block).
pub fn is_capture(data: &[u8]) -> bool {
    reader::detect(data).is_some()
}
