//! Registries: one annotated struct, fetched as one unit.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::Guard;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use crate::clock::{Adjustment, ClockSource, ManualClock};
use crate::contract::Fields;
use crate::engine::Engine;
use crate::error::Error;
use crate::flip::flip_now;
use crate::host::Host;
use crate::published::Published;
use crate::report::Identity;
use crate::schema::Schema;
use crate::status::Status;
use crate::store::Fleet;
use crate::store::Store;
use crate::tick::{Tick, from_datetime};
use crate::writer::{Change, Field, IntoValue, Writer};

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
/// #[lockstep(tick = "10m", store = "memory")]
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
    published: Published<S>,
    started: OnceCell<Started<S>>,
}

/// A started registry: its engine, the way writes reach the store, and the
/// URL it was started from (for `start()` called again).
struct Started<S: Fields> {
    engine: Arc<Engine<S>>,
    writer: Writer,
    url: Option<String>,
}

impl<S: Fields> Registry<S> {
    /// A registry over `slots`, not started.
    #[doc(hidden)]
    pub const fn __new(slots: S::Slots) -> Self {
        Registry {
            published: Published::new(slots),
            started: OnceCell::const_new(),
        }
    }

    /// The slots the generated accessors read.
    #[doc(hidden)]
    #[inline(always)]
    pub fn __slots(&self) -> &S::Slots {
        &self.published.slots
    }

