//! Plugin benchmark: the default `_typeFilter` engine (`fhir-search`) on the
//! synthea-100 Observations, called natively and through its WebAssembly
//! component, in one run; what starting a plugin costs; and what the
//! example export sinks (examples/plugins: de-identification, gzip) cost per
//! resource against the default passthrough sink.
//!
//! ```text
//! cargo bench -p hearth --bench plugins
//! cargo bench -p hearth --bench plugins -- --rounds 9 --batch 2000
//! ```
//!
//! Both sides run the same code (`plugins/fhir-search`): natively in this
//! process, and compiled to wasm32-wasip2 behind the WIT contract (batch of
//! NDJSON bytes in, one verdict per line out) as the default type-filter
//! plugin. The three filters are the issue's representatives: a token OR
//! list, a date range, a quantity. Each is compiled once; every batch is one
//! call; both sides must give the same verdicts. Rounds alternate native and
//! plugin; the table reports the median round, one thread (so per core).
//! Targets: plugin ≤ 1.3× native; native ≥ 300k resources/s for the token
//! filter. Instantiation (new store + `InstancePre` instantiate) with a warm
//! cache: target < 100 µs.
//!
//! Sinks: every synthea-100 resource, one writer per type (open, every
//! batch, finish) as an export file goes through its sink, the three
//! components loaded from the same cache; median round.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant as Clock};

use hearth::config::{PluginConfig, PluginLimits};
use hearth::plugins::{
    CacheOutcome, FileInfo, LoadedPlugin, PluginKind, Runtime, SinkWriter, TypeFilter,
};

const QUERIES: [(&str, &str); 3] = [
    (
        "token OR",
        "category=social-history,vital-signs,imaging,laboratory",
    ),
    ("date range", "date=ge2016-01-01&date=lt2019-01-01"),
    ("quantity", "value-quantity=gt100"),
];

/// The issue's floor for the native token filter, per core.
const TOKEN_TARGET: f64 = 300_000.0;

