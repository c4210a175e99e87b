//! What generated code hands the runtime about the program: its attributes' values, its package,
//! and what its `main` returns. A leaf: it names nothing else of the runtime's.

use std::fmt::Debug;

use daemon_config::Value;

/// A value written in `#[daemon::main(...)]`, as the macro emits it.
#[derive(Clone, Copy, Debug)]
pub enum Attr {
    Count(u64),
    Flag(bool),
    Addresses(&'static [&'static str]),
    /// Milliseconds.
    Duration(u64),
    /// Bytes.
    Size(u64),
    /// A path or a name.
    Text(&'static str),
}

impl Attr {
    pub(crate) fn value(self) -> Value {
        match self {
            Attr::Count(n) => Value::Count(n),
            Attr::Flag(b) => Value::Flag(b),
            Attr::Addresses(list) => Value::Addresses(list.iter().map(|s| s.to_string()).collect()),
            Attr::Duration(ms) => Value::Duration(std::time::Duration::from_millis(ms)),
            Attr::Size(n) => Value::Size(n),
            Attr::Text(t) => Value::Text(t.to_string()),
        }
    }
}

/// The program's name and version, for `--help` and `--version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Package {
    pub name: &'static str,
    pub version: &'static str,
}

/// What `fn main` may return: `()` or `Result<(), E>`.
pub trait MainOutput {
    fn into_result(self) -> Result<(), String>;
}

impl MainOutput for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Debug> MainOutput for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

