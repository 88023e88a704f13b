//! The HTTP side of paytool's Stripe client: async-stripe's request builders and pagination
//! (`stripe_client_core::StripeClient`) over a transport of ours, because the crate's own
//! client hides the response headers (`Stripe-Should-Retry`), has no jitter nor cap on its
//! backoff, and no rate limit. Every request here goes through one token bucket, a bounded
//! number in flight, a per-request timeout and jittered, capped retries.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, HeaderValue, USER_AGENT};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use stripe_client_core::{
    CustomizedStripeRequest, RequestBuilder, StripeClient, StripeClientErr, StripeMethod,
};
use thiserror::Error;
use tokio::sync::Semaphore;

/// A Stripe answer or transport failure, after retries.
#[derive(Debug, Error)]
pub enum StripeFailure {
    #[error("Stripe rejected the API key (HTTP 401): check STRIPE_SECRET_KEY / --stripe-key")]
    BadKey,
    #[error(
        "the Stripe key contains characters an HTTP header cannot carry: check STRIPE_SECRET_KEY / --stripe-key"
    )]
    MalformedKey,
    #[error(
        "the Stripe key lacks a permission paytool needs (HTTP 403): a restricted key needs read access to PaymentIntents, Charges, Refunds, Disputes and Events"
    )]
    Forbidden,
    #[error("Stripe answered HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Api {
        status: u16,
        code: Option<String>,
        message: String,
    },
    #[error("Stripe could not be reached at {base}: {reason}")]
    Network { base: String, reason: String },
    #[error("Stripe did not answer within {}", crate::human::duration(*.0))]
    Timeout(Duration),
    #[error("unexpected answer from Stripe: {0}")]
    Decode(String),
}

impl StripeClientErr for StripeFailure {
    fn deserialize_err(msg: impl std::fmt::Display) -> Self {
        StripeFailure::Decode(msg.to_string())
    }
}

impl StripeFailure {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StripeFailure::Api { status: 404, .. })
    }
}

#[derive(Debug, Clone)]
pub struct StripeSettings {
    pub key: String,
    /// Stripe's API root, e.g. `https://api.stripe.com/` (requests go to `{base}v1/...`).
    pub base_url: String,
    pub max_rps: u32,
    pub concurrency: usize,
    pub timeout: Duration,
    pub max_retries: u32,
}

/// The client. Cheap to clone (pagination streams clone it).
#[derive(Clone)]
pub struct StripeHttp {
    inner: Arc<Inner>,
}

struct Inner {
    http: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    settings: StripeSettings,
    authorization: HeaderValue,
    limiter: DefaultDirectRateLimiter,
    in_flight: Semaphore,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// What one request does: a GET (everything paytool asks), or the one POST it ever sends,
/// `POST /v1/reporting/report_runs` (`reconcile payouts --source reports`), with an
/// idempotency key so that a retry cannot start a second run.
enum Verb<'a> {
    Get,
    Post {
        form: &'a str,
        idempotency_key: &'a str,
    },
}

/// One attempt's outcome, before deciding whether to retry.
enum Attempt {
    Done(Bytes),
    Failed {
        failure: StripeFailure,
        retryable: bool,
    },
}

