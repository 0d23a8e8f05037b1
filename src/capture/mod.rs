//!
//! The writer turns AMQP byte streams into pcapng files that Wireshark dissects.
//!
//! ```text
//!   writing   plaintext bytes per connection and direction
//!               ──► PcapWriter ──► pcapng: SHB, IDB (Ethernet), EPBs of synthetic
//!                                  Ethernet/IP/TCP packets (handshake, data, FIN)
//! ```
//!
//! Nothing here writes to a file or reads a clock: the writer writes to any
//! [`std::io::Write`] with the times it is given.

mod writer;

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
