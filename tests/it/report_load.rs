//! Decide's latency idle and under 16 concurrent Report callers, against a
//! build of the `nudge` binary serving a copy of a large decision log. A
//! measurement, not a test: run by hand with `scripts/report_load.sh`,
//! which prepares the log and runs it for each build.
//!
//! Environment: `NUDGE_LOAD_LOG` (required) the decision log folder to
//! serve a copy of; `NUDGE_BIN` the binary (default: this build's);
//! `NUDGE_LOAD_SECS` the length of each phase (default 10).

use crate::decide::hesitant_session;
use crate::util::*;
use nudge::grpc::pb;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Concurrent Decide callers (closed loop).
const DECIDERS: usize = 4;
/// Concurrent background callers in the loaded phases.
const CALLERS: usize = 16;

/// What the background callers do while Decide is measured.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Load {
    /// Report, each caller at most once a second (dashboards).
    PacedReports,
    /// Report, back to back.
    Reports,
    /// Budget back to back: the cost of any 16 busy callers, for reference.
    Budget,
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Load::PacedReports => "16 reports, each 1/s",
            Load::Reports => "16 reports, back to back",
            Load::Budget => "16 budgets, back to back",
        }
    }
}

struct Latencies {
    calls: usize,
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// An answer read off the wire and dropped undecoded: the measuring
/// process (a debug build) must not be what is slow.
#[derive(Clone, PartialEq, prost::Message)]
struct Skipped {}

/// One unary call whose answer is not decoded.
async fn call_skipping_answer<M>(channel: &Channel, method: &'static str, req: M)
where
    M: prost::Message + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<M, Skipped>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
    grpc.unary(tonic::Request::new(req), path, codec)
        .await
        .unwrap();
}

/// Decides for `secs` from `DECIDERS` callers; every session is new.
async fn decide_load(channel: &Channel, secs: u64, tag: &str) -> Latencies {
    let until = Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..DECIDERS)
        .map(|w| {
            let mut c = pb::offers_client::OffersClient::new(channel.clone());
            let tag = tag.to_owned();
            tokio::spawn(async move {
                let mut took = Vec::new();
                let mut i = 0;
                while Instant::now() < until {
                    let mut events = hesitant_session(20_000);
                    for e in &mut events {
                        e.at_ms = 0;
                    }
                    let req = decide(&format!("load-{tag}-{w}-{i}"), events);
                    let t = Instant::now();
                    c.decide(req).await.expect("decide");
                    took.push(t.elapsed());
                    i += 1;
                }
                took
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let q = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1e3;
    Latencies {
        calls: all.len(),
        per_s: all.len() as f64 / secs as f64,
        p50_ms: q(0.50),
        p99_ms: q(0.99),
    }
}

/// The server's peak and current resident memory, MiB.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kib("VmHWM:") / 1024.0, kib("VmRSS:") / 1024.0)
}

/// CPU time the server used so far, seconds (user + system).
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime, stime
    // are the 12th and 13th.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// The server, stopped however the measurement ends (a failed call
/// panics).
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn copy_log(from: &Path, to: &Path) -> u64 {
    let mut bytes = 0;
    for f in nudge::decision_log::reader::log_files(from).unwrap() {
        let rel = f.strip_prefix(from).unwrap();
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        bytes += std::fs::copy(&f, &dest).unwrap();
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: scripts/report_load.sh"]
async fn decide_latency_idle_and_under_concurrent_reports() {
    let log = PathBuf::from(std::env::var("NUDGE_LOAD_LOG").expect("NUDGE_LOAD_LOG"));
    let bin = std::env::var_os("NUDGE_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nudge")), PathBuf::from);
    let secs: u64 = std::env::var("NUDGE_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let data = tempfile::tempdir().unwrap();
    let bytes = copy_log(&log, &data.path().join("log"));
    let config = data.path().join("nudge.toml");
    // The generated log is dated in the past: keep it from retention.
    std::fs::write(
        &config,
        "[budget]\ndaily_cap_cents = 100000000\n[log]\nretain_days = 3650\n",
    )
    .unwrap();
    let (child, addr) = spawn_nudge_bin(
        &bin,
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "--data-dir".as_ref(),
            data.path().as_os_str(),
        ],
        &[("NUDGE_VOUCHER_SECRET", TEST_SECRET)],
    );
    let server = Server(child);
    let pid = server.0.id();

    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = pb::offers_client::OffersClient::new(channel.clone());

    let t = Instant::now();
    c.report(pb::ReportRequest { since_ms: 0 }).await.unwrap();
    let first_report_ms = t.elapsed().as_secs_f64() * 1e3;
    let (rss_peak_first, _) = memory_mib(pid);

    let cpu0 = cpu_s(pid);
    let idle = decide_load(&channel, secs, "idle").await;
    let mut cpu = vec![cpu_s(pid) - cpu0];
    let (rss_peak_idle, _) = memory_mib(pid);

    let mut phases = vec![("idle", idle, 0)];
    for load in [Load::PacedReports, Load::Reports, Load::Budget] {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                // Each its own connection, as separate clients would be:
                // one shared with Decide would queue Decide behind them.
                let addr = addr.clone();
                let (stop, calls) = (stop.clone(), calls.clone());
                tokio::spawn(async move {
                    let channel = Channel::from_shared(format!("http://{addr}"))
                        .unwrap()
                        .connect()
                        .await
                        .unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        match load {
                            Load::Budget => {
                                let req = pb::BudgetRequest::default();
                                call_skipping_answer(&channel, "/nudge.v1.Offers/Budget", req)
                                    .await;
                            }
                            Load::Reports | Load::PacedReports => {
                                let req = pb::ReportRequest { since_ms: 0 };
                                call_skipping_answer(&channel, "/nudge.v1.Offers/Report", req)
                                    .await;
                            }
                        }
                        calls.fetch_add(1, Ordering::Relaxed);
                        if load == Load::PacedReports {
                            tokio::time::sleep(Duration::from_secs(1).saturating_sub(t.elapsed()))
                                .await;
                        }
                    }
                })
            })
            .collect();
        let cpu0 = cpu_s(pid);
        let l = decide_load(&channel, secs, &format!("p{}", phases.len())).await;
        cpu.push(cpu_s(pid) - cpu0);
        stop.store(true, Ordering::Relaxed);
        for c in callers {
            c.await.unwrap();
        }
        phases.push((load.name(), l, calls.load(Ordering::Relaxed)));
    }
    let (rss_peak_loaded, rss_now) = memory_mib(pid);
    drop(server);

    println!(
        "binary {}\nlog {:.1} MB; first report {first_report_ms:.0} ms; peak RSS after it {rss_peak_first:.0} MiB",
        bin.display(),
        bytes as f64 / 1e6
    );
    let idle_p99 = phases[0].1.p99_ms;
    for ((name, l, calls), cpu) in phases.iter().zip(&cpu) {
        println!(
            "decide, {name:<28}: {} calls, {:.0}/s, p50 {:.2} ms, p99 {:.2} ms (x{:.2} idle); {:.1} background calls/s; server CPU {:.0} %",
            l.calls,
            l.per_s,
            l.p50_ms,
            l.p99_ms,
            l.p99_ms / idle_p99,
            *calls as f64 / secs as f64,
            100.0 * cpu / secs as f64
        );
    }
    println!(
        "server peak RSS: after idle {rss_peak_idle:.0} MiB, after the loaded phases {rss_peak_loaded:.0} MiB; now {rss_now:.0} MiB"
    );
}
