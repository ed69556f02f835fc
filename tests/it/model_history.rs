//! The model history in the real binary: a changed model file is
//! published, the admin API and `nudge model` roll back and publish, a
//! restart serves the history's live model rather than a stale file, and
//! replicas on one Redis serve a published model within seconds.

use crate::reload::{config, decide, eventually, model_json, write_atomically, Nudge};
use crate::util::http_request;
use std::path::Path;
use std::time::{Duration, Instant};

fn api(admin: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let headers: &[&str] = if body.is_empty() {
        &[]
    } else {
        &["Content-Type: application/json"]
    };
    let (status, text) = http_request(admin, method, path, headers, body);
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// `nudge model ...` with the test's config; its stdout, or a panic with
/// its stderr.
fn nudge_model(args: &[&str], config: &Path, data: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nudge"))
        .arg("model")
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nudge model {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn versions(models: &serde_json::Value) -> Vec<(String, bool)> {
    models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["version"].as_str().unwrap().to_owned(),
                m.get("rolled_back").is_some(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollback_serves_the_previous_model_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = (dir.path().join("model.json"), dir.path().join("data"));
    std::fs::write(&model, model_json("hist-a")).unwrap();
    let config_path = dir.path().join("nudge.toml");
    std::fs::write(&config_path, config(&model, "127.0.0.1:0", 100)).unwrap();
    let nudge = Nudge::start(&config_path, &data);
    let mut client = nudge.client().await;
    assert_eq!(decide(&mut client, "s0").await.model_version, "hist-a");

    // A new model file is served and published.
    write_atomically(&model, &model_json("hist-b"));
    eventually(&mut client, "b", Duration::from_secs(10), |d| {
        d.model_version == "hist-b"
    })
    .await;
    let (status, models) = api(&nudge.admin, "GET", "/api/v1/models", "");
    assert_eq!(status, 200, "{models}");
    assert_eq!(models["serving"], "hist-b");
    assert_eq!(
        versions(&models),
        vec![("hist-b".into(), false), ("hist-a".into(), false)]
    );
    assert_eq!(models["models"][0]["published_by"], "file");
    assert_eq!(models["models"][0]["live"], true);

    // Rollback through the admin API: the next Decide is on A.
    let (status, body) = api(
        &nudge.admin,
        "POST",
        "/api/v1/models/rollback",
        r#"{"reason": "conversion dropped"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["live"]["version"], "hist-a");
    assert_eq!(body["rolled_back"]["version"], "hist-b");
    assert_eq!(body["rolled_back"]["rolled_back"]["by"], "local");
    assert_eq!(decide(&mut client, "s1").await.model_version, "hist-a");
    // The model file follows, so a restart and a retrain read A.
    assert_eq!(
        std::fs::read_to_string(&model).unwrap(),
        model_json("hist-a")
    );
    // Nothing earlier than A: refused, A still served.
    let (status, body) = api(&nudge.admin, "POST", "/api/v1/models/rollback", "{}");
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("no earlier model"));
    assert_eq!(decide(&mut client, "s2").await.model_version, "hist-a");
    // A body that is not JSON, or a field the call does not take, is the
    // caller's mistake.
    let (status, _) = api(
        &nudge.admin,
        "POST",
        "/api/v1/models/rollback",
        r#"{"to": 1}"#,
    );
    assert_eq!(status, 400);

    // After a restart the file still holds B, but the history says A.
    drop(client);
    drop(nudge);
    let mut nudge = Nudge::start(&config_path, &data);
    let mut client = nudge.client().await;
    assert_eq!(decide(&mut client, "s3").await.model_version, "hist-a");

    // `nudge model publish` from the command line reaches the running
    // service; `nudge model rollback` too; `list` shows the history.
    let c = dir.path().join("c.json");
    std::fs::write(&c, model_json("hist-c")).unwrap();
    let out = nudge_model(&["publish", c.to_str().unwrap()], &config_path, &data);
    assert!(out.contains("hist-c"), "{out}");
    eventually(&mut client, "c", Duration::from_secs(10), |d| {
        d.model_version == "hist-c"
    })
    .await;
    let out = nudge_model(&["rollback", "--reason", "drill"], &config_path, &data);
    assert!(out.contains("live: seq 1 version hist-a"), "{out}");
    eventually(&mut client, "a", Duration::from_secs(10), |d| {
        d.model_version == "hist-a"
    })
    .await;
    let list = nudge_model(&["list"], &config_path, &data);
    assert!(
        list.contains("live") && list.contains("rolled back"),
        "{list}"
    );
    let pulled = dir.path().join("pulled.json");
    nudge_model(
        &["pull", "--out", pulled.to_str().unwrap()],
        &config_path,
        &data,
    );
    assert_eq!(
        std::fs::read_to_string(&pulled).unwrap(),
        model_json("hist-a")
    );
    assert!(!nudge
        .lines_with(&["model in service changed", "hist-c"])
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_redis_serve_a_published_model_within_seconds() {
    let Some(redis) = crate::redis::redis_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = redis.settings("hist").url;
    let mut replicas = Vec::new();
    for name in ["a", "b"] {
        // Each replica has its own copy of the model file, as from an image.
        let model = dir.path().join(format!("model-{name}.json"));
        std::fs::write(&model, model_json("fleet-a")).unwrap();
        let config_path = dir.path().join(format!("nudge-{name}.toml"));
        std::fs::write(
            &config_path,
            format!(
                "{}[ledger]\nbackend = \"redis\"\n[sessions]\nbackend = \"redis\"\n\
                 [redis]\nurl = \"{url}\"\nkey_prefix = \"hist\"\n",
                config(&model, "127.0.0.1:0", 100)
            ),
        )
        .unwrap();
        let data = dir.path().join(name);
        replicas.push((Nudge::start(&config_path, &data), config_path, data));
    }
    let mut clients = Vec::new();
    for (n, _, _) in &replicas {
        let mut c = n.client().await;
        assert_eq!(decide(&mut c, "first").await.model_version, "fleet-a");
        clients.push(c);
    }

    // A retrained model published once, from the command line.
    let b = dir.path().join("b.json");
    std::fs::write(&b, model_json("fleet-b")).unwrap();
    let t0 = Instant::now();
    let (_, config_a, data_a) = &replicas[0];
    nudge_model(&["publish", b.to_str().unwrap()], config_a, data_a);
    for c in clients.iter_mut() {
        eventually(c, "pub", Duration::from_secs(60), |d| {
            d.model_version == "fleet-b"
        })
        .await;
    }
    eprintln!(
        "both replicas served the published model after {:?}",
        t0.elapsed()
    );

    // A rollback on one replica's admin API reaches the other.
    let t0 = Instant::now();
    let (status, body) = api(
        &replicas[0].0.admin,
        "POST",
        "/api/v1/models/rollback",
        r#"{"reason": "drill"}"#,
    );
    assert_eq!(status, 200, "{body}");
    for c in clients.iter_mut() {
        eventually(c, "back", Duration::from_secs(60), |d| {
            d.model_version == "fleet-a"
        })
        .await;
    }
    eprintln!(
        "both replicas served the previous model after {:?}",
        t0.elapsed()
    );

    // A replica started later from an image holding the rolled-back model
    // serves the live one.
    let late_model = dir.path().join("model-late.json");
    std::fs::write(&late_model, model_json("fleet-b")).unwrap();
    let late_config = dir.path().join("nudge-late.toml");
    let text = std::fs::read_to_string(&replicas[1].1).unwrap();
    let model_b = dir.path().join("model-b.json");
    std::fs::write(
        &late_config,
        text.replace(&format!("{model_b:?}"), &format!("{late_model:?}")),
    )
    .unwrap();
    let late = Nudge::start(&late_config, &dir.path().join("late"));
    let mut c = late.client().await;
    assert_eq!(decide(&mut c, "late").await.model_version, "fleet-a");
    let (_, models) = api(&late.admin, "GET", "/api/v1/models", "");
    assert_eq!(
        versions(&models),
        vec![("fleet-b".into(), true), ("fleet-a".into(), false)]
    );
}
