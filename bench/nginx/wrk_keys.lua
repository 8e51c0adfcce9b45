-- wrk script for bench/nginx/run.sh: every request carries "X-Key: k<N>".
-- KEYS > 0: N at random among KEYS keys (the rate comparison); KEYS=0: a
-- new key per request (the memory per key). Counts the 200s and the
-- others per thread and prints "admitted A refused R" at the end.
local keys = tonumber(os.getenv("KEYS") or "1000")
local threads = {}

function setup(thread)
	thread:set("id", #threads)
	thread:set("seed", math.random(1, 1000000))
	table.insert(threads, thread)
end

function init(args)
	math.randomseed(seed)
	admitted = 0
	refused = 0
	counter = 0
end

function request()
	local k
	if keys > 0 then
		k = math.random(1, keys)
	else
		counter = counter + 1
		k = id * 1000000000 + counter
	end
	return wrk.format("GET", "/", { ["X-Key"] = "k" .. k })
end

function response(status, headers, body)
	if status == 200 then
		admitted = admitted + 1
	else
		refused = refused + 1
	end
end

function done(summary, latency, requests)
	local a, r = 0, 0
	for _, t in ipairs(threads) do
		a = a + t:get("admitted")
		r = r + t:get("refused")
	end
	io.write(string.format("admitted %d refused %d\n", a, r))
end
