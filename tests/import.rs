//! `expediente import`: every Synthea bundle of tests/data/synthea-bundles loads with
//! --skip-unsupported, every hosted resource reads back as it was sent, a second run changes
//! nothing, a bad bundle fails alone with a non-zero exit, and NDJSON loads too.

mod common;

use common::{first_difference, strip_id_meta, Engine, TestApp};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const HOSTED: &[&str] = &[
    "AllergyIntolerance",
    "DiagnosticReport",
    "Encounter",
    "MedicationRequest",
    "Observation",
    "Patient",
    "Practitioner",
];

fn bundles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/synthea-bundles")
}

fn import(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_expediente"))
        .arg("import")
        .args(["--database-url", url, "--no-progress"])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run import")
}

fn bundle_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["standalone", "hiv-conditional"] {
        for e in std::fs::read_dir(bundles_dir().join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().and_then(|x| x.to_str()) == Some("json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every `reference` string of a value.
fn references_mut(v: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::Object(o) => {
            for (k, item) in o.iter_mut() {
                match item {
                    Value::String(s) if k == "reference" => f(s),
                    other => references_mut(other, f),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| references_mut(x, f)),
        _ => {}
    }
}

/// The id of the one `rtype` the server finds for a conditional reference's criteria.
async fn resolve(app: &TestApp, rtype: &str, criteria: &str) -> String {
    let r = app
        .get(&format!("/fhir/{rtype}?{}", criteria.replace('|', "%7C")))
        .await;
    assert_eq!(r.body["total"], 1, "{rtype}?{criteria}: {}", r.text);
    r.body["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Reads back every hosted resource of the bundle `files` and checks it is what was sent (its
/// references resolved as the server resolved them), for each hosted type at least once;
/// returns each resource as served, by path.
async fn reads_back_as_sent(app: &TestApp, files: &[PathBuf]) -> Vec<(String, Value)> {
    let mut checked: HashMap<&str, usize> = HashMap::new();
    // Every resource as first served (its stored version), by path.
    let mut served: Vec<(String, Value)> = Vec::new();
    let mut conditional: HashMap<String, String> = HashMap::new();
    for file in files {
        let bundle: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let entries = bundle["entry"].as_array().unwrap();
        // Each fullUrl names its entry's Type/id, whether the entry was kept or dropped.
        let local: HashMap<String, String> = entries
            .iter()
            .map(|e| {
                let r = &e["resource"];
                (
                    e["fullUrl"].as_str().unwrap().to_owned(),
                    format!(
                        "{}/{}",
                        r["resourceType"].as_str().unwrap(),
                        r["id"].as_str().unwrap()
                    ),
                )
            })
            .collect();
        for e in entries {
            let rt = e["resource"]["resourceType"].as_str().unwrap();
            let Some(rt) = HOSTED.iter().find(|h| **h == rt) else {
                continue;
            };
            let mut expected = e["resource"].clone();
            let mut conditionals = Vec::new();
            references_mut(&mut expected, &mut |s| {
                if let Some(l) = local.get(s.as_str()) {
                    *s = l.clone();
                } else if s.starts_with("Practitioner?") {
                    conditionals.push(s.clone());
                }
            });
            for c in conditionals {
                if !conditional.contains_key(&c) {
                    let (t, q) = c.split_once('?').unwrap();
                    let id = resolve(app, t, q).await;
                    conditional.insert(c.clone(), format!("{t}/{id}"));
                }
            }
            references_mut(&mut expected, &mut |s| {
                if let Some(l) = conditional.get(s.as_str()) {
                    *s = l.clone();
                }
            });
            // A conditional create keeps the server's id: find it by its criteria.
            let id = match e["request"]["ifNoneExist"].as_str() {
                Some(c) => resolve(app, rt, c).await,
                None => e["resource"]["id"].as_str().unwrap().to_owned(),
            };
            let back = app.get(&format!("/fhir/{rt}/{id}")).await;
            assert_eq!(
                back.status,
                reqwest::StatusCode::OK,
                "{rt}/{id}: {}",
                back.text
            );
            let (a, b) = (strip_id_meta(&expected), strip_id_meta(&back.body));
            assert!(
                a == b,
                "{}: {rt}/{id} changed: {}",
                file.display(),
                first_difference(&a, &b, rt).unwrap_or_default()
            );
            *checked.entry(rt).or_default() += 1;
            served.push((format!("/fhir/{rt}/{id}"), back.body));
        }
    }
    for rt in HOSTED {
        assert!(
            checked.get(rt).is_some_and(|n| *n > 0),
            "no {rt} checked: {checked:?}"
        );
    }
    served
}

async fn every_synthea_bundle_imports_and_reads_back_as_sent(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let dir = bundles_dir();
    let out = import(&app.url, &["--skip-unsupported", dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("skipped (type not hosted):"), "{stdout}");
    for skipped in [
        "Claim",
        "ExplanationOfBenefit",
        "Organization",
        "Immunization",
    ] {
        assert!(stdout.contains(skipped), "{skipped} is counted: {stdout}");
    }
    assert!(!stdout.contains("failed"), "{stdout}");

    let served = reads_back_as_sent(&app, &bundle_files()).await;
    // Literal references to dropped entries (an Encounter's serviceProvider Organization).
    let enc = app.get("/fhir/Encounter?_count=1").await.body;
    let sp = enc["entry"][0]["resource"]["serviceProvider"]["reference"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(sp.starts_with("Organization"), "{sp}");
    assert!(!sp.starts_with("urn:"), "{sp}");

    // A second run finds everything in place and changes nothing.
    let before = app.snapshot().await;
    let again = import(&app.url, &["--skip-unsupported", dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(again.status.success(), "{stdout}");
    assert!(
        !stdout.contains("created:"),
        "nothing is created the second time: {stdout}"
    );
    assert_eq!(
        app.snapshot().await,
        before,
        "a repeated import changed the database"
    );

    // The versions the import recorded (made from the resources it inserted, not read back)
    // are what the rows give: without them, each resource is built from its rows, and is the
    // same, meta.versionId and meta.lastUpdated included.
    app.db
        .execute("DELETE FROM resource_versions", &[])
        .await
        .unwrap();
    for (path, first) in &served {
        let built = app.get(path).await;
        assert_eq!(
            built.status,
            reqwest::StatusCode::OK,
            "{path}: {}",
            built.text
        );
        assert!(
            &built.body == first,
            "{path}: {}",
            first_difference(first, &built.body, path).unwrap_or_default()
        );
    }
}

/// A new empty directory under the system's temporary one, its name starting with `prefix`.
fn fresh_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Each failure `what` is on a line of the import's summary that gives `why`.
fn reported(stdout: &str, failures: &[(&str, &str)]) {
    for (what, why) in failures {
        let line = stdout
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("{what}: {stdout}"));
        assert!(line.contains(why), "{line}");
    }
}

async fn a_bad_bundle_fails_alone_and_the_exit_code_says_so(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let dir = fresh_dir("expediente-import");
    let good = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0d0e0000-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "id": "0d0e0000-0000-4000-8000-000000000001", "name": [{"family": "Buena"}]},
         "request": {"method": "POST", "url": "Patient"}}]});
    let bad = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0d0e0000-0000-4000-8000-000000000002",
         "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "Patient/nobody"}},
         "request": {"method": "POST", "url": "Observation"}}]});
    let unhosted = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0d0e0000-0000-4000-8000-000000000003",
         "resource": {"resourceType": "Claim", "status": "active"},
         "request": {"method": "POST", "url": "Claim"}}]});
    std::fs::write(dir.join("a-good.json"), good.to_string()).unwrap();
    std::fs::write(dir.join("b-bad.json"), bad.to_string()).unwrap();
    std::fs::write(dir.join("c-unhosted.json"), unhosted.to_string()).unwrap();
    std::fs::write(dir.join("d-broken.json"), "{\"resourceType\": ").unwrap();
    // Entries are parsed one by one, as strictly as a request body: a property twice fails the
    // file.
    std::fs::write(
        dir.join("d-twice.json"),
        r#"{"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:0d0e0000-0000-4000-8000-000000000004",
             "resource": {"resourceType": "Patient", "gender": "male", "gender": "female"},
             "request": {"method": "POST", "url": "Patient"}}]}"#,
    )
    .unwrap();
    // A batch: its entries stand alone, and go in one database transaction; the bad one fails
    // alone (the others are run again, each read again from the file).
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "id": "lote-1", "name": [{"family": "Uno"}]},
         "request": {"method": "PUT", "url": "Patient/lote-1"}},
        {"resource": {"resourceType": "Observation", "id": "lote-obs", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "Patient/nadie"}},
         "request": {"method": "PUT", "url": "Observation/lote-obs"}},
        {"resource": {"resourceType": "Patient", "id": "lote-2", "name": [{"family": "Dos"}]},
         "request": {"method": "PUT", "url": "Patient/lote-2"}}]});
    std::fs::write(dir.join("f-batch.json"), batch.to_string()).unwrap();
    // NDJSON: a patient and an observation of theirs, and a line that is not JSON.
    let lines = [
        json!({"resourceType": "Patient", "id": "nd-1", "name": [{"family": "Linea"}]}).to_string(),
        json!({"resourceType": "Observation", "id": "nd-obs", "status": "final", "code": {"text": "peso"},
               "subject": {"reference": "Patient/nd-1"}}).to_string(),
        "not json".to_owned(),
        // An element of the wrong JSON type is refused, not dropped.
        json!({"resourceType": "Patient", "id": "nd-2", "meta": "x"}).to_string(),
    ];
    std::fs::write(dir.join("e.ndjson"), lines.join("\n")).unwrap();
    let out = import(&app.url, &[dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("failed: 7"), "{stdout}");
    reported(
        &stdout,
        &[
            ("b-bad.json", "Patient/nobody"),
            ("c-unhosted.json", "Claim"),
            ("d-broken.json", ""),
            ("d-twice.json", "duplicate property 'gender'"),
            ("f-batch.json entry 1", "Patient/nadie"),
            ("e.ndjson:3", "not JSON"),
            ("e.ndjson:4", "resource.meta"),
        ],
    );
    assert_eq!(
        app.get("/fhir/Patient/0d0e0000-0000-4000-8000-000000000001")
            .await
            .body["name"][0]["family"],
        "Buena"
    );
    assert_eq!(
        app.get("/fhir/Observation/nd-obs").await.body["subject"]["reference"],
        "Patient/nd-1"
    );
    for (id, family) in [("lote-1", "Uno"), ("lote-2", "Dos")] {
        assert_eq!(
            app.get(&format!("/fhir/Patient/{id}")).await.body["name"][0]["family"],
            family
        );
    }
    assert_eq!(app.count("patients").await, 4);
    let _ = std::fs::remove_dir_all(dir);
}

