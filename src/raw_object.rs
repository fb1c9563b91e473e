//! The admission request's object as the raw JSON the API server sent.
//!
//! Decoding the object into kube's `DynamicObject` buffers the whole document through serde's
//! `flatten` machinery and decodes `ObjectMeta` field by field; the engine needs neither, and
//! the patch must be computed against the raw JSON anyway (SPEC §5). `RawObject` only checks the
//! JSON is well-formed and keeps the bytes; the engine parses them when, and only when, the Pod's
//! namespace opted in.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{NamespaceResourceScope, Resource};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

#[derive(Debug, Clone)]
pub struct RawObject {
    json: Box<RawValue>,
    /// Always empty: `Resource` requires metadata, the engine reads it from [`RawObject::json`].
    empty_meta: ObjectMeta,
}

impl RawObject {
    /// The object exactly as sent.
    pub fn json(&self) -> &str {
        self.json.get()
    }

    pub fn from_json(json: Box<RawValue>) -> Self {
        RawObject {
            json,
            empty_meta: ObjectMeta::default(),
        }
    }
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(d).map(RawObject::from_json)
    }
}

impl Serialize for RawObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

impl Resource for RawObject {
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