impl StripeHttp {
    pub fn new(settings: StripeSettings) -> Result<Self, StripeFailure> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let mut authorization = HeaderValue::try_from(format!("Bearer {}", settings.key))
            .map_err(|_| StripeFailure::MalformedKey)?;
        authorization.set_sensitive(true);
        let rps = NonZeroU32::new(settings.max_rps.max(1)).unwrap_or(NonZeroU32::MIN);
        Ok(StripeHttp {
            inner: Arc::new(Inner {
                http: HyperClient::builder(TokioExecutor::new()).build(connector),
                limiter: RateLimiter::direct(Quota::per_second(rps).allow_burst(NonZeroU32::MIN)),
                in_flight: Semaphore::new(settings.concurrency.max(1)),
                authorization,
                requests: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                settings,
            }),
        })
    }

    /// HTTP requests sent so far, retries included.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    pub fn retries(&self) -> u64 {
        self.inner.retries.load(Ordering::Relaxed)
    }

    /// A GET built by one of async-stripe's request types, decoded with serde instead of the
    /// crate's own types: for objects paytool keeps as Stripe sent them (events).
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        builder: RequestBuilder,
    ) -> Result<T, StripeFailure> {
        let bytes = self.send_with_retries(builder).await?;
        serde_json::from_slice(&bytes).map_err(|e| StripeFailure::Decode(e.to_string()))
    }

    async fn send_with_retries(&self, builder: RequestBuilder) -> Result<Bytes, StripeFailure> {
        if !matches!(builder.method, StripeMethod::Get) {
            // paytool only reads Stripe; a mutating call would be a bug, never a retry.
            return Err(StripeFailure::Decode(format!(
                "refused to send a {:?} request: paytool never changes anything in Stripe",
                builder.method
            )));
        }
        let mut uri = format!("{}v1{}", self.inner.settings.base_url, builder.path);
        if let Some(query) = &builder.query {
            uri.push('?');
            uri.push_str(query);
        }
        self.with_retries(&uri, &Verb::Get).await
    }

    /// `GET` of an absolute URL with the same key, limits and retries: a report's file on
    /// Stripe's files host.
    pub async fn get_url(&self, url: &str) -> Result<Bytes, StripeFailure> {
        self.with_retries(url, &Verb::Get).await
    }

    /// The one request paytool sends that is not a GET: it starts a report run (Stripe's
    /// reporting API computes it; nothing of the account changes). `form` is the
    /// url-encoded body.
    pub async fn create_report_run(&self, form: &str) -> Result<serde_json::Value, StripeFailure> {
        use sha2::{Digest, Sha256};
        let uri = format!("{}v1/reporting/report_runs", self.inner.settings.base_url);
        // Stable across this request's retries, new for every run of paytool.
        let seed = format!(
            "{form}|{}|{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        );
        let idempotency_key = format!("paytool-{}", hex::encode(&Sha256::digest(seed)[..16]));
        let verb = Verb::Post {
            form,
            idempotency_key: &idempotency_key,
        };
        let bytes = self.with_retries(&uri, &verb).await?;
        serde_json::from_slice(&bytes).map_err(|e| StripeFailure::Decode(e.to_string()))
    }

    async fn with_retries(&self, uri: &str, verb: &Verb<'_>) -> Result<Bytes, StripeFailure> {
        let mut delays = crate::retry::Backoff::STRIPE.delays(self.inner.settings.max_retries);
        loop {
            match self.attempt(uri, verb).await {
                Attempt::Done(bytes) => return Ok(bytes),
                Attempt::Failed { failure, retryable } => {
                    let delay = if retryable { delays.next() } else { None };
                    let Some(delay) = delay else {
                        return Err(failure);
                    };
                    self.inner.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "Stripe request failed ({failure}); retrying in {}",
                        crate::human::duration(delay)
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn attempt(&self, uri: &str, verb: &Verb<'_>) -> Attempt {
        self.inner.limiter.until_ready().await;
        let Ok(_permit) = self.inner.in_flight.acquire().await else {
            return failed(StripeFailure::Decode("client shut down".into()), false);
        };
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let builder = match verb {
            Verb::Get => hyper::Request::get(uri),
            Verb::Post {
                idempotency_key, ..
            } => hyper::Request::post(uri)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Idempotency-Key", *idempotency_key),
        };
        let body = match verb {
            Verb::Get => Bytes::new(),
            Verb::Post { form, .. } => Bytes::copy_from_slice(form.as_bytes()),
        };
        let request = builder
            .header(AUTHORIZATION, self.inner.authorization.clone())
            .header(USER_AGENT, concat!("paytool/", env!("CARGO_PKG_VERSION")))
            .header("Stripe-Version", stripe_shared::version::VERSION.as_str())
            .body(Full::new(body));
        let request = match request {
            Ok(r) => r,
            Err(e) => return failed(StripeFailure::Decode(e.to_string()), false),
        };
        let timeout = self.inner.settings.timeout;
        let exchange = async {
            let response =
                self.inner
                    .http
                    .request(request)
                    .await
                    .map_err(|e| StripeFailure::Network {
                        base: self.inner.settings.base_url.clone(),
                        reason: root_cause(&e),
                    })?;
            let status = response.status().as_u16();
            let should_retry = response
                .headers()
                .get("Stripe-Should-Retry")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<bool>().ok());
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| StripeFailure::Network {
                    base: self.inner.settings.base_url.clone(),
                    reason: e.to_string(),
                })?
                .to_bytes();
            Ok::<_, StripeFailure>((status, should_retry, body))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => failed(StripeFailure::Timeout(timeout), true),
            Ok(Err(failure)) => failed(failure, true),
            Ok(Ok((status, _, body))) if (200..300).contains(&status) => Attempt::Done(body),
            Ok(Ok((status, should_retry, body))) => {
                let failure = api_failure(status, &body);
                failed(failure, is_retryable(status, should_retry))
            }
        }
    }
}

fn failed(failure: StripeFailure, retryable: bool) -> Attempt {
    Attempt::Failed { failure, retryable }
}

/// Stripe's own header decides when present; else 409 (lock contention), 429 and 5xx retry.
pub fn is_retryable(status: u16, stripe_should_retry: Option<bool>) -> bool {
    match stripe_should_retry {
        Some(decision) => decision,
        None => status == 409 || status == 429 || status >= 500,
    }
}

fn api_failure(status: u16, body: &[u8]) -> StripeFailure {
    match status {
        401 => return StripeFailure::BadKey,
        403 => return StripeFailure::Forbidden,
        _ => {}
    }
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    StripeFailure::Api {
        status,
        code: error
            .and_then(|e| e.get("code"))
            .and_then(|c| c.as_str())
            .map(str::to_owned),
        message: error
            .and_then(|e| e.get("message"))
            .and_then(|m| m.as_str())
            .unwrap_or("no message")
            .to_owned(),
    }
}

fn root_cause(err: &dyn std::error::Error) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

impl StripeClient for StripeHttp {
    type Err = StripeFailure;

    fn execute(
        &self,
        req: CustomizedStripeRequest,
    ) -> impl std::future::Future<Output = Result<Bytes, Self::Err>> + Send {
        let this = self.clone();
        async move { this.send_with_retries(req.into_pieces().0).await }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_should_retry_overrides_the_status() {
        assert!(is_retryable(429, None));
        assert!(is_retryable(503, None));
        assert!(!is_retryable(429, Some(false)));
        assert!(is_retryable(400, Some(true)));
        assert!(!is_retryable(404, None));
    }

    #[test]
    fn api_errors_keep_stripe_code_and_message() {
        let body = br#"{"error":{"code":"resource_missing","message":"No such payment_intent: 'pi_1'","type":"invalid_request_error"}}"#;
        let failure = api_failure(404, body);
        assert!(failure.is_not_found());
        assert_eq!(
            failure.to_string(),
            "Stripe answered HTTP 404 (resource_missing): No such payment_intent: 'pi_1'"
        );
        assert!(matches!(api_failure(401, b""), StripeFailure::BadKey));
    }
}
