//! The official SMART clients against the server: the JavaScript one (npm fhirclient 2.x) in a
//! test app page driven in headless Chromium (playwright-core), and the Python one (PyPI
//! fhirclient 4.x). Their packages are installed on first use (`npm ci` into tests/browser,
//! a virtual environment in target/); Chromium is Debian's (`.ci/run` installs it). Screenshots
//! of every page of every browser run are saved in target/tmp/screenshots.

use super::common::{Engine, TestApp};
use super::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One installation, and one browser, at a time.
static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} could not start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// tests/browser's npm packages, installed from its lock file when missing.
fn npm_packages() -> PathBuf {
    let dir = Path::new(ROOT).join("tests/browser");
    if !dir
        .join("node_modules/fhirclient/build/fhir-client.js")
        .exists()
        || !dir.join("node_modules/playwright-core").exists()
    {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir),
            "npm ci in tests/browser",
        );
    }
    dir
}

/// A Python with the SMART client, in a virtual environment made on first use.
fn python() -> PathBuf {
    let venv = Path::new(ROOT).join("target/smart-python");
    let py = venv.join("bin/python");
    let marker = venv.join("installed-4.4.0");
    if !marker.exists() {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv",
        );
        run(
            Command::new(&py)
                .args(["-m", "pip", "install", "-q", "-r"])
                .arg(Path::new(ROOT).join("tests/python/requirements.txt")),
            "pip install fhirclient",
        );
        std::fs::write(&marker, "").unwrap();
    }
    py
}

fn chromium() -> String {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&path).exists(),
        "headless Chromium is needed at {path} (Debian: apt-get install chromium; .ci/run does)"
    );
    path
}

/// Serves the test app (its two pages and the SMART client) on a port of its own: another
/// origin than the server's, as a real app is.
async fn serve_app(packages: &Path) -> String {
    use axum::{http::header, routing::get, Router};
    let page = |file: PathBuf, kind: &'static str| {
        get(move || {
            let file = file.clone();
            async move { ([(header::CONTENT_TYPE, kind)], std::fs::read(file).unwrap()) }
        })
    };
    let app = Router::new()
        .route(
            "/launch.html",
            page(packages.join("app/launch.html"), "text/html"),
        )
        .route(
            "/index.html",
            page(packages.join("app/index.html"), "text/html"),
        )
        .route(
            "/fhir-client.js",
            page(
                packages.join("node_modules/fhirclient/build/fhir-client.js"),
                "text/javascript",
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// One run of tests/browser/run.mjs: what the app printed.
async fn browse(packages: &Path, run_name: &str, vars: &[(&str, &str)]) -> Value {
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut cmd = Command::new("node");
    cmd.arg("run.mjs")
        .current_dir(packages)
        .env("CHROMIUM", chromium())
        .env("SCREENSHOTS", &shots)
        .env("RUN", run_name)
        .env("PASSWORD", PASSWORD);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || run(&mut cmd, "the browser run"))
        .await
        .unwrap();
    let last = out.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|_| panic!("the app printed {out}"))
}

fn engine_name(app: &TestApp) -> &'static str {
    match app.engine {
        Engine::Sqlite => "sqlite",
        Engine::Postgres => "postgres",
    }
}

pub async fn the_official_javascript_client_launches_in_a_real_browser(engine: Engine) {
    let c = clinic(engine).await;
    let _one = ONE.lock().await;
    let packages = npm_packages();
    let app = serve_app(&packages).await;
    register(
        &c.app,
        "browser-app",
        "public",
        &[&format!("{app}/index.html")],
        SCOPE,
    )
    .await;
    c.app.auth.follow_clients().await.unwrap();
    let iss = c.app.url("/fhir");
    let launch = format!("{app}/launch.html?iss={}", urlencode(&iss));
    let name = engine_name(&c.app);

    // Standalone: sign in, pick the patient, consent to everything.
    let r = browse(
        &packages,
        &format!("{name}-standalone"),
        &[
            ("LAUNCH_URL", &launch),
            ("EMAIL", DOCTOR),
            ("SEARCH", "García"),
        ],
    )
    .await;
    assert_eq!(r["patient"], c.ana.as_str(), "{r}");
    assert_eq!(r["patientRead"], c.ana.as_str(), "{r}");
    assert_eq!(r["family"], "García");
    assert_eq!(r["observations"], 2, "{r}");
    assert_eq!(r["banner"], true);
    assert!(
        r["fhirUser"].as_str().unwrap().contains("Practitioner/"),
        "{r}"
    );
    assert_eq!(r["refreshed"], c.ana.as_str(), "the client refreshed: {r}");

    // The user unticks Observation: the app's search is refused, the rest works.
    let r = browse(
        &packages,
        &format!("{name}-untick"),
        &[
            ("LAUNCH_URL", &launch),
            ("EMAIL", DOCTOR),
            ("SEARCH", "MRN-1001"),
            ("UNTICK", "0:Observation"),
        ],
    )
    .await;
    assert_eq!(r["patientRead"], c.ana.as_str(), "{r}");
    assert_eq!(r["observationStatus"], 403, "{r}");
    assert!(!r["scope"].as_str().unwrap().contains("Observation"), "{r}");

    // EHR launch: the clinic's application hands over a launch id; no picker.
    let id = super::common::acting::cli(
        &c.app,
        &[
            "launch",
            "--client",
            "browser-app",
            "--patient",
            &c.ana,
            "--encounter",
            &c.encounter,
        ],
        "",
    )
    .unwrap();
    let ehr = format!(
        "{app}/launch.html?iss={}&launch={}&scope={}",
        urlencode(&iss),
        id.trim(),
        urlencode("launch openid fhirUser patient/*.rs")
    );
    let r = browse(
        &packages,
        &format!("{name}-ehr"),
        &[("LAUNCH_URL", &ehr), ("EMAIL", DOCTOR)],
    )
    .await;
    assert_eq!(r["patient"], c.ana.as_str(), "{r}");
    assert_eq!(r["encounter"], c.encounter.as_str(), "{r}");
    assert_eq!(r["banner"], false);
    assert_eq!(r["observations"], 2, "{r}");
}

pub async fn the_official_python_client_completes_a_standalone_launch(engine: Engine) {
    let c = clinic(engine).await;
    let py = {
        let _one = ONE.lock().await;
        tokio::task::spawn_blocking(python).await.unwrap()
    };
    register(
        &c.app,
        "py-app",
        "public",
        &["http://localhost:8000/callback"],
        SCOPE,
    )
    .await;
    let mut cmd = Command::new(py);
    cmd.arg(Path::new(ROOT).join("tests/python/standalone.py"))
        .env("FHIR_BASE", format!("{}/", c.app.url("/fhir")))
        .env("EMAIL", PORTAL)
        .env("PASSWORD", PASSWORD);
    let out = tokio::task::spawn_blocking(move || run(&mut cmd, "the Python client"))
        .await
        .unwrap();
    let r: Value = serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{out}"));
    assert_eq!(r["patient"], c.ana.as_str(), "{r}");
    assert_eq!(r["family"], "García");
    assert_eq!(r["ready"], true);
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
