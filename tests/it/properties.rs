use crate::util::*;
use nudge::config::Settings;
use nudge::domain::session::{
    Context, Device, Event, EventKind, PageKind, ProductKey, SessionState, Signal, TrafficSource,
};
use nudge::engine::assess;
use proptest::prelude::*;

fn event() -> impl Strategy<Value = Event> {
    let page = prop::sample::select(PageKind::ALL.to_vec());
    let signal = prop::sample::select(Signal::ALL.to_vec());
    let at = 0i64..=4_000_000_000_000;
    let price = 0i64..=100_000_000;
    prop_oneof![
        (
            at.clone(),
            page,
            0u64..50,
            price.clone(),
            0u32..=3_600_000,
            0.0f32..=1.0
        )
            .prop_map(
                |(at_ms, page, p, price_cents, dwell_ms, scroll_depth)| Event {
                    at_ms,
                    kind: EventKind::PageView {
                        page,
                        product: Some(ProductKey(p)),
                        price_cents,
                        dwell_ms,
                        scroll_depth,
                    },
                }
            ),
        (
            at.clone(),
            0u64..50,
            price.clone(),
            1u32..=1_000,
            any::<bool>()
        )
            .prop_map(|(at_ms, p, unit_price_cents, quantity, add)| Event {
                at_ms,
                kind: if add {
                    EventKind::CartAdd {
                        product: ProductKey(p),
                        unit_price_cents,
                        quantity,
                    }
                } else {
                    EventKind::CartRemove {
                        product: ProductKey(p),
                        unit_price_cents,
                        quantity,
                    }
                },
            }),
        (at.clone(), 1u8..=10).prop_map(|(at_ms, step)| Event {
            at_ms,
            kind: EventKind::CheckoutStep { step }
        }),
        (at.clone(), any::<u32>()).prop_map(|(at_ms, results)| Event {
            at_ms,
            kind: EventKind::Search { results }
        }),
        (at, signal).prop_map(|(at_ms, signal)| Event {
            at_ms,
            kind: EventKind::Interaction { signal }
        }),
    ]
}

fn context() -> impl Strategy<Value = Context> {
    (
        prop::sample::select(vec![
            Device::Unknown,
            Device::Desktop,
            Device::Mobile,
            Device::Tablet,
        ]),
        prop::sample::select(vec![
            TrafficSource::Unknown,
            TrafficSource::Direct,
            TrafficSource::Search,
            TrafficSource::Ads,
            TrafficSource::Email,
            TrafficSource::Social,
            TrafficSource::Referral,
        ]),
        any::<bool>(),
        any::<u32>(),
    )
        .prop_map(
            |(device, traffic_source, returning_visitor, prior_orders)| Context {
                device,
                traffic_source,
                returning_visitor,
                prior_orders,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any valid event stream gives finite features, a probability in
    /// [0, 1], a non-negative cart and intent, and offers only of
    /// configured tiers to eligible sessions.
    #[test]
    fn decisions_are_well_formed_for_any_event_stream(
        ctx in context(),
        events in prop::collection::vec(event(), 0..200),
        now in 0i64..=4_000_000_000_000,
    ) {
        let model = default_model();
        let settings = Settings::default();
        let mut state = SessionState::new(ctx);
        for e in &events {
            state.apply(e);
        }
        prop_assert!(state.cart_value_cents >= 0);
        prop_assert!(state.intent_value_cents() >= 0);
        let a = assess(&state, &Default::default(), None, now, &model, &settings.policy, 0.0).unwrap();
        prop_assert!(a.features.0.iter().all(|v| v.is_finite()));
        prop_assert!((0.0..=1.0).contains(&a.score.probability));
        if let nudge::domain::policy::Verdict::Offer { ranked } = a.verdict {
            prop_assert_eq!(a.segment, nudge::domain::policy::Segment::Hesitant);
            prop_assert!(a.intent_value_cents >= settings.policy.min_intent_cents);
            for c in ranked.iter().flatten() {
                prop_assert!(settings.policy.tiers.iter().any(|t| t.amount_cents == c.amount_cents));
            }
        }
    }
}
