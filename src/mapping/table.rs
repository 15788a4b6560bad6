//! A mapping declared as data: a resource type over one table, each mapped element a [`Spec`]
//! (a path in the resource and the column or columns it lands in). Elements sharing a top-level
//! key are stored and rebuilt together under the lossless rule of [`super::fields`]: the element
//! goes to `fhir_extra` only when the columns cannot rebuild it exactly, and a kept element that
//! no longer agrees with its columns (the clinic changed them) gets the column values patched in.

use super::memo::MapMemo;
use super::search::SearchParam;
use super::spec::{text, Cell, Kind, Seg, Spec};
use super::{MapError, ResourceMapping};
use crate::fhir::{Id, Issue, IssueType};
use crate::store::{placeholders, Arg, Conn, Row, StoreError, Tx};
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use uuid::Uuid;

/// Computes a column's value from a whole resource.
pub type Derive = fn(&Value) -> Arg;

/// A resource type over one table, declared by its specs.
pub struct TableMapping {
    pub resource_type: &'static str,
    pub table: &'static str,
    pub specs: &'static [Spec],
    pub params: &'static [SearchParam],
    /// The column a client-chosen id is written to (`fhir_id`, or a column it derives from).
    pub id_column: &'static str,
    /// A condition (on alias `t`) a row must meet to be a resource of this type.
    pub filter: Option<&'static str>,
    /// Columns set on insert only, each to the `id` a query without parameters finds (a row of a
    /// seeded table, such as a role).
    pub insert_defaults: &'static [(&'static str, &'static str)],
    /// Columns computed from the whole resource on every write (a choice type's discriminator,
    /// say). The elements they are computed from are kept as sent in fhir_extra.
    pub derived: &'static [(&'static str, Derive)],
    /// Whether `name[]` is indexed for the name, family and given search parameters.
    pub index_names: bool,
    /// Code elements indexed for token search: (parameter, top-level element).
    pub code_index: &'static [(&'static str, &'static str)],
}

impl TableMapping {
    /// The emails of `resources` bound for a column with a unique index, by column.
    fn unique_emails(&self, resources: &[&Value]) -> Vec<(&'static str, BTreeSet<String>)> {
        self.specs
            .iter()
            .filter_map(|s| match s.kind {
                Kind::Telecom {
                    email,
                    unique_email: true,
                    ..
                } => Some((
                    email,
                    resources
                        .iter()
                        .filter_map(|r| text(&s.project(r.get(s.top()))[1]))
                        .collect(),
                )),
                _ => None,
            })
            .collect()
    }

    /// The defaults of the optional parts.
    pub const BASE: TableMapping = TableMapping {
        resource_type: "",
        table: "",
        specs: &[],
        params: &[],
        id_column: "fhir_id",
        filter: None,
        insert_defaults: &[],
        derived: &[],
        index_names: false,
        code_index: &[],
    };
}

impl TableMapping {
    fn groups(&self) -> Vec<(&'static str, Vec<&'static Spec>)> {
        let mut out: Vec<(&'static str, Vec<&'static Spec>)> = Vec::new();
        for s in self.specs {
            match out.iter_mut().find(|(k, _)| *k == s.top()) {
                Some((_, v)) => v.push(s),
                None => out.push((s.top(), vec![s])),
            }
        }
        out
    }

