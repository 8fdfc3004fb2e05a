//! Contacts, keyed by E.164 phone, with a tag index and per-caller call
//! statistics.
//!
//! Changes to one contact are serialised by a lock per phone (striped), so
//! two runs tagging the same contact at once both land. The tag index is
//! kept a superset of the truth without a sled transaction (which makes
//! sled write its log to disk on the spot, twice, and was most of a
//! contact step's cost): entries for added tags are written before the
//! contact, entries for removed tags after it, and readers of the index
//! check the contact itself. A crash in between leaves at most an extra
//! entry, which readers skip. Call statistics live in their
//! own tree (`call_stats`), written by ingestion whether or not a contact
//! exists: ingestion must not create contacts (a workflow's
//! `create_contact` reports whether it created one), yet the counters must
//! be right from the first call. Both are stored compact (`compact.rs`),
//! records an earlier version stored as JSON read as before.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// A contact as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub phone: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub tags: BTreeSet<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// From the call statistics; not stored with the contact.
    #[serde(default)]
    pub last_call_at: Option<Timestamp>,
    /// Calls by event kind (`call.missed: 3`); from the call statistics.
    #[serde(default)]
    pub calls: BTreeMap<String, u64>,
}

impl Contact {
    pub fn new(phone: &str, now: Timestamp) -> Contact {
        Contact {
            phone: phone.to_string(),
            name: None,
            country: None,
            tags: BTreeSet::new(),
            fields: BTreeMap::new(),
            created_at: now,
            updated_at: now,
            last_call_at: None,
            calls: BTreeMap::new(),
        }
    }
}

impl Contact {
    /// The stored form (`compact.rs`), without the call statistics (kept
    /// in their own tree) or the phone (the key): name, country, the tags
    /// (a count, then each), the fields (a count, then each name and
    /// value), created and updated.
    fn encode(&self) -> Vec<u8> {
        let mut w = super::compact::Writer::new(128);
        w.opt_str(self.name.as_deref())
            .opt_str(self.country.as_deref())
            .u64(self.tags.len() as u64);
        for tag in &self.tags {
            w.str(tag);
        }
        w.u64(self.fields.len() as u64);
        for (name, value) in &self.fields {
            w.str(name).str(value);
        }
        w.time(self.created_at).time(self.updated_at).finish()
    }

    /// The contact stored under `phone`, compact or, from an earlier
    /// version, JSON; without call statistics.
    fn decode(phone: &str, stored: &[u8]) -> Result<Contact, StoreError> {
        let read = |r: &mut super::compact::Reader<'_>| {
            let text = |s: Option<&str>| s.map(str::to_string);
            let name = text(r.opt_str("name")?);
            let country = text(r.opt_str("country")?);
            let mut tags = BTreeSet::new();
            for _ in 0..r.u64("the number of tags")? {
                tags.insert(r.str("a tag")?.to_string());
            }
            let mut fields = BTreeMap::new();
            for _ in 0..r.u64("the number of fields")? {
                let name = r.str("a field's name")?.to_string();
                fields.insert(name, r.str("a field's value")?.to_string());
            }
            Ok(Contact {
                phone: phone.to_string(),
                name,
                country,
                tags,
                fields,
                created_at: r.time("created_at")?,
                updated_at: r.time("updated_at")?,
                last_call_at: None,
                calls: BTreeMap::new(),
            })
        };
        super::compact::read_record(stored, read)
            .map_err(|e| StoreError::Corrupt(format!("contact {phone}: {e}")))
    }
}

/// Calls seen from one number.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallStats {
    pub last_call_at: Option<Timestamp>,
    pub calls: BTreeMap<String, u64>,
}

impl CallStats {
    /// The stored form (`compact.rs`): the last call, the number of kinds,
    /// then each kind and its count.
    fn encode(&self) -> Vec<u8> {
        let mut w = super::compact::Writer::new(64);
        w.opt_time(self.last_call_at).u64(self.calls.len() as u64);
        for (kind, count) in &self.calls {
            w.str(kind).u64(*count);
        }
        w.finish()
    }

