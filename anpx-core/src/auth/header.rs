//! The `Authorization: DIDWba ...` header value.

use std::fmt;

use super::AuthError;

/// The authentication scheme name.
pub const SCHEME: &str = "DIDWba";

/// Longest header value accepted. A genuine one is about 300 bytes; the
/// bound keeps a hostile one from costing more than a glance.
pub const MAX_HEADER_LEN: usize = 4096;

/// The five fields of a `DIDWba` header, as text.
///
/// Parsing checks syntax only; the verifier checks what the fields mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    /// The client's DID, e.g. `did:wba:didhost.cc:anpproxy1`.
    pub did: String,
    /// Single-use value chosen by the client (32 hex digits from the reference).
    pub nonce: String,
    /// When the header was made, RFC 3339 UTC.
    pub timestamp: String,
    /// The fragment of the signing key's id in the DID document, e.g. `key-1`.
    pub verification_method: String,
    /// The signature, base64url without padding.
    pub signature: String,
}

impl AuthHeader {
    /// Parses a header value (without the `Authorization:` name).
    ///
    /// Tolerates what the reference's own regex-based parser tolerates and a
    /// little more: any parameter order, upper- or lower-case parameter
    /// names, commas and/or whitespace between parameters, whitespace around
    /// `=`, unquoted token values, unknown parameters (ignored) and a
    /// case-insensitive scheme name. Refuses missing, empty or repeated
    /// fields rather than guessing which copy was meant.
    ///
    /// ```
    /// use anpx_core::auth::AuthHeader;
    /// let h = AuthHeader::parse(
    ///     r#"DIDWba did="did:wba:a.example",nonce="00ff", timestamp = "2026-11-22T01:35:28Z", VERIFICATION_METHOD="key-1", signature=c2ln"#,
    /// ).unwrap();
    /// assert_eq!(h.verification_method, "key-1");
    /// assert_eq!(h.signature, "c2ln");
    /// ```
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        if value.len() > MAX_HEADER_LEN {
            return Err(malformed(format!("longer than {MAX_HEADER_LEN} bytes")));
        }
        let value = value.trim_matches(is_ws);
        let (scheme, mut rest) = value.split_once(is_ws).unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case(SCHEME) {
            return Err(malformed(format!("scheme is not {SCHEME}")));
        }

        let mut fields: [Option<&str>; 5] = [None; 5];
        loop {
            rest = rest.trim_start_matches(|c: char| is_ws(c) || c == ',');
            if rest.is_empty() {
                break;
            }
            let name_len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(rest.len());
            if name_len == 0 {
                return Err(malformed(format!(
                    "expected a parameter name at {:?}",
                    prefix(rest)
                )));
            }
            let (name, after) = rest.split_at(name_len);
            let after = after.trim_start_matches(is_ws);
            let Some(after) = after.strip_prefix('=') else {
                return Err(malformed(format!("parameter {name} has no '='")));
            };
            let after = after.trim_start_matches(is_ws);
            let (val, after) = if let Some(quoted) = after.strip_prefix('"') {
                // No backslash escapes: the reference reads up to the next
                // quote, and no field has a reason to contain one.
                let Some(end) = quoted.find('"') else {
                    return Err(malformed(format!("parameter {name} has no closing quote")));
                };
                (&quoted[..end], &quoted[end + 1..])
            } else {
                let end = after
                    .find(|c: char| is_ws(c) || c == ',')
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            if !after.is_empty() && !after.starts_with(|c: char| is_ws(c) || c == ',') {
                return Err(malformed(format!("junk after parameter {name}")));
            }
            if val.is_empty() {
                return Err(malformed(format!("parameter {name} is empty")));
            }
            if val.chars().any(|c| c.is_control()) {
                return Err(malformed(format!(
                    "parameter {name} has a control character"
                )));
            }
            if let Some(i) = FIELDS.iter().position(|f| f.eq_ignore_ascii_case(name)) {
                if fields[i].replace(val).is_some() {
                    return Err(malformed(format!("parameter {} repeated", FIELDS[i])));
                }
            }
            rest = after;
        }

        let mut take = |i: usize| {
            fields[i]
                .take()
                .map(str::to_owned)
                .ok_or_else(|| malformed(format!("missing parameter {}", FIELDS[i])))
        };
        Ok(Self {
            did: take(0)?,
            nonce: take(1)?,
            timestamp: take(2)?,
            verification_method: take(3)?,
            signature: take(4)?,
        })
    }
}

/// Writes the header value exactly as the reference client does.
impl fmt::Display for AuthHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            r#"{SCHEME} did="{}", nonce="{}", timestamp="{}", verification_method="{}", signature="{}""#,
            self.did, self.nonce, self.timestamp, self.verification_method, self.signature
        )
    }
}

