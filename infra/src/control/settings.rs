//! What one instance applies: of the messages addressed to its service or to `all`, the one with
//! the highest version per setting.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use super::message::{ControlMessage, ReadModelGenerations, Setting};

/// The settings an instance runs with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Not taking commands / not consuming.
    pub frozen: bool,
    /// Commands or events in flight at most (`None`: no limit).
    pub max_concurrency: Option<u32>,
    /// Database connections at most (`None`: the configured pool size).
    pub max_db_connections: Option<u32>,
    /// Commands answered 410.
    pub disabled_commands: BTreeSet<String>,
    /// The log filter set by the operator (`None`: the one the process started with).
    pub log_level: Option<String>,
    /// Read model → its storage generations (absent: generation 0 only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub read_models: BTreeMap<String, ReadModelGenerations>,
}

impl Settings {
    /// The storage generations of read model `projection`.
    pub fn read_model(&self, projection: &str) -> ReadModelGenerations {
        self.read_models.get(projection).copied().unwrap_or_default()
    }
}

/// How a message was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// It changed what this instance runs with (or confirmed it at a newer version).
    Applied,
    /// Addressed to another service.
    NotMine,
    /// At or below the version already applied for its key.
    Stale,
}

impl Applied {
    /// A metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::NotMine => "other_service",
            Self::Stale => "stale",
        }
    }
}

/// The messages an instance has taken, and the settings they add up to.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    service: String,
    /// Message key → the version applied (for staleness).
    versions: BTreeMap<String, i64>,
    /// Setting key → the winning message (highest version among `<service>` and `all`).
    winners: BTreeMap<String, ControlMessage>,
}

impl Desired {
    /// Nothing applied yet, for an instance of `service`.
    pub fn new(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            ..Self::default()
        }
    }

    /// Take a message.
    pub fn apply(&mut self, message: ControlMessage) -> Applied {
        if !message.addresses(&self.service) {
            return Applied::NotMine;
        }
        let key = message.key();
        if self.versions.get(&key).is_some_and(|v| *v >= message.version) {
            return Applied::Stale;
        }
        self.versions.insert(key, message.version);
        let setting = message.setting.key();
        if self
            .winners
            .get(&setting)
            .is_none_or(|w| w.version < message.version)
        {
            self.winners.insert(setting, message);
        }
        Applied::Applied
    }

    /// Message key → version applied.
    pub fn versions(&self) -> &BTreeMap<String, i64> {
        &self.versions
    }

    /// The settings the winning messages add up to.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::default();
        for message in self.winners.values() {
            match &message.setting {
                Setting::Frozen(frozen) => settings.frozen = *frozen,
                Setting::MaxConcurrency(n) => settings.max_concurrency = *n,
                Setting::MaxDbConnections(n) => settings.max_db_connections = *n,
                Setting::CommandDisabled { command, disabled } => {
                    if *disabled {
                        settings.disabled_commands.insert(command.clone());
                    }
                }
                Setting::LogLevel(filter) => settings.log_level = Some(filter.clone()),
                Setting::ReadModel {
                    projection,
                    generations,
                } => {
                    settings.read_models.insert(projection.clone(), *generations);
                }
            }
        }
        settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::message::ALL;

    fn at(service: &str, setting: Setting, version: i64) -> ControlMessage {
        ControlMessage {
            version,
            ..ControlMessage::now(service, setting, "ops")
        }
    }

    #[test]
    fn the_newest_message_per_setting_wins_between_the_service_and_all() {
        let mut desired = Desired::new("command-api");
        assert_eq!(desired.apply(at(ALL, Setting::Frozen(true), 1)), Applied::Applied);
        assert!(desired.settings().frozen);
        desired.apply(at("command-api", Setting::Frozen(false), 2));
        assert!(!desired.settings().frozen);
        desired.apply(at(ALL, Setting::Frozen(true), 3));
        assert!(desired.settings().frozen);
        assert_eq!(
            desired.apply(at("sagas", Setting::Frozen(false), 4)),
            Applied::NotMine
        );
        assert!(desired.settings().frozen);
    }

    #[test]
    fn a_stale_or_replayed_version_changes_nothing() {
        let mut desired = Desired::new("sagas");
        desired.apply(at("sagas", Setting::MaxConcurrency(Some(4)), 10));
        assert_eq!(
            desired.apply(at("sagas", Setting::MaxConcurrency(Some(1)), 9)),
            Applied::Stale
        );
        assert_eq!(
            desired.apply(at("sagas", Setting::MaxConcurrency(Some(1)), 10)),
            Applied::Stale
        );
        assert_eq!(desired.settings().max_concurrency, Some(4));
    }

    #[test]
    fn each_read_model_has_its_own_generation_and_pause() {
        let mut desired = Desired::new("projectors");
        let read_model = |projection: &str, active, paused: bool| Setting::ReadModel {
            projection: projection.into(),
            generations: ReadModelGenerations {
                active,
                paused_until: paused.then(chrono::Utc::now),
            },
        };
        assert_eq!(
            desired.settings().read_model("jobs"),
            ReadModelGenerations::default()
        );
        desired.apply(at(ALL, read_model("jobs", 1, true), 1));
        desired.apply(at(ALL, read_model("users", 3, false), 2));
        desired.apply(at(ALL, read_model("jobs", 2, false), 3));
        let settings = desired.settings();
        assert_eq!(settings.read_model("jobs").active, 2);
        assert_eq!(settings.read_model("jobs").paused_until, None);
        assert_eq!(settings.read_model("users").active, 3);
        assert_eq!(settings.read_model("payments").active, 0);
        let json = serde_json::to_value(at(ALL, read_model("jobs", 2, false), 4)).expect("encode");
        assert_eq!(json["value"]["projection"], "jobs");
        assert_eq!(json["value"]["active"], 2);
    }

    #[test]
    fn commands_are_disabled_one_by_one() {
        let mut desired = Desired::new("command-api");
        let disabled = |command: &str, disabled| Setting::CommandDisabled {
            command: command.into(),
            disabled,
        };
        desired.apply(at("command-api", disabled("post_job", true), 1));
        desired.apply(at("command-api", disabled("deposit", true), 2));
        desired.apply(at("command-api", disabled("post_job", false), 3));
        assert_eq!(
            desired.settings().disabled_commands,
            BTreeSet::from(["deposit".to_owned()])
        );
    }
}
