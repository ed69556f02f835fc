//! The cold start: no greedy voucher on a prior, exploration at the cold
//! share paid from the learning budget, and the learning budget kept to the
//! cent under concurrent Decides.

use crate::decide::hesitant_session;
use crate::util::*;
use nudge::config::RawConfig;
use nudge::decision_log::{DecisionRecord, LogRecord};
use nudge::domain::experiment::Experiment;
use nudge::domain::model::{Model, ModelFile, UpliftArm, UpliftFile};
use nudge::grpc::pb::{self, Reason};
use std::path::Path;

/// Every decision record the server logged.
fn logged(s: &TestServer) -> Vec<DecisionRecord> {
    nudge::decision_log::reader::read_dir(&s.data.path().join("log"))
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            LogRecord::Decision(d) => Some(d),
            _ => None,
        })
        .collect()
}

async fn budget(s: &TestServer) -> pb::BudgetResponse {
    s.client()
        .await
        .budget(pb::BudgetRequest::default())
        .await
        .unwrap()
        .into_inner()
}

/// The shipped model with a learned response for the 10 EUR tier only: a
/// constant log-odds lift of 1.2 (pays for hesitant visitors at 150 EUR).
fn model_with_learned_10_eur() -> Model {
    let mut f = ModelFile::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.json"))
        .unwrap();
    let arm = |amount_cents, intercept| UpliftArm {
        amount_cents,
        intercept,
        terms: vec![],
        covariance: None,
    };
    f.uplift = Some(UpliftFile {
        arms: vec![arm(0, -1.0), arm(1_000, 0.2)],
        lower_bound_z: None,
        training: serde_json::Value::Null,
    });
    f.compile().unwrap()
}

#[tokio::test]
async fn default_config_gives_no_greedy_voucher_on_the_shipped_priors() {
    let settings = RawConfig::default().validate().unwrap();
    assert!(!settings.policy.offer_on_priors);
    let mut s = start(settings, default_model()).await;
    let mut c = s.client().await;
    let (mut not_learned, mut explored_offers) = (0, 0);
    for i in 0..60 {
        let r = c
            .decide(decide(&format!("a{i}"), hesitant_session(15_000)))
            .await
            .unwrap()
            .into_inner();
        if r.holdout {
            assert_eq!(reason(&r), Reason::Holdout);
            continue;
        }
        if r.explored {
            explored_offers += usize::from(r.offer.is_some());
            continue;
        }
        // What the priors would have offered (as before the cold start)
        // is now "not learned": no voucher, no greedy tier, the prior's
        // expected value for the record.
        assert_eq!(reason(&r), Reason::ResponseNotLearned, "{r:?}");
        assert!(r.offer.is_none());
        assert_eq!(r.best_tier_cents, 0);
        assert!(r.expected_net_value_cents > 0, "{r:?}");
        not_learned += 1;
    }
    assert!(not_learned >= 20, "{not_learned}");
    // Whatever was offered was exploration, on the learning budget.
    let b = budget(&s).await;
    assert_eq!(b.reserved_cents, b.learning_reserved_cents);
    assert_eq!(b.learning_cap_cents, 10_000);
    s.shutdown().await;
    let share = 0.30;
    let greedy_none = Experiment::propensity(0, 0, 3, share);
    for d in logged(&s) {
        if d.reason == "response_not_learned" {
            assert!(d.eligible && !d.explored && !d.holdout && !d.learning);
            assert_eq!((d.policy_tier_cents, d.action_cents), (0, 0));
            assert!(
                (d.propensity - greedy_none).abs() < 1e-12,
                "{}",
                d.propensity
            );
        }
        if d.reason == "offered" {
            assert!(d.explored && d.learning);
            assert!((d.propensity - share / 4.0).abs() < 1e-12);
        }
    }
    println!("{not_learned} not learned, {explored_offers} explored offers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exploration_offers_are_logged_and_never_exceed_the_learning_cap() {
    let mut s = start(
        cold_settings("[experiment]\ncold_explore_share = 1.0\n[budget]\ndaily_cap_cents = 100000\nlearning_share = 0.05\n"),
        fixture_model("flat_hesitant.json"),
    )
    .await;
    let channel = s.channel().await;
    // One answered call first: until the client has the server's HTTP/2
    // settings it assumes no stream limit, and 200 streams opened at once
    // on a fresh connection could meet REFUSED_STREAM beyond the server's
    // limit. A Track never spends, so the budget under test is untouched.
    pb::offers_client::OffersClient::new(channel.clone())
        .track(pb::TrackRequest {
            session_id: "settings-exchanged".into(),
            ..Default::default()
        })
        .await
        .expect("the first call is answered");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let mut c = pb::offers_client::OffersClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            c.decide(decide(&format!("b{i}"), hesitant_session(20_000)))
                .await
                .unwrap()
                .into_inner()
        }));
    }
    let mut offered = 0;
    let mut refused = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert!(r.explored, "cold share 1: every eligible session explored");
        match reason(&r) {
            Reason::Offered => offered += r.offer.unwrap().amount_cents,
            Reason::LearningBudgetExhausted => refused += 1,
            Reason::ExplorationNoVoucher => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(
        offered <= 5_000,
        "{offered} cents over the 5,000 learning cap"
    );
    assert!(refused > 0, "the learning cap binds");
    let b = budget(&s).await;
    assert_eq!(b.learning_cap_cents, 5_000);
    assert_eq!(b.learning_reserved_cents, offered);
    assert_eq!(b.reserved_cents, offered, "all of it learning money");
    assert_eq!(b.remaining_cents, 100_000 - offered);
    assert_eq!(b.learning_remaining_cents, 5_000 - offered);
    s.shutdown().await;
    let log = logged(&s);
    assert_eq!(log.len(), 200);
    for d in &log {
        assert!(d.explored && d.eligible && !d.holdout);
        match d.reason.as_str() {
            "offered" => {
                assert!(d.learning && d.action_cents > 0);
                // Share 1, greedy none: every action 1/4.
                assert!((d.propensity - 0.25).abs() < 1e-12);
            }
            "exploration_no_voucher" => assert!((d.propensity - 0.25).abs() < 1e-12),
            "learning_budget_exhausted" => {
                assert!(!d.learning && d.action_cents == 0);
                // "None" given the budget: its own quarter plus the quarter
                // of every tier the learning budget refuses (at least one).
                let k = (d.propensity / 0.25).round();
                assert!((2.0..=4.0).contains(&k), "{}", d.propensity);
                assert!((d.propensity - 0.25 * k).abs() < 1e-12);
            }
            other => panic!("{other}"),
        }
    }
}

