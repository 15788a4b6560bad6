//! The administration commands: signing keys, OAuth clients, tokens minted directly.

use crate::auth::grant::{Denied, TokenRequest};
use crate::auth::records::{self, Client};
use crate::auth::users::{self, Account};
use crate::auth::{keys, password, Auth};
use crate::config::{ClientAdd, ClientCommand, KeysCommand, LaunchArgs, TokenArgs, UserCommand};
use crate::store::Db;
use anyhow::Context;

/// What `serve` prints on its first start: how to make an authorised request.
pub const FIRST_STEPS: &str = "\
Every /fhir request needs an access token. To get one for a first try:

  echo 'a long password' | expediente user add --email admin@clinic.example --role administrator --password-stdin
  expediente client add --client-id cli --public --scope 'user/*.cruds'
  TOKEN=$(expediente token --client-id cli --user admin@clinic.example --scope 'user/*.cruds')
  curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8080/fhir/Patient

(add --database-url and --key-file as given to serve; docs/SECURITY.md says more)";

async fn open(database_url: &str) -> anyhow::Result<Db> {
    let db = Db::connect(database_url)
        .await
        .context("connecting to the database")?;
    crate::prepare(&db).await?;
    Ok(db)
}

/// `expediente keys ...`: prints the id of the new key.
pub async fn keys(cmd: KeysCommand) -> anyhow::Result<String> {
    match cmd {
        KeysCommand::Rotate { db, key } => {
            let db = open(&db.database_url).await?;
            let auth = Auth::load(db.clone(), key.key()?).await?;
            let kid = auth.rotate().await?;
            noted(&db, "keys-rotate", ("key", &kid), true).await?;
            db.close().await;
            Ok(format!("{kid}\n"))
        }
    }
}

/// `expediente client ...`: what it prints.
pub async fn client(cmd: ClientCommand) -> anyhow::Result<String> {
    match cmd {
        ClientCommand::Add(add) => {
            let db = open(&add.db.database_url).await?;
            let id = add.client_id.clone();
            let out = add_client(&db, add).await;
            noted(&db, "client-add", ("client", &id), out.is_ok()).await?;
            db.close().await;
            out
        }
        ClientCommand::List { db } => {
            let db = open(&db.database_url).await?;
            let list = records::clients(&db).await?;
            db.close().await;
            Ok(list
                .iter()
                .map(|c| format!("{}\t{}\t{}\n", c.client_id, c.kind, c.scope))
                .collect())
        }
        ClientCommand::Remove { db, client_id } => {
            let db = open(&db.database_url).await?;
            let removed = records::remove_client(&db, &client_id).await?;
            noted(&db, "client-remove", ("client", &client_id), removed).await?;
            db.close().await;
            if !removed {
                anyhow::bail!("there is no client {client_id}");
            }
            Ok(String::new())
        }
    }
}

async fn add_client(db: &Db, add: ClientAdd) -> anyhow::Result<String> {
    if records::client(db, &add.client_id).await?.is_some() {
        anyhow::bail!("a client {} is already registered", add.client_id);
    }
    let mut c = Client {
        client_id: add.client_id,
        name: add.name,
        kind: "public".into(),
        secret_hash: None,
        jwks: None,
        jwks_url: None,
        redirect_uris: add.redirect_uris,
        scope: add.scope,
    };
    let mut printed = String::new();
    if add.secret {
        let secret = keys::random_token::<32>()?;
        c.kind = "secret".into();
        c.secret_hash = Some(password::hash(secret.clone()).await?);
        printed = format!("{secret}\n");
    } else if let Some(path) = add.jwks {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JWKS", path.display()))?;
        if set.keys.is_empty() {
            anyhow::bail!("{} holds no key", path.display());
        }
        c.kind = "jwks".into();
        c.jwks = Some(text);
    } else if let Some(url) = add.jwks_url {
        crate::auth::jwks_url::check_url(&url).map_err(anyhow::Error::msg)?;
        c.kind = "jwks_url".into();
        c.jwks_url = Some(url);
    }
    records::add_client(db, &c).await?;
    Ok(printed)
}

