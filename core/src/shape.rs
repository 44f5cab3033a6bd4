//! How a typed command or event of *any* serde shape becomes a [`crate::Payload`] (a type name
//! and JSON data) and back: the rule, and the small serde probe that tells the shapes apart.
//!
//! The rule, by what the value serializes as (checked in this order):
//! 1. **An adjacently tagged enum** (`#[serde(tag = "type", content = "data")]`, the
//!    recommended form, and eventfold-es's): `{"type":"Deposited","data":{..}}` → type
//!    `Deposited`, data `{..}`.
//! 2. **An externally tagged enum** (serde's default): `{"Deposited":{..}}` → type
//!    `Deposited`, data `{..}`; a unit variant `"Opened"` → type `Opened`, data `null`.
//! 3. **An internally tagged enum** (`#[serde(tag = "type")]`) or any object with a string
//!    `type` key: type = that key's value, data = the whole object.
//! 4. **Anything else** (a struct, a unit struct, a newtype, `String`, `()`, a number): type = the
//!    Rust type's name as serde reports it for structs (`Deposit`), else the last path segment of
//!    [`std::any::type_name`] without generics (`String`, `()`, `u64`); data = the value.
//!
//! Reading back asks the type how it deserializes ([`reading_of`]: an enum, a struct of `type`
//! and `data`, another struct, anything else) and reads the payload in that shape, so no shape is
//! guessed; a struct's name must equal the payload's type.

use serde::de::{DeserializeOwned, DeserializeSeed, MapAccess};
use serde::ser::{Impossible, Serialize, Serializer};
use serde_json::Value;

/// What a value's top-level `serialize` call said it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A variant of an externally tagged enum (`variant` is its serialized name).
    Variant { variant: &'static str },
    /// A struct, unit struct or newtype struct named `name` (serde's name; adjacently and
    /// internally tagged enums also serialize through `serialize_struct`).
    Struct { name: &'static str },
    /// Any other value: a primitive, string, sequence, map, unit or option.
    Other,
}

/// The shape of `value`, found by its first serializer call (nothing is serialized).
pub(crate) fn shape_of<T: Serialize + ?Sized>(value: &T) -> Shape {
    match value.serialize(Probe) {
        Err(Found(shape)) => shape,
        Ok(()) => Shape::Other,
    }
}

/// The name rule 4 gives a value that is neither an enum nor a named struct.
pub(crate) fn plain_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let without_generics = full.split('<').next().unwrap_or(full);
    without_generics.rsplit("::").next().unwrap_or(without_generics)
}

/// The type name and data of a value that serialized to `json` with shape `shape`, per the
/// module's rule (`plain_name` is rule 4's name for the value's type).
pub(crate) fn split(json: Value, shape: Shape, plain_name: &'static str) -> (String, Value) {
    match (shape, json) {
        (Shape::Variant { variant }, Value::Object(mut map)) if map.len() == 1 => {
            let data = map.remove(variant).unwrap_or(Value::Null);
            (variant.to_owned(), data)
        }
        (Shape::Variant { variant }, Value::String(_)) => (variant.to_owned(), Value::Null),
        (shape, Value::Object(mut map)) => match map.get("type") {
            Some(Value::String(_)) if map.keys().all(|k| k == "type" || k == "data") => {
                let Some(Value::String(type_name)) = map.remove("type") else { unreachable!("checked above") };
                (type_name, map.remove("data").unwrap_or(Value::Null))
            }
            Some(Value::String(type_name)) => (type_name.clone(), Value::Object(map)),
            _ => (struct_name(&shape, plain_name), Value::Object(map)),
        },
        (shape, other) => (struct_name(&shape, plain_name), other),
    }
}

fn struct_name(shape: &Shape, plain_name: &'static str) -> String {
    match shape {
        Shape::Struct { name } => (*name).to_owned(),
        _ => plain_name.to_owned(),
    }
}

/// How a type reads back from a payload: asked of the type itself, by the first call its
/// `Deserialize` makes (a probe that reads nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// An adjacently tagged enum (or a struct of exactly `type` and `data`): the payload is the
    /// map `{"type": .., "data": ..}`.
    Adjacent,
    /// An externally tagged enum: the payload is `{type: data}` (`type` alone for a unit variant).
    External,
    /// Anything else: the type reads from the data. `name` is the struct name serde knows, which
    /// the payload's type must equal (`None`: no name to check, e.g. `String` or an internally
    /// tagged enum, whose tag is inside the data).
    Data { name: Option<&'static str> },
}

