//! The console's HTML: the page, its live part (what the page refreshes),
//! the preview of a write and the answers to a form. Built with maud,
//! which escapes every value it is given: names, values and history are
//! text, never markup.

use lockstep::schema::{Schema, ValueType};
use lockstep::store::{Fetched, Fleet, PendingChange, StoredEntry, from_datetime};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::timeline;
use crate::context::{Ctx, store_now, tick_of};
use crate::failure::Failure;
use crate::view::{self, instant, relative, span, split};

/// One registry as the page shows it.
pub struct Registry {
    /// The namespace.
    pub namespace: String,
    /// Its published schema.
    pub schema: Option<Schema>,
    /// Every field's entries.
    pub fetched: Option<Fetched>,
    /// Its live processes and who holds each pending change.
    pub fleet: Option<Fleet>,
    /// Why it could not be read (an undecodable schema, say): the page
    /// says so in its place and shows the other registries.
    pub error: Option<String>,
}

impl Registry {
    /// Reads `namespace`: its schema and, when it has one, its entries and
    /// fleet (the records beside the fetch, not a second fetch).
    async fn read(ctx: &Ctx, namespace: &str) -> Result<Registry, lockstep::Error> {
        let latest = ctx.store.schema(namespace).await?;
        let tick = latest.as_ref().and_then(|s| tick_of(s).ok());
        let schema = lockstep::store::Builds::read(&*ctx.store, namespace, tick)
            .await?
            .merged(latest.as_ref());
        let keys: Vec<&str> = schema
            .iter()
            .flat_map(|s| s.fields.iter().map(|f| f.key.as_str()))
            .collect();
        let (fetched, fleet) = if schema.is_some() {
            let fetched = ctx.store.fetch(namespace, &keys).await?;
            let reports = ctx.store.records(namespace).await?;
            let tick = schema.as_ref().and_then(|s| tick_of(s).ok());
            let fleet = Fleet::of(namespace, tick, &fetched, reports);
            (Some(fetched), Some(fleet))
        } else {
            (None, None)
        };
        Ok(Registry {
            namespace: namespace.to_owned(),
            schema,
            fetched,
            fleet,
            error: None,
        })
    }

    fn tick_ms(&self) -> i64 {
        self.schema
            .as_ref()
            .map_or(1_000, |s| i64::from(s.tick_secs.max(1)) * 1_000)
    }

    fn entries(&self, key: &str) -> &[StoredEntry] {
        self.fetched
            .as_ref()
            .and_then(|f| f.fields.get(key))
            .map_or(&[], Vec::as_slice)
    }

    fn held(&self, key: &str, at: i64) -> Option<&PendingChange> {
        crate::fleet::change_at(self.fleet.as_ref()?, key, at)
    }
}

/// Everything the page shows, read now.
pub struct Snapshot {
    /// The store, as it names itself (never with a password).
    pub store: String,
    /// The store's clock.
    pub now: i64,
    /// The registries, by namespace.
    pub registries: Vec<Registry>,
}

impl Snapshot {
    /// Reads every registry of the store: schema, entries and fleet. A
    /// registry that cannot be read spoils only its own part of the page;
    /// a store that cannot list its registries fails the page.
    pub async fn read(ctx: &Ctx) -> Result<Snapshot, Failure> {
        let mut registries = Vec::new();
        for namespace in ctx.store.namespaces().await? {
            let registry = match Registry::read(ctx, &namespace).await {
                Ok(registry) => registry,
                Err(e) => Registry {
                    namespace,
                    schema: None,
                    fetched: None,
                    fleet: None,
                    error: Some(e.to_string()),
                },
            };
            registries.push(registry);
        }
        let now = registries
            .iter()
            .find_map(|r| r.fetched.as_ref().map(store_now));
        Ok(Snapshot {
            store: ctx.store.describe(),
            now: now.unwrap_or_else(|| chrono::Utc::now().timestamp_millis()),
            registries,
        })
    }

