//! Session state: validated domain events and the fixed-size aggregate they
//! fold into.
//!
//! Why an aggregate and not an event list: a decision needs a handful of
//! counts, sums and maxima, so each event is applied in O(1) and a session
//! costs the same few hundred bytes whether it saw 3 events or 3,000. The one
//! place where per-item memory is tempting ("which product did the visitor
//! consider most?") uses a small fixed table ([`PRODUCT_SLOTS`] entries) that
//! keeps the products with the most dwell, so memory stays bounded.
//!
//! Everything here is pure and deterministic: the server applies events with
//! [`SessionState::apply`] and the training crate replays generated or logged
//! sessions with the very same function.

use serde::{Deserialize, Serialize};

/// How many distinct products the aggregate remembers (by dwell) to find the
/// most-considered product. Eight covers the typical comparison set while
/// keeping the state small.
pub const PRODUCT_SLOTS: usize = 8;

/// Kind of page viewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageKind {
    Home,
    Category,
    Product,
    Search,
    Cart,
    Checkout,
    Other,
}

impl PageKind {
    pub const ALL: [PageKind; 7] = [
        PageKind::Home,
        PageKind::Category,
        PageKind::Product,
        PageKind::Search,
        PageKind::Cart,
        PageKind::Checkout,
        PageKind::Other,
    ];
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Behavioural micro-signals the web tier observes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    CouponFieldFocus,
    ExitIntent,
    TabHidden,
    ImageZoom,
    ReviewsOpened,
    ShippingInfo,
    PriceSort,
}

impl Signal {
    pub const ALL: [Signal; 7] = [
        Signal::CouponFieldFocus,
        Signal::ExitIntent,
        Signal::TabHidden,
        Signal::ImageZoom,
        Signal::ReviewsOpened,
        Signal::ShippingInfo,
        Signal::PriceSort,
    ];
    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    #[default]
    Unknown,
    Desktop,
    Mobile,
    Tablet,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrafficSource {
    #[default]
    Unknown,
    Direct,
    Search,
    Ads,
    Email,
    Social,
    Referral,
}

/// What the web tier knows about the visit before any event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    pub device: Device,
    pub traffic_source: TrafficSource,
    pub returning_visitor: bool,
    pub prior_orders: u32,
}

/// A product identifier reduced to a stable 64-bit key (FNV-1a), so the state
/// holds no strings and hashes the same in every process and release.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProductKey(pub u64);

impl ProductKey {
    pub fn of(id: &str) -> Self {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut h = OFFSET;
        for b in id.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
        ProductKey(h)
    }
}

/// One validated event. Prices are integer cents, already range-checked.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    PageView {
        page: PageKind,
        product: Option<ProductKey>,
        price_cents: i64,
        dwell_ms: u32,
        scroll_depth: f32,
    },
    CartAdd {
        product: ProductKey,
        unit_price_cents: i64,
        quantity: u32,
    },
    CartRemove {
        product: ProductKey,
        unit_price_cents: i64,
        quantity: u32,
    },
    CheckoutStep {
        step: u8,
    },
    Search {
        results: u32,
    },
    Interaction {
        signal: Signal,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// 2000-01-01T00:00:00Z in milliseconds: no event of a live session is
/// older, so an earlier time is a client bug (a zero-based or test clock).
pub const MIN_EVENT_MS: i64 = 946_684_800_000;
/// 2100-01-01T00:00:00Z in seconds. A time between [`MIN_EVENT_MS`] / 1000
/// and this is a Unix time in seconds sent where milliseconds belong.
const MAX_SECONDS_LOOKALIKE: i64 = 4_102_444_800;
/// How far ahead of the server's clock an event may be: client clocks drift,
/// and a phone a few minutes fast should still be tracked.
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1_000;

/// Why an event time is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventTimeError {
    #[error("must not be negative")]
    Negative,
    #[error("{0} looks like seconds since the epoch; event times are milliseconds")]
    Seconds(i64),
    #[error("{0} is before 2000-01-01 ({MIN_EVENT_MS} ms since the epoch)")]
    BeforeMin(i64),
    #[error("{at_ms} is more than {} s ahead of the server clock ({now_ms})", MAX_FUTURE_SKEW_MS / 1_000)]
    Future { at_ms: i64, now_ms: i64 },
    #[error("{at_ms} is more than {} s before the server clock ({now_ms}), older than the session idle TTL", max_age_ms / 1_000)]
    TooOld {
        at_ms: i64,
        now_ms: i64,
        max_age_ms: i64,
    },
}

