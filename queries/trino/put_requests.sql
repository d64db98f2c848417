-- Generated from ../put_requests.sql for Trino (scripts/check_engines.py --write-trino): the same query with
-- zoneless UTC literals, which Trino compares with the timestamp column without the session's zone.
-- PUT object requests in a time window.
-- Guide: "show all requesters that are sending PUT object requests in a certain period".
SELECT requestdatetime, bucket, requester, remoteip, key, httpstatus, errorcode
FROM s3_access
WHERE operation = 'REST.PUT.OBJECT'
  AND dt BETWEEN '2024-03-14' AND '2024-03-15'
  AND requestdatetime >= TIMESTAMP '2024-03-14 00:00:00'
  AND requestdatetime < TIMESTAMP '2024-03-16 00:00:00'
ORDER BY requestdatetime, requestid;
