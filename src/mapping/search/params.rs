//! What a mapping declares of its search parameters (name, type, [`Target`]: where the
//! values live), the modifiers understood, and where a condition is built ([`Ctx`]).

use super::*;

/// The FHIR search parameter type, as the CapabilityStatement states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    String,
    Token,
    Date,
    Reference,
    Quantity,
    Composite,
    Uri,
}

impl ParamKind {
    pub fn code(self) -> &'static str {
        match self {
            ParamKind::String => "string",
            ParamKind::Token => "token",
            ParamKind::Date => "date",
            ParamKind::Reference => "reference",
            ParamKind::Quantity => "quantity",
            ParamKind::Composite => "composite",
            ParamKind::Uri => "uri",
        }
    }
}

/// Where a parameter's values live. Table and column names are static: never user input.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The logical id (`_id`).
    FhirId,
    /// `meta.lastUpdated`, the row's updated_at.
    LastUpdated,
    /// A code column, optionally bound to one code system.
    TokenColumn {
        column: &'static str,
        system: Option<&'static str>,
    },
    /// A boolean column.
    BoolColumn { column: &'static str },
    /// A date column whose value stands for a year, month or day as `precision_column` says.
    DateColumn {
        column: &'static str,
        precision_column: &'static str,
    },
    /// The `search_strings` index, rows kept under the parameter's own name.
    StringIndex,
    /// Codes (of one code system) kept in the `search_strings` index under the parameter's
    /// name, matched exactly.
    CodeIndex { system: &'static str },
    /// A code column and the column of its system.
    TokenColumns {
        code: &'static str,
        system: &'static str,
        /// The display or text column `:text` searches.
        text: Option<&'static str>,
    },
    /// A foreign key to a catalog table with `code` and `system` columns.
    CatalogToken {
        column: &'static str,
        table: &'static str,
    },
    /// A foreign key to the table of another resource type.
    RefColumn {
        column: &'static str,
        table: &'static str,
        resource_type: &'static str,
    },
    /// A Period held in two timestamp columns (either may be open), or a date/dateTime held
    /// in one (`start` = `end`). A precision column (`year`, `month`, `day`; NULL for a time to
    /// the second) makes the element's range reach to the end of its precision.
    Period {
        start: &'static str,
        end: &'static str,
        start_precision: Option<&'static str>,
        end_precision: Option<&'static str>,
    },
    /// Observation codes: the code columns of the `observations` view, the other codings the
    /// client sent (kept in `search_strings` under `code` and `component-code`, system in `value`), and
    /// with `components` the component codes too (vital-sign components from vital_sign_codes).
    ObservationCode { components: bool },
    /// References kept in `search_strings` under the parameter's name (the target's id in
    /// `exact`), for references that have no column.
    RefIndex { resource_type: &'static str },
    /// A Quantity held as a numeric column with the system and code of its unit.
    Quantity {
        value: &'static str,
        system: &'static str,
        code: &'static str,
    },
    /// Observation code and Quantity value as a pair (`token$quantity`): of the Observation itself
    /// (`top`), of one of its components (`components`: the `search_quantities` index and the
    /// blood-pressure columns of vital signs), or either.
    CodeValueQuantity { top: bool, components: bool },
    /// Tokens kept in `search_strings` under the parameter's name: system in `value` (empty when
    /// none), code in `exact` (`meta.tag`, `meta.security`).
    IndexToken,
    /// URIs kept in `search_strings` under the parameter's name, in `exact` (`meta.profile`).
    IndexUri,
    /// A child table of identifiers with `system` and `value` columns.
    IdentifierTable {
        table: &'static str,
        foreign_key: &'static str,
    },
}

/// A search parameter a mapping supports.
#[derive(Debug, Clone, Copy)]
pub struct SearchParam {
    pub name: &'static str,
    pub kind: ParamKind,
    pub target: Target,
    /// Canonical URL of the SearchParameter definition.
    pub definition: &'static str,
    pub documentation: &'static str,
}

/// The foreign keys a reference parameter can follow, by target type.
const PATIENT: Target = Target::RefColumn {
    column: "patient_id",
    table: "patients",
    resource_type: "Patient",
};

/// A reference parameter to the resource's Patient (`patient`, `subject`) over `patient_id`.
pub const fn patient_param(
    name: &'static str,
    definition: &'static str,
    documentation: &'static str,
) -> SearchParam {
    SearchParam {
        name,
        kind: ParamKind::Reference,
        target: PATIENT,
        definition,
        documentation,
    }
}

/// A reference parameter over a foreign key `column` to the table of `resource_type`.
pub const fn reference_param(
    name: &'static str,
    column: &'static str,
    table: &'static str,
    resource_type: &'static str,
    definition: &'static str,
    documentation: &'static str,
) -> SearchParam {
    SearchParam {
        name,
        kind: ParamKind::Reference,
        target: Target::RefColumn {
            column,
            table,
            resource_type,
        },
        definition,
        documentation,
    }
}

/// Address and telecom parameters of a person (Patient, Practitioner), kept in the name index.
pub const PERSON_CONTACT: [SearchParam; 8] = [
    SearchParam {
        name: "address",
        kind: ParamKind::String,
        target: Target::StringIndex,
        definition: "http://hl7.org/fhir/SearchParameter/individual-address",
        documentation:
            "Any part of any address: line, city, district, state, postal code, country or text",
    },
    SearchParam {
        name: "address-city",
        kind: ParamKind::String,
        target: Target::StringIndex,
        definition: "http://hl7.org/fhir/SearchParameter/individual-address-city",
        documentation: "A city of an address",
    },
    SearchParam {
        name: "address-state",
        kind: ParamKind::String,
        target: Target::StringIndex,
        definition: "http://hl7.org/fhir/SearchParameter/individual-address-state",
        documentation: "A state of an address",
    },
    SearchParam {
        name: "address-postalcode",
        kind: ParamKind::String,
        target: Target::StringIndex,
        definition: "http://hl7.org/fhir/SearchParameter/individual-address-postalcode",
        documentation: "A postal code of an address",
    },
    SearchParam {
        name: "address-country",
        kind: ParamKind::String,
        target: Target::StringIndex,
        definition: "http://hl7.org/fhir/SearchParameter/individual-address-country",
        documentation: "A country of an address",
    },
    SearchParam {
        name: "telecom",
        kind: ParamKind::Token,
        target: Target::IndexUri,
        definition: "http://hl7.org/fhir/SearchParameter/individual-telecom",
        documentation: "The value of any kind of telecom detail",
    },
    SearchParam {
        name: "phone",
        kind: ParamKind::Token,
        target: Target::IndexUri,
        definition: "http://hl7.org/fhir/SearchParameter/individual-phone",
        documentation: "A phone number (exactly as written)",
    },
    SearchParam {
        name: "email",
        kind: ParamKind::Token,
        target: Target::IndexUri,
        definition: "http://hl7.org/fhir/SearchParameter/individual-email",
        documentation: "An email address (exactly as written)",
    },
];

/// The parameters every resource type supports.
pub const COMMON: &[SearchParam] = &[
    SearchParam {
        name: "_id",
        kind: ParamKind::Token,
        target: Target::FhirId,
        definition: "http://hl7.org/fhir/SearchParameter/Resource-id",
        documentation: "Logical id of the resource",
    },
    SearchParam {
        name: "_lastUpdated",
        kind: ParamKind::Date,
        target: Target::LastUpdated,
        definition: "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
        documentation: "When the resource version last changed",
    },
    SearchParam {
        name: "_tag",
        kind: ParamKind::Token,
        target: Target::IndexToken,
        definition: "http://hl7.org/fhir/SearchParameter/Resource-tag",
        documentation: "Tags applied to this resource (meta.tag)",
    },
    SearchParam {
        name: "_security",
        kind: ParamKind::Token,
        target: Target::IndexToken,
        definition: "http://hl7.org/fhir/SearchParameter/Resource-security",
        documentation: "Security labels applied to this resource (meta.security)",
    },
    SearchParam {
        name: "_profile",
        kind: ParamKind::Uri,
        target: Target::IndexUri,
        definition: "http://hl7.org/fhir/SearchParameter/Resource-profile",
        documentation: "Profiles this resource claims to conform to (meta.profile)",
    },
];

/// `identifier` of the clinical resources whose identifiers have no table of their own: kept in
/// the `search_strings` index (system in `value`, value in `exact`) by [`index_meta`].
pub const CLINICAL_IDENTIFIER: SearchParam = SearchParam {
    name: "identifier",
    kind: ParamKind::Token,
    target: Target::IndexToken,
    definition: "http://hl7.org/fhir/SearchParameter/clinical-identifier",
    documentation: "A business identifier of the resource (identifier)",
};

/// A malformed or unsupported search; the message names the parameter (400).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SearchError(pub String);

/// Where a condition is built: the resource table is always aliased `t` (a subquery for a chain
/// aliases its own table `t` too, which shadows the outer one).
pub struct Ctx<'a> {
    pub dialect: Dialect,
    pub resource_type: &'static str,
    pub registry: &'a crate::mapping::Registry,
    /// This server's FHIR base URL: absolute references are local only under it.
    pub base_url: &'a str,
    /// Whether another condition of the same query already narrows the rows to a few (a
    /// patient, an encounter, ids): conditions then test each row (correlated subqueries)
    /// instead of listing every row that matches them.
    pub narrow: bool,
    /// What the caller may see: every table the search reads is restricted to it.
    pub restriction: &'a Restriction,
}

impl Ctx<'_> {
    /// The same context for another resource type (the target of a chain, the source of `_has`).
    pub fn on(&self, resource_type: &'static str) -> Ctx<'_> {
        Ctx {
            dialect: self.dialect,
            resource_type,
            registry: self.registry,
            base_url: self.base_url,
            narrow: false,
            restriction: self.restriction,
        }
    }
}

/// A search modifier (https://hl7.org/fhir/R4/search.html#modifiers) this server understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modifier {
    None,
    Missing,
    Exact,
    Contains,
    Not,
    Text,
    OfType,
    /// `:Patient` on a reference: the target must be of that type.
    Type(String),
}

