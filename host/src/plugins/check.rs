//! `hearth plugin check FILE.wasm`: what a component is, whether this host
//! accepts it, what it imports, and whether a small call works.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use semver::Version;

use super::PluginKind;
use super::error::{Fault, PluginError};
use super::export_sink::{FileInfo, SinkWriter};
use super::group_resolver::{GroupMembers, SearchError, SnapshotReader};
use super::import_validator::{ValidationSession, Verdict};
use super::runtime::{LoadedPlugin, Runtime};
use super::type_filter::TypeFilter;
use super::version::{self, WIT_PACKAGE, WIT_VERSION, accepts_version};
use crate::config::PluginConfig;
use crate::fhir::Instant;

pub struct CheckReport {
    pub path: PathBuf,
    pub sha256: String,
    pub size: usize,
    /// The `hearth:plugin` worlds the component implements, with versions.
    pub implements: Vec<(PluginKind, Version)>,
    pub imports: Vec<String>,
    /// Whether this host loads it, or why not.
    pub accepted: Result<(), String>,
    /// The smoke call's summary, when the component was accepted.
    pub smoke: Option<Result<String, String>>,
}

impl CheckReport {
    /// Accepted and the smoke call worked.
    pub fn passed(&self) -> bool {
        self.accepted.is_ok() && matches!(self.smoke, Some(Ok(_)))
    }
}

/// Inspects the component at `path` and, when this host accepts it, runs
/// one small call with default limits and `config` as its config values.
/// `Err` only when the file cannot be read or is not a component.
pub fn check_component(
    path: &Path,
    config: BTreeMap<String, String>,
) -> Result<CheckReport, PluginError> {
    let name = path.display().to_string();
    let wasm = std::fs::read(path)
        .map_err(|e| PluginError::new(&name, Fault::Load(format!("reading it: {e}"))))?;
    let runtime = Runtime::new(None)?;
    let prepared = runtime.prepare(&name, &wasm, false)?;
    let mut report = CheckReport {
        path: path.to_owned(),
        sha256: prepared.sha256.clone(),
        size: wasm.len(),
        implements: version::implemented(prepared.exports.iter().cloned()),
        imports: prepared.imports.clone(),
        accepted: Err(format!("it exports no {WIT_PACKAGE} world")),
        smoke: None,
    };
    let Some((kind, _)) = report.implements.first().cloned() else {
        return Ok(report);
    };
    let spec = PluginConfig {
        component: Some(path.to_owned()),
        config,
        ..PluginConfig::default()
    };
    match LoadedPlugin::bind(name, kind, prepared, &spec) {
        Ok(plugin) => {
            report.accepted = Ok(());
            report.smoke = Some(smoke(&Arc::new(plugin)).map_err(|e| e.fault.to_string()));
        }
        Err(e) => report.accepted = Err(e.fault.to_string()),
    }
    Ok(report)
}

const PATIENTS: &[u8] =
    b"{\"resourceType\":\"Patient\",\"id\":\"smoke-1\",\"gender\":\"female\"}\n\
{\"resourceType\":\"Patient\",\"id\":\"smoke-2\",\"gender\":\"male\"}\n";

/// Answers every read with a minimal resource, so resolvers that check
/// membership against the store see every member as existing, and every
/// search with the two smoke Patients.
struct EveryPatientExists;

impl SnapshotReader for EveryPatientExists {
    fn read(&self, resource_type: &str, id: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(
            format!("{{\"resourceType\":\"{resource_type}\",\"id\":\"{id}\"}}").into_bytes(),
        ))
    }

    fn check(&self, _query: &str) -> Result<(), SearchError> {
        Ok(())
    }

    fn patients_matching(&self, _query: &str) -> Result<Vec<String>, SearchError> {
        Ok(vec!["smoke-1".into(), "smoke-2".into()])
    }
}

