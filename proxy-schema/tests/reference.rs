//! docs/configuration.md's reference names every key of the configuration schema,
//! and no key the schema does not have.
//!
//! The schema's keys are asked of the schema itself: serde refuses an unknown key
//! with the list of the keys the table takes ("unknown field `__probe__`, expected
//! one of `name`, `bind`, ..."), so a probe document with one unknown key at a path
//! lists that table's keys, and a probe one level down tells which of them are
//! tables (or arrays of tables) in turn. Keys are dotted paths without array
//! indices: `listener.route.sni`, `pool.discovery.hold_empty`.
//!
//! The reference's convention (also written at the top of its Reference section): a
//! reference table's header names its section in its first cell (`` `[pool.health]`
//! key ``, or several sections that take the same keys); the first cell of each row
//! names keys of that section in backticks. A section's own key (`pool.health`) is
//! documented by its keys.

use std::collections::BTreeSet;

use proxy_schema::config::Config;
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

const PROBE: &str = "__probe__";

/// One step of a probe path: a key, holding a table or an array of tables.
#[derive(Clone)]
struct Step {
    key: String,
    array: bool,
}

/// The keys of the table at `path`, if it is a table the schema describes.
fn table_keys(path: &[Step]) -> Option<Vec<String>> {
    let mut value = toml::Value::Table(toml::Table::from_iter([(
        PROBE.to_owned(),
        toml::Value::Integer(1),
    )]));
    for step in path.iter().rev() {
        if step.array {
            value = toml::Value::Array(vec![value]);
        }
        value = toml::Value::Table(toml::Table::from_iter([(step.key.clone(), value)]));
    }
    let error = value
        .try_into::<Config>()
        .expect_err("a probe key is never accepted");
    let message = error.message();
    let expected = message.strip_prefix(&format!("unknown field `{PROBE}`, "))?;
    Some(
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect(),
    )
}

/// Every key path of the schema under `path`, sections included.
fn schema_keys(path: &mut Vec<Step>, out: &mut BTreeSet<String>) {
    let keys = table_keys(path).expect("the path names a table of the schema");
    for key in keys {
        let dotted: Vec<&str> = path
            .iter()
            .map(|s| s.key.as_str())
            .chain([key.as_str()])
            .collect();
        out.insert(dotted.join("."));
        for array in [false, true] {
            path.push(Step {
                key: key.clone(),
                array,
            });
            let is_table = table_keys(path).is_some();
            if is_table {
                schema_keys(path, out);
            }
            path.pop();
            if is_table {
                break;
            }
        }
    }
}

/// The keys the reference tables of `markdown` name, as `section.key`.
fn documented_keys(markdown: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut sections: Vec<String> = Vec::new();
    let (mut in_head, mut cell, mut codes) = (false, 0, Vec::new());
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::TableHead) => (in_head, cell) = (true, 0),
            Event::Start(Tag::TableRow) => cell = 0,
            Event::Start(Tag::TableCell) => codes.clear(),
            Event::Code(code) if cell == 0 => codes.push(code.to_string()),
            Event::End(TagEnd::TableCell) => {
                if cell == 0 && in_head {
                    sections = codes
                        .iter()
                        .filter(|c| c.starts_with('['))
                        .map(|c| c.trim_matches(['[', ']']).to_owned())
                        .collect();
                } else if cell == 0 {
                    for section in &sections {
                        keys.extend(codes.iter().map(|key| format!("{section}.{key}")));
                    }
                }
                cell += 1;
            }
            Event::End(TagEnd::TableHead) => in_head = false,
            Event::End(TagEnd::Table) => sections.clear(),
            _ => {}
        }
    }
    keys
}

/// Each key and the sections above it (`pool.health.rise`: also `pool.health`, `pool`).
fn with_sections(keys: &BTreeSet<String>) -> BTreeSet<String> {
    let mut all = keys.clone();
    for key in keys {
        let mut at = key.as_str();
        while let Some((parent, _)) = at.rsplit_once('.') {
            all.insert(parent.to_owned());
            at = parent;
        }
    }
    all
}

fn reference() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_reference_names_every_key_of_the_schema_and_no_other() {
    let mut schema = BTreeSet::new();
    schema_keys(&mut Vec::new(), &mut schema);
    let documented = documented_keys(&reference());
    let covered = with_sections(&documented);
    let undocumented: Vec<&String> = schema.difference(&covered).collect();
    let unknown: Vec<&String> = documented.difference(&schema).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "docs/configuration.md's reference and the schema differ\n\
         in the schema, not in the reference: {undocumented:?}\n\
         in the reference, not in the schema: {unknown:?}"
    );
}

/// The walk finds keys at every depth, in tables and arrays of tables, and only keys.
#[test]
fn the_schema_walk_finds_nested_keys() {
    let mut schema = BTreeSet::new();
    schema_keys(&mut Vec::new(), &mut schema);
    for key in [
        "listener.name",
        "listener.route.sni",
        "listener.tls.certificates.client_auth.crl",
        "pool.discovery.hold_empty",
        "pool.backends.name",
        "xdp.blocklist.shared",
        "bgp.peer.as",
        "fleet.policy.tls.server_name",
    ] {
        assert!(schema.contains(key), "{key} not found in {schema:?}");
    }
    assert!(!schema.contains("origin"), "skipped fields are not keys");
    assert!(
        !schema.iter().any(|k| k.contains(PROBE)),
        "the probe is not a key"
    );
}

#[test]
fn reference_tables_are_read_by_their_section() {
    let markdown = "\
| `[pool.health]` key | default | meaning |\n|---|---|---|\n\
| `rise` | `2` | see `fall` |\n| `interval`, `timeout` | | |\n\n\
| `[[listener]]`, `[[pool]]` key | default |\n|---|---|\n| `name` | |\n\n\
| figure | value |\n|---|---|\n| `ignored` | 1 |\n";
    let keys: Vec<String> = documented_keys(markdown).into_iter().collect();
    assert_eq!(
        keys,
        [
            "listener.name",
            "pool.health.interval",
            "pool.health.rise",
            "pool.health.timeout",
            "pool.name"
        ]
    );
}
