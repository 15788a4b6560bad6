//! Fuzz driver: sends a running server mutated requests over HTTP for a while, and reports
//! every answer that breaks the promises of docs/RELIABILITY.md.
//!
//! `fuzz --base http://127.0.0.1:PORT/fhir --seconds N --out DIR [--seed S] [--concurrency C]
//! [--log FILE]` (`--log` writes one line per request: time, outcome, transport, generator).
//!
//! Before the clock starts it reads the server's CapabilityStatement (the search parameters of
//! each type) and stores valid resources from tests/data with PUT (practitioners, patients,
//! encounters, some observations, prescriptions, allergies and reports), so that searches and
//! references find data. Then, for N seconds, C workers (default 4) send requests made from
//! mutations of valid ones (see `fuzz/generate.rs`, `fuzz/search.rs` and `fuzz/mutate.rs`):
//!
//! - creates, updates and `$validate` of the seven types (Patient, Practitioner, Encounter,
//!   Observation, MedicationRequest, AllergyIntolerance, DiagnosticReport), their JSON mutated
//!   (keys dropped, duplicated or renamed; values of another JSON type; strings of 10 KB to
//!   1 MB; numbers past any precision; lone surrogates, NUL, RTL and emoji; nesting up to 10,000
//!   levels; a mismatched resourceType; truncated or flipped bytes; a wrong Content-Type), with
//!   odd ids in the URL;
//! - transactions and batches of those resources (0 to 2,000 entries, once in a while 10,001),
//!   with fullUrls, request methods and URLs, and references mutated (unknown `urn:uuid:`,
//!   circular), entries duplicated;
//! - searches, GET and POST `_search`, by type, system and compartment, with the server's
//!   parameters and `_id`, `_count`, `_sort`, `_include`, `_revinclude`, `_has`, chains, modifiers
//!   and prefixes, values escaped, percent-encoded, long, repeated past the limits (50
//!   parameters, 100 values, 3 chain links), and random bytes in the query string;
//! - reads, history, deletes, JSON Patches and odd methods;
//! - valid writes sent 2 to 4 times at once (an update that creates, a conditional create, an
//!   update that makes a new version), racing each other;
//! - requests that are not quite HTTP, sent over TCP: a 70 KB URL, a 200 KB header, a request
//!   line that is not HTTP, conflicting lengths, a bad chunked body; and every 45 seconds of a
//!   long enough run, a body shorter than its Content-Length, next to the workers.
//!
//! Requests an HTTP client would send as given go through reqwest (keep-alive connections);
//! the others, as bytes over a new TCP connection. A request whose connection closed without an
//! answer is sent again over a new connection, and counts as closed only if that fails too (the
//! server closes a connection after answering early, before a body it did not read, and a
//! client still sending that body sees the connection fail). A request answered 503 `transient`
//! (the database went away; the server says it may be sent again) is sent again once, after a
//! second; what that answers is judged.
//!
//! A finding is: a 5xx answer, or a 5xx entry of a batch answer (but a 503 whose
//! OperationOutcome has the code `timeout`, the documented answer to a request past a time
//! limit, is counted apart, and is no finding as an entry either); a 4xx or 5xx answer that
//! is not a JSON OperationOutcome served as `application/fhir+json`; an answer without an
//! `X-Request-ID` header; no answer within 30 s (a hang; the deliberately short body may take
//! 45 s, and its 408 OperationOutcome is expected); a connection closed without an answer; and,
//! after the run, `/health` not answering 200.
//!
//! Each finding is saved as `DIR/<hash>.json`, the hash being that of the request, so that a
//! request found again is not saved twice: the reasons, the request (method, target, headers,
//! body; a body or target that is not UTF-8 in base64) and the answer. The run prints its seed
//! first (`--seed` makes each worker send the same inputs again; their interleaving, and so
//! the stored data they meet, may differ), the first findings as they come, and one summary
//! line.
//! Exit status: 0 without findings, 1 with some, 2 if the run could not start.

#[path = "fuzz/generate.rs"]
mod generate;
#[path = "fuzz/judge.rs"]
mod judge;
#[path = "fuzz/mutate.rs"]
mod mutate;
#[path = "fuzz/raw.rs"]
mod raw;
#[path = "fuzz/search.rs"]
mod search;

