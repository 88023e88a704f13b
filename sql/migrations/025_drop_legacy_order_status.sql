-- Cleanup, run only by `paytool migrate cleanup` once no client of the legacy application is
-- left (paytool checks that first): the enum comparisons of 024 and the enum type itself.
-- Without CASCADE: PostgreSQL refuses while any other object still uses the type.
-- (ours, from 024; the check before this step found no client that still sends the enum)
-- squawk-ignore ban-drop-type
DROP OPERATOR IF EXISTS = (TEXT, order_status);
-- squawk-ignore ban-drop-type
DROP OPERATOR IF EXISTS <> (TEXT, order_status);
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS order_status_legacy_eq(TEXT, order_status);
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS order_status_legacy_ne(TEXT, order_status);
-- (the legacy enum, unused since the swap of 022; SPEC §3 keeps it until this cleanup)
-- squawk-ignore ban-drop-type
DROP TYPE IF EXISTS order_status;
