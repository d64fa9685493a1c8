//! Request counts and latency histograms, labelled by route template, method and status.
//!
//! The route label is the matched route template (`/v1/admin/licenses/{key}`), never the raw
//! path, and unknown methods share the label `OTHER`, so the number of series stays bounded
//! whatever clients send.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::Method;

use super::exposition::{Exposition, Kind};

/// Upper bounds of the latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Route label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Observations per bucket (not cumulative); the last slot counts those above every bound.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum_seconds: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot] += 1;
        self.sum_seconds += seconds;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct Counts {
    /// Keyed by route, then (method, status). Nested so that recording a request on a known
    /// route allocates nothing.
    requests: BTreeMap<String, BTreeMap<(&'static str, u16), u64>>,
    /// Keyed by route, then method.
    latency: BTreeMap<String, BTreeMap<&'static str, Histogram>>,
}

/// Returns the entry of `route`, creating it on the route's first request.
fn route_entry<'a, V: Default>(map: &'a mut BTreeMap<String, V>, route: &str) -> &'a mut V {
    if !map.contains_key(route) {
        map.insert(route.to_string(), V::default());
    }
    map.get_mut(route).expect("entry was just inserted")
}

/// Counters and histograms of served requests.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    counts: Mutex<Counts>,
}

/// Returns the method label: the standard method names, or `OTHER`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

impl RequestMetrics {
    /// Records one finished request.
    pub fn record(&self, route: &str, method: &'static str, status: u16, latency: Duration) {
        let mut counts = self.counts.lock().expect("request metrics lock poisoned");
        let counts = &mut *counts;
        *route_entry(&mut counts.requests, route)
            .entry((method, status))
            .or_default() += 1;
        route_entry(&mut counts.latency, route)
            .entry(method)
            .or_default()
            .observe(latency.as_secs_f64());
    }

    /// Writes the request counter and the latency histogram.
    pub fn write(&self, out: &mut Exposition) {
        let counts = self.counts.lock().expect("request metrics lock poisoned");

        let name = "keyward_http_requests_total";
        out.family(
            name,
            Kind::Counter,
            "HTTP requests served, by route template, method and status code.",
        );
        let requests = counts.requests.iter().flat_map(|(route, by_status)| {
            by_status
                .iter()
                .map(move |((method, status), count)| (route, method, status, count))
        });
        for (route, method, status, count) in requests {
            let status = status.to_string();
            out.sample(
                name,
                &[("route", route), ("method", method), ("status", &status)],
                *count as f64,
            );
        }

        let name = "keyward_http_request_duration_seconds";
        out.family(
            name,
            Kind::Histogram,
            "Time from receiving a request to sending its response headers, by route template \
             and method.",
        );
        let bucket_name = format!("{name}_bucket");
        let latency = counts.latency.iter().flat_map(|(route, by_method)| {
            by_method
                .iter()
                .map(move |(method, histogram)| (route, method, histogram))
        });
        for (route, method, histogram) in latency {
            let mut cumulative = 0;
            for (index, bound) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += histogram.buckets[index];
                let bound = bound.to_string();
                out.sample(
                    &bucket_name,
                    &[("route", route), ("method", method), ("le", &bound)],
                    cumulative as f64,
                );
            }
            out.sample(
                &bucket_name,
                &[("route", route), ("method", method), ("le", "+Inf")],
                histogram.count as f64,
            );
            let labels = [("route", route.as_str()), ("method", method)];
            out.sample(&format!("{name}_sum"), &labels, histogram.sum_seconds);
            out.sample(&format!("{name}_count"), &labels, histogram.count as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = RequestMetrics::default();
        let route = "/v1/validate";
        metrics.record(route, "POST", 200, Duration::from_micros(500));
        metrics.record(route, "POST", 200, Duration::from_millis(30));
        metrics.record(route, "POST", 403, Duration::from_secs(20));
        let mut out = Exposition::default();
        metrics.write(&mut out);
        let text = out.finish();

        let bucket = "keyward_http_request_duration_seconds_bucket";
        let labels = "route=\"/v1/validate\",method=\"POST\"";
        assert!(
            text.contains(&format!("{bucket}{{{labels},le=\"0.001\"}} 1\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{bucket}{{{labels},le=\"0.05\"}} 2\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{bucket}{{{labels},le=\"10\"}} 2\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{bucket}{{{labels},le=\"+Inf\"}} 3\n")),
            "{text}"
        );
        let ok =
            "keyward_http_requests_total{route=\"/v1/validate\",method=\"POST\",status=\"200\"} 2";
        assert!(text.contains(ok), "{text}");
    }

    #[test]
    fn unknown_methods_share_one_label() {
        let method = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&method), "OTHER");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
    }
}
