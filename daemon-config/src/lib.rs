//! The rule book of daemon's settings.
//!
//! One description of every setting (its name, type, default, bounds, relations, command-line
//! flag, environment variable, config-file key, and whether a reload may change it) is used
//! twice: by `daemon-macros` at compile time, to turn a bad `#[daemon::main(...)]` into a compile
//! error at the offending token, and by `daemon-runtime` at start, to check the values that come
//! from the command line. Both call [`resolve`], so the two can never disagree.
//!
//! This crate has no dependency on the runtime (it is compiled into the proc-macro), and does no
//! I/O.

mod duration;
mod group;
mod problem;
mod reference;
mod resolve;
mod settings;
mod size;

pub use duration::{format_duration, parse_duration};
pub use group::{
    check_group_name, group_setting, group_spelling, resolve_group, GroupConfig, GroupGiven, GroupKey, TaskModel,
    GROUP_SETTINGS, RESERVED_POOL_NAMES,
};
pub use problem::{suggest, Origin, Problem};
pub use reference::reference_table;
pub use resolve::{resolve, Config, Given, Model};
pub use settings::{AUTO as AUTO_WORD, parse_mode, parse_switch, setting, Key, Kind, Reload, Setting, Value, SETTINGS, UNIX_PATH_MAX, UNIX_PREFIX};
pub use size::{format_size, parse_size};
