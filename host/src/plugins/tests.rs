//! The runtime against real components: the embedded defaults, the example
//! in `examples/plugins/` and the hostile ones in `tests/plugins/`, all
//! built from source by `host/build.rs`.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant as Clock};

use super::*;
use crate::config::{PluginConfig, PluginLimits, PluginsConfig};
use crate::fhir::outcome::{IssueType, OperationOutcome};
use crate::fhir::resource::Resource;

fn guest(name: &str) -> PathBuf {
    Path::new(env!("GUEST_COMPONENTS_DIR")).join(format!("{name}.wasm"))
}

fn component(name: &str) -> PluginConfig {
    PluginConfig {
        component: Some(guest(name)),
        ..PluginConfig::default()
    }
}

fn runtime() -> Arc<Runtime> {
    Runtime::new(None).unwrap()
}

/// The first `n` synthea Observations as one NDJSON batch.
fn observations(n: usize) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/synthea-100/Observation.ndjson.gz");
    let file = std::fs::File::open(path).unwrap();
    let mut out = Vec::new();
    for line in BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .take(n)
    {
        out.extend_from_slice(line.unwrap().as_bytes());
        out.push(b'\n');
    }
    out
}

fn matches(plugin: &Arc<LoadedPlugin>, query: &str, batch: &[u8]) -> usize {
    let mut filter = TypeFilter::compile(plugin, "Observation", query)
        .unwrap()
        .unwrap();
    filter
        .evaluate(batch)
        .unwrap()
        .into_iter()
        .filter(|v| *v)
        .count()
}

/// Every synthea resource of `resource_type` as the store hands it to a
/// filter (normalised, version 1), `lastUpdated` one step apart per line
/// from 2024-01-01 as in the engine's own synthea tests.
fn stored(resource_type: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/synthea-100")
        .join(format!("{resource_type}.ndjson.gz"));
    let file = std::fs::File::open(path).unwrap();
    let first = crate::fhir::Instant::parse("2024-01-01T00:00:00Z").unwrap();
    let mut out = Vec::new();
    for (i, line) in BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .enumerate()
    {
        let resource = Resource::from_slice(line.unwrap().as_bytes()).unwrap();
        let id = resource.id.clone().unwrap();
        let updated = crate::fhir::Instant::from_millis(first.as_millis() + i as i64 * 997_003);
        out.extend(resource.to_stored_bytes(&id, 1, updated));
        out.push(b'\n');
    }
    out
}

/// Every query of the engine's oracle table (`plugins/fhir-search/tests/
/// cases.txt`) through the default plugin and through the native engine, on
/// the synthea type it names, in export-sized batches: the same verdicts,
/// or the same refusal.
#[test]
fn default_type_filter_agrees_with_the_native_engine_on_every_case() {
    let plugin = runtime()
        .load(PluginKind::TypeFilter, &PluginConfig::default())
        .unwrap();
    assert_eq!(plugin.wit_version(), &WIT_VERSION);
    let table =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/fhir-search/tests/cases.txt");
    let table = std::fs::read_to_string(table).unwrap();
    let mut data: HashMap<&str, Vec<u8>> = HashMap::new();
    let (mut evaluated, mut refused, mut matched_total) = (0, 0, 0);
    for line in table
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (resource_type, query) = line.split_once('?').unwrap();
        let native = fhir_search::compile(resource_type, query);
        let wasm = TypeFilter::compile(&plugin, resource_type, query).unwrap();
        match (native, wasm) {
            (Ok(native), Ok(mut wasm)) => {
                let ndjson = data
                    .entry(resource_type)
                    .or_insert_with(|| stored(resource_type));
                let mut matched = 0;
                for batch in ndjson
                    .split_inclusive(|b| *b == b'\n')
                    .collect::<Vec<_>>()
                    .chunks(1000)
                {
                    let batch = batch.concat();
                    let verdicts = native.evaluate(&batch).unwrap();
                    assert_eq!(wasm.evaluate(&batch).unwrap(), verdicts, "{line}");
                    matched += verdicts.iter().filter(|v| **v).count();
                }
                matched_total += matched;
                evaluated += 1;
            }
            (Err(native), Err(issues)) => {
                let native: Vec<(String, Option<String>)> = native
                    .into_iter()
                    .map(|r| (r.code.to_owned(), Some(r.diagnostics)))
                    .collect();
                let wasm: Vec<(String, Option<String>)> = issues
                    .into_iter()
                    .map(|i| {
                        (
                            serde_json::to_value(i.code)
                                .unwrap()
                                .to_string()
                                .replace('"', ""),
                            i.diagnostics,
                        )
                    })
                    .collect();
                assert_eq!(wasm, native, "{line}");
                refused += 1;
            }
            (Ok(_), Err(issues)) => {
                panic!("{line}: native accepts, the plugin refuses: {issues:?}")
            }
            (Err(native), Ok(_)) => panic!(
                "{line}: the plugin accepts, native refuses: {:?}",
                native.iter().map(|r| &r.diagnostics).collect::<Vec<_>>()
            ),
        }
    }
    assert!(
        evaluated >= 45,
        "{evaluated} cases evaluated, {refused} refused"
    );
    assert!(matched_total > 0, "the cases select something");
}

