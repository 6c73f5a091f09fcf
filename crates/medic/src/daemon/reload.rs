//! SIGHUP: the daemon reads its configuration file again and applies what can change while it runs, instead of
//! ending (the signal's default action).
//!
//! Applied at once: `engine.dry_run` and the `[notify]` section (the notifiers are rebuilt), and the operators'
//! silences are read again from the knowledge base. Every other changed key is logged as `needs a restart: <key>`
//! and keeps its running value, so a later reload names it again. A file that cannot be read, parsed or validated
//! changes nothing: the error is logged and the configuration in force stays. Keys are logged, never values (a
//! token must not reach a log).

use std::path::PathBuf;
use std::sync::Arc;

use crate::app::App;
use crate::config::{Config, ConfigError, ConfigWarning, LogFormat};

/// Keys a reload applies while the daemon runs: exact keys, or a whole section when it ends with `.`.
const LIVE_KEYS: &[&str] = &["engine.dry_run", "notify."];

/// Where the running configuration came from, so that it can be read again the same way.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The configuration file (`--config`, `MEDIC_CONFIG`); none: defaults and flags only, nothing to reload.
    pub path: Option<PathBuf>,
    /// The command line's values, which win over the file's at every reload as they did at start.
    pub overrides: Overrides,
}

/// Values given on the command line of `medic serve`.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--data`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--token` (`MEDIC_TOKEN`).
    pub token: Option<String>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
}

impl Overrides {
    /// Sets every value given on the command line in `config`.
    pub fn apply(&self, config: &mut Config) {
        if let Some(dir) = &self.data_dir {
            config.server.data_dir = dir.clone();
        }
        if let Some(listen) = &self.listen {
            config.server.listen = listen.clone();
        }
        if let Some(token) = &self.token {
            config.server.token = Some(token.clone());
        }
        if let Some(format) = self.log_format {
            config.server.log_format = format;
        }
    }
}

impl ConfigSource {
    /// The configuration as it reads now: the file (or the defaults) with the command line's values, validated.
    pub fn load(&self) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let mut config = match &self.path {
            Some(path) => Config::read(path)?,
            None => Config::default(),
        };
        self.overrides.apply(&mut config);
        // A flag's value is named as the flag the user typed, not the configuration key it overrides.
        if let Some(listen) = &self.overrides.listen
            && let Some(reason) = Config::listen_problem(listen)
        {
            return Err(ConfigError::Flag {
                flag: "--listen",
                value: listen.clone(),
                reason,
            });
        }
        let warnings = match &self.path {
            Some(path) => config.validate_file(path)?,
            None => config.validate()?,
        };
        Ok((config, warnings))
    }
}

/// What one reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Keys whose new value is in force.
    pub applied: Vec<String>,
    /// Keys that changed in the file but keep their running value until a restart.
    pub needs_restart: Vec<String>,
}

/// The keys, `section.key`, whose values differ between `old` and `new` (deeper tables are named by their first
/// two levels: `engine.composite`, `http.operators`).
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let (Ok(old), Ok(new)) = (toml::Value::try_from(old), toml::Value::try_from(new)) else {
        // A configuration always serializes (the daemon printed it with `medic config`); were it not to, every
        // section is reported as changed rather than silently none.
        return vec!["<configuration>".to_string()];
    };
    let empty = toml::Table::new();
    let table = |v: &toml::Value| v.as_table().cloned().unwrap_or_default();
    let (old, new) = (table(&old), table(&new));
    let mut sections: Vec<&String> = old.keys().chain(new.keys()).collect();
    sections.sort();
    sections.dedup();
    let mut changed = Vec::new();
    for section in sections {
        let inner = |t: &toml::Table| t.get(section).and_then(|v| v.as_table()).cloned();
        let (a, b) = (
            inner(&old).unwrap_or_else(|| empty.clone()),
            inner(&new).unwrap_or_else(|| empty.clone()),
        );
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            if a.get(key) != b.get(key) {
                changed.push(format!("{section}.{key}"));
            }
        }
    }
    changed
}

