#![forbid(unsafe_code)]
//! amqpwire: an AMQP 1.0 protocol engine written from the OASIS specification, for people
//! who need to see and trust every byte on the wire.
//!
//! It holds the wire layer (the type system of part 1, every definition of parts 2 to 5,
//! frames, messages, an annotated stream decoder) and, on top of it, the sans-IO engine in
//! [`connection`]: connection, session and link state machines for both roles, SASL,
//! flow control, settlement and link recovery, driven by bytes in and bytes and events
//! out, with time passed in. Nothing below the runtime reads a socket or a clock.
//!
//! ```text
//!   bytes in ──► frame::FrameDecoder ──► RawFrame ──► types::Performative / SaslFrameBody
//!                (any chunking,            │              (typed, strict or lenient)
//!                 max-frame-size)          │
//!                                          └──► message::Message     (sections, body shared)
//!                                          └──► inspect::Inspector   (offsets, raw bytes,
//!                                                                     text and JSON)
//!   codec::ValueRef  borrowed, lazy, no allocation     codec::Value  owned, lossless
//!
//!   types::Performative + message::Message ──► frame::FrameEncoder ──► bytes out
//!                                              (split at max-frame-size, bodies referenced)
//!
//!   connection::Connection   handle_input / handle_timeout / handle_eof ──► state machines
//!   (client or server)       commands (begin, attach, flow, send, disposition, …)
//!                            poll_transmit ──► bytes   poll_event ──► Event   poll_timeout
//! ```
//!
//! Decoding never panics, never loops and never allocates for a size or count before
//! checking it against the bytes present; see `docs/architecture.md` for the rules.
//!
//! # Example
//!
//! Encode a telemetry transfer, then read it back as a stream of frames:
//!
//! ```
//! use amqpwire::codec::DecodeOptions;
//! use amqpwire::frame::{FrameBody, FrameDecoder, FrameEncoder, ProtocolHeader, StreamItem};
//! use amqpwire::message::{Message, Payload};
//! use amqpwire::types::{Handle, Performative, Properties, SequenceNo, Transfer};
//!
//! // A message with a `to` address and a JSON body, on link handle 0.
//! let mut message = Message::with_data(&b"{\"temperature\":21.5}"[..]);
//! message.properties = Some(Properties { to: Some("/devices/d1/messages/events".into()), ..Default::default() });
//! let mut transfer = Transfer::new(Handle(0));
//! transfer.delivery_id = Some(SequenceNo(0));
//! transfer.delivery_tag = Some(bytes::Bytes::from_static(b"\x00"));
//! transfer.message_format = Some(0);
//!
//! let mut out = Payload::default();
//! out.head.extend_from_slice(&ProtocolHeader::AMQP.to_bytes());
//! FrameEncoder::new(65536).encode_message(0, &transfer, &message, &mut out)?;
//! let wire = out.to_vec();
//!
//! // Feed the bytes back one at a time: frame boundaries need not match reads.
//! let mut decoder = FrameDecoder::new(65536);
//! let mut items = Vec::new();
//! for b in &wire {
//!     decoder.push(std::slice::from_ref(b));
//!     while let Some(item) = decoder.next_item()? {
//!         items.push(item);
//!     }
//! }
//! let StreamItem::Frame(raw) = &items[1] else { panic!("expected a frame") };
//! let frame = raw.decode(DecodeOptions::STRICT)?;
//! let FrameBody::Amqp { performative: Performative::Transfer(t), payload } = frame.body else {
//!     panic!("expected a transfer")
//! };
//! assert_eq!(t.delivery_id, Some(SequenceNo(0)));
//! assert_eq!(Message::decode(&payload)?, message);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! To see a captured stream the way the spec describes it, use
//! [`inspect::Inspector`] or the `amqpwire decode` command. For Azure, [`azure`] makes,
//! parses and checks shared access signature tokens and reads connection strings; with the
//! `tokio` feature, `azure::client` talks to IoT Hub (service, device, event monitor) and
//! `azure::emulator` is a local IoT Hub for tests.

pub mod azure;
#[cfg(feature = "tokio")]
pub mod broker;
/// Packet captures, sans-IO: AMQP streams as pcapng files; AMQP found and decoded in captures.
pub mod capture;
pub mod codec;
pub mod connection;
#[macro_use]
pub mod types;
pub mod frame;
pub mod fuzzing;
#[cfg(feature = "json")]
pub mod fuzzpeer;
pub mod inspect;
pub mod json;
pub mod message;
#[cfg(feature = "tokio")]
pub mod proxy;
#[cfg(feature = "tokio")]
pub mod runtime;
pub mod samples;
pub mod sasl;
#[cfg(feature = "json")]
pub mod script;
pub mod time;
#[cfg(feature = "wasm-base")]
pub mod wasm;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
