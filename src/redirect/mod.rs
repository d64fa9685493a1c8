//! The QLM redirect file (`qlmredirect.xml`) and the redirector that serves it.
//!
//! License clients fetch the redirect file to learn which license server is active
//! (`activeUrl`). `drUrl` names the disaster-recovery server, and failing over is a deliberate
//! edit that makes it the active one. The optional `activeNetCoreUrl` and `drNetCoreUrl` name
//! the same two servers for clients built on .NET Core.
//!
//! # Layout
//!
//! - [`parse`](parse()) and [`RedirectFile::to_xml`] read and write the XML format.
//! - [`same_site`] compares two server URLs the way the redirector does.
//! - [`write_atomically`] and [`set_active`] change the file on disk.
//! - [`show`] renders a file for the command line.
//! - [`RedirectorState`], [`router`] and [`serve`] form the HTTP redirector, which reloads the
//!   file whenever it changes and keeps serving the last valid version after a bad edit.

mod error;
mod file;
mod parse;
mod serialize;
mod server;
mod show;
mod site;
mod state;
mod watch;

use url::Url;

pub use error::{FileError, Position, RedirectError};
pub use file::{read_file, set_active, write_atomically};
pub use parse::parse;
pub use server::{REDIRECT_FILE_ROUTE, ServeError, router, serve};
pub use show::show;
pub use site::same_site;
pub use state::{RedirectSnapshot, RedirectorState, ReloadFailure, ReloadOutcome, etag_for};
pub use watch::spawn_watcher;

/// Maximum size of a redirect file in bytes. Larger files are rejected before parsing.
pub const MAX_REDIRECT_FILE_BYTES: usize = 64 * 1024;

/// Name of the root element of a redirect file.
pub const ROOT_ELEMENT: &str = "QlmRedirection";

/// Contents of a valid redirect file. Every URL has the scheme http or https.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectFile {
    /// License server that clients use (`activeUrl`).
    pub active_url: Url,
    /// Disaster-recovery server, which takes over when an operator switches to it (`drUrl`).
    pub dr_url: Option<Url>,
    /// Active server for .NET Core clients (`activeNetCoreUrl`).
    pub active_net_core_url: Option<Url>,
    /// Disaster-recovery server for .NET Core clients (`drNetCoreUrl`).
    pub dr_net_core_url: Option<Url>,
}

impl RedirectFile {
    /// Makes `url` the active URL.
    ///
    /// When `url` names the same site as the current `drUrl` (see [`same_site`]), the active
    /// and DR URLs swap places so the old primary becomes the DR entry, and the two NetCore
    /// URLs swap as well. Otherwise only `activeUrl` changes and the NetCore URLs stay as they
    /// are, because the NetCore address of a new server cannot be derived from its URL.
    pub fn switch_active(&mut self, url: Url) {
        let is_dr = self.dr_url.as_ref().is_some_and(|dr| same_site(dr, &url));
        let previous = std::mem::replace(&mut self.active_url, url);

        if is_dr {
            self.dr_url = Some(previous);
            std::mem::swap(&mut self.active_net_core_url, &mut self.dr_net_core_url);
        }
    }
}

/// Elements of a redirect file that carry a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UrlElement {
    Active,
    Dr,
    ActiveNetCore,
    DrNetCore,
}

impl UrlElement {
    pub(crate) const ALL: [UrlElement; 4] = [
        UrlElement::Active,
        UrlElement::Dr,
        UrlElement::ActiveNetCore,
        UrlElement::DrNetCore,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            UrlElement::Active => "activeUrl",
            UrlElement::Dr => "drUrl",
            UrlElement::ActiveNetCore => "activeNetCoreUrl",
            UrlElement::DrNetCore => "drNetCoreUrl",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<UrlElement> {
        UrlElement::ALL
            .into_iter()
            .find(|element| element.name() == name)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}
