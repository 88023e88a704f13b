//! An offline Stripe: PaymentIntents (with their latest charge), refunds, disputes and events
//! (`type` wildcards, `delivery_success`) with Stripe's real
//! object shape (templates in `templates/`), Stripe's list semantics (newest first,
//! `created[gte|lte]`, `limit`, `starting_after`, `has_more`, `expand[]`) and error format, plus
//! switches that inject 429s, 500s, slow answers and a wrong key. It counts the requests it
//! gets. `paytool demo` reconciles against it, and so do the tests; paytool talks to it through
//! the same client as to api.stripe.com.
//!
//! Long on purpose: one HTTP server with every endpoint paytool reads, each a few lines over
//! the shared list, expand and fault machinery.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

const PAYMENT_INTENT: &str = include_str!("templates/payment_intent.json");
const CHARGE: &str = include_str!("templates/charge.json");
const REFUND: &str = include_str!("templates/refund.json");
const DISPUTE: &str = include_str!("templates/dispute.json");
const EVENT: &str = include_str!("templates/event.json");
const PAYOUT: &str = include_str!("templates/payout.json");
const BALANCE_TRANSACTION: &str = include_str!("templates/balance_transaction.json");

/// The templates, by Stripe resource name, for the shape test against Stripe's fixtures.
pub const TEMPLATES: [(&str, &str); 7] = [
    ("payment_intent", PAYMENT_INTENT),
    ("charge", CHARGE),
    ("refund", REFUND),
    ("dispute", DISPUTE),
    ("event", EVENT),
    ("payout", PAYOUT),
    ("balance_transaction", BALANCE_TRANSACTION),
];

#[derive(Debug, Clone)]
pub struct SimPaymentIntent {
    pub id: String,
    pub amount: i64,
    /// Lower-case, as Stripe sends it.
    pub currency: String,
    pub status: String,
    pub created: i64,
    pub order_id: Option<String>,
    /// A charge (id, created) for succeeded PaymentIntents.
    pub charge: Option<(String, i64)>,
    pub last_error: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct SimRefund {
    pub id: String,
    pub payment_intent: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub reason: Option<String>,
    pub created: i64,
}

#[derive(Debug, Clone)]
pub struct SimDispute {
    pub id: String,
    pub payment_intent: String,
    pub amount: i64,
    pub currency: String,
    /// `warning_needs_response`, `needs_response`, `under_review`, `won`, `lost`, ...
    pub status: String,
    pub reason: String,
    pub created: i64,
    /// The evidence's due date.
    pub due_by: Option<i64>,
}

/// What an event's `data.object` is: rendered from the simulator's objects when it is listed,
/// as Stripe renders the object as it was when the event happened.
#[derive(Debug, Clone)]
pub enum EventObject {
    PaymentIntent(String),
    /// The latest charge of this PaymentIntent.
    Charge(String),
    Refund(String),
    Dispute(String),
}

#[derive(Debug, Clone)]
pub struct SimEvent {
    pub id: String,
    /// `payment_intent.succeeded`, `charge.refunded`, ...
    pub type_: String,
    pub created: i64,
    pub object: EventObject,
    /// `false`: every attempt to deliver its webhook failed (listed by `delivery_success=false`).
    pub delivery_success: bool,
}

/// An automatic payout of the balance to the bank.
#[derive(Debug, Clone)]
pub struct SimPayout {
    pub id: String,
    pub amount: i64,
    /// Lower-case, as Stripe sends it.
    pub currency: String,
    pub created: i64,
    pub arrival_date: i64,
    /// `paid`, `pending`, `in_transit`, `canceled`, `failed`.
    pub status: String,
    pub failure_code: Option<String>,
    /// `completed` once its balance transactions can be listed.
    pub reconciliation_status: String,
}

/// What a balance transaction moved money for (its `source`, expandable).
#[derive(Debug, Clone)]
pub enum TxnSource {
    /// The latest charge of this PaymentIntent.
    Charge(String),
    Refund(String),
    Dispute(String),
    Payout(String),
    /// An adjustment or fee with no object of its own.
    Nothing,
}

/// One movement of the Stripe balance.
#[derive(Debug, Clone)]
pub struct SimBalanceTransaction {
    pub id: String,
    /// `charge`, `refund`, `adjustment`, `payout`, `stripe_fee`, … (or one paytool does not know).
    pub type_: String,
    pub reporting_category: String,
    /// Gross, in the settlement currency's minor units (negative for money going out).
    pub amount: i64,
    pub fee: i64,
    pub currency: String,
    /// Set when the charge was presented in another currency.
    pub exchange_rate: Option<f64>,
    pub created: i64,
    pub available_on: i64,
    pub source: TxnSource,
    /// The automatic payout that paid it out, if one did.
    pub payout: Option<String>,
}

/// Failure switches. Counts are of requests that reach the simulator.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer every Nth request with 429 (`Stripe-Should-Retry: true`).
    pub rate_limit_every: Option<u64>,
    /// Answer the next N requests with 500.
    pub server_errors: u64,
    /// Answer everything with 500 (an outage).
    pub outage: bool,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
    /// Answer everything with 500 once this many requests have been answered.
    pub outage_after: Option<u64>,
}

