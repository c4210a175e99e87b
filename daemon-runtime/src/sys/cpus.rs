//! How many CPUs this process may use: those its affinity mask allows (else the online ones),
//! capped by the CPU quota of its cgroup and of every ancestor (v2 `cpu.max`, v1
//! `cpu.cfs_quota_us`). The quota is rounded up, unlike std's `available_parallelism`, which
//! rounds down: with 1.5 CPUs a second worker still gets half a CPU. nginx's
//! `worker_processes auto` counts only the online CPUs (no affinity, no cgroup). The count is
//! taken at start and at each reload, never polled.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use nix::unistd::{sysconf, SysconfVar};

/// The CPUs this process may use, and how that was found.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Cpus {
    /// At least 1.
    pub count: u32,
    /// For people: e.g. "2 CPUs: affinity 2 of 2 online, no CPU quota" or
    /// "2 CPUs: affinity 8 of 8 online, CPU quota 1.5 (cpu.max 150000 100000 at /sys/fs/cgroup/app.slice), rounded up".
    pub why: String,
}

/// Reads the running system (`/` as root).
pub(crate) fn available() -> Cpus {
    let online = sysconf(SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(1);
    count_under(Path::new("/"), affinity(), online)
}

/// The number of CPUs in this process's affinity mask, if the kernel tells.
fn affinity() -> Option<u32> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set (a plain bit array); sched_getaffinity(2)
    // writes at most the size it is given into it, and CPU_COUNT only reads it.
    let count = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        libc::CPU_COUNT(&set)
    };
    u32::try_from(count).ok()
}

/// The same with every file read under `root` (tests give a fixture directory standing in for `/`):
/// root/proc/self/cgroup, root/proc/self/mountinfo, and the cgroup files at root + (mount point) + path.
fn count_under(root: &Path, affinity: Option<u32>, online: u32) -> Cpus {
    let base = affinity.unwrap_or(online);
    let cgroup = read(&root.join("proc/self/cgroup"));
    let mountinfo = read(&root.join("proc/self/mountinfo"));
    let quota = match (cgroup, mountinfo) {
        (Some(cgroup), Some(mountinfo)) => {
            smaller(quota_v2(root, &cgroup, &mountinfo), quota_v1(root, &cgroup, &mountinfo))
        }
        _ => None,
    };
    let count = match &quota {
        Some(q) => base.min(ceil_u32(q.cpus)),
        None => base,
    }
    .max(1);

    let plural = if count == 1 { "" } else { "s" };
    let seen = match affinity {
        Some(a) => format!("affinity {a} of {online} online"),
        None => format!("affinity unknown, {online} online"),
    };
    let limit = match &quota {
        Some(q) => {
            let rounded = if q.cpus.fract() != 0.0 && ceil_u32(q.cpus) <= base { ", rounded up" } else { "" };
            format!("CPU quota {} ({}){rounded}", decimal(q.cpus), q.source)
        }
        None => "no CPU quota".to_string(),
    };
    Cpus { count, why: format!("{count} CPU{plural}: {seen}, {limit}") }
}

/// A CPU quota, in CPUs, and the file it was read from.
struct Quota {
    cpus: f64,
    source: String,
}

