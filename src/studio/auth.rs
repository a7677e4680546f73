//! Who may talk to the studio: the holder of the session token, from a page the studio served.
//!
//! The token is random (256 bits), printed in the URL `dfl studio` shows. The first request
//! carries it as `?token=`; the answer sets it as a cookie (`HttpOnly`, `SameSite=Strict`) and
//! redirects to the same page without it. Every later request needs the cookie or the
//! `X-DFL-Token` header. Requests that change anything (any method but GET and HEAD) need the
//! header itself: a page on another site can make the browser send cookies, but not set a
//! custom header without a CORS preflight, which the studio never answers. While the studio
//! listens on loopback, a request naming another host (DNS rebinding) is refused too.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The header state-changing requests carry the token in.
pub const TOKEN_HEADER: &str = "x-dfl-token";

/// A session's secret and what it takes to check a request.
#[derive(Debug, Clone)]
pub struct Guard {
    token: String,
    cookie: String,
    loopback_only: bool,
}

impl Guard {
    /// A guard for `token`; the cookie's name includes `port`, so studios on several ports of
    /// one machine keep their own sessions. With `loopback_only`, requests must name a
    /// loopback host.
    pub fn new(token: String, port: u16, loopback_only: bool) -> Self {
        Self { token, cookie: format!("dfl_studio_{port}"), loopback_only }
    }

    /// A fresh random token: 64 hex digits from the OS's generator.
    pub fn random_token() -> String {
        let bytes: [u8; 32] = rand::random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The session token.
    pub fn token(&self) -> &str {
        &self.token
    }

    fn matches(&self, candidate: &str) -> bool {
        // Compared in constant time: how long a wrong guess took says nothing.
        let (a, b) = (self.token.as_bytes(), candidate.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    fn header_has_token(&self, headers: &HeaderMap) -> bool {
        headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()).is_some_and(|v| self.matches(v))
    }

    fn cookie_has_token(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == self.cookie && self.matches(value))
    }

    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        if !self.loopback_only {
            return true;
        }
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return false;
        };
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host, |(name, _)| name),
        };
        matches!(name, "127.0.0.1" | "localhost" | "::1")
    }
}

/// What the guard decides for one request.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Let it through.
    Pass,
    /// The token in the URL was right: set the cookie and redirect to this location.
    SetCookie(String),
    /// No valid token at all.
    Unauthorized,
    /// A token, but not in the form this request needs (or a foreign host).
    Forbidden,
}

impl Guard {
    fn judge(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Verdict {
        if !self.host_allowed(headers) {
            return Verdict::Forbidden;
        }
        let reads = method == Method::GET || method == Method::HEAD;
        if reads && let Some((token, rest)) = token_in_query(uri) {
            if !self.matches(&token) {
                return Verdict::Unauthorized;
            }
            let location = match rest {
                Some(q) => format!("{}?{q}", uri.path()),
                None => uri.path().to_owned(),
            };
            return Verdict::SetCookie(location);
        }
        match (self.header_has_token(headers), self.cookie_has_token(headers)) {
            (true, _) => Verdict::Pass,
            (false, true) if reads => Verdict::Pass,
            (false, true) => Verdict::Forbidden,
            (false, false) => Verdict::Unauthorized,
        }
    }
}

/// The `token` query parameter, and the rest of the query without it.
fn token_in_query(uri: &Uri) -> Option<(String, Option<String>)> {
    let query = uri.query()?;
    let mut token = None;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.strip_prefix("token=") {
            Some(t) => token = Some(t.to_owned()),
            None => rest.push(pair),
        }
    }
    Some((token?, (!rest.is_empty()).then(|| rest.join("&"))))
}

