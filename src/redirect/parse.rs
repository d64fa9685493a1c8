use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesDecl, BytesRef, BytesStart, Event};
use url::Url;

use super::{
    MAX_REDIRECT_FILE_BYTES, Position, ROOT_ELEMENT, RedirectError, RedirectFile, UrlElement,
};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Maximum number of characters of stray text quoted in an error message.
const MAX_QUOTED_CHARS: usize = 40;

/// Parses and validates a redirect file.
///
/// Accepts a UTF-8 byte order mark, an XML declaration, comments, whitespace and the URL
/// elements in any order. Unknown elements, attributes and processing instructions are
/// ignored, and each one adds a message to the returned warnings. An empty optional element
/// counts as absent. DOCTYPE declarations are rejected, so no entity is ever expanded and no
/// external content is loaded.
pub fn parse(bytes: &[u8]) -> Result<(RedirectFile, Vec<String>), RedirectError> {
    if bytes.len() > MAX_REDIRECT_FILE_BYTES {
        return Err(RedirectError::TooLarge {
            size: bytes.len(),
            max: MAX_REDIRECT_FILE_BYTES,
        });
    }
    if looks_like_utf16(bytes) {
        return Err(RedirectError::Utf16);
    }

    let (body, bom_len) = match bytes.strip_prefix(UTF8_BOM) {
        Some(rest) => (rest, UTF8_BOM.len()),
        None => (bytes, 0),
    };
    let text = std::str::from_utf8(body).map_err(|err| RedirectError::NotUtf8 {
        offset: bom_len + err.valid_up_to(),
    })?;

    Parser::new(text).run()
}

/// Checks that `url` may appear in `element`: only http and https are allowed.
pub(crate) fn validate_url(element: UrlElement, url: &Url) -> Result<(), RedirectError> {
    match url.scheme() {
        "http" | "https" => Ok(()),
        scheme => Err(RedirectError::UnsupportedScheme {
            element: element.name(),
            value: url.to_string(),
            scheme: scheme.to_string(),
        }),
    }
}

/// Detects UTF-16 by its byte order mark or by the NUL byte next to a leading `<`.
fn looks_like_utf16(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\xFF\xFE")
        || bytes.starts_with(b"\xFE\xFF")
        || bytes.starts_with(b"<\0")
        || bytes.starts_with(b"\0<")
}

enum State {
    BeforeRoot,
    InRoot,
    InElement { element: UrlElement, value: String },
    InUnknown { name: String, depth: usize },
    AfterRoot,
}

