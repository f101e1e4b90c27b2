//! The EventStorming model a component describes: aggregates with their
//! commands and events, policies with what they react to and send, read
//! models with what they fold and their rows' schema. The host reads it once
//! at load time, validates it, and routes by it (unknown aggregates and
//! commands are refused before any guest runs; a policy may send only what
//! it declares).

use serde::{Deserialize, Serialize};

/// A domain's model, as the component's `describe()` returned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainModel {
    pub name: String,
    pub sdk_version: String,
    pub aggregates: Vec<AggregateModel>,
    pub policies: Vec<PolicyModel>,
    pub read_models: Vec<ReadModelModel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateModel {
    pub name: String,
    pub commands: Vec<MessageModel>,
    pub events: Vec<MessageModel>,
    /// JSON Schema of the state.
    pub state_schema: serde_json::Value,
}

/// A command or event type: its name and the JSON Schema of its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageModel {
    pub name: String,
    pub schema: serde_json::Value,
}

/// A policy: the events (`"Aggregate.Event"`) it reacts to and the commands
/// (`"Aggregate.Command"`) it may send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyModel {
    pub name: String,
    pub reacts_to: Vec<String>,
    pub sends: Vec<String>,
}

impl PolicyModel {
    /// Whether the policy declares it sends `command` to `aggregate`.
    pub fn may_send(&self, aggregate: &str, command: &str) -> bool {
        self.sends.iter().any(|s| s.split_once('.') == Some((aggregate, command)))
    }

    /// Whether the policy reacts to `event` of `aggregate`.
    pub fn reacts_to(&self, aggregate: &str, event: &str) -> bool {
        self.reacts_to.iter().any(|s| s.split_once('.') == Some((aggregate, event)))
    }
}

/// A read model: the events (`"Aggregate.Event"`) it folds, the JSON Schema
/// of its rows, and the row fields the host indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadModelModel {
    pub name: String,
    pub consumes: Vec<String>,
    pub row_schema: serde_json::Value,
    pub indexes: Vec<String>,
}

impl ReadModelModel {
    /// Whether the read model folds `event` of `aggregate`.
    pub fn consumes(&self, aggregate: &str, event: &str) -> bool {
        self.consumes.iter().any(|s| s.split_once('.') == Some((aggregate, event)))
    }
}

/// Why a model is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid model `{domain}`: {problem}")]
#[non_exhaustive]
pub struct ModelError {
    pub domain: String,
    pub problem: String,
}

impl DomainModel {
    /// The aggregate with this name.
    pub fn aggregate(&self, name: &str) -> Option<&AggregateModel> {
        self.aggregates.iter().find(|a| a.name == name)
    }

    /// The policy with this name.
    pub fn policy(&self, name: &str) -> Option<&PolicyModel> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// The read model with this name.
    pub fn read_model(&self, name: &str) -> Option<&ReadModelModel> {
        self.read_models.iter().find(|r| r.name == name)
    }

