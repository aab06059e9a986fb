-- wrk script: POSTs the benchmark's chat request (bench/peers/request.json, read once at start)
-- to the URL wrk is given, as every client in bench/ sends it.
local f = assert(io.open(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "../peers/request.json", "r"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench"