struct Parser<'a> {
    text: &'a str,
    reader: Reader<&'a [u8]>,
    state: State,
    /// Byte offset in `text` where the event being handled starts.
    event_offset: u64,
    /// Raw text of each URL element, indexed by [`UrlElement::index`].
    values: [Option<String>; 4],
    warnings: Vec<String>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        let mut reader = Reader::from_str(text);
        reader.config_mut().check_comments = true;
        reader.config_mut().check_end_names = true;

        Parser {
            text,
            reader,
            state: State::BeforeRoot,
            event_offset: 0,
            values: Default::default(),
            warnings: Vec::new(),
        }
    }

    fn run(mut self) -> Result<(RedirectFile, Vec<String>), RedirectError> {
        loop {
            self.event_offset = self.reader.buffer_position();
            let event = match self.reader.read_event() {
                Ok(event) => event,
                Err(err) => {
                    let offset = self.reader.error_position();
                    return Err(self.malformed_at(offset, err.to_string()));
                }
            };

            match event {
                Event::Eof => break,
                Event::Decl(decl) => self.on_declaration(&decl)?,
                Event::DocType(_) => {
                    return Err(RedirectError::Doctype {
                        position: self.position(),
                    });
                }
                Event::PI(_) => self.warn("ignored a processing instruction"),
                Event::Comment(_) => {}
                Event::Start(start) => self.on_start(&start, false)?,
                Event::Empty(start) => self.on_start(&start, true)?,
                Event::End(_) => self.on_end()?,
                Event::Text(text) => {
                    let decoded = text
                        .decode()
                        .map_err(|err| self.malformed(err.to_string()))?;
                    self.on_text(&decoded)?;
                }
                Event::CData(cdata) => {
                    let decoded = cdata
                        .decode()
                        .map_err(|err| self.malformed(err.to_string()))?;
                    self.on_text(&decoded)?;
                }
                Event::GeneralRef(reference) => self.on_reference(&reference)?,
            }
        }

        self.finish()
    }

    fn on_declaration(&mut self, decl: &BytesDecl<'_>) -> Result<(), RedirectError> {
        // XML 1.0 allows the declaration only at the very start of the document, so a file with
        // anything before it is not well-formed.
        if self.event_offset != 0 {
            return Err(self.malformed("the XML declaration must be at the start of the file"));
        }

        let Some(encoding) = decl.encoding() else {
            return Ok(());
        };
        let encoding = encoding.map_err(|err| self.malformed(err.to_string()))?;
        let encoding = String::from_utf8_lossy(&encoding);
        let is_utf8 =
            encoding.eq_ignore_ascii_case("utf-8") || encoding.eq_ignore_ascii_case("utf8");
        let is_ascii = encoding.eq_ignore_ascii_case("us-ascii") && self.text.is_ascii();
        if is_utf8 || is_ascii {
            return Ok(());
        }

        Err(self.malformed(format!(
            "the XML declaration names the encoding {encoding:?}, but the file is UTF-8; \
             change it to encoding=\"utf-8\""
        )))
    }

    fn on_start(&mut self, start: &BytesStart<'_>, is_empty: bool) -> Result<(), RedirectError> {
        let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
        self.check_attributes(start, &name)?;

        match &mut self.state {
            State::BeforeRoot => {
                if name != ROOT_ELEMENT {
                    return Err(RedirectError::WrongRoot {
                        found: name,
                        expected: ROOT_ELEMENT,
                    });
                }
                self.state = if is_empty {
                    State::AfterRoot
                } else {
                    State::InRoot
                };
            }
            State::InRoot => self.on_child_start(name, is_empty)?,
            State::InElement { element, .. } => {
                return Err(RedirectError::NestedElement {
                    element: element.name(),
                    child: name,
                });
            }
            State::InUnknown { depth, .. } => {
                if !is_empty {
                    *depth += 1;
                }
            }
            State::AfterRoot => {
                return Err(RedirectError::ElementAfterRoot {
                    found: name,
                    position: self.position(),
                });
            }
        }
        Ok(())
    }

    /// Handles an element directly inside the root element.
    fn on_child_start(&mut self, name: String, is_empty: bool) -> Result<(), RedirectError> {
        let Some(element) = UrlElement::from_name(&name) else {
            let position = self.position();
            self.warn(format!("ignored unknown element <{name}> at {position}"));
            if !is_empty {
                self.state = State::InUnknown { name, depth: 1 };
            }
            return Ok(());
        };

        if self.values[element.index()].is_some() {
            return Err(RedirectError::DuplicateElement {
                element: element.name(),
                position: self.position(),
            });
        }

        if is_empty {
            self.values[element.index()] = Some(String::new());
        } else {
            self.state = State::InElement {
                element,
                value: String::new(),
            };
        }
        Ok(())
    }

    fn check_attributes(
        &mut self,
        start: &BytesStart<'_>,
        name: &str,
    ) -> Result<(), RedirectError> {
        // The warning for an unknown element already covers its attributes and content.
        let is_inside_unknown = matches!(self.state, State::InUnknown { .. });
        let is_known = name == ROOT_ELEMENT || UrlElement::from_name(name).is_some();
        let warn_about_attributes = is_known && !is_inside_unknown;

        for attribute in start.attributes() {
            let attribute = attribute.map_err(|err| self.malformed(err.to_string()))?;
            let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();

            // Namespace declarations and xsi: attributes such as xsi:nil carry no data here.
            let is_namespace = key == "xmlns" || key.starts_with("xmlns:");
            if is_namespace || key.starts_with("xsi:") || !warn_about_attributes {
                continue;
            }
            self.warn(format!("ignored attribute {key} on <{name}>"));
        }
        Ok(())
    }

    fn on_end(&mut self) -> Result<(), RedirectError> {
        self.state = match std::mem::replace(&mut self.state, State::AfterRoot) {
            State::InElement { element, value } => {
                self.values[element.index()] = Some(value);
                State::InRoot
            }
            State::InRoot => State::AfterRoot,
            State::InUnknown { depth: 1, .. } => State::InRoot,
            State::InUnknown { name, depth } => State::InUnknown {
                name,
                depth: depth - 1,
            },
            State::BeforeRoot | State::AfterRoot => {
                return Err(self.malformed("end tag without a matching start tag"));
            }
        };
        Ok(())
    }

    fn on_text(&mut self, text: &str) -> Result<(), RedirectError> {
        match &mut self.state {
            State::InElement { value, .. } => value.push_str(text),
            State::InUnknown { .. } => {}
            State::BeforeRoot | State::InRoot | State::AfterRoot => {
                let trimmed = text.trim();
                if !trimmed.is_empty() {
                    return Err(RedirectError::UnexpectedText {
                        text: trimmed.chars().take(MAX_QUOTED_CHARS).collect(),
                        position: self.position(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Resolves a character reference or one of the five predefined entities. Any other
    /// entity would need a DTD, which this format does not allow.
    fn on_reference(&mut self, reference: &BytesRef<'_>) -> Result<(), RedirectError> {
        if reference.is_char_ref() {
            let resolved = reference
                .resolve_char_ref()
                .map_err(|err| self.malformed(err.to_string()))?;
            let Some(ch) = resolved else {
                return Err(self.malformed("invalid character reference"));
            };
            return self.on_text(ch.encode_utf8(&mut [0; 4]));
        }

        let name = reference
            .decode()
            .map_err(|err| self.malformed(err.to_string()))?;
        match resolve_predefined_entity(&name) {
            Some(resolved) => self.on_text(resolved),
            None => Err(RedirectError::UndefinedEntity {
                name: name.into_owned(),
                position: self.position(),
            }),
        }
    }

    fn finish(self) -> Result<(RedirectFile, Vec<String>), RedirectError> {
        let open_element = match self.state {
            State::AfterRoot => None,
            State::BeforeRoot => {
                return Err(RedirectError::MissingRoot {
                    expected: ROOT_ELEMENT,
                });
            }
            State::InRoot => Some(ROOT_ELEMENT.to_string()),
            State::InElement { element, .. } => Some(element.name().to_string()),
            State::InUnknown { name, .. } => Some(name),
        };
        if let Some(element) = open_element {
            return Err(RedirectError::UnexpectedEof { element });
        }

        let [active, dr, active_net_core, dr_net_core] = self.values;
        let file = RedirectFile {
            active_url: required_url(UrlElement::Active, active)?,
            dr_url: optional_url(UrlElement::Dr, dr)?,
            active_net_core_url: optional_url(UrlElement::ActiveNetCore, active_net_core)?,
            dr_net_core_url: optional_url(UrlElement::DrNetCore, dr_net_core)?,
        };
        Ok((file, self.warnings))
    }

    fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    fn position(&self) -> Position {
        position_of(self.text, self.event_offset)
    }

    fn malformed(&self, message: impl Into<String>) -> RedirectError {
        self.malformed_at(self.event_offset, message)
    }

    fn malformed_at(&self, offset: u64, message: impl Into<String>) -> RedirectError {
        RedirectError::Malformed {
            position: position_of(self.text, offset),
            message: message.into(),
        }
    }
}

fn required_url(element: UrlElement, raw: Option<String>) -> Result<Url, RedirectError> {
    let Some(raw) = raw else {
        return Err(RedirectError::MissingElement {
            element: element.name(),
        });
    };
    if raw.trim().is_empty() {
        return Err(RedirectError::EmptyElement {
            element: element.name(),
        });
    }
    parse_url(element, raw.trim())
}

fn optional_url(element: UrlElement, raw: Option<String>) -> Result<Option<Url>, RedirectError> {
    match raw {
        Some(raw) if !raw.trim().is_empty() => parse_url(element, raw.trim()).map(Some),
        _ => Ok(None),
    }
}

fn parse_url(element: UrlElement, value: &str) -> Result<Url, RedirectError> {
    let invalid = |reason: String| RedirectError::InvalidUrl {
        element: element.name(),
        value: value.to_string(),
        reason,
    };

    // The url crate silently drops tabs and line breaks, which would hide a broken value.
    if value.chars().any(char::is_whitespace) {
        return Err(invalid("the URL contains whitespace".to_string()));
    }
    let url = Url::parse(value).map_err(|err| invalid(err.to_string()))?;

    validate_url(element, &url)?;
    Ok(url)
}

/// Converts a byte offset in `text` to a line and column.
fn position_of(text: &str, offset: u64) -> Position {
    let offset = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(text.len());
    let before = &text.as_bytes()[..offset];
    let line_start = before
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |i| i + 1);

    // Count characters, not bytes, by skipping UTF-8 continuation bytes.
    let column = before[line_start..]
        .iter()
        .filter(|&&byte| byte & 0b1100_0000 != 0b1000_0000)
        .count();

    Position {
        line: before.iter().filter(|&&byte| byte == b'\n').count() + 1,
        column: column + 1,
    }
}
