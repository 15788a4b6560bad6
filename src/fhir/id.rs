//! The FHIR logical id: `[A-Za-z0-9\-\.]{1,64}`.

use std::fmt;

/// A valid FHIR logical id. Parse at the edge; everything below trusts it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Id(String);

impl Id {
    pub fn parse(s: &str) -> Option<Id> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            // `.` and `..` would be rewritten by every HTTP client; demand one letter or digit.
            && s.bytes().any(|b| b.is_ascii_alphanumeric());
        ok.then(|| Id(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Id;

    #[test]
    fn accepts_the_fhir_id_alphabet_up_to_64_characters() {
        for ok in [
            "pat2",
            "a",
            "A-b.9",
            &"x".repeat(64),
            "123e4567-e89b-12d3-a456-426614174000",
        ] {
            assert!(Id::parse(ok).is_some(), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            &"x".repeat(65),
            "../x",
            "a/b",
            "123/_history/1",
            "%2e%2e",
            "_",
            ":",
            "é",
            "a b",
            "a\u{0}",
            "..",
            ".",
            "-",
        ] {
            assert!(Id::parse(bad).is_none(), "{bad:?}");
        }
    }
}
