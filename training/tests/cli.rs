//! The `nudge-train` binary end to end on small inputs: CSV fit with a
//! report, evaluate/predict, clear errors with nothing written, and the
//! log path (generate --format log -> fit --logs -> evaluate).

use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nudge-train"))
}

const SPEC: &str = r#"
format = "nudge-spec/1"
[label]
column = "bought"
positive = ["TRUE", "1"]
negative = ["FALSE", "0"]
[columns.pages]
kind = "numeric"
transforms = ["log1p", "standardise"]
[columns.month]
kind = "categorical"
[columns.weekend]
kind = "boolean"
[columns.note]
kind = "ignore"
"#;

fn toy_csv(n: usize) -> String {
    let mut s = String::from("pages,month,weekend,note,bought\n");
    for i in 0..n {
        let u = ((i as f64) * 0.618_033_988_75).fract();
        let v = ((i as f64) * 0.414_213_562_37).fract();
        let pages = (u * 60.0).round();
        let month = ["Jan", "Feb", "Mar"][i % 3];
        let weekend = i % 4 == 0;
        let z = 0.08 * pages - 2.5 + if month == "Mar" { 0.8 } else { 0.0 };
        let y = v < 1.0 / (1.0 + (-z).exp());
        s.push_str(&format!(
            "{pages},{month},{},x,{}\n",
            if weekend { "TRUE" } else { "FALSE" },
            if y { "TRUE" } else { "FALSE" }
        ));
    }
    s
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let o = cmd.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn csv_fit_writes_model_and_report_with_four_plots_then_evaluate_and_predict_agree() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("spec.toml"), SPEC).unwrap();
    std::fs::write(d.join("data.csv"), toy_csv(500)).unwrap();
    let (ok, out, err) = run(bin()
        .args([
            "fit",
            "--spec",
            "spec.toml",
            "--data",
            "data.csv",
            "--out",
            "m.json",
            "--report",
            "rep",
            "--k",
            "3",
            "--alphas",
            "1,10",
            "--min-segment-rows",
            "10",
        ])
        .current_dir(d));
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("chosen"), "{out}");
    let html = std::fs::read_to_string(d.join("rep/index.html")).unwrap();
    for id in ["roc", "calibration", "histogram", "coefficients"] {
        assert!(
            html.contains(&format!("<figure id=\"{id}\"><svg")),
            "plot {id} missing"
        );
    }
    assert_eq!(html.matches("<svg").count(), 4);
    assert!(html.contains("id=\"coefficient-table\""));
    assert!(html.contains("month=Mar"));
    assert!(
        !html.contains("<script") && !html.contains("src=\""),
        "self-contained"
    );
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("rep/metrics.json")).unwrap()).unwrap();
    assert!(metrics["holdout"]["roc_auc"].as_f64().unwrap() > 0.6);
    assert!(metrics["holdout"]["pr_auc"].is_number());
    assert_eq!(
        metrics["holdout"]["calibration"].as_array().unwrap().len(),
        10
    );
    assert_eq!(files(&d.join("rep")), ["index.html", "metrics.json"]);

    // Lineage.
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("m.json")).unwrap()).unwrap();
    assert_eq!(model["input"], "client");
    let t = &model["training"];
    for key in [
        "data_sha256",
        "spec_sha256",
        "alpha",
        "alphas",
        "seed",
        "command",
        "crate_version",
        "created_at",
        "metrics",
    ] {
        assert!(!t[key].is_null(), "training.{key}");
    }
    assert!(t["command"].as_str().unwrap().contains("fit"));
    // The boolean is a numeric term, the category a one-hot term.
    let terms = model["terms"].as_array().unwrap();
    assert!(terms
        .iter()
        .any(|t| t["feature"] == "weekend" && t["category"].is_null()));
    assert!(terms
        .iter()
        .any(|t| t["feature"] == "month" && t["category"] == "Feb"));

    // evaluate + predict on the whole file.
    let (ok, out, err) = run(bin()
        .args([
            "evaluate",
            "--model",
            "m.json",
            "--data",
            "data.csv",
            "--spec",
            "spec.toml",
            "--json",
            "--report",
            "eval",
        ])
        .current_dir(d));
    assert!(ok, "{err}");
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["evaluation"]["rows"], 500);
    assert_eq!(
        std::fs::read_to_string(d.join("eval/index.html"))
            .unwrap()
            .matches("<svg")
            .count(),
        4
    );
    let (ok, _, err) = run(bin()
        .args([
            "predict",
            "--model",
            "m.json",
            "--data",
            "data.csv",
            "--spec",
            "spec.toml",
            "--out",
            "p.csv",
        ])
        .current_dir(d));
    assert!(ok, "{err}");
    let preds = std::fs::read_to_string(d.join("p.csv")).unwrap();
    let lines: Vec<&str> = preds.lines().collect();
    assert_eq!(lines[0], "row,probability");
    assert_eq!(lines.len(), 501);
    // The same number through the service's loader and scorer.
    let m = nudge::domain::model::Model::load(&d.join("m.json")).unwrap();
    let p0: f64 = lines[1].split(',').nth(1).unwrap().parse().unwrap();
    let mut c = nudge::domain::model::ClientFeatures::default();
    let first = toy_csv(1);
    let cells: Vec<&str> = first.lines().nth(1).unwrap().split(',').collect();
    c.numeric.insert("pages".into(), cells[0].parse().unwrap());
    c.categorical.insert("month".into(), cells[1].into());
    c.numeric
        .insert("weekend".into(), if cells[2] == "TRUE" { 1.0 } else { 0.0 });
    let s = m
        .score(
            &nudge::domain::features::Features([0.0; nudge::domain::features::N_FEATURES]),
            &c,
        )
        .unwrap();
    assert!((s.probability - p0).abs() < 1e-12);

    // folds: every row once, 3 folds.
    let (ok, _, err) = run(bin()
        .args([
            "folds",
            "--spec",
            "spec.toml",
            "--data",
            "data.csv",
            "--k",
            "3",
            "--out",
            "folds.csv",
        ])
        .current_dir(d));
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read_to_string(d.join("folds.csv"))
            .unwrap()
            .lines()
            .count(),
        501
    );
}