#[derive(Debug, Default)]
struct SimState {
    key: String,
    intents: Vec<SimPaymentIntent>,
    /// Whether `intents` and `events` are in list order (newest first) and `position` up
    /// to date.
    sorted: bool,
    position: HashMap<String, usize>,
    refunds: Vec<SimRefund>,
    disputes: Vec<SimDispute>,
    events: Vec<SimEvent>,
    payouts: Vec<SimPayout>,
    balance_transactions: Vec<SimBalanceTransaction>,
    /// `data_available_start`/`_end` of the payout reconciliation report (None: all time).
    report_available: Option<(i64, i64)>,
    /// Report runs started: (interval start, interval end), by index.
    report_runs: Vec<(i64, i64)>,
    faults: Faults,
    requests: u64,
    /// Requests per "METHOD /path" (retrieve paths collapsed to {id}).
    by_endpoint: HashMap<String, u64>,
    mutations: u64,
}

impl SimState {
    /// Newest first, as Stripe lists, with an id index; done once after changes, not per request.
    fn sort(&mut self) {
        if self.sorted {
            return;
        }
        self.intents
            .sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        self.events
            .sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        self.position = self
            .intents
            .iter()
            .enumerate()
            .map(|(i, pi)| (pi.id.clone(), i))
            .collect();
        self.sorted = true;
    }
}

/// A running simulator, on its own thread and runtime (so a test can block on a subprocess).
pub struct StripeSim {
    state: Arc<Mutex<SimState>>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StripeSim {
    /// Starts on 127.0.0.1, on a free port; requests must carry `Bearer {key}`.
    pub fn start(key: &str) -> std::io::Result<StripeSim> {
        let state = Arc::new(Mutex::new(SimState {
            key: key.to_owned(),
            ..SimState::default()
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("stripe-sim".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let _ = axum::serve(listener, router(app_state))
                        .with_graceful_shutdown(async {
                            let _ = rx.await;
                        })
                        .await;
                });
            })?;
        Ok(StripeSim {
            state,
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// What `--stripe-base-url` takes.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add_payment_intent(&self, intent: SimPaymentIntent) {
        let mut state = self.state();
        state.intents.push(intent);
        state.sorted = false;
    }

    pub fn add_refund(&self, refund: SimRefund) {
        self.state().refunds.push(refund);
    }

    pub fn add_dispute(&self, dispute: SimDispute) {
        self.state().disputes.push(dispute);
    }

    pub fn add_event(&self, event: SimEvent) {
        let mut state = self.state();
        state.events.push(event);
        state.sorted = false;
    }

    pub fn add_payout(&self, payout: SimPayout) {
        self.state().payouts.push(payout);
    }

    pub fn add_balance_transaction(&self, txn: SimBalanceTransaction) {
        self.state().balance_transactions.push(txn);
    }

    /// Limits the payout reconciliation report's data to `[start, end]`.
    pub fn set_report_data_available(&self, start: i64, end: i64) {
        self.state().report_available = Some((start, end));
    }

    /// Report runs started so far.
    pub fn report_runs(&self) -> usize {
        self.state().report_runs.len()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }

    pub fn requests(&self) -> u64 {
        self.state().requests
    }

    pub fn requests_to(&self, endpoint: &str) -> u64 {
        self.state().by_endpoint.get(endpoint).copied().unwrap_or(0)
    }

    /// POST/DELETE requests received: paytool must never send one.
    pub fn mutations(&self) -> u64 {
        self.state().mutations
    }

    pub fn reset_counters(&self) {
        let mut state = self.state();
        state.requests = 0;
        state.by_endpoint.clear();
        state.mutations = 0;
    }
}

impl Drop for StripeSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Shared = Arc<Mutex<SimState>>;

fn router(state: Shared) -> Router {
    Router::new()
        .route("/v1/payment_intents", get(list_payment_intents))
        .route("/v1/payment_intents/{id}", get(retrieve_payment_intent))
        .route("/v1/refunds", get(list_refunds))
        .route("/v1/disputes", get(list_disputes))
        .route("/v1/events", get(list_events))
        .route("/v1/payouts", get(list_payouts))
        .route("/v1/payouts/{id}", get(retrieve_payout))
        .route("/v1/reporting/report_types/{id}", get(retrieve_report_type))
        .route(
            "/v1/reporting/report_runs",
            axum::routing::post(create_report_run),
        )
        .route("/v1/reporting/report_runs/{id}", get(retrieve_report_run))
        .route("/v1/files/{id}/contents", get(file_contents))
        .route("/v1/balance_transactions", get(list_balance_transactions))
        .fallback(unknown)
        .with_state(state)
}

/// Auth, counting and fault injection, common to every request. `Err` is the answer to give.
async fn admit(state: &Shared, endpoint: &str, headers: &HeaderMap) -> Result<(), Response> {
    let (faults, key_ok, n) = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.requests += 1;
        *s.by_endpoint.entry(endpoint.to_owned()).or_default() += 1;
        let expected = format!("Bearer {}", s.key);
        let key_ok = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == expected);
        let faults = s.faults.clone();
        if s.faults.server_errors > 0 {
            s.faults.server_errors -= 1;
        }
        (faults, key_ok, s.requests)
    };
    if let Some(delay) = faults.delay {
        tokio::time::sleep(delay).await;
    }
    if !key_ok {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            "Invalid API Key provided: sk_test_****",
            None,
        ));
    }
    let past_outage = faults.outage_after.is_some_and(|after| n > after);
    if faults.outage || faults.server_errors > 0 || past_outage {
        return Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            None,
            "An unknown error occurred",
            Some(true),
        ));
    }
    if faults
        .rate_limit_every
        .is_some_and(|every| every > 0 && n % every == 0)
    {
        return Err(error(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_request_error",
            Some("rate_limit"),
            "Too many requests hit the API too quickly.",
            Some(true),
        ));
    }
    Ok(())
}

