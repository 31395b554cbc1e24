//! Who may change state through the HTTP API.
//!
//! With `ADMIN_TOKEN` set, a caller needs `Authorization: Bearer TOKEN`,
//! from anywhere. Without one, only a loopback caller may: the API is never
//! open to the network by accident. A loopback caller includes an IPv4
//! client of a `[::]` listener, which arrives as `::ffff:127.x.y.z`.
//!
//! [`Admin`] is an extractor that looks only at the request head, so a
//! handler that takes it before its body answers a refused caller without
//! reading a byte of the body.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::AppState;
use super::routes::error;
use crate::secret::Secret;

/// A caller allowed to change state.
#[derive(Debug, Clone, Copy)]
pub struct Admin {
    peer: Option<SocketAddr>,
}

impl Admin {
    /// The caller's address, IPv4-mapped addresses shown as IPv4; the
    /// unspecified address if the connection's peer is unknown.
    pub fn peer_ip(&self) -> IpAddr {
        self.peer
            .map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip().to_canonical())
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Admin, Response> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        authorize(state.admin_token.as_ref(), peer, &parts.headers)?;
        Ok(Admin { peer })
    }
}

#[allow(clippy::result_large_err)]
fn authorize(
    token: Option<&Secret>,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Result<(), Response> {
    // An empty token is no token (defence in depth: settings already treat
    // an empty value as unset).
    match token.filter(|t| !t.expose().is_empty()) {
        Some(token) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes())
                .and_then(strip_bearer)
                .unwrap_or_default();
            if token_matches(given, token.expose().as_bytes()) {
                Ok(())
            } else {
                Err(error(
                    StatusCode::UNAUTHORIZED,
                    "this API needs Authorization: Bearer <ADMIN_TOKEN>".into(),
                ))
            }
        }
        None if peer.is_some_and(|p| is_loopback(p.ip())) => Ok(()),
        None => Err(error(
            StatusCode::FORBIDDEN,
            "without ADMIN_TOKEN configured, only loopback clients may change state".into(),
        )),
    }
}

/// `127.0.0.0/8`, `::1`, and their IPv4-mapped forms (`::ffff:127.0.0.0/104`),
/// which is how a `[::]` listener sees an IPv4 client.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// The credentials of `Bearer CREDENTIALS` (the scheme is case-insensitive).
fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)
}

/// Whether `given` is `token`, in time that depends only on the length of
/// `given` (which the caller knows anyway): neither how much of a guess
/// was right nor the token's length shows in the response time. Every byte
/// of `given` is compared against the token repeated to its length, and the
/// lengths are compared too, all without a branch on secret data; `subtle`
/// keeps the compiler from turning that back into an early exit.
fn token_matches(given: &[u8], token: &[u8]) -> bool {
    if token.is_empty() {
        return false;
    }
    let len = token.len() as u64;
    let mut equal = (given.len() as u64).ct_eq(&len);
    let mut j = 0u64;
    for &b in given {
        equal &= b.ct_eq(&token[j as usize]);
        let next = j + 1;
        j = u64::conditional_select(&next, &0, next.ct_eq(&len));
    }
    equal.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    fn status(r: Result<(), Response>) -> Option<StatusCode> {
        r.err().map(|e| e.status())
    }

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn loopback_only_without_a_token() {
        for local in ["127.0.0.1:5000", "127.9.8.7:5000", "[::1]:5000"] {
            assert_eq!(status(authorize(None, addr(local), &headers(None))), None);
        }
        for remote in ["10.1.2.3:5000", "[2001:db8::1]:5000"] {
            assert_eq!(
                status(authorize(None, addr(remote), &headers(None))),
                Some(StatusCode::FORBIDDEN)
            );
        }
        assert_eq!(
            status(authorize(None, None, &headers(None))),
            Some(StatusCode::FORBIDDEN)
        );
    }

    #[test]
    fn ipv4_mapped_loopback_is_loopback() {
        // What a `[::]` listener sees from an IPv4 client on 127.0.0.1.
        for local in ["[::ffff:127.0.0.1]:5000", "[::ffff:127.255.0.9]:5000"] {
            assert_eq!(status(authorize(None, addr(local), &headers(None))), None);
        }
        // Mapped, but not loopback; and the IPv4-compatible form is not
        // a mapped address.
        for remote in ["[::ffff:10.0.0.1]:5000", "[::127.0.0.1]:5000"] {
            assert_eq!(
                status(authorize(None, addr(remote), &headers(None))),
                Some(StatusCode::FORBIDDEN),
                "{remote}"
            );
        }
        let admin = Admin {
            peer: addr("[::ffff:127.0.0.1]:5000"),
        };
        assert_eq!(admin.peer_ip().to_string(), "127.0.0.1");
    }

    #[test]
    fn token_required_when_configured() {
        let t = Secret::new("s3cret");
        let remote = addr("10.1.2.3:5000");
        for ok in ["Bearer s3cret", "bearer s3cret", "BEARER s3cret"] {
            assert_eq!(
                status(authorize(Some(&t), remote, &headers(Some(ok)))),
                None
            );
        }
        for h in [
            None,
            Some("Bearer nope"),
            Some("s3cret"),
            Some("Bearer s3cre"),
            Some("Bearer s3crets"),
            Some("Bearer s3crets3cret"),
            Some("Bearer "),
            Some("Basic s3cret"),
        ] {
            assert_eq!(
                status(authorize(Some(&t), remote, &headers(h))),
                Some(StatusCode::UNAUTHORIZED),
                "{h:?}"
            );
        }
        // An empty token would match an empty header: it counts as none.
        let empty = Secret::new("");
        assert_eq!(
            status(authorize(Some(&empty), remote, &headers(None))),
            Some(StatusCode::FORBIDDEN)
        );
        // A token is required even from loopback once one is configured.
        assert_eq!(
            status(authorize(Some(&t), addr("127.0.0.1:5000"), &headers(None))),
            Some(StatusCode::UNAUTHORIZED)
        );
    }

    #[test]
    fn token_comparison_needs_every_byte_and_the_length() {
        assert!(token_matches(b"abc", b"abc"));
        // The token repeated, or a prefix of it: the lengths differ.
        assert!(!token_matches(b"abcabc", b"abc"));
        assert!(!token_matches(b"ab", b"abc"));
        assert!(!token_matches(b"", b"abc"));
        assert!(!token_matches(b"", b""));
        assert!(!token_matches(b"abd", b"abc"));
        assert!(!token_matches(b"xbc", b"abc"));
        let long = vec![b'a'; 10_000];
        assert!(token_matches(&long, &long));
        let mut other = long.clone();
        other[9_999] = b'b';
        assert!(!token_matches(&other, &long));
    }
}
