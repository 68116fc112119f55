//! Options maps (`#{mtu: 9000, a_addrs: [...]}`) read into typed structs.
//!
//! Each binding that takes options declares a struct deriving
//! `Deserialize` with `#[serde(deny_unknown_fields)]`; [`read`] fills it
//! from the script's map through Rhai's serde support. Compared with
//! picking keys out of the map by hand, a typo cannot be silently ignored
//! and every error names the function and the key:
//!
//! ```text
//! veth(): unknown option 'a_adrs' (allowed: mtu, a_addrs, b_addrs)
//! veth(): option 'mtu' must be a non-negative integer, not a string
//! vxlan(): option 'remote' is required
//! ```
//!
//! How: the map is walked by a small `MapAccess` that remembers the key
//! whose value is being read; each value goes through
//! [`rhai::serde::DynamicDeserializer`]. Serde reports an unknown key with
//! the list of the struct's fields, so the allowed keys come from the
//! struct itself.

use std::fmt;

use rhai::serde::DynamicDeserializer;
use rhai::{Dynamic, Map};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess};

use crate::error::Error;

/// Why an options map did not fit its struct.
#[derive(Debug)]
enum OptError {
    Unknown {
        key: String,
        allowed: &'static [&'static str],
    },
    Missing(&'static str),
    Value {
        key: String,
        wanted: String,
        found: String,
    },
    /// An element of an array (`a_addrs: [5]`).
    Element {
        key: String,
        wanted: String,
    },
    Other(String),
}

impl fmt::Display for OptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptError::Unknown { key, allowed } => write!(
                f,
                "unknown option '{key}' (allowed: {})",
                allowed.join(", ")
            ),
            OptError::Missing(key) => write!(f, "option '{key}' is required"),
            OptError::Value { key, wanted, found } => {
                write!(f, "option '{key}' must be {wanted}, not {found}")
            }
            OptError::Element { key, wanted } => {
                write!(f, "option '{key}': each element must be {wanted}")
            }
            OptError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for OptError {}

impl de::Error for OptError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        OptError::Other(msg.to_string())
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        OptError::Unknown {
            key: field.to_string(),
            allowed: expected,
        }
    }
    fn missing_field(field: &'static str) -> Self {
        OptError::Missing(field)
    }
}

/// A Rust type the way the error message says it.
fn wanted(rust: &str) -> String {
    match rust {
        "u8" => "an integer from 0 to 255",
        "u16" => "an integer from 0 to 65535",
        "u32" | "u64" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "bool" => "true or false",
        "char" => "a character",
        "string" | "String" | "str" | "&str" => "a string",
        t if t.contains("Vec") || t == "array" || t.starts_with('[') => "an array",
        t if t.contains("Map") || t == "map" => "a map",
        t => return format!("a {t}"),
    }
    .to_string()
}

/// A value the way an error message shows it: "the string \"x\"".
pub(crate) fn found(value: &Dynamic) -> String {
    match value.type_name() {
        "i64" => format!("the integer {value}"),
        "f64" => format!("the number {value}"),
        "string" | "ImmutableString" => format!("the string \"{value}\""),
        "bool" => format!("{value}"),
        "()" => "()".to_string(),
        "array" => "an array".to_string(),
        "map" => "a map".to_string(),
        t => format!("a {}", super::docs::script_type(t)),
    }
}

/// Walks a map, remembering the key whose value is being read.
struct Entries<'a> {
    iter: Box<dyn Iterator<Item = (&'a str, &'a Dynamic)> + 'a>,
    value: Option<(&'a str, &'a Dynamic)>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = OptError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, OptError> {
        let Some((key, value)) = self.iter.next() else {
            return Ok(None);
        };
        self.value = Some((key, value));
        let key: de::value::StrDeserializer<'_, OptError> = key.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, OptError> {
        let (key, value) = self.value.take().expect("a value follows its key");
        seed.deserialize(Lenient(value))
            .map_err(|e| value_error(key, value, *e))
    }
}

/// Rhai's deserializer, except that a whole number is also a number: a
/// script writes `loss_pct: 30`, not `30.0`, and means the same.
struct Lenient<'a>(&'a Dynamic);

/// Methods of [`Lenient`] that are Rhai's own.
macro_rules! as_rhai {
    ($($method:ident),*) => {
        $(fn $method<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            DynamicDeserializer::new(self.0).$method(visitor)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Lenient<'de> {
    type Error = Box<rhai::EvalAltResult>;

    as_rhai!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any
    );

    fn deserialize_f32<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0.as_int() {
            Ok(i) => visitor.visit_f64(i as f64),
            Err(_) => DynamicDeserializer::new(self.0).deserialize_f64(visitor),
        }
    }

    fn deserialize_option<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.0.is_unit() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit_struct<V: de::Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        DynamicDeserializer::new(self.0).deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: de::Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        DynamicDeserializer::new(self.0).deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_tuple<V: de::Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        DynamicDeserializer::new(self.0).deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: de::Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        DynamicDeserializer::new(self.0).deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_struct<V: de::Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        DynamicDeserializer::new(self.0).deserialize_struct(name, fields, visitor)
    }

    fn deserialize_enum<V: de::Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        DynamicDeserializer::new(self.0).deserialize_enum(name, variants, visitor)
    }
}