    /// The registry's name in the store.
    pub fn namespace(&self) -> &'static str {
        S::DEF.namespace
    }

    /// The registry's tick.
    pub fn tick(&self) -> Tick {
        S::DEF.tick
    }

    /// The schema this registry publishes to its store.
    pub fn schema(&self) -> Schema {
        S::DEF.schema()
    }

    /// Every field at one instant: a multi-field change is never seen half
    /// applied through a snapshot. Takes no lock and allocates nothing.
    #[inline]
    pub fn snapshot(&self) -> Snapshot<S> {
        Snapshot(self.published.load())
    }

    /// Connects to the store (`LOCKSTEP_URL`, else the declared store kind's
    /// default), fetches once, and keeps the registry fresh on lockstep's
    /// own threads: see [`Builder::start`].
    ///
    /// Called again on a registry started this way from the same URL, it
    /// returns `Ok` at once (or once the first call's start-up is done): so
    /// each of an application's `#[tokio::test]`s, each on its own runtime,
    /// may call `FLAGS.start().await?` on the one static, and the registry
    /// keeps refreshing when the runtime of the test that started it is
    /// gone. Called again with another URL, or after [`Builder::start`],
    /// it fails with [`Error::AlreadyStarted`].
    pub async fn start(&'static self) -> Result<(), Error> {
        let mut builder = self.builder();
        builder.again = true;
        builder.start().await
    }

    /// [`start`](Registry::start) for a program without a Tokio runtime;
    /// blocks until start-up is done. Must not be called from within an
    /// async runtime (it panics there: use `start().await`).
    pub fn start_blocking(&'static self) -> Result<(), Error> {
        let mut builder = self.builder();
        builder.again = true;
        builder.start_blocking()
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
            report: true,
            realtime_flips: true,
            again: false,
        }
    }

    fn started(&self) -> Result<&Started<S>, Error> {
        self.started.get().ok_or_else(|| Error::NotStarted {
            namespace: S::DEF.namespace.to_owned(),
        })
    }

    /// The started registry's engine, for the unit tests.
    #[cfg(test)]
    pub(crate) fn engine(&self) -> &Arc<Engine<S>> {
        &self.started().expect("a started registry").engine
    }

    /// Fetches now, outside the schedule, and applies what it got. Waits for
    /// a fetch already under way rather than starting a second one. Unlike
    /// the scheduled fetches, which read nothing more of a registry whose
    /// revision has not changed, this one reads the registry in full,
    /// whatever this process holds: entries changed behind lockstep's back
    /// (by hand, in the store) are seen.
    pub async fn refresh(&'static self) -> Result<(), Error> {
        let engine = &self.started()?.engine;
        crate::refresh::fetch_full(&**engine).await?;
        flip_now(&**engine);
        Ok(())
    }

    /// The fleet of this registry: the live processes that report to its
    /// store and, for every pending change, which of them hold it (see
    /// [`fleet`](crate::store::fleet())). Works on a registry that does not report
    /// itself, too.
    ///
    /// ```
    /// # use lockstep::lockstep;
    /// #[lockstep(tick = "10m", store = "memory")]
    /// pub struct Flags {
    ///     pub maintenance: bool,
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), lockstep::Error> {
    /// FLAGS.start().await?;
    /// FLAGS.set(Flags::MAINTENANCE, true).await?;
    /// let fleet = FLAGS.fleet().await?;
    /// // This process reported at its first fetch, before the write: it
    /// // holds the change from its next fetch on.
    /// assert_eq!(fleet.processes.len(), 1);
    /// assert_eq!(fleet.pending[0].of, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn fleet(&'static self) -> Result<Fleet, Error> {
        let started = self.started()?;
        let store = started.engine.store().clone();
        let keys = started.engine.keys().to_vec();
        crate::host::run_on(&started.writer.runtime, async move {
            crate::store::fleet(&*store, S::DEF.namespace, &keys, Some(S::DEF.tick)).await
        })
        .await
    }

    /// How the registry is doing: its last fetch, failures, pending changes,
    /// late flips and bad entries.
    pub fn status(&self) -> Status {
        match self.started() {
            Ok(started) => started.engine.status(),
            Err(_) => Status::not_started(S::DEF.namespace),
        }
    }

    /// A change of several fields and steps, written atomically.
    pub fn change(&'static self) -> Change<S> {
        Change::new(self.started().map(|s| s.writer.clone()))
    }

    /// Sets `field` to `value` (a `T`, or what converts into one: see
    /// [`IntoValue`]) at the horizon, the earliest instant every process is
    /// sure to know of it in time; returns that instant.
    pub async fn set<T: Serialize + DeserializeOwned>(
        &'static self,
        field: Field<S, T>,
        value: impl IntoValue<T>,
    ) -> Result<DateTime<Utc>, Error> {
        let instants = self.change().set(field, value).apply().await?;
        first(instants)
    }

    /// Sets `field` to `value` at `when` rounded up to a tick boundary;
    /// refused, naming the earliest allowed instant, if that is before the
    /// horizon. Returns the instant it takes effect. `value` is a `T` or
    /// converts into one ([`IntoValue`]).
    pub async fn schedule<T: Serialize + DeserializeOwned>(
        &'static self,
        field: Field<S, T>,
        value: impl IntoValue<T>,
        when: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, Error> {
        let instants = self.change().set(field, value).at(when).apply().await?;
        first(instants)
    }

    /// Writes `values` as consecutive entries of `field`, the first at the
    /// horizon and each next one a tick later, in one atomic commit (a
    /// dark-launch ramp). Returns their instants. Each value is a `T` or
    /// converts into one ([`IntoValue`]).
    pub async fn ramp<T: Serialize + DeserializeOwned, V: IntoValue<T>>(
        &'static self,
        field: Field<S, T>,
        values: impl IntoIterator<Item = V>,
    ) -> Result<Vec<DateTime<Utc>>, Error> {
        let every = S::DEF.tick.as_duration();
        let mut change = self.change();
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                change = change.then_after(every);
            }
            change = change.set(field, value);
        }
        change.apply().await
    }

    /// Removes the entry of `field` at `at`, which must be at or beyond the
    /// horizon (an entry any process may already act on is never removed).
    pub async fn cancel<T>(
        &'static self,
        field: Field<S, T>,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let writer = &self.started()?.writer;
        writer
            .cancel::<S>(field.key(), from_datetime(at))
            .await
            .map(|_| ())
    }
}

/// The instant of a one-step change.
fn first(instants: Vec<DateTime<Utc>>) -> Result<DateTime<Utc>, Error> {
    instants.into_iter().next().ok_or_else(|| Error::Store {
        store: String::new(),
        message: "the store acknowledged a write without its instant".to_owned(),
    })
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
    report: bool,
    realtime_flips: bool,
    /// Whether an earlier start from the same URL makes this one `Ok`.
    again: bool,
}

