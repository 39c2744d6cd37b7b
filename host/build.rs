//! Builds the WebAssembly guests from source, so a plain `cargo build` (and
//! the README's `make serve` / `make test`) is all a newcomer runs:
//!
//! - `plugins/`: the default plugins, copied into OUT_DIR and embedded in the
//!   binary with `include_bytes!`;
//! - `examples/plugins/` and `tests/plugins/`: a third party's plugins and
//!   the hostile components the fault tests load; the tests find them through
//!   `GUEST_COMPONENTS_DIR` (not `HEARTH_*`: cargo also sets it when running
//!   tests, and `HEARTH_*` variables are configuration).
//!
//! Each is its own cargo workspace (own lockfile) built for `wasm32-wasip2`
//! into `<target>/wasm`, so the host's `target/<profile>` is never touched.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The embedded defaults: (crate's artifact name, file name in OUT_DIR).
const DEFAULTS: [&str; 4] = [
    "type_filter",
    "group_resolver",
    "export_sink",
    "import_validator",
];

const GUEST_WORKSPACES: [&str; 3] = ["plugins", "examples/plugins", "tests/plugins"];

/// Codegen flags for every guest workspace, here rather than in their
/// `.cargo/config.toml` (which cargo reads from the working directory, not
/// the manifest's). `simd128` gives `memchr` (fhir-search's line scan) its
/// 16-byte path; the engine accepts SIMD (host/src/plugins/runtime.rs).
/// Editing this file reruns the script, and cargo rebuilds the guests when
/// their flags change.
const GUEST_RUSTFLAGS: &str = r#"target.wasm32-wasip2.rustflags=["-Ctarget-feature=+simd128"]"#;

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("host/ lives in the repository root");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/hearth-<hash>/out.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .expect("OUT_DIR is inside the target directory");
    let wasm_target_dir = target_dir.join("wasm");

    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    for workspace in GUEST_WORKSPACES {
        println!("cargo:rerun-if-changed={}", root.join(workspace).display());
        build_guests(&root.join(workspace).join("Cargo.toml"), &wasm_target_dir);
    }

    let guest_dir = wasm_target_dir.join("wasm32-wasip2").join("release");
    for name in DEFAULTS {
        let file = format!("{name}.wasm");
        std::fs::copy(guest_dir.join(&file), out_dir.join(&file))
            .unwrap_or_else(|e| panic!("copying {file} into OUT_DIR: {e}"));
    }
    println!(
        "cargo:rustc-env=GUEST_COMPONENTS_DIR={}",
        guest_dir.display()
    );
}

fn build_guests(manifest: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .args(["--config", GUEST_RUSTFLAGS])
        // Cargo reads the build script's stdout for directives.
        .stdout(Stdio::null());
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if leaks_into_nested_cargo(&key) {
            command.env_remove(&*key);
        }
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("running cargo for {}: {e}", manifest.display()));
    if !status.success() {
        panic!(
            "building the WebAssembly components of {} failed (see above). They need the \
             wasm32-wasip2 target: `rustup target add wasm32-wasip2` (`make serve` and \
             `make test` run it for you).",
            manifest.display()
        );
    }
}

/// The variables cargo sets for this build script (target, profile, flags,
/// wrappers, paths of *this* package) that would otherwise make the nested
/// cargo build the guests with the host's settings. The jobserver
/// (`CARGO_MAKEFLAGS`), `CARGO_HOME` and registry/network settings are kept.
fn leaks_into_nested_cargo(key: &str) -> bool {
    const KEEP: [&str; 2] = ["CARGO_HOME", "CARGO_MAKEFLAGS"];
    const KEEP_PREFIXES: [&str; 3] = ["CARGO_NET_", "CARGO_HTTP_", "CARGO_REGISTRIES_"];
    const DROP: [&str; 12] = [
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_LINKER",
        "TARGET",
        "HOST",
        "OUT_DIR",
        "OPT_LEVEL",
        "PROFILE",
        "NUM_JOBS",
    ];
    if KEEP.contains(&key) || KEEP_PREFIXES.iter().any(|p| key.starts_with(p)) {
        return false;
    }
    key.starts_with("CARGO_") || key.starts_with("__CARGO") || key == "DEBUG" || DROP.contains(&key)
}
