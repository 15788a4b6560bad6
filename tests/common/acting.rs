//! Acting as someone else than the test's backend client: tokens minted by the `expediente`
//! command line against the test server's database, and requests sent with them.

use super::{Reply, TestApp};
use reqwest::Method;
use serde_json::Value;

/// Runs `expediente ARGS --database-url URL` against `app`'s database and key; stdout, or
/// stderr when it fails.
pub fn cli(app: &TestApp, args: &[&str], input: &str) -> Result<String, String> {
    cli_with_key(app, &app.key_file, args, input)
}

/// [`cli`] with another key file than the server's.
pub fn cli_with_key(
    app: &TestApp,
    key_file: &std::path::Path,
    args: &[&str],
    input: &str,
) -> Result<String, String> {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_expediente"))
        .args(args)
        .args(["--database-url", &app.url])
        .env("EXPEDIENTE_KEY_FILE", key_file)
        .env_remove("EXPEDIENTE_KEY")
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `expediente token --client-id CLIENT --scope SCOPE [EXTRA...]` for `app`'s FHIR base.
pub fn mint(app: &TestApp, client: &str, scope: &str, extra: &[&str]) -> Result<String, String> {
    let audience = app.url("/fhir");
    let mut args = vec![
        "token",
        "--client-id",
        client,
        "--scope",
        scope,
        "--audience",
        &audience,
    ];
    args.extend_from_slice(extra);
    cli(app, &args, "").map(|t| t.trim().to_owned())
}

/// Registers a public client for `scope` through the command line.
pub fn register(app: &TestApp, client: &str, scope: &str) {
    cli(
        app,
        &[
            "client",
            "add",
            "--client-id",
            client,
            "--public",
            "--scope",
            scope,
        ],
        "",
    )
    .expect("client add");
}

/// Adds a user with `role` through the command line (`link`: `--practitioner ID` and the like).
pub fn add_user(app: &TestApp, email: &str, role: &str, link: &[&str]) {
    let mut args = vec!["user", "add", "--email", email, "--role", role];
    args.extend_from_slice(link);
    cli(app, &args, "").expect("user add");
}

/// Requests sent with another bearer token than the test client's.
pub struct As<'a> {
    pub app: &'a TestApp,
    bearer: String,
}

impl TestApp {
    pub fn as_token(&self, token: &str) -> As<'_> {
        As {
            app: self,
            bearer: format!("Bearer {token}"),
        }
    }
}

impl As<'_> {
    pub async fn send(&self, method: Method, path: &str, body: Option<(&str, String)>) -> Reply {
        let mut req = self
            .app
            .client
            .request(method, self.app.url(path))
            .header("authorization", &self.bearer);
        if let Some((content_type, text)) = body {
            req = req.header("content-type", content_type).body(text);
        }
        TestApp::reply(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        let body = Some(("application/fhir+json", body.to_string()));
        self.send(Method::POST, path, body).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        let body = Some(("application/fhir+json", body.to_string()));
        self.send(Method::PUT, path, body).await
    }

    pub async fn patch(&self, path: &str, ops: &Value) -> Reply {
        let body = Some(("application/json-patch+json", ops.to_string()));
        self.send(Method::PATCH, path, body).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None).await
    }

    pub async fn post_form(&self, path: &str, form: &str) -> Reply {
        let body = Some(("application/x-www-form-urlencoded", form.to_owned()));
        self.send(Method::POST, path, body).await
    }
}