    fn all_columns(&self) -> Vec<&'static str> {
        self.specs.iter().flat_map(Spec::columns).collect()
    }

    /// Inserts the row of a resource, with the values `also` of columns the resource does not
    /// give, and says which value went to each column (other than id, the logical id, the
    /// columns with a default expression and fhir_extra).
    pub async fn insert_values(
        &self,
        tx: &mut Tx,
        row_id: Uuid,
        fhir_id: &Id,
        resource: &Value,
        also: &[(&'static str, Arg)],
    ) -> Result<Vec<(&'static str, Arg)>, MapError> {
        let (mut args, extra) = self.split(tx, row_id, resource).await?;
        let mut cols = self.all_columns();
        for (c, f) in self.derived {
            cols.push(c);
            args.push(f(resource));
        }
        for (c, v) in also {
            cols.push(c);
            args.push(v.clone());
        }
        let written: Vec<(&'static str, Arg)> =
            cols.iter().copied().zip(args.iter().cloned()).collect();
        for (c, query) in self.insert_defaults {
            cols.push(c);
            args.push(Arg::OptUuid(Self::default_row(tx, query).await?));
        }
        if let Some(t) = tx.stamp(row_id) {
            for c in ["created_at", "updated_at"] {
                cols.push(c);
                args.push(Arg::Timestamp(Some(t)));
            }
        }
        let mut columns = vec!["id", self.id_column];
        columns.extend(cols);
        columns.push("fhir_extra");
        let mut all: Vec<Arg> = vec![row_id.into(), fhir_id.as_str().into()];
        all.append(&mut args);
        all.push(Arg::Json(Value::Object(extra)));
        tx.insert(self.table, &columns, &all).await?;
        self.index(tx, row_id, resource).await?;
        Ok(written)
    }

    /// The row a default's query finds (see [`TableMapping::insert_defaults`]): looked up once per
    /// transaction, and shared with the transactions after it for a while (a read in the middle of
    /// a transaction's writes waits for all of them).
    async fn default_row(tx: &mut Tx, query: &'static str) -> Result<Option<Uuid>, StoreError> {
        if let Some(found) = tx
            .peek_memo::<MapMemo>()
            .and_then(|m| m.defaults.get(query))
        {
            return Ok(*found);
        }
        let key = format!("default:{query}");
        let found = match tx.shared::<Option<Uuid>>(&key) {
            Some(found) => found,
            None => {
                let row = tx.fetch_optional(query, &[]).await?;
                let found = row.map(|r| r.uuid("id")).transpose()?;
                tx.share(key, found);
                found
            }
        };
        tx.memo::<MapMemo>().defaults.insert(query, found);
        Ok(found)
    }

    /// Writes the search index rows of the resource stored as `row_id`, if the table has any.
    async fn index(&self, tx: &mut Tx, row_id: Uuid, resource: &Value) -> Result<(), MapError> {
        if self.index_names || !self.code_index.is_empty() {
            super::search::index(
                tx,
                self.resource_type,
                row_id,
                resource,
                self.index_names,
                self.code_index,
            )
            .await?;
        }
        Ok(())
    }

    /// Splits a resource into column values (as bound arguments) and what goes to fhir_extra.
    async fn split(
        &self,
        tx: &mut Tx,
        row_id: Uuid,
        resource: &Value,
    ) -> Result<(Vec<Arg>, Map<String, Value>), MapError> {
        let mut rest = super::fields::resource_rest(resource);
        let mut issues = Vec::new();
        let mut args = Vec::new();
        for (key, specs) in self.groups() {
            let orig = rest.remove(key);
            let mut cells: Vec<Vec<Cell>> =
                specs.iter().map(|s| s.project(orig.as_ref())).collect();
            let catalog_ids = self.resolve(tx, row_id, &specs, &mut cells).await?;
            let mut rebuilt = None;
            for (s, c) in specs.iter().zip(&cells) {
                rebuilt = s.patch(rebuilt, c);
            }
            if rebuilt != orig || cells.iter().flatten().any(Cell::reshaped_by_numeric) {
                if let Some(o) = orig {
                    rest.insert(key.to_owned(), o);
                }
            }
            for ((s, c), catalog_id) in specs.iter().zip(cells).zip(catalog_ids) {
                let at = || expression(self.resource_type, s.path);
                issues.extend(problems(s, &c).into_iter().map(|i| i.at(at())));
                match s.kind {
                    Kind::Catalog { .. } => args.push(Arg::OptUuid(catalog_id)),
                    Kind::Ref { target, table, .. } => {
                        let id = text(&c[0]);
                        let row = match &id {
                            Some(id) => super::memo::row_by_fhir_id(tx, table, id).await?,
                            None => None,
                        };
                        if let (Some(id), None) = (&id, row) {
                            issues.push(
                                Issue::error(
                                    IssueType::Processing,
                                    format!("{target}/{id} does not exist on this server"),
                                )
                                .at(at()),
                            );
                        }
                        args.push(Arg::OptUuid(row));
                    }
                    _ => args.extend(c.into_iter().map(|c| match c {
                        Cell::Text(t) => Arg::Text(t),
                        Cell::Bool(b) => Arg::Bool(b),
                        Cell::Time(t) => Arg::Timestamp(t),
                        Cell::Dec(t) => Arg::Decimal(t),
                        Cell::Int(i) => Arg::Int(i),
                    })),
                }
            }
        }
        if issues.is_empty() {
            Ok((args, rest))
        } else {
            Err(MapError::Unprocessable(issues))
        }
    }

    /// Settles the cells that depend on stored rows: a catalog code becomes the id of its
    /// catalog row (returned, by spec) and the catalog's display; a unique email another row
    /// holds is left out of its column.
    async fn resolve(
        &self,
        tx: &mut Tx,
        row_id: Uuid,
        specs: &[&Spec],
        cells: &mut [Vec<Cell>],
    ) -> Result<Vec<Option<Uuid>>, MapError> {
        let mut catalog_ids: Vec<Option<Uuid>> = vec![None; specs.len()];
        for (i, (s, c)) in specs.iter().zip(cells.iter_mut()).enumerate() {
            if let Kind::Catalog { table, display, .. } = s.kind {
                if let Some(code) = text(&c[0]) {
                    let (id, display) =
                        catalog_entry(tx, table, display, &code, text(&c[1]), text(&c[2])).await?;
                    catalog_ids[i] = Some(id);
                    c[2] = Cell::Text(display);
                }
            }
            if let Kind::Telecom {
                email,
                unique_email: true,
                ..
            } = s.kind
            {
                let e = text(&c[1]);
                let known_free = e
                    .as_ref()
                    .is_some_and(|e| super::emails::take_free(tx, self.table, e));
                if let Some(e) = e.filter(|_| !known_free) {
                    let taken = tx
                        .fetch_optional(
                            &format!(
                                "SELECT 1 AS x FROM {} WHERE {email} = ? AND id <> ?",
                                self.table
                            ),
                            &[e.into(), row_id.into()],
                        )
                        .await?
                        .is_some();
                    if taken {
                        c[1] = Cell::Text(None);
                    }
                }
            }
        }
        Ok(catalog_ids)
    }

    fn assemble(&self, row: &Row, order: &[String]) -> Result<Value, StoreError> {
        let (mut out, mut extra) = super::fields::resource_head(self.resource_type, row)?;
        for (key, specs) in self.groups() {
            let mut cells = Vec::new();
            for s in &specs {
                cells.push(read_cells(row, s)?);
            }
            let kept = extra.remove(key);
            let agrees = kept
                .as_ref()
                .is_some_and(|k| specs.iter().zip(&cells).all(|(s, c)| s.agrees(k, c)));
            let value = if agrees {
                kept
            } else {
                let mut v = kept;
                for (s, c) in specs.iter().zip(&cells) {
                    v = s.patch(v, c);
                }
                v
            };
            if let Some(v) = value {
                out.insert(key.to_owned(), v);
            }
        }
        out.extend(extra);
        Ok(Value::Object(super::fields::ordered(out, order)))
    }
}

/// The cells of one spec, as the row holds them.
fn read_cells(row: &Row, s: &Spec) -> Result<Vec<Cell>, StoreError> {
    Ok(match s.kind {
        Kind::Bool(c) | Kind::BoolDefault { column: c, .. } => vec![Cell::Bool(row.bool(c)?)],
        Kind::Time(c) => vec![Cell::Time(row.opt_timestamp(c)?)],
        Kind::Decimal(c) => vec![Cell::Dec(row.decimal(c)?)],
        Kind::Int(c) => vec![Cell::Int(row.opt_int(c)?)],
        Kind::Ref { column, .. } => vec![Cell::Text(row.text(&format!("{column}__ref"))?)],
        Kind::Catalog { column, .. } => ["code", "system", "display"]
            .iter()
            .map(|k| row.text(&format!("{column}__{k}")).map(Cell::Text))
            .collect::<Result<_, _>>()?,
        _ => s
            .columns()
            .iter()
            .map(|c| row.text(c).map(Cell::Text))
            .collect::<Result<_, _>>()?,
    })
}

/// The catalog entry of a code (added when the catalog does not have it yet): its id and the
/// display the catalog gives it.
async fn catalog_entry(
    tx: &mut Tx,
    table: &str,
    display_column: &str,
    code: &str,
    system: Option<String>,
    display: Option<String>,
) -> Result<(Uuid, Option<String>), StoreError> {
    // A transaction looks a code up once: the entry found or added is remembered. One found
    // in the database is shared with the transactions after it for a while.
    let key = format!("catalog:{table}:{code}:{system:?}");
    if let Some(entry) = tx.peek_memo::<MapMemo>().and_then(|m| m.catalog.get(&key)) {
        return Ok(entry.clone());
    }
    if let Some(entry) = tx.shared::<(Uuid, Option<String>)>(&key) {
        tx.memo::<MapMemo>().catalog.insert(key, entry.clone());
        return Ok(entry);
    }
    // Two transactions adding the same new code at once: the second waits here for the first
    // to end, and then finds its row instead of failing on the catalog's unique index.
    tx.lock_key(lock_of(&key)).await?;
    let found = match &system {
        Some(sys) => {
            tx.fetch_optional(
                &format!("SELECT id, {display_column} AS display FROM {table} WHERE code = ? AND system = ?"),
                &[code.into(), sys.clone().into()],
            )
            .await?
        }
        None => {
            tx.fetch_optional(
                &format!("SELECT id, {display_column} AS display FROM {table} WHERE code = ? AND system IS NULL"),
                &[code.into()],
            )
            .await?
        }
    };
    let entry = match found {
        Some(r) => {
            // Not one this transaction added (those are remembered above): committed.
            let entry = (r.uuid("id")?, r.text("display")?);
            tx.share(key.clone(), entry.clone());
            entry
        }
        None => {
            let id = Uuid::new_v4();
            // A catalog whose display is NOT NULL (specialties.name) gets the code when none is
            // sent.
            let shown = display
                .clone()
                .or_else(|| (display_column == "name").then(|| code.to_owned()));
            tx.insert(
                table,
                &["id", "code", "system", display_column],
                &[id.into(), code.into(), system.into(), shown.into()],
            )
            .await?;
            (
                id,
                display.or_else(|| (display_column == "name").then(|| code.to_owned())),
            )
        }
    };
    tx.memo::<MapMemo>().catalog.insert(key, entry.clone());
    Ok(entry)
}

/// The transaction lock of a catalog key (see [`crate::store::Tx::lock_key`]).
fn lock_of(key: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// A FHIRPath for a spec's path, for error messages.
fn expression(resource_type: &str, path: &[Seg]) -> String {
    let mut e = resource_type.to_owned();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                e.push('.');
                e.push_str(k);
            }
            Seg::First => e.push_str("[0]"),
        }
    }
    e
}

