-- Generated from ../sigv2_requesters.sql for Trino (scripts/check_engines.py --write-trino): the same query with
-- zoneless UTC literals, which Trino compares with the timestamp column without the session's zone.
-- Requesters still signing with Signature Version 2 (which S3 is turning off), with how often and
-- when they were last seen. Guide: "show all requesters that are sending signature version 2 traffic".
SELECT requester, count(*) AS requests, min(requestdatetime) AS first_seen, max(requestdatetime) AS last_seen
FROM s3_access
WHERE sigv = 'SigV2'
  AND dt BETWEEN '2024-03-14' AND '2024-03-15'
GROUP BY requester
ORDER BY requests DESC, requester;
