//! The table of settings: what each one is called in every place a value can come from, its
//! type, its bounds and its default.

use std::fmt;
use std::time::Duration;

/// Every setting the daemon knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Prefork,
    MinSpare,
    MaxSpare,
    MaxChildren,
    Requests,
    Clients,
    Listen,
    Backlog,
    TcpNodelay,
    Rcvbuf,
    Sndbuf,
    TcpDeferAccept,
    SocketMode,
    SocketUser,
    SocketGroup,
    TlsCert,
    TlsKey,
    TlsClientCa,
    TlsAlpn,
    Detach,
    Foreground,
    GracefulTimeout,
    TermStop,
    StartTimeout,
    HeartbeatInterval,
    HeartbeatTimeout,
    RequestTimeout,
    LongRequestTimeout,
    IdleTimeout,
    KeepaliveTimeout,
    MaxRss,
    MaxCpu,
    RestartIntensity,
    RestartPeriod,
    MinWorkerLifetime,
    Postfork,
    RespawnDelay,
    DrainTimeout,
    UpgradeTimeout,
    LogFormat,
    MetricsListen,
    MetricsAccess,
    PidFile,
    LogFile,
    User,
    Group,
}

/// The type of a setting's value, with its bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A whole number in `min..=max`.
    Count { min: u64, max: u64 },
    /// A whole number in `min..=max`, or `auto`: as many as the CPUs this process may use
    /// (known at run time only; the value is then `Value::Text("auto")`).
    CountOrAuto { min: u64, max: u64 },
    /// A flag: present or not.
    Flag,
    /// One or more listening addresses, `IP:PORT` or `HOST:PORT`.
    Addresses,
    /// A duration in `min..=max`; with `off`, also 0 (written `0` or `off`), meaning no limit.
    Duration {
        min: Duration,
        max: Duration,
        off: bool,
    },
    /// A size in bytes in `min..=max` (`512M`, `2G`, or bytes); with `off`, also 0 (`off`).
    Size { min: u64, max: u64, off: bool },
    /// A file's path.
    Path,
    /// A user or group name (or numeric id).
    Name,
    /// One of a few words.
    Choice(&'static [&'static str]),
    /// One address to listen on, `IP:PORT`, or `off`.
    Endpoint,
    /// A file's permission bits in octal, such as `0660`.
    Mode,
}

/// What a reload (HUP) may do with a setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reload {
    /// A reload applies the new value to the running pool.
    Applies,
    /// The value is fixed for the manager's life: changing it needs a restart or an upgrade.
    NeedsRestart,
}

/// A value of a setting, already of the setting's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Count(u64),
    Flag(bool),
    Addresses(Vec<String>),
    Duration(Duration),
    /// Bytes.
    Size(u64),
    Text(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Count(n) => write!(f, "{n}"),
            Value::Flag(b) => write!(f, "{b}"),
            Value::Addresses(list) => write!(f, "{}", list.join(",")),
            Value::Duration(d) => f.write_str(&crate::format_duration(*d)),
            Value::Size(n) => f.write_str(&crate::format_size(*n)),
            Value::Text(t) => f.write_str(t),
        }
    }
}

/// One row of the rule book: a global setting (`Setting<Key>`), or a task group's
/// (`Setting<GroupKey>`, see `group`).
#[derive(Debug)]
pub struct Setting<K = Key> {
    pub key: K,
    /// The attribute key, and the key in a config file.
    pub name: &'static str,
    /// The command-line flag, with its dashes.
    pub flag: &'static str,
    /// The environment variable.
    pub env: &'static str,
    pub kind: Kind,
    /// The default, as a sentence for people (some defaults depend on other settings).
    pub default: &'static str,
    pub reload: Reload,
    /// What the setting does, in one line.
    pub summary: &'static str,
    /// The key written with a typical value, as in an attribute (`prefork = 4`): messages show it
    /// as the fix.
    pub example: &'static str,
}

/// The largest pool the rule book accepts; the scoreboard is sized for it.
pub const MAX_WORKERS: u64 = 4096;