fn error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
    should_retry: Option<bool>,
) -> Response {
    let body = json!({"error": {"type": kind, "code": code, "message": message}});
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(retry) = should_retry
        && let Ok(value) = retry.to_string().parse()
    {
        response.headers_mut().insert("Stripe-Should-Retry", value);
    }
    response
}

/// The query as Stripe clients send it: `created[gte]=…&limit=…&expand[0]=…`.
struct ListQuery {
    gte: Option<i64>,
    lte: Option<i64>,
    limit: usize,
    starting_after: Option<String>,
    expand: Vec<String>,
    /// `type`, with Stripe's `*` wildcard (`charge.*`).
    type_: Option<String>,
    types: Vec<String>,
    delivery_success: Option<bool>,
    arrival_gte: Option<i64>,
    arrival_lte: Option<i64>,
    payout: Option<String>,
    source: Option<String>,
}

fn parse_query(raw: Option<&str>) -> ListQuery {
    let mut q = ListQuery {
        gte: None,
        lte: None,
        limit: 10,
        starting_after: None,
        expand: Vec::new(),
        type_: None,
        types: Vec::new(),
        delivery_success: None,
        arrival_gte: None,
        arrival_lte: None,
        payout: None,
        source: None,
    };
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "created[gte]" => q.gte = value.parse().ok(),
            "created[lte]" => q.lte = value.parse().ok(),
            "limit" => q.limit = value.parse::<usize>().unwrap_or(10).clamp(1, 100),
            "starting_after" => q.starting_after = Some(value.into_owned()),
            k if k.starts_with("expand[") => q.expand.push(value.into_owned()),
            "type" => q.type_ = Some(value.into_owned()),
            k if k.starts_with("types[") => q.types.push(value.into_owned()),
            "delivery_success" => q.delivery_success = value.parse().ok(),
            "arrival_date[gte]" => q.arrival_gte = value.parse().ok(),
            "arrival_date[lte]" => q.arrival_lte = value.parse().ok(),
            "payout" => q.payout = Some(value.into_owned()),
            "source" => q.source = Some(value.into_owned()),
            _ => {}
        }
    }
    q
}

/// The slice of a list (sorted newest first) that one page shows, and whether more follow.
fn page_bounds(ids: &[&str], q: &ListQuery) -> (usize, usize, bool) {
    let start = match &q.starting_after {
        Some(after) => ids
            .iter()
            .position(|id| id == after)
            .map_or(ids.len(), |i| i + 1),
        None => 0,
    };
    let end = (start + q.limit).min(ids.len());
    (start, end, end < ids.len())
}

fn envelope(url: &str, data: Vec<Value>, has_more: bool) -> Value {
    json!({"object": "list", "url": url, "has_more": has_more, "data": data})
}

