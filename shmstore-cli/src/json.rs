//! JSON renderings of decoded values and of schemas.

use serde_json::{json, Map, Number, Value as Json};
use shmstore::format::value::Value;
use shmstore::{Schema, SchemaKind};

/// The largest integer magnitude a JSON number carries exactly in every reader: 2^53 - 1,
/// JavaScript's `Number.MAX_SAFE_INTEGER`. Larger integers are written as decimal strings.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A decoded value as JSON; see `shmstore help dump` for the rules.
pub fn value(v: &Value) -> Json {
    match v {
        Value::Bool(b) => Json::Bool(*b),
        Value::Unsigned(n) => match u64::try_from(*n) {
            Ok(n) if n <= MAX_SAFE_INTEGER => Json::from(n),
            _ => Json::String(n.to_string()),
        },
        Value::Signed(n) => match i64::try_from(*n) {
            Ok(n) if n.unsigned_abs() <= MAX_SAFE_INTEGER => Json::from(n),
            _ => Json::String(n.to_string()),
        },
        // The shortest decimal that reads back as the same f32, rather than its exact binary value
        // widened to f64 (0.1f32 is 0.1, not 0.10000000149011612).
        Value::F32(x) => float(format!("{x:?}").parse().unwrap_or(f64::from(*x))),
        Value::F64(x) => float(*x),
        Value::Str(s) => Json::String(s.clone()),
        Value::Enum { variant, .. } => Json::String(variant.clone()),
        Value::Array(items) => Json::Array(items.iter().map(value).collect()),
        Value::Struct { fields, .. } => {
            Json::Object(fields.iter().map(|(name, v)| (name.clone(), value(v))).collect::<Map<_, _>>())
        }
        Value::Invalid { detail } => invalid(detail),
        other => invalid(&format!("a value this build of shmstore cannot render: {other:?}")),
    }
}

/// How an invalid value appears in JSON.
fn invalid(detail: &str) -> Json {
    json!({ "$invalid": detail })
}

/// A float as a JSON number; NaN and the infinities as the strings JavaScript and Python parse.
fn float(x: f64) -> Json {
    match Number::from_f64(x) {
        Some(n) => Json::Number(n),
        None if x.is_nan() => Json::String("NaN".into()),
        None if x > 0.0 => Json::String("Infinity".into()),
        None => Json::String("-Infinity".into()),
    }
}

/// A schema as JSON, for readers in other languages: names, sizes, offsets and kinds, recursively.
pub fn schema(s: &Schema) -> Json {
    let mut out = Map::new();
    out.insert("type".into(), Json::String(s.display_name()));
    out.insert("size".into(), Json::from(s.size));
    out.insert("align".into(), Json::from(s.align));
    out.insert("version".into(), Json::from(s.version));
    out.insert("fingerprint".into(), Json::String(format!("{:016x}", s.fingerprint)));
    match &s.kind {
        SchemaKind::Primitive(p) => {
            out.insert("kind".into(), "primitive".into());
            out.insert("primitive".into(), p.name().into());
        }
        SchemaKind::Atomic(p) => {
            out.insert("kind".into(), "atomic".into());
            out.insert("primitive".into(), p.name().into());
        }
        SchemaKind::Array { elem, len } => {
            out.insert("kind".into(), "array".into());
            out.insert("len".into(), Json::from(*len));
            out.insert("elem".into(), schema(elem));
        }
        SchemaKind::Struct { fields } => {
            out.insert("kind".into(), "struct".into());
            let fields = fields
                .iter()
                .map(|f| json!({ "name": f.name, "offset": f.offset, "schema": schema(&f.schema) }))
                .collect();
            out.insert("fields".into(), Json::Array(fields));
        }
        SchemaKind::Enum { repr, variants } => {
            out.insert("kind".into(), "enum".into());
            out.insert("repr".into(), repr.name().into());
            let variants = variants.iter().map(|v| json!({ "name": v.name, "value": v.value })).collect();
            out.insert("variants".into(), Json::Array(variants));
        }
        SchemaKind::FixedStr { capacity } => {
            out.insert("kind".into(), "fixed_str".into());
            out.insert("capacity".into(), Json::from(*capacity));
        }
        _ => {
            out.insert("kind".into(), "unknown".into());
        }
    }
    Json::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_beyond_the_safe_range_are_strings() {
        assert_eq!(value(&Value::Unsigned(u128::from(MAX_SAFE_INTEGER))), json!(9007199254740991u64));
        assert_eq!(value(&Value::Unsigned(u128::from(MAX_SAFE_INTEGER) + 1)), json!("9007199254740992"));
        assert_eq!(value(&Value::Signed(-i128::from(MAX_SAFE_INTEGER))), json!(-9007199254740991i64));
        assert_eq!(value(&Value::Signed(-i128::from(MAX_SAFE_INTEGER) - 1)), json!("-9007199254740992"));
        assert_eq!(value(&Value::Unsigned(u128::MAX)), json!(u128::MAX.to_string()));
        assert_eq!(value(&Value::Signed(i128::MIN)), json!(i128::MIN.to_string()));
    }

    #[test]
    fn floats() {
        assert_eq!(value(&Value::F32(0.1)), json!(0.1));
        assert_eq!(value(&Value::F64(-2.5)), json!(-2.5));
        assert_eq!(value(&Value::F64(f64::NAN)), json!("NaN"));
        assert_eq!(value(&Value::F32(f32::INFINITY)), json!("Infinity"));
        assert_eq!(value(&Value::F64(f64::NEG_INFINITY)), json!("-Infinity"));
    }
}
