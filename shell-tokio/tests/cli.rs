//! The `anpx` binary's configuration handling, as an operator meets it.

use std::process::Command;
use std::time::Duration;

use exit::exits_within;

#[path = "support/exit.rs"]
mod exit;

#[path = "support/clean_command.rs"]
mod clean_command;

fn anpx() -> Command {
    clean_command::clean_command(env!("CARGO_BIN_EXE_anpx"))
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let out = anpx()
        .args(["check-config"])
        .env("ANPX_GATEWAY_REQUEST_TIMEOUT_SECS", "12")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("request_timeout_secs = 12"), "{text}");
    assert!(text.contains("listen = \"127.0.0.1:8080\""), "{text}");
}

#[test]
fn a_config_file_with_a_typo_is_refused_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("anpx-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[gateway]\nlistne = \"127.0.0.1:1\"\n").unwrap();
    let out = anpx()
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gateway.listne"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_flag_value_is_refused_naming_the_key() {
    let out = anpx()
        .args(["gateway", "--max-inflight-per-receiver", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gateway.max_inflight_per_receiver"), "{err}");
}

#[test]
fn a_mistyped_environment_variable_is_refused() {
    let out = anpx()
        .args(["check-config"])
        .env("ANPX_GATEWAY_LISTN", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ANPX_GATEWAY_LISTN"));
}

#[test]
fn a_bad_lane_spin_window_is_refused_naming_it() {
    for bad in ["fast", "-1", "1000001"] {
        let mut child = anpx()
            .args(["both", "--upstream", "http://127.0.0.1:9"])
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "off"])
            .env("ANPX_LANE_SPIN_US", bad)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A window that was taken would leave the tunnel running.
        let Some(status) = exits_within(&mut child, Duration::from_secs(10)) else {
            let _ = child.kill();
            panic!("{bad} was taken: the tunnel started");
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(!status.success(), "{bad}: {err}");
        assert!(err.contains("ANPX_LANE_SPIN_US"), "{bad}: {err}");
    }
}

#[test]
fn a_receiver_without_upstream_says_how_to_fix_it() {
    let out = anpx()
        .args(["receiver", "--gateway", "ws://127.0.0.1:9/ws"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--upstream"));
}