#[test]
fn select_keeps_the_original_bytes_of_matching_lines() {
    let plugin = runtime()
        .load(PluginKind::TypeFilter, &PluginConfig::default())
        .unwrap();
    let batch = observations(2000);
    let mut filter = TypeFilter::compile(&plugin, "Observation", "category=vital-signs")
        .unwrap()
        .unwrap();
    let mut out = Vec::new();
    let n = filter.select(&batch, &mut out).unwrap();
    assert!(n > 0 && n < 2000, "{n}");
    assert_eq!(out.iter().filter(|b| **b == b'\n').count(), n);
    assert!(
        batch
            .windows(out.len().min(200))
            .any(|w| w == &out[..out.len().min(200)]),
        "original bytes are kept"
    );
}

/// What the engine cannot evaluate, the plugin refuses with `not-supported`
/// issues naming the parameter: never ignored.
#[test]
fn unsupported_queries_are_rejected_with_issues() {
    let plugin = runtime()
        .load(PluginKind::TypeFilter, &PluginConfig::default())
        .unwrap();
    let listed = fhir_search::unsupported_definitions()
        .into_iter()
        .find(|u| !matches!(u.base, "Resource" | "DomainResource"))
        .expect("some R4 definitions cannot be evaluated");
    for (resource_type, query, name) in [
        (listed.base, format!("{}=x&_id=y", listed.code), listed.code),
        (
            "Observation",
            "_has:Observation:patient:code=1234&code=x".to_owned(),
            "_has",
        ),
    ] {
        let issues = match TypeFilter::compile(&plugin, resource_type, &query).unwrap() {
            Err(issues) => issues,
            Ok(_) => panic!("{resource_type}?{query} must be rejected"),
        };
        assert!(!issues.is_empty(), "{query}");
        assert!(
            issues.iter().all(|i| i.code == IssueType::NotSupported),
            "{query}: {issues:?}"
        );
        assert!(
            issues
                .iter()
                .any(|i| i.diagnostics.as_deref().is_some_and(|d| d.contains(name))),
            "{query}: {issues:?}"
        );
    }
}

/// The config picks the component: the same query on the same data gives
/// what each plugin documents, with no rebuild; a job keeps the plugin it
/// started with across a reload.
#[test]
fn swapping_the_type_filter_in_the_config_changes_results() {
    let batch = observations(3000);
    let registry = PluginRegistry::load(runtime(), &PluginsConfig::default()).unwrap();
    let before = registry.current();
    let mut running_job = TypeFilter::compile(&before.type_filter, "Observation", "code=glucose")
        .unwrap()
        .unwrap();
    let default_hits = running_job
        .evaluate(&batch)
        .unwrap()
        .iter()
        .filter(|v| **v)
        .count();
    assert_eq!(
        default_hits, 0,
        "the default matches codes exactly; no code is 'glucose'"
    );

    let swapped = PluginsConfig {
        type_filter: component("text_filter"),
        ..PluginsConfig::default()
    };
    assert_eq!(registry.reload(&swapped).unwrap().generation, 2);
    let after = registry.current();
    assert!(after.type_filter.name().contains("text_filter.wasm"));
    let text_hits = matches(&after.type_filter, "code=glucose", &batch);
    assert!(
        text_hits > 0,
        "the example matches 'Glucose' in code.text/display"
    );

    let still = running_job
        .evaluate(&batch)
        .unwrap()
        .iter()
        .filter(|v| **v)
        .count();
    assert_eq!(still, 0, "a job keeps the plugin it started with");
    assert!(Arc::ptr_eq(&before.type_filter, &registry.current().type_filter) == false);

    let mut config = swapped.clone();
    config
        .type_filter
        .config
        .insert("case_sensitive".into(), "true".into());
    registry.reload(&config).unwrap();
    assert_eq!(
        matches(&registry.current().type_filter, "code=glucose", &batch),
        0,
        "case-sensitive: 'Glucose' only"
    );
    assert_eq!(
        matches(&registry.current().type_filter, "code=Glucose", &batch),
        text_hits
    );
}

#[test]
fn a_failed_reload_keeps_the_running_plugins() {
    let registry = PluginRegistry::load(runtime(), &PluginsConfig::default()).unwrap();
    let broken = PluginsConfig {
        export_sink: component("no_such_plugin"),
        ..PluginsConfig::default()
    };
    let Err(e) = registry.reload(&broken) else {
        panic!("a missing component must fail the reload");
    };
    assert!(e.to_string().contains("no_such_plugin.wasm"), "{e}");
    assert_eq!(registry.current().generation, 1);
}

