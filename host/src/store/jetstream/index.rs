//! The command index: a subject per command whose id its caller chose,
//! whose last message says where the command's events are.
//!
//! A caller-id command is appended with two ordinary publishes, no batch:
//!
//! 1. the **claim**: an index message on the command's index subject
//!    carrying the command's versions and `Aether-Events-After`, the stream
//!    sequence the actor's subject ends at; it expects the index subject to
//!    be empty (`Nats-Expected-Last-Subject-Sequence: 0`), so the server lets
//!    one writer claim the id for the actor, however late a second comes;
//! 2. the **events** message, expecting that same sequence on the actor's
//!    subject, as every append does.
//!
//! Since the events message expects the subject to end at `after`, if it is
//! stored it is the actor's first message after `after`. A reader of an
//! entry checks that message (one request) and finds one of:
//!
//! - it is this command's: the command is **stored**, a retry is a duplicate;
//! - it is another command's: the claim is **abandoned** (its writer's
//!   events append lost a conflict, or it crashed and others appended
//!   since) and can never be honoured, since the slot is taken for good;
//!   a writer of the same command **takes it over** with a compare-and-set
//!   on the index subject (`Nats-Expected-Last-Subject-Sequence` = the
//!   entry's sequence), naming its own position;
//! - there is none: the claim is **open**: its writer may be between its
//!   two publishes (on another host), or crashed there. Nobody may move an
//!   open claim, since its events may still land; a writer of the same
//!   command at the same position appends its events there too, and the
//!   subject's expected sequence lets exactly one of them in, both being
//!   this command. A writer at another position has a stale view of the
//!   actor and reads its head again.
//!
//! So an entry moves only off a slot that another command holds, and the
//! command's events can land only in the slot its current entry names:
//! once stored, a command is found by its entry, and it is never stored
//! twice. The index message goes first because the events message cannot
//! be made conditional on anything but its own subject.
//!
//! A command accepted with no events is recorded by its index message
//! alone, with the empty range `<v+1>-<v>` (accepted at version `v`) and no
//! `Aether-Events-After`: such an entry is the whole record and final. It
//! takes over an abandoned claim like any writer, and refuses an open one
//! (another writer is appending the same command with events).
//!
//! Generated ids have no entry: their message is published alone, as
//! before, and only ever repeated as the actor's last message.

use super::codec::{self, COMMAND_ID, VERSIONS};
use super::{JetStreamEventStore, PublishFailure, is_stream_missing};
use crate::store::jetstream::cache::Mark;
use crate::store::{ActorId, Appended, StoreError, wire};
use async_nats::HeaderMap;
use async_nats::header::HeaderName;
use async_nats::jetstream::stream::LastRawMessageErrorKind;

/// The header of a claim naming where the command's events go: they are
/// the actor's first message after this stream sequence.
pub(super) const AFTER: &str = "Aether-Events-After";

/// How many times a writer publishes an index message before it gives up:
/// each refusal means another writer of the same command moved its entry.
const CLAIMS: usize = 8;

/// One index message, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// The message's stream sequence, which a takeover expects.
    pub seq: u64,
    pub first_version: u64,
    pub last_version: u64,
    pub command_id: String,
    /// Where the events go; `None` for a command recorded with none.
    pub after: Option<u64>,
}

/// What an entry says once checked against the actor's subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// The command is stored (a duplicate), with these versions.
    Stored(Appended),
    /// Another command holds the claimed slot: the claim is dead.
    Abandoned,
    /// Nothing after the claimed position yet: its writer may still append.
    Open { after: u64 },
}

/// What claiming a position for a command came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claim {
    /// The entry names the position: append the events there.
    Held,
    /// The command is stored already.
    Stored(Appended),
    /// An open claim names another position: the writer's view of the actor
    /// is stale (or, for a record, another writer is appending events).
    Open { after: u64 },
}

/// The headers of an index message: the command's versions and id, where
/// its events go (none for a record), and the index subject's expected last
/// sequence (0: empty; else the entry taken over).
pub(super) fn headers(
    (first_version, last_version): (u64, u64),
    command_id: &str,
    after: Option<u64>,
    expected_last_seq: u64,
) -> HeaderMap {
    const AFTER_NAME: HeaderName = HeaderName::from_static(AFTER);
    let mut headers = codec::headers(first_version, last_version, command_id, expected_last_seq, None);
    if let Some(after) = after {
        headers.insert(AFTER_NAME, after.to_string());
    }
    headers
}