/// The rule book.
pub static SETTINGS: &[Setting] = &[
    Setting {
        key: Key::Prefork,
        name: "prefork",
        flag: "--workers",
        env: "DAEMON_PREFORK",
        kind: Kind::CountOrAuto { min: 1, max: MAX_WORKERS },
        default: "4 (or max_children, if that is smaller)",
        reload: Reload::Applies,
        summary: "workers forked at start; the pool never shrinks below it (TTIN/TTOU move it by one); auto: one per CPU this process may use (its affinity, and a cgroup CPU quota rounded up), at most max_children",
        example: "prefork = 4",
    },
    Setting {
        key: Key::MinSpare,
        name: "min_spare",
        flag: "--min-spare",
        env: "DAEMON_MIN_SPARE",
        kind: Kind::Count { min: 0, max: MAX_WORKERS },
        default: "1",
        reload: Reload::Applies,
        summary: "fewer idle workers than this and the manager forks more, up to max_children",
        example: "min_spare = 1",
    },
    Setting {
        key: Key::MaxSpare,
        name: "max_spare",
        flag: "--max-spare",
        env: "DAEMON_MAX_SPARE",
        kind: Kind::Count { min: 1, max: MAX_WORKERS },
        default: "the larger of prefork and min_spare",
        reload: Reload::Applies,
        summary: "more idle workers than this and the manager retires the surplus gracefully, one a second, down to prefork",
        example: "max_spare = 3",
    },
    Setting {
        key: Key::MaxChildren,
        name: "max_children",
        flag: "--max-children",
        env: "DAEMON_MAX_CHILDREN",
        kind: Kind::Count { min: 1, max: MAX_WORKERS },
        default: "prefork + max_spare",
        reload: Reload::Applies,
        summary: "the most worker processes alive at once, exiting ones included",
        example: "max_children = 16",
    },
    Setting {
        key: Key::Requests,
        name: "requests",
        flag: "--requests",
        env: "DAEMON_REQUESTS",
        kind: Kind::Count { min: 0, max: 1_000_000_000 },
        default: "0 (no limit)",
        reload: Reload::Applies,
        summary: "connections a worker serves before it is recycled (up to a fifth fewer, at random, so workers do not all restart at once); 0 = no limit",
        example: "requests = 10000",
    },
    Setting {
        key: Key::Clients,
        name: "clients",
        flag: "--clients",
        env: "DAEMON_CLIENTS",
        kind: Kind::Count { min: 1, max: 1_000_000 },
        default: "1000 for an async handler; a plain fn handler serves exactly 1",
        reload: Reload::Applies,
        summary: "connections one async worker serves at once; a worker is idle while it has room for one more",
        example: "clients = 1000",
    },
    Setting {
        key: Key::Listen,
        name: "listen",
        flag: "--listen",
        env: "DAEMON_LISTEN",
        kind: Kind::Addresses,
        default: "127.0.0.1:8080",
        reload: Reload::NeedsRestart,
        summary: "addresses the manager binds before forking, shared by every worker (the flag repeats): `IP:PORT`, `HOST:PORT`, a Unix socket's path `unix:/run/app/app.sock`, or an abstract one `unix:@name`",
        example: "listen = \"127.0.0.1:8080\"",
    },
    Setting {
        key: Key::Backlog,
        name: "backlog",
        flag: "--backlog",
        env: "DAEMON_BACKLOG",
        kind: Kind::Count { min: 1, max: 65_535 },
        default: "1024 (the kernel caps it at net.core.somaxconn, and the log says so)",
        reload: Reload::NeedsRestart,
        summary: "connections each listener's accept queue holds while every worker is busy (an upgrade applies a new value to the sockets it takes over; socket activation's are sized by the service manager)",
        example: "backlog = 1024",
    },
    Setting {
        key: Key::TcpNodelay,
        name: "tcp_nodelay",
        flag: "--tcp-nodelay",
        env: "DAEMON_TCP_NODELAY",
        kind: Kind::Flag,
        default: "on",
        reload: Reload::NeedsRestart,
        summary: "TCP_NODELAY on every accepted connection: small writes go out at once instead of waiting for the peer's ACK (Nagle); `tcp_nodelay = false` (or `--tcp-nodelay=off`) for a service that writes in many small pieces and prefers fewer packets",
        example: "tcp_nodelay = false",
    },
    Setting {
        key: Key::Rcvbuf,
        name: "rcvbuf",
        flag: "--rcvbuf",
        env: "DAEMON_RCVBUF",
        kind: Kind::Size { min: 4096, max: 256 << 20, off: true },
        default: "off (the kernel sizes each connection's buffer and grows it as the connection needs)",
        reload: Reload::NeedsRestart,
        summary: "the receive buffer of each listener (SO_RCVBUF), which its connections inherit; a set size stops the kernel's autotuning (an upgrade applies a new value to the sockets it takes over)",
        example: "rcvbuf = \"256K\"",
    },
    Setting {
        key: Key::Sndbuf,
        name: "sndbuf",
        flag: "--sndbuf",
        env: "DAEMON_SNDBUF",
        kind: Kind::Size { min: 4096, max: 256 << 20, off: true },
        default: "off (the kernel's autotuning)",
        reload: Reload::NeedsRestart,
        summary: "the send buffer of each listener (SO_SNDBUF), which its connections inherit",
        example: "sndbuf = \"1M\"",
    },
    Setting {
        key: Key::TcpDeferAccept,
        name: "tcp_defer_accept",
        flag: "--tcp-defer-accept",
        env: "DAEMON_TCP_DEFER_ACCEPT",
        kind: Kind::Duration { min: Duration::from_secs(1), max: Duration::from_secs(3600), off: true },
        default: "off",
        reload: Reload::NeedsRestart,
        summary: "TCP_DEFER_ACCEPT on each TCP listener: the kernel hands a connection over only once its client has sent something (or this long has passed), so silent clients take no worker's place; only for protocols where the client speaks first (HTTP, TLS)",
        example: "tcp_defer_accept = \"10s\"",
    },
    Setting {
        key: Key::SocketMode,
        name: "socket_mode",
        flag: "--socket-mode",
        env: "DAEMON_SOCKET_MODE",
        kind: Kind::Mode,
        default: "0660 (the socket's user and group only)",
        reload: Reload::NeedsRestart,
        summary: "the permissions of each Unix socket file `listen` names: who may connect (a proxy such as nginx needs write permission, through the group or others)",
        example: "socket_mode = \"0660\"",
    },
    Setting {
        key: Key::SocketUser,
        name: "socket_user",
        flag: "--socket-user",
        env: "DAEMON_SOCKET_USER",
        kind: Kind::Name,
        default: "the daemon's user (`user`, or the starting user)",
        reload: Reload::NeedsRestart,
        summary: "the owner of each Unix socket file `listen` names (set while the manager is still root)",
        example: "socket_user = \"app\"",
    },
    Setting {
        key: Key::SocketGroup,
        name: "socket_group",
        flag: "--socket-group",
        env: "DAEMON_SOCKET_GROUP",
        kind: Kind::Name,
        default: "the daemon's group (`group`, or the starting group)",
        reload: Reload::NeedsRestart,
        summary: "the group of each Unix socket file `listen` names: with `socket_mode = \"0660\"`, its members may connect (`socket_group = \"www-data\"` lets nginx in)",
        example: "socket_group = \"www-data\"",
    },
    Setting {
        key: Key::TlsCert,
        name: "tls_cert",
        flag: "--tls-cert",
        env: "DAEMON_TLS_CERT",
        kind: Kind::Path,
        default: "none (plaintext)",
        reload: Reload::Applies,
        summary: "with tls_key, TLS on every TCP listener (the `tls` feature): a PEM file with the certificate, then its chain; read at start before privileges are dropped, and again by a reload (HUP), whose new workers serve it",
        example: "tls_cert = \"/etc/app/fullchain.pem\"",
    },
    Setting {
        key: Key::TlsKey,
        name: "tls_key",
        flag: "--tls-key",
        env: "DAEMON_TLS_KEY",
        kind: Kind::Path,
        default: "none",
        reload: Reload::Applies,
        summary: "the certificate's private key, a PEM file (PKCS#8, PKCS#1 or SEC1) no other user may read or write",
        example: "tls_key = \"/etc/app/privkey.pem\"",
    },
    Setting {
        key: Key::TlsClientCa,
        name: "tls_client_ca",
        flag: "--tls-client-ca",
        env: "DAEMON_TLS_CLIENT_CA",
        kind: Kind::Path,
        default: "none (clients are not asked for a certificate)",
        reload: Reload::Applies,
        summary: "a PEM file of CA certificates: every client must present a certificate one of them signed (mutual TLS); the handler reads it from `Connection::tls()`",
        example: "tls_client_ca = \"/etc/app/clients-ca.pem\"",
    },
    Setting {
        key: Key::TlsAlpn,
        name: "tls_alpn",
        flag: "--tls-alpn",
        env: "DAEMON_TLS_ALPN",
        kind: Kind::Choice(TLS_ALPN),
        default: "http/1.1",
        reload: Reload::Applies,
        summary: "the protocols a TLS handshake may agree on (ALPN), in the server's order: `h2,http/1.1` lets `daemon::http` serve HTTP/2 (and gRPC) over TLS; `none` for a protocol of the program's own",
        example: "tls_alpn = \"h2,http/1.1\"",
    },
    Setting {
        key: Key::Detach,
        name: "detach",
        flag: "--detach",
        env: "DAEMON_DETACH",
        kind: Kind::Flag,
        default: "off",
        reload: Reload::NeedsRestart,
        summary: "run in the background (double fork, setsid, chdir /); the starting process exits 0 once the workers accept, or 1 with the reason",
        example: "detach",
    },
    Setting {
        key: Key::Foreground,
        name: "foreground",
        flag: "--foreground",
        env: "DAEMON_FOREGROUND",
        kind: Kind::Flag,
        default: "off",
        reload: Reload::NeedsRestart,
        summary: "stay in the foreground even when detach is set (for supervisors and debugging)",
        example: "foreground",
    },
    Setting {
        key: Key::GracefulTimeout,
        name: "graceful_timeout",
        flag: "--graceful-timeout",
        env: "DAEMON_GRACEFUL_TIMEOUT",
        kind: Kind::Duration { min: Duration::ZERO, max: Duration::from_secs(86_400), off: false },
        default: "30s",
        reload: Reload::Applies,
        summary: "how long a stopping worker may finish its work before it is killed",
        example: "graceful_timeout = \"30s\"",
    },
    Setting {
        key: Key::TermStop,
        name: "term_stop",
        flag: "--term-stop",
        env: "DAEMON_TERM_STOP",
        kind: Kind::Choice(TERM_STOP),
        default: "fast",
        reload: Reload::Applies,
        summary: "what TERM asks: fast (nginx's: workers end now) or graceful (gunicorn's, as QUIT: workers finish their work within graceful_timeout; what a container runtime's TERM needs); INT stays fast",
        example: "term_stop = \"graceful\"",
    },
    Setting {
        key: Key::StartTimeout,
        name: "start_timeout",
        flag: "--start-timeout",
        env: "DAEMON_START_TIMEOUT",
        kind: Kind::Duration { min: Duration::from_secs(1), max: Duration::from_secs(86_400), off: false },
        default: "60s",
        reload: Reload::Applies,
        summary: "how long the first workers may take to become ready; past it, or once as many workers as prefork have died before ready, the start fails (exit 1, with the workers' reason) and the daemon stops",
        example: "start_timeout = \"60s\"",
    },
    Setting {
        key: Key::HeartbeatInterval,
        name: "heartbeat_interval",
        flag: "--heartbeat-interval",
        env: "DAEMON_HEARTBEAT_INTERVAL",
        kind: Kind::Duration { min: Duration::from_millis(100), max: Duration::from_secs(3_600), off: false },
        default: "5s",
        reload: Reload::Applies,
        summary: "how often each worker stamps its scoreboard slot, from the thread that runs its handlers, idle or busy",
        example: "heartbeat_interval = \"5s\"",
    },
    Setting {
        key: Key::HeartbeatTimeout,
        name: "heartbeat_timeout",
        flag: "--heartbeat-timeout",
        env: "DAEMON_HEARTBEAT_TIMEOUT",
        kind: Kind::Duration { min: Duration::from_millis(200), max: Duration::from_secs(86_400), off: true },
        default: "30s",
        reload: Reload::Applies,
        summary: "a worker silent this long is hung: logged, asked to stop (QUIT), killed after graceful_timeout, replaced; off = no liveness checks",
        example: "heartbeat_timeout = \"30s\"",
    },
    Setting {
        key: Key::RequestTimeout,
        name: "request_timeout",
        flag: "--request-timeout",
        env: "DAEMON_REQUEST_TIMEOUT",
        kind: Kind::Duration { min: Duration::from_millis(100), max: Duration::from_secs(86_400), off: true },
        default: "off",
        reload: Reload::Applies,
        summary: "the longest a request may take: a classic worker past it is killed and replaced (its connection is the request); an async connection past it is closed and the worker goes on",
        example: "request_timeout = \"60s\"",
    },
    Setting {
        key: Key::LongRequestTimeout,
        name: "long_request_timeout",
        flag: "--long-request-timeout",
        env: "DAEMON_LONG_REQUEST_TIMEOUT",
        kind: Kind::Duration { min: Duration::from_millis(100), max: Duration::from_secs(86_400), off: true },
        default: "off",
        reload: Reload::Applies,
        summary: "what judges a request its handler marked long (`conn.long()`, `daemon::long()`; state `l`), instead of request_timeout and heartbeat_timeout; off = no limit",
        example: "long_request_timeout = \"10m\"",
    },
    Setting {
        key: Key::IdleTimeout,
        name: "idle_timeout",
        flag: "--idle-timeout",
        env: "DAEMON_IDLE_TIMEOUT",
        kind: Kind::Duration { min: Duration::from_millis(100), max: Duration::from_secs(86_400), off: true },
        default: "60s",
        reload: Reload::Applies,
        summary: "a connection whose handler waits this long for the client to send something is closed (a classic handler's reads time out)",
        example: "idle_timeout = \"60s\"",
    },
    Setting {
        key: Key::KeepaliveTimeout,
        name: "keepalive_timeout",
        flag: "--keepalive-timeout",
        env: "DAEMON_KEEPALIVE_TIMEOUT",
        kind: Kind::Duration { min: Duration::from_millis(100), max: Duration::from_secs(86_400), off: true },
        default: "15s",
        reload: Reload::Applies,
        summary: "how long an async connection may wait for a request, its first or its next (`read_or_stop`, `daemon::http`), before it is closed; a full worker closes its longest-waiting one to admit a new client",
        example: "keepalive_timeout = \"15s\"",
    },
    Setting {
        key: Key::MaxRss,
        name: "max_rss",
        flag: "--max-rss",
        env: "DAEMON_MAX_RSS",
        kind: Kind::Size { min: 1 << 20, max: 1 << 50, off: true },
        default: "off",
        reload: Reload::Applies,
        summary: "a worker whose resident memory grows past this is retired gracefully and replaced (`512M`, `2G`)",
        example: "max_rss = \"512M\"",
    },
    Setting {
        key: Key::MaxCpu,
        name: "max_cpu",
        flag: "--max-cpu",
        env: "DAEMON_MAX_CPU",
        kind: Kind::Duration { min: Duration::from_secs(1), max: Duration::from_secs(30 * 86_400), off: true },
        default: "off",
        reload: Reload::Applies,
        summary: "a worker that has used this much CPU time is retired gracefully and replaced",
        example: "max_cpu = \"1h\"",
    },
    Setting {
        key: Key::RestartIntensity,
        name: "restart_intensity",
        flag: "--restart-intensity",
        env: "DAEMON_RESTART_INTENSITY",
        kind: Kind::Count { min: 1, max: 1_000_000 },
        default: "5",
        reload: Reload::Applies,
        summary: "more crashes than this within restart_period and the pool is in a crash loop: said in the log, status and systemd, and forks come one each 10s until a worker lives past min_worker_lifetime",
        example: "restart_intensity = 5",
    },
    Setting {
        key: Key::RestartPeriod,
        name: "restart_period",
        flag: "--restart-period",
        env: "DAEMON_RESTART_PERIOD",
        kind: Kind::Duration { min: Duration::from_secs(1), max: Duration::from_secs(86_400), off: false },
        default: "10s",
        reload: Reload::Applies,
        summary: "the window restart_intensity counts crashes in",
        example: "restart_period = \"10s\"",
    },
    Setting {
        key: Key::MinWorkerLifetime,
        name: "min_worker_lifetime",
        flag: "--min-worker-lifetime",
        env: "DAEMON_MIN_WORKER_LIFETIME",
        kind: Kind::Duration { min: Duration::ZERO, max: Duration::from_secs(3_600), off: false },
        default: "1s",
        reload: Reload::Applies,
        summary: "a worker that fails (exits non-zero, aborts, segfaults) sooner than this after its start counts as a crash, even if it had become ready",
        example: "min_worker_lifetime = \"1s\"",
    },
    Setting {
        key: Key::Postfork,
        name: "postfork",
        flag: "--postfork",
        env: "DAEMON_POSTFORK",
        kind: Kind::Flag,
        default: "off (pre-forking)",
        reload: Reload::NeedsRestart,
        summary: "the manager accepts each connection itself and forks a child that serves it and exits (POE's post-forking server); at max_children it stops accepting until one ends",
        example: "postfork",
    },
    Setting {
        key: Key::RespawnDelay,
        name: "respawn_delay",
        flag: "--respawn-delay",
        env: "DAEMON_RESPAWN_DELAY",
        kind: Kind::Duration { min: Duration::ZERO, max: Duration::from_secs(3_600), off: false },
        default: "5s",
        reload: Reload::Applies,
        summary: "how long a #[daemon::supervised] worker that has exited waits before it is started again (App::Base's delay_before_respawn)",
        example: "respawn_delay = \"5s\"",
    },
    Setting {
        key: Key::DrainTimeout,
        name: "drain_timeout",
        flag: "--drain-timeout",
        env: "DAEMON_DRAIN_TIMEOUT",
        kind: Kind::Duration { min: Duration::ZERO, max: Duration::from_secs(3_600), off: false },
        default: "1s",
        reload: Reload::Applies,
        summary: "how long a stopping worker's idle keep-alive connection waits for its next request, which is then served (with `Connection: close`), before it is closed: a client that sent its request as the stop came loses nothing",
        example: "drain_timeout = \"1s\"",
    },
    Setting {
        key: Key::UpgradeTimeout,
        name: "upgrade_timeout",
        flag: "--upgrade-timeout",
        env: "DAEMON_UPGRADE_TIMEOUT",
        kind: Kind::Duration { min: Duration::from_secs(1), max: Duration::from_secs(86_400), off: false },
        default: "60s",
        reload: Reload::Applies,
        summary: "how long a hot upgrade (USR2, `upgrade`) waits for the new manager's workers to be ready before it kills the new manager and keeps serving (App::Base's 60 s)",
        example: "upgrade_timeout = \"60s\"",
    },
    Setting {
        key: Key::LogFormat,
        name: "log_format",
        flag: "--log-format",
        env: "DAEMON_LOG_FORMAT",
        kind: Kind::Choice(LOG_FORMATS),
        default: "text",
        reload: Reload::NeedsRestart,
        summary: "text: a line for people; json: one JSON object a line (time, level, role, pid, slot, message, fields) for log shippers",
        example: "log_format = \"json\"",
    },
    Setting {
        key: Key::MetricsListen,
        name: "metrics_listen",
        flag: "--metrics-listen",
        env: "DAEMON_METRICS_LISTEN",
        kind: Kind::Endpoint,
        default: "off",
        reload: Reload::NeedsRestart,
        summary: "where the manager answers `GET /metrics` in Prometheus's text format, from its own loop: workers by pool and state, requests, exits by cause, restarts, crash loops, upgrades",
        example: "metrics_listen = \"127.0.0.1:9100\"",
    },
    Setting {
        key: Key::MetricsAccess,
        name: "metrics_access",
        flag: "--metrics-access",
        env: "DAEMON_METRICS_ACCESS",
        kind: Kind::Choice(METRICS_ACCESS),
        default: "owner",
        reload: Reload::Applies,
        summary: "owner: /metrics answers local clients of root and of the daemon's own user only (their sockets' owners, from the kernel); any: every client that reaches the address",
        example: "metrics_access = \"any\"",
    },
    Setting {
        key: Key::PidFile,
        name: "pid_file",
        flag: "--pid-file",
        env: "DAEMON_PID_FILE",
        kind: Kind::Path,
        default: "none",
        reload: Reload::NeedsRestart,
        summary: "the manager's pid, written atomically and locked while it runs; stop, reload and status find the daemon by it",
        example: "pid_file = \"/run/app.pid\"",
    },
    Setting {
        key: Key::LogFile,
        name: "log_file",
        flag: "--log-file",
        env: "DAEMON_LOG_FILE",
        kind: Kind::Path,
        default: "none (standard error)",
        reload: Reload::NeedsRestart,
        summary: "where the manager's and workers' logs and their standard output and error go; USR1 and HUP reopen it",
        example: "log_file = \"/var/log/app.log\"",
    },
    Setting {
        key: Key::User,
        name: "user",
        flag: "--user",
        env: "DAEMON_USER",
        kind: Kind::Name,
        default: "none (keep the starting user)",
        reload: Reload::NeedsRestart,
        summary: "after binding and opening files as root, the manager becomes this user before forking workers",
        example: "user = \"www-data\"",
    },
    Setting {
        key: Key::Group,
        name: "group",
        flag: "--group",
        env: "DAEMON_GROUP",
        kind: Kind::Name,
        default: "the user's primary group",
        reload: Reload::NeedsRestart,
        summary: "the group to run as (with `user`, or alone)",
        example: "group = \"www-data\"",
    },
];