fn smaller(a: Option<Quota>, b: Option<Quota>) -> Option<Quota> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.cpus < a.cpus { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// The cgroup v2 quota: the smallest `cpu.max` from the process's cgroup up to the mount point.
fn quota_v2(root: &Path, cgroup: &str, mountinfo: &str) -> Option<Quota> {
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mount = find_mount(mountinfo, path, |fstype, _| fstype == "cgroup2")?;
    smallest(root, &mount, path, |dir, shown| {
        let text = read(&dir.join("cpu.max"))?;
        let mut fields = text.split_whitespace();
        let (max, period) = (fields.next()?, fields.next()?);
        if max == "max" {
            return None;
        }
        let (Ok(max_us), Ok(period_us)) = (max.parse::<u64>(), period.parse::<u64>()) else {
            tracing::debug!(dir = %shown.display(), text = text.trim(), "cpus: malformed cpu.max");
            return None;
        };
        quota(max_us, period_us, format!("cpu.max {max_us} {period_us} at {}", shown.display()))
    })
}

/// The cgroup v1 quota: the smallest `cpu.cfs_quota_us` / `cpu.cfs_period_us` from the
/// process's cgroup up to the mount point of the `cpu` controller.
fn quota_v1(root: &Path, cgroup: &str, mountinfo: &str) -> Option<Quota> {
    let path = cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let _hierarchy = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        controllers.split(',').any(|c| c == "cpu").then_some(path)
    })?;
    let mount =
        find_mount(mountinfo, path, |fstype, options| fstype == "cgroup" && options.split(',').any(|o| o == "cpu"))?;
    smallest(root, &mount, path, |dir, shown| {
        let text = read(&dir.join("cpu.cfs_quota_us"))?;
        // -1: no limit at this level.
        let quota_us = u64::try_from(text.trim().parse::<i64>().ok()?).ok()?;
        let period = read(&dir.join("cpu.cfs_period_us"))?;
        let Ok(period_us) = period.trim().parse::<u64>() else {
            tracing::debug!(dir = %shown.display(), text = period.trim(), "cpus: bad cpu.cfs_period_us");
            return None;
        };
        let source = format!("cpu.cfs_quota_us {quota_us} / cpu.cfs_period_us {period_us} at {}", shown.display());
        quota(quota_us, period_us, source)
    })
}

/// The smallest quota over the cgroup at `path` and its ancestors up to the mount point; `at`
/// reads one level (the directory under `root`, and as the system names it), `None` where
/// there is no limit.
fn smallest(root: &Path, mount: &Mount, path: &str, at: impl Fn(&Path, &Path) -> Option<Quota>) -> Option<Quota> {
    levels(mount, path)?.iter().filter_map(|dir| at(&under(root, dir), dir)).fold(None, |best, q| smaller(best, Some(q)))
}

/// A quota of `quota_us` per `period_us`, unless either is 0 (no CPU at all is no sense).
fn quota(quota_us: u64, period_us: u64, source: String) -> Option<Quota> {
    if quota_us == 0 || period_us == 0 {
        tracing::debug!(source, "cpus: a quota or period of 0 ignored");
        return None;
    }
    Some(Quota { cpus: quota_us as f64 / period_us as f64, source })
}

/// A cgroup mount: the root of the mount within the hierarchy, and where it is mounted.
struct Mount {
    root: PathBuf,
    point: PathBuf,
}

/// The mount in `mountinfo` that shows the cgroup at `path`: of those whose filesystem type and
/// super options `fits` accepts, the one whose root is the longest prefix of `path`. (Another
/// mount of the same hierarchy, say a bind mount of some other subtree listed first, would
/// give another cgroup's quota.)
fn find_mount(mountinfo: &str, path: &str, fits: impl Fn(&str, &str) -> bool) -> Option<Mount> {
    let path = Path::new(path);
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            // Six fixed fields, then zero or more optional ones, then "-".
            let dash = fields.iter().skip(6).position(|f| *f == "-")? + 6;
            let fstype = *fields.get(dash + 1)?;
            let options = fields.get(dash + 3).copied().unwrap_or("");
            if !fits(fstype, options) {
                return None;
            }
            Some(Mount { root: unescape(fields.get(3)?), point: unescape(fields.get(4)?) })
        })
        .filter(|m| path.starts_with(&m.root))
        .max_by_key(|m| m.root.components().count())
}

