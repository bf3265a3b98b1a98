//! Registries: one annotated struct, fetched as one unit.

use std::ops::Deref;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};

use crate::clock::{ClockSource, ManualClock};
use crate::contract::Fields;
use crate::error::Error;
use crate::refresh::Engine;
use crate::schema::Schema;
use crate::slot::Retired;
use crate::store::Store;
use crate::tick::Tick;

/// A registry: the values of one `#[lockstep]` struct, fetched together and
/// switched together.
///
/// `#[lockstep]` puts one in a `static` (for `struct Flags`, `FLAGS`), whose
/// type adds one accessor per field and derefs to this type for everything
/// else: starting, snapshots, writes and status.
///
/// ```
/// use lockstep::lockstep;
///
/// #[lockstep(tick = "10m", backend = "memory")]
/// pub struct Flags {
///     /// Share of traffic that sees foobar, in percent.
///     #[lockstep(default = 0)]
///     pub foobar_percent: u8,
///     #[lockstep(default = "classic")]
///     pub theme: String,
///     pub maintenance: bool,
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lockstep::Error> {
/// // Before start, every field reads as its default.
/// assert_eq!(FLAGS.foobar_percent(), 0);
/// FLAGS.start().await?;
/// let flags = FLAGS.snapshot();
/// assert_eq!((flags.foobar_percent, flags.theme.as_str(), flags.maintenance), (0, "classic", false));
/// # Ok(())
/// # }
/// ```
pub struct Registry<S: Fields> {
    slots: S::Slots,
    current: LazyLock<ArcSwap<S>, fn() -> ArcSwap<S>>,
    retired: Retired<S>,
    engine: OnceLock<Engine<S>>,
}

fn defaults<S: Fields>() -> ArcSwap<S> {
    ArcSwap::from_pointee(S::defaults())
}

impl<S: Fields> Registry<S> {
    /// A registry over `slots`, not started.
    #[doc(hidden)]
    pub const fn __new(slots: S::Slots) -> Self {
        Registry {
            slots,
            current: LazyLock::new(defaults::<S>),
            retired: Retired::new(),
            engine: OnceLock::new(),
        }
    }

    /// The slots the generated accessors read.
    #[doc(hidden)]
    #[inline(always)]
    pub fn __slots(&self) -> &S::Slots {
        &self.slots
    }

    /// The registry's name in the store.
    pub fn namespace(&self) -> &'static str {
        S::DEF.namespace
    }

    /// The registry's tick.
    pub fn tick(&self) -> Tick {
        S::DEF.tick
    }

    /// The schema this registry publishes to its store at start.
    pub fn schema(&self) -> Schema {
        S::DEF.schema()
    }

    /// Every field at one instant: a multi-field change is never seen half
    /// applied through a snapshot. Takes no lock and allocates nothing.
    #[inline]
    pub fn snapshot(&self) -> Snapshot<S> {
        Snapshot(self.current.load())
    }

    /// Connects to the store (`LOCKSTEP_URL`, else the declared store kind's
    /// default), fetches once, and keeps the registry fresh in the
    /// background: see [`Builder::start`].
    pub async fn start(&'static self) -> Result<(), Error> {
        self.builder().start().await
    }

    /// Starts the registry with an explicit store, clock or bound.
    pub fn builder(&'static self) -> Builder<S> {
        Builder {
            registry: self,
            url: None,
            store: None,
            clock: ClockSource::System,
            boot_timeout: Duration::from_secs(5),
            follow_store: S::DEF.store_clock,
            skew: chrono::TimeDelta::zero(),
        }
    }

    pub(crate) fn engine(&self) -> Result<&Engine<S>, Error> {
        self.engine.get().ok_or_else(|| Error::NotStarted {
            namespace: S::DEF.namespace.to_owned(),
        })
    }

    pub(crate) fn publish(&self, values: S) {
        values.publish(&self.slots);
        self.retired.keep(self.current.swap(Arc::new(values)));
    }
}

/// A consistent view of every field of a registry at one instant; derefs to
/// the struct.
pub struct Snapshot<S>(Guard<Arc<S>>);

impl<S> Deref for Snapshot<S> {
    type Target = S;

    #[inline]
    fn deref(&self) -> &S {
        &self.0
    }
}

/// Options for starting a registry; from [`Registry::builder`].
#[must_use = "a builder does nothing until `.start().await`"]
pub struct Builder<S: Fields> {
    registry: &'static Registry<S>,
    url: Option<String>,
    store: Option<Arc<dyn Store>>,
    clock: ClockSource,
    boot_timeout: Duration,
    follow_store: bool,
    skew: chrono::TimeDelta,
}

impl<S: Fields> Builder<S> {
    /// The store's URL (`memory://`, `redis://…`), instead of `LOCKSTEP_URL`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// An already opened store, e.g. a [`MemoryStore`](crate::MemoryStore).
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// A manual clock for tests: the registry then fetches and flips only
    /// when the clock is advanced.
    pub fn clock(mut self, clock: &ManualClock) -> Self {
        self.clock = ClockSource::Manual(clock.clone());
        self
    }

    /// Makes flips follow the store's clock instead of this process's: each
    /// fetch reads the store's clock, and the offset estimated from the
    /// fetch with the shortest round trip (error at most half of it) shifts
    /// this process's clock. For fleets whose clocks are not synchronised;
    /// `#[lockstep(clock = "store")]` turns it on for a registry.
    pub fn follow_store_clock(mut self, follow: bool) -> Self {
        self.follow_store = follow;
        self
    }

    /// Pretends this process's clock is off by `skew`, to test what a badly
    /// synchronised machine does. Not for production.
    pub fn clock_skew(mut self, skew: chrono::TimeDelta) -> Self {
        self.skew = skew;
        self
    }

    /// How long `start` keeps trying the first fetch (default 5 s): a store
    /// that does not answer holds `start` this long at most. Past it,
    /// `start` returns, the registry serves its defaults, and keeps trying in
    /// the background.
    pub fn boot_timeout(mut self, timeout: Duration) -> Self {
        self.boot_timeout = timeout;
        self
    }

    /// Connects, publishes the schema, fetches once (trying for at most the
    /// boot timeout), and spawns the refresher on the current Tokio runtime: one
    /// fetch per tick at a random phase of this process, jittered backoff
    /// after failures, never two at once. Values switch at their instants on
    /// a timer thread, never in the accessors.
    ///
    /// Fails on a URL it cannot use, outside a Tokio runtime, or when the
    /// registry is already started; a store that does not answer is not an
    /// error (see [`Registry::status`]).
    pub async fn start(self) -> Result<(), Error> {
        let registry = self.registry;
        let clock = match self.clock {
            ClockSource::System if self.follow_store || !self.skew.is_zero() => {
                ClockSource::Adjusted(Arc::new(crate::clock::Adjustment {
                    skew: self.skew.num_nanoseconds().unwrap_or(0),
                    follow_store: self.follow_store,
                    store_offset: Default::default(),
                }))
            }
            clock => clock,
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let store = match self.store {
            Some(store) => store,
            None => {
                let url = self.url.unwrap_or_else(|| S::DEF.default_url());
                crate::store::connect(&url, &clock).await?
            }
        };
        let engine = Engine::new(store, clock);
        if registry.engine.set(engine).is_err() {
            return Err(Error::AlreadyStarted {
                namespace: S::DEF.namespace.to_owned(),
            });
        }
        crate::refresh::boot(registry, &runtime, self.boot_timeout).await;
        Ok(())
    }
}