fn in_window(created: i64, q: &ListQuery) -> bool {
    q.gte.is_none_or(|g| created >= g) && q.lte.is_none_or(|l| created <= l)
}

async fn list_payment_intents(
    State(state): State<Shared>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(answer) = admit(&state, "GET /v1/payment_intents", &headers).await {
        return answer;
    }
    let q = parse_query(raw.as_deref());
    let expand_charge = q.expand.iter().any(|e| e == "data.latest_charge");
    let body = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.sort();
        let intents: Vec<&SimPaymentIntent> = s
            .intents
            .iter()
            .filter(|pi| in_window(pi.created, &q))
            .collect();
        let ids: Vec<&str> = intents.iter().map(|pi| pi.id.as_str()).collect();
        let (start, end, has_more) = page_bounds(&ids, &q);
        let data = intents[start..end]
            .iter()
            .map(|pi| payment_intent_json(pi, &s.refunds, expand_charge))
            .collect();
        envelope("/v1/payment_intents", data, has_more)
    };
    axum::Json(body).into_response()
}

async fn retrieve_payment_intent(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(answer) = admit(&state, "GET /v1/payment_intents/{id}", &headers).await {
        return answer;
    }
    let q = parse_query(raw.as_deref());
    let expand_charge = q.expand.iter().any(|e| e == "latest_charge");
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.sort();
    match s.position.get(&id).map(|&i| &s.intents[i]) {
        Some(pi) => axum::Json(payment_intent_json(pi, &s.refunds, expand_charge)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such payment_intent: '{id}'"),
            Some(false),
        ),
    }
}

async fn list_refunds(
    State(state): State<Shared>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(answer) = admit(&state, "GET /v1/refunds", &headers).await {
        return answer;
    }
    let q = parse_query(raw.as_deref());
    let body = {
        let s = state.lock().unwrap_or_else(|p| p.into_inner());
        let mut refunds: Vec<&SimRefund> = s
            .refunds
            .iter()
            .filter(|r| in_window(r.created, &q))
            .collect();
        refunds.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        let ids: Vec<&str> = refunds.iter().map(|r| r.id.as_str()).collect();
        let (start, end, has_more) = page_bounds(&ids, &q);
        let data = refunds[start..end]
            .iter()
            .map(|r| refund_json(r, charge_of(&s.intents, &r.payment_intent)))
            .collect();
        envelope("/v1/refunds", data, has_more)
    };
    axum::Json(body).into_response()
}

async fn list_disputes(
    State(state): State<Shared>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(answer) = admit(&state, "GET /v1/disputes", &headers).await {
        return answer;
    }
    let q = parse_query(raw.as_deref());
    let body = {
        let s = state.lock().unwrap_or_else(|p| p.into_inner());
        let mut disputes: Vec<&SimDispute> = s
            .disputes
            .iter()
            .filter(|d| in_window(d.created, &q))
            .collect();
        disputes.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        let ids: Vec<&str> = disputes.iter().map(|d| d.id.as_str()).collect();
        let (start, end, has_more) = page_bounds(&ids, &q);
        let data = disputes[start..end]
            .iter()
            .map(|d| dispute_json(d, charge_of(&s.intents, &d.payment_intent)))
            .collect();
        envelope("/v1/disputes", data, has_more)
    };
    axum::Json(body).into_response()
}

/// Stripe's type filter: `type` with a trailing `*` wildcard, or `types[]` of exact names.
fn type_matches(type_: &str, q: &ListQuery) -> bool {
    let by_type = match &q.type_ {
        Some(pattern) => match pattern.strip_suffix('*') {
            Some(prefix) => type_.starts_with(prefix),
            None => type_ == pattern,
        },
        None => true,
    };
    by_type && (q.types.is_empty() || q.types.iter().any(|t| t == type_))
}

async fn list_events(
    State(state): State<Shared>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(answer) = admit(&state, "GET /v1/events", &headers).await {
        return answer;
    }
    let q = parse_query(raw.as_deref());
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.sort();
    let events: Vec<&SimEvent> = s
        .events
        .iter()
        .filter(|e| in_window(e.created, &q) && type_matches(&e.type_, &q))
        .filter(|e| q.delivery_success.is_none_or(|ok| e.delivery_success == ok))
        .collect();
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    if let Some(after) = &q.starting_after
        && !ids.contains(&after.as_str())
    {
        return error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such event: '{after}'"),
            Some(false),
        );
    }
    let (start, end, has_more) = page_bounds(&ids, &q);
    let data = events[start..end]
        .iter()
        .map(|e| event_json(e, &s))
        .collect();
    axum::Json(envelope("/v1/events", data, has_more)).into_response()
}

