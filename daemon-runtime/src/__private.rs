//! The paths generated code uses, re-exported by the facade as `daemon::__private`. Not a public
//! API: only the attribute macros may rely on it, and every path they emit is listed here.

pub use ::inventory;
pub use daemon_config::{GroupKey, Key};

pub use crate::child::Child;
pub use crate::app::ProgramSettings;
pub use crate::entry::{run, run_with_settings};
pub use crate::program::{Attr, MainOutput, Package};
pub use crate::hooks::{
    call_async_accept, call_async_supervised, call_async_task, call_child_hook, call_child_result, call_child_state, call_child_unit, call_manager_hook,
    call_reap_hook, call_spawn_hook, call_sync_accept, call_sync_supervised, call_sync_task,
    AsyncAcceptHandler, AsyncSupervised, AsyncTask, BoxFuture, ChildHook, ManagerEvent, ManagerHook,
    ManagerHookFn, OnAccept, OnChild, OnShutdown, OnSupervised, ReapHook, Reaped, Run, SpawnHook,
    Spawned, SyncAcceptHandler, SyncSupervised, SyncTask, TakesAny, TakesTcp, TaskFn, TcpProbe, WorkFuture,
};
pub use crate::net::Stream;
pub use crate::worker::connection::Connection;
pub use crate::worker::work::{Supervised, Task};
