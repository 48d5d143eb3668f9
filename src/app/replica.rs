//! A read replica: lag-tolerant reads (lists, reports, exports, the due queries) go to it
//! while its measured lag is within the bound, and to the primary otherwise, or while the
//! lag is unknown (the replica unreachable, or not a standby). The lag is measured by a
//! task the server runs ([`crate::server::serve_with_replica`]).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::App;
use crate::store::Store;

/// Lag not measured yet, or the replica did not answer.
const UNKNOWN: i64 = -1;

/// The replica's store, its lag bound, and its last measured lag.
#[derive(Debug)]
pub struct ReadRoute<S: Store> {
    pub store: S,
    pub max_lag: Duration,
    /// Microseconds behind the primary at the last look; `UNKNOWN` below 0.
    lag_us: AtomicI64,
}

impl<S: Store> ReadRoute<S> {
    pub fn new(store: S, max_lag: Duration) -> ReadRoute<S> {
        ReadRoute {
            store,
            max_lag,
            lag_us: AtomicI64::new(UNKNOWN),
        }
    }

    /// Records a look at the lag: seconds behind, or `None` when unknown.
    pub fn set_lag(&self, lag: Option<f64>) {
        let us = match lag {
            Some(s) if s.is_finite() => (s.max(0.0) * 1e6) as i64,
            _ => UNKNOWN,
        };
        self.lag_us.store(us, Ordering::Relaxed);
    }

    /// The last measured lag, or `None` when unknown.
    pub fn lag(&self) -> Option<Duration> {
        u64::try_from(self.lag_us.load(Ordering::Relaxed))
            .ok()
            .map(Duration::from_micros)
    }

    /// Whether reads may go to the replica now: its lag is known and within the bound.
    pub fn usable(&self) -> bool {
        self.lag().is_some_and(|l| l <= self.max_lag)
    }
}

impl<S: Store> App<S> {
    /// Where a lag-tolerant read goes: the replica while usable, else the primary.
    /// `Get*` and everything inside a write read `self.store` instead.
    pub fn reads(&self) -> &S {
        match &self.replica {
            Some(r) if r.usable() => &r.store,
            _ => &self.store,
        }
    }
}
