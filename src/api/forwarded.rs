//! The client address behind trusted reverse proxies (`limits.trusted_proxies`).
//!
//! For a request whose TCP peer is a trusted proxy, the client is the rightmost address in
//! `X-Forwarded-For` that is not itself a trusted proxy. Each proxy appends the address it
//! received the request from, so the entries right of that address come from trusted proxies,
//! and the entries left of it may be forged by the client. The rate limit, the audit log and
//! the activation and lease records then see that address in place of the proxy's.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

const FORWARDED_FOR: &str = "x-forwarded-for";

/// Adds the middleware to `router` when `trusted` lists at least one proxy.
pub fn layer(router: axum::Router, trusted: Vec<IpNet>) -> axum::Router {
    if trusted.is_empty() {
        return router;
    }
    router.layer(axum::middleware::from_fn_with_state(
        Arc::new(trusted),
        replace_peer,
    ))
}

/// Replaces the request's peer address with the forwarded client address.
async fn replace_peer(
    State(trusted): State<Arc<Vec<IpNet>>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        let client = client_ip(peer.ip(), request.headers(), &trusted);
        if client != peer.ip() {
            let port = peer.port();
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(client, port)));
        }
    }
    next.run(request).await
}

/// Returns the client address of a request from `peer` with `headers`.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d, which no IPv4 block contains.
    let peer = peer.to_canonical();
    let is_trusted = |addr: &IpAddr| trusted.iter().any(|net| net.contains(addr));
    if !is_trusted(&peer) {
        return peer;
    }

    // Several header lines count as one list, as if joined by commas.
    let entries: Vec<&str> = headers
        .get_all(FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Some(addr) = parse_entry(entry) else {
            // A malformed entry ends the walk: what lies left of it cannot be trusted.
            break;
        };
        client = addr;
        if !is_trusted(&addr) {
            break;
        }
    }
    client
}

/// Parses one `X-Forwarded-For` entry: an address, or an address with a port as some proxies
/// write it (`203.0.113.9:5555`, `[2001:db8::1]:443`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .map(|addr| addr.to_canonical())
}

/// Parses one `limits.trusted_proxies` entry: an IP address or a CIDR block.
pub fn parse_proxy(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    if let Ok(net) = entry.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    entry
        .parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| "expected an IP address or a CIDR block such as 10.0.0.0/8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(entries: &[&str]) -> Vec<IpNet> {
        entries.iter().map(|e| parse_proxy(e).unwrap()).collect()
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(FORWARDED_FOR, value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_keeps_its_address() {
        let trusted = nets(&["10.0.0.0/8"]);
        let forged = headers(&["203.0.113.9"]);
        assert_eq!(
            client_ip(ip("198.51.100.7"), &forged, &trusted),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn forwarded_address_cases() {
        let trusted = nets(&["10.0.0.0/8", "::1"]);
        let cases: &[(&str, &[&str], &str)] = &[
            // One proxy: the address it appended.
            ("10.0.0.2", &["203.0.113.9"], "203.0.113.9"),
            // A client-written entry left of the real one is ignored.
            ("10.0.0.2", &["1.2.3.4, 203.0.113.9"], "203.0.113.9"),
            // Two trusted proxies in a chain are skipped.
            ("10.0.0.2", &["203.0.113.9, 10.0.0.3"], "203.0.113.9"),
            // Several header lines form one list.
            ("10.0.0.2", &["203.0.113.9", "10.0.0.3"], "203.0.113.9"),
            // IPv6 client behind a proxy on ::1.
            ("::1", &["2001:db8::5"], "2001:db8::5"),
            // No header: the proxy itself.
            ("10.0.0.2", &[], "10.0.0.2"),
            // IPv4 peer and entry written as IPv4-mapped IPv6 addresses.
            ("::ffff:10.0.0.2", &["::ffff:203.0.113.9"], "203.0.113.9"),
            // Entries with ports.
            ("10.0.0.2", &["203.0.113.9:5555"], "203.0.113.9"),
            ("10.0.0.2", &["[2001:db8::5]:443"], "2001:db8::5"),
            // Malformed rightmost entry: the proxy itself.
            ("10.0.0.2", &["203.0.113.9, not-an-ip"], "10.0.0.2"),
            // Every entry trusted: the leftmost.
            ("10.0.0.2", &["10.0.0.4, 10.0.0.3"], "10.0.0.4"),
        ];
        for (peer, values, expected) in cases {
            assert_eq!(
                client_ip(ip(peer), &headers(values), &trusted),
                ip(expected),
                "peer {peer}, X-Forwarded-For {values:?}"
            );
        }
    }

    #[test]
    fn proxy_entry_parsing() {
        assert_eq!(parse_proxy("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_proxy(" ::1 ").unwrap().to_string(), "::1/128");
        assert_eq!(
            parse_proxy("127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert!(parse_proxy("10.0.0.0/33").is_err());
        assert!(parse_proxy("proxy.local").is_err());
        assert!(parse_proxy("").is_err());
    }
}