use clap::Parser;
use generate::{Corpus, Input, TYPES};
use judge::{is_timeout, judge, outcome_code, record};
use mutate::Rng;
use raw::{Answer, Outcome};
use serde_json::Value;
use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An answer later than this is a hang.
const HANG: Duration = Duration::from_secs(30);
/// How long the deliberately short body may wait for its 408.
const SLOW_LIMIT: Duration = Duration::from_secs(45);
/// Findings printed as they come; later ones are only saved and counted.
const PRINTED: usize = 20;
/// Finding files written in one run at most (each may hold a body of megabytes).
const SAVED: usize = 2000;

#[derive(Parser)]
#[command(about = "Sends a running FHIR server mutated requests and reports what breaks")]
struct Args {
    /// FHIR base URL, e.g. http://127.0.0.1:8080/fhir.
    #[arg(long)]
    base: String,
    /// How long to send requests, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Where findings are saved.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the inputs (by default, from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Requests in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// A file to write one line per request to: its outcome, time and generator.
    #[arg(long)]
    log: Option<PathBuf>,
    /// The test data (tests/data of this repository by default).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"))]
    data: PathBuf,
}

/// Counts of the run.
#[derive(Default)]
struct Stats {
    sent: u64,
    /// Answers by status class, 1xx to 5xx (a 503 `timeout` is counted apart).
    classes: [u64; 6],
    timeouts: u64,
    slow: u64,
    closed: u64,
    hangs: u64,
    resent: u64,
    transient: u64,
    findings: u64,
    saved: usize,
}

struct Shared {
    corpus: Corpus,
    client: reqwest::Client,
    /// `http://host:port`, the base URL without its path.
    origin: String,
    out: PathBuf,
    seed: u64,
    stats: Mutex<Stats>,
    seen: Mutex<HashSet<String>>,
    log: Option<Mutex<std::fs::File>>,
    /// When the driver started (the times of the log).
    start: Instant,
    /// Set when the server stopped answering /health: the workers stop.
    down: AtomicBool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    match run(args).await {
        Ok(findings) => std::process::exit(i32::from(findings > 0)),
        Err(e) => {
            eprintln!("fuzz: {e:#}");
            std::process::exit(2);
        }
    }
}