/// Reads an index message's headers; the versions may be the empty range
/// `<v+1>-<v>` of a command recorded with no events, which has no `after`.
pub(super) fn entry(seq: u64, headers: &HeaderMap) -> Result<Entry, String> {
    let get = |name: &str| headers.get(name).map(|v| v.as_str()).ok_or_else(|| format!("no {name} header"));
    let versions = get(VERSIONS)?;
    let not_a_range = || format!("{VERSIONS} header {versions:?} is not <first>-<last>");
    let (first, last) = versions.split_once('-').ok_or_else(not_a_range)?;
    let (first_version, last_version): (u64, u64) =
        (first.parse().map_err(|_| not_a_range())?, last.parse().map_err(|_| not_a_range())?);
    wire::check_version("the last version in the headers", last_version)?;
    if first_version == 0 || last_version + 1 < first_version {
        return Err(format!("versions {first_version}..={last_version} in the headers are not a range"));
    }
    let after = match headers.get(AFTER) {
        Some(value) => {
            Some(value.as_str().parse::<u64>().map_err(|_| format!("{AFTER} header {value:?} is not a sequence"))?)
        }
        None => None,
    };
    if after.is_some() == (last_version < first_version) {
        return Err(format!("a claim names where its events go, and only a claim ({versions} with {AFTER} {after:?})"));
    }
    let token = get(COMMAND_ID)?;
    let command_id =
        super::subject::decode_token(token).ok_or_else(|| format!("{COMMAND_ID} header {token:?} does not decode"))?;
    Ok(Entry { seq, first_version, last_version, command_id, after })
}

impl JetStreamEventStore {
    /// The entry on the command's index subject, if any: one request, to the
    /// stream leader (a replica could be behind).
    pub(super) async fn read_entry(
        &self,
        actor: &ActorId,
        index: &str,
        command_id: &str,
    ) -> Result<Option<Entry>, StoreError> {
        let what = || format!("looking up command {command_id:?} of {actor}");
        let stream = self.js.get_stream_no_info(&self.stream).await.map_err(|e| self.unavailable(what(), e))?;
        let message = match self.bounded(what, stream.get_last_raw_message_by_subject(index)).await? {
            Ok(message) => message,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
            // A lost stream holds no command; the next append makes it again.
            Err(e) if is_stream_missing(&e.kind()) => return Ok(None),
            Err(e) => return Err(self.unavailable(what(), e)),
        };
        let seq = message.sequence;
        let corrupt = |cause: String| StoreError::Corrupt {
            actor: actor.clone(),
            version: 0,
            cause: format!("the index entry of command {command_id:?} (stream sequence {seq}): {cause}"),
        };
        let entry = entry(seq, &message.headers).map_err(corrupt)?;
        if entry.command_id != command_id {
            return Err(corrupt(format!("it names command {:?}", entry.command_id)));
        }
        Ok(Some(entry))
    }

    /// Checks an entry against the actor's subject: its first message after
    /// the claimed position (one request), none for a record.
    pub(super) async fn check(&self, actor: &ActorId, subject: &str, entry: &Entry) -> Result<State, StoreError> {
        let Some(after) = entry.after else {
            let (first_version, last_version) = (entry.first_version, entry.last_version);
            return Ok(State::Stored(Appended { first_version, last_version, duplicate: true, position: 0 }));
        };
        let what = || format!("checking the index entry of command {:?} of {actor}", entry.command_id);
        let stream = self.js.get_stream_no_info(&self.stream).await.map_err(|e| self.unavailable(what(), e))?;
        let next = stream.get_first_raw_message_by_subject(subject, after + 1);
        let message = match self.bounded(what, next).await? {
            Ok(message) => message,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(State::Open { after }),
            Err(e) if is_stream_missing(&e.kind()) => return Ok(State::Open { after }),
            Err(e) => return Err(self.unavailable(what(), e)),
        };
        let seq = message.sequence;
        let headers = codec::command_headers(Some(&message.headers)).map_err(|cause| StoreError::Corrupt {
            actor: actor.clone(),
            version: 0,
            cause: format!("message at stream sequence {seq}: {cause}"),
        })?;
        if headers.command_id != entry.command_id {
            return Ok(State::Abandoned);
        }
        // Remembered as a position, as a read would.
        self.positions.add_mark(actor, Mark { version: headers.last_version, seq });
        let (first_version, last_version) = (headers.first_version, headers.last_version);
        Ok(State::Stored(Appended { first_version, last_version, duplicate: true, position: 0 }))
    }