#[tokio::test]
async fn an_exhausted_learning_budget_refuses_exploration_and_leaves_the_main_budget() {
    let mut s = start(
        cold_settings("[experiment]\ncold_explore_share = 1.0\n[budget]\ncampaigns = [{ id = \"default\", daily_cap_cents = 50000, learning_cap_cents = 1000 }]\n"),
        fixture_model("flat_hesitant.json"),
    )
    .await;
    let mut c = s.client().await;
    let mut spent = 0;
    let mut expected = Vec::new();
    for i in 0..40 {
        let r = c
            .decide(decide(&format!("c{i}"), hesitant_session(20_000)))
            .await
            .unwrap()
            .into_inner();
        // Sequential: the learning remainder before this decision is known.
        let remaining = 1_000 - spent;
        let refused_tiers = [500, 1_000, 2_000]
            .iter()
            .filter(|a| **a > remaining)
            .count();
        match reason(&r) {
            Reason::Offered => {
                spent += r.offer.as_ref().unwrap().amount_cents;
                expected.push(0.25);
            }
            Reason::LearningBudgetExhausted => {
                assert!(r.offer.is_none());
                expected.push(Experiment::propensity_of_none_refused(
                    true,
                    refused_tiers,
                    3,
                    1.0,
                ));
            }
            Reason::ExplorationNoVoucher => expected.push(0.25),
            other => panic!("{other:?}"),
        }
    }
    assert!(spent <= 1_000);
    assert!(
        expected.iter().any(|p| *p > 0.25),
        "the learning budget ran out"
    );
    let b = budget(&s).await;
    assert_eq!(
        (
            b.reserved_cents,
            b.learning_reserved_cents,
            b.remaining_cents
        ),
        (spent, spent, 50_000 - spent),
        "no main money for exploration"
    );
    s.shutdown().await;
    let log = logged(&s);
    assert_eq!(log.len(), expected.len());
    for (d, p) in log.iter().zip(&expected) {
        assert!((d.propensity - p).abs() < 1e-12, "{} vs {p}", d.propensity);
    }
}

#[tokio::test]
async fn offering_on_priors_brings_the_old_behaviour_back() {
    let mut s = start(
        cold_settings("[policy]\noffer_on_priors = true\n[experiment]\ncold_explore_share = 0.0\n"),
        fixture_model("flat_hesitant.json"),
    )
    .await;
    let r = s
        .client()
        .await
        .decide(decide("d", hesitant_session(20_000)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reason(&r), Reason::Offered);
    assert!(!r.explored);
    let amount = r.offer.unwrap().amount_cents;
    assert_eq!(amount, r.best_tier_cents);
    let b = budget(&s).await;
    assert_eq!(
        (b.reserved_cents, b.learning_reserved_cents),
        (amount, 0),
        "main money"
    );
    s.shutdown().await;
    let d = &logged(&s)[0];
    assert!(!d.learning && d.action_cents == amount);
    assert!((d.propensity - 1.0).abs() < 1e-12);
}

#[tokio::test]
async fn a_learned_tier_is_offered_and_the_share_switches_back() {
    let mut s = start(cold_settings(""), model_with_learned_10_eur()).await;
    let mut c = s.client().await;
    let mut greedy = 0;
    for i in 0..40 {
        let r = c
            .decide(decide(&format!("e{i}"), hesitant_session(15_000)))
            .await
            .unwrap()
            .into_inner();
        if r.explored {
            continue;
        }
        // Only the learned tier is ranked; the unlearned priors never are.
        assert_eq!(reason(&r), Reason::Offered, "{r:?}");
        assert_eq!(r.offer.unwrap().amount_cents, 1_000);
        greedy += 1;
    }
    assert!(greedy > 30, "{greedy}");
    s.shutdown().await;
    let learned_share = 0.05;
    for d in logged(&s).iter().filter(|d| !d.explored) {
        assert!(!d.learning);
        assert!((d.propensity - Experiment::propensity(2, 2, 3, learned_share)).abs() < 1e-12);
    }
}