const FIELDS: [&str; 5] = [
    "did",
    "nonce",
    "timestamp",
    "verification_method",
    "signature",
];

fn is_ws(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn malformed(reason: String) -> AuthError {
    AuthError::MalformedHeader(reason)
}

/// The start of `s`, cut on a character boundary, for error messages.
fn prefix(s: &str) -> &str {
    let mut end = s.len().min(16);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const REF: &str = r#"DIDWba did="did:wba:didhost.cc:anpproxy1", nonce="639a65311bed696c23a5a20e43f3d3df", timestamp="2026-11-22T01:35:28Z", verification_method="key-1", signature="2tG69C0Ia_SZ3pAVEN4q3qKMRczCDlSDiKBlO_rzyPJQhyEvxZvJ6GEjn6KHVKg4UrX7FgUNYHwd-vOnZHjPUg""#;

    #[test]
    fn parses_reference_and_round_trips() {
        let h = AuthHeader::parse(REF).unwrap();
        assert_eq!(h.did, "did:wba:didhost.cc:anpproxy1");
        assert_eq!(h.nonce, "639a65311bed696c23a5a20e43f3d3df");
        assert_eq!(h.timestamp, "2026-11-22T01:35:28Z");
        assert_eq!(h.verification_method, "key-1");
        assert_eq!(h.to_string(), REF);
    }

    #[test]
    fn spacing_and_quoting_variants() {
        let want = AuthHeader::parse(REF).unwrap();
        let variants = [
            REF.replace(", ", ","),
            REF.replace(", ", " ,  "),
            REF.replace(", ", "\t"),
            REF.replace('=', " = "),
            format!("  {REF}\t "),
            REF.replace("DIDWba", "didwba"),
            REF.replace("DIDWba ", "DIDWba\t\t"),
            REF.replace("verification_method", "Verification_Method"),
            REF.replace(r#""key-1""#, "key-1"),
            format!("{REF}, realm=\"x\""),
            format!("{REF},"),
            // Field order does not matter.
            r#"DIDWba signature="2tG69C0Ia_SZ3pAVEN4q3qKMRczCDlSDiKBlO_rzyPJQhyEvxZvJ6GEjn6KHVKg4UrX7FgUNYHwd-vOnZHjPUg", verification_method="key-1", timestamp="2026-11-22T01:35:28Z", nonce="639a65311bed696c23a5a20e43f3d3df", did="did:wba:didhost.cc:anpproxy1""#.to_owned(),
        ];
        for v in variants {
            assert_eq!(AuthHeader::parse(&v).as_ref(), Ok(&want), "{v}");
        }
    }

    #[test]
    fn refusals() {
        let cases = [
            String::new(),
            "DIDWba".to_owned(),
            "Bearer abc".to_owned(),
            REF.replace("DIDWba ", "DIDWba-"),
            REF.replace(r#"nonce="639a65311bed696c23a5a20e43f3d3df", "#, ""),
            REF.replace("639a65311bed696c23a5a20e43f3d3df", ""),
            format!("{REF}, did=\"did:wba:other\""),
            REF.replace("key-1\"", "key-1"),
            REF.replace("nonce=", "nonce"),
            REF.replace("\", ", "\"x, "),
            REF.replace("key-1", "key\u{1}1"),
            format!("{REF}, ={}", ""),
            format!("{REF}, {}", "x".repeat(MAX_HEADER_LEN)),
        ];
        for c in cases {
            assert!(
                matches!(AuthHeader::parse(&c), Err(AuthError::MalformedHeader(_))),
                "{c:?} accepted"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = AuthHeader::parse(&s);
        }

        #[test]
        fn never_panics_near_valid(
            cut in 0usize..400,
            junk in "[ ,=\"a-zA-Z_\t\u{e9}]{0,8}",
        ) {
            let mut s = REF.to_owned();
            let mut at = cut.min(s.len());
            while !s.is_char_boundary(at) {
                at -= 1;
            }
            s.insert_str(at, &junk);
            let _ = AuthHeader::parse(&s);
        }

        #[test]
        fn display_parse_round_trip(
            did in "did:wba:[a-z]{1,8}(:[a-z0-9]{1,8}){0,3}",
            nonce in "[0-9a-f]{32}",
            vm in "[a-zA-Z0-9_-]{1,10}",
            sig in "[A-Za-z0-9_-]{1,90}",
        ) {
            let h = AuthHeader {
                did,
                nonce,
                timestamp: "2026-11-22T01:35:28Z".into(),
                verification_method: vm,
                signature: sig,
            };
            proptest::prop_assert_eq!(AuthHeader::parse(&h.to_string()), Ok(h));
        }
    }
}
