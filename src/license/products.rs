//! Products.

use rusqlite::{Connection, OptionalExtension};
use serde::Deserialize;

use super::{LicenseError, Product, audit, input};

/// Fields of a new product.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub features: Vec<String>,
}

/// Changes to a product; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub version: Option<String>,
    pub features: Option<Vec<String>>,
}

const COLUMNS: &str = "code, name, version, features, created_at, updated_at";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Product> {
    let features: String = row.get(3)?;
    Ok(Product {
        code: row.get(0)?,
        name: row.get(1)?,
        version: row.get(2)?,
        features: serde_json::from_str(&features).unwrap_or_default(),
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
    })
}

pub fn create(
    conn: &Connection,
    new: &NewProduct,
    actor: &str,
    now: &str,
) -> Result<Product, LicenseError> {
    let code = input::product_code(&new.code)?;
    let name = input::identifier("name", &new.name, 200)?;
    let version = input::text("version", &new.version, 64, false)?;
    let features = input::features(&new.features)?;
    if find(conn, &code)?.is_some() {
        return Err(LicenseError::ProductExists(code));
    }
    conn.execute(
        "INSERT INTO products (code, name, version, features, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        (
            &code,
            &name,
            &version,
            serde_json::to_string(&features).expect("json"),
            now,
        ),
    )?;
    audit::record(
        conn,
        now,
        actor,
        "product.create",
        &code,
        serde_json::json!({"name": name}),
    )?;
    find(conn, &code)?.ok_or(LicenseError::ProductNotFound(code))
}

pub fn update(
    conn: &Connection,
    code: &str,
    patch: &ProductPatch,
    actor: &str,
    now: &str,
) -> Result<Product, LicenseError> {
    let mut product =
        find(conn, code)?.ok_or_else(|| LicenseError::ProductNotFound(code.into()))?;
    if let Some(name) = &patch.name {
        product.name = input::identifier("name", name, 200)?;
    }
    if let Some(version) = &patch.version {
        product.version = input::text("version", version, 64, false)?;
    }
    if let Some(features) = &patch.features {
        product.features = input::features(features)?;
    }
    conn.execute(
        "UPDATE products SET name = ?2, version = ?3, features = ?4, updated_at = ?5 WHERE code = ?1",
        (
            code,
            &product.name,
            &product.version,
            serde_json::to_string(&product.features).expect("json"),
            now,
        ),
    )?;
    audit::record(
        conn,
        now,
        actor,
        "product.update",
        code,
        serde_json::to_value(patch_json(patch)).unwrap_or_default(),
    )?;
    find(conn, code)?.ok_or_else(|| LicenseError::ProductNotFound(code.into()))
}

fn patch_json(patch: &ProductPatch) -> serde_json::Value {
    serde_json::json!({"name": patch.name, "version": patch.version, "features": patch.features})
}

pub fn delete(conn: &Connection, code: &str, actor: &str, now: &str) -> Result<(), LicenseError> {
    let id = id_of(conn, code)?;
    let licenses: i64 = conn.query_row(
        "SELECT count(*) FROM licenses WHERE product_id = ?1",
        [id],
        |row| row.get(0),
    )?;
    if licenses > 0 {
        return Err(LicenseError::ProductInUse(code.into()));
    }
    conn.execute("DELETE FROM products WHERE id = ?1", [id])?;
    audit::record(
        conn,
        now,
        actor,
        "product.delete",
        code,
        serde_json::json!({}),
    )?;
    Ok(())
}

pub fn find(conn: &Connection, code: &str) -> Result<Option<Product>, LicenseError> {
    let sql = format!("SELECT {COLUMNS} FROM products WHERE code = ?1");
    Ok(conn.query_row(&sql, [code], from_row).optional()?)
}

pub fn list(conn: &Connection) -> Result<Vec<Product>, LicenseError> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM products ORDER BY code"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Returns the row id of a product, or `ProductNotFound`.
pub fn id_of(conn: &Connection, code: &str) -> Result<i64, LicenseError> {
    conn.query_row("SELECT id FROM products WHERE code = ?1", [code], |row| {
        row.get(0)
    })
    .optional()?
    .ok_or_else(|| LicenseError::ProductNotFound(code.into()))
}
