//! A worker's own state: what its `on_child` hooks returned, kept by type for the rest of the
//! worker's life, and handed back to its handlers, tasks and later hooks by type
//! (`daemon::state::<T>()`, `Connection::state`, `Task::state`, `Supervised::state`).
//!
//! Each value is built once, after fork, in the worker (a database handle, a router, a cache),
//! so no two workers share one and a failure to build it fails the worker's start with the
//! reason. A value lives until the worker exits: it is leaked, which is what makes the
//! reference `'static`, so a handler holds it across awaits without a clone or a lock.
//!
//! The values are the worker's main thread's: the hooks, the handlers and the tasks all run
//! there (an async worker's runtime is a local one on that thread). A thread the program starts
//! itself takes a reference along (for a `Sync` value) rather than asking for it.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    /// By type: the value and the hook that returned it (for the message about a second one).
    static STATE: RefCell<HashMap<TypeId, (&'static dyn Any, &'static str)>> = RefCell::new(HashMap::new());
}

/// Keeps `value` as this worker's `T`, returned by the hook `hook`. A second value of one type
/// is refused (which of two should a handler get?), with both hooks named.
pub(crate) fn keep<T: 'static>(hook: &'static str, value: T) -> Result<(), String> {
    // `()` is what a hook returns when it returns nothing: not state.
    if TypeId::of::<T>() == TypeId::of::<()>() {
        return Ok(());
    }
    let id = TypeId::of::<T>();
    if let Some(first) = STATE.with_borrow(|s| s.get(&id).map(|(_, h)| *h)) {
        return Err(format!(
            "the on_child hooks {first} and {hook} both return a {}: a worker keeps one value of \
             each type; wrap one of them in a type of its own",
            std::any::type_name::<T>()
        ));
    }
    let value: &'static T = Box::leak(Box::new(value));
    STATE.with_borrow_mut(|s| s.insert(id, (value as &'static dyn Any, hook)));
    Ok(())
}

/// This worker's `T`, if an `on_child` hook returned one. `None` in the manager, in a worker
/// whose hooks returned no `T`, and on a thread other than the worker's main one.
pub fn state<T: 'static>() -> Option<&'static T> {
    let found: Option<&'static dyn Any> = STATE.with_borrow(|s| s.get(&TypeId::of::<T>()).map(|(v, _)| *v));
    found.and_then(|v| v.downcast_ref::<T>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Db(u32);

    #[test]
    fn a_value_is_kept_once_by_type_and_unit_is_not_state() {
        // Each test runs on a thread of its own: a fresh worker, as far as this module knows.
        std::thread::spawn(|| {
            assert_eq!(state::<Db>(), None);
            assert_eq!(keep("open", ()), Ok(()));
            assert_eq!(state::<()>(), None);
            assert_eq!(keep("open", Db(7)), Ok(()));
            assert_eq!(state::<Db>(), Some(&Db(7)));
            let again = keep("reopen", Db(8)).unwrap_err();
            assert!(again.contains("open and reopen both return a") && again.contains("Db"), "{again}");
            assert_eq!(state::<Db>(), Some(&Db(7)), "the first value stays");
            // Another thread sees none of it.
            let other = std::thread::spawn(|| state::<Db>().is_none()).join();
            assert!(matches!(other, Ok(true)));
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    }
}