#[test]
fn an_incompatible_wit_version_is_refused_naming_both_versions() {
    let e = runtime()
        .load(PluginKind::TypeFilter, &component("future_version"))
        .err()
        .unwrap();
    assert!(matches!(e.fault, Fault::VersionRefused { .. }), "{e}");
    let message = e.to_string();
    assert!(
        message.contains("hearth:plugin@0.2.0")
            && message.contains(&format!("hearth:plugin@{WIT_VERSION}")),
        "{message}"
    );
    assert!(message.contains("future_version.wasm"), "{message}");
}

#[test]
fn a_component_of_another_kind_or_pin_is_refused() {
    let rt = runtime();
    let e = rt
        .load(PluginKind::GroupResolver, &component("type_filter"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("it is a type_filter plugin"), "{e}");

    let mut pinned = component("type_filter");
    pinned.sha256 = Some("0".repeat(64));
    let e = rt.load(PluginKind::TypeFilter, &pinned).err().unwrap();
    assert!(e.to_string().contains("the config pins"), "{e}");
    let sha = rt
        .load(PluginKind::TypeFilter, &component("type_filter"))
        .unwrap()
        .sha256()
        .to_owned();
    pinned.sha256 = Some(sha.to_uppercase());
    rt.load(PluginKind::TypeFilter, &pinned).unwrap();
}

#[test]
fn directories_are_granted_only_when_they_exist() {
    let rt = runtime();
    let mut spec = PluginConfig::default();
    spec.grants.dirs = vec![PathBuf::from("/no/such/dir")];
    let e = rt.load(PluginKind::ExportSink, &spec).err().unwrap();
    assert!(
        e.to_string()
            .contains("granted directory /no/such/dir does not exist"),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    spec.grants.dirs = vec![dir.path().to_owned()];
    let plugin = rt.load(PluginKind::ExportSink, &spec).unwrap();
    let info = FileInfo {
        job_id: "j".into(),
        resource_type: "Patient".into(),
        part: 1,
    };
    let mut writer = SinkWriter::open(&plugin, &info).unwrap();
    assert_eq!(writer.write(b"{}\n").unwrap(), b"{}\n");
}

#[test]
fn second_start_hits_the_cache_and_a_corrupt_entry_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let start = || Runtime::new(Some(dir.path().to_owned())).unwrap();
    let load = |rt: &Runtime| {
        rt.load(PluginKind::TypeFilter, &PluginConfig::default())
            .unwrap()
    };
    assert_eq!(load(&start()).cache_outcome(), CacheOutcome::Miss);
    let warm = load(&start());
    assert_eq!(warm.cache_outcome(), CacheOutcome::Hit);
    assert!(matches(&warm, "status=final", &observations(50)) > 0);

    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "one file, no temporaries left: {entries:?}"
    );
    let name = entries[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with(warm.sha256()) && name.ends_with(".cwasm"),
        "{name}"
    );

    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entries[0], &bytes).unwrap();
    let rebuilt = load(&start());
    assert_eq!(rebuilt.cache_outcome(), CacheOutcome::Rebuilt);
    assert!(matches(&rebuilt, "status=final", &observations(50)) > 0);
    assert_eq!(load(&start()).cache_outcome(), CacheOutcome::Hit);
}

fn hostile(limits: PluginLimits) -> Arc<LoadedPlugin> {
    let spec = PluginConfig {
        limits,
        ..component("hostile")
    };
    runtime().load(PluginKind::TypeFilter, &spec).unwrap()
}

fn tight() -> PluginLimits {
    PluginLimits {
        deadline_ms: 200,
        memory_mib: 32,
        fuel: None,
    }
}

/// Runs `fault` in a fresh filter, checks what it ends with, that the
/// faulted instance is never called again, that the job's outcome names
/// the plugin and the cause, and that a new instance still works.
fn contained(
    plugin: &Arc<LoadedPlugin>,
    fault: &str,
    expect: impl Fn(&Fault) -> bool,
    code: IssueType,
) -> PluginError {
    let batch = observations(3);
    let mut filter = TypeFilter::compile(plugin, "Observation", &format!("fault={fault}"))
        .unwrap()
        .unwrap();
    let e = filter.evaluate(&batch).unwrap_err();
    assert!(expect(&e.fault), "{fault}: {e}");
    assert!(filter.is_discarded());
    assert!(matches!(
        filter.evaluate(&batch).unwrap_err().fault,
        Fault::Discarded
    ));

    let outcome = OperationOutcome::from(&e);
    assert_eq!(outcome.issue[0].code, code);
    let diagnostics = outcome.issue[0].diagnostics.clone().unwrap();
    assert!(diagnostics.contains("hostile.wasm"), "{diagnostics}");

    let mut fresh = TypeFilter::compile(plugin, "Observation", "fault=none")
        .unwrap()
        .unwrap();
    assert_eq!(fresh.evaluate(&batch).unwrap(), vec![true; 3]);
    e
}

