//! The clock the sans-IO engine is given: [`Instant`].
//!
//! It is `std::time::Instant` everywhere except in the browser build (features `wasm`,
//! `wasm-azure`, `wasm-trace`, `wasm-inspector`, through `wasm-base`, on
//! `wasm32-unknown-unknown`), where std's clock panics: there it is this module's own
//! `Instant`, read from `performance.now()` (the page's or worker's monotonic clock), with
//! the part of std's API the crate uses. A binding of its own rather than a crate's: the
//! crates that offer one bring `js-sys`, whose closure shims and global-object lookup
//! cost the browser's module about 4 KB.
//!
//! Code that hands instants to the engine (everything under `connection`, the fuzzing
//! engine) must name this one: `std::time::Instant` there breaks the browser build, which
//! `.ci/run` checks (`cargo clippy --no-default-features --features wasm --target
//! wasm32-unknown-unknown`).

#[cfg(all(feature = "wasm-base", target_arch = "wasm32", target_os = "unknown"))]
pub use browser::Instant;
#[cfg(not(all(feature = "wasm-base", target_arch = "wasm32", target_os = "unknown")))]
pub use std::time::Instant;

#[cfg(all(feature = "wasm-base", target_arch = "wasm32", target_os = "unknown"))]
mod browser {
    use std::ops::{Add, AddAssign, Sub};
    use std::time::Duration;

    use wasm_bindgen::prelude::wasm_bindgen;

    #[wasm_bindgen]
    extern "C" {
        /// Milliseconds on the monotonic clock of the page or worker (High Resolution
        /// Time), with a fraction.
        #[wasm_bindgen(js_namespace = performance, js_name = now)]
        fn performance_now() -> f64;
    }

    /// A point on the browser's monotonic clock: the time since the page (or worker)
    /// started.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct Instant(Duration);

    impl Instant {
        /// Now. (A float-to-integer cast saturates: the clock's value is never negative
        /// or NaN, and this could not panic if it were.)
        pub fn now() -> Self {
            Self(Duration::from_nanos((performance_now() * 1e6) as u64))
        }

        /// The time from `earlier` to this one; zero if `earlier` is later (as std's).
        pub fn duration_since(&self, earlier: Self) -> Duration {
            self.0.saturating_sub(earlier.0)
        }

        /// As [`Instant::duration_since`].
        pub fn saturating_duration_since(&self, earlier: Self) -> Duration {
            self.duration_since(earlier)
        }

        /// The time since this one.
        pub fn elapsed(&self) -> Duration {
            Self::now().duration_since(*self)
        }

        /// This one plus `d`, if that can be represented.
        pub fn checked_add(&self, d: Duration) -> Option<Self> {
            self.0.checked_add(d).map(Self)
        }

        /// This one less `d`, if that is not before the clock's start.
        pub fn checked_sub(&self, d: Duration) -> Option<Self> {
            self.0.checked_sub(d).map(Self)
        }
    }

    impl Add<Duration> for Instant {
        type Output = Self;
        /// Panics on overflow, as std's.
        fn add(self, d: Duration) -> Self {
            Self(self.0 + d)
        }
    }

    impl AddAssign<Duration> for Instant {
        fn add_assign(&mut self, d: Duration) {
            self.0 += d;
        }
    }

    impl Sub for Instant {
        type Output = Duration;
        fn sub(self, earlier: Self) -> Duration {
            self.duration_since(earlier)
        }
    }
}
