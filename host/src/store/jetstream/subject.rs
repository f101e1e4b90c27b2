//! Actor ids as NATS subject tokens, and the names derived from them.
//!
//! # The token encoding
//!
//! A subject token must be non-empty and must not hold `.`, `*`, `>` or
//! whitespace; key-value keys allow even less (`[-/_=.A-Za-z0-9]`). Ids are
//! arbitrary strings, so every id (and aggregate, domain and namespace) is
//! encoded byte by byte over its UTF-8:
//!
//! - `A`–`Z`, `a`–`z`, `0`–`9` and `-` stay as they are;
//! - every other byte, `_` included, becomes `_` and two upper-case hex
//!   digits (`a.b` → `a_2Eb`, `a_b` → `a_5Fb`, `ü` → `_C3_BC`);
//! - the empty string becomes a lone `_`, which no other string produces.
//!
//! Typical ids (`order-42`, uuids) stay readable in `nats` tooling. The
//! encoding is injective: each output character either is the input byte or
//! starts an escape, so the input can be read back exactly, and [`decode_token`]
//! accepts only the canonical form (upper-case hex, no escaped safe bytes), so
//! `decode_token(t) == Some(s)` exactly when `t == encode_token(s)`.
//!
//! Escapes triple the size of other bytes, and a NATS protocol line is at most
//! 4 KiB by default (`max_control_line`), so a whole event subject may be at
//! most [`MAX_SUBJECT_BYTES`]: an id of up to about 2,900 plain characters or
//! 960 bytes of anything else. The store refuses to write to an actor whose
//! subject would be longer (there cannot be any events to read there).

use crate::store::ActorId;
use sha2::{Digest, Sha256};

/// The longest event subject the store writes to: the server's default
/// 4096-byte protocol line, less room for API prefixes, the reply inbox and
/// the sizes that share the line.
pub const MAX_SUBJECT_BYTES: usize = 3000;

fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-'
}

/// Encodes any string as one subject token (see the [module docs](self)).
pub fn encode_token(s: &str) -> String {
    let mut out = String::with_capacity(s.len().max(1));
    push_token(&mut out, s);
    out
}

/// Appends [`encode_token`]`(s)` to `out`: a subject is built in one buffer.
fn push_token(out: &mut String, s: &str) {
    if s.is_empty() {
        out.push('_');
        return;
    }
    // Generated ids and hashes are plain already.
    if s.bytes().all(is_plain) {
        out.push_str(s);
        return;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in s.as_bytes() {
        if is_plain(byte) {
            out.push(byte as char);
        } else {
            out.push('_');
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0xF)] as char);
        }
    }
}

/// `<prefix>.<aggregate>.<id>`, each id encoded as a token, in one allocation
/// (on every append: `format!` with two encoded tokens made three).
fn actor_name(prefix: &str, actor: &ActorId) -> String {
    let mut out = String::with_capacity(prefix.len() + actor.aggregate.len() + actor.id.len() + 2);
    out.push_str(prefix);
    out.push('.');
    push_token(&mut out, &actor.aggregate);
    out.push('.');
    push_token(&mut out, &actor.id);
    out
}

