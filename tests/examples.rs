//! The examples run as a user runs them: `examples/demo.sh` (the agent
//! script under `keyhole exec`, against the example echo server) with this
//! build's binary.

use std::process::Command;

#[test]
fn the_exec_demo_runs_and_checks_itself() {
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo.sh"))
        .env("KEYHOLE", env!("CARGO_BIN_EXE_keyhole"))
        .output()
        .expect("run bash examples/demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("demo: OK"), "{stdout}");
    assert!(
        stdout.contains("keyhole answered the CONNECT with 403"),
        "{stdout}"
    );
    // The agent only ever saw placeholders.
    let agent_lines: String = stdout.lines().filter(|l| l.starts_with("agent:")).collect();
    assert!(!agent_lines.contains("realsecret"), "{agent_lines}");
}

/// The lines indented deeper than the line holding `marker`, after it
/// (a YAML block scalar), with that indentation removed.
fn block_after(text: &str, marker: &str) -> String {
    let mut lines = text.lines().skip_while(|l| !l.contains(marker));
    let head = lines.next().unwrap_or_else(|| panic!("{marker} not found"));
    let indent = head.len() - head.trim_start().len();
    let body: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
        .collect();
    let strip = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    body.iter()
        .map(|l| l.get(strip..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_kubernetes_example_config_is_valid_and_its_init_script_works() {
    let pod = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/kubernetes/pod.yaml"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for sub in ["secret", "state", "public", "bin"] {
        std::fs::create_dir(root.join(sub)).unwrap();
    }
    // The Secret's config.json, checked as keyhole checks any config.
    let config = block_after(&pod, "config.json: |");
    std::fs::write(root.join("secret/config.json"), &config).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_keyhole"))
        .args(["check", "--config"])
        .arg(root.join("secret/config.json"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");

    // The keyhole-env init container's script, with its mounts moved into
    // the temporary folder and `keyhole` on the PATH.
    let script = block_after(&pod, "- name: keyhole-env");
    let script = block_after(&script, "- |");
    let root_s = root.display().to_string();
    let script = script
        .replace("/etc/keyhole-public", &format!("{root_s}/public"))
        .replace("/etc/keyhole", &format!("{root_s}/secret"))
        .replace("/var/lib/keyhole", &format!("{root_s}/state"));
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_keyhole"), root.join("bin/keyhole")).unwrap();
    let path = format!("{root_s}/bin:{}", std::env::var("PATH").unwrap_or_default());
    let run = Command::new("sh")
        .args(["-c", &script])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}\n{script}");

    // The agent container's first line, sourcing the env file as it does.
    let agent = block_after(&pod, "- name: agent");
    let agent = block_after(&agent, "- |");
    let source = agent
        .lines()
        .next()
        .unwrap()
        .replace("/etc/keyhole-public", &format!("{root_s}/public"));
    let shown = Command::new("sh")
        .args([
            "-c",
            &format!(
                "{source}\nprintf '%s|%s|%s' \"$GITHUB_TOKEN\" \"$HTTPS_PROXY\" \"$SSL_CERT_FILE\""
            ),
        ])
        .env_clear()
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    let fields: Vec<&str> = shown.split('|').collect();
    assert_eq!(fields.len(), 3, "{shown}");
    assert!(fields[0].starts_with("kh_ph_"), "{shown}");
    assert_eq!(fields[1], "http://127.0.0.1:8080");
    assert_eq!(fields[2], format!("{root_s}/public/ca-bundle.pem"));
    assert!(root.join("public/ca-bundle.pem").exists());
    // Nothing the agent can read holds a secret.
    for file in ["keyhole.env", "ca-bundle.pem"] {
        let text = std::fs::read_to_string(root.join("public").join(file)).unwrap();
        assert!(!text.contains("REPLACE_ME"), "{file}");
        assert!(!text.contains("PRIVATE KEY"), "{file}");
    }
}

#[test]
fn the_transparent_kubernetes_variant_redirects_to_keyholes_transparent_listener() {
    let pod = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/kubernetes/pod-transparent.yaml"
    ))
    .unwrap();
    // The redirect script is valid shell, and it sends other UIDs' TCP to
    // the port keyhole's --transparent listens on, never keyhole's own.
    let script = block_after(&pod, "name: egress-redirect");
    let rules = block_after(&script, "- |");
    let syntax = Command::new("sh")
        .args(["-n", "-c", &rules])
        .status()
        .unwrap();
    assert!(syntax.success(), "{rules}");
    assert!(rules.contains("REDIRECT --to-ports 15001"), "{rules}");
    assert!(rules.contains("! --uid-owner 10001 -j KEYHOLE"), "{rules}");
    assert!(pod.contains("        - --transparent=127.0.0.1:15001\n"));
    // The flag keyhole is given exists.
    let help = Command::new(env!("CARGO_BIN_EXE_keyhole"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("--transparent <ADDR>"));
}