/// The rule book's row for a key.
pub fn setting(key: Key) -> &'static Setting {
    // Every key has exactly one row; `every_key_has_one_row` checks it.
    SETTINGS
        .iter()
        .find(|s| s.key == key)
        .unwrap_or(&SETTINGS[0])
}

impl Key {
    /// The attribute (and file) key.
    pub fn name(self) -> &'static str {
        setting(self).name
    }

    /// Looks a key up by its attribute or file name.
    pub fn from_name(name: &str) -> Option<Key> {
        SETTINGS.iter().find(|s| s.name == name).map(|s| s.key)
    }

    /// Looks a key up by a name a config file may use: its name or its alias.
    pub fn from_file_name(name: &str) -> Option<Key> {
        SETTINGS.iter().find(|s| s.name == name || s.alias() == Some(name)).map(|s| s.key)
    }

    /// Looks a key up by its environment variable, or its alias's.
    pub fn from_env(var: &str) -> Option<Key> {
        SETTINGS.iter().find(|s| s.env == var || s.alias().is_some_and(|a| alias_env(a) == var)).map(|s| s.key)
    }

    /// The name of the key's variant in Rust (`MaxSpare`), for generated code.
    pub fn variant(self) -> String {
        format!("{self:?}")
    }

    /// Looks a key up by its command-line flag (with dashes).
    pub fn from_flag(flag: &str) -> Option<Key> {
        SETTINGS.iter().find(|s| s.flag == flag || s.alias_flag().as_deref() == Some(flag)).map(|s| s.key)
    }
}

