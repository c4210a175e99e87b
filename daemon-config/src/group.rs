//! The rule book of task groups (`#[daemon::task]`, and a config file's `[tasks.NAME]` tables):
//! each group's own keys, checked by the same rules wherever they are written, then resolved into
//! one group's configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::settings::{Kind, Reload, Setting, Value, MAX_WORKERS};
use crate::Origin;

/// A task group's keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupKey {
    Workers,
    MaxWorkers,
    Model,
    ScalingInterval,
    /// The task function the group runs (a group in a config file may run another group's).
    Run,
}

/// How a group's workers run their task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskModel {
    /// Each worker runs the task function for as long as it lives; the group keeps `workers` of
    /// them (a worker whose function returns is started again).
    LongLived,
    /// Each worker runs the task function once, for one job, and exits; the group keeps between
    /// `workers` and `max_workers` of them, by how many report themselves busy.
    OneShot,
}

impl TaskModel {
    pub fn name(self) -> &'static str {
        match self {
            TaskModel::LongLived => "longlived",
            TaskModel::OneShot => "oneshot",
        }
    }
}

const MODELS: &[&str] = &["longlived", "oneshot"];

/// The rule book of a task group's keys.
pub static GROUP_SETTINGS: &[Setting<GroupKey>] = &[
    Setting {
        key: GroupKey::Workers,
        name: "workers",
        flag: "",
        env: "",
        kind: Kind::Count { min: 0, max: MAX_WORKERS },
        default: "1",
        reload: Reload::Applies,
        summary: "workers the group keeps (oneshot: at least); 0 stops the group",
        example: "workers = 2",
    },
    Setting {
        key: GroupKey::MaxWorkers,
        name: "max_workers",
        flag: "",
        env: "",
        kind: Kind::Count { min: 1, max: MAX_WORKERS },
        default: "workers (oneshot: workers + 4)",
        reload: Reload::Applies,
        summary: "the most workers a oneshot group grows to while all of its workers are busy",
        example: "max_workers = 8",
    },
    Setting {
        key: GroupKey::Model,
        name: "model",
        flag: "",
        env: "",
        kind: Kind::Choice(MODELS),
        default: "longlived",
        reload: Reload::Applies,
        summary: "longlived: each worker runs the task for its whole life; oneshot: each worker runs it once, for one job, then exits",
        example: "model = \"oneshot\"",
    },
    Setting {
        key: GroupKey::ScalingInterval,
        name: "scaling_interval",
        flag: "",
        env: "",
        kind: Kind::Duration { min: Duration::from_millis(100), max: Duration::from_secs(3_600), off: false },
        default: "1s",
        reload: Reload::Applies,
        summary: "how often a oneshot group counts its busy workers to grow or shrink by one (Symphony's scaling_interval)",
        example: "scaling_interval = \"1s\"",
    },
    Setting {
        key: GroupKey::Run,
        name: "run",
        flag: "",
        env: "",
        kind: Kind::Name,
        default: "the group's own name",
        reload: Reload::Applies,
        summary: "the #[daemon::task] function the group's workers run (a config file's group may run any of them)",
        example: "run = \"convert\"",
    },
];

/// The rule book's row for a group key.
pub fn group_setting(key: GroupKey) -> &'static Setting<GroupKey> {
    GROUP_SETTINGS
        .iter()
        .find(|s| s.key == key)
        .unwrap_or(&GROUP_SETTINGS[0])
}

impl GroupKey {
    pub fn from_name(name: &str) -> Option<GroupKey> {
        GROUP_SETTINGS
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.key)
    }

    pub fn variant(self) -> String {
        format!("{self:?}")
    }
}

/// A group's values as given, each with where it came from; a later source replaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupGiven {
    entries: BTreeMap<GroupKey, (Value, Origin)>,
}

impl GroupGiven {
    pub fn set(&mut self, key: GroupKey, value: Value, origin: Origin) {
        self.entries.insert(key, (value, origin));
    }

