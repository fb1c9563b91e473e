//! The budget of request-body bytes buffered across all requests (SPEC §9): a body is read into
//! memory only as far as the budget covers it; beyond, the request is refused with a 503.
//!
//! Bytes are charged as the buffer grows, not on the declared `Content-Length`, so a client that
//! declares 7 MiB and sends nothing holds nothing. Bytes past the first [`SMALL_BODY_BYTES`] of a
//! body are also charged to a second, smaller pool ([`LARGE_SHARE`] of the budget): large bodies
//! together never take the last quarter, which stays for the ordinary reviews of a few KiB.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::server::metrics::Metrics;

/// The part of every body that counts only against the whole budget: an ordinary Pod review is
/// 5 to 50 KiB.
pub const SMALL_BODY_BYTES: usize = 256 * 1024;

/// Share of the budget that the bytes of bodies beyond [`SMALL_BODY_BYTES`] may hold together,
/// as (numerator, denominator).
pub const LARGE_SHARE: (usize, usize) = (3, 4);

/// Shared by all requests; cheap to clone.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    inner: Arc<Pools>,
}

#[derive(Debug)]
struct Pools {
    limit: usize,
    all: Semaphore,
    large: Semaphore,
}

impl BodyBudget {
    /// A budget of `limit` bytes (at most `u32::MAX`, the most one acquisition can take).
    pub fn new(limit: usize) -> Self {
        let limit = limit.min(u32::MAX as usize);
        let large = limit / LARGE_SHARE.1 * LARGE_SHARE.0;
        BodyBudget {
            inner: Arc::new(Pools {
                limit,
                all: Semaphore::new(limit),
                large: Semaphore::new(large),
            }),
        }
    }

    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes held by bodies being read now.
    pub fn in_use(&self) -> usize {
        self.inner.limit - self.inner.all.available_permits()
    }

    /// An empty reservation for one body; what it holds is given back when it is dropped.
    pub fn reserve<'a>(&'a self, metrics: &'a Metrics) -> Reservation<'a> {
        Reservation {
            pools: &self.inner,
            metrics,
            all: 0,
            large: 0,
        }
    }
}

/// The bytes one body holds.
#[derive(Debug)]
pub struct Reservation<'a> {
    pools: &'a Pools,
    metrics: &'a Metrics,
    all: usize,
    large: usize,
}

impl Reservation<'_> {
    /// Bytes held.
    pub fn held(&self) -> usize {
        self.all
    }

    /// Grows the reservation to `bytes` in all; `false`, holding what it held before, when the
    /// budget cannot cover it now (never waits).
    pub fn grow_to(&mut self, bytes: usize) -> bool {
        let more_all = bytes.saturating_sub(self.all);
        let more_large = bytes
            .saturating_sub(SMALL_BODY_BYTES)
            .saturating_sub(self.large);
        let (Ok(all), Ok(large)) = (u32::try_from(more_all), u32::try_from(more_large)) else {
            return false;
        };
        let Ok(large_permit) = self.pools.large.try_acquire_many(large) else {
            return false;
        };
        let Ok(all_permit) = self.pools.all.try_acquire_many(all) else {
            return false;
        };
        large_permit.forget();
        all_permit.forget();
        self.all += more_all;
        self.large += more_large;
        self.metrics.body_bytes_buffered(more_all as i64);
        true
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.pools.all.add_permits(self.all);
        self.pools.large.add_permits(self.large);
        self.metrics.body_bytes_buffered(-(self.all as i64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn a_reservation_grows_until_the_budget_is_spent_and_gives_everything_back() {
        let (budget, metrics) = (BodyBudget::new(8 * MIB), Metrics::new());
        let mut a = budget.reserve(&metrics);
        assert!(a.grow_to(4 * MIB));
        assert!(a.grow_to(2 * MIB), "shrinking is a no-op");
        assert_eq!((a.held(), budget.in_use()), (4 * MIB, 4 * MIB));
        let mut b = budget.reserve(&metrics);
        // Large bodies share 6 MiB: 4 MiB - 256 KiB are taken by `a`.
        assert!(!b.grow_to(4 * MIB));
        assert_eq!(b.held(), 0, "a refused growth holds nothing more");
        assert!(b.grow_to(2 * MIB));
        drop(a);
        assert_eq!(budget.in_use(), 2 * MIB);
        assert!(b.grow_to(6 * MIB));
        drop(b);
        assert_eq!(budget.in_use(), 0);
        assert!(metrics.encode(0, true).contains("body_bytes_buffered 0\n"));
    }

    #[test]
    fn large_bodies_leave_a_quarter_to_small_ones() {
        let (budget, metrics) = (BodyBudget::new(8 * MIB), Metrics::new());
        let mut large: Vec<_> = (0..3).map(|_| budget.reserve(&metrics)).collect();
        let grown = large
            .iter_mut()
            .map(|r| r.grow_to(3 * MIB))
            .filter(|&ok| ok)
            .count();
        assert_eq!(grown, 2, "6 MiB of large bytes at most");
        assert!(
            !large[2].grow_to(SMALL_BODY_BYTES + MIB),
            "0.5 MiB of large bytes left"
        );
        // 8 MiB - 6 MiB: small bodies still fit.
        let mut small: Vec<_> = (0..7).map(|_| budget.reserve(&metrics)).collect();
        assert!(small.iter_mut().all(|r| r.grow_to(SMALL_BODY_BYTES)));
        assert!(
            !budget
                .reserve(&metrics)
                .grow_to(2 * MIB - 7 * SMALL_BODY_BYTES + 1)
        );
    }
}
