//! Docker events that can change what a firewall must know.

use bollard::models::{EventMessage, EventMessageTypeEnum};
use serde::Serialize;
use std::collections::HashMap;

/// What happened to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// It started (also after a restart): its ports are published now.
    Start,
    /// Its process ended (stop, kill, crash): its ports are gone.
    /// Docker's later `stop` event adds nothing and is not reported.
    Die,
    /// It was removed.
    Destroy,
    /// It was renamed (`container` rules match by name).
    Rename,
    /// It was attached to a network (its addresses change).
    NetworkConnect,
    /// It was detached from a network.
    NetworkDisconnect,
    /// A network was created: its bridge exists, perhaps named otherwise
    /// than Docker names bridges (`com.docker.network.bridge.name`).
    NetworkCreate,
    /// A network was removed, and its bridge with it.
    NetworkDestroy,
}

impl EventKind {
    /// Docker's actions behind each kind, and the event type they come with.
    const ACTIONS: [(EventMessageTypeEnum, &'static str, EventKind); 8] = [
        (EventMessageTypeEnum::CONTAINER, "start", EventKind::Start),
        (EventMessageTypeEnum::CONTAINER, "die", EventKind::Die),
        (EventMessageTypeEnum::CONTAINER, "destroy", EventKind::Destroy),
        (EventMessageTypeEnum::CONTAINER, "rename", EventKind::Rename),
        (
            EventMessageTypeEnum::NETWORK,
            "connect",
            EventKind::NetworkConnect,
        ),
        (
            EventMessageTypeEnum::NETWORK,
            "disconnect",
            EventKind::NetworkDisconnect,
        ),
        (EventMessageTypeEnum::NETWORK, "create", EventKind::NetworkCreate),
        (
            EventMessageTypeEnum::NETWORK,
            "destroy",
            EventKind::NetworkDestroy,
        ),
    ];

    /// Docker's word for it (`start`, `die`, `destroy`, `rename`, `connect`,
    /// `disconnect`; `create` and `destroy` for networks).
    pub fn action(self) -> &'static str {
        Self::ACTIONS
            .iter()
            .find(|(_, _, kind)| *kind == self)
            .map_or("", |(_, action, _)| action)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.action())
    }
}

/// A change to a container, or to Docker's networks, that may change the
/// firewall's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerEvent {
    /// What happened.
    pub kind: EventKind,
    /// Full id of the container concerned; empty for
    /// [`EventKind::NetworkCreate`] and [`EventKind::NetworkDestroy`], which
    /// concern no container.
    pub container_id: String,
    /// The container's name (the new name for [`EventKind::Rename`]), when
    /// Docker says it; network events do not.
    pub container_name: Option<String>,
    /// The network's name, for network events.
    pub network: Option<String>,
}

impl ContainerEvent {
    /// Reads one Docker event; `None` for events that do not matter here.
    pub(crate) fn from_message(message: &EventMessage) -> Option<Self> {
        let typ = message.typ?;
        let action = message.action.as_deref()?;
        let kind = EventKind::ACTIONS
            .iter()
            .find(|(t, a, _)| *t == typ && *a == action)
            .map(|(_, _, kind)| *kind)?;
        let actor = message.actor.as_ref()?;
        let no_attributes = HashMap::new();
        let attributes = actor.attributes.as_ref().unwrap_or(&no_attributes);
        let attribute = |key: &str| attributes.get(key).filter(|v| !v.is_empty()).cloned();
        let (container_id, container_name, network) = match typ {
            // A network event's actor is the network; the container is an attribute.
            EventMessageTypeEnum::NETWORK
                if matches!(kind, EventKind::NetworkCreate | EventKind::NetworkDestroy) =>
            {
                (String::new(), None, attribute("name"))
            }
            EventMessageTypeEnum::NETWORK => (attribute("container")?, None, attribute("name")),
            _ => (
                actor.id.clone().filter(|id| !id.is_empty())?,
                attribute("name").map(|n| n.trim_start_matches('/').to_owned()),
                None,
            ),
        };
        Some(Self {
            kind,
            container_id,
            container_name,
            network,
        })
    }

