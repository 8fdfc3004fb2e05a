-- wrk script: each thread sends its own share of the requests written by
-- make-requests.py, each once (a repeated event would be a duplicate).
--
-- The server, as the load bench's ingest case has it: a config with
--   sources: { meta: { provider: meta, app_secret: bench-app-secret } }
-- and one workflow that listens to call.incoming only (never sent), e.g.
--   name: ingest-only
--   on: { events: [call.incoming] }
--   steps: [ { log: "never runs" } ]
-- then
--   ringback serve --config C --workflows W --data D --listen 127.0.0.1:PORT
--   WRK_REQUESTS=/tmp/wrk-requests wrk -t2 -c16 -d8s -s benches/wrk/post.lua http://127.0.0.1:PORT/hooks/meta
-- Loading the requests takes the threads seconds, one after the other, and
-- wrk's printed rate does not account for it: count the server's accepted
-- events per second (its log, or ringback_events_total) instead.
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  local dir = os.getenv("WRK_REQUESTS") or "/tmp/wrk-requests"
  requests = {}
  for line in io.lines(dir .. "/requests-" .. id .. ".txt") do
    requests[#requests + 1] = line:gsub("\\r", "\r"):gsub("\\n", "\n")
  end
  sent = 0
end

function request()
  sent = sent + 1
  return requests[sent]
end