#[test]
fn an_infinite_loop_fails_at_the_deadline() {
    let started = Clock::now();
    let e = contained(
        &hostile(tight()),
        "loop",
        |f| {
            matches!(
                f,
                Fault::Deadline {
                    deadline_ms: 200,
                    ..
                }
            )
        },
        IssueType::Timeout,
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        e.to_string().contains("exceeded its deadline of 200 ms"),
        "{e}"
    );
}

#[test]
fn a_memory_bomb_fails_at_the_cap() {
    let e = contained(
        &hostile(tight()),
        "bomb",
        |f| matches!(f, Fault::MemoryCap { memory_mib: 32, .. }),
        IssueType::TooCostly,
    );
    assert!(e.to_string().contains("memory cap of 32 MiB"), "{e}");
}

#[test]
fn a_trap_is_a_clean_error() {
    let e = contained(
        &hostile(tight()),
        "trap",
        |f| matches!(f, Fault::Trap { .. }),
        IssueType::Exception,
    );
    assert!(e.to_string().contains("trapped"), "{e}");
}

#[test]
fn the_wrong_number_of_verdicts_is_a_contract_violation() {
    let e = contained(
        &hostile(tight()),
        "wrong-count",
        |f| matches!(f, Fault::Contract { .. }),
        IssueType::Exception,
    );
    assert!(e.to_string().contains("4 verdicts for 3 lines"), "{e}");
}

