//! The migrations of each engine, embedded in the binary so `serve` needs no files beside it.

use sqlx::migrate::{Migration, MigrationType, Migrator};
use std::borrow::Cow;

macro_rules! migration {
    ($version:expr, $name:expr, $path:expr) => {
        Migration::new(
            $version,
            Cow::Borrowed($name),
            MigrationType::Simple,
            Cow::Borrowed(include_str!($path)),
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
        migration!(
            1,
            "foundation",
            "../../migrations/sqlite/0001_foundation.sql"
        ),
        migration!(2, "clinical", "../../migrations/sqlite/0002_clinical.sql"),
        migration!(
            3,
            "custom field entities",
            "../../migrations/sqlite/0003_custom_field_entities.sql"
        ),
        migration!(
            4,
            "observations",
            "../../migrations/sqlite/0004_observations.sql"
        ),
        migration!(
            5,
            "report files",
            "../../migrations/sqlite/0005_report_files.sql"
        ),
        migration!(6, "search", "../../migrations/sqlite/0006_search.sql"),
        migration!(
            7,
            "search indexes",
            "../../migrations/sqlite/0007_search_indexes.sql"
        ),
        migration!(
            8,
            "identifier indexes",
            "../../migrations/sqlite/0008_identifier_indexes.sql"
        ),
        migration!(
            9,
            "write costs",
            "../../migrations/sqlite/0009_write_costs.sql"
        ),
        migration!(
            10,
            "write order",
            "../../migrations/sqlite/0010_write_order.sql"
        ),
        migration!(
            11,
            "linked results",
            "../../migrations/sqlite/0011_linked_results.sql"
        ),
        migration!(
            12,
            "bounded index keys",
            "../../migrations/sqlite/0012_bounded_index_keys.sql"
        ),
        migration!(
            13,
            "authorization",
            "../../migrations/sqlite/0013_authorization.sql"
        ),
        migration!(
            14,
            "app launch",
            "../../migrations/sqlite/0014_app_launch.sql"
        ),
        migration!(15, "audit", "../../migrations/sqlite/0015_audit.sql"),
        migration!(
            16,
            "audit journal",
            "../../migrations/sqlite/0016_audit_journal.sql"
        ),
        migration!(
            17,
            "walked codes",
            "../../migrations/sqlite/0017_walked_codes.sql"
        ),
        migration!(
            18,
            "covering strings",
            "../../migrations/sqlite/0018_covering_strings.sql"
        ),
    ])
}

pub fn postgres() -> Migrator {
    migrator(vec![
        migration!(
            1,
            "foundation",
            "../../migrations/postgres/0001_foundation.sql"
        ),
        migration!(2, "clinical", "../../migrations/postgres/0002_clinical.sql"),
        migration!(
            3,
            "custom field entities",
            "../../migrations/postgres/0003_custom_field_entities.sql"
        ),
        migration!(
            4,
            "observations",
            "../../migrations/postgres/0004_observations.sql"
        ),
        migration!(
            5,
            "report files",
            "../../migrations/postgres/0005_report_files.sql"
        ),
        migration!(6, "search", "../../migrations/postgres/0006_search.sql"),
        migration!(
            7,
            "search indexes",
            "../../migrations/postgres/0007_search_indexes.sql"
        ),
        migration!(
            8,
            "identifier indexes",
            "../../migrations/postgres/0008_identifier_indexes.sql"
        ),
        migration!(
            9,
            "write costs",
            "../../migrations/postgres/0009_write_costs.sql"
        ),
        migration!(
            10,
            "write order",
            "../../migrations/postgres/0010_write_order.sql"
        ),
        migration!(
            11,
            "linked results",
            "../../migrations/postgres/0011_linked_results.sql"
        ),
        migration!(
            12,
            "bounded index keys",
            "../../migrations/postgres/0012_bounded_index_keys.sql"
        ),
        migration!(
            13,
            "authorization",
            "../../migrations/postgres/0013_authorization.sql"
        ),
        migration!(
            14,
            "app launch",
            "../../migrations/postgres/0014_app_launch.sql"
        ),
        migration!(15, "audit", "../../migrations/postgres/0015_audit.sql"),
        migration!(
            16,
            "audit journal",
            "../../migrations/postgres/0016_audit_journal.sql"
        ),
        migration!(
            17,
            "walked codes",
            "../../migrations/postgres/0017_walked_codes.sql"
        ),
    ])
}
