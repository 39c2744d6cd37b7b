//! The engine, loading, and the per-call containment every session uses.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use semver::Version;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx};

use super::PluginKind;
use super::bindings::export_sink::{ExportSinkPlugin, ExportSinkPluginPre};
use super::bindings::group_resolver::{GroupResolverPlugin, GroupResolverPluginPre};
use super::bindings::import_validator::{ImportValidatorPlugin, ImportValidatorPluginPre};
use super::bindings::type_filter::{TypeFilterPlugin, TypeFilterPluginPre};
use super::cache::{Cache, CacheOutcome, sha256_hex};
use super::error::{Fault, PluginError};
use super::group_resolver::SnapshotReader;
use super::host::{HostState, MemoryLimiter};
use super::version::{self, WIT_PACKAGE, WIT_VERSION, accepts_version};
use crate::config::{PluginConfig, PluginGrants, PluginLimits};

/// How often the epoch advances: the granularity of call deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Owns the wasmtime engine and the cache of compiled components. One per
/// process; plugins loaded from it share its compiled-code machinery.
pub struct Runtime {
    engine: Engine,
    /// A second configuration, made only when a plugin asks for a fuel
    /// budget: fuel metering slows every call of every plugin compiled with
    /// it, so plugins without a budget never pay for it.
    metered: Mutex<Option<Engine>>,
    cache: Cache,
}

/// A component compiled and inspected, not yet bound to a role.
pub(super) struct Prepared {
    pub(super) component: Component,
    pub(super) engine: Engine,
    pub(super) sha256: String,
    pub(super) cache: CacheOutcome,
    /// Names of the component's imports and exports.
    pub(super) imports: Vec<String>,
    pub(super) exports: Vec<String>,
}

/// A plugin ready to instantiate: compiled, version-checked, linked.
/// Shared (`Arc`) by everything that uses it; a reload makes new ones and
/// leaves these to the jobs that hold them.
pub struct LoadedPlugin {
    kind: PluginKind,
    name: Arc<str>,
    /// The configured file; `None` for the embedded default.
    component: Option<PathBuf>,
    sha256: String,
    version: Version,
    cache: CacheOutcome,
    imports: Vec<String>,
    engine: Engine,
    pub(super) pre: WorldPre,
    limits: PluginLimits,
    config: Arc<BTreeMap<String, String>>,
    grants: PluginGrants,
    extension: Option<String>,
}

pub(super) enum WorldPre {
    TypeFilter(TypeFilterPluginPre<HostState>),
    GroupResolver(GroupResolverPluginPre<HostState>),
    ExportSink(ExportSinkPluginPre<HostState>),
    ImportValidator(ImportValidatorPluginPre<HostState>),
}

impl Runtime {
    /// `cache_dir` keeps precompiled components across restarts (normally
    /// `<data_dir>/plugin-cache`); `None` compiles at every load.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Arc<Runtime>, PluginError> {
        Ok(Arc::new(Runtime {
            engine: new_engine(false)?,
            metered: Mutex::new(None),
            cache: Cache::new(cache_dir),
        }))
    }

    /// Loads the component `spec` names (or the embedded default) for the
    /// role `kind`, refusing it when its sha256 differs from the pin, it is
    /// not a `kind` plugin, its WIT version is not accepted, or its imports
    /// cannot be satisfied.
    pub fn load(
        &self,
        kind: PluginKind,
        spec: &PluginConfig,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        self.load_as(kind, kind.config_name(), spec)
    }

    /// [`Runtime::load`] for a plugin whose config section is `section`
    /// (`sinks.<name>` for a named export sink), which names it in errors
    /// and logs.
    pub fn load_as(
        &self,
        kind: PluginKind,
        section: &str,
        spec: &PluginConfig,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        let (name, wasm) = match &spec.component {
            None => (
                format!("{section} (default)"),
                Cow::Borrowed(kind.embedded_default()),
            ),
            Some(path) => {
                let name = format!("{section} ({})", path.display());
                let wasm = std::fs::read(path).map_err(|e| {
                    PluginError::new(
                        &name,
                        Fault::Load(format!("reading {}: {e}", path.display())),
                    )
                })?;
                (name, Cow::Owned(wasm))
            }
        };
        let prepared = self.prepare(&name, &wasm, spec.limits.fuel.is_some())?;
        if let Some(pin) = &spec.sha256
            && !pin.eq_ignore_ascii_case(&prepared.sha256)
        {
            let message = format!("its sha256 is {}, the config pins {pin}", prepared.sha256);
            return Err(PluginError::new(&name, Fault::Load(message)));
        }
        LoadedPlugin::bind(name, kind, prepared, spec).map(Arc::new)
    }

    /// Compiles (or fetches from the cache) and inspects a component.
    pub(super) fn prepare(
        &self,
        name: &str,
        wasm: &[u8],
        fuel: bool,
    ) -> Result<Prepared, PluginError> {
        let engine = if fuel {
            self.metered_engine()?
        } else {
            self.engine.clone()
        };
        let sha256 = sha256_hex(wasm);
        let (component, cache) = self.cache.component(&engine, wasm, &sha256).map_err(|e| {
            PluginError::new(
                name,
                Fault::Load(format!("not a valid WebAssembly component: {e:#}")),
            )
        })?;
        let ty = component.component_type();
        let imports = ty.imports(&engine).map(|(n, _)| n.to_owned()).collect();
        let exports = ty.exports(&engine).map(|(n, _)| n.to_owned()).collect();
        Ok(Prepared {
            component,
            engine,
            sha256,
            cache,
            imports,
            exports,
        })
    }

    fn metered_engine(&self) -> Result<Engine, PluginError> {
        let mut metered = self
            .metered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(engine) = &*metered {
            return Ok(engine.clone());
        }
        let engine = new_engine(true)?;
        *metered = Some(engine.clone());
        Ok(engine)
    }
}