fn main() {
    let mut rounds = 7;
    let mut batch_lines = 1000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .and_then(|v| v.parse().ok())
                .expect("a number after the flag")
        };
        match arg.as_str() {
            "--rounds" => rounds = value(),
            "--batch" => batch_lines = value(),
            _ => {} // cargo passes --bench
        }
    }

    let batches = observation_batches(batch_lines);
    let resources: usize = batches.iter().map(|(_, n)| n).sum();
    let bytes: usize = batches.iter().map(|(b, _)| b.len()).sum();
    println!(
        "synthea-100 Observations: {resources} resources, {:.1} MB, batches of {batch_lines} lines, {rounds} rounds, one thread\n",
        bytes as f64 / 1e6
    );

    let cache = tempfile::tempdir().expect("a temporary cache directory");
    let cold = Clock::now();
    let plugin = load(&cache, None);
    let cold = cold.elapsed();
    assert_eq!(plugin.cache_outcome(), CacheOutcome::Miss);
    let warm = Clock::now();
    let plugin = load(&cache, None);
    let warm = warm.elapsed();
    assert_eq!(plugin.cache_outcome(), CacheOutcome::Hit);
    let fueled = load(&cache, Some(u64::MAX / 4));

    println!(
        "| filter | query | matches | native resources/s | native MB/s | plugin resources/s | plugin MB/s | plugin / native | plugin with fuel / native |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut worst: f64 = 0.0;
    let mut token_rate = 0.0;
    for (label, query) in QUERIES {
        let native = fhir_search::compile("Observation", query).unwrap_or_else(|r| {
            panic!(
                "{query} is rejected natively: {:?}",
                r.iter().map(|r| &r.diagnostics).collect::<Vec<_>>()
            )
        });
        let mut wasm = TypeFilter::compile(&plugin, "Observation", query)
            .expect("no fault")
            .expect("accepted");
        let mut metered = TypeFilter::compile(&fueled, "Observation", query)
            .expect("no fault")
            .expect("accepted");
        let mut matches = 0;
        for (batch, _) in &batches {
            let verdicts = native.evaluate(batch).expect("valid NDJSON");
            assert_eq!(
                wasm.evaluate(batch).expect("no fault"),
                verdicts,
                "plugin and native disagree on {query}"
            );
            matches += verdicts.iter().filter(|v| **v).count();
        }
        let (mut n, mut p, mut f) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            n.push(time(&batches, |b| {
                native.evaluate(b).expect("valid NDJSON")
            }));
            p.push(time(&batches, |b| wasm.evaluate(b).expect("no fault")));
            f.push(time(&batches, |b| metered.evaluate(b).expect("no fault")));
        }
        let (n, p, f) = (median(n), median(p), median(f));
        let rate = |d: Duration| resources as f64 / d.as_secs_f64();
        let mbps = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
        let ratio = p.as_secs_f64() / n.as_secs_f64();
        worst = worst.max(ratio);
        if label == "token OR" {
            token_rate = rate(n);
        }
        println!(
            "| {label} | `{query}` | {matches} | {:.0}k | {:.1} | {:.0}k | {:.1} | {ratio:.2}× | {:.2}× |",
            rate(n) / 1e3,
            mbps(n),
            rate(p) / 1e3,
            mbps(p),
            f.as_secs_f64() / n.as_secs_f64()
        );
    }

    // What crossing the boundary costs with no work inside: the default
    // sink hands every batch back, so each byte is copied in and out once.
    let runtime = Runtime::new(Some(cache.path().to_owned())).expect("an engine");
    let sink = runtime
        .load(PluginKind::ExportSink, &PluginConfig::default())
        .expect("the default sink loads");
    let info = FileInfo {
        job_id: "bench".into(),
        resource_type: "Observation".into(),
        part: 1,
    };
    let mut writer = SinkWriter::open(&sink, &info).expect("opens");
    let copy = median(
        (0..rounds)
            .map(|_| time(&batches, |b| writer.write(b).expect("no fault")))
            .collect(),
    );
    println!(
        "| (boundary only: passthrough sink, batch copied in and out) | | | | | {:.0}k | {:.1} | | |",
        resources as f64 / copy.as_secs_f64() / 1e3,
        bytes as f64 / 1e6 / copy.as_secs_f64()
    );

    sinks(&runtime, rounds, batch_lines);

    let mut samples: Vec<Duration> = (0..1000)
        .map(|_| plugin.probe().expect("instantiates"))
        .collect();
    samples.sort();
    let compile_call = median(
        (0..200)
            .map(|_| {
                let started = Clock::now();
                let filter = TypeFilter::compile(&plugin, "Observation", QUERIES[0].1);
                let elapsed = started.elapsed();
                drop(filter);
                elapsed
            })
            .collect(),
    );
    println!("\n| start-up step | time |");
    println!("|---|---|");
    println!(
        "| load, cold cache (Cranelift compile + link) | {:.1} ms |",
        ms(cold)
    );
    println!(
        "| load, warm cache (deserialize + link) | {:.2} ms |",
        ms(warm)
    );
    println!(
        "| instantiate (new store + InstancePre), median of 1000 | {:.1} µs |",
        us(samples[samples.len() / 2])
    );
    println!(
        "| instantiate, 99th percentile | {:.1} µs |",
        us(samples[samples.len() * 99 / 100])
    );
    println!(
        "| instantiate + compile one query | {:.1} µs |",
        us(compile_call)
    );
    println!(
        "\nworst plugin/native ratio {worst:.2}× (target ≤ 1.3×); native token filter {:.0}k resources/s (target ≥ {:.0}k); instantiation {:.1} µs (target < 100 µs)",
        token_rate / 1e3,
        TOKEN_TARGET / 1e3,
        us(samples[samples.len() / 2])
    );
}

