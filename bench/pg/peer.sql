-- PostgreSQL peer of the YRD clearing engine: the timed job. One day's messages, decoded by
-- events_to_csv, are loaded with COPY into the unlogged staging tables, judged and netted with
-- set-based SQL, and written to the durable tables in one transaction whose COMMIT is synced
-- (fsync = on, synchronous_commit = on). Run on a database prepared by schema.sql.
--
-- psql variables: csv_dir, now_ms (the engine's frozen clock, the oracle's clock_fixed_ms),
-- cutoff_ms (local time of the cutoff, ms of the day) and grace_ms (the oracle's engine_settings).
--
-- The rules are those of SPEC sections 4 and 5 and of the generator's reference model:
--   steps 1-5 (verification, ids, enums, amounts, timestamps, participants): events_to_csv, with
--     the engine's decoder; rejections of steps 1-4 count in the oldest open window, of step 5 in
--     the window of the event's own timestamp
--   step 6, dedup per family by txn_id: the first registered message stands; the same content
--     again is an exact duplicate, other content a duplicate_conflict
--   step 7: a refund needs an earlier registered tap and may not take it below zero over all its
--     applied refunds; a cancellation needs an earlier registered settlement not yet cancelled;
--     a message rejected here does not register its id
--   windows: an event goes to the window of its timestamp, or to the oldest open window (late)
--     when that window is closed at now_ms
--   netting per window: bank scheme (province, bank, merchant, fees per merchant half up on the
--     magnitude, credited to the fee-account bank), fund scheme (province, fund, institution)
\set ON_ERROR_STOP on
\set QUIET on
SET client_min_messages = warning;

SELECT 28800000 + (86400000 - :cutoff_ms) % 86400000 AS day_shift_ms \gset
SELECT min(d) AS oldest_open_day
FROM generate_series(business_day(:now_ms, :day_shift_ms) - 1, business_day(:now_ms, :day_shift_ms)) d
WHERE (d + 1) * 86400000 - :day_shift_ms + :grace_ms > :now_ms \gset

BEGIN;

-- Load. TRUNCATE in the same transaction lets COPY FREEZE write rows already frozen.
TRUNCATE stage_tap, stage_refund, stage_settlement, stage_cancellation, stage_rejected;
\set f :csv_dir '/tap.csv'
COPY stage_tap FROM :'f' WITH (FORMAT csv, FREEZE);
\set f :csv_dir '/refund.csv'
COPY stage_refund FROM :'f' WITH (FORMAT csv, FREEZE);
\set f :csv_dir '/settlement.csv'
COPY stage_settlement FROM :'f' WITH (FORMAT csv, FREEZE);
\set f :csv_dir '/cancellation.csv'
COPY stage_cancellation FROM :'f' WITH (FORMAT csv, FREEZE);
\set f :csv_dir '/rejected.csv'
COPY stage_rejected FROM :'f' WITH (FORMAT csv, FREEZE);
ANALYZE stage_tap, stage_refund, stage_settlement, stage_cancellation, stage_rejected;

-- Steps 6 and 7 (schema.sql): work_rank and work_reversal.
SELECT resolve_dedup_and_originals(1000) AS dedup_rounds \gset

-- Every family message that is not a newly applied tap or settlement: duplicates and conflicts
-- (messages after their id's standing one), and every refund and cancellation judged at step 7
-- (applied or rejected). A tap or settlement absent from here was applied.
CREATE UNLOGGED TABLE work_outcome AS
SELECT family, seq, kind, txn_id, original_txn_id, occurred_at_ms, digest,
       CASE WHEN digest = standing_digest THEN 'exact_duplicate' ELSE 'duplicate_conflict' END AS verdict,
       standing_digest AS first_digest, standing_seq AS first_seq, NULL::bigint AS original_seq, NULL::bigint AS units
FROM work_rank
WHERE NOT standing_rejected AND standing_seq < seq
UNION ALL
SELECT family, seq, kind, txn_id, original_txn_id, occurred_at_ms, digest,
       CASE WHEN accepted THEN 'applied'
            WHEN original_seq IS NULL THEN 'unknown_original'
            WHEN kind = 1 THEN 'refund_exceeds_original'
            ELSE 'already_cancelled' END,
       NULL, NULL, original_seq, units
FROM work_reversal;
CREATE INDEX ON work_outcome (seq);
ANALYZE work_outcome;

-- The details the clearing files need, one row per applied event, in its window.
INSERT INTO applied_event
SELECT routed_window(t.occurred_at_ms, :day_shift_ms, :oldest_open_day), t.seq, 'tap', t.txn_id, NULL,
       is_late(t.occurred_at_ms, :day_shift_ms, :oldest_open_day), t.occurred_at_ms, t.card_masked, t.card_token,
       t.issuer_bank_id, t.merchant_id, t.terminal_id, NULL::text, NULL::text,
       t.amount_fen, NULL::bigint, NULL::bigint, NULL::bigint
FROM stage_tap t
WHERE NOT EXISTS (SELECT 1 FROM work_outcome o WHERE o.seq = t.seq)
UNION ALL
SELECT routed_window(r.occurred_at_ms, :day_shift_ms, :oldest_open_day), r.seq, 'refund', r.txn_id,
       r.original_txn_id, is_late(r.occurred_at_ms, :day_shift_ms, :oldest_open_day), r.occurred_at_ms,
       t.card_masked, t.card_token, t.issuer_bank_id, t.merchant_id, t.terminal_id, NULL, NULL,
       r.units, NULL, NULL, NULL
FROM work_outcome r
JOIN stage_tap t ON t.seq = r.original_seq
WHERE r.kind = 1 AND r.verdict = 'applied'
UNION ALL
SELECT routed_window(s.occurred_at_ms, :day_shift_ms, :oldest_open_day), s.seq, 'settlement', s.txn_id, NULL,
       is_late(s.occurred_at_ms, :day_shift_ms, :oldest_open_day), s.occurred_at_ms, s.card_masked, s.card_token,
       NULL, NULL, NULL, s.insured_fund_id, s.institution_id,
       s.total_fen, s.fund_pay_fen, s.account_pay_fen, s.cash_pay_fen
FROM stage_settlement s
WHERE NOT EXISTS (SELECT 1 FROM work_outcome o WHERE o.seq = s.seq)
UNION ALL
SELECT routed_window(c.occurred_at_ms, :day_shift_ms, :oldest_open_day), c.seq, 'cancellation', c.txn_id,
       c.original_txn_id, is_late(c.occurred_at_ms, :day_shift_ms, :oldest_open_day), c.occurred_at_ms,
       s.card_masked, s.card_token, NULL, NULL, NULL, s.insured_fund_id, s.institution_id,
       s.total_fen, s.fund_pay_fen, s.account_pay_fen, s.cash_pay_fen
FROM work_outcome c
JOIN stage_settlement s ON s.seq = c.original_seq
WHERE c.kind = 3 AND c.verdict = 'applied';

-- The dedup state: one row per registered id, with what later refunds, cancellations and
-- duplicates need (refunded amount, cancelled flag, duplicate count).
INSERT INTO txn (family, txn_id, kind, seq, window_day, late, occurred_at_ms, digest, original_txn_id, amount_fen,
                 refunded_fen, cancelled, duplicate_count)
WITH followers AS (
  -- Per registered message (by seq): the refunds and cancellations applied to it, and its exact
  -- duplicates.
  SELECT coalesce(original_seq, first_seq) AS seq,
         sum(units) FILTER (WHERE verdict = 'applied') AS reversed_units,
         count(*) FILTER (WHERE verdict = 'applied') AS reversal_count,
         count(*) FILTER (WHERE verdict = 'exact_duplicate') AS duplicate_count
  FROM work_outcome WHERE verdict IN ('applied', 'exact_duplicate')
  GROUP BY 1
), registered AS (
  SELECT 0::smallint AS family, t.txn_id, 0::smallint AS kind, t.seq, t.occurred_at_ms, t.digest,
         NULL::text AS original_txn_id, t.amount_fen
  FROM stage_tap t WHERE NOT EXISTS (SELECT 1 FROM work_outcome o WHERE o.seq = t.seq)
  UNION ALL
  SELECT 1::smallint, s.txn_id, 2::smallint, s.seq, s.occurred_at_ms, s.digest, NULL, s.total_fen
  FROM stage_settlement s WHERE NOT EXISTS (SELECT 1 FROM work_outcome o WHERE o.seq = s.seq)
  UNION ALL
  SELECT o.family, o.txn_id, o.kind, o.seq, o.occurred_at_ms, o.digest, o.original_txn_id,
         CASE WHEN o.kind = 1 THEN o.units ELSE s.total_fen END
  FROM work_outcome o LEFT JOIN stage_settlement s ON o.kind = 3 AND s.seq = o.original_seq
  WHERE o.kind IN (1, 3) AND o.verdict = 'applied'
)
SELECT g.family, g.txn_id, g.kind, g.seq,
       routed_window(g.occurred_at_ms, :day_shift_ms, :oldest_open_day),
       is_late(g.occurred_at_ms, :day_shift_ms, :oldest_open_day), g.occurred_at_ms, g.digest, g.original_txn_id,
       g.amount_fen,
       CASE WHEN g.kind = 0 THEN coalesce(f.reversed_units, 0) ELSE 0 END,
       g.kind = 2 AND coalesce(f.reversal_count, 0) > 0,
       coalesce(f.duplicate_count, 0)
FROM registered g
LEFT JOIN followers f ON f.seq = g.seq;

-- Every message not applied, with its reason and window.
INSERT INTO exception (topic, seq, window_day, reason, txn_id, original_txn_id, digest, first_digest)
SELECT CASE WHEN family = 0 THEN 'yrd.taps' ELSE 'yrd.medical' END, seq,
       routed_window(occurred_at_ms, :day_shift_ms, :oldest_open_day), verdict, txn_id, original_txn_id, digest,
       first_digest
FROM work_outcome WHERE verdict NOT IN ('applied', 'exact_duplicate')
UNION ALL
SELECT topic, seq,
       CASE WHEN routed THEN routed_window(occurred_at_ms, :day_shift_ms, :oldest_open_day)
            ELSE date '1970-01-01' + :oldest_open_day::integer END,
       reason, txn_id, NULL, digest, NULL
FROM stage_rejected;

-- Netting lines per window: taps and refunds per (issuer bank, merchant), settlements and
-- cancellations per (insured fund, institution).
INSERT INTO tap_line
SELECT window_day, issuer_bank_id, merchant_id,
       count(*) FILTER (WHERE kind = 'tap'), coalesce(sum(amount_fen) FILTER (WHERE kind = 'tap'), 0),
       count(*) FILTER (WHERE kind = 'refund'), coalesce(sum(amount_fen) FILTER (WHERE kind = 'refund'), 0)
FROM applied_event WHERE kind IN ('tap', 'refund')
GROUP BY window_day, issuer_bank_id, merchant_id;

INSERT INTO medical_line
SELECT window_day, insured_fund_id, institution_id,
       count(*) FILTER (WHERE kind = 'settlement'),
       coalesce(sum(amount_fen) FILTER (WHERE kind = 'settlement'), 0),
       coalesce(sum(fund_pay_fen) FILTER (WHERE kind = 'settlement'), 0),
       coalesce(sum(account_pay_fen) FILTER (WHERE kind = 'settlement'), 0),
       coalesce(sum(cash_pay_fen) FILTER (WHERE kind = 'settlement'), 0),
       count(*) FILTER (WHERE kind = 'cancellation'),
       coalesce(sum(amount_fen) FILTER (WHERE kind = 'cancellation'), 0),
       coalesce(sum(fund_pay_fen) FILTER (WHERE kind = 'cancellation'), 0),
       coalesce(sum(account_pay_fen) FILTER (WHERE kind = 'cancellation'), 0),
       coalesce(sum(cash_pay_fen) FILTER (WHERE kind = 'cancellation'), 0)
FROM applied_event WHERE kind IN ('settlement', 'cancellation')
GROUP BY window_day, insured_fund_id, institution_id;

-- Counts per window: applied and late, exact duplicates, exceptions by reason.
INSERT INTO window_count
SELECT window_day, name, sum(n)::bigint FROM (
  SELECT window_day, 'applied' AS name, count(*) AS n FROM applied_event GROUP BY window_day
  UNION ALL
  SELECT window_day, 'late', count(*) FROM applied_event WHERE late GROUP BY window_day
  UNION ALL
  SELECT routed_window(occurred_at_ms, :day_shift_ms, :oldest_open_day), 'exact_duplicates', count(*)
  FROM work_outcome WHERE verdict = 'exact_duplicate' GROUP BY 1
  UNION ALL
  SELECT window_day, reason, count(*) FROM exception GROUP BY window_day, reason
) c
GROUP BY window_day, name;

-- Positions per window. Bank scheme: the issuer bank and province pay the net of taps less
-- refunds, the merchant's province receives it; per merchant the fee is taken from its net and
-- credited to the fee-account bank, the rest goes to the merchant and its settlement bank.
-- Fund scheme: the insured fund and its province pay the cleared amount (fund pay + account
-- pay, less cancellations), the institution and its fund's province receive it.
WITH tap_net AS (
  SELECT l.window_day, l.issuer_bank_id, ib.province AS issuer_province, l.merchant_id, m.province AS merchant_province,
         m.bank_id AS merchant_bank_id, m.category, (l.amount_fen - l.refunded_fen)::numeric AS net_fen
  FROM tap_line l JOIN bank ib ON ib.bank_id = l.issuer_bank_id JOIN merchant m ON m.merchant_id = l.merchant_id
), merchant_net AS (
  SELECT window_day, merchant_id, merchant_bank_id, sum(net_fen) AS net_fen, fee_fen(sum(net_fen), f.bps) AS fee_fen
  FROM tap_net JOIN fee f USING (category)
  GROUP BY window_day, merchant_id, merchant_bank_id, f.bps
), medical_net AS (
  SELECT l.window_day, l.insured_fund_id, fi.province AS insured_province, l.institution_id,
         fh.province AS institution_province,
         (l.fund_pay_fen + l.account_pay_fen - l.cancelled_fund_pay_fen - l.cancelled_account_pay_fen)::numeric
           AS cleared_fen
  FROM medical_line l
  JOIN fund fi ON fi.fund_id = l.insured_fund_id
  JOIN merchant h ON h.merchant_id = l.institution_id
  JOIN fund fh ON fh.fund_id = h.fund_id
), deltas AS (
  SELECT window_day, 'bank_scheme' AS scheme, 'province' AS kind, issuer_province AS participant_id, -net_fen AS fen FROM tap_net
  UNION ALL SELECT window_day, 'bank_scheme', 'province', merchant_province, net_fen FROM tap_net
  UNION ALL SELECT window_day, 'bank_scheme', 'bank', issuer_bank_id, -net_fen FROM tap_net
  UNION ALL SELECT window_day, 'bank_scheme', 'bank', merchant_bank_id, net_fen - fee_fen FROM merchant_net
  UNION ALL SELECT window_day, 'bank_scheme', 'bank', (SELECT bank_id FROM bank WHERE fee_account), fee_fen FROM merchant_net
  UNION ALL SELECT window_day, 'bank_scheme', 'merchant', merchant_id, net_fen - fee_fen FROM merchant_net
  UNION ALL SELECT window_day, 'fund_scheme', 'province', insured_province, -cleared_fen FROM medical_net
  UNION ALL SELECT window_day, 'fund_scheme', 'province', institution_province, cleared_fen FROM medical_net
  UNION ALL SELECT window_day, 'fund_scheme', 'fund', insured_fund_id, -cleared_fen FROM medical_net
  UNION ALL SELECT window_day, 'fund_scheme', 'institution', institution_id, cleared_fen FROM medical_net
)
INSERT INTO position
SELECT window_day, scheme, kind, participant_id, sum(fen)::bigint
FROM deltas GROUP BY window_day, scheme, kind, participant_id;

-- SPEC section 4's invariants, checked before anything is committed: bank-scheme positions over
-- all banks sum to 0, fund-scheme positions over funds and institutions sum to 0, each scheme's
-- province positions sum to 0, and every message is counted once.
DO $$
DECLARE
  broken text;
  counted bigint;
  messages bigint;
BEGIN
  SELECT string_agg(window_day || ' ' || check_name, ', ') INTO broken FROM (
    SELECT window_day, 'bank_scheme.bank' AS check_name FROM position
    WHERE scheme = 'bank_scheme' AND kind = 'bank' GROUP BY window_day HAVING sum(position_fen) <> 0
    UNION ALL
    SELECT window_day, 'fund_scheme.fund+institution' FROM position
    WHERE scheme = 'fund_scheme' AND kind IN ('fund', 'institution') GROUP BY window_day HAVING sum(position_fen) <> 0
    UNION ALL
    SELECT window_day, scheme || '.province' FROM position
    WHERE kind = 'province' GROUP BY window_day, scheme HAVING sum(position_fen) <> 0
  ) b;
  IF broken IS NOT NULL THEN
    RAISE EXCEPTION 'zero-sum invariant broken: %', broken;
  END IF;
  SELECT sum(count) INTO counted FROM window_count WHERE name <> 'late';
  SELECT (SELECT count(*) FROM stage_tap) + (SELECT count(*) FROM stage_refund) + (SELECT count(*) FROM stage_settlement)
         + (SELECT count(*) FROM stage_cancellation) + (SELECT count(*) FROM stage_rejected) INTO messages;
  IF counted <> messages THEN
    RAISE EXCEPTION 'messages counted % times, loaded %', counted, messages;
  END IF;
END $$;

DROP TABLE work_outcome, work_rank, work_reversal;
COMMIT;
\echo dedup_rounds=:dedup_rounds