    /// Checks the model is one the host can route by.
    ///
    /// # Errors
    ///
    /// The first problem found: no aggregates, empty or duplicate names (an
    /// aggregate, policy and read model share one namespace), an aggregate
    /// without commands or events, a schema that is not JSON, a policy that
    /// reacts to or sends nothing, a read model that consumes nothing, a
    /// policy or read model naming an unknown `Aggregate.Message` or naming
    /// one twice, an index that is not a field of the read model's row.
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
        let twice = |list: &[String]| {
            let mut names = std::collections::BTreeSet::new();
            list.iter().find(|n| !names.insert(n.as_str())).cloned()
        };
        for p in &self.policies {
            if !is_name(&p.name) {
                return fail(format!("the policy name {:?} is not a name (letters, digits, `-`, `_`)", p.name));
            }
            if !seen.insert(p.name.as_str()) {
                return fail(format!(
                    "`{}` is declared twice (aggregates, policies and read models share names)",
                    p.name
                ));
            }
            if p.reacts_to.is_empty() {
                return fail(format!("policy `{}` reacts to no events", p.name));
            }
            if p.sends.is_empty() {
                return fail(format!("policy `{}` sends no commands", p.name));
            }
            if let Some(e) = p.reacts_to.iter().find(|e| !known(e, true)) {
                return fail(format!("policy `{}` reacts to unknown event `{e}`", p.name));
            }
            if let Some(c) = p.sends.iter().find(|c| !known(c, false)) {
                return fail(format!("policy `{}` sends unknown command `{c}`", p.name));
            }
            if let Some(n) = twice(&p.reacts_to).or_else(|| twice(&p.sends)) {
                return fail(format!("policy `{}` names `{n}` twice", p.name));
            }
        }
        for r in &self.read_models {
            if !is_name(&r.name) {
                return fail(format!("the read model name {:?} is not a name (letters, digits, `-`, `_`)", r.name));
            }
            if !seen.insert(r.name.as_str()) {
                return fail(format!(
                    "`{}` is declared twice (aggregates, policies and read models share names)",
                    r.name
                ));
            }
            if r.consumes.is_empty() {
                return fail(format!("read model `{}` consumes no events", r.name));
            }
            if let Some(e) = r.consumes.iter().find(|e| !known(e, true)) {
                return fail(format!("read model `{}` consumes unknown event `{e}`", r.name));
            }
            if let Some(n) = twice(&r.consumes).or_else(|| twice(&r.indexes)) {
                return fail(format!("read model `{}` names `{n}` twice", r.name));
            }
            if let Some(i) = r.indexes.iter().find(|i| r.row_schema.pointer(&format!("/properties/{i}")).is_none()) {
                return fail(format!("read model `{}` indexes `{i}`, which is not a field of its row schema", r.name));
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
        for p in &self.policies {
            writeln!(f, "  policy {}", p.name)?;
            writeln!(f, "    reacts to: {}", p.reacts_to.join(", "))?;
            writeln!(f, "    sends:     {}", p.sends.join(", "))?;
        }
        for r in &self.read_models {
            writeln!(f, "  read model {}", r.name)?;
            writeln!(f, "    consumes: {}", r.consumes.join(", "))?;
            if !r.indexes.is_empty() {
                writeln!(f, "    indexes:  {}", r.indexes.join(", "))?;
            }
        }
        Ok(())
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// What changed between two models of a domain, as `aether-host verify
/// --against` reports it: aggregates, and in each aggregate both have,
/// commands and events added, removed, or with another payload schema;
/// policies and read models added, removed, or declared otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelDiff {
    pub aggregates_added: Vec<String>,
    pub aggregates_removed: Vec<String>,
    /// Aggregates in both models that changed, by name.
    pub aggregates: std::collections::BTreeMap<String, AggregateDiff>,
    pub policies_added: Vec<String>,
    pub policies_removed: Vec<String>,
    /// Policies that react to or send other messages.
    pub policies_changed: Vec<String>,
    pub read_models_added: Vec<String>,
    pub read_models_removed: Vec<String>,
    /// Read models that consume other events, or whose rows or indexes
    /// changed: a host folds them again from the start.
    pub read_models_changed: Vec<String>,
}

/// What changed in one aggregate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AggregateDiff {
    pub commands_added: Vec<String>,
    pub commands_removed: Vec<String>,
    /// Commands whose payload schema changed.
    pub commands_changed: Vec<String>,
    pub events_added: Vec<String>,
    /// Events the new model no longer declares: stored ones may not read.
    pub events_removed: Vec<String>,
    /// Events whose payload schema changed: stored ones may not read.
    pub events_changed: Vec<String>,
    pub state_changed: bool,
}

impl ModelDiff {
    /// The changes from `old` to `new`.
    pub fn between(old: &DomainModel, new: &DomainModel) -> Self {
        let names = |m: &DomainModel| m.aggregates.iter().map(|a| a.name.clone()).collect::<Vec<_>>();
        let mut diff = ModelDiff {
            aggregates_added: names(new).into_iter().filter(|n| old.aggregate(n).is_none()).collect(),
            aggregates_removed: names(old).into_iter().filter(|n| new.aggregate(n).is_none()).collect(),
            ..Self::default()
        };
        for old_aggregate in &old.aggregates {
            let Some(new_aggregate) = new.aggregate(&old_aggregate.name) else { continue };
            let (commands_added, commands_removed, commands_changed) =
                messages(&old_aggregate.commands, &new_aggregate.commands);
            let (events_added, events_removed, events_changed) = messages(&old_aggregate.events, &new_aggregate.events);
            let changes = AggregateDiff {
                commands_added,
                commands_removed,
                commands_changed,
                events_added,
                events_removed,
                events_changed,
                state_changed: old_aggregate.state_schema != new_aggregate.state_schema,
            };
            if changes != AggregateDiff::default() {
                diff.aggregates.insert(old_aggregate.name.clone(), changes);
            }
        }
        (diff.policies_added, diff.policies_removed, diff.policies_changed) =
            named(&old.policies, &new.policies, |p| &p.name);
        (diff.read_models_added, diff.read_models_removed, diff.read_models_changed) =
            named(&old.read_models, &new.read_models, |r| &r.name);
        diff
    }