impl<S: Fields> Builder<S> {
    /// The store's URL (`memory://`, `redis://…`), instead of `LOCKSTEP_URL`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// An already opened store, e.g. a [`MemoryStore`](crate::store::MemoryStore).
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// A manual clock for tests: the registry then fetches and flips only
    /// when the clock is advanced. Give the same clock to a memory store
    /// ([`MemoryStore::with_clock`](crate::store::MemoryStore::with_clock)),
    /// or let the registry open one by URL (`memory://…`), which then
    /// follows it.
    pub fn manual_clock(mut self, clock: &ManualClock) -> Self {
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

    /// Whether this process reports itself to the store with each fetch, for
    /// the fleet view (default: it does). A report is a small JSON record
    /// (host name, pid, program name, a random id per start, lockstep's
    /// version, fetch and failure counts, late flips, rejected values, the
    /// clock offset; never the URL, the environment or a value), written in
    /// the same round trip as the fetch and expired three ticks after the
    /// process's last one. Off, the process fetches read-only and the fleet
    /// view does not see it.
    pub fn report(mut self, report: bool) -> Self {
        self.report = report;
        self
    }

    /// Whether the flipper thread, which switches the values at their
    /// instants, asks for a real-time priority (default: it does). It sleeps
    /// between instants and works for microseconds at each, so it takes
    /// nothing from the machine; at a real-time priority it runs the moment
    /// it wakes, where at the ordinary one a busy machine can keep it
    /// waiting for a core while requests still read the old value. Where the
    /// process may not have one, it runs at the ordinary priority anyway;
    /// [`Status::flipper`] says which it got.
    pub fn realtime_flips(mut self, realtime: bool) -> Self {
        self.realtime_flips = realtime;
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

    /// Connects, fetches once (trying for at most the boot timeout),
    /// publishes the schema, and keeps the registry fresh on lockstep's own
    /// threads, whatever runtime awaits this (or none, with
    /// [`start_blocking`](Builder::start_blocking)): one fetch per tick at a
    /// random phase of this process, jittered backoff after failures, never
    /// two at once. Values switch at their instants on a timer thread,
    /// never in the accessors. The runtime that awaited `start` may then be
    /// dropped: the registry keeps refreshing.
    ///
    /// Fails on a URL it cannot use, when the store refuses this process
    /// for a reason retrying cannot fix ([`Error::Misconfigured`]: the
    /// store's reason), or when the registry is already started; a store
    /// that does not answer is not an error (see [`Registry::status`]), nor
    /// a store that refuses the schema (readers may hold read-only
    /// credentials: it is logged). A failed start leaves the registry not
    /// started, so it may be started again.
    pub async fn start(self) -> Result<(), Error> {
        let registry = self.registry;
        let again = self.again;
        let url = match &self.store {
            Some(_) => None,
            None => Some(self.url.clone().unwrap_or_else(|| S::DEF.default_url())),
        };
        let mut ran = false;
        let started = registry
            .started
            .get_or_try_init(|| {
                ran = true;
                self.launch(url.clone())
            })
            .await?;
        if ran || (again && url.is_some() && started.url == url) {
            Ok(())
        } else {
            Err(Error::AlreadyStarted {
                namespace: S::DEF.namespace.to_owned(),
            })
        }
    }

    /// [`start`](Builder::start) for a program without a Tokio runtime;
    /// blocks until start-up is done. Must not be called from within an
    /// async runtime (it panics there: use `start().await`).
    pub fn start_blocking(self) -> Result<(), Error> {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| Error::Store {
                store: String::new(),
                message: format!("cannot build a runtime to wait for start-up: {e}"),
            })?
            .block_on(self.start())
    }

    /// Starts the host thread, and on it connects and boots.
    async fn launch(self, url: Option<String>) -> Result<Started<S>, Error> {
        let clock = match self.clock {
            ClockSource::System if self.follow_store || !self.skew.is_zero() => {
                ClockSource::Adjusted(Arc::new(Adjustment {
                    skew: self.skew.num_nanoseconds().unwrap_or(0),
                    follow_store: self.follow_store,
                    store_offset: Default::default(),
                }))
            }
            clock => clock,
        };
        let host = Host::spawn(S::DEF.namespace)?;
        let runtime = host.handle().clone();
        let store = match self.store {
            Some(store) => store,
            None => {
                let (url, clock) = (url.clone().unwrap_or_default(), clock.clone());
                host.run(async move { crate::store::open_with(&url, &clock) })
                    .await?
            }
        };
        let schema = crate::store::StoredSchema::of(&S::DEF.schema());
        let identity = self
            .report
            .then(|| Identity::of_this_process(clock.now_millis(), schema.digest()));
        let engine = Arc::new(Engine::new(
            store.clone(),
            clock,
            &self.registry.published,
            host,
            schema,
            identity,
            self.realtime_flips,
        ));
        let boot = crate::refresh::boot(engine.clone(), self.boot_timeout);
        crate::host::run_on(&runtime, boot).await?;
        Ok(Started {
            engine,
            writer: Writer { store, runtime },
            url,
        })
    }
}
