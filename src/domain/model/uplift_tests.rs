use super::*;
use crate::domain::features::compute;
use crate::domain::logistic::sigmoid;
use crate::domain::model::{ModelFile, Transform, FORMAT};
use crate::domain::policy::SegmentThresholds;
use crate::domain::session::{SessionState, Signal};
use proptest::prelude::*;

fn file(uplift: Option<UpliftFile>) -> ModelFile {
    ModelFile {
        format: FORMAT.into(),
        version: "t1".into(),
        input: Input::Session,
        terms: vec![],
        intercept: -1.0,
        segments: SegmentThresholds {
            hot_at_or_above: 0.6,
            cold_below: 0.1,
        },
        training: serde_json::Value::Null,
        uplift,
    }
}

fn term(feature: &str, times: Option<&str>, coef: f64) -> Term {
    Term {
        feature: feature.into(),
        category: None,
        transforms: vec![],
        times: times.map(str::to_owned),
        coef,
    }
}

fn arm(amount_cents: i64, intercept: f64, terms: Vec<Term>) -> UpliftArm {
    UpliftArm {
        amount_cents,
        intercept,
        terms,
        covariance: None,
    }
}

fn section(arms: Vec<UpliftArm>) -> Option<UpliftFile> {
    Some(UpliftFile {
        arms,
        lower_bound_z: None,
        training: serde_json::Value::Null,
    })
}

fn tiers(amounts: &[i64]) -> Vec<Tier> {
    amounts
        .iter()
        .map(|&amount_cents| Tier {
            amount_cents,
            lift: 0.0,
        })
        .collect()
}

fn coupon_session(focus: u32) -> Features {
    let mut s = SessionState::default();
    s.signals[Signal::CouponFieldFocus.index()] = focus;
    compute(&s, 0)
}

#[test]
fn uplift_arms_give_per_visitor_lifts_and_need_a_control() {
    let focus = |c| vec![term("coupon_field_focus", None, c)];
    let mut f = file(section(vec![
        arm(0, -2.0, focus(0.0)),
        arm(1_000, -1.8, focus(0.5)),
    ]));
    let m = f.compile().unwrap();
    assert!(m.has_uplift());
    assert_eq!(m.lower_bound_z(), DEFAULT_LOWER_BOUND_Z);
    assert!(m.learns_any(&tiers(&[1_000])));
    assert!(!m.learns_any(&tiers(&[500])));
    let t = tiers(&[500, 1_000]);
    let none = m
        .lifts(&coupon_session(0), &ClientFeatures::default(), 20_000, &t)
        .unwrap();
    assert!(none[0].is_nan(), "no arm for 500: the prior stays");
    assert!((none[1] - 0.2).abs() < 1e-12, "no covariance: the estimate");
    let sensitive = m
        .lifts(&coupon_session(2), &ClientFeatures::default(), 20_000, &t)
        .unwrap();
    assert!(
        (sensitive[1] - 1.2).abs() < 1e-12,
        "lift grows with coupon focus"
    );
    // Round trip through JSON, and a control arm is required.
    let back: ModelFile = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
    assert_eq!(back, f);
    f.uplift.as_mut().unwrap().arms.remove(0);
    assert!(f.compile().is_err());
}

#[test]
fn voucher_share_is_the_amount_over_the_intent_value_capped_at_one() {
    assert_eq!(voucher_share(0, 10_000), 0.0);
    assert_eq!(voucher_share(1_000, 10_000), 0.1);
    assert_eq!(voucher_share(1_000, 500), 1.0);
    assert_eq!(voucher_share(1_000, 0), 1.0);
    assert_eq!(voucher_share(1_000, -5), 1.0);
}

#[test]
fn share_terms_read_the_intent_value_and_interact_with_signals() {
    // lift_v = 0.1 + 2 share + 3 share * coupon_focus (raw count here).
    let treated = |a| {
        arm(
            a,
            -1.9,
            vec![
                term(VOUCHER_SHARE, None, 2.0),
                term("coupon_field_focus", Some(VOUCHER_SHARE), 3.0),
            ],
        )
    };
    let f = file(section(vec![
        arm(0, -2.0, vec![]),
        treated(500),
        treated(2_000),
    ]));
    let m = f.compile().unwrap();
    let t = tiers(&[500, 2_000]);
    let c = ClientFeatures::default();
    let e = m
        .lift_estimates(&coupon_session(1), &c, 10_000, &t)
        .unwrap();
    assert!((e.control_logit + 2.0).abs() < 1e-12);
    for (i, share) in [(0, 0.05), (1, 0.2)] {
        let want = 0.1 + 2.0 * share + 3.0 * share * 1.0;
        assert!((e.point[i] - want).abs() < 1e-12, "{e:?}");
        assert_eq!(e.se[i], 0.0);
    }
    // A smaller basket: the same voucher weighs more.
    let small = m.lifts(&coupon_session(1), &c, 4_000, &t).unwrap();
    assert!((small[1] - (0.1 + 5.0 * 0.5)).abs() < 1e-12, "{small:?}");
    // The pseudo-input belongs to uplift arms.
    let mut bad = file(None);
    bad.terms = vec![term(VOUCHER_SHARE, None, 1.0)];
    assert!(matches!(
        bad.compile(),
        Err(ModelError::UnknownFeature { .. })
    ));
    bad.terms = vec![term("page_views", Some(VOUCHER_SHARE), 1.0)];
    assert!(bad.compile().is_err(), "times outside uplift arms");
    let odd = file(section(vec![
        arm(0, 0.0, vec![]),
        arm(500, 0.0, vec![term("page_views", Some("page_views"), 1.0)]),
    ]));
    let e = odd.compile().unwrap_err().to_string();
    assert!(e.contains("times"), "{e}");
}

