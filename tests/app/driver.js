// The users' application in a loop: a realistic mix of a vending shop's Prisma operations,
// run until SIGTERM (or --seconds), counting operations and failures. Prints one JSON summary
// on stdout: { ops, failures, errors, orders } where `orders` are the orders this run created
// with the status it left them in, so the test can check them in the database afterwards.
//
// Usage: node driver.js legacy|upgraded [--seconds N] [--schema NAME]
//        node driver.js upgraded --crud   (create, read, update, delete on every new model, once)
// DATABASE_URL is the database; the generated clients live in generated/<variant> of the
// current directory.
"use strict";

// The Prisma installation is the one of the current directory: tests/app (Prisma 6) or
// tests/app7 (Prisma 7) run this same file.
const path = require("node:path");
const fromApp = (name) => require(require.resolve(name, { paths: [process.cwd()] }));
const { PrismaPg } = fromApp("@prisma/adapter-pg");

const variant = process.argv[2];
if (variant !== "legacy" && variant !== "upgraded") {
  console.error("usage: node driver.js legacy|upgraded [--seconds N] [--schema NAME]");
  process.exit(2);
}
const flag = (name) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const seconds = Number(flag("--seconds") ?? "0");
const schema = flag("--schema");
const { PrismaClient } = require(path.join(process.cwd(), "generated", variant));

// Prisma's own default pool size for 2 cores is 5; a few connections are enough to interleave.
const pool = { connectionString: process.env.DATABASE_URL, max: 4 };
if (schema) pool.options = `-c search_path=${schema}`;
const adapter = new PrismaPg(pool, schema ? { schema } : undefined);
const prisma = new PrismaClient({ adapter });

const stats = { ops: 0, failures: 0, byOperation: {}, errors: [] };
const created = new Map();
let stopping = false;
process.on("SIGTERM", () => (stopping = true));
process.on("SIGINT", () => (stopping = true));

async function op(name, fn) {
  const entry = (stats.byOperation[name] ??= { ok: 0, failed: 0 });
  try {
    const value = await fn();
    stats.ops += 1;
    entry.ok += 1;
    return value;
  } catch (err) {
    stats.failures += 1;
    entry.failed += 1;
    if (stats.errors.length < 20) {
      stats.errors.push({ operation: name, at: new Date().toISOString(), message: String(err.message).trim().split("\n").slice(-3).join(" ").slice(-400) });
    }
    return undefined;
  }
}

const pick = (list) => list[Math.floor(Math.random() * list.length)];
const STATUSES = ["PENDING", "PAID", "FAILED", "CANCELLED", "REFUNDED"];

async function fixtures() {
  const users = await prisma.user.findMany({ take: 50, select: { id: true } });
  const products = await prisma.product.findMany({ where: { price: { lt: 1000 } }, take: 50, select: { id: true, name: true, price: true } });
  if (users.length === 0 || products.length === 0) throw new Error("the database has no users or products");
  return { users, products };
}

function cents(price) {
  // Decimal(10,2) -> integer cents, exactly (never through a float).
  const [whole, frac = ""] = price.toString().split(".");
  return Number(whole) * 100 + Number((frac + "00").slice(0, 2));
}

async function createOrder({ users, products }) {
  const user = pick(users);
  const lines = [pick(products), pick(products)];
  if (variant === "legacy") {
    const order = await prisma.order.create({
      data: { userId: user.id, items: { create: lines.map((p) => ({ productId: p.id, quantity: 2 })) } },
      select: { id: true, status: true, userId: true },
    });
    created.set(order.id, { id: order.id, status: order.status, items: lines.length });
    return order;
  }
  const items = lines.map((p) => ({
    productId: p.id,
    quantity: 2,
    label: p.name,
    unitPriceCents: cents(p.price),
    subtotalCents: cents(p.price) * 2,
  }));
  const total = items.reduce((sum, i) => sum + i.subtotalCents, 0);
  const order = await prisma.order.create({
    data: {
      userId: user.id,
      amountTotalCents: total,
      currency: "EUR",
      items: { create: items },
      payment: { create: { amountCents: total, currency: "EUR", status: "requires_payment_method" } },
    },
    select: { id: true, status: true, userId: true },
  });
  created.set(order.id, { id: order.id, status: order.status, items: lines.length, amountTotalCents: total });
  return order;
}

async function payOrder(order) {
  if (variant === "legacy") {
    await prisma.order.update({ where: { id: order.id }, data: { status: "PAID" } });
  } else {
    await prisma.$transaction([
      prisma.order.update({ where: { id: order.id }, data: { status: "PAID", paidAt: new Date() } }),
      prisma.payment.update({ where: { orderId: order.id }, data: { status: "succeeded", succeededAt: new Date() } }),
    ]);
  }
  created.get(order.id).status = "PAID";
}

// The legacy application edits an unpaid cart: one more of the first item, the second one
// removed, another product added. After paytool's backfill, the database keeps the snapshots,
// the order's total and its pending payment true (migrate step 029).
async function editCart(order, { products }) {
  const items = await prisma.orderItem.findMany({ where: { orderId: order.id }, orderBy: { id: "asc" }, select: { id: true } });
  if (items.length === 0) return;
  await prisma.orderItem.update({ where: { id: items[0].id }, data: { quantity: { increment: 1 } } });
  if (items.length > 1) await prisma.orderItem.delete({ where: { id: items[1].id } });
  await prisma.orderItem.create({ data: { orderId: order.id, productId: pick(products).id, quantity: 1 } });
  created.get(order.id).items = items.length - (items.length > 1 ? 1 : 0) + 1;
}

