//! Writing: typed changes, scheduled at or beyond the horizon.
//!
//! Every write goes to the store in one atomic commit whose instants the
//! store checks with its own clock; a refused write writes nothing.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::contract::Fields;
use crate::error::Error;
use crate::host::run_on;
use crate::store::{Builds, Store, StoredEntry, Write, WriteBuilder};
use crate::tick::{Millis, from_datetime, to_datetime};
use crate::value::encode;
use tracing::Instrument;

/// A started registry's way to its store for writes: the store itself, and
/// the registry's own runtime, where the store keeps its connections.
#[derive(Clone)]
pub(crate) struct Writer {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) runtime: tokio::runtime::Handle,
}

impl Writer {
    /// Commits `write`, checked first against every live build of the
    /// registry unless `forced` (see [`Change::force`]); a refused write
    /// writes nothing. In a span `lockstep.commit` with the registry, the
    /// store, the number of steps and the outcome.
    pub(crate) async fn commit(
        &self,
        write: Write,
        forced: bool,
    ) -> Result<Vec<DateTime<Utc>>, Error> {
        let span = tracing::info_span!(
            "lockstep.commit",
            namespace = write.namespace(),
            store = %self.store.describe(),
            steps = write.steps().len(),
            outcome = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let namespace = write.namespace().to_owned();
        let store = self.store.clone();
        let work = async move {
            if !forced {
                Builds::read(&*store, write.namespace(), Some(write.tick()))
                    .await?
                    .check(&write)?;
            }
            store.commit(&write).await
        }
        .instrument(span.clone());
        let committed = outcome(&span, &namespace, run_on(&self.runtime, work).await)?;
        Ok(committed.instants.into_iter().map(to_datetime).collect())
    }

    /// Removes the pending entry of `key` at `at`. In a span
    /// `lockstep.cancel` with the registry, the store, the field and the
    /// outcome.
    pub(crate) async fn cancel<S: Fields>(
        &self,
        key: &'static str,
        at: Millis,
    ) -> Result<StoredEntry, Error> {
        let span = tracing::info_span!(
            "lockstep.cancel",
            namespace = S::DEF.namespace,
            store = %self.store.describe(),
            field = key,
            at = %to_datetime(at).to_rfc3339(),
            outcome = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let store = self.store.clone();
        let work = async move { store.cancel(S::DEF.namespace, S::DEF.tick, key, at).await }
            .instrument(span.clone());
        outcome(&span, S::DEF.namespace, run_on(&self.runtime, work).await)
    }
}

/// Records the outcome of a commit or cancel in its span and its metric.
fn outcome<T>(span: &tracing::Span, namespace: &str, result: Result<T, Error>) -> Result<T, Error> {
    match &result {
        Ok(_) => {
            span.record("outcome", "ok");
        }
        Err(e) => {
            span.record("outcome", "error");
            span.record("error", tracing::field::display(e));
        }
    }
    crate::observe::committed(namespace, result.is_ok());
    result
}

/// A value that can be written to a field holding a `T`: a `T` itself, and
/// for a `String` field a `&str` or `&String`, so that
/// `FLAGS.set(Flags::THEME, "dark")` needs no `.to_string()`.
///
/// Writes take `impl IntoValue<T>` rather than `impl Into<T>`: with
/// `Into`, an integer literal written to a `u32` field
/// (`set(Flags::LIMIT, 100)`) would no longer infer its type (`u32`
/// converts from several integer types, so the literal falls back to
/// `i32`, which does not convert). Implement it for conversions of your
/// own field types where that helps.
///
/// ```
/// use lockstep::lockstep;
///
/// #[lockstep(tick = "1s", store = "memory")]
/// pub struct Site {
///     #[lockstep(default = "classic")]
///     pub theme: String,
///     #[lockstep(default = 100)]
///     pub limit: u32,
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lockstep::Error> {
/// SITE.start().await?;
/// SITE.set(Site::THEME, "dark").await?; // a &str for a String field
/// SITE.set(Site::LIMIT, 250).await?; // a literal is still a u32
/// SITE.ramp(Site::THEME, ["dark", "light"]).await?;
/// # Ok(())
/// # }
/// ```
pub trait IntoValue<T> {
    /// The value to write.
    fn into_value(self) -> T;
}

impl<T> IntoValue<T> for T {
    fn into_value(self) -> T {
        self
    }
}

impl IntoValue<String> for &str {
    fn into_value(self) -> String {
        self.to_owned()
    }
}

impl IntoValue<String> for &String {
    fn into_value(self) -> String {
        self.clone()
    }
}

impl IntoValue<String> for char {
    fn into_value(self) -> String {
        self.to_string()
    }
}

impl IntoValue<String> for std::borrow::Cow<'_, str> {
    fn into_value(self) -> String {
        self.into_owned()
    }
}

impl IntoValue<String> for Box<str> {
    fn into_value(self) -> String {
        self.into()
    }
}

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
/// instant; from [`Registry::change`](crate::Registry::change). Nothing is written until
/// [`Change::apply`].
///
/// ```
/// use std::time::Duration;
/// use lockstep::lockstep;
///
/// #[lockstep(tick = "1s", store = "memory")]
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
///     .set(Site::THEME, "dark")
///     .then_after(Duration::from_secs(3600))
///     .set(Site::BANNER, false)
///     .set(Site::THEME, "classic")
///     .apply()
///     .await?;
/// assert_eq!(instants.len(), 2);
/// # Ok(())
/// # }
/// ```
#[must_use = "a change does nothing until `.apply().await`"]
pub struct Change<S: Fields> {
    writer: Result<Writer, Error>,
    write: WriteBuilder,
    forced: bool,
    _fields: PhantomData<fn() -> S>,
}

impl<S: Fields> Change<S> {
    /// A change written through `writer` (or failing with its error at
    /// apply: a registry not started).
    pub(crate) fn new(writer: Result<Writer, Error>) -> Self {
        Change {
            writer,
            write: Write::builder(S::DEF.namespace, S::DEF.tick),
            forced: false,
            _fields: PhantomData,
        }
    }

    /// Sets `field` to `value` in the current step (a `T`, or what converts
    /// into one: see [`IntoValue`]).
    pub fn set<T: Serialize + DeserializeOwned>(
        mut self,
        field: Field<S, T>,
        value: impl IntoValue<T>,
    ) -> Self {
        let value: T = value.into_value();
        self.write = match encode(S::DEF.namespace, field.key, &value) {
            Ok(json) => self.write.set_text(field.key, json),
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

    /// Writes the change even if some live build of the registry cannot
    /// decode it. By default a change is checked first against the schema
    /// of every build whose processes run (during a rolling deploy, several)
    /// and refused with [`Error::NotServed`] when one lacks a field or
    /// cannot decode a value: forced, those processes keep serving what they
    /// hold, and the fleet view ([`Registry::fleet`](crate::Registry::fleet))
    /// lists them as rejecting it.
    pub fn force(mut self) -> Self {
        self.forced = true;
        self
    }

    /// Writes every step in one atomic commit; returns the instant each step
    /// takes effect. A refused change writes nothing: among the refusals, a
    /// value some live build of the registry cannot decode
    /// ([`Error::NotServed`], unless [`Change::force`]d).
    pub async fn apply(self) -> Result<Vec<DateTime<Utc>>, Error> {
        let write = self.write.build()?;
        self.writer?.commit(write, self.forced).await
    }
}