#[test]
fn malformed_issues_are_a_contract_violation() {
    let plugin = hostile(tight());
    let e = TypeFilter::compile(&plugin, "Observation", "fault=bad-issue")
        .err()
        .unwrap();
    assert!(matches!(e.fault, Fault::Contract { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("'definitely-not-an-issue-type' is not an R4 issue-type code"),
        "{e}"
    );
    assert!(
        TypeFilter::compile(&plugin, "Observation", "fault=none")
            .unwrap()
            .is_ok()
    );
}

#[test]
fn a_fuel_budget_stops_a_loop_deterministically() {
    let plugin = hostile(PluginLimits {
        deadline_ms: 60_000,
        memory_mib: 32,
        fuel: Some(5_000_000),
    });
    contained(
        &plugin,
        "loop",
        |f| {
            matches!(
                f,
                Fault::Fuel {
                    fuel: 5_000_000,
                    ..
                }
            )
        },
        IssueType::TooCostly,
    );
}

#[test]
fn other_work_goes_on_while_a_plugin_spins() {
    let plugin = hostile(PluginLimits {
        deadline_ms: 1500,
        ..tight()
    });
    let spinning = {
        let plugin = plugin.clone();
        std::thread::spawn(move || {
            let mut filter = TypeFilter::compile(&plugin, "Observation", "fault=loop")
                .unwrap()
                .unwrap();
            filter.evaluate(b"{}\n").unwrap_err()
        })
    };
    let default = runtime()
        .load(PluginKind::TypeFilter, &PluginConfig::default())
        .unwrap();
    let started = Clock::now();
    assert!(matches(&default, "status=final", &observations(500)) > 0);
    let mut other = TypeFilter::compile(&plugin, "Observation", "fault=none")
        .unwrap()
        .unwrap();
    assert_eq!(other.evaluate(b"{}\n").unwrap(), vec![true]);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "not blocked by the spinning instance"
    );
    assert!(matches!(
        spinning.join().unwrap().fault,
        Fault::Deadline { .. }
    ));
}

/// A store for the group-resolver tests: Patients and Groups by id, and the
/// answer to each query the fake search engine supports.
#[derive(Default)]
struct Fake {
    patients: Vec<&'static str>,
    groups: Vec<(&'static str, String)>,
    searches: Vec<(&'static str, Vec<&'static str>)>,
    /// How long each search takes (host time, not the plugin's).
    search_time: Duration,
}

impl Fake {
    fn patients(ids: &[&'static str]) -> Fake {
        Fake {
            patients: ids.to_vec(),
            ..Fake::default()
        }
    }
}

impl SnapshotReader for Fake {
    fn read(&self, resource_type: &str, id: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(match resource_type {
            "Patient" => self
                .patients
                .contains(&id)
                .then(|| format!(r#"{{"resourceType":"Patient","id":"{id}"}}"#).into_bytes()),
            "Group" => self
                .groups
                .iter()
                .find(|(g, _)| *g == id)
                .map(|(_, body)| body.clone().into_bytes()),
            _ => None,
        })
    }

    fn check(&self, query: &str) -> Result<(), SearchError> {
        if self.searches.iter().any(|(q, _)| *q == query) {
            return Ok(());
        }
        Err(SearchError::Refused(vec![crate::fhir::outcome::Issue {
            severity: crate::fhir::outcome::IssueSeverity::Error,
            code: IssueType::NotSupported,
            diagnostics: Some(format!("the fake engine does not know '{query}'")),
            expression: Vec::new(),
        }]))
    }

    fn patients_matching(&self, query: &str) -> Result<Vec<String>, SearchError> {
        std::thread::sleep(self.search_time);
        self.check(query)?;
        let (_, ids) = self.searches.iter().find(|(q, _)| *q == query).unwrap();
        Ok(ids.iter().map(|id| id.to_string()).collect())
    }
}

fn group_resolver() -> Arc<LoadedPlugin> {
    runtime()
        .load(PluginKind::GroupResolver, &PluginConfig::default())
        .unwrap()
}

/// Every member, paging by `page`.
fn all_members(members: &mut GroupMembers, page: u32) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let next = members.next_page(page).unwrap();
        if next.is_empty() {
            return out;
        }
        out.extend(next);
    }
}

fn resolve_at(
    plugin: &Arc<LoadedPlugin>,
    group: &str,
    at: &str,
    store: Fake,
) -> Result<GroupMembers, Vec<crate::fhir::outcome::Issue>> {
    let at = crate::fhir::Instant::parse(at).unwrap();
    GroupMembers::resolve(plugin, group.as_bytes(), at, Arc::new(store)).unwrap()
}

fn diagnostics_of(issues: &[crate::fhir::outcome::Issue]) -> String {
    issues
        .iter()
        .filter_map(|i| i.diagnostics.clone())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[test]
fn default_group_resolver_pages_active_members_at_the_snapshot() {
    let plugin = group_resolver();
    let group = r#"{"resourceType":"Group","id":"g","type":"person","actual":true,"member":[
        {"entity":{"reference":"Patient/a"}},
        {"entity":{"reference":"Patient/b"},"inactive":true},
        {"entity":{"reference":"Patient/c"},"period":{"end":"2020-01-01"}},
        {"entity":{"reference":"Patient/d"},"period":{"start":"2019-06","end":"2024-05-01T10:00:00+02:00"}},
        {"entity":{"reference":"Practitioner/e"}},
        {"entity":{"reference":"Patient/a"}},
        {"entity":{"reference":"Patient/gone"}},
        {"entity":{"reference":"Patient/f"},"period":{"start":"2023-01-01T00:00:00Z"}}
    ]}"#;
    let store = || Fake::patients(&["a", "b", "c", "d", "f"]);
    let mut members = resolve_at(&plugin, group, "2021-03-04T05:06:07Z", store()).unwrap();
    assert_eq!(members.next_page(1).unwrap(), vec!["a"]);
    assert_eq!(members.next_page(10).unwrap(), vec!["d"]);
    assert!(members.next_page(10).unwrap().is_empty());
    // The Practitioner and the missing Patient are reported, not fatal.
    let reported = members.take_reported();
    let text = diagnostics_of(&reported.issues);
    assert_eq!(reported.issues.len(), 2, "{text}");
    assert!(text.contains("'Practitioner/e' is not a reference to a Patient or a Group"));
    assert!(text.contains("Patient/gone does not exist"), "{text}");
    assert_eq!(reported.issues[1].code, IssueType::NotFound);
    assert!(members.take_reported().issues.is_empty(), "taken once");

    let mut members = resolve_at(&plugin, group, "2024-05-01T08:30:00Z", store()).unwrap();
    assert_eq!(
        all_members(&mut members, 10),
        vec!["a", "f"],
        "d's period ended at 08:00Z"
    );

    let issues = resolve_at(
        &plugin,
        r#"{"resourceType":"Patient"}"#,
        "2024-05-01",
        store(),
    )
    .err()
    .unwrap();
    assert_eq!(issues[0].code, IssueType::Invalid);
}

#[test]
fn nested_groups_are_expanded_once_with_loops_and_a_depth_cap() {
    let plugin = group_resolver();
    let group = |id: &str, members: &[(&str, bool)]| {
        let member: Vec<String> = members
            .iter()
            .map(|(r, inactive)| {
                format!(r#"{{"entity":{{"reference":"{r}"}},"inactive":{inactive}}}"#)
            })
            .collect();
        format!(
            r#"{{"resourceType":"Group","id":"{id}","type":"person","actual":true,"member":[{}]}}"#,
            member.join(",")
        )
    };
    // a contains b (which contains a again, and a missing Group) and c,
    // whose membership is inactive; b is listed twice.
    let a = group(
        "a",
        &[
            ("Patient/p1", false),
            ("Group/b", false),
            ("Group/c", true),
            ("Group/b", false),
        ],
    );
    let store = Fake {
        patients: vec!["p1", "p2", "p3"],
        groups: vec![
            (
                "b",
                group(
                    "b",
                    &[
                        ("Patient/p2", false),
                        ("Group/a", false),
                        ("Group/nowhere", false),
                        ("Patient/p1", false),
                    ],
                ),
            ),
            ("c", group("c", &[("Patient/p3", false)])),
        ],
        ..Fake::default()
    };
    let mut members = resolve_at(&plugin, &a, "2024-01-01T00:00:00Z", store).unwrap();
    assert_eq!(all_members(&mut members, 1), vec!["p1", "p2"]);
    let reported = members.take_reported();
    assert_eq!(
        reported.issues.len(),
        1,
        "{}",
        diagnostics_of(&reported.issues)
    );
    assert!(diagnostics_of(&reported.issues).contains("Group/nowhere does not exist"));

    // A chain g0 → g1 → ... → g19, each with one Patient: 16 levels below
    // the exported Group are followed, the 17th is reported.
    let mut store = Fake::default();
    let ids: Vec<&'static str> = (0..20)
        .map(|i| &*Box::leak(format!("p{i}").into_boxed_str()))
        .collect();
    store.patients = ids.clone();
    for i in 0..20 {
        let gid: &'static str = Box::leak(format!("g{i}").into_boxed_str());
        let next = format!("Group/g{}", i + 1);
        store.groups.push((
            gid,
            group(gid, &[(&format!("Patient/p{i}"), false), (&next, false)]),
        ));
    }
    let top = store.groups[0].1.clone();
    let mut members = resolve_at(&plugin, &top, "2024-01-01T00:00:00Z", store).unwrap();
    assert_eq!(all_members(&mut members, 100), ids[..17].to_vec());
    let reported = diagnostics_of(&members.take_reported().issues);
    assert!(
        reported.contains("Group/g17 is nested more than 16 levels deep"),
        "{reported}"
    );
}

#[test]
fn member_filters_narrow_members_or_select_among_all_patients() {
    let plugin = group_resolver();
    let searches = || {
        vec![
            ("Patient?gender=female", vec!["a", "c", "x", "y"]),
            (
                "Condition?code=http://snomed.info/sct|44054006",
                vec!["c", "y", "z"],
            ),
        ]
    };
    let store = || Fake {
        patients: vec!["a", "b", "c", "x", "y", "z"],
        searches: searches(),
        ..Fake::default()
    };
    let filter = |q: &str| {
        format!(
            r#"{{"url":"http://hl7.org/fhir/uv/bulkdata/StructureDefinition/member-filter",
                "valueExpression":{{"language":"application/x-fhir-query","expression":"{q}"}}}}"#
        )
    };
    // With members: the filter narrows them.
    let narrowed = format!(
        r#"{{"resourceType":"Group","id":"g","type":"person","actual":true,"name":"women",
            "modifierExtension":[{}],
            "member":[{{"entity":{{"reference":"Patient/a"}}}},{{"entity":{{"reference":"Patient/b"}}}},
                      {{"entity":{{"reference":"Patient/c"}}}}]}}"#,
        filter("Patient?gender=female")
    );
    let mut members = resolve_at(&plugin, &narrowed, "2024-01-01T00:00:00Z", store()).unwrap();
    assert_eq!(all_members(&mut members, 10), vec!["a", "c"]);
    // Without members (a person Group): every Patient all filters select.
    let criteria = format!(
        r#"{{"resourceType":"Group","id":"g","type":"person","actual":false,"name":"c",
            "modifierExtension":[{},{}]}}"#,
        filter("Condition?code=http://snomed.info/sct|44054006"),
        filter("Patient?gender=female")
    );
    let mut members = resolve_at(&plugin, &criteria, "2024-01-01T00:00:00Z", store()).unwrap();
    assert_eq!(all_members(&mut members, 1), vec!["c", "y"]);
    assert!(members.take_reported().issues.is_empty());

    // What cannot be evaluated rejects the Group, naming it.
    let refused = |group: String| {
        resolve_at(&plugin, &group, "2024-01-01T00:00:00Z", store())
            .err()
            .unwrap()
    };
    let issues = refused(format!(
        r#"{{"resourceType":"Group","id":"g","type":"person","actual":false,"modifierExtension":[{}]}}"#,
        filter("Patient?birthdate=lt1970")
    ));
    assert_eq!(issues[0].code, IssueType::NotSupported);
    let text = diagnostics_of(&issues);
    assert!(text.contains("member-filter 'Patient?birthdate=lt1970' cannot be evaluated"));
    assert!(text.contains("the fake engine does not know"), "{text}");
    let issues = refused(
        r#"{"resourceType":"Group","id":"g","type":"person","actual":false,
            "characteristic":[{"code":{"text":"diabetic"},"valueBoolean":true,"exclude":false}]}"#
            .into(),
    );
    assert_eq!(issues[0].code, IssueType::NotSupported);
    assert_eq!(issues[0].expression, vec!["Group.characteristic[0]"]);
    assert!(diagnostics_of(&issues).contains("'diabetic'"));
    let issues = refused(
        r#"{"resourceType":"Group","id":"g","type":"person","actual":true,
            "modifierExtension":[{"url":"http://example.org/other","valueBoolean":true}]}"#
            .into(),
    );
    assert!(diagnostics_of(&issues).contains("http://example.org/other is not understood"));
    let issues = refused(format!(
        r#"{{"resourceType":"Group","id":"g","type":"person","actual":false,"extension":[{}]}}"#,
        filter("Patient?gender=female")
    ));
    assert_eq!(issues[0].code, IssueType::Invalid);
    let issues = refused(format!(
        r#"{{"resourceType":"Group","id":"g","type":"practitioner","actual":false,"modifierExtension":[{}]}}"#,
        filter("Patient?gender=female")
    ));
    assert!(diagnostics_of(&issues).contains("only type 'person'"));
    // A nested Group is held to the same rules, at resolve time.
    let outer = r#"{"resourceType":"Group","id":"o","type":"person","actual":true,
        "member":[{"entity":{"reference":"Group/inner"}}]}"#;
    let mut with_inner = store();
    with_inner.groups.push((
        "inner",
        r#"{"resourceType":"Group","id":"inner","type":"person","actual":false,
            "characteristic":[{"code":{"text":"x"},"valueBoolean":true,"exclude":false}]}"#
            .into(),
    ));
    let issues = resolve_at(&plugin, outer, "2024-01-01T00:00:00Z", with_inner)
        .err()
        .unwrap();
    assert!(diagnostics_of(&issues).contains("Group/inner: Group.characteristic[0]"));
}

