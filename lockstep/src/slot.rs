//! The hot path: where a registry keeps the values its accessors return.
//!
//! A field of a scalar type (integers, floats, `bool`, `char`,
//! [`Percent`](crate::Percent)) lives in one `AtomicU64`: reading it is a
//! relaxed atomic load. Any other field lives in an [`ArcSwap`]: reading it
//! is an arc-swap load, which takes no lock, allocates nothing and does not
//! make threads contend, and returns a [`Ref`] that derefs to the value.
//! Both are written only by the registry's flipper, off the hot path.
//!
//! A reader never frees a value either: a reader holding a value across a
//! flip would otherwise drop its last reference, and free it, in the middle
//! of a request (and free takes the allocator's locks). The flipper keeps the
//! value a flip replaced until the next flip ([`Retired`]), so the last
//! reference is its own, unless a reader holds a value for longer than that.

use std::any::Any;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};

use arc_swap::{ArcSwap, Guard};

use crate::percent::Percent;

/// A cheap handle on a field's current value: it derefs to the value, and
/// keeps that value alive while it is held, even across a flip.
///
/// Taking one does not clone the value and does not allocate.
///
/// ```
/// use lockstep::lockstep;
///
/// #[lockstep(tick = "1m", store = "memory")]
/// struct Site {
///     #[lockstep(default = "classic")]
///     theme: String,
/// }
///
/// let theme = SITE.theme();
/// assert_eq!(*theme, "classic");
/// assert_eq!(theme.len(), 7);
/// ```
pub struct Ref<T>(Guard<Arc<T>>);

impl<T> Deref for Ref<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Ref<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        T::fmt(self, f)
    }
}

impl<T: std::fmt::Display> std::fmt::Display for Ref<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        T::fmt(self, f)
    }
}

impl<T: PartialEq> PartialEq<T> for Ref<T> {
    fn eq(&self, other: &T) -> bool {
        **self == *other
    }
}

impl PartialEq<&str> for Ref<String> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A type stored in one `AtomicU64` and returned by value.
pub trait ScalarValue: Copy + Send + Sync + 'static {
    /// The value as bits.
    fn to_bits(self) -> u64;
    /// The value back from bits written by [`ScalarValue::to_bits`]; `seed`
    /// is the field's hash seed (used by [`Percent`]).
    fn from_bits(bits: u64, seed: u64) -> Self;
}

macro_rules! scalar_ints {
    ($($t:ident)*) => {$(
        impl ScalarValue for $t {
            #[inline]
            fn to_bits(self) -> u64 {
                bits::$t(self)
            }
            #[inline]
            fn from_bits(bits: u64, _seed: u64) -> Self {
                bits as $t
            }
        }
    )*};
}

scalar_ints!(u8 u16 u32 u64 usize i8 i16 i32 i64 isize);

impl ScalarValue for bool {
    #[inline]
    fn to_bits(self) -> u64 {
        bits::bool(self)
    }
    #[inline]
    fn from_bits(bits: u64, _seed: u64) -> Self {
        bits != 0
    }
}

impl ScalarValue for char {
    #[inline]
    fn to_bits(self) -> u64 {
        bits::char(self)
    }
    #[inline]
    fn from_bits(bits: u64, _seed: u64) -> Self {
        char::from_u32(bits as u32).unwrap_or('\0')
    }
}

impl ScalarValue for f32 {
    #[inline]
    fn to_bits(self) -> u64 {
        bits::f32(self)
    }
    #[inline]
    fn from_bits(bits: u64, _seed: u64) -> Self {
        f32::from_bits(bits as u32)
    }
}

impl ScalarValue for f64 {
    #[inline]
    fn to_bits(self) -> u64 {
        bits::f64(self)
    }
    #[inline]
    fn from_bits(bits: u64, _seed: u64) -> Self {
        f64::from_bits(bits)
    }
}

