//! `nudge-train uplift`: its flags and the two runs (logs into a model
//! file, a CSV experiment into a report), printing what the library fitted.

use super::{command_line, warn_skew};
use anyhow::{bail, Context as _, Result};
use nudge::domain::model::{Input, ModelFile};
use nudge_train::data;
use nudge_train::logs::{self, MissingOutcome};
use nudge_train::output;
use nudge_train::replay;
use nudge_train::uplift::{
    fit_csv, fit_logs, randomised_rows_from_logs, read_experiment, shortfall, AlphaCv, Evaluation,
    Interactions, Judge, Learner, LogsUplift, PolicyValue, Setting, UpliftOptions, UpliftSpec,
};
use serde_json::json;
use std::path::{Path, PathBuf};

/// `nudge-train uplift` (see [`nudge_train::uplift`] and README "Learning the
/// voucher response").
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("uplift_input").required(true).args(["logs", "spec"])))]
pub struct UpliftArgs {
    /// Service logs (file or directory): fit the tiers' response and write
    /// it into a copy of --model.
    #[arg(long, requires_all = ["model", "out"], conflicts_with_all = ["spec", "data", "outcome"])]
    pub logs: Option<PathBuf>,
    /// Logs: the session model file to extend with the `uplift` section.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Logs: the model file to write (atomically). CSV: an optional JSON
    /// report with every arm's coefficients and the metrics.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Uplift spec (TOML, `nudge-uplift-spec/1`): --data is a CSV experiment.
    #[arg(long, requires = "data")]
    pub spec: Option<PathBuf>,
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// CSV: outcome column (default: the spec's first outcome).
    #[arg(long)]
    pub outcome: Option<String>,
    /// Logs: sessions without an outcome record.
    #[arg(long, value_enum, default_value_t = MissingOutcome::Skip)]
    pub missing_outcome: MissingOutcome,
    /// Learner: two-model (one logistic regression per arm) or pooled
    /// (shared coefficients, one lift per tier, --interactions). Logs: only
    /// this learner's settings are tried (default: both); CSV: default
    /// two-model.
    #[arg(long, value_enum)]
    pub learner: Option<Learner>,
    /// Logs: the pooled learner's interaction sets tried (each judged by
    /// the doubly robust value of its rule on the validation rows).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "none,share,signals,share-signals,all"
    )]
    pub interactions: Vec<Interactions>,
    /// Logs: the served lift is the estimate minus this many standard
    /// errors (written as the model file's `uplift.lower_bound_z`).
    #[arg(long, default_value_t = nudge::domain::model::DEFAULT_LOWER_BOUND_Z)]
    pub lower_bound_z: f64,
    /// Logs: the service config whose policy (margin, tiers, minimum
    /// order) values the rule. Default: the documented defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Fixed L2 penalty (alpha = 1/C of scikit-learn): per arm (two-model),
    /// or of the one pooled model. Without it, alpha is chosen by k-fold CV
    /// over --alphas on the training rows.
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Alpha grid searched by CV when --alpha is not given.
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1,1,10,100")]
    pub alphas: Vec<f64>,
    /// Folds of that CV (stratified by arm and outcome, seed --seed).
    #[arg(long, default_value_t = 5)]
    pub k: usize,
    /// Share of rows held out for the metrics (stratified by arm and label).
    #[arg(long, default_value_t = 0.3)]
    pub holdout: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Refuse to fit an arm with fewer training rows.
    #[arg(long, default_value_t = 100)]
    pub min_arm_rows: usize,
    #[arg(long, default_value_t = 1_000)]
    pub max_iterations: u64,
    #[arg(long, default_value_t = 1e-6)]
    pub gradient_tolerance: f64,
    /// Write `row,line,arm,held_out,y,p_<arm>...` for every row (CSV only;
    /// for cross-checks, e.g. with scikit-uplift).
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// "1" for a fixed alpha, "10 (5-fold CV: 0.1 0.3412, 1 0.3398, ...)"
/// for a chosen one.
fn alpha_text(alpha: f64, cv: &[AlphaCv]) -> String {
    if cv.is_empty() {
        return format!("{alpha}");
    }
    let scores: Vec<String> = cv
        .iter()
        .map(|c| format!("{} {:.4}", c.alpha, c.mean_log_loss))
        .collect();
    format!("{alpha} (CV log-loss: {})", scores.join(", "))
}

