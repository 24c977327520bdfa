-- PostgreSQL peer: the committed outcome as JSON in the form of engine/outcome.h (the oracle's
-- form), read back from the durable tables window_count and position. Zero counts of exception
-- reasons and zero positions are left out, as OutcomeToJson does. Run with psql -At.
\set ON_ERROR_STOP on
WITH days AS (
  SELECT window_day FROM window_count UNION SELECT window_day FROM position
), counts AS (
  SELECT window_day,
         coalesce(sum(count) FILTER (WHERE name = 'applied'), 0) AS applied,
         coalesce(sum(count) FILTER (WHERE name = 'exact_duplicates'), 0) AS exact_duplicates,
         coalesce(sum(count) FILTER (WHERE name = 'late'), 0) AS late,
         coalesce(jsonb_object_agg(name, count)
                    FILTER (WHERE name NOT IN ('applied', 'exact_duplicates', 'late') AND count <> 0),
                  '{}'::jsonb) AS exceptions
  FROM window_count GROUP BY window_day
), sections AS (
  SELECT window_day, scheme, kind, jsonb_object_agg(participant_id, position_fen) AS positions
  FROM position WHERE position_fen <> 0 GROUP BY window_day, scheme, kind
), windows AS (
  SELECT d.window_day,
         jsonb_build_object(
           'counts', jsonb_build_object('applied', coalesce(c.applied, 0),
                                        'exact_duplicates', coalesce(c.exact_duplicates, 0),
                                        'late', coalesce(c.late, 0),
                                        'exceptions', coalesce(c.exceptions, '{}'::jsonb)),
           'bank_scheme', jsonb_build_object(
             'province', coalesce((SELECT positions FROM sections s WHERE s.window_day = d.window_day
                                     AND s.scheme = 'bank_scheme' AND s.kind = 'province'), '{}'::jsonb),
             'bank', coalesce((SELECT positions FROM sections s WHERE s.window_day = d.window_day
                                 AND s.scheme = 'bank_scheme' AND s.kind = 'bank'), '{}'::jsonb),
             'merchant', coalesce((SELECT positions FROM sections s WHERE s.window_day = d.window_day
                                     AND s.scheme = 'bank_scheme' AND s.kind = 'merchant'), '{}'::jsonb)),
           'fund_scheme', jsonb_build_object(
             'province', coalesce((SELECT positions FROM sections s WHERE s.window_day = d.window_day
                                     AND s.scheme = 'fund_scheme' AND s.kind = 'province'), '{}'::jsonb),
             'fund', coalesce((SELECT positions FROM sections s WHERE s.window_day = d.window_day
                                 AND s.scheme = 'fund_scheme' AND s.kind = 'fund'), '{}'::jsonb),
             'institution', coalesce((SELECT positions FROM sections s WHERE s.window_day = d.window_day
                                        AND s.scheme = 'fund_scheme' AND s.kind = 'institution'), '{}'::jsonb))
         ) AS body
  FROM days d LEFT JOIN counts c ON c.window_day = d.window_day
)
SELECT jsonb_build_object('windows', coalesce(jsonb_object_agg(to_char(window_day, 'YYYYMMDD'), body), '{}'::jsonb))
FROM windows;
