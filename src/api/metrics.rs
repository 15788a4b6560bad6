//! `/metrics` in Prometheus' text format: requests by route and status, their latencies by
//! route, and the audit writer's queue depth, events, batches, time and failures. Routes are
//! named by what they do (`rest:read`, `token:token`), never by their path: paths carry ids.

use super::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Instant;

/// The upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

#[derive(Default)]
struct Latency {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The counts kept since the server started.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: Mutex<BTreeMap<&'static str, Latency>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    fn count(&self, route: &'static str, status: u16, seconds: f64) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((route, status)).or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            let l = l.entry(route).or_default();
            l.count += 1;
            l.sum += seconds;
            for (i, b) in BUCKETS.iter().enumerate() {
                if seconds <= *b {
                    l.buckets[i] += 1;
                }
            }
        }
    }
}

impl Metrics {
    /// Counts and times a request of `route` answered by `answer`.
    pub async fn observe<Fut>(&self, route: &'static str, answer: Fut) -> Response
    where
        Fut: std::future::Future<Output = Response>,
    {
        let started = Instant::now();
        let res = answer.await;
        self.count(
            route,
            res.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
        res
    }
}

/// `GET /metrics`
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::new();
    out.push_str("# HELP expediente_requests_total Requests answered, by route and status.\n");
    out.push_str("# TYPE expediente_requests_total counter\n");
    if let Ok(r) = state.metrics.requests.lock() {
        for ((route, status), n) in r.iter() {
            let _ = writeln!(
                out,
                "expediente_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
    }
    out.push_str("# HELP expediente_request_duration_seconds Time to answer, by route.\n");
    out.push_str("# TYPE expediente_request_duration_seconds histogram\n");
    if let Ok(l) = state.metrics.latency.lock() {
        for (route, h) in l.iter() {
            for (b, n) in BUCKETS.iter().zip(h.buckets) {
                let _ = writeln!(
                    out,
                    "expediente_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "expediente_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n\
                 expediente_request_duration_seconds_sum{{route=\"{route}\"}} {}\n\
                 expediente_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count, h.sum, h.count
            );
        }
    }
    if let Some(s) = state.fhir.audit.stats() {
        let gauge = |out: &mut String, name: &str, kind: &str, help: &str, v: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        gauge(
            &mut out,
            "expediente_audit_queue_depth",
            "gauge",
            "Audit events waiting to be stored.",
            s.depth.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "expediente_audit_events_total",
            "counter",
            "Audit events stored by the queue (reads, refusals).",
            s.events.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "expediente_audit_batches_total",
            "counter",
            "Transactions that stored queued audit events.",
            s.batches.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "expediente_audit_write_seconds_total",
            "counter",
            "Time spent storing queued audit events.",
            (s.write_micros.load(Ordering::Relaxed) as f64 / 1e6).to_string(),
        );
        gauge(
            &mut out,
            "expediente_audit_failures_total",
            "counter",
            "Batches of audit events that could not be stored.",
            s.failures.load(Ordering::Relaxed).to_string(),
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
