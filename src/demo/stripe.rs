//! The demo's Stripe: a simulator mirroring the demo shop's last 30 days, with one planted
//! discrepancy of every kind reconcile knows.

use sqlx::PgConnection;

use crate::domain::{IntentStatus, OrderStatus};
use crate::stripe_sim::{
    EventObject, SimBalanceTransaction, SimDispute, SimEvent, SimPaymentIntent, SimPayout,
    SimRefund, StripeSim, TxnSource,
};

const STRIPE_HISTORY_SQL: &str = include_str!("../../sql/demo/stripe_history.sql");
const WINDOW_ORDERS_SQL: &str = include_str!("../../sql/demo/window_orders.sql");

/// The key the demo gives paytool and the simulator expects.
pub const DEMO_KEY: &str = "sk_test_paytool_demo";

/// An order of the demo's last 30 days with a PaymentIntent id (sql/demo/window_orders.sql).
#[derive(sqlx::FromRow)]
struct WindowOrder {
    id: String,
    status: String,
    total: i64,
    currency: String,
    payment_intent_id: String,
    /// Unix seconds, as Stripe's `created`.
    created: i64,
    paid_at: Option<i64>,
    has_payment: bool,
}

impl WindowOrder {
    fn status(&self) -> OrderStatus {
        OrderStatus::parse(&self.status)
    }
}

/// What was planted, for the demo to tell.
pub struct Planted {
    pub lines: Vec<String>,
    pub payment_intents: usize,
    pub refunds: usize,
    pub events: usize,
}

/// The orders the discrepancies are planted on: PAID, with a payment and a total.
struct Targets {
    missed_webhook: String,
    amount: String,
    dashboard_refund: String,
    double_charge: String,
    unlinked: String,
    missing: String,
    currency: String,
    payment_row: String,
    dispute: String,
    /// Authorised more than 5 days ago and never captured.
    stale: String,
}

pub async fn prepare(conn: &mut PgConnection, sim: &StripeSim) -> anyhow::Result<Planted> {
    sqlx::raw_sql(STRIPE_HISTORY_SQL)
        .execute(&mut *conn)
        .await?;
    let orders: Vec<WindowOrder> = sqlx::query_as(WINDOW_ORDERS_SQL)
        .fetch_all(&mut *conn)
        .await?;
    let eligible: Vec<&WindowOrder> = orders
        .iter()
        .filter(|o| o.status() == OrderStatus::Paid && o.has_payment && o.total > 0)
        .collect();
    if eligible.len() < 10 {
        anyhow::bail!(
            "only {} paid orders in the last 30 days, 10 are needed to plant the discrepancies: use --orders 300 or more",
            eligible.len()
        );
    }
    // Nine distinct orders spread over the window, and one a week old or more.
    let pick = |i: usize| eligible[i * eligible.len() / 10].id.clone();
    let (a, b, c, d, e, f, g, h, i) = (
        pick(0),
        pick(1),
        pick(2),
        pick(3),
        pick(4),
        pick(5),
        pick(6),
        pick(7),
        pick(8),
    );
    let week_ago = chrono::Utc::now().timestamp() - 7 * 86_400;
    let taken = [&a, &b, &c, &d, &e, &f, &g, &h, &i];
    let stale = eligible
        .iter()
        .find(|o| o.created < week_ago && !taken.contains(&&o.id))
        .map(|o| o.id.clone())
        .ok_or_else(|| {
            anyhow::anyhow!("no paid order a week old to plant a stale authorization on")
        })?;
    let t = Targets {
        missed_webhook: a,
        amount: b,
        dashboard_refund: c,
        double_charge: d,
        unlinked: e,
        missing: f,
        currency: g,
        payment_row: h,
        dispute: i,
        stale,
    };
    plant_in_database(conn, &t).await?;
    let mut planted = Planted {
        lines: Vec::new(),
        payment_intents: 0,
        refunds: 0,
        events: 0,
    };
    for order in &orders {
        mirror(sim, order, &t, &mut planted);
    }
    add_strangers(sim, &orders, &t, &mut planted);
    let payouts = pay_out(sim, &orders, &t);
    planted.lines = vec![
        format!(
            "missed webhook: order {} is PENDING here, its PaymentIntent succeeded",
            t.missed_webhook
        ),
        format!(
            "amount: Stripe charged order {} 5.00 more than its total",
            t.amount
        ),
        format!(
            "dashboard refund: half of order {} refunded in Stripe, not recorded here",
            t.dashboard_refund
        ),
        format!(
            "double charge: order {} has a second succeeded PaymentIntent",
            t.double_charge
        ),
        format!("orphan: a succeeded PaymentIntent for an order deleted in the admin"),
        format!(
            "unlinked: order {} lost its PaymentIntent id (crash after checkout)",
            t.unlinked
        ),
        format!(
            "missing: order {} names a PaymentIntent Stripe does not have",
            t.missing
        ),
        format!("currency: order {} was charged in USD", t.currency),
        format!(
            "payment row: order {}'s payment is stuck at 'processing'",
            t.payment_row
        ),
        format!(
            "dispute: the customer of order {} disputes the charge (fraudulent)",
            t.dispute
        ),
        format!(
            "stale: order {} was authorised a week ago and never captured",
            t.stale
        ),
        format!(
            "failed webhook: the payment_intent.succeeded event of order {} was never delivered",
            t.missed_webhook
        ),
        format!(
            "payouts: {} daily payouts of the charges; {} is {} short of its transactions",
            payouts.count, payouts.short, "1.00"
        ),
        format!(
            "payout failed: {} was refused by the bank (account_closed)",
            payouts.failed
        ),
        "payout money no order explains: the orphan PaymentIntent's charge was paid out (and the charge 5.00 over its order shows there too)".to_owned(),
        format!(
            "not paid out: order {}'s charge has been available for days and is in no payout",
            payouts.not_paid_out
        ),
        "a balance transaction of a type paytool does not know (climate_order_purchase)".to_owned(),
    ];
    Ok(planted)
}

