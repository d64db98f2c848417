-- GET object requests in a time window.
-- Guide: "show all requesters that are sending GET object requests in a certain period".
-- Times carry their zone (TIMESTAMP '... UTC'): the same answer in any session time zone.
SELECT requestdatetime, bucket, requester, remoteip, key, httpstatus, errorcode
FROM s3_access
WHERE operation = 'REST.GET.OBJECT'
  AND dt = '2024-03-15'
  AND requestdatetime >= TIMESTAMP '2024-03-15 00:00:00 UTC'
  AND requestdatetime < TIMESTAMP '2024-03-15 06:00:00 UTC'
ORDER BY requestdatetime, requestid;
