//! Reading the audit trail as AuditEvents: read by id (the row's sequence number) and search by
//! date, agent, entity, patient, type, subtype, action, outcome, source and address, newest
//! first (`_sort=-date`, or `date` for oldest first), a page at a time. What a caller sees is
//! given by its [`AuditView`]: the events about one patient, or all.

use super::fhir::{action_code, OUTCOMES, TYPES};
use super::Event;
use crate::auth::access::AuditView;
use crate::error::{Error, Result};
use crate::fhir::date::{parse_range, Prefix};
use crate::fhir::IssueType;
use crate::store::{Arg, Db};

/// The most events in one page, and how many when `_count` is not given.
pub const MAX_COUNT: i64 = 1000;
const DEFAULT_COUNT: i64 = 50;
/// The rows the entity index holds (its WHERE, word for word, so that SQLite uses it).
const ENTITY_INDEXED: &str =
    "patient IS NULL OR resource_type <> 'Patient' OR resource_id <> patient";

/// The parameters of an AuditEvent search, and the modifiers they take.
pub const PARAMS: &[&str] = &[
    "date", "agent", "entity", "patient", "type", "subtype", "action", "outcome", "source",
    "address",
];

/// A search, its conditions bound.
#[derive(Debug, Default)]
pub struct Query {
    conds: Vec<String>,
    args: Vec<Arg>,
    /// Newest first.
    pub descending: bool,
    pub count: i64,
    /// Where the page starts: past this sequence number.
    pub after: Option<i64>,
    /// The parameters as applied, for the page links.
    pub applied: Vec<(String, String)>,
}

fn invalid(msg: String) -> Error {
    Error::bad_request(IssueType::Invalid, msg)
}

impl Query {
    /// The search `params` asks for, within `view`.
    pub fn parse(params: &[(String, String)], view: &AuditView) -> Result<Query> {
        let mut q = Query {
            descending: true,
            count: DEFAULT_COUNT,
            ..Query::default()
        };
        match view {
            AuditView::All => {}
            AuditView::Patient(p) => q.patient(p),
            AuditView::Nothing => return Err(Error::Forbidden("no access to AuditEvent".into())),
        }
        for (name, value) in params {
            match name.as_str() {
                "_count" => {
                    q.count = value
                        .parse::<i64>()
                        .ok()
                        .filter(|n| *n >= 0)
                        .ok_or_else(|| invalid(format!("_count '{value}' is not a count")))?
                        .min(MAX_COUNT)
                }
                "_sort" => {
                    q.descending = match value.as_str() {
                        "-date" | "" => true,
                        "date" => false,
                        _ => return Err(invalid("AuditEvent sorts by date or -date".into())),
                    }
                }
                "_page" => {
                    q.after = Some(value.parse().map_err(|_| invalid("bad _page".into()))?);
                    continue;
                }
                "_format" | "_pretty" => continue,
                _ => q.condition(name, value)?,
            }
            q.applied.push((name.clone(), value.clone()));
        }
        Ok(q)
    }

    fn patient(&mut self, id: &str) {
        self.conds.push(
            "(patient = ? OR seq IN (SELECT seq FROM audit_log_patients WHERE patient = ?))".into(),
        );
        self.args.push(id.into());
        self.args.push(id.into());
    }

    fn any_of(&mut self, column: &str, values: Vec<String>) {
        if values.is_empty() {
            self.conds.push("1 = 0".into());
            return;
        }
        let marks = vec!["?"; values.len()].join(", ");
        self.conds.push(format!("{column} IN ({marks})"));
        self.args.extend(values.into_iter().map(Arg::from));
    }

