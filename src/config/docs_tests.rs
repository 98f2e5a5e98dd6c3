//! `docs/inventory.md` and `docs/playbook.md` list every key the parser
//! accepts, and nothing else: the key sets come from the serde structs
//! themselves (the field names their derived `Deserialize` asks for).

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserialize, Visitor};

use super::raw::*;

/// The field names a derived `Deserialize` struct asks for.
fn keys<T: Deserialize<'static>>() -> BTreeSet<String> {
    match T::deserialize(FieldNames) {
        Err(FoundFields(fields)) => fields.iter().map(|f| (*f).to_owned()).collect(),
        Ok(_) => unreachable!("FieldNames never yields a value"),
    }
}

struct FieldNames;

#[derive(Debug)]
struct FoundFields(&'static [&'static str]);

impl fmt::Display for FoundFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for FoundFields {}

impl de::Error for FoundFields {
    fn custom<T: fmt::Display>(_: T) -> Self {
        FoundFields(&[])
    }
}

impl<'de> de::Deserializer<'de> for FieldNames {
    type Error = FoundFields;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, FoundFields> {
        Err(FoundFields(&[]))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, FoundFields> {
        Err(FoundFields(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The keys a document lists per section: `## SECTION` headings, then
/// table rows whose first cell is a `` `key` ``.
fn documented(text: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut sections: Vec<(String, BTreeSet<String>)> = Vec::new();
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            sections.push((heading.trim().to_owned(), BTreeSet::new()));
        } else if let Some(row) = line.strip_prefix("| `")
            && let Some((key, _)) = row.split_once('`')
            && let Some((_, keys)) = sections.last_mut()
        {
            keys.insert(key.to_owned());
        }
    }
    sections
}

fn check(file: &str, text: &str, expected: &[(&str, BTreeSet<String>)]) {
    let found = documented(text);
    for (section, keys) in expected {
        let Some((_, listed)) = found.iter().find(|(name, _)| name == section) else {
            panic!("{file} has no section `## {section}`");
        };
        let undocumented: Vec<_> = keys.difference(listed).collect();
        let unknown: Vec<_> = listed.difference(keys).collect();
        assert!(
            undocumented.is_empty() && unknown.is_empty(),
            "{file}, {section}: keys the parser accepts but the docs do not list: {undocumented:?}; \
             keys the docs list but the parser refuses: {unknown:?}"
        );
    }
}

#[test]
fn docs_list_every_key() {
    check(
        "docs/inventory.md",
        include_str!("../../docs/inventory.md"),
        &[
            ("top level", keys::<RawInventory>()),
            ("[defaults]", keys::<RawDefaults>()),
            ("[balancers.NAME]", keys::<RawBalancer>()),
            ("[zones.NAME]", keys::<RawZone>()),
            ("hosts", keys::<RawHost>()),
            ("[sources.NAME]", keys::<RawSource>()),
            ("[state]", keys::<RawState>()),
        ],
    );
    check(
        "docs/playbook.md",
        include_str!("../../docs/playbook.md"),
        &[
            ("top level", keys::<RawPlaybook>()),
            ("[strategy]", keys::<RawStrategy>()),
            ("[window]", keys::<RawWindow>()),
            ("[drain]", keys::<RawDrain>()),
            ("[[steps]]", keys::<RawStep>()),
            ("[health]", keys::<RawHealth>()),
            ("[watch]", keys::<RawWatch>()),
            ("[[probes]]", keys::<RawProbe>()),
            ("[[gates]]", keys::<RawGate>()),
            ("[notify]", keys::<RawNotify>()),
        ],
    );
}

/// The checker itself: a key missing from the docs, or one the parser
/// does not know, is caught.
#[test]
fn a_missing_or_unknown_key_is_caught() {
    let text = "## [drain]\n| `timeout` | x |\n| `retry` | y |\n";
    let result = std::panic::catch_unwind(|| {
        check("t.md", text, &[("[drain]", keys::<RawDrain>())]);
    });
    let message = *result.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("\"settle\""), "{message}");
    assert!(message.contains("\"retry\""), "{message}");
}
