-- Generated from ../object_history.sql for Trino (scripts/check_engines.py --write-trino): the same query with
-- zoneless UTC literals, which Trino compares with the timestamp column without the session's zone.
-- Everything done to one object in a time window.
-- Guide: "show all operations that were performed on an object in a specific time period".
-- The dt condition lets the engine skip other days; the timestamp condition is the exact window.
SELECT requestdatetime, operation, requester, remoteip, httpstatus, bytessent
FROM s3_access
WHERE bucket = 'example-app-assets'
  AND key = 'images/logo.png'
  AND dt BETWEEN '2024-03-14' AND '2024-03-15'
  AND requestdatetime >= TIMESTAMP '2024-03-14 23:00:00'
  AND requestdatetime < TIMESTAMP '2024-03-15 12:00:00'
ORDER BY requestdatetime, requestid;
