use std::fmt::Write;

use quick_xml::escape::escape;

use super::{ROOT_ELEMENT, RedirectFile, UrlElement};

impl RedirectFile {
    /// Serializes the file as UTF-8 XML with a declaration and one element per line.
    /// Absent optional URLs are left out, and [`parse`](super::parse()) reads the result back
    /// to an equal value.
    pub fn to_xml(&self) -> String {
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        xml.push_str(&format!("<{ROOT_ELEMENT}>\n"));

        for element in UrlElement::ALL {
            let Some(url) = self.url(element) else {
                continue;
            };
            let name = element.name();
            // Writing to a String cannot fail.
            let _ = writeln!(xml, "  <{name}>{}</{name}>", escape(url.as_str()));
        }

        xml.push_str(&format!("</{ROOT_ELEMENT}>\n"));
        xml
    }

    pub(crate) fn url(&self, element: UrlElement) -> Option<&url::Url> {
        match element {
            UrlElement::Active => Some(&self.active_url),
            UrlElement::Dr => self.dr_url.as_ref(),
            UrlElement::ActiveNetCore => self.active_net_core_url.as_ref(),
            UrlElement::DrNetCore => self.dr_net_core_url.as_ref(),
        }
    }
}
