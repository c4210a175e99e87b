//! Dropping privileges: after the listeners are bound and the pid and log files opened as root,
//! the manager drops its supplementary groups, then its gid, then its uid, and checks that it
//! cannot become root again. Workers are forked after, so they never run as root.

use nix::unistd::{getegid, geteuid, getgid, getuid, setgid, setgroups, setuid, Gid, Group, Uid, User};

/// Why privileges could not be dropped.
#[derive(Debug)]
pub struct PrivilegeError(pub String);

impl std::fmt::Display for PrivilegeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who the manager will become.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identity {
    pub uid: Option<Uid>,
    pub gid: Option<Gid>,
}

/// Looks the names up; fails for an unknown user or group, or for a change that needs root while
/// the process is not root.
pub(crate) fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Identity, PrivilegeError> {
    let mut id = Identity { uid: None, gid: None };
    if let Some(name) = user {
        let u = lookup_user(name)?;
        id.uid = Some(u.uid);
        id.gid = Some(u.gid);
    }
    if let Some(name) = group {
        id.gid = Some(lookup_group(name)?);
    }
    let changes = id.uid.is_some_and(|u| u != geteuid()) || id.gid.is_some_and(|g| g != getegid());
    if changes && !geteuid().is_root() {
        let what = match (user, group) {
            (Some(u), _) => format!("user = {u}"),
            (None, Some(g)) => format!("group = {g}"),
            (None, None) => String::new(),
        };
        return Err(PrivilegeError(format!(
            "{what} needs root: this process runs as uid {}; start it as root, or remove the setting",
            geteuid()
        )));
    }
    Ok(id)
}

/// Who may connect to the Unix socket files `listen` names: `socket_mode`, and `socket_user` and
/// `socket_group` looked up, or else the user and group the daemon runs as.
pub(crate) fn socket_access(config: &daemon_config::Config, id: Identity) -> Result<super::unix_socket::Access, PrivilegeError> {
    let named = |key: &str, e: PrivilegeError| PrivilegeError(e.0.replacen("user =", &format!("{key} ="), 1).replacen("group =", &format!("{key} ="), 1));
    let uid = match config.socket_user.as_deref() {
        Some(name) => Some(lookup_user(name).map_err(|e| named("socket_user", e))?.uid),
        None => id.uid,
    };
    let gid = match config.socket_group.as_deref() {
        Some(name) => Some(lookup_group(name).map_err(|e| named("socket_group", e))?),
        None => id.gid,
    };
    Ok(super::unix_socket::Access { mode: config.socket_mode, uid, gid, daemon_uid: id.uid, daemon_gid: id.gid })
}

/// The uid of a user name (or number), for a control command that must know whom the daemon
/// runs as.
pub(crate) fn uid_of(name: &str) -> Result<u32, PrivilegeError> {
    lookup_user(name).map(|u| u.uid.as_raw())
}

fn lookup_user(name: &str) -> Result<User, PrivilegeError> {
    let found = match name.parse::<u32>() {
        Ok(n) => User::from_uid(Uid::from_raw(n)),
        Err(_) => User::from_name(name),
    };
    match found {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(PrivilegeError(format!(
            "user = {name}: no such user on this machine; create it (useradd --system {name}) or name another"
        ))),
        Err(e) => Err(PrivilegeError(format!("user = {name}: cannot look it up: {e}"))),
    }
}

fn lookup_group(name: &str) -> Result<Gid, PrivilegeError> {
    let found = match name.parse::<u32>() {
        Ok(n) => Group::from_gid(Gid::from_raw(n)),
        Err(_) => Group::from_name(name),
    };
    match found {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => Err(PrivilegeError(format!(
            "group = {name}: no such group on this machine; create it (groupadd --system {name}) or name another"
        ))),
        Err(e) => Err(PrivilegeError(format!("group = {name}: cannot look it up: {e}"))),
    }
}

/// Becomes `id`, for good; then, if a user or group is configured, makes the process not
/// dumpable.
pub(crate) fn drop_to(id: Identity) -> Result<(), PrivilegeError> {
    if geteuid().is_root() {
        become_id(id)?;
    }
    // The kernel makes a process that changes its own uid not dumpable: other processes of the
    // user it became cannot ptrace it or open its /proc files (its memory, its descriptors,
    // among them the metrics area, its environment). A manager exec'd as that user by an
    // upgrade would be open to them, and so would its workers (they inherit the flag): it is
    // said here, so every manager of the daemon is as closed as the first. (No core dumps
    // either, as for any process that changed its uid: README, `user`.)
    if id.uid.is_some() || id.gid.is_some() {
        nix::sys::prctl::set_dumpable(false).map_err(|e| PrivilegeError(format!("cannot make the process not dumpable: {e}")))?;
    }
    Ok(())
}

fn become_id(id: Identity) -> Result<(), PrivilegeError> {
    let fail = |what: &str, e: nix::Error| PrivilegeError(format!("cannot {what}: {e}"));
    if let Some(gid) = id.gid {
        setgroups(&[gid]).map_err(|e| fail("drop supplementary groups", e))?;
        setgid(gid).map_err(|e| fail("change group", e))?;
    }
    if let Some(uid) = id.uid {
        setuid(uid).map_err(|e| fail("change user", e))?;
        if !uid.is_root() && (setuid(Uid::from_raw(0)).is_ok() || geteuid().is_root()) {
            return Err(PrivilegeError("the process could become root again after dropping privileges".into()));
        }
    }
    if id.gid.is_some_and(|g| getgid() != g || getegid() != g) || id.uid.is_some_and(|u| getuid() != u || geteuid() != u) {
        return Err(PrivilegeError("the process did not become the configured user and group".into()));
    }
    Ok(())
}