/// `DAEMON_WORKERS` for `workers`.
fn alias_env(alias: &str) -> String {
    format!("DAEMON_{}", alias.to_ascii_uppercase())
}

impl Setting<Key> {
    /// A second name at run time, for the one key whose flag says it in another word: `prefork`
    /// is set by `--workers`, so `workers` is accepted too (in a config file, as
    /// `DAEMON_WORKERS`, and `--prefork` as a flag). The attribute takes `prefork` only, and
    /// says so at the mistake.
    pub fn alias(&self) -> Option<&'static str> {
        match self.key {
            Key::Prefork => Some("workers"),
            _ => None,
        }
    }

    /// The alias's environment variable.
    pub fn alias_env(&self) -> Option<String> {
        self.alias().map(alias_env)
    }

    /// The flag of the key's other name (`--prefork` for `--workers`).
    pub fn alias_flag(&self) -> Option<String> {
        let alias = self.alias()?;
        let word = if self.flag.trim_start_matches('-') == self.name.replace('_', "-") { alias } else { self.name };
        Some(format!("--{}", word.replace('_', "-")))
    }
}

impl<K> Setting<K> {
    /// Reads a value of this setting from text (a flag's argument, an environment variable).
    pub fn parse_text(&self, text: &str) -> Result<Value, String> {
        let value = match self.kind {
            Kind::CountOrAuto { .. } if text.trim() == AUTO => Value::Text(AUTO.to_string()),
            Kind::Count { .. } | Kind::CountOrAuto { .. } => {
                let t = text.trim();
                if t.starts_with('-') && t[1..].chars().all(|c| c.is_ascii_digit()) && t.len() > 1 {
                    return Err(format!("{t} is negative: {}", self.rule()));
                }
                let n = t.parse::<u64>().map_err(|_| {
                    if t.chars().all(|c| c.is_ascii_digit()) && !t.is_empty() {
                        format!("{t} is absurdly large: {}", self.rule())
                    } else {
                        format!("`{t}` is not a whole number: {}", self.rule())
                    }
                })?;
                Value::Count(n)
            }
            // A flag named with no value is on.
            Kind::Flag if text.trim().is_empty() => Value::Flag(true),
            Kind::Flag => Value::Flag(parse_switch(text)?),
            Kind::Addresses => Value::Addresses(
                text.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
            ),
            Kind::Duration { off, .. } => match text.trim() {
                "off" | "none" if off => Value::Duration(Duration::ZERO),
                "off" | "none" => return Err(self.cannot_be_off()),
                t => Value::Duration(crate::parse_duration(t)?),
            },
            Kind::Size { off, .. } => match text.trim() {
                "off" | "none" if off => Value::Size(0),
                "off" | "none" => return Err(self.cannot_be_off()),
                t => Value::Size(crate::parse_size(t)?),
            },
            Kind::Path | Kind::Name | Kind::Choice(_) | Kind::Mode => Value::Text(text.trim().to_string()),
            Kind::Endpoint => match text.trim() {
                "off" | "none" => Value::Text(String::new()),
                t => Value::Text(t.to_string()),
            },
        };
        self.check(&value)?;
        Ok(value)
    }