/// A value that did not fit its field. Rhai reports a wrong type with the
/// Rust type it wanted; a number out of the field's range comes from serde
/// as "invalid value: integer `-1`, expected u32".
fn value_error(key: &str, value: &Dynamic, e: rhai::EvalAltResult) -> OptError {
    let wanted_type = match &e {
        rhai::EvalAltResult::ErrorMismatchOutputType(requested, _, _) => Some(requested.clone()),
        other => other
            .to_string()
            .rsplit_once(", expected ")
            .map(|(_, t)| {
                t.trim_end_matches(|c: char| c == ')' || c.is_whitespace())
                    .to_string()
            })
            .filter(|t| !t.contains(' ')),
    };
    match wanted_type {
        // The array itself was fine, one of its elements was not.
        Some(t) if value.is_array() && wanted(&t) != "an array" => OptError::Element {
            key: key.to_string(),
            wanted: wanted(&t),
        },
        Some(t) => OptError::Value {
            key: key.to_string(),
            wanted: wanted(&t),
            found: found(value),
        },
        None => OptError::Other(format!("option '{key}': {}", super::error_message(&e))),
    }
}

/// Read the options map of `function` into `T`; errors are usage errors
/// (`Error::Invalid`) naming the function and the key.
pub fn read<T: DeserializeOwned>(function: &str, map: &Map) -> crate::error::Result<T> {
    let entries = Entries {
        iter: Box::new(map.iter().map(|(k, v)| (k.as_str(), v))),
        value: None,
    };
    T::deserialize(de::value::MapAccessDeserializer::new(entries))
        .map_err(|e| Error::Invalid(format!("{function}(): {e}")))
}

/// The same for a binding: the error as a catchable script error.
pub fn from_map<T: DeserializeOwned>(
    function: &str,
    map: &Map,
) -> Result<T, Box<rhai::EvalAltResult>> {
    read(function, map).map_err(super::api::fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Veth {
        mtu: u32,
        a_addrs: Vec<String>,
        b_addrs: Vec<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Vlan {
        parent: String,
        id: u16,
    }

    fn map(pairs: &[(&str, Dynamic)]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect()
    }

    fn err<T: DeserializeOwned + fmt::Debug>(f: &str, m: &Map) -> String {
        read::<T>(f, m).unwrap_err().to_string()
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Numbers {
        pct: f64,
        maybe: Option<f64>,
    }

    #[test]
    fn whole_numbers_are_numbers() {
        let got: Numbers = read(
            "impair",
            &map(&[
                ("pct", Dynamic::from(30_i64)),
                ("maybe", Dynamic::from(2.5_f64)),
            ]),
        )
        .unwrap();
        assert_eq!(
            got,
            Numbers {
                pct: 30.0,
                maybe: Some(2.5)
            }
        );
        let e = err::<Numbers>("impair", &map(&[("pct", Dynamic::from("lots"))]));
        assert!(e.contains("option 'pct' must be"), "{e}");
    }

    #[test]
    fn reads_known_keys() {
        let m = map(&[
            ("mtu", Dynamic::from(9000_i64)),
            ("a_addrs", Dynamic::from(vec![Dynamic::from("10.0.0.1/24")])),
        ]);
        let v: Veth = read("veth", &m).unwrap();
        assert_eq!(
            v,
            Veth {
                mtu: 9000,
                a_addrs: vec!["10.0.0.1/24".into()],
                b_addrs: vec![]
            }
        );
    }

    #[test]
    fn an_unknown_key_is_named_with_the_allowed_ones() {
        let m = map(&[("a_adrs", Dynamic::from(vec![Dynamic::from("x")]))]);
        assert_eq!(
            err::<Veth>("veth", &m),
            "veth(): unknown option 'a_adrs' (allowed: mtu, a_addrs, b_addrs)"
        );
    }

    #[test]
    fn a_wrong_type_names_the_key() {
        let m = map(&[("mtu", Dynamic::from("big"))]);
        assert_eq!(
            err::<Veth>("veth", &m),
            "veth(): option 'mtu' must be a non-negative integer, not the string \"big\""
        );
        let m = map(&[("mtu", Dynamic::from(-1_i64))]);
        assert!(
            err::<Veth>("veth", &m).contains("option 'mtu' must be a non-negative integer"),
            "{}",
            err::<Veth>("veth", &m)
        );
        let m = map(&[("a_addrs", Dynamic::from("10.0.0.1/24"))]);
        assert!(
            err::<Veth>("veth", &m).contains("option 'a_addrs' must be an array"),
            "{}",
            err::<Veth>("veth", &m)
        );
        let m = map(&[("a_addrs", Dynamic::from(vec![Dynamic::from(5_i64)]))]);
        assert_eq!(
            err::<Veth>("veth", &m),
            "veth(): option 'a_addrs': each element must be a string"
        );
        let m = map(&[
            ("parent", Dynamic::from("eth1")),
            ("id", Dynamic::from(70000_i64)),
        ]);
        assert!(
            err::<Vlan>("vlan", &m).contains("option 'id' must be an integer from 0 to 65535"),
            "{}",
            err::<Vlan>("vlan", &m)
        );
    }

    #[test]
    fn a_missing_key_is_named() {
        let m = map(&[("parent", Dynamic::from("eth1"))]);
        assert_eq!(err::<Vlan>("vlan", &m), "vlan(): option 'id' is required");
    }
}
