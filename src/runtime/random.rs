//! Unpredictable values for SCRAM nonces and salts, without a random-number crate: the
//! standard library's randomly keyed hasher (fresh keys per process, stepped on each use)
//! over a counter and the time. The sans-IO engine takes its randomness from the caller;
//! this is where the runtime and the broker get theirs.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// 64 unpredictable bits.
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(now);
    h.finish()
}

/// `N` unpredictable bytes.
pub(crate) fn bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    for chunk in b.chunks_mut(8) {
        chunk.copy_from_slice(&random_u64().to_be_bytes()[..chunk.len()]);
    }
    b
}

/// A SCRAM nonce: 32 hex digits (printable, no `,`).
pub(crate) fn nonce() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}
