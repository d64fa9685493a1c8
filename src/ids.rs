//! Random identifiers.

/// Returns `count` bytes from the operating system's CSPRNG, as lowercase hex.
pub fn random_hex(count: usize) -> String {
    hex::encode(random_bytes(count))
}

/// Returns `count` bytes from the operating system's CSPRNG.
pub fn random_bytes(count: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; count];
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    bytes
}
