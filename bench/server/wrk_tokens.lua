-- wrk script for bench/server/run.sh: every request carries one of TOKENS
-- bearer tokens and WORKSPACES workspaces, chosen at random, so that a
-- policy like seed 002's admits all of them over a short run (the admitted
-- path: every limit evaluated, a slot taken and released). TOKENS=1 sends a
-- single token: after its bucket, the refused path.
local tokens = tonumber(os.getenv("TOKENS") or "10000")
local workspaces = tonumber(os.getenv("WORKSPACES") or "10000")

function setup(thread)
	thread:set("seed", math.random(1, 1000000))
end

function init(args)
	math.randomseed(seed)
end

function request()
	local t = math.random(1, tokens)
	local w = math.random(1, workspaces)
	return wrk.format("GET", "/v1/items", {
		["Authorization"] = "Bearer tok_" .. t,
		["X-Workspace"] = "ws_" .. w,
	})
end
