-- Test certificates for the TLS specs, made with the openssl command line in a temporary
-- directory: a CA, server certificates it signs (for 127.0.0.1 and localhost, and for another
-- name), and a second CA that signed nothing here.
local M = {}

local function run(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  assert(ok == true or ok == 0, "failed: " .. cmd)
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- Returns {dir, ca, other_ca, cert, key, wrong_cert, wrong_key} (paths) and a cleanup function.
function M.make()
  local dir = os.tmpname()
  os.remove(dir)
  run("mkdir -p " .. dir)
  local p = function(name) return dir .. "/" .. name end
  local key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  local function ca(name, cn)
    run(string.format("openssl req -x509 %s -keyout %s -out %s -days 2 -subj '/CN=%s' " ..
      "-addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign'",
      key, p(name .. ".key"), p(name .. ".pem"), cn))
  end
  local function server(name, san)
    write(p(name .. ".ext"), "subjectAltName=" .. san .. "\nbasicConstraints=CA:FALSE\n" ..
      "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run(string.format("openssl req %s -keyout %s -out %s -subj '/CN=%s'", key, p(name .. ".key"),
      p(name .. ".csr"), name))
    run(string.format("openssl x509 -req -in %s -CA %s -CAkey %s -CAcreateserial -out %s -days 2 -extfile %s",
      p(name .. ".csr"), p("ca.pem"), p("ca.key"), p(name .. ".pem"), p(name .. ".ext")))
  end
  ca("ca", "lua-achievers test CA")
  ca("other_ca", "some other CA")
  server("server", "IP:127.0.0.1,DNS:localhost")
  server("wrong", "DNS:program.example.com")
  return {
    dir = dir, ca = p("ca.pem"), other_ca = p("other_ca.pem"),
    cert = p("server.pem"), key = p("server.key"),
    wrong_cert = p("wrong.pem"), wrong_key = p("wrong.key"),
  }, function() os.execute("rm -rf " .. dir) end
end

return M
