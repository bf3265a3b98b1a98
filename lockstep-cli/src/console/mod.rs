//! `console`: the operator's page in the browser. It shows what `ls`,
//! `fleet` and `history` show, live, and writes through the very functions
//! `set`, `ramp` and `cancel` call ([`crate::set`], [`crate::cancel`]), after a preview of
//! the exact instants.
//!
//! Security: it listens on loopback unless told otherwise; it answers only
//! to its own `Host` and takes a POST only from its own `Origin`; every
//! write needs the token (printed at start, or `--token-file` /
//! `LOCKSTEP_CONSOLE_TOKEN`) given once per session, and each form carries
//! the session's CSRF token; `--read-only` serves no write route at all;
//! request bodies are bounded; the page loads nothing from the network and
//! its content security policy lets only its own inline script run.

mod connections;
mod guard;
mod page;
mod timeline;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::Markup;

use self::connections::Peer;
use self::guard::{Guard, Refusal, Session};
use self::page::{Access, Snapshot, Step};
use crate::args::{FieldPath, Unchecked};
use crate::context::Ctx;
use crate::failure::Failure;
use crate::time::{When, parse_time};
use crate::view::instant;
use crate::{cancel, set};

/// The largest request body the console reads.
pub const MAX_BODY: usize = 64 * 1024;

/// `lockstep console`'s options.
pub struct Options {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Serve no write route.
    pub read_only: bool,
    /// Where the token is, if not in the environment.
    pub token_file: Option<PathBuf>,
    /// More `Host` values to answer to.
    pub allow_host: Vec<String>,
}

/// The running console.
struct Console {
    ctx: Ctx,
    read_only: bool,
    guard: Guard,
}