fn smoke(plugin: &Arc<LoadedPlugin>) -> Result<String, PluginError> {
    Ok(match plugin.kind() {
        PluginKind::TypeFilter => match TypeFilter::compile(plugin, "Patient", "_id=smoke-1")? {
            Ok(mut filter) => {
                let verdicts = filter.evaluate(PATIENTS)?;
                format!("Patient?_id=smoke-1 on Patients smoke-1 and smoke-2: {verdicts:?}")
            }
            Err(issues) => format!("Patient?_id=smoke-1 rejected: {}", diagnostics(&issues)),
        },
        PluginKind::GroupResolver => {
            let group = br#"{"resourceType":"Group","id":"smoke","type":"person","actual":true,
                "member":[{"entity":{"reference":"Patient/smoke-1"}},{"entity":{"reference":"Patient/smoke-2"}}]}"#;
            match GroupMembers::resolve(
                plugin,
                group,
                Instant::now(),
                Arc::new(EveryPatientExists),
            )? {
                Ok(mut members) => {
                    let mut ids = Vec::new();
                    for _ in 0..10 {
                        let page = members.next_page(10)?;
                        if page.is_empty() {
                            break;
                        }
                        ids.extend(page);
                    }
                    format!("a Group of Patients smoke-1 and smoke-2 resolved to {ids:?}")
                }
                Err(issues) => format!("the smoke Group was rejected: {}", diagnostics(&issues)),
            }
        }
        PluginKind::ExportSink => {
            let info = FileInfo {
                job_id: "smoke".into(),
                resource_type: "Patient".into(),
                part: 1,
            };
            let mut writer = SinkWriter::open(plugin, &info)?;
            let out = writer.write(PATIENTS)?;
            let finished = writer.finish()?;
            format!(
                "{} bytes in, {} bytes out, {} bytes of tail, location {:?}",
                PATIENTS.len(),
                out.len(),
                finished.tail.len(),
                finished.location
            )
        }
        PluginKind::ImportValidator => {
            let mut session = ValidationSession::begin(plugin, Some("Patient"))?;
            let verdicts = session.validate(
                b"{\"resourceType\":\"Patient\",\"id\":\"smoke-1\"}\n[\"not a resource\"]\n",
            )?;
            let summary: Vec<&str> = verdicts
                .iter()
                .map(|v| match v {
                    Verdict::Accept => "accept",
                    Verdict::AcceptWithChanges(_) => "accept-with-changes",
                    Verdict::Reject(_) => "reject",
                })
                .collect();
            format!("a valid Patient and a JSON array: {summary:?}")
        }
    })
}

fn diagnostics(issues: &[crate::fhir::outcome::Issue]) -> String {
    issues
        .iter()
        .filter_map(|i| i.diagnostics.as_deref())
        .collect::<Vec<_>>()
        .join("; ")
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "component:  {} ({} bytes, sha256 {})",
            self.path.display(),
            self.size,
            self.sha256
        )?;
        if self.implements.is_empty() {
            writeln!(f, "implements: no {WIT_PACKAGE} world")?;
        }
        for (kind, version) in &self.implements {
            writeln!(
                f,
                "implements: world {} ({WIT_PACKAGE}/{}@{version}), config section [plugins.{}]",
                kind.world(),
                kind.interface(),
                kind.config_name()
            )?;
        }
        writeln!(
            f,
            "this host:  {WIT_PACKAGE}@{WIT_VERSION}, accepts {}",
            accepts_version(&WIT_VERSION)
        )?;
        match &self.accepted {
            Ok(()) => writeln!(f, "accepted:   yes")?,
            Err(why) => writeln!(f, "accepted:   no: {why}")?,
        }
        writeln!(f, "imports:")?;
        for import in &self.imports {
            writeln!(f, "  - {import}")?;
        }
        match &self.smoke {
            Some(Ok(summary)) => writeln!(f, "smoke call: ok: {summary}"),
            Some(Err(error)) => writeln!(f, "smoke call: FAILED: {error}"),
            None => writeln!(f, "smoke call: not run"),
        }
    }
}
