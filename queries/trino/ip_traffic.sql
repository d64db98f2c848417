-- Generated from ../ip_traffic.sql for Trino (scripts/check_engines.py --write-trino): the same query with
-- zoneless UTC literals, which Trino compares with the timestamp column without the session's zone.
-- Bytes transferred to and from one IP address in a time window.
-- Guide: "show how much data was transferred by a specific IP address in a specific time period".
-- The guide labels SUM(bytessent) "uploadTotal" and SUM(objectsize) "downloadTotal": that is
-- backwards. bytessent is what S3 sent to the client (a download); an upload's size is the
-- objectsize of the PUT (or part) request. objectsize summed over GETs is not a transfer at all,
-- so here only upload operations count towards bytes_uploaded.
SELECT count(*) AS requests,
       sum(bytessent) AS bytes_downloaded,
       sum(CASE WHEN operation IN ('REST.PUT.OBJECT', 'REST.PUT.PART', 'REST.POST.OBJECT')
                THEN objectsize END) AS bytes_uploaded
FROM s3_access
WHERE remoteip = '203.0.113.10'
  AND dt BETWEEN '2024-03-14' AND '2024-03-15'
  AND requestdatetime >= TIMESTAMP '2024-03-14 00:00:00'
  AND requestdatetime < TIMESTAMP '2024-03-16 00:00:00';
