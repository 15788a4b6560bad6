//! The versions a write records: the resources of the rows just written, made from the bodies
//! inserted or read back from the rows, queued into `resource_versions` with the write.

use super::*;

/// A row just written, to record as a version (see [`Fhir::record_versions`]).
pub(crate) struct WrittenRow {
    pub row_id: Uuid,
    /// The method that wrote it (`POST`, `PUT`...).
    pub method: &'static str,
    /// When this transaction inserted the row: the body it was inserted from, and the row's
    /// version and update time, which the insert wrote (see [`crate::store::Tx::stamp`]).
    pub inserted: Option<(Value, RowMeta)>,
}

impl WrittenRow {
    /// Row `row_id` of logical id `fhir_id`, just written by `method`, inserted from
    /// `inserted_from` when this transaction inserted it.
    pub(crate) fn new(
        tx: &Tx,
        row_id: Uuid,
        fhir_id: &str,
        method: &'static str,
        inserted_from: Option<Value>,
    ) -> WrittenRow {
        // (A row without the time its insert wrote is read back, as an update is.)
        let inserted = inserted_from.and_then(|body| {
            let updated_at = tx.stamp(row_id)?;
            let meta = RowMeta {
                fhir_id: fhir_id.to_owned(),
                version_id: 1,
                updated_at,
            };
            Some((body, meta))
        });
        WrittenRow {
            row_id,
            method,
            inserted,
        }
    }
}

impl Fhir {
    /// Records rows just written, of one type, as versions in resource_versions (see
    /// [`Fhir::read_back`]).
    pub(crate) async fn record_versions(
        &self,
        tx: &mut Tx,
        m: &dyn ResourceMapping,
        rows: &mut [WrittenRow],
    ) -> Result<Vec<Version>> {
        let defs = custom::definitions(&mut Conn::Tx(tx), m.resource_type()).await?;
        let loaded = self.read_back(&mut Conn::Tx(tx), m, rows, &defs).await?;
        self.queue_versions(tx, m, rows, loaded).await
    }

    /// The resources of rows just written, of one type (`defs` being its custom fields), as
    /// their versions are to record them (see [`Fhir::queue_versions`]).
    ///
    /// A resource whose rows this transaction inserted from a body is that body (taken from
    /// `rows`): the mapping keeps what it cannot rebuild from columns, so the rows give it back
    /// (lossless by construction, docs/DESIGN.md), with the version and update time the insert
    /// wrote (see [`crate::store::Tx::stamp`]): nothing is read. Every other resource (an update, or a type with custom fields, whose stored values may read
    /// back in a form of their own) is read back and assembled from its rows. Debug builds,
    /// which the tests run, read back the inserted ones too and fail unless they are equal.
    pub(crate) async fn read_back(
        &self,
        conn: &mut Conn<'_>,
        m: &dyn ResourceMapping,
        rows: &mut [WrittenRow],
        defs: &[custom::FieldDef],
    ) -> Result<HashMap<Uuid, Value>> {
        let as_written = |r: &WrittenRow| defs.is_empty() && r.inserted.is_some();
        let to_load: Vec<Uuid> = rows
            .iter()
            .filter(|r| !as_written(r))
            .map(|r| r.row_id)
            .collect();
        let mut out = self.load_all(conn, m, &to_load, defs).await?;
        if to_load.len() == rows.len() {
            return Ok(out);
        }
        let order = crate::mapping::element_order(m.resource_type());
        let mut inserted = Vec::new();
        for r in rows.iter_mut().filter(|r| as_written(r)) {
            if let Some((body, meta)) = r.inserted.take() {
                let resource =
                    crate::mapping::fields::as_stored(m.resource_type(), &meta, body, &order);
                out.insert(r.row_id, resource);
                inserted.push(r.row_id);
            }
        }
        #[cfg(debug_assertions)]
        {
            let loaded = self.load_all(conn, m, &inserted, defs).await?;
            for id in &inserted {
                if loaded.get(id) != out.get(id) {
                    // (The path only: the values are patient data.)
                    return Err(anyhow::anyhow!(
                        "{} row {id}: the rows do not give back the resource written, at {}",
                        m.resource_type(),
                        differs_at(loaded.get(id), out.get(id), m.resource_type())
                    )
                    .into());
                }
            }
        }
        Ok(out)
    }

