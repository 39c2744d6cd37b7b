//! Named export sinks in the handler: `_sink` picks the sink (and its file
//! extension) for every file of the job, the job looks it up by the name it
//! stored (a reload that removed it fails the job, naming it), and a sink
//! that traps fails the job without leaving files.

use std::io::Read;
use std::path::Path;

use super::*;
use crate::config::{PluginConfig, PluginsConfig};
use crate::plugins::{PluginRegistry, Runtime};

fn sink(component: &str, extension: Option<&str>, config: &[(&str, &str)]) -> PluginConfig {
    PluginConfig {
        component: Some(Path::new(env!("GUEST_COMPONENTS_DIR")).join(format!("{component}.wasm"))),
        extension: extension.map(str::to_owned),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..PluginConfig::default()
    }
}

fn with_sinks(env: &Env, sinks: &[(&str, PluginConfig)]) -> (ExportHandler, Arc<PluginRegistry>) {
    let config = PluginsConfig {
        sinks: sinks
            .iter()
            .map(|(name, spec)| (name.to_string(), spec.clone()))
            .collect(),
        ..PluginsConfig::default()
    };
    let registry = Arc::new(PluginRegistry::load(Runtime::new(None).unwrap(), &config).unwrap());
    (env.handler_with(registry.clone()), registry)
}

fn sunk(env: &Env, name: &str) -> JobRecord {
    let mut r = request(ExportLevel::System, env.now());
    r.types = vec![rt("Patient"), rt("Observation")];
    r.sink = Some(name.to_owned());
    env.job(&r)
}

#[test]
fn a_named_sink_writes_every_file_of_its_export() {
    let env = Env::new();
    fixture(&env);
    let (handler, _) = with_sinks(&env, &[("gz", sink("gzip_sink", Some("ndjson.gz"), &[]))]);
    let job = sunk(&env, "gz");
    let value = handler.run(&job, &env.context(&job)).unwrap();
    let result: ExportResult = serde_json::from_value(value.clone()).unwrap();
    let job = JobRecord {
        result: value,
        ..job
    };
    let mut counts = BTreeMap::new();
    for f in &result.output {
        assert!(f.file.ends_with(".ndjson.gz"), "{}", f.file);
        let Some(Download::File(path)) = handler.download(&job, &f.file).unwrap() else {
            panic!("{} is not downloadable", f.file);
        };
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text.lines().count() as u64, f.count, "{}", f.file);
        *counts.entry(f.rtype.as_str()).or_insert(0) += f.count;
    }
    assert_eq!(counts, BTreeMap::from([("Observation", 4), ("Patient", 3)]));
}

#[test]
fn a_sink_removed_by_a_reload_fails_the_job_naming_it() {
    let env = Env::new();
    fixture(&env);
    let (handler, registry) = with_sinks(&env, &[("gz", sink("gzip_sink", None, &[]))]);
    let job = sunk(&env, "gz");
    registry.reload(&PluginsConfig::default()).unwrap();
    let f = handler.run(&job, &env.context(&job)).unwrap_err();
    assert_failed(&f, 500, &["'gz'", "no longer configured"]);
}

#[test]
fn a_trapping_sink_fails_the_job_and_leaves_no_files() {
    let env = Env::new();
    fixture(&env);
    let trap = sink("trapping_sink", None, &[("trap_type", "Patient")]);
    let (handler, _) = with_sinks(&env, &[("trap", trap)]);
    let job = sunk(&env, "trap");
    let f = handler.run(&job, &env.context(&job)).unwrap_err();
    assert_failed(&f, 500, &["sinks.trap", "trapped"]);
    assert!(env.folder_files(&job).is_empty());
}

/// At Group level a unit ends with a file open per type and commits them
/// together: a sink trapping on one type while the others are being
/// committed still fails the job and leaves nothing behind.
#[test]
fn a_sink_trapping_while_a_group_unit_commits_fails_the_job_and_leaves_no_files() {
    let env = Env::new();
    fixture(&env);
    let trap = sink("trapping_sink", None, &[("trap_type", "Observation")]);
    let (handler, _) = with_sinks(&env, &[("trap", trap)]);
    let mut r = request(ExportLevel::Group { id: id("g") }, env.now());
    r.sink = Some("trap".to_owned());
    let job = env.job(&r);
    let f = handler.run(&job, &env.context(&job)).unwrap_err();
    assert_failed(&f, 500, &["sinks.trap", "trapped"]);
    assert!(env.folder_files(&job).is_empty());
}