    /// The `filters` query of `GET /events` asking for these events only.
    pub(crate) fn filters() -> HashMap<String, Vec<String>> {
        let mut types: Vec<String> = Vec::new();
        let mut actions: Vec<String> = Vec::new();
        for (typ, action, _) in EventKind::ACTIONS {
            if !types.contains(&typ.to_string()) {
                types.push(typ.to_string());
            }
            if !actions.iter().any(|a| a == action) {
                actions.push(action.into());
            }
        }
        HashMap::from([("type".into(), types), ("event".into(), actions)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `GET /v1.41/events` from docker.io 20.10.24 (see tests/fixtures/README.md).
    const EVENTS_20_10: &str = include_str!("../tests/fixtures/events-20.10.jsonl");

    #[test]
    fn firewall_relevant_events_from_docker_20_10() {
        let events: Vec<ContainerEvent> = EVENTS_20_10
            .lines()
            .map(|line| serde_json::from_str::<EventMessage>(line).expect("event parses"))
            .filter_map(|m| ContainerEvent::from_message(&m))
            .collect();
        let short: Vec<(EventKind, String, Option<&str>, Option<&str>)> = events
            .iter()
            .map(|e| {
                (
                    e.kind,
                    e.container_id[..12].to_string(),
                    e.container_name.as_deref(),
                    e.network.as_deref(),
                )
            })
            .collect();
        use EventKind::*;
        let want: Vec<(EventKind, String, Option<&str>, Option<&str>)> = vec![
            (NetworkConnect, "2c6f9ae82c5d".into(), None, Some("bridge")),
            (Start, "2c6f9ae82c5d".into(), Some("ephemeral"), None),
            (NetworkDisconnect, "5f688f2ca2de".into(), None, Some("bridge")),
            (NetworkDisconnect, "5f688f2ca2de".into(), None, Some("bridge")),
            (NetworkConnect, "5f688f2ca2de".into(), None, Some("bridge")),
            (Rename, "6ea4fffa1cd1".into(), Some("silent"), None),
            (Die, "6ea4fffa1cd1".into(), Some("silent"), None),
            (NetworkDisconnect, "6ea4fffa1cd1".into(), None, Some("bridge")),
            (Destroy, "6ea4fffa1cd1".into(), Some("silent"), None),
        ];
        // create, kill, stop, pause and unpause are left out.
        assert_eq!(short, want);
        assert!(events.iter().all(|e| e.container_id.len() == 64));
    }

    #[test]
    fn filters_ask_for_exactly_these_events() {
        let filters = ContainerEvent::filters();
        assert_eq!(filters["type"], ["container", "network"]);
        assert_eq!(
            filters["event"],
            [
                "start",
                "die",
                "destroy",
                "rename",
                "connect",
                "disconnect",
                "create"
            ]
        );
    }

    /// A network's creation and removal change the bridges the table knows
    /// as Docker's; a container's creation (same action) changes nothing.
    #[test]
    fn network_create_and_destroy_concern_no_container() {
        let event = |typ: &str, action: &str| {
            let line = format!(
                r#"{{"Type":"{typ}","Action":"{action}","Actor":{{"ID":"5c3a0e1b2d4f","Attributes":{{"name":"dmz","type":"bridge"}}}},"scope":"local","time":1,"timeNano":1}}"#
            );
            ContainerEvent::from_message(&serde_json::from_str::<EventMessage>(&line).unwrap())
        };
        let created = event("network", "create").unwrap();
        assert_eq!(created.kind, EventKind::NetworkCreate);
        assert_eq!(created.container_id, "");
        assert_eq!(created.network.as_deref(), Some("dmz"));
        assert_eq!(
            event("network", "destroy").unwrap().kind,
            EventKind::NetworkDestroy
        );
        assert_eq!(event("container", "create"), None);
    }

    #[test]
    fn kinds_name_docker_actions() {
        assert_eq!(EventKind::NetworkConnect.to_string(), "connect");
        assert_eq!(EventKind::Die.action(), "die");
    }
}
