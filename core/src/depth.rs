//! JSON nesting limits, enforced without recursion, so that no input can overflow a stack.
//!
//! serde_json's `Value` is a tree, and everything serde does with it recurses once per level:
//! serializing, deserializing from a `Value`, `Clone`, `Debug`, `Display` and even `Drop`. A
//! command nested 10,000 arrays deep overflows a 2 MiB thread in any of them and aborts the whole
//! process. So every input is measured here *iteratively* before anything recursive touches it
//! ([`check`], [`admit`]), a refused value the caller handed over is taken apart iteratively
//! ([`dismantle`]), and typed values are serialized through a serializer that counts the depth
//! and stops at the limit ([`to_value_within`]), so that recursion is bounded by the limit rather
//! than by the input.
//!
//! A typed value (a Rust command or event) that is too deep cannot be taken apart generically:
//! its drop glue recurses and nothing outside its type can intervene. [`crate::into_payload`]
//! therefore *leaks* such a value instead of dropping it: the memory the caller built is not
//! returned, but the process survives.

use std::cell::Cell;

use serde::ser::{self, Serialize, Serializer};
use serde_json::Value;

pub use crate::codec::MAX_JSON_DEPTH;
use crate::domain::PayloadError;
use crate::types::{Metadata, NewEvent, Payload};

/// Deepest a state may nest: an aggregate's (what `state()` returns and snapshots store) or a
/// reader's (checkpointed). Snapshot and checkpoint files wrap it in one object and serde_json
/// reads at most 127 levels, so a deeper state would be written and never read back.
pub const MAX_STATE_DEPTH: usize = 120;

/// Whether `value` nests deeper than `limit` (a scalar is depth 0, `[]` and `{}` are 1).
/// Iterative, and stops at the first level past the limit.
pub fn exceeds(value: &Value, limit: usize) -> bool {
    if !is_container(value) {
        return false;
    }
    // Containers still to look at, each with the depth of its parent.
    let mut stack = vec![(value, 0usize)];
    while let Some((value, parent_depth)) = stack.pop() {
        let depth = parent_depth + 1;
        if depth > limit {
            return true;
        }
        match value {
            Value::Array(items) => stack.extend(items.iter().filter(|c| is_container(c)).map(|c| (c, depth))),
            Value::Object(map) => stack.extend(map.values().filter(|c| is_container(c)).map(|c| (c, depth))),
            _ => {}
        }
    }
    false
}

fn is_container(value: &Value) -> bool {
    matches!(value, Value::Array(_) | Value::Object(_))
}

/// Drops `value` without recursing: children are moved onto a heap stack before their parent
/// is freed, so a value of any depth is released in constant stack space.
pub fn dismantle(value: Value) {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items.into_iter().filter(is_container)),
            Value::Object(map) => stack.extend(map.into_iter().map(|(_, child)| child).filter(is_container)),
            _ => {}
        }
    }
}

/// [`dismantle`]s every free-form metadata value.
pub fn dismantle_metadata(meta: Metadata) {
    meta.extra.into_values().for_each(dismantle);
}

/// Checks a command's or an event's data and its metadata against [`MAX_JSON_DEPTH`].
pub fn check(payload: &Payload, meta: &Metadata) -> Result<(), PayloadError> {
    if exceeds(&payload.data, MAX_JSON_DEPTH) {
        return Err(too_deep(format!("{} data", payload.type_name), MAX_JSON_DEPTH));
    }
    match meta.extra.iter().find(|(_, value)| exceeds(value, MAX_JSON_DEPTH)) {
        Some((key, _)) => Err(too_deep(format!("metadata {key:?}"), MAX_JSON_DEPTH)),
        None => Ok(()),
    }
}

/// [`check`]s a command (or event) the caller handed over; a refused one is [`dismantle`]d here,
/// so the caller's thread never drops it recursively.
pub fn admit(payload: Payload, meta: Metadata) -> Result<(Payload, Metadata), PayloadError> {
    match check(&payload, &meta) {
        Ok(()) => Ok((payload, meta)),
        Err(error) => {
            dismantle(payload.data);
            dismantle_metadata(meta);
            Err(error)
        }
    }
}