#[async_trait]
impl ResourceMapping for TableMapping {
    fn resource_type(&self) -> &'static str {
        self.resource_type
    }

    fn table(&self) -> &'static str {
        self.table
    }

    fn search_params(&self) -> &'static [SearchParam] {
        self.params
    }

    fn row_filter(&self) -> Option<&'static str> {
        self.filter
    }

    async fn prefetch(&self, tx: &mut Tx, resources: &[&Value]) -> Result<(), MapError> {
        for (column, emails) in self.unique_emails(resources) {
            super::emails::learn_free(tx, self.table, column, emails).await?;
        }
        Ok(())
    }

    fn claims(&self, resource: &Value) -> Vec<String> {
        self.unique_emails(&[resource])
            .into_iter()
            .flat_map(|(column, emails)| {
                emails
                    .into_iter()
                    .map(move |e| format!("{}.{column}={e}", self.table))
            })
            .collect()
    }

    async fn insert(
        &self,
        tx: &mut Tx,
        row_id: Uuid,
        fhir_id: &Id,
        resource: &Value,
    ) -> Result<(), MapError> {
        self.insert_values(tx, row_id, fhir_id, resource, &[])
            .await
            .map(|_| ())
    }

    async fn update(
        &self,
        tx: &mut Tx,
        row_id: Uuid,
        expected_version: Option<i64>,
        resource: &Value,
    ) -> Result<bool, MapError> {
        let (mut args, extra) = self.split(tx, row_id, resource).await?;
        let mut columns = self.all_columns();
        for (c, f) in self.derived {
            columns.push(c);
            args.push(f(resource));
        }
        columns.push("fhir_extra");
        args.push(Arg::Json(Value::Object(extra)));
        let table = self.table;
        if !super::rewrite_row(tx, table, &columns, args, row_id, expected_version).await? {
            return Ok(false);
        }
        self.index(tx, row_id, resource).await?;
        Ok(true)
    }

    async fn load(
        &self,
        conn: &mut Conn<'_>,
        row_ids: &[Uuid],
    ) -> Result<Vec<(Uuid, Value)>, StoreError> {
        if row_ids.is_empty() {
            return Ok(vec![]);
        }
        let mut select = vec![
            "t.id".to_owned(),
            "t.fhir_id".into(),
            "t.version_id".into(),
            "t.updated_at".into(),
            "t.fhir_extra".into(),
        ];
        let mut joins = String::new();
        for (i, s) in self.specs.iter().enumerate() {
            match s.kind {
                Kind::Ref { column, table, .. } => {
                    select.push(format!("r{i}.fhir_id AS {column}__ref"));
                    joins.push_str(&format!(" LEFT JOIN {table} r{i} ON r{i}.id = t.{column}"));
                }
                Kind::Catalog {
                    column,
                    table,
                    display,
                } => {
                    select.push(format!("r{i}.code AS {column}__code"));
                    select.push(format!("r{i}.system AS {column}__system"));
                    select.push(format!("r{i}.{display} AS {column}__display"));
                    joins.push_str(&format!(" LEFT JOIN {table} r{i} ON r{i}.id = t.{column}"));
                }
                _ => select.extend(s.columns().iter().map(|c| format!("t.{c}"))),
            }
        }
        let ids: Vec<Arg> = row_ids.iter().map(|u| Arg::Uuid(*u)).collect();
        let sql = format!(
            "SELECT {} FROM {} t{joins} WHERE t.id IN ({})",
            select.join(", "),
            self.table,
            placeholders(ids.len())
        );
        let order = super::element_order(self.resource_type);
        conn.fetch_all(&sql, &ids)
            .await?
            .iter()
            .map(|row| Ok((row.uuid("id")?, self.assemble(row, &order)?)))
            .collect()
    }
}

/// What the clinic schema refuses in the cells of one spec: a decimal beyond its columns, a
/// missing required value, a code outside the accepted ones.
fn problems(s: &Spec, c: &[Cell]) -> Vec<Issue> {
    let mut issues = Vec::new();
    if let Some(Cell::Dec(Some(t))) = c.first() {
        if crate::store::parse_decimal(t).is_none() {
            issues.push(Issue::error(
                IssueType::Value,
                "this decimal is beyond what the clinic schema can hold",
            ));
        }
    }
    if s.required && text(&c[0]).is_none() && matches!(c[0], Cell::Text(_)) {
        let what = match s.kind {
            Kind::Ref { target, .. } => format!("a reference to a {target} of this server"),
            _ => "a value".to_owned(),
        };
        issues.push(Issue::error(
            IssueType::Required,
            format!("the clinic schema needs {what} here"),
        ));
    }
    if let Some(code) =
        text(&c[0]).filter(|v| !s.allowed.is_empty() && !s.allowed.contains(&v.as_str()))
    {
        issues.push(Issue::error(
            IssueType::Value,
            format!(
                "code '{}' is not one the clinic schema accepts here ({})",
                code.escape_default(),
                s.allowed.join(", ")
            ),
        ));
    }
    issues
}
