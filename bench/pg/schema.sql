-- PostgreSQL peer of the YRD clearing engine: schema. Run once on an empty database before the
-- timed job (peer.sql), like the engine's store is opened and its registry loaded before its timer
-- starts. psql variables: csv_dir (the directory events_to_csv wrote into).
--
-- Tables:
--   registry         province, bank, fund, merchant, fee (loaded here)
--   staging          stage_* : UNLOGGED, filled by COPY in the job, one per event kind, plus
--                    stage_rejected (messages that failed decoding, with their reason)
--   durable state    txn (dedup state per family and id), applied_event (the detail lines the
--                    clearing files need), exception (every message not applied), tap_line and
--                    medical_line (netting lines per window), window_count, position (positions
--                    per window, scheme and participant, fees applied)
\set ON_ERROR_STOP on

CREATE TABLE province (code text PRIMARY KEY, name text NOT NULL);
CREATE TABLE bank (bank_id text PRIMARY KEY, province text NOT NULL REFERENCES province, fee_account boolean NOT NULL);
CREATE TABLE fund (fund_id text PRIMARY KEY, province text NOT NULL REFERENCES province);
CREATE TABLE merchant (
  merchant_id text PRIMARY KEY,
  province text NOT NULL REFERENCES province,
  category text NOT NULL,
  bank_id text NOT NULL REFERENCES bank,
  fund_id text REFERENCES fund
);
CREATE TABLE fee (category text PRIMARY KEY, bps integer NOT NULL CHECK (bps BETWEEN 0 AND 10000));

\set f :csv_dir '/province.csv'
COPY province FROM :'f' WITH (FORMAT csv);
\set f :csv_dir '/bank.csv'
COPY bank FROM :'f' WITH (FORMAT csv);
\set f :csv_dir '/fund.csv'
COPY fund FROM :'f' WITH (FORMAT csv);
\set f :csv_dir '/merchant.csv'
COPY merchant FROM :'f' WITH (FORMAT csv);
\set f :csv_dir '/fee.csv'
COPY fee FROM :'f' WITH (FORMAT csv);
ANALYZE province, bank, fund, merchant, fee;

-- Staging: what COPY loads. Unlogged: it is rebuilt from the event file after a crash.
CREATE UNLOGGED TABLE stage_tap (
  seq bigint NOT NULL, txn_id text NOT NULL, card_token bytea NOT NULL, card_masked text NOT NULL,
  carrier smallint NOT NULL, issuer_province text NOT NULL, issuer_bank_id text NOT NULL,
  merchant_id text NOT NULL, terminal_id text NOT NULL, amount_fen bigint NOT NULL,
  occurred_at_ms bigint NOT NULL, digest uuid NOT NULL
);
CREATE UNLOGGED TABLE stage_refund (
  seq bigint NOT NULL, txn_id text NOT NULL, original_txn_id text NOT NULL, amount_fen bigint NOT NULL,
  occurred_at_ms bigint NOT NULL, digest uuid NOT NULL
);
CREATE UNLOGGED TABLE stage_settlement (
  seq bigint NOT NULL, txn_id text NOT NULL, card_token bytea NOT NULL, card_masked text NOT NULL,
  insured_fund_id text NOT NULL, institution_id text NOT NULL, visit_type smallint NOT NULL,
  total_fen bigint NOT NULL, fund_pay_fen bigint NOT NULL, account_pay_fen bigint NOT NULL,
  cash_pay_fen bigint NOT NULL, occurred_at_ms bigint NOT NULL, digest uuid NOT NULL
);
CREATE UNLOGGED TABLE stage_cancellation (
  seq bigint NOT NULL, txn_id text NOT NULL, original_txn_id text NOT NULL, occurred_at_ms bigint NOT NULL,
  digest uuid NOT NULL
);
CREATE UNLOGGED TABLE stage_rejected (
  seq bigint NOT NULL, topic text NOT NULL, reason text NOT NULL,
  routed boolean NOT NULL,   -- counted in the window of occurred_at_ms, else in the oldest open one
  occurred_at_ms bigint, txn_id text, digest uuid NOT NULL
);

