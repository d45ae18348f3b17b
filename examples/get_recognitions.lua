-- The guide "Get a List of Recognitions": with a system token, every recognition a person
-- sent or received, across all pages.
--
-- Without ACHIEVERS_BASE_URL it runs against an in-process sandbox.
local achievers = require("achievers")

local sb
local base_url = os.getenv("ACHIEVERS_BASE_URL")
local client_id, client_secret = os.getenv("ACHIEVERS_CLIENT_ID"), os.getenv("ACHIEVERS_CLIENT_SECRET")
if not base_url then
  sb = require("achievers.sandbox").start {}
  base_url, client_id, client_secret = sb.url, sb.client_id, sb.client_secret
end

local client = achievers.client {
  base_url = base_url, client_id = client_id, client_secret = client_secret, scope = "read",
}

local who = arg[1] or "adele.olson"
local sent, received = 0, 0
for rec, err in client:each("recognitions", { userId = who, pageSize = 25 }) do
  if not rec then
    io.stderr:write(tostring(err), "\n")
    os.exit(1)
  end
  local from = rec.nominator and rec.nominator.username
  if from == who then sent = sent + 1 else received = received + 1 end
  local to = {}
  for _, n in ipairs(rec.nominees or {}) do to[#to + 1] = n.username end
  print(("%s  %-18s -> %-40s %s"):format(rec.dateCreated or "", from or "?", table.concat(to, ","),
    (rec.criterion and rec.criterion.name) or ""))
end
print(("%s sent %d and received %d recognitions"):format(who, sent, received))

if sb then sb:stop() end