/// The middleware: every request passes the guard first.
pub async fn check(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    match guard.judge(request.method(), request.uri(), request.headers()) {
        Verdict::Pass => next.run(request).await,
        Verdict::SetCookie(location) => {
            let cookie = format!(
                "{}={}; HttpOnly; SameSite=Strict; Path=/",
                guard.cookie, guard.token
            );
            let mut response = StatusCode::SEE_OTHER.into_response();
            let headers = response.headers_mut();
            if let (Ok(location), Ok(cookie)) =
                (HeaderValue::from_str(&location), HeaderValue::from_str(&cookie))
            {
                headers.insert(header::LOCATION, location);
                headers.insert(header::SET_COOKIE, cookie);
            }
            response
        }
        Verdict::Unauthorized => (
            StatusCode::UNAUTHORIZED,
            "dfl studio: open the URL `dfl studio` printed (it carries the session token)\n",
        )
            .into_response(),
        Verdict::Forbidden => (
            StatusCode::FORBIDDEN,
            "dfl studio: this request needs the session token in its X-DFL-Token header, from a loopback host\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new("a".repeat(64), 7860, true)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7860"));
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn judge(method: Method, uri: &str, h: &HeaderMap) -> Verdict {
        guard().judge(&method, &uri.parse().unwrap(), h)
    }

    #[test]
    fn the_url_token_sets_the_cookie_and_is_taken_out_of_the_url() {
        let t = "a".repeat(64);
        assert_eq!(
            judge(Method::GET, &format!("/?token={t}"), &headers(&[])),
            Verdict::SetCookie("/".into())
        );
        assert_eq!(
            judge(Method::GET, &format!("/faces?side=src&token={t}&page=2"), &headers(&[])),
            Verdict::SetCookie("/faces?side=src&page=2".into())
        );
        assert_eq!(judge(Method::GET, "/?token=bad", &headers(&[])), Verdict::Unauthorized);
    }

    #[test]
    fn reads_need_the_cookie_or_header_and_changes_need_the_header() {
        let t = "a".repeat(64);
        let cookie = format!("other=1; dfl_studio_7860={t}");
        assert_eq!(judge(Method::GET, "/api/status", &headers(&[])), Verdict::Unauthorized);
        assert_eq!(
            judge(Method::GET, "/api/status", &headers(&[("cookie", &cookie)])),
            Verdict::Pass
        );
        assert_eq!(
            judge(Method::GET, "/api/status", &headers(&[("cookie", "dfl_studio_7860=b")])),
            Verdict::Unauthorized
        );
        assert_eq!(
            judge(Method::POST, "/api/x", &headers(&[("cookie", &cookie)])),
            Verdict::Forbidden,
            "a cookie alone is what a cross-site form sends"
        );
        assert_eq!(judge(Method::POST, "/api/x", &headers(&[(TOKEN_HEADER, &t)])), Verdict::Pass);
        assert_eq!(
            judge(Method::POST, &format!("/api/x?token={t}"), &headers(&[])),
            Verdict::Unauthorized
        );
        // Another port's cookie is another session.
        let other = format!("dfl_studio_7861={t}");
        assert_eq!(judge(Method::GET, "/", &headers(&[("cookie", &other)])), Verdict::Unauthorized);
    }

    #[test]
    fn a_foreign_host_is_refused_on_loopback() {
        let t = "a".repeat(64);
        let mut h = headers(&[(TOKEN_HEADER, &t)]);
        for host in ["localhost:7860", "[::1]:7860", "127.0.0.1"] {
            h.insert(header::HOST, HeaderValue::from_static(host));
            assert_eq!(judge(Method::GET, "/", &h), Verdict::Pass, "{host}");
        }
        h.insert(header::HOST, HeaderValue::from_static("evil.example:7860"));
        assert_eq!(judge(Method::GET, "/", &h), Verdict::Forbidden);
        let open = Guard::new(t.clone(), 7860, false);
        assert_eq!(open.judge(&Method::GET, &"/".parse().unwrap(), &h), Verdict::Pass);
    }

    #[test]
    fn tokens_are_random_and_long() {
        let (a, b) = (Guard::random_token(), Guard::random_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
