-- Generated from ../anonymous_requests.sql for Trino (scripts/check_engines.py --write-trino): the same query with
-- zoneless UTC literals, which Trino compares with the timestamp column without the session's zone.
-- Anonymous (unsigned) requests in a time window.
-- Guide: "show all anonymous requesters that are making requests to a bucket in a certain period".
-- On the guide's raw-text table an anonymous requester is the string '-', so its
-- `Requester IS NULL` finds nothing; in this table '-' is NULL and the condition works.
SELECT requestdatetime, bucket, remoteip, operation, key, httpstatus, errorcode
FROM s3_access
WHERE requester IS NULL
  AND dt BETWEEN '2024-03-14' AND '2024-03-15'
  AND requestdatetime >= TIMESTAMP '2024-03-14 00:00:00'
  AND requestdatetime < TIMESTAMP '2024-03-16 00:00:00'
ORDER BY requestdatetime, requestid;
