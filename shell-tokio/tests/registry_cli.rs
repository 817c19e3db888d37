//! `anpx registry` as an operator uses it, on a SQLite file of its own.

use std::path::PathBuf;
use std::process::{Command, Output};

fn anpx() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_anpx"));
    // The tests' own environment must not leak ANPX_ settings in.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ANPX_")) {
        c.env_remove(k);
    }
    c
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("anpx-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.0.join("registry.db").display())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str], url: &str, via_env: bool) -> Output {
    let mut c = anpx();
    c.arg("registry").args(args);
    if via_env {
        c.env("ANPX_GATEWAY_REGISTRY_URL", url);
    } else {
        c.args(["--registry-url", url]);
    }
    c.output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn add_list_remove_on_a_sqlite_file() {
    let scratch = Scratch::new("registry-cli");
    let url = scratch.url();
    ok(&run(
        &[
            "add",
            "--did",
            "did:wba:a",
            "--service",
            "api.agent.com/anpproxy1/ad.json",
        ],
        &url,
        false,
    ));
    ok(&run(
        &["add", "--did", "did:wba:b", "--service", "other.com/x"],
        &url,
        true,
    ));
    let listed = ok(&run(&["list"], &url, true));
    assert_eq!(
        listed,
        "did:wba:a\tapi.agent.com/anpproxy1\ndid:wba:b\tother.com/x\n"
    );
    let only_b = ok(&run(&["list", "--did", "did:wba:b"], &url, false));
    assert_eq!(only_b, "did:wba:b\tother.com/x\n");

    // Another DID's URL, or one nested under it, is refused with the owner named.
    let taken = run(
        &[
            "add",
            "--did",
            "did:wba:b",
            "--service",
            "api.agent.com/anpproxy1/x",
        ],
        &url,
        false,
    );
    assert_eq!(taken.status.code(), Some(1));
    let err = String::from_utf8_lossy(&taken.stderr);
    assert!(
        err.contains("overlaps api.agent.com/anpproxy1, which is registered to did:wba:a"),
        "{err}"
    );

    ok(&run(
        &[
            "remove",
            "--did",
            "did:wba:a",
            "--service",
            "api.agent.com/anpproxy1",
        ],
        &url,
        true,
    ));
    let again = run(
        &[
            "remove",
            "--did",
            "did:wba:a",
            "--service",
            "api.agent.com/anpproxy1",
        ],
        &url,
        true,
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("has no registry entry"));
    assert_eq!(ok(&run(&["list"], &url, true)), "did:wba:b\tother.com/x\n");
}

#[test]
fn without_a_database_list_shows_the_static_table_and_writes_are_refused() {
    let scratch = Scratch::new("registry-cli-static");
    let file = scratch.0.join("anpx.toml");
    std::fs::write(
        &file,
        "[[gateway.routes.grant]]\ndid = \"did:wba:a\"\nservices = [\"h.com/x\", \"*/tools\"]\n",
    )
    .unwrap();
    let out = anpx()
        .args(["registry", "list", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(ok(&out), "did:wba:a\th.com/x\ndid:wba:a\t*/tools\n");
    let out = anpx()
        .args([
            "registry",
            "add",
            "--did",
            "did:wba:b",
            "--service",
            "g.com",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a configuration error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("gateway.registry.url"));
}

#[test]
fn bad_input_is_refused_before_touching_the_database() {
    let out = anpx()
        .args([
            "registry",
            "add",
            "--did",
            "did:wba:a",
            "--service",
            "h.com/a?b=1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let out = anpx()
        .args([
            "registry",
            "list",
            "--registry-url",
            "https://registry.example/grants",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gateway.registry.url"));
}

#[test]
fn reload_explains_how_a_gateway_picks_up_changes() {
    let out = anpx()
        .args(["registry", "reload", "--registry-refresh-secs", "5"])
        .output()
        .unwrap();
    // No such flag on `registry`: the refresh period comes from the config.
    assert_eq!(out.status.code(), Some(2));
    let out = anpx()
        .args(["registry", "reload"])
        .env("ANPX_GATEWAY_REGISTRY_REFRESH_SECS", "5")
        .output()
        .unwrap();
    let text = ok(&out);
    assert!(text.contains("refresh_secs (5 s)"), "{text}");
}
