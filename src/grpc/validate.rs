//! Request validation: protobuf messages in, validated domain values out.
//!
//! Everything a request carries is checked here, before any state is
//! touched, so a rejected request changes nothing. Every error names the
//! field by its path in the request.

use crate::config::Limits;
use crate::domain::model::ClientFeatures;
use crate::domain::session::{
    event_time, Context, Device, Event, EventKind, PageKind, ProductKey, Signal, TrafficSource,
};
use crate::engine::error::ServiceError;
use crate::engine::inputs::{DecideInput, OutcomeInput, RedeemInput, TrackInput};
use crate::grpc::pb;
use prost::Message;

/// Longest accepted id (session, visitor, product, feature name), bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Highest accepted price: 1,000,000 EUR. Anything above is a unit mistake.
pub const MAX_PRICE_CENTS: i64 = 100_000_000;
/// Longest accepted dwell on one page: one hour.
pub const MAX_DWELL_MS: u32 = 3_600_000;
/// Largest quantity in one cart change.
pub const MAX_QUANTITY: u32 = 1_000;
/// Highest checkout step.
pub const MAX_CHECKOUT_STEP: u32 = 10;
pub use crate::domain::session::MAX_FUTURE_SKEW_MS;

/// Longest accepted voucher code as typed (spaces and dashes included).
pub const MAX_CODE_BYTES: usize = 64;

pub fn redeem(req: &pb::RedeemRequest) -> R<RedeemInput> {
    id("session_id", &req.session_id, true)?;
    if req.voucher_code.is_empty() {
        return Err(ServiceError::invalid("voucher_code", "required"));
    }
    if req.voucher_code.len() > MAX_CODE_BYTES {
        return Err(ServiceError::invalid(
            "voucher_code",
            format!("{} bytes, at most {MAX_CODE_BYTES}", req.voucher_code.len()),
        ));
    }
    let order_value_cents = price(|| "order_value_cents".to_owned(), req.order_value_cents)?;
    Ok(RedeemInput {
        voucher_code: req.voucher_code.clone(),
        session_id: req.session_id.clone(),
        order_value_cents,
    })
}

/// The campaign a Budget asks about, checked exactly as Decide checks it
/// (empty: the default campaign; whether it is configured is the engine's
/// answer, the same for both).
pub fn budget(req: &pb::BudgetRequest) -> R<String> {
    campaign(&req.campaign)?;
    Ok(req.campaign.clone())
}

/// A campaign name: optional, else an id.
fn campaign(name: &str) -> R<()> {
    id("campaign", name, false)
}

pub fn outcome(req: &pb::RecordOutcomeRequest) -> R<OutcomeInput> {
    id("session_id", &req.session_id, true)?;
    let order_value_cents = price(|| "order_value_cents".to_owned(), req.order_value_cents)?;
    if req.converted && order_value_cents == 0 {
        return Err(ServiceError::invalid(
            "order_value_cents",
            "a converted session needs its order value",
        ));
    }
    if !req.converted && order_value_cents != 0 {
        return Err(ServiceError::invalid(
            "order_value_cents",
            "must be 0 when converted is false",
        ));
    }
    Ok(OutcomeInput {
        session_id: req.session_id.clone(),
        converted: req.converted,
        order_value_cents,
    })
}

type R<T> = Result<T, ServiceError>;

fn id(field: &str, value: &str, required: bool) -> R<()> {
    id_at(|| field.to_owned(), value, required)
}

/// [`id`] for a field whose name is built (`events[3].…`): built only for
/// an error, not for every event of every request.
fn id_at(field: impl FnOnce() -> String, value: &str, required: bool) -> R<()> {
    if value.is_empty() {
        if required {
            return Err(ServiceError::invalid(field(), "required"));
        }
        return Ok(());
    }
    if value.len() > MAX_ID_BYTES {
        return Err(ServiceError::invalid(
            field(),
            format!("{} bytes, at most {MAX_ID_BYTES}", value.len()),
        ));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ServiceError::invalid(
            field(),
            "must be printable ASCII without spaces",
        ));
    }
    Ok(())
}

fn optional(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_owned())
}

fn size(msg: &impl Message, limits: &Limits) -> R<()> {
    let n = msg.encoded_len();
    if n > limits.max_request_bytes {
        return Err(ServiceError::invalid(
            "request",
            format!(
                "{n} bytes, at most {} (limits.max_request_bytes)",
                limits.max_request_bytes
            ),
        ));
    }
    Ok(())
}

fn price(field: impl FnOnce() -> String, cents: i64) -> R<i64> {
    if !(0..=MAX_PRICE_CENTS).contains(&cents) {
        return Err(ServiceError::invalid(
            field(),
            format!("{cents} cents is outside 0..={MAX_PRICE_CENTS}"),
        ));
    }
    Ok(cents)
}