    /// Statistics as stored, compact or, from an earlier version, JSON.
    fn decode(stored: &[u8]) -> Result<CallStats, StoreError> {
        let read = |r: &mut super::compact::Reader<'_>| {
            let last_call_at = r.opt_time("last_call_at")?;
            let kinds = r.u64("the number of kinds")?;
            let mut calls = BTreeMap::new();
            for _ in 0..kinds {
                let kind = r.str("a kind")?.to_string();
                calls.insert(kind, r.u64("a count")?);
            }
            Ok(CallStats {
                last_call_at,
                calls,
            })
        };
        super::compact::read_record(stored, read)
            .map_err(|e| StoreError::Corrupt(format!("call statistics: {e}")))
    }
}

/// The result of a change.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    pub created: bool,
    pub contact: Option<Contact>,
}

/// `tag \0 phone`: listing a tag is a prefix scan.
fn tag_key(tag: &str, phone: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(tag.len() + 1 + phone.len());
    k.extend_from_slice(tag.as_bytes());
    k.push(0);
    k.extend_from_slice(phone.as_bytes());
    k
}

impl Store {
    /// The contact with this phone, with its call statistics.
    pub fn contact(&self, phone: &str) -> Result<Option<Contact>, StoreError> {
        match self.contacts.get(phone.as_bytes())? {
            None => Ok(None),
            Some(bytes) => {
                let mut c = Contact::decode(phone, &bytes)?;
                self.merge_stats(&mut c)?;
                Ok(Some(c))
            }
        }
    }

    fn merge_stats(&self, c: &mut Contact) -> Result<(), StoreError> {
        if let Some(bytes) = self.call_stats.get(c.phone.as_bytes())? {
            let stats = CallStats::decode(&bytes)?;
            c.last_call_at = stats.last_call_at;
            c.calls = stats.calls;
        }
        Ok(())
    }

    /// Change a contact atomically (under its phone's lock). `create` is
    /// the contact to start from when none exists (`None`: leave absent
    /// contacts alone).
    pub fn modify_contact(
        &self,
        phone: &str,
        now: Timestamp,
        create: Option<Contact>,
        change: impl FnOnce(&mut Contact),
    ) -> Result<Changed, StoreError> {
        let _locked = self.contact_lock(phone);
        let (mut contact, created) = match self.contacts.get(phone.as_bytes())? {
            Some(bytes) => (Contact::decode(phone, &bytes)?, false),
            None => match create {
                Some(new) => (new, true),
                None => {
                    return Ok(Changed {
                        created: false,
                        contact: None,
                    })
                }
            },
        };
        let old_tags = if created {
            BTreeSet::new()
        } else {
            contact.tags.clone()
        };
        change(&mut contact);
        contact.phone = phone.to_string();
        contact.updated_at = now;
        for new in contact.tags.difference(&old_tags) {
            self.tags.insert(tag_key(new, phone), &[] as &[u8])?;
        }
        // Statistics are merged on read, never stored here.
        self.contacts.insert(phone.as_bytes(), contact.encode())?;
        for gone in old_tags.difference(&contact.tags) {
            self.tags.remove(tag_key(gone, phone))?;
        }
        self.merge_stats(&mut contact)?;
        Ok(Changed {
            created,
            contact: Some(contact),
        })
    }

    /// Remove a contact and its tag index entries. Returns whether it existed.
    pub fn delete_contact(&self, phone: &str) -> Result<bool, StoreError> {
        let _locked = self.contact_lock(phone);
        let Some(bytes) = self.contacts.remove(phone.as_bytes())? else {
            return Ok(false);
        };
        let contact = Contact::decode(phone, &bytes)?;
        for tag in &contact.tags {
            self.tags.remove(tag_key(tag, phone))?;
        }
        Ok(true)
    }