    /// How often the page refreshes: once a tick of the fastest registry,
    /// never more often than once a second.
    pub fn refresh_ms(&self) -> i64 {
        self.registries
            .iter()
            .map(Registry::tick_ms)
            .min()
            .unwrap_or(1_000)
            .max(1_000)
    }

    /// Every field a form may name: `namespace.key` and its Rust type.
    fn fields(&self) -> Vec<(String, String)> {
        self.registries
            .iter()
            .filter_map(|r| Some((r, r.schema.as_ref()?)))
            .flat_map(|(r, s)| {
                s.fields
                    .iter()
                    .map(move |f| (format!("{}.{}", r.namespace, f.key), f.rust_type.clone()))
            })
            .collect()
    }
}

/// The page's style: plain, readable at 2 a.m.
const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:10px 18px;display:flex;gap:18px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0}header a{color:inherit;text-decoration:none}header .store{opacity:.8;font-family:monospace}
main,section.write,.answer{padding:6px 18px}
.registry{background:#fff;border:1px solid #d8dce3;border-radius:6px;margin:12px 0;padding:8px 14px}
h2{font-size:16px;margin:6px 0}h2 small,h3 small{font-weight:normal;color:#5a6372}
h3{font-size:14px;margin:10px 0 4px}
table{border-collapse:collapse;margin:4px 0}td,th{padding:3px 10px 3px 0;text-align:left;vertical-align:top}
th{font-weight:600;color:#5a6372;font-size:12px;text-transform:uppercase}
code,.value,.mono{font-family:ui-monospace,monospace}
.pending{color:#8a4b00}.held-all{color:#17692c;font-weight:600}.held-some{color:#a11;font-weight:600}
.refusal{background:#fde8e8;border:1px solid #e0a0a0;padding:8px 12px;border-radius:4px}
.done{background:#e6f4ea;border:1px solid #9cc9a8;padding:8px 12px;border-radius:4px}
form{margin:6px 0}fieldset{border:1px solid #d8dce3;border-radius:6px;margin:8px 0;background:#fff}
input,select,button{font:inherit;margin:2px 6px 2px 0}button{cursor:pointer}
svg.timeline .axis{stroke:#8b93a1}svg.timeline .now{stroke:#1d2430;stroke-dasharray:3 2}
svg.timeline .frozen{fill:#fbe3c0;opacity:.7}svg.timeline line.entry{stroke:#2b6cb0;stroke-width:2}
svg.timeline line.pending{stroke:#c77700;stroke-dasharray:4 2}svg.timeline circle.entry{fill:#2b6cb0}
svg.timeline circle.pending{fill:#c77700}svg.timeline text{font:10px ui-monospace,monospace;fill:#1d2430}
.muted{color:#5a6372}
";

/// The countdowns and the refresh: no library, no build step.
const SCRIPT: &str = "
(function(){
  var live=document.getElementById('live');if(!live)return;
  var every=+live.dataset.refreshMs||1000,offset=0;
  function sync(){var b=document.getElementById('live-body');if(b)offset=+b.dataset.now-Date.now();}
  function fmt(ms){var s=Math.floor(ms/1000);if(s<60)return (ms/1000).toFixed(1)+'s';
    if(s<3600)return Math.floor(s/60)+'m '+(s%60)+'s';return Math.floor(s/3600)+'h '+Math.floor(s%3600/60)+'m';}
  function tick(){var now=Date.now()+offset;
    document.querySelectorAll('[data-countdown]').forEach(function(e){
      var d=+e.dataset.countdown-now;e.textContent=d>0?'in '+fmt(d):'now';});}
  function refresh(){fetch('/live',{cache:'no-store',credentials:'same-origin'})
    .then(function(r){return r.ok?r.text():null;})
    .then(function(t){if(t!==null){live.innerHTML=t;sync();tick();}})
    .catch(function(){}).then(function(){setTimeout(refresh,every);});}
  sync();tick();setInterval(tick,250);setTimeout(refresh,every);
})();
";

/// A whole page around `body`; `nonce` lets the page's one script run.
fn frame(title: &str, store: &str, state: Markup, body: Markup, nonce: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — lockstep console" }
                style nonce=(nonce) { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { a href="/" { "lockstep console" } }
                    span class="store" { (store) }
                    (state)
                }
                (body)
                script nonce=(nonce) { (PreEscaped(SCRIPT)) }
            }
        }
    }
}

/// What the header says about writing.
pub enum Access<'a> {
    /// `--read-only`.
    ReadOnly,
    /// Writes need the token first; the session's CSRF token.
    Locked(&'a str),
    /// The session gave the token.
    Unlocked(&'a str),
}

/// The main page: the live part, then the forms.
pub fn index(snapshot: &Snapshot, access: &Access<'_>, nonce: &str) -> Markup {
    let state = match access {
        Access::ReadOnly => html! { span { "read-only: no write route is served" } },
        Access::Locked(csrf) => html! {
            form method="post" action="/login" id="unlock" {
                input type="hidden" name="csrf" value=(csrf);
                label { "token " input type="password" name="token" autocomplete="off" required; }
                button type="submit" { "unlock writes" }
            }
        },
        Access::Unlocked(_) => html! { span id="unlocked" { "writes unlocked for this session" } },
    };
    let body = html! {
        main id="live" data-refresh-ms=(snapshot.refresh_ms()) { (live(snapshot)) }
        @if let Access::Unlocked(csrf) = access { (forms(snapshot, csrf)) }
    };
    frame("registries", &snapshot.store, state, body, nonce)
}

/// The part of the page that refreshes itself.
pub fn live(snapshot: &Snapshot) -> Markup {
    let now = snapshot.now;
    html! {
        div id="live-body" data-now=(now) {
            p class="muted" { "store clock " span class="mono" { (instant(now)) } }
            @if snapshot.registries.is_empty() {
                p { "The store holds no registries yet (a registry publishes its schema when it starts)." }
            }
            @for registry in &snapshot.registries { (registry_section(registry, now)) }
        }
    }
}

fn registry_section(r: &Registry, now: i64) -> Markup {
    if let Some(error) = &r.error {
        return html! {
            section class="registry" data-namespace=(r.namespace) {
                h2 { (r.namespace) }
                p class="refusal unreadable" { "Cannot read this registry: " (error) }
            }
        };
    }
    let Some(schema) = &r.schema else {
        return html! {
            section class="registry" data-namespace=(r.namespace) {
                h2 { (r.namespace) }
                p class="muted" { "No published schema: start a registry of it to see its fields." }
            }
        };
    };
    let tick_ms = r.tick_ms();
    let horizon = lockstep::Tick::new(std::time::Duration::from_millis(tick_ms.unsigned_abs()))
        .map_or(now + tick_ms, |t| t.horizon(now));
    let processes = r.fleet.as_ref().map_or(&[][..], |f| f.processes.as_slice());
    html! {
        section class="registry" data-namespace=(r.namespace) {
            h2 {
                (r.namespace) " "
                small {
                    "tick " (span(tick_ms)) " · revision " (r.fleet.as_ref().map_or(0, |f| f.revision))
                    " · " (processes.len()) " live process" @if processes.len() != 1 { "es" }
                    " · horizon " span class="mono" { (instant(horizon)) }
                }
            }
            table class="fields" {
                tr { th { "field" } th { "type" } th { "value now" } th { "since" } th { "next change" } }
                @for field in &schema.fields {
                    @let (active, pending) = split(r.entries(&field.key), now, Some(field));
                    tr data-field=(format!("{}.{}", r.namespace, field.key)) {
                        td class="mono" { (field.key) }
                        td class="mono" title=(field.value_type.as_ref().map(ValueType::to_string).unwrap_or_default()) { (field.rust_type) }
                        td class="value" {
                            @match active {
                                Some(e) => (view::value_text(&e.value)),
                                None => { (view::short(&field.default.to_string())) " " span class="muted" { "(default)" } }
                            }
                        }
                        td class="mono muted" { (active.map(|e| instant(e.at)).unwrap_or_default()) }
                        td class="next" {
                            @if let Some(e) = pending.first() {
                                span class="pending value" { (view::value_text(&e.value)) }
                                " " span data-countdown=(e.at) { (relative(e.at, now)) }
                                @if pending.len() > 1 { " (" (pending.len() - 1) " more)" }
                            }
                        }
                    }
                }
            }
            (pending_list(r, schema, now))
            @if !processes.is_empty() {
                h3 { "processes" }
                table class="processes" {
                    tr { th { "host" } th { "pid" } th { "program" } th { "last fetch" } th { "revision" } th { "rejected" } }
                    @for p in processes {
                        tr {
                            td { (p.host) } td { (p.pid) } td { (p.program) }
                            td { (span(now - from_datetime(p.last_fetch))) " ago" }
                            td { (p.revision) } td { (p.rejected) }
                        }
                    }
                }
            }
            @for field in &schema.fields {
                @let entries = r.entries(&field.key);
                h3 { (field.key) " " small { "history and timeline" } }
                (timeline::svg(entries, now, horizon, tick_ms))
                @if entries.is_empty() {
                    p class="muted" { "never written: every process serves the default" }
                } @else {
                    table class="history" data-field=(format!("{}.{}", r.namespace, field.key)) {
                        tr { th { "instant" } th { "value" } th { "written by" } th { "written at" } }
                        @for e in entries.iter().rev().take(10) {
                            tr class=(if e.at > now { "pending" } else { "" }) {
                                td class="mono" { (instant(e.at)) }
                                td class="value" {
                                    (view::value_text(&e.value))
                                    @if let Some(why) = view::bad(e, Some(field)) { " " span class="held-some" { "(no process serves it: " (why) ")" } }
                                }
                                td { (e.origin.as_ref().map(|o| o.by.as_str()).unwrap_or("")) }
                                td class="mono" { (e.origin.as_ref().map(|o| instant(o.written_at)).unwrap_or_default()) }
                            }
                        }
                    }
                    @if entries.len() > 10 { p class="muted" { (entries.len() - 10) " older entries: see `lockstep history`" } }
                }
            }
        }
    }
}

fn pending_list(r: &Registry, schema: &Schema, now: i64) -> Markup {
    let pending: Vec<(&str, &StoredEntry)> = schema
        .fields
        .iter()
        .flat_map(|f| {
            let (_, pending) = split(r.entries(&f.key), now, Some(f));
            pending.into_iter().map(move |e| (f.key.as_str(), e))
        })
        .collect();
    html! {
        h3 { "pending changes" }
        @if pending.is_empty() { p class="muted" { "none" } }
        ul class="pending-changes" {
            @for (key, e) in &pending {
                @let held = r.held(key, e.at);
                li class="pending" data-field=(format!("{}.{key}", r.namespace)) data-at=(e.at) {
                    span class="mono" { (key) } " = " span class="value" { (view::value_text(&e.value)) }
                    " at " span class="mono" { (instant(e.at)) } " ("
                    span data-countdown=(e.at) { (relative(e.at, now)) } ") "
                    @match held {
                        Some(c) if c.of == 0 => span class="held" { "no live process reports" },
                        Some(c) => span class=(if c.held_by_all() { "held held-all" } else { "held held-some" }) {
                            (c.held_by) " of " (c.of) " processes hold it"
                        },
                        None => span class="held muted" { "holders unknown" },
                    }
                    @if let Some(o) = &e.origin { " " span class="muted" { "by " (o.by) } }
                    @if let Some(c) = held {
                        @for id in &c.missing {
                            br; span class="held-some" { "not held by " (r.fleet.as_ref().and_then(|f| f.process(id)).map_or_else(|| id.clone(), |p| p.name())) }
                        }
                    }
                }
            }
        }
    }
}

/// The write forms; each goes to a preview first.
fn forms(snapshot: &Snapshot, csrf: &str) -> Markup {
    let fields = snapshot.fields();
    let select = html! {
        select name="field" required {
            @for (name, ty) in &fields { option value=(name) { (name) " (" (ty) ")" } }
        }
    };
    html! {
        section class="write" id="write" {
            h2 { "write" }
            p class="muted" {
                "Every write is checked against the registry's schema and the horizon exactly as "
                code { "lockstep set/ramp/cancel" } " checks it, and shown with its exact instants before you confirm."
            }
            fieldset {
                legend { "set or schedule" }
                form method="post" action="/preview/set" id="form-set" {
                    input type="hidden" name="csrf" value=(csrf);
                    (select)
                    label { "value " input name="value" required placeholder="42, true, \"text\""; }
                    label { "at " input name="at" placeholder="horizon, or +10m, 2026-12-01T09:00:00Z"; }
                    button type="submit" { "preview" }
                }
            }
            fieldset {
                legend { "ramp" }
                form method="post" action="/preview/ramp" id="form-ramp" {
                    input type="hidden" name="csrf" value=(csrf);
                    (select)
                    label { "values " input name="values" required placeholder="0,10,25,50,100"; }
                    label { "every " input name="every" placeholder="a tick, or 10m"; }
                    label { "from " input name="from" placeholder="horizon, or +10m"; }
                    button type="submit" { "preview" }
                }
            }
            fieldset {
                legend { "cancel a pending entry" }
                form method="post" action="/preview/cancel" id="form-cancel" {
                    input type="hidden" name="csrf" value=(csrf);
                    (select)
                    label { "at " input name="at" required placeholder="the entry's instant"; }
                    button type="submit" { "preview" }
                }
            }
        }
    }
}

/// One step of a previewed or committed write.
pub struct Step {
    /// The value (as JSON text).
    pub value: String,
    /// Its instant.
    pub at: i64,
}

/// The preview of a write: what it does, its instants and the horizon,
/// and the form that confirms exactly that.
#[allow(clippy::too_many_arguments)]
pub fn preview(
    store: &str,
    what: &str,
    steps: &[Step],
    now: i64,
    horizon: i64,
    confirm: &str,
    hidden: &[(&str, String)],
    nonce: &str,
) -> Markup {
    let body = html! {
        div class="answer" id="preview" {
            h2 { "confirm: " (what) }
            p {
                "store clock " span class="mono" { (instant(now)) } ", horizon "
                span class="mono" id="horizon" { (instant(horizon)) }
                " (nothing may change before it)"
            }
            table class="steps" {
                tr { th { "value" } th { "instant" } th { "" } }
                @for s in steps {
                    tr { td class="value" { (s.value) } td class="mono instant" { (instant(s.at)) } td { (relative(s.at, now)) } }
                }
            }
            form method="post" action=(confirm) id="confirm" {
                @for (name, value) in hidden { input type="hidden" name=(name) value=(value); }
                button type="submit" { "confirm" } " " a href="/" { "back (write nothing)" }
            }
        }
    };
    frame("confirm", store, html! {}, body, nonce)
}

/// What a confirmed write did.
pub fn done(store: &str, what: &str, steps: &[Step], nonce: &str) -> Markup {
    let body = html! {
        div class="answer" {
            p class="done" id="done" {
                "done: " (what)
                @for s in steps { br; span class="value" { (s.value) } " at " span class="mono" { (instant(s.at)) } }
            }
            p { a href="/" id="back" { "back to the registries" } }
        }
    };
    frame("done", store, html! {}, body, nonce)
}

/// A refusal: what is wrong, and that nothing was written.
pub fn refusal(store: &str, message: &str, nonce: &str) -> Markup {
    let body = html! {
        div class="answer" {
            p class="refusal" id="refusal" { (message) }
            p { a href="/" { "back to the registries" } }
        }
    };
    frame("refused", store, html! {}, body, nonce)
}
