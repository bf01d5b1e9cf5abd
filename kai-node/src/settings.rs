//! Loading a node's configuration: defaults, then the TOML file, then `KAI_<KEY>` environment
//! variables, then command-line overrides — each layer overriding the one before.
//!
//! Only environment variables that name a config key are read: other `KAI_*` variables (e.g. a
//! script's `KAI_BIN`) are no configuration, so they are left alone with a warning rather than
//! failing the start as unknown keys. Unknown keys in the file or on the command line still fail.

use anyhow::{Context, Result};
use config::{Config, Environment, File, FileFormat, Map};
use kai_actors::NodeConfig;
use std::collections::BTreeSet;
use std::path::Path;

/// Environment variables `KAI_<KEY>` override config keys.
const ENV_PREFIX: &str = "KAI";
/// Keys whose value is a list, written comma-separated in the environment and on the command line.
const LIST_KEYS: &[&str] = &["seeds"];

/// Builds and validates the configuration. `file` is required if given explicitly; `overrides`
/// are `(key, value)` pairs from the command line.
pub fn load(file: Option<&Path>, overrides: &[(String, String)]) -> Result<NodeConfig> {
    let mut builder = Config::builder();
    if let Some(path) = file {
        builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
    }
    let (variables, ignored) = config_variables(std::env::vars());
    for name in ignored {
        log::warn!("ignoring environment variable {name}: it names no config key");
    }
    let mut environment = Environment::with_prefix(ENV_PREFIX)
        .source(Some(variables))
        .try_parsing(true)
        .list_separator(",");
    for key in LIST_KEYS {
        environment = environment.with_list_parse_key(key);
    }
    builder = builder.add_source(environment);
    for (key, value) in overrides {
        builder = if LIST_KEYS.contains(&key.as_str()) {
            let items: Vec<String> = value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(String::from)
                .collect();
            builder.set_override(key.as_str(), items)
        } else {
            builder.set_override(key.as_str(), value.as_str())
        }
        .with_context(|| format!("bad override for config key `{key}`"))?;
    }
    let merged = builder.build().context("cannot read the configuration")?;
    let config: NodeConfig = merged
        .try_deserialize()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    config.validate()?;
    Ok(config)
}

/// Splits environment variables into those that set a config key (`KAI_<KEY>`, returned as a
/// map for the environment source) and the names of other `KAI_*` variables; the rest are not
/// Kai's and are dropped silently.
fn config_variables(vars: impl Iterator<Item = (String, String)>) -> (Map<String, String>, Vec<String>) {
    let keys = config_keys();
    // The environment source matches its prefix regardless of case, and so does this filter.
    let prefix = format!("{ENV_PREFIX}_").to_ascii_lowercase();
    let mut variables = Map::new();
    let mut ignored = Vec::new();
    for (name, value) in vars {
        let lower = name.to_ascii_lowercase();
        let Some(key) = lower.strip_prefix(&prefix) else {
            continue;
        };
        if keys.contains(key) {
            variables.insert(name, value);
        } else {
            ignored.push(name);
        }
    }
    (variables, ignored)
}

/// The config keys: the fields of [`NodeConfig`], as serialised.
fn config_keys() -> BTreeSet<String> {
    match serde_json::to_value(NodeConfig::default()) {
        Ok(serde_json::Value::Object(fields)) => fields.keys().cloned().collect(),
        _ => BTreeSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn file_then_overrides_apply_in_order() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(
            file,
            "n = 3\nr = 2\nw = 2\nlisten = \"127.0.0.1:9999\"\nrequest_timeout = \"250ms\"\nseeds = [\"a:1\", \"b:2\"]"
        )
        .expect("write");
        let overrides = vec![("listen".to_owned(), "127.0.0.1:7777".to_owned())];
        let seeds = vec![("seeds".to_owned(), "c:3, d:4".to_owned())];
        let config = load(Some(file.path()), &seeds).expect("valid");
        assert_eq!(config.seeds, vec!["c:3".to_owned(), "d:4".to_owned()]);
        let config = load(Some(file.path()), &overrides).expect("valid");
        assert_eq!((config.n, config.r, config.w), (3, 2, 2));
        assert_eq!(config.listen.port(), 7777);
        assert_eq!(config.request_timeout, std::time::Duration::from_millis(250));
        assert_eq!(config.seeds, vec!["a:1".to_owned(), "b:2".to_owned()]);
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = load(None, &[("r".to_owned(), "5".to_owned())]).expect_err("r > n");
        assert!(err.to_string().contains("`r`"), "{err}");
        let err = load(None, &[("max_value_size".to_owned(), "lots".to_owned())]).expect_err("not a number");
        assert!(format!("{err:#}").contains("max_value_size"), "{err:#}");
        let err = load(None, &[("no_such_key".to_owned(), "1".to_owned())]).expect_err("unknown key");
        assert!(format!("{err:#}").contains("no_such_key"), "{err:#}");
    }

    #[test]
    fn only_variables_naming_a_config_key_are_read() {
        let vars = [
            ("KAI_BIN", "/usr/local/bin/kai"),
            ("KAI_LISTEN", "127.0.0.1:1"),
            ("KAI_PEER_LISTEN", "127.0.0.1:2"),
            ("KAI_MAX_VALUE_SIZE", "10"),
            ("KAI_NO_SUCH_KEY", "1"),
            ("PATH", "/bin"),
            ("KAIZEN", "1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let (read, ignored) = config_variables(vars.into_iter());
        let mut names: Vec<&str> = read.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, vec!["KAI_LISTEN", "KAI_MAX_VALUE_SIZE", "KAI_PEER_LISTEN"]);
        assert_eq!(ignored, vec!["KAI_BIN".to_owned(), "KAI_NO_SUCH_KEY".to_owned()]);
        assert!(config_keys().contains("tombstone_grace") && config_keys().contains("name"));
    }

    #[test]
    fn a_missing_explicit_file_is_an_error() {
        assert!(load(Some(Path::new("/nonexistent/kai.toml")), &[]).is_err());
    }
}