async fn list_payouts(
    State(state): State<Shared>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(answer) = admit(&state, "GET /v1/payouts", &headers).await {
        return answer;
    }
    let q = parse_query(raw.as_deref());
    let body = {
        let s = state.lock().unwrap_or_else(|p| p.into_inner());
        let mut payouts: Vec<&SimPayout> = s
            .payouts
            .iter()
            .filter(|p| {
                q.arrival_gte.is_none_or(|g| p.arrival_date >= g)
                    && q.arrival_lte.is_none_or(|l| p.arrival_date <= l)
                    && in_window(p.created, &q)
            })
            .collect();
        payouts.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        let ids: Vec<&str> = payouts.iter().map(|p| p.id.as_str()).collect();
        let (start, end, has_more) = page_bounds(&ids, &q);
        let data = payouts[start..end].iter().map(|p| payout_json(p)).collect();
        envelope("/v1/payouts", data, has_more)
    };
    axum::Json(body).into_response()
}

async fn retrieve_payout(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(answer) = admit(&state, "GET /v1/payouts/{id}", &headers).await {
        return answer;
    }
    let s = state.lock().unwrap_or_else(|p| p.into_inner());
    match s.payouts.iter().find(|p| p.id == id) {
        Some(p) => axum::Json(payout_json(p)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such payout: '{id}'"),
            Some(false),
        ),
    }
}

/// `payout=po_…` lists what that automatic payout paid out, its own transaction included, as
/// Stripe does, and only once the payout's reconciliation is completed.
async fn list_balance_transactions(
    State(state): State<Shared>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(answer) = admit(&state, "GET /v1/balance_transactions", &headers).await {
        return answer;
    }
    let q = parse_query(raw.as_deref());
    let expand_source = q.expand.iter().any(|e| e == "data.source");
    let body = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.sort();
        if let Some(payout) = &q.payout
            && let Some(p) = s.payouts.iter().find(|p| &p.id == payout)
            && p.reconciliation_status != "completed"
        {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                &format!(
                    "Balance transactions for payout {payout} cannot be listed until its reconciliation is completed."
                ),
                Some(false),
            );
        }
        let mut txns: Vec<&SimBalanceTransaction> = s
            .balance_transactions
            .iter()
            .filter(|t| {
                in_window(t.created, &q)
                    && q.payout.as_ref().is_none_or(|p| {
                        t.payout.as_ref() == Some(p)
                            || matches!(&t.source, TxnSource::Payout(own) if own == p)
                    })
                    && q.type_.as_ref().is_none_or(|ty| &t.type_ == ty)
                    && q.source
                        .as_ref()
                        .is_none_or(|src| source_id(t, &s).as_ref() == Some(src))
            })
            .collect();
        txns.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        let ids: Vec<&str> = txns.iter().map(|t| t.id.as_str()).collect();
        let (start, end, has_more) = page_bounds(&ids, &q);
        let data = txns[start..end]
            .iter()
            .map(|t| balance_transaction_json(t, &s, expand_source))
            .collect();
        envelope("/v1/balance_transactions", data, has_more)
    };
    axum::Json(body).into_response()
}

const REPORT_TYPE: &str = "payout_reconciliation.itemized.5";

async fn retrieve_report_type(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(answer) = admit(&state, "GET /v1/reporting/report_types/{id}", &headers).await {
        return answer;
    }
    if id != REPORT_TYPE {
        return error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such report type: '{id}'"),
            Some(false),
        );
    }
    let (start, end) = state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .report_available
        .unwrap_or((0, 4_102_444_800));
    axum::Json(json!({
        "id": id, "object": "reporting.report_type", "name": "Itemized payout reconciliation",
        "data_available_start": start, "data_available_end": end,
        "default_columns": [], "livemode": false, "updated": end, "version": 5
    }))
    .into_response()
}

fn report_run_json(n: usize, run: (i64, i64)) -> Value {
    json!({
        "id": format!("frr_sim_{n}"), "object": "reporting.report_run", "created": run.0,
        "error": null, "livemode": false, "report_type": REPORT_TYPE, "status": "succeeded",
        "succeeded_at": run.1,
        "parameters": {"interval_start": run.0, "interval_end": run.1},
        "result": {
            "id": format!("file_sim_{n}"), "object": "file", "purpose": "finance_report_run",
            "type": "csv", "url": format!("https://files.stripe.com/v1/files/file_sim_{n}/contents"),
            "created": run.1, "filename": format!("frr_sim_{n}.csv"), "size": 0, "title": null,
            "expires_at": null, "links": null
        }
    })
}