    /// Rows of `m` read and assembled into resources, custom fields applied.
    pub(super) async fn load_all(
        &self,
        conn: &mut Conn<'_>,
        m: &dyn ResourceMapping,
        ids: &[Uuid],
        defs: &[custom::FieldDef],
    ) -> Result<HashMap<Uuid, Value>> {
        let mut loaded: HashMap<Uuid, Value> = HashMap::new();
        for chunk in ids.chunks(500) {
            let mut part = m.load(conn, chunk).await?;
            custom::apply_with(conn, defs, m.resource_type(), &mut part).await?;
            loaded.extend(part);
        }
        Ok(loaded)
    }

    /// [`Fhir::read_back`] of several types, in their order. Nothing is written among the reads;
    /// on SQLite they go side by side (see [`crate::store::TxReads`]): each type is made into
    /// resources while the writer's thread reads the next. The custom field definitions come
    /// first, through the transaction, which knows them once read.
    pub(crate) async fn read_back_all(
        &self,
        tx: &mut Tx,
        types: &mut [(Arc<dyn ResourceMapping>, Vec<WrittenRow>)],
    ) -> Result<Vec<HashMap<Uuid, Value>>> {
        let mut defs = Vec::with_capacity(types.len());
        for (m, _) in types.iter() {
            defs.push(custom::definitions(&mut Conn::Tx(tx), m.resource_type()).await?);
        }
        let Some(reads) = tx.side_by_side().await? else {
            let mut out = Vec::with_capacity(types.len());
            for ((m, rows), defs) in types.iter_mut().zip(&defs) {
                out.push(
                    self.read_back(&mut Conn::Tx(tx), m.as_ref(), rows, defs)
                        .await?,
                );
            }
            return Ok(out);
        };
        futures_util::future::try_join_all(types.iter_mut().zip(&defs).map(|((m, rows), defs)| {
            let mut conn = Conn::Reads(reads.clone());
            async move { self.read_back(&mut conn, m.as_ref(), rows, defs).await }
        }))
        .await
    }

    /// Records the resources of [`Fhir::read_back`] as versions in resource_versions.
    pub(crate) async fn queue_versions(
        &self,
        tx: &mut Tx,
        m: &dyn ResourceMapping,
        rows: &[WrittenRow],
        mut loaded: HashMap<Uuid, Value>,
    ) -> Result<Vec<Version>> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let resource = loaded
                .remove(&r.row_id)
                .ok_or_else(|| anyhow::anyhow!("row vanished inside its own transaction"))?;
            let version = version_of(m.resource_type(), Some(resource))?;
            versions::record(
                tx,
                NewVersion {
                    resource_type: m.resource_type(),
                    row_id: r.row_id,
                    fhir_id: &version.id,
                    version_id: version.version_id,
                    method: r.method,
                    last_updated: version.last_updated,
                    resource: version.resource.as_ref().map(Value::to_string),
                },
            )
            .await?;
            let action = match (r.method, version.version_id) {
                ("POST", _) | ("PUT", 1) => "create",
                _ => "update",
            };
            let patients = version
                .resource
                .as_ref()
                .map(crate::audit::patients_of)
                .unwrap_or_default();
            super::noted(tx, action, &version, patients);
            out.push(version);
        }
        Ok(out)
    }

    /// Records the row just written as a version in resource_versions.
    pub(super) async fn record_version(
        &self,
        tx: &mut Tx,
        m: &dyn ResourceMapping,
        row: WrittenRow,
    ) -> Result<Version> {
        self.record_versions(tx, m, &mut [row])
            .await?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no version recorded").into())
    }
}

/// Every `reference` string in a resource, with the FHIRPath of its Reference.
/// Where two JSON values first differ, as a path (see [`Fhir::read_back`]).
#[cfg(debug_assertions)]
fn differs_at(a: Option<&Value>, b: Option<&Value>, path: &str) -> String {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => x
            .keys()
            .chain(y.keys())
            .find(|k| x.get(*k) != y.get(*k))
            .map(|k| differs_at(x.get(k), y.get(k), &format!("{path}.{k}")))
            .unwrap_or_else(|| path.to_owned()),
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .position(|(p, q)| p != q)
            .map(|i| differs_at(x.get(i), y.get(i), &format!("{path}[{i}]")))
            .unwrap_or_else(|| path.to_owned()),
        _ => path.to_owned(),
    }
}