/// The time an event is folded in at, or why it is refused. `0` means "now"
/// (a client without a clock of its own). Refused rather than clamped: a
/// time in seconds, from before 2000 or from beyond the session's idle TTL
/// would move the session-age and recency features arbitrarily, and a
/// clamped time would hide the client's bug behind plausible scores.
pub fn event_time(at_ms: i64, now_ms: i64, max_age_ms: i64) -> Result<i64, EventTimeError> {
    if at_ms == 0 {
        return Ok(now_ms);
    }
    if at_ms < 0 {
        return Err(EventTimeError::Negative);
    }
    if (MIN_EVENT_MS / 1_000..=MAX_SECONDS_LOOKALIKE).contains(&at_ms) {
        return Err(EventTimeError::Seconds(at_ms));
    }
    if at_ms < MIN_EVENT_MS {
        return Err(EventTimeError::BeforeMin(at_ms));
    }
    if at_ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
        return Err(EventTimeError::Future { at_ms, now_ms });
    }
    if at_ms < now_ms.saturating_sub(max_age_ms) {
        return Err(EventTimeError::TooOld {
            at_ms,
            now_ms,
            max_age_ms,
        });
    }
    Ok(at_ms)
}

/// Dwell accumulated on one product, for the most-considered product.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProductSlot {
    pub product: ProductKey,
    pub price_cents: i64,
    pub dwell_ms: u64,
    /// Page views and cart adds of the product (> 0: the slot is in use).
    pub views: u32,
    /// Product page views alone.
    #[serde(default)]
    pub page_views: u32,
}

/// The per-session aggregate. Fixed size; see the module docs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    pub context: Context,
    /// Time of the first event (0 before any event).
    pub first_event_ms: i64,
    /// Latest event time seen (events may arrive out of order; this never
    /// moves backwards).
    pub last_event_ms: i64,
    pub events: u32,
    pub page_views: [u32; 7],
    pub dwell_ms_total: u64,
    pub product_dwell_ms: u64,
    pub scroll_sum: f64,
    pub scroll_max: f32,
    pub product_views: u32,
    pub product_price_sum_cents: i64,
    pub product_price_max_cents: i64,
    pub products: [ProductSlot; PRODUCT_SLOTS],
    pub cart_value_cents: i64,
    pub cart_items: u32,
    pub cart_adds: u32,
    pub cart_removes: u32,
    pub checkout_step_max: u8,
    pub searches: u32,
    pub zero_result_searches: u32,
    pub signals: [u32; 7],
    /// Product page views of a product the table already held with a page
    /// view (a product evicted from the table counts afresh).
    #[serde(default)]
    pub product_revisits: u32,
    /// Time of the latest exit-intent signal (0: none yet). What the
    /// exit-intent offer trigger reads (`policy::OfferTrigger`).
    #[serde(default)]
    pub last_exit_intent_ms: i64,
}

impl SessionState {
    pub fn new(context: Context) -> Self {
        SessionState {
            context,
            ..SessionState::default()
        }
    }

