//! The administration commands against a real database: clients registered, tokens minted and
//! verified, keys rotated, tokens revoked; on both engines.

mod common;

use common::acting::cli_with_key;
use common::{Engine, TestApp};
use expediente::auth::keys::KeyEncryptionKey;
use expediente::auth::token::Refusal;
use expediente::auth::Auth;
use std::path::{Path, PathBuf};

const AUDIENCE: &str = "http://clinic.example/fhir";

fn run(app: &TestApp, key_file: &Path, args: &[&str]) -> Result<String, String> {
    cli_with_key(app, key_file, args, "")
}

fn key_file() -> PathBuf {
    std::env::temp_dir().join(format!("expediente-key-{}", uuid::Uuid::new_v4().simple()))
}

fn token(app: &TestApp, key: &Path, client: &str, scope: &str) -> Result<String, String> {
    let t = run(
        app,
        key,
        &[
            "token",
            "--client-id",
            client,
            "--scope",
            scope,
            "--audience",
            AUDIENCE,
        ],
    )?;
    Ok(t.trim().to_owned())
}

async fn clients_and_tokens_from_the_command_line(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let key = app.key_file.clone();
    let secret = run(
        &app,
        &key,
        &[
            "client",
            "add",
            "--client-id",
            "svc",
            "--secret",
            "--scope",
            "system/*.rs system/Patient.cruds",
        ],
    )
    .unwrap();
    let secret = secret.trim();
    assert_eq!(secret.len(), 43, "{secret}");
    let stored = app
        .db
        .fetch_optional(
            "SELECT secret_hash FROM oauth_clients WHERE client_id = 'svc'",
            &[],
        )
        .await
        .unwrap()
        .unwrap()
        .string("secret_hash")
        .unwrap();
    assert!(stored.starts_with("$argon2id$") && !stored.contains(secret));
    assert!(run(&app, &key, &["client", "list"])
        .unwrap()
        .starts_with("svc\tsecret\t"));
    let again = run(
        &app,
        &key,
        &[
            "client",
            "add",
            "--client-id",
            "svc",
            "--public",
            "--scope",
            "x",
        ],
    );
    assert!(again.unwrap_err().contains("already registered"));

    // A token has what was asked within what the client may have.
    let t = token(
        &app,
        &key,
        "svc",
        "system/Patient.rs system/Observation.cruds user/*.rs",
    )
    .unwrap();
    let kek = KeyEncryptionKey::from_file(&key).unwrap();
    let auth = Auth::load(app.db.clone(), kek.clone()).await.unwrap();
    let claims = auth.verify(&t, AUDIENCE).await.unwrap();
    assert_eq!(claims.scope, "system/Patient.rs system/Observation.rs");
    assert_eq!(
        (claims.sub.as_str(), claims.client_id.as_str()),
        ("svc", "svc")
    );
    assert!(claims.exp - claims.iat <= 3600);
    assert_eq!(
        auth.verify(&t, "http://elsewhere/fhir").await.unwrap_err(),
        Refusal::WrongAudience
    );
    // Refusals: an unknown client, scopes the client may not have.
    assert!(token(&app, &key, "nobody", "system/*.rs")
        .unwrap_err()
        .contains("no client nobody"));
    assert!(token(&app, &key, "svc", "user/*.rs")
        .unwrap_err()
        .contains("none of the scopes"));

    // Rotation: a new key signs, the old one stays published and its tokens stay good.
    let kid = run(&app, &key, &["keys", "rotate"]).unwrap();
    let t2 = token(&app, &key, "svc", "system/Patient.rs").unwrap();
    let header = jsonwebtoken::decode_header(&t2).unwrap();
    assert_eq!(header.kid.as_deref(), Some(kid.trim()));
    assert!(
        auth.verify(&t2, AUDIENCE).await.is_ok(),
        "the new key is read when first met"
    );
    assert_eq!(auth.jwks()["keys"].as_array().unwrap().len(), 2);
    assert!(auth.verify(&t, AUDIENCE).await.is_ok());

    // The wrong key encryption key opens nothing.
    let wrong = key_file();
    assert!(token(&app, &wrong, "svc", "system/Patient.rs")
        .unwrap_err()
        .contains("cannot be decrypted"));

    // Revoked here: refused here at once, and by another process once it follows.
    let other = Auth::load(app.db.clone(), kek).await.unwrap();
    assert!(other.verify(&t2, AUDIENCE).await.is_ok());
    assert!(auth
        .revoke(&claims_of(&auth, &t2).await, None)
        .await
        .unwrap());
    assert_eq!(
        auth.verify(&t2, AUDIENCE).await.unwrap_err(),
        Refusal::Revoked
    );
    other.follow_revocations().await.unwrap();
    assert_eq!(
        other.verify(&t2, AUDIENCE).await.unwrap_err(),
        Refusal::Revoked
    );
    assert!(other.verify(&t, AUDIENCE).await.is_ok(), "only that token");

    // A removed client gets no more tokens.
    run(&app, &key, &["client", "remove", "--client-id", "svc"]).unwrap();
    assert!(token(&app, &key, "svc", "system/Patient.rs").is_err());
    let _ = std::fs::remove_file(&wrong);
}