fn learner_name(l: Learner) -> &'static str {
    match l {
        Learner::TwoModel => "two-model",
        Learner::Pooled => "pooled",
    }
}

/// Runs `nudge-train uplift`.
pub fn run(a: &UpliftArgs) -> Result<()> {
    let opts = UpliftOptions {
        alpha: a.alpha.unwrap_or(1.0),
        alphas: a.alpha.is_none().then(|| a.alphas.clone()),
        cv_folds: a.k,
        holdout: a.holdout,
        seed: a.seed,
        min_arm_rows: a.min_arm_rows,
        max_iterations: a.max_iterations,
        gradient_tolerance: a.gradient_tolerance,
        learner: a.learner.unwrap_or(if a.logs.is_some() {
            Learner::Pooled
        } else {
            Learner::TwoModel
        }),
        settings: if a.logs.is_some() {
            Setting::grid(a.learner, &a.interactions)
        } else {
            Vec::new()
        },
        lower_bound_z: a.lower_bound_z,
        ..UpliftOptions::default()
    };
    match (&a.logs, &a.spec) {
        (Some(logs), _) => run_logs(a, logs, &opts),
        (None, Some(spec)) => run_csv(a, spec, &opts),
        _ => bail!("pass --logs DIR --model IN --out OUT, or --spec S --data D"),
    }
}

fn warn_not_converged(e: &Evaluation) {
    if !e.control_converged {
        eprintln!("warning: arm {:?} not converged", e.control);
    }
    for arm in e.arms.iter().filter(|a| !a.converged) {
        eprintln!(
            "warning: arm {:?} not converged (|grad|/rows {:.2e})",
            arm.arm, arm.gradient_norm_per_row
        );
    }
}

fn evaluation_text(e: &Evaluation) -> String {
    let mut s = format!(
        "control {:?}: {} training rows ({} positive)\n",
        e.control, e.control_train_rows, e.control_train_positives
    );
    s.push_str("held-out per treatment arm vs control:\n");
    s.push_str("  arm               train   held   rate  ctrl rate  mean pred. uplift  observed diff [95 % CI]        in CI  log-odds lift    Qini  uplift AUC\n");
    for a in &e.arms {
        s.push_str(&format!(
            "  {:<16} {:>6} {:>6} {:>6.4} {:>10.4} {:>18.4}  {:>8.4} [{:>7.4}, {:>7.4}]  {:>7} {:>14.3} {:>7.4} {:>11.4}\n",
            a.arm,
            a.train_rows,
            a.held_rows,
            a.held_rate,
            a.control_held_rate,
            a.mean_predicted_uplift,
            a.observed_uplift,
            a.ci95_low,
            a.ci95_high,
            if a.mean_predicted_within_ci95 { "yes" } else { "NO" },
            a.mean_predicted_log_odds_lift,
            a.qini_coefficient,
            a.uplift_auc
        ));
    }
    s.push_str("Qini curve Q(k) (random line) at deciles of the arm + control held-out rows, ranked by predicted uplift:\n");
    for a in &e.arms {
        s.push_str(&format!("  {:<16}", a.arm));
        for p in a.curve.iter().skip(1) {
            s.push_str(&format!(" {:.0}({:.0})", p.qini, p.qini_random));
        }
        s.push('\n');
    }
    s
}

/// One policy value: `DR [lo, hi]` per session in EUR.
fn value_text(v: &PolicyValue) -> String {
    format!(
        "{:>8.4} [{:>8.4}, {:>8.4}]",
        v.dr.estimate / 100.0,
        v.dr.lo / 100.0,
        v.dr.hi / 100.0
    )
}

