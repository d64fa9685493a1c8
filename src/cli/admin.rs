//! Management commands that act on a running server through the admin API.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

/// Server URL and admin token.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Base URL of the keyward server.
    #[arg(long, env = "KEYWARD_URL", default_value = "http://127.0.0.1:8470")]
    pub url: String,
    /// Admin token (prefer the KEYWARD_ADMIN_TOKEN environment variable).
    #[arg(long, env = "KEYWARD_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ProductCommand {
    /// Create a product.
    Create {
        #[command(flatten)]
        server: ServerArgs,
        /// Short code used in license records, e.g. "photo-pro".
        #[arg(long)]
        code: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        version: String,
        /// A named feature (repeat for several).
        #[arg(long = "feature")]
        features: Vec<String>,
    },
    /// List products.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum LicenseCommand {
    /// Create a license and print it with its key.
    Create {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        product: String,
        /// permanent, subscription or trial.
        #[arg(long, default_value = "permanent")]
        model: String,
        /// Activations allowed, or for a floating license concurrent leases.
        #[arg(long, default_value_t = 1)]
        seats: i64,
        /// Make the license floating: clients check out leases instead of activating.
        #[arg(long)]
        floating: bool,
        /// Fixed expiry: YYYY-MM-DD (end of that day, UTC) or an RFC 3339 time.
        #[arg(long)]
        expires: Option<String>,
        /// Days of use counted from the first activation.
        #[arg(long)]
        duration_days: Option<i64>,
        /// Maintenance-plan expiry, like --expires.
        #[arg(long)]
        maintenance: Option<String>,
        /// An enabled feature (repeat for several); default: all of the product's features.
        #[arg(long = "feature")]
        features: Vec<String>,
        #[arg(long, default_value = "")]
        customer_name: String,
        #[arg(long, default_value = "")]
        email: String,
        #[arg(long, default_value = "")]
        company: String,
        #[arg(long, default_value = "")]
        order_ref: String,
        #[arg(long, default_value = "")]
        notes: String,
    },
    /// List licenses, newest first.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Search customer name, email, company, order reference or key.
        #[arg(long)]
        search: Option<String>,
        #[arg(long)]
        product: Option<String>,
        /// active, suspended or revoked.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// Show one license.
    Show {
        #[command(flatten)]
        server: ServerArgs,
        key: String,
    },
    /// Suspend a license (reversible with reinstate).
    Suspend {
        #[command(flatten)]
        server: ServerArgs,
        key: String,
    },
    /// Reinstate a suspended license.
    Reinstate {
        #[command(flatten)]
        server: ServerArgs,
        key: String,
    },
    /// Revoke a license for good.
    Revoke {
        #[command(flatten)]
        server: ServerArgs,
        key: String,
    },
    /// Delete a license and its activations.
    Delete {
        #[command(flatten)]
        server: ServerArgs,
        key: String,
    },
    /// Extend a subscription or maintenance plan.
    Renew {
        #[command(flatten)]
        server: ServerArgs,
        key: String,
        #[arg(long)]
        expires: Option<String>,
        #[arg(long)]
        maintenance: Option<String>,
    },
    /// List the activations of a license.
    Activations {
        #[command(flatten)]
        server: ServerArgs,
        key: String,
    },
    /// Release the activation of one computer, or end its lease on a floating license (frees
    /// its seat).
    Release {
        #[command(flatten)]
        server: ServerArgs,
        key: String,
        computer_id: String,
    },
    /// Import licenses from a CSV file, all or nothing (columns: see the README).
    Import {
        #[command(flatten)]
        server: ServerArgs,
        file: std::path::PathBuf,
        /// Create products named in the file that do not exist yet.
        #[arg(long)]
        create_products: bool,
    },
    /// Export every license as CSV, in the import format.
    Export {
        #[command(flatten)]
        server: ServerArgs,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// List the live leases of a floating license.
    Leases {
        #[command(flatten)]
        server: ServerArgs,
        key: String,
    },
    /// Activate from an offline request file and write the signed response file.
    OfflineActivate {
        #[command(flatten)]
        server: ServerArgs,
        /// Request file written by the application (JSON).
        request: std::path::PathBuf,
        /// Path of the signed response file to write for the application.
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an admin token; it is printed once.
    Create {
        #[command(flatten)]
        server: ServerArgs,
        name: String,
    },
    /// List admin tokens (never their secrets).
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revoke an admin token by id.
    Revoke {
        #[command(flatten)]
        server: ServerArgs,
        id: String,
    },
    /// Print a new random token without storing it (for bootstrap_admin_token).
    Generate,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: Option<super::licensing::KeysCommand>,
    /// Base URL of the keyward server.
    #[arg(long, env = "KEYWARD_URL", default_value = "http://127.0.0.1:8470")]
    pub url: String,
}

/// Sends an admin request and returns the JSON response, or an error with the server's code and
/// message.
pub async fn request(
    server: &ServerArgs,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let url = format!("{}{path}", server.url.trim_end_matches('/'));
    let text = request_text(server, method, path, body).await?;
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).with_context(|| format!("invalid JSON from {url}"))
}

/// Sends an admin request and returns the response body as it arrived, or an error with the
/// server's code and message.
pub async fn request_text(
    server: &ServerArgs,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<String> {
    let token = server.token.as_deref().context(
        "no admin token: set KEYWARD_ADMIN_TOKEN or pass --token (printed at the server's first start)",
    )?;
    let url = format!("{}{path}", server.url.trim_end_matches('/'));
    let client = reqwest::Client::new();
    let mut builder = client.request(method, &url).bearer_auth(token);
    if let Some(body) = body {
        builder = builder.json(&body);
    }
    let response = builder
        .send()
        .await
        .with_context(|| format!("while sending a request to {url}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let detail: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        anyhow::bail!(
            "server returned {status}: {} {}",
            detail["code"].as_str().unwrap_or(""),
            detail["message"].as_str().unwrap_or(&text)
        );
    }
    Ok(text)
}

pub fn print(value: &Value) -> ExitCode {
    if !value.is_null() {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("json prints")
        );
    }
    ExitCode::SUCCESS
}