    pub fn get(&self, key: GroupKey) -> Option<&(Value, Origin)> {
        self.entries.get(&key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (GroupKey, &Value, &Origin)> {
        self.entries.iter().map(|(k, (v, o))| (*k, v, o))
    }
}

/// One task group, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    pub name: String,
    /// The task function its workers run.
    pub run: String,
    pub workers: u32,
    pub max_workers: u32,
    pub model: TaskModel,
    pub scaling_interval: Duration,
}

/// How a person wrote `key = value` for group `group` in this place.
pub fn group_spelling(group: &str, key: GroupKey, value: &Value, origin: &Origin) -> String {
    let name = group_setting(key).name;
    let shown = match value {
        Value::Text(t) => format!("{t:?}"),
        Value::Duration(_) => format!("\"{value}\""),
        other => other.to_string(),
    };
    match origin {
        Origin::File(path) => format!("{path}: [tasks.{group}] {name} = {shown}"),
        Origin::Attribute => format!("#[daemon::task({name} = {shown})] on {group}"),
        _ => format!("task group {group}: {name} = {shown}"),
    }
}

/// Checks a group's values and fills in its defaults. Returns every problem, each as a sentence
/// naming the place, the value and the rule.
/// The names of the pools that are not task groups: a group may not take one (`status` and the
/// metrics tell pools apart by name).
pub const RESERVED_POOL_NAMES: [&str; 2] = ["main", "supervised"];

/// The longest task group name.
pub const MAX_GROUP_NAME: usize = 64;

/// Whether `name` may name a task group: 1 to 64 ASCII letters, digits, `_` and `-` (it appears
/// in `status` lines, log fields and metric labels), and not the name of another pool.
pub fn check_group_name(name: &str) -> Result<(), String> {
    let shown = name.escape_debug();
    if RESERVED_POOL_NAMES.contains(&name) {
        return Err(format!(
            "a task group may not be named `{name}`: that is the name of the {} pool; rename the group",
            if name == "main" { "serving" } else { "supervised worker's" }
        ));
    }
    if name.is_empty() || name.len() > MAX_GROUP_NAME {
        return Err(format!("task group name \"{shown}\": a name has 1 to {MAX_GROUP_NAME} characters"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        return Err(format!(
            "task group name \"{shown}\": {:?} is not allowed; use ASCII letters, digits, `_` and `-`",
            c
        ));
    }
    Ok(())
}

pub fn resolve_group(name: &str, given: &GroupGiven) -> Result<GroupConfig, Vec<String>> {
    let mut problems = Vec::new();
    let mut ok: BTreeMap<GroupKey, (Value, Origin)> = BTreeMap::new();
    for (key, value, origin) in given.iter() {
        match group_setting(key).check(value) {
            Ok(()) => {
                ok.insert(key, (value.clone(), origin.clone()));
            }
            Err(rule) => problems.push(format!(
                "{}: {rule}",
                group_spelling(name, key, value, origin)
            )),
        }
    }
    let count = |key: GroupKey| match ok.get(&key) {
        Some((Value::Count(n), _)) => Some(*n),
        _ => None,
    };
    let model = match ok.get(&GroupKey::Model) {
        Some((Value::Text(t), _)) if t == "oneshot" => TaskModel::OneShot,
        _ => TaskModel::LongLived,
    };
    let workers = count(GroupKey::Workers).unwrap_or(1);
    let max_workers = count(GroupKey::MaxWorkers).unwrap_or(match model {
        TaskModel::LongLived => workers.max(1),
        TaskModel::OneShot => (workers + 4).min(MAX_WORKERS),
    });
    if max_workers < workers {
        if let (Some((mv, mo)), Some((wv, _))) =
            (ok.get(&GroupKey::MaxWorkers), ok.get(&GroupKey::Workers))
        {
            problems.push(format!(
                "{} with workers = {wv}: max_workers ({max_workers}) is below workers ({workers}), so the \
                 group could never reach its size; make max_workers at least workers",
                group_spelling(name, GroupKey::MaxWorkers, mv, mo)
            ));
        } else {
            problems.push(format!(
                "task group {name}: max_workers ({max_workers}) is below workers ({workers}); make \
                 max_workers at least workers"
            ));
        }
    }
    if model == TaskModel::LongLived {
        if let (Some((mv, mo)), true) =
            (ok.get(&GroupKey::MaxWorkers), max_workers != workers.max(1))
        {
            problems.push(format!(
                "{}: max_workers applies to a oneshot group, which grows while its workers are \
                 busy; a longlived group keeps workers: remove max_workers, or add model = \"oneshot\"",
                group_spelling(name, GroupKey::MaxWorkers, mv, mo)
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let run = match ok.get(&GroupKey::Run) {
        Some((Value::Text(t), _)) => t.clone(),
        _ => name.to_string(),
    };
    let scaling_interval = match ok.get(&GroupKey::ScalingInterval) {
        Some((Value::Duration(d), _)) => *d,
        _ => Duration::from_secs(1),
    };
    Ok(GroupConfig {
        name: name.to_string(),
        run,
        workers: u32::try_from(workers).unwrap_or(u32::MAX),
        max_workers: u32::try_from(max_workers).unwrap_or(u32::MAX),
        model,
        scaling_interval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(pairs: &[(GroupKey, Value)]) -> GroupGiven {
        let mut g = GroupGiven::default();
        for (k, v) in pairs {
            g.set(*k, v.clone(), Origin::Attribute);
        }
        g
    }

    #[test]
    fn defaults_and_models() {
        let c = resolve_group("digest", &GroupGiven::default()).unwrap();
        assert_eq!(
            (c.workers, c.max_workers, c.model, c.run.as_str()),
            (1, 1, TaskModel::LongLived, "digest")
        );
        let c = resolve_group(
            "convert",
            &given(&[
                (GroupKey::Model, Value::Text("oneshot".into())),
                (GroupKey::Workers, Value::Count(2)),
            ]),
        )
        .unwrap();
        assert_eq!(
            (c.workers, c.max_workers, c.model),
            (2, 6, TaskModel::OneShot)
        );
    }

    #[test]
    fn relations_and_values_are_checked() {
        let e = resolve_group(
            "x",
            &given(&[
                (GroupKey::Model, Value::Text("oneshot".into())),
                (GroupKey::Workers, Value::Count(5)),
                (GroupKey::MaxWorkers, Value::Count(3)),
            ]),
        )
        .unwrap_err();
        assert!(
            e[0].contains("max_workers (3) is below workers (5)"),
            "{e:?}"
        );
        let e = resolve_group("x", &given(&[(GroupKey::MaxWorkers, Value::Count(3))])).unwrap_err();
        assert!(e[0].contains("applies to a oneshot group"), "{e:?}");
        let e = resolve_group(
            "x",
            &given(&[(GroupKey::Model, Value::Text("forever".into()))]),
        )
        .unwrap_err();
        assert!(e[0].contains("model is one of longlived, oneshot"), "{e:?}");
    }
}