async fn run(args: Args) -> anyhow::Result<u64> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    let url = reqwest::Url::parse(&args.base)?;
    let host = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port_or_known_default().unwrap_or(80)
    );
    let origin = format!("{}://{host}", url.scheme());
    let base = url.path().trim_end_matches('/').to_owned();
    println!(
        "fuzz: seed {seed} (--seed {seed} repeats the inputs), {} for {} s, {} at a time",
        args.base, args.seconds, args.concurrency
    );
    std::fs::create_dir_all(&args.out)?;
    let client = reqwest::Client::builder()
        .timeout(HANG)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    let metadata: Value = client
        .get(format!("{origin}{base}/metadata"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut params = vec![vec!["_id".to_owned()]; TYPES.len()];
    for r in metadata["rest"][0]["resource"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(t) = TYPES.iter().position(|t| r["type"] == *t) {
            params[t].extend(
                r["searchParam"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["name"].as_str().map(str::to_owned)),
            );
        }
    }
    let resources = generate::load(&args.data)?;
    let mut words = HashSet::new();
    resources
        .iter()
        .flatten()
        .for_each(|r| generate::words(r, &mut words));
    let mut words: Vec<String> = words.into_iter().collect();
    words.sort();
    let mut corpus = Corpus {
        base,
        host,
        resources,
        params,
        ids: vec![vec![]; TYPES.len()],
        words,
    };
    let seeds = generate::seeds(&mut corpus);
    let shared = Arc::new(Shared {
        corpus,
        client,
        origin,
        out: args.out.clone(),
        seed,
        stats: Mutex::default(),
        seen: Mutex::default(),
        log: match &args.log {
            Some(path) => Some(Mutex::new(std::fs::File::create(path)?)),
            None => None,
        },
        down: AtomicBool::new(false),
        start: Instant::now(),
    });

    // The stored data, one group after the other.
    let concurrency = args.concurrency.max(1);
    for group in seeds {
        use futures_util::stream::{self, StreamExt};
        stream::iter(group)
            .for_each_concurrent(concurrency, |input| {
                let shared = shared.clone();
                async move { attempt(&shared, &input, 0).await }
            })
            .await;
    }

    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let mut tasks = vec![];
    for worker in 1..=concurrency {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng =
                Rng::new(shared.seed ^ (worker as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            while Instant::now() < deadline && !shared.down.load(Ordering::Relaxed) {
                // Made off the runtime's threads: a big input takes a while to make, and the
                // answers of the others would wait meanwhile (and look late).
                let maker = shared.clone();
                let made = tokio::task::spawn_blocking(move || {
                    let input = generate::next(&maker.corpus, &mut rng);
                    (input, rng)
                });
                let Ok((input, back)) = made.await else {
                    break;
                };
                rng = back;
                let copies = (0..input.copies).map(|_| attempt(&shared, &input, worker));
                futures_util::future::join_all(copies).await;
            }
        }));
    }
    // The short bodies wait 30 s for their 408: one at a time, beside the workers, while at
    // least 35 s of the run remain.
    let mut next_slow = start;
    while Instant::now() < deadline && !shared.down.load(Ordering::Relaxed) {
        if Instant::now() >= next_slow
            && deadline.saturating_duration_since(Instant::now()) >= Duration::from_secs(35)
        {
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move {
                let input = generate::slow_body(&shared.corpus);
                attempt(&shared, &input, 0).await;
            }));
            next_slow = Instant::now() + SLOW_LIMIT;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for task in tasks {
        let _ = task.await;
    }

    let healthy = healthy(&shared).await;
    let stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
    let findings = stats.findings + u64::from(!healthy);
    let c = &stats.classes;
    println!(
        "fuzz: {} requests in {} s (seed {seed}): 1xx {}, 2xx {}, 3xx {}, 4xx {}, 5xx {}; \
         not findings: 503 timeout {}, 408 to the short body {}, answered only on a new \
         connection {}, sent again after a 503 transient {}; closed {}, hangs {}, health {}; \
         findings {findings} ({} distinct inputs, in {})",
        stats.sent,
        start.elapsed().as_secs(),
        c[1],
        c[2],
        c[3],
        c[4],
        c[5],
        stats.timeouts,
        stats.slow,
        stats.resent,
        stats.transient,
        stats.closed,
        stats.hangs,
        if healthy { "ok" } else { "FAILED" },
        shared.seen.lock().map(|s| s.len()).unwrap_or(0),
        args.out.display(),
    );
    Ok(findings)
}

/// Whether `/health` answers 200 within 10 s, over a connection of its own: a kept connection
/// of the workers' the server is closing (after a fuzzed `Connection: close`) fails the request
/// with no fault of the server's, as a fuzzed request is sent again over a new connection.
async fn healthy(shared: &Shared) -> bool {
    let Ok(client) = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
    else {
        return false;
    };
    let answer = client
        .get(format!("{}/health", shared.origin))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    answer.is_ok_and(|a| a.status() == 200)
}

/// Sends `input`, judges what came back, counts it and saves it if it is a finding.
async fn attempt(shared: &Shared, input: &Input, worker: usize) {
    let (mut outcome, mut transport) = send(shared, input).await;
    // A database that went away answers 503 `transient` ("may be sent again"): once it is.
    let transient = matches!(&outcome, Outcome::Answer(a) if a.status == 503
        && outcome_code(a).is_ok_and(|c| c == "transient"));
    if transient {
        tokio::time::sleep(Duration::from_secs(1)).await;
        (outcome, transport) = send(shared, input).await;
    }
    let reasons = judge(input, &outcome);
    if let Some(log) = &shared.log {
        let line = match &outcome {
            Outcome::Answer(a) => format!("{} {}ms", a.status, a.elapsed.as_millis()),
            Outcome::Hang(_) => "hang".to_owned(),
            Outcome::Closed(_) => "closed".to_owned(),
        };
        let mut file = log.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            file,
            "{:.1} {line} {transport} {} ({})",
            shared.start.elapsed().as_secs_f64(),
            input.method,
            input.label
        );
    }
    if let Some(hash) = tally(shared, input, &outcome, &reasons, transport, transient) {
        let file = shared.out.join(format!("{hash}.json"));
        if !file.exists() {
            let record = record(shared.seed, input, &outcome, &reasons, transport, worker);
            if let Err(e) = std::fs::write(&file, record) {
                eprintln!("fuzz: writing {}: {e}", file.display());
            }
        }
    }
    if matches!(outcome, Outcome::Closed(_) | Outcome::Hang(_)) && !healthy(shared).await {
        println!("fuzz: the server no longer answers /health; stopping");
        shared.down.store(true, Ordering::Relaxed);
    }
}