/// The one POST paytool may send: it starts a report run (succeeded at once here).
async fn create_report_run(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Err(answer) = admit(&state, "POST /v1/reporting/report_runs", &headers).await {
        return answer;
    }
    let mut start = None;
    let mut end = None;
    let mut report_type = None;
    for (key, value) in url::form_urlencoded::parse(body.as_bytes()) {
        match key.as_ref() {
            "report_type" => report_type = Some(value.into_owned()),
            "parameters[interval_start]" => start = value.parse::<i64>().ok(),
            "parameters[interval_end]" => end = value.parse::<i64>().ok(),
            _ => {}
        }
    }
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.mutations += 1;
    let (available_start, available_end) = s.report_available.unwrap_or((0, 4_102_444_800));
    let (Some(start), Some(end)) = (start, end) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            "interval_start and interval_end are required",
            Some(false),
        );
    };
    if report_type.as_deref() != Some(REPORT_TYPE)
        || start >= end
        || start < available_start
        || end > available_end
    {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            "interval_start and interval_end must lie within the report type's data_available_start and data_available_end",
            Some(false),
        );
    }
    s.report_runs.push((start, end));
    let n = s.report_runs.len();
    axum::Json(report_run_json(n, (start, end))).into_response()
}

async fn retrieve_report_run(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(answer) = admit(&state, "GET /v1/reporting/report_runs/{id}", &headers).await {
        return answer;
    }
    let s = state.lock().unwrap_or_else(|p| p.into_inner());
    let n: Option<usize> = id.strip_prefix("frr_sim_").and_then(|n| n.parse().ok());
    match n.and_then(|n| s.report_runs.get(n.wrapping_sub(1)).map(|run| (n, *run))) {
        Some((n, run)) => axum::Json(report_run_json(n, run)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such report run: '{id}'"),
            Some(false),
        ),
    }
}

/// A report run's CSV: every balance transaction of the automatic payouts whose arrival is in
/// the run's interval, amounts in major units as Stripe writes them (`12.5`, `7`).
async fn file_contents(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(answer) = admit(&state, "GET /v1/files/{id}/contents", &headers).await {
        return answer;
    }
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.sort();
    let run = id
        .strip_prefix("file_sim_")
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| s.report_runs.get(n.wrapping_sub(1)).copied());
    let Some((start, end)) = run else {
        return error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such file: '{id}'"),
            Some(false),
        );
    };
    let mut csv = String::from(
        "automatic_payout_id,automatic_payout_effective_at,balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,reporting_category,source_id,payment_intent_id,description\n",
    );
    let utc = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default()
    };
    // Each transaction once, its payout looked up: not every transaction for every payout.
    let covered: HashMap<&str, &SimPayout> = s
        .payouts
        .iter()
        .filter(|p| {
            p.arrival_date >= start
                && p.arrival_date < end
                && p.reconciliation_status == "completed"
        })
        .map(|p| (p.id.as_str(), p))
        .collect();
    for t in &s.balance_transactions {
        let of = match (&t.payout, &t.source) {
            (Some(payout), _) => covered.get(payout.as_str()),
            (None, TxnSource::Payout(own)) => covered.get(own.as_str()),
            _ => None,
        };
        let Some(p) = of else {
            continue;
        };
        {
            let pi = match &t.source {
                TxnSource::Charge(pi) => Some(pi.clone()),
                TxnSource::Refund(id) => s
                    .refunds
                    .iter()
                    .find(|r| &r.id == id)
                    .map(|r| r.payment_intent.clone()),
                TxnSource::Dispute(id) => s
                    .disputes
                    .iter()
                    .find(|d| &d.id == id)
                    .map(|d| d.payment_intent.clone()),
                _ => None,
            };
            csv.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},\n",
                p.id,
                utc(p.arrival_date),
                t.id,
                utc(t.created),
                utc(t.available_on),
                t.currency,
                major_units(t.amount, &t.currency),
                major_units(t.fee, &t.currency),
                major_units(t.amount - t.fee, &t.currency),
                t.reporting_category,
                source_id(t, &s).unwrap_or_default(),
                pi.unwrap_or_default(),
            ));
        }
    }
    ([("content-type", "text/csv")], csv).into_response()
}

/// Minor units as a report writes them: major units, no trailing zeros (`1250` EUR → `12.5`).
fn major_units(minor: i64, currency: &str) -> String {
    let exponent = crate::human::currency_exponent(currency);
    let scale = 10i64.pow(exponent);
    let sign = if minor < 0 { "-" } else { "" };
    let (whole, fraction) = (minor.abs() / scale, minor.abs() % scale);
    if fraction == 0 {
        return format!("{sign}{whole}");
    }
    let fraction = format!("{fraction:0width$}", width = exponent as usize);
    format!("{sign}{whole}.{}", fraction.trim_end_matches('0'))
}