    /// True if the models are the same.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Names added, removed, and declared otherwise, from `old` to `new`.
fn named<T: PartialEq>(old: &[T], new: &[T], name: impl Fn(&T) -> &String) -> (Vec<String>, Vec<String>, Vec<String>) {
    let find = |ts: &'_ [T], n: &String| ts.iter().position(|t| name(t) == n);
    let added = new.iter().filter(|t| find(old, name(t)).is_none()).map(|t| name(t).clone()).collect();
    let removed = old.iter().filter(|t| find(new, name(t)).is_none()).map(|t| name(t).clone()).collect();
    let changed =
        old.iter().filter(|t| find(new, name(t)).is_some_and(|i| new[i] != **t)).map(|t| name(t).clone()).collect();
    (added, removed, changed)
}

/// Names added, removed, and with another schema, from `old` to `new`.
fn messages(old: &[MessageModel], new: &[MessageModel]) -> (Vec<String>, Vec<String>, Vec<String>) {
    let find = |ms: &[MessageModel], name: &str| ms.iter().find(|m| m.name == name).cloned();
    let added = new.iter().filter(|m| find(old, &m.name).is_none()).map(|m| m.name.clone()).collect();
    let removed = old.iter().filter(|m| find(new, &m.name).is_none()).map(|m| m.name.clone()).collect();
    let changed = old
        .iter()
        .filter(|m| find(new, &m.name).is_some_and(|n| n.schema != m.schema))
        .map(|m| m.name.clone())
        .collect();
    (added, removed, changed)
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
    fn a_diff_names_what_was_added_removed_and_changed() {
        assert!(ModelDiff::between(&model(), &model()).is_empty());
        let mut new = model();
        new.aggregates[0].commands.push(msg("Close"));
        new.aggregates[0].events[0].name = "AccountOpened".into();
        new.aggregates[0].commands[0].schema = serde_json::json!({"type": "object"});
        new.aggregates.push(AggregateModel { name: "Loan".into(), ..model().aggregates[0].clone() });
        let diff = ModelDiff::between(&model(), &new);
        assert_eq!(diff.aggregates_added, ["Loan"]);
        assert!(diff.aggregates_removed.is_empty());
        let account = &diff.aggregates["Account"];
        assert_eq!(account.commands_added, ["Close"]);
        assert_eq!(account.commands_changed, ["Open"]);
        assert_eq!(
            (account.events_added.clone(), account.events_removed.clone()),
            (vec!["AccountOpened".to_string()], vec!["Opened".to_string()])
        );
        assert!(!account.state_changed);
        assert_eq!(ModelDiff::between(&new, &model()).aggregates_removed, ["Loan"]);
    }

    #[test]
    fn a_diff_names_policies_and_read_models_added_removed_and_changed() {
        let mut old = model();
        old.policies.push(policy(&["Account.Opened"], &["Account.Open"]));
        old.read_models.push(read_model(&["Account.Opened"], &[]));
        let mut new = old.clone();
        assert!(ModelDiff::between(&old, &new).is_empty());
        new.read_models[0].indexes.push("owner".into());
        new.policies.push(PolicyModel { name: "Q".into(), ..old.policies[0].clone() });
        let diff = ModelDiff::between(&old, &new);
        assert_eq!(diff.read_models_changed, ["R"]);
        assert_eq!(diff.policies_added, ["Q"]);
        assert!(diff.policies_changed.is_empty() && diff.policies_removed.is_empty());
        new.policies.remove(0);
        assert_eq!(ModelDiff::between(&old, &new).policies_removed, ["P"]);
    }

    fn policy(reacts_to: &[&str], sends: &[&str]) -> PolicyModel {
        PolicyModel {
            name: "P".into(),
            reacts_to: reacts_to.iter().map(|s| s.to_string()).collect(),
            sends: sends.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn read_model(consumes: &[&str], indexes: &[&str]) -> ReadModelModel {
        ReadModelModel {
            name: "R".into(),
            consumes: consumes.iter().map(|s| s.to_string()).collect(),
            row_schema: serde_json::json!({"type": "object", "properties": {"owner": {"type": "string"}}}),
            indexes: indexes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_sound_model_passes() {
        model().validate().unwrap();
        let mut m = model();
        m.policies.push(policy(&["Account.Opened"], &["Account.Open"]));
        m.read_models.push(read_model(&["Account.Opened"], &["owner"]));
        m.validate().unwrap();
        assert!(m.policies[0].may_send("Account", "Open") && !m.policies[0].may_send("Account", "Opened"));
        assert!(m.read_models[0].consumes("Account", "Opened") && !m.read_models[0].consumes("Loan", "Opened"));
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
                        sends: vec!["Account.Open".into()],
                    })
                }),
                "unknown event `Account.Nope`",
            ),
            (
                Box::new(|m| m.policies.push(policy(&["Account.Opened"], &["Account.Nope"]))),
                "policy `P` sends unknown command `Account.Nope`",
            ),
            (Box::new(|m| m.policies.push(policy(&["Account.Opened"], &["Open"]))), "sends unknown command `Open`"),
            (Box::new(|m| m.policies.push(policy(&[], &["Account.Open"]))), "policy `P` reacts to no events"),
            (Box::new(|m| m.policies.push(policy(&["Account.Opened"], &[]))), "policy `P` sends no commands"),
            (
                Box::new(|m| m.policies.push(policy(&["Account.Opened", "Account.Opened"], &["Account.Open"]))),
                "policy `P` names `Account.Opened` twice",
            ),
            (
                Box::new(|m| {
                    m.policies
                        .push(PolicyModel { name: "Account".into(), ..policy(&["Account.Opened"], &["Account.Open"]) })
                }),
                "`Account` is declared twice",
            ),
            (
                Box::new(|m| m.read_models.push(read_model(&["Account.Nope"], &[]))),
                "read model `R` consumes unknown event `Account.Nope`",
            ),
            (Box::new(|m| m.read_models.push(read_model(&[], &[]))), "read model `R` consumes no events"),
            (
                Box::new(|m| m.read_models.push(read_model(&["Account.Opened"], &["colour"]))),
                "read model `R` indexes `colour`, which is not a field",
            ),
            (
                Box::new(|m| {
                    m.policies.push(policy(&["Account.Opened"], &["Account.Open"]));
                    m.read_models.push(ReadModelModel { name: "P".into(), ..read_model(&["Account.Opened"], &[]) });
                }),
                "`P` is declared twice",
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