/// How `T` reads back (see [`Reading`]).
pub(crate) fn reading_of<T: DeserializeOwned>() -> Reading {
    let mut reading = Reading::Data { name: None };
    let _ = T::deserialize(ReadProbe { reading: &mut reading });
    reading
}

/// Reads `T` from a payload per `reading` (not [`Reading::Adjacent`], which the caller reads).
pub(crate) fn read_other<T: DeserializeOwned>(
    reading: Reading,
    type_name: &str,
    data: &Value,
) -> Result<T, serde_json::Error> {
    match reading {
        Reading::External => {
            let value = if data.is_null() { None } else { Some(data) };
            T::deserialize(serde::de::value::MapAccessDeserializer::new(OneEntry {
                key: type_name,
                value,
                done: false,
            }))
        }
        Reading::Data { name: Some(name) } if name != type_name => {
            Err(serde::de::Error::custom(format_args!("payload type {type_name:?} is not {name:?}")))
        }
        // An internally tagged unit variant serialized as `{"type": ..}` alone, which rule 1
        // read as a payload without data.
        Reading::Data { name: None } if data.is_null() => T::deserialize(data).or_else(|error| {
            let tag_only = serde_json::json!({ "type": type_name });
            T::deserialize(&tag_only).map_err(|_| error)
        }),
        Reading::Data { .. } | Reading::Adjacent => T::deserialize(data),
    }
}

/// A map of one entry, borrowed: `{key: value}`, the value `null` when absent.
struct OneEntry<'a> {
    key: &'a str,
    value: Option<&'a Value>,
    done: bool,
}

impl<'de> MapAccess<'de> for OneEntry<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        if self.done {
            return Ok(None);
        }
        seed.deserialize(serde::de::value::BorrowedStrDeserializer::new(self.key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        self.done = true;
        match self.value {
            Some(value) => seed.deserialize(value),
            None => seed.deserialize(&Value::Null),
        }
    }
}

/// The read probe's error: carries nothing (it is created once per read, so it must be free).
#[derive(Debug)]
struct ProbeStop;

impl std::fmt::Display for ProbeStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("probe")
    }
}

impl std::error::Error for ProbeStop {}

impl serde::de::Error for ProbeStop {
    fn custom<M: std::fmt::Display>(_message: M) -> Self {
        ProbeStop
    }
}

/// A deserializer that records the first call a type's `Deserialize` makes, and stops.
struct ReadProbe<'a> {
    reading: &'a mut Reading,
}

impl<'de> serde::Deserializer<'de> for ReadProbe<'_> {
    type Error = ProbeStop;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _visitor: V) -> Result<V::Value, ProbeStop> {
        Err(ProbeStop)
    }

    fn deserialize_enum<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, ProbeStop> {
        *self.reading = Reading::External;
        Err(ProbeStop)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, ProbeStop> {
        *self.reading = if fields == ["type", "data"] { Reading::Adjacent } else { Reading::Data { name: Some(name) } };
        Err(ProbeStop)
    }

    fn deserialize_unit_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        _visitor: V,
    ) -> Result<V::Value, ProbeStop> {
        *self.reading = Reading::Data { name: Some(name) };
        Err(ProbeStop)
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        _visitor: V,
    ) -> Result<V::Value, ProbeStop> {
        *self.reading = Reading::Data { name: Some(name) };
        Err(ProbeStop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        seq tuple tuple_struct map identifier ignored_any
    }
}

/// The probe's "error": the shape it found.
#[derive(Debug)]
struct Found(Shape);

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for Found {}

impl serde::ser::Error for Found {
    fn custom<M: std::fmt::Display>(_message: M) -> Self {
        Found(Shape::Other)
    }
}

/// A serializer that stops at the first call and reports what it was.
struct Probe;

fn other<T>() -> Result<T, Found> {
    Err(Found(Shape::Other))
}

