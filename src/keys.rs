//! License key format.
//!
//! A key is 135 random bits from the operating system's CSPRNG, written as 27 Crockford base32
//! characters plus one check character (Luhn mod 32), shown in seven groups of four:
//! `7K3M-QW2D-H8XP-R4TN-B6YC-Z9GV-F1J1`. Input is case-insensitive, ignores dashes and spaces,
//! and reads `I`/`L` as `1` and `O` as `0`. The check character catches any single mistyped
//! character and most swaps of two neighbours before the key is looked up.

use std::fmt;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const DATA_CHARS: usize = 27;
const KEY_CHARS: usize = DATA_CHARS + 1;

/// A well-formed license key in canonical form (28 characters, no dashes).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LicenseKey(String);

/// Reason a string is not a license key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("license key has {found} characters; expected {KEY_CHARS} (dashes and spaces aside)")]
    WrongLength { found: usize },
    #[error("license key contains {found:?}, which is not a Crockford base32 character")]
    InvalidCharacter { found: char },
    #[error("license key check character does not match; check the key for a typo")]
    CheckMismatch,
}

impl LicenseKey {
    /// Generates a new random key.
    pub fn generate() -> LicenseKey {
        let random = crate::ids::random_bytes(DATA_CHARS);
        let data: Vec<u8> = random.iter().map(|byte| byte & 31).collect();
        let mut text: String = data
            .iter()
            .map(|&digit| ALPHABET[digit as usize] as char)
            .collect();
        text.push(ALPHABET[check_digit(&data) as usize] as char);
        LicenseKey(text)
    }

    /// Parses user input, normalising case, separators and look-alike characters.
    pub fn parse(input: &str) -> Result<LicenseKey, KeyError> {
        let mut digits = Vec::with_capacity(KEY_CHARS);
        for ch in input.chars() {
            if ch == '-' || ch == ' ' {
                continue;
            }
            if digits.len() > KEY_CHARS {
                break;
            }
            digits.push(decode_char(ch).ok_or(KeyError::InvalidCharacter { found: ch })?);
        }
        if digits.len() != KEY_CHARS {
            let found = input.chars().filter(|ch| *ch != '-' && *ch != ' ').count();
            return Err(KeyError::WrongLength { found });
        }
        let (data, check) = digits.split_at(DATA_CHARS);
        if check_digit(data) != check[0] {
            return Err(KeyError::CheckMismatch);
        }
        Ok(LicenseKey(
            digits
                .iter()
                .map(|&digit| ALPHABET[digit as usize] as char)
                .collect(),
        ))
    }

    /// Returns the canonical 28-character form stored in the database.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the grouped form shown to people.
    pub fn grouped(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        chars
            .chunks(4)
            .map(|group| group.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join("-")
    }
}

impl fmt::Display for LicenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.grouped())
    }
}

impl fmt::Debug for LicenseKey {
    // Keys are credentials: debug output shows only the first group.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LicenseKey({}-…)", &self.0[..4])
    }
}

fn decode_char(ch: char) -> Option<u8> {
    let upper = match ch.to_ascii_uppercase() {
        'I' | 'L' => '1',
        'O' => '0',
        other => other,
    };
    ALPHABET
        .iter()
        .position(|&symbol| symbol as char == upper)
        .map(|index| index as u8)
}

/// Luhn mod 32 check digit over base32 digits.
fn check_digit(data: &[u8]) -> u8 {
    const BASE: u32 = 32;
    let mut factor = 2;
    let mut sum = 0;
    for &digit in data.iter().rev() {
        let addend = factor * u32::from(digit);
        sum += addend / BASE + addend % BASE;
        factor = if factor == 2 { 1 } else { 2 };
    }
    ((BASE - sum % BASE) % BASE) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_key_parses() {
        // The key shown in the docs and in `--help` must be one a user can paste.
        assert!(LicenseKey::parse("7K3M-QW2D-H8XP-R4TN-B6YC-Z9GV-F1J1").is_ok());
    }

    #[test]
    fn generated_key_parses_back() {
        for _ in 0..200 {
            let key = LicenseKey::generate();
            assert_eq!(LicenseKey::parse(&key.grouped()).unwrap(), key);
            assert_eq!(
                LicenseKey::parse(&key.as_str().to_lowercase()).unwrap(),
                key
            );
        }
    }

    #[test]
    fn parse_tolerates_spaces_and_lookalikes() {
        let key = LicenseKey::generate();
        let spaced = key.grouped().replace('-', " ");
        assert_eq!(LicenseKey::parse(&spaced).unwrap(), key);
        let lookalike = key.as_str().replace('1', "l").replace('0', "O");
        assert_eq!(LicenseKey::parse(&lookalike).unwrap(), key);
    }

    #[test]
    fn every_single_substitution_is_caught() {
        let key = LicenseKey::generate();
        let original: Vec<char> = key.as_str().chars().collect();
        for position in 0..KEY_CHARS {
            for &symbol in ALPHABET {
                let symbol = symbol as char;
                if symbol == original[position] {
                    continue;
                }
                let mut typo = original.clone();
                typo[position] = symbol;
                let typo: String = typo.into_iter().collect();
                assert_eq!(
                    LicenseKey::parse(&typo),
                    Err(KeyError::CheckMismatch),
                    "{typo}"
                );
            }
        }
    }

    #[test]
    fn parse_rejects_bad_input() {
        assert_eq!(
            LicenseKey::parse(""),
            Err(KeyError::WrongLength { found: 0 })
        );
        assert_eq!(
            LicenseKey::parse("ABCD"),
            Err(KeyError::WrongLength { found: 4 })
        );
        assert_eq!(
            LicenseKey::parse("ABCD-U000"),
            Err(KeyError::InvalidCharacter { found: 'U' })
        );
        assert!(matches!(
            LicenseKey::parse("é"),
            Err(KeyError::InvalidCharacter { .. })
        ));
        assert!(matches!(
            LicenseKey::parse(&"A".repeat(10_000)),
            Err(KeyError::WrongLength { .. })
        ));
    }
}
