//! Every relative link in the documentation leads somewhere: README.md, docs/*.md and
//! dist/examples/README.md, links and images. The target file must exist, and a
//! `#anchor` must name a heading of the target Markdown file as GitHub names it
//! (lower case, punctuation dropped, spaces as `-`, `-1`, `-2` for repeats).
//! Links with a scheme (`https:`, `mailto:`) are not followed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_path_buf()
}

/// The Markdown files whose links are checked.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md"), root.join("dist/examples/README.md")];
    let docs = std::fs::read_dir(root.join("docs")).expect("docs/ exists");
    for entry in docs {
        let path = entry.expect("docs/ is readable").path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn parser(markdown: &str) -> Parser<'_> {
    Parser::new_ext(markdown, Options::ENABLE_TABLES)
}

/// The destinations of the links and images in `markdown`.
fn links(markdown: &str) -> Vec<String> {
    parser(markdown)
        .filter_map(|event| match event {
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                Some(dest_url.to_string())
            }
            _ => None,
        })
        .collect()
}

/// GitHub's anchor of a heading's text.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of the headings of `markdown`, repeats numbered as GitHub does.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut heading: Option<String> = None;
    for event in parser(markdown) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(text) | Event::Code(text) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&text);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let base = slug(&heading.take().unwrap_or_default());
                let mut anchor = base.clone();
                let mut n = 0;
                while anchors.contains(&anchor) {
                    n += 1;
                    anchor = format!("{base}-{n}");
                }
                anchors.insert(anchor);
            }
            _ => {}
        }
    }
    anchors
}

/// What is wrong with the link `target` in the document `from`, if anything.
fn broken(from: &Path, target: &str) -> Option<String> {
    let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
    let file = match path {
        "" => from.to_path_buf(),
        _ => from.parent().expect("a document has a folder").join(path),
    };
    if !file.exists() {
        return Some(format!("{} does not exist", file.display()));
    }
    let markdown = file.extension().is_some_and(|e| e == "md");
    if anchor.is_empty() || !markdown {
        return None;
    }
    let text = std::fs::read_to_string(&file).expect("a linked document is readable");
    match anchors(&text).contains(anchor) {
        true => None,
        false => Some(format!("{} has no heading #{anchor}", file.display())),
    }
}

fn has_scheme(target: &str) -> bool {
    target
        .split_once(':')
        .is_some_and(|(scheme, _)| !scheme.is_empty() && scheme.chars().all(char::is_alphabetic))
}

#[test]
fn relative_links_in_the_documentation_lead_somewhere() {
    let root = root();
    let mut problems = Vec::new();
    let mut checked = 0;
    for document in documents(&root) {
        let text = std::fs::read_to_string(&document).expect("a document is readable");
        for target in links(&text) {
            if has_scheme(&target) {
                continue;
            }
            checked += 1;
            if let Some(why) = broken(&document, &target) {
                let name = document.strip_prefix(&root).unwrap_or(&document);
                problems.push(format!("{}: ({target}): {why}", name.display()));
            }
        }
    }
    assert!(
        checked > 0,
        "no relative link found: is the test reading the files?"
    );
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn anchors_are_named_as_github_names_them() {
    let markdown = "# Two commands\n## `[pool.tls]`: TLS to the backends\n\
                    ## Fleet routing (BGP)\n## Two commands\n### bench: 2× faster?\n";
    let found: Vec<String> = anchors(markdown).into_iter().collect();
    assert_eq!(
        found,
        [
            "bench-2-faster",
            "fleet-routing-bgp",
            "pooltls-tls-to-the-backends",
            "two-commands",
            "two-commands-1"
        ]
    );
}

#[test]
fn a_missing_file_or_heading_is_reported() {
    let readme = root().join("README.md");
    assert_eq!(broken(&readme, "docs/configuration.md"), None);
    assert_eq!(
        broken(
            &readme,
            "docs/configuration.md#pooldiscovery-backends-from-dns"
        ),
        None
    );
    assert!(broken(&readme, "docs/nothing.md").is_some());
    assert!(broken(&readme, "docs/configuration.md#no-such-heading").is_some());
    assert!(!has_scheme("docs/a.md#b") && has_scheme("https://example.com"));
}