impl Serializer for Probe {
    type Ok = ();
    type Error = Found;
    type SerializeSeq = Impossible<(), Found>;
    type SerializeTuple = Impossible<(), Found>;
    type SerializeTupleStruct = Impossible<(), Found>;
    type SerializeTupleVariant = Impossible<(), Found>;
    type SerializeMap = Impossible<(), Found>;
    type SerializeStruct = Impossible<(), Found>;
    type SerializeStructVariant = Impossible<(), Found>;

    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), Found> {
        Err(Found(Shape::Variant { variant }))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: &T,
    ) -> Result<(), Found> {
        Err(Found(Shape::Variant { variant }))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Found> {
        Err(Found(Shape::Variant { variant }))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Found> {
        Err(Found(Shape::Variant { variant }))
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Self::SerializeStruct, Found> {
        Err(Found(Shape::Struct { name }))
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<(), Found> {
        Err(Found(Shape::Struct { name }))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, _: &T) -> Result<(), Found> {
        Err(Found(Shape::Struct { name }))
    }
    fn serialize_tuple_struct(self, name: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Found> {
        Err(Found(Shape::Struct { name }))
    }

    fn serialize_bool(self, _: bool) -> Result<(), Found> {
        other()
    }
    fn serialize_i8(self, _: i8) -> Result<(), Found> {
        other()
    }
    fn serialize_i16(self, _: i16) -> Result<(), Found> {
        other()
    }
    fn serialize_i32(self, _: i32) -> Result<(), Found> {
        other()
    }
    fn serialize_i64(self, _: i64) -> Result<(), Found> {
        other()
    }
    fn serialize_u8(self, _: u8) -> Result<(), Found> {
        other()
    }
    fn serialize_u16(self, _: u16) -> Result<(), Found> {
        other()
    }
    fn serialize_u32(self, _: u32) -> Result<(), Found> {
        other()
    }
    fn serialize_u64(self, _: u64) -> Result<(), Found> {
        other()
    }
    fn serialize_f32(self, _: f32) -> Result<(), Found> {
        other()
    }
    fn serialize_f64(self, _: f64) -> Result<(), Found> {
        other()
    }
    fn serialize_char(self, _: char) -> Result<(), Found> {
        other()
    }
    fn serialize_str(self, _: &str) -> Result<(), Found> {
        other()
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Found> {
        other()
    }
    fn serialize_none(self) -> Result<(), Found> {
        other()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Found> {
        other()
    }
    fn serialize_unit(self) -> Result<(), Found> {
        other()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Found> {
        other()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Found> {
        other()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Found> {
        other()
    }
}

/// The variant names an enum `T` reads (its serialized names), as serde's derive reports them
/// when asked for a variant that does not exist; `None` for a type that is not such an enum or
/// that accepts any name (a `#[serde(other)]` variant). What an aggregate under
/// [`crate::schema::UnknownEvents::Skip`] uses to tell an unknown event type from bad data.
pub(crate) fn variant_names<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    let mut names = None;
    let _ = T::deserialize(VariantProbe { names: &mut names });
    names
}

/// No variant is called this.
const NO_SUCH_VARIANT: &str = "\u{0}evfold: no such variant";

/// The variant probe's error: `unknown_variant` is where serde hands over the names.
#[derive(Debug)]
struct VariantsFound(Option<&'static [&'static str]>);

impl std::fmt::Display for VariantsFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("variant probe")
    }
}

impl std::error::Error for VariantsFound {}

impl serde::de::Error for VariantsFound {
    fn custom<M: std::fmt::Display>(_message: M) -> Self {
        VariantsFound(None)
    }
    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        VariantsFound(Some(expected))
    }
}

/// A deserializer that offers every enum shape a variant named [`NO_SUCH_VARIANT`]: externally
/// tagged enums name their variants to `deserialize_enum`; adjacently and internally tagged ones
/// read the tag as a map value and refuse it with `unknown_variant`.
struct VariantProbe<'a> {
    names: &'a mut Option<&'static [&'static str]>,
}

impl<'de> serde::Deserializer<'de> for VariantProbe<'_> {
    type Error = VariantsFound;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, VariantsFound> {
        let result = visitor.visit_map(TagOnly { tag_read: false });
        if let Err(VariantsFound(found)) = &result {
            *self.names = *found;
        }
        result
    }

    fn deserialize_enum<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, VariantsFound> {
        *self.names = Some(variants);
        Err(VariantsFound(Some(variants)))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// The map `{"type": NO_SUCH_VARIANT}`.
struct TagOnly {
    tag_read: bool,
}

impl<'de> MapAccess<'de> for TagOnly {
    type Error = VariantsFound;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, VariantsFound> {
        if self.tag_read {
            return Ok(None);
        }
        seed.deserialize(serde::de::value::BorrowedStrDeserializer::new("type")).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, VariantsFound> {
        self.tag_read = true;
        seed.deserialize(serde::de::value::BorrowedStrDeserializer::new(NO_SUCH_VARIANT))
    }
}