fn key_path(key: &str) -> String {
    url_escape(key)
}

pub fn url_escape(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

pub async fn product(command: ProductCommand) -> anyhow::Result<ExitCode> {
    let value = match command {
        ProductCommand::Create {
            server,
            code,
            name,
            version,
            features,
        } => {
            let body =
                json!({"code": code, "name": name, "version": version, "features": features});
            request(&server, Method::POST, "/v1/admin/products", Some(body)).await?
        }
        ProductCommand::List { server } => {
            request(&server, Method::GET, "/v1/admin/products", None).await?
        }
    };
    Ok(print(&value))
}

pub async fn license(command: LicenseCommand) -> anyhow::Result<ExitCode> {
    use LicenseCommand as C;
    let value = match command {
        C::Create {
            server,
            product,
            model,
            seats,
            floating,
            expires,
            duration_days,
            maintenance,
            features,
            customer_name,
            email,
            company,
            order_ref,
            notes,
        } => {
            let body = json!({
                "product": product, "model": model, "seats": seats, "floating": floating,
                "expires_at": expires,
                "duration_days": duration_days, "maintenance_expires_at": maintenance,
                "features": if features.is_empty() { None } else { Some(features) },
                "customer_name": customer_name, "customer_email": email,
                "customer_company": company, "order_ref": order_ref, "notes": notes,
            });
            request(&server, Method::POST, "/v1/admin/licenses", Some(body)).await?
        }
        C::List {
            server,
            search,
            product,
            status,
            limit,
            offset,
        } => {
            let mut query = format!("?limit={limit}&offset={offset}");
            for (name, value) in [("q", search), ("product", product), ("status", status)] {
                if let Some(value) = value {
                    query.push_str(&format!("&{name}={}", url_escape(&value)));
                }
            }
            request(
                &server,
                Method::GET,
                &format!("/v1/admin/licenses{query}"),
                None,
            )
            .await?
        }
        C::Show { server, key } => {
            request(
                &server,
                Method::GET,
                &format!("/v1/admin/licenses/{}", key_path(&key)),
                None,
            )
            .await?
        }
        C::Suspend { server, key } => action(&server, &key, "suspend").await?,
        C::Reinstate { server, key } => action(&server, &key, "reinstate").await?,
        C::Revoke { server, key } => action(&server, &key, "revoke").await?,
        C::Delete { server, key } => {
            let path = format!("/v1/admin/licenses/{}", key_path(&key));
            request(&server, Method::DELETE, &path, None).await?
        }
        C::Renew {
            server,
            key,
            expires,
            maintenance,
        } => {
            let path = format!("/v1/admin/licenses/{}/renew", key_path(&key));
            let body = json!({"expires_at": expires, "maintenance_expires_at": maintenance});
            request(&server, Method::POST, &path, Some(body)).await?
        }
        C::Activations { server, key } => {
            let path = format!("/v1/admin/licenses/{}/activations", key_path(&key));
            request(&server, Method::GET, &path, None).await?
        }
        C::Import {
            server,
            file,
            create_products,
        } => {
            return super::import::import(&server, &file, create_products).await;
        }
        C::Export { server, out } => return super::import::export(&server, out.as_deref()).await,
        C::Release {
            server,
            key,
            computer_id,
        } => {
            let path = format!(
                "/v1/admin/licenses/{}/activations/{}/release",
                key_path(&key),
                url_escape(&computer_id)
            );
            request(&server, Method::POST, &path, None).await?
        }
        C::Leases { server, key } => {
            let path = format!("/v1/admin/licenses/{}/leases", key_path(&key));
            request(&server, Method::GET, &path, None).await?
        }
        C::OfflineActivate {
            server,
            request,
            out,
        } => return super::licensing::offline_activate(&server, &request, &out).await,
    };
    Ok(print(&value))
}

async fn action(server: &ServerArgs, key: &str, verb: &str) -> anyhow::Result<Value> {
    let path = format!("/v1/admin/licenses/{}/{verb}", key_path(key));
    request(server, Method::POST, &path, None).await
}

pub async fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    let value = match command {
        TokenCommand::Create { server, name } => {
            request(
                &server,
                Method::POST,
                "/v1/admin/tokens",
                Some(json!({"name": name})),
            )
            .await?
        }
        TokenCommand::List { server } => {
            request(&server, Method::GET, "/v1/admin/tokens", None).await?
        }
        TokenCommand::Revoke { server, id } => {
            let path = format!("/v1/admin/tokens/{}", url_escape(&id));
            request(&server, Method::DELETE, &path, None).await?
        }
        TokenCommand::Generate => {
            println!("{}", crate::license::tokens::generate_text());
            return Ok(ExitCode::SUCCESS);
        }
    };
    Ok(print(&value))
}

/// Prints the published public keys, or runs a key management subcommand.
pub async fn keys(args: KeysArgs) -> anyhow::Result<ExitCode> {
    if let Some(command) = args.command {
        return super::licensing::keys(command).await;
    }
    let url = format!("{}/v1/keys", args.url.trim_end_matches('/'));
    let value: Value = reqwest::get(&url)
        .await
        .with_context(|| format!("while fetching {url}"))?
        .json()
        .await
        .with_context(|| format!("invalid JSON from {url}"))?;
    Ok(print(&value))
}