/// `expediente token`: the token alone.
pub async fn token(args: TokenArgs) -> anyhow::Result<String> {
    let db = open(&args.db.database_url).await?;
    let auth = Auth::load(db.clone(), args.key.key()?).await?;
    let granted = auth
        .grant(&TokenRequest {
            client_id: args.client_id.clone(),
            scope: args.scope,
            user: args.user.clone(),
            patient: args.patient,
            encounter: args.encounter,
            expires_in: std::time::Duration::from_secs(args.expires_in),
            audience: args.audience,
        })
        .await?;
    let target = ("client", args.client_id.as_str());
    noted(&db, "token", target, granted.is_ok()).await?;
    db.close().await;
    match granted {
        Ok((token, _)) => Ok(format!("{token}\n")),
        Err(Denied::UnknownClient) => anyhow::bail!("there is no client {}", args.client_id),
        Err(Denied::UnknownUser) => {
            anyhow::bail!("there is no active user {}", args.user.unwrap_or_default())
        }
        Err(Denied::InvalidScope(why)) => anyhow::bail!("no token: {why}"),
    }
}

/// `expediente launch`: the launch id, once the patient and encounter are found.
pub async fn launch(args: LaunchArgs) -> anyhow::Result<String> {
    let fhir = crate::build_fhir(&args.db.database_url, &Default::default()).await?;
    let caller = crate::interactions::Caller {
        base_url: "http://localhost/fhir".into(),
        access: crate::auth::access::Access::everything(),
        request_id: "launch".into(),
        audit: crate::audit::Context::local("launch"),
    };
    let read = |rtype: &'static str, id: String| {
        let (fhir, caller) = (&fhir, &caller);
        async move {
            let id = crate::fhir::Id::parse(&id).with_context(|| format!("{id} is not an id"))?;
            let v = fhir
                .read(caller, fhir.resource_type(rtype)?, &id)
                .await
                .map_err(|_| anyhow::anyhow!("there is no {rtype} {id}"))?;
            anyhow::Ok(v.into_json().unwrap_or_default())
        }
    };
    read("Patient", args.patient.clone()).await?;
    if let Some(e) = &args.encounter {
        let enc = read("Encounter", e.clone()).await?;
        if enc["subject"]["reference"].as_str() != Some(&format!("Patient/{}", args.patient)) {
            anyhow::bail!("Encounter {e} is not one of Patient {}", args.patient);
        }
    }
    let auth = Auth::load(fhir.db.clone(), args.key.key()?).await?;
    let id = auth
        .mint_launch(&args.client, &args.patient, args.encounter.as_deref())
        .await?;
    fhir.db.close().await;
    match id {
        Some(id) => Ok(format!("{id}\n")),
        None => anyhow::bail!("there is no client {}", args.client),
    }
}

/// The first line of standard input: a password, at least 8 characters.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let p = line.trim_end_matches(['\r', '\n']).to_owned();
    if p.chars().count() < 8 {
        anyhow::bail!("a password has at least 8 characters");
    }
    Ok(p)
}

/// `expediente user ...`: what it prints.
pub async fn user(cmd: UserCommand) -> anyhow::Result<String> {
    match cmd {
        UserCommand::Add {
            db,
            email,
            role,
            practitioner,
            patient,
            password_stdin,
        } => {
            let hash = match password_stdin {
                true => Some(password::hash(password_from_stdin()?).await?),
                false => None,
            };
            let db = open(&db.database_url).await?;
            let out = add_user(&db, &email, &role, practitioner, patient, hash).await;
            noted_user(&db, "user-add", &email, out.is_ok()).await?;
            db.close().await;
            out
        }
        UserCommand::List { db } => {
            let db = open(&db.database_url).await?;
            let all = users::all(&db).await?;
            db.close().await;
            Ok(all
                .iter()
                .map(|u| {
                    let state = if u.active { "active" } else { "disabled" };
                    let who = u.fhir_user.as_deref().unwrap_or("-");
                    format!("{}\t{}\t{who}\t{state}\n", u.email, u.role)
                })
                .collect())
        }
        UserCommand::Disable { db, email } => {
            let db = open(&db.database_url).await?;
            let done = users::set_active(&db, &email, false).await?;
            noted_user(&db, "user-disable", &email, done).await?;
            db.close().await;
            done.then(String::new)
                .ok_or_else(|| anyhow::anyhow!("there is no user {email}"))
        }
        UserCommand::Passwd { db, email, .. } => {
            let hash = password::hash(password_from_stdin()?).await?;
            let db = open(&db.database_url).await?;
            let done = users::set_password(&db, &email, hash).await?;
            noted_user(&db, "user-password", &email, done).await?;
            db.close().await;
            done.then(String::new)
                .ok_or_else(|| anyhow::anyhow!("there is no user {email}"))
        }
    }
}