    fn condition(&mut self, name: &str, value: &str) -> Result<()> {
        let values: Vec<&str> = value.split(',').collect();
        let code = |v: &str| v.rsplit_once('|').map_or(v, |(_, c)| c).to_owned();
        match name {
            "date" => return self.date(value),
            "agent" => self.agent(&values),
            "entity" => self.entity(&values),
            "patient" => self.patients(&values),
            "type" => {
                let cats: Vec<String> = values
                    .iter()
                    .flat_map(|v| {
                        let c = code(v);
                        TYPES
                            .iter()
                            .filter(move |t| t.2 == c || t.0 == c)
                            .map(|t| t.0.to_owned())
                    })
                    .collect();
                self.any_of("category", cats);
            }
            "subtype" => {
                let mut actions: Vec<String> = Vec::new();
                for v in &values {
                    match code(v).as_str() {
                        "operation" => actions.extend(["validate".into(), "everything".into()]),
                        "110122" => actions.push("sign-in".into()),
                        "110123" => actions.push("sign-out".into()),
                        c => actions.push(c.to_owned()),
                    }
                }
                self.any_of("action", actions);
            }
            "action" => {
                let wanted: Vec<String> = values.iter().map(|v| code(v)).collect();
                let actions: Vec<String> = KNOWN_ACTIONS
                    .iter()
                    .filter(|(cat, a)| wanted.iter().any(|w| w == action_code(cat, a)))
                    .map(|(_, a)| (*a).to_owned())
                    .collect();
                self.any_of("action", actions);
            }
            "outcome" => {
                let outcomes: Vec<String> = values
                    .iter()
                    .filter_map(|v| OUTCOMES.iter().find(|o| o.1 == code(v) || o.0 == code(v)))
                    .map(|o| o.0.to_owned())
                    .collect();
                self.any_of("outcome", outcomes);
            }
            // Every event's source is this server.
            "source" => {
                if !values
                    .iter()
                    .any(|v| v.trim_end_matches('/').ends_with("expediente"))
                {
                    self.conds.push("1 = 0".into());
                }
            }
            "address" => self.any_of("source_ip", values.iter().map(|v| (*v).into()).collect()),
            _ => {
                return Err(Error::bad_request(
                    IssueType::NotSupported,
                    format!(
                        "AuditEvent has no search parameter '{}' here (it has {})",
                        name.escape_default(),
                        PARAMS.join(", ")
                    ),
                ))
            }
        }
        Ok(())
    }

    /// `agent`: the user (its reference) or the app (its client id).
    fn agent(&mut self, values: &[&str]) {
        let marks = vec!["?"; values.len()].join(", ");
        self.conds
            .push(format!("(agent IN ({marks}) OR client_id IN ({marks}))"));
        for _ in 0..2 {
            self.args.extend(values.iter().map(|v| Arg::from(*v)));
        }
    }

    /// `patient=Patient/id` (or the id alone).
    fn patients(&mut self, values: &[&str]) {
        let marks = vec!["?"; values.len()].join(", ");
        // An event about one patient names it in its row, one about several in
        // audit_log_patients.
        self.conds.push(format!(
            "(patient IN ({marks}) OR seq IN (SELECT seq FROM audit_log_patients WHERE patient IN ({marks})))"
        ));
        let ids: Vec<Arg> = values
            .iter()
            .map(|v| Arg::from(v.rsplit('/').next().unwrap_or(v)))
            .collect();
        self.args.extend(ids.iter().cloned());
        self.args.extend(ids);
    }

    /// `entity=Type/id` (or a bare id, of any type).
    fn entity(&mut self, values: &[&str]) {
        let mut ors = Vec::new();
        for v in values {
            let (t, id) = match v.rsplit_once('/') {
                Some((t, id)) => (Some(t.rsplit('/').next().unwrap_or(t)), id),
                None => (None, *v),
            };
            // The entity index leaves out the events about a Patient and that patient alone
            // (the patient index finds them), and an import's event names its resources in
            // audit_log_entities.
            let (kind, kind_side) = match t {
                Some(t) => {
                    self.args.push(t.into());
                    ("resource_type = ? AND ", "resource_type = ? AND ")
                }
                None => ("", ""),
            };
            self.args.push(id.into());
            ors.push(format!("({kind}resource_id = ? AND ({ENTITY_INDEXED}))"));
            if t.is_none() || t == Some("Patient") {
                ors.push(
                    "(patient = ? AND resource_type = 'Patient' AND resource_id = patient)".into(),
                );
                self.args.push(id.into());
            }
            ors.push(format!(
                "seq IN (SELECT seq FROM audit_log_entities WHERE {kind_side}resource_id = ?)"
            ));
            if let Some(t) = t {
                self.args.push(t.into());
            }
            self.args.push(id.into());
        }
        self.conds.push(format!("({})", ors.join(" OR ")));
    }