pub fn context(c: &pb::SessionContext) -> R<Context> {
    let device = match pb::Device::try_from(c.device) {
        Ok(pb::Device::Unspecified) => Device::Unknown,
        Ok(pb::Device::Desktop) => Device::Desktop,
        Ok(pb::Device::Mobile) => Device::Mobile,
        Ok(pb::Device::Tablet) => Device::Tablet,
        Err(_) => {
            return Err(ServiceError::invalid(
                "context.device",
                format!("unknown enum value {}", c.device),
            ))
        }
    };
    let traffic_source = match pb::TrafficSource::try_from(c.traffic_source) {
        Ok(pb::TrafficSource::Unspecified) => TrafficSource::Unknown,
        Ok(pb::TrafficSource::Direct) => TrafficSource::Direct,
        Ok(pb::TrafficSource::Search) => TrafficSource::Search,
        Ok(pb::TrafficSource::Ads) => TrafficSource::Ads,
        Ok(pb::TrafficSource::Email) => TrafficSource::Email,
        Ok(pb::TrafficSource::Social) => TrafficSource::Social,
        Ok(pb::TrafficSource::Referral) => TrafficSource::Referral,
        Err(_) => {
            return Err(ServiceError::invalid(
                "context.traffic_source",
                format!("unknown enum value {}", c.traffic_source),
            ))
        }
    };
    Ok(Context {
        device,
        traffic_source,
        returning_visitor: c.returning_visitor,
        prior_orders: c.prior_orders,
    })
}

fn cart_change(field: impl Fn() -> String, c: &pb::CartChange) -> R<(ProductKey, i64, u32)> {
    id_at(|| format!("{}.product_id", field()), &c.product_id, true)?;
    let unit = price(
        || format!("{}.unit_price_cents", field()),
        c.unit_price_cents,
    )?;
    if !(1..=MAX_QUANTITY).contains(&c.quantity) {
        return Err(ServiceError::invalid(
            format!("{}.quantity", field()),
            format!("{} is outside 1..={MAX_QUANTITY}", c.quantity),
        ));
    }
    Ok((ProductKey::of(&c.product_id), unit, c.quantity))
}

/// Validates one event; `at_ms == 0` becomes `now_ms`, and the time must
/// lie within the session's window ([`event_time`]): at most `max_age_ms`
/// old and [`MAX_FUTURE_SKEW_MS`] ahead.
pub fn event(i: usize, e: &pb::Event, now_ms: i64, max_age_ms: i64) -> R<Event> {
    use pb::event::Kind;
    let f = |rest: &str| format!("events[{i}].{rest}");
    let at_ms = event_time(e.at_ms, now_ms, max_age_ms)
        .map_err(|err| ServiceError::invalid(f("at_ms"), err.to_string()))?;
    let kind = match &e.kind {
        None => return Err(ServiceError::invalid(f("kind"), "required (one of page_view, cart_add, cart_remove, checkout_step, search, interaction)")),
        Some(Kind::PageView(p)) => {
            let page = match pb::PageKind::try_from(p.page_kind) {
                Ok(pb::PageKind::Home) => PageKind::Home,
                Ok(pb::PageKind::Category) => PageKind::Category,
                Ok(pb::PageKind::Product) => PageKind::Product,
                Ok(pb::PageKind::Search) => PageKind::Search,
                Ok(pb::PageKind::Cart) => PageKind::Cart,
                Ok(pb::PageKind::Checkout) => PageKind::Checkout,
                Ok(pb::PageKind::Other) => PageKind::Other,
                Ok(pb::PageKind::Unspecified) => {
                    return Err(ServiceError::invalid(f("page_view.page_kind"), "required"))
                }
                Err(_) => {
                    return Err(ServiceError::invalid(
                        f("page_view.page_kind"),
                        format!("unknown enum value {}", p.page_kind),
                    ))
                }
            };
            id_at(|| f("page_view.product_id"), &p.product_id, page == PageKind::Product)?;
            let price_cents = price(|| f("page_view.price_cents"), p.price_cents)?;
            if p.dwell_ms > MAX_DWELL_MS {
                return Err(ServiceError::invalid(
                    f("page_view.dwell_ms"),
                    format!("{} is more than {MAX_DWELL_MS}", p.dwell_ms),
                ));
            }
            if !(p.scroll_depth.is_finite() && (0.0..=1.0).contains(&p.scroll_depth)) {
                return Err(ServiceError::invalid(
                    f("page_view.scroll_depth"),
                    format!("{} is outside [0, 1]", p.scroll_depth),
                ));
            }
            EventKind::PageView {
                page,
                product: (!p.product_id.is_empty()).then(|| ProductKey::of(&p.product_id)),
                price_cents,
                dwell_ms: p.dwell_ms,
                scroll_depth: p.scroll_depth,
            }
        }
        Some(Kind::CartAdd(c)) => {
            let (product, unit_price_cents, quantity) = cart_change(|| f("cart_add"), c)?;
            EventKind::CartAdd {
                product,
                unit_price_cents,
                quantity,
            }
        }
        Some(Kind::CartRemove(c)) => {
            let (product, unit_price_cents, quantity) = cart_change(|| f("cart_remove"), c)?;
            EventKind::CartRemove {
                product,
                unit_price_cents,
                quantity,
            }
        }
        Some(Kind::CheckoutStep(s)) => {
            if !(1..=MAX_CHECKOUT_STEP).contains(&s.step) {
                return Err(ServiceError::invalid(
                    f("checkout_step.step"),
                    format!("{} is outside 1..={MAX_CHECKOUT_STEP}", s.step),
                ));
            }
            EventKind::CheckoutStep { step: s.step as u8 }
        }
        Some(Kind::Search(s)) => EventKind::Search { results: s.results },
        Some(Kind::Interaction(x)) => {
            let signal = match pb::Signal::try_from(x.signal) {
                Ok(pb::Signal::CouponFieldFocus) => Signal::CouponFieldFocus,
                Ok(pb::Signal::ExitIntent) => Signal::ExitIntent,
                Ok(pb::Signal::TabHidden) => Signal::TabHidden,
                Ok(pb::Signal::ImageZoom) => Signal::ImageZoom,
                Ok(pb::Signal::ReviewsOpened) => Signal::ReviewsOpened,
                Ok(pb::Signal::ShippingInfo) => Signal::ShippingInfo,
                Ok(pb::Signal::PriceSort) => Signal::PriceSort,
                Ok(pb::Signal::Unspecified) => {
                    return Err(ServiceError::invalid(f("interaction.signal"), "required"))
                }
                Err(_) => {
                    return Err(ServiceError::invalid(
                        f("interaction.signal"),
                        format!("unknown enum value {}", x.signal),
                    ))
                }
            };
            EventKind::Interaction { signal }
        }
    };
    Ok(Event { at_ms, kind })
}

