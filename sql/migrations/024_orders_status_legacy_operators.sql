-- The running application keeps comparing orders.status with the enum after the swap (022).
-- Prisma sends every enum value as CAST($1::text AS order_status), so once the column is
-- VARCHAR its filters need `text = order_status` and `text <> order_status` (IN and NOT IN
-- expand to these). paytool runs this step just before the swap, whatever its number.
-- LEFTARG is TEXT, not VARCHAR, on purpose: a VARCHAR operator would be an exact match for
-- `status = 'PAID'` and take plain string comparisons away from text = text. The functions
-- are inlined into the query, so `status = CAST(... AS order_status)` still uses
-- orders_status_idx. No commutator: `order_status = 'literal'` keeps its enum meaning.
-- Removed with the enum type by the cleanup step (025), once the legacy application is gone.
CREATE OR REPLACE FUNCTION order_status_legacy_eq(TEXT, order_status) RETURNS BOOLEAN
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT $1 = $2::TEXT $$;

CREATE OR REPLACE FUNCTION order_status_legacy_ne(TEXT, order_status) RETURNS BOOLEAN
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT $1 <> $2::TEXT $$;

CREATE OPERATOR = (
    LEFTARG = TEXT, RIGHTARG = order_status,
    FUNCTION = order_status_legacy_eq,
    NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel
);

CREATE OPERATOR <> (
    LEFTARG = TEXT, RIGHTARG = order_status,
    FUNCTION = order_status_legacy_ne,
    NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel
);
