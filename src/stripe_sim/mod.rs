//! An offline Stripe: PaymentIntents (with their latest charge) and refunds with Stripe's real
//! object shape (templates in `templates/`), Stripe's list semantics (newest first,
//! `created[gte|lte]`, `limit`, `starting_after`, `has_more`, `expand[]`) and error format, plus
//! switches that inject 429s, 500s, slow answers and a wrong key. It counts the requests it
//! gets. `paytool demo` reconciles against it, and so do the tests; paytool talks to it through
//! the same client as to api.stripe.com.

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

/// The templates, by Stripe resource name, for the shape test against Stripe's fixtures.
pub const TEMPLATES: [(&str, &str); 3] = [
    ("payment_intent", PAYMENT_INTENT),
    ("charge", CHARGE),
    ("refund", REFUND),
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
}

#[derive(Debug, Default)]
struct SimState {
    key: String,
    intents: Vec<SimPaymentIntent>,
    /// Whether `intents` is in list order (newest first) and `position` up to date.
    sorted: bool,
    position: HashMap<String, usize>,
    refunds: Vec<SimRefund>,
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
    if faults.outage || faults.server_errors > 0 {
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
}

fn parse_query(raw: Option<&str>) -> ListQuery {
    let mut q = ListQuery {
        gte: None,
        lte: None,
        limit: 10,
        starting_after: None,
        expand: Vec::new(),
    };
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "created[gte]" => q.gte = value.parse().ok(),
            "created[lte]" => q.lte = value.parse().ok(),
            "limit" => q.limit = value.parse::<usize>().unwrap_or(10).clamp(1, 100),
            "starting_after" => q.starting_after = Some(value.into_owned()),
            k if k.starts_with("expand[") => q.expand.push(value.into_owned()),
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
        let charge_of = |pi_id: &str| {
            s.intents
                .iter()
                .find(|pi| pi.id == pi_id)
                .and_then(|pi| pi.charge.as_ref().map(|(id, _)| id.clone()))
        };
        let ids: Vec<&str> = refunds.iter().map(|r| r.id.as_str()).collect();
        let (start, end, has_more) = page_bounds(&ids, &q);
        let data = refunds[start..end]
            .iter()
            .map(|r| refund_json(r, charge_of(&r.payment_intent)))
            .collect();
        envelope("/v1/refunds", data, has_more)
    };
    axum::Json(body).into_response()
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
    if pi.status == "canceled" {
        v["canceled_at"] = json!(pi.created + 60);
        v["cancellation_reason"] = json!("abandoned");
    }
    if let Some((code, message)) = &pi.last_error {
        v["last_payment_error"] = json!({"type": "card_error", "code": code, "message": message});
    }
    if let Some((charge_id, created)) = &pi.charge {
        v["latest_charge"] = if expand_charge {
            let refunded: i64 = refunds
                .iter()
                .filter(|r| {
                    r.payment_intent == pi.id && r.status != "failed" && r.status != "canceled"
                })
                .map(|r| r.amount)
                .sum();
            charge_json(pi, charge_id, *created, refunded)
        } else {
            json!(charge_id)
        };
    }
    v
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