/// The example sinks against the passthrough, through their components.
fn sinks(runtime: &Runtime, rounds: usize, batch_lines: usize) {
    let example = |name: &str, config: &[(&str, &str)]| {
        let spec = PluginConfig {
            component: Some(Path::new(env!("GUEST_COMPONENTS_DIR")).join(format!("{name}.wasm"))),
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..PluginConfig::default()
        };
        runtime
            .load_as(PluginKind::ExportSink, name, &spec)
            .unwrap_or_else(|e| panic!("{name} loads: {e}"))
    };
    let sinks = [
        (
            "passthrough (default)",
            runtime
                .load(PluginKind::ExportSink, &PluginConfig::default())
                .expect("the default sink loads"),
        ),
        (
            "deid-sink (default rules)",
            example("deid_sink", &[("secret", "bench secret")]),
        ),
        ("gzip-sink (level 6)", example("gzip_sink", &[])),
    ];
    let types = typed_batches(batch_lines);
    let resources: usize = types.iter().flat_map(|(_, b)| b).map(|(_, n)| n).sum();
    let bytes: usize = types
        .iter()
        .flat_map(|(_, b)| b)
        .map(|(b, _)| b.len())
        .sum();
    let write_all = |sink: &Arc<LoadedPlugin>| {
        let started = Clock::now();
        let mut written = 0;
        for (rtype, batches) in &types {
            let info = FileInfo {
                job_id: "bench".into(),
                resource_type: rtype.clone(),
                part: 1,
            };
            let mut writer = SinkWriter::open(sink, &info).expect("opens");
            for (batch, _) in batches {
                written += writer.write(batch).expect("no fault").len();
            }
            written += writer.finish().expect("finishes").tail.len();
        }
        (started.elapsed(), written)
    };
    println!(
        "\nexport sinks on every synthea-100 resource: {resources} resources, {:.1} MB, batches of {batch_lines} lines, one writer per type, {rounds} rounds, one thread\n",
        bytes as f64 / 1e6
    );
    println!("| sink | µs/resource | resources/s | MB/s in | bytes out / in | × passthrough |");
    println!("|---|---|---|---|---|---|");
    let mut base = None;
    for (label, sink) in &sinks {
        let mut out = 0;
        let times: Vec<Duration> = (0..rounds)
            .map(|_| {
                let (elapsed, written) = write_all(sink);
                out = written;
                elapsed
            })
            .collect();
        let t = median(times).as_secs_f64();
        let base = *base.get_or_insert(t);
        println!(
            "| {label} | {:.2} | {:.0}k | {:.1} | {:.2} | {:.1}× |",
            t * 1e6 / resources as f64,
            resources as f64 / t / 1e3,
            bytes as f64 / 1e6 / t,
            out as f64 / bytes as f64,
            t / base
        );
    }
}

/// NDJSON batches, each with its number of lines.
type Batches = Vec<(Vec<u8>, usize)>;

/// Every synthea-100 resource, per type, in NDJSON batches of `lines` lines.
fn typed_batches(lines: usize) -> Vec<(String, Batches)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/synthea-100");
    let mut types: Vec<(String, Batches)> = Vec::new();
    for item in hearth::dataset::read_dir_resources(&dir).expect("tests/data/synthea-100") {
        let (rtype, line) = item.expect("a readable line");
        let rtype = rtype.to_string();
        if types.last().is_none_or(|(t, _)| *t != rtype) {
            types.push((rtype, vec![(Vec::new(), 0)]));
        }
        let batches = &mut types.last_mut().expect("never empty").1;
        if batches.last().is_some_and(|(_, n)| *n == lines) {
            batches.push((Vec::new(), 0));
        }
        let (batch, n) = batches.last_mut().expect("never empty");
        batch.extend_from_slice(&line);
        batch.push(b'\n');
        *n += 1;
    }
    types
}

fn load(cache: &tempfile::TempDir, fuel: Option<u64>) -> Arc<LoadedPlugin> {
    let runtime = Runtime::new(Some(cache.path().to_owned())).expect("an engine");
    let spec = PluginConfig {
        limits: PluginLimits {
            fuel,
            ..PluginLimits::default()
        },
        ..PluginConfig::default()
    };
    runtime
        .load(PluginKind::TypeFilter, &spec)
        .expect("the default type filter loads")
}

/// Every synthea-100 Observation, in NDJSON batches of `lines` lines.
fn observation_batches(lines: usize) -> Vec<(Vec<u8>, usize)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/synthea-100/Observation.ndjson.gz");
    let file = std::fs::File::open(&path).expect("tests/data/synthea-100 is in the repository");
    let mut batches = vec![(Vec::new(), 0)];
    for line in BufReader::new(flate2::read::GzDecoder::new(file)).lines() {
        let line = line.expect("readable gzip");
        if batches.last().is_some_and(|(_, n)| *n == lines) {
            batches.push((Vec::new(), 0));
        }
        let (batch, n) = batches.last_mut().expect("never empty");
        batch.extend_from_slice(line.as_bytes());
        batch.push(b'\n');
        *n += 1;
    }
    batches
}

fn time<R>(batches: &[(Vec<u8>, usize)], mut evaluate: impl FnMut(&[u8]) -> R) -> Duration {
    let started = Clock::now();
    for (batch, _) in batches {
        std::hint::black_box(evaluate(batch));
    }
    started.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