/// Decodes a token made by [`encode_token`]; `None` for anything [`encode_token`] cannot produce.
pub fn decode_token(token: &str) -> Option<String> {
    if token == "_" {
        return Some(String::new());
    }
    let hex = |d: u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'A'..=b'F' => Some(d - b'A' + 10),
        _ => None,
    };
    let mut bytes = Vec::with_capacity(token.len());
    let mut rest = token.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if is_plain(first) {
            bytes.push(first);
            rest = tail;
        } else if first == b'_' {
            let [hi, lo, tail @ ..] = tail else { return None };
            let byte = hex(*hi)? << 4 | hex(*lo)?;
            if is_plain(byte) {
                return None;
            }
            bytes.push(byte);
            rest = tail;
        } else {
            return None;
        }
    }
    if bytes.is_empty() {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// The names one store uses for one domain: subjects, keys and message ids.
#[derive(Debug, Clone)]
pub(super) struct Names {
    /// `aether.ev.<domain>` or `aether.ns.<namespace>.ev.<domain>`.
    subject_prefix: String,
    /// `aether.ix.<domain>` or `aether.ns.<namespace>.ix.<domain>`.
    index_prefix: String,
    domain: String,
}

impl Names {
    pub(super) fn new(stream_subject_prefix: &str, index_prefix: &str, domain: &str) -> Self {
        let domain = encode_token(domain);
        Self {
            subject_prefix: format!("{stream_subject_prefix}.{domain}"),
            index_prefix: format!("{index_prefix}.{domain}"),
            domain,
        }
    }

    /// The subject of one command in the command index:
    /// `<index prefix>.<domain>.<aggregate>.<id>.<hash>`, the hash being the
    /// command's [`message_id`] (128 bits of SHA-256 over the actor's event
    /// subject and the command id, in hex): any command id fits, and two
    /// ids share a subject only by a collision as likely as two random
    /// UUIDs'. Its last message says where the command's events are (see
    /// `index`): a first claim expects the subject empty, a takeover the
    /// sequence of the entry it replaces.
    /// `None` when the actor's event subject would be too long.
    pub(super) fn index_subject(&self, actor: &ActorId, command_id: &str) -> Option<String> {
        let events = self.subject(actor)?;
        let mut subject = actor_name(&self.index_prefix, actor);
        subject.push('.');
        subject.push_str(&message_id(&events, command_id));
        Some(subject)
    }

    /// The actor's event subject, `None` if it would be longer than
    /// [`MAX_SUBJECT_BYTES`].
    pub(super) fn subject(&self, actor: &ActorId) -> Option<String> {
        let subject = actor_name(&self.subject_prefix, actor);
        (subject.len() <= MAX_SUBJECT_BYTES).then_some(subject)
    }

    /// The filter of the event subjects of `aggregate`'s actors, or of every actor.
    pub(super) fn actors_filter(&self, aggregate: Option<&str>) -> String {
        match aggregate {
            Some(aggregate) => format!("{}.{}.*", self.subject_prefix, encode_token(aggregate)),
            None => format!("{}.*.*", self.subject_prefix),
        }
    }

    /// The actor whose event subject `subject` is; `None` for any other subject.
    pub(super) fn actor_of(&self, subject: &str) -> Option<ActorId> {
        let rest = subject.strip_prefix(&self.subject_prefix)?.strip_prefix('.')?;
        let (aggregate, id) = rest.split_once('.')?;
        Some(ActorId::new(decode_token(aggregate)?, decode_token(id)?))
    }

    /// The actor's key in the snapshot bucket: `<domain>.<aggregate>.<id>`.
    pub(super) fn snapshot_key(&self, actor: &ActorId) -> String {
        actor_name(&self.domain, actor)
    }
}

/// The last token of a command's index subject (and the `Nats-Msg-Id` the
/// store sent before the index). Clients reuse idempotency keys across
/// actors, so it covers the actor's subject too; hashed, so that any
/// command id fits in one token of fixed size. 128 bits of SHA-256 in hex:
/// a collision is as likely as one of two random UUIDs.
pub(super) fn message_id(subject: &str, command_id: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hash = Sha256::new();
    hash.update(subject.as_bytes());
    hash.update([0]);
    hash.update(command_id.as_bytes());
    let digest = hash.finalize();
    let mut id = String::with_capacity(32);
    for byte in &digest[..16] {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn awkward() -> Vec<String> {
        let mut ids: Vec<String> = [
            "",
            "_",
            "__",
            "_5F",
            "_2E",
            ".",
            "..",
            "a.b",
            "a b",
            "a\tb",
            "a\nb",
            "a\r\nb",
            "*",
            ">",
            "a.>",
            "a.*.b",
            "ünï/cødé",
            "日本語",
            "🦀",
            "%2E",
            "$JS.API",
            "-",
            "--x",
            "A",
            "a",
            "0",
            "\0",
            "\u{7f}",
            "a=b",
            "a/b",
            "KV_x",
            "a_2Eb",
            "a\u{a0}b",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        ids.push("x".repeat(10_000));
        ids.push("ü".repeat(1_000));
        ids
    }

    /// A valid single subject token and a valid key-value key token.
    fn is_token(t: &str) -> bool {
        !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    #[test]
    fn every_string_becomes_one_token_and_comes_back() {
        for id in awkward() {
            let token = encode_token(&id);
            assert!(is_token(&token), "{id:?} -> {token:?} is not a single plain token");
            assert_eq!(decode_token(&token).as_deref(), Some(id.as_str()), "{id:?} round-trips");
        }
    }

    #[test]
    fn two_different_ids_never_share_a_token() {
        let mut ids: HashSet<String> = awkward().into_iter().collect();
        // Every string of up to two characters over an alphabet that mixes
        // plain bytes, escape-looking text and multi-byte characters.
        let alphabet = ["", "a", "A", "_", "2", "E", "5F", ".", " ", "ü", "-", "*"];
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    ids.insert(format!("{a}{b}{c}"));
                }
            }
        }
        let tokens: HashSet<String> = ids.iter().map(|id| encode_token(id)).collect();
        assert_eq!(tokens.len(), ids.len(), "distinct ids must give distinct tokens");
    }

    #[test]
    fn pseudo_random_strings_round_trip() {
        // A fixed xorshift, so failures reproduce.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut seen = HashSet::new();
        for _ in 0..5_000 {
            let len = (next() % 12) as usize;
            let s: String = (0..len)
                .map(|_| match next() % 4 {
                    0 => char::from(b'!' + (next() % 94) as u8),
                    1 => char::from_u32(0x80 + (next() % 0x2000) as u32).unwrap_or('?'),
                    2 => ['.', '_', '*', '>', ' '][(next() % 5) as usize],
                    _ => char::from(b'a' + (next() % 3) as u8),
                })
                .collect();
            let token = encode_token(&s);
            assert!(is_token(&token));
            assert_eq!(decode_token(&token), Some(s.clone()));
            seen.insert((s, token));
        }
        let tokens: HashSet<_> = seen.iter().map(|(_, t)| t).collect();
        let strings: HashSet<_> = seen.iter().map(|(s, _)| s).collect();
        assert_eq!(tokens.len(), strings.len());
    }

    #[test]
    fn plain_ids_stay_readable() {
        assert_eq!(encode_token("order-42"), "order-42");
        assert_eq!(encode_token("a.b"), "a_2Eb");
        assert_eq!(encode_token("a_b"), "a_5Fb");
        assert_eq!(encode_token("ü"), "_C3_BC");
        assert_eq!(encode_token(""), "_");
    }

    #[test]
    fn only_canonical_tokens_decode() {
        for bad in ["", "a.b", "a b", "_2e", "_41", "__", "_2", "_G0", "a*", "_FF", "a_"] {
            assert_eq!(decode_token(bad), None, "{bad:?} is not an encoding");
        }
    }

    #[test]
    fn an_event_subject_names_its_actor() {
        let names = Names::new("aether.ev", "aether.ix", "bank");
        for id in awkward() {
            let actor = ActorId::new("Acc.ount", id);
            if let Some(subject) = names.subject(&actor) {
                assert_eq!(names.actor_of(&subject), Some(actor));
            }
        }
        assert_eq!(names.actors_filter(None), "aether.ev.bank.*.*");
        assert_eq!(names.actors_filter(Some("A b")), "aether.ev.bank.A_20b.*");
        assert_eq!(names.actor_of("aether.ev.other.A.b"), None);
        assert_eq!(names.actor_of("aether.ev.bank.A"), None);
    }

    #[test]
    fn names_keep_domains_and_actors_apart() {
        let names = Names::new("aether.ev", "aether.ix", "bank.v2");
        let actor = ActorId::new("Account", "a.b");
        assert_eq!(names.subject(&actor).unwrap(), "aether.ev.bank_2Ev2.Account.a_2Eb");
        // The store's one-buffer builder agrees with the naming module.
        let nats = crate::names::NatsNames::new(Some("t"));
        let fast = Names::new(&nats.events_prefix(), &nats.index_prefix(), "bank.v2").subject(&actor).unwrap();
        assert_eq!(fast, nats.event_subject("bank.v2", "Account", "a.b"));
        let index = names.index_subject(&actor, "c.1 *>").unwrap();
        let hash = message_id("aether.ev.bank_2Ev2.Account.a_2Eb", "c.1 *>");
        assert_eq!(index, format!("aether.ix.bank_2Ev2.Account.a_2Eb.{hash}"));
        assert_ne!(names.index_subject(&actor, "c2"), Some(index), "one subject per command id");
        assert_eq!(names.snapshot_key(&actor), "bank_2Ev2.Account.a_2Eb");
        assert!(names.subject(&ActorId::new("Account", "x".repeat(MAX_SUBJECT_BYTES))).is_none());
        let subject = names.subject(&actor).unwrap();
        assert_ne!(
            message_id(&subject, "c1"),
            message_id(&names.subject(&ActorId::new("Account", "a")).unwrap(), "c1")
        );
        assert_eq!(message_id(&subject, "c1").len(), 32);
    }
}
