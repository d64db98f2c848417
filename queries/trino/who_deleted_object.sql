-- Generated from ../who_deleted_object.sql for Trino (scripts/check_engines.py --write-trino): the same query with
-- zoneless UTC literals, which Trino compares with the timestamp column without the session's zone.
-- Who deleted a given object, and when: time, IP address and requester.
-- Guide: "show who deleted an object and when (timestamp, IP address, and IAM user)".
-- `key` is URL-encoded the way S3 logged it; write the key the same way. Besides DELETE requests
-- this finds multi-object deletes (BATCH.DELETE.OBJECT) and lifecycle expirations (S3.EXPIRE.OBJECT).
-- The dt range only limits the days scanned; widen it to the period you care about.
SELECT requestdatetime, remoteip, requester, operation, bucket, key
FROM s3_access
WHERE key = 'reports/2024/q1.pdf'
  AND (operation LIKE '%DELETE%' OR operation LIKE 'S3.EXPIRE%')
  AND dt BETWEEN '2024-03-01' AND '2024-03-31'
ORDER BY requestdatetime, requestid;