/// 0.1.1 added imports only (`fhir-search`, `export-issues`): a plugin built
/// against 0.1.0 loads (wasmtime resolves its `@0.1.0` imports against the
/// host's `@0.1.1` ones) and works unchanged.
#[test]
fn a_plugin_built_for_an_older_wit_of_the_track_still_runs() {
    let plugin = runtime()
        .load(PluginKind::GroupResolver, &component("old_group_resolver"))
        .unwrap();
    assert_eq!(plugin.wit_version(), &semver::Version::new(0, 1, 0));
    assert!(WIT_VERSION > *plugin.wit_version());
    assert!(
        plugin
            .imports()
            .iter()
            .any(|i| i == "hearth:plugin/fhir-read@0.1.0"),
        "{:?}",
        plugin.imports()
    );
    let group = r#"{"resourceType":"Group","id":"g","type":"person","actual":true,"member":[
        {"entity":{"reference":"Patient/a"}},{"entity":{"reference":"Patient/gone"}},
        {"entity":{"reference":"Patient/b"}}]}"#;
    let mut members = resolve_at(
        &plugin,
        group,
        "2024-01-01T00:00:00Z",
        Fake::patients(&["a", "b"]),
    )
    .unwrap();
    assert_eq!(all_members(&mut members, 10), vec!["a", "b"]);
    assert!(members.take_reported().issues.is_empty());
}