    /// Checks a value of this setting on its own: type and bounds.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        match (self.kind, value) {
            (Kind::CountOrAuto { .. }, Value::Text(t)) if t == AUTO => Ok(()),
            (Kind::Count { min, max } | Kind::CountOrAuto { min, max }, Value::Count(n)) => {
                if *n < min || *n > max {
                    let why = if *n < min && min == 1 {
                        format!("{n} is too few")
                    } else if *n > max {
                        format!("{n} is absurdly large")
                    } else {
                        format!("{n} is out of range")
                    };
                    return Err(format!("{why}: {}", self.rule()));
                }
                Ok(())
            }
            (Kind::Flag, Value::Flag(_)) => Ok(()),
            (Kind::Addresses, Value::Addresses(list)) => {
                if list.is_empty() {
                    return Err(
                        "no address given: write at least one, such as `127.0.0.1:8080`"
                            .to_string(),
                    );
                }
                for addr in list {
                    check_address(addr, true)?;
                }
                Ok(())
            }
            (Kind::Duration { off: true, .. }, Value::Duration(d)) if d.is_zero() => Ok(()),
            (Kind::Size { off: true, .. }, Value::Size(0)) => Ok(()),
            (Kind::Size { min, max, .. }, Value::Size(n)) => {
                if *n < min || *n > max {
                    return Err(format!(
                        "{} is out of range: {}",
                        crate::format_size(*n),
                        self.rule()
                    ));
                }
                Ok(())
            }
            (Kind::Duration { min, max, .. }, Value::Duration(d)) => {
                if *d < min || *d > max {
                    return Err(format!(
                        "{} is out of range: {}",
                        crate::format_duration(*d),
                        self.rule()
                    ));
                }
                Ok(())
            }
            (Kind::Path, Value::Text(p)) => {
                if p.is_empty() {
                    return Err(
                        "an empty path: write the file's path, such as `/run/hello.pid`".into(),
                    );
                }
                if p.contains('\0') {
                    return Err("a path cannot contain a NUL byte".into());
                }
                Ok(())
            }
            (Kind::Name, Value::Text(n)) => {
                let ok = !n.is_empty()
                    && n.len() <= 32
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'));
                if ok {
                    Ok(())
                } else {
                    Err(format!("`{n}` is not a user or group name: use letters, digits, `_`, `-` or `.`, such as `www-data`"))
                }
            }
            (Kind::Mode, Value::Text(m)) => parse_mode(m).map(|_| ()),
            (Kind::Endpoint, Value::Text(a)) if a.is_empty() => Ok(()),
            (Kind::Endpoint, Value::Text(a)) => check_address(a, false),
            (Kind::Choice(words), Value::Text(w)) => {
                if words.contains(&w.as_str()) {
                    Ok(())
                } else {
                    Err(format!("`{w}` is not a choice here: {}", self.rule()))
                }
            }
            (_, other) => Err(format!("{other} is not {}", self.kind_name())),
        }
    }

    /// The message for `off` given to a setting that must have a value.
    pub fn cannot_be_off(&self) -> String {
        format!("{} cannot be off: {}", self.name, self.rule())
    }

    /// A value as `--print-config`, `--help` and the reference show it: a limit that is off says
    /// so.
    pub fn show(&self, value: &Value) -> String {
        match (self.kind, value) {
            (Kind::Duration { off: true, .. }, Value::Duration(d)) if d.is_zero() => {
                "off".to_string()
            }
            (Kind::Size { off: true, .. }, Value::Size(0)) => "off".to_string(),
            (Kind::Endpoint, Value::Text(a)) if a.is_empty() => "off".to_string(),
            _ => value.to_string(),
        }
    }

    /// The rule a value must follow, as a sentence fragment that names the fix.
    pub fn rule(&self) -> String {
        match self.kind {
            Kind::Count { min, max } => format!("{} must be between {min} and {max}", self.name),
            Kind::CountOrAuto { min, max } => format!("{} must be between {min} and {max}, or auto", self.name),
            Kind::Flag => format!("{} is a flag: on or off", self.name),
            Kind::Addresses => format!("{} takes addresses such as `127.0.0.1:8080`", self.name),
            Kind::Duration { min, max, off } => format!(
                "{} must be between {} and {}{}",
                self.name,
                crate::format_duration(min),
                crate::format_duration(max),
                if off { ", or off" } else { "" }
            ),
            Kind::Size { min, max, off } => format!(
                "{} must be between {} and {}{}",
                self.name,
                crate::format_size(min),
                crate::format_size(max),
                if off { ", or off" } else { "" }
            ),
            Kind::Path => format!("{} takes a file's path", self.name),
            Kind::Name => format!("{} takes a user or group name", self.name),
            Kind::Choice(words) => format!("{} is one of {}", self.name, words.join(", ")),
            Kind::Endpoint => format!("{} takes an address such as `127.0.0.1:9100`, or off", self.name),
            Kind::Mode => format!("{} takes permission bits in octal, such as `0660`", self.name),
        }
    }

    /// The kind of value, for "expected ..." messages.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Count { .. } => "a whole number",
            Kind::CountOrAuto { .. } => "a whole number or auto",
            Kind::Flag => "a flag",
            Kind::Addresses => "an address or a list of addresses",
            Kind::Duration { .. } => "a duration such as \"30s\"",
            Kind::Size { .. } => "a size such as \"512M\"",
            Kind::Path => "a path such as \"/run/hello.pid\"",
            Kind::Name => "a name such as \"www-data\"",
            Kind::Choice(_) => "one of its words",
            Kind::Endpoint => "an address such as \"127.0.0.1:9100\", or off",
            Kind::Mode => "permission bits in octal such as \"0660\"",
        }
    }
}

