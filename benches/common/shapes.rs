//! Legacy databases of shapes paytool's own seed does not have (issue 11): how ids are made
//! (random, time-ordered, sequential text), how many items an order has (1–3, or a few
//! orders with 200+), and planner statistics left as a bulk load leaves them (no ANALYZE).
//! The SQL is built from the constant expressions below, never from input.

/// One data shape.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub name: &'static str,
    /// SQL of an order id from the integer `g`.
    order_id: &'static str,
    /// SQL of an item id from the order's `g` and the item's `k`.
    item_id: &'static str,
    /// SQL of the number of items of order `g`.
    items: &'static str,
    /// ANALYZE after loading (the seed's habit) or not (a bulk load's reality).
    pub analyzed: bool,
}

pub const SHAPES: &[Shape] = &[
    Shape {
        name: "random-uuid",
        order_id: "md5('order-' || g)::uuid::text",
        item_id: "md5('item-' || g || '-' || k)::uuid::text",
        items: "1 + g % 3",
        analyzed: false,
    },
    Shape {
        name: "time-ordered",
        // ULID/cuid-like: a millisecond timestamp first, so new rows land at the end of the keys.
        order_id: "lpad(to_hex(1600000000000 + g * 997), 12, '0') || substr(md5('o' || g), 1, 14)",
        item_id: "lpad(to_hex(1600000000000 + g * 997), 12, '0') || lpad(k::text, 3, '0') || substr(md5('i' || g || k), 1, 11)",
        items: "1 + g % 3",
        analyzed: false,
    },
    Shape {
        name: "sequential-text",
        order_id: "'o-' || lpad(g::text, 8, '0')",
        item_id: "'i-' || lpad(g::text, 8, '0') || '-' || k",
        items: "1 + g % 3",
        analyzed: false,
    },
    Shape {
        name: "skewed-items",
        order_id: "md5('order-' || g)::uuid::text",
        item_id: "md5('item-' || g || '-' || k)::uuid::text",
        // One order in 1,000 has 200 to 299 items.
        items: "CASE WHEN g % 1000 = 0 THEN 200 + g % 100 ELSE 1 + g % 3 END",
        analyzed: false,
    },
];

pub fn shape(name: &str) -> Option<&'static Shape> {
    SHAPES.iter().find(|s| s.name == name)
}

impl Shape {
    /// Fills an empty legacy schema (sql/fixtures/legacy_schema.sql) with `orders` orders.
    pub fn load_sql(&self, orders: i64) -> String {
        let users = (orders / 10).max(10);
        format!(
            "INSERT INTO users (id, email, name)
             SELECT 'u-' || g, 'u' || g || '@example.com', 'User ' || g FROM generate_series(1, {users}) AS g;
             INSERT INTO machines (id, name) SELECT 'm-' || g, 'VM ' || g FROM generate_series(1, 50) AS g;
             INSERT INTO products (id, name, price)
             SELECT 'p-' || g, 'Product ' || g, round((50 + g * 37 % 950) / 100.0, 2) FROM generate_series(1, 200) AS g;
             INSERT INTO orders (id, user_id, machine_id, status, created_at, updated_at)
             SELECT {order_id}, 'u-' || (1 + g % {users}), 'm-' || (1 + g % 50),
                    (ARRAY['PENDING', 'PAID', 'FAILED', 'CANCELLED', 'REFUNDED'])[1 + g % 5]::order_status,
                    now() - g * interval '1 second', now() - g * interval '1 second'
             FROM generate_series(1, {orders}) AS g;
             INSERT INTO order_items (id, order_id, product_id, quantity)
             SELECT {item_id}, {order_id}, 'p-' || (1 + (g * 7 + k) % 200), 1 + (g + k) % 4
             FROM generate_series(1, {orders}) AS g
             CROSS JOIN LATERAL generate_series(1, {items}) AS k;
             {analyze}",
            order_id = self.order_id,
            item_id = self.item_id,
            items = self.items,
            analyze = if self.analyzed { "ANALYZE;" } else { "" },
        )
    }

    /// The application's write of one transaction, pgbench-like: one UPDATE of an existing
    /// order and one INSERT of a new one (with one item), `$1` = an existing `g`, `$2` = a new one.
    pub fn writer_sql(&self) -> String {
        format!(
            "WITH upd AS (
                 UPDATE orders SET status = 'PAID', updated_at = now()
                 WHERE id = (SELECT {order_id} FROM (SELECT $1::BIGINT AS g) AS x)
                 RETURNING 1
             ), ins AS (
                 INSERT INTO orders (id, user_id, status)
                 SELECT {order_id}, 'u-1', 'PENDING' FROM (SELECT $2::BIGINT AS g) AS x
                 RETURNING id
             )
             INSERT INTO order_items (id, order_id, product_id, quantity)
             SELECT ins.id || '-item', ins.id, 'p-7', 2 FROM ins",
            order_id = self.order_id,
        )
    }
}