/// [`admit`] for an injected or appended event.
pub fn admit_event(event: NewEvent) -> Result<NewEvent, PayloadError> {
    let NewEvent { id, payload, version, ts, meta } = event;
    let (payload, meta) = admit(payload, meta)?;
    Ok(NewEvent { id, payload, version, ts, meta })
}

/// [`admit`] for a batch of events: if one is refused, every one is dismantled.
pub fn admit_events(events: Vec<NewEvent>) -> Result<Vec<NewEvent>, PayloadError> {
    match events.iter().try_for_each(|e| check(&e.payload, &e.meta)) {
        Ok(()) => Ok(events),
        Err(error) => {
            for event in events {
                dismantle(event.payload.data);
                dismantle_metadata(event.meta);
            }
            Err(error)
        }
    }
}

pub(crate) fn too_deep(what: String, limit: usize) -> PayloadError {
    PayloadError::TooDeep { what, limit }
}

/// Why [`to_value_within`] failed.
#[derive(Debug)]
pub(crate) enum Unserializable {
    /// The value nests deeper than the limit (serialization stopped there).
    TooDeep,
    /// serde refused the value for another reason.
    Serde(serde_json::Error),
}

/// `serde_json::to_value`, except that the value may nest at most `limit` levels (as JSON:
/// a struct, map, sequence or tuple is one level, a newtype variant one, a struct or tuple
/// variant two). Recursion stops at the limit, so it is bounded by the limit, not the value.
pub(crate) fn to_value_within<T: Serialize + ?Sized>(value: &T, limit: usize) -> Result<Value, Unserializable> {
    let budget = Budget { limit, exceeded: Cell::new(false) };
    match (Bounded { value, depth: 0, budget: &budget }).serialize(serde_json::value::Serializer) {
        Ok(json) => Ok(json),
        Err(_) if budget.exceeded.get() => Err(Unserializable::TooDeep),
        Err(error) => Err(Unserializable::Serde(error)),
    }
}

/// The limit, and whether it was hit (so the error is told apart from serde's own).
struct Budget {
    limit: usize,
    exceeded: Cell<bool>,
}

/// A value to serialize at `depth` (the levels of its enclosing containers).
struct Bounded<'a, T: ?Sized> {
    value: &'a T,
    depth: usize,
    budget: &'a Budget,
}

impl<T: Serialize + ?Sized> Serialize for Bounded<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(Guard { inner: serializer, depth: self.depth, budget: self.budget })
    }
}

/// Wraps a serializer (or one of its compound serializers) and every value handed to it.
struct Guard<'a, S> {
    inner: S,
    depth: usize,
    budget: &'a Budget,
}

impl<'a, S> Guard<'a, S> {
    /// Opens `levels` more levels: the depth of what goes inside, or an error past the limit.
    fn enter<E: ser::Error>(&self, levels: usize) -> Result<usize, E> {
        let depth = self.depth + levels;
        if depth > self.budget.limit {
            self.budget.exceeded.set(true);
            return Err(E::custom(format_args!("nests deeper than {} levels", self.budget.limit)));
        }
        Ok(depth)
    }
}

macro_rules! forward_scalars {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, v: $ty) -> Result<S::Ok, S::Error> {
            self.inner.$method(v)
        })*
    };
}