/// The word for "as many as there are CPUs" (`prefork = auto`).
pub const AUTO: &str = "auto";

const LOG_FORMATS: &[&str] = &["text", "json"];
const TLS_ALPN: &[&str] = &["http/1.1", "h2,http/1.1", "h2", "none"];
const METRICS_ACCESS: &[&str] = &["owner", "any"];
const TERM_STOP: &[&str] = &["fast", "graceful"];

/// An address to listen on: `IP:PORT` (IPv6 in brackets), or `HOST:PORT` with a host name the
/// daemon resolves as it starts, with a port the OS can bind (0 asks it for a free one); or a
/// Unix socket, `unix:/absolute/path` or `unix:@abstract-name`.
/// `metrics_listen` (`host_names` false) takes one address, so an IP only.
fn check_address(addr: &str, host_names: bool) -> Result<(), String> {
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    if let Some(rest) = addr.strip_prefix(UNIX_PREFIX) {
        if !host_names {
            return Err(format!("`{addr}` is not an address for this setting: it takes IP:PORT, such as `127.0.0.1:9100`"));
        }
        return check_unix(rest).map_err(|why| format!("`{addr}` is not a Unix socket to listen on: {why}"));
    }
    let fix = if host_names {
        "write IP:PORT or HOST:PORT, such as `127.0.0.1:8080` or `localhost:8080`, or a Unix socket, such as `unix:/run/app/app.sock`"
    } else {
        "write IP:PORT, such as `127.0.0.1:9100`"
    };
    let hint = match addr.rsplit_once(':') {
        None if addr.starts_with('/') && host_names => "a Unix socket's path starts with `unix:`",
        None => "it has no port",
        Some((_, port)) if port.parse::<u16>().is_err() => "its port is not a number between 0 and 65535",
        Some((host, _)) if host_names && is_host_name(host) => return Ok(()),
        Some((host, _)) if host.contains(':') && !host.starts_with('[') => "an IPv6 address goes in brackets: `[::1]:8080`",
        Some(_) if host_names => "its host is neither an IP address nor a host name",
        Some(_) => "its host is not an IP address",
    };
    Err(format!("`{addr}` is not an address to listen on: {hint}; {fix}"))
}