    /// The lock that serialises changes to this phone's contact.
    fn contact_lock(&self, phone: &str) -> std::sync::MutexGuard<'_, ()> {
        super::lock_stripe(&self.contact_locks, phone.as_bytes())
    }

    /// A page of contacts in phone order, after `cursor` (a phone), with
    /// the tag filter answered from the index and `q` matched against the
    /// phone and name (case-insensitive). Returns the page and the cursor of
    /// the next one.
    pub fn list_contacts(
        &self,
        tag: Option<&str>,
        q: Option<&str>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Contact>, Option<String>), StoreError> {
        let q = q.map(str::to_lowercase).filter(|q| !q.is_empty());
        let matches = |c: &Contact| match &q {
            None => true,
            Some(q) => {
                c.phone.to_lowercase().contains(q)
                    || c.name
                        .as_deref()
                        .is_some_and(|n| n.to_lowercase().contains(q))
                    || c.fields.values().any(|v| v.to_lowercase().contains(q))
            }
        };
        let mut out = Vec::new();
        let mut last: Option<String> = None;
        let mut more = false;
        let mut take = |c: Contact, out: &mut Vec<Contact>| -> bool {
            if out.len() == limit {
                more = true;
                return false;
            }
            last = Some(c.phone.clone());
            if matches(&c) {
                out.push(c);
            }
            true
        };
        match tag {
            Some(tag) => {
                let prefix = tag_key(tag, "");
                let start = match cursor {
                    Some(c) => {
                        let mut k = tag_key(tag, c);
                        k.push(0);
                        k
                    }
                    None => prefix.clone(),
                };
                for item in self.tags.range(start..) {
                    let (key, _) = item?;
                    if !key.starts_with(&prefix) {
                        break;
                    }
                    let phone = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                    // The index may name a contact that no longer has the
                    // tag (see the module docs).
                    let Some(c) = self.contact(&phone)?.filter(|c| c.tags.contains(tag)) else {
                        continue;
                    };
                    if !take(c, &mut out) {
                        break;
                    }
                }
            }
            None => {
                let start = match cursor {
                    Some(c) => {
                        let mut k = c.as_bytes().to_vec();
                        k.push(0);
                        k
                    }
                    None => Vec::new(),
                };
                for item in self.contacts.range(start..) {
                    let (phone, bytes) = item?;
                    let phone = std::str::from_utf8(&phone)
                        .map_err(|e| StoreError::Corrupt(format!("a contact's phone: {e}")))?;
                    let mut c = Contact::decode(phone, &bytes)?;
                    self.merge_stats(&mut c)?;
                    if !take(c, &mut out) {
                        break;
                    }
                }
            }
        }
        Ok((out, if more { last } else { None }))
    }

    /// Call statistics for a number, whether or not it is a contact.
    pub fn call_stats(&self, phone: &str) -> Result<CallStats, StoreError> {
        match self.call_stats.get(phone.as_bytes())? {
            None => Ok(CallStats::default()),
            Some(bytes) => CallStats::decode(&bytes),
        }
    }
}

