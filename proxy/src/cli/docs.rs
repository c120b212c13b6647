//! `proxy man DIR` and `proxy completions SHELL`: the manual pages and the shell
//! completions, generated from the command line's own definition (clap_mangen,
//! clap_complete), so they cannot drift from it. The .deb installs both.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use super::Cli;

/// Writes `proxy.1` and one page per subcommand (`proxy-run.1`, `proxy-block-add.1`...)
/// into `dir`; the names written.
pub fn man(dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    write_pages(Cli::command(), &["proxy"], dir, &mut written)?;
    Ok(written)
}

/// The page of `command` (reached by the words `path`), then its subcommands'.
fn write_pages(
    command: clap::Command,
    path: &[&str],
    dir: &Path,
    written: &mut Vec<String>,
) -> anyhow::Result<()> {
    let title = path.join("-");
    let command = command.bin_name(path.join(" ")).name(title.clone());
    let file = format!("{title}.1");
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .title(title.as_str())
        .render(&mut page)?;
    let target = dir.join(&file);
    std::fs::write(&target, page).with_context(|| format!("writing {}", target.display()))?;
    written.push(file);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let words = [path, &[sub.get_name()]].concat();
        write_pages(sub.clone(), &words, dir, written)?;
    }
    Ok(())
}

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "proxy", &mut script);
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_for_the_command_and_every_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let written = man(dir.path()).unwrap();
        for page in [
            "proxy.1",
            "proxy-run.1",
            "proxy-check-config.1",
            "proxy-block-add.1",
        ] {
            assert!(written.contains(&page.to_string()), "{page} in {written:?}");
        }
        let run = std::fs::read_to_string(dir.path().join("proxy-run.1")).unwrap();
        assert!(run.contains("takeover"), "{run}");
    }
}
