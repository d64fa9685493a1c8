use std::fmt;
use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Location in a redirect file, both 1-based. The column counts characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Reasons a redirect file is rejected by [`parse`](super::parse()).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedirectError {
    #[error("redirect file is {size} bytes, over the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },

    #[error("redirect file is encoded as UTF-16; save it as UTF-8")]
    Utf16,

    #[error("redirect file is not valid UTF-8 at byte {offset}; save it as UTF-8")]
    NotUtf8 { offset: usize },

    #[error("malformed XML at {position}: {message}")]
    Malformed { position: Position, message: String },

    #[error(
        "DOCTYPE declaration at {position} is not allowed, because entity declarations could \
         expand or load external content; remove it"
    )]
    Doctype { position: Position },

    #[error(
        "undefined entity reference &{name}; at {position}; only the predefined XML entities \
         (&amp; &lt; &gt; &apos; &quot;) and character references are allowed"
    )]
    UndefinedEntity { name: String, position: Position },

    #[error("redirect file has no root element; expected <{expected}>")]
    MissingRoot { expected: &'static str },

    #[error("root element is <{found}>, expected <{expected}>")]
    WrongRoot {
        found: String,
        expected: &'static str,
    },

    #[error("unexpected element <{found}> at {position} after the root element")]
    ElementAfterRoot { found: String, position: Position },

    #[error("unexpected text {text:?} at {position} outside a URL element")]
    UnexpectedText { text: String, position: Position },

    #[error("redirect file ends inside <{element}>")]
    UnexpectedEof { element: String },

    #[error("required element <{element}> is missing")]
    MissingElement { element: &'static str },

    #[error("element <{element}> is empty; it must contain an http or https URL")]
    EmptyElement { element: &'static str },

    #[error("element <{element}> appears more than once (again at {position})")]
    DuplicateElement {
        element: &'static str,
        position: Position,
    },

    #[error("element <{element}> contains the element <{child}>; it must contain only a URL")]
    NestedElement {
        element: &'static str,
        child: String,
    },

    #[error("element <{element}> contains an invalid URL {value:?}: {reason}")]
    InvalidUrl {
        element: &'static str,
        value: String,
        reason: String,
    },

    #[error(
        "element <{element}> contains the URL {value:?} with scheme {scheme:?}; only http and \
         https are allowed"
    )]
    UnsupportedScheme {
        element: &'static str,
        value: String,
        scheme: String,
    },
}

/// Failures when reading, validating or writing a redirect file on disk.
#[derive(Debug, Error)]
pub enum FileError {
    #[error("failed to read redirect file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },

    #[error("invalid redirect file {}: {source}", path.display())]
    Invalid {
        path: PathBuf,
        source: RedirectError,
    },

    #[error("failed to write redirect file {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}
