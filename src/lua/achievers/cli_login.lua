-- achievers.cli_login: `achievers login`, the authorization code flow for an installed
-- application (RFC 8252): listen on a loopback port, send the person to the authorize URL,
-- take the one redirect that comes back, check its state and exchange its code (with the PKCE
-- verifier, unless the client has pkce = false). Needs
-- LuaSocket for the listener.

local M = {}

local PAGE = [[<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>%s</title></head>
<body style="font-family:system-ui,sans-serif;margin:3rem"><h1>%s</h1><p>%s</p></body></html>
]]

local function html_escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;", ["'"] = "&#39;" }))
end

local function respond(conn, status, title, text)
  local body = PAGE:format(html_escape(title), html_escape(title), html_escape(text))
  conn:send(("HTTP/1.1 %s\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\n" ..
    "Cache-Control: no-store\r\nConnection: close\r\n\r\n%s"):format(status, #body, body))
end

-- Reads one HTTP request head from `conn`: method, target (nil on a broken request).
local function read_request(conn)
  local line = conn:receive("*l")
  if not line then return nil end
  local method, target = line:match("^(%u+)%s+(%S+)%s+HTTP/%d")
  repeat
    local h = conn:receive("*l")
  until h == nil or h == ""
  return method, target
end

-- host, port, path of a loopback http redirect URI; nil when it is not one we can listen on.
local function parse_loopback(uri)
  local host, port, path = uri:match("^http://([^/:]+):(%d+)(/[^?#]*)$")
  if not host then
    host, port = uri:match("^http://([^/:]+):(%d+)$")
    path = "/"
  end
  if host ~= "127.0.0.1" and host ~= "localhost" then return nil end
  return "127.0.0.1", tonumber(port), path
end

local store = require("achievers.cli_store")

-- The program that opens a URL in the desktop's browser: xdg-open, or open on macOS (on
-- Linux `open` is often openvt). nil when there is none.
function M.opener()
  if store.run("command -v xdg-open >/dev/null 2>&1") then return "xdg-open" end
  if store.run("test \"$(uname -s 2>/dev/null)\" = Darwin && command -v open >/dev/null 2>&1") then
    return "open"
  end
  return nil
end

-- Opens `url` in a browser; false when no opener is installed.
local function open_browser(url)
  local opener = M.opener()
  if not opener then return false end
  os.execute(opener .. " " .. store.shquote(url) .. " >/dev/null 2>&1 &")
  return true
end

-- An error object as the module's: a kind and one readable line.
local function failure(kind, message)
  return setmetatable({ kind = kind, message = message },
    { __tostring = function(x) return "achievers: " .. x.kind .. ": " .. x.message end })
end

-- Standard input as LuaSocket's select sees a socket.
local STDIN = { getfd = function() return 0 end, dirty = function() return false end }

-- `--no-browser`: the person opens the URL anywhere and pastes back the address the browser
-- was sent to (whose state is checked), its query, or the bare code (no state to check then).
local function pasted(c, socket, o, state, verifier)
  local deadline = socket.gettime() + o.wait
  local line
  repeat
    local left = deadline - socket.gettime()
    if left <= 0 then
      return nil, failure("timeout", "nothing was pasted within " .. o.wait .. " s")
    end
    local ready = socket.select({ STDIN }, nil, math.min(left, 1))
    if ready and #ready > 0 then
      line = io.stdin:read("*l")
      if line == nil then return nil, failure("usage", "no address or code on stdin") end
      line = line:match("^%s*(.-)%s*$")
    end
  until line and line ~= ""
  if line:find("[?=&]") then return c:handle_callback(line, state, verifier) end
  return c:exchange_code(line, verifier)
end

--- Runs the flow with client `c`. `o`: port, redirect_uri, scope, wait (seconds), open,
-- no_browser, json, out (writes a line to stdout), usage (raises a usage error). Returns the
-- token, or nil and an error object (kind state_mismatch, access_denied, timeout, listen (the
-- port is taken), auth, ...) or a message.
function M.run(c, o)
  local ok, socket = pcall(require, "socket")
  if not ok then
    return nil, "achievers login needs LuaSocket (Debian package lua-socket, rock luasocket)"
  end
  local host, port, path = "127.0.0.1", o.port or 0, "/callback"
  if o.redirect_uri then
    host, port, path = parse_loopback(o.redirect_uri)
    if not host then
      o.usage("the redirect URI must be http://127.0.0.1:PORT/PATH (or localhost) to log in " ..
        "from here, got " .. o.redirect_uri)
    end
  end
  local server, err = socket.bind(host, port)
  if not server then
    local taken = tostring(err):find("in use", 1, true)
    return nil, failure("listen", "cannot listen on " .. host .. ":" .. tostring(port) .. ": " ..
      tostring(err) .. (taken and " (another program has it: try another --port)" or ""))
  end
  local _, bound = server:getsockname()
  local redirect_uri = o.redirect_uri or ("http://127.0.0.1:" .. bound .. path)
  if o.no_browser then server:close() end -- nothing comes to it: the address is pasted
  -- PKCE (RFC 7636): the verifier stays in this process, only its S256 challenge is in the URL
  local url, state, verifier = c:authorize_url { scope = o.scope, redirect_uri = redirect_uri }
  if o.json then
    o.out(require("achievers.cli_json").encode({ authorize_url = url, redirect_uri = redirect_uri }))
  elseif o.no_browser then
    io.stderr:write("Open this URL in a browser (on any machine) and approve the application:\n")
    o.out(url)
    io.stderr:write("The browser is then sent to ", redirect_uri, "?code=... (a page that may not\n",
      "load); paste that whole address here (or just the code) and press Enter:\n")
  else
    io.stderr:write("Open this URL in a browser and approve the application:\n")
    o.out(url)
    io.stderr:write("Waiting for the browser at ", redirect_uri, " ...\n")
  end
  io.stdout:flush()
  if o.no_browser then return pasted(c, socket, o, state, verifier) end
  if o.open and not open_browser(url) then
    io.stderr:write("achievers: --open: no xdg-open to open a browser with; open the URL above ",
      "yourself\n")
  end

  local deadline = socket.gettime() + o.wait
  server:settimeout(0.25)
  while true do
    local conn = server:accept()
    if conn then
      conn:settimeout(10)
      local method, target = read_request(conn)
      local tpath, query = (target or ""):match("^([^?#]*)%??([^#]*)")
      if method ~= "GET" or tpath ~= path then
        respond(conn, "404 Not Found", "Not found", "This address only takes the sign-in redirect.")
        conn:close()
      else
        local tok, cerr = c:handle_callback(query or "", state, verifier)
        if tok then
          respond(conn, "200 OK", "Signed in",
            "You can close this tab and go back to the terminal.")
        else
          respond(conn, "400 Bad Request", "Sign-in failed", tostring(cerr))
        end
        conn:close()
        server:close()
        return tok, cerr
      end
    elseif socket.gettime() > deadline then
      server:close()
      return nil, failure("timeout", "no redirect came back within " .. o.wait .. " s")
    end
  end
end

return M
