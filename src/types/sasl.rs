//! The SASL frame bodies of part 5 (5.3.3), and the [`SaslFrameBody`] union.

use bytes::Bytes;
use bytestring::ByteString;

use crate::codec::{DecodeError, ErrorKind, Reader, Symbol, Value};

use super::{read_descriptor, Composite, Layout, SaslCode};

composite! {
    /// The mechanisms the server supports (5.3.3.1).
    pub struct SaslMechanisms : "sasl-mechanisms", "amqp:sasl-mechanisms:list", 0x40 {
        /// Supported mechanisms, in order of preference.
        sasl_server_mechanisms: Vec<Symbol> => "sasl-server-mechanisms", mandatory;
    }
}

composite! {
    /// The client's chosen mechanism and initial response (5.3.3.2).
    pub struct SaslInit : "sasl-init", "amqp:sasl-init:list", 0x41 {
        /// The chosen mechanism.
        mechanism: Symbol => "mechanism", mandatory;
        /// The initial response for the mechanism.
        initial_response: Bytes => "initial-response", optional;
        /// The name of the target host.
        hostname: ByteString => "hostname", optional;
    }
}

composite! {
    /// A security challenge (5.3.3.3).
    pub struct SaslChallenge : "sasl-challenge", "amqp:sasl-challenge:list", 0x42 {
        /// The challenge data.
        challenge: Bytes => "challenge", mandatory;
    }
}

composite! {
    /// A response to a challenge (5.3.3.4).
    pub struct SaslResponse : "sasl-response", "amqp:sasl-response:list", 0x43 {
        /// The response data.
        response: Bytes => "response", mandatory;
    }
}

composite! {
    /// The outcome of the exchange (5.3.3.5).
    pub struct SaslOutcome : "sasl-outcome", "amqp:sasl-outcome:list", 0x44 {
        /// Outcome of the exchange.
        code: SaslCode => "code", mandatory;
        /// Additional data for the client (for the last challenge-less step).
        additional_data: Bytes => "additional-data", optional;
    }
}

/// The body of a SASL frame.
#[derive(Clone, Debug, PartialEq)]
pub enum SaslFrameBody {
    /// sasl-mechanisms.
    Mechanisms(SaslMechanisms),
    /// sasl-init.
    Init(SaslInit),
    /// sasl-challenge.
    Challenge(SaslChallenge),
    /// sasl-response.
    Response(SaslResponse),
    /// sasl-outcome.
    Outcome(SaslOutcome),
}

macro_rules! sasl_dispatch {
    ($($v:ident($t:ident)),*) => {
        impl SaslFrameBody {
            /// The spec's name (`"sasl-init"` …).
            pub fn name(&self) -> &'static str {
                match self { $(Self::$v(_) => $t::NAME,)* }
            }

            /// Reads a SASL frame body at the reader's position.
            pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                let pos = r.position();
                let d = read_descriptor(r)?;
                $( if d.is::<$t>() { return Ok(Self::$v($t::read_list(r)?)); } )*
                Err(r.error_at(pos, ErrorKind::UnexpectedDescriptor { expected: "a SASL frame body", found: d.to_string() }))
            }

            /// Appends the encoding in `layout`.
            pub fn encode_with(&self, layout: Layout, out: &mut Vec<u8>) {
                match self { $(Self::$v(p) => p.encode_with(layout, out),)* }
            }

            /// Bytes [`SaslFrameBody::encode_with`] writes.
            pub fn encoded_len_with(&self, layout: Layout) -> usize {
                match self { $(Self::$v(p) => p.encoded_len_with(layout),)* }
            }

            /// The body as named generic values, for rendering.
            pub fn field_values(&self) -> Vec<(&'static str, Option<Value>)> {
                let mut buf = Vec::new();
                self.encode_with(Layout::AllFields, &mut buf);
                let fields: &[&str] = match self { $(Self::$v(_) => $t::FIELDS,)* };
                crate::types::field_values(&buf, fields)
            }
        }

        $(
            impl From<$t> for SaslFrameBody {
                fn from(p: $t) -> Self {
                    Self::$v(p)
                }
            }
        )*
    };
}

sasl_dispatch!(
    Mechanisms(SaslMechanisms),
    Init(SaslInit),
    Challenge(SaslChallenge),
    Response(SaslResponse),
    Outcome(SaslOutcome)
);
