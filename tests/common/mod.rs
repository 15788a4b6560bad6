//! Test harness: starts the real server on a random port over a fresh database (a SQLite file,
//! or a new PostgreSQL database) and speaks HTTP to it.
#![allow(dead_code)]

pub mod acting;
pub mod backend;
pub mod browser;

use expediente::store::Db;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::path::PathBuf;

/// PostgreSQL server used by the tests; each test gets its own database on it.
pub fn postgres_admin_url() -> String {
    std::env::var("EXPEDIENTE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Engine)` as two tests, one per database engine.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Engine::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Engine::Postgres).await
                }
            )*
        }
    };
}

/// A running server and a direct handle on its database.
pub struct TestApp {
    pub base: String,
    /// The database URL the server uses.
    pub url: String,
    pub client: reqwest::Client,
    pub db: Db,
    /// The server's FHIR service, for what the HTTP layer does not reach.
    pub fhir: expediente::interactions::Fhir,
    pub engine: Engine,
    /// The access token `client` sends: a backend client's, `system/*.cruds`.
    pub token: String,
    /// The server's keys and tokens.
    pub auth: std::sync::Arc<expediente::auth::Auth>,
    /// The file of the key that encrypts the server's signing keys (for the commands that share
    /// the database).
    pub key_file: PathBuf,
    cleanup: Cleanup,
}

/// The audit journal folder of the test server whose key file is `key_file`.
pub fn journal_dir(key_file: &std::path::Path) -> PathBuf {
    key_file.with_extension("audit")
}

enum Cleanup {
    File(PathBuf),
    Database(String),
}

/// A token for the test client `test-admin` (registered here): `system/*.cruds` for `audience`.
pub async fn admin_token(state: &expediente::api::AppState, audience: &str) -> String {
    use expediente::auth::records;
    if records::client(&state.fhir.db, "test-admin")
        .await
        .unwrap()
        .is_none()
    {
        records::add_client(
            &state.fhir.db,
            &records::Client {
                client_id: "test-admin".into(),
                name: None,
                kind: "public".into(),
                secret_hash: None,
                jwks: None,
                jwks_url: None,
                redirect_uris: vec![],
                scope: "system/*.cruds".into(),
            },
        )
        .await
        .unwrap();
    }
    let req = expediente::auth::grant::TokenRequest {
        client_id: "test-admin".into(),
        scope: "system/*.cruds".into(),
        user: None,
        patient: None,
        encounter: None,
        expires_in: std::time::Duration::from_secs(3600),
        audience: audience.to_owned(),
    };
    let (token, _) = state.auth.grant(&req).await.unwrap().unwrap();
    token
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.key_file);
        let _ = std::fs::remove_dir_all(journal_dir(&self.key_file));
        match &self.cleanup {
            Cleanup::File(p) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
                }
            }
            Cleanup::Database(name) => {
                let name = name.clone();
                // Drop runs inside the test's runtime: do the async cleanup on a thread of its own.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    if let Ok(rt) = rt {
                        rt.block_on(async {
                            if let Ok(admin) = Db::connect(&postgres_admin_url()).await {
                                let _ = admin
                                    .execute(
                                        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                                        &[],
                                    )
                                    .await;
                                admin.close().await;
                            }
                        });
                    }
                })
                .join();
            }
        }
    }
}

/// A response: status, headers and the parsed JSON body (Null when empty).
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Asserts the body is an OperationOutcome and returns its issues' diagnostics and expressions.
    pub fn outcome(&self) -> Vec<(String, String, Option<String>)> {
        assert_eq!(
            self.body["resourceType"], "OperationOutcome",
            "not an OperationOutcome: {}",
            self.text
        );
        assert!(
            self.header("content-type")
                .unwrap_or_default()
                .starts_with("application/fhir+json"),
            "an OperationOutcome is served as application/fhir+json"
        );
        self.body["issue"]
            .as_array()
            .expect("issues")
            .iter()
            .map(|i| {
                (
                    i["code"].as_str().unwrap_or_default().to_owned(),
                    i["diagnostics"].as_str().unwrap_or_default().to_owned(),
                    i["expression"][0].as_str().map(str::to_owned),
                )
            })
            .collect()
    }
}

