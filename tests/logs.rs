//! No patient data in the logs: sqlx logs the text of a statement slower than a second, and
//! the writes the server queues carry their values in their text. Statement logging is off on
//! both engines; a slow statement holding a marker value is run and the logs searched for it.
mod common;

use common::{Engine, TestApp};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, OnceLock};
use tracing_subscriber::fmt::MakeWriter;

/// Everything this test binary logs, at every level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .init();
        captured
    })
}

fn logged() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned()
}

async fn a_slow_statement_is_not_logged_with_its_values(engine: Engine) {
    logs();
    let app = TestApp::spawn(engine).await;
    let marker = format!("Marker-{}", uuid::Uuid::new_v4().simple());
    // Longer than sqlx's one-second threshold for slow statements. SQLite has no sleep: the
    // statement counts, and counts twice as far until it takes a second on this machine.
    let mut count = 4_000_000;
    loop {
        let sql = match engine {
            Engine::Sqlite => format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) \
                 SELECT count(*) AS c, '{marker}' AS m FROM n"
            ),
            Engine::Postgres => format!("SELECT pg_sleep(1.2), '{marker}' AS m"),
        };
        let started = std::time::Instant::now();
        let rows = app.db.fetch_all(&sql, &[]).await.unwrap();
        assert_eq!(rows[0].string("m").unwrap(), marker);
        if started.elapsed() >= std::time::Duration::from_millis(1100) {
            break;
        }
        assert!(
            engine == Engine::Sqlite && count < 1_000_000_000,
            "the statement was not slow: {:?}",
            started.elapsed()
        );
        count *= 2;
    }
    // The logs are captured (the marker logged on purpose is there) but hold no statement text.
    let seen = format!("seen-{marker}");
    tracing::warn!(check = %seen, "log capture works");
    let text = logged();
    assert!(text.contains(&seen), "nothing was captured");
    assert!(
        !text.contains(&format!("'{marker}'")),
        "a statement's values reached the logs"
    );
}

/// Every name, identifier, birth date, phone and address line of `patients`.
fn personal_data(patients: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for p in patients {
        for n in p["name"].as_array().into_iter().flatten() {
            out.extend(n["family"].as_str().map(str::to_owned));
            for g in n["given"].as_array().into_iter().flatten() {
                out.extend(g.as_str().map(str::to_owned));
            }
        }
        for i in p["identifier"].as_array().into_iter().flatten() {
            out.extend(i["value"].as_str().map(str::to_owned));
        }
        for t in p["telecom"].as_array().into_iter().flatten() {
            out.extend(t["value"].as_str().map(str::to_owned));
        }
        for a in p["address"].as_array().into_iter().flatten() {
            for l in a["line"].as_array().into_iter().flatten() {
                out.extend(l.as_str().map(str::to_owned));
            }
        }
        out.extend(p["birthDate"].as_str().map(str::to_owned));
    }
    out.retain(|s| s.len() >= 4);
    out
}

/// A run of a clinic's day (patients written, read, searched by name and identifier, searches
/// that fail, writes that are refused, a token that is not one) leaves logs that hold none of the
/// patients' data, at every level.
async fn the_logs_of_a_run_hold_no_patient_data(engine: Engine) {
    logs();
    let app = TestApp::spawn(engine).await;
    let patients: Vec<Value> = common::data("synthea/patients.json")
        .as_array()
        .unwrap()
        .iter()
        .take(8)
        .cloned()
        .collect();
    for p in &patients {
        let id = p["id"].as_str().unwrap();
        let r = app.put(&format!("/fhir/Patient/{id}"), p).await;
        assert!(r.status.is_success(), "{}", r.text);
        assert_eq!(app.get(&format!("/fhir/Patient/{id}")).await.status, 200);
        let family = p["name"][0]["family"].as_str().unwrap();
        let identifier = p["identifier"][1]["value"].as_str().unwrap();
        let r = app.get(&format!("/fhir/Patient?family={family}")).await;
        assert_eq!(r.status, 200);
        let r = app
            .get(&format!("/fhir/Patient?identifier={identifier}"))
            .await;
        assert_eq!(r.status, 200);
        // Refused, with the data in the request.
        let r = app.get(&format!("/fhir/Patient?birthdate={family}")).await;
        assert_eq!(r.status, 400);
        let mut bad = p.clone();
        bad["gender"] = json!(family);
        let r = app.put(&format!("/fhir/Patient/{id}"), &bad).await;
        assert!(r.status.is_client_error(), "{}", r.text);
        let r = app
            .client
            .get(app.url(&format!("/fhir/Patient?name={family}")))
            .header("authorization", format!("Bearer {family}.{identifier}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // A refusal is logged once, inside its request's span: the request id and what the request
    // did, never its path.
    let request_id = format!("logs-{}", uuid::Uuid::new_v4().simple());
    let r = app
        .client
        .get(app.url("/fhir/Patient?birthdate=not-a-date"))
        .header("x-request-id", &request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let text = logged();
    assert!(text.contains("request"), "the requests were logged");
    let refusal: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&request_id) && l.contains("request refused"))
        .collect();
    assert_eq!(refusal.len(), 1, "{refusal:?}");
    assert!(
        refusal[0].contains("route=\"search-type\"") && !refusal[0].contains("birthdate"),
        "{}",
        refusal[0]
    );
    for secret in personal_data(&patients).iter().chain([&app.token]) {
        assert!(
            !text.contains(secret.as_str()),
            "'{secret}' reached the logs"
        );
    }
}

on_both_engines!(
    a_slow_statement_is_not_logged_with_its_values,
    the_logs_of_a_run_hold_no_patient_data
);
