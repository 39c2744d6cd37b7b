//! Host bindings generated from `wit/`, one module per world. The shared
//! interfaces (`types`, `host`) are generated once, in `type_filter`, and
//! reused by the others so there is one `Issue` type and one `host` impl.
//! Calls are synchronous: plugins are compute, callers run them on blocking
//! threads (`spawn_blocking`), which is about twice as cheap per call as
//! async bindings.

pub(super) mod type_filter {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "type-filter-plugin",
    });
}

pub(super) mod group_resolver {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "group-resolver-plugin",
        with: {
            "hearth:plugin/types": super::type_filter::hearth::plugin::types,
            "hearth:plugin/host": super::type_filter::hearth::plugin::host,
        },
    });
}

pub(super) mod export_sink {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "export-sink-plugin",
        with: {
            "hearth:plugin/types": super::type_filter::hearth::plugin::types,
            "hearth:plugin/host": super::type_filter::hearth::plugin::host,
        },
    });
}

pub(super) mod import_validator {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "import-validator-plugin",
        with: {
            "hearth:plugin/types": super::type_filter::hearth::plugin::types,
            "hearth:plugin/host": super::type_filter::hearth::plugin::host,
        },
    });
}

pub(super) use type_filter::hearth::plugin::{host as host_api, types};
