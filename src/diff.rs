//! `keyward diff A.db B.db`: what two keyward databases disagree on, so an operator can re-apply
//! writes after a forced restore (the pre-restore copy is one of the two).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use rusqlite::Connection;
use serde::Serialize;

/// One difference between the two databases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// `product`, `license`, `activation`, `lease`, `trial_use`, `blocked_computer` or `audit`.
    pub kind: &'static str,
    /// The record's identity: product code, license key, key + computer id (+ activation
    /// time), computer id, or audit time + actor + action + object.
    pub id: String,
    /// `only_in_a`, `only_in_b` or `differs`.
    pub change: &'static str,
    /// For `differs`: the fields whose values differ, as `field: a -> b`.
    pub fields: Vec<String>,
}

type Records = BTreeMap<String, BTreeMap<String, String>>;

/// Compares two database files, opened read-only and immutable.
pub fn diff_files(a: &Path, b: &Path) -> anyhow::Result<Vec<Difference>> {
    let a = open_at_current_version(a)?;
    let b = open_at_current_version(b)?;
    let mut differences = Vec::new();
    for (kind, sql) in QUERIES {
        let left = load(&a, sql)?;
        let right = load(&b, sql)?;
        compare(kind, &left, &right, &mut differences);
    }
    Ok(differences)
}

const QUERIES: [(&str, &str); 7] = [
    (
        "product",
        "SELECT code AS id, name, version, features FROM products",
    ),
    (
        "license",
        "SELECT l.license_key AS id, p.code AS product, l.model, l.seats, l.expires_at, \
         l.duration_days, l.first_activated_at, l.maintenance_expires_at, l.features, \
         l.customer_name, l.customer_email, l.customer_company, l.order_ref, l.notes, l.status, \
         l.floating FROM licenses l JOIN products p ON p.id = l.product_id",
    ),
    (
        "activation",
        "SELECT l.license_key || ' ' || a.computer_id || ' ' || a.activated_at AS id, \
         a.computer_name, a.released_at, a.released_by \
         FROM activations a JOIN licenses l ON l.id = a.license_id",
    ),
    (
        "lease",
        "SELECT l.license_key || ' ' || le.computer_id AS id, le.lease_id, le.checked_out_at, \
         le.expires_at FROM leases le JOIN licenses l ON l.id = le.license_id",
    ),
    (
        "trial_use",
        "SELECT t.license_key || ' ' || t.computer_id AS id, p.code AS product, \
         t.first_activated_at FROM trial_uses t JOIN products p ON p.id = t.product_id",
    ),
    (
        "blocked_computer",
        "SELECT computer_id AS id, reason, blocked_at, blocked_by FROM blocked_computers",
    ),
    (
        "audit",
        "SELECT at || ' ' || actor || ' ' || action || ' ' || object AS id, detail FROM audit_log",
    ),
];

/// Opens `path` read-only. A file of an older schema version, such as a pre-restore copy made
/// before an upgrade, is copied into memory and migrated there, so both sides have every table.
fn open_at_current_version(path: &Path) -> anyhow::Result<Connection> {
    let file = crate::snapshot::verify::open_immutable(path)?;
    crate::db::schema::check_markers(&file)
        .with_context(|| format!("cannot compare {}", path.display()))?;
    let (_, version) = crate::db::schema::read_markers(&file)?;
    if version >= crate::db::schema::SCHEMA_VERSION {
        return Ok(file);
    }
    let mut memory = Connection::open_in_memory()?;
    {
        let backup = rusqlite::backup::Backup::new(&file, &mut memory)?;
        // One step copies every page: the file is immutable, so nothing can restart it.
        let step = backup.step(-1)?;
        anyhow::ensure!(
            step == rusqlite::backup::StepResult::Done,
            "copying {} into memory stopped early ({step:?})",
            path.display()
        );
    }
    crate::db::schema::migrate(&mut memory)
        .with_context(|| format!("cannot migrate {} for the comparison", path.display()))?;
    Ok(memory)
}

fn load(conn: &Connection, sql: &str) -> anyhow::Result<Records> {
    let mut stmt = conn.prepare(sql)?;
    let names: Vec<String> = stmt.column_names().map(|n| n.to_string()).collect();
    let mut rows = stmt.query([])?;
    let mut records = Records::new();
    while let Some(row) = rows.next()? {
        let mut fields = BTreeMap::new();
        for (index, name) in names.iter().enumerate() {
            let value: rusqlite::types::Value = row.get(index)?;
            let text = match value {
                rusqlite::types::Value::Null => "null".to_string(),
                rusqlite::types::Value::Integer(number) => number.to_string(),
                rusqlite::types::Value::Real(number) => number.to_string(),
                rusqlite::types::Value::Text(text) => text,
                rusqlite::types::Value::Blob(bytes) => hex::encode(bytes),
            };
            fields.insert(name.clone(), text);
        }
        let id = fields.remove("id").unwrap_or_default();
        records.insert(group_key(&id), fields);
    }
    Ok(records)
}

