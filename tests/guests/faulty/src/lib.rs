//! A guest that misbehaves on purpose, to prove one faulty actor never hurts
//! the host (invariant: fault-isolation) and that a guest gets no ambient
//! authority (invariant: deterministic-guests).
//!
//! It implements the contract directly on the generated bindings, bypassing
//! the SDK's safety, so it can return what no SDK guest could. Every
//! aggregate accepts `Ping` (event `Pinged`, state = the number of pings);
//! the other commands misbehave:
//!
//! | aggregate | command | does |
//! |---|---|---|
//! | `Trapper` | `Panic` | panics |
//! | `Looper` | `Spin` | loops forever |
//! | `Hog` | `Gobble` | allocates until memory runs out |
//! | `Garbler` | `Garble` / `Stray` | returns an event whose payload is not MessagePack / an event the model does not declare |
//! | `Prober` | `Probe` | reads environment, arguments, clock and randomness into an event |
//! | `Prober` | `ReadFile` | opens `/etc/passwd` |
//! | `Prober` | `PoisonNext` | returns `Poisoned` without folding it (its `handle` and `apply` disagree), an event its own `apply` traps on when the actor is rebuilt |
//!
//! Like an SDK guest, `handle` folds the events it accepts into the state
//! in the same call (contract 0.3.0 and later), except where it says otherwise.
//!
//! It has one policy and one read model, both fed `Trapper.Pinged`, that
//! misbehave by the actor id of the event:
//!
//! | | actor id | does |
//! |---|---|---|
//! | policy `Rogue` (sends `Trapper.Ping`) | `stray` | sends `Looper.Spin`, which it does not declare |
//! | | `garble` | sends `Trapper.Ping` with a payload that is not MessagePack |
//! | | `panic` | panics |
//! | | anything else | sends `Trapper.Ping` to `<actor>-echo` |
//! | read model `Pings` (row: a count, key: the actor id) | `garble` | folds the row into bytes that are not MessagePack |
//! | | anything else | counts the events |

#[cfg(target_arch = "wasm32")]
mod guest {
    use super::{Probe, State};
    use aether_guest::bindings::aether::domain::types::*;
    use aether_guest::bindings::exports::aether::domain::aggregate::Guest;
    use aether_guest::bindings::exports::aether::domain::{policy, read_model};
    use std::cell::RefCell;

    thread_local! {
        static PINGS: RefCell<u64> = const { RefCell::new(0) };
        static AGGREGATE: RefCell<String> = const { RefCell::new(String::new()) };
    }

    struct Faulty;

    fn msg(name: &str) -> MessageType {
        MessageType { name: name.into(), schema: "{}".into() }
    }

    fn nil() -> Vec<u8> {
        vec![0xc0]
    }

    impl Guest for Faulty {
        fn describe() -> DomainModel {
            let agg = |name: &str, commands: &[&str], events: &[&str]| AggregateType {
                name: name.into(),
                commands: commands.iter().map(|c| msg(c)).collect(),
                events: events.iter().map(|e| msg(e)).collect(),
                state_schema: "{}".into(),
            };
            DomainModel {
                name: "faulty".into(),
                sdk_version: aether_guest::SDK_VERSION.into(),
                aggregates: vec![
                    agg("Trapper", &["Ping", "Panic"], &["Pinged"]),
                    agg("Looper", &["Ping", "Spin"], &["Pinged"]),
                    agg("Hog", &["Ping", "Gobble"], &["Pinged"]),
                    agg("Garbler", &["Ping", "Garble", "Stray"], &["Pinged", "Garbled"]),
                    agg("Prober", &["Ping", "Probe", "ReadFile", "PoisonNext"], &["Pinged", "Probed", "Poisoned"]),
                ],
                policies: vec![PolicyType {
                    name: "Rogue".into(),
                    reacts_to: vec!["Trapper.Pinged".into()],
                    sends: vec!["Trapper.Ping".into()],
                }],
                read_models: vec![ReadModelType {
                    name: "Pings".into(),
                    consumes: vec!["Trapper.Pinged".into()],
                    row_schema: r#"{"type":"integer"}"#.into(),
                    indexes: vec![],
                }],
            }
        }

        fn init(aggregate: String, _actor_id: String) -> Result<(), GuestError> {
            AGGREGATE.with(|a| *a.borrow_mut() = aggregate);
            Ok(())
        }

        fn apply(events: Vec<u8>) -> Result<(), ApplyError> {
            for (index, item) in aether_guest::codec::unpack(&events).enumerate() {
                let undecodable = |why: String| ApplyError { index: index as u32, error: GuestError::Undecodable(why) };
                let name = packed_name(item.map_err(undecodable)?).map_err(undecodable)?;
                fold(&name);
            }
            Ok(())
        }

        fn handle(ctx: CommandContext, command: Message) -> Result<HandleOutcome, GuestError> {
            if command.name == "PoisonNext" {
                return Ok(HandleOutcome::Accepted(vec![Message { name: "Poisoned".into(), payload: nil() }]));
            }
            let outcome = decide(ctx, command)?;
            if let HandleOutcome::Accepted(events) = &outcome {
                events.iter().for_each(|e| fold(&e.name));
            }
            Ok(outcome)
        }

        fn snapshot() -> Result<Vec<u8>, GuestError> {
            Ok(PINGS.with(|p| *p.borrow()).to_le_bytes().to_vec())
        }

