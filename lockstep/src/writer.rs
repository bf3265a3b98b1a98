//! Writing: typed changes, scheduled at or beyond the horizon.
//!
//! Every write goes to the store in one atomic commit whose instants the
//! store checks with its own clock; a refused write writes nothing.

use std::marker::PhantomData;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::contract::Fields;
use crate::error::Error;
use crate::registry::Registry;
use crate::store::{Write, WriteBuilder};
use crate::tick::{from_datetime, to_datetime};
use crate::value::encode;

/// A typed name of one field of registry struct `S` holding a `T`;
/// `#[lockstep]` makes one associated constant per field, named after the
/// field in upper case (`Flags::FOOBAR_PERCENT`).
pub struct Field<S, T> {
    index: usize,
    key: &'static str,
    _type: PhantomData<fn() -> (S, T)>,
}

impl<S, T> Field<S, T> {
    #[doc(hidden)]
    pub const fn __new(index: usize, key: &'static str) -> Self {
        Field {
            index,
            key,
            _type: PhantomData,
        }
    }

    /// The field's name in the store.
    pub const fn key(&self) -> &'static str {
        self.key
    }

    /// The field's position in the struct.
    pub const fn index(&self) -> usize {
        self.index
    }
}

impl<S, T> Clone for Field<S, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S, T> Copy for Field<S, T> {}

impl<S, T> std::fmt::Debug for Field<S, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Field").field(&self.key).finish()
    }
}

/// A change being built: one or more steps, each setting some fields at one
/// instant; from [`Registry::change`]. Nothing is written until
/// [`Change::apply`].
///
/// ```
/// use std::time::Duration;
/// use lockstep::lockstep;
///
/// #[lockstep(tick = "1s", backend = "memory")]
/// pub struct Site {
///     pub banner: bool,
///     #[lockstep(default = "classic")]
///     pub theme: String,
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lockstep::Error> {
/// SITE.start().await?;
/// // Both fields switch together at the horizon, and back an hour later.
/// let instants = SITE
///     .change()
///     .set(Site::BANNER, true)
///     .set(Site::THEME, "dark".to_string())
///     .then_after(Duration::from_secs(3600))
///     .set(Site::BANNER, false)
///     .set(Site::THEME, "classic".to_string())
///     .apply()
///     .await?;
/// assert_eq!(instants.len(), 2);
/// # Ok(())
/// # }
/// ```
#[must_use = "a change does nothing until `.apply().await`"]
pub struct Change<S: Fields> {
    registry: &'static Registry<S>,
    write: WriteBuilder,
}

impl<S: Fields> Change<S> {
    /// Sets `field` to `value` in the current step.
    pub fn set<T: Serialize + DeserializeOwned>(mut self, field: Field<S, T>, value: T) -> Self {
        self.write = match encode(S::DEF.namespace, field.key, &value) {
            Ok(json) => self.write.set_json(field.key.to_owned(), json),
            Err(e) => self.write.fail_with(e),
        };
        self
    }

    /// Schedules the current step at `when`, rounded up to a tick boundary
    /// (instead of at the horizon). Refused at apply if before the horizon.
    pub fn at(mut self, when: DateTime<Utc>) -> Self {
        self.write = self.write.at(from_datetime(when));
        self
    }

    /// Starts a new step at `when`.
    pub fn then_at(mut self, when: DateTime<Utc>) -> Self {
        self.write = self.write.then_at(from_datetime(when));
        self
    }

    /// Starts a new step `after` the previous one (rounded up to a tick
    /// boundary).
    pub fn then_after(mut self, after: Duration) -> Self {
        self.write = self.write.then_after(after);
        self
    }

    /// Writes every step in one atomic commit; returns the instant each step
    /// takes effect. A refused change writes nothing.
    pub async fn apply(self) -> Result<Vec<DateTime<Utc>>, Error> {
        let write = self.write.build()?;
        let engine = self.registry.engine()?;
        let committed = engine.store().commit(&write).await?;
        Ok(committed.instants.into_iter().map(to_datetime).collect())
    }
}

/// The instant of a one-step change.
fn first(instants: Vec<DateTime<Utc>>) -> Result<DateTime<Utc>, Error> {
    instants.into_iter().next().ok_or_else(|| Error::Store {
        store: String::new(),
        message: "the store acknowledged a write without its instant".to_owned(),
    })
}

impl<S: Fields> Registry<S> {
    /// A change of several fields and steps, written atomically.
    pub fn change(&'static self) -> Change<S> {
        Change {
            registry: self,
            write: Write::builder(S::DEF.namespace, S::DEF.tick),
        }
    }

    /// Sets `field` to `value` at the horizon, the earliest instant every
    /// process is sure to know of it in time; returns that instant.
    pub async fn set<T: Serialize + DeserializeOwned>(
        &'static self,
        field: Field<S, T>,
        value: T,
    ) -> Result<DateTime<Utc>, Error> {
        let instants = self.change().set(field, value).apply().await?;
        first(instants)
    }

    /// Sets `field` to `value` at `when` rounded up to a tick boundary;
    /// refused, naming the earliest allowed instant, if that is before the
    /// horizon. Returns the instant it takes effect.
    pub async fn schedule<T: Serialize + DeserializeOwned>(
        &'static self,
        field: Field<S, T>,
        value: T,
        when: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, Error> {
        let instants = self.change().set(field, value).at(when).apply().await?;
        first(instants)
    }

    /// Writes `values` as consecutive entries of `field`, the first at the
    /// horizon and each next one a tick later, in one atomic commit (a
    /// dark-launch ramp). Returns their instants.
    pub async fn ramp<T: Serialize + DeserializeOwned>(
        &'static self,
        field: Field<S, T>,
        values: impl IntoIterator<Item = T>,
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
        let engine = self.engine()?;
        engine
            .store()
            .cancel(S::DEF.namespace, S::DEF.tick, field.key, from_datetime(at))
            .await
            .map(|_| ())
    }
}
