//! The README's walk-through, run as written: every `sh` block of its
//! "Walk-through" section goes through `bash` against the real binary on
//! its embedded defaults (only the addresses and the data folder differ),
//! and what each command prints must match the `# ` lines under it.
//!
//! The README is the test's script, so a walk-through that stops working
//! when pasted (a changed default, a renamed field, an event refused) fails
//! here. Rules the README follows:
//! - a step is one or more command lines (a heredoc's lines included) and
//!   the `# ` lines right after them: the output expected, with `...`
//!   matching anything and white space ignored (so a long JSON answer may
//!   wrap over several `# ` lines);
//! - a step without `# ` lines must print nothing;
//! - all steps run in one shell, in order, so a variable set by one step
//!   (`now`, `code`) is there for the next.

use crate::util;
use std::io::Write;
use std::process::{Command, Stdio};

const SECTION: &str = "## Walk-through";
const SERVER: &str = "127.0.0.1:50051";
const ADMIN: &str = "127.0.0.1:9464";
const END: &str = "@@end-of-step@@";

/// One command of the walk-through and what it must print.
#[derive(Debug, PartialEq)]
struct Step {
    command: String,
    expected: String,
}

/// The `sh` blocks of the README section titled `title`.
fn blocks(readme: &str, title: &str) -> Vec<String> {
    let start = readme
        .lines()
        .position(|l| l.trim_end() == title)
        .unwrap_or_else(|| panic!("the README has a section {title:?}"));
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines().skip(start + 1) {
        match &mut current {
            None if line.starts_with("## ") => break,
            None if line.trim_end() == "```sh" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_end() == "```" => out.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(current.is_none(), "an sh block of {title:?} is not closed");
    out
}

/// A block's steps: command lines, then the `# ` lines under them.
fn steps(block: &str) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    let mut in_heredoc: Option<String> = None;
    let mut after_output = true;
    for line in block.lines() {
        let expected = in_heredoc.is_none() && (line == "#" || line.starts_with("# "));
        if expected {
            let step = out.last_mut().expect("a `# ` line follows a command");
            step.expected
                .extend(line[1..].chars().filter(|c| !c.is_whitespace()));
            after_output = true;
            continue;
        }
        if after_output {
            out.push(Step {
                command: String::new(),
                expected: String::new(),
            });
            after_output = false;
        }
        let step = out.last_mut().unwrap();
        step.command.push_str(line);
        step.command.push('\n');
        match &in_heredoc {
            Some(tag) if line.trim() == tag => in_heredoc = None,
            Some(_) => {}
            None => {
                if let Some(rest) = line.split("<<").nth(1) {
                    let word = rest.split_whitespace().next().unwrap_or_default();
                    let tag = word.trim_matches(|c| c == '\'' || c == '"' || c == '-');
                    in_heredoc = Some(tag.to_owned());
                }
            }
        }
    }
    out
}

/// Whether `text` matches `pattern`, in which `...` stands for anything.
fn matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split("...").collect();
    let (first, rest) = parts.split_first().unwrap();
    let Some(mut text) = text.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return text.is_empty();
    };
    for part in middle {
        match text.find(part) {
            Some(at) => text = &text[at + part.len()..],
            None => return false,
        }
    }
    text.ends_with(last) && text.len() >= last.len()
}

#[test]
fn pattern_matching_follows_the_readme_rules() {
    assert!(matches("{\"a\":1}", "{\"a\":1}"));
    assert!(!matches("{\"a\":1}", "{\"a\":12}"));
    assert!(matches(
        "{\"a\":...,\"b\":2...}",
        "{\"a\":\"x\",\"b\":2,\"c\":3}"
    ));
    assert!(matches("...", ""));
    assert!(!matches("a...b...c", "acb"));
    let s = steps(
        "now=1\ncurl -d @- <<EOF\n{\"x\": 1}\n# not output\nEOF\n# {\"ok\":true,\n#  \"n\":1}\necho\n",
    );
    assert_eq!(s.len(), 2);
    assert_eq!(
        s[0].command,
        "now=1\ncurl -d @- <<EOF\n{\"x\": 1}\n# not output\nEOF\n"
    );
    assert_eq!(s[0].expected, "{\"ok\":true,\"n\":1}");
    assert_eq!(s[1].command, "echo\n");
    assert_eq!(s[1].expected, "");
}

#[test]
fn the_readme_walk_through_works_as_written() {
    if Command::new("curl").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "curl is missing under CI (.ci/run installs it)"
        );
        eprintln!("skipped: curl not found (apt-get install curl to run this test)");
        return;
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let steps: Vec<Step> = blocks(&readme, SECTION)
        .iter()
        .flat_map(|b| steps(b))
        .collect();
    assert!(steps.len() >= 8, "the walk-through has its steps");

    // The service as the README's first command starts it: no config, the
    // embedded defaults; only its addresses and data folder are the test's.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, addr, logs) = util::spawn_nudge_with_logs(
        &["--data-dir".as_ref(), data.as_os_str()],
        &[(
            "NUDGE_VOUCHER_SECRET",
            "walk-through secret, not for production",
        )],
    );
    let admin = util::admin_addr(&logs);

    let mut script = String::from("set -u\ncd \"$WALK_DIR\"\n");
    for step in &steps {
        script.push_str(&step.command.replace(SERVER, &addr).replace(ADMIN, &admin));
        script.push_str(&format!("printf '\\n{END}\\n'\n"));
    }
    let mut bash = Command::new("bash")
        .arg("-s")
        .env("WALK_DIR", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bash");
    bash.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = bash.wait_with_output().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);

    let outputs: Vec<String> = stdout
        .split(END)
        .map(|o| o.chars().filter(|c| !c.is_whitespace()).collect::<String>())
        .collect();
    assert_eq!(
        outputs.len(),
        steps.len() + 1,
        "every step ran to its end\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for (i, (step, output)) in steps.iter().zip(&outputs).enumerate() {
        assert!(
            matches(&step.expected, output),
            "step {} of the walk-through:\n{}\nexpected: {}\nprinted:  {}\nstderr:\n{stderr}",
            i + 1,
            step.command,
            step.expected,
            output
        );
    }
}