    fn date(&mut self, value: &str) -> Result<()> {
        let (prefix, text) = Prefix::split(value);
        let r = parse_range(text).ok_or_else(|| invalid(format!("'{text}' is not a date")))?;
        let (sql, args): (&str, Vec<Arg>) = match prefix {
            Prefix::Eq => (
                "(recorded_at >= ? AND recorded_at < ?)",
                vec![r.start.into(), r.end.into()],
            ),
            Prefix::Ge => ("recorded_at >= ?", vec![r.start.into()]),
            Prefix::Gt | Prefix::Sa => ("recorded_at >= ?", vec![r.end.into()]),
            Prefix::Le => ("recorded_at < ?", vec![r.end.into()]),
            Prefix::Lt | Prefix::Eb => ("recorded_at < ?", vec![r.start.into()]),
            _ => {
                return Err(invalid(format!(
                    "the prefix of date '{value}' is not supported here"
                )))
            }
        };
        self.conds.push(sql.into());
        self.args.extend(args);
        Ok(())
    }

    /// The page of events this query finds, and whether more follow.
    pub async fn run(&self, db: &Db) -> Result<(Vec<(i64, Event)>, bool)> {
        let mut conds = self.conds.clone();
        let mut args = self.args.clone();
        if let Some(after) = self.after {
            conds.push(
                if self.descending {
                    "seq < ?"
                } else {
                    "seq > ?"
                }
                .into(),
            );
            args.push(after.into());
        }
        conds.push("seq > (SELECT start_seq FROM audit_chain WHERE id = 1)".into());
        let sql = format!(
            "SELECT seq, event FROM audit_logs WHERE {} ORDER BY seq {} LIMIT ?",
            conds.join(" AND "),
            if self.descending { "DESC" } else { "ASC" }
        );
        args.push((self.count + 1).into());
        let rows = db.fetch_all(&sql, &args).await?;
        let more = rows.len() as i64 > self.count;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows.iter().take(self.count as usize) {
            out.push((r.bigint("seq")?, parse(&r.string("event")?)?));
        }
        Ok((out, more))
    }
}

fn parse(text: &str) -> Result<Event> {
    serde_json::from_str(text)
        .map_err(|e| Error::Internal(anyhow::anyhow!("an audit event does not parse: {e}")))
}

/// Event `seq`, if `view` sees it.
pub async fn read(db: &Db, seq: i64, view: &AuditView) -> Result<Option<Event>> {
    let row = db
        .fetch_optional(
            "SELECT event FROM audit_logs WHERE seq = ? AND seq > (SELECT start_seq FROM audit_chain WHERE id = 1)",
            &[seq.into()],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let e = parse(&row.string("event")?)?;
    Ok(match view {
        AuditView::All => Some(e),
        AuditView::Patient(p) if e.patients.iter().any(|x| x == p) => Some(e),
        _ => None,
    })
}

/// Every action an event may have, by category (to search by the C/R/U/D/E code).
const KNOWN_ACTIONS: &[(&str, &str)] = &[
    ("rest", "read"),
    ("rest", "vread"),
    ("rest", "search-type"),
    ("rest", "search-system"),
    ("rest", "history-instance"),
    ("rest", "history-type"),
    ("rest", "history-system"),
    ("rest", "everything"),
    ("rest", "create"),
    ("rest", "update"),
    ("rest", "patch"),
    ("rest", "delete"),
    ("rest", "validate"),
    ("rest", "transaction"),
    ("rest", "batch"),
    ("rest", "bundle"),
    ("rest", "import"),
    ("change", "insert"),
    ("token", "token"),
    ("token", "refresh"),
    ("token", "introspect"),
    ("token", "revoke"),
    ("token", "authorize"),
    ("token", "consent"),
    ("token", "launch"),
    ("login", "sign-in"),
    ("login", "sign-out"),
];
