//! Who may write through the console: the operator's token, a session per
//! browser with its CSRF token, and the Host and Origin checks that keep
//! other sites (and DNS rebinding) out.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::failure::Failure;

/// The session cookie's name.
const COOKIE: &str = "lockstep_console";

/// How many sessions the console keeps; the oldest that has not given the
/// token goes first, so that a flood of new sessions (anyone who can reach
/// the page can make them) does not log the operator out.
const MAX_SESSIONS: usize = 256;

/// The token writes need: from `--token-file`, else
/// `LOCKSTEP_CONSOLE_TOKEN`, else a random one; `true` when it is random
/// (and so must be printed).
pub fn token(file: Option<&Path>) -> Result<(String, bool), Failure> {
    let given = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::refused(format!("cannot read --token-file {}: {e}", path.display()))
            })?;
            let line = text.lines().map(str::trim).find(|l| !l.is_empty());
            Some(line.map(str::to_owned).ok_or_else(|| {
                Failure::refused(format!(
                    "--token-file {} is empty; expected the token on its first line",
                    path.display()
                ))
            })?)
        }
        None => std::env::var("LOCKSTEP_CONSOLE_TOKEN")
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()),
    };
    match given {
        Some(token) if token.len() < 16 => Err(Failure::refused(
            "the console's token is shorter than 16 characters; expected at least 16 (e.g. \
             `openssl rand -hex 16`)",
        )),
        Some(token) => Ok((token, false)),
        None => Ok((random_hex(16)?, true)),
    }
}

