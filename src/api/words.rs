//! The words of the sign-in, patient picker and consent pages, in English and Spanish.

use axum::http::{header, HeaderMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Es,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Es => "es",
        }
    }

    /// A language tag (`es-MX`, `en`): Spanish or, for anything else, English.
    pub fn of_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "es" => Some(Lang::Es),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The browser's first language of the two, by `Accept-Language` and its weights.
    pub fn of_browser(headers: &HeaderMap) -> Lang {
        let Some(v) = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
        else {
            return Lang::En;
        };
        let mut best: Option<(f32, Lang)> = None;
        for part in v.split(',').take(32) {
            let mut bits = part.split(';');
            let Some(lang) = bits.next().and_then(Lang::of_tag) else {
                continue;
            };
            let q = bits
                .find_map(|b| b.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }
}

/// Every text: its key, in English, in Spanish.
const WORDS: &[(&str, &str, &str)] = &[
    ("sign_in", "Sign in", "Iniciar sesión"),
    (
        "sign_in_to",
        "Sign in to allow",
        "Inicie sesión para autorizar a",
    ),
    ("email", "Email", "Correo electrónico"),
    ("password", "Password", "Contraseña"),
    (
        "wrong",
        "The email or password is not right.",
        "El correo o la contraseña no son correctos.",
    ),
    (
        "throttled",
        "Too many failed attempts. Wait 15 minutes and try again.",
        "Demasiados intentos fallidos. Espere 15 minutos e inténtelo de nuevo.",
    ),
    ("pick", "Choose a patient", "Elija un paciente"),
    (
        "pick_for",
        "Which patient's record may this app use?",
        "¿Qué expediente de paciente puede usar esta aplicación?",
    ),
    (
        "search_patient",
        "Name or identifier",
        "Nombre o identificador",
    ),
    ("search", "Search", "Buscar"),
    ("choose", "Choose", "Elegir"),
    (
        "no_patients",
        "No patient found.",
        "No se encontró ningún paciente.",
    ),
    ("born", "born", "nacido el"),
    ("consent", "Allow access", "Permitir acceso"),
    ("asks", "asks to:", "solicita:"),
    (
        "untick",
        "Untick anything you do not want to allow.",
        "Desmarque lo que no quiera permitir.",
    ),
    (
        "categories",
        "Only these kinds of observations (none ticked: all of them):",
        "Solo estos tipos de observaciones (ninguno marcado: todos):",
    ),
    ("allow", "Allow", "Permitir"),
    ("deny", "Do not allow", "No permitir"),
    (
        "identity",
        "Know who you are (your name and role)",
        "Saber quién es usted (su nombre y función)",
    ),
    (
        "offline_access",
        "Keep access after you close the app (until you revoke it)",
        "Mantener el acceso después de cerrar la aplicación (hasta que lo revoque)",
    ),
    (
        "online_access",
        "Keep access while you stay signed in",
        "Mantener el acceso mientras su sesión siga abierta",
    ),
    ("patient_context", "For the patient", "Para el paciente"),
    ("own_record", "your own record", "su propio expediente"),
    (
        "patient_record",
        "this patient's record",
        "el expediente de este paciente",
    ),
    ("and", "and", "y"),
    (
        "every_record",
        "every record you may see",
        "todo expediente que usted pueda ver",
    ),
    ("r", "see", "ver"),
    ("s", "search", "buscar"),
    ("c", "add", "añadir"),
    ("u", "change", "modificar"),
    ("d", "delete", "borrar"),
    ("signed_out", "You are signed out.", "Ha cerrado la sesión."),
    ("sign_out", "Sign out", "Cerrar sesión"),
    (
        "problem",
        "This request cannot go on",
        "Esta solicitud no puede continuar",
    ),
    (
        "UnknownClient",
        "The app is not registered with this server.",
        "La aplicación no está registrada en este servidor.",
    ),
    (
        "RedirectUri",
        "The app's return address is not one it registered.",
        "La dirección de retorno de la aplicación no es una de las registradas.",
    ),
    (
        "Expired",
        "This page has expired or was opened in another browser. Start again from the app.",
        "Esta página caducó o se abrió en otro navegador. Vuelva a empezar desde la aplicación.",
    ),
    (
        "Forged",
        "The form did not come from this page. Start again from the app.",
        "El formulario no vino de esta página. Vuelva a empezar desde la aplicación.",
    ),
    (
        "PatientNotVisible",
        "You may not see this patient's record.",
        "Usted no puede ver el expediente de este paciente.",
    ),
];

/// The text `key` in `lang` (empty for a key there is no text for).
pub fn t(lang: Lang, key: &str) -> &'static str {
    match WORDS.iter().find(|(k, _, _)| *k == key) {
        Some((_, en, es)) => match lang {
            Lang::En => en,
            Lang::Es => es,
        },
        None => "",
    }
}

/// The plain name of a resource type's data.
pub fn type_words(lang: Lang, rtype: &str) -> String {
    let (en, es) = match rtype {
        "Patient" => (
            "personal details (name, birth date, contacts)",
            "datos personales (nombre, fecha de nacimiento, contactos)",
        ),
        "Encounter" => ("visits", "consultas"),
        "Observation" => (
            "vital signs and test results",
            "signos vitales y resultados de pruebas",
        ),
        "MedicationRequest" => ("prescriptions", "recetas"),
        "DiagnosticReport" => ("lab and test reports", "informes de laboratorio y pruebas"),
        "AllergyIntolerance" => ("allergies", "alergias"),
        "Practitioner" => ("the clinic's clinicians", "los profesionales de la clínica"),
        "AuditEvent" => (
            "the record of who accessed what",
            "el registro de quién accedió a qué",
        ),
        other => return other.to_owned(),
    };
    match lang {
        Lang::En => en.to_owned(),
        Lang::Es => es.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_language_follows_its_weights() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::of_browser(&h), Lang::En);
        h.insert(
            header::ACCEPT_LANGUAGE,
            "es-MX,es;q=0.9,en;q=0.8".parse().unwrap(),
        );
        assert_eq!(Lang::of_browser(&h), Lang::Es);
        h.insert(
            header::ACCEPT_LANGUAGE,
            "fr, en;q=0.5, es;q=0.4".parse().unwrap(),
        );
        assert_eq!(Lang::of_browser(&h), Lang::En);
        h.insert(header::ACCEPT_LANGUAGE, "de".parse().unwrap());
        assert_eq!(Lang::of_browser(&h), Lang::En);
    }

    #[test]
    fn every_page_text_is_in_both_languages() {
        for key in [
            "sign_in",
            "wrong",
            "throttled",
            "consent",
            "Forged",
            "Expired",
            "allow",
        ] {
            assert!(!t(Lang::En, key).is_empty() && !t(Lang::Es, key).is_empty());
            assert_ne!(t(Lang::En, key), t(Lang::Es, key));
        }
    }
}
