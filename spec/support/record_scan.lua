-- For the recording specs: every secret a sandbox saw (credentials, codes, tokens, from its
-- request log), and a scan of recorded files for any of them.
local cjson = require("cjson")
local M = {}

function M.new()
  local secrets = {}
  local self = { secrets = secrets }

  function self.keep(v)
    if type(v) == "string" and #v >= 6 then secrets[v] = true end
  end

  -- the credentials, codes and tokens sandbox `s` saw (its log holds the raw requests)
  function self.collect(s)
    local keep = self.keep
    keep(s.client_id)
    keep(s.client_secret)
    for _, r in ipairs(s:requests()) do
      local auth = r.headers and r.headers.authorization
      if auth then keep(auth:match("^%S+%s+(.*)$")) end
      if r.path:match("/oauth/") and r.body and r.body ~= "" then
        local ok, b = pcall(cjson.decode, r.body)
        if ok and type(b) == "table" then
          for _, k in ipairs { "client_id", "client_secret", "code", "refresh_token", "code_verifier" } do
            keep(b[k])
          end
        else
          for k, v in r.body:gmatch("([^&=]+)=([^&]*)") do
            if k ~= "grant_type" and k ~= "scope" and k ~= "redirect_uri" then keep(v) end
          end
        end
      end
      for k, v in (r.query or ""):gmatch("([^&=]+)=([^&]*)") do
        if k == "code" or k == "state" then keep(v) end
      end
    end
  end

  -- an on_token hook that keeps the token's secrets
  function self.on_token(tok)
    self.keep(tok.access_token)
    self.keep(tok:to_table().refresh_token)
  end

  function self.count()
    local n = 0
    for _ in pairs(secrets) do n = n + 1 end
    return n
  end

  -- nil when `text` holds no secret, else a description
  function self.find_in(text)
    for s in pairs(secrets) do
      if text:find(s, 1, true) then return "a secret of " .. #s .. " bytes" end
    end
    if text:find("Bearer [%w%-%._~+/]+=*[^>%w]") then return "an unredacted bearer token" end
    return nil
  end

  return self
end

return M