/// The settings tried on the logs: each one's policy value on the
/// validation rows next to its Qini, the chosen one marked.
pub fn settings_text(r: &LogsUplift) -> String {
    let offers = |v: &PolicyValue| {
        v.actions
            .iter()
            .filter(|a| a.0 != 0)
            .map(|a| a.1)
            .sum::<usize>()
    };
    let mut s = format!(
        "settings  judged on {} validation sessions: doubly robust value of the rule per session, EUR [95 % CI]; served = estimate - z se\n",
        r.validation_rows
    );
    s.push_str("  setting                alpha    served DR [95 % CI]            offers  point-estimate DR              offers  Qini per tier\n");
    let refs = [
        ("no voucher", &r.references.no_voucher),
        ("base model", &r.references.base),
    ];
    for (name, v) in refs {
        s.push_str(&format!(
            "  {name:<22} {:>6}   {}  {:>6}\n",
            "",
            value_text(v),
            offers(v)
        ));
    }
    for t in &r.settings {
        let qini: Vec<String> = t.qini.iter().map(|q| format!("{q:.3}")).collect();
        s.push_str(&format!(
            "{} {:<22} {:>6}   {}  {:>6}  {}  {:>6}  {}{}\n",
            if t.chosen { "*" } else { " " },
            t.setting,
            t.alpha,
            value_text(&t.value),
            offers(&t.value),
            value_text(&t.value_point),
            offers(&t.value_point),
            qini.join("/"),
            if t.converged { "" } else { "  (not converged)" }
        ));
    }
    s
}

fn run_csv(a: &UpliftArgs, spec_path: &Path, opts: &UpliftOptions) -> Result<()> {
    if a.model.is_some() || a.config.is_some() {
        bail!("--model and --config apply to --logs only");
    }
    let data_path = a.data.as_ref().expect("clap: --spec requires --data");
    let (s, spec_bytes) = UpliftSpec::load(spec_path)?;
    let outcome = a
        .outcome
        .clone()
        .unwrap_or_else(|| s.experiment.outcomes[0].clone());
    let bytes = std::fs::read(data_path).with_context(|| {
        format!(
            "read {} (the Hillstrom file lives in ../shared/data; see its README)",
            data_path.display()
        )
    })?;
    let e = read_experiment(&bytes, &s, &outcome)
        .with_context(|| format!("{} with spec {}", data_path.display(), spec_path.display()))?;
    let r = fit_csv(&e, opts)?;
    warn_not_converged(&r.evaluation);
    let report = json!({
        "format": "nudge-uplift-report/1",
        "trainer": "nudge-train",
        "crate_version": env!("CARGO_PKG_VERSION"),
        "created_at": output::created_at(),
        "command": command_line(),
        "method": opts.learner.method(),
        "learner": opts.learner,
        "data": data_path.display().to_string(),
        "data_sha256": data::sha256_hex(&bytes),
        "spec": spec_path.display().to_string(),
        "spec_sha256": data::sha256_hex(&spec_bytes),
        "outcome": outcome,
        "rows": e.table.len(),
        "alpha": r.alpha,
        "alpha_cv": r.alpha_cv,
        "holdout": opts.holdout,
        "seed": opts.seed,
        "dropped_columns": r.dropped_columns,
        "arms": r.arms.iter().map(|(name, intercept, terms)| json!({
            "arm": name, "intercept": intercept, "terms": terms,
        })).collect::<Vec<_>>(),
        "evaluation": r.evaluation,
    });
    if let Some(path) = &a.predictions {
        let mut s = String::from("row,line,arm,held_out,y");
        for n in &e.names {
            s.push_str(&format!(",p_{}", n.replace([' ', ','], "_")));
        }
        s.push('\n');
        for i in 0..e.table.len() {
            s.push_str(&format!(
                "{i},{},{},{},{}",
                e.table.lines[i],
                e.arm[i],
                u8::from(r.held[i]),
                u8::from(e.table.y[i])
            ));
            for p in &r.p[i] {
                s.push_str(&format!(",{p}"));
            }
            s.push('\n');
        }
        output::write_atomic(path, s.as_bytes())?;
    }
    if let Some(out) = &a.out {
        let mut b = serde_json::to_vec_pretty(&report)?;
        b.push(b'\n');
        output::write_atomic(out, &b)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "uplift    {} rows of {} (sha256 {}), outcome {:?}, spec {}",
            e.table.len(),
            data_path.display(),
            data::sha256_hex(&bytes),
            outcome,
            spec_path.display()
        );
        println!(
            "fit       {} logistic regression, alpha {}, held-out {:.0} % (seed {}, stratified by arm and outcome)",
            learner_name(opts.learner),
            alpha_text(r.alpha, &r.alpha_cv),
            100.0 * opts.holdout,
            opts.seed
        );
        print!("{}", evaluation_text(&r.evaluation));
    }
    Ok(())
}

