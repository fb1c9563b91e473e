//! The visitor that builds a `serde_json::Value` while counting what it builds: nodes, string
//! bytes and nesting, aliases and merge keys expanded included.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::{Bound, Limit, YamlLimits};

/// What the visitor has built so far, per thread: serde-saphyr's multi-document entry point
/// takes a `Deserialize` type, not a seed, so the counters live beside the parse.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tally {
    limits: YamlLimits,
    nodes: usize,
    bytes: usize,
    depth: usize,
    /// Documents started so far.
    pub(super) documents: usize,
    /// Whether the last document started has not ended.
    pub(super) in_document: bool,
    /// The visitor's own bound that stopped the parse, if any.
    pub(super) tripped: Option<Limit>,
}

thread_local! {
    static TALLY: Cell<Option<Tally>> = const { Cell::new(None) };
}

/// Clears the thread's tally when the parse ends, even by unwinding.
pub(super) struct TallyGuard;

impl Drop for TallyGuard {
    fn drop(&mut self) {
        TALLY.with(|t| t.set(None));
    }
}

impl Tally {
    pub(super) fn start(limits: YamlLimits) -> TallyGuard {
        TALLY.with(|t| {
            t.set(Some(Tally {
                limits,
                nodes: 0,
                bytes: 0,
                depth: 0,
                documents: 0,
                in_document: false,
                tripped: None,
            }))
        });
        TallyGuard
    }

    pub(super) fn current() -> Tally {
        TALLY.with(Cell::get).unwrap_or(Tally {
            limits: UNBOUNDED,
            nodes: 0,
            bytes: 0,
            depth: 0,
            documents: 0,
            in_document: false,
            tripped: None,
        })
    }

    fn update<R>(f: impl FnOnce(&mut Tally) -> R) -> R {
        let mut t = Tally::current();
        let r = f(&mut t);
        TALLY.with(|cell| cell.set(Some(t)));
        r
    }

    /// Counts one node of `bytes` string bytes.
    fn charge<E: de::Error>(bytes: usize) -> Result<(), E> {
        Tally::update(|t| {
            t.nodes += 1;
            t.bytes = t.bytes.saturating_add(bytes);
            let over = if t.nodes > t.limits.max_nodes {
                Some(("node", t.limits.max_nodes))
            } else if t.bytes > t.limits.max_value_bytes {
                Some(("expanded byte", t.limits.max_value_bytes))
            } else {
                None
            };
            match over {
                Some((what, limit)) => Err(t.trip(Bound::Size, what, limit)),
                None => Ok(()),
            }
        })
    }

    fn enter<E: de::Error>() -> Result<(), E> {
        Tally::update(|t| {
            t.depth += 1;
            if t.depth > t.limits.max_depth {
                let limit = t.limits.max_depth;
                return Err(t.trip(Bound::Depth, "depth", limit));
            }
            Ok(())
        })
    }

    fn leave() {
        Tally::update(|t| t.depth = t.depth.saturating_sub(1));
    }

    fn trip<E: de::Error>(&mut self, bound: Bound, what: &'static str, limit: usize) -> E {
        let l = Limit { bound, what, limit };
        self.tripped.get_or_insert(l);
        E::custom(l)
    }
}

const UNBOUNDED: YamlLimits = YamlLimits {
    max_bytes: usize::MAX,
    max_depth: usize::MAX,
    max_nodes: usize::MAX,
    max_value_bytes: usize::MAX,
    max_aliases: usize::MAX,
    max_alias_events: usize::MAX,
    max_documents: usize::MAX,
};

/// A `serde_json::Value` built under the thread's [`Tally`].
pub(super) struct Bounded(pub(super) Value);

impl<'de> Deserialize<'de> for Bounded {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let root = Tally::update(|t| {
            let root = t.depth == 0 && !t.in_document;
            if root {
                t.documents += 1;
                t.in_document = true;
            }
            root
        });
        let v = d.deserialize_any(BoundedVisitor)?;
        if root {
            Tally::update(|t| t.in_document = false);
        }
        Ok(Bounded(v))
    }
}

struct BoundedVisitor;

impl<'de> Visitor<'de> for BoundedVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Tally::charge(0)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Tally::charge(0)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Tally::charge(0)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Tally::charge(0)?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Tally::charge(v.len())?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Tally::charge(v.len())?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Tally::charge(0)?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(BoundedVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        Tally::charge(0)?;
        Tally::enter()?;
        let mut out = Vec::new();
        let result = loop {
            match seq.next_element::<Bounded>() {
                Ok(Some(v)) => out.push(v.0),
                Ok(None) => break Ok(Value::Array(out)),
                Err(e) => break Err(e),
            }
        };
        Tally::leave();
        result
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        Tally::charge(0)?;
        Tally::enter()?;
        let mut out = Map::new();
        let result = loop {
            let key = match map.next_key::<String>() {
                Ok(Some(k)) => k,
                Ok(None) => break Ok(Value::Object(out)),
                Err(e) => break Err(e),
            };
            if let Err(e) = Tally::charge(key.len()) {
                break Err(e);
            }
            match map.next_value::<Bounded>() {
                Ok(v) => {
                    out.insert(key, v.0);
                }
                Err(e) => break Err(e),
            }
        };
        Tally::leave();
        result
    }
}
