//! Tracing a serde type into a [`ValueType`]: serde-reflection traces its
//! `Deserialize` implementation, pass after pass, through a guard
//! ([`guard`](super::guard)) that bounds the nesting, marks where a
//! `Percent` is read and lets an [`Explorer`] pick the enum variants each
//! pass explores; the formats found are merged and converted
//! ([`convert`](super::convert)).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_reflection::{
    ContainerFormat, Format, FormatHolder, Named, Registry, Samples, Tracer, TracerConfig,
    VariantFormat,
};

use super::ValueType;
use super::convert::convert;
use super::explore::Explorer;
use super::guard::Guarded;

/// How many passes a trace may take to visit every variant.
const MAX_PASSES: usize = 1024;

/// What JSON values a `T` accepts: see [`ValueType::of`].
pub(crate) fn traced<T: Serialize + DeserializeOwned + 'static>() -> ValueType {
    let Some((described, samples)) = trace::<T>() else {
        return ValueType::Any;
    };
    for sample in &samples {
        if let Ok(json) = serde_json::to_value(sample)
            && described.check(&json).is_err()
        {
            return ValueType::Any;
        }
    }
    described
}

/// Traces `T` until every variant of every enum in it is seen; returns the
/// description and the values built on the way.
///
/// serde-reflection explores an enum's variants only when it is traced on
/// its own, which needs its type; here the enums are wherever `T` has them
/// (in a `Vec`, an `Option`, another enum's variant). So each pass traces
/// `T` afresh and the guard picks, for every enum the pass meets, one
/// variant to explore: one not seen yet, else one that leads to an enum
/// with variants not seen yet. The passes' formats are merged.
fn trace<T: DeserializeOwned>() -> Option<(ValueType, Vec<T>)> {
    let samples = Samples::new();
    let explorer = RefCell::new(Explorer::default());
    let mut top: Option<Format> = None;
    let mut containers = Registry::new();
    let mut variants: BTreeMap<String, BTreeMap<String, VariantFormat>> = BTreeMap::new();
    let mut values = Vec::new();
    for _pass in 0..MAX_PASSES {
        let mut tracer = Tracer::new(TracerConfig::default().is_human_readable(true));
        let seed = Guarded {
            inner: PhantomData::<T>,
            depth: 0,
            explorer: &explorer,
        };
        let (mut format, value) = tracer.trace_type_once_with_seed(&samples, seed).ok()?;
        values.push(value);
        if top.is_none() {
            format.normalize().ok()?;
            top = Some(format);
        }
        for (name, container) in tracer.registry_unchecked() {
            match container {
                ContainerFormat::Enum(seen) => {
                    let known = variants.entry(name).or_default();
                    for variant in seen.into_values() {
                        let better = match known.get(&variant.name) {
                            None => true,
                            Some(old) => !complete(old) && complete(&variant.value),
                        };
                        if better {
                            known.insert(variant.name, variant.value);
                        }
                    }
                }
                other => {
                    let better = match containers.get(&name) {
                        None => true,
                        Some(old) => !complete(old) && complete(&other),
                    };
                    if better {
                        containers.insert(name, other);
                    }
                }
            }
        }
        if explorer.borrow_mut().finish_pass() {
            // Every enum's variants in declaration order.
            let order = explorer.borrow().order();
            for (name, names) in order {
                let known = variants.remove(name)?;
                let mut all = BTreeMap::new();
                for (index, variant) in names.iter().enumerate() {
                    let value = known.get(*variant)?.clone();
                    let index = u32::try_from(index).ok()?;
                    all.insert(
                        index,
                        Named {
                            name: (*variant).to_owned(),
                            value,
                        },
                    );
                }
                containers.insert(name.to_owned(), ContainerFormat::Enum(all));
            }
            let described = convert(&top?, &containers, &mut Vec::new());
            return Some((described, values));
        }
    }
    None
}

/// Whether a format has no unknown parts left.
fn complete<F: FormatHolder>(format: &F) -> bool {
    format.visit(&mut |_| Ok(())).is_ok()
}
