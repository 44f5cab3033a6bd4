//! Issue 17 done-when: README's "The `evfold` command" section opens with `evfold --help`
//! verbatim, so the two cannot drift (update the README when the help changes).

use super::evfold;

#[test]
fn readme_cli_section_is_evfold_help() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme.split("## The `evfold` command").nth(1).expect("README has the CLI section");
    let block = section.split("```text\n").nth(1).and_then(|b| b.split("\n```").next()).expect("a text block");
    let cwd = tempfile::tempdir().unwrap();
    let out = evfold(cwd.path()).env_remove("EVFOLD_PLUGIN_CACHE").arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        block.trim_end(),
        help.trim_end(),
        "README's CLI block differs from `evfold --help`; paste the new help"
    );
}
