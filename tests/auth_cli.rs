//! The administration commands against a real database: clients registered, tokens minted and
//! verified, keys rotated, tokens revoked; on both engines.

mod common;

use common::{Engine, TestApp};
use expediente::auth::keys::KeyEncryptionKey;
use expediente::auth::token::Refusal;
use expediente::auth::Auth;
use std::path::{Path, PathBuf};
use std::process::Command;

const AUDIENCE: &str = "http://clinic.example/fhir";

fn run(app: &TestApp, key_file: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_expediente"))
        .args(args)
        .args(["--database-url", &app.url])
        .env("EXPEDIENTE_KEY_FILE", key_file)
        .env_remove("EXPEDIENTE_KEY")
        .env_remove("DATABASE_URL")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(stderr)
    }
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
    let key = key_file();
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
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(&wrong);
}

async fn claims_of(auth: &Auth, t: &str) -> String {
    auth.verify(t, AUDIENCE).await.unwrap().jti.clone()
}

on_both_engines!(clients_and_tokens_from_the_command_line);
