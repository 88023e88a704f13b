-- A worker claims the first range of the generation that nobody holds: never claimed, given
-- back, or whose lease ran out (its process died). SKIP LOCKED: two workers claiming at the
-- same moment get two ranges, neither waits for the other.
-- `reclaimed`: its last lease ran out (the worker died or hung); a range given back by a
-- stopped process has no lease left and is not taken over from anyone.
-- $1 step, $2 generation, $3 process, $4 worker, $5 lease in milliseconds.
WITH candidate AS (
    SELECT range_no, lease_until IS NOT NULL AS lease_ran_out FROM paytool.backfill_ranges
    WHERE step = $1 AND generation = $2 AND done_at IS NULL
      AND (process IS NULL OR lease_until < now())
    ORDER BY range_no
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE paytool.backfill_ranges AS r
SET process = $3, worker = $4, claims = r.claims + 1,
    lease_until = now() + make_interval(secs => $5 / 1000.0)
FROM candidate
WHERE r.step = $1 AND r.generation = $2 AND r.range_no = candidate.range_no
RETURNING r.range_no, r.lo, r.hi, r.last_id, candidate.lease_ran_out AS reclaimed