/// Shows a leading canonical license key in its grouped form, as operators see keys.
fn group_key(id: &str) -> String {
    let (first, rest) = id.split_once(' ').unwrap_or((id, ""));
    match crate::keys::LicenseKey::parse(first) {
        Ok(key) if rest.is_empty() => key.grouped(),
        Ok(key) => format!("{} {rest}", key.grouped()),
        Err(_) => id.to_string(),
    }
}

fn compare(kind: &'static str, a: &Records, b: &Records, out: &mut Vec<Difference>) {
    for (id, left) in a {
        match b.get(id) {
            None => out.push(Difference {
                kind,
                id: id.clone(),
                change: "only_in_a",
                fields: Vec::new(),
            }),
            Some(right) if right != left => {
                let fields = left
                    .iter()
                    .filter(|(name, value)| right.get(*name) != Some(value))
                    .map(|(name, value)| {
                        format!(
                            "{name}: {value} -> {}",
                            right.get(name).map(String::as_str).unwrap_or("null")
                        )
                    })
                    .collect();
                out.push(Difference {
                    kind,
                    id: id.clone(),
                    change: "differs",
                    fields,
                });
            }
            Some(_) => {}
        }
    }
    for id in b.keys().filter(|id| !a.contains_key(*id)) {
        out.push(Difference {
            kind,
            id: id.clone(),
            change: "only_in_b",
            fields: Vec::new(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One product and one floating trial license, the same in both databases.
    const SHARED_ROWS: &str = "
        INSERT INTO products (id, code, name, version, features, created_at, updated_at)
        VALUES (1, 'app', 'App', '1', '[]', 't0', 't0');
        INSERT INTO licenses (id, license_key, product_id, model, seats, features, customer_name,
            customer_email, customer_company, order_ref, notes, status, created_at, updated_at,
            floating)
        VALUES (1, 'KEY1', 1, 'trial', 2, '[]', '', '', '', '', '', 'active', 't0', 't0', 1);";

    fn database(path: &Path, rows: &str) {
        let mut conn = Connection::open(path).unwrap();
        crate::db::schema::migrate(&mut conn).unwrap();
        conn.execute_batch(SHARED_ROWS).unwrap();
        conn.execute_batch(rows).unwrap();
        conn.close().unwrap();
    }

    fn difference(
        kind: &'static str,
        id: &str,
        change: &'static str,
        fields: &[&str],
    ) -> Difference {
        Difference {
            kind,
            id: id.to_string(),
            change,
            fields: fields.iter().map(|field| field.to_string()).collect(),
        }
    }

    #[test]
    fn older_schema_file_compared() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.db");
        let new = dir.path().join("new.db");
        {
            let mut conn = Connection::open(&old).unwrap();
            crate::db::schema::migrate_to(&mut conn, 1).unwrap();
            conn.execute_batch(
                "INSERT INTO products (id, code, name, version, features, created_at, updated_at)
                 VALUES (1, 'app', 'App', '1', '[]', 't0', 't0');",
            )
            .unwrap();
        }
        database(&new, "");

        let differences = diff_files(&old, &new).unwrap();

        assert_eq!(
            differences,
            vec![difference("license", "KEY1", "only_in_b", &[])]
        );
        assert_eq!(
            crate::db::schema::read_markers(&Connection::open(&old).unwrap())
                .unwrap()
                .1,
            1,
            "the old file was changed"
        );
    }

    #[test]
    fn leases_trials_and_blocks_compared() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.db");
        let b = dir.path().join("b.db");
        database(
            &a,
            "INSERT INTO leases (lease_id, license_id, computer_id, client_addr, checked_out_at,
                 heartbeat_at, expires_at) VALUES ('L1', 1, 'pc-1', '', 't1', 't1', 't2');
             INSERT INTO trial_uses VALUES (1, 'pc-1', 'KEY1', 't1');
             INSERT INTO blocked_computers VALUES ('pc-9', 'chargeback', 't1', 'admin');",
        );
        database(
            &b,
            "INSERT INTO leases (lease_id, license_id, computer_id, client_addr, checked_out_at,
                 heartbeat_at, expires_at) VALUES ('L1', 1, 'pc-1', '', 't1', 't3', 't4');
             INSERT INTO blocked_computers VALUES ('pc-9', 'fraud', 't1', 'admin');
             INSERT INTO blocked_computers VALUES ('pc-8', 'abuse', 't3', 'admin');",
        );

        let differences = diff_files(&a, &b).unwrap();

        assert_eq!(
            differences,
            vec![
                difference("lease", "KEY1 pc-1", "differs", &["expires_at: t2 -> t4"]),
                difference("trial_use", "KEY1 pc-1", "only_in_a", &[]),
                difference(
                    "blocked_computer",
                    "pc-9",
                    "differs",
                    &["reason: chargeback -> fraud"]
                ),
                difference("blocked_computer", "pc-8", "only_in_b", &[]),
            ]
        );
    }
}
