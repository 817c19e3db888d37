//! An IP address as text, without `fmt`. Every request writes its client's
//! address twice, into its `X-Forwarded-For` and its log line, and
//! `Ipv4Addr`'s `Display` (which supports padding and widths) cost about
//! 1 300 instructions each time (`benches/instructions.sh`).

use std::fmt::Write as _;
use std::net::IpAddr;

/// Appends `ip` to `out` exactly as its `Display` writes it.
///
/// ```
/// use std::net::IpAddr;
/// let mut text = String::from("for=");
/// anpx_core::push_ip(&mut text, "203.0.113.9".parse::<IpAddr>().unwrap());
/// assert_eq!(text, "for=203.0.113.9");
/// ```
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(itoa::Buffer::new().format(octet));
            }
        }
        // Rarer, and compressed by rules (`::`, embedded IPv4) best left
        // to the standard library.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn text(ip: IpAddr) -> String {
        let mut out = String::new();
        push_ip(&mut out, ip);
        out
    }

    #[test]
    fn every_octet_is_written_as_display_writes_it() {
        for octet in 0..=u8::MAX {
            let ip = IpAddr::V4(Ipv4Addr::new(octet, 0, 10, octet));
            assert_eq!(text(ip), ip.to_string());
        }
    }

    proptest! {
        #[test]
        fn matches_display(v4 in any::<u32>(), v6 in any::<u128>()) {
            let v4 = IpAddr::V4(Ipv4Addr::from(v4));
            prop_assert_eq!(text(v4), v4.to_string());
            let v6 = IpAddr::V6(Ipv6Addr::from(v6));
            prop_assert_eq!(text(v6), v6.to_string());
        }
    }
}
