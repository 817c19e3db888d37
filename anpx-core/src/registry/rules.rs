//! The pure rules: reading and writing `proxy_path`, and who may add what.

use crate::route::{ServiceUrl, ServiceUrlError};

use super::RegistryError;

/// The suffix the reference appends to a service's prefix in `proxy_path`
/// (the address of the agent description) and strips when reading it.
pub const SUFFIX: &str = "/ad.json";

/// Width of the reference's `did` column (`VARCHAR(255)`), in characters.
pub const MAX_DID_LEN: usize = 255;

/// Width of the reference's `proxy_path` column (`VARCHAR(512)`), in
/// characters. Longer values would be refused or, in a lenient MySQL mode,
/// silently cut, so they are refused before they are written.
pub const MAX_PROXY_PATH_LEN: usize = 512;

/// Reads a `proxy_path` as the reference does: a trailing `/ad.json` is
/// dropped, then the rest is parsed as a [`ServiceUrl`].
///
/// ```
/// use anpx_core::registry::proxy_path_to_service_url;
/// assert_eq!(proxy_path_to_service_url("api.agent.com/anpproxy1/ad.json").unwrap().to_string(), "api.agent.com/anpproxy1");
/// assert_eq!(proxy_path_to_service_url("api.agent.com/anpproxy1").unwrap().to_string(), "api.agent.com/anpproxy1");
/// ```
pub fn proxy_path_to_service_url(proxy_path: &str) -> Result<ServiceUrl, ServiceUrlError> {
    // Only the exact suffix, once, as the reference does: `AD.JSON` or
    // `ad.json/` are path segments like any other.
    proxy_path
        .strip_suffix(SUFFIX)
        .unwrap_or(proxy_path)
        .parse()
}

/// The `proxy_path` written for `url`: its canonical text, without the
/// `/ad.json` suffix, which the reference reads back as the same prefix.
pub fn service_url_to_proxy_path(url: &ServiceUrl) -> String {
    url.to_string()
}

/// True when routes for `a` and `b` could compete for the same request:
/// their hosts are equal or either is the wildcard, and one path prefix is
/// a segment prefix of the other (equal included).
///
/// ```
/// use anpx_core::registry::overlaps;
/// let u = |s: &str| s.parse().unwrap();
/// assert!(overlaps(&u("h/a"), &u("h/a/b")));
/// assert!(overlaps(&u("*/a/b"), &u("h/a")));
/// assert!(!overlaps(&u("h/a"), &u("h/ab")));
/// assert!(!overlaps(&u("h/a"), &u("g/a")));
/// ```
pub fn overlaps(a: &ServiceUrl, b: &ServiceUrl) -> bool {
    let hosts_meet = match (a.host(), b.host()) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    };
    hosts_meet && (a.segments().starts_with(b.segments()) || b.segments().starts_with(a.segments()))
}

/// Whether `did` and `url` can be stored: a DID of 1 to [`MAX_DID_LEN`]
/// characters with no whitespace or control characters, and a `proxy_path`
/// of at most [`MAX_PROXY_PATH_LEN`] characters that does not end in
/// `/ad.json` (it would read back as its parent).
pub fn check_entry(did: &str, url: &ServiceUrl) -> Result<(), RegistryError> {
    let invalid = |field, value: &str, reason: String| RegistryError::Invalid {
        field,
        value: value.to_owned(),
        reason,
    };
    if did.is_empty() {
        return Err(invalid("did", did, "it is empty".into()));
    }
    if let Some(c) = did.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "did",
            did,
            format!("it contains whitespace or a control character ({c:?})"),
        ));
    }
    let did_len = did.chars().count();
    if did_len > MAX_DID_LEN {
        return Err(invalid(
            "did",
            did,
            format!(
                "it is {did_len} characters long, more than the {MAX_DID_LEN} the did column holds"
            ),
        ));
    }
    let path = service_url_to_proxy_path(url);
    if path.ends_with(SUFFIX) {
        return Err(invalid(
            "service URL",
            &path,
            format!("a stored proxy_path ending in {SUFFIX} reads back without it"),
        ));
    }
    let path_len = path.chars().count();
    if path_len > MAX_PROXY_PATH_LEN {
        return Err(invalid(
            "service URL",
            &path,
            format!(
                "it is {path_len} characters long, more than the {MAX_PROXY_PATH_LEN} the proxy_path column holds"
            ),
        ));
    }
    Ok(())
}

