//! The in-flight body budget: bytes of request bodies (as received, and their
//! decompressed copies) held in memory at once, bounded by `MAX_INFLIGHT_BODY_BYTES`.
//! `http::budget` charges each body before it is buffered; a handler that decompresses
//! one charges the copy with [`charge_copy`].

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use crate::error::AppError;

/// How long a refused sender is asked to wait before it retries, in seconds.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// Bytes of request bodies that may be held at once, and how many are.
#[derive(Debug)]
pub struct Budget {
    capacity: usize,
    held: AtomicUsize,
}

impl Budget {
    pub fn new(capacity: usize) -> Self {
        Self { capacity, held: AtomicUsize::new(0) }
    }

    /// Bytes charged to requests being answered now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Takes `bytes` if they fit under the capacity.
    fn try_take(&self, bytes: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|total| *total <= self.capacity)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// What one request has charged to the budget; released when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Charge(Arc<ChargeInner>);

#[derive(Debug)]
struct ChargeInner {
    budget: Arc<Budget>,
    bytes: AtomicUsize,
    /// A charge was refused: the request is answered 503 whatever its handler made of
    /// the body it could not read whole.
    refused: AtomicBool,
}

impl Charge {
    pub fn new(budget: Arc<Budget>) -> Self {
        Self(Arc::new(ChargeInner { budget, bytes: AtomicUsize::new(0), refused: AtomicBool::new(false) }))
    }

    /// Charges `bytes` more to this request: `Unavailable` when they do not fit (the
    /// request is then answered 503 with `Retry-After`).
    pub fn take(&self, bytes: usize) -> Result<(), AppError> {
        if self.0.budget.try_take(bytes) {
            self.0.bytes.fetch_add(bytes, Ordering::AcqRel);
            Ok(())
        } else {
            self.0.refused.store(true, Ordering::Release);
            Err(overloaded())
        }
    }

    /// Whether a charge of this request did not fit.
    pub fn refused(&self) -> bool {
        self.0.refused.load(Ordering::Acquire)
    }
}

impl Drop for ChargeInner {
    fn drop(&mut self) {
        self.budget.give_back(*self.bytes.get_mut());
    }
}

tokio::task_local! {
    /// The charge of the request being answered, for the handlers that make a
    /// decompressed copy of its body.
    pub static CHARGE: Charge;
}

/// Charges a decompressed copy of `bytes` bytes to the request being answered (nothing
/// outside a request, as in unit tests of a handler's parts).
pub fn charge_copy(bytes: usize) -> Result<(), AppError> {
    CHARGE.try_with(|charge| charge.take(bytes)).unwrap_or(Ok(()))
}

/// The refusal of a body that does not fit (503, with `Retry-After` added by the caller).
pub fn overloaded() -> AppError {
    AppError::Unavailable(format!(
        "The server is holding as many request bodies as it may; retry after {RETRY_AFTER_SECONDS} seconds"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_fits_under_the_capacity_and_is_released_when_dropped() {
        let budget = Arc::new(Budget::new(100));
        let first = Charge::new(budget.clone());
        assert!(first.take(60).is_ok());
        let second = Charge::new(budget.clone());
        assert!(second.take(41).is_err(), "60 + 41 > 100");
        assert!(second.refused());
        assert!(second.take(40).is_ok());
        assert_eq!(budget.held(), 100);
        drop(first.clone());
        assert_eq!(budget.held(), 100, "a clone's drop releases nothing");
        drop(first);
        assert_eq!(budget.held(), 40);
        drop(second);
        assert_eq!(budget.held(), 0);
    }
}