    /// Folds one event into the aggregate in O(1). Counters saturate instead
    /// of wrapping, and the cart never goes below zero (a remove of something
    /// we never saw added is clamped, not trusted).
    pub fn apply(&mut self, event: &Event) {
        if self.events == 0 {
            self.first_event_ms = event.at_ms;
            self.last_event_ms = event.at_ms;
        } else {
            self.first_event_ms = self.first_event_ms.min(event.at_ms);
            self.last_event_ms = self.last_event_ms.max(event.at_ms);
        }
        self.events = self.events.saturating_add(1);
        match event.kind {
            EventKind::PageView {
                page,
                product,
                price_cents,
                dwell_ms,
                scroll_depth,
            } => {
                let slot = &mut self.page_views[page.index()];
                *slot = slot.saturating_add(1);
                self.dwell_ms_total = self.dwell_ms_total.saturating_add(u64::from(dwell_ms));
                self.scroll_sum += f64::from(scroll_depth);
                self.scroll_max = self.scroll_max.max(scroll_depth);
                if page == PageKind::Product {
                    self.product_views = self.product_views.saturating_add(1);
                    self.product_dwell_ms =
                        self.product_dwell_ms.saturating_add(u64::from(dwell_ms));
                    self.product_price_sum_cents =
                        self.product_price_sum_cents.saturating_add(price_cents);
                    self.product_price_max_cents = self.product_price_max_cents.max(price_cents);
                    if let Some(key) = product {
                        if self
                            .products
                            .iter()
                            .any(|s| s.page_views > 0 && s.product == key)
                        {
                            self.product_revisits = self.product_revisits.saturating_add(1);
                        }
                        self.consider(key, price_cents, u64::from(dwell_ms), true);
                    }
                }
            }
            EventKind::CartAdd {
                product,
                unit_price_cents,
                quantity,
            } => {
                self.cart_adds = self.cart_adds.saturating_add(1);
                self.cart_items = self.cart_items.saturating_add(quantity);
                self.cart_value_cents = self
                    .cart_value_cents
                    .saturating_add(unit_price_cents.saturating_mul(i64::from(quantity)));
                // Adding to the cart is the strongest "consideration" signal.
                self.consider(product, unit_price_cents, 0, false);
            }
            EventKind::CartRemove {
                unit_price_cents,
                quantity,
                ..
            } => {
                self.cart_removes = self.cart_removes.saturating_add(1);
                self.cart_items = self.cart_items.saturating_sub(quantity);
                self.cart_value_cents = (self.cart_value_cents
                    - unit_price_cents.saturating_mul(i64::from(quantity)))
                .max(0);
                if self.cart_items == 0 {
                    self.cart_value_cents = 0;
                }
            }
            EventKind::CheckoutStep { step } => {
                self.checkout_step_max = self.checkout_step_max.max(step);
            }
            EventKind::Search { results } => {
                self.searches = self.searches.saturating_add(1);
                if results == 0 {
                    self.zero_result_searches = self.zero_result_searches.saturating_add(1);
                }
            }
            EventKind::Interaction { signal } => {
                if signal == Signal::ExitIntent {
                    self.last_exit_intent_ms = self.last_exit_intent_ms.max(event.at_ms);
                }
                let slot = &mut self.signals[signal.index()];
                *slot = slot.saturating_add(1);
            }
        }
    }

    /// Records dwell on a product in the fixed slot table (`page_view`: a
    /// product page view, else a cart add). When the table is full the
    /// product with the least dwell is replaced (it cannot be the
    /// most-considered one).
    fn consider(&mut self, product: ProductKey, price_cents: i64, dwell_ms: u64, page_view: bool) {
        let page_views = u32::from(page_view);
        if let Some(slot) = self
            .products
            .iter_mut()
            .find(|s| s.views > 0 && s.product == product)
        {
            slot.dwell_ms = slot.dwell_ms.saturating_add(dwell_ms);
            slot.views = slot.views.saturating_add(1);
            slot.page_views = slot.page_views.saturating_add(page_views);
            if price_cents > 0 {
                slot.price_cents = price_cents;
            }
            return;
        }
        let victim = self
            .products
            .iter_mut()
            .min_by_key(|s| {
                if s.views == 0 {
                    (0, 0)
                } else {
                    (1, s.dwell_ms)
                }
            })
            .expect("PRODUCT_SLOTS > 0");
        *victim = ProductSlot {
            product,
            price_cents,
            dwell_ms,
            views: 1,
            page_views,
        };
    }

    /// The product with the most accumulated dwell (ties: more views).
    pub fn most_considered(&self) -> Option<&ProductSlot> {
        self.products
            .iter()
            .filter(|s| s.views > 0)
            .max_by_key(|s| (s.dwell_ms, s.views))
    }