/// How `listen` names a Unix socket.
pub const UNIX_PREFIX: &str = "unix:";

/// The longest name a Unix socket address holds (`sun_path` less its terminating NUL).
pub const UNIX_PATH_MAX: usize = 107;

/// What follows `unix:`: an absolute path, or `@` and an abstract name, short enough for
/// `sun_path`.
fn check_unix(rest: &str) -> Result<(), String> {
    if rest.contains('\0') {
        return Err("it holds a NUL byte".to_string());
    }
    if let Some(name) = rest.strip_prefix('@') {
        if name.is_empty() {
            return Err("an abstract socket needs a name after `@`, such as `unix:@app`".to_string());
        }
        if name.len() > UNIX_PATH_MAX - 1 {
            return Err(format!("an abstract name holds at most {} bytes", UNIX_PATH_MAX - 1));
        }
        return Ok(());
    }
    if !rest.starts_with('/') {
        return Err("its path is not absolute (a daemon does not keep the directory it started in): write it from /, such as `unix:/run/app/app.sock`".to_string());
    }
    if rest.ends_with('/') {
        return Err("its path names a directory: add the socket's file name".to_string());
    }
    if rest.len() > UNIX_PATH_MAX {
        return Err(format!("its path is {} bytes, and a Unix socket's holds at most {UNIX_PATH_MAX}: choose a shorter one", rest.len()));
    }
    Ok(())
}

