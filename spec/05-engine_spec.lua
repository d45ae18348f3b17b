-- The exchange engine alone (src/core/): spec/engine/engine_spec.c runs the real core on a
-- virtual clock, with a fake driver, a scripted server and the memory store; no sockets, no
-- Lua inside. Each of its cases is one `it` here; `make engine-spec` runs this file alone.
local bin = os.getenv("ACHIEVERS_ENGINE_SPEC")
  or ((os.getenv("ACHIEVERS_BUILD") or "build/5.4") .. "/engine-spec")

-- Runs the harness; returns its exit code and everything it printed.
local function run(arg)
  -- under SAN=1 the harness is built with ASan: leaks of its own count too (the suite turns
  -- leak detection off for the Lua interpreter, whose exit does not free everything)
  local cmd = ("ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 %s %s 2>&1; echo \"exit:$?\""):format(bin, arg)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  local code = tonumber(out:match("exit:(%d+)%s*$"))
  return code, (out:gsub("exit:%d+%s*$", ""))
end

local cases, list_code, list_out = {}, nil, ""
do
  list_code, list_out = run("--list")
  for line in list_out:gmatch("[^\n]+") do
    local name, what = line:match("^([%w_]+)\t(.+)$")
    if name then cases[#cases + 1] = { name = name, what = what } end
  end
end

describe("engine on a virtual clock", function()
  it("has its harness (ACHIEVERS_ENGINE_SPEC, set by make test) and its cases", function()
    assert.equals(0, list_code, bin .. " --list: " .. list_out .. " (built by `make test` or `make engine-spec`)")
    assert.is_true(#cases >= 20, list_out)
    local code, out = run("no_such_case")
    assert.equals(2, code, out)
  end)

  for _, c in ipairs(cases) do
    it(c.name .. ": " .. c.what, function()
      local code, out = run(c.name)
      assert.equals(0, code, out)
      assert.matches("ok " .. c.name, out, 1, true)
      assert.is_nil(out:find("Sanitizer", 1, true), out)
      assert.is_nil(out:find("runtime error", 1, true), out)
    end)
  end
end)
