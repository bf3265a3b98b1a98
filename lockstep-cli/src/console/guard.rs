//! Who may write through the console: the operator's token, a session per
//! browser with its CSRF token, and the Host and Origin checks that keep
//! other sites (and DNS rebinding) out.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::failure::Failure;

/// The session cookie's name.
const COOKIE: &str = "lockstep_console";

/// How many sessions the console keeps; the oldest that has not given the
/// token goes first, so that a flood of new sessions (anyone who can reach
/// the page can make them) does not log the operator out.
const MAX_SESSIONS: usize = 256;

/// Wrong tokens a client may give before it must wait between attempts.
const FREE_ATTEMPTS: u32 = 5;

/// The longest wait between attempts: after [`FREE_ATTEMPTS`] wrong
/// tokens the wait is a second, doubling with each further one up to this.
const LONGEST_WAIT: Duration = Duration::from_secs(60);

/// How many clients' wrong tokens are remembered; when more give wrong
/// tokens, the one whose last attempt is oldest is forgotten first.
const CLIENTS_REMEMBERED: usize = 4096;

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
    attempts: Mutex<Attempts>,
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
            attempts: Mutex::new(Attempts::default()),
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

    /// Unlocks `session` if `given` is the token. A client (an IPv4
    /// address, or an IPv6 /64) that gave [`FREE_ATTEMPTS`] wrong tokens
    /// must then wait between attempts, a second and doubling up to
    /// [`LONGEST_WAIT`]; until then every attempt of it is refused (429),
    /// the right token too, so that guessing costs time.
    pub fn unlock(&self, session: &Session, given: &str, client: IpAddr) -> Result<(), Refusal> {
        let Some(token) = &self.token else {
            return Err((
                StatusCode::NOT_FOUND,
                "this console is read-only".to_owned(),
            ));
        };
        let client = Client::of(client);
        let now = Instant::now();
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(wait) = attempts.wait(client, now) {
            return Err((
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "refused: too many wrong tokens from {client}; try again in {} s (after {} \
                     wrong tokens each further one doubles the wait, up to {} s)",
                    wait.as_secs_f64().ceil(),
                    FREE_ATTEMPTS,
                    LONGEST_WAIT.as_secs()
                ),
            ));
        }
        if !same(given.trim(), token) {
            attempts.wrong(client, now);
            return Err((
                StatusCode::FORBIDDEN,
                "refused: that is not the console's token (it was printed when the console \
                 started, or is in --token-file / LOCKSTEP_CONSOLE_TOKEN)"
                    .to_owned(),
            ));
        }
        attempts.right(client);
        drop(attempts);
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sessions.0.get_mut(&session.id) {
            s.unlocked = true;
        }
        Ok(())
    }
}

/// Who gives tokens: an IPv4 address, or the /64 of an IPv6 one (a host
/// commonly holds a whole /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Client(IpAddr);

impl Client {
    fn of(ip: IpAddr) -> Client {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Client(IpAddr::V6(prefix.into()))
                }
            },
            v4 => Client(v4),
        }
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
            v4 => write!(f, "{v4}"),
        }
    }
}

/// The wrong tokens each client gave: how many since its last right one,
/// and when the last.
#[derive(Default)]
struct Attempts(HashMap<Client, (u32, Instant)>);

impl Attempts {
    /// How long `client` must still wait before it may try again.
    fn wait(&self, client: Client, now: Instant) -> Option<Duration> {
        let (wrong, last) = self.0.get(&client)?;
        let doublings = wrong.checked_sub(FREE_ATTEMPTS)?;
        let wait = Duration::from_secs(1u64 << doublings.min(16)).min(LONGEST_WAIT);
        (*last + wait)
            .checked_duration_since(now)
            .filter(|left| !left.is_zero())
    }

    fn wrong(&mut self, client: Client, now: Instant) {
        if !self.0.contains_key(&client)
            && self.0.len() >= CLIENTS_REMEMBERED
            && let Some(oldest) = self.0.iter().min_by_key(|(_, (_, last))| *last)
        {
            let oldest = *oldest.0;
            self.0.remove(&oldest);
        }
        let entry = self.0.entry(client).or_insert((0, now));
        *entry = (entry.0 + 1, now);
    }

    fn right(&mut self, client: Client) {
        self.0.remove(&client);
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
        let client: IpAddr = [127, 0, 0, 1].into();
        assert!(guard.unlock(&session, "wrong-token-0000", client).is_err());
        assert!(guard.check_form(&with, Some(&session.csrf), true).is_err());
        guard.unlock(&session, &"t".repeat(16), client).unwrap();
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
        guard
            .unlock(&operator, &"t".repeat(16), [127, 0, 0, 1].into())
            .unwrap();
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

    #[test]
    fn wrong_tokens_cost_a_client_time_and_only_that_client() {
        let mut attempts = Attempts::default();
        let start = Instant::now();
        let client = Client::of([10, 0, 0, 1].into());
        let other = Client::of([10, 0, 0, 2].into());
        for _ in 0..FREE_ATTEMPTS {
            assert_eq!(attempts.wait(client, start), None);
            attempts.wrong(client, start);
        }
        let s = Duration::from_secs;
        assert_eq!(attempts.wait(client, start), Some(s(1)));
        assert_eq!(attempts.wait(client, start + s(1)), None);
        assert_eq!(attempts.wait(other, start), None, "another client may try");
        attempts.wrong(client, start + s(1));
        assert_eq!(attempts.wait(client, start + s(1)), Some(s(2)));
        for n in 0..20 {
            attempts.wrong(client, start + s(10 + n));
        }
        assert_eq!(attempts.wait(client, start + s(29)), Some(LONGEST_WAIT));
        attempts.right(client);
        assert_eq!(attempts.wait(client, start + s(29)), None);
        // One IPv6 host's /64 is one client; a mapped IPv4 is the IPv4.
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        assert_eq!(Client::of(a), Client::of(b));
        assert_eq!(Client::of(a).to_string(), "2001:db8::/64");
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(Client::of(mapped), client);
    }

    #[test]
    fn a_right_token_is_refused_while_its_client_must_wait() {
        let token = "t".repeat(16);
        let guard = Guard::new("127.0.0.1:7070".parse().unwrap(), &[], Some(token.clone()));
        let (session, _) = guard.session(&HeaderMap::new()).unwrap();
        let client: IpAddr = [127, 0, 0, 1].into();
        for _ in 0..FREE_ATTEMPTS {
            let (status, _) = guard.unlock(&session, "wrong", client).unwrap_err();
            assert_eq!(status, StatusCode::FORBIDDEN);
        }
        let (status, message) = guard.unlock(&session, &token, client).unwrap_err();
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            message.contains("too many wrong tokens from 127.0.0.1; try again in 1 s"),
            "{message}"
        );
    }
}
