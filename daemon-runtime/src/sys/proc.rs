//! What a process reads about itself (Linux): its threads, its resident memory, its CPU time.

use std::sync::OnceLock;

use nix::sys::resource::{getrusage, UsageWho};
use nix::unistd::{sysconf, SysconfVar};

/// The number of threads in this process, from /proc.
pub(crate) fn threads() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|n| n.trim().parse().ok())
}

fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        sysconf(SysconfVar::PAGE_SIZE).ok().flatten().and_then(|n| u64::try_from(n).ok()).unwrap_or(4096)
    })
}

/// The pids of this process's children. The manager is single-threaded, so its one task's
/// `children` file lists them all; without it (a kernel built without CONFIG_PROC_CHILDREN), every
/// process's parent is read from /proc.
pub(crate) fn children() -> Vec<i32> {
    let me = std::process::id();
    if let Ok(text) = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")) {
        return text.split_whitespace().filter_map(|p| p.parse().ok()).collect();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            // `pid (comm) state ppid ...`: the name may hold spaces and parentheses.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok()))
                == Some(me)
        })
        .collect()
}

/// Resident memory in bytes now (`/proc/self/statm`'s second field: one read, a few
/// microseconds).
pub(crate) fn self_rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// CPU time used so far, user and system, in milliseconds.
pub(crate) fn self_cpu_ms() -> Option<u64> {
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let ms = |t: nix::sys::time::TimeVal| (t.tv_sec() as u64) * 1000 + (t.tv_usec() as u64) / 1000;
    Some(ms(usage.user_time()) + ms(usage.system_time()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_measures_itself() {
        let before = self_rss().expect("statm");
        let block = std::hint::black_box(vec![1u8; 32 << 20]);
        let after = self_rss().expect("statm");
        assert!(after >= before + (16 << 20), "{before} then {after} with 32 MiB touched");
        drop(block);
        let start = self_cpu_ms().expect("getrusage");
        let until = std::time::Instant::now() + std::time::Duration::from_millis(30);
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
        assert!(self_cpu_ms().expect("getrusage") >= start + 10);
        assert!(threads().is_some_and(|n| n >= 1));
    }
}

/// Whether process `pid` still runs: it exists and is not a zombie (ended, waiting for its
/// parent to collect it).
pub(crate) fn runs(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command's name, which is in parentheses and may hold anything.
    let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
    !matches!(state, None | Some('Z' | 'X' | 'x'))
}
