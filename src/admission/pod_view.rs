//! The parts of a Pod the engine reads, parsed straight from the request bytes.
//!
//! Building a full `serde_json::Value` of a Pod (managed fields, volumes, probes, resources...)
//! and dropping it again was most of the cost of a review. The engine only reads the fields in
//! [`POD`], declared next to the engine (`engine::reads`); everything else is skipped without allocating. Lists of containers keep every entry
//! (with only `name` and `env`), so indices, and therefore patch paths, are those of the request.
//! A field of an unexpected type is kept whole, so the engine reports it as it would on the
//! full Pod. The admission request's object decodes into a [`PodView`] that only holds the
//! object's bytes (checked to be well-formed JSON); the view is read from them when the Pod's
//! namespace has opted in, so a Pod the injector leaves alone is never parsed.

use std::borrow::Cow;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{NamespaceResourceScope, Resource};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

pub use crate::engine::reads::{Keep, POD};

/// Parses the parts of the Pod in `json` that the engine reads.
pub fn parse(json: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(json);
    let value = Pruned(&POD).deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// The admission request's object, as it came: [`PodView::read`] gives the parts of the Pod the
/// engine reads.
#[derive(Debug, Clone)]
pub struct PodView<'a> {
    raw: &'a RawValue,
    /// Always empty: `Resource` requires metadata; the engine reads it from the view.
    empty_meta: ObjectMeta,
}

impl PodView<'_> {
    /// The parts of the Pod the engine reads (see [`parse`]).
    pub fn read(&self) -> Result<Value, serde_json::Error> {
        parse(self.raw.get())
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for PodView<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(PodView {
            raw: serde::Deserialize::deserialize(d)?,
            empty_meta: ObjectMeta::default(),
        })
    }
}

impl Serialize for PodView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(s)
    }
}

impl Resource for PodView<'_> {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.empty_meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.empty_meta
    }
}

/// Deserializes a value keeping only what `Keep` names.
pub struct Pruned(pub &'static Keep);

impl<'de> DeserializeSeed<'de> for Pruned {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self.0 {
            Keep::All => serde::Deserialize::deserialize(d),
            keep => d.deserialize_any(PrunedVisitor(keep)),
        }
    }
}

/// One `env` entry: `Some` when the engine needs it.
struct EnvEntry;

impl<'de> DeserializeSeed<'de> for EnvEntry {
    type Value = Option<Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EnvEntry {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an env entry")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Value>, A::Error> {
        let (mut name, mut value) = (None::<Value>, None::<Value>);
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "name" => name = Some(map.next_value::<BorrowedValue<'de>>()?.into_value()),
                "value" => value = Some(map.next_value::<BorrowedValue<'de>>()?.into_value()),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let wanted = match &name {
            Some(Value::String(n)) => n == crate::engine::mutate::METADATA_HOST_ENV,
            _ => true,
        };
        if !wanted {
            return Ok(None);
        }
        let mut entry = Map::new();
        if let Some(name) = name {
            entry.insert("name".into(), name);
        }
        if let Some(value) = value {
            entry.insert("value".into(), value);
        }
        Ok(Some(Value::Object(entry)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<Value>, A::Error> {
        PrunedVisitor(&Keep::All).visit_seq(seq).map(Some)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Option<Value>, E> {
        Ok(Some(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Option<Value>, E> {
        Ok(Some(Value::Number(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Option<Value>, E> {
        Ok(Some(Value::Number(v.into())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Option<Value>, E> {
        Ok(Some(Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Option<Value>, E> {
        Ok(Some(Value::String(v.to_owned())))
    }
    fn visit_unit<E>(self) -> Result<Option<Value>, E> {
        Ok(Some(Value::Null))
    }
}

/// A string read without copying when it has no escapes; any other value read whole.
enum BorrowedValue<'a> {
    Str(Cow<'a, str>),
    Other(Value),
}

impl BorrowedValue<'_> {
    fn into_value(self) -> Value {
        match self {
            BorrowedValue::Str(s) => Value::String(s.into_owned()),
            BorrowedValue::Other(v) => v,
        }
    }
}

impl<'de> serde::Deserialize<'de> for BorrowedValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BorrowedValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedValue::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedValue::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(BorrowedValue::Str(Cow::Owned(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                PrunedVisitor(&Keep::All)
                    .visit_map(map)
                    .map(BorrowedValue::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                PrunedVisitor(&Keep::All)
                    .visit_seq(seq)
                    .map(BorrowedValue::Other)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(BorrowedValue::Other(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(BorrowedValue::Other(Value::Number(v.into())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(BorrowedValue::Other(Value::Number(v.into())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(BorrowedValue::Other(
                    Number::from_f64(v).map_or(Value::Null, Value::Number),
                ))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(BorrowedValue::Other(Value::Null))
            }
        }
        d.deserialize_any(V)
    }
}

struct PrunedVisitor(&'static Keep);

impl<'de> Visitor<'de> for PrunedVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let fields = match self.0 {
            Keep::Fields(fields) => Some(*fields),
            _ => None,
        };
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match fields {
                Some(fields) => match fields.iter().find(|(name, _)| *name == key) {
                    Some((_, keep)) => {
                        out.insert(key, map.next_value_seed(Pruned(keep))?);
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                },
                // An object where a list was expected: kept whole.
                None => {
                    out.insert(key, map.next_value::<Value>()?);
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        match self.0 {
            Keep::Items(item) => {
                while let Some(v) = seq.next_element_seed(Pruned(item))? {
                    out.push(v);
                }
            }
            Keep::Env => {
                while let Some(entry) = seq.next_element_seed(EnvEntry)? {
                    out.extend(entry);
                }
            }
            // A list where an object was expected: kept whole.
            _ => {
                while let Some(v) = seq.next_element::<Value>()? {
                    out.push(v);
                }
            }
        }
        Ok(Value::Array(out))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
#[path = "pod_view_tests.rs"]
mod tests;