async function round(data) {
  const order = await op("create order with items", () => createOrder(data));
  await op("list a user's orders by status", () =>
    prisma.order.findMany({ where: { userId: pick(data.users).id, status: "PENDING" }, take: 10, orderBy: { createdAt: "desc" } }));
  await op("orders with status in", () =>
    prisma.order.findMany({ where: { status: { in: ["PAID", "REFUNDED"] } }, take: 10, select: { id: true, status: true } }));
  await op("orders with status notIn", () =>
    prisma.order.findMany({ where: { status: { notIn: ["CANCELLED", "FAILED"] } }, take: 10 }));
  await op("orders with status not", () => prisma.order.findFirst({ where: { status: { not: "PENDING" } } }));
  await op("count with a where", () => prisma.order.count({ where: { status: "PAID" } }));
  await op("groupBy status", () => prisma.order.groupBy({ by: ["status"], _count: { _all: true } }));
  await op("find orders with their items", () =>
    prisma.order.findMany({ where: { status: pick(STATUSES) }, take: 5, include: { items: true } }));
  if (!order) return;
  if (variant === "legacy" && Math.random() < 0.5) await op("edit a cart", () => editCart(order, data));
  if (Math.random() < 0.5) {
    await op("pay an order", () => payOrder(order));
  } else {
    const result = await op("updateMany by status", () =>
      prisma.order.updateMany({ where: { id: order.id, status: "PENDING" }, data: { status: "CANCELLED" } }));
    if (result && result.count === 1) created.get(order.id).status = "CANCELLED";
  }
}

// Every model and field the payment system adds, through the upgraded client: create, read,
// update and delete, with the relations between them. Throws on the first failure.
async function crud({ users, products }) {
  const product = products[0];
  const order = await prisma.order.create({
    data: {
      userId: users[0].id,
      status: "PENDING",
      currency: "EUR",
      amountTotalCents: cents(product.price),
      stripePaymentIntentId: `pi_crud_${Date.now()}`,
      receiptUrl: "https://receipts.example/crud",
      items: { create: [{ productId: product.id, quantity: 1, label: product.name, unitPriceCents: cents(product.price), subtotalCents: cents(product.price) }] },
    },
    include: { items: true },
  });
  const payment = await prisma.payment.create({
    data: { orderId: order.id, stripePaymentIntentId: order.stripePaymentIntentId, amountCents: order.amountTotalCents, currency: "EUR", status: "processing" },
  });
  const event = await prisma.paymentEvent.create({
    data: { paymentId: payment.id, stripeEventId: `evt_crud_${Date.now()}`, type: "payment_intent.succeeded", payload: { id: "evt", data: { object: { amount: order.amountTotalCents } } }, stripeCreatedAt: new Date() },
  });
  const refund = await prisma.refund.create({
    data: { paymentId: payment.id, stripeRefundId: `re_crud_${Date.now()}`, amountCents: 1, currency: "EUR", status: "pending", reason: "requested_by_customer" },
  });
  await prisma.user.update({ where: { id: users[0].id }, data: { stripeCustomerId: "cus_crud" } });
  const paid = new Date();
  await prisma.order.update({ where: { id: order.id }, data: { status: "PAID", paidAt: paid } });
  await prisma.payment.update({ where: { id: payment.id }, data: { status: "succeeded", succeededAt: paid, lastErrorCode: null } });
  await prisma.refund.update({ where: { id: refund.id }, data: { status: "succeeded" } });
  const read = await prisma.order.findUniqueOrThrow({
    where: { id: order.id },
    include: { items: true, payment: { include: { events: true, refunds: true } } },
  });
  const checks = {
    status: read.status === "PAID",
    paidAt: read.paidAt !== null,
    snapshot: read.items[0].label === product.name && read.items[0].subtotalCents === cents(product.price),
    payment: read.payment.status === "succeeded" && read.payment.amountCents === order.amountTotalCents,
    event: read.payment.events.length === 1 && read.payment.events[0].payload.data.object.amount === order.amountTotalCents,
    refund: read.payment.refunds.length === 1 && read.payment.refunds[0].status === "succeeded",
  };
  for (const [name, ok] of Object.entries(checks)) if (!ok) throw new Error(`crud: ${name} read back wrong: ${JSON.stringify(read)}`);
  await prisma.refund.delete({ where: { id: refund.id } });
  await prisma.paymentEvent.delete({ where: { id: event.id } });
  await prisma.payment.delete({ where: { id: payment.id } });
  await prisma.order.delete({ where: { id: order.id } });
  const left = await prisma.payment.count({ where: { id: payment.id } });
  return { ...checks, deleted: left === 0 };
}

async function main() {
  const data = await fixtures();
  if (process.argv.includes("--crud")) {
    const result = await crud(data);
    await prisma.$disconnect();
    process.stdout.write(JSON.stringify({ variant, crud: result }) + "\n");
    return;
  }
  const deadline = seconds > 0 ? Date.now() + seconds * 1000 : Infinity;
  while (!stopping && Date.now() < deadline) {
    await round(data);
  }
  await prisma.$disconnect();
  process.stdout.write(JSON.stringify({ variant, ...stats, orders: [...created.values()] }) + "\n");
}

main().catch(async (err) => {
  console.error(`driver: ${err.message}`);
  await prisma.$disconnect().catch(() => {});
  process.exit(3);
});
