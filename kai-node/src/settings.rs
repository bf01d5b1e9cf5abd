//! Loading a node's configuration: defaults, then the TOML file, then `KAI_<KEY>` environment
//! variables, then command-line overrides — each layer overriding the one before.

use anyhow::{Context, Result};
use config::{Config, Environment, File, FileFormat};
use kai_actors::NodeConfig;
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
    let mut environment = Environment::with_prefix(ENV_PREFIX)
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
    fn a_missing_explicit_file_is_an_error() {
        assert!(load(Some(Path::new("/nonexistent/kai.toml")), &[]).is_err());
    }
}
