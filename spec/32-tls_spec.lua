-- TLS: verification of the peer and of the host name is on by default; ca_file trusts a
-- private CA; a failure is kind "tls" with a message that says what to do; insecure = true is
-- the only way off. Certificates come from a test CA the spec makes with openssl.
local h = require("helpers")
local r = require("support.reliability")
local tls = require("support.tls")
local achievers = h.achievers

describe("TLS", function()
  local certs, cleanup, sb, wrong
  setup(function()
    certs, cleanup = tls.make()
    sb = h.start_sandbox { tls_cert = certs.cert, tls_key = certs.key }
    wrong = h.start_sandbox { tls_cert = certs.wrong_cert, tls_key = certs.wrong_key }
  end)
  teardown(function()
    sb:stop()
    wrong:stop()
    cleanup()
  end)

  local function expect_tls(data, err)
    assert.is_nil(data)
    assert.is_table(err)
    assert.equals("tls", err.kind)
    assert.is_nil(err.status)
    -- says what to do about it
    assert.matches("ca_file", err.message, 1, true)
    assert.matches("insecure = true", err.message, 1, true)
    assert.matches("^achievers: tls", tostring(err))
  end

  it("serves https:// on 127.0.0.1", function()
    assert.matches("^https://127%.0%.0%.1:%d+$", sb.url)
  end)

  it("passes with the right CA in ca_file, for the token and the API", function()
    local c = h.client(sb, { ca_file = certs.ca })
    local tok, err = c:token()
    assert.is_nil(err)
    assert.is_string(tok.access_token)
    local page = assert(c:get("users", { q = "ad" }))
    assert.is_table(page.items)
    -- through a host name in the certificate as well
    local byname = achievers.client { base_url = sb.url:gsub("127%.0%.0%.1", "localhost"),
      client_id = sb.client_id, client_secret = sb.client_secret, ca_file = certs.ca }
    assert(byname:get("users"))
  end)

  it("fails with no CA (the system store does not know the test CA): kind tls", function()
    local c = h.client(sb, { retries = 0 })
    expect_tls(c:token())
    expect_tls(c:get("users"))
  end)

  it("fails with a CA that did not sign the certificate", function()
    expect_tls(h.client(sb, { ca_file = certs.other_ca, retries = 0 }):get("users"))
  end)

  it("fails when the certificate is for another host name, even from the right CA", function()
    local c = h.client(wrong, { ca_file = certs.ca, retries = 0 })
    local data, err = c:get("users")
    expect_tls(data, err)
    assert.matches("127%.0%.0%.1", err.message)
  end)

  it("fails when the client connects through a name the certificate does not list", function()
    -- a host name this time (above it was an IP address): the certificate lists only
    -- program.example.com, the client asked for localhost
    local c = achievers.client { base_url = wrong.url:gsub("127%.0%.0%.1", "localhost"),
      client_id = wrong.client_id, client_secret = wrong.client_secret, ca_file = certs.ca, retries = 0 }
    expect_tls(c:get("users"))
  end)

  it("a TLS failure on a POST never reaches the API", function()
    local before = sb:stats().by_route["POST /recognitions"] or 0
    local c = h.client(sb, { retries = 2, token = { access_token = "x", expires_at = os.time() + 86400,
      grant_type = "authorization_code" } })
    expect_tls(c:post("recognitions", { nominees = "brady.garfinkel" }))
    assert.equals(before, sb:stats().by_route["POST /recognitions"] or 0)
  end)

  it("insecure = true passes, with no CA and with the wrong host name", function()
    assert(h.client(sb, { insecure = true }):get("users"))
    assert(h.client(wrong, { insecure = true }):get("users"))
  end)

  it("verification is on by default: insecure must be the boolean true", function()
    assert.has_error(function() h.client(sb, { insecure = "yes" }) end)
    assert.has_error(function() h.client(sb, { insecure = 1 }) end)
    expect_tls(h.client(sb, { insecure = false, retries = 0 }):get("users"))
  end)

  it("a missing ca_file is a tls error that names the problem", function()
    local data, err = h.client(sb, { ca_file = certs.dir .. "/missing.pem", retries = 0 }):get("users")
    assert.is_nil(data)
    assert.equals("tls", err.kind)
  end)

  it("an http:// base_url is refused for a non-loopback host unless allow_http", function()
    assert.has_error(function() achievers.client { base_url = "http://program.sandbox.achievers.com" } end)
    assert.has_error(function() achievers.client { base_url = "http://10.0.0.1:8080" } end)
    -- regression: any host starting with "127." passed for loopback
    for _, name in ipairs({ "http://127.0.0.1.nip.io", "http://127.attacker.example", "http://127.0.0.1.example.com:8080",
                            "http://127.0.0.1.", "http://127.0.0.256", "http://127.0.0.1.2" }) do
      assert.has_error(function() achievers.client { base_url = name } end, nil, name)
    end
    assert(achievers.client { base_url = "http://program.sandbox.achievers.com", allow_http = true })
    assert(achievers.client { base_url = "https://program.sandbox.achievers.com" })
    assert(achievers.client { base_url = "HTTPS://Program.Sandbox.Achievers.com/" })
    for _, loop in ipairs({ "http://127.0.0.1:9", "http://127.1.2.3:9", "http://localhost:9", "http://[::1]:9" }) do
      assert(achievers.client { base_url = loop }, loop)
    end
    assert.has_error(function() achievers.client { base_url = "ftp://program.sandbox.achievers.com" } end)
  end)

  it("a certificate failure is not retried: it cannot get better", function()
    -- regression: it was retried like a network error
    local hook, events = r.recorder()
    local c = h.client(sb, { retries = 2, on_request = hook,
      token = { access_token = "x", expires_at = os.time() + 86400 } })
    expect_tls(c:get("users"))
    assert.equals(0, #r.phase(events, "retry"))
    assert.equals(1, #r.phase(events, "request"))
  end)
end)
