//! OperationOutcome: every error the server sends, and the issues of a validation.

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    fn code(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// The `issue.code` values this server uses (http://hl7.org/fhir/issue-type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    Security,
    Login,
    Forbidden,
    NotSupported,
    Duplicate,
    NotFound,
    Deleted,
    TooLong,
    Conflict,
    Processing,
    Exception,
    Informational,
    BusinessRule,
    TooCostly,
    Transient,
    Timeout,
    Throttled,
}

impl IssueType {
    pub fn code(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::Invariant => "invariant",
            IssueType::Security => "security",
            IssueType::Login => "login",
            IssueType::Forbidden => "forbidden",
            IssueType::NotSupported => "not-supported",
            IssueType::Duplicate => "duplicate",
            IssueType::NotFound => "not-found",
            IssueType::Deleted => "deleted",
            IssueType::TooLong => "too-long",
            IssueType::Conflict => "conflict",
            IssueType::Processing => "processing",
            IssueType::Exception => "exception",
            IssueType::Informational => "informational",
            IssueType::BusinessRule => "business-rule",
            IssueType::TooCostly => "too-costly",
            IssueType::Transient => "transient",
            IssueType::Timeout => "timeout",
            IssueType::Throttled => "throttled",
        }
    }
}

/// One issue of an OperationOutcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueType,
    pub diagnostics: String,
    /// FHIRPath of the element concerned, e.g. `Patient.name[0].given[1]`.
    pub expression: Option<String>,
}

impl Issue {
    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Error,
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    pub fn at(mut self, expression: impl Into<String>) -> Issue {
        self.expression = Some(expression.into());
        self
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "severity": self.severity.code(),
            "code": self.code.code(),
            "diagnostics": self.diagnostics,
        });
        if let Some(e) = &self.expression {
            v["expression"] = json!([e]);
        }
        v
    }
}

/// Builds an OperationOutcome resource from its issues.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": issues.iter().map(Issue::to_json).collect::<Vec<_>>(),
    })
}

/// An informational OperationOutcome (for `Prefer: return=OperationOutcome` on success).
pub fn information(message: impl Into<String>) -> Value {
    operation_outcome(&[Issue {
        severity: Severity::Information,
        code: IssueType::Informational,
        diagnostics: message.into(),
        expression: None,
    }])
}
