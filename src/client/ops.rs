//! The client operations. Each one goes to the active server and is retried once on another
//! server when the active one moved: after a connection failure when the redirect file now
//! names another server, and after a `SITE_STANDBY` rejection. A `BUSY` rejection, sent when a
//! request waited too long for a snapshot swap, is retried once on the same server.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::offline::{check_computer_key, check_offline_period};
use super::state::{self, SignedBody};
use super::transport::Verified;
use super::{Activation, Client, ClientError, ClientLicense, Validation, ValidationSource};
use crate::api::client::{ActivateResponse, ReleaseResponse, ValidateResponse};
use crate::keys::LicenseKey;
use crate::license::validate::ValidationCode;
use crate::redirect::same_site;

/// Code of the rejection that a standby site sends for activations and releases.
const SITE_STANDBY: &str = "SITE_STANDBY";

/// Code of the rejection that a server sends when a request timed out waiting for a snapshot
/// swap. The request was not carried out, so sending it again is safe.
const BUSY: &str = "BUSY";

/// Rejection codes of an activation that mean the server refuses the license itself, which
/// ends its offline use on this client.
const LICENSE_REJECTION_CODES: [&str; 5] = [
    "REVOKED",
    "SUSPENDED",
    "EXPIRED",
    "NOT_FOUND",
    "COMPUTER_BLOCKED",
];

/// Wait before retrying a `BUSY` request, matching the `Retry-After: 1` header of the rejection.
const BUSY_RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// Minimum advance of the last server contact before the state file is rewritten, so that
/// frequent validations do not write the file each time.
const CONTACT_WRITE_INTERVAL: chrono::Duration = chrono::Duration::seconds(60);

#[derive(Serialize)]
struct ActivateBody<'a> {
    key: &'a str,
    computer_id: &'a str,
    computer_name: &'a str,
}

#[derive(Serialize)]
struct ValidateBody<'a> {
    key: &'a str,
    computer_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    computer_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    product: Option<&'a str>,
}

#[derive(Serialize)]
struct ReleaseBody<'a> {
    key: &'a str,
    computer_id: &'a str,
}

impl Client {
    /// Activates the license `key` on `computer_id`. Activating a computer that holds an
    /// activation already succeeds with `already_active` set.
    pub async fn activate(
        &self,
        key: &str,
        computer_id: &str,
        computer_name: &str,
    ) -> Result<Activation, ClientError> {
        let key = LicenseKey::parse(key)?;
        let body = ActivateBody {
            key: key.as_str(),
            computer_id,
            computer_name,
        };
        let called = self.call::<_, ActivateResponse>("v1/activate", &body).await;
        let (_url, response) = match called {
            Ok(answer) => answer,
            Err(err) => {
                if let ClientError::Rejected { code, .. } = &err
                    && LICENSE_REJECTION_CODES.contains(&code.as_str())
                {
                    self.forget_contact(&key, computer_id).await;
                }
                return Err(err);
            }
        };

        self.record_contact(&key, computer_id, response.server_time, response.proof)
            .await;
        let response = response.body;
        Ok(Activation {
            computer_key: response.computer_key,
            license: response.license,
            already_active: response.result == "ALREADY_ACTIVATED",
        })
    }

    /// Validates the license `key` on `computer_id` with the server. When `computer_key` is
    /// given, the server also checks that it was issued for this license and computer.
    ///
    /// An invalid license is a normal result with a code other than `VALID`.
    pub async fn validate(
        &self,
        key: &str,
        computer_id: &str,
        computer_key: Option<&str>,
    ) -> Result<Validation, ClientError> {
        let key = LicenseKey::parse(key)?;
        let body = ValidateBody {
            key: key.as_str(),
            computer_id,
            computer_key,
            product: self.inner.product.as_deref(),
        };
        let (url, response) = self
            .call::<_, ValidateResponse>("v1/validate", &body)
            .await?;

        let Verified {
            body,
            server_time,
            proof,
        } = response;
        if body.code == ValidationCode::Valid {
            self.record_contact(&key, computer_id, server_time, proof)
                .await;
        } else {
            // The server no longer confirms this license here, so offline checks must not
            // either.
            self.forget_contact(&key, computer_id).await;
        }
        Ok(Validation {
            code: body.code,
            license: body.license,
            claims: None,
            source: ValidationSource::Server { url, server_time },
        })
    }

    /// Releases the activation of `key` on `computer_id`, freeing its seat. Returns the
    /// license as it is after the release.
    pub async fn release(
        &self,
        key: &str,
        computer_id: &str,
    ) -> Result<ClientLicense, ClientError> {
        let key = LicenseKey::parse(key)?;
        let body = ReleaseBody {
            key: key.as_str(),
            computer_id,
        };
        let (_url, response) = self.call::<_, ReleaseResponse>("v1/release", &body).await?;
        self.forget_contact(&key, computer_id).await;
        Ok(response.body.license)
    }