async fn unknown(State(state): State<Shared>, method: Method, uri: Uri) -> Response {
    {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.requests += 1;
        if method != Method::GET {
            s.mutations += 1;
        }
    }
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        None,
        &format!("Unrecognized request URL ({method}: {}).", uri.path()),
        Some(false),
    )
}

fn template(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn payment_intent_json(pi: &SimPaymentIntent, refunds: &[SimRefund], expand_charge: bool) -> Value {
    let mut v = template(PAYMENT_INTENT);
    let succeeded = pi.status == "succeeded";
    v["id"] = json!(pi.id);
    v["amount"] = json!(pi.amount);
    v["amount_received"] = json!(if succeeded { pi.amount } else { 0 });
    v["currency"] = json!(pi.currency);
    v["status"] = json!(pi.status);
    v["created"] = json!(pi.created);
    v["client_secret"] = json!(format!("{}_secret_sim", pi.id));
    if let Some(order) = &pi.order_id {
        v["metadata"] = json!({"order_id": order});
    }
    if pi.status == "requires_capture" {
        v["amount_capturable"] = json!(pi.amount);
        v["capture_method"] = json!("manual");
    }
    if pi.status == "canceled" {
        v["canceled_at"] = json!(pi.created + 60);
        v["cancellation_reason"] = json!("abandoned");
    }
    if let Some((code, message)) = &pi.last_error {
        v["last_payment_error"] = json!({"type": "card_error", "code": code, "message": message});
    }
    if let Some((charge_id, created)) = &pi.charge {
        v["latest_charge"] = if expand_charge {
            charge_json(pi, charge_id, *created, refunded_amount(pi, refunds))
        } else {
            json!(charge_id)
        };
    }
    v
}

fn refunded_amount(pi: &SimPaymentIntent, refunds: &[SimRefund]) -> i64 {
    refunds
        .iter()
        .filter(|r| r.payment_intent == pi.id && r.status != "failed" && r.status != "canceled")
        .map(|r| r.amount)
        .sum()
}

fn charge_json(pi: &SimPaymentIntent, id: &str, created: i64, refunded: i64) -> Value {
    let mut c = template(CHARGE);
    c["id"] = json!(id);
    c["amount"] = json!(pi.amount);
    c["amount_captured"] = json!(pi.amount);
    c["amount_refunded"] = json!(refunded);
    c["refunded"] = json!(refunded >= pi.amount);
    c["created"] = json!(created);
    c["currency"] = json!(pi.currency);
    c["payment_intent"] = json!(pi.id);
    c["refunds"]["url"] = json!(format!("/v1/charges/{id}/refunds"));
    c["receipt_url"] = json!(format!("https://pay.stripe.com/receipts/sim/{id}"));
    c
}

fn refund_json(r: &SimRefund, charge: Option<String>) -> Value {
    let mut v = template(REFUND);
    v["id"] = json!(r.id);
    v["amount"] = json!(r.amount);
    v["currency"] = json!(r.currency);
    v["status"] = json!(r.status);
    v["reason"] = json!(r.reason);
    v["created"] = json!(r.created);
    v["payment_intent"] = json!(r.payment_intent);
    v["charge"] = json!(charge);
    v
}

fn charge_of(intents: &[SimPaymentIntent], pi_id: &str) -> Option<String> {
    intents
        .iter()
        .find(|pi| pi.id == pi_id)
        .and_then(|pi| pi.charge.as_ref().map(|(id, _)| id.clone()))
}

fn dispute_json(d: &SimDispute, charge: Option<String>) -> Value {
    let mut v = template(DISPUTE);
    v["id"] = json!(d.id);
    v["amount"] = json!(d.amount);
    v["currency"] = json!(d.currency);
    v["status"] = json!(d.status);
    v["reason"] = json!(d.reason);
    v["created"] = json!(d.created);
    v["payment_intent"] = json!(d.payment_intent);
    v["charge"] = json!(charge.unwrap_or_else(|| format!("ch_{}", d.payment_intent)));
    v["evidence_details"]["due_by"] = json!(d.due_by);
    v["is_charge_refundable"] = json!(false);
    v
}

/// The event with its object as the simulator holds it now; `null` for an object it lacks.
fn event_json(e: &SimEvent, s: &SimState) -> Value {
    let intent = |id: &str| s.position.get(id).map(|&i| &s.intents[i]);
    let object = match &e.object {
        EventObject::PaymentIntent(id) => {
            intent(id).map(|pi| payment_intent_json(pi, &s.refunds, false))
        }
        EventObject::Charge(id) => intent(id).and_then(|pi| {
            pi.charge.as_ref().map(|(charge, created)| {
                let refunded = refunded_amount(pi, &s.refunds);
                charge_json(pi, charge, *created, refunded)
            })
        }),
        EventObject::Refund(id) => s
            .refunds
            .iter()
            .find(|r| &r.id == id)
            .map(|r| refund_json(r, charge_of(&s.intents, &r.payment_intent))),
        EventObject::Dispute(id) => s
            .disputes
            .iter()
            .find(|d| &d.id == id)
            .map(|d| dispute_json(d, charge_of(&s.intents, &d.payment_intent))),
    };
    let mut v = template(EVENT);
    v["id"] = json!(e.id);
    v["type"] = json!(e.type_);
    v["created"] = json!(e.created);
    v["data"] = json!({"object": object.unwrap_or(Value::Null)});
    v["pending_webhooks"] = json!(if e.delivery_success { 0 } else { 1 });
    v
}

/// The id a balance transaction's `source` shows.
fn source_id(t: &SimBalanceTransaction, s: &SimState) -> Option<String> {
    match &t.source {
        // Through the id index (the list is sorted before any handler reads it): a report of
        // a million rows must not search the PaymentIntents a million times.
        TxnSource::Charge(pi) => Some(
            s.position
                .get(pi)
                .and_then(|&i| s.intents[i].charge.as_ref().map(|(id, _)| id.clone()))
                .unwrap_or_else(|| format!("ch_{pi}")),
        ),
        TxnSource::Refund(id) | TxnSource::Dispute(id) | TxnSource::Payout(id) => Some(id.clone()),
        TxnSource::Nothing => None,
    }
}

fn payout_json(p: &SimPayout) -> Value {
    let mut v = template(PAYOUT);
    v["id"] = json!(p.id);
    v["amount"] = json!(p.amount);
    v["currency"] = json!(p.currency);
    v["created"] = json!(p.created);
    v["arrival_date"] = json!(p.arrival_date);
    v["status"] = json!(p.status);
    v["failure_code"] = json!(p.failure_code);
    if p.failure_code.is_some() {
        v["failure_message"] = json!("The bank account could not be credited.");
    }
    v["reconciliation_status"] = json!(p.reconciliation_status);
    v["balance_transaction"] = json!(format!("txn_{}", p.id));
    v
}

fn balance_transaction_json(t: &SimBalanceTransaction, s: &SimState, expand: bool) -> Value {
    let mut v = template(BALANCE_TRANSACTION);
    v["id"] = json!(t.id);
    v["type"] = json!(t.type_);
    v["reporting_category"] = json!(t.reporting_category);
    v["amount"] = json!(t.amount);
    v["fee"] = json!(t.fee);
    v["net"] = json!(t.amount - t.fee);
    v["currency"] = json!(t.currency);
    v["exchange_rate"] = json!(t.exchange_rate);
    v["created"] = json!(t.created);
    v["available_on"] = json!(t.available_on);
    if t.fee != 0 {
        v["fee_details"] = json!([{"amount": t.fee, "application": null, "currency": t.currency,
            "description": "Stripe processing fees", "type": "stripe_fee"}]);
    }
    let intent = |id: &str| s.position.get(id).map(|&i| &s.intents[i]);
    let (id, expanded) = match &t.source {
        TxnSource::Charge(pi_id) => {
            match intent(pi_id).and_then(|pi| pi.charge.as_ref().map(|c| (pi, c))) {
                Some((pi, (charge, created))) => (
                    Some(charge.clone()),
                    Some(charge_json(
                        pi,
                        charge,
                        *created,
                        refunded_amount(pi, &s.refunds),
                    )),
                ),
                None => (Some(format!("ch_{pi_id}")), None),
            }
        }
        TxnSource::Refund(id) => (
            Some(id.clone()),
            s.refunds
                .iter()
                .find(|r| &r.id == id)
                .map(|r| refund_json(r, charge_of(&s.intents, &r.payment_intent))),
        ),
        TxnSource::Dispute(id) => (
            Some(id.clone()),
            s.disputes
                .iter()
                .find(|d| &d.id == id)
                .map(|d| dispute_json(d, charge_of(&s.intents, &d.payment_intent))),
        ),
        TxnSource::Payout(id) => (
            Some(id.clone()),
            s.payouts.iter().find(|p| &p.id == id).map(payout_json),
        ),
        TxnSource::Nothing => (None, None),
    };
    v["source"] = match (expand, expanded) {
        (true, Some(object)) => object,
        _ => json!(id),
    };
    v
}
