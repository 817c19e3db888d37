//! docs/CONFIGURATION.md lists every configuration key with its
//! environment variable, flag and default, generated from the key table.
//! Regenerate after changing keys: `ANPX_WRITE_DOCS=1 cargo test -p anpx-core --test config_docs`.

use anpx_core::config::keys;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CONFIGURATION.md");
const BEGIN: &str =
    "<!-- keys:begin (generated from the key table; see anpx-core/tests/config_docs.rs) -->";
const END: &str = "<!-- keys:end -->";

fn table() -> String {
    let mut out =
        String::from("| key | environment | flag | default | meaning |\n|---|---|---|---|---|\n");
    for k in keys() {
        // As anpx_core::cli defines them: the log format is global, the
        // services flag is `--service`, repeatable.
        let flag = match k.key {
            "gateway.routes.grant" => "(file only)".to_owned(),
            "gateway.log_format" => "`anpx --log-format` (every subcommand)".to_owned(),
            "receiver.services" => "`anpx receiver --service` (repeatable)".to_owned(),
            _ => format!("`anpx {} --{}`", k.section(), k.flag),
        };
        let default = if k.default.is_empty() {
            "unset".to_owned()
        } else {
            format!("`{}`", k.default)
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} |\n",
            k.key,
            k.env,
            flag,
            default,
            k.help.replace('|', "\\|")
        ));
    }
    out
}

#[test]
fn configuration_doc_lists_every_key() {
    let doc = std::fs::read_to_string(DOC).expect("docs/CONFIGURATION.md exists");
    let (Some(start), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("docs/CONFIGURATION.md lacks the generated-table markers");
    };
    let current = &doc[start + BEGIN.len()..end];
    let wanted = format!("\n{}", table());
    if current != wanted {
        if std::env::var_os("ANPX_WRITE_DOCS").is_some() {
            let updated = format!("{}{}{}{}", &doc[..start], BEGIN, wanted, &doc[end..]);
            std::fs::write(DOC, updated).unwrap();
        } else {
            panic!("docs/CONFIGURATION.md is out of date with the key table; run ANPX_WRITE_DOCS=1 cargo test -p anpx-core --test config_docs");
        }
    }
}