/// A control arm with variance 0.04 on its intercept and a treated arm with
/// covariance over (intercept, coupon term).
fn with_covariance(z: Option<f64>) -> ModelFile {
    let mut control = arm(0, -2.0, vec![term("coupon_field_focus", None, 0.0)]);
    control.covariance = Some(Covariance {
        index: vec![0],
        matrix: vec![vec![0.04]],
    });
    let mut treated = arm(1_000, -1.5, vec![term("coupon_field_focus", None, 0.0)]);
    treated.covariance = Some(Covariance {
        index: vec![0, 1],
        matrix: vec![vec![0.09, -0.01], vec![-0.01, 0.05]],
    });
    let mut f = file(section(vec![control, treated]));
    f.uplift.as_mut().unwrap().lower_bound_z = z;
    f
}

#[test]
fn covariance_gives_the_standard_error_and_the_served_lower_bound() {
    let m = with_covariance(None).compile().unwrap();
    let t = tiers(&[1_000]);
    let c = ClientFeatures::default();
    let f = coupon_session(2);
    let x = f.get(crate::domain::features::F::coupon_field_focus);
    let e = m.lift_estimates(&f, &c, 20_000, &t).unwrap();
    let var = 0.09 - 2.0 * 0.01 * x + 0.05 * x * x + 0.04;
    assert!((e.point[0] - 0.5).abs() < 1e-12);
    assert!((e.se[0] - var.sqrt()).abs() < 1e-12, "{e:?}");
    let served = m.lifts(&f, &c, 20_000, &t).unwrap();
    assert!((served[0] - (0.5 - var.sqrt())).abs() < 1e-12);
    let point = m.lifts_with_z(&f, &c, 20_000, &t, 0.0).unwrap();
    assert!((point[0] - 0.5).abs() < 1e-12);
    let m2 = with_covariance(Some(2.0)).compile().unwrap();
    assert_eq!(m2.lower_bound_z(), 2.0);
    let two = m2.lifts(&f, &c, 20_000, &t).unwrap();
    assert!((two[0] - (0.5 - 2.0 * var.sqrt())).abs() < 1e-12);
    // Round trip of the new fields.
    let file = with_covariance(Some(2.0));
    let back: ModelFile = serde_json::from_str(&serde_json::to_string(&file).unwrap()).unwrap();
    assert_eq!(back, file);
}

#[test]
fn a_file_without_the_new_fields_loads_and_serves_the_estimate() {
    let json = r#"{"format":"nudge-model/1","version":"old","input":"session",
        "terms":[],"intercept":-1,"segments":{"hot_at_or_above":0.6,"cold_below":0.1},
        "uplift":{"arms":[{"amount_cents":0,"intercept":-2,"terms":[]},
                          {"amount_cents":500,"intercept":-1.7,"terms":[]}]}}"#;
    let f: ModelFile = serde_json::from_str(json).unwrap();
    let m = f.compile().unwrap();
    let l = m
        .lifts(
            &coupon_session(0),
            &ClientFeatures::default(),
            10_000,
            &tiers(&[500]),
        )
        .unwrap();
    assert!((l[0] - 0.3).abs() < 1e-12);
}