async fn add_user(
    db: &Db,
    email: &str,
    role: &str,
    practitioner: Option<String>,
    patient: Option<String>,
    hash: Option<String>,
) -> anyhow::Result<String> {
    let email = email.trim().to_lowercase();
    if !email.contains('@') || email.chars().any(char::is_whitespace) {
        anyhow::bail!("{email} is not an email address");
    }
    if users::by_email(db, &email).await?.is_some() {
        anyhow::bail!("a user {email} already exists");
    }
    let Some(clinical) = users::role(db, role).await? else {
        anyhow::bail!("there is no role {role}");
    };
    let account = match (&practitioner, &patient) {
        (Some(id), _) if clinical => Account::Practitioner(id),
        (Some(_), _) => anyhow::bail!("--practitioner needs a clinical role (physician, nurse)"),
        (None, Some(id)) if role == "patient" => Account::Patient(id),
        (None, Some(_)) => anyhow::bail!("--patient goes with the role patient"),
        (None, None) if role == "patient" => anyhow::bail!("the role patient needs --patient"),
        (None, None) => Account::New,
    };
    users::add(db, &email, role, account, hash).await?;
    let user = users::by_email(db, &email)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the user was not added"))?;
    Ok(format!(
        "{}\n",
        user.fhir_user.unwrap_or(user.id.to_string())
    ))
}

/// Records an administration command in the audit trail: who ran it (the system user), what it
/// did and on what, and whether it succeeded.
async fn noted(db: &Db, action: &str, target: (&str, &str), ok: bool) -> anyhow::Result<()> {
    let ctx = crate::audit::Context::local("command line");
    let who = std::env::var("USER").ok().filter(|u| !u.is_empty());
    ctx.identify(
        who.map(|u| format!("system user {u}")),
        Some("expediente command line".into()),
    );
    let mut e = crate::audit::Event::now(&ctx, "admin", action);
    e.resource_type = Some(target.0.into());
    e.resource_id = Some(target.1.into());
    if !ok {
        e.outcome = "minor-failure".into();
    }
    let mut tx = db.begin().await?;
    crate::audit::chain::append(&mut tx, &[e]).await?;
    tx.commit().await?;
    Ok(())
}

/// [`noted`] for a user, named by their id (never their email).
async fn noted_user(db: &Db, action: &str, email: &str, ok: bool) -> anyhow::Result<()> {
    let email = email.trim().to_lowercase();
    let id = match users::by_email(db, &email).await? {
        Some(u) => u.id.to_string(),
        None => "unknown".into(),
    };
    noted(db, action, ("user", &id), ok).await
}

/// `expediente audit ...`: what to print, and whether the chain held.
pub async fn audit(cmd: crate::config::AuditCommand) -> anyhow::Result<(String, bool)> {
    use crate::audit::verify;
    use crate::config::AuditCommand;
    match cmd {
        AuditCommand::Verify { db, since } => {
            let since = match since {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    Some(
                        serde_json::from_str::<verify::Checkpoint>(&text)
                            .with_context(|| format!("{} is not a checkpoint", path.display()))?,
                    )
                }
                None => None,
            };
            let db = open(&db.database_url).await?;
            let report = verify::verify(&db, since.as_ref()).await;
            db.close().await;
            let report = report?;
            let waiting = match report.waiting {
                0 => String::new(),
                n => format!("; {n} changes made outside the server wait to be chained"),
            };
            Ok(match report.broken {
                None => (
                    format!(
                        "the audit chain holds: {} rows checked, up to row {} ({}){waiting}\n",
                        report.checked, report.head.seq, report.head.hash
                    ),
                    true,
                ),
                Some((seq, why)) => (
                    format!("the audit chain is broken at row {seq}: {why}\n"),
                    false,
                ),
            })
        }
        AuditCommand::Checkpoint { db, out } => {
            let db = open(&db.database_url).await?;
            let c = verify::checkpoint(&db).await;
            db.close().await;
            let text = format!("{}\n", serde_json::to_string(&c?)?);
            match out {
                Some(path) => {
                    std::fs::write(&path, &text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    Ok((String::new(), true))
                }
                None => Ok((text, true)),
            }
        }
    }
}