impl<'a, S: Serializer> Serializer for Guard<'a, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Guard<'a, S::SerializeSeq>;
    type SerializeTuple = Guard<'a, S::SerializeTuple>;
    type SerializeTupleStruct = Guard<'a, S::SerializeTupleStruct>;
    type SerializeTupleVariant = Guard<'a, S::SerializeTupleVariant>;
    type SerializeMap = Guard<'a, S::SerializeMap>;
    type SerializeStruct = Guard<'a, S::SerializeStruct>;
    type SerializeStructVariant = Guard<'a, S::SerializeStructVariant>;

    forward_scalars! {
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64),
        serialize_i128(i128), serialize_u8(u8), serialize_u16(u16), serialize_u32(u32), serialize_u64(u64),
        serialize_u128(u128), serialize_f32(f32), serialize_f64(f64), serialize_char(char), serialize_str(&str),
        serialize_bytes(&[u8]), serialize_unit_struct(&'static str),
    }

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_none()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        let value = Bounded { value, depth: self.depth, budget: self.budget };
        self.inner.serialize_some(&value)
    }

    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit()
    }

    fn serialize_unit_variant(self, name: &'static str, index: u32, variant: &'static str) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit_variant(name, index, variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, value: &T) -> Result<S::Ok, S::Error> {
        let value = Bounded { value, depth: self.depth, budget: self.budget };
        self.inner.serialize_newtype_struct(name, &value)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        let depth = self.enter(1)?;
        let value = Bounded { value, depth, budget: self.budget };
        self.inner.serialize_newtype_variant(name, index, variant, &value)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        let depth = self.enter(1)?;
        Ok(Guard { budget: self.budget, inner: self.inner.serialize_seq(len)?, depth })
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        let depth = self.enter(1)?;
        Ok(Guard { budget: self.budget, inner: self.inner.serialize_tuple(len)?, depth })
    }

    fn serialize_tuple_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeTupleStruct, S::Error> {
        let depth = self.enter(1)?;
        Ok(Guard { budget: self.budget, inner: self.inner.serialize_tuple_struct(name, len)?, depth })
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        let depth = self.enter(2)?;
        Ok(Guard { budget: self.budget, inner: self.inner.serialize_tuple_variant(name, index, variant, len)?, depth })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        let depth = self.enter(1)?;
        Ok(Guard { budget: self.budget, inner: self.inner.serialize_map(len)?, depth })
    }

    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeStruct, S::Error> {
        let depth = self.enter(1)?;
        Ok(Guard { budget: self.budget, inner: self.inner.serialize_struct(name, len)?, depth })
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        let depth = self.enter(2)?;
        Ok(Guard { budget: self.budget, inner: self.inner.serialize_struct_variant(name, index, variant, len)?, depth })
    }

    fn collect_str<T: std::fmt::Display + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.inner.collect_str(value)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// The compound serializers: each element, key, value or field is serialized one level in.
macro_rules! compound {
    ($trait:ident, $method:ident $(, $key:ident: $key_ty:ty)?) => {
        impl<S: ser::$trait> ser::$trait for Guard<'_, S> {
            type Ok = S::Ok;
            type Error = S::Error;

            fn $method<T: Serialize + ?Sized>(&mut self, $($key: $key_ty,)? value: &T) -> Result<(), S::Error> {
                let value = Bounded { value, depth: self.depth, budget: self.budget };
                self.inner.$method($($key,)? &value)
            }

            fn end(self) -> Result<S::Ok, S::Error> {
                self.inner.end()
            }
        }
    };
}

compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);

impl<S: ser::SerializeStruct> ser::SerializeStruct for Guard<'_, S> {
    type Ok = S::Ok;
    type Error = S::Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), S::Error> {
        let value = Bounded { value, depth: self.depth, budget: self.budget };
        self.inner.serialize_field(key, &value)
    }

    fn skip_field(&mut self, key: &'static str) -> Result<(), S::Error> {
        self.inner.skip_field(key)
    }

    fn end(self) -> Result<S::Ok, S::Error> {
        self.inner.end()
    }
}

impl<S: ser::SerializeStructVariant> ser::SerializeStructVariant for Guard<'_, S> {
    type Ok = S::Ok;
    type Error = S::Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), S::Error> {
        let value = Bounded { value, depth: self.depth, budget: self.budget };
        self.inner.serialize_field(key, &value)
    }

    fn skip_field(&mut self, key: &'static str) -> Result<(), S::Error> {
        self.inner.skip_field(key)
    }

    fn end(self) -> Result<S::Ok, S::Error> {
        self.inner.end()
    }
}

impl<S: ser::SerializeMap> ser::SerializeMap for Guard<'_, S> {
    type Ok = S::Ok;
    type Error = S::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), S::Error> {
        let key = Bounded { value: key, depth: self.depth, budget: self.budget };
        self.inner.serialize_key(&key)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        let value = Bounded { value, depth: self.depth, budget: self.budget };
        self.inner.serialize_value(&value)
    }

    fn end(self) -> Result<S::Ok, S::Error> {
        self.inner.end()
    }
}
