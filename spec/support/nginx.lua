-- nginx with its Lua module for the achievers.resty specs: Debian's nginx, the example
-- configuration of examples/openresty (2 workers, loopback only) in a prefix directory of its
-- own, the module built for LuaJIT (build/jit/achievers.so), and one more location, /eval,
-- that runs a spec's Lua code inside a worker and answers its result as JSON.
--
--   local ngx_server = require("support.nginx").start { env = { NAME = value }, locations = "..." }
--   local out = ngx_server:eval([[ return { n = ARGS.n + 1 } ]], { n = 1 })  -- out.n == 2
--   ngx_server:stop()
local socket = require("socket")
local json = require("dkjson")

local M = {}
local Server = {}
Server.__index = Server

local function sh(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

local function slurp(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
M.slurp = slurp
M.sh = sh

-- The location that runs a spec's code: POST {code =, args =}; the code sees ARGS and returns
-- a JSON-able value; the answer is {ok = true, result = ...} or {ok = false, error = "..."}.
local EVAL = [[
        location = /eval {
            client_body_buffer_size 1m;
            client_max_body_size 1m;
            content_by_lua_block {
                local cjson = require("cjson.safe")
                ngx.req.read_body()
                local req = cjson.decode(ngx.req.get_body_data() or "")
                local fn, err = loadstring(req and req.code or "", "=eval")
                local ok, res = false, err
                if fn then
                    setfenv(fn, setmetatable({ ARGS = req.args or {} }, { __index = _G }))
                    ok, res = xpcall(fn, debug.traceback)
                end
                ngx.header.content_type = "application/json"
                ngx.say(cjson.encode(ok and { ok = true, result = res } or { ok = false, error = tostring(res) })
                    or cjson.encode { ok = false, error = "the result is not JSON-able" })
            }
        }
]]

--- start{env = {NAME = value}, locations = "extra location blocks", conf = "path"}: a running
-- nginx (conf: another configuration of the same shape, default examples/openresty/nginx.conf);
-- stop it in teardown.
function M.start(opts)
  opts = opts or {}
  local root = io.popen("pwd"):read("*l")
  assert(io.open(root .. "/build/jit/achievers.so"), "build/jit/achievers.so is missing: make test builds it")
  local self = setmetatable({ port = require("helpers").free_port() }, Server)
  local prefix = os.tmpname()
  os.remove(prefix)
  self.prefix = prefix
  assert(sh(("mkdir -p %s/logs %s/examples && chmod 755 %s"):format(prefix, prefix, prefix)))
  assert(sh(("ln -s %s/src %s/src && ln -s %s/build %s/build && ln -s %s/spec %s/spec && " ..
    "ln -s %s/examples/openresty %s/examples/openresty"):format(root, prefix, root, prefix, root, prefix, root, prefix)))
  local conf_path = opts.conf or "examples/openresty/nginx.conf"
  local conf = assert(slurp(root .. "/" .. conf_path))
  local n
  conf, n = conf:gsub("listen 127%.0%.0%.1:%d+;", "listen 127.0.0.1:" .. self.port .. ";")
  assert(n == 1, conf_path .. ": no listen line")
  conf, n = conf:gsub('lua_package_path "', 'lua_package_path "$prefix/spec/?.lua;')
  assert(n == 1, "examples/openresty/nginx.conf: no lua_package_path")
  conf, n = conf:gsub("(location = /ping {)", function(ping) return EVAL .. (opts.locations or "") .. "\n        " .. ping end)
  assert(n == 1, "examples/openresty/nginx.conf: no /ping location")
  local env = {}
  for k, v in pairs(opts.env or {}) do
    env[#env + 1] = k .. "=" .. "'" .. tostring(v):gsub("'", "'\\''") .. "'"
    if not conf:find("env " .. k .. ";", 1, true) then
      conf = conf:gsub("(events {)", "env " .. k .. ";\n%1", 1)
    end
  end
  local f = assert(io.open(prefix .. "/nginx.conf", "w"))
  f:write(conf)
  f:close()
  assert(sh(("env -u LD_PRELOAD %s nginx -p %s -c %s/nginx.conf >%s/logs/stdout 2>&1 & echo $! > %s/master.pid")
    :format(table.concat(env, " "), prefix, prefix, prefix, prefix)))
  self.pid = slurp(prefix .. "/master.pid"):match("%d+")
  for _ = 1, 100 do
    if self:ping() then return self end
    socket.sleep(0.05)
  end
  local log = slurp(prefix .. "/logs/error.log")
  self:stop()
  error("nginx did not start: " .. tostring(log))
end

-- Seconds a GET /ping took, or nil when it failed.
function Server:ping()
  local t0 = socket.gettime()
  local c = socket.tcp()
  c:settimeout(2)
  if not c:connect("127.0.0.1", self.port) then c:close() return nil end
  c:send("GET /ping HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
  local line = c:receive("*l")
  c:close()
  if not line or not line:match(" 200 ") then return nil end
  return socket.gettime() - t0
end

-- A raw HTTP/1.0 exchange with nginx: status, body.
function Server:http(method, path, body, timeout)
  local c = socket.tcp()
  c:settimeout(timeout or 120)
  assert(c:connect("127.0.0.1", self.port))
  c:send(("%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s"):format(method, path, #(body or ""), body or ""))
  local all = c:receive("*a") or ""
  c:close()
  local status = tonumber(all:match("^HTTP/1%.%d (%d+)"))
  return status, all:match("\r\n\r\n(.*)$")
end

-- Runs `code` in a worker (the same one for the whole code); returns its result. A raise in
-- the code becomes an error here, with the worker's traceback.
function Server:eval(code, args, timeout)
  local status, body = self:http("POST", "/eval", json.encode { code = code, args = args or {} }, timeout)
  assert(status == 200, "eval: nginx answered " .. tostring(status) .. ": " .. tostring(body) ..
    "\n" .. tostring(slurp(self.prefix .. "/logs/error.log")))
  local out = json.decode(body, 1, json.null)
  assert(type(out) == "table", "eval: not JSON: " .. tostring(body))
  if not out.ok then error("eval: " .. tostring(out.error), 2) end
  return out.result
end

function Server:error_log()
  return slurp(self.prefix .. "/logs/error.log") or ""
end

function Server:stop()
  if self.pid then
    sh("kill -QUIT " .. self.pid .. " 2>/dev/null; sleep 0.3; kill -9 " .. self.pid .. " 2>/dev/null")
    self.pid = nil
  end
  if self.prefix then sh("rm -rf " .. self.prefix) self.prefix = nil end
end

return M