/// The directories (as the system names them) from the cgroup at `path` up to and including
/// the mount point, deepest first; `None` when the cgroup is outside the mount's view.
fn levels(mount: &Mount, path: &str) -> Option<Vec<PathBuf>> {
    let path = Path::new(path);
    if path.components().any(|c| c == Component::ParentDir) {
        tracing::debug!(path = %path.display(), "cpus: cgroup outside this namespace, its quota unknown");
        return None;
    }
    let Ok(relative) = path.strip_prefix(&mount.root) else {
        tracing::debug!(path = %path.display(), mount_root = %mount.root.display(), "cpus: no mount shows this cgroup, its quota unknown");
        return None;
    };
    let names: Vec<&OsStr> = relative
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut dirs = Vec::with_capacity(names.len() + 1);
    for depth in (0..=names.len()).rev() {
        let mut dir = mount.point.clone();
        for name in &names[..depth] {
            dir.push(name);
        }
        dirs.push(dir);
    }
    Some(dirs)
}

/// An absolute path of the system, under `root`.
fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// A mountinfo field with its octal escapes (`\040` for a space) undone.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(digits) = bytes.get(i + 1..i + 4) {
                if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                    let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                    if let Ok(byte) = u8::try_from(value) {
                        out.push(byte);
                        i += 4;
                        continue;
                    }
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

/// A file's text; `None` when it is missing (no word said) or unreadable (said at debug level).
fn read(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "cpus: cannot read");
            None
        }
    }
}

/// A positive quota rounded up, within `u32`.
fn ceil_u32(cpus: f64) -> u32 {
    let up = cpus.ceil();
    if up.is_nan() || up < 1.0 {
        1
    } else if up >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        up as u32
    }
}

