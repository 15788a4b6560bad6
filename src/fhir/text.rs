//! String normalisation for search: case- and accent-insensitive.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Lower-cases and strips accents (`José` → `jose`), so searches match as people expect.
pub fn normalize(s: &str) -> String {
    s.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn folds_case_and_accents() {
        assert_eq!(normalize("José Pérez ÑANDÚ"), "jose perez nandu");
        assert_eq!(normalize("Müller"), "muller");
    }
}
