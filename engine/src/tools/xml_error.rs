//! Errors of the XML parser: what was wrong ([`ParseErrorKind`]) and where ([`ParseError`]
//! carries the 1-based line and column). Messages name the element and attribute concerned and
//! quote thin_restore's wording where the tool has one.

use super::tracked::Position;
use std::fmt;

/// A rejected input, with where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: u64,
    pub column: u64,
    pub kind: ParseErrorKind,
}

/// What was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// Reading the input failed.
    Io(String),
    /// Not well-formed XML (tokenizer message).
    Syntax(String),
    /// An element other than those of the format.
    UnknownElement(String),
    /// A known element in a place the format does not allow (`context` says where).
    Misplaced {
        element: &'static str,
        context: &'static str,
    },
    /// An XML declaration or DOCTYPE after other content.
    MisplacedProlog(&'static str),
    /// A closing tag that does not close the open element (`open` is `None` at top level).
    MismatchedEnd {
        open: Option<&'static str>,
        found: String,
    },
    MissingAttribute {
        element: &'static str,
        attribute: &'static str,
    },
    /// Not a plain unsigned decimal number.
    NotANumber {
        element: &'static str,
        attribute: &'static str,
        value: String,
    },
    /// A number larger than the field holds.
    OutOfRange {
        element: &'static str,
        attribute: &'static str,
        value: String,
        max: u64,
    },
    /// `range_mapping` with `length="0"`.
    ZeroLength,
    /// The run's last block (`attribute` + length − 1) does not fit `u64`.
    RunOverflow {
        attribute: &'static str,
    },
    /// A data block at or beyond the data device's end (thin_restore's message).
    BeyondDataDevice {
        data_block: u64,
        nr_data_blocks: u64,
    },
    DuplicateDevice(u64),
    /// Non-blank text or CDATA outside the `superblock` element.
    TextOutsideSuperblock,
    /// The input ended inside `open`.
    UnexpectedEof {
        open: &'static str,
    },
    /// The input holds no `superblock` element.
    NoSuperblock,
    /// A second `def` of one name (1.x's shared runs).
    DuplicateDef(String),
    /// A `ref` to a name no `def` before it defined.
    UnknownDef(String),
    /// The `def`s hold more runs than the reader keeps, counting a def's refs as copies.
    TooManySharedRuns {
        max: u64,
    },
    /// The devices' `ref`s expand to more runs than the reader emits.
    TooManyReferencedRuns {
        max: u64,
    },
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ParseErrorKind as K;
        match self {
            K::Io(msg) => write!(f, "cannot read input: {msg}"),
            K::Syntax(msg) => write!(f, "malformed XML: {msg}"),
            K::UnknownElement(name) => write!(f, "unknown element `{name}`"),
            K::Misplaced { element, context } => write!(f, "`{element}` is not allowed {context}"),
            K::MisplacedProlog(what) => write!(f, "{what} must come before the superblock"),
            K::MismatchedEnd { open: Some(open), found } => {
                write!(f, "closing tag `{found}` does not match the open `{open}`")
            }
            K::MismatchedEnd { open: None, found } => {
                write!(f, "closing tag `{found}` without an open element")
            }
            K::MissingAttribute { element, attribute } => {
                write!(f, "{element} is missing attribute `{attribute}`")
            }
            K::NotANumber { element, attribute, value } => write!(
                f,
                "{element} attribute `{attribute}` is not an unsigned decimal number: {value:?}"
            ),
            K::OutOfRange { element, attribute, value, max } => {
                write!(f, "{element} attribute `{attribute}` = {value} is larger than {max}")
            }
            K::ZeroLength => write!(f, "range_mapping has length 0"),
            K::RunOverflow { attribute } => {
                write!(f, "range_mapping: `{attribute}` + length - 1 does not fit in 64 bits")
            }
            K::BeyondDataDevice { data_block, nr_data_blocks } => {
                write!(f, "mapping beyond end of data device ({data_block} >= {nr_data_blocks})")
            }
            K::DuplicateDevice(id) => write!(f, "device {id} appears twice"),
            K::TextOutsideSuperblock => write!(f, "text outside the superblock element"),
            K::UnexpectedEof { open } => write!(f, "input ends inside `{open}`"),
            K::NoSuperblock => write!(f, "no superblock element"),
            K::DuplicateDef(name) => write!(f, "def `{name}` is defined twice"),
            K::UnknownDef(name) => write!(f, "ref to `{name}`, which no def before it defines"),
            K::TooManySharedRuns { max } => {
                write!(f, "the defs hold more than {max} mapping runs (refs inside defs copied)")
            }
            K::TooManyReferencedRuns { max } => {
                write!(f, "the devices' refs expand to more than {max} mapping runs")
            }
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.kind)
    }
}

impl std::error::Error for ParseError {}

/// An error of `kind` at `position`.
pub(super) fn at(position: Position, kind: ParseErrorKind) -> ParseError {
    ParseError { line: position.line, column: position.column, kind }
}
