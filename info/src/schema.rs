//! The JSON schemas of the reports (`bufsync-info schema COMMAND`), and a
//! checker for them.
//!
//! Each report's schema is generated from its Rust types (`schemars`, JSON
//! Schema 2020-12), with doc comments as descriptions, then tightened: every
//! property of an object is `required` (the tool always writes every key,
//! `null` where there is no value) and no other property is allowed. The
//! schemas are checked into `docs/info/` and a test keeps them equal to
//! what the types give, so a change of schema is a visible, deliberate
//! change (and bumps the report's `version` when it breaks readers).
//!
//! [`validate`] checks a value against such a schema. It implements the
//! keywords these schemas use (`type`, `enum`, `const`, `properties`,
//! `required`, `additionalProperties`, `items`, `$ref` into `$defs`,
//! `anyOf`, `oneOf`, `allOf`, `minimum`, `maximum`) and refuses any other
//! validation keyword rather than ignore it.
//!
//! ```
//! let schema = bufsync_info::schema::schema("devices").unwrap();
//! let report = bufsync_info::devices::collect();
//! let value = serde_json::to_value(&report).unwrap();
//! assert_eq!(bufsync_info::schema::validate(&schema, &value), Vec::<String>::new());
//! ```

use schemars::{Schema, SchemaGenerator};
use serde_json::{Map, Value};

use crate::{buffer, devices, negotiate, paths, vulkan};

/// The version of every report's schema (its `version` key). Adding a key
/// keeps it; renaming, removing or retyping one, or changing what a value
/// means, bumps it.
pub const VERSION: u32 = 1;

/// The subcommands with a JSON report, in the order `docs/info.md` gives.
pub const COMMANDS: [&str; 5] = ["devices", "vulkan", "paths", "buffer", "negotiate"];

/// The tightened JSON Schema of `command`'s report (`None`: no such
/// report).
pub fn schema(command: &str) -> Option<Value> {
    let s = match command {
        "devices" => schemars::schema_for!(devices::DevicesReport),
        "vulkan" => schemars::schema_for!(vulkan::VulkanReport),
        "paths" => schemars::schema_for!(paths::PathsReport),
        "buffer" => schemars::schema_for!(buffer::BufferReport),
        "negotiate" => schemars::schema_for!(negotiate::NegotiateReport),
        _ => return None,
    };
    let mut v = s.to_value();
    tighten(&mut v);
    let name = format!("bufsync-info.{command}");
    if let Some(p) = v.pointer_mut("/properties/schema") {
        p["const"] = Value::String(name.clone());
    }
    if let Some(p) = v.pointer_mut("/properties/version") {
        p["const"] = Value::from(VERSION);
    }
    if let Value::Object(m) = &mut v {
        m.insert("$id".into(), Value::String(format!("{name}.schema.json")));
    }
    Some(v)
}

/// Every object schema with `properties`: all of them required, no others;
/// descriptions without rustdoc's link brackets.
fn tighten(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(d)) = m.get_mut("description") {
                *d = plain(d);
            }
            if let Some(Value::Object(props)) = m.get("properties") {
                let keys: Vec<Value> = props.keys().cloned().map(Value::String).collect();
                m.insert("required".into(), Value::Array(keys));
                m.insert("additionalProperties".into(), Value::Bool(false));
            }
            for (_, x) in m.iter_mut() {
                tighten(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(tighten),
        _ => {}
    }
}