/// Counts an outcome and prints the first findings; answers the hash of a finding to save.
fn tally(
    shared: &Shared,
    input: &Input,
    outcome: &Outcome,
    reasons: &[String],
    transport: &str,
    transient: bool,
) -> Option<String> {
    let mut stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
    stats.sent += 1;
    stats.transient += u64::from(transient);
    if transport == "tcp (resent)" {
        stats.resent += 1;
    }
    match outcome {
        Outcome::Answer(a) if is_timeout(a) => {
            stats.timeouts += 1;
            if stats.timeouts <= 5 {
                println!(
                    "note: 503 timeout after {} ms ({})",
                    a.elapsed.as_millis(),
                    input.label
                );
            }
        }
        Outcome::Answer(a) => {
            stats.classes[usize::from(a.status / 100).min(5)] += 1;
            if input.slow && a.status == 408 {
                stats.slow += 1;
            }
        }
        Outcome::Hang(_) => stats.hangs += 1,
        Outcome::Closed(_) => stats.closed += 1,
    }
    if reasons.is_empty() {
        return None;
    }
    stats.findings += 1;
    let hash = input.hash();
    if stats.findings as usize <= PRINTED {
        let target = String::from_utf8_lossy(&input.target);
        let target: String = target.chars().take(100).collect();
        println!(
            "finding {hash}: {} ({}; {} {target})",
            reasons.join("; "),
            input.label,
            input.method
        );
    }
    let new = shared
        .seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(hash.clone());
    if !new || stats.saved >= SAVED {
        return None;
    }
    stats.saved += 1;
    Some(hash)
}

/// Sends `input` by HTTP client if it would send it as given, else over TCP; answers what came
/// back and how it went.
async fn send(shared: &Shared, input: &Input) -> (Outcome, &'static str) {
    let limit = if input.slow { SLOW_LIMIT } else { HANG };
    let wire = input.wire(&shared.corpus.host);
    let Some(request) = http_request(shared, input) else {
        return (
            raw::exchange(&shared.corpus.host, &wire, limit).await,
            "tcp",
        );
    };
    let start = Instant::now();
    let outcome = match shared.client.execute(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            match response.bytes().await {
                Ok(body) => Outcome::Answer(Answer {
                    status,
                    headers,
                    body: body.to_vec(),
                    elapsed: start.elapsed(),
                }),
                Err(e) if e.is_timeout() => Outcome::Hang(start.elapsed()),
                Err(e) => Outcome::Closed(chain(&e)),
            }
        }
        Err(e) if e.is_timeout() => Outcome::Hang(start.elapsed()),
        // The client would not send it (a URL too long for it): over TCP then.
        Err(e) if e.is_builder() => {
            return (
                raw::exchange(&shared.corpus.host, &wire, limit).await,
                "tcp",
            )
        }
        Err(e) => Outcome::Closed(chain(&e)),
    };
    match outcome {
        // A kept-alive connection may close under a request; a new one tells the server's fault.
        Outcome::Closed(first) => match raw::exchange(&shared.corpus.host, &wire, limit).await {
            Outcome::Closed(second) => (
                Outcome::Closed(format!("{first}; sent again: {second}")),
                "http, then tcp",
            ),
            other => (other, "tcp (resent)"),
        },
        other => (other, "http"),
    }
}

/// The request as reqwest would send it, if it sends it as given (same method, target and
/// headers; no dot segments resolved, no character encoded).
fn http_request(shared: &Shared, input: &Input) -> Option<reqwest::Request> {
    if input.raw.is_some() {
        return None;
    }
    let target = std::str::from_utf8(&input.target).ok()?;
    let method = reqwest::Method::from_bytes(input.method.as_bytes()).ok()?;
    let mut builder = shared
        .client
        .request(method, format!("{}{target}", shared.origin));
    for (name, value) in &input.headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).ok()?;
        builder = builder.header(name, reqwest::header::HeaderValue::from_bytes(value).ok()?);
    }
    let request = builder.body(input.body.clone()).build().ok()?;
    let url = request.url();
    let sent = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    (sent == target).then_some(request)
}

/// An error and its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}