#[test]
fn bad_inputs_fail_clearly_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("spec.toml"), SPEC).unwrap();
    let good = toy_csv(60);
    let mut cases: Vec<(&str, String, String)> = Vec::new();
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    lines[5] = "3,Jan,TRUE,x".into();
    cases.push(("wrong column count", lines.join("\n"), "line 6".into()));
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    lines[7] = "many,Jan,TRUE,x,FALSE".into();
    cases.push((
        "non-numeric",
        lines.join("\n"),
        "line 8, column \"pages\"".into(),
    ));
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    lines[9] = "NaN,Jan,TRUE,x,FALSE".into();
    cases.push(("NaN", lines.join("\n"), "line 10, column \"pages\"".into()));
    let one_class = good.replace(",TRUE\n", ",FALSE\n");
    cases.push(("single class", one_class, "single class".into()));
    let renamed = good.replacen("pages,", "page_count,", 1);
    cases.push((
        "unknown spec column",
        renamed,
        "spec column \"pages\"".into(),
    ));
    for (what, csv, needle) in cases {
        std::fs::write(d.join("bad.csv"), csv).unwrap();
        let (ok, out, err) = run(bin()
            .args([
                "fit",
                "--spec",
                "spec.toml",
                "--data",
                "bad.csv",
                "--out",
                "out/m.json",
                "--report",
                "out/rep",
                "--k",
                "3",
                "--alphas",
                "1",
            ])
            .current_dir(d));
        assert!(!ok, "{what}: {out}");
        assert!(err.contains(&needle), "{what}: {err}");
        assert!(!d.join("out").exists(), "{what}: something was written");
    }
    // A spec with an unknown key.
    std::fs::write(
        d.join("bad.toml"),
        SPEC.replace("kind = \"ignore\"", "kind = \"ignore\"\ncolour = 1"),
    )
    .unwrap();
    std::fs::write(d.join("data.csv"), &good).unwrap();
    let (ok, _, err) = run(bin()
        .args([
            "fit",
            "--spec",
            "bad.toml",
            "--data",
            "data.csv",
            "--out",
            "out/m.json",
        ])
        .current_dir(d));
    assert!(!ok && err.contains("colour"), "{err}");
    assert!(!d.join("out").exists());
    // An existing model is left intact when a later fit fails.
    std::fs::write(d.join("keep.json"), "old").unwrap();
    std::fs::write(d.join("bad.csv"), good.replace("FALSE\n", "maybe\n")).unwrap();
    let (ok, _, _) = run(bin()
        .args([
            "fit",
            "--spec",
            "spec.toml",
            "--data",
            "bad.csv",
            "--out",
            "keep.json",
        ])
        .current_dir(d));
    assert!(!ok);
    assert_eq!(std::fs::read_to_string(d.join("keep.json")).unwrap(), "old");
    assert_eq!(
        files(d).iter().filter(|f| f.starts_with('.')).count(),
        0,
        "no temp files"
    );
}