    /// The command, if its entry says it is stored: two requests at most.
    pub(super) async fn find_indexed(
        &self,
        actor: &ActorId,
        subject: &str,
        index: &str,
        command_id: &str,
    ) -> Result<Option<Appended>, StoreError> {
        let Some(entry) = self.read_entry(actor, index, command_id).await? else { return Ok(None) };
        Ok(match self.check(actor, subject, &entry).await? {
            State::Stored(original) => Some(original),
            State::Abandoned | State::Open { .. } => None,
        })
    }

    /// Makes the command's entry name `after` (or record it with no events,
    /// for `None`): claims an empty index subject, takes over an abandoned
    /// entry, or joins an open claim at the same position.
    pub(super) async fn claim(
        &self,
        actor: &ActorId,
        subject: &str,
        index: &str,
        (command_id, versions): (&str, (u64, u64)),
        after: Option<u64>,
    ) -> Result<Claim, StoreError> {
        let mut expected = 0;
        let mut missing = false;
        for _ in 0..CLAIMS {
            let headers = headers(versions, command_id, after, expected);
            match self.publish(actor, index, headers, bytes::Bytes::new()).await {
                Ok(_) => return Ok(Claim::Held),
                Err(PublishFailure::WrongSequence) => {}
                Err(PublishFailure::Missing) if !missing => {
                    missing = true;
                    self.recreate().await?;
                    continue;
                }
                Err(PublishFailure::Missing) => break,
                Err(PublishFailure::Failed(err)) => return Err(err),
            }
            // Taken: by this command before, or a claim to check.
            let Some(entry) = self.read_entry(actor, index, command_id).await? else {
                expected = 0;
                continue;
            };
            match self.check(actor, subject, &entry).await? {
                State::Stored(original) => return Ok(Claim::Stored(original)),
                State::Abandoned => expected = entry.seq,
                State::Open { after: open } if Some(open) == after => return Ok(Claim::Held),
                State::Open { after: open } => return Ok(Claim::Open { after: open }),
            }
        }
        Err(self.unavailable(
            format_args!("claiming command {command_id:?} of {actor}"),
            if missing { "the stream is missing" } else { "other writers of the command kept moving its index entry" },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(versions: &str, after: Option<&str>) -> Result<Entry, String> {
        let mut h = codec::headers(0, 0, "c.1", 0, None);
        h.insert(VERSIONS, versions);
        if let Some(after) = after {
            h.insert(AFTER, after);
        }
        entry(7, &h)
    }

    #[test]
    fn reads_claims_and_records() {
        let claim = parse("3-5", Some("12")).unwrap();
        assert_eq!(
            claim,
            Entry { seq: 7, first_version: 3, last_version: 5, command_id: "c.1".into(), after: Some(12) }
        );
        let record = parse("1-0", None).unwrap();
        assert_eq!((record.first_version, record.last_version, record.after), (1, 0, None), "accepted at 0");
        assert_eq!(entry(1, &headers((4, 4), "c", Some(0), 9)).unwrap().after, Some(0));
    }

    #[test]
    fn refuses_what_no_writer_makes() {
        for (versions, after) in [
            ("0-0", Some("1")),
            ("5-3", None),
            ("x-1", Some("1")),
            ("7", Some("1")),
            ("", None),
            ("3-5", None),
            ("1-0", Some("4")),
            ("3-5", Some("-1")),
            ("1-99999999999999999999", Some("1")),
        ] {
            assert!(parse(versions, after).is_err(), "{versions:?} {after:?}");
        }
        assert!(entry(1, &HeaderMap::new()).is_err());
    }
}