impl ScalarValue for Percent {
    #[inline]
    fn to_bits(self) -> u64 {
        bits::Percent(self)
    }
    #[inline]
    fn from_bits(bits: u64, seed: u64) -> Self {
        match Percent::from_thousandths(bits as u32) {
            Some(p) => p.__scoped(seed),
            None => Percent::ZERO,
        }
    }
}

/// `const` conversions of scalar defaults to bits, one per scalar type, so a
/// registry's slots can be built in a `static`.
#[allow(non_snake_case, missing_docs)]
pub mod bits {
    macro_rules! ints {
        ($($t:ident)*) => {$(
            #[inline]
            pub const fn $t(v: $t) -> u64 {
                v as u64
            }
        )*};
    }
    ints!(u8 u16 u32 u64 usize i8 i16 i32 i64 isize);

    pub const fn bool(v: bool) -> u64 {
        v as u64
    }
    pub const fn char(v: char) -> u64 {
        v as u64
    }
    pub const fn f32(v: f32) -> u64 {
        v.to_bits() as u64
    }
    pub const fn f64(v: f64) -> u64 {
        v.to_bits()
    }
    pub const fn Percent(v: crate::percent::Percent) -> u64 {
        v.thousandths() as u64
    }
}

/// The slot of a scalar field.
pub struct Scalar<T> {
    bits: AtomicU64,
    seed: u64,
    _type: PhantomData<fn() -> T>,
}

impl<T: ScalarValue> Scalar<T> {
    /// A slot holding `default` (as bits).
    pub const fn new(default: u64, seed: u64) -> Self {
        Scalar {
            bits: AtomicU64::new(default),
            seed,
            _type: PhantomData,
        }
    }

    /// The current value: one relaxed atomic load.
    #[inline(always)]
    pub fn get(&self) -> T {
        T::from_bits(self.bits.load(Ordering::Relaxed), self.seed)
    }

    /// Publishes `value`.
    pub fn set(&self, value: T) {
        self.bits.store(value.to_bits(), Ordering::Relaxed);
    }

    /// Publishes the value a flip hands over: the field's decoded value (a
    /// `T`), or its default, whose bits the generated code passes (a
    /// constant there), for `None` (or a value of another type, which a
    /// field never decodes). The slot keeps only what a read needs.
    pub fn publish(&self, value: Option<&Arc<dyn Any + Send + Sync>>, default: u64) {
        let bits = value
            .and_then(|value| value.downcast_ref::<T>())
            .map_or(default, |value| value.to_bits());
        self.bits.store(bits, Ordering::Relaxed);
    }
}

/// The slot of a field of any other type.
///
/// A flip hands it the value the field decoded, behind the `Arc` it was
/// decoded into: publishing is a reference count, not a copy of the value.
pub struct Shared<T> {
    cell: LazyLock<ArcSwap<T>, fn() -> ArcSwap<T>>,
    /// What makes the default (the value `cell` starts with).
    init: fn() -> ArcSwap<T>,
    /// The default, made once, for the flips that publish it.
    default: OnceLock<Arc<T>>,
    retired: Retired<T>,
}

impl<T> Shared<T> {
    /// A slot that holds the value `init` makes until the first flip.
    pub const fn new(init: fn() -> ArcSwap<T>) -> Self {
        Shared {
            cell: LazyLock::new(init),
            init,
            default: OnceLock::new(),
            retired: Retired::new(),
        }
    }

    /// A handle on the current value: one arc-swap load.
    #[inline(always)]
    pub fn get(&self) -> Ref<T> {
        Ref(self.cell.load())
    }

    /// Publishes `value`.
    pub fn set(&self, value: T) {
        self.swap(Arc::new(value));
    }

    /// Makes `value` the current value; keeps the one it replaces until
    /// the next flip.
    fn swap(&self, value: Arc<T>) {
        self.retired.keep(self.cell.swap(value));
    }
}