impl TestApp {
    pub async fn spawn(engine: Engine) -> TestApp {
        Self::spawn_with(engine, 1024 * 1024).await
    }

    pub async fn spawn_with(engine: Engine, max_body: usize) -> TestApp {
        let settings = expediente::Settings {
            max_body,
            ..Default::default()
        };
        Self::spawn_settings(engine, settings).await
    }

    pub async fn spawn_settings(engine: Engine, settings: expediente::Settings) -> TestApp {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("warn")
            .try_init();
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let (url, cleanup) = match engine {
            Engine::Sqlite => {
                let path = std::env::temp_dir().join(format!("expediente-test-{tag}.db"));
                (format!("sqlite://{}", path.display()), Cleanup::File(path))
            }
            Engine::Postgres => {
                let admin_url = postgres_admin_url();
                let admin = Db::connect(&admin_url).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL is unreachable at {admin_url} ({e}); PostgreSQL tests are never skipped")
                });
                let name = format!("expediente_test_{tag}");
                admin
                    .execute(&format!("CREATE DATABASE {name}"), &[])
                    .await
                    .expect("create test database");
                admin.close().await;
                let base = admin_url
                    .rsplit_once('/')
                    .map(|(b, _)| b)
                    .unwrap_or(&admin_url);
                (format!("{base}/{name}"), Cleanup::Database(name))
            }
        };
        let key_file = std::env::temp_dir().join(format!("expediente-test-{tag}.key"));
        let mut settings = settings;
        // Read events go through the journal, as `serve` writes them.
        settings
            .audit_journal
            .get_or_insert_with(|| journal_dir(&key_file));
        if settings.key.is_none() {
            settings.key = Some(
                expediente::auth::keys::KeyEncryptionKey::from_file(&key_file).expect("a key file"),
            );
        }
        let base_url = settings.base_url.clone();
        let state = expediente::build_state(&url, settings)
            .await
            .expect("server state");
        let db = state.fhir.db.clone();
        let fhir = state.fhir.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // The tests act as a backend client with every right, unless they say otherwise.
        let audience = base_url.unwrap_or_else(|| format!("http://{addr}/fhir"));
        let token = admin_token(&state, &audience).await;
        let auth = state.auth.clone();
        let app = expediente::api::router(state);
        tokio::spawn(expediente::api::serve(
            listener,
            app,
            std::future::pending(),
        ));
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        TestApp {
            base: format!("http://{addr}"),
            url: url.clone(),
            client: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .unwrap(),
            token,
            auth,
            db,
            fhir,
            engine,
            key_file,
            cleanup,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request with optional FHIR JSON body and extra headers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/fhir+json")
                .body(b.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::reply(req.send().await.expect("request")).await
    }

    pub async fn reply(res: reqwest::Response) -> Reply {
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("the body is JSON")
        };
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// PATCHes with a JSON Patch document (`application/json-patch+json`).
    pub async fn patch(&self, path: &str, ops: &Value) -> Reply {
        let res = self
            .client
            .patch(self.url(path))
            .header("content-type", "application/json-patch+json")
            .body(ops.to_string())
            .send()
            .await
            .expect("request");
        Self::reply(res).await
    }

    /// POSTs a form body (`application/x-www-form-urlencoded`): a POST `_search`.
    pub async fn post_form(&self, path: &str, body: String) -> Reply {
        let res = self
            .client
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("request");
        Self::reply(res).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::POST, path, Some(body), &[]).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::PUT, path, Some(body), &[]).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None, &[]).await
    }

    /// Creates a resource and returns it as the server stored it.
    pub async fn create(&self, resource: &Value) -> Value {
        let rt = resource["resourceType"].as_str().expect("resourceType");
        let r = self.post(&format!("/fhir/{rt}"), resource).await;
        assert_eq!(r.status, StatusCode::CREATED, "create failed: {}", r.text);
        r.body
    }

    /// The number of rows in a table, straight from the database.
    pub async fn count(&self, table: &str) -> i64 {
        self.db
            .fetch_optional(&format!("SELECT count(*) AS n FROM {table}"), &[])
            .await
            .expect("count")
            .expect("row")
            .bigint("n")
            .expect("n")
    }

    /// Every row of every table but the audit trail's, as text, table by table and sorted: two
    /// snapshots are equal only when the database holds exactly the same rows. (A failed
    /// request changes nothing, and leaves its audit event: tests/audit.rs checks those.)
    pub async fn snapshot(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        let (tables_sql, columns_sql) = match self.engine {
            Engine::Sqlite => (
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%'",
                "SELECT name FROM pragma_table_info(?)",
            ),
            Engine::Postgres => (
                "SELECT CAST(table_name AS TEXT) AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name NOT LIKE '_sqlx%'",
                "SELECT CAST(column_name AS TEXT) AS name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = ?",
            ),
        };
        let mut out = std::collections::BTreeMap::new();
        for t in self.db.fetch_all(tables_sql, &[]).await.expect("tables") {
            let table = t.string("name").expect("name");
            if table.starts_with("audit_") {
                continue;
            }
            let columns: Vec<String> = self
                .db
                .fetch_all(columns_sql, &[table.clone().into()])
                .await
                .expect("columns")
                .iter()
                .map(|c| c.string("name").expect("column"))
                .collect();
            assert!(!columns.is_empty(), "{table} has no columns");
            let row = columns
                .iter()
                .map(|c| match self.engine {
                    // (quote: a BLOB, such as a sealed key, as hex text.)
                    Engine::Sqlite => format!("quote(\"{c}\")"),
                    Engine::Postgres => format!("COALESCE(CAST(\"{c}\" AS TEXT), '~')"),
                })
                .collect::<Vec<_>>()
                .join(" || '|' || ");
            let mut rows: Vec<String> = self
                .db
                .fetch_all(&format!("SELECT {row} AS r FROM {table}"), &[])
                .await
                .expect("rows")
                .iter()
                .map(|r| r.string("r").expect("r"))
                .collect();
            rows.sort();
            out.insert(table, rows);
        }
        out
    }

    /// The ids of a searchset Bundle's entries, in order.
    pub fn ids(bundle: &Value) -> Vec<String> {
        bundle["entry"]
            .as_array()
            .map(|e| {
                e.iter()
                    .map(|e| e["resource"]["id"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Loads a JSON file of the test data.
/// A transaction Bundle of `entries`.
pub fn transaction(entries: Vec<Value>) -> Value {
    serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// A POST entry of `resource` under `full_url`.
pub fn post(full_url: &str, resource: Value) -> Value {
    let rt = resource["resourceType"].as_str().unwrap().to_owned();
    serde_json::json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": rt}})
}

/// `Type/id` of a response entry's location `Type/id/_history/n`.
pub fn located(entry: &Value) -> String {
    let loc = entry["response"]["location"]
        .as_str()
        .unwrap_or_else(|| panic!("no location: {entry}"));
    let parts: Vec<&str> = loc.split('/').collect();
    assert_eq!(parts.len(), 4, "{loc}");
    assert_eq!(parts[2], "_history");
    format!("{}/{}", parts[0], parts[1])
}

pub fn data(path: &str) -> Value {
    let p = format!("{}/tests/data/{path}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}")))
        .expect("test data is JSON")
}

/// A resource without its id and the server-kept parts of meta (versionId, lastUpdated), for
/// comparing what was sent with what came back. The rest of meta (profile, tag...) is kept.
pub fn strip_id_meta(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("id");
        let empty = match o.get_mut("meta").and_then(Value::as_object_mut) {
            Some(m) => {
                m.remove("versionId");
                m.remove("lastUpdated");
                m.is_empty()
            }
            None => false,
        };
        if empty {
            o.remove("meta");
        }
    }
    v
}

/// Where two JSON values first differ, for a readable failure.
pub fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => {
                        if let Some(d) = first_difference(p, q, &format!("{path}.{k}")) {
                            return Some(d);
                        }
                    }
                    _ => return Some(format!("{path}.{k} present on one side only")),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: sent {a}, got {b}")),
    }
}

/// Creates a minimal resource of `resource_type` under `id`, for references to point at.
pub async fn stub(app: &TestApp, resource_type: &str, id: &str) {
    let body = serde_json::json!({"resourceType": resource_type, "id": id});
    let r = app.put(&format!("/fhir/{resource_type}/{id}"), &body).await;
    assert!(
        r.status.is_success(),
        "stub {resource_type}/{id}: {}",
        r.text
    );
}

/// Writes a resource (PUT under its id, or POST), reads it back and asserts it is what was sent
/// apart from id and server meta. Returns what was read.
pub async fn round_trip(app: &TestApp, sent: &Value, put: bool) -> Value {
    let rt = sent["resourceType"].as_str().expect("resourceType");
    let r = if put {
        app.put(
            &format!("/fhir/{rt}/{}", sent["id"].as_str().expect("id")),
            sent,
        )
        .await
    } else {
        app.post(&format!("/fhir/{rt}"), sent).await
    };
    assert!(r.status.is_success(), "{rt}/{}: {}", sent["id"], r.text);
    let back = app
        .get(&format!(
            "/fhir/{rt}/{}",
            r.body["id"].as_str().expect("id")
        ))
        .await;
    let (a, b) = (strip_id_meta(sent), strip_id_meta(&back.body));
    assert!(
        a == b,
        "{rt}/{} changed: {}",
        sent["id"],
        first_difference(&a, &b, rt).unwrap_or_default()
    );
    back.body
}

/// Synthea resources refer to resources of their bundle by `urn:uuid:{id}`: rewrites such a
/// reference at `key` to `{resource_type}/{id}`.
pub fn local_reference(resource: &mut Value, key: &str, resource_type: &str) {
    if let Some(r) = resource[key]["reference"].as_str() {
        let local = r.replace("urn:uuid:", &format!("{resource_type}/"));
        resource[key]["reference"] = Value::String(local);
    }
}

/// Synthea resources name some practitioners by conditional reference
/// (`Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|N`), which the server resolves to the
/// one Practitioner holding that identifier. Stores `Practitioner/npi-N` with that identifier
/// for each N the test data name.
pub async fn synthea_practitioners(app: &TestApp) {
    let mut npis = std::collections::BTreeSet::new();
    for file in ["encounters", "diagnostic_reports", "medication_requests"] {
        let mut all = data(&format!("synthea/{file}.json"));
        visit_references(&mut all, &mut |r| {
            if let Some(n) = conditional_npi(r) {
                npis.insert(n);
            }
        });
    }
    for n in npis {
        let body = serde_json::json!({"resourceType": "Practitioner", "id": format!("npi-{n}"),
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": n}]});
        let r = app.put(&format!("/fhir/Practitioner/npi-{n}"), &body).await;
        assert!(r.status.is_success(), "{}", r.text);
    }
}

/// N of a conditional reference to the Practitioner with NPI N.
fn conditional_npi(reference: &str) -> Option<String> {
    reference
        .strip_prefix("Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|")
        .map(str::to_owned)
}

fn visit_references(v: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::Object(o) => {
            for (k, item) in o.iter_mut() {
                match item {
                    Value::String(s) if k == "reference" => f(s),
                    other => visit_references(other, f),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| visit_references(x, f)),
        _ => {}
    }
}

/// A Synthea resource's conditional practitioner references as the literal references they
/// resolve to (see [`synthea_practitioners`]).
pub fn literal_practitioners(resource: &mut Value) {
    visit_references(resource, &mut |r| {
        if let Some(n) = conditional_npi(r) {
            *r = format!("Practitioner/npi-{n}");
        }
    });
}

/// Stores a stub of every Synthea Patient and then every Synthea Encounter, for the resources
/// that point at them.
pub async fn load_synthea_patients_and_encounters(app: &TestApp) {
    for p in data("synthea/patients.json").as_array().expect("patients") {
        stub(app, "Patient", p["id"].as_str().expect("id")).await;
    }
    synthea_practitioners(app).await;
    for e in data("synthea/encounters.json")
        .as_array()
        .expect("encounters")
    {
        let mut e = e.clone();
        local_reference(&mut e, "subject", "Patient");
        literal_practitioners(&mut e);
        let r = app
            .put(
                &format!("/fhir/Encounter/{}", e["id"].as_str().expect("id")),
                &e,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
}