/// The ownership rule: `did` may add `url` unless it [`overlaps`] a URL in
/// `existing` (all current `(did, url)` entries) owned by another DID. Also
/// checks [`check_entry`].
///
/// ```
/// use anpx_core::registry::check_add;
/// let u = |s: &str| s.parse().unwrap();
/// let existing = vec![("did:a".to_owned(), u("h/x"))];
/// assert!(check_add(&existing, "did:b", &u("h/x")).is_err());   // equal
/// assert!(check_add(&existing, "did:b", &u("h/x/y")).is_err()); // nested below
/// assert!(check_add(&existing, "did:b", &u("h")).is_err());     // nested above
/// assert!(check_add(&existing, "did:b", &u("*/x")).is_err());   // wildcard host
/// assert!(check_add(&existing, "did:b", &u("h/xy")).is_ok());
/// assert!(check_add(&existing, "did:a", &u("h/x/y")).is_ok());  // its own
/// ```
pub fn check_add(
    existing: &[(String, ServiceUrl)],
    did: &str,
    url: &ServiceUrl,
) -> Result<(), RegistryError> {
    check_entry(did, url)?;
    match existing
        .iter()
        .find(|(owner, owned)| owner != did && overlaps(owned, url))
    {
        Some((owner, owned)) => Err(RegistryError::Conflict {
            url: url.clone(),
            owner: owner.clone(),
            owned: owned.clone(),
        }),
        None => Ok(()),
    }
}

