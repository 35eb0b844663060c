
Á
+{app="orders", host="web-05", level="info"}∑
ı©‹ÿâGET /api/v1/products/848024 404 166 ms bytes=8975 user_id=37162 ua=Mozilla/5.0 (X11; Linux x86_64) request_digest=377ce83ee03902a0bb46894
pid54040
threadworker-3

request_ida8efddcec11d1ad5
region
ap-south-1,
trace_id 9b1cbd77302036a4947dc948de89e289
span_id8ab0fda15c0ad8e1
å
3{app="api-gateway", host="web-07", level="warning"}‘
ı©‹ÿÄ≠‚nRetrying request to https://api.partner.example/orders after HTTP 503 (attempt 3), backing off 2092 ms request
pid40381
threadworker-5

request_idaf799a164d4ce5ad
region	eu-west-1
µ
3{app="api-gateway", host="web-04", level="warning"}˝
ı©‹ÿÄ⁄ƒ	ïRetrying request to http://payments.internal/charge after HTTP 503 (attempt 3), backing off 1580 ms request_digest=3556a7362c110f19f0884ba3387dccd1 r
pid54365
threadworker-6

request_ida43bf6730f394016
region
ap-south-1
…
+{app="orders", host="web-03", level="info"}ô
ı©‹ÿÄáß≤Processed job f1dcd56cc5fc from queue webhooks in 3531 ms: 354 items, 2 retries request_digest=68cd27d452865c42724e45acb9cfd46c request_digest=858a2a800f95dfd96b46162a0857ba7c re
pid19835
threadworker-2

request_idc1a4d4176cbc7d71
region	us-east-1

,{app="search", host="web-10", level="debug"}ø
ı©‹ÿÄ¥âåCache miss for key session:a8a393c75e8ab49d in region eu-west-1; ttl=958 s, size=22984 bytes request_digest=1c68ee47f68fcdd2f00781c3fc7230c3
pid42771
thread	worker-13

request_id814faac17fd20b18
region	us-east-1,
trace_id d847df031561c013b5f758de9f4cb05d
span_id308e9724a63ca7ce
 
.{app="search", host="web-03", level="warning"}ó
ı©‹ÿÄ·ÎfRetrying request to http://inventory.internal/v2/stock after HTTP 503 (attempt 3), backing off 850 ms 
pid20946
threadworker-2

request_ida2c8cac6b6ef808e
region	eu-west-1,
trace_id ca763a10b909765f78f4215c5cdc8b4d
span_id51a9265a0ec0293e
ç
0{app="api-gateway", host="web-11", level="info"}ÿ
ı©‹ÿÄéŒqDELETE /api/v1/orders/390272 200 10 ms bytes=19066 user_id=33659 ua=Mozilla/5.0 (X11; Linux x86_64) request_diges
pid60800
threadworker-3

request_id46cf6e6b2eba0f6a
region
ap-south-1
°
+{app="orders", host="web-07", level="info"}Ò
ı©‹ÿÄª∞!æGET /api/v1/invoices/796028 304 127 ms bytes=6192 user_id=62264 ua=Mozilla/5.0 (X11; Linux x86_64) request_digest=e12f6f5fa0e29eb78e07ddfe3daa70b2 request_digest=99b9f37e4fd29ef9270450aff236
pid47954
thread	worker-10

request_id9d49f6d87281effa
region	eu-west-1,
trace_id 4a8850ed9561423ade375134f84dedd7
span_id0f6c9a7a97ad436e
¬
+{app="orders", host="web-10", level="info"}í
ı©‹ÿÄËí&™GET /api/v1/invoices/796255 204 226 ms bytes=4648 user_id=25184 ua=Mozilla/5.0 (X11; Linux x86_64) request_digest=7c152a187a4edc728eddd6989f9d65cb request_digest=7b2951f5
pid23945
threadworker-5

request_id7d2154ec20e6927e
region
ap-south-1
â
3{app="api-gateway", host="web-08", level="warning"}—
ı©‹ÿÄïı*lSlow query (3983 ms): SELECT id, status, total FROM orders WHERE customer_id = $1 ORDER BY created_at DESC L
pid9100
threadworker-9

request_id1516c85c731294f4
region	us-east-1
ß
,{app="billing", host="web-04", level="info"}ˆ
ı©‹ÿÄ¬◊/√GET /api/v1/carts/111531 304 211 ms bytes=11286 user_id=64262 ua=Mozilla/5.0 (X11; Linux x86_64) request_digest=27d3bc566703c6aed8a4918f80978af5 request_digest=2394308afcb6760aa6679b8763e572a6 re
pid51837
threadworker-3

request_id4bbf7da387b32d74
region
ap-south-1,
trace_id d05fe229d50ef1b585d290915fc77e9b
span_id8846496ba2eead14
–
){app="auth", host="web-11", level="info"}¢
ı©‹ÿÄÔπ4ªGET /api/v1/customers/932078 200 134 ms bytes=16245 user_id=28687 ua=Mozilla/5.0 (X11; Linux x86_64) request_digest=d3e06cd97ac612dc92eda45979d1b957 request_digest=dc00bcb99f54829585f7141
pid59202
threadworker-3

request_idcbd1f24ab9a46c38
region	eu-west-1