#[test]
fn bad_covariances_and_bounds_are_refused() {
    let edit = |f: &dyn Fn(&mut UpliftFile)| {
        let mut m = with_covariance(None);
        f(m.uplift.as_mut().unwrap());
        m.compile().unwrap_err().to_string()
    };
    let cov = |u: &mut UpliftFile| u.arms[1].covariance.as_mut().unwrap().clone();
    let set = |u: &mut UpliftFile, c: Covariance| u.arms[1].covariance = Some(c);
    let e = edit(&|u| {
        let mut c = cov(u);
        c.matrix[0][1] = 0.5;
        set(u, c)
    });
    assert!(e.contains("symmetric"), "{e}");
    let e = edit(&|u| {
        let mut c = cov(u);
        c.matrix[1][1] = -0.1;
        set(u, c)
    });
    assert!(e.contains("negative variance"), "{e}");
    let e = edit(&|u| {
        let mut c = cov(u);
        c.index = vec![0, 2];
        set(u, c)
    });
    assert!(e.contains("index"), "{e}");
    let e = edit(&|u| {
        let mut c = cov(u);
        c.index = vec![1, 0];
        set(u, c)
    });
    assert!(e.contains("increasing"), "{e}");
    let e = edit(&|u| {
        let mut c = cov(u);
        c.matrix.pop();
        set(u, c)
    });
    assert!(e.contains("2 x 2"), "{e}");
    let e = edit(&|u| {
        let mut c = cov(u);
        c.matrix[0][0] = f64::NAN;
        set(u, c)
    });
    assert!(e.contains("not finite"), "{e}");
    let e = edit(&|u| u.lower_bound_z = Some(-1.0));
    assert!(e.contains("lower_bound_z"), "{e}");
}

#[test]
fn monotone_projection_is_the_running_maximum_by_amount() {
    // Tiers out of amount order; the 500 tier has no arm (NaN).
    let t = tiers(&[2_000, 500, 1_000, 5_000]);
    let mut l = [f64::NAN; MAX_TIERS];
    l[0] = 0.1;
    l[2] = 0.3;
    l[3] = 0.2;
    monotone_in_amount(&mut l, &t);
    assert_eq!(l[0], 0.3, "2000 raised to 1000's lift");
    assert!(l[1].is_nan());
    assert_eq!(l[2], 0.3);
    assert_eq!(l[3], 0.3);
}

fn arb_model() -> impl Strategy<Value = ModelFile> {
    let amounts = [0i64, 500, 1_000, 2_000];
    let arm_s = (
        -3.0..3.0f64,
        -2.0..2.0f64,
        -2.0..2.0f64,
        -5.0..5.0f64,
        0.0..0.5f64,
        0.0..0.5f64,
    );
    proptest::collection::vec(arm_s, 4).prop_map(move |v| {
        let arms = v
            .into_iter()
            .zip(amounts)
            .map(|((b, c1, c2, s, v1, v2), a)| {
                let mut terms = vec![
                    Term {
                        feature: "coupon_field_focus".into(),
                        category: None,
                        transforms: vec![Transform::Log1p],
                        times: None,
                        coef: c1,
                    },
                    Term {
                        feature: "price_sort".into(),
                        category: None,
                        transforms: vec![Transform::Log1p],
                        times: Some(VOUCHER_SHARE.into()),
                        coef: c2,
                    },
                ];
                if a > 0 {
                    terms.push(term(VOUCHER_SHARE, None, s));
                }
                UpliftArm {
                    amount_cents: a,
                    intercept: b,
                    covariance: Some(Covariance {
                        index: vec![0, 1],
                        matrix: vec![vec![v1, 0.0], vec![0.0, v2]],
                    }),
                    terms,
                }
            })
            .collect();
        file(section(arms))
    })
}

proptest! {
    /// Whatever the arms learned, the served lift of a larger voucher is
    /// never below a smaller one's, at any intent value, bound and tier
    /// order.
    #[test]
    fn served_lifts_are_monotone_in_the_amount(
        f in arb_model(),
        focus in 0u32..6,
        sorts in 0u32..6,
        intent in 0i64..50_000,
        z in 0.0..3.0f64,
        order in Just([500i64, 1_000, 2_000]).prop_shuffle(),
    ) {
        let m = f.compile().unwrap();
        let mut s = SessionState::default();
        s.signals[Signal::CouponFieldFocus.index()] = focus;
        s.signals[Signal::PriceSort.index()] = sorts;
        let feats = compute(&s, 0);
        let t = tiers(&order);
        let l = m.lifts_with_z(&feats, &ClientFeatures::default(), intent, &t, z).unwrap();
        for i in 0..t.len() {
            prop_assert!(l[i].is_finite());
            for j in 0..t.len() {
                if t[i].amount_cents < t[j].amount_cents {
                    prop_assert!(l[i] <= l[j], "{:?} {:?}", t, l);
                }
            }
        }
        // And the bound never exceeds the estimate's own maximum so far.
        let e = m.lift_estimates(&feats, &ClientFeatures::default(), intent, &t).unwrap();
        for (se, li) in e.se.iter().zip(&l).take(t.len()) {
            prop_assert!(*se >= 0.0);
            prop_assert!(sigmoid(e.control_logit + li).is_finite());
        }
    }
}