-- Every message that passed decoding, as dedup sees it: family 0 = taps and refunds, 1 =
-- settlements and cancellations; kind 0 tap, 1 refund, 2 settlement, 3 cancellation. `units` is
-- what steps 7's cumulative rule counts: a tap's amount and each refund's amount; a settlement
-- takes one cancellation, so both count 1.
CREATE VIEW family_message AS
  SELECT 0::smallint AS family, seq, 0::smallint AS kind, txn_id, NULL::text AS original_txn_id,
         amount_fen AS units, digest, occurred_at_ms FROM stage_tap
  UNION ALL
  SELECT 0::smallint, seq, 1::smallint, txn_id, original_txn_id, amount_fen, digest, occurred_at_ms FROM stage_refund
  UNION ALL
  SELECT 1::smallint, seq, 2::smallint, txn_id, NULL, 1::bigint, digest, occurred_at_ms FROM stage_settlement
  UNION ALL
  SELECT 1::smallint, seq, 3::smallint, txn_id, original_txn_id, 1::bigint, digest, occurred_at_ms
  FROM stage_cancellation;

-- Clearing windows (engine/window.h): the business day of an instant is the day number of its
-- China Standard Time, shifted so that the cutoff falls on midnight; day_shift_ms is
-- 8 h + (24 h - cutoff) mod 24 h. Days are counted from 1970-01-01. An event of a window that is
-- closed goes to the oldest open window and is late.
CREATE FUNCTION business_day(ms bigint, day_shift_ms bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (ms + day_shift_ms) / 86400000 - CASE WHEN (ms + day_shift_ms) % 86400000 < 0 THEN 1 ELSE 0 END;
CREATE FUNCTION routed_window(ms bigint, day_shift_ms bigint, oldest_open_day bigint) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN date '1970-01-01' + greatest(business_day(ms, day_shift_ms), oldest_open_day)::integer;
CREATE FUNCTION is_late(ms bigint, day_shift_ms bigint, oldest_open_day bigint) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN business_day(ms, day_shift_ms) < oldest_open_day;
-- Fee on a merchant's net per window: half up on the magnitude, so fee(-x) = -fee(x) (FeeFen).
CREATE FUNCTION fee_fen(net_fen numeric, bps integer) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (sign(net_fen) * div(abs(net_fen) * bps + 5000, 10000))::bigint;

-- Work tables of the job, rebuilt on every run.
CREATE UNLOGGED TABLE work_step7_rejected (seq bigint PRIMARY KEY, id_message_count bigint NOT NULL);

-- Durable state. Logged tables: they survive a crash once the job's COMMIT returned.
CREATE TABLE txn (
  family smallint NOT NULL,
  txn_id text NOT NULL,
  kind smallint NOT NULL,
  seq bigint NOT NULL,              -- the message that registered the id (offset order)
  window_day date NOT NULL,
  late boolean NOT NULL,
  occurred_at_ms bigint NOT NULL,
  digest uuid NOT NULL,
  original_txn_id text,
  amount_fen bigint NOT NULL,       -- tap, refund: amount; settlement, cancellation: total
  refunded_fen bigint NOT NULL DEFAULT 0,
  cancelled boolean NOT NULL DEFAULT false,
  duplicate_count bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (family, txn_id)
);
CREATE TABLE applied_event (
  window_day date NOT NULL,
  seq bigint NOT NULL,
  kind text NOT NULL,               -- tap, refund, settlement, cancellation
  txn_id text NOT NULL,
  original_txn_id text,
  late boolean NOT NULL,
  occurred_at_ms bigint NOT NULL,
  card_masked text NOT NULL,
  card_token bytea NOT NULL,
  -- tap and refund (the original tap's participants; the merchant gives the settlement bank)
  issuer_bank_id text, merchant_id text, terminal_id text,
  -- settlement and cancellation (the original settlement's participants and amounts)
  insured_fund_id text, institution_id text,
  amount_fen bigint NOT NULL,
  fund_pay_fen bigint, account_pay_fen bigint, cash_pay_fen bigint
);
-- The clearing files read a window at a time; rows arrive in window order, so a block-range
-- index serves them at almost no cost per row. Ids are unique through txn's primary key.
CREATE INDEX applied_event_window ON applied_event USING brin (window_day);
CREATE TABLE exception (
  topic text NOT NULL,
  seq bigint NOT NULL,
  window_day date NOT NULL,
  reason text NOT NULL,
  txn_id text,
  original_txn_id text,
  digest uuid NOT NULL,             -- the message's digest
  first_digest uuid,                -- duplicate_conflict: the digest of the event that stands
  PRIMARY KEY (topic, seq)
);
CREATE TABLE tap_line (
  window_day date NOT NULL, issuer_bank_id text NOT NULL, merchant_id text NOT NULL,
  tap_count bigint NOT NULL, amount_fen bigint NOT NULL,
  refund_count bigint NOT NULL, refunded_fen bigint NOT NULL,
  PRIMARY KEY (window_day, issuer_bank_id, merchant_id)
);
CREATE TABLE medical_line (
  window_day date NOT NULL, insured_fund_id text NOT NULL, institution_id text NOT NULL,
  settlement_count bigint NOT NULL, total_fen bigint NOT NULL, fund_pay_fen bigint NOT NULL,
  account_pay_fen bigint NOT NULL, cash_pay_fen bigint NOT NULL,
  cancellation_count bigint NOT NULL, cancelled_total_fen bigint NOT NULL, cancelled_fund_pay_fen bigint NOT NULL,
  cancelled_account_pay_fen bigint NOT NULL, cancelled_cash_pay_fen bigint NOT NULL,
  PRIMARY KEY (window_day, insured_fund_id, institution_id)
);
CREATE TABLE window_count (
  window_day date NOT NULL,
  name text NOT NULL,               -- applied, exact_duplicates, late, or an exception reason
  count bigint NOT NULL,
  PRIMARY KEY (window_day, name)
);
CREATE TABLE position (
  window_day date NOT NULL,
  scheme text NOT NULL,             -- bank_scheme, fund_scheme
  kind text NOT NULL,               -- province, bank, merchant; province, fund, institution
  participant_id text NOT NULL,
  position_fen bigint NOT NULL,
  PRIMARY KEY (window_day, scheme, kind, participant_id)
);

-- Steps 6 and 7 of the processing rules (dedup, then originals of refunds and cancellations),
-- set-based. The rules are sequential: a message rejected at step 7 (unknown original, refund
-- exceeding, already cancelled) does not register its id, so a later message with the same id
-- is judged afresh, and a refund's fate depends on the refunds applied before it. Each round
-- below judges every message at once given the set of step-7 rejections of the previous round
-- (work_step7_rejected; empty at first). Every message depends only on earlier ones, so the rounds
-- reach the sequential result; a round changes nothing when the rejections that moved all belong
-- to ids with a single message, which is checked, so with generated data one round is enough
-- (bench/pg/sequential_rules.jsonl needs four).
--
-- Output: work_rank (every family message with its id's standing message: the first one not
-- rejected at step 7) and work_reversal (every refund and cancellation judged afresh, with
-- accepted = true; false when its original was registered before it but the reversal does not
-- fit; NULL when no original was). Returns the number of rounds run.
CREATE FUNCTION resolve_dedup_and_originals(rounds_max integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  round integer := 0;
  changed boolean;
BEGIN
  TRUNCATE work_step7_rejected;
  LOOP
    round := round + 1;
    IF round > rounds_max THEN
      RAISE EXCEPTION 'steps 6 and 7 did not settle in % rounds', rounds_max;
    END IF;
    DROP TABLE IF EXISTS work_rank;
    -- Per (family, txn_id): the messages ordered with step-7 rejections last, then by offset,
    -- so the first row is the id's standing message.
    CREATE UNLOGGED TABLE work_rank AS
    SELECT m.family, m.seq, m.kind, m.txn_id, m.original_txn_id, m.units, m.digest, m.occurred_at_ms,
           first_value(m.seq) OVER w AS standing_seq,
           first_value(m.digest) OVER w AS standing_digest,
           first_value(r.seq IS NOT NULL) OVER w AS standing_rejected,
           count(*) OVER w_all AS id_message_count
    FROM family_message m LEFT JOIN work_step7_rejected r ON r.seq = m.seq
    WINDOW w AS (PARTITION BY m.family, m.txn_id ORDER BY (r.seq IS NOT NULL), m.seq),
           w_all AS (PARTITION BY m.family, m.txn_id);
    ANALYZE work_rank;

    -- Refunds and cancellations judged afresh: no registered message of their id before them.
    -- Their original must be the standing message of its id, of the right kind, and earlier.
    DROP TABLE IF EXISTS work_reversal;
    CREATE UNLOGGED TABLE work_reversal AS
    SELECT v.family, v.seq, v.kind, v.txn_id, v.original_txn_id, v.units, v.digest, v.occurred_at_ms,
           v.id_message_count, o.seq AS original_seq, o.units AS capacity, NULL::boolean AS accepted
    FROM work_rank v
    LEFT JOIN work_rank o
      ON o.family = v.family AND o.txn_id = v.original_txn_id AND o.seq = o.standing_seq
     AND NOT o.standing_rejected AND o.kind = v.kind - 1 AND o.seq < v.seq
    WHERE v.kind IN (1, 3) AND (v.standing_rejected OR v.standing_seq >= v.seq);

    -- Originals whose reversals all fit in offset order: all accepted (the usual case).
    UPDATE work_reversal v SET accepted = true
    FROM (SELECT family, original_txn_id
          FROM (SELECT family, original_txn_id, capacity,
                       sum(units) OVER (PARTITION BY family, original_txn_id ORDER BY seq) AS running
                FROM work_reversal WHERE original_seq IS NOT NULL) s
          GROUP BY family, original_txn_id
          HAVING bool_and(running <= capacity)) fits
    WHERE v.family = fits.family AND v.original_txn_id = fits.original_txn_id AND v.original_seq IS NOT NULL;

    -- The others: greedy in offset order, a reversal that does not fit is rejected and leaves
    -- the refunded amount (or the cancelled flag) as it was.
    UPDATE work_reversal v SET accepted = g.accepted
    FROM (
      WITH RECURSIVE pending AS (
        SELECT family, original_txn_id, seq, units, capacity,
               row_number() OVER (PARTITION BY family, original_txn_id ORDER BY seq) AS k
        FROM work_reversal WHERE original_seq IS NOT NULL AND accepted IS NULL
      ), greedy (family, original_txn_id, k, seq, taken, accepted) AS (
        SELECT family, original_txn_id, k, seq,
               CASE WHEN units <= capacity THEN units ELSE 0 END::numeric, units <= capacity
        FROM pending WHERE k = 1
        UNION ALL
        SELECT p.family, p.original_txn_id, p.k, p.seq,
               CASE WHEN g.taken + p.units <= p.capacity THEN g.taken + p.units ELSE g.taken END,
               g.taken + p.units <= p.capacity
        FROM greedy g JOIN pending p
          ON p.family = g.family AND p.original_txn_id = g.original_txn_id AND p.k = g.k + 1
      )
      SELECT seq, accepted FROM greedy
    ) g
    WHERE v.seq = g.seq;

    -- Did the step-7 rejections move for an id with more than one message?
    SELECT EXISTS (
      SELECT 1
      FROM (SELECT seq, id_message_count FROM work_reversal WHERE accepted IS NOT TRUE) n
      FULL JOIN work_step7_rejected o ON o.seq = n.seq
      WHERE (n.seq IS NULL OR o.seq IS NULL) AND coalesce(n.id_message_count, o.id_message_count) > 1
    ) INTO changed;
    EXIT WHEN NOT changed;
    TRUNCATE work_step7_rejected;
    INSERT INTO work_step7_rejected SELECT seq, id_message_count FROM work_reversal WHERE accepted IS NOT TRUE;
  END LOOP;
  RETURN round;
END $$;
