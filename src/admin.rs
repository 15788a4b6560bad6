//! The administration commands: signing keys, OAuth clients, tokens minted directly.

use crate::auth::grant::{Denied, TokenRequest};
use crate::auth::records::{self, Client};
use crate::auth::{keys, password, Auth};
use crate::config::{ClientAdd, ClientCommand, KeysCommand, TokenArgs};
use crate::store::Db;
use anyhow::Context;

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
            let out = add_client(&db, add).await;
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
            patient: args.patient,
            encounter: args.encounter,
            expires_in: std::time::Duration::from_secs(args.expires_in),
            audience: args.audience,
        })
        .await?;
    db.close().await;
    match granted {
        Ok((token, _)) => Ok(format!("{token}\n")),
        Err(Denied::UnknownClient) => anyhow::bail!("there is no client {}", args.client_id),
        Err(Denied::InvalidScope(why)) => anyhow::bail!("no token: {why}"),
    }
}
