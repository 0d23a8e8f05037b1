//! Definitions of part 4 (transactions).

use bytes::Bytes;

use crate::codec::{Symbol, Value};

use super::DeliveryState;

composite! {
    /// The target of a link to a transaction coordinator (4.5.1).
    #[derive(Default)]
    pub struct Coordinator : "coordinator", "amqp:coordinator:list", 0x30 {
        /// Capabilities the coordinator supports (`amqp:local-transactions`, …).
        capabilities: Vec<Symbol> => "capabilities", default(Vec::<Symbol>::new());
    }
}

composite! {
    /// A message body asking the coordinator to declare a transaction (4.5.2).
    #[derive(Default)]
    pub struct Declare : "declare", "amqp:declare:list", 0x31 {
        /// A global transaction id (not supported by most coordinators).
        global_id: Value => "global-id", optional;
    }
}

composite! {
    /// A message body asking the coordinator to end a transaction (4.5.3).
    pub struct Discharge : "discharge", "amqp:discharge:list", 0x32 {
        /// The transaction.
        txn_id: Bytes => "txn-id", mandatory;
        /// Roll back instead of commit.
        fail: bool => "fail", optional;
    }
}

composite! {
    /// The outcome of a declare: the new transaction's id (4.5.4).
    pub struct Declared : "declared", "amqp:declared:list", 0x33 {
        /// The transaction.
        txn_id: Bytes => "txn-id", mandatory;
    }
}

composite! {
    /// The state of a delivery inside a transaction (4.5.5).
    pub struct TransactionalState : "transactional-state", "amqp:transactional-state:list", 0x34 {
        /// The transaction.
        txn_id: Bytes => "txn-id", mandatory;
        /// The outcome to apply when the transaction commits.
        outcome: Box<DeliveryState> => "outcome", optional;
    }
}