/// `[`X`]` and `[text](link)` as `X` and `text`.
fn plain(doc: &str) -> String {
    let mut out = String::with_capacity(doc.len());
    let mut rest = doc;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find(']') else {
            out.push_str(&rest[i..]);
            return out;
        };
        out.push_str(&after[..j]);
        rest = &after[j + 1..];
        if rest.starts_with('(') {
            if let Some(k) = rest.find(')') {
                rest = &rest[k + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A string whose values are `names`, or `null` when `nullable`.
pub(crate) fn names_schema(names: &[&str], nullable: bool) -> Schema {
    let mut values: Vec<Value> = names.iter().map(|n| Value::String((*n).into())).collect();
    let ty = if nullable {
        values.push(Value::Null);
        serde_json::json!(["string", "null"])
    } else {
        serde_json::json!("string")
    };
    let mut m = Map::new();
    m.insert("type".into(), ty);
    m.insert("enum".into(), Value::Array(values));
    Schema::from(m)
}

/// `schema_with` for a string field whose values are a list known at run
/// time: see [`names_schema`]. (Used through the wrappers below.)
pub(crate) fn fence_kinds(_: &mut SchemaGenerator) -> Schema {
    let mut names = bufsync_backends::wait_path::FenceForm::NAMES.to_vec();
    names.push("unavailable");
    names_schema(&names, false)
}

/// The waiter kinds ([`Waiter::NAMES`](bufsync_backends::wait_path::Waiter::NAMES)).
pub(crate) fn waiter_kinds(_: &mut SchemaGenerator) -> Schema {
    names_schema(&bufsync_backends::wait_path::Waiter::NAMES, false)
}

/// The route names ([`Route::name`](bufsync_backends::wait_path::Route::name)) or `null`.
pub(crate) fn routes(_: &mut SchemaGenerator) -> Schema {
    let names: Vec<&str> = bufsync_backends::wait_path::Route::ALL
        .iter()
        .map(|r| r.name())
        .collect();
    names_schema(&names, true)
}

/// Checks `value` against `schema` (one of [`schema`]'s); returns every
/// violation as `path: what` (empty: valid).
pub fn validate(schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema, schema, value, "$", &mut errors);
    errors
}

fn type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        _ => false,
    }
}

const ANNOTATIONS: [&str; 7] = [
    "$schema",
    "$id",
    "$defs",
    "title",
    "description",
    "format",
    "default",
];

fn check(root: &Value, s: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let m = match s {
        Value::Bool(true) => return,
        Value::Bool(false) => {
            errors.push(format!("{at}: not allowed"));
            return;
        }
        Value::Object(m) => m,
        _ => {
            errors.push(format!("{at}: the schema is not an object"));
            return;
        }
    };
    for (k, x) in m {
        match k.as_str() {
            k if ANNOTATIONS.contains(&k) => {}
            "$ref" => match x
                .as_str()
                .and_then(|r| r.strip_prefix("#/$defs/"))
                .and_then(|name| root.get("$defs")?.get(name))
            {
                Some(target) => check(root, target, v, at, errors),
                None => errors.push(format!("{at}: unresolvable $ref {x}")),
            },
            "type" => {
                let ok = match x {
                    Value::String(t) => type_ok(t, v),
                    Value::Array(ts) => ts.iter().filter_map(Value::as_str).any(|t| type_ok(t, v)),
                    _ => false,
                };
                if !ok {
                    errors.push(format!("{at}: {v} is not of type {x}"));
                }
            }
            "enum" => {
                if !x.as_array().is_some_and(|a| a.contains(v)) {
                    errors.push(format!("{at}: {v} is not one of {x}"));
                }
            }
            "const" => {
                if x != v {
                    errors.push(format!("{at}: {v} is not {x}"));
                }
            }
            "minimum" | "maximum" => {
                if let (Some(n), Some(lim)) = (v.as_f64(), x.as_f64()) {
                    if (k == "minimum" && n < lim) || (k == "maximum" && n > lim) {
                        errors.push(format!("{at}: {n} is out of range ({k} {lim})"));
                    }
                }
            }
            "properties" => {
                if let (Some(props), Some(obj)) = (x.as_object(), v.as_object()) {
                    for (name, sub) in props {
                        if let Some(val) = obj.get(name) {
                            check(root, sub, val, &format!("{at}.{name}"), errors);
                        }
                    }
                }
            }
            "required" => {
                if let (Some(req), Some(obj)) = (x.as_array(), v.as_object()) {
                    for name in req.iter().filter_map(Value::as_str) {
                        if !obj.contains_key(name) {
                            errors.push(format!("{at}: missing `{name}`"));
                        }
                    }
                }
            }
            "additionalProperties" => {
                if let Some(obj) = v.as_object() {
                    let known = m.get("properties").and_then(Value::as_object);
                    for (name, val) in obj {
                        if known.is_some_and(|p| p.contains_key(name)) {
                            continue;
                        }
                        match x {
                            Value::Bool(false) => {
                                errors.push(format!("{at}: unexpected `{name}`"));
                            }
                            sub => check(root, sub, val, &format!("{at}.{name}"), errors),
                        }
                    }
                }
            }
            "items" => {
                if let Some(a) = v.as_array() {
                    for (i, val) in a.iter().enumerate() {
                        check(root, x, val, &format!("{at}[{i}]"), errors);
                    }
                }
            }
            "anyOf" | "oneOf" => {
                let alts = x.as_array().map(Vec::as_slice).unwrap_or_default();
                let matching = alts
                    .iter()
                    .filter(|alt| {
                        let mut e = Vec::new();
                        check(root, alt, v, at, &mut e);
                        e.is_empty()
                    })
                    .count();
                let ok = if k == "anyOf" {
                    matching >= 1
                } else {
                    matching == 1
                };
                if !ok {
                    errors.push(format!("{at}: {v} matches {matching} of the {k} schemas"));
                }
            }
            "allOf" => {
                for alt in x.as_array().map(Vec::as_slice).unwrap_or_default() {
                    check(root, alt, v, at, errors);
                }
            }
            other => errors.push(format!("{at}: unsupported schema keyword `{other}`")),
        }
    }
}

/// The tightened schema of any report type (for the tests).
#[cfg(test)]
fn generated<T: schemars::JsonSchema>() -> Value {
    let mut v = schemars::schema_for!(T).to_value();
    tighten(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_property_is_required_and_nothing_else_allowed() {
        let s = generated::<crate::buffer::Fence>();
        let ok = json!({"driver": "vgem", "timeline": "t", "status": "pending",
                        "errno": null, "timestamp_ns": null});
        assert_eq!(validate(&s, &ok), Vec::<String>::new());
        let mut missing = ok.clone();
        missing.as_object_mut().unwrap().remove("errno");
        assert_eq!(validate(&s, &missing), vec!["$: missing `errno`"]);
        let mut extra = ok.clone();
        extra["x"] = json!(1);
        assert_eq!(validate(&s, &extra), vec!["$: unexpected `x`"]);
        let mut bad = ok;
        bad["status"] = json!("done");
        assert_eq!(validate(&s, &bad).len(), 1);
        bad["status"] = json!("signaled");
        bad["timestamp_ns"] = json!(-1);
        assert_eq!(validate(&s, &bad).len(), 1, "{:?}", validate(&s, &bad));
    }

    #[test]
    fn refs_and_nullable_objects() {
        let s = schema("paths").unwrap();
        let v = json!({"schema": "bufsync-info.paths", "version": 1, "verified": true,
            "fences": [], "waiters": [], "untested": [],
            "cells": [{"fence": "software", "waiter": "cpu", "class": "software",
                       "route": "runtime_wait", "why": "w", "verify": null}]});
        assert_eq!(validate(&s, &v), Vec::<String>::new());
        let mut v2 = v.clone();
        v2["cells"][0]["route"] = json!("teleport");
        assert_eq!(validate(&s, &v2).len(), 1);
        v2["cells"][0]["route"] = Value::Null;
        v2["cells"][0]["verify"] = json!({"result": "pass", "latency_us": 1.5,
            "latency_min_us": 1.0, "latency_max_us": 2.0, "samples": 3, "detail": "d"});
        assert_eq!(validate(&s, &v2), Vec::<String>::new());
        v2["cells"][0]["verify"] = json!({"result": "pass"});
        assert!(!validate(&s, &v2).is_empty());
    }

    #[test]
    fn descriptions_lose_link_brackets() {
        assert_eq!(
            plain("see [`Route::name`] and [the rule](crate::x)."),
            "see `Route::name` and the rule."
        );
        assert_eq!(plain("a [b"), "a [b");
    }

    #[test]
    fn unknown_keywords_are_refused() {
        let s = json!({"type": "string", "pattern": "^a"});
        assert_eq!(
            validate(&s, &json!("a")),
            vec!["$: unsupported schema keyword `pattern`"]
        );
    }
}
