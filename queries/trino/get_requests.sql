-- Generated from ../get_requests.sql for Trino (scripts/check_engines.py --write-trino): the same query with
-- zoneless UTC literals, which Trino compares with the timestamp column without the session's zone.
-- GET object requests in a time window.
-- Guide: "show all requesters that are sending GET object requests in a certain period".
SELECT requestdatetime, bucket, requester, remoteip, key, httpstatus, errorcode
FROM s3_access
WHERE operation = 'REST.GET.OBJECT'
  AND dt = '2024-03-15'
  AND requestdatetime >= TIMESTAMP '2024-03-15 00:00:00'
  AND requestdatetime < TIMESTAMP '2024-03-15 06:00:00'
ORDER BY requestdatetime, requestid;
