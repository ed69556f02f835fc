//! How many threads the cross-validation folds of a session fit run on
//! (`nudge-train fit --threads`): one process-wide setting, since the folds
//! are the only parallel step and each thread holds one fold's design
//! matrix (so memory grows with the thread count, not with the folds).

use std::sync::atomic::{AtomicUsize, Ordering};

/// 0 = the number of cores.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets the thread count (0 = the number of cores).
pub fn set_threads(n: usize) {
    THREADS.store(n, Ordering::Relaxed);
}

/// The thread count in force: the setting, else the number of cores.
pub fn threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Runs `run(0..k)` on at most [`threads`] threads; results in fold
/// order, whatever the thread count.
pub fn each_fold<T: Send>(k: usize, run: impl Fn(usize) -> T + Sync) -> Vec<T> {
    use std::sync::Mutex;
    let threads = threads().clamp(1, k.max(1));
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<Option<T>>> = Mutex::new((0..k).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let f = next.fetch_add(1, Ordering::Relaxed);
                if f >= k {
                    break;
                }
                let r = run(f);
                done.lock().expect("no panic while holding the lock")[f] = Some(r);
            });
        }
    });
    done.into_inner()
        .expect("no panic while holding the lock")
        .into_iter()
        .map(|r| r.expect("every fold ran"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_in_fold_order_on_any_thread_count() {
        for t in [1, 2, 5] {
            super::set_threads(t);
            assert_eq!(super::each_fold(5, |f| f * 10), vec![0, 10, 20, 30, 40]);
        }
        super::set_threads(0);
    }
}
