//! The feature table: named features computed from a [`SessionState`] at a
//! decision moment.
//!
//! This is the one feature path. The server calls [`compute`] when it
//! decides; the training crate calls the same function on replayed sessions
//! at the moments a decision was (or would have been) asked, so training
//! rows and served rows cannot drift apart.
//!
//! Values are in natural units (counts, seconds, euros, 0/1 flags). Scaling
//! (log1p, standardisation, clipping) belongs to the model file, because it is
//! learned from data; [`Scale`] is only the trainer's default suggestion.

use crate::domain::session::{Device, SessionState, Signal, TrafficSource};

/// How the trainer transforms a feature by default before standardising.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Heavy-tailed non-negative quantity: log1p, then standardise.
    Log,
    /// Bounded or roughly symmetric: standardise only.
    Linear,
    /// 0/1 indicator: standardise only (kept for interpretability).
    Flag,
}

/// One row of the feature table.
#[derive(Clone, Copy, Debug)]
pub struct FeatureDef {
    pub name: &'static str,
    pub scale: Scale,
    pub doc: &'static str,
}

macro_rules! feature_table {
    ($( $ident:ident = $name:literal, $scale:ident, $doc:literal; )*) => {
        /// Index of each feature in [`Features`].
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub enum F { $($ident),* }

        /// The documented feature table, in index order.
        pub const FEATURES: &[FeatureDef] = &[
            $(FeatureDef { name: $name, scale: Scale::$scale, doc: $doc }),*
        ];

        /// Number of session features.
        pub const N_FEATURES: usize = [$($name),*].len();
    };
}

feature_table! {
    page_views = "page_views", Log, "page views of any kind";
    product_views = "product_views", Log, "product page views";
    category_views = "category_views", Log, "category page views";
    cart_views = "cart_views", Log, "cart page views";
    checkout_views = "checkout_views", Log, "checkout page views";
    dwell_total_s = "dwell_total_s", Log, "total dwell over all pages, seconds";
    dwell_mean_s = "dwell_mean_s", Log, "mean dwell per page view, seconds";
    product_dwell_s = "product_dwell_s", Log, "total dwell on product pages, seconds";
    scroll_mean = "scroll_mean", Linear, "mean scroll depth over page views, [0,1]";
    scroll_max = "scroll_max", Linear, "deepest scroll depth, [0,1]";
    viewed_price_max_eur = "viewed_price_max_eur", Log, "highest product price viewed, EUR";
    viewed_price_mean_eur = "viewed_price_mean_eur", Log, "mean product price viewed, EUR";
    cart_value_eur = "cart_value_eur", Log, "current cart value, EUR";
    cart_items = "cart_items", Log, "items in the cart now";
    cart_adds = "cart_adds", Log, "cart add events";
    cart_removes = "cart_removes", Log, "cart remove events";
    checkout_step = "checkout_step", Linear, "furthest checkout step reached (0 = none)";
    searches = "searches", Log, "site searches";
    zero_result_searches = "zero_result_searches", Log, "searches with no result";
    coupon_field_focus = "coupon_field_focus", Log, "times the coupon field got focus";
    exit_intent = "exit_intent", Log, "exit-intent signals";
    tab_hidden = "tab_hidden", Log, "times the tab was hidden";
    image_zoom = "image_zoom", Log, "product image zooms";
    reviews_opened = "reviews_opened", Log, "reviews opened";
    shipping_info = "shipping_info", Log, "shipping-info views";
    price_sort = "price_sort", Log, "listings sorted by price";
    events = "events", Log, "events seen in the session";
    session_age_s = "session_age_s", Log, "seconds from the first event to the decision";
    since_last_event_s = "since_last_event_s", Log, "seconds from the last event to the decision";
    hour_sin = "hour_sin", Linear, "sin(2 pi hour/24) of the decision time (UTC)";
    hour_cos = "hour_cos", Linear, "cos(2 pi hour/24) of the decision time (UTC)";
    device_mobile = "device_mobile", Flag, "1 if the device is a phone";
    device_tablet = "device_tablet", Flag, "1 if the device is a tablet";
    source_search = "source_search", Flag, "1 if traffic came from search";
    source_ads = "source_ads", Flag, "1 if traffic came from paid ads";
    source_email = "source_email", Flag, "1 if traffic came from e-mail";
    source_social = "source_social", Flag, "1 if traffic came from social media";
    source_referral = "source_referral", Flag, "1 if traffic came from a referral";
    returning_visitor = "returning_visitor", Flag, "1 for a returning visitor";
    prior_orders = "prior_orders", Log, "orders before this session (capped at 1000)";
    intent_value_eur = "intent_value_eur", Log, "intent value, EUR (see SessionState::intent_value_cents)";
    product_revisits = "product_revisits", Log, "views of a product already viewed in the session";
    similar_products_viewed = "similar_products_viewed", Log, "distinct products viewed in one price band (within 20 %; see SessionState::similar_products_viewed)";
}