/// What [`pay_out`] planted.
struct PaidOut {
    count: usize,
    short: String,
    failed: String,
    not_paid_out: String,
}

const DAY: i64 = 86_400;

/// Stripe's automatic daily payouts of the shop's charges (2.9% + 0.25 in fees), each charge
/// available two days after it was paid and paid out two days later, with one planted finding
/// of each kind `paytool reconcile payouts` knows.
fn pay_out(sim: &StripeSim, orders: &[WindowOrder], t: &Targets) -> PaidOut {
    let now = chrono::Utc::now().timestamp();
    let paid: Vec<&WindowOrder> = orders
        .iter()
        .filter(|o| {
            stripe_status(o.status()) == IntentStatus::Succeeded
                && o.id != t.missing
                && o.id != t.stale
                // Its order lost the link: reconcile says so (unlinked_payment_intent).
                && o.id != t.unlinked
                && o.total > 0
        })
        .collect();
    let taken = [
        &t.missed_webhook,
        &t.amount,
        &t.dashboard_refund,
        &t.double_charge,
        &t.unlinked,
        &t.missing,
        &t.currency,
        &t.payment_row,
        &t.dispute,
        &t.stale,
    ];
    let not_paid_out = paid
        .iter()
        .filter(|o| !taken.contains(&&o.id) && o.paid_at.is_some_and(|p| p < now - 12 * DAY))
        .map(|o| o.id.clone())
        .next_back()
        .unwrap_or_default();
    // Charges by the day their money becomes available, and currency.
    let mut days: std::collections::BTreeMap<(i64, String), Vec<SimBalanceTransaction>> =
        std::collections::BTreeMap::new();
    for order in &paid {
        let paid_at = order.paid_at.unwrap_or(order.created + 120);
        let amount = if order.id == t.amount {
            order.total + 500
        } else {
            order.total
        };
        let currency = if order.id == t.currency {
            "usd".to_owned()
        } else {
            order.currency.to_lowercase()
        };
        let available = (paid_at / DAY + 2) * DAY;
        let txn = SimBalanceTransaction {
            id: format!("txn_{}", order.payment_intent_id),
            type_: "charge".into(),
            reporting_category: "charge".into(),
            amount,
            fee: amount * 29 / 1000 + 25,
            currency: currency.clone(),
            exchange_rate: None,
            created: paid_at,
            available_on: available,
            source: TxnSource::Charge(order.payment_intent_id.clone()),
            payout: None,
        };
        if order.id == not_paid_out {
            sim.add_balance_transaction(txn);
            continue;
        }
        days.entry((available, currency)).or_default().push(txn);
    }
    let mut count = 0;
    let mut short = String::new();
    let mut planted_extras = false;
    for ((available, currency), mut txns) in days {
        let arrival = available + 2 * DAY;
        if arrival > now {
            // Not paid out yet: available, waiting for its payout.
            for txn in txns {
                sim.add_balance_transaction(txn);
            }
            continue;
        }
        let id = format!("po_demo_{}_{currency}", available / DAY);
        if !planted_extras && currency == "eur" {
            // The orphan PaymentIntent's charge, and a type paytool does not know.
            planted_extras = true;
            txns.push(SimBalanceTransaction {
                id: "txn_demo_orphan".into(),
                type_: "charge".into(),
                reporting_category: "charge".into(),
                amount: 1_500,
                fee: 1_500 * 29 / 1000 + 25,
                currency: currency.clone(),
                exchange_rate: None,
                created: available - 2 * DAY,
                available_on: available,
                source: TxnSource::Charge("pi_demo_orphan".into()),
                payout: None,
            });
            txns.push(SimBalanceTransaction {
                id: "txn_demo_climate".into(),
                type_: "climate_order_purchase".into(),
                reporting_category: "climate_order_purchase".into(),
                amount: -50,
                fee: 0,
                currency: currency.clone(),
                exchange_rate: None,
                created: available,
                available_on: available,
                source: TxnSource::Nothing,
                payout: None,
            });
        }
        let net: i64 = txns.iter().map(|t| t.amount - t.fee).sum();
        // One payout is 1.00 short of what its transactions add up to.
        let amount = if short.is_empty() {
            short.clone_from(&id);
            net - 100
        } else {
            net
        };
        for mut txn in txns {
            txn.payout = Some(id.clone());
            sim.add_balance_transaction(txn);
        }
        let payout = SimPayout {
            id: id.clone(),
            amount,
            currency: currency.clone(),
            created: available + 3_600,
            arrival_date: arrival,
            status: "paid".into(),
            failure_code: None,
            reconciliation_status: "completed".into(),
        };
        sim.add_balance_transaction(SimBalanceTransaction {
            id: format!("txn_{id}"),
            type_: "payout".into(),
            reporting_category: "payout".into(),
            amount: -amount,
            fee: 0,
            currency,
            exchange_rate: None,
            created: available + 3_600,
            available_on: available + 3_600,
            source: TxnSource::Payout(id),
            payout: None,
        });
        sim.add_payout(payout);
        count += 1;
    }
    // A payout the bank refused: its money went back to the balance.
    let failed = "po_demo_refused".to_owned();
    sim.add_payout(SimPayout {
        id: failed.clone(),
        amount: 12_345,
        currency: "eur".into(),
        created: now - 10 * DAY,
        arrival_date: now - 8 * DAY,
        status: "failed".into(),
        failure_code: Some("account_closed".into()),
        reconciliation_status: "not_applicable".into(),
    });
    PaidOut {
        count: count + 1,
        short,
        failed,
        not_paid_out,
    }
}