/// `bytes` random bytes from the operating system, as hex.
pub fn random_hex(bytes: usize) -> Result<String, Failure> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)
        .map_err(|e| Failure::refused(format!("cannot draw a random token: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `a` and `b` are equal, in a time that does not depend on where
/// they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// One browser's session.
#[derive(Clone)]
pub struct Session {
    /// The id in the cookie.
    pub id: String,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    /// Whether the operator gave the token in this session.
    pub unlocked: bool,
}

/// A refusal: the status and what is wrong.
pub type Refusal = (StatusCode, String);

/// The console's gate.
pub struct Guard {
    /// The token, `None` when read-only.
    token: Option<String>,
    /// The `Host` values this console answers to.
    hosts: Vec<String>,
    sessions: Mutex<(HashMap<String, Session>, VecDeque<String>)>,
}

impl Guard {
    /// A gate for a console listening on `addr` that also answers to the
    /// `Host` values `allowed`.
    pub fn new(addr: SocketAddr, allowed: &[String], token: Option<String>) -> Guard {
        let mut hosts = vec![addr.to_string()];
        hosts.extend(allowed.iter().cloned());
        if addr.ip().is_loopback() {
            let port = addr.port();
            hosts.extend([
                format!("localhost:{port}"),
                format!("127.0.0.1:{port}"),
                format!("[::1]:{port}"),
            ]);
        }
        hosts.dedup();
        Guard {
            token,
            hosts,
            sessions: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// Refuses a request whose `Host` is not this console's address (a
    /// page of another site reaching it by DNS rebinding), and a request
    /// that is not a GET or HEAD unless its `Origin` is this console.
    pub fn check_request(&self, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return Err((
                StatusCode::FORBIDDEN,
                format!(
                    "the Host `{host}` is not this console's address; open http://{}/",
                    self.hosts[0]
                ),
            ));
        }
        if method == Method::GET || method == Method::HEAD {
            return Ok(());
        }
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !origin.eq_ignore_ascii_case(&format!("http://{host}")) {
            let shown = if origin.is_empty() { "none" } else { origin };
            return Err((
                StatusCode::FORBIDDEN,
                format!(
                    "refused: the request's Origin ({shown}) is not this console \
                     (http://{host}); writes come only from the console's own page; nothing \
                     was written"
                ),
            ));
        }
        Ok(())
    }

    /// The session of the request's cookie, or a new one and the
    /// `Set-Cookie` header that starts it.
    pub fn session(&self, headers: &HeaderMap) -> Result<(Session, Option<HeaderValue>), Failure> {
        if let Some(session) = self.known(headers) {
            return Ok((session, None));
        }
        let session = Session {
            id: random_hex(32)?,
            csrf: random_hex(32)?,
            unlocked: false,
        };
        let cookie = HeaderValue::from_str(&format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
            session.id
        ))
        .map_err(|e| Failure::refused(format!("cannot make the session cookie: {e}")))?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *sessions;
        if map.len() >= MAX_SESSIONS {
            let locked = order
                .iter()
                .position(|id| map.get(id).is_some_and(|s| !s.unlocked));
            if let Some(oldest) = order.remove(locked.unwrap_or(0)) {
                map.remove(&oldest);
            }
        }
        map.insert(session.id.clone(), session.clone());
        order.push_back(session.id.clone());
        Ok((session, Some(cookie)))
    }

    /// The session named by the request's cookie, if the console knows it.
    fn known(&self, headers: &HeaderMap) -> Option<Session> {
        let id = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, id)| id.to_owned())?;
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.0.get(&id).cloned()
    }

    /// Refuses a form unless it comes from a known session with that
    /// session's CSRF token and, when `unlocked` is asked, a session in
    /// which the operator gave the token.
    pub fn check_form(
        &self,
        headers: &HeaderMap,
        csrf: Option<&str>,
        unlocked: bool,
    ) -> Result<Session, Refusal> {
        let forbidden = |why: &str| {
            (
                StatusCode::FORBIDDEN,
                format!("refused: {why}; nothing was written"),
            )
        };
        let Some(session) = self.known(headers) else {
            return Err(forbidden(
                "no console session (the session cookie is missing or unknown): reload the \
                 console's page and give the token",
            ));
        };
        if !csrf.is_some_and(|c| same(c, &session.csrf)) {
            return Err(forbidden(
                "the form's CSRF token is missing or not this session's: submit the forms of \
                 the console's own page (reload it)",
            ));
        }
        if unlocked && !session.unlocked {
            return Err(forbidden(
                "this session has not given the console's token: enter it in the page's \
                 unlock form (it was printed when the console started, or is in \
                 --token-file / LOCKSTEP_CONSOLE_TOKEN)",
            ));
        }
        Ok(session)
    }

    /// Unlocks `session` if `given` is the token.
    pub fn unlock(&self, session: &Session, given: &str) -> Result<(), Refusal> {
        let Some(token) = &self.token else {
            return Err((
                StatusCode::NOT_FOUND,
                "this console is read-only".to_owned(),
            ));
        };
        if !same(given.trim(), token) {
            return Err((
                StatusCode::FORBIDDEN,
                "refused: that is not the console's token (it was printed when the console \
                 started, or is in --token-file / LOCKSTEP_CONSOLE_TOKEN)"
                    .to_owned(),
            ));
        }
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sessions.0.get_mut(&session.id) {
            s.unlocked = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn only_this_console_host_and_origin_pass() {
        let guard = Guard::new("127.0.0.1:7070".parse().unwrap(), &[], Some("t".repeat(16)));
        let ok = headers(&[
            (header::HOST, "127.0.0.1:7070"),
            (header::ORIGIN, "http://127.0.0.1:7070"),
        ]);
        assert!(guard.check_request(&Method::POST, &ok).is_ok());
        let rebinding = headers(&[(header::HOST, "evil.example:7070")]);
        assert!(guard.check_request(&Method::GET, &rebinding).is_err());
        let other = headers(&[
            (header::HOST, "127.0.0.1:7070"),
            (header::ORIGIN, "http://evil.example"),
        ]);
        let (status, why) = guard.check_request(&Method::POST, &other).unwrap_err();
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(why.contains("http://evil.example"), "{why}");
        let none = headers(&[(header::HOST, "localhost:7070")]);
        assert!(guard.check_request(&Method::POST, &none).is_err());
        assert!(guard.check_request(&Method::GET, &none).is_ok());
        let named = ["ops-1.internal:7070".to_owned()];
        let guard = Guard::new("0.0.0.0:7070".parse().unwrap(), &named, None);
        let by_name = headers(&[(header::HOST, "ops-1.internal:7070")]);
        assert!(guard.check_request(&Method::GET, &by_name).is_ok());
        assert!(guard.check_request(&Method::GET, &rebinding).is_err());
    }

    #[test]
    fn a_form_needs_the_session_csrf_and_the_token() {
        let guard = Guard::new("127.0.0.1:7070".parse().unwrap(), &[], Some("t".repeat(16)));
        let (session, cookie) = guard.session(&HeaderMap::new()).unwrap();
        let cookie = cookie.unwrap();
        let mut with = HeaderMap::new();
        with.insert(
            header::COOKIE,
            cookie
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .parse()
                .unwrap(),
        );
        assert!(
            guard
                .check_form(&HeaderMap::new(), Some(&session.csrf), false)
                .is_err()
        );
        assert!(guard.check_form(&with, Some("forged"), false).is_err());
        assert!(guard.check_form(&with, None, false).is_err());
        assert!(guard.check_form(&with, Some(&session.csrf), false).is_ok());
        assert!(guard.check_form(&with, Some(&session.csrf), true).is_err());
        assert!(guard.unlock(&session, "wrong-token-0000").is_err());
        assert!(guard.check_form(&with, Some(&session.csrf), true).is_err());
        guard.unlock(&session, &"t".repeat(16)).unwrap();
        assert!(guard.check_form(&with, Some(&session.csrf), true).is_ok());
    }

    /// Request headers carrying the cookie `set_cookie` set.
    fn with_cookie(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap();
        let mut map = HeaderMap::new();
        map.insert(header::COOKIE, pair.parse().unwrap());
        map
    }

    #[test]
    fn a_flood_of_new_sessions_does_not_evict_an_unlocked_one() {
        let guard = Guard::new("127.0.0.1:7070".parse().unwrap(), &[], Some("t".repeat(16)));
        let (first, first_cookie) = guard.session(&HeaderMap::new()).unwrap();
        let (operator, cookie) = guard.session(&HeaderMap::new()).unwrap();
        guard.unlock(&operator, &"t".repeat(16)).unwrap();
        let operator_headers = with_cookie(&cookie.unwrap());
        for _ in 0..MAX_SESSIONS * 2 {
            guard.session(&HeaderMap::new()).unwrap();
        }
        assert!(
            guard
                .check_form(&operator_headers, Some(&operator.csrf), true)
                .is_ok(),
            "the operator's unlocked session survives"
        );
        assert!(
            guard
                .check_form(
                    &with_cookie(&first_cookie.unwrap()),
                    Some(&first.csrf),
                    false
                )
                .is_err(),
            "the oldest locked session went"
        );
        let sessions = guard.sessions.lock().unwrap();
        assert_eq!(sessions.0.len(), MAX_SESSIONS);
        assert_eq!(sessions.1.len(), MAX_SESSIONS);
    }

    #[test]
    fn a_short_token_is_refused_saying_what_is_accepted() {
        let dir = std::env::temp_dir().join(format!("console-token-{}", std::process::id()));
        std::fs::write(&dir, "short\n").unwrap();
        let e = token(Some(&dir)).unwrap_err();
        assert!(e.message.contains("at least 16"), "{}", e.message);
        std::fs::write(&dir, "\n  0123456789abcdef0  \n").unwrap();
        assert_eq!(
            token(Some(&dir)).unwrap(),
            ("0123456789abcdef0".to_owned(), false)
        );
        std::fs::remove_file(&dir).unwrap();
    }
}
