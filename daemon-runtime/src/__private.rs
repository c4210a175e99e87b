//! The paths generated code uses, re-exported by the facade as `daemon::__private`. Not a public
//! API: only the attribute macros may rely on it, and every path they emit is listed here.

pub use ::inventory;
pub use daemon_config::Key;

pub use crate::child::Child;
pub use crate::worker::connection::Connection;
pub use crate::entry::{run, Attr, MainOutput, Package};
pub use crate::hooks::{
    call_async_accept, call_child_hook, call_sync_accept, AsyncAcceptHandler, BoxFuture,
    ChildHook, OnAccept, OnChild, OnShutdown, SyncAcceptHandler,
};
