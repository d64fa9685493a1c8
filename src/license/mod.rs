//! The licensing domain: products, licenses (activation keys), activations, validation and the
//! audit log. Functions here take a `rusqlite::Connection` and the current time, so they run the
//! same inside the writer thread, a reader, or a test.

pub mod activations;
pub mod audit;
pub mod blocked;
pub mod csv_io;
pub mod input;
pub mod leases;
pub mod limits;
pub mod products;
pub mod signing_keys;
pub mod store;
pub mod tokens;
pub mod trials;
pub mod validate;

use serde::{Deserialize, Serialize};

use crate::db::DbError;

/// Sales model of a license.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    Permanent,
    Subscription,
    Trial,
}

impl Model {
    pub fn as_str(self) -> &'static str {
        match self {
            Model::Permanent => "permanent",
            Model::Subscription => "subscription",
            Model::Trial => "trial",
        }
    }

    pub fn parse(text: &str) -> Option<Model> {
        match text {
            "permanent" => Some(Model::Permanent),
            "subscription" => Some(Model::Subscription),
            "trial" => Some(Model::Trial),
            _ => None,
        }
    }
}

/// Whether a license may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Suspended,
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Suspended => "suspended",
            Status::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "active" => Some(Status::Active),
            "suspended" => Some(Status::Suspended),
            "revoked" => Some(Status::Revoked),
            _ => None,
        }
    }
}

/// A product that licenses are issued for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Product {
    pub code: String,
    pub name: String,
    pub version: String,
    pub features: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A license as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct License {
    pub key: String,
    pub product: String,
    pub model: Model,
    /// Concurrent use: seats limit live leases instead of activations.
    pub floating: bool,
    pub seats: i64,
    /// Live activations, or for a floating license the stored leases. Expired leases count here
    /// until they are reclaimed (at the next checkout or every `leases.reclaim_every`).
    pub seats_used: i64,
    /// Fixed expiry date, if any.
    pub expires_at: Option<String>,
    /// Days of use counted from the first activation, if any.
    pub duration_days: Option<i64>,
    pub first_activated_at: Option<String>,
    /// The earlier of `expires_at` and first activation plus `duration_days`.
    pub effective_expires_at: Option<String>,
    pub maintenance_expires_at: Option<String>,
    pub features: Vec<String>,
    pub customer_name: String,
    pub customer_email: String,
    pub customer_company: String,
    pub order_ref: String,
    pub notes: String,
    pub status: Status,
    pub created_at: String,
    pub updated_at: String,
}

/// An activation of a license on one computer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Activation {
    pub computer_id: String,
    pub computer_name: String,
    pub client_addr: String,
    pub activated_at: String,
    pub released_at: Option<String>,
    pub last_seen_at: Option<String>,
}