fn run_logs(a: &UpliftArgs, logs_path: &Path, opts: &UpliftOptions) -> Result<()> {
    let model_path = a.model.as_ref().expect("clap: --logs requires --model");
    let out = a.out.as_ref().expect("clap: --logs requires --out");
    if a.predictions.is_some() {
        bail!("--predictions applies to --spec only");
    }
    let mut file = ModelFile::load(model_path)?;
    file.compile()
        .with_context(|| format!("model {} does not validate", model_path.display()))?;
    if file.input != Input::Session {
        bail!(
            "model {} has input \"client\"; uplift from logs needs a session model (the arms read session features)",
            model_path.display()
        );
    }
    // Streamed: one row per randomised session is all the fit keeps.
    let (rows, streamed, sel) = randomised_rows_from_logs(logs_path, a.missing_outcome)?;
    let logs::Streamed {
        summary,
        sha256,
        decisions_span_ms: (first, last),
        ..
    } = streamed;
    eprintln!(
        "logs      {} files, {} sessions, {} decisions; randomised sessions: {} holdout, {} explored ({} explored not delivered), {} greedy sessions excluded; rows per arm {:?}",
        summary.files.len(),
        summary.sessions,
        summary.decisions,
        sel.holdout_sessions,
        sel.explored_sessions,
        sel.explored_not_delivered.values().sum::<usize>(),
        sel.greedy_sessions_excluded,
        sel.rows_per_arm
    );
    warn_skew(&summary);
    // Too few randomised sessions: say so in terms of the logs' own traffic
    // rather than fail later on one arm's count.
    let days = if last > first {
        (last - first) as f64 / 86_400_000.0
    } else {
        0.0
    };
    if let Some(msg) = shortfall(&sel, opts.min_arm_rows, opts.holdout, days) {
        bail!("{msg}");
    }
    let lineage = json!({
        "trainer": "nudge-train",
        "crate_version": env!("CARGO_PKG_VERSION"),
        "created_at": output::created_at(),
        "command": command_line(),
        "data_sha256": sha256,
        "data_source": format!("logs: {}", logs_path.display()),
        "base_model": file.version,
        "selection": sel,
        "log_replay": {
            "sessions": summary.sessions,
            "decisions": summary.decisions,
            "sessions_without_outcome": summary.sessions_without_outcome,
            "missing_outcome": a.missing_outcome,
            "skewed_decisions": summary.skewed_decisions,
        },
    });
    let settings = replay::load_settings(a.config.as_deref())?;
    let value = replay::Options::new(
        &settings.policy,
        settings.min_order_cents,
        replay::Reward::Net,
    );
    let judge = Judge {
        base: &file,
        policy: &settings.policy,
        value: &value,
    };
    let r = fit_logs(&rows, opts, &judge, lineage)?;
    warn_not_converged(&r.evaluation);
    file.uplift = Some(r.uplift.clone());
    file.compile()
        .context("the model with the learned uplift does not validate")?;
    let model_bytes = output::model_json(&file)?;
    output::write_atomic(out, &model_bytes)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "out": out.display().to_string(),
                "model": file.version,
                "selection": sel,
                "setting": r.setting,
                "settings": r.settings,
                "references": r.references,
                "evaluation": r.evaluation,
            }))?
        );
    } else {
        println!(
            "uplift    {} + learned response of {} tiers -> {}",
            file.version,
            r.amounts.len() - 1,
            out.display()
        );
        print!("{}", settings_text(&r));
        println!(
            "fit       {} on {} randomised sessions, alpha {}, held-out {:.0} % (seed {}), lower bound z {}",
            r.settings.iter().find(|t| t.chosen).map_or("", |t| t.setting.as_str()),
            rows.len(),
            alpha_text(r.alpha, &r.alpha_cv),
            100.0 * opts.holdout,
            opts.seed,
            opts.lower_bound_z
        );
        print!("{}", evaluation_text(&r.evaluation));
    }
    Ok(())
}