/// Parses stored `(did, proxy_path)` rows, in order. Rows that do not parse
/// are returned apart as [`RegistryError::BadRow`]s (for the caller to log)
/// instead of failing the whole read.
pub fn parse_rows(
    rows: impl IntoIterator<Item = (String, String)>,
) -> (Vec<(String, ServiceUrl)>, Vec<RegistryError>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (did, proxy_path) in rows {
        match proxy_path_to_service_url(&proxy_path) {
            Ok(url) => good.push((did, url)),
            Err(reason) => bad.push(RegistryError::BadRow {
                did,
                proxy_path,
                reason: reason.to_string(),
            }),
        }
    }
    (good, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> ServiceUrl {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn proxy_paths_read_as_the_reference_reads_them() {
        let cases = [
            ("api.agent.com/anpproxy1/ad.json", "api.agent.com/anpproxy1"),
            ("api.agent.com/anpproxy1", "api.agent.com/anpproxy1"),
            ("api.agent.com/anpproxy1/", "api.agent.com/anpproxy1"),
            ("api.agent.com/ad.json", "api.agent.com"),
            ("https://API.agent.com/a/b/ad.json", "api.agent.com/a/b"),
            // Only one suffix, and only the exact one.
            ("h/a/ad.json/ad.json", "h/a/ad.json"),
            ("h/a/AD.JSON", "h/a/AD.JSON"),
            ("h/a/ad.json/", "h/a/ad.json"),
            ("h/a/xad.json", "h/a/xad.json"),
            ("*/tools/ad.json", "*/tools"),
        ];
        for (row, want) in cases {
            let got = proxy_path_to_service_url(row).unwrap_or_else(|e| panic!("{row:?}: {e}"));
            assert_eq!(got.to_string(), want, "{row:?}");
        }
        assert_eq!(
            proxy_path_to_service_url("/ad.json"),
            Err(ServiceUrlError::EmptyHost)
        );
        assert!(proxy_path_to_service_url("h/a?x=1/ad.json").is_err());
    }

    #[test]
    fn written_proxy_paths_read_back_as_the_same_url() {
        for s in ["api.agent.com/anpproxy1", "h", "*/x/y", "h/ad.json/x"] {
            let url = u(s);
            let path = service_url_to_proxy_path(&url);
            assert!(!path.ends_with(SUFFIX), "{path}");
            assert_eq!(proxy_path_to_service_url(&path), Ok(url));
        }
    }

    #[test]
    fn overlap_is_symmetric_and_follows_segments_and_hosts() {
        let cases = [
            ("h/a", "h/a", true),
            ("h/a", "h/a/b", true),
            ("h", "h/a/b", true),
            ("h/a", "h/ab", false),
            ("h/a/b", "h/a/c", false),
            ("h/a", "g/a", false),
            ("*/a", "h/a/b", true),
            ("*/a/b", "h/a", true),
            ("*/a", "h/b", false),
            ("*", "h/anything", true),
            ("*/a", "*/a/b", true),
            ("h/A", "h/a", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(overlaps(&u(a), &u(b)), want, "{a} ~ {b}");
            assert_eq!(overlaps(&u(b), &u(a)), want, "{b} ~ {a}");
        }
    }

    #[test]
    fn another_dids_url_cannot_be_taken_over() {
        let existing = vec![
            ("did:a".to_owned(), u("h/x")),
            ("did:b".to_owned(), u("*/tools")),
        ];
        for (did, url, owner) in [
            ("did:c", "h/x", "did:a"),
            ("did:c", "h/x/y/z", "did:a"),
            ("did:c", "h", "did:a"),
            ("did:c", "*/x/y", "did:a"),
            ("did:c", "*", "did:a"),
            ("did:c", "g/tools/x", "did:b"),
            ("did:a", "h/tools", "did:b"),
        ] {
            match check_add(&existing, did, &u(url)) {
                Err(RegistryError::Conflict {
                    owner: o, url: got, ..
                }) => {
                    assert_eq!(o, owner, "{did} {url}");
                    assert_eq!(got, u(url));
                }
                other => panic!("{did} {url}: {other:?}"),
            }
        }
        for (did, url) in [
            ("did:c", "h/xy"),
            ("did:c", "g/x"),
            ("did:a", "h/x"),
            ("did:a", "h/x/y"),
            ("did:a", "h/y"),
            ("did:b", "*/tools/v2"),
        ] {
            assert_eq!(check_add(&existing, did, &u(url)), Ok(()), "{did} {url}");
        }
    }

    #[test]
    fn conflict_message_names_the_owner_and_both_urls() {
        let existing = vec![("did:wba:a".to_owned(), u("h/x"))];
        let e = check_add(&existing, "did:wba:b", &u("h/x/y"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "h/x/y overlaps h/x, which is registered to did:wba:a");
    }

    #[test]
    fn entries_must_fit_the_reference_columns() {
        let ok = u("h/x");
        assert!(check_entry("did:wba:a", &ok).is_ok());
        for did in ["", "did:wba: a", "did:wba:\na"] {
            assert!(
                matches!(
                    check_entry(did, &ok),
                    Err(RegistryError::Invalid { field: "did", .. })
                ),
                "{did:?}"
            );
        }
        let long_did = format!("did:wba:{}", "a".repeat(MAX_DID_LEN));
        assert!(check_entry(&long_did, &ok).is_err());
        let long_url = u(&format!("h/{}", "a".repeat(MAX_PROXY_PATH_LEN)));
        let e = check_entry("did:wba:a", &long_url).unwrap_err().to_string();
        assert!(e.contains("proxy_path column"), "{e}");
        let fits = u(&format!("h/{}", "a".repeat(MAX_PROXY_PATH_LEN - 2)));
        assert!(check_entry("did:wba:a", &fits).is_ok());
        assert!(check_add(&[], "", &ok).is_err());
        let e = check_entry("did:wba:a", &u("h/x/ad.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("reads back without it"), "{e}");
    }

    #[test]
    fn bad_rows_are_set_apart_naming_did_and_text() {
        let rows = vec![
            ("did:a".to_owned(), "h/x/ad.json".to_owned()),
            ("did:b".to_owned(), "h/a b".to_owned()),
            ("did:c".to_owned(), "g".to_owned()),
        ];
        let (good, bad) = parse_rows(rows);
        assert_eq!(
            good,
            vec![("did:a".to_owned(), u("h/x")), ("did:c".to_owned(), u("g"))]
        );
        assert_eq!(bad.len(), 1);
        let text = bad[0].to_string();
        assert!(
            text.contains("did:b") && text.contains("\"h/a b\""),
            "{text}"
        );
        assert!(matches!(&bad[0], RegistryError::BadRow { did, .. } if did == "did:b"));
    }
}