#[test]
fn time_spent_in_host_imports_is_not_the_plugins_deadline() {
    let plugin = runtime()
        .load(
            PluginKind::GroupResolver,
            &PluginConfig {
                limits: PluginLimits {
                    deadline_ms: 200,
                    ..PluginLimits::default()
                },
                ..PluginConfig::default()
            },
        )
        .unwrap();
    let store = Fake {
        patients: vec!["a"],
        searches: vec![("Patient?gender=female", vec!["a"])],
        search_time: Duration::from_millis(600),
        ..Fake::default()
    };
    let group = r#"{"resourceType":"Group","id":"g","type":"person","actual":false,
        "modifierExtension":[{"url":"http://hl7.org/fhir/uv/bulkdata/StructureDefinition/member-filter",
        "valueExpression":{"language":"application/x-fhir-query","expression":"Patient?gender=female"}}]}"#;
    let mut members = resolve_at(&plugin, group, "2024-01-01T00:00:00Z", store).unwrap();
    assert_eq!(all_members(&mut members, 10), vec!["a"]);
}

#[test]
fn default_sink_passes_bytes_through() {
    let plugin = runtime()
        .load(PluginKind::ExportSink, &PluginConfig::default())
        .unwrap();
    let info = FileInfo {
        job_id: "j".into(),
        resource_type: "Observation".into(),
        part: 1,
    };
    let batch = observations(100);
    let mut writer = SinkWriter::open(&plugin, &info).unwrap();
    assert_eq!(writer.write(&batch).unwrap(), batch);
    assert_eq!(
        writer.finish().unwrap(),
        Finished {
            tail: Vec::new(),
            location: None
        }
    );
    SinkWriter::open(&plugin, &info).unwrap().abort().unwrap();
}

