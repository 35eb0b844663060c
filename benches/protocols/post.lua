-- wrk script of benches/protocols/run.sh: POSTs the payload files of one protocol
-- (written by examples/protocol_payloads.rs), a request a file, with the headers that
-- protocol's senders set.
--
--   wrk -tN -cN -s post.lua URL -- PROTOCOL DIR KEY SOURCE_ID N [START]
--
-- KEY is sent as X-API-Key ("-": none); SOURCE_ID replaces the JSON bodies' placeholder;
-- N is the number of threads (wrk's -t, equal to -c). Thread k sends its own files in
-- order: for the log protocols (json, otlp, loki, bulk) batches k-1, k-1+N, k-1+2N...,
-- so that no batch goes twice and the stored timestamps keep moving on as a live
-- producer's do (a batch stored again would put its rows back in the middle of the time
-- indexes); for remote_write (rw) the files of shard k-1, alone, so each series'
-- timestamps arrive increasing, as a Prometheus queue shard sends them. START is the
-- place in those lists to begin at (after a warm-up, the "next_file" it printed). Past
-- its last file a thread starts again at its first, and "wrapped" says so (a receiver
-- then refuses old samples, and log rows land among the stored ones).
--
-- Prints at the end:
--   statuses: expected=N other=M last_other=S refused_items=R
--   next_file=F wrapped=W
-- "refused_items": answers with the expected status that still refuse part of the batch
-- (a _bulk answer with "errors":true, an OTLP answer with a partial_success).

local protocols = {
    json = { path = "/api/v1/logs", pattern = "json-%d.json", status = 202,
             headers = { ["Content-Type"] = "application/json" } },
    otlp = { path = "/v1/logs", pattern = "otlp-%d.pb", status = 200,
             headers = { ["Content-Type"] = "application/x-protobuf" } },
    loki = { path = "/loki/api/v1/push", pattern = "loki-%d.pb.sz", status = 204,
             headers = { ["Content-Type"] = "application/x-protobuf", ["Content-Encoding"] = "snappy" } },
    bulk = { path = "/elastic/_bulk", pattern = "bulk-%d.ndjson", status = 200,
             headers = { ["Content-Type"] = "application/x-ndjson" } },
    rw = { path = "/prometheus/api/v1/write", pattern = "rw-%d-%d.pb.sz", status = 204,
           headers = { ["Content-Type"] = "application/x-protobuf", ["Content-Encoding"] = "snappy",
                       ["X-Prometheus-Remote-Write-Version"] = "0.1.0", ["User-Agent"] = "Prometheus/2.42.0" } },
}

local threads = {}
function setup(thread)
    table.insert(threads, thread)
    thread:set("index", #threads)
end

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local body = f:read("*a")
    f:close()
    return body
end

function init(args)
    ok, bad, last_bad, refused = 0, 0, 0, 0
    wrapped, next_file = 0, 0
    protocol = args[1]
    local dir, key, source_id, nthreads = args[2], args[3], args[4] or "", tonumber(args[5]) or 1
    local p = assert(protocols[protocol], "unknown protocol " .. tostring(protocol))
    -- The path is the script's unless the URL names one (Prometheus' own receiver).
    local url_path = wrk.path
    path = (url_path ~= nil and url_path ~= "" and url_path ~= "/") and url_path or p.path
    expected = p.status
    headers = {}
    for k, v in pairs(p.headers) do headers[k] = v end
    if key ~= "" and key ~= "-" then headers["X-API-Key"] = key end
    bodies = {}
    while true do
        local name
        if protocol == "rw" then
            name = string.format(p.pattern, index - 1, #bodies)
        else
            name = string.format(p.pattern, index - 1 + #bodies * nthreads)
        end
        local body = read_file(dir .. "/" .. name)
        if not body then break end
        if protocol == "json" then
            local a, b = body:find("@SOURCE_ID@", 1, true)
            if a then body = body:sub(1, a - 1) .. source_id .. body:sub(b + 1) end
        end
        bodies[#bodies + 1] = body
    end
    assert(#bodies > 0, "no payload files for " .. protocol .. " in " .. dir)
    local i = tonumber(args[6]) or 0
    if i >= #bodies then
        i = i % #bodies
        wrapped = 1
    end
    next_file = i
end

function request()
    local i = next_file
    next_file = next_file + 1
    if next_file >= #bodies then
        next_file = 0
        wrapped = 1
    end
    return wrk.format("POST", path, headers, bodies[i + 1])
end

function response(status, hdrs, body)
    if status == expected then
        ok = ok + 1
        if protocol == "bulk" and not body:find('"errors":false', 1, true) then
            refused = refused + 1
        elseif protocol == "otlp" and #body > 0 then
            refused = refused + 1
        end
    else
        bad = bad + 1
        last_bad = status
    end
end

function done(summary, latency, requests)
    local o, b, l, r, w, nf = 0, 0, 0, 0, 0, 0
    for _, t in ipairs(threads) do
        o = o + t:get("ok")
        b = b + t:get("bad")
        r = r + t:get("refused")
        if t:get("last_bad") ~= 0 then l = t:get("last_bad") end
        if t:get("wrapped") ~= 0 then w = 1 end
        local n = t:get("next_file")
        if n > nf then nf = n end
    end
    io.write(string.format("statuses: expected=%d other=%d last_other=%d refused_items=%d\n", o, b, l, r))
    io.write(string.format("next_file=%d wrapped=%d\n", nf, w))
end