fn events(list: &[pb::Event], limits: &Limits, now_ms: i64) -> R<Vec<Event>> {
    if list.len() > limits.max_events_per_request {
        return Err(ServiceError::invalid(
            "events",
            format!(
                "{} events, at most {} per request (limits.max_events_per_request)",
                list.len(),
                limits.max_events_per_request
            ),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, e)| event(i, e, now_ms, limits.max_event_age_ms))
        .collect()
}

pub fn track(req: &pb::TrackRequest, limits: &Limits, now_ms: i64) -> R<TrackInput> {
    size(req, limits)?;
    id("session_id", &req.session_id, true)?;
    id("visitor_id", &req.visitor_id, false)?;
    Ok(TrackInput {
        session_id: req.session_id.clone(),
        visitor_id: optional(&req.visitor_id),
        context: req.context.as_ref().map(context).transpose()?,
        events: events(&req.events, limits, now_ms)?,
    })
}

pub fn decide(req: &pb::DecideRequest, limits: &Limits, now_ms: i64) -> R<DecideInput> {
    size(req, limits)?;
    id("session_id", &req.session_id, true)?;
    id("visitor_id", &req.visitor_id, false)?;
    let n_features = req.features.len() + req.categorical_features.len();
    if n_features > limits.max_features {
        return Err(ServiceError::invalid(
            "features",
            format!(
                "{n_features} entries (numeric and categorical), at most {} (limits.max_features)",
                limits.max_features
            ),
        ));
    }
    // Sorted so the first bad key reported is deterministic.
    let mut keys: Vec<&String> = req.features.keys().collect();
    keys.sort();
    for k in keys {
        let field = format!("features[{k}]");
        if k.is_empty() || k.len() > MAX_ID_BYTES {
            return Err(ServiceError::invalid(
                field,
                format!("key must be 1..={MAX_ID_BYTES} bytes"),
            ));
        }
        let v = req.features[k];
        if !v.is_finite() {
            return Err(ServiceError::invalid(field, format!("{v} is not finite")));
        }
    }
    let mut keys: Vec<&String> = req.categorical_features.keys().collect();
    keys.sort();
    for k in keys {
        let field = format!("categorical_features[{k}]");
        if k.is_empty() || k.len() > MAX_ID_BYTES {
            return Err(ServiceError::invalid(
                field,
                format!("key must be 1..={MAX_ID_BYTES} bytes"),
            ));
        }
        let v = &req.categorical_features[k];
        if v.len() > MAX_ID_BYTES || v.chars().any(char::is_control) {
            return Err(ServiceError::invalid(
                field,
                format!("value must be at most {MAX_ID_BYTES} bytes without control characters"),
            ));
        }
    }
    campaign(&req.campaign)?;
    let intent_value_cents = match req.intent_value_cents {
        0 => None,
        v => Some(price(|| "intent_value_cents".to_owned(), v)?),
    };
    Ok(DecideInput {
        session_id: req.session_id.clone(),
        visitor_id: optional(&req.visitor_id),
        context: req.context.as_ref().map(context).transpose()?,
        events: events(&req.events, limits, now_ms)?,
        client: ClientFeatures {
            numeric: req.features.clone(),
            categorical: req.categorical_features.clone(),
        },
        intent_value_cents,
        campaign: req.campaign.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::event::Kind;

    const NOW: i64 = 1_700_000_000_000;

    fn ev(kind: Kind) -> pb::Event {
        pb::Event {
            at_ms: NOW,
            kind: Some(kind),
        }
    }

    fn field_of(r: R<impl std::fmt::Debug>) -> String {
        match r {
            Err(ServiceError::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    fn track_with(events: Vec<pb::Event>) -> pb::TrackRequest {
        pb::TrackRequest {
            session_id: "s1".into(),
            events,
            ..Default::default()
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let l = Limits::default();
        let pv = |price_cents, scroll_depth| {
            ev(Kind::PageView(pb::PageView {
                page_kind: pb::PageKind::Product as i32,
                product_id: "p".into(),
                price_cents,
                dwell_ms: 1,
                scroll_depth,
            }))
        };
        let cases: Vec<(pb::TrackRequest, &str)> = vec![
            (
                pb::TrackRequest {
                    session_id: String::new(),
                    ..Default::default()
                },
                "session_id",
            ),
            (
                track_with(vec![pv(0, 0.5), pv(-1, 0.5)]),
                "events[1].page_view.price_cents",
            ),
            (
                track_with(vec![pv(MAX_PRICE_CENTS + 1, 0.5)]),
                "events[0].page_view.price_cents",
            ),
            (
                track_with(vec![pv(1, f32::NAN)]),
                "events[0].page_view.scroll_depth",
            ),
            (
                track_with(vec![ev(Kind::Interaction(pb::Interaction { signal: 99 }))]),
                "events[0].interaction.signal",
            ),
            (
                track_with(vec![pb::Event {
                    at_ms: NOW,
                    kind: None,
                }]),
                "events[0].kind",
            ),
            (
                track_with(vec![
                    ev(Kind::Search(pb::Search { results: 1 })),
                    pb::Event {
                        at_ms: NOW / 1_000,
                        kind: Some(Kind::Search(pb::Search { results: 1 })),
                    },
                ]),
                "events[1].at_ms",
            ),
            (
                track_with(vec![pb::Event {
                    at_ms: NOW - l.max_event_age_ms - 1,
                    kind: Some(Kind::Search(pb::Search { results: 1 })),
                }]),
                "events[0].at_ms",
            ),
            (
                track_with(vec![pb::Event {
                    at_ms: NOW + MAX_FUTURE_SKEW_MS + 1,
                    kind: Some(Kind::Search(pb::Search { results: 1 })),
                }]),
                "events[0].at_ms",
            ),
            (
                track_with(vec![ev(Kind::CartAdd(pb::CartChange {
                    product_id: "p".into(),
                    unit_price_cents: 100,
                    quantity: 0,
                }))]),
                "events[0].cart_add.quantity",
            ),
            (
                track_with(vec![ev(Kind::Search(pb::Search { results: 0 })); 257]),
                "events",
            ),
            (
                pb::TrackRequest {
                    session_id: "s".into(),
                    context: Some(pb::SessionContext {
                        device: 42,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                "context.device",
            ),
        ];
        for (req, want) in cases {
            assert_eq!(field_of(track(&req, &l, NOW)), want);
        }
    }

    #[test]
    fn decide_features_must_be_finite() {
        let mut req = pb::DecideRequest {
            session_id: "s".into(),
            ..Default::default()
        };
        req.features.insert("PageValues".into(), f64::INFINITY);
        assert_eq!(
            field_of(decide(&req, &Limits::default(), NOW)),
            "features[PageValues]"
        );
    }

    #[test]
    fn oversized_request_is_rejected_by_size() {
        let l = Limits {
            max_request_bytes: 1_024,
            ..Limits::default()
        };
        let req = pb::TrackRequest {
            session_id: "s".into(),
            visitor_id: "v".repeat(100),
            events: vec![ev(Kind::Search(pb::Search { results: 1 })); 200],
            ..Default::default()
        };
        assert_eq!(field_of(track(&req, &l, NOW)), "request");
    }

    #[test]
    fn zero_time_means_now() {
        let e = event(
            0,
            &pb::Event {
                at_ms: 0,
                kind: Some(Kind::Search(pb::Search { results: 3 })),
            },
            NOW,
            1_800_000,
        )
        .unwrap();
        assert_eq!(e.at_ms, NOW);
    }
}