/// A number for people: at most three decimals, no trailing zeros.
fn decimal(x: f64) -> String {
    let text = format!("{x:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const V2_MOUNTINFO: &str = "\
24 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
";

    /// A directory standing in for `/`, removed when dropped.
    struct Fixture(PathBuf);

    impl Fixture {
        fn new(name: &str) -> Fixture {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("daemon-cpus-{}-{n}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("fixture directory");
            Fixture(dir)
        }

        fn write(&self, path: &str, text: &str) {
            let path = self.0.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("fixture subdirectory");
            }
            std::fs::write(&path, text).expect("fixture file");
        }

        fn count(&self, affinity: Option<u32>, online: u32) -> Cpus {
            count_under(&self.0, affinity, online)
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn v2_quota_at_the_leaf_rounds_up() {
        let f = Fixture::new("v2-leaf");
        f.write("proc/self/cgroup", "0::/app.slice/leaf.service\n");
        f.write("proc/self/mountinfo", V2_MOUNTINFO);
        f.write("sys/fs/cgroup/app.slice/leaf.service/cpu.max", "150000 100000\n");
        let cpus = f.count(Some(8), 8);
        assert_eq!(cpus.count, 2);
        assert!(cpus.why.contains("1.5"), "{}", cpus.why);
        assert_eq!(
            cpus.why,
            "2 CPUs: affinity 8 of 8 online, CPU quota 1.5 \
             (cpu.max 150000 100000 at /sys/fs/cgroup/app.slice/leaf.service), rounded up"
        );
    }

    #[test]
    fn v2_parent_tighter_than_leaf() {
        let f = Fixture::new("v2-parent");
        f.write("proc/self/cgroup", "0::/app.slice/leaf.service\n");
        f.write("proc/self/mountinfo", V2_MOUNTINFO);
        f.write("sys/fs/cgroup/app.slice/cpu.max", "100000 100000\n");
        f.write("sys/fs/cgroup/app.slice/leaf.service/cpu.max", "300000 100000\n");
        let cpus = f.count(Some(8), 8);
        assert_eq!(cpus.count, 1);
        assert!(cpus.why.contains("at /sys/fs/cgroup/app.slice)"), "{}", cpus.why);
    }

    #[test]
    fn v2_max_everywhere_is_no_quota() {
        let f = Fixture::new("v2-max");
        f.write("proc/self/cgroup", "0::/app.slice/leaf.service\n");
        f.write("proc/self/mountinfo", V2_MOUNTINFO);
        f.write("sys/fs/cgroup/cpu.max", "max 100000\n");
        f.write("sys/fs/cgroup/app.slice/cpu.max", "max 100000\n");
        f.write("sys/fs/cgroup/app.slice/leaf.service/cpu.max", "max 100000\n");
        let cpus = f.count(Some(3), 8);
        assert_eq!(cpus.count, 3);
        assert_eq!(cpus.why, "3 CPUs: affinity 3 of 8 online, no CPU quota");
    }

    #[test]
    fn affinity_below_quota_wins() {
        let f = Fixture::new("affinity-wins");
        f.write("proc/self/cgroup", "0::/app.slice/leaf.service\n");
        f.write("proc/self/mountinfo", V2_MOUNTINFO);
        // At the mount point itself: the walk reads it too.
        f.write("sys/fs/cgroup/cpu.max", "400000 100000\n");
        let cpus = f.count(Some(1), 8);
        assert_eq!(cpus.count, 1);
        assert!(cpus.why.contains("CPU quota 4 (cpu.max 400000 100000 at /sys/fs/cgroup)"), "{}", cpus.why);
        assert!(!cpus.why.contains("rounded up"), "{}", cpus.why);
    }

    #[test]
    fn mount_root_is_stripped_and_mount_point_unescaped() {
        let f = Fixture::new("mount-root");
        f.write("proc/self/cgroup", "0::/kubepods/pod1/c1\n");
        f.write(
            "proc/self/mountinfo",
            "35 24 0:30 /kubepods/pod1 /sys/fs/cgroup\\040x rw,nosuid shared:9 master:3 - cgroup2 cgroup2 rw\n",
        );
        f.write("sys/fs/cgroup x/c1/cpu.max", "50000 100000\n");
        // Where the path would lead were the mount's root not stripped.
        f.write("sys/fs/cgroup x/kubepods/pod1/c1/cpu.max", "max 100000\n");
        let cpus = f.count(Some(4), 4);
        assert_eq!(cpus.count, 1);
        assert!(cpus.why.contains("CPU quota 0.5 (cpu.max 50000 100000 at /sys/fs/cgroup x/c1)"), "{}", cpus.why);
        assert_eq!(unescape("/a\\040b\\134c"), PathBuf::from("/a b\\c"));
    }

    #[test]
    fn another_subtree_mounted_first_is_not_taken_for_ours() {
        // A bind mount of some other cgroup listed before the hierarchy's own mount (as a
        // container runtime may leave): its quota is not this process's.
        let f = Fixture::new("other-subtree");
        f.write("proc/self/cgroup", "1:cpu:/mine\n0::/\n");
        f.write(
            "proc/self/mountinfo",
            "\
50 24 0:35 /other /tmp/m2 rw shared:20 - cgroup cgroup rw,cpu
40 30 0:35 / /sys/fs/cgroup/cpu rw,nosuid shared:14 - cgroup cgroup rw,cpu
",
        );
        f.write("tmp/m2/cpu.cfs_quota_us", "100000\n");
        f.write("tmp/m2/cpu.cfs_period_us", "100000\n");
        f.write("sys/fs/cgroup/cpu/mine/cpu.cfs_quota_us", "400000\n");
        f.write("sys/fs/cgroup/cpu/mine/cpu.cfs_period_us", "100000\n");
        let cpus = f.count(Some(8), 8);
        assert_eq!(cpus.count, 4, "{}", cpus.why);
        // Only a mount of some other subtree: the quota is unknown, not that subtree's.
        f.write("proc/self/mountinfo", "50 24 0:35 /other /tmp/m2 rw shared:20 - cgroup cgroup rw,cpu\n");
        assert_eq!(f.count(Some(8), 8).count, 8);
    }

    #[test]
    fn hybrid_v1_quota() {
        let f = Fixture::new("hybrid-v1");
        f.write("proc/self/cgroup", "3:cpuset:/other\n1:cpu,cpuacct:/app\n0::/\n");
        f.write(
            "proc/self/mountinfo",
            "\
24 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 24 0:26 / /sys/fs/cgroup ro,nosuid shared:8 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate
41 30 0:36 / /sys/fs/cgroup/cpuset rw,nosuid shared:15 - cgroup cgroup rw,cpuset
40 30 0:35 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:14 - cgroup cgroup rw,cpu,cpuacct
",
        );
        f.write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
        f.write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
        f.write("sys/fs/cgroup/cpu,cpuacct/app/cpu.cfs_quota_us", "250000\n");
        f.write("sys/fs/cgroup/cpu,cpuacct/app/cpu.cfs_period_us", "100000\n");
        // The cpuset hierarchy is not the cpu one.
        f.write("sys/fs/cgroup/cpuset/other/cpu.cfs_quota_us", "100000\n");
        f.write("sys/fs/cgroup/cpuset/other/cpu.cfs_period_us", "100000\n");
        let cpus = f.count(Some(8), 8);
        assert_eq!(cpus.count, 3);
        assert!(cpus.why.contains("CPU quota 2.5"), "{}", cpus.why);
        assert!(cpus.why.contains("at /sys/fs/cgroup/cpu,cpuacct/app)"), "{}", cpus.why);
    }

    #[test]
    fn v1_and_v2_take_the_smaller() {
        let f = Fixture::new("v1-and-v2");
        f.write("proc/self/cgroup", "1:cpu,cpuacct:/app\n0::/app\n");
        f.write(
            "proc/self/mountinfo",
            "\
31 30 0:27 / /sys/fs/cgroup/unified rw shared:9 - cgroup2 cgroup2 rw
40 30 0:35 / /sys/fs/cgroup/cpu rw shared:14 - cgroup cgroup rw,cpu,cpuacct
",
        );
        f.write("sys/fs/cgroup/unified/app/cpu.max", "200000 100000\n");
        f.write("sys/fs/cgroup/cpu/app/cpu.cfs_quota_us", "500000\n");
        f.write("sys/fs/cgroup/cpu/app/cpu.cfs_period_us", "100000\n");
        assert_eq!(f.count(Some(8), 8).count, 2);
    }

    #[test]
    fn path_outside_the_namespace_has_no_quota() {
        let f = Fixture::new("dotdot");
        f.write("proc/self/cgroup", "0::/../sibling\n");
        f.write("proc/self/mountinfo", V2_MOUNTINFO);
        f.write("sys/fs/cgroup/cpu.max", "100000 100000\n");
        f.write("sys/fs/cgroup/sibling/cpu.max", "100000 100000\n");
        let cpus = f.count(Some(4), 8);
        assert_eq!(cpus.count, 4);
        assert!(cpus.why.contains("no CPU quota"), "{}", cpus.why);
    }

    #[test]
    fn no_files_at_all() {
        let f = Fixture::new("empty");
        let cpus = f.count(None, 6);
        assert_eq!(cpus.count, 6);
        assert_eq!(cpus.why, "6 CPUs: affinity unknown, 6 online, no CPU quota");
        assert_eq!(f.count(Some(0), 6).count, 1);
        assert_eq!(f.count(None, 0).count, 1);
    }

    #[test]
    fn malformed_files_are_no_quota() {
        let f = Fixture::new("malformed");
        f.write("proc/self/cgroup", "0::/a\n");
        f.write("proc/self/mountinfo", V2_MOUNTINFO);
        f.write("sys/fs/cgroup/cpu.max", "0 100000\n");
        f.write("sys/fs/cgroup/a/cpu.max", "lots\n");
        assert_eq!(f.count(Some(2), 2).count, 2);
        f.write("sys/fs/cgroup/a/cpu.max", "100000 0\n");
        assert_eq!(f.count(Some(2), 2).count, 2);
        f.write("sys/fs/cgroup/a/cpu.max", "18446744073709551615 1\n");
        assert_eq!(f.count(None, 7).count, 7);
    }
}
