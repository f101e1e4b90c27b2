//! The EventStorming model a component describes: aggregates with their
//! commands and events. The host reads it once at load time, validates it,
//! and routes by it (unknown aggregates and commands are refused before any
//! guest runs).

use serde::Serialize;

/// A domain's model, as the component's `describe()` returned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainModel {
    pub name: String,
    pub sdk_version: String,
    pub aggregates: Vec<AggregateModel>,
    pub policies: Vec<PolicyModel>,
    pub read_models: Vec<ReadModelModel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AggregateModel {
    pub name: String,
    pub commands: Vec<MessageModel>,
    pub events: Vec<MessageModel>,
    /// JSON Schema of the state.
    pub state_schema: serde_json::Value,
}

/// A command or event type: its name and the JSON Schema of its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageModel {
    pub name: String,
    pub schema: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyModel {
    pub name: String,
    pub reacts_to: Vec<String>,
    pub sends: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadModelModel {
    pub name: String,
    pub consumes: Vec<String>,
}

/// Why a model is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid model `{domain}`: {problem}")]
pub struct ModelError {
    pub domain: String,
    pub problem: String,
}

impl DomainModel {
    /// The aggregate with this name.
    pub fn aggregate(&self, name: &str) -> Option<&AggregateModel> {
        self.aggregates.iter().find(|a| a.name == name)
    }

    /// Checks the model is one the host can route by.
    ///
    /// # Errors
    ///
    /// The first problem found: no aggregates, empty or duplicate names, an
    /// aggregate without commands or events, a schema that is not JSON, a
    /// policy or read model naming an unknown `Aggregate.Message`.
    pub fn validate(&self) -> Result<(), ModelError> {
        let fail = |problem: String| Err(ModelError { domain: self.name.clone(), problem });
        if !is_name(&self.name) {
            return fail(format!("the domain name {:?} is not a name (letters, digits, `-`, `_`)", self.name));
        }
        if self.aggregates.is_empty() {
            return fail("it has no aggregates".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for agg in &self.aggregates {
            if !is_name(&agg.name) {
                return fail(format!("the aggregate name {:?} is not a name (letters, digits, `-`, `_`)", agg.name));
            }
            if !seen.insert(agg.name.as_str()) {
                return fail(format!("aggregate `{}` is declared twice", agg.name));
            }
            for (kind, list) in [("command", &agg.commands), ("event", &agg.events)] {
                if list.is_empty() {
                    return fail(format!("aggregate `{}` has no {kind}s", agg.name));
                }
                let mut names = std::collections::BTreeSet::new();
                for m in list {
                    if !is_name(&m.name) {
                        return fail(format!("{kind} name {:?} of `{}` is not a name", m.name, agg.name));
                    }
                    if !names.insert(m.name.as_str()) {
                        return fail(format!("{kind} `{}.{}` is declared twice", agg.name, m.name));
                    }
                }
            }
        }
        let known = |qualified: &str, events: bool| {
            qualified.split_once('.').is_some_and(|(a, m)| {
                self.aggregate(a).is_some_and(|a| {
                    let list = if events { &a.events } else { &a.commands };
                    list.iter().any(|x| x.name == m)
                })
            })
        };
        for p in &self.policies {
            if let Some(e) = p.reacts_to.iter().find(|e| !known(e, true)) {
                return fail(format!("policy `{}` reacts to unknown event `{e}`", p.name));
            }
            if let Some(c) = p.sends.iter().find(|c| !known(c, false)) {
                return fail(format!("policy `{}` sends unknown command `{c}`", p.name));
            }
        }
        for r in &self.read_models {
            if let Some(e) = r.consumes.iter().find(|e| !known(e, true)) {
                return fail(format!("read model `{}` consumes unknown event `{e}`", r.name));
            }
        }
        Ok(())
    }
}

/// A summary for people: the domain, then each aggregate's commands and events.
impl std::fmt::Display for DomainModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |ms: &[MessageModel]| ms.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ");
        writeln!(f, "domain `{}` (aether-guest {})", self.name, self.sdk_version)?;
        for a in &self.aggregates {
            writeln!(f, "  aggregate {}", a.name)?;
            writeln!(f, "    commands: {}", names(&a.commands))?;
            writeln!(f, "    events:   {}", names(&a.events))?;
        }
        Ok(())
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(name: &str) -> MessageModel {
        MessageModel { name: name.into(), schema: serde_json::json!({}) }
    }

    fn model() -> DomainModel {
        DomainModel {
            name: "bank".into(),
            sdk_version: "0.1.0".into(),
            aggregates: vec![AggregateModel {
                name: "Account".into(),
                commands: vec![msg("Open")],
                events: vec![msg("Opened")],
                state_schema: serde_json::json!({}),
            }],
            policies: vec![],
            read_models: vec![],
        }
    }

    #[test]
    fn a_sound_model_passes() {
        model().validate().unwrap();
    }

    #[test]
    fn each_problem_is_named() {
        type Breakage = Box<dyn Fn(&mut DomainModel)>;
        let cases: Vec<(Breakage, &str)> = vec![
            (Box::new(|m| m.aggregates.clear()), "no aggregates"),
            (Box::new(|m| m.aggregates.push(m.aggregates[0].clone())), "declared twice"),
            (Box::new(|m| m.aggregates[0].events.clear()), "has no events"),
            (Box::new(|m| m.aggregates[0].commands.push(msg("Open"))), "command `Account.Open` is declared twice"),
            (Box::new(|m| m.aggregates[0].name = "a.b".into()), "is not a name"),
            (
                Box::new(|m| {
                    m.policies.push(PolicyModel {
                        name: "p".into(),
                        reacts_to: vec!["Account.Nope".into()],
                        sends: vec![],
                    })
                }),
                "unknown event `Account.Nope`",
            ),
        ];
        for (break_it, expected) in cases {
            let mut m = model();
            break_it(&mut m);
            let err = m.validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} should mention {expected:?}");
        }
    }
}