#[test]
fn default_validator_checks_structure_type_and_id() {
    let plugin = runtime()
        .load(PluginKind::ImportValidator, &PluginConfig::default())
        .unwrap();
    let mut session = ValidationSession::begin(&plugin, Some("Patient")).unwrap();
    let verdicts = session
        .validate(
            b"{\"resourceType\":\"Patient\",\"id\":\"p-1\"}\n\
              {\"resourceType\":\"Patient\",\"id\":\"bad id!\"}\n\
              {\"resourceType\":\"Observation\",\"id\":\"o\"}\n\
              {\"resourceType\":\"Spaceship\"}\n\
              not json\n\
              {\"resourceType\":\"Patient\"}",
        )
        .unwrap();
    let codes: Vec<Option<IssueType>> = verdicts
        .iter()
        .map(|v| match v {
            Verdict::Accept => None,
            Verdict::Reject(issues) => Some(issues[0].code),
            Verdict::AcceptWithChanges(_) => panic!("the default never changes a resource"),
        })
        .collect();
    use IssueType::*;
    assert_eq!(
        codes,
        vec![
            None,
            Some(Value),
            Some(Invalid),
            Some(Value),
            Some(Structure),
            None
        ]
    );
    assert!(matches!(
        ValidationSession::begin(&plugin, Some("Spaceship"))
            .err()
            .unwrap()
            .fault,
        Fault::Reported { .. }
    ));
}

#[test]
fn check_reports_world_version_imports_and_smoke_call() {
    for (name, world) in [
        ("type_filter", "type-filter-plugin"),
        ("group_resolver", "group-resolver-plugin"),
        ("export_sink", "export-sink-plugin"),
        ("import_validator", "import-validator-plugin"),
        ("text_filter", "type-filter-plugin"),
    ] {
        let report = check_component(&guest(name), BTreeMap::new()).unwrap();
        let text = report.to_string();
        assert!(report.passed(), "{text}");
        assert!(
            text.contains(&format!("world {world} (hearth:plugin/")),
            "{text}"
        );
        assert!(
            text.contains(&format!("  - hearth:plugin/types@{WIT_VERSION}")),
            "{text}"
        );
    }
    let report = check_component(&guest("future_version"), BTreeMap::new()).unwrap();
    assert!(!report.passed());
    assert!(
        report
            .to_string()
            .contains("accepted:   no: it implements hearth:plugin@0.2.0"),
        "{report}"
    );
    assert!(check_component(Path::new("Cargo.toml"), BTreeMap::new()).is_err());

    // The example sinks: the de-identifying one needs its secret.
    assert!(
        check_component(&guest("gzip_sink"), BTreeMap::new())
            .unwrap()
            .passed()
    );
    let deid = check_component(&guest("deid_sink"), BTreeMap::new()).unwrap();
    assert!(
        !deid.passed() && deid.to_string().contains("`secret` is required"),
        "{deid}"
    );
    let secret = BTreeMap::from([("secret".to_owned(), "s".to_owned())]);
    let deid = check_component(&guest("deid_sink"), secret).unwrap();
    assert!(deid.passed(), "{deid}");
}

#[test]
fn named_sinks_load_with_the_set_and_fail_a_reload_by_name() {
    let sink = |name: &str, extension: Option<&str>| PluginConfig {
        extension: extension.map(str::to_owned),
        ..component(name)
    };
    let config = PluginsConfig {
        sinks: BTreeMap::from([
            ("gz".to_owned(), sink("gzip_sink", Some("ndjson.gz"))),
            ("plain".to_owned(), sink("export_sink", None)),
        ]),
        ..PluginsConfig::default()
    };
    let registry = PluginRegistry::load(runtime(), &config).unwrap();
    let set = registry.current();
    let gz = set.sink(Some("gz")).unwrap();
    assert!(gz.name().starts_with("sinks.gz ("), "{}", gz.name());
    assert_eq!(gz.file_extension(), "ndjson.gz");
    assert_eq!(set.sink(Some("plain")).unwrap().file_extension(), "ndjson");
    assert!(Arc::ptr_eq(set.sink(None).unwrap(), &set.export_sink));
    assert!(set.sink(Some("nope")).is_none());

    let broken = PluginsConfig {
        sinks: BTreeMap::from([("bad".to_owned(), component("no_such_plugin"))]),
        ..PluginsConfig::default()
    };
    let e = registry.reload(&broken).err().unwrap();
    assert!(e.to_string().contains("sinks.bad"), "{e}");
    assert_eq!(registry.current().generation, 1);
}

#[test]
fn lines_are_counted_as_the_contract_frames_them() {
    assert_eq!(ndjson_lines(b""), 0);
    assert_eq!(ndjson_lines(b"{}"), 1);
    assert_eq!(ndjson_lines(b"{}\n{}"), 2);
    assert_eq!(ndjson_lines(b"{}\n{}\n"), 2);
    // More newlines than one block's `u8` counter could hold.
    assert_eq!(ndjson_lines(&b"\n".repeat(1000)), 1000);
    assert_eq!(ndjson_lines("{}\n".repeat(1000).as_bytes()), 1000);
}
