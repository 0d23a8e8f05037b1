//! Transactions for clients (part 4): a controller attached to the peer's coordinator,
//! transactions declared on it, and work sent ([`Sender::send_in`]) and settled
//! ([`Receiver::settle_in`](super::Receiver::settle_in)) in them.
//!
//! ```no_run
//! # async fn run() -> Result<(), amqpwire::runtime::Error> {
//! use amqpwire::message::Message;
//! use amqpwire::runtime::Connection;
//!
//! let conn = Connection::connect("amqp://127.0.0.1:5672").await?;
//! let session = conn.begin_session().await?;
//! let sender = session.sender("orders-in", "orders").await?;
//! let controller = session.coordinator().await?;
//! let txn = controller.declare().await?;
//! sender.send_in(&txn, &Message::with_data(&b"one"[..])).await?;
//! sender.send_in(&txn, &Message::with_data(&b"two"[..])).await?;
//! txn.commit().await?; // both become visible now; rollback() would drop them
//! # Ok(()) }
//! ```

use std::sync::Arc;

use bytes::Bytes;

use super::{Error, Sender};
use crate::connection::txn;
use crate::types::Attach;

/// A transaction controller: a link to the peer's coordinator, on which transactions are
/// declared and discharged.
#[derive(Debug)]
pub struct Controller {
    pub(crate) sender: Arc<Sender>,
}

impl Controller {
    pub(crate) fn new(sender: Sender) -> Self {
        Self { sender: Arc::new(sender) }
    }

    /// The coordinator's attach: its target lists the capabilities it has.
    pub fn remote(&self) -> &Attach {
        self.sender.remote()
    }

    /// Declares a new transaction (4.2) and waits for its id; a refusal is
    /// [`Error::Transaction`] with the coordinator's error.
    pub async fn declare(&self) -> Result<Transaction, Error> {
        let state = self.sender.send(&txn::declare_message()).await?;
        let id = txn::read_declared(Some(&state)).map_err(Error::Transaction)?;
        Ok(Transaction { id, sender: Arc::clone(&self.sender), discharged: false })
    }

    /// A handle for transaction `id`, declared earlier on this controller or elsewhere
    /// (or never: the coordinator judges the id when work or a discharge names it). Unlike
    /// one from [`declare`](Self::declare), dropping it does not roll the transaction back.
    pub fn transaction(&self, id: Bytes) -> Transaction {
        // Not its owner: dropping this handle leaves the transaction as it is.
        Transaction { id, sender: Arc::clone(&self.sender), discharged: true }
    }

    /// Detaches the control link (closing it): transactions still open on it roll back.
    pub async fn close(self) -> Result<(), Error> {
        match Arc::try_unwrap(self.sender) {
            Ok(sender) => sender.close().await,
            // A transaction still holds the link: it stays until that one is discharged.
            Err(_) => Ok(()),
        }
    }
}

/// A transaction declared by a [`Controller`]: work goes into it until it is committed or
/// rolled back.
///
/// One from [`Controller::declare`], dropped before [`commit`](Self::commit) or
/// [`rollback`](Self::rollback) sent its discharge (an early return on an error, say), is
/// rolled back: a discharge with `fail` is queued on the control link without waiting for
/// its answer, sent at once or, when the coordinator has granted no credit, as soon as it
/// grants some. If the control link goes first, the coordinator rolls the transaction back
/// for that.
#[derive(Debug)]
pub struct Transaction {
    id: Bytes,
    sender: Arc<Sender>,
    /// Whether dropping it needs no rollback: its discharge is queued, or the transaction
    /// is not this handle's (one from [`Controller::transaction`]).
    discharged: bool,
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.discharged {
            self.sender.send_unawaited(&txn::discharge_message(self.id.clone(), true));
        }
    }
}

impl Transaction {
    /// The transaction's id, as the coordinator gave it.
    pub fn id(&self) -> &Bytes {
        &self.id
    }

    /// Commits the transaction (4.3) and waits for the coordinator's answer: `Ok` once it
    /// accepted; a refusal (the work was rolled back instead, the id was unknown, the
    /// transaction timed out) is [`Error::Transaction`] with its error.
    pub async fn commit(self) -> Result<(), Error> {
        self.discharge(false).await
    }

    /// Rolls the transaction back (4.3: discharge with `fail`) and waits for the answer.
    pub async fn rollback(self) -> Result<(), Error> {
        self.discharge(true).await
    }

    async fn discharge(mut self, fail: bool) -> Result<(), Error> {
        let message = txn::discharge_message(self.id.clone(), fail);
        let outcome = self.sender.send_pipelined(&message).await?;
        // Queued: given up from here on (this future dropped), the discharge still goes.
        self.discharged = true;
        let state = outcome.await?;
        txn::read_discharged(Some(&state)).map_err(Error::Transaction)
    }
}