    /// Checks the stored `computer_key` for `key` on `computer_id` without the server.
    ///
    /// The key must verify with the trusted keys and name this license and computer, and its
    /// expiry must not have passed on the local clock. When it passes those checks,
    /// `last_server_contact` must be known and at most `max_days_offline` days ago, or the
    /// result is [`ClientError::OfflineTooLong`]. Pass [`Client::last_server_contact_for`] of
    /// this license and computer unless the application tracks server contact itself.
    pub fn validate_offline(
        &self,
        computer_key: &str,
        key: &str,
        computer_id: &str,
        last_server_contact: Option<DateTime<Utc>>,
    ) -> Result<Validation, ClientError> {
        let key = LicenseKey::parse(key)?;
        let inner = &self.inner;
        let now = inner.clock.now();
        let check = check_computer_key(
            inner.transport.trusted(),
            computer_key,
            &key,
            computer_id,
            inner.product.as_deref(),
            now,
        );
        if check.code == ValidationCode::Valid {
            check_offline_period(
                last_server_contact,
                now,
                inner.max_days_offline,
                inner.max_clock_skew,
            )?;
        }
        Ok(Validation {
            code: check.code,
            license: None,
            claims: check.claims,
            source: ValidationSource::Offline {
                last_server_contact,
            },
        })
    }

    /// Validates with the server and, only when no server can be reached, checks the stored
    /// computer key offline against the client's last server contact. A rejection or an
    /// untrusted response from a server is returned as it is.
    pub async fn validate_or_offline(
        &self,
        key: &str,
        computer_id: &str,
        computer_key: &str,
    ) -> Result<Validation, ClientError> {
        match self.validate(key, computer_id, Some(computer_key)).await {
            Err(err) if err.is_unreachable() => {
                tracing::warn!(
                    error = %err,
                    computer.id = computer_id,
                    "license server unreachable; checking the stored computer key offline"
                );
                let contact = self.last_server_contact_for(key, computer_id);
                self.validate_offline(computer_key, key, computer_id, contact)
            }
            other => other,
        }
    }

    /// Sends `request` to the active server, retrying once on another server when the active
    /// one moved. Returns the URL of the server that sent the response.
    async fn call<R: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        request: &R,
    ) -> Result<(Url, Verified<T>), ClientError> {
        let url = self.active_url().await?;
        let mut first = self.inner.transport.post(&url, path, request).await;
        if matches!(&first, Err(ClientError::Rejected { code, .. }) if code == BUSY) {
            tracing::info!(
                url = %url,
                path,
                delay_ms = BUSY_RETRY_DELAY.as_millis() as u64,
                "the server is swapping in a snapshot, so the request is sent again"
            );
            tokio::time::sleep(BUSY_RETRY_DELAY).await;
            first = self.inner.transport.post(&url, path, request).await;
        }

        let moved_to = match &first {
            Err(ClientError::Unreachable { source, .. }) if source.is_connect() => {
                self.refreshed_url(&url).await
            }
            Err(ClientError::Rejected {
                code, active_url, ..
            }) if code == SITE_STANDBY => self.standby_retry_url(&url, active_url.as_deref()).await,
            _ => None,
        };
        let Some(retry_url) = moved_to else {
            return first.map(|response| (url, response));
        };

        if let Err(err) = &first {
            tracing::info!(
                failed.url = %url,
                retry.url = %retry_url,
                error = %err,
                "retrying on the server that is active now"
            );
        }
        let response = self.inner.transport.post(&retry_url, path, request).await?;
        Ok((retry_url, response))
    }

    /// Fetches the redirect file again, bypassing the TTL, and returns its active URL when it
    /// is not `failed`.
    async fn refreshed_url(&self, failed: &Url) -> Option<Url> {
        let inner = &self.inner;
        if !inner.resolver.follows_redirects() {
            return None;
        }
        match inner
            .resolver
            .resolve(&inner.transport.http, &inner.state, true)
            .await
        {
            Ok(url) if !same_site(&url, failed) => Some(url),
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(error = %err, "failed to resolve the active server again");
                None
            }
        }
    }

    /// Returns the URL to retry on after `failed` rejected a request with `SITE_STANDBY`: the
    /// redirect file's active URL when it moved, otherwise the active URL that the standby
    /// site signed.
    async fn standby_retry_url(&self, failed: &Url, signed_hint: Option<&str>) -> Option<Url> {
        if let Some(url) = self.refreshed_url(failed).await {
            return Some(url);
        }
        let hint = Url::parse(signed_hint?).ok()?;
        let usable = matches!(hint.scheme(), "http" | "https") && !same_site(&hint, failed);
        usable.then_some(hint)
    }

    /// Records a confirmation of `key` on `computer_id` by the server, signed at `server_time`,
    /// as the last server contact for that pair. An older confirmation never replaces a newer
    /// one.
    async fn record_contact(
        &self,
        key: &LicenseKey,
        computer_id: &str,
        server_time: DateTime<Utc>,
        proof: SignedBody,
    ) {
        let entry = state::proof_key(key, computer_id);
        self.inner
            .state
            .update(|state| {
                // Decided under the state lock, so concurrent responses cannot undo each other.
                let stored = state
                    .contact_proofs
                    .get(&entry)
                    .and_then(SignedBody::server_time);
                let due = stored.is_none_or(|last| server_time - last >= CONTACT_WRITE_INTERVAL);
                if due {
                    state.contact_proofs.insert(entry, proof);
                    state.last_server_contact = state.newest_contact();
                }
                due
            })
            .await;
    }

    /// Removes the contact proof of `key` on `computer_id`, after the server refused or
    /// released it there.
    async fn forget_contact(&self, key: &LicenseKey, computer_id: &str) {
        let entry = state::proof_key(key, computer_id);
        self.inner
            .state
            .update(|state| {
                let removed = state.contact_proofs.remove(&entry).is_some();
                state.last_server_contact = state.newest_contact();
                removed
            })
            .await;
    }
}