/// A computed feature vector, indexed by [`F`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Features(pub [f64; N_FEATURES]);

impl Features {
    pub fn get(&self, f: F) -> f64 {
        self.0[f as usize]
    }

    /// Iterates `(name, value)` in table order (for logs and training rows).
    pub fn named(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        FEATURES
            .iter()
            .zip(self.0.iter())
            .map(|(d, v)| (d.name, *v))
    }
}

/// Index of a feature by name.
pub fn index_of(name: &str) -> Option<usize> {
    FEATURES.iter().position(|d| d.name == name)
}

const MS_PER_S: f64 = 1_000.0;
const CENTS_PER_EUR: f64 = 100.0;
const MS_PER_HOUR: i64 = 3_600_000;

/// Computes the feature vector of `state` at decision time `now_ms`.
///
/// `now_ms` earlier than the last event (client clocks run ahead) is treated
/// as the last event's time, so durations are never negative.
pub fn compute(state: &SessionState, now_ms: i64) -> Features {
    let mut x = [0.0; N_FEATURES];
    let mut set = |f: F, v: f64| x[f as usize] = v;
    let views = state.page_views_total();
    let now = if state.events == 0 {
        now_ms
    } else {
        now_ms.max(state.last_event_ms)
    };
    let pv = |k: crate::domain::session::PageKind| f64::from(state.page_views[k.index()]);
    use crate::domain::session::PageKind as P;

    set(F::page_views, f64::from(views));
    set(F::product_views, f64::from(state.product_views));
    set(F::category_views, pv(P::Category));
    set(F::cart_views, pv(P::Cart));
    set(F::checkout_views, pv(P::Checkout));
    set(F::dwell_total_s, state.dwell_ms_total as f64 / MS_PER_S);
    set(
        F::dwell_mean_s,
        if views == 0 {
            0.0
        } else {
            state.dwell_ms_total as f64 / MS_PER_S / f64::from(views)
        },
    );
    set(F::product_dwell_s, state.product_dwell_ms as f64 / MS_PER_S);
    set(
        F::scroll_mean,
        if views == 0 {
            0.0
        } else {
            state.scroll_sum / f64::from(views)
        },
    );
    set(F::scroll_max, f64::from(state.scroll_max));
    set(
        F::viewed_price_max_eur,
        state.product_price_max_cents as f64 / CENTS_PER_EUR,
    );
    set(
        F::viewed_price_mean_eur,
        if state.product_views == 0 {
            0.0
        } else {
            state.product_price_sum_cents as f64 / CENTS_PER_EUR / f64::from(state.product_views)
        },
    );
    set(
        F::cart_value_eur,
        state.cart_value_cents as f64 / CENTS_PER_EUR,
    );
    set(F::cart_items, f64::from(state.cart_items));
    set(F::cart_adds, f64::from(state.cart_adds));
    set(F::cart_removes, f64::from(state.cart_removes));
    set(F::checkout_step, f64::from(state.checkout_step_max));
    set(F::searches, f64::from(state.searches));
    set(
        F::zero_result_searches,
        f64::from(state.zero_result_searches),
    );
    let sig = |s: Signal| f64::from(state.signals[s.index()]);
    set(F::coupon_field_focus, sig(Signal::CouponFieldFocus));
    set(F::exit_intent, sig(Signal::ExitIntent));
    set(F::tab_hidden, sig(Signal::TabHidden));
    set(F::image_zoom, sig(Signal::ImageZoom));
    set(F::reviews_opened, sig(Signal::ReviewsOpened));
    set(F::shipping_info, sig(Signal::ShippingInfo));
    set(F::price_sort, sig(Signal::PriceSort));
    set(F::events, f64::from(state.events));
    if state.events > 0 {
        set(
            F::session_age_s,
            (now - state.first_event_ms) as f64 / MS_PER_S,
        );
        set(
            F::since_last_event_s,
            (now - state.last_event_ms) as f64 / MS_PER_S,
        );
    }
    let hour = now.rem_euclid(24 * MS_PER_HOUR) as f64 / MS_PER_HOUR as f64;
    let angle = std::f64::consts::TAU * hour / 24.0;
    set(F::hour_sin, angle.sin());
    set(F::hour_cos, angle.cos());
    let ctx = &state.context;
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    set(F::device_mobile, flag(ctx.device == Device::Mobile));
    set(F::device_tablet, flag(ctx.device == Device::Tablet));
    set(
        F::source_search,
        flag(ctx.traffic_source == TrafficSource::Search),
    );
    set(
        F::source_ads,
        flag(ctx.traffic_source == TrafficSource::Ads),
    );
    set(
        F::source_email,
        flag(ctx.traffic_source == TrafficSource::Email),
    );
    set(
        F::source_social,
        flag(ctx.traffic_source == TrafficSource::Social),
    );
    set(
        F::source_referral,
        flag(ctx.traffic_source == TrafficSource::Referral),
    );
    set(F::returning_visitor, flag(ctx.returning_visitor));
    set(F::prior_orders, f64::from(ctx.prior_orders.min(1_000)));
    set(
        F::intent_value_eur,
        state.intent_value_cents() as f64 / CENTS_PER_EUR,
    );
    set(F::product_revisits, f64::from(state.product_revisits));
    set(
        F::similar_products_viewed,
        f64::from(state.similar_products_viewed()),
    );
    Features(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indices_match() {
        for (i, d) in FEATURES.iter().enumerate() {
            assert_eq!(index_of(d.name), Some(i), "{}", d.name);
        }
        assert_eq!(
            FEATURES[F::intent_value_eur as usize].name,
            "intent_value_eur"
        );
        // Appended features keep every earlier index in place.
        assert_eq!(F::intent_value_eur as usize, 40);
        assert_eq!(
            FEATURES[N_FEATURES - 2..]
                .iter()
                .map(|d| d.name)
                .collect::<Vec<_>>(),
            ["product_revisits", "similar_products_viewed"]
        );
    }

    #[test]
    fn revisits_and_similar_products_come_from_product_pages() {
        use crate::domain::session::{Event, EventKind, PageKind, ProductKey};
        let view = |at_ms, id: &str, price_cents| Event {
            at_ms,
            kind: EventKind::PageView {
                page: PageKind::Product,
                product: Some(ProductKey::of(id)),
                price_cents,
                dwell_ms: 5_000,
                scroll_depth: 0.5,
            },
        };
        let mut s = SessionState::default();
        for e in [
            view(1, "a", 10_000),
            view(2, "b", 10_500),
            view(3, "a", 10_000),
            view(4, "c", 50_000),
        ] {
            s.apply(&e);
        }
        let f = compute(&s, 5);
        assert_eq!(f.get(F::product_revisits), 1.0);
        assert_eq!(f.get(F::similar_products_viewed), 2.0);
        assert_eq!(f.get(F::product_views), 4.0);
    }

    #[test]
    fn readme_documents_every_feature() {
        let readme = include_str!("../../README.md");
        for d in FEATURES {
            assert!(
                readme.contains(&format!("| `{}` |", d.name)),
                "README feature table lacks {}",
                d.name
            );
        }
    }

    #[test]
    fn empty_state_gives_finite_features() {
        let f = compute(&SessionState::default(), 1_700_000_000_000);
        assert!(f.0.iter().all(|v| v.is_finite()));
        assert_eq!(f.get(F::page_views), 0.0);
    }
}