impl<T: Send + Sync + 'static> Shared<T> {
    /// Publishes the value a flip hands over: the field's decoded value (an
    /// `Arc` of a `T`, shared with the timeline it came from, not cloned),
    /// or its default for `None` (or a value of another type, which a field
    /// never decodes).
    pub fn publish(&self, value: Option<&Arc<dyn Any + Send + Sync>>) {
        let decoded = value.and_then(|value| Arc::clone(value).downcast::<T>().ok());
        let value = decoded
            .unwrap_or_else(|| Arc::clone(self.default.get_or_init(|| (self.init)().into_inner())));
        self.swap(value);
    }
}

/// The value the last flip replaced, kept by the flipper until the next flip
/// so that readers holding it across the flip are not the ones to free it.
pub(crate) struct Retired<T>(Mutex<Option<Arc<T>>>);

impl<T> Retired<T> {
    pub(crate) const fn new() -> Self {
        Retired(Mutex::new(None))
    }

    /// Keeps `replaced`, and drops (here, on the flipper) the value kept
    /// before it.
    pub(crate) fn keep(&self, replaced: Arc<T>) {
        let older = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(replaced);
        drop(older);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_round_trip_through_bits() {
        fn rt<T: ScalarValue + PartialEq + std::fmt::Debug>(v: T) {
            assert_eq!(T::from_bits(v.to_bits(), 0), v);
        }
        rt(-5i8);
        rt(i64::MIN);
        rt(u64::MAX);
        rt(-1.5f32);
        rt(f64::NEG_INFINITY);
        rt(true);
        rt('λ');
        rt(Percent::new(33.333).unwrap());
    }

    #[test]
    fn slots_publish() {
        let s: Scalar<i16> = Scalar::new(bits::i16(-3), 0);
        assert_eq!(s.get(), -3);
        s.set(7);
        assert_eq!(s.get(), 7);
        let v: Shared<String> = Shared::new(|| ArcSwap::from_pointee("a".to_string()));
        let held = v.get();
        v.set("b".into());
        assert_eq!(*held, "a");
        assert_eq!(*v.get(), "b");
    }

    #[test]
    fn a_flip_hands_the_decoded_value_over_without_cloning_it() {
        let v: Shared<String> = Shared::new(|| ArcSwap::from_pointee("a".to_string()));
        let decoded: Arc<dyn Any + Send + Sync> = Arc::new("b".to_string());
        v.publish(Some(&decoded));
        let held = v.get();
        assert_eq!(*held, "b");
        // The very value decoded: the slot and the decoder share it.
        assert!(std::ptr::eq::<String>(
            &*held,
            decoded.downcast_ref().unwrap()
        ));
        // The default, made once for every flip that publishes it.
        v.publish(None);
        let first = v.get();
        assert_eq!(*first, "a");
        v.publish(None);
        assert!(std::ptr::eq::<String>(&*first, &*v.get()));
        // A value of another type is no value of the field: its default.
        let other: Arc<dyn Any + Send + Sync> = Arc::new(7u8);
        v.publish(Some(&decoded));
        v.publish(Some(&other));
        assert_eq!(*v.get(), "a");

        let s: Scalar<i16> = Scalar::new(bits::i16(-3), 0);
        let seven: Arc<dyn Any + Send + Sync> = Arc::new(7i16);
        s.publish(Some(&seven), bits::i16(-3));
        assert_eq!(s.get(), 7);
        s.publish(None, bits::i16(-3));
        assert_eq!(s.get(), -3);
        s.publish(Some(&seven), bits::i16(-3));
        s.publish(Some(&other), bits::i16(-3));
        assert_eq!(s.get(), -3);
    }

    #[test]
    fn a_reader_holding_a_value_across_a_flip_is_not_the_one_to_free_it() {
        let v: Shared<String> = Shared::new(|| ArcSwap::from_pointee("a".to_string()));
        let held = v.get();
        v.set("b".into());
        // The flipper keeps "a" until the next flip: dropping `held` now
        // would not free it.
        assert_eq!(Arc::strong_count(&held.0), 2);
        v.set("c".into());
        // Held for longer than a flip, the reader's is the last reference.
        assert_eq!(Arc::strong_count(&held.0), 1);
        let held = v.get();
        v.set("d".into());
        assert_eq!(Arc::strong_count(&held.0), 2);
    }
}
