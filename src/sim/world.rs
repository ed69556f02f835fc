//! The simulated world: generated visitors on the virtual clock, each with
//! the moments a decision may be asked and the true response behind them.

use super::*;

/// One generated session with what the simulator needs about it.
pub(crate) struct Visit {
    pub(crate) s: GeneratedSession,
    /// What the visitor buys when converting (see the module docs).
    pub(crate) order_value_cents: i64,
    /// The order reaches the voucher minimum.
    pub(crate) redeemable: bool,
    /// Local day index (from the start) of the session's first moment.
    pub(crate) day: usize,
}

/// A decision moment, with the pure assessment at lambda = 0.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Moment {
    pub(crate) at_ms: i64,
    pub(crate) visit: u32,
    /// `events[..after_events]` known.
    pub(crate) after_events: u32,
    pub(crate) p: f64,
    pub(crate) segment: Segment,
    pub(crate) intent_cents: i64,
    pub(crate) day: usize,
}

pub(crate) struct World {
    pub(crate) visits: Vec<Visit>,
    pub(crate) moments: Vec<Moment>,
    pub(crate) start_ms: i64,
    pub(crate) days: usize,
}

pub(crate) fn local_midnight(settings: &Settings) -> Result<i64, SimError> {
    let (y, m, d) = START_DATE;
    settings
        .budgets
        .timezone
        .with_ymd_and_hms(y, m, d, 0, 0, 0)
        .earliest()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| "no local midnight on the start date".into())
}

pub(crate) fn build_world(
    args: &SimulateArgs,
    settings: &Settings,
    model: &Model,
) -> Result<World, SimError> {
    let start_ms = local_midnight(settings)?;
    let end_ms = start_ms + (args.hours * MS_PER_HOUR as f64).round() as i64;
    let budgets = &settings.budgets;
    let mut day_keys: Vec<String> = Vec::new();
    let mut day_index = |at_ms: i64| -> usize {
        let key = budgets.day_of(at_ms);
        match day_keys.iter().position(|k| *k == key) {
            Some(i) => i,
            None => {
                day_keys.push(key);
                day_keys.len() - 1
            }
        }
    };
    let client = ClientFeatures::default();
    let gen = Generator::new(GeneratorConfig {
        seed: args.seed,
        start_ms,
        sessions_per_hour: args.sessions_per_hour,
        world: args.world,
    });
    let mut visits = Vec::new();
    let mut moments = Vec::new();
    for s in gen.take_while(|s| s.events[0].at_ms < end_ms) {
        let first = match s.decision_points.iter().find(|p| p.at_ms < end_ms) {
            Some(p) => p.at_ms,
            None => continue,
        };
        let visit = u32::try_from(visits.len()).map_err(|_| "too many sessions")?;
        let day = day_index(first);
        let mut state = SessionState::new(s.context);
        let mut applied = 0;
        for p in s.decision_points.iter().filter(|p| p.at_ms < end_ms) {
            for e in &s.events[applied..p.after_events] {
                state.apply(e);
            }
            applied = p.after_events;
            let a = engine::assess(&state, &client, None, p.at_ms, model, &settings.policy, 0.0)?;
            moments.push(Moment {
                at_ms: p.at_ms,
                visit,
                after_events: u32::try_from(p.after_events).unwrap_or(u32::MAX),
                p: a.score.probability,
                segment: a.segment,
                intent_cents: a.intent_value_cents,
                day: day_index(p.at_ms),
            });
        }
        let full = crate::sim::synth::state_at(&s, usize::MAX);
        let order_value_cents = match full.intent_value_cents() {
            v if v > 0 => v,
            _ => (s.truth.basket_eur * 100.0).round() as i64,
        };
        debug_assert!(!s.outcome.converted || s.outcome.order_value_cents == order_value_cents);
        visits.push(Visit {
            order_value_cents,
            redeemable: order_value_cents >= settings.min_order_cents,
            day,
            s,
        });
    }
    moments.sort_by_key(|m| (m.at_ms, m.visit, m.after_events));
    Ok(World {
        visits,
        moments,
        start_ms,
        days: day_keys.len(),
    })
}
