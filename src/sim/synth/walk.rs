//! One visit as a page-by-page walk driven by the visitor's latent intent
//! and visible price consciousness (see the behaviour model in the parent
//! module): the walk never sees the true sensitivity, only what shows.

use super::*;

/// One session being generated.
pub(super) struct Walk<'a> {
    pub(super) rng: &'a mut ChaCha8Rng,
    pub(super) t: i64,
    pub(super) events: Vec<Event>,
    /// `(catalogue index, unit price, quantity)`.
    pub(super) cart: Vec<(u32, i64, u32)>,
    pub(super) viewed: Vec<u32>,
    pub(super) coupon_focused: bool,
}

impl<'a> Walk<'a> {
    pub(super) fn new(rng: &'a mut ChaCha8Rng, start_ms: i64) -> Self {
        Walk {
            rng,
            t: start_ms,
            events: Vec::new(),
            cart: Vec::new(),
            viewed: Vec::new(),
            coupon_focused: false,
        }
    }

    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.rng.random::<f64>() < p
    }

    pub(super) fn normal(&mut self) -> f64 {
        StandardNormal.sample(&mut *self.rng)
    }

    pub(super) fn cart_value(&self) -> i64 {
        self.cart.iter().map(|(_, p, q)| p * i64::from(*q)).sum()
    }

    pub(super) fn context(&mut self) -> Context {
        let device =
            [Device::Desktop, Device::Mobile, Device::Tablet][pick(self.rng, &[0.45, 0.45, 0.10])];
        let sources = [
            (TrafficSource::Search, 0.30, 0.30),
            (TrafficSource::Direct, 0.20, 0.50),
            (TrafficSource::Ads, 0.20, 0.20),
            (TrafficSource::Social, 0.14, 0.20),
            (TrafficSource::Email, 0.08, 0.80),
            (TrafficSource::Referral, 0.08, 0.30),
        ];
        let i = pick(self.rng, &sources.map(|s| s.1));
        let (traffic_source, _, p_ret) = sources[i];
        let returning_visitor = self.chance(p_ret);
        let prior_orders = if returning_visitor && self.chance(0.7) {
            // 1 + Geometric with mean ~2 extra orders.
            let mut n = 1u32;
            while n < 200 && self.chance(2.0 / 3.0) {
                n += 1;
            }
            n
        } else {
            0
        };
        Context {
            device,
            traffic_source,
            returning_visitor,
            prior_orders,
        }
    }

    pub(super) fn session(
        &mut self,
        seed: u64,
        seq: u64,
        world: ResponseWorld,
    ) -> GeneratedSession {
        let start_ms = self.t;
        let ctx = self.context();
        let hour = start_ms.rem_euclid(MS_PER_DAY) as f64 / MS_PER_HOUR as f64;
        let (src_mu, src_s) = match ctx.traffic_source {
            TrafficSource::Email => (0.5, 0.3),
            TrafficSource::Direct => (0.3, -0.3),
            TrafficSource::Search => (0.1, 0.0),
            TrafficSource::Ads => (-0.2, 0.4),
            TrafficSource::Social => (-0.6, 0.5),
            TrafficSource::Referral | TrafficSource::Unknown => (0.0, 0.0),
        };
        let dev_mu = match ctx.device {
            Device::Desktop => 0.1,
            Device::Mobile => -0.2,
            _ => 0.0,
        };
        let ret_mu = if ctx.returning_visitor {
            0.3 + 0.2 * f64::from(ctx.prior_orders).ln_1p()
        } else {
            0.0
        };
        let mu = -0.45
            + src_mu
            + ret_mu
            + dev_mu
            + 0.15 * (std::f64::consts::TAU * (hour - 20.0) / 24.0).cos();
        let u = mu + self.normal();
        let s_lin = -0.4 + if ctx.returning_visitor { -0.2 } else { 0.6 } + src_s;
        // Visible price consciousness drives the walk; the true sensitivity
        // shares a world-dependent part of it.
        let visible_logit = s_lin + 0.9 * self.normal();
        let hidden = self.normal();
        let w = sigmoid(2.0 * visible_logit);
        let s = world.sensitivity(visible_logit, hidden);
        let basket_eur = (80f64.ln() + 0.6 * self.normal()).exp().clamp(5.0, 2_000.0);

        self.walk(&ctx, u, w, basket_eur);

        let mut state = SessionState::new(ctx);
        for e in &self.events {
            state.apply(e);
        }
        let step = usize::from(state.checkout_step_max.min(4));
        let cart_value = state.cart_value_cents;
        let priced = state.intent_value_cents() > 0;
        let base_logit = -4.2 + 0.8 * u - 0.5 * s
            + if ctx.returning_visitor { 0.2 } else { 0.0 }
            + if cart_value > 0 { 1.8 } else { 0.0 }
            + [0.0, 0.8, 1.5, 2.2, 3.3][step]
            + 0.3 * f64::from(state.product_views).ln_1p()
            - if cart_value as f64 > 130.0 * basket_eur {
                0.6 * s
            } else {
                0.0
            }
            - if priced { 0.0 } else { 1.5 };
        let purchase_uniform: f64 = self.rng.random();
        let converted = purchase_uniform < sigmoid(base_logit);
        let order_value_cents = if !converted {
            0
        } else if priced {
            state.intent_value_cents()
        } else {
            (basket_eur * 100.0).round() as i64
        };
        let tier_lift = VOUCHER_TIERS_CENTS
            .iter()
            .map(|&c| (c, voucher_lift(world, c, s, basket_eur)))
            .collect();
        let decision_points = self.decision_points();
        let visitor_id = if ctx.returning_visitor {
            format!("v-{seed:x}-r{:06}", self.rng.random_range(0..200_000u32))
        } else {
            format!("v-{seed:x}-n{seq:09}")
        };
        GeneratedSession {
            session_id: format!("s-{seed:x}-{seq:09}"),
            visitor_id,
            context: ctx,
            events: std::mem::take(&mut self.events),
            decision_points,
            truth: Truth {
                intent: u,
                price_sensitivity: s,
                basket_eur,
                base_logit,
                tier_lift,
                purchase_uniform,
                world,
            },
            outcome: Outcome {
                converted,
                order_value_cents,
            },
        }
    }

    pub(super) fn decision_points(&mut self) -> Vec<DecisionPoint> {
        let n = self.events.len();
        let mut out = Vec::new();
        for i in 0..n {
            let after = i + 1;
            let exit = matches!(
                self.events[i].kind,
                EventKind::Interaction {
                    signal: Signal::ExitIntent
                }
            );
            let asked = self.chance(0.3) && after >= 3;
            if asked || exit || after == n {
                let delay = self.rng.random_range(300..4_000i64);
                let mut at_ms = self.events[i].at_ms + delay;
                if let Some(next) = self.events.get(i + 1) {
                    at_ms = at_ms.min(next.at_ms);
                }
                out.push(DecisionPoint {
                    after_events: after,
                    at_ms,
                });
            }
        }
        out
    }

    pub(super) fn landing(&mut self, ctx: &Context) -> Page {
        use Page::*;
        let (pages, w): (&[Page], &[f64]) = match ctx.traffic_source {
            TrafficSource::Search => (&[Product, Category, Home], &[0.55, 0.35, 0.10]),
            TrafficSource::Ads => (&[Product, Category, Home], &[0.60, 0.30, 0.10]),
            TrafficSource::Social => (&[Product, Category, Home], &[0.50, 0.30, 0.20]),
            TrafficSource::Email => (&[Home, Category, Product], &[0.30, 0.40, 0.30]),
            TrafficSource::Referral => (&[Product, Home, Category], &[0.50, 0.25, 0.25]),
            TrafficSource::Direct | TrafficSource::Unknown => {
                (&[Home, Category, Product, Other], &[0.70, 0.15, 0.10, 0.05])
            }
        };
        pages[pick(self.rng, w)]
    }

    pub(super) fn dwell_ms(&mut self, page: Page, u: f64) -> i64 {
        let base_s = match page {
            Page::Home => 12.0,
            Page::Category => 20.0,
            Page::Product => 40.0,
            Page::Search => 15.0,
            Page::Cart => 25.0,
            Page::Checkout(_) => 45.0,
            Page::Other => 15.0,
        };
        let z = self.normal();
        let s = (base_s * (0.25 * u).exp() * (0.8 * z).exp()).clamp(2.0, 300.0);
        (s * 1_000.0) as i64
    }

    pub(super) fn scroll(&mut self, u: f64) -> f32 {
        let z = self.normal();
        (0.4 + 0.12 * u + 0.22 * z).clamp(0.02, 1.0) as f32
    }

    /// A time inside the page, at a fraction in `lo..hi` of its dwell.
    pub(super) fn times_within(&mut self, start: i64, end: i64, lo: f64, hi: f64) -> i64 {
        let span = (end - start).max(0) as f64;
        start + (span * self.rng.random_range(lo..hi)) as i64
    }

    /// The next product: back to one already viewed (`0.05 + 0.4 w`), else
    /// one of the last product's price band (a comparison, `0.02 + 0.6 w`),
    /// else one around the budget.
    pub(super) fn choose_product(&mut self, basket_eur: f64, w: f64, sorted: bool) -> u32 {
        if let Some(&last) = self.viewed.last() {
            if self.chance(0.05 + 0.4 * w) {
                let i = self.rng.random_range(0..self.viewed.len());
                return self.viewed[i];
            }
            if self.chance(0.02 + 0.6 * w) {
                let z = self.normal();
                let eur = catalog_price_cents(last) as f64 / 100.0 * (0.06 * z).exp();
                let step = self.rng.random_range(1..=8u32);
                let near = catalog_index_near(eur);
                return if self.chance(0.5) {
                    (near + step).min(CATALOG_SIZE - 1)
                } else {
                    near.saturating_sub(step)
                };
            }
        }
        let z = self.normal();
        let cheaper = if sorted { 0.8 } else { 1.0 } * (1.0 - 0.1 * w);
        let target = basket_eur * cheaper * (0.45 * z).exp();
        let jitter = self.rng.random_range(0..7u32);
        (catalog_index_near(target) + jitter)
            .saturating_sub(3)
            .min(CATALOG_SIZE - 1)
    }

    pub(super) fn walk(&mut self, ctx: &Context, u: f64, w: f64, basket_eur: f64) {
        let desktop = ctx.device == Device::Desktop;
        let mut page = self.landing(ctx);
        let mut pages = 0u32;
        let mut last_search_empty = false;
        let mut sorted = false;
        loop {
            pages += 1;
            let start = self.t;
            let end = start + self.dwell_ms(page, u);
            let mut inpage: Vec<(i64, EventKind)> = Vec::new();
            let mut product = None;
            let mut price_cents = 0;
            let mut just_added = false;
            let sig = |signal| EventKind::Interaction { signal };

            match page {
                Page::Search => {
                    let results = if self.chance(0.12) {
                        0
                    } else {
                        1 + (40.0 * self.rng.random::<f64>().powi(2)) as u32
                    };
                    last_search_empty = results == 0;
                    inpage.push((start, EventKind::Search { results }));
                }
                Page::Category => {
                    if self.chance(0.02 + 0.5 * w) {
                        sorted = true;
                        let at = self.times_within(start, end, 0.1, 0.5);
                        inpage.push((at, sig(Signal::PriceSort)));
                    }
                }
                Page::Product => {
                    let idx = self.choose_product(basket_eur, w, sorted);
                    self.viewed.push(idx);
                    let price = catalog_price_cents(idx);
                    product = Some(product_key(idx));
                    price_cents = price;
                    if self.chance(0.25 + if desktop { 0.1 } else { 0.0 }) {
                        let at = self.times_within(start, end, 0.05, 0.6);
                        inpage.push((at, sig(Signal::ImageZoom)));
                    }
                    if self.chance((0.15 + 0.1 * w + 0.05 * u).clamp(0.02, 0.6)) {
                        let at = self.times_within(start, end, 0.2, 0.9);
                        inpage.push((at, sig(Signal::ReviewsOpened)));
                    }
                    if self.chance(0.06 + 0.1 * w) {
                        let at = self.times_within(start, end, 0.2, 0.9);
                        inpage.push((at, sig(Signal::ShippingInfo)));
                    }
                    let in_cart = self.cart.iter().any(|c| c.0 == idx);
                    let price_eur = price as f64 / 100.0;
                    let over = if self.cart_value() as f64 > basket_eur * 100.0 {
                        1.5
                    } else {
                        0.0
                    };
                    let p_add = sigmoid(
                        -1.6 + 0.9 * u - 1.2 * (price_eur / basket_eur).ln().max(0.0) - over,
                    );
                    if !in_cart && self.chance(p_add) {
                        let quantity = if self.chance(0.1) { 2 } else { 1 };
                        let at = self.times_within(start, end, 0.5, 0.95);
                        inpage.push((
                            at,
                            EventKind::CartAdd {
                                product: product_key(idx),
                                unit_price_cents: price,
                                quantity,
                            },
                        ));
                        self.cart.push((idx, price, quantity));
                        just_added = true;
                    }
                }
                Page::Cart => {
                    if !self.cart.is_empty() {
                        if self.chance(0.02 + 0.6 * w) {
                            self.coupon_focused = true;
                            let at = self.times_within(start, end, 0.3, 0.9);
                            inpage.push((at, sig(Signal::CouponFieldFocus)));
                        }
                        if self.chance(0.12) {
                            let at = self.times_within(start, end, 0.1, 0.9);
                            inpage.push((at, sig(Signal::ShippingInfo)));
                        }
                        if self.chance(0.03 + 0.2 * w) {
                            let i = self.rng.random_range(0..self.cart.len());
                            let (idx, price, quantity) = self.cart.remove(i);
                            let at = self.times_within(start, end, 0.2, 0.95);
                            inpage.push((
                                at,
                                EventKind::CartRemove {
                                    product: product_key(idx),
                                    unit_price_cents: price,
                                    quantity,
                                },
                            ));
                        }
                    }
                }
                Page::Checkout(step) => {
                    inpage.push((start, EventKind::CheckoutStep { step }));
                    if (2..=3).contains(&step) && self.chance(0.3 * w) {
                        self.coupon_focused = true;
                        let at = self.times_within(start, end, 0.2, 0.9);
                        inpage.push((at, sig(Signal::CouponFieldFocus)));
                    }
                    if step <= 2 && self.chance(0.1) {
                        let at = self.times_within(start, end, 0.1, 0.9);
                        inpage.push((at, sig(Signal::ShippingInfo)));
                    }
                }
                Page::Home | Page::Other => {}
            }
            if self.chance(0.02 + 0.1 * w) {
                let at = self.times_within(start, end, 0.1, 0.9);
                inpage.push((at, sig(Signal::TabHidden)));
            }

            // Next page or leave.
            let (leave, next) =
                self.next_page(page, pages, u, w, ctx, just_added, last_search_empty);
            let false_alarm = self.chance(0.01 + 0.02 * w);
            let exit_base = if desktop { 0.35 } else { 0.1 };
            let exit_signal = leave && self.chance(exit_base + 0.4 * w);
            if exit_signal || false_alarm {
                let at = (end - self.rng.random_range(500..3_000i64)).max(start);
                inpage.push((at, sig(Signal::ExitIntent)));
            }
            inpage.sort_by_key(|(at, _)| *at);
            for (at_ms, kind) in inpage {
                self.events.push(Event { at_ms, kind });
            }
            let kind = match page {
                Page::Home => PageKind::Home,
                Page::Category => PageKind::Category,
                Page::Product => PageKind::Product,
                Page::Search => PageKind::Search,
                Page::Cart => PageKind::Cart,
                Page::Checkout(_) => PageKind::Checkout,
                Page::Other => PageKind::Other,
            };
            let scroll_depth = self.scroll(u);
            self.events.push(Event {
                at_ms: end,
                kind: EventKind::PageView {
                    page: kind,
                    product,
                    price_cents,
                    dwell_ms: (end - start) as u32,
                    scroll_depth,
                },
            });
            // Leave room for the biggest page (about 6 events).
            if leave || self.events.len() + 8 > MAX_EVENTS {
                break;
            }
            self.t = end + self.rng.random_range(300..2_500i64);
            page = next;
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn next_page(
        &mut self,
        page: Page,
        pages: u32,
        u: f64,
        w: f64,
        ctx: &Context,
        just_added: bool,
        last_search_empty: bool,
    ) -> (bool, Page) {
        use Page::*;
        let mobile = if ctx.device == Device::Mobile {
            0.3
        } else {
            0.0
        };
        let p_leave = if pages == 1 {
            sigmoid(-0.5 - 1.1 * u + mobile)
        } else {
            // Price-conscious visitors compare: they stay for more products.
            let compare = if page == Product {
                1.2 * (w - 0.5)
            } else {
                0.0
            };
            sigmoid(-1.7 - 0.7 * u + 0.04 * f64::from(pages) - compare)
        };
        let has_cart = !self.cart.is_empty();
        match page {
            Checkout(step) => {
                if step >= 4 {
                    return (true, Home);
                }
                let coupon = if self.coupon_focused { 0.4 } else { 0.0 };
                let p_next = sigmoid(1.2 + 0.7 * u - 0.5 * w - coupon);
                if self.chance(p_next) {
                    (false, Checkout(step + 1))
                } else if self.chance(0.4) {
                    (false, Cart)
                } else {
                    (true, Home)
                }
            }
            Cart if has_cart => {
                let ret = if ctx.returning_visitor { 0.3 } else { 0.0 };
                if self.chance(sigmoid(0.3 + 0.9 * u - 0.6 * w + ret)) {
                    return (false, Checkout(1));
                }
                if self.chance(sigmoid(-1.6 - 0.8 * u)) {
                    return (true, Home);
                }
                let next = [Product, Category, Search][pick(self.rng, &[0.5, 0.35, 0.15])];
                (false, next)
            }
            _ => {
                if self.chance(p_leave) {
                    return (true, Home);
                }
                let cart_w = if has_cart { 0.1 } else { 0.0 };
                let (cands, weights): (&[Page], Vec<f64>) = match page {
                    Home => (
                        &[Category, Search, Product, Other],
                        vec![0.45, 0.25, 0.25, 0.05],
                    ),
                    Category => (
                        &[Product, Category, Search, Home, Cart],
                        vec![0.7, 0.12, 0.1, 0.05, cart_w],
                    ),
                    Search if last_search_empty => (&[Search, Category, Home], vec![0.5, 0.3, 0.2]),
                    Search => (&[Product, Search, Category], vec![0.8, 0.1, 0.1]),
                    Product if just_added => (&[Cart, Product, Category], vec![0.55, 0.3, 0.15]),
                    Product => (
                        &[Product, Category, Search, Cart, Home],
                        vec![0.4, 0.3, 0.15, cart_w, 0.05],
                    ),
                    _ => (&[Category, Product, Home], vec![0.5, 0.3, 0.2]),
                };
                (false, cands[pick(self.rng, &weights)])
            }
        }
    }
}