/// Update call statistics as the inbox stores a new event (so a duplicate
/// never counts twice). Acceptances of other events may bump the same
/// phone's statistics at the same time: the update is a compare-and-swap
/// that starts again from what the other wrote.
pub(super) fn bump_stats(
    stats_tree: &sled::Tree,
    phone: &str,
    kind: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    super::update_guessing_absent(stats_tree, phone.as_bytes(), |stored| {
        let mut stats = match stored {
            Some(bytes) => CallStats::decode(bytes).unwrap_or_default(),
            None => CallStats::default(),
        };
        *stats.calls.entry(kind.to_string()).or_insert(0) += 1;
        if stats.last_call_at.is_none_or(|last| at > last) {
            stats.last_call_at = Some(at);
        }
        Some(stats.encode())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::temp_store as store;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    /// Statistics are stored compact; those an earlier version stored as
    /// JSON are read and counted on from.
    #[test]
    fn call_statistics_stored_as_json_are_counted_on_and_rewritten_compact() {
        let (_d, s) = store();
        let p = "+5215512345678";
        let old = r#"{"last_call_at":"2026-05-14T14:00:00Z","calls":{"call.missed":2,"call.incoming":3}}"#;
        s.call_stats.insert(p, old.as_bytes()).unwrap();
        let later: Timestamp = "2026-05-14T15:00:00.5Z".parse().unwrap();
        bump_stats(&s.call_stats, p, "call.missed", later).unwrap();
        let earlier: Timestamp = "2026-05-14T14:30:00Z".parse().unwrap();
        bump_stats(&s.call_stats, p, "call.ended", earlier).unwrap();
        let stored = s.call_stats.get(p).unwrap().unwrap();
        assert_eq!(stored[0], super::super::compact::MARK);
        let stats = s.call_stats(p).unwrap();
        assert_eq!(
            stats.last_call_at,
            Some(later),
            "the latest call, not the last counted"
        );
        let counts: Vec<(&str, u64)> = stats.calls.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            counts,
            [("call.ended", 1), ("call.incoming", 3), ("call.missed", 3)]
        );
        assert_eq!(CallStats::decode(&stats.encode()).unwrap(), stats);
        assert_eq!(
            s.call_stats("+5215500000000").unwrap(),
            CallStats::default()
        );
    }

    /// Contacts are stored compact, every field read back; one an earlier
    /// version stored as JSON is read, changed and rewritten compact.
    #[test]
    fn contacts_are_stored_compact_and_json_contacts_still_read() {
        let (_d, s) = store();
        let p = "+5215512345678";
        let mut full = Contact::new(p, now());
        full.name = Some("Ana María".into());
        full.country = Some("MX".into());
        full.tags = ["lead".to_string(), "vip".to_string()].into();
        full.fields = [
            ("plan".to_string(), "pro".to_string()),
            ("empty".to_string(), String::new()),
        ]
        .into();
        full.updated_at = Timestamp::new(1_800_000_100, 123_456_789).unwrap();
        for c in [full.clone(), Contact::new(p, now())] {
            let stored = c.encode();
            assert_eq!(stored[0], super::super::compact::MARK);
            assert!(stored.len() * 2 < serde_json::to_vec(&c).unwrap().len());
            assert_eq!(Contact::decode(p, &stored).unwrap(), c);
            assert!(Contact::decode(p, &stored[..stored.len() - 1]).is_err());
            let longer = [stored.as_slice(), &[0]].concat();
            assert!(Contact::decode(p, &longer).is_err());
        }

        let q = "+5215587654321";
        let old = r#"{"phone":"+5215587654321","name":"Luis","country":"MX","tags":["lead"],"fields":{"plan":"free"},"created_at":"2026-05-14T14:00:00Z","updated_at":"2026-05-14T14:00:00Z","last_call_at":null,"calls":{}}"#;
        s.contacts.insert(q, old.as_bytes()).unwrap();
        s.tags.insert(tag_key("lead", q), &[] as &[u8]).unwrap();
        let read = s.contact(q).unwrap().expect("the JSON contact reads");
        assert_eq!(
            (read.name.as_deref(), read.fields["plan"].as_str()),
            (Some("Luis"), "free")
        );
        s.modify_contact(q, now(), None, |c| {
            c.tags.insert("called".into());
        })
        .unwrap();
        assert_eq!(
            s.contacts.get(q).unwrap().unwrap()[0],
            super::super::compact::MARK
        );
        let changed = s.contact(q).unwrap().unwrap();
        assert_eq!(changed.tags.len(), 2);
        assert_eq!(
            (changed.created_at, changed.updated_at),
            (read.created_at, now())
        );

        s.modify_contact(p, now(), Some(full.clone()), |_| {})
            .unwrap();
        let by_tag = s.list_contacts(Some("lead"), None, 10, None).unwrap().0;
        assert_eq!(by_tag.len(), 2, "{by_tag:?}");
        let listed: Vec<String> = s
            .list_contacts(None, None, 10, None)
            .unwrap()
            .0
            .into_iter()
            .map(|c| c.phone)
            .collect();
        assert_eq!(listed, [p, q]);
        assert!(s.delete_contact(p).unwrap());
        assert!(s.contact(p).unwrap().is_none());
    }

    #[test]
    fn create_only_when_absent_and_the_tag_index_follows_changes() {
        let (_d, s) = store();
        let p = "+5215512345678";
        let mut new = Contact::new(p, now());
        new.tags.insert("lead".into());
        let a = s
            .modify_contact(p, now(), Some(new.clone()), |_| {})
            .unwrap();
        assert!(a.created);
        let b = s
            .modify_contact(p, now(), Some(new), |c| {
                c.tags.remove("lead");
                c.tags.insert("vip".into());
            })
            .unwrap();
        assert!(!b.created);
        let (vips, _) = s.list_contacts(Some("vip"), None, 10, None).unwrap();
        assert_eq!(vips.len(), 1);
        let (leads, _) = s.list_contacts(Some("lead"), None, 10, None).unwrap();
        assert!(leads.is_empty(), "a removed tag leaves the index");
        assert!(s
            .modify_contact("+34600000000", now(), None, |_| {})
            .unwrap()
            .contact
            .is_none());
        assert!(s.delete_contact(p).unwrap());
        assert!(s
            .list_contacts(Some("vip"), None, 10, None)
            .unwrap()
            .0
            .is_empty());
    }

    /// An index entry left behind (a crash between the contact and its
    /// index) does not make a contact show up under a tag it lacks.
    #[test]
    fn a_stale_tag_index_entry_is_not_a_match() {
        let (_dir, store) = store();
        let phone = "+5215512345678";
        store
            .modify_contact(phone, now(), Some(Contact::new(phone, now())), |c| {
                c.tags.insert("lead".into());
            })
            .unwrap();
        store
            .tags
            .insert(tag_key("vip", phone), &[] as &[u8])
            .unwrap();
        let (vips, _) = store.list_contacts(Some("vip"), None, 10, None).unwrap();
        assert!(vips.is_empty(), "{vips:?}");
        let (leads, _) = store.list_contacts(Some("lead"), None, 10, None).unwrap();
        assert_eq!(leads.len(), 1);
    }

    #[test]
    fn pages_follow_the_cursor_without_gaps_or_repeats() {
        let (_d, s) = store();
        for i in 0..25 {
            let p = format!("+5215500000{i:03}");
            let mut c = Contact::new(&p, now());
            c.tags
                .insert(if i % 2 == 0 { "even" } else { "odd" }.into());
            s.modify_contact(&p, now(), Some(c), |_| {}).unwrap();
        }
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = s.list_contacts(None, None, 10, cursor.as_deref()).unwrap();
            seen.extend(page.into_iter().map(|c| c.phone));
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(seen.len(), 25);
        let mut sorted = seen.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), 25);
        let (even, next) = s.list_contacts(Some("even"), None, 5, None).unwrap();
        assert_eq!(even.len(), 5);
        let (rest, _) = s
            .list_contacts(Some("even"), None, 50, next.as_deref())
            .unwrap();
        assert_eq!(rest.len(), 8);
    }

    #[test]
    fn concurrent_tagging_of_one_contact_loses_nothing() {
        let (_d, s) = store();
        let p = "+5215512345678";
        std::thread::scope(|scope| {
            for t in 0..8 {
                let s = &s;
                scope.spawn(move || {
                    for i in 0..25 {
                        let tag = format!("t{t}-{i}");
                        s.modify_contact(p, now(), Some(Contact::new(p, now())), move |c| {
                            c.tags.insert(tag.clone());
                        })
                        .unwrap();
                    }
                });
            }
        });
        assert_eq!(s.contact(p).unwrap().unwrap().tags.len(), 200);
    }
}
