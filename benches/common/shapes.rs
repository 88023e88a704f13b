//! Legacy databases of shapes paytool's own seed does not have (issues 11 and 21): how ids are
//! made (random, time-ordered, sequential text), how many items an order has (1–3, a few
//! orders with 200+, a tenth with none: carts abandoned before their first item), orders whose
//! items can never be snapshotted (their product is gone), an application that writes an order
//! first and its item in a second transaction, and planner statistics left as a bulk load
//! leaves them (no ANALYZE). The SQL is built from the constant expressions below, never from
//! input.

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
    /// SQL of the product of item `k` of order `g` (NULL: the product was deleted).
    product: &'static str,
    /// The application writes an order, then its item in a second transaction.
    pub two_step_writer: bool,
    /// ANALYZE after loading (the seed's habit) or not (a bulk load's reality).
    pub analyzed: bool,
}

pub const SHAPES: &[Shape] = &[
    Shape {
        name: "random-uuid",
        order_id: "md5('order-' || g)::uuid::text",
        item_id: "md5('item-' || g || '-' || k)::uuid::text",
        items: "1 + g % 3",
        product: PRODUCT,
        two_step_writer: false,
        analyzed: false,
    },
    Shape {
        name: "time-ordered",
        // ULID/cuid-like: a millisecond timestamp first, so new rows land at the end of the keys.
        order_id: "lpad(to_hex(1600000000000 + g * 997), 12, '0') || substr(md5('o' || g), 1, 14)",
        item_id: "lpad(to_hex(1600000000000 + g * 997), 12, '0') || lpad(k::text, 3, '0') || substr(md5('i' || g || k), 1, 11)",
        items: "1 + g % 3",
        product: PRODUCT,
        two_step_writer: false,
        analyzed: false,
    },
    Shape {
        name: "sequential-text",
        order_id: "'o-' || lpad(g::text, 8, '0')",
        item_id: "'i-' || lpad(g::text, 8, '0') || '-' || k",
        items: "1 + g % 3",
        product: PRODUCT,
        two_step_writer: false,
        analyzed: false,
    },
    Shape {
        name: "skewed-items",
        order_id: "md5('order-' || g)::uuid::text",
        item_id: "md5('item-' || g || '-' || k)::uuid::text",
        // One order in 1,000 has 200 to 299 items.
        items: "CASE WHEN g % 1000 = 0 THEN 200 + g % 100 ELSE 1 + g % 3 END",
        product: PRODUCT,
        two_step_writer: false,
        analyzed: false,
    },
    Shape {
        name: "empty-carts",
        // The fixture of issue 21: sequential text ids, every tenth order without items, and
        // an application that adds an order's item in a second transaction.
        order_id: "'o-' || lpad(g::text, 8, '0')",
        item_id: "'i-' || lpad(g::text, 8, '0') || '-' || k",
        items: "CASE WHEN g % 10 = 0 THEN 0 ELSE 1 + g % 3 END",
        product: PRODUCT,
        two_step_writer: true,
        analyzed: false,
    },
    Shape {
        name: "unresolvable-items",
        // One order in 20 has only items whose product was deleted (product_id NULL).
        order_id: "md5('order-' || g)::uuid::text",
        item_id: "md5('item-' || g || '-' || k)::uuid::text",
        items: "1 + g % 3",
        product: "CASE WHEN g % 20 = 0 THEN NULL ELSE 'p-' || (1 + (g * 7 + k) % 200) END",
        two_step_writer: false,
        analyzed: false,
    },
];

/// The product of an item: one of the 200.
const PRODUCT: &str = "'p-' || (1 + (g * 7 + k) % 200)";

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
             SELECT {item_id}, {order_id}, {product}, 1 + (g + k) % 4
             FROM generate_series(1, {orders}) AS g
             CROSS JOIN LATERAL generate_series(1, {items}) AS k;
             {analyze}",
            order_id = self.order_id,
            item_id = self.item_id,
            items = self.items,
            product = self.product,
            analyze = if self.analyzed { "ANALYZE;" } else { "" },
        )
    }

    /// The application's writes, pgbench-like, each statement its own transaction: one UPDATE
    /// of an existing order and one INSERT of a new one with one item, in one transaction or
    /// (`two_step_writer`) the order first and its item in a second. `$1` = an existing `g`,
    /// `$2` = a new one; every statement takes both.
    pub fn writer_sqls(&self) -> Vec<String> {
        let update = format!(
            "UPDATE orders SET status = 'PAID', updated_at = now()
             WHERE id = (SELECT {order_id} FROM (SELECT $1::BIGINT AS g) AS x)",
            order_id = self.order_id
        );
        let order = format!(
            "INSERT INTO orders (id, user_id, status)
             SELECT {order_id}, 'u-1', 'PENDING' FROM (SELECT $2::BIGINT AS g) AS x",
            order_id = self.order_id
        );
        let item = format!(
            "INSERT INTO order_items (id, order_id, product_id, quantity)
             SELECT {order_id} || '-item', {order_id}, 'p-7', 2 FROM (SELECT $2::BIGINT AS g) AS x",
            order_id = self.order_id
        );
        if self.two_step_writer {
            vec![
                format!("WITH upd AS ({update} RETURNING 1) {order}"),
                format!("{item} WHERE $1::BIGINT IS NOT NULL"),
            ]
        } else {
            vec![format!(
                "WITH upd AS ({update} RETURNING 1), ins AS ({order} RETURNING id) \
                 INSERT INTO order_items (id, order_id, product_id, quantity) \
                 SELECT ins.id || '-item', ins.id, 'p-7', 2 FROM ins"
            )]
        }
    }
}