        fn restore(snapshot: Vec<u8>) -> Result<(), GuestError> {
            let bytes: [u8; 8] = snapshot.try_into().map_err(|_| GuestError::Undecodable("snapshot".into()))?;
            PINGS.with(|p| *p.borrow_mut() = u64::from_le_bytes(bytes));
            Ok(())
        }

        fn state() -> Result<Vec<u8>, GuestError> {
            let pings = PINGS.with(|p| *p.borrow());
            Ok(rmp_serde::to_vec_named(&State { pings }).expect("encode"))
        }
    }

    impl policy::Guest for Faulty {
        fn react(policy: String, inputs: Vec<PolicyInput>) -> Result<Vec<Reaction>, GuestError> {
            if policy != "Rogue" {
                return Err(GuestError::UnknownPolicy(policy));
            }
            Ok(inputs
                .into_iter()
                .map(|input| {
                    let PolicyInput::Event(event) = input else { return Ok(vec![]) };
                    let send = |aggregate: &str, actor_id: String, name: &str, payload: Vec<u8>| {
                        Ok(vec![CommandToSend {
                            aggregate: aggregate.into(),
                            actor_id,
                            command: Message { name: name.into(), payload },
                        }])
                    };
                    match event.actor_id.as_str() {
                        "stray" => send("Looper", event.actor_id, "Spin", nil()),
                        "garble" => send("Trapper", event.actor_id, "Ping", vec![0xc1]),
                        "panic" => panic!("the policy panics on purpose"),
                        _ => send("Trapper", format!("{}-echo", event.actor_id), "Ping", nil()),
                    }
                })
                .collect())
        }
    }

    impl read_model::Guest for Faulty {
        fn keys(read_model: String, events: Vec<StoredEvent>) -> Result<Vec<RowKeys>, GuestError> {
            if read_model != "Pings" {
                return Err(GuestError::UnknownReadModel(read_model));
            }
            Ok(events.into_iter().map(|e| Ok(vec![e.actor_id])).collect())
        }

        fn fold(
            read_model: String,
            key: String,
            row: Option<Vec<u8>>,
            events: Vec<StoredEvent>,
        ) -> Result<Option<Vec<u8>>, ApplyError> {
            if read_model != "Pings" {
                return Err(ApplyError { index: 0, error: GuestError::UnknownReadModel(read_model) });
            }
            if key == "garble" {
                return Ok(Some(vec![0xc1]));
            }
            let count: u64 = match row {
                Some(bytes) => rmp_serde::from_slice(&bytes)
                    .map_err(|e| ApplyError { index: 0, error: GuestError::Undecodable(e.to_string()) })?,
                None => 0,
            };
            Ok(Some(rmp_serde::to_vec(&(count + events.len() as u64)).expect("encode")))
        }
    }

    aether_guest::bindings::__export_domain_world!(Faulty with_types_in aether_guest::bindings);

    /// Folds one event into the pings.
    fn fold(name: &str) {
        match name {
            "Pinged" => PINGS.with(|p| *p.borrow_mut() += 1),
            "Poisoned" => panic!("this event cannot be applied"),
            _ => {}
        }
    }

    /// The name of one event of a packed batch: a string, or a map of one
    /// entry from the name to the payload (read up to the name).
    fn packed_name(item: &[u8]) -> Result<String, String> {
        let name = item.strip_prefix(&[0x81]).unwrap_or(item);
        rmp_serde::from_slice(name).map_err(|e| e.to_string())
    }

    fn decide(ctx: CommandContext, command: Message) -> Result<HandleOutcome, GuestError> {
        let event =
            |name: &str, payload: Vec<u8>| Ok(HandleOutcome::Accepted(vec![Message { name: name.into(), payload }]));
        match command.name.as_str() {
            "Ping" => event("Pinged", nil()),
            "Panic" => panic!("boom on purpose in command {}", ctx.command_id),
            "Spin" => loop {
                std::hint::black_box(());
            },
            "Gobble" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            // 0xc1 is the one byte MessagePack never uses.
            "Garble" => event("Garbled", vec![0xc1, 0xff, 0x00]),
            "Stray" => event("NotInTheModel", nil()),
            "Probe" => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                let mut random = [0u8; 8];
                // std's HashMap seeds come from wasi:random too.
                let seed = std::collections::hash_map::RandomState::new();
                use std::hash::BuildHasher;
                let hashed = seed.hash_one(42u8);
                random.copy_from_slice(&hashed.to_le_bytes());
                let probe = Probe {
                    env: std::env::vars().count() as u64,
                    args: std::env::args().count() as u64,
                    cwd: std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
                    now_ms: now,
                    command_ms: ctx.timestamp_ms,
                    random: u64::from_le_bytes(random),
                };
                event("Probed", rmp_serde::to_vec_named(&probe).expect("encode"))
            }
            "ReadFile" => {
                let text = std::fs::read_to_string("/etc/passwd").unwrap_or_else(|e| format!("error: {e}"));
                event("Probed", rmp_serde::to_vec_named(&text).expect("encode"))
            }
            other => Err(GuestError::UnknownCommand(other.into())),
        }
    }
}

/// What `Prober.Probe` saw of the world.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    pub env: u64,
    pub args: u64,
    pub cwd: String,
    pub now_ms: u64,
    pub command_ms: u64,
    pub random: u64,
}

/// Every faulty aggregate's state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    pub pings: u64,
}