fn new_engine(fuel: bool) -> Result<Engine, PluginError> {
    let fail = |e: String| {
        PluginError::new(
            "runtime",
            Fault::Load(format!("starting the WebAssembly engine: {e}")),
        )
    };
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.consume_fuel(fuel);
    // The default guests are built with simd128 (host/build.rs). On by
    // default; stated so that no configuration change refuses them.
    config.wasm_simd(true);
    let engine = Engine::new(&config).map_err(|e| fail(e.to_string()))?;
    // Deadlines are counted in ticks of this thread; it ends with the engine.
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("plugin-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .map_err(|e| fail(e.to_string()))?;
    Ok(engine)
}

impl LoadedPlugin {
    pub(super) fn bind(
        name: String,
        kind: PluginKind,
        prepared: Prepared,
        spec: &PluginConfig,
    ) -> Result<LoadedPlugin, PluginError> {
        let fail = |fault| Err(PluginError::new(&name, fault));
        let implemented = version::implemented(prepared.exports.iter().cloned());
        let Some((_, version)) = implemented.iter().find(|(k, _)| *k == kind) else {
            let message = match implemented.first() {
                Some((other, v)) => format!(
                    "it is a {} plugin ({WIT_PACKAGE}/{}@{v}), configured as {kind}",
                    other.config_name(),
                    other.interface()
                ),
                None => format!(
                    "it does not export {WIT_PACKAGE}/{}, so it is not a {kind} plugin (it exports: {})",
                    kind.interface(),
                    list_or_none(&prepared.exports)
                ),
            };
            return fail(Fault::Load(message));
        };
        let accepted = accepts_version(&WIT_VERSION);
        if !accepted.matches(version) {
            return fail(Fault::VersionRefused {
                package: WIT_PACKAGE,
                found: version.clone(),
                host: WIT_VERSION,
                accepted: accepted.to_string(),
            });
        }
        if let Some(dir) = spec.grants.dirs.iter().find(|d| !d.is_dir()) {
            return fail(Fault::Load(format!(
                "granted directory {} does not exist",
                dir.display()
            )));
        }
        let pre = link(kind, &prepared.engine, &prepared.component)
            .map_err(|e| PluginError::new(&name, Fault::Load(format!("linking: {e:#}"))))?;
        Ok(LoadedPlugin {
            kind,
            name: name.into(),
            component: spec.component.clone(),
            sha256: prepared.sha256,
            version: version.clone(),
            cache: prepared.cache,
            imports: prepared.imports,
            engine: prepared.engine,
            pre,
            limits: spec.limits.clone(),
            config: Arc::new(spec.config.clone()),
            grants: spec.grants.clone(),
            extension: spec.extension.clone(),
        })
    }

    /// An export sink's file extension: the configured one, or `ndjson`.
    pub fn file_extension(&self) -> &str {
        self.extension.as_deref().unwrap_or("ndjson")
    }

    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// The role and the component, e.g. `type_filter (plugins/x.wasm)`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The component file the config names; `None` for the embedded default.
    pub fn component(&self) -> Option<&Path> {
        self.component.as_deref()
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The `hearth:plugin` version the component was built for.
    pub fn wit_version(&self) -> &Version {
        &self.version
    }

    /// Whether this load found the component precompiled in the cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }

    /// What the component imports (WASI interfaces, `hearth:plugin/host`, ...).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Instantiates the plugin once, as every session does, and drops the
    /// instance; returns how long instantiation took.
    pub fn probe(self: &Arc<Self>) -> Result<Duration, PluginError> {
        let started = std::time::Instant::now();
        Instance::new(self, None, |pre, store| {
            Some(match pre {
                WorldPre::TypeFilter(pre) => pre.instantiate(store).map(drop),
                WorldPre::GroupResolver(pre) => pre.instantiate(store).map(drop),
                WorldPre::ExportSink(pre) => pre.instantiate(store).map(drop),
                WorldPre::ImportValidator(pre) => pre.instantiate(store).map(drop),
            })
        })?;
        Ok(started.elapsed())
    }

    pub(super) fn error(&self, fault: Fault) -> PluginError {
        PluginError::new(&self.name, fault)
    }

    /// A fresh store: no files, network or environment beyond the grants.
    fn new_store(
        &self,
        reader: Option<Arc<dyn SnapshotReader>>,
    ) -> Result<Store<HostState>, PluginError> {
        let mut wasi = WasiCtx::builder();
        for dir in &self.grants.dirs {
            wasi.preopened_dir(dir, dir.to_string_lossy(), FsPerms::ReadWrite)
                .map_err(|e| {
                    self.error(Fault::Load(format!(
                        "opening granted directory {}: {e}",
                        dir.display()
                    )))
                })?;
        }
        if !self.grants.hosts.is_empty() {
            let hosts = Arc::new(self.grants.hosts.clone());
            wasi.socket_addr_check(move |addr, _| {
                let allowed = hosts.contains(&addr);
                Box::pin(async move { allowed })
            });
        }
        let memory_bytes = usize::try_from(self.limits.memory_mib << 20).unwrap_or(usize::MAX);
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max_bytes: memory_bytes,
                refused: false,
            },
            plugin: self.name.clone(),
            config: self.config.clone(),
            reader,
            reported: Default::default(),
            report_violation: None,
            host_busy: Duration::ZERO,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // The deadline is the plugin's own time: what the host spent in its
        // imports (store reads, searches) extends it by as much.
        store.epoch_deadline_callback(|mut ctx| {
            let busy = std::mem::take(&mut ctx.data_mut().host_busy);
            let credit = (busy.as_millis() / EPOCH_TICK.as_millis()) as u64;
            Ok(if credit > 0 {
                UpdateDeadline::Continue(credit)
            } else {
                UpdateDeadline::Interrupt
            })
        });
        Ok(store)
    }

    /// Gives the next call its own deadline (and fuel): deadlines are
    /// absolute epochs, so a long-lived instance needs them re-armed.
    fn arm(&self, store: &mut Store<HostState>) -> Result<(), PluginError> {
        let ticks = self
            .limits
            .deadline_ms
            .div_ceil(EPOCH_TICK.as_millis() as u64)
            + 1;
        store.set_epoch_deadline(ticks);
        store.data_mut().limiter.refused = false;
        store.data_mut().host_busy = Duration::ZERO;
        if let Some(fuel) = self.limits.fuel {
            store
                .set_fuel(fuel)
                .map_err(|e| self.error(Fault::Load(format!("setting fuel: {e}"))))?;
        }
        Ok(())
    }

    /// Names what stopped a call that returned an error.
    fn classify(
        &self,
        operation: &'static str,
        error: &wasmtime::Error,
        store: &Store<HostState>,
    ) -> Fault {
        if store.data().limiter.refused {
            return Fault::MemoryCap {
                operation,
                memory_mib: self.limits.memory_mib,
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Fault::Deadline {
                operation,
                deadline_ms: self.limits.deadline_ms,
            },
            Some(Trap::OutOfFuel) => Fault::Fuel {
                operation,
                fuel: self.limits.fuel.unwrap_or_default(),
            },
            Some(trap) => Fault::Trap {
                operation,
                message: trap.to_string(),
            },
            // Not a trap: the canonical ABI refused what the guest handed
            // back (a bad string, discriminant, handle...).
            None => Fault::Contract {
                operation,
                message: format!("{error:#}"),
            },
        }
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

fn link(kind: PluginKind, engine: &Engine, component: &Component) -> wasmtime::Result<WorldPre> {
    let mut linker = Linker::<HostState>::new(engine);
    // Rust's std on wasm32-wasip2 imports WASI; the context grants nothing
    // beyond what the config lists (see `new_store`).
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    Ok(match kind {
        PluginKind::TypeFilter => {
            TypeFilterPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
            WorldPre::TypeFilter(TypeFilterPluginPre::new(
                linker.instantiate_pre(component)?,
            )?)
        }
        PluginKind::GroupResolver => {
            GroupResolverPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
            WorldPre::GroupResolver(GroupResolverPluginPre::new(
                linker.instantiate_pre(component)?,
            )?)
        }
        PluginKind::ExportSink => {
            ExportSinkPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
            WorldPre::ExportSink(ExportSinkPluginPre::new(
                linker.instantiate_pre(component)?,
            )?)
        }
        PluginKind::ImportValidator => {
            ImportValidatorPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
            WorldPre::ImportValidator(ImportValidatorPluginPre::new(
                linker.instantiate_pre(component)?,
            )?)
        }
    })
}

/// One live instance of a plugin, owned by one session and reused for all
/// of its calls, until a fault discards it.
pub(super) struct Instance<B> {
    plugin: Arc<LoadedPlugin>,
    live: Option<(Store<HostState>, B)>,
}

impl<B> Instance<B> {
    /// Instantiates `plugin` with `instantiate`, which picks the world's
    /// `InstancePre` (`None`: the plugin is of another kind).
    pub(super) fn new(
        plugin: &Arc<LoadedPlugin>,
        reader: Option<Arc<dyn SnapshotReader>>,
        instantiate: impl FnOnce(&WorldPre, &mut Store<HostState>) -> Option<wasmtime::Result<B>>,
    ) -> Result<Self, PluginError> {
        let mut store = plugin.new_store(reader)?;
        plugin.arm(&mut store)?;
        match instantiate(&plugin.pre, &mut store) {
            Some(Ok(bindings)) => Ok(Instance {
                plugin: plugin.clone(),
                live: Some((store, bindings)),
            }),
            Some(Err(e)) => Err(plugin.error(plugin.classify("instantiation", &e, &store))),
            None => Err(plugin.error(Fault::Load(format!(
                "a {} plugin was used as another kind",
                plugin.kind
            )))),
        }
    }

    pub(super) fn plugin(&self) -> &LoadedPlugin {
        &self.plugin
    }

    /// The live instance's host state; `None` once discarded.
    pub(super) fn state_mut(&mut self) -> Option<&mut HostState> {
        self.live.as_mut().map(|(store, _)| store.data_mut())
    }

    /// One call into the guest under the plugin's limits. Any error
    /// discards the instance: after a trap its state is undefined.
    pub(super) fn call<R>(
        &mut self,
        operation: &'static str,
        f: impl FnOnce(&B, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let Some((store, bindings)) = self.live.as_mut() else {
            return Err(self.plugin.error(Fault::Discarded));
        };
        self.plugin.arm(store)?;
        match f(bindings, store) {
            Ok(value) => Ok(value),
            Err(e) => {
                let fault = self.plugin.classify(operation, &e, store);
                tracing::warn!(plugin = %self.plugin.name, %fault, "plugin instance discarded");
                self.live = None;
                Err(self.plugin.error(fault))
            }
        }
    }

    /// The guest answered, but not as the contract says: its state is
    /// suspect too, so the instance is discarded.
    pub(super) fn violation(&mut self, operation: &'static str, message: String) -> PluginError {
        self.live = None;
        let fault = Fault::Contract { operation, message };
        tracing::warn!(plugin = %self.plugin.name, %fault, "plugin instance discarded");
        self.plugin.error(fault)
    }

    /// Whether a fault has discarded the instance.
    pub(super) fn is_discarded(&self) -> bool {
        self.live.is_none()
    }
}
