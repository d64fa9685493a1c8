//! keyward: a self-hosted software license server that ships consistent SQLite snapshots to a
//! disaster-recovery site.
//!
//! # Layout
//!
//! - [`license`]: the licensing domain (products, licenses, activations, floating-license
//!   leases, trials, abuse limits, blocked computers, validation, audit log, admin tokens and
//!   signing-key rotation) as functions over a SQLite connection.
//! - [`keys`]: the license key format; [`signing`]: Ed25519 keys, signed responses and
//!   computer keys.
//! - [`db`]: the database file, migrations, the group-committing writer thread and the reader
//!   pool, with a gate that closes every connection for a snapshot swap.
//! - [`api`]: the HTTP surface (axum), with its OpenAPI document, probes and status page;
//!   [`server`] opens a data directory and serves it; [`ratelimit`]: the per-address token
//!   buckets in front of the client endpoints; [`tls`]: HTTPS from PEM files.
//! - [`metrics`]: request, site and replication metrics in the Prometheus text format.
//! - [`offline`]: offline activation request and response files and signed license files, with
//!   the functions that verify them on a client without network access.
//! - [`role`]: active or standby, epochs and write positions that fence writes and detect
//!   divergence.
//! - [`snapshot`]: taking snapshots with the online backup API, shipping them to the peer,
//!   verifying and swapping them in.
//! - [`redirect`]: the QLM redirect file (`qlmredirect.xml`) and the redirector that serves it.
//! - [`client`]: the Rust client library: follows the redirect file, verifies signed responses
//!   and validates offline within limits.
//! - [`config`]: layered configuration; [`cli`]: the `keyward` command line; [`demo`]: the
//!   disaster-recovery drill; [`diff`]: compares two database files.
//!
//! Data flows one way: writes reach the active site's writer thread, the scheduler snapshots
//! the database to a file, the shipper streams the file to the standby peer, and the peer
//! verifies it and swaps it in whole.

pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod db;
pub mod demo;
pub mod diff;
pub mod failpoint;
pub mod fsutil;
pub mod ids;
pub mod keys;
pub mod license;
pub mod metrics;
pub mod offline;
pub mod ratelimit;
pub mod redirect;
pub mod role;
pub mod server;
pub mod signing;
pub mod snapshot;
pub mod time;
pub mod tls;
