use std::fmt::Write;

use super::{RedirectError, UrlElement, parse};

/// Renders the URLs that a client reads from a redirect file, one per line, followed by any
/// parser warnings. Absent optional URLs are shown as `(not set)`.
pub fn show(content: &[u8]) -> Result<String, RedirectError> {
    let (file, warnings) = parse(content)?;
    let width = UrlElement::ALL
        .iter()
        .map(|element| element.name().len() + 1)
        .max()
        .unwrap_or(0);

    // Writing to a String cannot fail, so the results of writeln! are ignored.
    let mut output = String::new();
    for element in UrlElement::ALL {
        let label = format!("{}:", element.name());
        match file.url(element) {
            Some(url) => {
                let _ = writeln!(output, "{label:<width$} {url}");
            }
            None => {
                let _ = writeln!(output, "{label:<width$} (not set)");
            }
        }
    }
    for warning in warnings {
        let _ = writeln!(output, "warning: {warning}");
    }

    Ok(output)
}