async fn plant_in_database(conn: &mut PgConnection, t: &Targets) -> Result<(), sqlx::Error> {
    let statements: [(&str, &str); 7] = [
        (
            "UPDATE orders SET status = 'PENDING', paid_at = NULL WHERE id = $1",
            &t.missed_webhook,
        ),
        (
            "UPDATE payments SET status = 'requires_payment_method', succeeded_at = NULL WHERE order_id = $1",
            &t.missed_webhook,
        ),
        (
            "UPDATE payments SET stripe_payment_intent_id = NULL WHERE order_id = $1",
            &t.unlinked,
        ),
        (
            "UPDATE orders SET stripe_payment_intent_id = NULL WHERE id = $1",
            &t.unlinked,
        ),
        (
            "UPDATE payments SET status = 'processing' WHERE order_id = $1",
            &t.payment_row,
        ),
        (
            "UPDATE orders SET status = 'PENDING', paid_at = NULL WHERE id = $1",
            &t.stale,
        ),
        (
            "UPDATE payments SET status = 'requires_capture', succeeded_at = NULL WHERE order_id = $1",
            &t.stale,
        ),
    ];
    for (sql, id) in statements {
        sqlx::query(sql).bind(id).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The PaymentIntent status Stripe has for an order in this status.
fn stripe_status(order_status: OrderStatus) -> IntentStatus {
    match order_status {
        OrderStatus::Paid | OrderStatus::Refunded => IntentStatus::Succeeded,
        OrderStatus::Cancelled => IntentStatus::Canceled,
        _ => IntentStatus::RequiresPaymentMethod,
    }
}

/// The order's PaymentIntent (and refund) as Stripe has it, with the planted differences.
fn mirror(sim: &StripeSim, order: &WindowOrder, t: &Targets, planted: &mut Planted) {
    let WindowOrder {
        id,
        total,
        currency,
        payment_intent_id: pi_id,
        created,
        paid_at,
        ..
    } = order;
    if *id == t.missing {
        return;
    }
    let status = if *id == t.stale {
        IntentStatus::RequiresCapture
    } else {
        stripe_status(order.status())
    };
    let paid = paid_at.unwrap_or(created + 120);
    let mut pi = SimPaymentIntent {
        id: pi_id.clone(),
        amount: *total,
        currency: currency.to_lowercase(),
        status: status.to_string(),
        created: *created,
        order_id: Some(id.clone()),
        charge: (status == IntentStatus::Succeeded).then(|| (pi_id.replace("pi_", "ch_"), paid)),
        last_error: None,
    };
    if *id == t.amount {
        pi.amount += 500;
    }
    if *id == t.currency {
        pi.currency = "usd".into();
    }
    let events = [
        Some(("created", "payment_intent.created", *created)),
        (status == IntentStatus::Succeeded).then_some((
            "succeeded",
            "payment_intent.succeeded",
            paid,
        )),
        (status == IntentStatus::RequiresCapture).then_some((
            "capturable",
            "payment_intent.amount_capturable_updated",
            paid,
        )),
    ];
    for (suffix, type_, at) in events.into_iter().flatten() {
        sim.add_event(SimEvent {
            id: format!("{}_{suffix}", pi_id.replace("pi_", "evt_")),
            type_: type_.into(),
            created: at,
            object: EventObject::PaymentIntent(pi_id.clone()),
            // The missed webhook: Stripe could not deliver it.
            delivery_success: !(*id == t.missed_webhook && suffix == "succeeded"),
        });
        planted.events += 1;
    }
    sim.add_payment_intent(pi);
    planted.payment_intents += 1;
    if *id == t.dispute {
        sim.add_dispute(SimDispute {
            id: "dp_demo_fraudulent".into(),
            payment_intent: pi_id.clone(),
            amount: *total,
            currency: currency.to_lowercase(),
            status: "needs_response".into(),
            reason: "fraudulent".into(),
            created: paid + 2 * 86_400,
            due_by: Some(paid + 9 * 86_400),
        });
        sim.add_event(SimEvent {
            id: "evt_demo_dispute_created".into(),
            type_: "charge.dispute.created".into(),
            created: paid + 2 * 86_400,
            object: EventObject::Dispute("dp_demo_fraudulent".into()),
            delivery_success: true,
        });
        planted.events += 1;
    }
    if order.status() == OrderStatus::Refunded && *total > 0 && order.has_payment {
        sim.add_refund(SimRefund {
            id: pi_id.replace("pi_demo_", "re_demo_"),
            payment_intent: pi_id.clone(),
            amount: *total,
            currency: currency.to_lowercase(),
            status: "succeeded".into(),
            reason: Some("requested_by_customer".into()),
            created: paid + 86_400,
        });
        planted.refunds += 1;
        add_refund_events(
            sim,
            pi_id,
            &pi_id.replace("pi_demo_", "re_demo_"),
            paid + 86_400,
        );
        planted.events += 2;
    }
    if *id == t.dashboard_refund {
        sim.add_refund(SimRefund {
            id: "re_demo_dashboard".into(),
            payment_intent: pi_id.clone(),
            amount: (*total / 2).max(1),
            currency: currency.to_lowercase(),
            status: "succeeded".into(),
            reason: Some("requested_by_customer".into()),
            created: paid + 3_600,
        });
        planted.refunds += 1;
    }
}

/// What Stripe sends when a refund is made: the refund, and the charge it refunds.
fn add_refund_events(sim: &StripeSim, pi_id: &str, refund_id: &str, at: i64) {
    sim.add_event(SimEvent {
        id: refund_id.replace("re_", "evt_refund_"),
        type_: "refund.created".into(),
        created: at,
        object: EventObject::Refund(refund_id.to_owned()),
        delivery_success: true,
    });
    sim.add_event(SimEvent {
        id: refund_id.replace("re_", "evt_charge_refunded_"),
        type_: "charge.refunded".into(),
        created: at,
        object: EventObject::Charge(pi_id.to_owned()),
        delivery_success: true,
    });
}

/// PaymentIntents no order of ours made: a second charge, and one for a deleted order.
fn add_strangers(sim: &StripeSim, orders: &[WindowOrder], t: &Targets, planted: &mut Planted) {
    if let Some(order) = orders.iter().find(|o| o.id == t.double_charge) {
        sim.add_payment_intent(SimPaymentIntent {
            id: "pi_demo_double_submit".into(),
            amount: order.total,
            currency: order.currency.to_lowercase(),
            status: IntentStatus::Succeeded.to_string(),
            created: order.created + 30,
            order_id: Some(order.id.clone()),
            charge: Some(("ch_demo_double_submit".into(), order.created + 40)),
            last_error: None,
        });
        planted.payment_intents += 1;
    }
    let created = orders.last().map_or(0, |o| o.created);
    sim.add_payment_intent(SimPaymentIntent {
        id: "pi_demo_orphan".into(),
        amount: 1500,
        currency: "eur".into(),
        status: "succeeded".into(),
        created,
        order_id: Some("order-deleted-in-admin".into()),
        charge: Some(("ch_demo_orphan".into(), created + 10)),
        last_error: None,
    });
    planted.payment_intents += 1;
}
