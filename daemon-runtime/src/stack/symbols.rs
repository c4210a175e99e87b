//! The helper that symbolizes: a child forked from the manager for one capture. It has the
//! manager's binary at the manager's addresses, which are every worker's (they were forked from
//! it), so the workers' return addresses resolve here. It writes JSON down its pipe and ends.

use std::os::fd::{AsRawFd, OwnedFd};

use serde_json::{json, Value as Json};

/// In the forked helper: resolve, write, end. Never returns.
pub(super) fn helper(pipe: OwnedFd, stacks: &[(i32, Vec<u64>)]) -> ! {
    // Nothing of the manager's stays open here (the pid file's lock, the listeners): the pipe
    // becomes descriptor 3, and everything above it is closed.
    if crate::sys::dup_onto(pipe.as_raw_fd(), 3).is_err() {
        crate::sys::exit_now(1);
    }
    crate::sys::close_from(4);
    // The manager's death ends it.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let threads: Vec<Json> = stacks.iter().map(|(tid, frames)| json!({ "tid": tid, "frames": resolve(frames) })).collect();
    let text = Json::Array(threads).to_string();
    let out = crate::sys::own_fd(3);
    let mut written = 0;
    while written < text.len() {
        match nix::unistd::write(&out, &text.as_bytes()[written..]) {
            Ok(n) if n > 0 => written += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                let mut fds = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&out), nix::poll::PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1000u16));
            }
            _ => crate::sys::exit_now(1),
        }
    }
    crate::sys::exit_now(0)
}

/// Each address as one or more frames (inlined functions first): function, file and line where
/// debug information has them. The first address is where the thread was; the others are return
/// addresses, looked up one byte back so the line is the call's.
fn resolve(frames: &[u64]) -> Vec<Json> {
    let mut out = Vec::new();
    for (i, &address) in frames.iter().enumerate() {
        let lookup = if i == 0 { address } else { address.saturating_sub(1) };
        let mut found = false;
        backtrace::resolve(lookup as usize as *mut std::ffi::c_void, |symbol| {
            found = true;
            let function = symbol.name().map(|n| format!("{n:#}"));
            let file = symbol.filename().map(|f| f.display().to_string());
            out.push(json!({
                "address": format!("{address:#x}"),
                "function": function,
                "file": file,
                "line": symbol.lineno(),
            }));
        });
        if !found {
            out.push(json!({ "address": format!("{address:#x}") }));
        }
    }
    out
}
