//! The minimal configuration on README.md's front page (its first `toml` block) is
//! one the daemon accepts: it parses and validates (certificate files are loaded only
//! by `proxy check-config`, not here).

use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};

/// The text of the first fenced code block of `markdown` in `language`.
fn first_block(markdown: &str, language: &str) -> Option<String> {
    let mut inside = false;
    let mut text = String::new();
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(lang))) => {
                inside = lang.as_ref() == language
            }
            Event::Text(t) if inside => text.push_str(&t),
            Event::End(TagEnd::CodeBlock) if inside => return Some(text),
            _ => {}
        }
    }
    None
}

#[test]
fn the_readme_configuration_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let config = first_block(&readme, "toml").expect("README.md shows a configuration");
    let parsed = proxy_schema::config::parse(&config);
    assert!(
        parsed.is_ok(),
        "README.md's configuration: {}",
        parsed.unwrap_err()
    );
}
