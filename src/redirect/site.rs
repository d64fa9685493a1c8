use url::Url;

/// Returns whether `a` and `b` name the same server endpoint.
///
/// Compares the scheme, the host (ignoring ASCII case), the port (an omitted port equals the
/// scheme's default, so `https://h/` and `https://h:443/` match) and the path with any
/// trailing slashes removed. Query, fragment and credentials are ignored.
pub fn same_site(a: &Url, b: &Url) -> bool {
    let same_scheme = a.scheme().eq_ignore_ascii_case(b.scheme());
    let same_host = match (a.host_str(), b.host_str()) {
        (Some(host_a), Some(host_b)) => host_a.eq_ignore_ascii_case(host_b),
        (None, None) => true,
        _ => false,
    };
    let same_port = a.port_or_known_default() == b.port_or_known_default();
    let same_path = a.path().trim_end_matches('/') == b.path().trim_end_matches('/');

    same_scheme && same_host && same_port && same_path
}
