-- Generated from ../requester_activity.sql for Trino (scripts/check_engines.py --write-trino): the same query with
-- zoneless UTC literals, which Trino compares with the timestamp column without the session's zone.
-- Everything one requester (an IAM user, role session or canonical user) did in a period.
-- Guide: "show all operations executed by an IAM user".
SELECT requestdatetime, operation, bucket, key, httpstatus, remoteip
FROM s3_access
WHERE requester = 'arn:aws:iam::111122223333:user/alice'
  AND dt BETWEEN '2024-03-14' AND '2024-03-15'
ORDER BY requestdatetime, requestid;