/// Appends `evil` to every free-text string of a resource: displays, texts, names, address
/// parts, identifier values.
fn poison(v: &mut Value, key: &str, evil: &str) {
    const TEXT: &[&str] = &[
        "display",
        "text",
        "family",
        "given",
        "prefix",
        "suffix",
        "line",
        "city",
        "state",
        "country",
        "value",
        "comment",
        "description",
    ];
    match v {
        Value::Object(o) => {
            for (k, item) in o.iter_mut() {
                if k != "reference" && k != "div" {
                    poison(item, k, evil);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| poison(x, key, evil)),
        Value::String(s) if TEXT.contains(&key) => s.push_str(evil),
        _ => {}
    }
}

async fn sql_metacharacters_in_every_text_of_an_imported_bundle_are_stored_as_sent(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let evil =
        " x'); DROP TABLE patients; -- $$ $q$ E'\\x' \\' /* */ ? $1 %_ ; ñ \u{1F600} \u{202E}";
    let dir = fresh_dir("expediente-import-evil");
    let mut files = Vec::new();
    // Two patients whose references to practitioners are conditional, the practitioners, and
    // a patient of a bundle of its own.
    let chosen = bundle_files().into_iter().filter(|f| {
        let name = f.file_name().unwrap().to_str().unwrap();
        ["Bob965", "Cecelia952", "practitioner", "Benedict"]
            .iter()
            .any(|p| name.starts_with(p))
    });
    for file in chosen {
        let mut bundle: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for e in bundle["entry"].as_array_mut().unwrap() {
            if let Some(id) = e["resource"].get("identifier").cloned() {
                // (Identifiers name the resource in conditional creates: kept as they are.)
                poison(&mut e["resource"], "", evil);
                e["resource"]["identifier"] = id;
            } else {
                poison(&mut e["resource"], "", evil);
            }
        }
        let to = dir.join(file.file_name().unwrap());
        std::fs::write(&to, bundle.to_string()).unwrap();
        assert!(to.exists());
        files.push(to);
    }
    let out = import(&app.url, &["--skip-unsupported", dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("failed"), "{stdout}");
    let served = reads_back_as_sent(&app, &files).await;
    assert!(
        served
            .iter()
            .any(|(_, r)| r.to_string().contains("DROP TABLE")),
        "the values went in"
    );
    // The names are found by what was sent, and every table is still there.
    let patient = served
        .iter()
        .find(|(p, _)| p.starts_with("/fhir/Patient/"))
        .unwrap();
    let family = patient.1["name"][0]["family"].as_str().unwrap().to_owned();
    let found = app
        .get(&format!(
            "/fhir/Patient?family:exact={}",
            form_urlencoded::byte_serialize(family.as_bytes()).collect::<String>()
        ))
        .await;
    assert_eq!(found.body["total"], 1, "{}", found.text);
    assert!(app.count("patients").await >= 3);
    let _ = std::fs::remove_dir_all(dir);
}

/// An NDJSON file is read in parts of at most 500 lines: one of 1,203 lines imports every line
/// whatever part it falls in, refers across parts, and reports a bad line by its number.
async fn a_long_ndjson_file_imports_line_by_line_across_its_parts(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let dir = fresh_dir("expediente-ndjson");
    let mut text: Vec<u8> = Vec::new();
    for n in 1..=1203 {
        let line = match n {
            750 => b"{\"resourceType\": \"Patient\", ".to_vec(),
            // Not UTF-8: refused alone, the lines after it read.
            1001 => b"{\"resourceType\": \"Patient\", \"id\": \"\xff\"}".to_vec(),
            // An observation of the first line's patient, two parts after it.
            1203 => json!({"resourceType": "Observation", "id": "nd-last", "status": "final",
                           "code": {"text": "peso"}, "subject": {"reference": "Patient/nd-1"}})
            .to_string()
            .into_bytes(),
            _ => json!({"resourceType": "Patient", "id": format!("nd-{n}"),
                        "name": [{"family": format!("Linea{n}")}]})
            .to_string()
            .into_bytes(),
        };
        text.extend(line);
        // The last line has no end of line.
        if n < 1203 {
            text.push(b'\n');
        }
    }
    std::fs::write(dir.join("long.ndjson"), text).unwrap();
    let out = import(&app.url, &[dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("imported 1201 resources"), "{stdout}");
    assert!(stdout.contains("failed: 2"), "{stdout}");
    reported(
        &stdout,
        &[
            ("long.ndjson:750", "not JSON"),
            ("long.ndjson:1001", "not UTF-8"),
        ],
    );
    assert_eq!(app.count("patients").await, 1200);
    for n in [1, 499, 500, 501, 749, 751, 1000, 1002, 1202] {
        let p = app.get(&format!("/fhir/Patient/nd-{n}")).await;
        assert_eq!(p.status, 200, "nd-{n}: {}", p.text);
        assert_eq!(p.body["name"][0]["family"], format!("Linea{n}"));
    }
    let o = app.get("/fhir/Observation/nd-last").await;
    assert_eq!(o.status, 200, "{}", o.text);
    assert_eq!(o.body["subject"]["reference"], "Patient/nd-1");
    let _ = std::fs::remove_dir_all(dir);
}

on_both_engines!(
    a_long_ndjson_file_imports_line_by_line_across_its_parts,
    every_synthea_bundle_imports_and_reads_back_as_sent,
    a_bad_bundle_fails_alone_and_the_exit_code_says_so,
    sql_metacharacters_in_every_text_of_an_imported_bundle_are_stored_as_sent,
);
