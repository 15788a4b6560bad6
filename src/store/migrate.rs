//! The migrations of each engine, embedded in the binary so `serve` needs no files beside it.

use sqlx::migrate::{Migration, MigrationType, Migrator};
use std::borrow::Cow;

macro_rules! migration {
    ($engine:literal, $version:expr, $name:expr, $file:literal) => {
        Migration::new(
            $version,
            Cow::Borrowed($name),
            MigrationType::Simple,
            Cow::Borrowed(include_str!(concat!(
                "../../migrations/",
                $engine,
                "/",
                $file
            ))),
            false,
        )
    };
}

fn migrator(migrations: Vec<Migration>) -> Migrator {
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

pub fn sqlite() -> Migrator {
    migrator(vec![
        migration!("sqlite", 1, "foundation", "0001_foundation.sql"),
        migration!("sqlite", 2, "clinical", "0002_clinical.sql"),
        migration!(
            "sqlite",
            3,
            "custom field entities",
            "0003_custom_field_entities.sql"
        ),
        migration!("sqlite", 4, "observations", "0004_observations.sql"),
        migration!("sqlite", 5, "report files", "0005_report_files.sql"),
        migration!("sqlite", 6, "search", "0006_search.sql"),
        migration!("sqlite", 7, "search indexes", "0007_search_indexes.sql"),
        migration!(
            "sqlite",
            8,
            "identifier indexes",
            "0008_identifier_indexes.sql"
        ),
        migration!("sqlite", 9, "write costs", "0009_write_costs.sql"),
        migration!("sqlite", 10, "write order", "0010_write_order.sql"),
        migration!("sqlite", 11, "linked results", "0011_linked_results.sql"),
        migration!(
            "sqlite",
            12,
            "bounded index keys",
            "0012_bounded_index_keys.sql"
        ),
        migration!("sqlite", 13, "authorization", "0013_authorization.sql"),
        migration!("sqlite", 14, "app launch", "0014_app_launch.sql"),
        migration!("sqlite", 15, "audit", "0015_audit.sql"),
        migration!("sqlite", 16, "audit journal", "0016_audit_journal.sql"),
        migration!("sqlite", 17, "walked codes", "0017_walked_codes.sql"),
        migration!(
            "sqlite",
            18,
            "covering strings",
            "0018_covering_strings.sql"
        ),
        migration!(
            "sqlite",
            19,
            "rendering compression",
            "0019_rendering_compression.sql"
        ),
        migration!("sqlite", 20, "trigger plans", "0020_trigger_plans.sql"),
        migration!("sqlite", 21, "covering walks", "0021_covering_walks.sql"),
    ])
}

pub fn postgres() -> Migrator {
    migrator(vec![
        migration!("postgres", 1, "foundation", "0001_foundation.sql"),
        migration!("postgres", 2, "clinical", "0002_clinical.sql"),
        migration!(
            "postgres",
            3,
            "custom field entities",
            "0003_custom_field_entities.sql"
        ),
        migration!("postgres", 4, "observations", "0004_observations.sql"),
        migration!("postgres", 5, "report files", "0005_report_files.sql"),
        migration!("postgres", 6, "search", "0006_search.sql"),
        migration!("postgres", 7, "search indexes", "0007_search_indexes.sql"),
        migration!(
            "postgres",
            8,
            "identifier indexes",
            "0008_identifier_indexes.sql"
        ),
        migration!("postgres", 9, "write costs", "0009_write_costs.sql"),
        migration!("postgres", 10, "write order", "0010_write_order.sql"),
        migration!("postgres", 11, "linked results", "0011_linked_results.sql"),
        migration!(
            "postgres",
            12,
            "bounded index keys",
            "0012_bounded_index_keys.sql"
        ),
        migration!("postgres", 13, "authorization", "0013_authorization.sql"),
        migration!("postgres", 14, "app launch", "0014_app_launch.sql"),
        migration!("postgres", 15, "audit", "0015_audit.sql"),
        migration!("postgres", 16, "audit journal", "0016_audit_journal.sql"),
        migration!("postgres", 17, "walked codes", "0017_walked_codes.sql"),
        migration!(
            "postgres",
            18,
            "covering strings",
            "0018_covering_strings.sql"
        ),
        migration!(
            "postgres",
            19,
            "rendering compression",
            "0019_rendering_compression.sql"
        ),
        migration!("postgres", 20, "trigger plans", "0020_trigger_plans.sql"),
        migration!("postgres", 21, "covering walks", "0021_covering_walks.sql"),
    ])
}

#[cfg(test)]
mod tests {
    /// Both engines' migrations keep the same numbers and names (a change one engine does not
    /// need still takes its number on the other, as a migration that changes nothing).
    #[test]
    fn both_engines_number_and_name_their_migrations_alike() {
        let listed = |m: sqlx::migrate::Migrator| -> Vec<(i64, String)> {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect()
        };
        let (sqlite, postgres) = (listed(super::sqlite()), listed(super::postgres()));
        assert_eq!(sqlite, postgres);
        let numbers: Vec<i64> = sqlite.iter().map(|(v, _)| *v).collect();
        assert_eq!(numbers, (1..=numbers.len() as i64).collect::<Vec<_>>());
    }
}