    /// The largest number of distinct products viewed (product page views,
    /// from the fixed table) whose prices lie within 20 % of one of them:
    /// the visitor's comparison set in one price band. 1 for a single
    /// product, 0 before any priced product page. Events carry no
    /// category, so the price band stands for "similar products".
    pub fn similar_products_viewed(&self) -> u32 {
        let viewed = || {
            self.products
                .iter()
                .filter(|s| s.page_views > 0 && s.price_cents > 0)
        };
        viewed()
            .map(|a| {
                viewed()
                    .filter(|b| (b.price_cents - a.price_cents).abs() * 5 <= a.price_cents)
                    .count() as u32
            })
            .max()
            .unwrap_or(0)
    }

    pub fn page_views_total(&self) -> u32 {
        self.page_views
            .iter()
            .fold(0u32, |a, b| a.saturating_add(*b))
    }

    /// Intent value in cents: what a purchase in this session is worth.
    ///
    /// The cart value when the cart is not empty (the visitor told us what
    /// they want); otherwise the price of the most-considered product (most
    /// dwell); otherwise 0. This is the `V` of the voucher rule.
    pub fn intent_value_cents(&self) -> i64 {
        if self.cart_items > 0 && self.cart_value_cents > 0 {
            return self.cart_value_cents;
        }
        self.most_considered().map_or(0, |s| s.price_cents.max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_outside_the_session_window_are_refused() {
        let now = 1_795_341_600_000;
        let ttl = 1_800_000;
        assert_eq!(event_time(0, now, ttl), Ok(now));
        assert_eq!(event_time(now - ttl, now, ttl), Ok(now - ttl));
        assert_eq!(
            event_time(now + MAX_FUTURE_SKEW_MS, now, ttl),
            Ok(now + MAX_FUTURE_SKEW_MS)
        );
        assert_eq!(event_time(-1, now, ttl), Err(EventTimeError::Negative));
        assert_eq!(
            event_time(now / 1_000, now, ttl),
            Err(EventTimeError::Seconds(now / 1_000))
        );
        assert_eq!(
            event_time(86_400_000, now, ttl),
            Err(EventTimeError::BeforeMin(86_400_000))
        );
        assert!(matches!(
            event_time(now + MAX_FUTURE_SKEW_MS + 1, now, ttl),
            Err(EventTimeError::Future { .. })
        ));
        assert!(matches!(
            event_time(now * 1_000, now, ttl),
            Err(EventTimeError::Future { .. })
        ));
        assert!(matches!(
            event_time(now - ttl - 1, now, ttl),
            Err(EventTimeError::TooOld { .. })
        ));
    }

    fn pv(at_ms: i64, product: &str, price_cents: i64, dwell_ms: u32) -> Event {
        Event {
            at_ms,
            kind: EventKind::PageView {
                page: PageKind::Product,
                product: Some(ProductKey::of(product)),
                price_cents,
                dwell_ms,
                scroll_depth: 0.5,
            },
        }
    }

    #[test]
    fn intent_value_prefers_cart_then_most_considered_product() {
        let mut s = SessionState::default();
        assert_eq!(s.intent_value_cents(), 0);
        s.apply(&pv(1, "a", 5_000, 10_000));
        s.apply(&pv(2, "b", 12_000, 60_000));
        s.apply(&pv(3, "a", 5_000, 10_000));
        assert_eq!(s.intent_value_cents(), 12_000);
        s.apply(&Event {
            at_ms: 4,
            kind: EventKind::CartAdd {
                product: ProductKey::of("a"),
                unit_price_cents: 5_000,
                quantity: 2,
            },
        });
        assert_eq!(s.intent_value_cents(), 10_000);
        s.apply(&Event {
            at_ms: 5,
            kind: EventKind::CartRemove {
                product: ProductKey::of("a"),
                unit_price_cents: 5_000,
                quantity: 5,
            },
        });
        assert_eq!(s.cart_value_cents, 0);
        assert_eq!(s.cart_items, 0);
        assert_eq!(s.intent_value_cents(), 12_000);
    }

    #[test]
    fn product_table_stays_bounded_and_keeps_the_heaviest() {
        let mut s = SessionState::default();
        s.apply(&pv(0, "star", 30_000, 1_000_000));
        for i in 0..1_000 {
            s.apply(&pv(i + 1, &format!("p{i}"), 1_000, 1_000));
        }
        assert_eq!(s.most_considered().unwrap().product, ProductKey::of("star"));
        assert_eq!(s.product_views, 1_001);
    }

    #[test]
    fn revisits_count_repeated_product_pages_not_cart_adds() {
        let add = |at_ms, product: &str| Event {
            at_ms,
            kind: EventKind::CartAdd {
                product: ProductKey::of(product),
                unit_price_cents: 5_000,
                quantity: 1,
            },
        };
        let mut s = SessionState::default();
        // A cart add reported before the page view it happened on.
        s.apply(&add(1, "a"));
        s.apply(&pv(2, "a", 5_000, 10_000));
        assert_eq!(s.product_revisits, 0);
        s.apply(&pv(3, "b", 5_000, 10_000));
        s.apply(&pv(4, "a", 5_000, 10_000));
        s.apply(&pv(5, "a", 5_000, 10_000));
        assert_eq!(s.product_revisits, 2);
        let slot = s.most_considered().unwrap();
        assert_eq!((slot.views, slot.page_views), (4, 3));
    }

    #[test]
    fn similar_products_are_the_largest_price_band() {
        let mut s = SessionState::default();
        assert_eq!(s.similar_products_viewed(), 0);
        s.apply(&pv(1, "a", 10_000, 1_000));
        assert_eq!(s.similar_products_viewed(), 1);
        // Revisits do not add products.
        s.apply(&pv(2, "a", 10_000, 1_000));
        assert_eq!(s.similar_products_viewed(), 1);
        s.apply(&pv(3, "b", 11_900, 1_000));
        s.apply(&pv(4, "c", 8_100, 1_000));
        s.apply(&pv(5, "far", 30_000, 1_000));
        // a, b and c are within 20 % of a; b and c are not within 20 % of
        // each other, but a's band holds all three.
        assert_eq!(s.similar_products_viewed(), 3);
        // A product only added to the cart was not viewed.
        s.apply(&Event {
            at_ms: 6,
            kind: EventKind::CartAdd {
                product: ProductKey::of("d"),
                unit_price_cents: 10_000,
                quantity: 1,
            },
        });
        assert_eq!(s.similar_products_viewed(), 3);
    }

    #[test]
    fn old_stored_states_without_the_new_fields_still_parse() {
        let mut s = SessionState::default();
        s.apply(&pv(1, "a", 10_000, 1_000));
        let mut v = serde_json::to_value(&s).unwrap();
        v.as_object_mut().unwrap().remove("product_revisits");
        for slot in v["products"].as_array_mut().unwrap() {
            slot.as_object_mut().unwrap().remove("page_views");
        }
        let back: SessionState = serde_json::from_value(v).unwrap();
        assert_eq!(back.product_revisits, 0);
        assert_eq!(back.products[0].page_views, 0);
    }

    #[test]
    fn out_of_order_events_never_move_time_backwards() {
        let mut s = SessionState::default();
        s.apply(&pv(1_000, "a", 100, 1));
        s.apply(&pv(500, "a", 100, 1));
        assert_eq!((s.first_event_ms, s.last_event_ms), (500, 1_000));
    }

    #[test]
    fn latest_exit_intent_is_kept_even_out_of_order() {
        let exit = |at_ms| Event {
            at_ms,
            kind: EventKind::Interaction {
                signal: Signal::ExitIntent,
            },
        };
        let mut s = SessionState::default();
        assert_eq!(s.last_exit_intent_ms, 0);
        s.apply(&exit(2_000));
        s.apply(&exit(1_000));
        s.apply(&Event {
            at_ms: 3_000,
            kind: EventKind::Interaction {
                signal: Signal::CouponFieldFocus,
            },
        });
        assert_eq!(s.last_exit_intent_ms, 2_000);
    }
}
