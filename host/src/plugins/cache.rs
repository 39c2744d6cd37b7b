//! Precompiled components on disk, so a restart skips Cranelift (hundreds of
//! milliseconds per component) and loads in well under a millisecond.
//!
//! A file is `<dir>/<sha256 of the component>-<engine compatibility hash>.cwasm`
//! and holds wasmtime's serialized code followed by the sha256 of that code.
//! Files are written atomically (temporary file + rename). One that is
//! unreadable, fails its checksum or is refused by wasmtime (another
//! version or engine configuration) is ignored and rebuilt.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Whether loading found the component already compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Deserialized from the cache.
    Hit,
    /// Compiled now, and stored when the cache is writable.
    Miss,
    /// The cache file was unusable; compiled now and replaced.
    Rebuilt,
    /// No cache directory configured.
    Disabled,
}

const CHECKSUM_LEN: usize = 32;

pub(super) struct Cache {
    dir: Option<PathBuf>,
}

impl Cache {
    pub(super) fn new(dir: Option<PathBuf>) -> Self {
        Cache { dir }
    }

    pub(super) fn path(&self, engine: &Engine, sha256: &str) -> Option<PathBuf> {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let key = format!("{sha256}-{:016x}.cwasm", hasher.finish());
        self.dir.as_ref().map(|d| d.join(key))
    }

    /// The component for `wasm` (whose sha256 is `sha256`), from the cache
    /// when possible.
    pub(super) fn component(
        &self,
        engine: &Engine,
        wasm: &[u8],
        sha256: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(path) = self.path(engine, sha256) else {
            return Ok((Component::new(engine, wasm)?, CacheOutcome::Disabled));
        };
        let outcome = match read_checked(&path) {
            Some(code) => match deserialize(engine, &code) {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring an unusable plugin cache file");
                    CacheOutcome::Rebuilt
                }
            },
            None if path.exists() => {
                tracing::warn!(path = %path.display(), "ignoring a corrupt plugin cache file");
                CacheOutcome::Rebuilt
            }
            None => CacheOutcome::Miss,
        };
        let code = engine.precompile_component(wasm)?;
        let component = deserialize(engine, &code)?;
        if let Err(e) = write_atomically(&path, &code) {
            tracing::warn!(path = %path.display(), error = %e, "could not store the compiled plugin; it is compiled again at next start");
        }
        Ok((component, outcome))
    }
}

fn deserialize(engine: &Engine, code: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` trusts its input to be wasmtime's own
    // output. `code` is either what `Engine::precompile_component` just
    // returned, or a cache file whose trailing sha256 matches its content,
    // in the host-owned cache directory, named after this engine's
    // compatibility hash: the exact bytes a previous run of this host
    // wrote. wasmtime also checks the header's version and engine settings
    // and refuses mismatches (which then count as a cache miss).
    unsafe { Component::deserialize(engine, code) }
}

/// The cached code, if the file exists and its checksum matches.
fn read_checked(path: &Path) -> Option<Vec<u8>> {
    let mut bytes = std::fs::read(path).ok()?;
    let split = bytes.len().checked_sub(CHECKSUM_LEN)?;
    if Sha256::digest(&bytes[..split]).as_slice() != &bytes[split..] {
        return None;
    }
    bytes.truncate(split);
    Some(bytes)
}

fn write_atomically(path: &Path, code: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
    let mut bytes = Vec::with_capacity(code.len() + CHECKSUM_LEN);
    bytes.extend_from_slice(code);
    bytes.extend_from_slice(&Sha256::digest(code));
    let written = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Hex sha256 of a component file.
pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
