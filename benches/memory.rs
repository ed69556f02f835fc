//! Memory per live session in the embedded store: fills a
//! `MemorySessionStore` with N sessions of ~25 events each and divides the
//! growth of the resident set by N. Not a criterion benchmark (it measures
//! bytes, not time); run: `cargo bench --bench memory`.

use nudge::domain::session::{Context, Event, EventKind, PageKind, ProductKey, SessionState};
use nudge::store::{MemorySessionStore, SessionStore, SessionUpdate};
use std::time::Duration;

const SESSIONS: usize = 200_000;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` support
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = MemorySessionStore::new(Duration::from_secs(1_800), 10_000_000);
    let now = 1_795_341_600_000i64;
    let events: Vec<Event> = (0..25)
        .map(|i| Event {
            at_ms: now + i * 10_000,
            kind: EventKind::PageView {
                page: PageKind::Product,
                product: Some(ProductKey::of(&format!("p{}", i % 12))),
                price_cents: 5_000 + i * 100,
                dwell_ms: 20_000,
                scroll_depth: 0.5,
            },
        })
        .collect();
    let before = rss_bytes();
    rt.block_on(async {
        for i in 0..SESSIONS {
            let id = format!("session-{i:012}-abcdef");
            store
                .apply(
                    &id,
                    SessionUpdate {
                        context: Some(Context::default()),
                        events: &events,
                        now_ms: now,
                    },
                )
                .await
                .unwrap();
        }
    });
    let live = store.len();
    let after = rss_bytes();
    let per = (after.saturating_sub(before)) as f64 / SESSIONS as f64;
    println!(
        "memory: {SESSIONS} sessions ({live} live), size_of::<SessionState>() = {} bytes, resident growth = {:.0} bytes/session (includes the 26-byte key, moka's entry and index overhead)",
        std::mem::size_of::<SessionState>(),
        per
    );
}
