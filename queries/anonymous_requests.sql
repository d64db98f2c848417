-- Anonymous (unsigned) requests in a time window.
-- Guide: "show all anonymous requesters that are making requests to a bucket in a certain period".
-- On the guide's raw-text table an anonymous requester is the string '-', so its
-- `Requester IS NULL` finds nothing; in this table '-' is NULL and the condition works.
-- Times carry their zone (TIMESTAMP '... UTC'): the same answer in any session time zone.
SELECT requestdatetime, bucket, remoteip, operation, key, httpstatus, errorcode
FROM s3_access
WHERE requester IS NULL
  AND dt BETWEEN '2024-03-14' AND '2024-03-15'
  AND requestdatetime >= TIMESTAMP '2024-03-14 00:00:00 UTC'
  AND requestdatetime < TIMESTAMP '2024-03-16 00:00:00 UTC'
ORDER BY requestdatetime, requestid;