/// Permission bits written in octal (`0660`, `660`, `0o660`), at most `0777`.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.trim().trim_start_matches("0o");
    let bad = || format!("`{text}` is not a file mode: write permission bits in octal, such as `0660`");
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad());
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|_| bad())?;
    if mode > 0o777 {
        return Err(format!("`{text}` sets more than permission bits (setuid, setgid, sticky): write at most `0777`"));
    }
    Ok(mode)
}

/// A host name as DNS writes it: labels of letters, digits and `-`, joined by dots.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// An on-or-off value as the environment or a file writes it: `true`, `yes`, `on`, `1` or their
/// opposites, in any case. Shared with the program's own flags.
pub fn parse_switch(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("`{other}` is not on or off: write true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_host_names_and_metrics_listen_an_ip() {
        for ok in ["127.0.0.1:8080", "[::1]:0", "localhost:8080", "api.example.com:443", "db-1:5"] {
            assert_eq!(check_address(ok, true), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("localhost", "no port"),
            ("localhost:99999", "port is not a number"),
            ("::1:8080", "brackets"),
            ("exa_mple.com:80", "neither an IP address nor a host name"),
            ("-a.com:80", "neither"),
            ("1.2.3:80", "neither"),
        ] {
            let err = check_address(bad, true).unwrap_err();
            assert!(err.contains(why) && err.contains("HOST:PORT"), "{bad}: {err}");
        }
        let err = check_address("localhost:9100", false).unwrap_err();
        assert!(err.contains("not an IP address"), "{err}");
    }

    #[test]
    fn listen_takes_unix_sockets_by_path_or_abstract_name() {
        for ok in ["unix:/run/app/app.sock", "unix:@app", "unix:/a"] {
            assert_eq!(check_address(ok, true), Ok(()), "{ok}");
        }
        let long = format!("unix:/{}", "a".repeat(UNIX_PATH_MAX));
        for (bad, why) in [
            ("unix:run/app.sock", "not absolute"),
            ("unix:@", "needs a name"),
            ("unix:/run/", "names a directory"),
            (long.as_str(), "at most 107"),
            ("/run/app.sock", "starts with `unix:`"),
        ] {
            let err = check_address(bad, true).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let err = check_address("unix:/run/m.sock", false).unwrap_err();
        assert!(err.contains("IP:PORT"), "{err}");
    }

    #[test]
    fn socket_modes_are_octal_permission_bits() {
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert_eq!(parse_mode("666"), Ok(0o666));
        assert_eq!(parse_mode("0o600"), Ok(0o600));
        for bad in ["", "rw", "0689", "04777", "12345"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_key_has_one_row() {
        let keys = [
            Key::Prefork,
            Key::MinSpare,
            Key::MaxSpare,
            Key::MaxChildren,
            Key::Requests,
            Key::Clients,
            Key::Listen,
            Key::Backlog,
            Key::TcpNodelay,
            Key::Rcvbuf,
            Key::Sndbuf,
            Key::TcpDeferAccept,
            Key::SocketMode,
            Key::SocketUser,
            Key::SocketGroup,
            Key::TlsCert,
            Key::TlsKey,
            Key::TlsClientCa,
            Key::TlsAlpn,
            Key::Detach,
            Key::Foreground,
            Key::GracefulTimeout,
            Key::TermStop,
            Key::StartTimeout,
            Key::HeartbeatInterval,
            Key::HeartbeatTimeout,
            Key::RequestTimeout,
            Key::LongRequestTimeout,
            Key::IdleTimeout,
            Key::KeepaliveTimeout,
            Key::MaxRss,
            Key::MaxCpu,
            Key::RestartIntensity,
            Key::RestartPeriod,
            Key::MinWorkerLifetime,
            Key::Postfork,
            Key::RespawnDelay,
            Key::DrainTimeout,
            Key::UpgradeTimeout,
            Key::LogFormat,
            Key::MetricsListen,
            Key::MetricsAccess,
            Key::PidFile,
            Key::LogFile,
            Key::User,
            Key::Group,
        ];
        assert_eq!(keys.len(), SETTINGS.len());
        for key in keys {
            assert_eq!(
                SETTINGS.iter().filter(|s| s.key == key).count(),
                1,
                "{key:?}"
            );
            assert_eq!(setting(key).key, key);
        }
    }

    #[test]
    fn names_flags_and_variables_follow_one_scheme() {
        for s in SETTINGS {
            let dashed = s.name.replace('_', "-");
            if s.key != Key::Prefork {
                assert_eq!(s.flag, format!("--{dashed}"));
            }
            assert_eq!(s.env, format!("DAEMON_{}", s.name.to_ascii_uppercase()));
        }
    }

    #[test]
    fn text_values_follow_the_rules() {
        let workers = setting(Key::Prefork);
        assert_eq!(workers.parse_text("8"), Ok(Value::Count(8)));
        assert!(workers
            .parse_text("0")
            .unwrap_err()
            .contains("between 1 and 4096"));
        assert!(workers.parse_text("-3").unwrap_err().contains("negative"));
        assert!(workers
            .parse_text("lots")
            .unwrap_err()
            .contains("not a whole number"));
        assert!(workers
            .parse_text("99999999999999999999999")
            .unwrap_err()
            .contains("absurdly"));
        let listen = setting(Key::Listen);
        assert!(listen
            .parse_text("localhost")
            .unwrap_err()
            .contains("no port"));
        assert!(listen
            .parse_text("127.0.0.1:99999")
            .unwrap_err()
            .contains("port"));
        assert_eq!(
            listen.parse_text("127.0.0.1:0,[::1]:80"),
            Ok(Value::Addresses(vec![
                "127.0.0.1:0".into(),
                "[::1]:80".into()
            ]))
        );
    }
}