#[test]
fn generate_takes_a_world_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gen = |world: &str, out: &str| {
        run(bin()
            .args([
                "generate",
                "--sessions",
                "40",
                "--seed",
                "5",
                "--world",
                world,
                "--out",
                out,
            ])
            .current_dir(d))
    };
    let (ok, _, err) = gen("invisible", "inv.jsonl");
    assert!(ok, "{err}");
    assert!(err.contains("world invisible"), "{err}");
    let (ok, _, err) = gen("calibrated", "cal.jsonl");
    assert!(ok, "{err}");
    let read = |f: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(d.join(f))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (inv, cal) = (read("inv.jsonl"), read("cal.jsonl"));
    assert_eq!(inv.len(), 40);
    for (i, c) in inv.iter().zip(&cal) {
        assert_eq!(i["truth"]["world"], "invisible");
        assert_eq!(c["truth"]["world"], "calibrated");
        // The same visitors and walks; only the response differs.
        assert_eq!(i["events"], c["events"]);
    }
    let (ok, _, err) = gen("lavish", "x.jsonl");
    assert!(!ok);
    for name in ["calibrated", "faint", "invisible", "generous"] {
        assert!(err.contains(name), "{err}");
    }
}

#[test]
fn logs_generate_fit_evaluate_predict_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("logs")).unwrap();
    let (ok, _, err) = run(bin()
        .args([
            "generate",
            "--sessions",
            "1500",
            "--seed",
            "3",
            "--format",
            "log",
            "--out",
            "logs/decisions-000001.jsonl",
        ])
        .current_dir(d));
    assert!(ok, "{err}");
    // A second rotated file.
    let (ok, _, err) = run(bin()
        .args([
            "generate",
            "--sessions",
            "500",
            "--seed",
            "4",
            "--format",
            "log",
            "--out",
            "logs/decisions-000002.jsonl",
        ])
        .current_dir(d));
    assert!(ok, "{err}");
    let (ok, out, err) = run(bin()
        .args([
            "fit", "--logs", "logs", "--out", "m.json", "--json", "--report", "rep",
        ])
        .current_dir(d));
    assert!(ok, "{out}\n{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        r["log_replay"]["skewed_decisions"], 0,
        "{}",
        r["log_replay"]
    );
    assert_eq!(r["log_replay"]["files"].as_array().unwrap().len(), 2);
    assert!(
        r["holdout"]["roc_auc"].as_f64().unwrap() > 0.7,
        "{}",
        r["holdout"]
    );
    assert_eq!(
        std::fs::read_to_string(d.join("rep/index.html"))
            .unwrap()
            .matches("<svg")
            .count(),
        4
    );
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("m.json")).unwrap()).unwrap();
    assert_eq!(model["training"]["log_replay"]["skewed_decisions"], 0);
    let (ok, out, err) = run(bin()
        .args(["evaluate", "--model", "m.json", "--data", "logs", "--json"])
        .current_dir(d));
    assert!(ok, "{err}");
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(e["evaluation"]["roc_auc"].as_f64().unwrap() > 0.7);
    let (ok, _, err) = run(bin()
        .args([
            "predict",
            "--model",
            "m.json",
            "--data",
            "logs/decisions-000002.jsonl",
            "--out",
            "p.csv",
        ])
        .current_dir(d));
    assert!(ok, "{err}");
    let p = std::fs::read_to_string(d.join("p.csv")).unwrap();
    assert!(p.starts_with("row,session_id,at_ms,probability\n"));
    // A client model needs --spec, and says so.
    let (ok, _, err) = run(bin()
        .args([
            "evaluate",
            "--model",
            "../../models/none.json",
            "--data",
            "logs",
        ])
        .current_dir(d));
    assert!(!ok && !err.is_empty());
}

#[test]
fn a_csv_without_spec_says_so_for_fit_and_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("data.csv"), toy_csv(20)).unwrap();
    let (ok, _, err) = run(bin()
        .args(["fit", "--data"])
        .arg(d.join("data.csv"))
        .arg("--out")
        .arg(d.join("m.json")));
    assert!(!ok);
    assert!(err.contains("CSV") && err.contains("--spec"), "{err}");
    assert!(err.contains("pages,month,weekend"), "{err}");
    assert!(!err.contains("expected value"), "{err}");
    let (ok, _, err) = run(bin()
        .args(["evaluate", "--model"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default.json"))
        .arg("--data")
        .arg(d.join("data.csv")));
    assert!(!ok);
    assert!(err.contains("CSV") && err.contains("--spec"), "{err}");
    assert_eq!(files(d), vec!["data.csv".to_string()], "nothing written");
}
