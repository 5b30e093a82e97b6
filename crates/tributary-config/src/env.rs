//! `TRIBUTARY_` environment overrides applied to the parsed file tree.

use figment::value::{Dict, Tag, Value};

use crate::{ConfigError, ENV_PREFIX};

/// Top-level config sections an environment variable may address.
const CONFIG_SECTIONS: [&str; 2] = ["WORKER", "PIPELINES"];

/// Applies every `TRIBUTARY_*` variable to `tree`, in sorted order so the
/// result does not depend on the environment's iteration order.
pub(crate) fn apply(
    tree: &mut Value,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| {
            // Only the config's own sections: other TRIBUTARY_* variables
            // (TRIBUTARY_LOG, TRIBUTARY_CONFIG, ...) belong to the CLI.
            k.strip_prefix(ENV_PREFIX).is_some_and(|rest| {
                let section = rest.split("__").next().unwrap_or("");
                CONFIG_SECTIONS
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(section))
            })
        })
        .collect();
    vars.sort();
    for (var, raw) in vars {
        let segments: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_string())
            .collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(ConfigError::Env {
                var,
                message: "empty key segment (use `__` between keys)".into(),
            });
        }
        let value: Value = raw.parse().unwrap_or_else(|_| Value::from(raw.clone()));
        set(tree, &segments, value).map_err(|message| ConfigError::Env { var, message })?;
    }
    Ok(())
}

fn set(node: &mut Value, segments: &[String], value: Value) -> Result<(), String> {
    let (head, rest) = segments.split_first().expect("non-empty path");
    match node {
        Value::Array(_, items) => {
            let index = match head.parse::<usize>() {
                Ok(i) if i < items.len() => i,
                Ok(i) => {
                    return Err(format!(
                        "index {i} is out of range ({} entries)",
                        items.len()
                    ))
                }
                Err(_) => items
                    .iter()
                    .position(|item| name_matches(item, head))
                    .ok_or_else(|| format!("no entry named {head:?}"))?,
            };
            if rest.is_empty() {
                items[index] = value;
                Ok(())
            } else {
                set(&mut items[index], rest, value)
            }
        }
        Value::Dict(_, dict) => set_in_dict(dict, head, rest, value),
        other => {
            // A scalar in the way: replace it with a table.
            let mut dict = Dict::new();
            set_in_dict(&mut dict, head, rest, value)?;
            *other = Value::Dict(Tag::Default, dict);
            Ok(())
        }
    }
}

fn set_in_dict(dict: &mut Dict, head: &str, rest: &[String], value: Value) -> Result<(), String> {
    let key = head.to_ascii_lowercase();
    if rest.is_empty() {
        dict.insert(key, value);
        return Ok(());
    }
    if key == "librdkafka" && rest.len() == 1 {
        let prop = rest[0].to_ascii_lowercase().replace('_', ".");
        let map = dict
            .entry(key)
            .or_insert_with(|| Value::Dict(Tag::Default, Dict::new()));
        let Value::Dict(_, map) = map else {
            return Err("librdkafka is not a table".into());
        };
        // librdkafka values are strings even when they look like numbers.
        let text = match value {
            Value::String(_, s) => s,
            other => value_to_string(&other),
        };
        map.insert(prop, Value::from(text));
        return Ok(());
    }
    let child = dict
        .entry(key)
        .or_insert_with(|| Value::Dict(Tag::Default, Dict::new()));
    set(child, rest, value)
}

fn value_to_string(v: &Value) -> String {
    match v {
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => match n.to_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            Some(f) => f.to_string(),
            None => String::new(),
        },
        Value::Char(_, c) => c.to_string(),
        Value::String(_, s) => s.clone(),
        _ => String::new(),
    }
}

fn name_matches(item: &Value, segment: &str) -> bool {
    let Value::Dict(_, dict) = item else {
        return false;
    };
    match dict.get("name") {
        Some(Value::String(_, name)) => {
            name.to_ascii_uppercase().replace('-', "_") == segment.to_ascii_uppercase()
        }
        _ => false,
    }
}
