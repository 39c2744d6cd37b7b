//! The configured plugins as one snapshot that a reload swaps whole.
//!
//! A user (later: an export or import job) takes [`PluginRegistry::current`]
//! when it starts and keeps that `Arc` to the end, so a reload never
//! changes the plugins of work in flight; the old plugins are dropped when
//! the last job holding them finishes.

use std::sync::{Arc, RwLock};

use super::PluginKind;
use super::error::PluginError;
use super::runtime::{LoadedPlugin, Runtime};
use crate::config::{Config, PluginsConfig};

/// One generation of loaded plugins, one per role.
pub struct PluginSet {
    pub type_filter: Arc<LoadedPlugin>,
    pub group_resolver: Arc<LoadedPlugin>,
    pub export_sink: Arc<LoadedPlugin>,
    pub import_validator: Arc<LoadedPlugin>,
    /// 1 for the plugins loaded at start, +1 per successful reload.
    pub generation: u64,
}

impl PluginSet {
    pub fn get(&self, kind: PluginKind) -> &Arc<LoadedPlugin> {
        match kind {
            PluginKind::TypeFilter => &self.type_filter,
            PluginKind::GroupResolver => &self.group_resolver,
            PluginKind::ExportSink => &self.export_sink,
            PluginKind::ImportValidator => &self.import_validator,
        }
    }

    /// Loads the four roles in parallel: on a cold cache each one is a
    /// Cranelift compile of a few hundred milliseconds.
    fn load(
        runtime: &Runtime,
        config: &PluginsConfig,
        generation: u64,
    ) -> Result<PluginSet, PluginError> {
        let [type_filter, group_resolver, export_sink, import_validator] =
            std::thread::scope(|scope| {
                let load = |kind: PluginKind, spec| scope.spawn(move || runtime.load(kind, spec));
                [
                    load(PluginKind::TypeFilter, &config.type_filter),
                    load(PluginKind::GroupResolver, &config.group_resolver),
                    load(PluginKind::ExportSink, &config.export_sink),
                    load(PluginKind::ImportValidator, &config.import_validator),
                ]
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
            });
        Ok(PluginSet {
            type_filter: type_filter?,
            group_resolver: group_resolver?,
            export_sink: export_sink?,
            import_validator: import_validator?,
            generation,
        })
    }
}

pub struct PluginRegistry {
    runtime: Arc<Runtime>,
    current: RwLock<Arc<PluginSet>>,
}

impl PluginRegistry {
    /// The plugins `hearth serve` runs with: `config.plugins`, with compiled
    /// code cached in `<data_dir>/plugin-cache`.
    pub fn for_config(config: &Config) -> Result<PluginRegistry, PluginError> {
        let runtime = Runtime::new(Some(config.storage.data_dir.join("plugin-cache")))?;
        PluginRegistry::load(runtime, &config.plugins)
    }

    /// Loads every role's plugin; any failure fails the whole load.
    pub fn load(
        runtime: Arc<Runtime>,
        config: &PluginsConfig,
    ) -> Result<PluginRegistry, PluginError> {
        let set = PluginSet::load(&runtime, config, 1)?;
        log_loaded(&set);
        Ok(PluginRegistry {
            runtime,
            current: RwLock::new(Arc::new(set)),
        })
    }

    /// The plugins to use from now on; keep the `Arc` for the whole job.
    pub fn current(&self) -> Arc<PluginSet> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Loads `config` and, only if every plugin loads, makes it current;
    /// otherwise the running plugins stay. Returns the new generation.
    /// Blocking (reads files, may compile): call it off the async threads.
    pub fn reload(&self, config: &PluginsConfig) -> Result<u64, PluginError> {
        let generation = self.current().generation + 1;
        let set = Arc::new(PluginSet::load(&self.runtime, config, generation)?);
        log_loaded(&set);
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Two reloads racing: keep the newer one.
        if current.generation < generation {
            *current = set;
        }
        Ok(current.generation)
    }

    /// Reloads the plugins on every SIGHUP, with the `[plugins]` section
    /// `reread` returns (normally: the config file loaded again). Failures
    /// are logged and leave the running plugins in place.
    #[cfg(unix)]
    pub fn reload_on_sighup<F>(
        self: Arc<Self>,
        reread: F,
    ) -> std::io::Result<tokio::task::JoinHandle<()>>
    where
        F: Fn() -> Result<PluginsConfig, String> + Send + Sync + 'static,
    {
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let reread = Arc::new(reread);
        Ok(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let (registry, reread) = (self.clone(), reread.clone());
                let reloaded = tokio::task::spawn_blocking(move || match reread() {
                    Ok(config) => registry.reload(&config).map_err(|e| e.to_string()),
                    Err(e) => Err(format!("reading the configuration: {e}")),
                })
                .await;
                match reloaded {
                    Ok(Ok(generation)) => tracing::info!(generation, "plugins reloaded on SIGHUP"),
                    Ok(Err(error)) => {
                        tracing::error!(%error, "plugin reload failed; the running plugins stay")
                    }
                    Err(error) => tracing::error!(%error, "plugin reload task failed"),
                }
            }
        }))
    }
}

fn log_loaded(set: &PluginSet) {
    for kind in PluginKind::ALL {
        let plugin = set.get(kind);
        tracing::info!(
            generation = set.generation,
            plugin = plugin.name(),
            wit = %plugin.wit_version(),
            sha256 = plugin.sha256(),
            cache = ?plugin.cache_outcome(),
            "plugin loaded"
        );
    }
}