/// Serves the console until the process is stopped.
pub async fn serve(ctx: Ctx, options: Options) -> Result<(), Failure> {
    let token = if options.read_only {
        None
    } else {
        Some(guard::token(options.token_file.as_deref())?)
    };
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| Failure::refused(format!("cannot listen on {}: {e}", options.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::refused(format!("cannot read the listening address: {e}")))?;
    if !addr.ip().is_loopback() {
        eprintln!(
            "warning: the console listens on {addr}, reachable from other machines; the token \
             and the page travel unencrypted (put it behind TLS, or listen on 127.0.0.1); it \
             answers only to the Host {addr}{}",
            if options.allow_host.is_empty() {
                " (add the names browsers use with --allow-host NAME:PORT)".to_owned()
            } else {
                format!(" and {}", options.allow_host.join(", "))
            }
        );
    }
    println!(
        "lockstep console for {} on http://{addr}/{}",
        ctx.store.describe(),
        if options.read_only {
            " (read-only)"
        } else {
            ""
        }
    );
    if let Some((token, true)) = &token {
        println!("write token (enter it in the page to unlock writes): {token}");
    }
    let console = Arc::new(Console {
        ctx,
        read_only: options.read_only,
        guard: Guard::new(addr, &options.allow_host, token.map(|(t, _)| t)),
    });
    connections::serve(listener, router(console)).await;
    Ok(())
}

fn router(console: Arc<Console>) -> Router {
    let mut app = Router::new()
        .route("/", get(index))
        .route("/live", get(live));
    if !console.read_only {
        app = app
            .route("/login", post(login))
            .route("/preview/{kind}", post(preview))
            .route("/write/{kind}", post(commit));
    }
    app.layer(middleware::from_fn_with_state(console.clone(), gate))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(console)
}

/// Every request: this console's `Host` (and `Origin` for a POST), and
/// the headers that keep the page to itself.
async fn gate(State(console): State<Arc<Console>>, request: Request, next: Next) -> Response {
    let nonce = guard::random_hex(16).unwrap_or_default();
    let mut response = match console
        .guard
        .check_request(request.method(), request.headers())
    {
        Err(refusal) => refused(&console, refusal, &nonce),
        Ok(()) => {
            let mut request = request;
            request.extensions_mut().insert(Nonce(nonce.clone()));
            next.run(request).await
        }
    };
    let headers = response.headers_mut();
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; \
         base-uri 'none'"
    );
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The nonce of this response's inline script and style.
#[derive(Clone)]
struct Nonce(String);

/// The nonce the gate drew for this request.
fn nonce_of(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<Nonce>()
        .map(|n| n.0.clone())
        .unwrap_or_default()
}

fn refused(console: &Console, (status, message): Refusal, nonce: &str) -> Response {
    let store = console.ctx.store.describe();
    (status, page::refusal(&store, &message, nonce)).into_response()
}

/// A failure of the shared write code, or of reading the store: 422 for a
/// refusal (the form said something the checks refuse), with its message.
fn failed(console: &Console, failure: Failure, nonce: &str) -> Response {
    refused(
        console,
        (StatusCode::UNPROCESSABLE_ENTITY, failure.message),
        nonce,
    )
}

async fn index(
    State(console): State<Arc<Console>>,
    request: axum::http::request::Parts,
) -> Response {
    let nonce = nonce_of(&request.extensions);
    let snapshot = match Snapshot::read(&console.ctx).await {
        Ok(s) => s,
        Err(e) => return failed(&console, e, &nonce),
    };
    if console.read_only {
        return page::index(&snapshot, &Access::ReadOnly, &nonce).into_response();
    }
    let (session, cookie) = match console.guard.session(&request.headers) {
        Ok(s) => s,
        Err(e) => return failed(&console, e, &nonce),
    };
    let access = if session.unlocked {
        Access::Unlocked(&session.csrf)
    } else {
        Access::Locked(&session.csrf)
    };
    let mut response = page::index(&snapshot, &access, &nonce).into_response();
    if let Some(cookie) = cookie {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

async fn live(State(console): State<Arc<Console>>) -> Response {
    match Snapshot::read(&console.ctx).await {
        Ok(snapshot) => page::live(&snapshot).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e.message).into_response(),
    }
}

type Fields = HashMap<String, String>;

async fn login(
    State(console): State<Arc<Console>>,
    request: axum::http::request::Parts,
    Form(form): Form<Fields>,
) -> Response {
    let nonce = nonce_of(&request.extensions);
    let csrf = form.get("csrf").map(String::as_str);
    let session = match console.guard.check_form(&request.headers, csrf, false) {
        Ok(s) => s,
        Err(r) => return refused(&console, r, &nonce),
    };
    let token = form.get("token").map_or("", String::as_str);
    let Some(Peer(peer)) = request.extensions.get::<Peer>().copied() else {
        let refusal = (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the console does not know who sent this request".to_owned(),
        );
        return refused(&console, refusal, &nonce);
    };
    match console.guard.unlock(&session, token, peer.ip()) {
        Ok(()) => Redirect::to("/").into_response(),
        Err(r) => refused(&console, r, &nonce),
    }
}

/// A form's text field, `None` when blank.
fn text<'a>(form: &'a Fields, name: &str) -> Option<&'a str> {
    form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// The form's field, as `NAMESPACE.FIELD`.
fn field_of(form: &Fields) -> Result<FieldPath, Failure> {
    let text = text(form, "field").unwrap_or("");
    crate::args::parse_field(text).map_err(|e| Failure::usage(format!("field `{text}`: {e}")))
}

/// A `TIME` of the form, parsed as the command line parses it.
fn when_of(form: &Fields, name: &str, flag: &str) -> Result<Option<When>, Failure> {
    text(form, name)
        .map(|t| parse_time(t).map_err(|e| Failure::usage(format!("{flag} `{t}`: {e}"))))
        .transpose()
}

/// Checks the form's session, CSRF token and that the session gave the
/// token.
fn unlocked(console: &Console, headers: &HeaderMap, form: &Fields) -> Result<Session, Refusal> {
    let csrf = form.get("csrf").map(String::as_str);
    console.guard.check_form(headers, csrf, true)
}

/// What a write form asks, planned with the command line's own functions.
enum Plan {
    Write(set::Planned),
    Cancel(cancel::PlannedCancel),
}

async fn plan(console: &Console, kind: &str, form: &Fields) -> Result<Plan, Failure> {
    let path = field_of(form)?;
    let unchecked = Unchecked {
        force: false,
        tick: None,
    };
    let ctx = &console.ctx;
    match kind {
        "set" => {
            let value = form.get("value").map_or("", String::as_str);
            let at = when_of(form, "at", "at")?;
            let planned = set::plan_set(ctx, &path, value, at, &unchecked, "console").await?;
            Ok(Plan::Write(planned))
        }
        "ramp" => {
            let values = form.get("values").map_or("", String::as_str);
            let every = text(form, "every")
                .map(|t| {
                    crate::args::parse_duration(t)
                        .map_err(|e| Failure::usage(format!("every `{t}`: {e}")))
                })
                .transpose()?;
            let from = when_of(form, "from", "from")?;
            let planned =
                set::plan_ramp(ctx, &path, values, every, from, &unchecked, "console").await?;
            Ok(Plan::Write(planned))
        }
        "cancel" => {
            let Some(at) = when_of(form, "at", "at")? else {
                return Err(Failure::usage(
                    "at: which entry to cancel? give its instant as the page shows it \
                     (2026-12-01T09:00:00Z); nothing was removed",
                ));
            };
            let planned = cancel::plan_cancel(ctx, &path, at, &unchecked).await?;
            Ok(Plan::Cancel(planned))
        }
        other => Err(Failure::usage(format!(
            "no write `{other}`; expected set, ramp or cancel"
        ))),
    }
}

/// The write's steps as the page lists them.
fn steps(planned: &set::Planned, instants: &[i64]) -> Vec<Step> {
    planned
        .values
        .iter()
        .zip(instants)
        .map(|(v, at)| Step {
            value: v.to_string(),
            at: *at,
        })
        .collect()
}

async fn preview(
    State(console): State<Arc<Console>>,
    Path(kind): Path<String>,
    request: axum::http::request::Parts,
    Form(form): Form<Fields>,
) -> Response {
    let nonce = nonce_of(&request.extensions);
    let session = match unlocked(&console, &request.headers, &form) {
        Ok(s) => s,
        Err(r) => return refused(&console, r, &nonce),
    };
    let store = console.ctx.store.describe();
    let planned = match plan(&console, &kind, &form).await {
        Ok(p) => p,
        Err(e) => return failed(&console, e, &nonce),
    };
    let mut hidden = vec![
        ("csrf", session.csrf.clone()),
        ("field", form.get("field").cloned().unwrap_or_default()),
    ];
    match planned {
        Plan::Write(planned) => {
            let preview = match planned.preview(&console.ctx).await {
                Ok(p) => p,
                Err(e) => return failed(&console, e, &nonce),
            };
            // The confirmation names the first instant exactly, so that it
            // commits the instants shown (or is refused if the horizon
            // passed them meanwhile).
            let first = instant(preview.instants[0]);
            let what = if kind == "set" {
                hidden.push(("value", form.get("value").cloned().unwrap_or_default()));
                hidden.push(("at", first));
                format!("set {}", planned.path)
            } else {
                hidden.push(("values", form.get("values").cloned().unwrap_or_default()));
                hidden.push(("every", form.get("every").cloned().unwrap_or_default()));
                hidden.push(("from", first));
                format!(
                    "ramp {} ({} entries in one write)",
                    planned.path,
                    planned.values.len()
                )
            };
            let steps = steps(&planned, &preview.instants);
            page::preview(
                &store,
                &what,
                &steps,
                preview.now,
                preview.horizon,
                &format!("/write/{kind}"),
                &hidden,
                &nonce,
            )
            .into_response()
        }
        Plan::Cancel(planned) => {
            let check = async {
                let keys = [planned.path.key.as_str()];
                let fetched = console
                    .ctx
                    .store
                    .fetch(&planned.path.namespace, &keys)
                    .await?;
                let now = crate::context::store_now(&fetched);
                lockstep::store::driver::check_cancel(
                    &planned.path.namespace,
                    planned.tick,
                    planned.at,
                    now,
                )
                .map_err(|e| Failure::refused(format!("{e}; nothing was removed")))?;
                let entry = fetched
                    .fields
                    .get(&planned.path.key)
                    .and_then(|es| es.iter().find(|e| e.at == planned.at))
                    .ok_or_else(|| {
                        Failure::refused(format!(
                            "`{}` has no entry at {}; {}; nothing was removed",
                            planned.path,
                            instant(planned.at),
                            cancel::pending_hint(&fetched, &planned.path.key, now)
                        ))
                    })?;
                Ok::<_, Failure>((now, entry.value.clone()))
            };
            let (now, value) = match check.await {
                Ok(v) => v,
                Err(e) => return failed(&console, e, &nonce),
            };
            hidden.push(("at", instant(planned.at)));
            let steps = [Step {
                value: crate::view::value_text(&value),
                at: planned.at,
            }];
            page::preview(
                &store,
                &format!("cancel {} at {}", planned.path, instant(planned.at)),
                &steps,
                now,
                planned.tick.horizon(now),
                "/write/cancel",
                &hidden,
                &nonce,
            )
            .into_response()
        }
    }
}

async fn commit(
    State(console): State<Arc<Console>>,
    Path(kind): Path<String>,
    request: axum::http::request::Parts,
    Form(form): Form<Fields>,
) -> Response {
    let nonce = nonce_of(&request.extensions);
    if let Err(r) = unlocked(&console, &request.headers, &form) {
        return refused(&console, r, &nonce);
    }
    let store = console.ctx.store.describe();
    let done = async {
        match plan(&console, &kind, &form).await? {
            Plan::Write(planned) => {
                let committed = planned.commit(&console.ctx).await?;
                let what = format!("{} {} (write {})", kind, planned.path, planned.write.id());
                Ok::<Markup, Failure>(page::done(
                    &store,
                    &what,
                    &steps(&planned, &committed.instants),
                    &nonce,
                ))
            }
            Plan::Cancel(planned) => {
                let outcome = planned.run(&console.ctx).await?;
                Ok(page::done(&store, outcome.text.trim_end(), &[], &nonce))
            }
        }
    };
    match done.await {
        Ok(markup) => markup.into_response(),
        Err(e) => failed(&console, e, &nonce),
    }
}
