-- PUT object requests in a time window.
-- Guide: "show all requesters that are sending PUT object requests in a certain period".
-- Times carry their zone (TIMESTAMP '... UTC'): the same answer in any session time zone.
SELECT requestdatetime, bucket, requester, remoteip, key, httpstatus, errorcode
FROM s3_access
WHERE operation = 'REST.PUT.OBJECT'
  AND dt BETWEEN '2024-03-14' AND '2024-03-15'
  AND requestdatetime >= TIMESTAMP '2024-03-14 00:00:00 UTC'
  AND requestdatetime < TIMESTAMP '2024-03-16 00:00:00 UTC'
ORDER BY requestdatetime, requestid;