async fn claims_of(auth: &Auth, t: &str) -> String {
    auth.verify(t, AUDIENCE).await.unwrap().jti.clone()
}

fn user_token(
    app: &TestApp,
    key: &Path,
    email: &str,
    scope: &str,
    patient: Option<&str>,
) -> Result<String, String> {
    let mut args = vec![
        "token",
        "--client-id",
        "app",
        "--scope",
        scope,
        "--audience",
        AUDIENCE,
        "--user",
        email,
    ];
    if let Some(p) = patient {
        args.extend(["--patient", p]);
    }
    Ok(run(app, key, &args)?.trim().to_owned())
}

async fn users_and_their_roles_bound_what_a_token_grants(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let key = app.key_file.clone();
    let kek = KeyEncryptionKey::from_file(&key).unwrap();
    let auth = Auth::load(app.db.clone(), kek).await.unwrap();
    run(
        &app,
        &key,
        &[
            "client",
            "add",
            "--client-id",
            "app",
            "--public",
            "--scope",
            "user/*.cruds patient/*.cruds openid fhirUser",
        ],
    )
    .unwrap();
    let scope_of = |t: String| {
        let auth = &auth;
        async move { auth.verify(&t, AUDIENCE).await.unwrap() }
    };

    // A receptionist asking for everything gets no Observation.
    let who = cli_with_key(
        &app,
        &key,
        &[
            "user",
            "add",
            "--email",
            "Front@Clinic.example",
            "--role",
            "receptionist",
            "--password-stdin",
        ],
        "recepcion-2026\n",
    )
    .unwrap();
    assert_eq!(who.trim().len(), 36, "a user id: {who}");
    let c = scope_of(user_token(&app, &key, "front@clinic.example", "user/*.cruds", None).unwrap())
        .await;
    assert_eq!(
        c.scope,
        "user/Patient.cruds user/Encounter.cruds user/Practitioner.rs"
    );
    assert_eq!(c.sub, who.trim());
    assert!(c.fhir_user.is_none());

    // A physician who is an existing Practitioner; a new password makes no new version.
    let dr = app
        .create(&serde_json::json!({"resourceType": "Practitioner", "name": [{"family": "Ruiz"}]}))
        .await;
    let dr_id = dr["id"].as_str().unwrap();
    let who = cli_with_key(
        &app,
        &key,
        &[
            "user",
            "add",
            "--email",
            "ruiz@clinic.example",
            "--role",
            "physician",
            "--practitioner",
            dr_id,
            "--password-stdin",
        ],
        "doctora-2026\n",
    )
    .unwrap();
    assert_eq!(who.trim(), format!("Practitioner/{dr_id}"));
    let url = format!("/fhir/Practitioner/{dr_id}");
    let before = app.get(&url).await.body["meta"]["versionId"].clone();
    cli_with_key(
        &app,
        &key,
        &[
            "user",
            "passwd",
            "--email",
            "ruiz@clinic.example",
            "--password-stdin",
        ],
        "otra-clave-2026\n",
    )
    .unwrap();
    assert_eq!(
        app.get(&url).await.body["meta"]["versionId"],
        before,
        "credentials are no part of the Practitioner"
    );
    let hash = expediente::auth::users::by_email(&app.db, "ruiz@clinic.example")
        .await
        .unwrap()
        .unwrap()
        .password_hash
        .unwrap();
    assert!(expediente::auth::password::verify("otra-clave-2026".into(), hash.clone()).await);
    assert!(!expediente::auth::password::verify("doctora-2026".into(), hash).await);
    let c = scope_of(
        user_token(
            &app,
            &key,
            "ruiz@clinic.example",
            "user/Observation.rs openid fhirUser",
            None,
        )
        .unwrap(),
    )
    .await;
    assert_eq!(
        (c.scope.as_str(), c.fhir_user.as_deref()),
        (
            "user/Observation.rs openid fhirUser",
            Some(format!("Practitioner/{dr_id}").as_str())
        )
    );

    // A patient's own account: its patient only, whatever is asked.
    let p = app
        .create(&serde_json::json!({"resourceType": "Patient", "name": [{"family": "Lugo"}]}))
        .await;
    let other = app
        .create(&serde_json::json!({"resourceType": "Patient", "name": [{"family": "Mora"}]}))
        .await;
    let pid = p["id"].as_str().unwrap();
    let who = run(
        &app,
        &key,
        &[
            "user",
            "add",
            "--email",
            "lugo@mail.example",
            "--role",
            "patient",
            "--patient",
            pid,
        ],
    )
    .unwrap();
    assert_eq!(who.trim(), format!("Patient/{pid}"));
    let c =
        scope_of(user_token(&app, &key, "lugo@mail.example", "user/*.cruds", None).unwrap()).await;
    assert_eq!(
        (c.scope.as_str(), c.patient.as_deref()),
        ("patient/*.rs", Some(pid))
    );
    let e = user_token(
        &app,
        &key,
        "lugo@mail.example",
        "patient/*.rs",
        other["id"].as_str(),
    )
    .unwrap_err();
    assert!(e.contains("for that patient only"), "{e}");

    // Refusals: bad input to `user add`, a disabled user.
    for (args, says) in [
        (
            vec!["--email", "x@y.example", "--role", "chef"],
            "no role chef",
        ),
        (
            vec!["--email", "not-an-email", "--role", "nurse"],
            "not an email",
        ),
        (
            vec!["--email", "front@clinic.example", "--role", "nurse"],
            "already exists",
        ),
        (
            vec!["--email", "p@y.example", "--role", "patient"],
            "needs --patient",
        ),
        (
            vec![
                "--email",
                "p@y.example",
                "--role",
                "patient",
                "--patient",
                "nobody",
            ],
            "no Patient nobody",
        ),
        (
            vec![
                "--email",
                "q@y.example",
                "--role",
                "receptionist",
                "--practitioner",
                dr_id,
            ],
            "clinical role",
        ),
        (
            vec![
                "--email",
                "q@y.example",
                "--role",
                "physician",
                "--practitioner",
                dr_id,
            ],
            "without an account",
        ),
    ] {
        let mut all = vec!["user", "add"];
        all.extend(args);
        let e = run(&app, &key, &all).unwrap_err();
        assert!(e.contains(says), "{all:?}: {e}");
    }
    let short = cli_with_key(
        &app,
        &key,
        &[
            "user",
            "passwd",
            "--email",
            "front@clinic.example",
            "--password-stdin",
        ],
        "short\n",
    );
    assert!(short.unwrap_err().contains("at least 8"));
    run(
        &app,
        &key,
        &["user", "disable", "--email", "front@clinic.example"],
    )
    .unwrap();
    assert!(
        user_token(&app, &key, "front@clinic.example", "user/*.rs", None)
            .unwrap_err()
            .contains("no active user")
    );
    let list = run(&app, &key, &["user", "list"]).unwrap();
    assert!(
        list.contains("front@clinic.example\treceptionist\t-\tdisabled\n"),
        "{list}"
    );
    assert!(
        list.contains(&format!(
            "ruiz@clinic.example\tphysician\tPractitioner/{dr_id}\tactive\n"
        )),
        "{list}"
    );
}

on_both_engines!(
    clients_and_tokens_from_the_command_line,
    users_and_their_roles_bound_what_a_token_grants,
);
