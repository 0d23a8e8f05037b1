//! The tokio runtime: the engine of [`crate::connection`] on real sockets.
//!
//! ```text
//!   Connection::connect(url) ─► transport::connect ─► driver task ─► engine (client)
//!   Listener::bind(url) ─► accept ─► Incoming::establish ─► driver task ─► engine (server)
//!                                                           └► ServerConnection::next_link
//!
//!   driver task:  read ─► handle_input_bytes │ poll_transmit ─► write (+ flush: one
//!                 WebSocket message)         │ poll_timeout ─► sleep ─► handle_timeout
//!                 events ─► the handles waiting for them (open, begin, attach, outcomes,
//!                 deliveries); commands from the handles run under the same lock
//! ```
//!
//! Handles: [`Connection`] (begin sessions, close), [`Session`] (attach senders and
//! receivers, end), [`Sender`] (send and await the outcome, pipeline many, or send
//! pre-settled), [`Receiver`] (a credit window refilled as deliveries are taken, never
//! waiting for settlement, and bounded in bytes by [`RECV_BUDGET`]; accept, reject,
//! release, modify; drain). A [`Listener`] accepts
//! connections on any of the four schemes and hands the application each link the peer
//! attaches as a [`LinkRequest`] to accept or refuse. Transactions (part 4): a
//! [`Controller`] from [`Session::coordinator`] declares [`Transaction`]s that
//! [`Sender::send_in`] and [`Receiver::settle_in`] put work into; a server whose engine
//! runs the coordinator hears of each transaction's end from [`ServerConnection::next`].
//! Errors ([`Error`]) say which scope
//! ended and carry the peer's condition and description.
//!
//! Dropping cleans up, so that a long-lived connection holds only what is in use and the
//! peer is never left waiting: a dropped `Sender` or `Receiver` closes its link (a sender
//! once the outcomes still awaited have arrived), an attach given up before its answer
//! closes the link, a `Session` ends once nothing made on it is left, a `Connection` closes
//! once its last handle goes, a `Transaction` not discharged rolls back, and on a server a
//! `LinkRequest` or `TxnEnd` dropped unanswered is refused.
//! `close()` and dropping destroy a link's terminus; `detach()` suspends the link instead,
//! keeping its unsettled deliveries for a later link of the same name to resume.
//!
//! Back-pressure: the driver stops reading while more than [`HIGH_WATER`] bytes of output
//! wait for a transport that does not take them; receivers only grant credit for what the
//! application has taken.
//!
//! Observability: each connection runs in a `tracing` span `amqp_connection` (role,
//! container-id, peer address, scheme); opens, closes and SASL outcomes are INFO events,
//! sessions, links and transactions DEBUG, errors WARN with their AMQP condition, and with
//! TRACE enabled for target `amqpwire::frame` every frame in and out is an event (its
//! name, channel and size, never a field that can hold a credential).
//!
//! Built with the `tokio` feature (on by default). Without it the crate has no async, TLS
//! or WebSocket dependency.

mod driver;
mod error;
#[cfg(feature = "json")]
pub mod fuzzpeer;
mod handles;
mod listener;
pub(crate) mod random;
#[cfg(feature = "json")]
pub mod script;
pub mod transport;
mod txn;

pub use driver::{Delivery, TransportEnd, HIGH_WATER, INITIAL_CREDIT, RECV_BUDGET};
pub use error::Error;
pub use handles::{
    Configure, ConnectOptions, Connection, PendingOutcome, Receiver, Sender, Session,
};
pub use listener::{
    AuthenticatorFactory, ConfigureFn, ConnectionNumbers, EndedFn, Incoming, LinkRequest,
    ListenOptions, Listener, ServerConnection, ServerEvent, SharedTrace, StartedFn, TxnEnd,
};
pub use txn::{Controller, Transaction};