fn is_live(key: &str) -> bool {
    LIVE_KEYS.iter().any(|live| match live.strip_suffix('.') {
        Some(section) => key
            .strip_prefix(section)
            .is_some_and(|k| k.starts_with('.')),
        None => key == *live,
    })
}

/// Applies `new` over `running` (the configuration in force, updated with what was applied). Blocking: it waits for
/// a running healing cycle to release the engine. Nothing changes when the notifiers cannot be built.
pub fn apply(app: &App, running: &mut Config, new: &Config) -> anyhow::Result<Reloaded> {
    let changed = changed_keys(running, new);
    let (applied, needs_restart): (Vec<String>, Vec<String>) =
        changed.into_iter().partition(|k| is_live(k));
    if applied.iter().any(|k| k.starts_with("notify.")) {
        app.set_notifiers(&new.notify)?;
        running.notify = new.notify.clone();
    }
    if running.engine.dry_run != new.engine.dry_run {
        app.set_dry_run(new.engine.dry_run);
        running.engine.dry_run = new.engine.dry_run;
    }
    app.reload_silences()
        .map_err(|e| anyhow::anyhow!("reading silences from the knowledge base: {e}"))?;
    Ok(Reloaded {
        applied,
        needs_restart,
    })
}

/// Reads the configuration again and applies it, logging what happened; the configuration in force stays when the
/// file is bad.
pub async fn on_hangup(app: &Arc<App>, source: &ConfigSource, running: &mut Config) {
    let Some(path) = source.path.clone() else {
        tracing::warn!(
            "SIGHUP: no configuration file (--config or MEDIC_CONFIG) to read again; nothing changed"
        );
        return;
    };
    let (app, source, mut config) = (app.clone(), source.clone(), running.clone());
    let done = tokio::task::spawn_blocking(move || {
        let (new, warnings) = source.load()?;
        let reloaded = apply(&app, &mut config, &new)?;
        anyhow::Ok((reloaded, warnings, config))
    })
    .await;
    match done {
        Ok(Ok((reloaded, warnings, config))) => {
            *running = config;
            for w in warnings {
                tracing::warn!("{w}");
            }
            for key in &reloaded.needs_restart {
                tracing::warn!(key = %key, "needs a restart: {key}");
            }
            tracing::info!(
                path = %path.display(),
                applied = ?reloaded.applied,
                needs_restart = ?reloaded.needs_restart,
                "configuration reloaded"
            );
        }
        Ok(Err(e)) => tracing::error!(
            path = %path.display(),
            "configuration not reloaded, the one in force stays: {e:#}"
        ),
        Err(e) => tracing::error!("configuration reload ended abnormally: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_name_section_and_key() {
        let old = Config::default();
        let mut new = old.clone();
        assert!(changed_keys(&old, &new).is_empty());
        new.engine.dry_run = true;
        new.server.listen = "127.0.0.1:9999".into();
        new.server.token = Some("0123456789abcdef-secret".into());
        new.notify.log = false;
        assert_eq!(
            changed_keys(&old, &new),
            [
                "engine.dry_run",
                "notify.log",
                "server.listen",
                "server.token"
            ]
        );
    }

    #[test]
    fn live_keys_are_dry_run_and_notify() {
        assert!(is_live("engine.dry_run"));
        assert!(is_live("notify.webhook_url"));
        assert!(!is_live("notifyx.a"));
        assert!(!is_live("engine.anomaly_cutoff"));
        assert!(!is_live("server.listen"));
    }

    #[test]
    fn overrides_win_over_the_file() {
        let source = ConfigSource {
            path: None,
            overrides: Overrides {
                listen: Some("127.0.0.1:0".into()),
                log_format: Some(LogFormat::Json),
                ..Overrides::default()
            },
        };
        let (config, _) = source.load().unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:0");
        assert_eq!(config.server.log_format, LogFormat::Json);
    }
}