impl Modifier {
    /// The modifier named `m` if parameter `p` allows it; a 400 naming both otherwise.
    pub fn parse(p: &SearchParam, m: Option<&str>) -> Result<Modifier, SearchError> {
        let Some(m) = m else {
            return Ok(Modifier::None);
        };
        let out = match (m, p.kind) {
            ("missing", _) => Some(Modifier::Missing),
            ("exact", ParamKind::String) => Some(Modifier::Exact),
            ("contains", ParamKind::String) => Some(Modifier::Contains),
            ("not", ParamKind::Token) => Some(Modifier::Not),
            ("text", ParamKind::Token) if text_columns(&p.target).is_some() => Some(Modifier::Text),
            ("of-type", ParamKind::Token) if matches!(p.target, Target::IdentifierTable { .. }) => {
                Some(Modifier::OfType)
            }
            (t, ParamKind::Reference)
                if t.len() > 1
                    && t.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                    && t.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                Some(Modifier::Type(t.to_owned()))
            }
            _ => None,
        };
        out.ok_or_else(|| {
            SearchError(format!(
                "modifier :{} is not supported on parameter {}",
                m.escape_default(),
                p.name
            ))
        })
    }
}

/// The display columns `:text` searches, when the target has any.
pub(super) fn text_columns(target: &Target) -> Option<()> {
    match target {
        Target::TokenColumns { text: Some(_), .. }
        | Target::CatalogToken { .. }
        | Target::ObservationCode { .. } => Some(()),
        _ => None,
    }
}