/// Errors of the licensing domain. Each has a stable machine code.
#[derive(Debug, thiserror::Error)]
pub enum LicenseError {
    #[error("license key not found")]
    NotFound,
    #[error("license is revoked")]
    Revoked,
    #[error("license is suspended")]
    Suspended,
    #[error("license expired at {0}")]
    Expired(String),
    #[error("all {seats} seats of this license are in use; release a computer first")]
    SeatsExhausted { seats: i64 },
    #[error("license is not activated on this computer")]
    NotActivated,
    #[error("computer {0:?} is blocked from using licenses; contact the vendor")]
    ComputerBlocked(String),
    #[error("computer {0:?} is not blocked")]
    ComputerNotBlocked(String),
    #[error(
        "this computer already used {limit} trial license(s) of product {product:?}; \
         buy a license to continue"
    )]
    TrialUsed { product: String, limit: i64 },
    #[error(
        "this computer made {limit} activations in the last 24 hours, the maximum \
         (limits.activations_per_computer_per_day); retry after {retry_at}"
    )]
    ActivationLimit { limit: i64, retry_at: String },
    #[error(
        "this license was released {limit} times within limits.release_period, the maximum \
         (limits.releases_per_seat times its seats); retry after {retry_at} or ask the vendor \
         to release it"
    )]
    ReleaseLimit { limit: i64, retry_at: String },
    #[error(
        "this license is floating; check out a lease with POST /v1/leases/checkout instead \
         of activating it"
    )]
    FloatingLicense,
    #[error("this license is not floating; activate it with POST /v1/activate")]
    NotFloating,
    #[error("lease not found for this license; check out a new lease")]
    LeaseNotFound,
    #[error("signing key {0:?} not found; list keys with `keyward keys list`")]
    KeyNotFound(String),
    #[error(
        "signing key {0:?} is the current signing key; run `keyward keys rotate` first, then \
         retire it"
    )]
    KeyInUse(String),
    #[error(
        "product {0:?} not found; list products with `keyward product list`, or import with \
         --create-products to create it"
    )]
    ProductNotFound(String),
    #[error("product {0:?} already exists")]
    ProductExists(String),
    #[error("product {0:?} still has licenses; delete or move them first")]
    ProductInUse(String),
    #[error("license key {0} already exists")]
    KeyExists(String),
    #[error("admin token {0:?} not found")]
    TokenNotFound(String),
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<rusqlite::Error> for LicenseError {
    fn from(err: rusqlite::Error) -> Self {
        LicenseError::Db(DbError::from(err))
    }
}

impl LicenseError {
    /// Converts the error for a database read closure: a database error stays itself, and any
    /// other error becomes a database error carrying its message.
    pub fn into_db_error(self) -> crate::db::DbError {
        match self {
            LicenseError::Db(db) => db,
            other => crate::db::DbError::Sqlite(other.to_string()),
        }
    }

    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        LicenseError::Invalid {
            field,
            message: message.into(),
        }
    }

    /// Stable machine code for API responses.
    pub fn code(&self) -> &'static str {
        match self {
            LicenseError::NotFound => "NOT_FOUND",
            LicenseError::Revoked => "REVOKED",
            LicenseError::Suspended => "SUSPENDED",
            LicenseError::Expired(_) => "EXPIRED",
            LicenseError::SeatsExhausted { .. } => "SEATS_EXHAUSTED",
            LicenseError::NotActivated => "NOT_ACTIVATED",
            LicenseError::ComputerBlocked(_) => "COMPUTER_BLOCKED",
            LicenseError::ComputerNotBlocked(_) => "COMPUTER_NOT_BLOCKED",
            LicenseError::TrialUsed { .. } => "TRIAL_USED",
            LicenseError::ActivationLimit { .. } => "ACTIVATION_LIMIT",
            LicenseError::ReleaseLimit { .. } => "RELEASE_LIMIT",
            LicenseError::FloatingLicense => "FLOATING_LICENSE",
            LicenseError::NotFloating => "NOT_FLOATING",
            LicenseError::LeaseNotFound => "LEASE_NOT_FOUND",
            LicenseError::KeyNotFound(_) => "KEY_NOT_FOUND",
            LicenseError::KeyInUse(_) => "KEY_IN_USE",
            LicenseError::ProductNotFound(_) => "PRODUCT_NOT_FOUND",
            LicenseError::ProductExists(_) => "PRODUCT_EXISTS",
            LicenseError::ProductInUse(_) => "PRODUCT_IN_USE",
            LicenseError::KeyExists(_) => "KEY_EXISTS",
            LicenseError::TokenNotFound(_) => "TOKEN_NOT_FOUND",
            LicenseError::Invalid { .. } => "INVALID_INPUT",
            LicenseError::Db(DbError::ReadOnly) => "SITE_STANDBY",
            LicenseError::Db(DbError::Busy) => "BUSY",
            LicenseError::Db(DbError::DiskFull(_)) => "INSUFFICIENT_STORAGE",
            LicenseError::Db(_) => "INTERNAL",
        }
    }
}
