//! The route table: every endpoint is added here with its method and path, and the table keeps
//! the list, so a test can compare the routes the server serves with the OpenAPI document.

use std::sync::Arc;

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};

use super::AppState;

/// One registered endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    /// The path template in axum and OpenAPI syntax, e.g. `/v1/admin/licenses/{key}`.
    pub path: &'static str,
}

/// A router under construction together with the list of its endpoints.
pub struct RouteTable {
    router: Router<Arc<AppState>>,
    routes: Vec<Route>,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable {
            router: Router::new(),
            routes: Vec::new(),
        }
    }
}

impl RouteTable {
    /// Adds `handler` for `method` on `path`. Several methods on one path are merged.
    ///
    /// # Panics
    ///
    /// Panics when `method` is not one axum routes on, or when the same method and path are
    /// added twice.
    pub fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, Arc<AppState>>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .unwrap_or_else(|_| panic!("axum cannot route method {method}"));
        self.router = self.router.route(path, on(filter, handler));
        self.routes.push(Route { method, path });
        self
    }

    /// Adds every endpoint of `other`.
    pub fn merge(mut self, other: RouteTable) -> Self {
        self.router = self.router.merge(other.router);
        self.routes.extend(other.routes);
        self
    }

    /// Changes the router of the endpoints added so far, e.g. to add a layer to them.
    pub fn map_router(
        mut self,
        change: impl FnOnce(Router<Arc<AppState>>) -> Router<Arc<AppState>>,
    ) -> Self {
        self.router = change(self.router);
        self
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn into_router(self) -> Router<Arc<AppState>> {
        self.router
    }
}
