//! What policy and read-model runners share: their VM of the running
//! component, called off the I/O threads, and the events they are fed.

use crate::store::{ActorId, LoggedCommand, RecordedEvent};
use crate::wasm::{DomainComponent, GuestFault, GuestInstance, LoggedEvent, PolicyVm, ReadModelVm};

/// A VM that serves one policy or read model.
pub(super) trait RunnerVm: Send + Sized + 'static {
    fn make(component: &DomainComponent, name: &str) -> Result<Self, GuestFault>;
    fn instance(&mut self) -> &mut GuestInstance;
}

impl RunnerVm for PolicyVm {
    fn make(component: &DomainComponent, name: &str) -> Result<Self, GuestFault> {
        component.policy_vm(name)
    }

    fn instance(&mut self) -> &mut GuestInstance {
        self.vm()
    }
}

impl RunnerVm for ReadModelVm {
    fn make(component: &DomainComponent, name: &str) -> Result<Self, GuestFault> {
        component.read_model_vm(name)
    }

    fn instance(&mut self) -> &mut GuestInstance {
        self.vm()
    }
}

/// A runner's VM and the component it is made from; made again when the
/// running component changes (an upgrade) and after a fault.
pub(super) struct Slot<V> {
    component: DomainComponent,
    name: String,
    vm: Option<V>,
    /// Whether the guest is to announce every input (its folds read clocks).
    announce: bool,
}

impl<V: RunnerVm> Slot<V> {
    /// The slot for `component`: the one kept, unless it is of another component.
    pub(super) fn of<'a>(kept: &'a mut Option<Self>, component: &DomainComponent, name: &str) -> &'a mut Self {
        if kept.as_ref().is_none_or(|s| s.component.hash() != component.hash()) {
            *kept = Some(Self { component: component.clone(), name: name.to_owned(), vm: None, announce: false });
        }
        kept.as_mut().expect("set above")
    }

    /// One call on the blocking pool, off the I/O threads: a guest that runs
    /// long holds a blocking thread, not a worker that the host's I/O,
    /// heartbeats and leases need. A VM that faulted is dropped; one whose
    /// folds read the clock is made again announcing every input.
    pub(super) async fn call<I, T>(
        &mut self,
        inputs: &[I],
        work: impl Fn(&mut V, &[I]) -> Result<T, GuestFault> + Send + Sync + Clone + 'static,
    ) -> Result<T, GuestFault>
    where
        I: Clone + Send + 'static,
        T: Send + 'static,
    {
        for _ in 0..2 {
            let (vm, announce, inputs, work) = (self.vm.take(), self.announce, inputs.to_vec(), work.clone());
            // Cloning a component copies its model, schemas and all (tens of
            // µs, more than a fold; docs/performance.md): only to make a VM.
            let made = vm.is_none().then(|| (self.component.clone(), self.name.clone()));
            let task = move || {
                let mut vm = match (vm, made) {
                    (Some(vm), _) => vm,
                    (None, None) => unreachable!("a component is cloned when there is no VM"),
                    (None, Some((component, name))) => match V::make(&component, &name) {
                        Ok(mut vm) => {
                            vm.instance().announce_folds(announce);
                            vm
                        }
                        Err(fault) => return (None, Err(fault)),
                    },
                };
                let out = work(&mut vm, &inputs);
                (out.is_ok().then_some(vm), out)
            };
            let (vm, out) = match tokio::task::spawn_blocking(task).await {
                Ok(done) => done,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            };
            self.vm = vm;
            match out {
                Err(GuestFault::Unannounced { .. }) if !self.announce => self.announce = true,
                out => return out,
            }
        }
        unreachable!("the second call announces every input")
    }
}

/// An event of the log, with its position, as a runner holds it.
#[derive(Debug, Clone)]
pub(super) struct Logged {
    pub position: u64,
    pub actor: ActorId,
    pub event: RecordedEvent,
}

impl Logged {
    /// The events of `batch` that `wanted(aggregate, event name)` keeps, in log order.
    pub(super) fn select(batch: Vec<LoggedCommand>, wanted: impl Fn(&str, &str) -> bool) -> Vec<Logged> {
        let mut out = Vec::new();
        for command in batch {
            let (position, actor) = (command.position, command.actor);
            for event in command.events {
                if wanted(&actor.aggregate, &event.name) {
                    out.push(Logged { position, actor: actor.clone(), event });
                }
            }
        }
        out
    }

    pub(super) fn as_logged(&self) -> LoggedEvent<'_> {
        LoggedEvent { actor: &self.actor, event: &self.event }
    }

    /// How the event is named where it is parked.
    pub(super) fn describe(&self) -> String {
        format!("{}@{} {}", self.actor, self.event.version, self.event.name)
    }
}
