//! SSRF guard: outbound requests never reach private, loopback, link-local
//! (the cloud metadata address included), CGNAT or other reserved
//! addresses unless `outbound.allow_cidrs` lists them.
//!
//! The check happens where names are resolved ([`GuardedResolver`] is the
//! HTTP client's DNS resolver), so a public name that resolves to a
//! private address is refused too, and URLs rendered from templates are
//! checked after rendering. Hosts written as IP literals never reach a
//! resolver, so [`check_url`] checks them before the request is sent.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, RwLock};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::Cidr;

/// The allow list, shared with config reloads.
pub type AllowList = Arc<RwLock<Vec<Cidr>>>;

/// Why an address is not reachable by default, or `None` for a public one.
pub fn reserved_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_reason(v4);
            }
            let seg = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if seg[0] & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if seg[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if seg[0] & 0xff00 == 0xff00 {
                Some("multicast")
            } else if seg[0] == 0x64 && seg[1] == 0xff9b {
                // NAT64: judge the embedded IPv4 address.
                let v4 = Ipv4Addr::new(
                    (seg[6] >> 8) as u8,
                    seg[6] as u8,
                    (seg[7] >> 8) as u8,
                    seg[7] as u8,
                );
                v4_reason(v4)
            } else if seg[0] == 0x2001 && seg[1] == 0x0db8 {
                Some("documentation")
            } else {
                None
            }
        }
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local (includes the cloud metadata address)")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("carrier-grade NAT")
    } else if o[0] == 0 {
        Some("unspecified (\"this network\")")
    } else if ip.is_broadcast() || o[0] >= 240 {
        Some("reserved")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignments")
    } else if (o[0] == 192 && o[1] == 0 && o[2] == 2)
        || (o[0] == 198 && o[1] == 51 && o[2] == 100)
        || (o[0] == 203 && o[1] == 0 && o[2] == 113)
    {
        Some("documentation")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("benchmarking")
    } else {
        None
    }
}

/// Refuse `ip` unless it is public or allowed.
pub fn check_ip(ip: IpAddr, allow: &[Cidr]) -> Result<(), String> {
    match reserved_reason(ip) {
        None => Ok(()),
        Some(_) if allow.iter().any(|c| c.contains(ip)) => Ok(()),
        Some(reason) => Err(format!(
            "refused to connect to {ip}: a {reason} address (list it in outbound.allow_cidrs to allow it)"
        )),
    }
}

/// Check a URL's scheme and, when its host is an IP literal, the address.
pub fn check_url(url: &reqwest::Url, allow: &[Cidr]) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "refused: `{}` URLs are not allowed, only http and https",
            url.scheme()
        ));
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), allow),
        Some(url::Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), allow),
        Some(url::Host::Domain(_)) => Ok(()),
        None => Err("refused: the URL has no host".into()),
    }
}

/// The HTTP client's resolver: system DNS, then the guard on every address.
pub struct GuardedResolver {
    pub allow: AllowList,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::task::spawn_blocking(move || {
                (host.as_str(), 0).to_socket_addrs().map(Iterator::collect)
            })
            .await
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let allow = allow.read().expect("allow list lock").clone();
            let mut refused = None;
            let ok: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| match check_ip(a.ip(), &allow) {
                    Ok(()) => true,
                    Err(e) => {
                        refused = Some(e);
                        false
                    }
                })
                .collect();
            if ok.is_empty() {
                let message = refused.unwrap_or_else(|| "the name resolved to no address".into());
                return Err(message.into());
            }
            Ok(Box::new(ok.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_and_reserved_addresses_are_refused() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "240.0.0.1",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "ff02::1",
        ] {
            assert!(check_ip(ip(bad), &[]).is_err(), "{bad} should be refused");
        }
        for good in [
            "8.8.8.8",
            "1.1.1.1",
            "157.240.1.35",
            "2a03:2880:f10c:83:face:b00c:0:25de",
            "100.128.0.1",
        ] {
            assert!(check_ip(ip(good), &[]).is_ok(), "{good} should be allowed");
        }
    }

    #[test]
    fn the_allow_list_opens_listed_ranges_only() {
        let allow = vec![Cidr::parse("127.0.0.1/32").unwrap()];
        assert!(check_ip(ip("127.0.0.1"), &allow).is_ok());
        assert!(check_ip(ip("127.0.0.2"), &allow).is_err());
        let err = check_ip(ip("169.254.169.254"), &allow).unwrap_err();
        assert!(
            err.contains("link-local") && err.contains("allow_cidrs"),
            "{err}"
        );
    }

    #[test]
    fn urls_with_ip_literals_are_checked_before_sending() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(check_url(&u("http://169.254.169.254/latest/meta-data"), &[]).is_err());
        assert!(check_url(&u("http://[::1]:8080/"), &[]).is_err());
        assert!(
            check_url(&u("http://0x7f.1/"), &[]).is_err(),
            "hex-encoded loopback"
        );
        assert!(check_url(&u("file:///etc/passwd"), &[]).is_err());
        assert!(check_url(&u("https://graph.facebook.com/v21.0/1/messages"), &[]).is_ok());
    }
}
