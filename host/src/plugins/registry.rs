//! The configured plugins as one snapshot that a reload swaps whole.
//!
//! A user (later: an export or import job) takes [`PluginRegistry::current`]
//! when it starts and keeps that `Arc` to the end, so a reload never
//! changes the plugins of work in flight; the old plugins are dropped when
//! the last job holding them finishes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use super::PluginKind;
use super::error::{PluginError, ReloadError};
use super::runtime::{LoadedPlugin, Runtime};
use crate::config::{Config, ConfigSource, PluginsConfig};

/// One generation of loaded plugins, one per role.
pub struct PluginSet {
    pub type_filter: Arc<LoadedPlugin>,
    pub group_resolver: Arc<LoadedPlugin>,
    pub export_sink: Arc<LoadedPlugin>,
    pub import_validator: Arc<LoadedPlugin>,
    /// The named export sinks (`[plugins.sinks.<name>]`), selected per
    /// export with `_sink`.
    pub sinks: BTreeMap<String, Arc<LoadedPlugin>>,
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

    /// The export sink `_sink` names, or `[plugins.export_sink]` for none.
    pub fn sink(&self, name: Option<&str>) -> Option<&Arc<LoadedPlugin>> {
        match name {
            None => Some(&self.export_sink),
            Some(name) => self.sinks.get(name),
        }
    }

    /// Loads the four roles and the named sinks in parallel: on a cold
    /// cache each one is a Cranelift compile of a few hundred milliseconds.
    fn load(
        runtime: &Runtime,
        config: &PluginsConfig,
        generation: u64,
    ) -> Result<PluginSet, PluginError> {
        let join = |handle: std::thread::ScopedJoinHandle<'_, _>| {
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        };
        let (roles, sinks) = std::thread::scope(|scope| {
            let load = |kind: PluginKind, spec| scope.spawn(move || runtime.load(kind, spec));
            let roles = [
                load(PluginKind::TypeFilter, &config.type_filter),
                load(PluginKind::GroupResolver, &config.group_resolver),
                load(PluginKind::ExportSink, &config.export_sink),
                load(PluginKind::ImportValidator, &config.import_validator),
            ];
            let sinks: Vec<_> = config
                .sinks
                .iter()
                .map(|(name, spec)| {
                    let section = format!("sinks.{name}");
                    let handle = scope
                        .spawn(move || runtime.load_as(PluginKind::ExportSink, &section, spec));
                    (name.clone(), handle)
                })
                .collect();
            let sinks: Vec<_> = sinks
                .into_iter()
                .map(|(name, handle)| (name, join(handle)))
                .collect();
            (roles.map(join), sinks)
        });
        let [type_filter, group_resolver, export_sink, import_validator] = roles;
        Ok(PluginSet {
            type_filter: type_filter?,
            group_resolver: group_resolver?,
            export_sink: export_sink?,
            import_validator: import_validator?,
            sinks: sinks
                .into_iter()
                .map(|(name, plugin)| Ok((name, plugin?)))
                .collect::<Result<_, PluginError>>()?,
            generation,
        })
    }
}

pub struct PluginRegistry {
    runtime: Arc<Runtime>,
    current: RwLock<Arc<PluginSet>>,
    /// Held for a whole reload, so that reloads (SIGHUP, the admin
    /// endpoint) apply one after the other, each answering with the set it
    /// installed.
    reloading: Mutex<()>,
}

impl PluginRegistry {
    /// The plugins `hearth serve` runs with: `config.plugins`, with compiled
    /// code cached in [`Config::plugin_cache_dir`].
    pub fn for_config(config: &Config) -> Result<PluginRegistry, PluginError> {
        let runtime = Runtime::new(Some(config.plugin_cache_dir()))?;
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
            reloading: Mutex::new(()),
        })
    }

    /// The plugins to use from now on; keep the `Arc` for the whole job.
    pub fn current(&self) -> Arc<PluginSet> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Loads `config` and, only if every plugin loads, makes it current and
    /// returns it; otherwise the running plugins stay. Blocking (reads
    /// files, may compile): call it off the async threads.
    pub fn reload(&self, config: &PluginsConfig) -> Result<Arc<PluginSet>, PluginError> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let generation = self.current().generation + 1;
        let set = Arc::new(PluginSet::load(&self.runtime, config, generation)?);
        log_loaded(&set);
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = set.clone();
        Ok(set)
    }

    /// Reads the configuration again from `source` and reloads its
    /// `[plugins]` section (SIGHUP and `POST /_admin/plugins/reload`).
    pub fn reload_from(&self, source: &ConfigSource) -> Result<Arc<PluginSet>, ReloadError> {
        let config = source.load()?;
        Ok(self.reload(&config.plugins)?)
    }
}

fn log_loaded(set: &PluginSet) {
    let roles = PluginKind::ALL.map(|kind| set.get(kind));
    for plugin in roles.into_iter().chain(set.sinks.values()) {
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
