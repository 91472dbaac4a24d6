//! Errors of the offline tools built on the pool (dump, restore, ls).

use super::xml_read::ParseError;
use super::xml_write::DumpError;
use crate::error::Error;
use std::fmt;

#[derive(Debug)]
pub enum ToolError {
    /// The metadata could not be read or written.
    Engine(Error),
    /// The XML input is malformed or inconsistent (with line and column).
    Parse(ParseError),
    /// The XML is well formed but describes an impossible pool.
    Input(String),
    /// Writing the output failed.
    Output(DumpError),
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::Engine(e) => write!(f, "{e}"),
            ToolError::Parse(e) => write!(f, "{e}"),
            ToolError::Input(s) => write!(f, "{s}"),
            ToolError::Output(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ToolError {}

impl From<Error> for ToolError {
    fn from(e: Error) -> Self {
        ToolError::Engine(e)
    }
}

impl From<ParseError> for ToolError {
    fn from(e: ParseError) -> Self {
        ToolError::Parse(e)
    }
}

impl From<DumpError> for ToolError {
    fn from(e: DumpError) -> Self {
        ToolError::Output(e)
    }
}
