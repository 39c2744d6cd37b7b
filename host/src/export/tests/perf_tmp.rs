use super::*;
use serde_json::json;
use std::time::Instant as Clock;

#[test]
#[ignore]
fn perf_group_vs_system() {
    let root = std::path::Path::new("/tmp/hearth-perf");
    let fresh = !root.exists();
    std::fs::create_dir_all(root).unwrap();
    let store = Arc::new(SledStore::open(&root.join("db")).unwrap());
    let config = ExportConfig::for_data_dir(root);
    let destination = Arc::new(LocalDestination::new(config.output_dir.clone()));
    let mut env = Env {
        _dir: TempDir::new().unwrap(),
        store,
        destination,
        config,
    };
    if fresh {
        let src =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/synthea-100");
        let data = tempfile::tempdir().unwrap();
        crate::dataset::scale(&src, 10, data.path()).unwrap();
        crate::dataset::load(&*env.store, data.path(), 1000).unwrap();
        let mut ids: Vec<String> = crate::dataset::read_dir_resources(data.path())
            .unwrap()
            .filter_map(|i| {
                let (t, l) = i.unwrap();
                if t.as_str() != "Patient" {
                    return None;
                }
                let v: serde_json::Value = serde_json::from_slice(&l).unwrap();
                Some(v["id"].as_str().unwrap().to_owned())
            })
            .collect();
        ids.sort();
        let member: Vec<_> = ids
            .iter()
            .step_by(10)
            .map(|i| json!({"entity":{"reference":format!("Patient/{i}")}}))
            .collect();
        env.put(&[
            json!({"resourceType":"Group","id":"t","type":"person","actual":true,"member":member}),
        ]);
        return;
    }
    env.config.parallelism = 2;
    let run = |r: ExportRequest, what: &str| {
        let job = env.job(&r);
        let ctx = env.context(&job);
        let t = Clock::now();
        env.handler().run(&job, &ctx).unwrap();
        eprintln!("{what} in {:?}", t.elapsed());
    };
    let what = std::env::var("PERF_WHAT").unwrap_or_default();
    if what == "reads" {
        let g = env.store.read(rt("Group"), &id("t")).unwrap().unwrap();
        let gv: serde_json::Value = serde_json::from_slice(&g.body).unwrap();
        let members: Vec<ResourceId> = gv["member"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                id(m["entity"]["reference"]
                    .as_str()
                    .unwrap()
                    .strip_prefix("Patient/")
                    .unwrap())
            })
            .collect();
        let now = env.now();
        let mut keys = Vec::new();
        let t = Clock::now();
        for p in &members {
            for v in env.store.compartment(p, now).unwrap() {
                let v = v.unwrap();
                keys.push((v.rtype, v.id, v.meta.version));
            }
        }
        eprintln!("compartment reads {} in {:?}", keys.len(), t.elapsed());
        for round in 0..3 {
            run(
                request(ExportLevel::System, env.now()),
                "system (flush cache)",
            );
            let t = Clock::now();
            for (r, i, v) in &keys {
                env.store.vread(*r, i, *v).unwrap();
            }
            eprintln!("{round} unsorted vreads in {:?}", t.elapsed());
            run(
                request(ExportLevel::System, env.now()),
                "system (flush cache)",
            );
            let mut sorted = keys.clone();
            sorted.sort_by(|a, b| (a.0.as_str(), a.1.as_str()).cmp(&(b.0.as_str(), b.1.as_str())));
            let t = Clock::now();
            for (r, i, v) in &sorted {
                env.store.vread(*r, i, *v).unwrap();
            }
            eprintln!("{round} sorted vreads in {:?}", t.elapsed());
        }
        return;
    }
    for _ in 0..5 {
        if what != "group" {
            run(request(ExportLevel::System, env.now()), "system");
        }
        if what != "system" {
            run(
                request(ExportLevel::Group { id: id("t") }, env.now()),
                "group",
            );
        }
    }
}
